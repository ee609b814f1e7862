//! Cases for the session lifecycle ([`SessionManager`] and [`Session`]) on
//! top of the store under test: lazy loading, minimal commits, lossless
//! concurrency, no resurrection, id rotation, expiry.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use session_core::{
    CookieAction, Error, ExpiryPolicy, Record, Session, SessionConfig, SessionId, SessionManager,
    SessionStore, StorageKey, Timestamp, UserSessions,
};

use super::{call, create, ensure_eq, expect_absent, load};
use crate::{Context, Failure, Outcome};

/// The store under test, wrapped to count calls and plant failures.
struct Probe {
    inner: Arc<dyn SessionStore>,
    calls: [AtomicU64; 8],
    conflicts: AtomicU64,
    fail_create: AtomicBool,
    fail_save: AtomicBool,
    /// Saves still to be answered `Conflict` without reaching the store,
    /// as if another process kept winning.
    planted_conflicts: AtomicU64,
    /// Creates still to be answered `Exists` without reaching the store,
    /// as if the key were taken.
    planted_exists: AtomicU64,
    /// The key of every `create` call, in order.
    created: std::sync::Mutex<Vec<StorageKey>>,
    /// When set, planted conflicts answer only saves of this key.
    conflicts_only_for: std::sync::Mutex<Option<StorageKey>>,
    /// Saves wait while this is `false` (a save in flight, held open).
    gate: tokio::sync::watch::Sender<bool>,
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
    fn new(cx: &Context) -> Arc<Self> {
        Self::over(cx.store_arc())
    }

