//! The demo on Rocket: routes from [`crate::app`] with a
//! [`session_rocket::SessionFairing`].

use std::io::Cursor;
use std::net::Ipv4Addr;

use rocket::config::{LogLevel, Shutdown};
use rocket::data::{Data, ToByteUnit};
use rocket::http::{Header, Status};
use rocket::response::{self, Responder};
use rocket::shield::Shield;
use rocket::{catch, catchers, delete, get, post, routes, Build, Request, Response, Rocket};
use session_core::SessionManager;
use session_rocket::{Session, SessionFairing};

use crate::app::{self, Reply};

/// A [`Reply`] as a Rocket response.
pub struct RocketReply(Reply);

impl<'r> Responder<'r, 'static> for RocketReply {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let reply = self.0;
        let mut response = Response::build();
        response.status(Status::new(reply.status));
        if let Some(ct) = reply.content_type {
            response.header(Header::new("Content-Type", ct));
        }
        if let Some(secs) = reply.retry_after {
            response.header(Header::new("Retry-After", secs.to_string()));
        }
        response
            .sized_body(reply.body.len(), Cursor::new(reply.body))
            .ok()
    }
}

async fn body(data: Data<'_>) -> Vec<u8> {
    // An unreadable or oversized body parses as invalid JSON: a 400.
    data.open(2.mebibytes())
        .into_bytes()
        .await
        .map(|b| b.into_inner())
        .unwrap_or_default()
}

#[get("/health")]
fn health() -> RocketReply {
    RocketReply(app::health())
}

#[get("/metrics")]
fn metrics() -> RocketReply {
    RocketReply(app::metrics())
}
#[get("/counter")]
async fn counter(s: Session) -> RocketReply {
    RocketReply(app::counter(&s).await)
}
#[get("/counter/peek")]
async fn counter_peek(s: Session) -> RocketReply {
    RocketReply(app::counter_peek(&s).await)
}
#[get("/kv/<key>")]
async fn kv_get(s: Session, key: &str) -> RocketReply {
    RocketReply(app::kv_get(&s, key).await)
}
#[post("/kv/<key>", data = "<data>")]
async fn kv_set(s: Session, key: &str, data: Data<'_>) -> RocketReply {
    RocketReply(app::kv_set(&s, key, &body(data).await).await)
}
#[post("/login", data = "<data>")]
async fn login(s: Session, data: Data<'_>) -> RocketReply {
    RocketReply(app::login(&s, &body(data).await).await)
}
#[get("/whoami")]
async fn whoami(s: Session) -> RocketReply {
    RocketReply(app::whoami(&s).await)
}
#[post("/remember", data = "<data>")]
async fn remember(s: Session, data: Data<'_>) -> RocketReply {
    RocketReply(app::remember(&s, &body(data).await).await)
}
#[get("/flash")]
async fn flash_take(s: Session) -> RocketReply {
    RocketReply(app::flash_take(&s).await)
}
#[post("/flash", data = "<data>")]
async fn flash_add(s: Session, data: Data<'_>) -> RocketReply {
    RocketReply(app::flash_add(&s, &body(data).await).await)
}
#[post("/logout")]
async fn logout(s: Session) -> RocketReply {
    RocketReply(app::logout(&s).await)
}
#[get("/sessions")]
async fn sessions_list(s: Session) -> RocketReply {
    RocketReply(app::sessions_list(&s).await)
}
#[delete("/sessions/<id>")]
async fn session_end(s: Session, id: &str) -> RocketReply {
    RocketReply(app::session_end(&s, id).await)
}
#[post("/sessions/revoke-others")]
async fn sessions_revoke_others(s: Session) -> RocketReply {
    RocketReply(app::sessions_revoke_others(&s).await)
}
#[post("/logout-everywhere")]
async fn logout_everywhere(s: Session) -> RocketReply {
    RocketReply(app::logout_everywhere(&s).await)
}
#[get("/")]
async fn page(s: Session) -> RocketReply {
    RocketReply(app::page(&s).await)
}

/// Errors without Rocket's HTML pages, as the other demos answer them.
#[catch(default)]
fn plain_error(status: Status, _: &Request<'_>) -> (Status, ()) {
    (status, ())
}

/// The demo's Rocket on 127.0.0.1:`port`; `ctrlc` lets Ctrl-C stop it.
pub fn build(manager: SessionManager, port: u16, ctrlc: bool) -> Rocket<Build> {
    let config = rocket::Config {
        address: Ipv4Addr::LOCALHOST.into(),
        port,
        log_level: LogLevel::Off,
        cli_colors: false,
        shutdown: Shutdown {
            ctrlc,
            grace: 1,
            mercy: 1,
            ..Shutdown::default()
        },
        ..rocket::Config::release_default()
    };
    rocket::custom(config)
        // No security headers by default, so the three demos answer alike;
        // a real application attaches its own Shield policies.
        .attach(Shield::new())
        .attach(SessionFairing::new(manager))
        .mount(
            "/",
            routes![
                health,
                metrics,
                counter,
                counter_peek,
                kv_get,
                kv_set,
                login,
                whoami,
                remember,
                flash_take,
                flash_add,
                logout,
                sessions_list,
                session_end,
                sessions_revoke_others,
                logout_everywhere,
                page
            ],
        )
        .register("/", catchers![plain_error])
}
