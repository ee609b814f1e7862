//! Cases for ending sessions through the manager: [`Session::logout`],
//! "log out everywhere", one session of a user's, and requests that race
//! a logout.
//!
//! [`Session::logout`]: session_core::Session::logout

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use session_core::{CookieAction, Error, SessionManager};

use super::probe::{IDLE, Probe, commit, config, key_of, manager, seed, set_value};
use super::{call, ensure_eq, expect_absent, load};
use crate::{Context, Failure, Outcome};

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

/// A logout whose delete fails reports the store's error, and the session
/// still says it is logged out ([`Session::is_logged_out`]), so the web
/// layer overwrites the browser's cookie even so (a user who logged out
/// must not keep the id). The record is still there, and a retried commit
/// deletes it and answers `Clear`.
///
/// [`Session::is_logged_out`]: session_core::Session::is_logged_out
pub async fn lifecycle_failed_logout_reports_the_error_and_stays_logged_out(
    cx: Context,
) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let (cookie, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    for read_first in [false, true] {
        let session = manager.load(Some(&cookie));
        if read_first {
            call("read before logout", session.get_value("seeded")).await?;
        }
        session.logout().await;
        probe.fail_delete.store(true, Ordering::SeqCst);
        let failed = manager.commit(&session).await;
        probe.fail_delete.store(false, Ordering::SeqCst);
        if !matches!(failed, Err(Error::Backend { .. })) {
            return Err(Failure::new(
                format!("commit of a logout while delete fails (read first: {read_first})"),
                "Err(Backend) from the planted failure",
                format!("{failed:?}"),
            ));
        }
        ensure_eq(
            "Session::is_logged_out after a failed logout",
            true,
            session.is_logged_out(),
        )?;
        super::expect_record(&cx, &record.key, &record).await?;
        if read_first {
            let action = commit(&manager, &session, "retried logout").await?;
            ensure_eq(
                "cookie action of a retried logout",
                CookieAction::Clear,
                action,
            )?;
            expect_absent(&cx, &record.key, "after the retried logout").await?;
        }
    }
    Ok(())
}
