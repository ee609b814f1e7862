//! How a [`Record`] is laid out in Redis, and how it is read back
//! defensively: anything unexpected is a [`CodecError`], never a panic.
//!
//! A session is ONE Redis string: a fixed-width ASCII header, then the
//! user's name (if any), then the data as a JSON object.
//!
//! | bytes (0-based) | Lua `string.sub` | field |
//! |---|---|---|
//! | `0..2` | `1, 2` | format tag `S2` |
//! | `2..22` | `3, 22` | expires (ms), sign and 19 digits |
//! | `22..38` | `23, 38` | digest: the first 16 hex digits (lowercase) of the SHA-1 of bytes `38..` |
//! | `38..58` | `39, 58` | created (ms), sign and 19 digits |
//! | `58..78` | `59, 78` | version, 20 decimal digits, zero-padded |
//! | `78` | `79, 79` | `u` when bound to a user, `-` when not |
//! | `79..89` | `80, 89` | the user's length in bytes, 10 digits (0 when unbound) |
//! | `89..89+n` | `90, 89+n` | the user's name (UTF-8) |
//! | `89+n..` | | the data, a JSON object |
//!
//! Fixed widths let the Lua scripts read the expiry (`tonumber`), the
//! version and the user with `string.sub` alone, and let `touch` rewrite
//! the expiry in place (`SETRANGE` at [`EXPIRES_AT`]). The version, the
//! user marker, the user's length and the user are contiguous, so that
//! `save` checks "same version, same user" (its common case) with one
//! comparison against [`cas_expectation`].
//!
//! # The digest
//!
//! The digest covers everything after it (created, version, user, data),
//! and only the expiry and the tag lie outside it, so `touch` rewrites the
//! expiry in place without touching the digest. It is written by every
//! create and save, and checked by every load here and by the save script
//! on the server (`redis.sha1hex`, the one hash a script can compute
//! natively, on Redis and Valkey alike), before anything else is judged:
//! a value whose digest does not match is not what this store wrote, and
//! is unreadable to both, the same way ([`CodecError::DigestMismatch`]).
//! So damage anywhere in the covered bytes, even damage that keeps the
//! data a well-framed JSON object, is `Decode` on load and is never
//! overwritten by a save. The digest catches damage (a tool or a person
//! editing a value, a bug writing into it), not an attacker who can write
//! to the server: SHA-1 is public, and such a writer can store any
//! session it likes. 64 bits of it are kept: a changed value passes with
//! odds of 2⁻⁶⁴.
//!
//! # The previous format, `S1`
//!
//! Values written before the digest (tag `S1`: the same fields without
//! the digest, the created field at byte 22, 73 bytes of header) are
//! still read, by the client and by every script: a load decodes them as
//! before, and their next save rewrites them as `S2`. Until then, only
//! their framing is checked by a save (the data must start with `{` and
//! end with `}`), as before; sessions end by their absolute timeout at
//! the latest, so after that long after the upgrade every stored session
//! carries a digest. Nothing new is ever written as `S1`.

use session_core::{Data, Record, StorageKey, Timestamp};
use sha1::Digest as _;

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
    /// unreadable value this way, but for a digest that does not match).
    #[error("the stored value is not a session in this store's format")]
    NotASession,
    /// The value's digest does not match what follows it: the value was
    /// changed after this store wrote it (damage, or a write behind the
    /// store's back). Loads and saves both refuse it.
    #[error(
        "the stored session does not match its digest: it was changed after this store wrote it"
    )]
    DigestMismatch,
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
const TAG: &[u8; 2] = b"S2";
/// The tag of the previous format (no digest), still read.
const TAG_S1: &[u8; 2] = b"S1";
/// Offset of the expires field (sign and 19 digits), in both formats;
/// `touch` rewrites it in place.
pub(crate) const EXPIRES_AT: usize = 2;
const TIME_LEN: usize = 20;
/// Offset and width of the digest (hex digits).
const DIGEST_AT: usize = 22;
const DIGEST_LEN: usize = 16;
/// Where the fields after the expiry start in `S1`, which has no digest.
const AFTER_EXPIRES_S1: usize = 22;
/// Where the digested bytes start: the created field.
const CREATED_AT: usize = DIGEST_AT + DIGEST_LEN;
/// Offsets (from [`CREATED_AT`], the same in both formats) and widths of
/// the fields after the created field.
const VERSION_OFF: usize = TIME_LEN;
const VERSION_LEN: usize = 20;
const USER_TAG_OFF: usize = VERSION_OFF + VERSION_LEN;
const USER_LEN_OFF: usize = USER_TAG_OFF + 1;
const USER_LEN_LEN: usize = 10;
/// Length of the fields from the created field to the user's name.
const FIELDS_LEN: usize = USER_LEN_OFF + USER_LEN_LEN;
/// Length of the fixed header; the user's name starts here.
pub(crate) const HEADER_LEN: usize = CREATED_AT + FIELDS_LEN;

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

