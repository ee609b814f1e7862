//! How a [`Record`] is laid out in Redis, and how it is read back
//! defensively: anything unexpected is a [`CodecError`], never a panic.
//!
//! A session is ONE Redis string: a fixed-width ASCII header, then the
//! user's name (if any), then the data as a JSON object.
//!
//! | bytes (0-based) | Lua `string.sub` | field |
//! |---|---|---|
//! | bytes (0-based) | Lua `string.sub` | field |
//! |---|---|---|
//! | `0..2` | `1, 2` | format tag `S1` |
//! | `2..22` | `3, 22` | expires (ms), sign and 19 digits |
//! | `22..42` | `23, 42` | created (ms), sign and 19 digits |
//! | `42..62` | `43, 62` | version, 20 decimal digits, zero-padded |
//! | `62` | `63, 63` | `u` when bound to a user, `-` when not |
//! | `63..73` | `64, 73` | the user's length in bytes, 10 digits (0 when unbound) |
//! | `73..73+n` | `74, 73+n` | the user's name (UTF-8) |
//! | `73+n..` | | the data, a JSON object |
//!
//! Fixed widths let the Lua scripts read the expiry (`tonumber`), the
//! version and the user with `string.sub` alone, and let `touch` rewrite
//! the expiry in place (`SETRANGE` at [`EXPIRES_AT`]). The version, the
//! user marker, the user's length and the user are contiguous, so that
//! `save` checks "same version, same user" (its common case) with one
//! comparison against [`cas_expectation`].

use session_core::{Data, Record, StorageKey, Timestamp};

/// Why a stored value is not a readable session. Carried as the source of
/// [`session_core::Error::Decode`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The key holds another kind of Redis value (a hash, a list, …)
    /// where a session string was expected.
    #[error("the stored value is not a string")]
    WrongType,
    /// The value is not a session in this store's format: too short, or
    /// without its format tag (the server-side scripts report every
    /// unreadable value this way).
    #[error("the stored value is not a session in this store's format")]
    NotASession,
    /// A part of the stored session is present but cannot be parsed.
    #[error("the stored session's {field} is malformed")]
    BadField {
        /// The part's name (`version`, `created`, `expires`, `user`,
        /// `data`).
        field: &'static str,
        /// Why it could not be parsed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The server answered with a reply of an unexpected shape.
    #[error("unexpected reply from the server: {0}")]
    Reply(String),
}

