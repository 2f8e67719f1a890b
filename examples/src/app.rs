//! The demo's routes, once, on `session_core::Session`: each framework's
//! handler only extracts the session and body and converts the [`Reply`].
//! That is what keeps the three demos indistinguishable.

use serde::{Deserialize, Serialize};
use serde_json::json;
use session_core::{Session, SessionError, SessionHandle, SessionKey, UserSession};

/// The counter of `/counter`.
pub const COUNTER: SessionKey<u64> = SessionKey::new("n");
/// The logged-in user: a constant attribute, set at login.
pub const USER: SessionKey<String> = SessionKey::new("user");
/// Flash kind of the login greeting.
pub const WELCOME_KIND: &str = "info";

/// A framework-neutral response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, when there is a body.
    pub content_type: Option<&'static str>,
    /// The body.
    pub body: String,
    /// `Retry-After` seconds, for a 503.
    pub retry_after: Option<u32>,
}

impl Reply {
    fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: Some("application/json"),
            body: value.to_string(),
            retry_after: None,
        }
    }

    fn no_content() -> Reply {
        Reply {
            status: 204,
            content_type: None,
            body: String::new(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl std::fmt::Display) -> Reply {
        Reply::json(400, &json!({ "error": format!("bad request: {message}") }))
    }
}

impl From<SessionError> for Reply {
    fn from(e: SessionError) -> Reply {
        tracing::warn!(error = %e, "session error");
        Reply {
            retry_after: e.retry_after_secs(),
            ..Reply::json(e.http_status(), &json!({ "error": e.public_message() }))
        }
    }
}

/// Runs a route body, turning a session error into its reply.
async fn reply(body: impl std::future::Future<Output = Result<Reply, SessionError>>) -> Reply {
    body.await.unwrap_or_else(Reply::from)
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(Reply::bad_request)
}

/// One pending flash, as `/flash` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// Its kind (`info`, `error`, ...).
    pub kind: String,
    /// Its text.
    pub message: String,
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

#[derive(Deserialize)]
struct Remember {
    persistent: bool,
}

/// `GET /health`: touches no session.
pub fn health() -> Reply {
    Reply {
        status: 200,
        content_type: Some("text/plain; charset=utf-8"),
        body: "ok".into(),
        retry_after: None,
    }
}

static METRICS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
    std::sync::OnceLock::new();

/// Installs the Prometheus recorder that `GET /metrics` renders (with
/// `METRICS=1`). The session crates report through the `metrics` facade.
pub fn install_metrics() {
    match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => {
            // The recorder's histograms need draining now and then.
            let upkeep = handle.clone();
            std::thread::spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            });
            let _ = METRICS.set(handle);
        }
        Err(e) => tracing::warn!(error = %e, "metrics recorder not installed"),
    }
}

/// `GET /metrics`: the session metrics in Prometheus text format when
/// `METRICS=1`, else 404.
pub fn metrics() -> Reply {
    match METRICS.get() {
        Some(handle) => Reply {
            status: 200,
            content_type: Some("text/plain; version=0.0.4; charset=utf-8"),
            body: handle.render(),
            retry_after: None,
        },
        None => Reply::json(
            404,
            &json!({ "error": "metrics are off; start with METRICS=1" }),
        ),
    }
}

/// `GET /counter`: n = n + 1, as an atomic update so concurrent calls on
/// one session each count.
pub async fn counter(session: &Session) -> Reply {
    reply(async {
        let n = session.update(&COUNTER, |n| n.unwrap_or(0) + 1).await?;
        Ok(Reply::json(200, &json!({ "n": n })))
    })
    .await
}

/// `GET /counter/peek`: reads n (0 when absent).
pub async fn counter_peek(session: &Session) -> Reply {
    reply(async {
        let n = session.get(&COUNTER).await?.unwrap_or(0);
        Ok(Reply::json(200, &json!({ "n": n })))
    })
    .await
}

fn kv_key(key: &str) -> String {
    format!("kv:{key}")
}

