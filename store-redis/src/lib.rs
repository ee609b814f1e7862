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
//! - A session is ONE string under `{prefix}s:{storage key in hex}`: a
//!   fixed-width ASCII header, the user's name, then the data as a JSON
//!   object. The header is `S2` (the format), the expiry in ms (a sign
//!   and 19 digits), a digest (16 hex digits, below), the creation time
//!   (like the expiry), the version (20 digits), `u` or `-` (bound to a
//!   user or not) and the user's length in bytes (10 digits), 89 bytes in
//!   all; for example `S2+0000001767225600000` `9f1c0b6e2a4d8e31`
//!   `+0000001767222000000` `00000000000000000003`
//!   `u0000000005alice{"theme":"dark"}` (without the spaces; that digest
//!   is made up). The key
//!   expires natively at the record's expiry (`PXAT`, millisecond
//!   precision), so [`delete_expired`](session_core::SessionStore::delete_expired)
//!   has nothing to do and returns 0.
//! - A user's index is a sorted set under `{prefix}u:{escaped user}` whose
//!   members are storage keys in hex, scored by an expiry of the session
//!   (see below). The user name is escaped (`%XX` for every byte but ASCII
//!   letters, digits and `-_.@`), so any name, including `:`, `*`, `{` or
//!   non-ASCII text, maps to its own key and never to a cluster hash tag.
//!
//! Only storage keys (hashes of session ids) ever reach Redis, never ids.
//!
//! # What this store cannot read, it never overwrites
//!
//! The digest is the first 64 bits (16 hex digits) of the SHA-1 of
//! everything after it: the creation time, the version, the user and the
//! data. Every `create` and `save` writes it; every load checks it on
//! the client, and the save script checks it on the server (Lua's
//! `redis.sha1hex`, on Redis 7 and Valkey 8.1 alike) before it judges
//! the version. A value whose digest does not match was not written by
//! this store (a person or a tool editing it, a bug writing into it):
//! a load is [`Error::Decode`] naming the key (source
//! [`CodecError::DigestMismatch`]) and leaves it in place, a save at any
//! version is the same `Decode` and writes nothing, `list_by_user`
//! reports it by key, and `delete` and `delete_by_user` remove it. So
//! "unreadable" means the same to a load and to a save, wherever the
//! damage is, even damage that leaves the data a well-framed JSON object
//! (`{"n":1e400}`: a number serde_json refuses). The expiry lies outside
//! the digest, so `touch` rewrites it in place (`SETRANGE`) and the
//! digest stays valid. The digest is no defence against someone who can
//! write to the server: SHA-1 is public, and they could store any session
//! they like.
//!
//! Hashing the stored value is the dearest part of a save on the server
//! (about 14,000 instructions for a 300-byte session on Redis 7, beside
//! some 58,000 for the rest of the script), and a session is usually
//! saved by the process that has just loaded it, whose load checked those
//! very bytes. So each load keeps the bytes it found sound, for a while,
//! and the save of that session sends them back: while the stored value
//! is still exactly those bytes, the script knows it is sound without
//! hashing it (one comparison of interned Lua strings); any other value
//! (touched, saved or damaged since, or nothing kept) has its digest
//! checked. What is kept is bounded: at most 2 MiB of session values per
//! store (values over 16 KiB are not kept), in two generations per shard
//! that replace each other as they fill; a save takes its session's
//! bytes out.
//!
//! Values of the previous format, `S1` (the same header without the
//! digest, 73 bytes), are still read, by loads and by every script, and a
//! save rewrites them as `S2`: sessions stored before the upgrade keep
//! working and nobody is logged out. Until its next save, an `S1` value
//! is judged as before, by its framing alone (`{` … `}`): damage inside
//! its data that keeps the framing is `Decode` on load but not seen by a
//! save. Sessions end by their absolute timeout at the latest, so that
//! window closes on its own; nothing is ever written as `S1`.
//!
//! # Operations
//!
//! Every operation on a session is one Lua script on the session's key
//! alone (or a single native command: `GET` for `load`, `SET NX` for the
//! common `create`, `SET … IFEQ` for the common `save` where the server
//! has it, below), so it is atomic and runs the same on a cluster. Scripts are sent with `EVALSHA` and reloaded automatically
//! after a `SCRIPT FLUSH`, a restart or a failover (`NOSCRIPT`). Each
//! script is given the client's clock and treats `expires_at <= now` as
//! absent, so "live" means exactly `now < expires_at` even in the
//! millisecond before Redis expires the key. The scripts read the header
//! with `string.sub` and write with one `SET … PXAT`.
//!
//! - `create`: a plain `SET NX PXAT` (no script: a script call costs the
//!   server several times a native command); only when the key is taken
//!   does the create script decide: a live or unreadable value keeps it
//!   (nothing is ever overwritten) and one expired by the client's clock
//!   is replaced.
//! - `load`: one `GET`. A value that is not a session string (another
//!   Redis type, another format, a malformed header, user or JSON, a
//!   digest that does not match) is [`Error::Decode`] naming the storage
//!   key and stays where it is.
//! - `save`: compare-and-set on the version; absent or expired is
//!   `NotFound` (nothing is recreated), another version is `Conflict`.
//!   The script checks before it writes: it reads the stored value
//!   (`GET`), judges it (format, liveness, digest, version and user, the
//!   data's framing) and writes only when the save succeeds (one `SET … PXAT`,
//!   or a `DEL` for an expiry already past; or the equivalent `SET …
//!   IFEQ`, below). A save that fails (or has to
//!   "bind first", below) writes nothing at all: the stored value and
//!   its expiry stay exactly as they were, even when the value is not a
//!   session, and replicas, the AOF and keyspace notifications see no
//!   write.
//! - `touch`: rewrites the expiry in the header (`SETRANGE`) and the key's
//!   (`PEXPIREAT`), guarded by liveness (the expiry is outside the
//!   digest); never recreates; a time in the past removes the record at
//!   once.
//! - `delete`: `true` only when a live record was removed. Deleting reads
//!   only the header and the user of a record, so a session whose data is
//!   corrupt can still be logged out; a value that is not a session at all
//!   is [`Error::Decode`] and stays.
//!
//! No operation uses `KEYS`, `SCAN` or `FLUSHDB`.
//!
//! # Many callers, few commands
//!
//! Redis pays a fixed cost per command (and a script call more: the Lua
//! entry), and so does the client; at high concurrency those costs, not
//! the work on each key, are what an operation spends. So on a single
//! server, operations of one kind that arrive while another is in flight
//! go out together, with no timer: a lone operation is sent at once, as
//! described above, and those that queue behind it are taken by one of
//! two sender tasks as one command. Loads become one `MGET` (a nil in it
//! is asked again with its own `GET`, which tells an absent key from one
//! of another type); saves, touches and deletes each become one call of a
//! many-key script that runs, for each key in turn, exactly what the
//! one-key script does alone. (Creates go alone: their native commands
//! are already pipelined by the connection, and batching them only added
//! a hop.) Every
//! caller gets its own answer and its own error, and a batch runs at the
//! latest clock of its callers (an instant inside each of their calls).
//! On a cluster the keys of a batch would span slots, so every operation
//! there is sent alone.
//!
//! # The per-user index
//!
//! A user's index is a sorted set of storage keys. A session enters its
//! user's index **before** it is written bound to that user; nothing
//! removes an entry at the moment its session leaves (that removal could
//! overtake a concurrent move back); `list_by_user` and `delete_by_user`
//! read each session the index names and act only on live sessions that
//! really are that user's, and prune an entry only when its session is not
//! one and its score (an expiry) has passed. So an index never misses a
//! live session, under any interleaving or interruption, on a single
//! server or a cluster. The rules and the argument are written out in the
//! source, next to the code that keeps them (`src/store/index.rs`).
//!
//! Round trips: `load`, `touch`, `delete` and a `save` that keeps the
//! user take one; `create` of a bound session takes one on a single
//! server (the `ZADD GT` and the `SET NX` go in one pipeline, which one
//! connection executes in order) and two on a cluster (index, then
//! session); a `save` that changes the user takes one more than that (the
//! "bind first" answer); `list_by_user` and `delete_by_user` take three (index, the
//! sessions concurrently, index upkeep).
//!
//! # Timeouts and failures
//!
//! Every store call is bounded by an operation timeout (default 3 s) that
//! includes waiting for a reconnection, and each connection attempt by a
//! connect timeout ([`RedisStoreBuilder`]). A lost connection is
//! re-established in the background by [`redis::aio::ConnectionManager`]:
//! the same store instance serves again once the server is back. On a
//! single server the operation timeout is the only timer a call pays for
//! (no per-command response timer as well), and a connection on which a
//! call timed out is replaced by a fresh one, so a connection that stops
//! answering without failing is repaired too. Failures are [`Error::Backend`] with the
//! operation's name and the driver's error as source;
//! [`Error::is_retryable`] is true for I/O errors, timeouts, dropped or
//! refused connections, cluster redirections and outages, and a server
//! still loading its data.
//!
//! # Valkey
//!
//! The store runs unchanged on Valkey: the conformance suite, the raw
//! tests and the fault tests run on Valkey 8.1 as well as on Redis 7 (the
//! cluster tests on Redis only).
//!
//! # The common save without a script: `SET … IFEQ`
//!
//! Where the server has `SET key value IFEQ comparison-value` (Valkey
//! 8.1, Redis 8.4), the common save is that one native command instead of
//! the script: the new value, written only when the stored value is byte
//! for byte the one this store's load found sound and kept (above), with
//! the new expiry (`PXAT`). The client first checks in those bytes what
//! the script would check in the stored value (format, live by the
//! caller's clock, the expected version and user, the data's framing;
//! the digest was checked by the load), and sends `IFEQ` only when the
//! script would have saved; so when the stored value is still those
//! bytes, the command writes exactly what the script would have written.
//! When it is not (absent, touched, saved or damaged since the load,
//! another Redis type), `IFEQ` writes nothing and does not create the key,
//! and the save goes on as the script, which says which it is (`NotFound`,
//! `Conflict`, `Decode`, or saved after a touch). A server without `IFEQ`
//! refuses its syntax and writes nothing; the store remembers that and
//! sends the script from then on. A save with no kept bytes (no load
//! before it in this process, a value too long to keep), one that binds
//! another user, or one that retires the record (an expiry in the past)
//! is the script, as before. On Valkey 8.1 this takes a save from about
//! 38,000 server instructions (the script, in a batch) to about 10,000
//! (callgrind).
//!
//! # TLS
//!
//! With the feature `tls-rustls`, a `rediss://` URL connects over TLS,
//! through the `redis` crate's rustls support with the ring provider. The
//! server's certificate must chain to the roots compiled in (Mozilla's,
//! `webpki-roots`; the machine's own store is not read) and name the
//! URL's host or IP address. `RedisStoreBuilder::tls_ca_pem` trusts a
//! private CA instead (and only it), and
//! `RedisStoreBuilder::tls_client_cert_pem` presents a client
//! certificate for mutual TLS; on a cluster they apply to every node, and
//! every node's URL must be `rediss://`.
//!
//! ```no_run
//! # #[cfg(feature = "tls-rustls")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use session_store_redis::RedisStore;
//!
//! let store = RedisStore::builder("rediss://redis.internal:6380/")
//!     .tls_ca_pem(std::fs::read("/etc/redis/ca.pem")?)
//!     .connect()
//!     .await?;
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! A failed handshake (a server certificate another CA signed, expired,
//! or made for another name; a client certificate the server refuses) is
//! [`Error::Backend`] that is **not** retryable (the same certificates
//! fail the same way), with a `TlsError::Handshake` as its source naming
//! what rustls reported. A PEM that holds no usable certificate or key,
//! or TLS options given for a `redis://` URL, are refused by `connect`
//! before any connection, the same way. On a cluster the driver reports a
//! failed first connection as text only, so after a failed `connect` the
//! store asks the first node again on a connection of its own to tell a
//! refused handshake from a node that is down; a cluster whose
//! certificates stop being accepted later (rotated under a running store)
//! shows as the driver reports it. Without the feature, `connect` refuses
//! a `rediss://` URL (not retryable).
//!
//! rustls needs a process-wide crypto provider: if the process has not
//! installed one when a TLS store connects, the store installs ring's as
//! the process default (rustls cannot pick one by itself when an
//! application also compiles in its default, aws-lc-rs). An application
//! that installs its own first keeps it.
//!
//! # Testing against a real server
//!
//! The crate's tests need Redis: `REDIS_URL` if set, else a throwaway
//! `redis-server` from `PATH`, else (feature `docker`) a container (or the
//! container directly, with `SESSION_TEST_REDIS=docker`). They also need
//! Valkey: `VALKEY_URL` if set, else a throwaway server from the
//! `valkey-server` that `VALKEY_SERVER` names, else `valkey-server` from
//! `PATH`; without one the Valkey tests fail, saying how to get it. See
//! the crate's `README.md`. The TLS tests (`tests/tls.rs`, feature
//! `tls-rustls`) start their own TLS-only `redis-server` and cluster
//! (`testing::tls`, feature `testing`), Redis only.
//!
//! [`Error::Decode`]: session_core::Error::Decode
//! [`CodecError::DigestMismatch`]: crate::CodecError::DigestMismatch
//! [`Error::Backend`]: session_core::Error::Backend
//! [`Error::is_retryable`]: session_core::Error::is_retryable
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// The crate's `README.md`, whose code blocks are compiled as doctests so
/// they cannot rot.
/// This store's name: its [`SessionStore::name`](session_core::SessionStore::name) and the
/// `store` of every [`Error::Backend`](session_core::Error::Backend) it returns.
pub(crate) const NAME: &str = "redis";

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod batched;
mod codec;
mod connection;
mod ifeq;
mod loads;
mod scripts;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tls-rustls")]
mod tls;
mod verified;

pub use codec::CodecError;
pub use connection::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_OPERATION_TIMEOUT, DEFAULT_PREFIX, DEFAULT_RESPONSE_TIMEOUT,
    RedisStoreBuilder, TimedOut,
};
pub use store::RedisStore;
#[cfg(feature = "tls-rustls")]
pub use tls::{PemProblem, TlsError};

/// The `redis` crate this store is built on, for raw access with the same
/// version (for example to inspect keys in tests).
pub use redis;