/// The digest of `covered` (the bytes from [`CREATED_AT`] on) as stored:
/// the first 16 hex digits, lowercase, of its SHA-1, as the scripts'
/// `string.sub(redis.sha1hex(covered), 1, 16)`.
fn digest(covered: &[u8]) -> [u8; DIGEST_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let sum = sha1::Sha1::digest(covered);
    let mut out = [0u8; DIGEST_LEN];
    for (pair, byte) in out.chunks_exact_mut(2).zip(sum.iter()) {
        pair.copy_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
    }
    out
}

/// What `save` expects to find stored from the version on: the version
/// the record was read at, then the user marker, length and name of
/// `encoded` (the record as it will be stored). Equal means "same
/// version, same user".
pub(crate) fn cas_expectation(expected_version: u64, encoded: &[u8]) -> Vec<u8> {
    let user_part = encoded.get(CREATED_AT + USER_TAG_OFF..).unwrap_or_default();
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

/// Whether the stored value `stored` is what the save script accepts
/// to save over, as far as its version, user and data's framing go: in
/// format `S2` or `S1`, `expected` (see [`cas_expectation`]) at the
/// version field, then `{`, and `}` last (the script's same test; its
/// other tests, liveness and the digest, are the caller's).
pub(crate) fn meets_expectation(stored: &[u8], expected: &[u8]) -> bool {
    let fields_at = match stored.get(..2) {
        Some(tag) if tag == TAG => CREATED_AT,
        Some(tag) if tag == TAG_S1 => AFTER_EXPIRES_S1,
        _ => return false,
    };
    let at = fields_at + VERSION_OFF;
    let end = at + expected.len();
    stored.get(at..end) == Some(expected)
        && stored.get(end) == Some(&b'{')
        && stored.last() == Some(&b'}')
}

/// The expiry as written in the header (for `touch`'s `SETRANGE`).
pub(crate) fn expires_text(expires_at: Timestamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(TIME_LEN);
    put_time(&mut out, expires_at);
    out
}

/// Encodes `record` as stored, with `version` in place of
/// `record.version` (a save stores the bumped version), its digest
/// included.
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
    out.resize(CREATED_AT, b'0');
    put_time(&mut out, record.created_at);
    put_digits(&mut out, version, VERSION_LEN);
    out.push(if user.is_some() { b'u' } else { b'-' });
    put_digits(&mut out, user_len as u64, USER_LEN_LEN);
    if let Some(user) = user {
        out.extend_from_slice(user);
    }
    serde_json::to_writer(&mut out, &record.data)?;
    let sum = digest(out.get(CREATED_AT..).unwrap_or_default());
    if let Some(slot) = out.get_mut(DIGEST_AT..CREATED_AT) {
        slot.copy_from_slice(&sum);
    }
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
    /// For an `S2` value: the stored digest and the bytes it covers,
    /// checked by [`Header::into_record`].
    sealed: Option<(&'a [u8], &'a [u8])>,
}

