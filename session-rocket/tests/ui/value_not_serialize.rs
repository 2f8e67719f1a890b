use rocket::{get, routes};
use session_rocket::Session;

struct Secret;

#[get("/")]
async fn handler(session: Session) -> &'static str {
    session.insert("secret", &Secret).await.unwrap();
    "ok"
}

fn main() {
    let _ = rocket::build().mount("/", routes![handler]);
}
