//! Rocket private (encrypted) cookies holding the counter.

use rocket::config::{LogLevel, SecretKey};
use rocket::http::CookieJar;
use rocket::shield::Shield;
use rocket::{get, routes};
use session_bench_peers::{announce, counter_body, port};

fn read(cookies: &CookieJar<'_>) -> u64 {
    cookies
        .get_private("n")
        .and_then(|c| c.value().parse().ok())
        .unwrap_or(0)
}

#[get("/health")]
fn health() -> &'static str {
    "ok"
}

#[get("/counter/peek")]
fn peek(cookies: &CookieJar<'_>) -> String {
    counter_body(read(cookies))
}

#[get("/counter")]
fn counter(cookies: &CookieJar<'_>) -> String {
    let n = read(cookies) + 1;
    cookies.add_private(("n", n.to_string()));
    counter_body(n)
}

#[rocket::main]
async fn main() {
    let port = port();
    let config = rocket::Config {
        port,
        address: std::net::Ipv4Addr::LOCALHOST.into(),
        log_level: LogLevel::Off,
        cli_colors: false,
        secret_key: SecretKey::from(&[7u8; 64]),
        ..rocket::Config::release_default()
    };
    let rocket = rocket::custom(config)
        .attach(Shield::new())
        .mount("/", routes![health, peek, counter])
        .attach(rocket::fairing::AdHoc::on_liftoff("announce", move |_| {
            Box::pin(async move { announce(port) })
        }));
    let _ = rocket.launch().await;
}