/// A fixed-width header field that does not hold the digits it should.
#[derive(Debug, thiserror::Error)]
#[error("expected {0}")]
struct Malformed(&'static str);

fn bad(field: &'static str, why: &'static str) -> CodecError {
    CodecError::BadField {
        field,
        source: Box::new(Malformed(why)),
    }
}

/// The format tag every session value starts with.
const TAG: &[u8; 2] = b"S1";
/// Offset of the expires field (sign and 19 digits); `touch` rewrites it
/// in place.
pub(crate) const EXPIRES_AT: usize = 2;
const TIME_LEN: usize = 20;
/// Offset of the created field (sign and 19 digits).
const CREATED_AT: usize = 22;
/// Offset and width of the version field.
const VERSION_AT: usize = 42;
const VERSION_LEN: usize = 20;
/// Offset of the user marker (`u` or `-`).
const USER_TAG_AT: usize = 62;
/// Offset and width of the user's length.
const USER_LEN_AT: usize = 63;
const USER_LEN_LEN: usize = 10;
/// Length of the fixed header; the user's name starts here.
pub(crate) const HEADER_LEN: usize = 73;

/// The widest user name the header can describe (10 decimal digits).
const MAX_USER_LEN: usize = 9_999_999_999;

/// A record's encoding cannot be written (the data does not serialise, or
/// an absurdly long user name).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error("the session data cannot be serialised")]
    Json(#[from] serde_json::Error),
    #[error("the user name is longer than {MAX_USER_LEN} bytes")]
    UserTooLong,
}

/// Fills `slot` with `n` as zero-padded decimal digits (the caller
/// guarantees it fits).
fn fill_digits(slot: &mut [u8], mut n: u64) {
    for b in slot.iter_mut().rev() {
        // `n % 10` < 10, so the cast never truncates.
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Writes `n` as exactly `width` zero-padded decimal digits.
fn put_digits(out: &mut Vec<u8>, n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    if let Some(slot) = out.get_mut(start..) {
        fill_digits(slot, n);
    }
}

/// Writes a timestamp as a sign and 19 digits (every `i64` fits).
fn put_time(out: &mut Vec<u8>, t: Timestamp) {
    let ms = t.as_millis();
    out.push(if ms < 0 { b'-' } else { b'+' });
    put_digits(out, ms.unsigned_abs(), TIME_LEN - 1);
}

/// What `save` expects to find stored from byte [`VERSION_AT`] on: the
/// version the record was read at, then the user marker, length and name
/// of `encoded` (the record as it will be stored). Equal means "same
/// version, same user".
pub(crate) fn cas_expectation(expected_version: u64, encoded: &[u8]) -> Vec<u8> {
    let user_part = encoded.get(VERSION_AT + VERSION_LEN..).unwrap_or_default();
    let user_len = user_part
        .get(1..1 + USER_LEN_LEN)
        .and_then(|digits| parse_digits(digits, "user").ok())
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let user_part = user_part
        .get(..1 + USER_LEN_LEN + user_len)
        .unwrap_or(user_part);
    let mut out = Vec::with_capacity(VERSION_LEN + user_part.len());
    put_digits(&mut out, expected_version, VERSION_LEN);
    out.extend_from_slice(user_part);
    out
}

/// The expiry as written in the header (for `touch`'s `SETRANGE`).
pub(crate) fn expires_text(expires_at: Timestamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(TIME_LEN);
    put_time(&mut out, expires_at);
    out
}

/// Encodes `record` as stored, with `version` in place of
/// `record.version` (a save stores the bumped version).
pub(crate) fn encode(record: &Record, version: u64) -> Result<Vec<u8>, EncodeError> {
    let user = record.user.as_deref().map(str::as_bytes);
    let user_len = user.map_or(0, <[u8]>::len);
    if user_len > MAX_USER_LEN {
        return Err(EncodeError::UserTooLong);
    }
    // A guess at the JSON's size: enough for typical sessions in one go.
    let mut out = Vec::with_capacity(HEADER_LEN + user_len + 256);
    out.extend_from_slice(TAG);
    put_time(&mut out, record.expires_at);
    put_time(&mut out, record.created_at);
    put_digits(&mut out, version, VERSION_LEN);
    out.push(if user.is_some() { b'u' } else { b'-' });
    put_digits(&mut out, user_len as u64, USER_LEN_LEN);
    if let Some(user) = user {
        out.extend_from_slice(user);
    }
    serde_json::to_writer(&mut out, &record.data)?;
    Ok(out)
}

/// Reads a field of ASCII digits (all of `bytes`).
fn parse_digits(bytes: &[u8], field: &'static str) -> Result<u64, CodecError> {
    let mut n: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return Err(bad(field, "decimal digits"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| bad(field, "a number that fits in 64 bits"))?;
    }
    Ok(n)
}

/// Reads a sign and 19 digits.
fn parse_time(bytes: &[u8], field: &'static str) -> Result<Timestamp, CodecError> {
    let (sign, digits) = bytes
        .split_first()
        .ok_or_else(|| bad(field, "a sign and 19 digits"))?;
    let magnitude = parse_digits(digits, field)?;
    let ms = match sign {
        b'+' => i64::try_from(magnitude).ok(),
        b'-' => 0i64.checked_sub_unsigned(magnitude),
        _ => None,
    };
    ms.map(Timestamp::from_millis)
        .ok_or_else(|| bad(field, "a sign and a 64-bit number of milliseconds"))
}

/// The header of a stored session: everything but the data.
pub(crate) struct Header<'a> {
    pub(crate) version: u64,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) user: Option<&'a str>,
    /// The JSON data, not yet parsed.
    pub(crate) data: &'a [u8],
}

/// Parses the header of a stored value (cheap: no allocation).
pub(crate) fn decode_header(value: &[u8]) -> Result<Header<'_>, CodecError> {
    if value.len() < HEADER_LEN || !value.starts_with(TAG) {
        return Err(CodecError::NotASession);
    }
    let field = |at: usize, len: usize| value.get(at..at + len).unwrap_or_default();
    let version = parse_digits(field(VERSION_AT, VERSION_LEN), "version")?;
    let created_at = parse_time(field(CREATED_AT, TIME_LEN), "created")?;
    let expires_at = parse_time(field(EXPIRES_AT, TIME_LEN), "expires")?;
    let user_len = parse_digits(field(USER_LEN_AT, USER_LEN_LEN), "user")?;
    let user_end = usize::try_from(user_len)
        .ok()
        .and_then(|n| HEADER_LEN.checked_add(n))
        .filter(|&end| end <= value.len())
        .ok_or_else(|| bad("user", "a length within the value"))?;
    let user_bytes = value.get(HEADER_LEN..user_end).unwrap_or_default();
    let user = match value.get(USER_TAG_AT) {
        Some(b'u') => Some(
            std::str::from_utf8(user_bytes).map_err(|e| CodecError::BadField {
                field: "user",
                source: Box::new(e),
            })?,
        ),
        Some(b'-') if user_len == 0 => None,
        _ => return Err(bad("user", "`u`, or `-` with a length of 0")),
    };
    Ok(Header {
        version,
        created_at,
        expires_at,
        user,
        data: value.get(user_end..).unwrap_or_default(),
    })
}

