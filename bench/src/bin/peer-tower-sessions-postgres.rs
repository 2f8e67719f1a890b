//! axum + tower-sessions, `PostgresStore` of tower-sessions-sqlx-store
//! (sqlx pool), at `DATABASE_URL`.

use session_bench_peers::{serve_axum, tower_sessions_app};
use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;
use tower_sessions_sqlx_store::PostgresStore;

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    // sqlx's default pool size (10), as a user of the store would start.
    let pool = PgPoolOptions::new().connect(&url).await.expect("postgres");
    let store = PostgresStore::new(pool);
    store.migrate().await.expect("migrate");
    serve_axum(tower_sessions_app(store)).await;
}
