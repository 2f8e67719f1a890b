//! Counts visits per browser: `cargo run -p session-rocket --example readme`,
//! then open http://127.0.0.1:8000 (plain HTTP, so the cookie is not
//! `Secure` here; leave the default on in production).
use rocket::{get, routes};
use session_rocket::{
    CookieAttributes, KeyRing, MemoryStore, Session, SessionConfig, SessionError, SessionFairing,
    SessionKey, SessionManager,
};

const VISITS: SessionKey<u64> = SessionKey::new("visits");

#[get("/")]
async fn count(session: Session) -> Result<String, SessionError> {
    // Atomic: concurrent requests of one browser each count once.
    let n = session.update(&VISITS, |n| n.unwrap_or(0) + 1).await?;
    Ok(format!("visit {n}"))
}

#[rocket::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In production: KeyRing::from_base64(&std::env::var("SESSION_SECRET")?)?
    let keys = KeyRing::generate()?;
    let config = SessionConfig::server(MemoryStore::new(), keys)
        .cookie_attributes(CookieAttributes::default().secure(false));
    let _ = rocket::build()
        .attach(SessionFairing::new(SessionManager::new(config)?))
        .mount("/", routes![count])
        .launch()
        .await?;
    Ok(())
}