/// Parses the header of a stored value, `S2` or `S1` (cheap: no
/// allocation, no digest yet; the expiry can be judged first, as the
/// scripts do).
pub(crate) fn decode_header(value: &[u8]) -> Result<Header<'_>, CodecError> {
    let (fields_at, sealed) = match value.get(..2) {
        Some(tag) if tag == TAG => (
            CREATED_AT,
            value
                .get(DIGEST_AT..CREATED_AT)
                .zip(value.get(CREATED_AT..)),
        ),
        Some(tag) if tag == TAG_S1 => (AFTER_EXPIRES_S1, None),
        _ => return Err(CodecError::NotASession),
    };
    let header_len = fields_at + FIELDS_LEN;
    if value.len() < header_len {
        return Err(CodecError::NotASession);
    }
    let field = |at: usize, len: usize| value.get(at..at + len).unwrap_or_default();
    let version = parse_digits(field(fields_at + VERSION_OFF, VERSION_LEN), "version")?;
    let created_at = parse_time(field(fields_at, TIME_LEN), "created")?;
    let expires_at = parse_time(field(EXPIRES_AT, TIME_LEN), "expires")?;
    let user_len = parse_digits(field(fields_at + USER_LEN_OFF, USER_LEN_LEN), "user")?;
    let user_end = usize::try_from(user_len)
        .ok()
        .and_then(|n| header_len.checked_add(n))
        .filter(|&end| end <= value.len())
        .ok_or_else(|| bad("user", "a length within the value"))?;
    let user_bytes = value.get(header_len..user_end).unwrap_or_default();
    let user = match value.get(fields_at + USER_TAG_OFF) {
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
        sealed,
    })
}