    /// A probe over `inner` (the store under test, or its peer).
    fn over(inner: Arc<dyn SessionStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: Default::default(),
            conflicts: AtomicU64::new(0),
            fail_create: AtomicBool::new(false),
            fail_save: AtomicBool::new(false),
            planted_conflicts: AtomicU64::new(0),
            planted_exists: AtomicU64::new(0),
            created: std::sync::Mutex::default(),
            conflicts_only_for: std::sync::Mutex::default(),
            gate: tokio::sync::watch::Sender::new(true),
        })
    }

    fn count(&self, op: usize) {
        self.calls[op].fetch_add(1, Ordering::SeqCst);
    }

    /// Calls so far, as "op×n" for every op called, in `OPS` order.
    fn calls(&self) -> Vec<String> {
        OPS.iter()
            .zip(&self.calls)
            .filter_map(|(op, n)| {
                let n = n.load(Ordering::SeqCst);
                (n > 0).then(|| format!("{op}×{n}"))
            })
            .collect()
    }

    fn reset(&self) {
        for n in &self.calls {
            n.store(0, Ordering::SeqCst);
        }
        self.created_keys();
    }

    /// The keys `create` was called with since the last call (or reset).
    fn created_keys(&self) -> Vec<StorageKey> {
        std::mem::take(
            &mut *self
                .created
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn expect_calls(&self, situation: &str, expected: &[&str]) -> Outcome {
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
}

const IDLE: Duration = Duration::from_secs(30 * 60);
const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
const STEP: Duration = Duration::from_secs(60);

fn manager(probe: &Arc<Probe>, config: SessionConfig) -> SessionManager {
    let store: Arc<dyn SessionStore> = Arc::clone(probe) as Arc<dyn SessionStore>;
    SessionManager::from_arc(store).with_config(config)
}

fn config() -> SessionConfig {
    SessionConfig::default().with_expiry(ExpiryPolicy::new(IDLE, ABSOLUTE).with_touch_step(STEP))
}

async fn commit(
    manager: &SessionManager,
    session: &Session,
    what: &str,
) -> Result<CookieAction, Failure> {
    call(format!("commit ({what})"), manager.commit(session)).await
}

/// Requires a `Set` cookie and returns its value.
fn set_value(what: &str, action: CookieAction) -> Result<String, Failure> {
    match action {
        CookieAction::Set { value, .. } => Ok(value),
        other => Err(Failure::new(
            format!("commit ({what})"),
            "CookieAction::Set",
            format!("{other:?}"),
        )),
    }
}

fn key_of(cookie: &str) -> Result<StorageKey, Failure> {
    SessionId::parse(cookie)
        .map(|id| id.storage_key())
        .map_err(|e| Failure::new("parse the Set cookie value", "a session id", e.to_string()))
}

/// Stores a session directly (bypassing the manager) and returns its
/// cookie value and record.
async fn seed(
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

/// A request that never touches its session makes no store call and
/// leaves the cookie alone.
pub async fn lifecycle_untouched_session_makes_no_store_call(cx: Context) -> Outcome {
    let (cookie, _) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    for cookie in [None, Some(cookie.as_str()), Some("not-a-session-id")] {
        let session = manager.load(cookie);
        let action = commit(&manager, &session, "untouched").await?;
        ensure_eq(
            "cookie action of an untouched session",
            CookieAction::Unchanged,
            action,
        )?;
    }
    probe.expect_calls("untouched sessions", &[])
}

/// A read-only request loads once, however often it reads, and writes
/// nothing while the sliding expiry is not due.
pub async fn lifecycle_read_only_request_loads_once(cx: Context) -> Outcome {
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let session = manager.load(Some(&cookie));
    for _ in 0..3 {
        let seeded = call("session.get(\"seeded\")", session.get::<bool>("seeded")).await?;
        ensure_eq("session.get(\"seeded\")", Some(true), seeded)?;
    }
    let action = commit(&manager, &session, "read-only").await?;
    ensure_eq(
        "cookie action of a read-only request",
        CookieAction::Unchanged,
        action,
    )?;
    probe.expect_calls("a read-only request", &["load×1"])?;
    super::expect_record(&cx, &record.key, &record).await
}

/// Idle expiry slides with activity, but a read-only request pays for a
/// `touch` only when the expiry would move by more than the touch step.
pub async fn lifecycle_idle_timeout_slides_with_throttled_touches(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    // Last activity 30 s ago: the expiry would move by 30 s < the 60 s step.
    let (recent, recent_record) = seed(
        &cx,
        Duration::from_secs(600),
        IDLE - Duration::from_secs(30),
    )
    .await?;
    let session = manager.load(Some(&recent));
    call("session.get", session.get_value("seeded")).await?;
    let action = commit(&manager, &session, "read-only, touch not due").await?;
    ensure_eq(
        "cookie action when no touch is due",
        CookieAction::Unchanged,
        action,
    )?;
    probe.expect_calls("a read-only request with no touch due", &["load×1"])?;
    super::expect_record(&cx, &recent_record.key, &recent_record).await?;

    // Last activity 90 s ago: due. One touch, and the expiry slides.
    probe.reset();
    let (stale, stale_record) = seed(
        &cx,
        Duration::from_secs(600),
        IDLE - Duration::from_secs(90),
    )
    .await?;
    let before = Timestamp::now();
    let session = manager.load(Some(&stale));
    call("session.get", session.get_value("seeded")).await?;
    let action = commit(&manager, &session, "read-only, touch due").await?;
    let after = Timestamp::now();
    let CookieAction::Set { value, expires_at } = action else {
        return Err(Failure::new(
            "commit (touch due)",
            "CookieAction::Set",
            format!("{action:?}"),
        ));
    };
    ensure_eq("cookie value after a touch (same id)", stale.clone(), value)?;
    probe.expect_calls(
        "a read-only request with a touch due",
        &["load×1", "touch×1"],
    )?;
    let stored = load(&cx, &stale_record.key).await?;
    let stored_expiry = stored.as_ref().map(|r| r.expires_at);
    let in_window = stored_expiry
        .is_some_and(|e| e >= before.saturating_add(IDLE) && e <= after.saturating_add(IDLE));
    if !in_window || stored_expiry != Some(expires_at) {
        return Err(Failure::new(
            "expires_at after the touch",
            format!(
                "now + idle, between {} and {}, as the cookie says ({expires_at})",
                before.saturating_add(IDLE),
                after.saturating_add(IDLE)
            ),
            format!("{stored_expiry:?}"),
        ));
    }
    ensure_eq(
        "version after a touch",
        Some(stale_record.version),
        stored.map(|r| r.version),
    )
}

/// The absolute timeout beats activity: a change near the deadline
/// expires at the deadline, not an idle period later; a session past its
/// deadline is gone even if its record has not expired.
pub async fn lifecycle_absolute_timeout_beats_activity(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let (near, near_record) = seed(&cx, ABSOLUTE - Duration::from_secs(120), IDLE).await?;
    let session = manager.load(Some(&near));
    call("session.insert", session.insert("active", true)).await?;
    commit(&manager, &session, "change near the absolute deadline").await?;
    let deadline = near_record.created_at.saturating_add(ABSOLUTE);
    let stored = load(&cx, &near_record.key).await?;
    ensure_eq(
        "expires_at after activity 2 minutes before the absolute deadline",
        Some(deadline),
        stored.map(|r| r.expires_at),
    )?;

    // Created longer ago than the absolute timeout, yet its record (from
    // a more lenient policy) is still live: the manager must not use it.
    let (old, old_record) = seed(&cx, ABSOLUTE + Duration::from_secs(1), IDLE).await?;
    let session = manager.load(Some(&old));
    let seeded = call(
        "session.get on a session past its deadline",
        session.get::<bool>("seeded"),
    )
    .await?;
    ensure_eq("data of a session past its absolute deadline", None, seeded)?;
    call("session.insert", session.insert("fresh", true)).await?;
    let cookie = set_value(
        "after a session past its deadline",
        commit(&manager, &session, "fresh session").await?,
    )?;
    if key_of(&cookie)? == old_record.key {
        return Err(Failure::new(
            "commit after the absolute deadline",
            "a new id",
            "the old id",
        ));
    }
    Ok(())
}

/// A new session that stays empty is never stored and sets no cookie.
pub async fn lifecycle_new_empty_session_is_never_stored(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let session = manager.load(None);
    let got = call("session.get on a new session", session.get::<String>("x")).await?;
    ensure_eq("session.get on a new session", None, got)?;
    call("session.insert", session.insert("x", 1)).await?;
    call("session.remove", session.remove("x")).await?;
    let action = commit(&manager, &session, "new session that stayed empty").await?;
    ensure_eq(
        "cookie action of a new empty session",
        CookieAction::Unchanged,
        action,
    )?;
    probe.expect_calls("a new empty session", &[])
}

/// A malformed cookie value never reaches the store; the session is new
/// and the bad cookie is cleared.
pub async fn lifecycle_malformed_cookie_never_reaches_the_store(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let too_long = "A".repeat(44);
    let bad_char = format!("{}+", "A".repeat(42));
    for cookie in [
        "",
        "forged",
        too_long.as_str(),
        bad_char.as_str(),
        "../../etc/passwd",
    ] {
        let session = manager.load(Some(cookie));
        let user = call("session.user()", session.user()).await?;
        ensure_eq(
            format!("user of a session with cookie {cookie:?}"),
            None,
            user,
        )?;
        let action = commit(&manager, &session, "malformed cookie").await?;
        ensure_eq(
            "cookie action for a malformed cookie",
            CookieAction::Clear,
            action,
        )?;
    }
    probe.expect_calls("requests with malformed cookies", &[])
}

/// A well-formed id that is not in the store yields a fresh session with a
/// new id, never the client's.
pub async fn lifecycle_unknown_id_gets_a_fresh_id(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let planted = SessionId::generate()
        .map_err(|e| Failure::new("SessionId::generate()", "an id", e.to_string()))?
        .to_cookie_value();
    let session = manager.load(Some(&planted));
    call("session.insert", session.insert("x", 1)).await?;
    let cookie = set_value(
        "unknown id",
        commit(&manager, &session, "unknown id").await?,
    )?;
    if cookie == planted {
        return Err(Failure::new(
            "commit of a session from an unknown id",
            "a new id",
            "the client's id",
        ));
    }
    expect_absent(&cx, &key_of(&planted)?, "under the client's planted id").await?;
    probe.expect_calls("a session from an unknown id", &["create×1", "load×1"])
}

/// `managers` × `per_manager` requests on one session, with the default
/// configuration: all load first (the same version), then all add their
/// own key and commit together, three rounds. Every commit is `Ok(Set)`
/// with the session's own id, and every key lands. With one manager the
/// store sees at most two saves per request (its commits are folded
/// together; retrying each conflict alone would make O(N²) saves). With
/// several, every other manager (another app server) runs over the peer
/// store ([`Context::peer_store_arc`]).
async fn hot_session(cx: &Context, managers: usize, per_manager: usize) -> Outcome {
    let probes = [Probe::new(cx), Probe::over(cx.peer_store_arc())];
    let managers: Vec<SessionManager> = (0..managers)
        .map(|m| {
            let store: Arc<dyn SessionStore> = Arc::clone(&probes[m % 2]) as Arc<dyn SessionStore>;
            SessionManager::from_arc(store)
        })
        .collect();
    let (cookie, record) = seed(cx, Duration::from_secs(5), IDLE).await?;
    let total = managers.len() * per_manager;
    for round in 0..3 {
        for probe in &probes {
            probe.reset();
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(total));
        let mut tasks = Vec::new();
        for (m, manager) in managers.iter().enumerate() {
            for i in 0..per_manager {
                let (manager, cookie, barrier) =
                    (manager.clone(), cookie.clone(), Arc::clone(&barrier));
                let name = format!("r{round}m{m}i{i}");
                tasks.push(tokio::spawn(async move {
                    let session = manager.load(Some(&cookie));
                    session.get_value("seeded").await?; // everyone reads first
                    barrier.wait().await;
                    session.insert(name, true).await?;
                    manager.commit(&session).await
                }));
            }
        }
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await {
                Ok(Ok(CookieAction::Set { value, .. })) if value == cookie => {}
                other => {
                    return Err(Failure::new(
                        format!("commit of concurrent request {i} in round {round} of {total}"),
                        "Ok(Set) with the session's own id",
                        format!("{other:?}"),
                    ));
                }
            }
        }
        // Across managers, conflicts are real and retried; inside one, the
        // commits must be folded together.
        let saves: u64 = probes
            .iter()
            .map(|probe| probe.calls[2].load(Ordering::SeqCst))
            .sum();
        if managers.len() == 1 && saves > 2 * total as u64 {
            return Err(Failure::new(
                format!("{total} concurrent commits of one session"),
                format!("at most {} saves", 2 * total),
                format!("{saves} saves (commits are not folded together)"),
            ));
        }
    }
    let stored = load(cx, &record.key)
        .await?
        .ok_or_else(|| Failure::new("load after the concurrent commits", "the session", "None"))?;
    let missing: Vec<String> = (0..3)
        .flat_map(|round| {
            (0..managers.len())
                .flat_map(move |m| (0..per_manager).map(move |i| format!("r{round}m{m}i{i}")))
        })
        .filter(|k| !stored.data.contains_key(k))
        .collect();
    ensure_eq(
        "keys lost by concurrent commits",
        Vec::<String>::new(),
        missing,
    )
}

/// 64 concurrent requests on one session in one manager lose nothing.
pub async fn lifecycle_concurrent_requests_lose_no_update(cx: Context) -> Outcome {
    hot_session(&cx, 1, 64).await
}

/// 256 concurrent requests on one session in one manager lose nothing.
pub async fn lifecycle_256_concurrent_requests_lose_no_update(cx: Context) -> Outcome {
    hot_session(&cx, 1, 256).await
}

/// Two app servers (two managers, the second over the peer store), 32
/// requests each on one session, lose nothing: conflicts between them are
/// retried.
pub async fn lifecycle_two_managers_lose_no_update(cx: Context) -> Outcome {
    hot_session(&cx, 2, 32).await
}

/// 32 app servers (every other one over the peer store) with 2 requests
/// each on one session lose nothing: a commit that keeps losing to other
/// processes retries for a time budget, not a small number of times.
pub async fn lifecycle_many_managers_lose_no_update(cx: Context) -> Outcome {
    hot_session(&cx, 32, 2).await
}

/// Read-modify-write with [`Session::update`](session_core::Session::update)
/// loses no increment: 64 requests on one session, over two app servers
/// (the second over the peer store), each read the counter at once and
/// add one; afterwards it is 64. (A `get` then `insert` would replay the
/// value each request computed from its stale read, and lose most.)
pub async fn lifecycle_concurrent_updates_lose_no_increment(cx: Context) -> Outcome {
    let managers = [
        SessionManager::from_arc(cx.store_arc()),
        SessionManager::from_arc(cx.peer_store_arc()),
    ];
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let total = 64;
    let barrier = Arc::new(tokio::sync::Barrier::new(total));
    let mut tasks = Vec::new();
    for i in 0..total {
        let (manager, cookie, barrier) = (
            managers[i % 2].clone(),
            cookie.clone(),
            Arc::clone(&barrier),
        );
        tasks.push(tokio::spawn(async move {
            let session = manager.load(Some(&cookie));
            session.get_value("seeded").await?; // everyone reads first
            barrier.wait().await;
            session
                .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
                .await?;
            manager.commit(&session).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(CookieAction::Set { value, .. })) if value == cookie => {}
            other => {
                return Err(Failure::new(
                    format!("commit of concurrent increment {i} of {total}"),
                    "Ok(Set) with the session's own id",
                    format!("{other:?}"),
                ));
            }
        }
    }
    let stored = load(&cx, &record.key).await?;
    ensure_eq(
        "the counter after 64 concurrent increments",
        Some(Some(json!(total))),
        stored.map(|r| r.data.get("counter").cloned()),
    )
}

/// A commit that keeps losing to another process (30 conflicts in a row)
/// still lands with the default configuration: conflicts are retried for a
/// time budget, not a small number of times. With a short budget and a
/// store that never lets it through, it gives up with `Conflict`.
pub async fn lifecycle_commit_outlasts_a_burst_of_conflicts(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let patient = manager(&probe, SessionConfig::default());
    let session = patient.load(Some(&cookie));
    call("session.insert", session.insert("patient", true)).await?;
    probe.planted_conflicts.store(30, Ordering::SeqCst);
    let action = commit(&patient, &session, "a commit meeting 30 conflicts").await?;
    set_value("a commit meeting 30 conflicts", action)?;
    let stored = load(&cx, &record.key).await?;
    ensure_eq(
        "the change after 30 conflicts",
        Some(Some(json!(true))),
        stored.map(|r| r.data.get("patient").cloned()),
    )?;

    let budget = Duration::from_millis(300);
    let impatient = manager(
        &probe,
        SessionConfig::default().with_conflict_budget(budget),
    );
    let session = impatient.load(Some(&cookie));
    call("session.insert", session.insert("never", true)).await?;
    probe.planted_conflicts.store(u64::MAX, Ordering::SeqCst);
    let started = std::time::Instant::now();
    // Bounded: a commit that ignores its budget fails here, not by hanging.
    let result = tokio::time::timeout(budget * 10, impatient.commit(&session)).await;
    probe.planted_conflicts.store(0, Ordering::SeqCst);
    let took = started.elapsed();
    if !matches!(result, Ok(Err(Error::Conflict))) || took > budget * 10 {
        return Err(Failure::new(
            "a commit that can never win, with a 300 ms budget",
            "Err(Conflict) after about 300 ms",
            format!("{result:?} after {took:?}"),
        ));
    }
    Ok(())
}

/// In a batch of concurrent commits, a request whose own change makes the
/// session too large (over the default 64 KiB) fails alone with
/// `TooLarge`; the others land.
pub async fn lifecycle_too_large_change_fails_only_its_request(cx: Context) -> Outcome {
    let manager = SessionManager::from_arc(cx.store_arc());
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let big = SessionConfig::DEFAULT_MAX_SIZE + 1;
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (manager, cookie, barrier) = (manager.clone(), cookie.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            let session = manager.load(Some(&cookie));
            session.get_value("seeded").await?;
            barrier.wait().await;
            if i == 7 {
                session.insert("huge", "x".repeat(big)).await?;
            } else {
                session.insert(format!("k{i}"), i).await?;
            }
            manager.commit(&session).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await;
        let fine = match &result {
            Ok(Err(Error::TooLarge { .. })) => i == 7,
            Ok(Ok(CookieAction::Set { .. })) => i != 7,
            _ => false,
        };
        if !fine {
            return Err(Failure::new(
                format!("commit of request {i} (request 7 adds {big} bytes)"),
                if i == 7 { "Err(TooLarge)" } else { "Ok(Set)" },
                format!("{result:?}"),
            ));
        }
    }
    let stored = load(&cx, &record.key)
        .await?
        .ok_or_else(|| Failure::new("load after the batch", "the session", "None"))?;
    let mut keys: Vec<&String> = stored.data.keys().filter(|k| *k != "seeded").collect();
    keys.sort();
    let mut want: Vec<String> = (0..16)
        .filter(|&i| i != 7)
        .map(|i| format!("k{i}"))
        .collect();
    want.sort();
    ensure_eq(
        "keys stored after a batch with one oversized change",
        want.iter().collect::<Vec<_>>(),
        keys,
    )
}

/// A change another request committed before a login commits is in the
/// logged-in session: the rotation starts from the freshest record, and
/// the old id loads nothing afterwards.
pub async fn lifecycle_login_keeps_a_change_committed_before_it(cx: Context) -> Outcome {
    let manager = SessionManager::from_arc(cx.store_arc());
    let user = cx.user("lou");
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let login = manager.load(Some(&cookie));
    call("login request reads", login.get_value("seeded")).await?;
    let other = manager.load(Some(&cookie));
    call("other request writes", other.insert("theme", "dark")).await?;
    set_value(
        "other request",
        commit(&manager, &other, "other request").await?,
    )?;
    call("session.login", login.login(user.clone())).await?;
    call("session.insert", login.insert("greeting", "hi")).await?;
    let rotated = set_value("login", commit(&manager, &login, "login").await?)?;
    expect_absent(&cx, &record.key, "under the pre-login id").await?;
    let stored = load(&cx, &key_of(&rotated)?).await?;
    ensure_eq(
        "user and data of the logged-in session",
        Some((
            Some(user),
            Some(json!("dark")),
            Some(json!("hi")),
            Some(json!(true)),
        )),
        stored.map(|r| {
            (
                r.user,
                r.data.get("theme").cloned(),
                r.data.get("greeting").cloned(),
                r.data.get("seeded").cloned(),
            )
        }),
    )
}

/// A request that loaded the session before a login and commits after it
/// (in the same manager, or in another app server: a manager over the
/// peer store) gets `Ok(Unchanged)`:
/// its change lands in the logged-in session, and its response neither
/// clears the cookie nor sets the old id (either would log the browser
/// out) nor reveals the new one.
pub async fn lifecycle_commit_after_login_reaches_the_new_session(cx: Context) -> Outcome {
    let manager = SessionManager::from_arc(cx.store_arc());
    let elsewhere = SessionManager::from_arc(cx.peer_store_arc());
    for (label, late_manager) in [("same manager", &manager), ("another manager", &elsewhere)] {
        let user = cx.user("lea");
        let (cookie, _) = seed(&cx, Duration::from_secs(5), IDLE).await?;
        let login = manager.load(Some(&cookie));
        call("login request reads", login.get_value("seeded")).await?;
        let late = late_manager.load(Some(&cookie));
        call("late request reads", late.get_value("seeded")).await?;
        call("session.login", login.login(user.clone())).await?;
        let rotated = set_value("login", commit(&manager, &login, "login").await?)?;
        call("late request writes", late.insert("late", label)).await?;
        let action = commit(late_manager, &late, "late request after the login").await?;
        ensure_eq(
            format!("cookie action of a request committed after a login ({label})"),
            CookieAction::Unchanged,
            action,
        )?;
        let stored = load(&cx, &key_of(&rotated)?).await?;
        ensure_eq(
            format!("the late change in the logged-in session ({label})"),
            Some((Some(user), Some(json!(label)))),
            stored.map(|r| (r.user, r.data.get("late").cloned())),
        )?;
        let replay = manager.load(Some(&cookie));
        let seen = call("the old id after login", replay.get_value("seeded")).await?;
        ensure_eq("data behind the pre-login id", None, seen)?;
    }
    Ok(())
}

/// A login and 8 other requests on one session, all released together,
/// three rounds: every commit is `Ok`, none clears the cookie, the login
/// moves the session to a new id, and every change is in the logged-in
/// session.
pub async fn lifecycle_login_racing_commits_loses_nothing(cx: Context) -> Outcome {
    let manager = SessionManager::from_arc(cx.store_arc());
    for round in 0..3 {
        let user = cx.user("rae");
        let (cookie, old) = seed(&cx, Duration::from_secs(5), IDLE).await?;
        let barrier = Arc::new(tokio::sync::Barrier::new(9));
        let mut tasks = Vec::new();
        for i in 0..9 {
            let (manager, cookie, barrier, user) = (
                manager.clone(),
                cookie.clone(),
                Arc::clone(&barrier),
                user.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let session = manager.load(Some(&cookie));
                session.get_value("seeded").await?;
                barrier.wait().await;
                if i == 4 {
                    session.login(user).await?;
                }
                session.insert(format!("k{i}"), i).await?;
                manager.commit(&session).await
            }));
        }
        let mut rotated = None;
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await {
                Ok(Ok(CookieAction::Set { value, .. })) if i == 4 && value != cookie => {
                    rotated = Some(value);
                }
                Ok(Ok(CookieAction::Set { value, .. })) if i != 4 && value == cookie => {}
                Ok(Ok(CookieAction::Unchanged)) if i != 4 => {}
                other => {
                    return Err(Failure::new(
                        format!("round {round}: commit of request {i} (request 4 logs in)"),
                        if i == 4 {
                            "Ok(Set) with a new id"
                        } else {
                            "Ok(Set) with the old id, or Ok(Unchanged)"
                        },
                        format!("{other:?}"),
                    ));
                }
            }
        }
        let rotated = rotated.ok_or_else(|| Failure::new("the login", "a new id", "none"))?;
        expect_absent(&cx, &old.key, "under the pre-login id").await?;
        let stored = load(&cx, &key_of(&rotated)?).await?;
        let missing: Vec<String> = (0..9)
            .map(|i| format!("k{i}"))
            .filter(|k| !stored.as_ref().is_some_and(|r| r.data.contains_key(k)))
            .collect();
        ensure_eq(
            format!("round {round}: keys missing from the logged-in session"),
            Vec::<String>::new(),
            missing,
        )?;
    }
    Ok(())
}

