//! Cases for what a request's cookies lead to: malformed values, unknown
//! ids, several cookies of the session's name.

use std::time::Duration;

use serde_json::json;
use session_core::{CookieAction, SessionId, SessionManager};

use super::probe::{IDLE, Probe, commit, config, key_of, manager, seed, set_value};
use super::{call, ensure_eq, expect_absent, load};
use crate::{Context, Failure, Outcome};

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
    let planted = fresh_cookie()?;
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
    // Two loads: the id, then its rotation marker (an id a login moved
    // away from must not start a session that replaces the new cookie).
    probe.expect_calls("a session from an unknown id", &["create×1", "load×2"])
}

/// Several cookies of the session's name (one planted by a sibling
/// subdomain for the parent domain, a garbled one, the real one): the
/// first that names a live session is used, whatever comes before it,
/// and the commit keeps that session's id in the cookie; nothing is
/// cleared.
pub async fn lifecycle_first_live_cookie_of_several_is_used(cx: Context) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let (real, record) = seed(&cx, Duration::from_secs(5), IDLE).await?;
    let planted = fresh_cookie()?;
    let session = manager.load_any(["not-an-id", planted.as_str(), real.as_str()]);
    let seen = call("read through several cookies", session.get_value("seeded")).await?;
    ensure_eq(
        "seeded, read through several cookies",
        Some(json!(true)),
        seen,
    )?;
    let action = commit(&manager, &session, "read through several cookies").await?;
    ensure_eq(
        "cookie action of a read through several cookies",
        CookieAction::Unchanged,
        action,
    )?;
    let writer = manager.load_any([planted.as_str(), real.as_str()]);
    call(
        "write through several cookies",
        writer.insert("theme", "dark"),
    )
    .await?;
    let cookie = set_value(
        "write through several cookies",
        commit(&manager, &writer, "write through several cookies").await?,
    )?;
    ensure_eq("the cookie after the write", real.clone(), cookie)?;
    let stored = load(&cx, &record.key).await?;
    ensure_eq(
        "theme in the real session",
        Some(Some(json!("dark"))),
        stored.map(|r| r.data.get("theme").cloned()),
    )?;
    expect_absent(&cx, &key_of(&planted)?, "under the planted id").await
}

/// Cookies of the session's name that name no session are cleared (as
/// one is) only when every one of them was looked at; past
/// `SessionManager::MAX_COOKIE_CANDIDATES` well-formed ones the rest are
/// not tried (a flood of cookies costs a bounded number of loads) and
/// nothing is cleared, since an untried one may be live.
pub async fn lifecycle_cookies_naming_no_session_are_cleared_only_when_all_were_tried(
    cx: Context,
) -> Outcome {
    let probe = Probe::new(&cx);
    let manager = manager(&probe, config());
    let max = SessionManager::MAX_COOKIE_CANDIDATES;
    for sent in [1, 2, max, max + 1, 40] {
        let cookies: Vec<String> = (0..sent)
            .map(|_| fresh_cookie())
            .collect::<Result<_, _>>()?;
        probe.reset();
        let session = manager.load_any(cookies.iter().map(String::as_str));
        let seen = call("read through unknown ids", session.get_value("seeded")).await?;
        ensure_eq(format!("data behind {sent} unknown ids"), None, seen)?;
        let action = commit(&manager, &session, "read through unknown ids").await?;
        let want = if sent <= max {
            CookieAction::Clear
        } else {
            CookieAction::Unchanged
        };
        ensure_eq(
            format!("cookie action for {sent} unknown ids"),
            want,
            action,
        )?;
        // One load per id tried, and one for its rotation marker.
        let tried = sent.min(max);
        probe.expect_calls(
            &format!("a read through {sent} unknown ids"),
            &[&format!("load×{}", 2 * tried)],
        )?;
    }
    Ok(())
}

/// A fresh, well-formed session id that names nothing.
fn fresh_cookie() -> Result<String, Failure> {
    SessionId::generate()
        .map(|id| id.to_cookie_value())
        .map_err(|e| Failure::new("SessionId::generate()", "an id", e.to_string()))
}
