//! axum + tower-sessions, `RedisStore` of tower-sessions-redis-store (fred
//! pool), at `REDIS_URL`.

use session_bench_peers::{serve_axum, tower_sessions_app};
use tower_sessions_redis_store::fred::prelude::*;
use tower_sessions_redis_store::RedisStore;

#[tokio::main]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let config = Config::from_url(&url).expect("REDIS_URL");
    let pool = Pool::new(config, None, None, None, 6).expect("pool");
    let _connection = pool.connect();
    pool.wait_for_connect().await.expect("redis");
    serve_axum(tower_sessions_app(RedisStore::new(pool))).await;
}
