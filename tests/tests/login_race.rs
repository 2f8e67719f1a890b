//! Requests racing a login: sixteen clients keep using the old cookie while
//! one of them logs in (which renews the session id). A request that loaded
//! the session before the renewal and saves after finds it gone; it must not
//! answer with a removal cookie, which would reach the browser after the
//! login's new cookie and log the user out right after logging in.

use std::sync::Arc;

use session_tests::{Framework, Setup};

async fn race(setup: Setup) {
    let server = setup.start(&[]);
    let user = server.client();
    assert_eq!(user.get("/counter").await.status, 200);
    let old_token = user.token().expect("a session");

    let racers: Vec<_> = (0..16)
        .map(|_| {
            let racer = Arc::new(server.adopt(&user));
            tokio::spawn(async move {
                let mut removals = Vec::new();
                for _ in 0..5 {
                    let response = racer.get("/counter").await;
                    assert!(
                        [200, 503].contains(&response.status),
                        "{}: {}",
                        response.status,
                        response.body
                    );
                    removals.extend(
                        response
                            .set_cookies()
                            .into_iter()
                            .filter(|c| c.starts_with("sid=;") || c.contains("Max-Age=0")),
                    );
                }
                removals
            })
        })
        .collect();
    let login = user
        .post("/login", serde_json::json!({ "user": "ada" }))
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let new_token = user.token().expect("the login's cookie");
    assert_ne!(new_token, old_token, "login renews the id");

    let mut removals = Vec::new();
    for racer in racers {
        removals.extend(racer.await.expect("racer"));
    }
    assert!(
        removals.is_empty(),
        "{setup:?}: {} removal cookies sent to requests racing the login: {removals:?}",
        removals.len()
    );
    // The login holds: the new cookie names the logged-in user.
    let whoami = user.get("/whoami").await;
    assert_eq!(whoami.json()["user"], "ada", "{}", whoami.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_racing_a_login_send_no_removal_cookie() {
    for framework in [Framework::Axum, Framework::Actix, Framework::Rocket] {
        for store in ["memory", "memcache"] {
            race(Setup::new(framework, store, "cookie")).await;
        }
    }
}
