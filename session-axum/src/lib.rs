//! Sessions for axum 0.8 and any tower/hyper service.
//!
//! [`SessionLayer`] reads the request's session tokens into the request
//! extensions and, after the handler, saves what changed and adds the
//! `Set-Cookie` (or token header). [`Session`] and [`Sessions`] extract them
//! in handlers; nothing is loaded from the store unless a handler uses the
//! session. All session logic lives in `session-core`.
//!
//! Each adapter is the only session crate an application adds: it
//! re-exports what handlers and setup need and, behind features named after
//! them, the stores (`memory` on by default). A complete program (this
//! crate's `readme` example):
#![doc = concat!("```no_run\n", include_str!("../examples/readme.rs"), "```")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

session_core::adapter_handles!();
session_core::adapter_exports!(session_backends);

/// A tower layer that gives every request its sessions and saves them after
/// the inner service answers.
#[derive(Clone, Debug)]
pub struct SessionLayer {
    manager: SessionManager,
}

session_core::adapter_setup!(SessionLayer, "layer", session_backends);

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: self.manager.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let headers = req.headers();
        let request = self.manager.start_by_name(|name| {
            headers
                .get_all(name)
                .into_iter()
                .map(|value| value.as_bytes())
        });
        // The handler gets the sessions; only this service can finish them.
        req.extensions_mut().insert(request.sessions().clone());
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(req).await?;
            match request.finish().await {
                Ok(headers) => {
                    for header in headers {
                        let if_absent = header.only_if_absent();
                        if let Some((name, value)) = header_parts(header) {
                            if !(if_absent && response.headers().contains_key(&name)) {
                                response.headers_mut().append(name, value);
                            }
                        }
                    }
                }
                Err(e) => response = error_response(&e),
            }
            Ok(response)
        })
    }
}

/// The JSON error response for a session error: 503 when the store is out
/// of reach, 500 otherwise, with a message that reveals nothing secret.
fn error_response<B: From<String>>(error: &session_core::SessionError) -> http::Response<B> {
    let mut response = http::Response::new(B::from(error.public_json()));
    *response.status_mut() =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = error.retry_after_secs() {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Rejection when a handler asks for a session but no [`SessionLayer`]
/// wraps it: a 500 that names the fix.
#[derive(Debug, Clone, Copy)]
pub struct MissingSessionLayer;

impl std::fmt::Display for MissingSessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no session layer: add `session_axum::SessionLayer` around this route")
    }
}

impl std::error::Error for MissingSessionLayer {}

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

fn request_sessions(parts: &Parts) -> Result<RequestSessions, MissingSessionLayer> {
    parts
        .extensions
        .get::<RequestSessions>()
        .cloned()
        .ok_or(MissingSessionLayer)
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Session(request_sessions(parts)?.primary().clone()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Sessions {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Sessions(request_sessions(parts)?))
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

/// The core's header as this framework's types; fixed text is used in place
/// (`from_static`) and owned text is moved, so nothing is copied.
fn header_parts(header: session_core::ResponseHeader) -> Option<(HeaderName, HeaderValue)> {
    let (name, value) = header.into_parts();
    let name = match name {
        Cow::Borrowed(name) => HeaderName::from_static(name),
        Cow::Owned(name) => HeaderName::try_from(name).ok()?,
    };
    let value = match value {
        Cow::Borrowed(value) => HeaderValue::from_static(value),
        Cow::Owned(value) => HeaderValue::try_from(value).ok()?,
    };
    Some((name, value))
}
