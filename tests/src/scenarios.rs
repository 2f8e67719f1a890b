//! The demo contract as scenarios; each starts its own server from a
//! [`Setup`] and panics on any deviation.

use std::sync::Arc;

use serde_json::json;

use crate::{Setup, SECRET_A, SECRET_B};

/// `GET /health` is 200 `ok` and never sets a cookie, with or without a session.
pub async fn health(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    let r = client.get("/health").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert!(r.set_cookies().is_empty());
    client.get("/counter").await;
    let token = client.token();
    let r = client.get("/health").await;
    assert!(r.set_cookies().is_empty() && r.headers.get("x-session-token").is_none());
    assert_eq!(client.token(), token);
    client.set_token(Some("garbage".into()));
    let r = client.get("/health").await;
    assert_eq!(r.status, 200);
    assert!(r.set_cookies().is_empty());
}

/// `/counter` counts from 1; `/counter/peek` reads without writing.
pub async fn counter(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    let r = client.get("/counter/peek").await;
    assert_eq!((r.status, r.json()), (200, json!({"n": 0})));
    assert!(
        r.set_cookies().is_empty(),
        "peek on a new session sets nothing"
    );
    assert!(client.token().is_none());
    for n in 1..=3 {
        let r = client.get("/counter").await;
        assert_eq!((r.status, r.json()), (200, json!({"n": n})));
        assert!(r.content_type().starts_with("application/json"));
    }
    assert!(client.token().is_some());
    let r = client.get("/counter/peek").await;
    assert_eq!(r.json(), json!({"n": 3}));
    assert!(r.set_cookies().is_empty(), "peek writes no cookie");
    assert!(r.headers.get("x-session-token").is_none());
    // Another client has its own session.
    assert_eq!(
        server.client().get("/counter").await.json(),
        json!({"n": 1})
    );
}

/// `/kv/{key}` stores any JSON value exactly, 404 for a missing key.
pub async fn key_values(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    assert_eq!(client.get("/kv/missing").await.status, 404);
    let value = json!({"big": u64::MAX, "neg": i64::MIN, "float": 0.1, "list": [1, "two", null, true], "nested": {"a": {"b": []}}});
    let r = client.post("/kv/thing", value.clone()).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let r = client.get("/kv/thing").await;
    assert_eq!((r.status, r.json()), (200, value));
    client.post("/kv/thing", json!("replaced")).await;
    assert_eq!(client.get("/kv/thing").await.json(), json!("replaced"));
    // The kv space does not collide with the demo's own keys.
    client.post("/kv/user", json!("mallory")).await;
    assert_eq!(client.get("/whoami").await.status, 401);
}

