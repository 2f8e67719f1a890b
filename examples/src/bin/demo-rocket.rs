//! The demo app on Rocket: `cargo run --release -p examples --bin demo-rocket`.

#[tokio::main]
async fn main() {
    let (config, manager) = examples::start_up("demo-rocket");
    // Rocket binds by itself; resolve PORT=0 to a free port first.
    let port = match config.port {
        0 => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(3000),
        port => port,
    };
    let rocket = examples::rocket_demo::build(manager, port, true).attach(
        rocket::fairing::AdHoc::on_liftoff("announce", move |_| {
            Box::pin(async move { println!("listening on http://127.0.0.1:{port}") })
        }),
    );
    if let Err(e) = rocket.launch().await {
        eprintln!("demo-rocket: server error: {e}");
        std::process::exit(1);
    }
}
