//! `GET /metrics` on the three demos: the session counters and store
//! latencies in Prometheus text format once the recorder is installed (what
//! `METRICS=1` does at start-up), and 404 before. Its own test binary: the
//! recorder is process-wide.

use session_tests::{DemoServer, Framework, SECRET_A};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_format_when_turned_on() {
    let vars = [("SESSION_STORE", "memory"), ("SESSION_SECRET", SECRET_A)];
    let before = DemoServer::start(Framework::Axum, &vars);
    let off = before.client().get("/metrics").await;
    assert_eq!(off.status, 404, "{}", off.body);
    assert!(off.body.contains("METRICS=1"), "{}", off.body);
    drop(before);

    examples::app::install_metrics();
    for framework in [Framework::Axum, Framework::Actix, Framework::Rocket] {
        let server = DemoServer::start(framework, &vars);
        let client = server.client();
        for _ in 0..3 {
            assert_eq!(client.get("/counter").await.status, 200);
        }
        let forged = server.client();
        forged.set_token(Some("not-a-token".into()));
        assert_eq!(forged.get("/counter/peek").await.status, 200);
        let metrics = client.get("/metrics").await;
        assert_eq!(metrics.status, 200, "{framework:?}");
        assert!(
            metrics.content_type().starts_with("text/plain"),
            "{framework:?}"
        );
        let body = &metrics.body;
        for expected in [
            "session_loads_total{result=\"loaded\"}",
            "session_loads_total{result=\"refused\"}",
            "session_new_total",
            "session_outcomes_total{outcome=\"save\"}",
            "session_refused_tokens_total{reason=",
            "session_store_seconds_count{op=\"load\",store=\"memory\"}",
            "session_store_seconds_count{op=\"save\",store=\"memory\"}",
        ] {
            assert!(
                body.contains(expected),
                "{framework:?}: no {expected} in\n{body}"
            );
        }
        // Nothing secret: no token, no key.
        let token = client.token().expect("a session");
        assert!(!body.contains(&token), "{framework:?}: token in metrics");
    }
}
