//! The manager traces every store call, and no trace ever contains a
//! session id (the cookie value), only storage keys.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use session_core::{CookieAction, SessionManager};
use session_store_memory::MemoryStore;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn cookie(action: CookieAction) -> String {
    match action {
        CookieAction::Set { value, .. } => value,
        other => panic!("expected Set, got {other:?}"),
    }
}

#[test]
fn traces_name_storage_keys_and_never_session_ids() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ids, keys) = runtime.block_on(async {
        let store = MemoryStore::default();
        let manager = SessionManager::new(store.clone());
        let mut ids = Vec::new();
        let session = manager.load(None);
        session.insert("k", 1).await.unwrap();
        ids.push(cookie(manager.commit(&session).await.unwrap()));
        // Another manager (another app server) loads it; this one, which
        // wrote it, only asks whether it changed.
        let elsewhere = SessionManager::new(store);
        let session = elsewhere.load(Some(&ids[0]));
        assert_eq!(session.get::<u32>("k").await.unwrap(), Some(1));
        let session = manager.load(Some(&ids[0]));
        session.login("alice").await.unwrap();
        ids.push(cookie(manager.commit(&session).await.unwrap()));
        let session = manager.load(Some(&ids[1]));
        session.logout().await;
        manager.commit(&session).await.unwrap();
        let keys: Vec<String> = ids
            .iter()
            .map(|id| {
                session_core::SessionId::parse(id)
                    .unwrap()
                    .storage_key()
                    .to_hex()
            })
            .collect();
        (ids, keys)
    });

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for op in ["create", "load", "load_if_changed", "save", "delete"] {
        assert!(
            logs.contains(&format!("op=\"{op}\"")),
            "no trace of {op}:\n{logs}"
        );
    }
    for key in &keys {
        assert!(
            logs.contains(key.as_str()),
            "storage key {key} not traced:\n{logs}"
        );
    }
    for id in &ids {
        assert!(
            !logs.contains(id.as_str()),
            "a session id leaked into the traces:\n{logs}"
        );
    }
}
