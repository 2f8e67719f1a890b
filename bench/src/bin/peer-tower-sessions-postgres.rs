//! axum + tower-sessions, `PostgresStore` of tower-sessions-sqlx-store
//! (sqlx pool), at `DATABASE_URL`.

use axum::routing::get;
use axum::Router;
use session_bench_peers::{announce, counter_body, port};
use tower_sessions::{Session, SessionManagerLayer};
use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;
use tower_sessions_sqlx_store::PostgresStore;

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
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    // sqlx's default pool size (10), as a user of the store would start.
    let pool = PgPoolOptions::new().connect(&url).await.expect("postgres");
    let store = PostgresStore::new(pool);
    store.migrate().await.expect("migrate");
    let layer = SessionManagerLayer::new(store).with_secure(false);
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