/// A request that loaded a session before another logged it out cannot
/// bring it back: its commit finds it gone and clears the cookie.
pub async fn lifecycle_logout_elsewhere_is_never_resurrected(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let slow = manager.load(Some(&cookie));
    call("slow request reads", slow.get_value("seeded")).await?;
    let logout = manager.load(Some(&cookie));
    logout.logout().await;
    let action = commit(&manager, &logout, "logout").await?;
    ensure_eq("cookie action of logout", CookieAction::Clear, action)?;
    call("slow request writes", slow.insert("late", true)).await?;
    let action = commit(&manager, &slow, "late write after logout").await?;
    ensure_eq(
        "cookie action of a write to a logged-out session",
        CookieAction::Clear,
        action,
    )?;
    expect_absent(
        &cx,
        &record.key,
        "after a late write to a logged-out session",
    )
    .await
}

/// `login` binds the user and moves the session to a new id: the old id
/// loads nothing, the new one has all the data.
pub async fn lifecycle_login_rotates_the_id(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let user = cx.user("uma");
    let anonymous = manager.load(None);
    call("session.insert", anonymous.insert("cart", vec![1, 2, 3])).await?;
    let before = set_value(
        "anonymous",
        commit(&manager, &anonymous, "anonymous cart").await?,
    )?;
    let session = manager.load(Some(&before));
    call("session.login", session.login(user.clone())).await?;
    let after = set_value("login", commit(&manager, &session, "login").await?)?;
    if after == before {
        return Err(Failure::new(
            "commit after login",
            "a new session id",
            "the pre-login id",
        ));
    }
    expect_absent(&cx, &key_of(&before)?, "under the pre-login id").await?;
    let next = manager.load(Some(&after));
    let cart = call(
        "session.get(\"cart\") after login",
        next.get::<Vec<u32>>("cart"),
    )
    .await?;
    ensure_eq("cart after login", Some(vec![1, 2, 3]), cart)?;
    let bound = call("session.user() after login", next.user()).await?;
    ensure_eq("user after login", Some(user.clone()), bound)?;
    let listed = call("sessions_of", manager.sessions_of(&user)).await?;
    ensure_eq(
        "sessions of the user after login",
        vec![key_of(&after)?],
        listed.records.iter().map(|r| r.key).collect::<Vec<_>>(),
    )
}

