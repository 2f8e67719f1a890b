//! axum + axum-extra `PrivateCookieJar` holding the counter.

use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar};
use session_bench_peers::{counter_body, serve_axum};

#[derive(Clone)]
struct State {
    key: Key,
}

impl FromRef<State> for Key {
    fn from_ref(state: &State) -> Key {
        state.key.clone()
    }
}

fn read(jar: &PrivateCookieJar) -> u64 {
    jar.get("n")
        .and_then(|c| c.value().parse().ok())
        .unwrap_or(0)
}

async fn peek(jar: PrivateCookieJar) -> String {
    counter_body(read(&jar))
}

async fn counter(jar: PrivateCookieJar) -> (PrivateCookieJar, String) {
    let n = read(&jar) + 1;
    let mut cookie = Cookie::new("n", n.to_string());
    cookie.set_http_only(true);
    cookie.set_path("/");
    (jar.add(cookie), counter_body(n))
}

#[tokio::main]
async fn main() {
    let state = State {
        key: Key::from(&[7u8; 64]),
    };
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/counter/peek", get(peek))
        .route("/counter", get(counter))
        .with_state(state);
    serve_axum(app).await;
}
