use session_core::{Session, SessionKey};

const USER_ID: SessionKey<u64> = SessionKey::new("uid");

async fn login(session: Session) {
    session.insert_constant(&USER_ID, &-1i32).await.unwrap();
}

fn main() {
    let _ = login;
}