/// Malformed JSON and missing fields are 400 with a JSON body, never 500.
pub async fn bad_json(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    for (path, body) in [
        ("/kv/x", "{not json"),
        ("/kv/x", ""),
        ("/login", "{}"),
        ("/login", r#"{"user": 5}"#),
        ("/login", "[1,2"),
        ("/remember", r#"{"persistent": "yes"}"#),
        ("/flash", r#"{"kind": "info"}"#),
    ] {
        let r = client.post_raw(path, body).await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{path}: {}", r.body);
    }
}

/// Login sets the user, renews the token (the old one dies on server
/// stores), greets once; whoami follows.
pub async fn login_and_whoami(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    let r = client.get("/whoami").await;
    assert_eq!((r.status, r.json()), (401, json!({"user": null})));
    client.get("/counter").await;
    let before = client.token().expect("a session before login");
    let r = client.post("/login", json!({"user": "ada"})).await;
    assert_eq!((r.status, r.json()), (200, json!({"user": "ada"})));
    let after = client.token().expect("a session after login");
    assert_ne!(before, after, "login renews the token");
    assert_eq!(client.get("/whoami").await.json(), json!({"user": "ada"}));
    assert_eq!(
        client.get("/counter/peek").await.json(),
        json!({"n": 1}),
        "data kept across renewal"
    );
    if setup.server_side() {
        let replay = server.client();
        replay.set_token(Some(before));
        assert_eq!(
            replay.get("/counter/peek").await.json(),
            json!({"n": 0}),
            "pre-login token is dead"
        );
    }
    // Logging in again as someone else replaces the user.
    client.post("/login", json!({"user": "grace"})).await;
    assert_eq!(client.get("/whoami").await.json(), json!({"user": "grace"}));
}

/// Flashes last until read, in order, all kinds.
pub async fn flashes(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    assert_eq!(client.get("/flash").await.json(), json!([]));
    client.post("/login", json!({"user": "ada"})).await;
    assert_eq!(
        client
            .post("/flash", json!({"kind": "error", "message": "disk full"}))
            .await
            .status,
        204
    );
    client
        .post("/flash", json!({"kind": "info", "message": "second"}))
        .await;
    let r = client.get("/flash").await;
    assert_eq!(
        r.json(),
        json!([
            {"kind": "info", "message": "welcome ada"},
            {"kind": "error", "message": "disk full"},
            {"kind": "info", "message": "second"}
        ])
    );
    assert_eq!(client.get("/flash").await.json(), json!([]));
    assert_eq!(client.get("/whoami").await.json(), json!({"user": "ada"}));
}

/// Remember me switches between a 30-day persistent cookie and a session cookie.
pub async fn remember_me(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    client.get("/counter").await;
    let r = client.post("/remember", json!({"persistent": true})).await;
    assert_eq!(r.status, 204);
    if setup.cookie_transport() {
        let cookie = r
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("sid="))
            .expect("cookie re-sent");
        assert!(cookie.contains("Max-Age=2592000"), "{cookie}");
        assert_attributes(&cookie, false);
    }
    let r = client.post("/remember", json!({"persistent": false})).await;
    if setup.cookie_transport() {
        let cookie = r
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("sid="))
            .expect("cookie re-sent");
        assert!(!cookie.contains("Max-Age"), "{cookie}");
    }
    assert_eq!(client.get("/counter").await.json(), json!({"n": 2}));
}

fn assert_attributes(cookie: &str, secure: bool) {
    let parts: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(parts.contains(&"HttpOnly"), "{cookie}");
    assert!(parts.contains(&"SameSite=Lax"), "{cookie}");
    assert!(parts.contains(&"Path=/"), "{cookie}");
    assert_eq!(parts.contains(&"Secure"), secure, "{cookie}");
}

/// Cookie attributes, and `SESSION_COOKIE_SECURE=true`.
pub async fn cookie_attributes(setup: &Setup) {
    if !setup.cookie_transport() {
        let server = setup.start(&[]);
        let r = server.client().get("/counter").await;
        assert!(
            r.set_cookies().is_empty(),
            "header transport sets no cookie"
        );
        assert!(r.headers.get("x-session-token").is_some());
        return;
    }
    let server = setup.start(&[]);
    let r = server.client().get("/counter").await;
    let cookie = r.set_cookies().pop().expect("cookie");
    assert!(
        !cookie.contains("Max-Age"),
        "browser-session cookie by default: {cookie}"
    );
    assert_attributes(&cookie, false);
    assert!(cookie.len() < 4096);
    let secure = setup.start(&[("SESSION_COOKIE_SECURE", "true")]);
    let cookie = secure
        .client()
        .get("/counter")
        .await
        .set_cookies()
        .pop()
        .expect("cookie");
    assert_attributes(&cookie, true);
}

/// Logout purges: removal cookie, user gone, the old token refused.
pub async fn logout(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    client.post("/login", json!({"user": "ada"})).await;
    client.get("/counter").await;
    let token = client.token();
    let r = client.post("/logout", json!(null)).await;
    assert_eq!(r.status, 204);
    if setup.cookie_transport() {
        let cookie = r.set_cookies().pop().expect("removal cookie");
        assert!(
            cookie.starts_with("sid=;") && cookie.contains("Max-Age=0"),
            "{cookie}"
        );
    } else {
        assert_eq!(
            r.headers
                .get("x-session-token")
                .expect("header")
                .to_str()
                .unwrap(),
            ""
        );
    }
    assert!(client.token().is_none());
    assert_eq!(client.get("/whoami").await.status, 401);
    assert_eq!(client.get("/counter/peek").await.json(), json!({"n": 0}));
    if setup.server_side() {
        let replay = server.client();
        replay.set_token(token);
        assert_eq!(
            replay.get("/whoami").await.status,
            401,
            "replayed token after logout refused"
        );
    }
}

/// Tampered, truncated, foreign and garbage tokens give a fresh session.
pub async fn bad_tokens(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    client.get("/counter").await;
    let token = client.token().expect("token");
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let foreign = {
        let other = setup.start_on(&setup.backing(), SECRET_B, None, &[]);
        let c = other.client();
        c.get("/counter").await;
        c.token().expect("foreign token")
    };
    for bad in [
        String::from_utf8(tampered).unwrap(),
        token[..token.len() - 5].to_string(),
        foreign,
        "garbage".to_string(),
        "x".repeat(4000),
        "AAAA".to_string(),
    ] {
        let c = server.client();
        c.set_token(Some(bad));
        let r = c.get("/counter").await;
        assert_eq!((r.status, r.json()), (200, json!({"n": 1})));
    }
}

/// `GET /` renders user, counter and flashes, and consumes the flashes.
pub async fn page(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    client.post("/login", json!({"user": "<ada>"})).await;
    client.get("/counter").await;
    client.get("/counter").await;
    let r = client.get("/").await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type().starts_with("text/html"),
        "{}",
        r.content_type()
    );
    assert!(
        r.body.contains(r#"<strong id="user">&lt;ada&gt;</strong>"#),
        "{}",
        r.body
    );
    assert!(r.body.contains(r#"<span id="counter">2</span>"#));
    assert!(r.body.contains("welcome &lt;ada&gt;"));
    assert!(r.body.contains(r#"id="login-form""#) && r.body.contains(r#"id="logout-button""#));
    assert!(r.body.contains(r#"id="remember""#) && r.body.contains(r#"id="counter-button""#));
    let r = client.get("/").await;
    assert!(
        !r.body.contains("welcome"),
        "flash consumed by the first render"
    );
    assert_eq!(client.get("/flash").await.json(), json!([]));
}

/// 24 concurrent requests of one session writing different keys all land
/// (server stores merge; a cookie holds only what its last response set).
pub async fn concurrent_writes(setup: &Setup) {
    let server = setup.start(&[]);
    let client = Arc::new(server.client());
    client.get("/counter").await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = client.post(&format!("/kv/k{i}"), json!(i)).await;
            assert_eq!(r.status, 204);
        }));
    }
    for t in tasks {
        t.await.expect("request task");
    }
    if setup.server_side() {
        for i in 0..24 {
            assert_eq!(
                client.get(&format!("/kv/k{i}")).await.json(),
                json!(i),
                "k{i} lost"
            );
        }
    }
    assert_eq!(client.get("/counter/peek").await.json(), json!({"n": 1}));
}

/// Rotation across a restart: the old secret listed in
/// `SESSION_OLD_SECRETS` keeps users in and their token is re-sealed;
/// dropped, it logs them out. Needs sessions that survive a restart, so on
/// the memory store it checks only that a restart starts afresh.
pub async fn key_rotation(setup: &Setup) {
    let backing = setup.backing();
    let (client, untouched) = {
        let server = setup.start_on(&backing, SECRET_A, None, &[]);
        let client = server.client();
        client.post("/login", json!({"user": "ada"})).await;
        let untouched = server.client();
        untouched.post("/login", json!({"user": "grace"})).await;
        (client, untouched)
    };
    let before = client.token();
    let rotated = setup.start_on(&backing, SECRET_B, Some(SECRET_A), &[]);
    let client = rotated.adopt(&client);
    if !setup.shared_between_servers() {
        assert_eq!(
            client.get("/whoami").await.status,
            401,
            "memory sessions (and signed-in cookie sessions with a memory index) end with the process"
        );
        return;
    }
    assert_eq!(
        client.get("/whoami").await.json(),
        json!({"user": "ada"}),
        "old secret still opens"
    );
    assert_ne!(
        client.token(),
        before,
        "token re-sealed with the new primary"
    );
    // A session signed in again under the new key survives the old key's
    // drop; one signed in under the old key alone must sign in again (its
    // entry in the users' index was keyed with the old key).
    let again = rotated.adopt(&client);
    again.post("/login", json!({"user": "ada"})).await;
    assert_eq!(again.get("/counter/peek").await.status, 200);
    // Used during the rotation (its token re-sealed, its record moved),
    // never signed in again.
    let pre_rotation = rotated.adopt(&untouched);
    assert_eq!(
        pre_rotation.get("/whoami").await.json(),
        json!({"user": "grace"})
    );
    drop(rotated);
    let new_only = setup.start_on(&backing, SECRET_B, None, &[]);
    let moved = new_only.adopt(&again);
    assert_eq!(
        moved.get("/whoami").await.json(),
        json!({"user": "ada"}),
        "re-sealed token opens with the new secret alone"
    );
    let old_sign_in = new_only.adopt(&pre_rotation);
    assert_eq!(
        old_sign_in.get("/whoami").await.status,
        401,
        "signed in under the dropped key: signs in again"
    );
    let stale = new_only.client();
    stale.set_token(before);
    assert_eq!(
        stale.get("/whoami").await.status,
        401,
        "old token refused once its secret is dropped"
    );
}

/// 64 concurrent writers of different keys on one session, three writes
/// each: every answer is 2xx and, on server stores, no key is lost.
pub async fn contended_writers(setup: &Setup) {
    let server = setup.start(&[]);
    let client = Arc::new(server.client());
    client.get("/counter").await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                for round in 0..3 {
                    let r = client.post(&format!("/kv/w{i}"), json!(round)).await;
                    assert_eq!(r.status, 204, "writer {i} round {round}: {}", r.body);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer task");
    }
    if setup.server_side() {
        for i in 0..64 {
            assert_eq!(
                client.get(&format!("/kv/w{i}")).await.json(),
                json!(2),
                "w{i} lost"
            );
        }
    }
}

/// 32 clients × 5 concurrent `/counter` on one session: every answer is
/// 200 and, on server stores, the counter counts every request.
pub async fn contended_counter(setup: &Setup) {
    let server = setup.start(&[]);
    let client = Arc::new(server.client());
    client.get("/counter").await;
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    let r = client.get("/counter").await;
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("counter task");
    }
    if setup.server_side() {
        assert_eq!(
            client.get("/counter/peek").await.json(),
            json!({"n": 161}),
            "1 + 32 × 5 increments"
        );
    }
}

/// Responses that read a session carry `Vary` on the token's carrier and
/// `Cache-Control: private`; `/health` carries neither.
pub async fn cache_headers(setup: &Setup) {
    let server = setup.start(&[]);
    let client = server.client();
    let header = |r: &crate::Response, name: &str| -> Vec<String> {
        r.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    };
    let carrier = if setup.cookie_transport() {
        "Cookie"
    } else {
        "x-session-token"
    };
    let health = client.get("/health").await;
    assert!(header(&health, "vary").is_empty(), "{:?}", health.headers);
    assert!(header(&health, "cache-control").is_empty());
    for path in ["/counter", "/counter/peek", "/whoami"] {
        let r = client.get(path).await;
        let vary = header(&r, "vary");
        assert!(
            vary.iter().any(|v| v.eq_ignore_ascii_case(carrier)),
            "{path}: vary {vary:?}"
        );
        assert_eq!(header(&r, "cache-control"), ["private"], "{path}");
    }
}

/// A session too large for its cookie or store is a 413 with a JSON body,
/// and the session stays as it was.
pub async fn too_large(setup: &Setup) {
    if setup.store.contains('+') || setup.store == "cascade" {
        return; // a cascade skips a tier for records over its limit
    }
    let server = setup.start(&[]);
    let client = server.client();
    client.get("/counter").await;
    // Over the 4096-byte cookie limit; over the stores' 1 MiB record limit.
    let size = if setup.server_side() {
        1_200_000
    } else {
        5_000
    };
    let r = client
        .post_raw("/kv/big", &format!("\"{}\"", "x".repeat(size)))
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.json()["error"].is_string(), "{}", r.body);
    assert_eq!(client.get("/kv/big").await.status, 404);
    assert_eq!(client.get("/counter/peek").await.json(), json!({"n": 1}));
}

/// A user name no other test uses (test servers may share one store, and
/// with it the users' index).
pub fn unique_user(name: &str) -> String {
    session_backends::conformance::unique_key(name)
        .as_str()
        .to_owned()
}

/// The ids `GET /sessions` lists, and the one marked current.
fn listed_ids(r: &crate::Response) -> (Vec<String>, Option<String>) {
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    let list = list.as_array().expect("a list").clone();
    let ids = list
        .iter()
        .map(|s| s["id"].as_str().expect("an id").to_owned())
        .collect();
    let current = list
        .iter()
        .find(|s| s["current"] == json!(true))
        .map(|s| s["id"].as_str().expect("an id").to_owned());
    (ids, current)
}

/// How long another server may take to see an end (its member cache).
const OTHER_SERVER_SEES_END: std::time::Duration = std::time::Duration::from_millis(1200);

/// A user's sessions: listed with their user agents on every server
/// sharing the store, this one marked; one ended by id is refused on its
/// next request (on another server within a second), its token dead even
/// replayed; revoke-others keeps only the caller; logout-everywhere ends
/// all; login as another user moves the session, logout takes it off.
pub async fn user_sessions(setup: &Setup) {
    // Names of this run alone: test servers may share one store.
    let (user, other_user) = (unique_user("ada"), unique_user("grace"));
    let backing = setup.backing();
    let first = setup.start_on(&backing, SECRET_A, None, &[]);
    let second = setup
        .shared_between_servers()
        .then(|| setup.start_on(&backing, SECRET_A, None, &[]));
    let second = second.as_ref().unwrap_or(&first);
    let laptop = first.client_as("laptop-agent/1.0");
    let phone = second.client_as("phone-agent/2.0");
    let r = laptop.get("/sessions").await;
    assert_eq!((r.status, r.json()), (401, json!({"user": null})));
    assert_eq!(
        laptop.post_empty("/sessions/revoke-others").await.status,
        401
    );
    assert_eq!(laptop.post_empty("/logout-everywhere").await.status, 401);
    assert_eq!(
        laptop
            .delete("/sessions/AAAAAAAAAAAAAAAAAAAAAA")
            .await
            .status,
        401
    );

    laptop.post("/login", json!({"user": user})).await;
    phone.post("/login", json!({"user": user})).await;
    let r = laptop.get("/sessions").await;
    let (ids, laptop_id) = listed_ids(&r);
    assert_eq!(ids.len(), 2, "both sign-ins listed: {}", r.body);
    let laptop_id = laptop_id.expect("this session is marked current");
    let entry = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!(laptop_id))
        .cloned()
        .unwrap();
    assert_eq!(entry["user_agent"], json!("laptop-agent/1.0"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for field in ["created", "last_seen"] {
        let t = entry[field].as_i64().expect("unix seconds");
        assert!((now - 120..=now + 5).contains(&t), "{field}: {t}");
    }
    let token = laptop.token().expect("a token");
    for id in &ids {
        assert_eq!(id.len(), 22);
        assert!(!token.contains(id.as_str()) && !id.contains(&token));
    }
    let (phone_ids, phone_id) = listed_ids(&phone.get("/sessions").await);
    let phone_id = phone_id.expect("phone marked on its own list");
    assert_eq!(
        {
            let mut a = phone_ids.clone();
            a.sort();
            a
        },
        {
            let mut b = ids.clone();
            b.sort();
            b
        },
        "the same ids on every server"
    );
    // Ids are stable across writes and remember-me.
    laptop.get("/counter").await;
    laptop.post("/remember", json!({"persistent": true})).await;
    assert_eq!(
        listed_ids(&laptop.get("/sessions").await).1,
        Some(laptop_id.clone())
    );

    // One ended from the laptop; the phone (on the other server) is out.
    for bad in ["nope", "AAAAAAAAAAAAAAAAAAAAAA", "..%2F..%2Fetc"] {
        let r = laptop.delete(&format!("/sessions/{bad}")).await;
        assert_eq!(r.status, 404, "{bad}: {}", r.body);
        assert!(r.json()["error"].is_string());
    }
    let phone_token = phone.token();
    assert_eq!(
        laptop.delete(&format!("/sessions/{phone_id}")).await.status,
        204
    );
    assert_eq!(
        laptop.delete(&format!("/sessions/{phone_id}")).await.status,
        404
    );
    tokio::time::sleep(OTHER_SERVER_SEES_END).await;
    assert_eq!(
        phone.get("/whoami").await.status,
        401,
        "an ended session is refused"
    );
    let replay = second.client();
    replay.set_token(phone_token);
    assert_eq!(
        replay.get("/whoami").await.status,
        401,
        "its token stays dead"
    );
    assert_eq!(
        listed_ids(&laptop.get("/sessions").await).0,
        std::slice::from_ref(&laptop_id)
    );

    // Revoke the others.
    phone.post("/login", json!({"user": user})).await;
    let tablet = first.client_as("tablet");
    tablet.post("/login", json!({"user": user})).await;
    let r = laptop.post_empty("/sessions/revoke-others").await;
    assert_eq!((r.status, r.json()), (200, json!({"revoked": 2})));
    tokio::time::sleep(OTHER_SERVER_SEES_END).await;
    assert_eq!(phone.get("/whoami").await.status, 401);
    assert_eq!(tablet.get("/whoami").await.status, 401);
    assert_eq!(laptop.get("/whoami").await.json(), json!({"user": user}));

    // Logout everywhere: this one too, with a removal cookie.
    phone.post("/login", json!({"user": user})).await;
    let laptop_token = laptop.token();
    let r = laptop.post_empty("/logout-everywhere").await;
    assert_eq!(r.status, 204);
    if setup.cookie_transport() {
        assert!(
            r.set_cookies().iter().any(|c| c.contains("Max-Age=0")),
            "removal cookie"
        );
    }
    assert_eq!(laptop.get("/whoami").await.status, 401);
    let replay = first.client();
    replay.set_token(laptop_token);
    assert_eq!(
        replay.get("/whoami").await.status,
        401,
        "a validly sealed token of an ended session is refused"
    );
    tokio::time::sleep(OTHER_SERVER_SEES_END).await;
    assert_eq!(phone.get("/whoami").await.status, 401);

    // Logging in as another user moves the session; logout takes it off.
    let ada = first.client();
    ada.post("/login", json!({"user": user})).await;
    let mover = second.client();
    mover.post("/login", json!({"user": user})).await;
    assert_eq!(listed_ids(&ada.get("/sessions").await).0.len(), 2);
    mover.post("/login", json!({"user": other_user})).await;
    assert_eq!(
        listed_ids(&ada.get("/sessions").await).0.len(),
        1,
        "moved to grace"
    );
    assert_eq!(listed_ids(&mover.get("/sessions").await).0.len(), 1);
    let second_ada = second.client();
    second_ada.post("/login", json!({"user": user})).await;
    assert_eq!(second_ada.post_empty("/logout").await.status, 204);
    assert_eq!(
        listed_ids(&ada.get("/sessions").await).0.len(),
        1,
        "logout takes it off"
    );
}

/// `SESSION_MAX_PER_USER`: a login past the limit ends the user's least
/// recently seen session.
pub async fn max_sessions_per_user(setup: &Setup) {
    let user = unique_user("ada");
    let server = setup.start(&[("SESSION_MAX_PER_USER", "2")]);
    let (oldest, middle, newest) = (server.client(), server.client(), server.client());
    oldest.post("/login", json!({"user": user})).await;
    // Last seen is kept in whole seconds: the oldest must be older.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    middle.post("/login", json!({"user": user})).await;
    newest.post("/login", json!({"user": user})).await;
    assert_eq!(
        oldest.get("/whoami").await.status,
        401,
        "the least recently seen went"
    );
    assert_eq!(middle.get("/whoami").await.json(), json!({"user": user}));
    let (ids, _) = listed_ids(&newest.get("/sessions").await);
    assert_eq!(ids.len(), 2);
}

/// Every scenario above, one after the other (`tests/contract.rs` runs
/// them as tests of their own; this is for a setup that one test builds,
/// such as a Redis Cluster).
pub async fn every_scenario(setup: &Setup) {
    health(setup).await;
    counter(setup).await;
    key_values(setup).await;
    bad_json(setup).await;
    login_and_whoami(setup).await;
    flashes(setup).await;
    remember_me(setup).await;
    cookie_attributes(setup).await;
    logout(setup).await;
    bad_tokens(setup).await;
    page(setup).await;
    concurrent_writes(setup).await;
    key_rotation(setup).await;
    contended_writers(setup).await;
    contended_counter(setup).await;
    cache_headers(setup).await;
    too_large(setup).await;
    user_sessions(setup).await;
    max_sessions_per_user(setup).await;
}
