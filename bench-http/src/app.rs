//! Our side of the benchmark app: the routes on `session-tower`, and the
//! bare baseline (the same routes without any session layer).
//!
//! * `POST /login`: a fresh session bound to a new user name (`login`
//!   rotates the id: the fixation defence) with a counter of 0;
//! * `GET /counter`: read-modify-write of the counter, answers the new
//!   value;
//! * `GET /read`: read-only, answers the counter;
//! * `GET /plain`: never touches the session (the "untouched" request);
//! * `GET /hit/{c}`: read-modify-write of the counter `hit-{c}` (the hot
//!   session's per-connection counters: connection `c` alone writes
//!   `hit-{c}`, so only a lost write of another key can lose a hit);
//! * `GET /hits`: the sum of `hit-0` … `hit-63`.
//!
//! The tower-sessions app (`bench-http/tower-sessions-app`) has the same
//! routes doing the same.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use session_core::SessionManager;
use session_tower::{Session, SessionError, SessionLayer};

/// Numbers the users of `POST /login`.
static USERS: AtomicU64 = AtomicU64::new(0);

async fn login(session: Session) -> Result<&'static str, SessionError> {
    let n = USERS.fetch_add(1, Ordering::Relaxed);
    session.login(format!("user-{n}")).await?;
    session.insert("counter", 0_u64).await?;
    Ok("welcome")
}

async fn counter(session: Session) -> Result<String, SessionError> {
    // `update`, not `get` + `insert`: the increment is recomputed on the
    // freshest record when a concurrent request committed first, so the hot
    // session's shared counter loses nothing.
    let n = session
        .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string())
}

async fn read(session: Session) -> Result<String, SessionError> {
    let n = session.get::<u64>("counter").await?.unwrap_or(0);
    Ok(n.to_string())
}

async fn hit(session: Session, Path(c): Path<u32>) -> Result<String, SessionError> {
    let key = format!("hit-{c}");
    let n = session.get::<u64>(&key).await?.unwrap_or(0) + 1;
    session.insert(key, n).await?;
    Ok(n.to_string())
}

async fn hits(session: Session) -> Result<String, SessionError> {
    let mut sum = 0;
    for c in 0..HIT_KEYS {
        sum += session.get::<u64>(&format!("hit-{c}")).await?.unwrap_or(0);
    }
    Ok(sum.to_string())
}

/// How many `hit-{c}` keys `GET /hits` adds up.
pub(crate) const HIT_KEYS: u32 = 64;

async fn plain() -> &'static str {
    "ok"
}

/// The app on `session-tower` with the layer's defaults (cookie
/// attributes, cross-site guard) over `manager`.
pub(crate) fn ours(manager: SessionManager) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/counter", get(counter))
        .route("/read", get(read))
        .route("/plain", get(plain))
        .route("/hit/{c}", get(hit))
        .route("/hits", get(hits))
        .layer(SessionLayer::new(manager))
}

/// The same routes without sessions: each answers what the session
/// version answers for a fresh session, with no state at all.
pub(crate) fn bare() -> Router {
    Router::new()
        .route("/login", post(|| async { "welcome" }))
        .route("/counter", get(|| async { "1" }))
        .route("/read", get(|| async { "0" }))
        .route("/plain", get(plain))
        .route("/hit/{c}", get(|| async { "1" }))
        .route("/hits", get(|| async { "0" }))
}
