use actix_web::{web, App};
use session_actix::Session;
use session_core::SessionKey;

const COUNTER: SessionKey<u64> = SessionKey::new("n");

async fn handler(session: Session) -> String {
    let n: Option<String> = session.get(&COUNTER).await.unwrap();
    n.unwrap_or_default()
}

fn main() {
    let _app = App::new().route("/", web::get().to(handler));
}
