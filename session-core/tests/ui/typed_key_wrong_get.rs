use session_core::{Session, SessionKey};

const USER: SessionKey<String> = SessionKey::new("user");

async fn handler(session: Session) {
    let n: Option<u64> = session.get(&USER).await.unwrap();
    let _ = n;
}

fn main() {
    let _ = handler;
}
