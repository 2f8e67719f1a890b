//! Sessions for actix-web 4.
//!
//! [`SessionMiddleware`] reads the request's session tokens and, after the
//! handler, saves what changed and adds the `Set-Cookie` (or token header).
//! [`Session`] extracts the primary session in handlers, [`Sessions`] all of
//! them; [`SessionExt`] reaches them from an `HttpRequest` or
//! `ServiceRequest`. Nothing is loaded from the store unless a handler uses
//! the session. All session logic lives in `session-core`; actix-web's own
//! `cookie` 0.16 and `http` 0.2 types stay at this edge.
//!
//! Each adapter is the only session crate an application adds: it
//! re-exports what handlers and setup need and, behind features named after
//! them, the stores (`memory` on by default). A complete program (this
//! crate's `readme` example):
#![doc = concat!("```no_run\n", include_str!("../examples/readme.rs"), "```")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::borrow::Cow;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};

session_core::adapter_handles!();
session_core::adapter_exports!(session_backends);

/// Middleware that gives every request its sessions and saves them after
/// the handler. Cloning is cheap; build it once and clone it into each
/// worker's `App`.
#[derive(Clone, Debug)]
pub struct SessionMiddleware {
    manager: SessionManager,
}

session_core::adapter_setup!(SessionMiddleware, "middleware", session_backends);

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            service: Rc::new(service),
            manager: self.manager.clone(),
        }))
    }
}

/// The service made by [`SessionMiddleware`].
pub struct SessionService<S> {
    service: Rc<S>,
    manager: SessionManager,
}

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let headers = req.headers();
        let request = self
            .manager
            .start_by_name(|name| headers.get_all(name).map(|value| value.as_bytes()));
        // The handler gets the sessions; only this service can finish them.
        req.extensions_mut().insert(request.sessions().clone());
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let mut response = service.call(req).await?;
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
                    Ok(response.map_into_left_body())
                }
                Err(e) => {
                    let (request, _) = response.into_parts();
                    let error = SessionError(e).error_response();
                    Ok(ServiceResponse::new(request, error).map_into_right_body())
                }
            }
        })
    }
}

/// The error when a handler asks for a session but no
/// [`SessionMiddleware`] wraps it: a 500 that names the fix.
#[derive(Debug, Clone, Copy)]
pub struct MissingSessionMiddleware;

impl std::fmt::Display for MissingSessionMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no session middleware: wrap the app in `session_actix::SessionMiddleware`")
    }
}

impl std::error::Error for MissingSessionMiddleware {}

impl ResponseError for MissingSessionMiddleware {}

/// Access to the sessions from actix-web's request types.
pub trait SessionExt {
    /// All sessions of the request, if the middleware runs.
    fn sessions(&self) -> Option<RequestSessions>;

    /// The primary session, if the middleware runs.
    fn session(&self) -> Option<session_core::Session> {
        self.sessions().map(|s| s.primary().clone())
    }
}

impl SessionExt for HttpRequest {
    fn sessions(&self) -> Option<RequestSessions> {
        self.extensions().get::<RequestSessions>().cloned()
    }
}

impl SessionExt for ServiceRequest {
    fn sessions(&self) -> Option<RequestSessions> {
        self.extensions().get::<RequestSessions>().cloned()
    }
}

impl FromRequest for Session {
    type Error = MissingSessionMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.sessions()
                .map(|s| Session(s.primary().clone()))
                .ok_or(MissingSessionMiddleware),
        )
    }
}

impl FromRequest for Sessions {
    type Error = MissingSessionMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.sessions().map(Sessions).ok_or(MissingSessionMiddleware))
    }
}

impl ResponseError for SessionError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = self.0.retry_after_secs() {
            response.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        response
            .content_type("application/json")
            .body(self.0.public_json())
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
