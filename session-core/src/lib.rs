//! The contract of server-side sessions.
//!
//! The browser holds only an unguessable [`SessionId`] in an `HttpOnly`
//! cookie; the server keeps the session's state in a [`SessionStore`] under
//! the id's [`StorageKey`] (its SHA-256), so a leaked store holds no usable
//! cookie. Saves are compare-and-set on a version and never resurrect a
//! deleted session; expiry is idle **and** absolute ([`ExpiryPolicy`]);
//! every store keeps a per-user index for "active sessions" and "log out
//! everywhere".
//!
//! This crate has no backend of its own. Pick a store crate
//! (`session-store-memory`, `session-store-redis`, `session-store-sqlite`)
//! or write one and prove it with `session-store-conformance`.
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

pub mod coalesce;
mod error;
mod expiry;
mod id;
mod manager;
mod record;
pub mod store;
pub mod sweeper;
mod time;

pub use error::{BoxError, Error};
pub use expiry::ExpiryPolicy;
pub use id::{
    ID_BYTES, ID_TEXT_LEN, InvalidSessionId, InvalidStorageKey, KEY_BYTES, SessionId, StorageKey,
};
pub use manager::{CookieAction, Session, SessionConfig, SessionManager};
pub use record::{Data, Record, Unstorable, UserSessions};
pub use store::{Reload, SessionStore};
pub use time::Timestamp;
