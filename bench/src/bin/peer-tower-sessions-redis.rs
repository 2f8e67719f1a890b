//! axum + tower-sessions, `RedisStore` of tower-sessions-redis-store (fred
//! pool), at `REDIS_URL`.

use axum::routing::get;
use axum::Router;
use session_bench_peers::{announce, counter_body, port};
use tower_sessions::{Session, SessionManagerLayer};
use tower_sessions_redis_store::fred::prelude::*;
use tower_sessions_redis_store::RedisStore;

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
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let config = Config::from_url(&url).expect("REDIS_URL");
    let pool = Pool::new(config, None, None, None, 6).expect("pool");
    let _connection = pool.connect();
    pool.wait_for_connect().await.expect("redis");
    let layer = SessionManagerLayer::new(RedisStore::new(pool)).with_secure(false);
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
