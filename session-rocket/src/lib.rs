//! Sessions for Rocket 0.5.
//!
//! [`SessionFairing`] puts the session configuration in Rocket's managed
//! state and, after each handler, saves what changed and adds the
//! `Set-Cookie` (or token header) with `Response::adjoin_header` (cookies
//! added through `req.cookies()` in `on_response` would be dropped by
//! Rocket). The [`Session`] request guard gives handlers the primary
//! session, [`Sessions`] all of them; both are built once per request
//! through `local_cache`, and nothing is loaded from the store unless a
//! handler uses the session. All session logic lives in `session-core`.
//!
//! Each adapter is the only session crate an application adds: it
//! re-exports what handlers and setup need and, behind features named after
//! them, the stores (`memory` on by default). A complete program (this
//! crate's `readme` example):
#![doc = concat!("```no_run\n", include_str!("../examples/readme.rs"), "```")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::Cursor;

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::{ContentType, Header, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::response::{self, Responder};
use rocket::{Build, Request, Response, Rocket};
use session_core::adapter::PendingRequest;

session_core::adapter_handles!();
session_core::adapter_exports!(session_backends);

/// The fairing: manages the sessions' configuration and saves them after
/// each request.
#[derive(Clone, Debug)]
pub struct SessionFairing {
    manager: SessionManager,
}

session_core::adapter_setup!(SessionFairing, "fairing", session_backends);

/// The request's sessions slot: empty until a guard asks, so requests that
/// never use a session read no token (Rocket's `local_cache` cannot tell
/// "absent" from "made now" on its own).
struct SessionsSlot(std::sync::OnceLock<PendingRequest>);

fn slot<'r>(req: &'r Request<'_>) -> &'r SessionsSlot {
    req.local_cache(|| SessionsSlot(std::sync::OnceLock::new()))
}

/// The request's sessions, made on first use and kept for the request.
fn request_sessions<'r>(req: &'r Request<'_>) -> Option<&'r RequestSessions> {
    let manager = req.rocket().state::<SessionManager>()?;
    Some(
        slot(req)
            .0
            .get_or_init(|| {
                // Rocket hands out whole headers by value, but values by name by
                // reference.
                let headers = req.headers();
                manager.start_by_name(|name| headers.get(name).map(str::as_bytes))
            })
            .sessions(),
    )
}

/// The JSON error response for a session error (with `Retry-After` on a 503).
fn error_response(error: &session_core::SessionError) -> Response<'static> {
    let status = Status::from_code(error.http_status()).unwrap_or(Status::InternalServerError);
    let body = error.public_json();
    let mut response = Response::build();
    response
        .status(status)
        .header(ContentType::JSON)
        .sized_body(body.len(), Cursor::new(body));
    if let Some(secs) = error.retry_after_secs() {
        response.header(Header::new("Retry-After", secs.to_string()));
    }
    response.finalize()
}

#[rocket::async_trait]
impl Fairing for SessionFairing {
    fn info(&self) -> Info {
        Info {
            name: "Sessions",
            kind: Kind::Ignite | Kind::Response | Kind::Singleton,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        Ok(rocket.manage(self.manager.clone()))
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        // Only sessions a guard made can have anything to save.
        let Some(request) = slot(req).0.get() else {
            return;
        };
        match request.finish().await {
            Ok(headers) => {
                for header in headers {
                    if header.only_if_absent() && res.headers().contains(header.name()) {
                        continue;
                    }
                    // Moved, not copied: fixed names and values stay borrowed.
                    let (name, value) = header.into_parts();
                    res.adjoin_header(Header::new(name, value));
                }
            }
            Err(e) => {
                *res = error_response(&e);
            }
        }
    }
}

/// The guard's error when no [`SessionFairing`] is attached (a 500).
#[derive(Debug, Clone, Copy)]
pub struct MissingSessionFairing;

impl std::fmt::Display for MissingSessionFairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no session fairing: attach `session_rocket::SessionFairing`")
    }
}

impl std::error::Error for MissingSessionFairing {}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Session {
    type Error = MissingSessionFairing;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        match request_sessions(req) {
            Some(s) => Outcome::Success(Session(s.primary().clone())),
            None => Outcome::Error((Status::InternalServerError, MissingSessionFairing)),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Sessions {
    type Error = MissingSessionFairing;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        match request_sessions(req) {
            Some(s) => Outcome::Success(Sessions(s.clone())),
            None => Outcome::Error((Status::InternalServerError, MissingSessionFairing)),
        }
    }
}

impl<'r> Responder<'r, 'static> for SessionError {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Ok(error_response(&self.0))
    }
}
