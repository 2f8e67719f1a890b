//! The demo application (documented in `examples/README.md`), shared by the per-framework
//! binaries: configuration from the environment ([`config`]), the routes
//! written once on `session-core` ([`app`]), the HTML page ([`page`]), and
//! each framework's thin wiring ([`axum_demo`], [`actix_demo`],
//! [`rocket_demo`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod actix_demo;
pub mod app;
pub mod axum_demo;
pub mod config;
pub mod page;
pub mod rocket_demo;

// The repository README's Rust blocks, compiled as doctests here, where every
// adapter and store is a dependency (the framework blocks are also the
// adapters' `readme` examples; `tests/tests/readme.rs` checks they match).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// Start-up shared by the demo binaries: reads the environment, sets up
/// logging, and returns the configuration and session manager, or exits
/// with status 2 and one line naming the bad variable.
pub fn start_up(binary: &str) -> (config::DemoConfig, session_core::SessionManager) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,rocket=warn,actix_server=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let built = config::DemoConfig::from_env().and_then(|c| c.session_manager().map(|m| (c, m)));
    match built {
        Ok((config, manager)) => {
            if config.metrics {
                app::install_metrics();
            }
            if config.generated_secret {
                tracing::warn!("SESSION_SECRET is not set: using a random secret; sessions end when {binary} stops");
            }
            (config, manager)
        }
        Err(e) => {
            eprintln!("{binary}: configuration error: {e}");
            std::process::exit(2);
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