/// A login whose create of the new record fails loses nothing: the old
/// session is intact, and a retried commit completes the rotation.
pub async fn lifecycle_failed_create_during_login_loses_nothing(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let user = cx.user("vic");
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let session = manager.load(Some(&cookie));
    call("session.login", session.login(user.clone())).await?;
    probe.fail_create.store(true, Ordering::SeqCst);
    let failed = manager.commit(&session).await;
    probe.fail_create.store(false, Ordering::SeqCst);
    if !matches!(failed, Err(Error::Backend { .. })) {
        return Err(Failure::new(
            "commit of a login while create fails",
            "Err(Backend) from the planted failure",
            format!("{failed:?}"),
        ));
    }
    super::expect_record(&cx, &record.key, &record).await?;
    super::expect_listed(&cx, &user, &[]).await?;
    let retried = set_value(
        "retried login",
        commit(&manager, &session, "retried login").await?,
    )?;
    expect_absent(
        &cx,
        &record.key,
        "under the pre-login id after the retried login",
    )
    .await?;
    let rotated = load(&cx, &key_of(&retried)?).await?;
    ensure_eq(
        "user and data under the new id",
        Some((Some(user), Some(json!(true)))),
        rotated.map(|r| (r.user, r.data.get("seeded").cloned())),
    )
}

