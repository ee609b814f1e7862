//! What the lifecycle cases share: the store under test wrapped to count
//! calls and plant failures ([`Probe`]), managers over it, and a seeded
//! session.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use session_core::{
    CookieAction, Error, ExpiryPolicy, Record, Session, SessionConfig, SessionId, SessionManager,
    SessionStore, StorageKey, Timestamp, UserSessions,
};

use super::{call, create, ensure_eq};
use crate::{Context, Failure, Outcome};

/// The store under test, wrapped to count calls and plant failures.
pub(crate) struct Probe {
    pub(crate) inner: Arc<dyn SessionStore>,
    pub(crate) calls: [AtomicU64; 8],
    pub(crate) conflicts: AtomicU64,
    pub(crate) fail_create: AtomicBool,
    pub(crate) fail_save: AtomicBool,
    pub(crate) fail_delete: AtomicBool,
    /// Saves still to be answered `Conflict` without reaching the store,
    /// as if another process kept winning.
    pub(crate) planted_conflicts: AtomicU64,
    /// Creates still to be answered `Exists` without reaching the store,
    /// as if the key were taken.
    pub(crate) planted_exists: AtomicU64,
    /// The key of every `create` call, in order.
    pub(crate) created: std::sync::Mutex<Vec<StorageKey>>,
    /// When set, planted conflicts answer only saves of this key.
    pub(crate) conflicts_only_for: std::sync::Mutex<Option<StorageKey>>,
    /// Saves wait while this is `false` (a save in flight, held open).
    pub(crate) gate: tokio::sync::watch::Sender<bool>,
}

const OPS: [&str; 8] = [
    "create",
    "load",
    "save",
    "touch",
    "delete",
    "list_by_user",
    "delete_by_user",
    "delete_expired",
];

impl Probe {
    pub(crate) fn new(cx: &Context) -> Arc<Self> {
        Self::over(cx.store_arc())
    }

