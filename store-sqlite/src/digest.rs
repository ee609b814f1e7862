//! The integrity digest kept beside each row: what makes "unreadable"
//! mean the same to loads and saves. A leaf.
//!
//! Every create and save writes, in the `digest` column (16 hex digits),
//! a 64-bit hash of everything it wrote but the expiry: the key, the
//! version, `created_at`, the user (length-prefixed, or a marker for none)
//! and the data's exact text. A row whose digest does not match what it
//! holds was not written by this store as it stands: damage anywhere in
//! it, in the data (a number beyond `f64`, a value changed by hand), in
//! the user, in the version. Loads and listings check it in Rust
//! ([`digest_hex`] against the column) and answer
//! [`Error::Decode`](session_core::Error::Decode). `touch` moves only the
//! expiry, which the digest leaves out.
//!
//! A save checks it in its compare-and-set statement, atomically, though
//! SQLite has no hash function and registering one needs `unsafe` code:
//! the statement compares the row's fields, framed as text by
//! [`stored_frame`], with its digest column under the collation
//! [`COLLATION`] ([`collate`], registered on the writer's connection
//! through sqlx's safe `SqliteConnectOptions::collation`). The collation
//! orders strings by a key: the digest of the fields a frame spells out,
//! or the string itself for anything else (a digest, or a frame that does
//! not parse). That is a total order, as SQLite requires of a collation,
//! under which a frame and a digest are equal exactly when the digest is
//! the frame's. The statements use it only in that one comparison, never
//! to sort or index.
//!
//! The frame spells the key and the user in hex and carries the data as
//! it is; sqlx hands the collation its text through `from_utf8_lossy`,
//! which replaces invalid UTF-8 by U+FFFD. So that damage cannot hide
//! behind that replacement, this store never writes U+FFFD raw in the data
//! (its JSON escapes it, [`escape_replacement_char`]), and a frame whose
//! data holds one does not parse. The frame also requires the storage
//! classes loads decode (text data and user), so loads and saves refuse
//! the same rows.
//!
//! A 64-bit hash catches damage, not forgery: whoever edits a row and
//! writes the matching digest is trusted as this store would be.

use std::borrow::Cow;
use std::cmp::Ordering;

/// The collation that compares a frame with a digest (see the module
/// docs).
pub(crate) const COLLATION: &str = "session_digest";

/// A 64-bit hash of a byte stream fed in pieces: eight bytes at a time,
/// multiplied and rotated, the length mixed in at the end, then a final
/// avalanche. About a nanosecond per eight bytes; catches damage, not
/// attacks.
struct Hasher {
    state: u64,
    /// Bytes not yet folded in (fewer than eight).
    pending: [u8; 8],
    pending_len: usize,
    total: u64,
}