impl Header<'_> {
    /// Builds the record: parses the data.
    pub(crate) fn into_record(self, key: StorageKey) -> Result<Record, CodecError> {
        let data: Data = serde_json::from_slice(self.data).map_err(|e| CodecError::BadField {
            field: "data",
            source: Box::new(e),
        })?;
        Ok(Record {
            key,
            data,
            user: self.user.map(str::to_owned),
            created_at: self.created_at,
            expires_at: self.expires_at,
            version: self.version,
        })
    }
}

/// Decodes a whole stored value.
#[cfg(test)]
pub(crate) fn decode(key: StorageKey, value: &[u8]) -> Result<Record, CodecError> {
    decode_header(value)?.into_record(key)
}

/// Appends the escaped form of a user name: ASCII letters, digits and
/// `-_.@` stay as they are, every other byte of the UTF-8 form becomes
/// `%XX`. The mapping is injective (distinct names give distinct keys),
/// and the result holds no `{`, `}`, `:`, `*` or whitespace, so it can
/// neither form a cluster hash tag nor a glob pattern.
pub(crate) fn push_escaped_user(out: &mut String, user: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(user.len());
    for &b in user.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn escape_user(user: &str) -> String {
        let mut out = String::new();
        push_escaped_user(&mut out, user);
        out
    }

    #[test]
    fn escape_is_injective_and_safe() {
        let names = [
            "pat",
            "Pat",
            "pat ",
            "pa",
            "p:at*",
            "zoë 🦀",
            "zoe\u{0308} 🦀",
            "%41",
            "A",
            "{x}",
        ];
        let escaped: Vec<_> = names.iter().map(|n| escape_user(n)).collect();
        for (i, a) in escaped.iter().enumerate() {
            assert!(!a.contains([':', '*', '{', '}', ' ']), "{a}");
            for b in &escaped[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(escape_user("a@b.c-d_e"), "a@b.c-d_e");
        assert_eq!(escape_user("%"), "%25");
    }

    fn record(user: Option<&str>, created: i64, expires: i64) -> Record {
        let mut r = Record::new(
            StorageKey::from_bytes([7; 32]),
            Timestamp::from_millis(created),
            Timestamp::from_millis(expires),
        );
        r.user = user.map(str::to_owned);
        r.data.insert("a".into(), serde_json::json!([1, "x"]));
        r
    }

    #[test]
    fn round_trips_at_the_extremes() {
        for (user, created, expires, version) in [
            (Some("bob"), 10, 20, 3),
            (None, 0, 1, 0),
            (Some(""), i64::MIN, i64::MAX, u64::MAX),
            (Some("zoë 🦀"), -1, 1_700_000_000_000, 12345),
        ] {
            let mut r = record(user, created, expires);
            let bytes = encode(&r, version).unwrap();
            assert_eq!(&bytes[..2], b"S1");
            assert_eq!(
                &bytes[EXPIRES_AT..EXPIRES_AT + 20],
                expires_text(r.expires_at).as_slice()
            );
            assert_eq!(&bytes[42..62], format!("{version:020}").as_bytes());
            let want = cas_expectation(9, &bytes);
            assert_eq!(&want[..20], b"00000000000000000009");
            assert_eq!(&want[20..], &bytes[62..73 + user.map_or(0, str::len)]);
            r.version = version;
            assert_eq!(decode(r.key, &bytes).unwrap(), r);
        }
        let bytes = encode(&record(Some("ann"), 5, 6), 7).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "S1+0000000000000000006+000000000000000000500000000000000000007u0000000003ann{\"a\":[1,\"x\"]}"
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        let key = StorageKey::from_bytes([7; 32]);
        let good = encode(&record(Some("bob"), 10, 20), 3).unwrap();
        let with = |at: usize, bytes: &[u8]| {
            let mut v = good.clone();
            v[at..at + bytes.len()].copy_from_slice(bytes);
            v
        };
        let field = |v: &[u8]| match decode(key, v) {
            Err(CodecError::BadField { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            decode(key, b"\x00\xffgarbage"),
            Err(CodecError::NotASession)
        ));
        assert!(matches!(
            decode(key, &good[..HEADER_LEN - 1]),
            Err(CodecError::NotASession)
        ));
        assert!(matches!(
            decode(key, &with(0, b"S2")),
            Err(CodecError::NotASession)
        ));
        assert_eq!(field(&with(45, b"x")), "version");
        assert_eq!(field(&with(42, b"99999999999999999999")), "version");
        assert_eq!(field(&with(22, b"*")), "created");
        assert_eq!(field(&with(3, b"+")), "expires");
        assert_eq!(field(&with(2, b"0")), "expires");
        assert_eq!(field(&with(62, b"-")), "user");
        assert_eq!(field(&with(62, b"x")), "user");
        assert_eq!(field(&with(63, b"0000000099")), "user");
        assert_eq!(field(&with(73, b"\xff")), "user");
        assert_eq!(field(&with(76, b"[")), "data");
        assert_eq!(field(&good[..good.len() - 1]), "data");
    }
}
