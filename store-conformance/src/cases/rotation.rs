//! Cases for moving a session to a new id: [`Session::login`] (with
//! its rules on whose data the signed-in session starts from) and
//! [`Session::cycle_id`], and what becomes of requests that still hold
//! the old id.
//!
//! [`Session::login`]: session_core::Session::login
//! [`Session::cycle_id`]: session_core::Session::cycle_id

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use std::sync::atomic::Ordering;

use session_core::{CookieAction, Error, Record, Session, SessionManager, StorageKey};

use super::probe::{IDLE, Probe, commit, config, key_of, manager, seed, set_value};
use super::{call, ensure_eq, expect_absent, load};
use crate::{Context, Failure, Outcome};

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

/// How a session moves to a new id in the rotation cases.
#[derive(Clone, Copy, Debug)]
enum Move {
    /// `cycle_id`: the owner stays.
    Cycle,
    /// A login as the user the session is bound to: the owner stays.
    SameUser,
    /// A login from an anonymous session: a new owner.
    FromAnonymous,
    /// A login as another user than the session's: a new owner.
    OtherUser,
}

impl Move {
    const ALL: [Self; 4] = [
        Self::Cycle,
        Self::SameUser,
        Self::FromAnonymous,
        Self::OtherUser,
    ];

    /// Whether requests that loaded the session before the move get their
    /// changes into it.
    fn forwards(self) -> bool {
        matches!(self, Self::Cycle | Self::SameUser)
    }

    /// A session to move (stored directly, with the data key `seeded`):
    /// bound to `owner` unless the move starts from an anonymous one.
    async fn seed(self, cx: &Context, owner: &str) -> Result<(String, Record), Failure> {
        let (cookie, mut record) = seed(cx, Duration::from_secs(5), IDLE).await?;
        if !matches!(self, Self::FromAnonymous) {
            record.user = Some(owner.to_owned());
            record.version = call("bind the seeded session", cx.store().save(&record)).await?;
        }
        Ok((cookie, record))
    }

    /// Asks `session` for the move.
    async fn ask(self, session: &Session, owner: &str, other: &str) -> Result<(), Failure> {
        match self {
            Self::Cycle => call("session.cycle_id", session.cycle_id()).await,
            Self::SameUser | Self::FromAnonymous => {
                call("session.login", session.login(owner.to_owned())).await
            }
            Self::OtherUser => call("session.login", session.login(other.to_owned())).await,
        }
    }
}

/// A request that loaded the session before it moved to a new id and
/// commits after the move (in the same manager, or in another app
/// server: a manager over the peer store) never clears the cookie, never
/// sets the old id (either would log the browser out) and never learns
/// the new one. After a move that kept the owner (`cycle_id`, a login as
/// the same user) its change lands in the moved session: `Unchanged`.
/// After a login that changed the owner (from anonymous, or as another
/// user) its change is dropped: `Superseded`, and the signed-in session
/// holds nothing of it. Either way the old id loads nothing afterwards.
pub async fn lifecycle_commit_after_a_move_is_forwarded_or_superseded(cx: Context) -> Outcome {
    let manager = SessionManager::from_arc(cx.store_arc());
    let elsewhere = SessionManager::from_arc(cx.peer_store_arc());
    for how in Move::ALL {
        for (label, late_manager) in [("same manager", &manager), ("another manager", &elsewhere)] {
            let (owner, other) = (cx.user("lea"), cx.user("lex"));
            let (cookie, _) = how.seed(&cx, &owner).await?;
            let mover = manager.load(Some(&cookie));
            call("moving request reads", mover.get_value("seeded")).await?;
            let late = late_manager.load(Some(&cookie));
            call("late request reads", late.get_value("seeded")).await?;
            how.ask(&mover, &owner, &other).await?;
            let rotated = set_value("move", commit(&manager, &mover, "move").await?)?;
            call("late request writes", late.insert("late", label)).await?;
            let action = commit(late_manager, &late, "late request after the move").await?;
            let (want, kept) = if how.forwards() {
                (CookieAction::Unchanged, Some(json!(label)))
            } else {
                (CookieAction::Superseded, None)
            };
            ensure_eq(
                format!("cookie action of a request committed after {how:?} ({label})"),
                want,
                action,
            )?;
            let stored = load(&cx, &key_of(&rotated)?).await?;
            ensure_eq(
                format!("the late change in the moved session after {how:?} ({label})"),
                Some(kept),
                stored.map(|r| r.data.get("late").cloned()),
            )?;
            let replay = manager.load(Some(&cookie));
            let seen = call("the old id after the move", replay.get_value("seeded")).await?;
            ensure_eq("data behind the old id", None, seen)?;
        }
    }
    Ok(())
}

