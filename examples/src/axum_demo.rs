//! The demo on axum: routes from [`crate::app`] behind a
//! [`session_axum::SessionLayer`].

use std::future::Future;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use session_axum::{Session, SessionLayer};
use session_core::SessionManager;

use crate::app::{self, Reply};

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    match reply.content_type {
        Some(ct) => {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        None => {
            response.headers_mut().remove(header::CONTENT_TYPE);
        }
    }
    if let Some(secs) = reply.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The demo's router.
pub fn router(manager: SessionManager) -> Router {
    Router::new()
        .route("/health", get(|| async { respond(app::health()) }))
        .route("/metrics", get(|| async { respond(app::metrics()) }))
        .route(
            "/counter",
            get(|s: Session| async move { respond(app::counter(&s).await) }),
        )
        .route(
            "/counter/peek",
            get(|s: Session| async move { respond(app::counter_peek(&s).await) }),
        )
        .route(
            "/kv/{key}",
            get(|s: Session, Path(key): Path<String>| async move {
                respond(app::kv_get(&s, &key).await)
            })
            .post(
                |s: Session, Path(key): Path<String>, body: Bytes| async move {
                    respond(app::kv_set(&s, &key, &body).await)
                },
            ),
        )
        .route(
            "/login",
            post(|s: Session, body: Bytes| async move { respond(app::login(&s, &body).await) }),
        )
        .route(
            "/whoami",
            get(|s: Session| async move { respond(app::whoami(&s).await) }),
        )
        .route(
            "/remember",
            post(|s: Session, body: Bytes| async move { respond(app::remember(&s, &body).await) }),
        )
        .route(
            "/flash",
            get(|s: Session| async move { respond(app::flash_take(&s).await) }).post(
                |s: Session, body: Bytes| async move { respond(app::flash_add(&s, &body).await) },
            ),
        )
        .route(
            "/logout",
            post(|s: Session| async move { respond(app::logout(&s).await) }),
        )
        .route(
            "/sessions",
            get(|s: Session| async move { respond(app::sessions_list(&s).await) }),
        )
        .route(
            "/sessions/{id}",
            delete(|s: Session, Path(id): Path<String>| async move {
                respond(app::session_end(&s, &id).await)
            }),
        )
        .route(
            "/sessions/revoke-others",
            post(|s: Session| async move { respond(app::sessions_revoke_others(&s).await) }),
        )
        .route(
            "/logout-everywhere",
            post(|s: Session| async move { respond(app::logout_everywhere(&s).await) }),
        )
        .route(
            "/",
            get(|s: Session| async move { respond(app::page(&s).await) }),
        )
        .layer(SessionLayer::new(manager))
}

/// Serves the demo on `listener` until `shutdown` completes.
///
/// # Errors
///
/// The server stops with an I/O error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    manager: SessionManager,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(manager))
        .with_graceful_shutdown(shutdown)
        .await
}
