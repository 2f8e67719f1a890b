//! axum + tower-sessions, `MemoryStore`.

use axum::routing::get;
use axum::Router;
use session_bench_peers::{announce, counter_body, port};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

async fn peek(session: Session) -> String {
    counter_body(session.get::<u64>("n").await.ok().flatten().unwrap_or(0))
}

async fn counter(session: Session) -> String {
    let n = session.get::<u64>("n").await.ok().flatten().unwrap_or(0) + 1;
    let _ = session.insert("n", n).await;
    counter_body(n)
}

#[tokio::main]
async fn main() {
    let layer = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/counter/peek", get(peek))
        .route("/counter", get(counter))
        .layer(layer);
    let port = port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    announce(port);
    axum::serve(listener, app).await.expect("serve");
}
