//! The middleware and extractor in an actix-web service.

use actix_web::{test, web, App, HttpRequest, HttpResponse};
use session_actix::{
    CookieAttributes, KeyRing, MemoryStore, Session, SessionConfig, SessionError, SessionExt,
    SessionKey, SessionManager, SessionMiddleware, Transport,
};

const COUNTER: SessionKey<u64> = SessionKey::new("n");

async fn count(session: Session) -> Result<String, SessionError> {
    let n = session.get(&COUNTER).await?.unwrap_or(0) + 1;
    session.insert(&COUNTER, &n).await?;
    Ok(n.to_string())
}

async fn through_request(req: HttpRequest) -> HttpResponse {
    let session = req.session().expect("middleware runs");
    let n: Option<u64> = session.get(&COUNTER).await.expect("load");
    HttpResponse::Ok().body(n.unwrap_or(0).to_string())
}

fn middleware() -> SessionMiddleware {
    let keys = KeyRing::from_secret(b"test secret number 03, 32 bytes!").unwrap();
    let config = SessionConfig::server(MemoryStore::new(), keys)
        .cookie_attributes(CookieAttributes::default().secure(false));
    SessionMiddleware::new(SessionManager::new(config).unwrap())
}

#[actix_web::test]
async fn counts_with_the_cookie_it_sets() {
    let app = test::init_service(
        App::new()
            .wrap(middleware())
            .route("/count", web::get().to(count))
            .route("/read", web::get().to(through_request)),
    )
    .await;
    let first = test::call_service(&app, test::TestRequest::get().uri("/count").to_request()).await;
    let cookie = first
        .headers()
        .get("set-cookie")
        .expect("cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("sid=") && cookie.contains("HttpOnly"));
    assert_eq!(test::read_body(first).await, "1");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let second = test::TestRequest::get()
        .uri("/count")
        .insert_header(("cookie", pair.clone()));
    assert_eq!(
        test::read_body(test::call_service(&app, second.to_request()).await).await,
        "2"
    );
    let read = test::TestRequest::get()
        .uri("/read")
        .insert_header(("cookie", pair));
    let read = test::call_service(&app, read.to_request()).await;
    assert!(
        read.headers().get("set-cookie").is_none(),
        "a read sets nothing"
    );
    assert_eq!(test::read_body(read).await, "2");
}

#[actix_web::test]
async fn a_missing_middleware_is_a_clear_500() {
    let app = test::init_service(App::new().route("/count", web::get().to(count))).await;
    let response =
        test::call_service(&app, test::TestRequest::get().uri("/count").to_request()).await;
    assert_eq!(response.status(), 500);
    let body = test::read_body(response).await;
    assert!(String::from_utf8_lossy(&body).contains("SessionMiddleware"));
}

/// A session over a header transport (any case of the name), beside the
/// cookie one, and two cookie headers: each session finds its token.
#[actix_web::test]
async fn header_and_cookie_tokens_are_found() {
    let keys = KeyRing::from_secret(b"test secret number 03, 32 bytes!").unwrap();
    let manager = SessionManager::new(
        SessionConfig::server(MemoryStore::new(), keys.clone())
            .cookie_attributes(CookieAttributes::default().secure(false)),
    )
    .unwrap()
    .with_session(
        SessionConfig::server(MemoryStore::new(), keys)
            .name("api")
            .transport(Transport::header("X-Api-Session")),
    )
    .unwrap();
    async fn both(sessions: session_actix::Sessions) -> Result<String, SessionError> {
        let mut counts = Vec::new();
        for session in sessions.iter() {
            let n = session.get(&COUNTER).await?.unwrap_or(0) + 1;
            session.insert(&COUNTER, &n).await?;
            counts.push(n.to_string());
        }
        Ok(counts.join(","))
    }
    let app = test::init_service(
        App::new()
            .wrap(SessionMiddleware::new(manager))
            .route("/both", web::get().to(both)),
    )
    .await;
    let first = test::call_service(&app, test::TestRequest::get().uri("/both").to_request()).await;
    let cookie = first.headers().get("set-cookie").unwrap().to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let token = first
        .headers()
        .get("x-api-session")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(test::read_body(first).await, "1,1");
    let second = test::TestRequest::get()
        .uri("/both")
        .insert_header(("Cookie", "theme=dark".to_owned()))
        .append_header(("cookie", cookie))
        .insert_header(("X-API-SESSION", token));
    assert_eq!(
        test::read_body(test::call_service(&app, second.to_request()).await).await,
        "2,2"
    );
}
