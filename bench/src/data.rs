//! The sessions our stores and the raw baselines work on, so that all
//! see the same keys, users and payload (tower-sessions' copy of the
//! payload is `proto::ts_data`, checked equal in `systems`' tests).
//!
//! Each session is bound to a user and holds a JSON map of about 200
//! bytes: user id, a 43-character CSRF token, display name, locale, three
//! booleans and a last-seen timestamp. Keys are 32 random-looking bytes,
//! as real storage keys (SHA-256 digests) are, derived from an index so
//! that a driver can address session `i` in every system alike.

use session_core::{Data, Error, Record, SessionId, StorageKey, Timestamp};

use crate::proto::{TTL, mix64};

/// The storage key of session `i`: 32 random-looking bytes, distinct for
/// distinct `i` (the first eight are a bijection of `i`).
pub(crate) fn key_of(i: u64) -> StorageKey {
    let mut bytes = [0u8; 32];
    for (n, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        let word = mix64(i.wrapping_add((n as u64).wrapping_mul(0x5851_f42d_4c95_7f2d)));
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    StorageKey::from_bytes(bytes)
}

/// The user session `i` is bound to (one user per session).
pub(crate) fn user_of(i: u64) -> String {
    format!("user-{i:08}")
}

/// Session `i` as the application would hold it: bound to
/// [`user_of(i)`](user_of), created at `now`, expiring [`TTL`] later,
/// version 0, with the ≈200-byte payload described in the module docs.
///
/// # Errors
///
/// When the system's random source fails (for the CSRF token).
pub(crate) fn session(i: u64, now: Timestamp) -> Result<Record, Error> {
    let user = user_of(i);
    let mut data = Data::new();
    data.insert("user_id".into(), user.clone().into());
    data.insert(
        "csrf_token".into(),
        SessionId::generate()?.to_cookie_value().into(),
    );
    data.insert("display_name".into(), format!("Ada Lovelace {i:05}").into());
    data.insert("locale".into(), "en-GB".into());
    data.insert("is_admin".into(), false.into());
    data.insert("mfa_verified".into(), true.into());
    data.insert("dark_mode".into(), true.into());
    data.insert("last_seen".into(), now.as_millis().into());
    let mut record = Record::new(key_of(i), now, now.saturating_add(TTL));
    record.user = Some(user);
    record.data = data;
    Ok(record)
}

/// The JSON text of a session's data, as the stores write it.
///
/// # Errors
///
/// Never in practice (a map of strings, booleans and numbers).
pub(crate) fn payload(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&record.data)
}

/// Advances a session as a request would before saving it: `last_seen`
/// set to now and the expiry pushed to now + [`TTL`].
pub(crate) fn touch_for_save(record: &mut Record) {
    let now = Timestamp::now();
    if let Some(seen) = record.data.get_mut("last_seen") {
        *seen = now.as_millis().into();
    }
    record.expires_at = now.saturating_add(TTL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_payload_is_about_200_bytes() -> Result<(), Error> {
        assert_ne!(key_of(0), key_of(1));
        let record = session(42, Timestamp::now())?;
        assert_eq!(record.user.as_deref(), Some("user-00000042"));
        let len = payload(&record)
            .map_err(|e| Error::backend("bench", "encode", false, e))?
            .len();
        assert!((180..260).contains(&len), "{len}");
        Ok(())
    }
}
