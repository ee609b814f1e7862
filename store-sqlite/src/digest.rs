//! The integrity digest kept beside each row: what makes "unreadable"
//! mean the same to loads and saves. A leaf.
//!
//! Every create and save writes, in the `digest` column (hex text), the
//! SHA-256 of everything it wrote but the expiry: the key, the version,
//! `created_at`, the user (length-prefixed, or a marker for none) and the
//! data's exact text. A row whose digest does not match what it holds was
//! not written by this store as it stands: damage anywhere in it, in the
//! data (a number beyond `f64`, a value changed by hand), in the user, in
//! the version. Loads and listings check it in Rust ([`digest_hex`]
//! against the column) and answer [`Error::Decode`](session_core::Error::Decode).
//! `touch` moves only the expiry, which the digest leaves out.
//!
//! A save checks it in its compare-and-set statement, atomically, though
//! SQLite has no hash function and registering one needs `unsafe` code:
//! the statement compares the row's fields, framed as text by
//! [`stored_frame`], with its digest column under the collation
//! [`COLLATION`] ([`collate`], registered on the writer's connection
//! through sqlx's safe `SqliteConnectOptions::collation`). The collation
//! orders strings by a key: the digest of the fields a framed string
//! spells out, or the string itself for anything else (a digest). That is
//! a total order, as SQLite requires of a collation, under which a frame
//! and a digest are equal exactly when the digest is the frame's. The
//! frame spells the bytes in hex, so what reaches the collation is ASCII
//! (sqlx hands it over through `from_utf8_lossy`, which would otherwise
//! replace invalid UTF-8 and could hide it). The statements use it only in
//! that one comparison, never to sort or index.
//!
//! A digest catches damage, not forgery: whoever edits a row and writes
//! the matching digest is trusted as this store would be.

use std::borrow::Cow;
use std::cmp::Ordering;

use sha2::{Digest as _, Sha256};

/// The collation that compares a frame with a digest (see the module
/// docs).
pub(crate) const COLLATION: &str = "session_digest";

/// The digest of a row holding `key`, `user` (its bytes), `version`,
/// `created_at` and `data` (its exact bytes).
pub(crate) fn digest(
    key: &[u8],
    user: Option<&[u8]>,
    version: i64,
    created_at: i64,
    data: &[u8],
) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(key);
    hash.update(version.to_be_bytes());
    hash.update(created_at.to_be_bytes());
    match user {
        None => hash.update([0u8]),
        Some(user) => {
            hash.update([1u8]);
            let len = u32::try_from(user.len()).unwrap_or(u32::MAX);
            hash.update(len.to_be_bytes());
            hash.update(user);
        }
    }
    hash.update(data);
    hash.finalize().into()
}

/// [`digest`] as the lowercase hex text the `digest` column holds.
pub(crate) fn digest_hex(
    key: &[u8],
    user: Option<&[u8]>,
    version: i64,
    created_at: i64,
    data: &[u8],
) -> String {
    hex(&digest(key, user, version, created_at, data))
}

/// `bytes` as lowercase hex text.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// SQL: the fields of the row (columns qualified by `prefix`, such as
/// `"sessions".` or nothing) as the text [`collate`] reads:
/// `KEY:USER:VERSION:CREATED_AT:DATA`, bytes in hex, the user `-` when
/// there is none, the integers in decimal.
pub(crate) fn stored_frame(prefix: &str) -> String {
    format!(
        "hex({prefix}key) || ':' || iif({prefix}user IS NULL, '-', hex({prefix}user)) || ':' || \
         {prefix}version || ':' || {prefix}created_at || ':' || hex({prefix}data)"
    )
}

/// SQL: 1 when the row (columns qualified by `prefix`) matches its digest,
/// else 0 (a missing digest included).
pub(crate) fn intact(prefix: &str) -> String {
    format!(
        "coalesce(({}) = {prefix}digest COLLATE {COLLATION}, 0)",
        stored_frame(prefix)
    )
}

/// The collation [`COLLATION`]: orders strings by [`collation_key`].
pub(crate) fn collate(a: &str, b: &str) -> Ordering {
    collation_key(a).cmp(&collation_key(b))
}

/// The digest (hex) of the row a frame spells out, or the string itself
/// when it is no frame.
fn collation_key(text: &str) -> Cow<'_, str> {
    frame_digest(text).map_or(Cow::Borrowed(text), Cow::Owned)
}

/// The digest of the fields `frame` spells out (see [`stored_frame`]), if
/// it is a well-formed frame.
fn frame_digest(frame: &str) -> Option<String> {
    let mut parts = frame.split(':');
    let key = unhex(parts.next()?)?;
    let user = match parts.next()? {
        "-" => None,
        user => Some(unhex(user)?),
    };
    let version: i64 = parts.next()?.parse().ok()?;
    let created_at: i64 = parts.next()?.parse().ok()?;
    let data = unhex(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some(digest_hex(
        &key,
        user.as_deref(),
        version,
        created_at,
        &data,
    ))
}

/// The bytes hex text spells (either case), if it is hex.
fn unhex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(
        key: &[u8],
        user: Option<&[u8]>,
        version: i64,
        created_at: i64,
        data: &[u8],
    ) -> String {
        let user = user.map_or_else(|| "-".to_owned(), |u| hex(u).to_uppercase());
        format!(
            "{}:{user}:{version}:{created_at}:{}",
            hex(key).to_uppercase(),
            hex(data).to_uppercase()
        )
    }

    #[test]
    fn a_frame_equals_exactly_its_digest() {
        let (key, data) = ([7u8; 32], br#"{"a":1}"#);
        let stored = digest_hex(&key, Some(b"ann"), 3, -5, data);
        let framed = frame(&key, Some(b"ann"), 3, -5, data);
        assert_eq!(collate(&framed, &stored), Ordering::Equal);
        assert_eq!(collate(&stored, &framed), Ordering::Equal);
        for other in [
            frame(&key, Some(b"anne"), 3, -5, data),
            frame(&key, None, 3, -5, data),
            frame(&key, Some(b"ann"), 4, -5, data),
            frame(&key, Some(b"ann"), 3, 5, data),
            frame(&key, Some(b"ann"), 3, -5, br#"{"a":2}"#),
            frame(&[8u8; 32], Some(b"ann"), 3, -5, data),
            format!("{framed}:"),
            framed.replace(':', ";"),
        ] {
            assert_ne!(collate(&other, &stored), Ordering::Equal, "{other}");
        }
        assert_ne!(
            digest(&key, Some(b""), 3, 0, b"x"),
            digest(&key, None, 3, 0, b"x")
        );
    }

    #[test]
    fn the_collation_is_a_total_order() {
        let key = [1u8; 32];
        let strings = [
            digest_hex(&key, None, 0, 0, b"{}"),
            frame(&key, None, 0, 0, b"{}"),
            frame(&key, None, 1, 0, b"{}"),
            digest_hex(&key, None, 1, 0, b"{}"),
            "not a frame".to_owned(),
            "ab:cd".to_owned(),
            String::new(),
        ];
        for a in &strings {
            assert_eq!(collate(a, a), Ordering::Equal);
            for b in &strings {
                assert_eq!(collate(a, b), collate(b, a).reverse(), "{a} / {b}");
                for c in &strings {
                    if collate(a, b) != Ordering::Greater && collate(b, c) != Ordering::Greater {
                        assert_ne!(collate(a, c), Ordering::Greater, "{a} / {b} / {c}");
                    }
                }
            }
        }
    }
}
