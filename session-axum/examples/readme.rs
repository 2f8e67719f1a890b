//! Counts visits per browser: `cargo run -p session-axum --example readme`,
//! then open http://127.0.0.1:3000 (plain HTTP, so the cookie is not
//! `Secure` here; leave the default on in production).
use axum::{routing::get, Router};
use session_axum::{
    CookieAttributes, KeyRing, MemoryStore, Session, SessionConfig, SessionError, SessionKey,
    SessionLayer, SessionManager,
};

const VISITS: SessionKey<u64> = SessionKey::new("visits");

async fn count(session: Session) -> Result<String, SessionError> {
    // Atomic: concurrent requests of one browser each count once.
    let n = session.update(&VISITS, |n| n.unwrap_or(0) + 1).await?;
    Ok(format!("visit {n}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In production: KeyRing::from_base64(&std::env::var("SESSION_SECRET")?)?
    let keys = KeyRing::generate()?;
    let config = SessionConfig::server(MemoryStore::new(), keys)
        .cookie_attributes(CookieAttributes::default().secure(false));
    let app = Router::new()
        .route("/", get(count))
        .layer(SessionLayer::new(SessionManager::new(config)?));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
