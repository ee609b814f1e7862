//! Session ids (what the browser holds) and storage keys (what a store sees).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Number of random bytes in a [`SessionId`].
pub const ID_BYTES: usize = 32;

/// Length of a [`SessionId`]'s text form: 32 bytes as unpadded base64url.
pub const ID_TEXT_LEN: usize = 43;

/// Number of bytes in a [`StorageKey`] (a SHA-256 digest).
pub const KEY_BYTES: usize = 32;

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// An unguessable session id: 256 bits from the operating system's CSPRNG.
///
/// This is the secret the browser holds in its cookie. Its text form is
/// exactly 43 characters of unpadded base64url ([`SessionId::to_cookie_value`]).
///
/// * `Debug` never prints the id; `Display` is deliberately not implemented,
///   so an id cannot end up in a log line by accident.
/// * Equality is constant-time.
/// * Stores never see a `SessionId`, only its [`StorageKey`].
///
/// ```
/// use session_core::SessionId;
///
/// let id = SessionId::generate()?;
/// let text = id.to_cookie_value();
/// assert_eq!(text.len(), 43);
/// assert_eq!(SessionId::parse(&text)?, id);
/// assert_eq!(format!("{id:?}"), "SessionId(<redacted>)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// Draws a fresh id from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Random`] when the operating system cannot provide
    /// randomness (no id is ever made from weaker entropy).
    pub fn generate() -> Result<Self, crate::Error> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| crate::Error::Random(Box::new(e)))?;
        Ok(Self(bytes))
    }

    /// Parses a cookie value strictly: exactly 43 characters of unpadded
    /// base64url in canonical form (the unused low bits of the last
    /// character must be zero). Anything else is an error and allocates
    /// nothing.
    ///
    /// ```
    /// use session_core::SessionId;
    ///
    /// assert!(SessionId::parse("too-short").is_err());
    /// assert!(SessionId::parse(&"A".repeat(44)).is_err());
    /// assert!(SessionId::parse(&"A".repeat(43)).is_ok());
    /// assert!(SessionId::parse(&format!("{}=", "A".repeat(42))).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidSessionId`] naming what was wrong (never echoing the input).
    pub fn parse(text: &str) -> Result<Self, InvalidSessionId> {
        Self::parse_bytes(text.as_bytes())
    }

    /// [`SessionId::parse`] of raw bytes, such as a cookie value read from
    /// a header that need not be UTF-8: the same strict rules (the
    /// base64url alphabet is ASCII, so no UTF-8 check is needed first).
    ///
    /// ```
    /// use session_core::SessionId;
    ///
    /// let id = SessionId::generate()?;
    /// let text = id.to_cookie_value();
    /// assert_eq!(SessionId::parse_bytes(text.as_bytes())?, id);
    /// assert!(SessionId::parse_bytes(&[0xff; 43]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidSessionId`] naming what was wrong (never echoing the input).
    pub fn parse_bytes(input: &[u8]) -> Result<Self, InvalidSessionId> {
        let Ok(input) = <&[u8; ID_TEXT_LEN]>::try_from(input) else {
            return Err(InvalidSessionId::Length(input.len()));
        };
        // The 6-bit value of the character at `i`, or which one is bad.
        let value = |i: usize| -> Result<u32, InvalidSessionId> {
            match B64URL_DECODE[usize::from(input[i])] {
                INVALID => Err(InvalidSessionId::Character(i)),
                v => Ok(u32::from(v)),
            }
        };
        let mut out = [0u8; ID_BYTES];
        // 40 characters, four at a time: 240 bits, 30 bytes.
        for group in 0..10 {
            let (i, o) = (group * 4, group * 3);
            let n =
                (value(i)? << 18) | (value(i + 1)? << 12) | (value(i + 2)? << 6) | value(i + 3)?;
            out[o] = (n >> 16) as u8;
            out[o + 1] = (n >> 8) as u8;
            out[o + 2] = n as u8;
        }
        // The last three: 18 bits, 16 of data and 2 that must be zero
        // (43 * 6 = 258 bits for 256).
        let n = (value(40)? << 12) | (value(41)? << 6) | value(42)?;
        if n & 0b11 != 0 {
            return Err(InvalidSessionId::NonCanonical);
        }
        out[30] = (n >> 10) as u8;
        out[31] = (n >> 2) as u8;
        Ok(Self(out))
    }

    /// The 43-character cookie value.
    pub fn to_cookie_value(&self) -> String {
        let mut out = String::with_capacity(ID_TEXT_LEN);
        let mut acc: u32 = 0;
        let mut bits: u32 = 0;
        for &b in &self.0 {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 6 {
                bits -= 6;
                out.push(char::from(B64URL[((acc >> bits) & 0x3f) as usize]));
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push(char::from(B64URL[((acc << (6 - bits)) & 0x3f) as usize]));
        }
        out
    }

    /// The storage key for this id: SHA-256 of its 32 bytes.
    pub fn storage_key(&self) -> StorageKey {
        StorageKey(Sha256::digest(self.0).into())
    }
}