    /// A probe over `inner` (the store under test, or its peer).
    pub(crate) fn over(inner: Arc<dyn SessionStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: Default::default(),
            conflicts: AtomicU64::new(0),
            fail_create: AtomicBool::new(false),
            fail_save: AtomicBool::new(false),
            fail_delete: AtomicBool::new(false),
            planted_conflicts: AtomicU64::new(0),
            planted_exists: AtomicU64::new(0),
            created: std::sync::Mutex::default(),
            conflicts_only_for: std::sync::Mutex::default(),
            gate: tokio::sync::watch::Sender::new(true),
        })
    }

    pub(crate) fn count(&self, op: usize) {
        self.calls[op].fetch_add(1, Ordering::SeqCst);
    }

    /// Calls so far, as "op×n" for every op called, in `OPS` order.
    pub(crate) fn calls(&self) -> Vec<String> {
        OPS.iter()
            .zip(&self.calls)
            .filter_map(|(op, n)| {
                let n = n.load(Ordering::SeqCst);
                (n > 0).then(|| format!("{op}×{n}"))
            })
            .collect()
    }

    pub(crate) fn reset(&self) {
        for n in &self.calls {
            n.store(0, Ordering::SeqCst);
        }
        self.created_keys();
    }

    /// The keys `create` was called with since the last call (or reset).
    pub(crate) fn created_keys(&self) -> Vec<StorageKey> {
        std::mem::take(
            &mut *self
                .created
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub(crate) fn expect_calls(&self, situation: &str, expected: &[&str]) -> Outcome {
        ensure_eq(
            format!("store calls made by {situation}"),
            expected.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            self.calls(),
        )
    }
}

#[async_trait::async_trait]
impl SessionStore for Probe {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.count(0);
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record.key);
        let taken = self
            .planted_exists
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if taken.is_ok() {
            return Err(Error::Exists);
        }
        if self.fail_create.load(Ordering::SeqCst) {
            return Err(Error::backend(
                self.inner.name(),
                "create",
                true,
                std::io::Error::other("planted create failure"),
            ));
        }
        self.inner.create(record).await
    }
    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        self.count(1);
        self.inner.load(key).await
    }
    async fn save(&self, record: &Record) -> Result<u64, Error> {
        self.count(2);
        // Closed gate: wait until it opens (the sender lives in `self`).
        let _ = self.gate.subscribe().wait_for(|open| *open).await;
        if self.fail_save.load(Ordering::SeqCst) {
            return Err(Error::backend(
                self.inner.name(),
                "save",
                true,
                std::io::Error::other("planted save failure"),
            ));
        }
        let targeted = self
            .conflicts_only_for
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none_or(|only| only == record.key);
        let planted = targeted
            && self
                .planted_conflicts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if planted {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
            return Err(Error::Conflict);
        }
        let result = self.inner.save(record).await;
        if matches!(result, Err(Error::Conflict)) {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.count(3);
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        self.count(4);
        if self.fail_delete.load(Ordering::SeqCst) {
            return Err(Error::backend(
                self.inner.name(),
                "delete",
                true,
                std::io::Error::other("planted delete failure"),
            ));
        }
        self.inner.delete(key).await
    }
    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        self.count(5);
        self.inner.list_by_user(user).await
    }
    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        self.count(6);
        self.inner.delete_by_user(user).await
    }
    async fn delete_expired(&self) -> Result<u64, Error> {
        self.count(7);
        self.inner.delete_expired().await
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

pub(crate) const IDLE: Duration = Duration::from_secs(30 * 60);
pub(crate) const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
pub(crate) const STEP: Duration = Duration::from_secs(60);

pub(crate) fn manager(probe: &Arc<Probe>, config: SessionConfig) -> SessionManager {
    let store: Arc<dyn SessionStore> = Arc::clone(probe) as Arc<dyn SessionStore>;
    SessionManager::from_arc(store).with_config(config)
}

pub(crate) fn config() -> SessionConfig {
    SessionConfig::default().with_expiry(ExpiryPolicy::new(IDLE, ABSOLUTE).with_touch_step(STEP))
}

pub(crate) async fn commit(
    manager: &SessionManager,
    session: &Session,
    what: &str,
) -> Result<CookieAction, Failure> {
    call(format!("commit ({what})"), manager.commit(session)).await
}

/// Requires a `Set` cookie and returns its value.
pub(crate) fn set_value(what: &str, action: CookieAction) -> Result<String, Failure> {
    match action {
        CookieAction::Set { value, .. } => Ok(value),
        other => Err(Failure::new(
            format!("commit ({what})"),
            "CookieAction::Set",
            format!("{other:?}"),
        )),
    }
}

pub(crate) fn key_of(cookie: &str) -> Result<StorageKey, Failure> {
    SessionId::parse(cookie)
        .map(|id| id.storage_key())
        .map_err(|e| Failure::new("parse the Set cookie value", "a session id", e.to_string()))
}

/// Stores a session directly (bypassing the manager) and returns its
/// cookie value and record.
pub(crate) async fn seed(
    cx: &Context,
    created_ago: Duration,
    expires_in: Duration,
) -> Result<(String, Record), Failure> {
    let id = SessionId::generate()
        .map_err(|e| Failure::new("SessionId::generate()", "an id", e.to_string()))?;
    let now = Timestamp::now();
    let mut record = Record::new(
        id.storage_key(),
        now.saturating_sub(created_ago),
        now.saturating_add(expires_in),
    );
    record.data.insert("seeded".into(), json!(true));
    create(cx, &record).await?;
    Ok((id.to_cookie_value(), record))
}

/// Awaits concurrent requests' commits, requiring each to answer
/// `Ok(Set)` with the session's own id `cookie`; `what(i)` names request
/// `i` in a failure.
pub(super) async fn expect_all_kept_the_id(
    tasks: Vec<tokio::task::JoinHandle<Result<session_core::CookieAction, session_core::Error>>>,
    cookie: &str,
    what: impl Fn(usize) -> String,
) -> Result<(), crate::Failure> {
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(session_core::CookieAction::Set { value, .. })) if value == cookie => {}
            other => {
                return Err(crate::Failure::new(
                    what(i),
                    "Ok(Set) with the session's own id",
                    format!("{other:?}"),
                ));
            }
        }
    }
    Ok(())
}
