//! How many times a request copies its session: a read-and-write request
//! copies the data once (the round's record) and serialises it never (the
//! size check is tracked as changes apply); a read copies nothing. Counted
//! with an allocator that tallies the bytes this thread allocates, over a
//! store that keeps only versions, so every byte counted is the manager's.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Mutex;

use session_core::{
    CookieAction, Error, Record, Reload, SessionManager, SessionStore, StorageKey, Timestamp,
    UserSessions,
};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Bytes allocated on this thread while `f` runs.
fn allocated<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let tally = tikv_jemalloc_ctl::thread::allocatedp::read().unwrap();
    let before = tally.get();
    let out = f();
    (out, tally.get() - before)
}

/// Keeps each session's version and timestamps, not its data: what it
/// allocates does not grow with the session.
#[derive(Default)]
struct Versions(Mutex<HashMap<StorageKey, (u64, Timestamp, Timestamp)>>);

impl Versions {
    fn get(&self, key: &StorageKey) -> Option<(u64, Timestamp, Timestamp)> {
        self.0.lock().unwrap().get(key).copied()
    }
}

#[async_trait::async_trait]
impl SessionStore for Versions {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        let meta = (record.version, record.created_at, record.expires_at);
        self.0.lock().unwrap().insert(record.key, meta);
        Ok(())
    }
    async fn load(&self, _: &StorageKey) -> Result<Option<Record>, Error> {
        unreachable!("every load in this test is of a record the manager wrote")
    }
    async fn load_if_changed(&self, key: &StorageKey, known: &Record) -> Result<Reload, Error> {
        let same = self.get(key) == Some((known.version, known.created_at, known.expires_at));
        assert!(same, "the record changed behind the manager's back");
        Ok(Reload::Unchanged)
    }
    async fn save(&self, record: &Record) -> Result<u64, Error> {
        let mut map = self.0.lock().unwrap();
        let meta = map.get_mut(&record.key).ok_or(Error::NotFound)?;
        if meta.0 != record.version {
            return Err(Error::Conflict);
        }
        *meta = (record.version + 1, record.created_at, record.expires_at);
        Ok(record.version + 1)
    }
    async fn touch(&self, _: &StorageKey, _: Timestamp) -> Result<bool, Error> {
        Ok(true)
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        Ok(self.0.lock().unwrap().remove(key).is_some())
    }
    async fn list_by_user(&self, _: &str) -> Result<UserSessions, Error> {
        Ok(UserSessions::default())
    }
    async fn delete_by_user(&self, _: &str) -> Result<u64, Error> {
        Ok(0)
    }
    async fn delete_expired(&self) -> Result<u64, Error> {
        Ok(0)
    }
}

/// The one large value of the session: any copy or serialisation of the
/// session allocates at least this much.
const LARGE: u64 = 40_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A stored session with one large value and 100 small ones, written by
/// the manager once after its creation (so the manager knows it); its
/// cookie.
async fn session(manager: &SessionManager) -> String {
    let session = manager.load(None);
    session
        .insert("large", "x".repeat(LARGE as usize))
        .await
        .unwrap();
    for i in 0..100 {
        session.insert(format!("k{i}"), i).await.unwrap();
    }
    let CookieAction::Set { value, .. } = manager.commit(&session).await.unwrap() else {
        panic!("a new session was not stored");
    };
    let session = manager.load(Some(&value));
    session.insert("n", 0).await.unwrap();
    manager.commit(&session).await.unwrap();
    value
}

#[test]
fn a_read_and_write_request_copies_the_session_once_and_never_serialises_it() {
    let rt = runtime();
    let manager = SessionManager::new(Versions::default());
    let cookie = rt.block_on(session(&manager));
    for n in 1..4 {
        let request = async {
            let session = manager.load(Some(&cookie));
            assert!(session.get_value("k7").await.unwrap().is_some());
            session.insert("n", n).await.unwrap();
            manager.commit(&session).await.unwrap()
        };
        let (action, bytes) = allocated(|| rt.block_on(request));
        assert!(matches!(action, CookieAction::Set { .. }), "{action:?}");
        // One copy of the data: the large value once, and some change.
        assert!(bytes >= LARGE, "{bytes} bytes: no copy at all?");
        assert!(
            bytes < 2 * LARGE,
            "request {n}: {bytes} bytes allocated: a second copy or a \
             serialisation of the {LARGE}-byte session crept in"
        );
    }
}

#[test]
fn a_read_only_request_copies_nothing() {
    let rt = runtime();
    let manager = SessionManager::new(Versions::default());
    let cookie = rt.block_on(session(&manager));
    let request = async {
        let session = manager.load(Some(&cookie));
        let small = session.get_value("k7").await.unwrap();
        (manager.commit(&session).await.unwrap(), small)
    };
    let ((action, small), bytes) = allocated(|| rt.block_on(request));
    assert_eq!(action, CookieAction::Unchanged);
    assert_eq!(small, Some(7.into()));
    assert!(
        bytes < LARGE / 4,
        "{bytes} bytes allocated for a read: the session was copied"
    );
}
