use session_core::Session;

struct NotSerialize;

async fn handler(session: Session) {
    session.insert("k", &NotSerialize).await.unwrap();
}

fn main() {
    let _ = handler;
}
