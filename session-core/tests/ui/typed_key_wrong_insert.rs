use session_core::{Session, SessionKey};

const COUNTER: SessionKey<u64> = SessionKey::new("n");

async fn handler(session: Session) {
    session.insert(&COUNTER, "not a number").await.unwrap();
}

fn main() {
    let _ = handler;
}