/// A request that arrives with an id a move left behind (a response that
/// raced the login's, a second click), while the move's marker stands,
/// opens nothing and writes nothing, and never touches the cookie, which
/// by now may hold the new id: a read answers `Unchanged`, a write
/// `Superseded` (no new session is stored either), a logout `Clear`
/// (deleting nothing of the moved session).
pub async fn lifecycle_request_with_a_moved_id_keeps_the_cookie(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    for how in Move::ALL {
        let (owner, other) = (cx.user("mo"), cx.user("max"));
        let (cookie, _) = how.seed(&cx, &owner).await?;
        let mover = manager.load(Some(&cookie));
        how.ask(&mover, &owner, &other).await?;
        let rotated = set_value("move", commit(&manager, &mover, "move").await?)?;
        let moved = load(&cx, &key_of(&rotated)?).await?;

        let reader = manager.load(Some(&cookie));
        let seen = call("read through the moved id", reader.get_value("seeded")).await?;
        ensure_eq(format!("data behind the moved id ({how:?})"), None, seen)?;
        let action = commit(&manager, &reader, "read through the moved id").await?;
        ensure_eq(
            format!("cookie action of a read through the moved id ({how:?})"),
            CookieAction::Unchanged,
            action,
        )?;

        probe.created_keys();
        let writer = manager.load(Some(&cookie));
        call("write through the moved id", writer.insert("late", true)).await?;
        let action = commit(&manager, &writer, "write through the moved id").await?;
        ensure_eq(
            format!("cookie action of a write through the moved id ({how:?})"),
            CookieAction::Superseded,
            action,
        )?;
        ensure_eq(
            format!("sessions created by a write through the moved id ({how:?})"),
            Vec::<StorageKey>::new(),
            probe.created_keys(),
        )?;

        let logout = manager.load(Some(&cookie));
        logout.logout().await;
        let action = commit(&manager, &logout, "logout through the moved id").await?;
        ensure_eq(
            format!("cookie action of a logout through the moved id ({how:?})"),
            CookieAction::Clear,
            action,
        )?;
        ensure_eq(
            format!("the moved session after all that ({how:?})"),
            moved.clone(),
            load(&cx, &key_of(&rotated)?).await?,
        )?;
    }
    Ok(())
}

/// Logging in as another user than the one the session is bound to
/// starts from empty data (nothing of the first user, such as a tenant or
/// a second-factor flag, carries over; changes made after the login in
/// the same request stay), while a login from an anonymous session keeps
/// the data (a cart survives sign-in), and so does signing in again as
/// the same user.
pub async fn lifecycle_login_as_another_user_starts_empty(cx: Context) -> Outcome {
    let manager = SessionManager::from_arc(cx.store_arc());
    for how in [Move::SameUser, Move::FromAnonymous, Move::OtherUser] {
        let (owner, other) = (cx.user("ada"), cx.user("bea"));
        let (cookie, _) = how.seed(&cx, &owner).await?;
        let session = manager.load(Some(&cookie));
        call("mark the session", session.insert("mfa_ok", true)).await?;
        how.ask(&session, &owner, &other).await?;
        call("insert after the login", session.insert("device", "phone")).await?;
        let seen = call("read after the login", session.get_value("mfa_ok")).await?;
        let rotated = set_value("login", commit(&manager, &session, "login").await?)?;
        let stored = load(&cx, &key_of(&rotated)?).await?;
        let (kept, user) = match how {
            Move::OtherUser => (None, other.clone()),
            _ => (Some(json!(true)), owner.clone()),
        };
        ensure_eq(
            format!("mfa_ok as the request sees it right after {how:?}"),
            kept.clone(),
            seen,
        )?;
        ensure_eq(
            format!("seeded, mfa_ok, device and user of the session after {how:?}"),
            Some((kept.clone(), kept, Some(json!("phone")), Some(user))),
            stored.map(|r| {
                (
                    r.data.get("seeded").cloned(),
                    r.data.get("mfa_ok").cloned(),
                    r.data.get("device").cloned(),
                    r.user,
                )
            }),
        )?;
    }
    Ok(())
}

