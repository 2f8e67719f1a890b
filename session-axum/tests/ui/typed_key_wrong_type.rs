use axum::routing::get;
use axum::Router;
use session_axum::Session;
use session_core::SessionKey;

const COUNTER: SessionKey<u64> = SessionKey::new("n");

async fn handler(session: Session) -> String {
    session.insert(&COUNTER, &"one").await.unwrap();
    String::new()
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