/// `cycle_id` moves the session to a new id and keeps data, user and the
/// absolute deadline (its `created_at`).
pub async fn lifecycle_cycle_id_keeps_data_user_and_deadline(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let (cookie, mut record) = seed(&cx, Duration::from_secs(3600), IDLE).await?;
    record.user = Some(cx.user("wes"));
    record.version = call("bind a user", cx.store().save(&record)).await?;
    let session = manager.load(Some(&cookie));
    call("session.cycle_id", session.cycle_id()).await?;
    let next = set_value("cycle_id", commit(&manager, &session, "cycle_id").await?)?;
    expect_absent(&cx, &record.key, "under the id before cycle_id").await?;
    let moved = load(&cx, &key_of(&next)?).await?;
    ensure_eq(
        "data, user and created_at after cycle_id",
        Some((record.data.clone(), record.user.clone(), record.created_at)),
        moved.map(|r| (r.data, r.user, r.created_at)),
    )
}

/// A session over the size limit is refused with `TooLarge` before any
/// write; the stored record is unchanged.
pub async fn lifecycle_too_large_is_refused_before_any_write(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config().with_max_size(1024));
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let session = manager.load(Some(&cookie));
    call("session.insert", session.insert("blob", "x".repeat(2048))).await?;
    match manager.commit(&session).await {
        Err(Error::TooLarge { limit: 1024, size }) if size > 2048 => {}
        other => {
            return Err(Failure::new(
                "commit of a 2 KiB session with a 1 KiB limit",
                "Err(TooLarge { limit: 1024, size > 2048 })",
                format!("{other:?}"),
            ));
        }
    }
    let fresh = manager.load(None);
    call("session.insert", fresh.insert("blob", "y".repeat(2048))).await?;
    let refused = manager.commit(&fresh).await;
    if !matches!(refused, Err(Error::TooLarge { .. })) {
        return Err(Failure::new(
            "commit of a new 2 KiB session",
            "Err(TooLarge)",
            format!("{refused:?}"),
        ));
    }
    probe.expect_calls("commits refused as too large", &["load×1"])?;
    super::expect_record(&cx, &record.key, &record).await
}

