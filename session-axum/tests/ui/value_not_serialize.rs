use axum::routing::get;
use axum::Router;
use session_axum::Session;

struct Secret;

async fn handler(session: Session) -> String {
    session.insert("secret", &Secret).await.unwrap();
    String::new()
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