/// A move and 8 other requests on one session, all released together,
/// three rounds for each kind of move: every commit is `Ok`, none clears
/// the cookie, the mover gets a new id, and every change a commit
/// acknowledged is in the moved session: answered `Set` with the old id
/// (committed before the move) or `Unchanged` (forwarded after a move
/// that kept the owner). After a login that changed the owner, requests
/// committed after it answer `Superseded` and their changes are not
/// there; after a login as another user, neither are those committed
/// before it (the new user starts empty).
pub async fn lifecycle_login_racing_commits_loses_nothing(cx: Context) -> Outcome {
    let manager = SessionManager::from_arc(cx.store_arc());
    for how in Move::ALL {
        for round in 0..3 {
            let (owner, other) = (cx.user("rae"), cx.user("ray"));
            let (cookie, old) = how.seed(&cx, &owner).await?;
            let answers = race_a_move(&manager, &cookie, how, &owner, &other).await?;
            let (rotated, kept, dropped) = sort_answers(answers, &cookie, how, round)?;
            expect_absent(&cx, &old.key, "under the id before the move").await?;
            let stored = load(&cx, &key_of(&rotated)?).await?;
            let has = |k: &String| stored.as_ref().is_some_and(|r| r.data.contains_key(k));
            let missing: Vec<&String> = kept.iter().filter(|k| !has(k)).collect();
            let present: Vec<&String> = dropped.iter().filter(|k| has(k)).collect();
            ensure_eq(
                format!("{how:?}, round {round}: acknowledged keys missing from the moved session"),
                Vec::<&String>::new(),
                missing,
            )?;
            ensure_eq(
                format!("{how:?}, round {round}: superseded keys found in the moved session"),
                Vec::<&String>::new(),
                present,
            )?;
        }
    }
    Ok(())
}

/// The racing requests' answers: the mover's new id, the keys whose
/// changes must be in the moved session, and those that must not.
fn sort_answers(
    answers: Vec<Result<CookieAction, Error>>,
    cookie: &str,
    how: Move,
    round: usize,
) -> Result<(String, Vec<String>, Vec<String>), Failure> {
    let (mut rotated, mut kept, mut dropped) = (None, Vec::new(), Vec::new());
    for (i, answer) in answers.into_iter().enumerate() {
        let key = format!("k{i}");
        match answer {
            Ok(CookieAction::Set { value, .. }) if i == 4 && value != cookie => {
                rotated = Some(value);
                kept.push(key);
            }
            // Committed before the move; a login as another user then
            // starts from empty data.
            Ok(CookieAction::Set { value, .. }) if i != 4 && value == cookie => {
                if matches!(how, Move::OtherUser) {
                    dropped.push(key);
                } else {
                    kept.push(key);
                }
            }
            Ok(CookieAction::Unchanged) if i != 4 && how.forwards() => kept.push(key),
            Ok(CookieAction::Superseded) if i != 4 && !how.forwards() => dropped.push(key),
            other => {
                return Err(Failure::new(
                    format!("{how:?}, round {round}: commit of request {i} (request 4 moves)"),
                    match (i == 4, how.forwards()) {
                        (true, _) => "Ok(Set) with a new id",
                        (false, true) => "Ok(Set) with the old id, or Ok(Unchanged)",
                        (false, false) => "Ok(Set) with the old id, or Ok(Superseded)",
                    },
                    format!("{other:?}"),
                ));
            }
        }
    }
    let rotated = rotated.ok_or_else(|| Failure::new("the move", "a new id", "none"))?;
    Ok((rotated, kept, dropped))
}

/// Runs 9 requests on the session of `cookie`, released together after
/// they all loaded it; request 4 makes the move, each inserts `k<i>`.
async fn race_a_move(
    manager: &SessionManager,
    cookie: &str,
    how: Move,
    owner: &str,
    other: &str,
) -> Result<Vec<Result<CookieAction, Error>>, Failure> {
    let barrier = Arc::new(tokio::sync::Barrier::new(9));
    let mut tasks = Vec::new();
    for i in 0..9 {
        let (manager, cookie, barrier) = (manager.clone(), cookie.to_owned(), Arc::clone(&barrier));
        let (owner, other) = (owner.to_owned(), other.to_owned());
        tasks.push(tokio::spawn(async move {
            let session = manager.load(Some(&cookie));
            session
                .get_value("seeded")
                .await
                .map_err(|e| e.to_string())?;
            barrier.wait().await;
            if i == 4 {
                how.ask(&session, &owner, &other)
                    .await
                    .map_err(|f| f.to_string())?;
            }
            session
                .insert(format!("k{i}"), i)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(manager.commit(&session).await)
        }));
    }
    let mut answers = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let answer = task
            .await
            .map_err(|e| Failure::new(format!("request {i}"), "a finished task", e.to_string()))?
            .map_err(|e| Failure::new(format!("request {i} before its commit"), "Ok", e))?;
        answers.push(answer);
    }
    Ok(answers)
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

/// A login whose retiring of the old record keeps conflicting (another
/// process saves it again and again) gives up with `GaveUp` (naming the
/// store) once the conflict budget is spent; the old session stays usable.
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
    let store = cx.store().name();
    if !matches!(&result, Ok(Err(Error::GaveUp { store: s, operation: "commit", .. })) if *s == store)
    {
        return Err(Failure::new(
            "a login whose old record always conflicts, with a 300 ms budget",
            "Err(GaveUp { operation: \"commit\", .. }) naming the store, after about 300 ms",
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