/// `logout` deletes the record and clears the cookie, with one store call
/// and no load; the old cookie then yields a fresh, empty session.
pub async fn lifecycle_logout_deletes_and_clears(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let session = manager.load(Some(&cookie));
    session.logout().await;
    let action = commit(&manager, &session, "logout").await?;
    ensure_eq("cookie action of logout", CookieAction::Clear, action)?;
    probe.expect_calls("a logout", &["delete×1"])?;
    expect_absent(&cx, &record.key, "after logout").await?;
    let replay = manager.load(Some(&cookie));
    let seeded = call(
        "session.get with the old cookie",
        replay.get::<bool>("seeded"),
    )
    .await?;
    ensure_eq(
        "data seen through the old cookie after logout",
        None,
        seeded,
    )
}

/// `logout_everywhere` ends every session of the user (each browser's next
/// request is anonymous) and no other user's.
pub async fn lifecycle_logout_everywhere_ends_every_session_of_the_user(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let (xena, yuri) = (cx.user("xena"), cx.user("yuri"));
    let mut cookies = Vec::new();
    for user in [&xena, &xena, &xena, &yuri] {
        let session = manager.load(None);
        call("session.login", session.login(user.clone())).await?;
        cookies.push(set_value(
            "login",
            commit(&manager, &session, "login").await?,
        )?);
    }
    let ended = call("logout_everywhere", manager.logout_everywhere(&xena)).await?;
    ensure_eq("sessions ended by logout_everywhere", 3, ended)?;
    let mut users = BTreeSet::new();
    for cookie in &cookies {
        let session = manager.load(Some(cookie));
        users.insert(call("session.user()", session.user()).await?);
    }
    ensure_eq(
        "users still signed in, over the four browsers",
        BTreeSet::from([None, Some(yuri)]),
        users,
    )
}

/// The value stored for a key reads back through the typed getters.
pub async fn lifecycle_typed_values_round_trip(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let session = manager.load(None);
    call("insert", session.insert("n", 7_u64)).await?;
    call("insert", session.insert("list", vec!["a", "b"])).await?;
    call("insert", session.insert("obj", json!({"k": [1, null]}))).await?;
    let cookie = set_value(
        "typed values",
        commit(&manager, &session, "typed values").await?,
    )?;
    let next = manager.load(Some(&cookie));
    ensure_eq(
        "get::<u64>",
        Some(7),
        call("get", next.get::<u64>("n")).await?,
    )?;
    ensure_eq(
        "get::<Vec<String>>",
        Some(vec!["a".to_owned(), "b".to_owned()]),
        call("get", next.get::<Vec<String>>("list")).await?,
    )?;
    ensure_eq(
        "get_value",
        Some(json!({"k": [1, null]})),
        call("get_value", next.get_value("obj")).await?,
    )?;
    match next.get::<u64>("list").await {
        Err(Error::ValueType { key, .. }) if key == "list" => Ok(()),
        other => Err(Failure::new(
            "get::<u64> of a list",
            "Err(ValueType { key: \"list\", .. })",
            format!("{other:?}"),
        )),
    }?;
    let removed: Option<Value> = call("remove", next.remove("n")).await?;
    ensure_eq("remove returns the former value", Some(json!(7)), removed)
}

/// `logout_session` (the "log out this session" button of an
/// active-sessions page) deletes a session only for the user it is bound
/// to: given another user's session, an anonymous session or an unknown
/// key it answers `false` and deletes nothing. `Session::storage_key`,
/// which such a page uses to mark "this session", is the stored key once
/// loaded or committed, `None` before. Default configuration.
pub async fn lifecycle_logout_session_ends_only_the_users_own_session(cx: Context) -> Outcome {
    let manager = SessionManager::from_arc(cx.store_arc());
    let (alice, bob) = (cx.user("alice"), cx.user("bob"));
    let mut keys = Vec::new();
    for user in [Some(&alice), Some(&bob), None] {
        let session = manager.load(None);
        match user {
            Some(user) => call("session.login", session.login(user.clone())).await?,
            None => call("session.insert", session.insert("cart", 1)).await?,
        }
        ensure_eq(
            "session.storage_key() of a session not yet stored",
            None,
            session.storage_key().await,
        )?;
        let cookie = set_value("sign-in", commit(&manager, &session, "sign-in").await?)?;
        let key = key_of(&cookie)?;
        ensure_eq(
            "session.storage_key() after its commit",
            Some(key),
            session.storage_key().await,
        )?;
        let next = manager.load(Some(&cookie));
        ensure_eq(
            "session.storage_key() before any access",
            None,
            next.storage_key().await,
        )?;
        call("session.user()", next.user()).await?;
        ensure_eq(
            "session.storage_key() once loaded",
            Some(key),
            next.storage_key().await,
        )?;
        keys.push(key);
    }
    let (alices, bobs, anonymous) = (keys[0], keys[1], keys[2]);
    for (what, key) in [
        ("alice's session", alices),
        ("an anonymous session", anonymous),
        ("an unknown key", cx.fresh_key()?),
    ] {
        let deleted = call(
            format!("logout_session(bob, {what})"),
            manager.logout_session(&bob, &key),
        )
        .await?;
        ensure_eq(format!("logout_session(bob, {what})"), false, deleted)?;
    }
    for (what, key) in [
        ("alice's", alices),
        ("bob's", bobs),
        ("the anonymous", anonymous),
    ] {
        if load(&cx, &key).await?.is_none() {
            return Err(Failure::new(
                format!("load {what} session after bob's refused logout_session calls"),
                "Some(..): nothing deleted",
                "None",
            ));
        }
    }
    let deleted = call(
        "logout_session(alice, alice's session)",
        manager.logout_session(&alice, &alices),
    )
    .await?;
    ensure_eq("logout_session(alice, alice's session)", true, deleted)?;
    expect_absent(&cx, &alices, "after alice's logout_session").await?;
    let again = call(
        "logout_session(alice, alice's session) again",
        manager.logout_session(&alice, &alices),
    )
    .await?;
    ensure_eq("logout_session of a session already ended", false, again)?;
    let listed = call("sessions_of(bob)", manager.sessions_of(&bob)).await?;
    ensure_eq(
        "bob's sessions after alice logged hers out",
        vec![bobs],
        listed.records.iter().map(|r| r.key).collect::<Vec<_>>(),
    )
}

