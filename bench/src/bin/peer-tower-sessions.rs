//! axum + tower-sessions, `MemoryStore`.

use session_bench_peers::{serve_axum, tower_sessions_app};
use tower_sessions::MemoryStore;

#[tokio::main]
async fn main() {
    serve_axum(tower_sessions_app(MemoryStore::default())).await;
}
