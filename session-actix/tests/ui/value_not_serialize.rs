use actix_web::{web, App};
use session_actix::Session;

struct Secret;

async fn handler(session: Session) -> String {
    session.flash("info", &Secret).await.unwrap();
    String::new()
}

fn main() {
    let _app = App::new().route("/", web::get().to(handler));
}
