//! The demo on actix-web: routes from [`crate::app`] behind a
//! [`session_actix::SessionMiddleware`].

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use session_actix::{Session, SessionMiddleware};
use session_core::SessionManager;

use crate::app::{self, Reply};

fn respond(reply: Reply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    if let Some(ct) = reply.content_type {
        response.content_type(ct);
    }
    if let Some(secs) = reply.retry_after {
        response.insert_header(("Retry-After", secs.to_string()));
    }
    response.body(reply.body)
}

async fn health() -> HttpResponse {
    respond(app::health())
}

async fn metrics() -> HttpResponse {
    respond(app::metrics())
}
async fn counter(s: Session) -> HttpResponse {
    respond(app::counter(&s).await)
}
async fn counter_peek(s: Session) -> HttpResponse {
    respond(app::counter_peek(&s).await)
}
async fn kv_get(s: Session, key: web::Path<String>) -> HttpResponse {
    respond(app::kv_get(&s, &key).await)
}
async fn kv_set(s: Session, key: web::Path<String>, body: web::Bytes) -> HttpResponse {
    respond(app::kv_set(&s, &key, &body).await)
}
async fn login(s: Session, body: web::Bytes) -> HttpResponse {
    respond(app::login(&s, &body).await)
}
async fn whoami(s: Session) -> HttpResponse {
    respond(app::whoami(&s).await)
}
async fn remember(s: Session, body: web::Bytes) -> HttpResponse {
    respond(app::remember(&s, &body).await)
}
async fn flash_take(s: Session) -> HttpResponse {
    respond(app::flash_take(&s).await)
}
async fn flash_add(s: Session, body: web::Bytes) -> HttpResponse {
    respond(app::flash_add(&s, &body).await)
}
async fn logout(s: Session) -> HttpResponse {
    respond(app::logout(&s).await)
}
async fn sessions_list(s: Session) -> HttpResponse {
    respond(app::sessions_list(&s).await)
}
async fn session_end(s: Session, id: web::Path<String>) -> HttpResponse {
    respond(app::session_end(&s, &id).await)
}
async fn sessions_revoke_others(s: Session) -> HttpResponse {
    respond(app::sessions_revoke_others(&s).await)
}
async fn logout_everywhere(s: Session) -> HttpResponse {
    respond(app::logout_everywhere(&s).await)
}
async fn page(s: Session) -> HttpResponse {
    respond(app::page(&s).await)
}

/// The demo's routes.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        // Bodies up to 2 MiB, as the axum and Rocket demos read: a value too
        // large for the session is then the store's 413 with a JSON body,
        // not actix's own plain-text one at 256 KiB.
        .app_data(web::PayloadConfig::new(2 * 1024 * 1024))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/counter", web::get().to(counter))
        .route("/counter/peek", web::get().to(counter_peek))
        .service(web::resource("/kv/{key}").get(kv_get).post(kv_set))
        .route("/login", web::post().to(login))
        .route("/whoami", web::get().to(whoami))
        .route("/remember", web::post().to(remember))
        .service(web::resource("/flash").get(flash_take).post(flash_add))
        .route("/logout", web::post().to(logout))
        .route("/sessions", web::get().to(sessions_list))
        // Before `/sessions/{id}`, which would take it for an id.
        .route(
            "/sessions/revoke-others",
            web::post().to(sessions_revoke_others),
        )
        .route("/sessions/{id}", web::delete().to(session_end))
        .route("/logout-everywhere", web::post().to(logout_everywhere))
        .route("/", web::get().to(page));
}

/// Serves the demo on `listener` until `shutdown` completes (or, with
/// `signals`, until Ctrl-C or SIGTERM). Call inside an actix system.
///
/// # Errors
///
/// The server fails to start or stops with an I/O error.
pub async fn serve(
    listener: std::net::TcpListener,
    manager: SessionManager,
    shutdown: impl Future<Output = ()> + 'static,
    signals: bool,
) -> std::io::Result<()> {
    let sessions = SessionMiddleware::new(manager);
    let mut server = HttpServer::new(move || App::new().wrap(sessions.clone()).configure(routes))
        .workers(2)
        .shutdown_timeout(1)
        .listen(listener)?;
    if !signals {
        server = server.disable_signals();
    }
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    server.await
}
