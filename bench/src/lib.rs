//! Shared bits of the peer servers: the port from `PORT`, and the answer.

/// The port to listen on (`PORT`, default 3000).
pub fn port() -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000)
}

/// The JSON body of the counter routes.
pub fn counter_body(n: u64) -> String {
    serde_json::json!({ "n": n }).to_string()
}

/// Prints the line `cargo xtask bench` waits for.
pub fn announce(port: u16) {
    println!("listening on http://127.0.0.1:{port}");
}
