//! The JSON texts that carry a whole batch into one statement.
//!
//! A batched statement takes its rows from one bind parameter, a JSON
//! array that SQLite unpacks with `json_each` (see the `*_many` statements
//! in [`crate::schema`]). So a statement's text, and its prepared form in
//! the connection's statement cache, is the same for any number of rows,
//! and SQLite's limit on bind parameters never comes into play; only the
//! length of one text value does (`SQLITE_MAX_LENGTH`, 1 GB by default),
//! which [`MAX_PAYLOAD`] keeps well clear of.
//!
//! Keys travel as hex (`unhex` turns them back into the 32-byte BLOBs),
//! the data map as a JSON string holding its JSON text (`->>` unescapes it
//! back into exactly the text the single-row statements would store), and
//! integers as JSON integers, which SQLite reads back as 64-bit integers.

use crate::writer::Row;

/// The most bytes of payload (roughly: the records' data) sent in one
/// statement; a bigger group is split over several statements.
pub(crate) const MAX_PAYLOAD: usize = 4 << 20;

/// `bytes` as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A JSON array of `keys` as hex strings.
pub(crate) fn keys<'a>(
    keys: impl IntoIterator<Item = &'a [u8]>,
) -> Result<String, serde_json::Error> {
    let hexes: Vec<String> = keys.into_iter().map(hex).collect();
    serde_json::to_string(&hexes)
}

/// A JSON array of `[key, version, user, data, created_at, expires_at]`,
/// one per row.
pub(crate) fn records<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
) -> Result<String, serde_json::Error> {
    let records: Vec<_> = rows
        .into_iter()
        .map(|row| {
            (
                hex(&row.key),
                row.version,
                row.user.as_deref(),
                row.data.as_str(),
                row.created_at,
                row.expires_at,
            )
        })
        .collect();
    serde_json::to_string(&records)
}

/// A JSON array of `[key, expires_at]`, one per touch.
pub(crate) fn expiries<'a>(
    touches: impl IntoIterator<Item = (&'a [u8], i64)>,
) -> Result<String, serde_json::Error> {
    let touches: Vec<_> = touches
        .into_iter()
        .map(|(key, expires_at)| (hex(key), expires_at))
        .collect();
    serde_json::to_string(&touches)
}

/// Roughly how many payload bytes `row` takes.
pub(crate) fn size(row: &Row) -> usize {
    // Key as hex, the integers, quotes and separators; the data may grow
    // when escaped, which the margin to SQLite's limit absorbs.
    160 + row.data.len() + row.user.as_ref().map_or(0, String::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_complete() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn records_are_arrays_in_column_order() -> Result<(), serde_json::Error> {
        let row = Row {
            key: vec![1, 2],
            user: None,
            data: r#"{"a":"b\"c"}"#.to_owned(),
            version: 7,
            created_at: -5,
            expires_at: i64::MAX,
        };
        assert_eq!(
            records([&row])?,
            r#"[["0102",7,null,"{\"a\":\"b\\\"c\"}",-5,9223372036854775807]]"#
        );
        assert_eq!(keys([[1u8, 2].as_slice()])?, r#"["0102"]"#);
        assert_eq!(expiries([([255u8].as_slice(), 3)])?, r#"[["ff",3]]"#);
        Ok(())
    }
}
