//! The fairing and guard in a Rocket instance, through Rocket's local client.

use std::sync::Arc;

use rocket::http::{Header, Status};
use rocket::local::asynchronous::Client;
use rocket::{get, routes};
use session_backends::MemoryStore;
use session_core::{CookieAttributes, KeyRing, SessionConfig, SessionKey, SessionManager};
use session_rocket::{Session, SessionError, SessionFairing};

const COUNTER: SessionKey<u64> = SessionKey::new("n");

#[get("/count")]
async fn count(session: Session) -> Result<String, SessionError> {
    let n = session.get(&COUNTER).await?.unwrap_or(0) + 1;
    session.insert(&COUNTER, &n).await?;
    Ok(n.to_string())
}

fn manager() -> SessionManager {
    let config = SessionConfig::server(
        Arc::new(MemoryStore::new()),
        KeyRing::from_secret(b"test secret number 03, 32 bytes!").unwrap(),
    )
    .cookie_attributes(CookieAttributes::default().secure(false));
    SessionManager::new(config).unwrap()
}

#[rocket::async_test]
async fn counts_with_the_cookie_it_adjoins() {
    let rocket = rocket::build()
        .attach(SessionFairing::new(manager()))
        .mount("/", routes![count]);
    let client = Client::untracked(rocket).await.unwrap();
    let first = client.get("/count").dispatch().await;
    let cookie = first
        .headers()
        .get_one("set-cookie")
        .expect("cookie")
        .to_owned();
    assert!(cookie.starts_with("sid=") && cookie.contains("HttpOnly"));
    assert_eq!(first.into_string().await.unwrap(), "1");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let second = client
        .get("/count")
        .header(Header::new("cookie", pair))
        .dispatch()
        .await;
    assert_eq!(second.into_string().await.unwrap(), "2");
}

#[rocket::async_test]
async fn a_missing_fairing_is_a_500() {
    let client = Client::untracked(rocket::build().mount("/", routes![count]))
        .await
        .unwrap();
    assert_eq!(
        client.get("/count").dispatch().await.status(),
        Status::InternalServerError
    );
}
