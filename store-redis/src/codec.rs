//! How a [`Record`] is laid out in Redis, and how it is read back
//! defensively: anything unexpected is a [`CodecError`], never a panic.

use std::collections::HashMap;

use session_core::{Data, Record, StorageKey, Timestamp};

/// Why a stored value is not a readable session. Carried as the source of
/// [`session_core::Error::Decode`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The key holds something other than a hash (for example a string).
    #[error("the stored value is not a session hash")]
    NotAHash,
    /// A required field is missing.
    #[error("the stored session has no `{0}` field")]
    MissingField(&'static str),
    /// A field is present but cannot be parsed.
    #[error("the stored session's `{field}` field is malformed")]
    BadField {
        /// The field's name.
        field: &'static str,
        /// Why it could not be parsed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The server answered with a reply of an unexpected shape.
    #[error("unexpected reply from the server: {0}")]
    Reply(String),
}

/// Field names of the session hash.
pub(crate) const F_VERSION: &str = "v";
pub(crate) const F_DATA: &str = "d";
pub(crate) const F_USER: &str = "u";
pub(crate) const F_CREATED: &str = "c";
pub(crate) const F_EXPIRES: &str = "e";

/// The record's fields as script arguments.
pub(crate) struct Encoded {
    pub(crate) data: Vec<u8>,
    pub(crate) created: String,
    pub(crate) expires: String,
}

pub(crate) fn encode(record: &Record) -> Result<Encoded, serde_json::Error> {
    Ok(Encoded {
        data: serde_json::to_vec(&record.data)?,
        created: record.created_at.as_millis().to_string(),
        expires: record.expires_at.as_millis().to_string(),
    })
}

/// Decodes an `HGETALL` reply. An empty map means the key is absent.
pub(crate) fn decode(
    key: StorageKey,
    mut fields: HashMap<Vec<u8>, Vec<u8>>,
) -> Result<Option<Record>, CodecError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let version = parse_int::<u64>(&fields, F_VERSION)?;
    let created_at = Timestamp::from_millis(parse_int::<i64>(&fields, F_CREATED)?);
    let expires_at = Timestamp::from_millis(parse_int::<i64>(&fields, F_EXPIRES)?);
    let data_bytes = fields
        .remove(F_DATA.as_bytes())
        .ok_or(CodecError::MissingField(F_DATA))?;
    let data: Data = serde_json::from_slice(&data_bytes).map_err(|e| CodecError::BadField {
        field: F_DATA,
        source: Box::new(e),
    })?;
    let user = match fields.remove(F_USER.as_bytes()) {
        None => None,
        Some(bytes) => Some(String::from_utf8(bytes).map_err(|e| CodecError::BadField {
            field: F_USER,
            source: Box::new(e),
        })?),
    };
    Ok(Some(Record {
        key,
        data,
        user,
        created_at,
        expires_at,
        version,
    }))
}

fn parse_int<T>(fields: &HashMap<Vec<u8>, Vec<u8>>, field: &'static str) -> Result<T, CodecError>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let bytes = fields
        .get(field.as_bytes())
        .ok_or(CodecError::MissingField(field))?;
    let text = std::str::from_utf8(bytes).map_err(|e| CodecError::BadField {
        field,
        source: Box::new(e),
    })?;
    text.parse::<T>().map_err(|e| CodecError::BadField {
        field,
        source: Box::new(e),
    })
}

/// Escapes a user name for use in a key: ASCII letters, digits and
/// `-_.@` stay as they are, every other byte of the UTF-8 form becomes
/// `%XX`. The mapping is injective (distinct names give distinct keys),
/// and the result holds no `{`, `}`, `:`, `*` or whitespace, so it can
/// neither form a cluster hash tag nor a glob pattern.
pub(crate) fn escape_user(user: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(user.len());
    for &b in user.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn fields(pairs: &[(&str, &[u8])]) -> HashMap<Vec<u8>, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()))
            .collect()
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

    #[test]
    fn decode_round_trip_and_errors() {
        let key = StorageKey::from_bytes([7; 32]);
        let ok = fields(&[
            ("v", b"3"),
            ("d", b"{\"a\":1}"),
            ("c", b"10"),
            ("e", b"20"),
            ("u", b"bob"),
        ]);
        let record = decode(key, ok).unwrap().unwrap();
        assert_eq!(record.version, 3);
        assert_eq!(record.user.as_deref(), Some("bob"));
        assert_eq!(record.expires_at, Timestamp::from_millis(20));
        assert!(decode(key, HashMap::new()).unwrap().is_none());
        let bad = fields(&[("v", b"x"), ("d", b"{}"), ("c", b"1"), ("e", b"2")]);
        assert!(matches!(
            decode(key, bad),
            Err(CodecError::BadField { field: "v", .. })
        ));
        let bad = fields(&[("v", b"1"), ("d", b"[1]"), ("c", b"1"), ("e", b"2")]);
        assert!(matches!(
            decode(key, bad),
            Err(CodecError::BadField { field: "d", .. })
        ));
        let bad = fields(&[("v", b"1"), ("c", b"1"), ("e", b"2")]);
        assert!(matches!(
            decode(key, bad),
            Err(CodecError::MissingField("d"))
        ));
        let bad = fields(&[
            ("v", b"1"),
            ("d", b"{}"),
            ("c", b"1"),
            ("e", b"2"),
            ("u", b"\xff"),
        ]);
        assert!(matches!(
            decode(key, bad),
            Err(CodecError::BadField { field: "u", .. })
        ));
    }
}