/// `clear` removes every key at once (the request reads none of them
/// afterwards) and keeps the user; changes after it stay. Committed, the
/// stored session holds only those, bound to the same user. Default
/// configuration.
pub async fn lifecycle_clear_removes_every_key_and_keeps_the_user(cx: Context) -> Outcome {
    let manager = SessionManager::from_arc(cx.store_arc());
    let user = cx.user("cleo");
    let session = manager.load(None);
    call("session.login", session.login(user.clone())).await?;
    call("session.insert", session.insert("a", 1)).await?;
    call("session.insert", session.insert("b", 2)).await?;
    let cookie = set_value("login", commit(&manager, &session, "login").await?)?;
    let session = manager.load(Some(&cookie));
    call("session.clear", session.clear()).await?;
    ensure_eq(
        "session.get_value(\"a\") after clear",
        None,
        call("session.get_value", session.get_value("a")).await?,
    )?;
    call("session.insert", session.insert("c", 3)).await?;
    set_value("clear", commit(&manager, &session, "clear").await?)?;
    let stored = load(&cx, &key_of(&cookie)?).await?;
    ensure_eq(
        "data and user stored after clear and one insert",
        Some((json!({"c": 3}), Some(user.clone()))),
        stored.map(|r| (Value::Object(r.data), r.user)),
    )?;
    let next = manager.load(Some(&cookie));
    ensure_eq(
        "session.user() after clear",
        Some(user),
        call("session.user()", next.user()).await?,
    )
}

/// A commit whose `create` finds its key taken (a 2^-256 event, or a
/// buggy store) tries again under a fresh id, at most 3 times: after 1 or
/// 3 `Exists` the session is stored under the id of its cookie; after 4
/// the commit fails with `Exists`. Default configuration.
pub async fn lifecycle_taken_key_is_retried_with_a_fresh_id(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, SessionConfig::default());
    for taken in [1_u64, 3] {
        probe.reset();
        probe.planted_exists.store(taken, Ordering::SeqCst);
        let session = manager.load(None);
        call("session.insert", session.insert("taken", taken)).await?;
        let what = format!("a new session whose first {taken} key(s) are taken");
        let cookie = set_value(&what, commit(&manager, &session, &what).await?)?;
        let keys = probe.created_keys();
        let distinct: BTreeSet<&StorageKey> = keys.iter().collect();
        ensure_eq(
            format!("distinct keys of the creates for {what}"),
            taken + 1,
            distinct.len() as u64,
        )?;
        ensure_eq(
            format!("key of the last create for {what}"),
            Some(key_of(&cookie)?),
            keys.last().copied(),
        )?;
        let stored = load(&cx, &key_of(&cookie)?).await?;
        ensure_eq(
            format!("data stored for {what}"),
            Some(Some(json!(taken))),
            stored.map(|r| r.data.get("taken").cloned()),
        )?;
    }
    probe.reset();
    probe.planted_exists.store(4, Ordering::SeqCst);
    let session = manager.load(None);
    call("session.insert", session.insert("taken", 4)).await?;
    let result = manager.commit(&session).await;
    probe.planted_exists.store(0, Ordering::SeqCst);
    if !matches!(result, Err(Error::Exists)) {
        return Err(Failure::new(
            "commit of a new session whose first 4 keys are taken",
            "Err(Exists)",
            format!("{result:?}"),
        ));
    }
    probe.expect_calls("a commit meeting 4 taken keys", &["create×4"])
}

/// The size limit is exact: a session whose data (as JSON) and user name
/// add up to exactly the default limit is stored, as a new session and on
/// a save; one byte more is refused with `TooLarge` naming that size and
/// the limit.
pub async fn lifecycle_size_limit_is_exact(cx: Context) -> Outcome {
    let manager = SessionManager::from_arc(cx.store_arc());
    let limit = SessionConfig::DEFAULT_MAX_SIZE;
    let user = cx.user("sue");
    // `{"blob":"…"}` is 11 bytes of JSON around the blob.
    let fill = limit - 11 - user.len();
    let session = manager.load(None);
    call("session.login", session.login(user.clone())).await?;
    call("session.insert", session.insert("blob", "x".repeat(fill))).await?;
    let cookie = set_value(
        "a new session of exactly the limit",
        commit(&manager, &session, "a new session of exactly the limit").await?,
    )?;
    for (what, blob) in [
        ("a save one byte over the limit", "y".repeat(fill + 1)),
        ("a save of exactly the limit", "z".repeat(fill)),
    ] {
        let session = manager.load(Some(&cookie));
        call("session.insert", session.insert("blob", blob.clone())).await?;
        let result = manager.commit(&session).await;
        let fine = match &result {
            Err(Error::TooLarge { size, limit: l }) => {
                blob.len() > fill && *size == limit + 1 && *l == limit
            }
            Ok(CookieAction::Set { .. }) => blob.len() == fill,
            _ => false,
        };
        if !fine {
            return Err(Failure::new(
                format!("commit of {what} ({limit} bytes)"),
                if blob.len() > fill {
                    format!("Err(TooLarge {{ size: {}, limit: {limit} }})", limit + 1)
                } else {
                    "Ok(Set)".to_owned()
                },
                format!("{result:?}"),
            ));
        }
    }
    let stored = load(&cx, &key_of(&cookie)?).await?;
    ensure_eq(
        "the blob stored after a save of exactly the limit",
        Some(Some(json!("z".repeat(fill)))),
        stored.map(|r| r.data.get("blob").cloned()),
    )?;
    let fresh = manager.load(None);
    call("session.login", fresh.login(user.clone())).await?;
    call("session.insert", fresh.insert("blob", "w".repeat(fill + 1))).await?;
    match manager.commit(&fresh).await {
        Err(Error::TooLarge { size, limit: l }) if size == limit + 1 && l == limit => Ok(()),
        other => Err(Failure::new(
            "commit of a new session one byte over the limit",
            format!("Err(TooLarge {{ size: {}, limit: {limit} }})", limit + 1),
            format!("{other:?}"),
        )),
    }
}

