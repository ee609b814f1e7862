//! The `Debug` output of the manager, a session and a cookie action says
//! what it is and never shows a session id (the cookie value).
#![allow(clippy::unwrap_used, clippy::panic)]

use session_core::{CookieAction, SessionConfig, SessionManager};
use session_store_memory::MemoryStore;

#[tokio::test]
async fn debug_output_names_the_type_and_never_the_id() {
    let config = SessionConfig::default().with_max_size(1234);
    let manager = SessionManager::new(MemoryStore::default()).with_config(config);
    assert_eq!(manager.config(), &config);
    let session = manager.load(None);
    session.insert("k", 1).await.unwrap();
    let action = manager.commit(&session).await.unwrap();
    let CookieAction::Set { value, expires_at } = &action else {
        panic!("expected Set, got {action:?}");
    };
    assert_eq!(
        format!("{action:?}"),
        format!("Set {{ value: \"<redacted>\", expires_at: {expires_at:?} }}")
    );
    assert_eq!(format!("{session:?}"), "Session { .. }");
    let shown = format!("{manager:?}");
    assert_eq!(
        shown,
        format!("SessionManager {{ config: {config:?}, .. }}")
    );
    assert!(!shown.contains(value.as_str()));
    assert_eq!(format!("{:?}", CookieAction::Clear), "Clear");
    assert_eq!(format!("{:?}", CookieAction::Unchanged), "Unchanged");
}
