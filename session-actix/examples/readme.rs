//! Counts visits per browser: `cargo run -p session-actix --example readme`,
//! then open http://127.0.0.1:3000 (plain HTTP, so the cookie is not
//! `Secure` here; leave the default on in production).
use actix_web::{web, App, HttpServer};
use session_actix::{
    CookieAttributes, KeyRing, MemoryStore, Session, SessionConfig, SessionError, SessionKey,
    SessionManager, SessionMiddleware,
};

const VISITS: SessionKey<u64> = SessionKey::new("visits");

async fn count(session: Session) -> Result<String, SessionError> {
    // Atomic: concurrent requests of one browser each count once.
    let n = session.update(&VISITS, |n| n.unwrap_or(0) + 1).await?;
    Ok(format!("visit {n}"))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In production: KeyRing::from_base64(&std::env::var("SESSION_SECRET")?)?
    let keys = KeyRing::generate()?;
    let config = SessionConfig::server(MemoryStore::new(), keys)
        .cookie_attributes(CookieAttributes::default().secure(false));
    let sessions = SessionMiddleware::new(SessionManager::new(config)?);
    HttpServer::new(move || {
        App::new()
            .wrap(sessions.clone())
            .route("/", web::get().to(count))
    })
    .bind(("127.0.0.1", 3000))?
    .run()
    .await?;
    Ok(())
}
