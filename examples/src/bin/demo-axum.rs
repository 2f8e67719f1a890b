//! The demo app on axum: `cargo run --release -p examples --bin demo-axum`.

#[tokio::main]
async fn main() {
    let (config, manager) = examples::start_up("demo-axum");
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo-axum: cannot listen on 127.0.0.1:{}: {e}", config.port);
            std::process::exit(1);
        }
    };
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(config.port);
    println!("listening on http://127.0.0.1:{port}");
    if let Err(e) = examples::axum_demo::serve(listener, manager, examples::shutdown_signal()).await
    {
        eprintln!("demo-axum: server error: {e}");
        std::process::exit(1);
    }
}