/// `POST /kv/{key}`: stores any JSON value.
pub async fn kv_set(session: &Session, key: &str, body: &[u8]) -> Reply {
    let value: serde_json::Value = match parse(body) {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    reply(async {
        session.insert(&kv_key(key), &value).await?;
        Ok(Reply::no_content())
    })
    .await
}

/// `GET /kv/{key}`: the stored value, or 404.
pub async fn kv_get(session: &Session, key: &str) -> Reply {
    reply(async {
        Ok(
            match session.get::<serde_json::Value, _>(&kv_key(key)).await? {
                Some(value) => Reply::json(200, &value),
                None => Reply::json(404, &json!({ "error": "not found" })),
            },
        )
    })
    .await
}

/// `POST /login`: sets the user, renews the id, greets with a flash.
pub async fn login(session: &Session, body: &[u8]) -> Reply {
    let login: Login = match parse(body) {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    reply(async {
        // Renews the id and enters the session in the user's list.
        session.sign_in(&login.user).await?;
        session.insert_constant(&USER, &login.user).await?;
        session
            .flash(WELCOME_KIND, &format!("welcome {}", login.user))
            .await?;
        Ok(Reply::json(200, &json!({ "user": login.user })))
    })
    .await
}

/// `GET /whoami`: 200 with the user, or 401.
pub async fn whoami(session: &Session) -> Reply {
    reply(async {
        Ok(match session.get(&USER).await? {
            Some(user) => Reply::json(200, &json!({ "user": user })),
            None => Reply::json(401, &json!({ "user": null })),
        })
    })
    .await
}

/// `POST /remember`: persistent or browser-session cookie.
pub async fn remember(session: &Session, body: &[u8]) -> Reply {
    let remember: Remember = match parse(body) {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    reply(async {
        session.set_persistent(remember.persistent).await?;
        Ok(Reply::no_content())
    })
    .await
}

/// `GET /flash`: takes every pending flash.
pub async fn flash_take(session: &Session) -> Reply {
    reply(async {
        let flashes: Vec<Flash> = take_flashes(session).await?;
        Ok(Reply::json(200, &json!(flashes)))
    })
    .await
}

async fn take_flashes(session: &Session) -> Result<Vec<Flash>, SessionError> {
    Ok(session
        .take_all_flashes::<String>()
        .await?
        .into_iter()
        .map(|(kind, message)| Flash { kind, message })
        .collect())
}

/// `POST /flash`: adds a flash.
pub async fn flash_add(session: &Session, body: &[u8]) -> Reply {
    let flash: Flash = match parse(body) {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    reply(async {
        session.flash(&flash.kind, &flash.message).await?;
        Ok(Reply::no_content())
    })
    .await
}

/// `POST /logout`: purges the session.
pub async fn logout(session: &Session) -> Reply {
    reply(async {
        session.purge().await?;
        Ok(Reply::no_content())
    })
    .await
}

/// One of the user's sessions as `GET /sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedSession {
    /// Its opaque handle.
    pub id: String,
    /// Whether it is the caller's.
    pub current: bool,
    /// Sign-in time, Unix seconds.
    pub created: i64,
    /// Last request, Unix seconds (at most a minute behind).
    pub last_seen: i64,
    /// The `User-Agent` it signed in with.
    pub user_agent: Option<String>,
}

impl From<UserSession> for ListedSession {
    fn from(s: UserSession) -> Self {
        ListedSession {
            id: s.handle.to_string(),
            current: s.current,
            created: s.created.unix_timestamp(),
            last_seen: s.last_seen.unix_timestamp(),
            user_agent: s.user_agent,
        }
    }
}

fn not_signed_in() -> Reply {
    Reply::json(401, &json!({ "user": null }))
}

/// Whether the session is signed in (a user and a handle in the user's list).
async fn signed_in(session: &Session) -> Result<bool, SessionError> {
    Ok(session.get(&USER).await?.is_some() && session.user_handle().await?.is_some())
}

async fn listed(session: &Session) -> Result<Vec<ListedSession>, SessionError> {
    Ok(session
        .user_sessions()
        .await?
        .into_iter()
        .map(ListedSession::from)
        .collect())
}

/// `GET /sessions`: the signed-in user's live sessions, most recently seen
/// first; 401 when not signed in.
pub async fn sessions_list(session: &Session) -> Reply {
    reply(async {
        if !signed_in(session).await? {
            return Ok(not_signed_in());
        }
        Ok(Reply::json(200, &json!(listed(session).await?)))
    })
    .await
}

/// `DELETE /sessions/{id}`: ends one of the user's sessions; 404 when the
/// user has no live session with that id.
pub async fn session_end(session: &Session, id: &str) -> Reply {
    reply(async {
        if !signed_in(session).await? {
            return Ok(not_signed_in());
        }
        let no_such = || Reply::json(404, &json!({ "error": "no such session" }));
        let Some(handle) = SessionHandle::parse(id) else {
            return Ok(no_such());
        };
        Ok(if session.end_user_session(&handle).await? {
            Reply::no_content()
        } else {
            no_such()
        })
    })
    .await
}

/// `POST /sessions/revoke-others`: ends every session of the user but this one.
pub async fn sessions_revoke_others(session: &Session) -> Reply {
    reply(async {
        if !signed_in(session).await? {
            return Ok(not_signed_in());
        }
        let revoked = session.end_other_user_sessions().await?;
        Ok(Reply::json(200, &json!({ "revoked": revoked })))
    })
    .await
}

/// `POST /logout-everywhere`: ends every session of the user, this one included.
pub async fn logout_everywhere(session: &Session) -> Reply {
    reply(async {
        if !signed_in(session).await? {
            return Ok(not_signed_in());
        }
        session.end_all_user_sessions().await?;
        Ok(Reply::no_content())
    })
    .await
}

/// `GET /`: the HTML page (flashes are consumed).
pub async fn page(session: &Session) -> Reply {
    reply(async {
        let user = session.get(&USER).await?;
        let n = session.get(&COUNTER).await?.unwrap_or(0);
        let persistent = session.is_persistent().await?;
        let flashes = take_flashes(session).await?;
        let sessions = if user.is_some() {
            listed(session).await?
        } else {
            Vec::new()
        };
        let body = crate::page::render(&crate::page::PageData {
            user: user.as_deref(),
            counter: n,
            persistent,
            flashes: &flashes,
            sessions: &sessions,
        });
        Ok(Reply {
            status: 200,
            content_type: Some("text/html; charset=utf-8"),
            body,
            retry_after: None,
        })
    })
    .await
}