impl Hasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn new() -> Self {
        Self {
            state: Self::K,
            pending: [0; 8],
            pending_len: 0,
            total: 0,
        }
    }

    fn fold(&mut self, word: [u8; 8]) {
        self.state = (self.state ^ u64::from_le_bytes(word))
            .wrapping_mul(Self::K)
            .rotate_left(31);
    }

    fn update(&mut self, mut bytes: &[u8]) {
        self.total = self.total.wrapping_add(bytes.len() as u64);
        if self.pending_len > 0 {
            let take = (8 - self.pending_len).min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(head);
            self.pending_len += take;
            bytes = rest;
            if self.pending_len < 8 {
                return;
            }
            self.fold(self.pending);
            self.pending_len = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut full = [0u8; 8];
            full.copy_from_slice(word);
            self.fold(full);
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    fn finish(mut self) -> u64 {
        if self.pending_len > 0 {
            let mut last = [0u8; 8];
            last[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
            self.fold(last);
        }
        let mut h = self.state ^ self.total.wrapping_mul(Self::K);
        // fmix64 of MurmurHash3: every input bit reaches every output bit.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The digest of a row holding `key`, `user` (its bytes), `version`,
/// `created_at` and `data` (its exact bytes).
pub(crate) fn digest(
    key: &[u8],
    user: Option<&[u8]>,
    version: i64,
    created_at: i64,
    data: &[u8],
) -> u64 {
    let mut hash = Hasher::new();
    hash.update(key);
    hash.update(&version.to_be_bytes());
    hash.update(&created_at.to_be_bytes());
    match user {
        None => hash.update(&[0]),
        Some(user) => {
            hash.update(&[1]);
            hash.update(&(user.len() as u64).to_be_bytes());
            hash.update(user);
        }
    }
    hash.update(data);
    hash.finish()
}

/// [`digest`] as the 16 lowercase hex digits the `digest` column holds.
pub(crate) fn digest_hex(
    key: &[u8],
    user: Option<&[u8]>,
    version: i64,
    created_at: i64,
    data: &[u8],
) -> String {
    hex(&digest(key, user, version, created_at, data).to_be_bytes())
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

/// `json` (JSON text) with every raw U+FFFD written as the escape
/// `\ufffd` instead: the same JSON value. U+FFFD can only stand inside a
/// string of the JSON text, where the escape means the same character.
pub(crate) fn escape_replacement_char(json: String) -> String {
    if json.contains('\u{FFFD}') {
        json.replace('\u{FFFD}', "\\ufffd")
    } else {
        json
    }
}

/// SQL: the fields of the row (columns qualified by `prefix`, such as
/// `"sessions".` or nothing) as the text [`collate`] reads:
/// `KEY:USER:VERSION:CREATED_AT:DATA`, the key and the user in hex, the
/// user `-` when there is none, the integers in decimal, the data as it
/// is.
pub(crate) fn stored_frame(prefix: &str) -> String {
    format!(
        "hex({prefix}key) || ':' || iif({prefix}user IS NULL, '-', hex({prefix}user)) || ':' || \
         {prefix}version || ':' || {prefix}created_at || ':' || {prefix}data"
    )
}

/// SQL: 1 when the row (columns qualified by `prefix`) matches its digest
/// and holds its data and user as text, as loads decode them; else 0 (a
/// missing digest included).
pub(crate) fn intact(prefix: &str) -> String {
    format!(
        "coalesce(typeof({prefix}data) = 'text' AND typeof({prefix}user) IN ('text', 'null') \
         AND ({}) = {prefix}digest COLLATE {COLLATION}, 0)",
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
    let mut parts = frame.splitn(5, ':');
    let key = unhex(parts.next()?)?;
    let user = match parts.next()? {
        "-" => None,
        user => Some(unhex(user)?),
    };
    let version: i64 = parts.next()?.parse().ok()?;
    let created_at: i64 = parts.next()?.parse().ok()?;
    let data = parts.next()?;
    // Never written raw by this store: what sqlx put in for invalid UTF-8.
    if data.contains('\u{FFFD}') {
        return None;
    }
    Some(digest_hex(
        &key,
        user.as_deref(),
        version,
        created_at,
        data.as_bytes(),
    ))
}

/// The bytes hex text spells (either case), if it is hex.
fn unhex(text: &str) -> Option<Vec<u8>> {
    /// Each byte's value as a hex digit, or 0xff.
    const NIBBLES: [u8; 256] = {
        let mut table = [0xffu8; 256];
        let mut i = 0;
        while i < 10 {
            table[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            table[b'a' as usize + i] = 10 + i as u8;
            table[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        table
    };
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let mut bytes = Vec::with_capacity(digits.len() / 2);
    let mut invalid = 0u8;
    for pair in digits.chunks_exact(2) {
        let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        invalid |= (high | low) & 0xf0;
        bytes.push(high << 4 | (low & 0xf));
    }
    (invalid == 0).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(key: &[u8], user: Option<&[u8]>, version: i64, created_at: i64, data: &str) -> String {
        let user = user.map_or_else(|| "-".to_owned(), |u| hex(u).to_uppercase());
        format!(
            "{}:{user}:{version}:{created_at}:{data}",
            hex(key).to_uppercase()
        )
    }

    #[test]
    fn a_frame_equals_exactly_its_digest() {
        let (key, data) = ([7u8; 32], r#"{"a":"x:y"}"#);
        let stored = digest_hex(&key, Some(b"ann"), 3, -5, data.as_bytes());
        let framed = frame(&key, Some(b"ann"), 3, -5, data);
        assert_eq!(collate(&framed, &stored), Ordering::Equal);
        assert_eq!(collate(&stored, &framed), Ordering::Equal);
        for other in [
            frame(&key, Some(b"anne"), 3, -5, data),
            frame(&key, None, 3, -5, data),
            frame(&key, Some(b"ann"), 4, -5, data),
            frame(&key, Some(b"ann"), 3, 5, data),
            frame(&key, Some(b"ann"), 3, -5, r#"{"a":"x:z"}"#),
            frame(&[8u8; 32], Some(b"ann"), 3, -5, data),
            format!("{framed} "),
            framed.replacen(':', ";", 1),
        ] {
            assert_ne!(collate(&other, &stored), Ordering::Equal, "{other}");
        }
        assert_ne!(
            digest(&key, Some(b""), 3, 0, b"x"),
            digest(&key, None, 3, 0, b"x")
        );
    }

    #[test]
    fn a_replacement_char_in_the_data_never_matches() {
        let key = [7u8; 32];
        let data = "{\"a\":\"\u{FFFD}\"}";
        let stored = digest_hex(&key, None, 0, 0, data.as_bytes());
        // What sqlx hands over for data damaged into invalid UTF-8 where
        // U+FFFD stood: it must not pass for the row.
        assert_ne!(
            collate(&frame(&key, None, 0, 0, data), &stored),
            Ordering::Equal
        );
        let escaped = escape_replacement_char(data.to_owned());
        assert_eq!(escaped, r#"{"a":"\ufffd"}"#);
        let value: serde_json::Value = serde_json::from_str(&escaped).unwrap_or_default();
        assert_eq!(value["a"], "\u{FFFD}");
    }

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes.clone()));
        assert_eq!(unhex(&hex(&bytes).to_uppercase()), Some(bytes));
        for bad in ["0", "0g", "g0", "-1", "0x", " 0"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
        assert_eq!(unhex(""), Some(Vec::new()));
    }

    #[test]
    fn pieces_hash_as_one_stream() {
        let bytes: Vec<u8> = (0u8..=40).collect();
        let mut whole = Hasher::new();
        whole.update(&bytes);
        let whole = whole.finish();
        for split in [0, 1, 7, 8, 9, 23, 41] {
            let mut parts = Hasher::new();
            parts.update(&bytes[..split]);
            parts.update(&bytes[split..]);
            assert_eq!(parts.finish(), whole, "split at {split}");
        }
        let mut other = Hasher::new();
        other.update(&bytes[1..]);
        assert_ne!(other.finish(), whole);
    }

    #[test]
    fn the_collation_is_a_total_order() {
        let key = [1u8; 32];
        let strings = [
            digest_hex(&key, None, 0, 0, b"{}"),
            frame(&key, None, 0, 0, "{}"),
            frame(&key, None, 1, 0, "{}"),
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
