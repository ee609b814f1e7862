//! Cases for the session lifecycle ([`SessionManager`] and [`Session`]) on
//! top of the store under test: lazy loading, minimal commits, lossless
//! concurrency, no resurrection, expiry, logout. Moves to a new id are in
//! [`rotation`](super::rotation), what cookies lead to in
//! [`cookies`](super::cookies).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use session_core::{
    CookieAction, Error, Session, SessionConfig, SessionManager, StorageKey, Timestamp,
};

use super::hot::hot_session;
use super::probe::{
    ABSOLUTE, IDLE, Probe, STEP, commit, config, expect_all_kept_the_id, key_of, manager, seed,
    set_value,
};
use super::{call, ensure_eq, expect_absent, load};
use crate::{Context, Failure, Outcome};

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
    expect_all_kept_the_id(tasks, &cookie, |i| {
        format!("commit of concurrent increment {i} of {total}")
    })
    .await?;
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
/// store that never lets it through, it gives up with `GaveUp` (not a
/// plain `Conflict`), naming the store.
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
    let store = cx.store().name();
    let gave_up = |e: &Error| {
        matches!(e, Error::GaveUp { store: s, operation: "commit", attempts }
            if *s == store && *attempts > 1)
    };
    if !matches!(&result, Ok(Err(e)) if gave_up(e)) || took > budget * 10 {
        return Err(Failure::new(
            "a commit that can never win, with a 300 ms budget",
            "Err(GaveUp { operation: \"commit\", attempts > 1, .. }) naming the store, after about 300 ms",
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
