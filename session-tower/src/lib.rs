//! Server-side sessions for tower and axum.
//!
//! [`SessionLayer`] reads the session cookie, hands each request a
//! [`Session`] (lazily loaded: a handler that never touches it costs no
//! store call), and after the handler commits it through the
//! [`SessionManager`](session_core::SessionManager) and writes `Set-Cookie`:
//! `__Host-session`, `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/` by
//! default ([`CookieConfig`]), and `Cache-Control: no-store` on every
//! response that carries it. Logout answers `Set-Cookie` with an empty
//! value and `Max-Age=0`: the server cannot delete the browser's cookie,
//! only overwrite it, and does so even when the store fails to delete the
//! record. Store errors become a bare 500, details only in `tracing`.
//! State-changing requests another origin made the browser send (a forged
//! login form, say) are refused with a bare 403 before any store call
//! ([`CrossSiteGuard`], on by default).
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use session_core::SessionManager;
//! use session_store_memory::MemoryStore;
//! use session_tower::{Session, SessionError, SessionLayer};
//!
//! async fn login(session: Session) -> Result<&'static str, SessionError> {
//!     // ...after checking the password:
//!     session.login("alice").await?; // binds the user and rotates the id
//!     Ok("welcome")
//! }
//!
//! async fn logout(session: Session) -> &'static str {
//!     session.logout().await; // record deleted, cookie cleared on commit
//!     "bye"
//! }
//!
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     .route("/logout", post(logout))
//!     .layer(SessionLayer::new(SessionManager::new(MemoryStore::default())));
//! ```
//!
//! The store is any [`SessionStore`](session_core::SessionStore), also an
//! `Arc<dyn SessionStore>` chosen at run time
//! ([`SessionManager::from_arc`](session_core::SessionManager::from_arc)).
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// The crate's `README.md`, whose code blocks are compiled as doctests so
/// they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod config;
mod guard;
mod layer;
mod session;

pub use config::{CookieConfig, SameSite};
pub use guard::{CrossSiteGuard, InvalidOrigin};
pub use layer::{SessionLayer, SessionService};
pub use session::{MissingSessionLayer, Session};

/// A [`session_core::Error`] returned from a handler: answered as a bare
/// `500 Internal Server Error` (with the `axum` feature, through
/// `IntoResponse`), the details logged with `tracing`, never sent.
#[derive(Debug)]
pub struct SessionError(pub session_core::Error);

impl From<session_core::Error> for SessionError {
    fn from(error: session_core::Error) -> Self {
        Self(error)
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
