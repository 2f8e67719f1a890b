//! The demo app on actix-web: `cargo run --release -p examples --bin demo-actix`.

fn main() {
    let (config, manager) = examples::start_up("demo-actix");
    let listener = match std::net::TcpListener::bind(("127.0.0.1", config.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "demo-actix: cannot listen on 127.0.0.1:{}: {e}",
                config.port
            );
            std::process::exit(1);
        }
    };
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(config.port);
    println!("listening on http://127.0.0.1:{port}");
    let served = actix_web::rt::System::new().block_on(examples::actix_demo::serve(
        listener,
        manager,
        std::future::pending(),
        true,
    ));
    if let Err(e) = served {
        eprintln!("demo-actix: server error: {e}");
        std::process::exit(1);
    }
}