/// A read-only request due for a touch, on a session that another
/// request ended meanwhile: after a logout its commit clears the cookie;
/// after a login moved the session to a new id it leaves the cookie alone
/// (the browser may already hold the new id). Either way nothing comes
/// back under the old id.
pub async fn lifecycle_read_only_commit_after_logout_or_login_elsewhere(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    for (label, login, expected) in [
        ("a logout", false, CookieAction::Clear),
        ("a login", true, CookieAction::Unchanged),
    ] {
        // Last active 3 minutes ago: the next read moves the expiry by
        // 3 minutes, more than the 1 minute touch step.
        let (cookie, record) = seed(&cx, Duration::from_secs(600), IDLE - 3 * STEP).await?;
        let reader = manager.load(Some(&cookie));
        call("reader reads", reader.get_value("seeded")).await?;
        let other = manager.load(Some(&cookie));
        if login {
            call("session.login", other.login(cx.user("rob"))).await?;
        } else {
            other.logout().await;
        }
        commit(&manager, &other, label).await?;
        let action = commit(&manager, &reader, "read-only request").await?;
        ensure_eq(
            format!("cookie action of a read-only request due for a touch after {label}"),
            expected,
            action,
        )?;
        expect_absent(&cx, &record.key, &format!("after {label} and a read")).await?;
    }
    Ok(())
}

/// A login whose retiring of the old record keeps conflicting (another
/// process saves it again and again) gives up with `Conflict` once the
/// conflict budget is spent; the old session stays usable.
pub async fn lifecycle_login_gives_up_when_the_conflict_budget_is_spent(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let budget = Duration::from_millis(300);
    let manager = manager(&probe, config().with_conflict_budget(budget));
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let session = manager.load(Some(&cookie));
    call("session.login", session.login(cx.user("gil"))).await?;
    *probe
        .conflicts_only_for
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(record.key);
    probe.planted_conflicts.store(u64::MAX, Ordering::SeqCst);
    let started = std::time::Instant::now();
    // Bounded: a rotation that ignores its budget fails here, not by hanging.
    let result = tokio::time::timeout(budget * 10, manager.commit(&session)).await;
    probe.planted_conflicts.store(0, Ordering::SeqCst);
    let took = started.elapsed();
    if !matches!(result, Ok(Err(Error::Conflict))) {
        return Err(Failure::new(
            "a login whose old record always conflicts, with a 300 ms budget",
            "Err(Conflict) after about 300 ms",
            format!("{result:?} after {took:?}"),
        ));
    }
    let old = manager.load(Some(&cookie));
    ensure_eq(
        "data under the old id after the failed login",
        Some(json!(true)),
        call("session.get_value", old.get_value("seeded")).await?,
    )
}

/// Commits of one session queued behind a save in flight are folded into
/// the next save, built on the record that save stored: inside one
/// manager the store never answers `Conflict`, even to requests that
/// loaded an older version.
pub async fn lifecycle_queued_commits_build_on_the_save_before_them(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let mut sessions = Vec::new();
    for name in ["a", "b", "c"] {
        let session = manager.load(Some(&cookie));
        call("session.insert", session.insert(name, true)).await?;
        sessions.push(session);
    }
    probe.reset();
    probe.gate.send_replace(false);
    let spawn = |session: &Session| {
        let (manager, session) = (manager.clone(), session.clone());
        tokio::spawn(async move { manager.commit(&session).await })
    };
    let first = spawn(&sessions[0]);
    // Wait until the first commit's save is in flight (held at the gate).
    let started = std::time::Instant::now();
    while probe.calls[2].load(Ordering::SeqCst) == 0 {
        if started.elapsed() > Duration::from_secs(5) {
            probe.gate.send_replace(true);
            return Err(Failure::new(
                "the first commit",
                "a save within 5 s",
                "no save",
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let queued = [spawn(&sessions[1]), spawn(&sessions[2])];
    // A committing session is locked: wait until both commits are under
    // way (queued behind the first), then let the save through.
    for session in &sessions[1..] {
        while tokio::time::timeout(Duration::from_millis(1), session.storage_key())
            .await
            .is_ok()
        {
            tokio::task::yield_now().await;
            if started.elapsed() > Duration::from_secs(5) {
                probe.gate.send_replace(true);
                return Err(Failure::new(
                    "the queued commits",
                    "under way within 5 s",
                    "not started",
                ));
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    probe.gate.send_replace(true);
    for (i, task) in std::iter::once(first).chain(queued).enumerate() {
        let result = task.await;
        if !matches!(result, Ok(Ok(CookieAction::Set { .. }))) {
            return Err(Failure::new(
                format!("commit {i} of 3"),
                "Ok(Set)",
                format!("{result:?}"),
            ));
        }
    }
    ensure_eq(
        "Conflict answers to one manager's queued commits",
        0,
        probe.conflicts.load(Ordering::SeqCst),
    )?;
    probe.expect_calls("three commits, two queued behind the first", &["save×2"])?;
    let stored = load(&cx, &record.key).await?;
    ensure_eq(
        "keys stored",
        Some((Some(json!(true)), Some(json!(true)), Some(json!(true)))),
        stored.map(|r| {
            (
                r.data.get("a").cloned(),
                r.data.get("b").cloned(),
                r.data.get("c").cloned(),
            )
        }),
    )
}

/// A store error during a save reaches the commit as that error (not as
/// `Conflict`), and the session keeps its changes: the retried commit
/// lands them.
pub async fn lifecycle_failed_save_reports_the_store_error(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let session = manager.load(Some(&cookie));
    call("session.insert", session.insert("kept", true)).await?;
    probe.fail_save.store(true, Ordering::SeqCst);
    let failed = manager.commit(&session).await;
    probe.fail_save.store(false, Ordering::SeqCst);
    if !matches!(failed, Err(Error::Backend { .. })) {
        return Err(Failure::new(
            "commit while save fails",
            "Err(Backend) from the planted failure",
            format!("{failed:?}"),
        ));
    }
    super::expect_record(&cx, &record.key, &record).await?;
    set_value(
        "retried commit",
        commit(&manager, &session, "retried commit").await?,
    )?;
    let stored = load(&cx, &record.key).await?;
    ensure_eq(
        "the change after the retried commit",
        Some(Some(json!(true))),
        stored.map(|r| r.data.get("kept").cloned()),
    )
}
