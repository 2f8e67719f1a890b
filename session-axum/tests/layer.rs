//! The layer and extractors in a real axum server, driven over HTTP, and
//! in a plain tower service.

use std::convert::Infallible;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use http::{Request, Response, StatusCode};
use session_axum::{Session, SessionError, SessionLayer, Sessions};
use session_backends::MemoryStore;
use session_core::{
    CookieAttributes, KeyRing, SessionConfig, SessionKey, SessionManager, Transport,
};
use tower::ServiceExt;

const COUNTER: SessionKey<u64> = SessionKey::new("n");

async fn count(session: Session) -> Result<String, SessionError> {
    let n = session.get(&COUNTER).await?.unwrap_or(0) + 1;
    session.insert(&COUNTER, &n).await?;
    Ok(n.to_string())
}

async fn named(sessions: Sessions) -> Result<String, SessionError> {
    let api = sessions.named("api")?;
    let n = api.get(&COUNTER).await?.unwrap_or(0) + 1;
    api.insert(&COUNTER, &n).await?;
    Ok(n.to_string())
}

fn manager() -> SessionManager {
    let keys = KeyRing::from_secret(b"test secret number 05, 32 bytes!").unwrap();
    SessionManager::new(
        SessionConfig::server(Arc::new(MemoryStore::new()), keys.clone())
            .cookie_attributes(CookieAttributes::default().secure(false)),
    )
    .unwrap()
    .with_session(
        SessionConfig::cookie(keys)
            .name("api")
            .transport(Transport::header("X-Api-Session")),
    )
    .unwrap()
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn counts_over_http_with_a_cookie_keeping_client() {
    let app = Router::new()
        .route("/count", get(count))
        .route("/plain", get(|| async { "plain" }))
        .layer(SessionLayer::new(manager()));
    let base = serve(app).await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    for expected in 1..=3 {
        let body = client
            .get(format!("{base}/count"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, expected.to_string());
    }
    let plain = client.get(format!("{base}/plain")).send().await.unwrap();
    assert!(plain.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn named_session_over_header_transport() {
    let app = Router::new()
        .route("/named", get(named))
        .layer(SessionLayer::new(manager()));
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let first = client.get(format!("{base}/named")).send().await.unwrap();
    let token = first.headers()["x-api-session"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(first.headers().get("set-cookie").is_none());
    assert_eq!(first.text().await.unwrap(), "1");
    let second = client
        .get(format!("{base}/named"))
        .header("X-Api-Session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(second.text().await.unwrap(), "2");
}

#[tokio::test]
async fn missing_layer_is_a_clear_500() {
    let app: Router = Router::new().route("/count", get(count));
    let response = app
        .oneshot(
            Request::get("/count")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("SessionLayer"));
}

#[tokio::test]
async fn works_around_a_plain_tower_service() {
    let service = tower::service_fn(|req: Request<String>| async move {
        let sessions = req
            .extensions()
            .get::<session_core::RequestSessions>()
            .unwrap()
            .clone();
        sessions.primary().insert("seen", &true).await.unwrap();
        Ok::<_, Infallible>(Response::new(String::from("done")))
    });
    let service = tower::ServiceBuilder::new()
        .layer(SessionLayer::new(manager()))
        .service(service);
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("sid="));
    assert!(cookie.contains("HttpOnly"));
}
