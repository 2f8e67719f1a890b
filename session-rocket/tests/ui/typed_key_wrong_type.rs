use rocket::{get, routes};
use session_core::SessionKey;
use session_rocket::Session;

const USER: SessionKey<String> = SessionKey::new("user");

#[get("/")]
async fn login(session: Session) -> &'static str {
    session.insert_constant(&USER, &42u32).await.unwrap();
    "ok"
}

fn main() {
    let _ = rocket::build().mount("/", routes![login]);
}
