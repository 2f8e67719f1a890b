//! The three demos are one application: the same answers to the same
//! requests, and sessions that move between them.

use serde_json::json;
use session_tests::{DemoClient, DemoServer, Framework, Response, Setup, SECRET_A};

const FRAMEWORKS: [Framework; 3] = [Framework::Axum, Framework::Actix, Framework::Rocket];

/// `body` with the values that differ on every run (session handles and
/// last-seen times in the page) blanked.
fn without_handles(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = ["data-id=\"", "data-unix=\""]
        .iter()
        .filter_map(|attr| rest.find(attr).map(|i| i + attr.len()))
        .min()
    {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        rest = &rest[rest.find('"').unwrap_or(0)..];
    }
    out.push_str(rest);
    out
}

/// What a client can observe of a response, less what legitimately differs
/// (the `Server` and `Date` headers, token values, session handles).
fn observable(r: &Response) -> serde_json::Value {
    let mut headers: Vec<String> = r
        .headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| {
            !matches!(
                k.as_str(),
                "server" | "date" | "content-length" | "connection" | "keep-alive"
            )
        })
        .collect();
    headers.sort();
    let cookies: Vec<String> = r
        .set_cookies()
        .iter()
        .map(|c| {
            let mut parts: Vec<&str> = c.split(';').map(str::trim).skip(1).collect();
            parts.sort();
            let empty = c.starts_with("sid=;");
            format!(
                "{} {}",
                if empty { "removed" } else { "set" },
                parts.join("; ")
            )
        })
        .collect();
    json!({
        "status": r.status,
        "content_type": r.content_type(),
        "body": without_handles(&r.body),
        "headers": headers,
        "cookies": cookies,
    })
}

async fn script(client: &DemoClient) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    let steps: Vec<(&str, &str, Option<&str>)> = vec![
        ("GET", "/health", None),
        ("GET", "/counter/peek", None),
        ("GET", "/counter", None),
        ("GET", "/counter", None),
        ("GET", "/whoami", None),
        ("POST", "/login", Some(r#"{"user": "ada"}"#)),
        ("POST", "/login", Some(r#"{"nope": 1}"#)),
        ("GET", "/whoami", None),
        ("POST", "/kv/thing", Some(r#"{"a": [1, 2.5, null]}"#)),
        ("GET", "/kv/thing", None),
        ("GET", "/kv/missing", None),
        ("POST", "/kv/bad", Some("{oops")),
        (
            "POST",
            "/flash",
            Some(r#"{"kind": "error", "message": "x"}"#),
        ),
        ("POST", "/remember", Some(r#"{"persistent": true}"#)),
        ("GET", "/", None),
        ("GET", "/flash", None),
        ("POST", "/remember", Some(r#"{"persistent": false}"#)),
        ("POST", "/logout", None),
        ("GET", "/whoami", None),
    ];
    for (method, path, body) in steps {
        let r = client.request(method, path, body).await;
        seen.push(json!({ "request": format!("{method} {path}"), "response": observable(&r) }));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_demos_answer_alike() {
    for store in ["memory", "cookie"] {
        for transport in ["cookie", "header"] {
            let mut transcripts = Vec::new();
            for framework in FRAMEWORKS {
                let server = Setup::new(framework, store, transport).start(&[]);
                transcripts.push((framework, script(&server.client()).await));
            }
            let (first, reference) = &transcripts[0];
            for (framework, transcript) in &transcripts[1..] {
                for (a, b) in reference.iter().zip(transcript) {
                    assert_eq!(
                        a, b,
                        "{first:?} and {framework:?} differ ({store}, {transport})"
                    );
                }
            }
        }
    }
}

async fn share_sessions(setup_store: &'static str) {
    // Signed-in cookie sessions are checked against their users' index,
    // which the servers share in Redis.
    let setup = |f| Setup::new(f, setup_store, "cookie").user_index("redis");
    // A name of this test alone: tests may share one store.
    let user = session_tests::scenarios::unique_user("ada");
    let backing = setup(Framework::Axum).backing();
    let servers: Vec<DemoServer> = FRAMEWORKS
        .iter()
        .map(|f| setup(*f).start_on(&backing, SECRET_A, None, &[]))
        .collect();
    let on_axum = servers[0].client();
    on_axum.post("/login", json!({"user": user})).await;
    assert_eq!(on_axum.get("/counter").await.json(), json!({"n": 1}));

    let on_actix = servers[1].adopt(&on_axum);
    assert_eq!(on_actix.get("/whoami").await.json(), json!({"user": user}));
    assert_eq!(on_actix.get("/counter").await.json(), json!({"n": 2}));
    on_actix
        .post("/flash", json!({"kind": "info", "message": "from actix"}))
        .await;

    let on_rocket = servers[2].adopt(&on_actix);
    assert_eq!(on_rocket.get("/counter").await.json(), json!({"n": 3}));
    let flashes = on_rocket.get("/flash").await.json();
    assert_eq!(
        flashes,
        json!([{"kind": "info", "message": format!("welcome {user}")}, {"kind": "info", "message": "from actix"}])
    );

    let back = servers[0].adopt(&on_rocket);
    if setup_store == "cascade" {
        // The first demo's own memory tier may still hold its older copy:
        // stale reads are bounded by the tier's TTL.
        tokio::time::sleep(
            examples::config::CASCADE_CACHE_TTL + std::time::Duration::from_millis(200),
        )
        .await;
    }
    assert_eq!(back.get("/counter/peek").await.json(), json!({"n": 3}));

    // A session listed and ended from a server of another framework.
    let phone = servers[1].client_as("phone");
    phone.post("/login", json!({"user": user})).await;
    let on_rocket = servers[2].adopt(&back);
    let listed = on_rocket.get("/sessions").await.json();
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let phone_id = listed
        .iter()
        .find(|s| s["user_agent"] == json!("phone"))
        .expect("the phone's session")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        on_rocket
            .delete(&format!("/sessions/{phone_id}"))
            .await
            .status,
        204
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(phone.get("/whoami").await.status, 401, "ended everywhere");

    // A logout on one framework ends the session on all of them (a sealed
    // cookie too: its entry in the index is gone).
    let token = back.token();
    servers[2].adopt(&back).post("/logout", json!(null)).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let replay = servers[1].client();
    replay.set_token(token);
    assert_eq!(replay.get("/whoami").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memcached_session_moves_between_frameworks() {
    share_sessions("memcache").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_cookie_session_moves_between_frameworks() {
    share_sessions("cookie").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_session_moves_between_frameworks() {
    share_sessions("cascade").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_session_moves_between_frameworks() {
    share_sessions("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_session_moves_between_frameworks() {
    share_sessions("postgres").await;
}
