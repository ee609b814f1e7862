//! The JSON texts that carry a whole batch into one statement.
//!
//! A batched statement takes its rows from one bind parameter, a JSON
//! array that SQLite unpacks with `json_each` (see the `*_many` statements
//! in [`super`]). So a statement's text, and its prepared form in
//! the connection's statement cache, is the same for any number of rows,
//! and SQLite's limit on bind parameters never comes into play; only the
//! length of one text value does (`SQLITE_MAX_LENGTH`, 1 GB by default),
//! which [`MAX_PAYLOAD`] keeps well clear of.
//!
//! Keys travel as hex (`unhex` turns them back into the 32-byte BLOBs),
//! the data map as a JSON string holding its JSON text (`->>` unescapes it
//! back into exactly the text the single-row statements would store), and
//! integers as JSON integers, which SQLite reads back as 64-bit integers.

use session_core::StorageKey;

use crate::codec::Row;

/// The most bytes of payload (roughly: the records' data) sent in one
/// statement; a bigger group is split over several statements.
pub(crate) const MAX_PAYLOAD: usize = 4 << 20;

/// A JSON array of `keys` as hex strings.
pub(crate) fn keys<'a>(
    keys: impl IntoIterator<Item = &'a StorageKey>,
) -> Result<String, serde_json::Error> {
    let hexes: Vec<String> = keys.into_iter().map(StorageKey::to_hex).collect();
    serde_json::to_string(&hexes)
}

/// A JSON array of `[key, version, user, data, created_at, expires_at,
/// digest]`, one per row.
pub(crate) fn records<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
) -> Result<String, serde_json::Error> {
    let records: Vec<_> = rows
        .into_iter()
        .map(|row| {
            (
                row.key.to_hex(),
                row.version,
                row.user.as_deref(),
                row.data.as_str(),
                row.created_at,
                row.expires_at,
                row.digest.as_str(),
            )
        })
        .collect();
    serde_json::to_string(&records)
}

/// A JSON array of `[key, expires_at]`, one per touch.
pub(crate) fn expiries<'a>(
    touches: impl IntoIterator<Item = (&'a StorageKey, i64)>,
) -> Result<String, serde_json::Error> {
    let touches: Vec<_> = touches
        .into_iter()
        .map(|(key, expires_at)| (key.to_hex(), expires_at))
        .collect();
    serde_json::to_string(&touches)
}

/// Roughly how many payload bytes `row` takes.
pub(crate) fn size(row: &Row) -> usize {
    // Key as hex, the integers, the digest, quotes and separators; the
    // data may grow when escaped, which the margin to SQLite's limit
    // absorbs.
    230 + row.data.len() + row.user.as_ref().map_or(0, String::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_arrays_in_column_order() -> Result<(), Box<dyn std::error::Error>> {
        let key = StorageKey::from_hex(&format!("0102{}", "0".repeat(60)))?;
        let hex = key.to_hex();
        let row = Row {
            key,
            user: None,
            data: r#"{"a":"b\"c"}"#.to_owned(),
            version: 7,
            created_at: -5,
            expires_at: i64::MAX,
            digest: "d1".to_owned(),
        };
        assert_eq!(
            records([&row])?,
            format!(r#"[["{hex}",7,null,"{{\"a\":\"b\\\"c\"}}",-5,9223372036854775807,"d1"]]"#)
        );
        assert_eq!(keys([&key])?, format!(r#"["{hex}"]"#));
        assert_eq!(expiries([(&key, 3)])?, format!(r#"[["{hex}",3]]"#));
        Ok(())
    }
}
