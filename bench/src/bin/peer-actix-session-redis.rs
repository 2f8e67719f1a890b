//! actix-web + actix-session, `RedisSessionStore` (redis-rs connection
//! manager), at `REDIS_URL`.

use actix_session::storage::RedisSessionStore;
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::Key;
use actix_web::{web, App, HttpResponse, HttpServer};
use session_bench_peers::{announce, counter_body, port};

async fn peek(session: Session) -> HttpResponse {
    let n = session.get::<u64>("n").ok().flatten().unwrap_or(0);
    HttpResponse::Ok()
        .content_type("application/json")
        .body(counter_body(n))
}

async fn counter(session: Session) -> HttpResponse {
    let n = session.get::<u64>("n").ok().flatten().unwrap_or(0) + 1;
    let _ = session.insert("n", n);
    HttpResponse::Ok()
        .content_type("application/json")
        .body(counter_body(n))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = RedisSessionStore::new(url).await.expect("redis");
    let key = Key::from(&[7u8; 64]);
    let port = port();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    .cookie_secure(false)
                    .build(),
            )
            .route("/health", web::get().to(|| async { "ok" }))
            .route("/counter/peek", web::get().to(peek))
            .route("/counter", web::get().to(counter))
    })
    .workers(2)
    .bind(("127.0.0.1", port))?;
    announce(port);
    server.run().await
}
