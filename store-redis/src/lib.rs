//! A [`SessionStore`](session_core::SessionStore) on Redis or Valkey, on a
//! single server or (feature `cluster`) a Redis Cluster.
//!
//! ```no_run
//! use session_store_redis::RedisStore;
//!
//! # async fn demo() -> Result<(), session_core::Error> {
//! let store = RedisStore::builder("redis://127.0.0.1:6379/")
//!     .prefix("myapp:session:")
//!     .connect()
//!     .await?;
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! # Data layout
//!
//! - A session is a hash under `{prefix}s:{storage key in hex}` with the
//!   fields `v` (version), `d` (data as a JSON object), `c` (created, ms),
//!   `e` (expires, ms) and, only when the session is bound to a user, `u`.
//!   The key expires natively at `e` (`PEXPIREAT`, millisecond precision),
//!   so [`delete_expired`](session_core::SessionStore::delete_expired) has
//!   nothing to do and returns 0.
//! - A user's index is a sorted set under `{prefix}u:{escaped user}` whose
//!   members are storage keys in hex, scored by expiry. The user name is
//!   escaped (`%XX` for every byte but ASCII letters, digits and `-_.@`),
//!   so any name, including `:`, `*`, `{` or non-ASCII text, maps to its
//!   own key and never to a cluster hash tag.
//!
//! Only storage keys (hashes of session ids) ever reach Redis, never ids.
//!
//! # Operations
//!
//! Every operation on a session is one Lua script on the session's key
//! alone, so it is atomic and runs the same on a cluster. Scripts are sent
//! with `EVALSHA` and reloaded automatically after a `SCRIPT FLUSH`, a
//! restart or a failover (`NOSCRIPT`). Each script is given the client's
//! clock and treats `expires_at <= now` as absent, so "live" means exactly
//! `now < expires_at` even in the millisecond before Redis expires the key.
//!
//! - `create`: insert if no live record holds the key (an unreadable value
//!   also counts as taken: nothing is ever overwritten).
//! - `load`: one `HGETALL`; a value that is not a session hash, or one
//!   with a missing or malformed field, is [`Error::Decode`] naming the
//!   storage key and stays where it is.
//! - `save`: compare-and-set on `v`; absent or expired is `NotFound`
//!   (nothing is recreated), another version is `Conflict`.
//! - `touch`: `PEXPIREAT` guarded by liveness; never recreates; a time in
//!   the past removes the record at once.
//! - `delete`: `true` only when a live record was removed. Deleting reads
//!   only the expiry and the user of a record, so a session whose data is
//!   corrupt can still be logged out; a value that is not a session hash
//!   at all is [`Error::Decode`] and stays.
//!
//! No operation uses `KEYS`, `SCAN` or `FLUSHDB`.
//!
//! # The per-user index, and why it can never miss a live session
//!
//! A session key and its user's index usually live in different cluster
//! slots, so no script may touch both. The index is therefore maintained
//! with separate commands, ordered so that a crash (or a lost connection)
//! between two steps can leave a *stale* index entry but never a live
//! session missing from its index:
//!
//! 1. `create` and `save` add the session to its (new) user's index
//!    **before** writing the session (`ZADD GT`, so a score only rises);
//! 2. `save` removes it from its former user's index, and `delete`,
//!    `delete_by_user` and a `touch` into the past remove it from its
//!    index, **after** the session write;
//! 3. `touch` raises the entry's score after moving the expiry; a crash
//!    in between leaves a score below the real expiry, which is harmless
//!    because of rule 4.
//! 4. `list_by_user` and `delete_by_user` read the index, then each
//!    session it names, and return (or delete) only live sessions whose
//!    stored user really is the one asked for: a stale entry is never
//!    returned or counted. They prune an entry only when its session is
//!    not a live session of that user **and** (checked atomically on the
//!    index key) its score is not in the future; since step 1 raises the
//!    score before a session is written, an entry that is about to become
//!    valid is never pruned.
//!
//! An index thus holds its user's live sessions, plus entries of sessions
//! that expired natively since the user's last `list_by_user` /
//! `delete_by_user` and leftovers of interrupted calls, both pruned by the
//! next such read. Cleaning up after a `save` or `delete` is best effort:
//! if that last step fails, the call still succeeds (the session write is
//! what counts) and the failure is logged with `tracing`.
//!
//! On a single server the same commands are used (one code path, identical
//! semantics). `create`, `save` and `touch` of a session bound to a user
//! take two round trips (index, then session, or the reverse for
//! `touch`), `list_by_user` and `delete_by_user` three (index, the
//! sessions concurrently, index upkeep); every other call takes one.
//!
//! # Timeouts and failures
//!
//! Connect and response timeouts are configurable
//! ([`RedisStoreBuilder`]), and every store call is bounded by an overall
//! operation timeout (default 3 s) that includes waiting for a
//! reconnection. A lost connection is re-established in the background by
//! [`redis::aio::ConnectionManager`]: the same store instance serves again
//! once the server is back. Failures are [`Error::Backend`] with the
//! operation's name and the driver's error as source;
//! [`Error::is_retryable`] is true for I/O errors, timeouts, dropped or
//! refused connections, cluster redirections and outages, and a server
//! still loading its data.
//!
//! # Testing against a real server
//!
//! The crate's tests need Redis: `REDIS_URL` if set, else a throwaway
//! `redis-server` from `PATH`, else (feature `docker`) a container. See
//! the crate's `README.md`.
//!
//! [`Error::Decode`]: session_core::Error::Decode
//! [`Error::Backend`]: session_core::Error::Backend
//! [`Error::is_retryable`]: session_core::Error::is_retryable
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod codec;
mod connection;
mod scripts;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use codec::CodecError;
pub use connection::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_OPERATION_TIMEOUT, DEFAULT_PREFIX, DEFAULT_RESPONSE_TIMEOUT,
    RedisStoreBuilder, TimedOut,
};
pub use store::RedisStore;

/// The `redis` crate this store is built on, for raw access with the same
/// version (for example to inspect keys in tests).
pub use redis;
