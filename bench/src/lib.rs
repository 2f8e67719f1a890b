//! Shared bits of the peer servers: the port from `PORT`, the answer, and
//! the axum peers' server and tower-sessions routes.

use axum::routing::get;
use axum::Router;
use tower_sessions::{Session, SessionManagerLayer, SessionStore};

/// The port to listen on (`PORT`, default 3000).
pub fn port() -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000)
}

/// The JSON body of the counter routes.
pub fn counter_body(n: u64) -> String {
    serde_json::json!({ "n": n }).to_string()
}

/// Prints the line `cargo xtask bench` waits for.
pub fn announce(port: u16) {
    println!("listening on http://127.0.0.1:{port}");
}

/// Serves `app` on 127.0.0.1 at [`port`], once [`announce`]d.
pub async fn serve_axum(app: Router) {
    let port = port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    announce(port);
    axum::serve(listener, app).await.expect("serve");
}

/// The bench routes on axum with tower-sessions over `store`, as its users
/// write them (plain-HTTP cookies: the bench runs without TLS).
pub fn tower_sessions_app<S: SessionStore + Clone>(store: S) -> Router {
    async fn peek(session: Session) -> String {
        counter_body(session.get::<u64>("n").await.ok().flatten().unwrap_or(0))
    }
    async fn counter(session: Session) -> String {
        let n = session.get::<u64>("n").await.ok().flatten().unwrap_or(0) + 1;
        let _ = session.insert("n", n).await;
        counter_body(n)
    }
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/counter/peek", get(peek))
        .route("/counter", get(counter))
        .layer(SessionManagerLayer::new(store).with_secure(false))
}
