//! actix-web + actix-session, `CookieSessionStore`, private (encrypted) cookies.

use actix_session::config::CookieContentSecurity;
use actix_session::storage::CookieSessionStore;
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
    let key = Key::from(&[7u8; 64]);
    let port = port();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(
                SessionMiddleware::builder(CookieSessionStore::default(), key.clone())
                    .cookie_content_security(CookieContentSecurity::Private)
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
