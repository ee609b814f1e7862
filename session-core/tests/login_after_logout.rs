//! A login whose session is logged out while the login commits must not
//! bring the session back under the login's new id.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use session_core::{
    CookieAction, Error, Record, SessionId, SessionManager, SessionStore, StorageKey, Timestamp,
    UserSessions,
};
use session_store_memory::MemoryStore;

fn cookie(action: CookieAction) -> String {
    match action {
        CookieAction::Set { value, .. } => value,
        other => panic!("expected Set, got {other:?}"),
    }
}

fn key(cookie: &str) -> StorageKey {
    SessionId::parse(cookie).unwrap().storage_key()
}

/// The login loaded the session, another request logged it out, then the
/// login committed: it finds its own rotation marker, which proves
/// nothing; the session stays gone.
#[tokio::test]
async fn a_login_committed_after_a_logout_answers_clear_and_stores_nothing() {
    let manager = SessionManager::new(MemoryStore::default());
    let session = manager.load(None);
    session.insert("cart", 1).await.unwrap();
    let value = cookie(manager.commit(&session).await.unwrap());
    let login = manager.load(Some(&value));
    login.get_value("cart").await.unwrap();
    let logout = manager.load(Some(&value));
    logout.logout().await;
    assert_eq!(manager.commit(&logout).await.unwrap(), CookieAction::Clear);
    login.login("bob").await.unwrap();
    assert_eq!(manager.commit(&login).await.unwrap(), CookieAction::Clear);
    assert!(manager.sessions_of("bob").await.unwrap().records.is_empty());
}

type Hook = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A memory store that runs `hook` just before the first save of the
/// login's new record (version 0, bound to "bob", not the old key).
struct Trap {
    inner: Arc<MemoryStore>,
    old: Mutex<Option<StorageKey>>,
    hook: Mutex<Option<Hook>>,
}

#[async_trait::async_trait]
impl SessionStore for Trap {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.inner.create(record).await
    }
    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        self.inner.load(key).await
    }
    async fn save(&self, record: &Record) -> Result<u64, Error> {
        let old = *self.old.lock().unwrap();
        if Some(record.key) != old && record.version == 0 && record.user.as_deref() == Some("bob") {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook.await;
            }
        }
        self.inner.save(record).await
    }
    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        self.inner.delete(key).await
    }
    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        self.inner.list_by_user(user).await
    }
    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        self.inner.delete_by_user(user).await
    }
    async fn delete_expired(&self) -> Result<u64, Error> {
        self.inner.delete_expired().await
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

/// Another app server saved first, so the login's retirement of the old
/// record conflicts and it brings its new record up to date; just then
/// the session is logged out and a third request, finding the old record
/// gone, follows the marker and saves into the new record (bob signs in
/// again: a move that keeps the user forwards). The login's own save of
/// the new record then conflicts: it must end like a login after a logout
/// (`Clear`, nothing left for the user), not fail with `Conflict` and
/// leave the new record behind.
#[tokio::test]
async fn a_login_racing_a_logout_and_a_forwarded_write_leaves_nothing() {
    let memory = Arc::new(MemoryStore::default());
    let trap = Arc::new(Trap {
        inner: Arc::clone(&memory),
        old: Mutex::new(None),
        hook: Mutex::new(None),
    });
    let here = SessionManager::from_arc(Arc::clone(&trap) as Arc<dyn SessionStore>);
    let there = SessionManager::from_arc(Arc::clone(&trap) as Arc<dyn SessionStore>);
    let session = here.load(None);
    session.insert("cart", 1).await.unwrap();
    session.login("bob").await.unwrap();
    let value = cookie(here.commit(&session).await.unwrap());
    let old = key(&value);
    *trap.old.lock().unwrap() = Some(old);

    let login = here.load(Some(&value));
    login.get_value("cart").await.unwrap();
    let forwarded = there.load(Some(&value));
    forwarded.get_value("cart").await.unwrap();
    let first = there.load(Some(&value));
    first.insert("theme", "dark").await.unwrap();
    cookie(there.commit(&first).await.unwrap());

    forwarded.insert("late", true).await.unwrap();
    let fired = Arc::new(Mutex::new(None));
    let (memory2, there2, fired2) = (Arc::clone(&memory), there.clone(), Arc::clone(&fired));
    *trap.hook.lock().unwrap() = Some(Box::pin(async move {
        assert!(memory2.delete(&old).await.unwrap(), "the logout");
        let action = there2.commit(&forwarded).await.unwrap();
        *fired2.lock().unwrap() = Some(action);
    }));
    login.login("bob").await.unwrap();
    let action = here.commit(&login).await;
    assert_eq!(
        fired.lock().unwrap().take(),
        Some(CookieAction::Unchanged),
        "the forwarded write ran inside the login's commit"
    );
    assert!(
        matches!(action, Ok(CookieAction::Clear)),
        "the login after the logout: {action:?}"
    );
    let left = here.sessions_of("bob").await.unwrap().records;
    assert!(left.is_empty(), "sessions left for the user: {left:?}");
}
