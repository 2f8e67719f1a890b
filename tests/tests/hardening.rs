//! The demo's answers when requests race a logout across servers, when the
//! authoritative store stalls under concurrent writes, and with a 12-year
//! idle timeout: on every framework, over real servers and stores.

use std::sync::Arc;
use std::time::Duration;

use session_tests::datastores::PostgresProcess;
use session_tests::{DemoServer, Framework, Setup, SECRET_A};

const FRAMEWORKS: [Framework; 3] = [Framework::Axum, Framework::Actix, Framework::Rocket];

/// Two servers share `memory+memcache+postgres`; twenty users each log out
/// on one while four clients of the same session read it on both. Once the
/// other server's memory tier has let its copy go (its 1 s TTL), the
/// logged-out token opens nothing on either server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_raced_by_readers_on_two_servers_stays_a_logout() {
    for framework in FRAMEWORKS {
        let setup = Setup::new(framework, "memory+memcache+postgres", "cookie");
        let backing = setup.backing();
        let here = Arc::new(setup.start_on(&backing, SECRET_A, None, &[]));
        let there = Arc::new(
            Setup::new(Framework::Axum, setup.store, setup.transport).start_on(
                &backing,
                SECRET_A,
                None,
                &[],
            ),
        );
        let rounds: Vec<_> = (0..20)
            .map(|_| {
                let (here, there) = (here.clone(), there.clone());
                tokio::spawn(async move {
                    let user = here.client();
                    assert_eq!(user.get("/counter").await.status, 200);
                    let token = user.token().expect("a session");
                    let readers: Vec<_> = (0..4)
                        .map(|i| {
                            let server = if i % 2 == 0 { &here } else { &there };
                            let reader = server.adopt(&user);
                            tokio::spawn(async move {
                                for _ in 0..5 {
                                    let r = reader.get("/counter/peek").await;
                                    assert!([200, 503].contains(&r.status), "{}", r.body);
                                }
                            })
                        })
                        .collect();
                    let out = user.post("/logout", serde_json::json!({})).await;
                    assert_eq!(out.status, 204, "{}", out.body);
                    for reader in readers {
                        reader.await.unwrap();
                    }
                    token
                })
            })
            .collect();
        let mut tokens = Vec::new();
        for round in rounds {
            tokens.push(round.await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        for token in tokens {
            for server in [&here, &there] {
                let replay = server.client();
                replay.set_token(Some(token.clone()));
                let r = replay.get("/counter/peek").await;
                assert_eq!(
                    r.json(),
                    serde_json::json!({"n": 0}),
                    "{framework:?}: a logged-out token still opens its session"
                );
            }
        }
    }
}

/// 32 clients of one session each count 5 times while the authoritative
/// store (PostgreSQL, behind memory and memcached) stalls for a second:
/// every answer is 200 or 503, every 200 counted, nothing counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counting_while_the_authoritative_store_stalls_loses_and_doubles_nothing() {
    let postgres = Arc::new(PostgresProcess::start());
    for framework in FRAMEWORKS {
        let memcached = session_tests::memcached::single();
        let server = Arc::new(DemoServer::start(
            framework,
            &[
                ("SESSION_STORE", "memory+memcache+postgres"),
                ("MEMCACHE_SERVERS", memcached.addrs.join(",").as_str()),
                ("DATABASE_URL", postgres.url.as_str()),
                ("SESSION_SECRET", SECRET_A),
            ],
        ));
        let user = server.client();
        assert_eq!(user.get("/counter").await.status, 200);
        let stall = {
            let postgres = postgres.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                postgres.pause();
                tokio::time::sleep(Duration::from_secs(1)).await;
                postgres.resume();
            })
        };
        let clients: Vec<_> = (0..32)
            .map(|_| {
                let client = server.adopt(&user);
                tokio::spawn(async move {
                    let mut ok = 0u64;
                    for _ in 0..5 {
                        let r = client.get("/counter").await;
                        match r.status {
                            200 => ok += 1,
                            503 => assert!(r.body.starts_with('{'), "{}", r.body),
                            other => panic!("{other}: {}", r.body),
                        }
                        tokio::time::sleep(Duration::from_millis(40)).await;
                    }
                    ok
                })
            })
            .collect();
        let mut ok = 1; // the first /counter
        for client in clients {
            ok += client.await.unwrap();
        }
        stall.await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let n = user.get("/counter/peek").await.json()["n"]
            .as_u64()
            .unwrap();
        assert!(
            n >= ok && n <= 1 + 32 * 5,
            "{framework:?}: {ok} answers of 200, 161 requests, the count is {n}"
        );
    }
}

/// A 12-year idle timeout (past 2038, memcached's last absolute time)
/// keeps the session on every store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_twelve_year_idle_timeout_keeps_the_session_on_every_store() {
    let twelve_years = (12 * 365 * 86_400).to_string();
    for (framework, store) in [
        (Framework::Axum, "memcache"),
        (Framework::Actix, "redis"),
        (Framework::Rocket, "postgres"),
        (Framework::Axum, "file"),
        (Framework::Actix, "memory"),
        (Framework::Rocket, "memory+memcache+postgres"),
    ] {
        let server = Setup::new(framework, store, "cookie")
            .start(&[("SESSION_IDLE_SECS", twelve_years.as_str())]);
        let client = server.client();
        for n in 1..=3 {
            let r = client.get("/counter").await;
            assert_eq!(r.status, 200, "{store}: {}", r.body);
            assert_eq!(
                r.json(),
                serde_json::json!({"n": n}),
                "{framework:?} on {store}"
            );
        }
    }
}