impl Header<'_> {
    /// Builds the record: checks an `S2` value's digest (a mismatch is
    /// [`CodecError::DigestMismatch`]), then parses the data.
    pub(crate) fn into_record(self, key: StorageKey) -> Result<Record, CodecError> {
        if let Some((stored, covered)) = self.sealed
            && stored != digest(covered)
        {
            return Err(CodecError::DigestMismatch);
        }
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
            assert_eq!(&bytes[..2], b"S2");
            assert_eq!(
                &bytes[EXPIRES_AT..EXPIRES_AT + 20],
                expires_text(r.expires_at).as_slice()
            );
            assert_eq!(&bytes[58..78], format!("{version:020}").as_bytes());
            let want = cas_expectation(9, &bytes);
            assert_eq!(&want[..20], b"00000000000000000009");
            assert_eq!(&want[20..], &bytes[78..89 + user.map_or(0, str::len)]);
            r.version = version;
            assert_eq!(decode(r.key, &bytes).unwrap(), r);
        }
        let bytes = encode(&record(Some("ann"), 5, 6), 7).unwrap();
        let covered = "+000000000000000000500000000000000000007u0000000003ann{\"a\":[1,\"x\"]}";
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            format!("S2+0000000000000000006{}{covered}", sha1_prefix(covered))
        );
    }

    /// The first 16 hex digits of the SHA-1 of `text`, computed apart
    /// from the codec (what `redis.sha1hex` would say, cut to 16).
    fn sha1_prefix(text: &str) -> String {
        let sum = sha1::Sha1::digest(text.as_bytes());
        sum.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_digest_is_sha1_as_the_scripts_compute_it() {
        // SHA-1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d, as
        // `redis.sha1hex('abc')` answers on Redis 7 and Valkey 8.1.
        assert_eq!(&digest(b"abc"), b"a9993e364706816a");
    }

    /// `value` with its digest recomputed over what it now holds (so a
    /// test can reach the field checks behind the digest).
    fn resealed(mut value: Vec<u8>) -> Vec<u8> {
        let sum = digest(&value[CREATED_AT..]);
        value[DIGEST_AT..CREATED_AT].copy_from_slice(&sum);
        value
    }

    #[test]
    fn malformed_values_are_errors() {
        let key = StorageKey::from_bytes([7; 32]);
        let good = encode(&record(Some("bob"), 10, 20), 3).unwrap();
        let with = |at: usize, bytes: &[u8]| {
            let mut v = good.clone();
            v[at..at + bytes.len()].copy_from_slice(bytes);
            resealed(v)
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
            decode(key, &with(0, b"S3")),
            Err(CodecError::NotASession)
        ));
        assert_eq!(field(&with(61, b"x")), "version");
        assert_eq!(field(&with(58, b"99999999999999999999")), "version");
        assert_eq!(field(&with(38, b"*")), "created");
        assert_eq!(field(&with(3, b"+")), "expires");
        assert_eq!(field(&with(2, b"0")), "expires");
        assert_eq!(field(&with(78, b"-")), "user");
        assert_eq!(field(&with(78, b"x")), "user");
        assert_eq!(field(&with(79, b"0000000099")), "user");
        assert_eq!(field(&with(89, b"\xff")), "user");
        assert_eq!(field(&with(92, b"[")), "data");
        assert_eq!(field(&resealed(good[..good.len() - 1].to_vec())), "data");
    }

    /// Any change to the bytes the digest covers, or to the digest, is
    /// `DigestMismatch`, even one that leaves a well-formed record (a
    /// value serde refuses inside intact framing, another version, another
    /// user); the expiry is outside the digest (`touch` rewrites it).
    #[test]
    fn damage_under_the_digest_is_a_mismatch() {
        let key = StorageKey::from_bytes([7; 32]);
        let r = record(Some("bob"), 10, 20);
        let good = encode(&r, 3).unwrap();
        let data_at = good.len() - br#"{"a":[1,"x"]}"#.len();
        let mut huge = good[..data_at].to_vec();
        huge.extend_from_slice(br#"{"a":[1e400,"x"]}"#);
        let mut other = good.clone();
        other[77] = b'4';
        let mut renamed = good.clone();
        renamed[89] = b'r';
        let mut digest_changed = good.clone();
        digest_changed[22] = if good[22] == b'0' { b'1' } else { b'0' };
        for (what, value) in [
            ("a number beyond f64 inside the data", huge),
            ("another version", other),
            ("another user of the same length", renamed),
            ("a changed digest", digest_changed),
        ] {
            assert!(
                matches!(decode(key, &value), Err(CodecError::DigestMismatch)),
                "{what}: {:?}",
                decode(key, &value)
            );
        }
        let mut touched = good.clone();
        touched[EXPIRES_AT..EXPIRES_AT + 20]
            .copy_from_slice(&expires_text(Timestamp::from_millis(99)));
        let mut want = r.clone();
        want.version = 3;
        want.expires_at = Timestamp::from_millis(99);
        assert_eq!(decode(key, &touched).unwrap(), want);
    }

    /// The previous format, without a digest, is still read.
    #[test]
    fn s1_values_are_still_read() {
        let key = StorageKey::from_bytes([7; 32]);
        let s1 = "S1+0000000000000000006+000000000000000000500000000000000000007u0000000003ann{\"a\":[1,\"x\"]}";
        let mut want = record(Some("ann"), 5, 6);
        want.version = 7;
        assert_eq!(decode(key, s1.as_bytes()).unwrap(), want);
        let field = |v: &str| match decode(key, v.as_bytes()) {
            Err(CodecError::BadField { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(&s1.replace("ann{", "ann[")), "data");
        assert_eq!(field(&s1.replace("u0000000003", "u0000000099")), "user");
        assert!(matches!(
            decode(key, &s1.as_bytes()[..72]),
            Err(CodecError::NotASession)
        ));
    }

    #[test]
    fn meets_expectation_is_the_save_scripts_test() {
        let bytes = encode(&record(Some("ann"), 5, 6), 7).unwrap();
        // The version stored (7) and the same user: met.
        assert!(meets_expectation(&bytes, &cas_expectation(7, &bytes)));
        // Another version, or another user: not met.
        assert!(!meets_expectation(&bytes, &cas_expectation(6, &bytes)));
        let other = encode(&record(Some("bob"), 5, 6), 7).unwrap();
        assert!(!meets_expectation(&bytes, &cas_expectation(7, &other)));
        let unbound = encode(&record(None, 5, 6), 7).unwrap();
        assert!(!meets_expectation(&bytes, &cas_expectation(7, &unbound)));
        assert!(meets_expectation(&unbound, &cas_expectation(7, &unbound)));
        // Data not framed as an object, another format: not met.
        let mut open = bytes.clone();
        open.pop();
        assert!(!meets_expectation(&open, &cas_expectation(7, &bytes)));
        let mut tagged = bytes.clone();
        tagged[1] = b'9';
        assert!(!meets_expectation(&tagged, &cas_expectation(7, &bytes)));
        // `S1`: the same fields 16 bytes earlier.
        let mut s1 = b"S1".to_vec();
        s1.extend_from_slice(&bytes[EXPIRES_AT..DIGEST_AT]);
        s1.extend_from_slice(&bytes[CREATED_AT..]);
        assert!(meets_expectation(&s1, &cas_expectation(7, &bytes)));
        assert!(!meets_expectation(&s1, &cas_expectation(8, &bytes)));
        assert!(!meets_expectation(b"S2", b""));
    }
}
