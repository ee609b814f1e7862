//! The common save as one native command where the server has one:
//! `SET key value IFEQ seen PXAT expires` (Valkey 8.1, Redis 8.4), which
//! writes only when the stored value is byte for byte `seen`, the value
//! a load of this store found sound and kept (see `verified`).
//!
//! When the stored value is exactly `seen`, the save script would find
//! what the client can see in `seen` itself: its format, its expiry (live
//! by the caller's clock when `seen`'s is), its digest (checked by the
//! load), its version and user (the expectation) and its data's framing.
//! So the client checks those in `seen` first ([`applies`]) and sends the
//! `SET … IFEQ` only when the script would have saved: then the command
//! writes exactly what the script would have written, or nothing. Nil
//! (the key is absent, or holds anything but `seen`: touched, saved or
//! damaged since the load) is no verdict: the save goes on as the script,
//! which judges what is there (absent, conflict, unreadable, damaged, or
//! saved after a touch). A server without `IFEQ` answers a syntax error
//! and writes nothing; the store then remembers that and sends the script
//! from then on.
//!
//! Nothing is weakened: `IFEQ` compares the whole stored value, so a
//! value damaged anywhere since the load is never overwritten by this
//! path, and an absent key is never created (`IFEQ` does not create).

use std::sync::atomic::{AtomicU8, Ordering};

use redis::{RedisError, Value};

use crate::codec;

/// Not known yet whether the server takes `IFEQ`: try it.
const UNKNOWN: u8 = 0;
/// The server took `IFEQ`.
const SUPPORTED: u8 = 1;
/// The server refused `IFEQ` (a syntax error): send the script.
const UNSUPPORTED: u8 = 2;

/// Whether the store's server takes `SET … IFEQ`, as learnt from its
/// replies.
pub(crate) struct IfEq(AtomicU8);

/// What a `SET … IFEQ` did.
pub(crate) enum Outcome {
    /// Written.
    Saved,
    /// Not written: the stored value is not `seen` (or is absent); the
    /// script must judge it.
    NotSeen,
    /// Not written: the server has no `IFEQ`; the script must do the
    /// save.
    Unsupported,
}

impl IfEq {
    /// Unknown until the first reply.
    pub(crate) fn new() -> Self {
        Self(AtomicU8::new(UNKNOWN))
    }

    /// Whether a save should try `IFEQ` (not known to be refused).
    pub(crate) fn worth_trying(&self) -> bool {
        self.0.load(Ordering::Relaxed) != UNSUPPORTED
    }

    /// Reads the reply to a `SET … IFEQ`, and learns from it whether the
    /// server takes `IFEQ`. A reply that is neither a verdict nor a
    /// refusal of the syntax is the error to report.
    pub(crate) fn outcome(&self, reply: Result<Value, RedisError>) -> Result<Outcome, RedisError> {
        match reply {
            Ok(Value::Okay) => {
                self.0.store(SUPPORTED, Ordering::Relaxed);
                Ok(Outcome::Saved)
            }
            Ok(Value::Nil) => {
                self.0.store(SUPPORTED, Ordering::Relaxed);
                Ok(Outcome::NotSeen)
            }
            // Another Redis type under the key: the script reports it as
            // unreadable, as it does without `IFEQ`.
            Err(e) if e.code() == Some("WRONGTYPE") => Ok(Outcome::NotSeen),
            // Redis before 8.4: `ERR syntax error`, nothing written.
            Err(e) if e.code() == Some("ERR") && refuses_syntax(&e) => {
                self.0.store(UNSUPPORTED, Ordering::Relaxed);
                Ok(Outcome::Unsupported)
            }
            Err(e) => Err(e),
            Ok(other) => Err(RedisError::from((
                redis::ErrorKind::Parse,
                "SET … IFEQ answered an unexpected reply",
                format!("{other:?}"),
            ))),
        }
    }
}

/// Whether `e` says the server does not know the command's syntax.
fn refuses_syntax(e: &RedisError) -> bool {
    e.detail()
        .is_some_and(|detail| detail.to_ascii_lowercase().contains("syntax"))
}

/// Whether the save script, finding `seen` stored, would save over it
/// with one `SET … PXAT` (and report nothing else, such as a former user):
/// `seen` is in a known format, live at `now` (ms, the caller's clock),
/// holds the version and user of `expected` (the save's expectation, see
/// `codec::cas_expectation`) and data framed as a JSON object; and the
/// new expiry `expires_at` (ms) is after `now`.
pub(crate) fn applies(seen: &[u8], expected: &[u8], now: i64, expires_at: i64) -> bool {
    expires_at > now
        && codec::meets_expectation(seen, expected)
        && codec::decode_header(seen).is_ok_and(|header| header.expires_at.as_millis() > now)
}
