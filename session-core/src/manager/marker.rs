//! The marker a rotation leaves behind: where a session went.
//!
//! When [`Session::login`](super::Session::login) or
//! [`Session::cycle_id`](super::Session::cycle_id) moves a session from key
//! `K` to a fresh key `K'`, requests that loaded the session under `K`
//! before the move may still be running. Their commits must neither be
//! lost nor clear the browser's cookie (which by then may hold the new
//! id). So before `K` is retired, the rotation stores a small marker
//! record under a key derived from `K`: SHA-256 of a domain tag and `K`,
//! 64 bytes of input, so it can never equal the storage key of any id
//! (the SHA-256 of 32 bytes). It names `K'`, is bound to no user (so no
//! "active sessions" page lists it), and lives for
//! [`SessionConfig::rotation_grace`](super::SessionConfig::rotation_grace).
//!
//! The marker also says whether the move kept the session's owner: a
//! [`Session::cycle_id`](super::Session::cycle_id), or a login as the user
//! the session was already bound to, *forwards*; a login that changes who
//! the session belongs to (anonymous to a user, or one user to another)
//! does not.
//!
//! A commit that finds `K` gone looks for the marker: if it forwards, the
//! commit's changes go to `K'`; if it does not, they are dropped (a
//! request that loaded the session before someone signed in must not
//! write into the signed-in session: what it would write was chosen
//! before the login, perhaps by whoever planted the id); either way the
//! cookie is left alone. Without a marker the session ended (logout) and
//! the cookie is cleared. A request that arrives with `K` after the move
//! finds the marker when its load misses: it opens nothing (the old id
//! never loads the moved session, so the fixation defence holds), writes
//! nothing, and leaves the cookie alone. Stores need to know nothing about
//! markers.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Record, StorageKey, Timestamp};

/// The data key naming the new storage key, in hex.
const MOVED_TO: &str = "moved_to";
/// The data key saying the move changed the owner (`true`): then the
/// commits of requests holding the old id are not forwarded. Markers
/// without it forward.
const NEW_OWNER: &str = "new_owner";
/// The domain tag hashed with the old key.
const TAG: &[u8; 32] = b"session-core rotation marker v1\0";

/// The key of the marker for a session that lived under `old`.
pub(super) fn marker_key(old: &StorageKey) -> StorageKey {
    let mut hash = Sha256::new();
    hash.update(TAG);
    hash.update(old.as_bytes());
    StorageKey::from_bytes(hash.finalize().into())
}

/// The marker saying that the session under `old` moved to `new`, with
/// a new owner or not.
pub(super) fn marker(
    old: &StorageKey,
    new: &StorageKey,
    new_owner: bool,
    now: Timestamp,
    grace: Duration,
) -> Record {
    let mut record = Record::new(marker_key(old), now, now.saturating_add(grace));
    record
        .data
        .insert(MOVED_TO.into(), Value::String(new.to_hex()));
    if new_owner {
        record.data.insert(NEW_OWNER.into(), Value::Bool(true));
    }
    record
}

/// Where a marker says the session went; `None` for anything else.
pub(super) fn moved_to(marker: &Record) -> Option<StorageKey> {
    match marker.data.get(MOVED_TO) {
        Some(Value::String(hex)) if marker.user.is_none() => StorageKey::from_hex(hex).ok(),
        _ => None,
    }
}

/// Whether a marker says the move changed the session's owner (then
/// commits holding the old id are not forwarded).
pub(super) fn new_owner(marker: &Record) -> bool {
    marker.data.get(NEW_OWNER) == Some(&Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names_the_new_key_under_a_derived_key() {
        let (old, new) = (
            StorageKey::from_bytes([1; 32]),
            StorageKey::from_bytes([2; 32]),
        );
        let now = Timestamp::from_millis(1_000);
        let record = marker(&old, &new, false, now, Duration::from_secs(30));
        assert_eq!(record.key, marker_key(&old));
        assert_ne!(record.key, old);
        assert_ne!(marker_key(&old), marker_key(&new));
        assert_eq!(moved_to(&record), Some(new));
        assert!(!new_owner(&record));
        assert_eq!(record.expires_at, Timestamp::from_millis(31_000));
        assert_eq!(record.user, None);
        let login = marker(&old, &new, true, now, Duration::from_secs(30));
        assert_eq!(moved_to(&login), Some(new));
        assert!(new_owner(&login));
    }

    #[test]
    fn a_session_is_not_a_marker() {
        let mut record = Record::new(
            StorageKey::from_bytes([3; 32]),
            Timestamp::from_millis(0),
            Timestamp::from_millis(1),
        );
        assert_eq!(moved_to(&record), None);
        record.data.insert(MOVED_TO.into(), Value::from("zz"));
        assert_eq!(moved_to(&record), None);
        // A marker is bound to no user: a user's record naming a key is
        // still not one.
        let to = StorageKey::from_bytes([4; 32]);
        record
            .data
            .insert(MOVED_TO.into(), Value::from(to.to_hex()));
        record.user = Some("mallory".into());
        assert_eq!(moved_to(&record), None);
        record.user = None;
        assert_eq!(moved_to(&record), Some(to));
    }
}
