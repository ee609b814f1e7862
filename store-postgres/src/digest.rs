//! The integrity digest kept beside each row: what makes "unreadable"
//! mean the same to loads and saves. A leaf.
//!
//! Every create and save writes, in the `digest` column, the SHA-256 of
//! everything it wrote but the expiry: the key, the version, `created_at`,
//! the user (length-prefixed, or a marker for none) and the data's exact
//! text. A row whose digest does not match what it holds was not written
//! by this store as it stands: damage anywhere in it, in the data (a
//! number beyond `f64`, nesting deeper than serde reads, a lone
//! surrogate, a value changed by hand), in the user (bytes that are not
//! UTF-8), in the version. Loads and listings check it ([`digest`],
//! computed here, against the column) and answer
//! [`Error::Decode`](session_core::Error::Decode); saves check it in the
//! compare-and-set statement itself ([`STORED_DIGEST`], computed by the
//! server over the row it is about to overwrite), so a save never
//! overwrites a row the store cannot read, wherever the damage is. `touch`
//! moves only the expiry, which the digest leaves out, so it keeps the
//! digest valid.
//!
//! A digest catches damage, not forgery: whoever edits a row and writes
//! the matching digest is trusted as this store would be.

use sha2::{Digest as _, Sha256};

/// Bytes of a digest.
pub(crate) const DIGEST_LEN: usize = 32;

/// The digest of a row holding `key`, `user` (its bytes), `version`,
/// `created_at` and `data` (its exact text). The same bytes as
/// [`STORED_DIGEST`] hashes on the server.
pub(crate) fn digest(
    key: &[u8],
    user: Option<&[u8]>,
    version: i64,
    created_at: i64,
    data: &str,
) -> [u8; DIGEST_LEN] {
    let mut hash = Sha256::new();
    hash.update(key);
    hash.update(version.to_be_bytes());
    hash.update(created_at.to_be_bytes());
    match user {
        None => hash.update([0u8]),
        Some(user) => {
            hash.update([1u8]);
            // `int4send(octet_length(...))` on the server: a user id is
            // far shorter than 2 GiB (a record is at most a few MiB).
            let len = i32::try_from(user.len()).unwrap_or(i32::MAX);
            hash.update(len.to_be_bytes());
            hash.update(user);
        }
    }
    hash.update(data.as_bytes());
    hash.finalize().into()
}

/// SQL: the digest of what row `s` holds, computed by the server, the
/// same bytes as [`digest`] hashes (`int8send` and `int4send` are
/// big-endian; `convert_to(…, 'UTF8')` gives the data's text as the
/// client sent it).
pub(crate) const STORED_DIGEST: &str = "sha256(s.key || int8send(s.version) || \
     int8send(s.created_at) || coalesce('\\x01'::bytea || int4send(octet_length(s.\"user\")) || \
     s.\"user\", '\\x00'::bytea) || convert_to(s.data::text, 'UTF8'))";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_but_the_expiry_counts() {
        let base = digest(&[7; 32], Some(b"ann"), 3, 1000, r#"{"a":1}"#);
        assert_ne!(base, digest(&[8; 32], Some(b"ann"), 3, 1000, r#"{"a":1}"#));
        assert_ne!(base, digest(&[7; 32], Some(b"anne"), 3, 1000, r#"{"a":1}"#));
        assert_ne!(base, digest(&[7; 32], None, 3, 1000, r#"{"a":1}"#));
        assert_ne!(base, digest(&[7; 32], Some(b"ann"), 4, 1000, r#"{"a":1}"#));
        assert_ne!(base, digest(&[7; 32], Some(b"ann"), 3, 1001, r#"{"a":1}"#));
        assert_ne!(base, digest(&[7; 32], Some(b"ann"), 3, 1000, r#"{"a":2}"#));
        // The user's length frames it: bytes cannot move between the user
        // and the data unnoticed.
        assert_ne!(
            digest(&[7; 32], Some(b"a{"), 3, 1000, "x"),
            digest(&[7; 32], Some(b"a"), 3, 1000, "{x")
        );
        assert_ne!(
            digest(&[7; 32], Some(b""), 3, 1000, "x"),
            digest(&[7; 32], None, 3, 1000, "x")
        );
    }
}