/// [`B64URL_DECODE`]'s mark for a byte outside the alphabet.
const INVALID: u8 = 0xff;

/// The 6-bit value of every byte of the base64url alphabet, [`INVALID`]
/// for every other byte: one table lookup per character.
const B64URL_DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[B64URL[i] as usize] = i as u8;
        i += 1;
    }
    table
};

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SessionId {}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

impl FromStr for SessionId {
    type Err = InvalidSessionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a cookie value is not a [`SessionId`]. Never contains the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidSessionId {
    /// The value is not exactly 43 bytes long (the length found).
    #[error("session id must be {ID_TEXT_LEN} characters, found {0}")]
    Length(usize),
    /// A byte outside the base64url alphabet, at this position.
    #[error("session id has a character outside base64url at position {0}")]
    Character(usize),
    /// The unused low bits of the last character are not zero.
    #[error("session id is not in canonical base64url form")]
    NonCanonical,
}

/// What a store keys a session by: the SHA-256 digest of its [`SessionId`].
///
/// A leaked database or Redis dump therefore holds no usable cookie. The
/// key is not secret, so `Debug` and `Display` print it (as 64 lowercase hex
/// digits, its stable text form for backends that need text).
///
/// ```
/// use session_core::{SessionId, StorageKey};
///
/// let key = SessionId::generate()?.storage_key();
/// let text = key.to_hex();
/// assert_eq!(text.len(), 64);
/// assert_eq!(StorageKey::from_hex(&text)?, key);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey([u8; KEY_BYTES]);

impl StorageKey {
    /// Wraps raw digest bytes, for stores that read keys back from a backend.
    pub const fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes (for binary key columns).
    pub const fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// Reads a key back from a byte slice of a backend.
    ///
    /// # Errors
    ///
    /// [`InvalidStorageKey`] when the slice is not exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidStorageKey> {
        <[u8; KEY_BYTES]>::try_from(bytes)
            .map(Self)
            .map_err(|_| InvalidStorageKey)
    }

    /// The stable text form: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(KEY_BYTES * 2);
        self.push_hex(&mut out);
        out
    }

    /// Appends the text form of [`StorageKey::to_hex`] to `out`: for a
    /// backend key such as `prefix:<hex>`, built without a second string.
    ///
    /// ```
    /// # use session_core::StorageKey;
    /// let key = StorageKey::from_bytes([0xab; 32]);
    /// let mut name = String::from("session:");
    /// key.push_hex(&mut name);
    /// assert_eq!(name, format!("session:{}", key.to_hex()));
    /// assert!(name.ends_with("abab"));
    /// ```
    pub fn push_hex(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        // Into a byte buffer first: pushing 64 `char`s one by one costs
        // several times as many instructions (a callgrind profile of the
        // Redis store's loads showed it).
        let mut digits = [0u8; KEY_BYTES * 2];
        for (pair, &b) in digits.chunks_exact_mut(2).zip(&self.0) {
            pair.copy_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
        // Always ASCII, so never the empty fallback.
        out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    }

    /// Parses the text form written by [`StorageKey::to_hex`] (either case).
    ///
    /// # Errors
    ///
    /// [`InvalidStorageKey`] when the text is not exactly 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, InvalidStorageKey> {
        let bytes = text.as_bytes();
        if bytes.len() != KEY_BYTES * 2 {
            return Err(InvalidStorageKey);
        }
        let mut out = [0u8; KEY_BYTES];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = hex_digit(pair[0]).ok_or(InvalidStorageKey)?;
            let lo = hex_digit(pair[1]).ok_or(InvalidStorageKey)?;
            *slot = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageKey({})", self.to_hex())
    }
}

impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for StorageKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for StorageKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// A stored key that is not a 32-byte digest (or 64 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("storage key must be 32 bytes (64 hex digits)")]
pub struct InvalidStorageKey;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_ids_round_trip_through_text() {
        for _ in 0..200 {
            let id = SessionId::generate().unwrap();
            let text = id.to_cookie_value();
            assert_eq!(text.len(), ID_TEXT_LEN);
            assert!(
                text.bytes()
                    .all(|c| B64URL_DECODE[usize::from(c)] != INVALID)
            );
            assert_eq!(SessionId::parse(&text).unwrap(), id);
        }
    }

    #[test]
    fn generated_ids_differ() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.storage_key(), b.storage_key());
    }

    #[test]
    fn known_vector_matches_base64url_and_sha256() {
        // 32 bytes 0x00..=0x1f, base64url without padding.
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8;
        }
        let id = SessionId(bytes);
        assert_eq!(
            id.to_cookie_value(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
        );
        // sha256 of bytes 0x00..=0x1f
        assert_eq!(
            id.storage_key().to_hex(),
            "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
        );
    }

    #[test]
    fn parse_rejects_wrong_lengths() {
        for len in [0, 1, 42, 44, 64, 1000] {
            assert_eq!(
                SessionId::parse(&"A".repeat(len)),
                Err(InvalidSessionId::Length(len))
            );
        }
    }

    #[test]
    fn parse_rejects_characters_outside_alphabet() {
        let good = SessionId::generate().unwrap().to_cookie_value();
        for bad in [b'+', b'/', b'=', b' ', b'.', b'%', 0xff] {
            let mut bytes = good.clone().into_bytes();
            bytes[7] = bad;
            // Non-UTF-8 bytes cannot form a &str; skip those as inputs.
            if let Ok(text) = String::from_utf8(bytes) {
                assert_eq!(SessionId::parse(&text), Err(InvalidSessionId::Character(7)));
            }
        }
        // A multi-byte character changes the byte length, so it is a length error.
        let text = format!("é{}", &good[2..]);
        assert_eq!(text.len(), 43);
        assert!(SessionId::parse(&text).is_err());
    }

    #[test]
    fn parse_rejects_non_canonical_last_character() {
        // 'B' = 000001: its low two bits are data-less and must be zero.
        let text = format!("{}B", "A".repeat(42));
        assert_eq!(SessionId::parse(&text), Err(InvalidSessionId::NonCanonical));
        let text = format!("{}E", "A".repeat(42));
        assert!(SessionId::parse(&text).is_ok());
    }

    /// The table-driven parser against the bit-by-bit reference it
    /// replaced, on random ids and on every single-character change of
    /// one (each position, each byte value).
    #[test]
    fn parse_agrees_with_a_bit_by_bit_reference() {
        fn reference(input: &[u8]) -> Option<[u8; ID_BYTES]> {
            if input.len() != ID_TEXT_LEN {
                return None;
            }
            let (mut out, mut acc, mut bits, mut pos) = ([0u8; ID_BYTES], 0u32, 0u32, 0usize);
            for &c in input {
                let v = B64URL.iter().position(|&a| a == c)?;
                acc = (acc << 6) | v as u32;
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    if pos < ID_BYTES {
                        out[pos] = (acc >> bits) as u8;
                        pos += 1;
                    }
                    acc &= (1 << bits) - 1;
                }
            }
            (pos == ID_BYTES && acc == 0).then_some(out)
        }
        for _ in 0..200 {
            let text = SessionId::generate().unwrap().to_cookie_value();
            let parsed = SessionId::parse(&text).ok().map(|id| id.0);
            assert_eq!(parsed, reference(text.as_bytes()), "{text}");
        }
        let text = SessionId::generate()
            .unwrap()
            .to_cookie_value()
            .into_bytes();
        for at in 0..ID_TEXT_LEN {
            for byte in 0..=255u8 {
                let mut changed = text.clone();
                changed[at] = byte;
                let parsed = SessionId::parse_bytes(&changed).ok().map(|id| id.0);
                assert_eq!(parsed, reference(&changed), "byte {byte} at {at}");
            }
        }
    }

    #[test]
    fn debug_is_redacted() {
        let id = SessionId::generate().unwrap();
        let shown = format!("{id:?} {:#?}", id);
        assert!(!shown.contains(&id.to_cookie_value()));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn storage_key_hex_is_each_byte_high_nibble_first() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8) * 8 + 1;
        }
        let key = StorageKey::from_bytes(bytes);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(key.to_hex(), expected);
        let mut out = String::from("p:");
        key.push_hex(&mut out);
        assert_eq!(out, format!("p:{expected}"));
    }

    #[test]
    fn storage_key_hex_round_trips_and_rejects_bad_text() {
        let key = SessionId::generate().unwrap().storage_key();
        assert_eq!(StorageKey::from_hex(&key.to_hex()).unwrap(), key);
        assert_eq!(
            StorageKey::from_hex(&key.to_hex().to_uppercase()).unwrap(),
            key
        );
        assert!(StorageKey::from_hex("abc").is_err());
        assert!(StorageKey::from_hex(&"g".repeat(64)).is_err());
        assert_eq!(StorageKey::from_slice(key.as_bytes()).unwrap(), key);
        assert!(StorageKey::from_slice(&[0u8; 31]).is_err());
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<StorageKey>(&json).unwrap(), key);
    }
}
