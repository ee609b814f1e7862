//! Rows damaged behind the store's back, anywhere: the data is a JSON
//! object serde cannot read (a number beyond `f64`, nesting deeper than
//! serde reads, a lone UTF-16 surrogate), not JSON at all, the user is
//! not UTF-8 or another user's, the version negative or bumped. Load and
//! save (at the stored version and others, alone and in a batch) answer
//! `Error::Decode` naming the key and leave the row byte for byte as it
//! was; `list_by_user` reports the key; `delete` removes it. The row's
//! integrity digest no longer matches what it holds, and loads and saves
//! both check it.

mod common;

use common::{HOUR, TempFileStore, TestResult, live_record};
use futures_util::future::join_all;
use serde_json::json;
use session_core::{Error, Record, SessionStore};
use session_store_sqlite::SqliteStore;

/// A row as it is stored, byte for byte (as hex, so a BLOB shows too).
async fn raw_row(store: &SqliteStore, record: &Record) -> TestResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT concat_ws('|', hex(key), hex(user), hex(data), version, created_at, expires_at, \
         digest) FROM sessions WHERE key = ?1",
    )
    .bind(record.key.as_bytes().as_slice())
    .fetch_optional(store.pool())
    .await?)
}

/// Stores a session of `dana` at version 1, damages its row with
/// `statement` (`?1` is the key), and checks every method on it.
async fn damaged_row_is_decode_and_left_alone(statement: &str, listed: bool) -> TestResult {
    let db = TempFileStore::new("sessions").await?;
    let store = &db.store;
    let mut session = live_record(HOUR)?;
    session.user = Some("dana".into());
    session.data.insert("n".into(), json!(0));
    store.create(&session).await?;
    session.data.insert("n".into(), json!(1));
    session.version = store.save(&session).await?;
    let mut bystander = live_record(HOUR)?;
    bystander.user = Some("dana".into());
    store.create(&bystander).await?;
    let changed = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .bind(session.key.as_bytes().as_slice())
        .execute(store.pool())
        .await?
        .rows_affected();
    assert_eq!(changed, 1, "{statement}");
    let before = raw_row(store, &session).await?;
    let decode = |what: &str, result: Result<String, Error>| -> TestResult {
        match result {
            Err(Error::Decode { key, .. }) if key == session.key => Ok(()),
            other => Err(format!("{statement}: {what}: {other:?} (expected Decode)").into()),
        }
    };
    decode(
        "load",
        store.load(&session.key).await.map(|r| format!("{r:?}")),
    )?;
    // Alone, at every version, the stored one last.
    for version in [0, 2, 7, 1] {
        let mut attempt = session.clone();
        attempt.version = version;
        attempt.data.insert("overwrite".into(), json!(true));
        decode(
            &format!("save at version {version}"),
            store.save(&attempt).await.map(|v| v.to_string()),
        )?;
        assert_eq!(raw_row(store, &session).await?, before, "{statement}");
    }
    // In a batch, beside saves that succeed.
    let mut others = Vec::new();
    for _ in 0..8 {
        let other = live_record(HOUR)?;
        store.create(&other).await?;
        others.push(other);
    }
    let saves = others
        .iter()
        .chain(std::iter::once(&session))
        .map(|r| store.save(r));
    let answers = join_all(saves).await;
    for answer in &answers[..others.len()] {
        assert!(matches!(answer, Ok(1)), "{statement}: {answer:?}");
    }
    match &answers[others.len()] {
        Err(Error::Decode { key, .. }) if *key == session.key => {}
        other => return Err(format!("{statement}: save in a batch: {other:?}").into()),
    }
    assert_eq!(raw_row(store, &session).await?, before, "{statement}");
    let list = store.list_by_user("dana").await?;
    assert_eq!(list.records, vec![bystander]);
    let want = if listed { vec![session.key] } else { vec![] };
    assert_eq!(list.unreadable, want, "{statement}");
    assert!(store.delete(&session.key).await?);
    assert_eq!(raw_row(store, &session).await?, None);
    Ok(())
}

#[tokio::test]
async fn damage_anywhere_is_decode_and_left_alone() -> TestResult {
    let nested = format!(r#"{{"a": {}{}}}"#, "[".repeat(200), "]".repeat(200));
    let cases = [
        (
            r#"UPDATE sessions SET data = '{"n": 1e400}' WHERE key = ?1"#.to_owned(),
            true,
        ),
        (
            format!("UPDATE sessions SET data = '{nested}' WHERE key = ?1"),
            true,
        ),
        (
            r#"UPDATE sessions SET data = '{"n": "\ud800"}' WHERE key = ?1"#.to_owned(),
            true,
        ),
        (
            r#"UPDATE sessions SET data = '{"n": 2}' WHERE key = ?1"#.to_owned(),
            true,
        ),
        (
            "UPDATE sessions SET data = '[1]' WHERE key = ?1".to_owned(),
            true,
        ),
        (
            "UPDATE sessions SET data = '{\"n\": tr' WHERE key = ?1".to_owned(),
            true,
        ),
        // Not UTF-8 where the store's data (never) held U+FFFD: sqlx shows
        // it to the collation as U+FFFD.
        (
            "UPDATE sessions SET data = '{\"n\": \"' || CAST(X'F09F98' AS TEXT) || '\"}' \
             WHERE key = ?1"
                .to_owned(),
            true,
        ),
        (
            "UPDATE sessions SET data = '{\"n\": \"' || char(65533) || '\"}' WHERE key = ?1"
                .to_owned(),
            true,
        ),
        // Not UTF-8: no `&str` user id names it.
        (
            "UPDATE sessions SET user = CAST(X'64616E61FF' AS TEXT) WHERE key = ?1".to_owned(),
            false,
        ),
        (
            "UPDATE sessions SET user = 'erin' WHERE key = ?1".to_owned(),
            false,
        ),
        (
            "UPDATE sessions SET version = -3 WHERE key = ?1".to_owned(),
            true,
        ),
        (
            "UPDATE sessions SET version = 5 WHERE key = ?1".to_owned(),
            true,
        ),
        (
            "UPDATE sessions SET digest = NULL WHERE key = ?1".to_owned(),
            true,
        ),
    ];
    for (statement, listed) in cases {
        damaged_row_is_decode_and_left_alone(&statement, listed).await?;
    }
    Ok(())
}

#[tokio::test]
async fn touch_keeps_the_digest_valid() -> TestResult {
    let db = TempFileStore::new("sessions").await?;
    let mut record = live_record(HOUR)?;
    record.data.insert("n".into(), json!(1));
    db.store.create(&record).await?;
    record.expires_at = record.expires_at.saturating_add(HOUR);
    assert!(db.store.touch(&record.key, record.expires_at).await?);
    assert_eq!(db.store.load(&record.key).await?, Some(record.clone()));
    record.version = db.store.save(&record).await?;
    assert_eq!(record.version, 1);
    Ok(())
}

#[tokio::test]
async fn a_replacement_char_in_the_data_round_trips() -> TestResult {
    let db = TempFileStore::new("sessions").await?;
    let mut record = live_record(HOUR)?;
    record
        .data
        .insert("r".into(), json!("\u{FFFD} and \u{FFFD}"));
    db.store.create(&record).await?;
    assert_eq!(db.store.load(&record.key).await?, Some(record.clone()));
    record.data.insert("n".into(), json!(1));
    record.version = db.store.save(&record).await?;
    assert_eq!(db.store.load(&record.key).await?, Some(record));
    Ok(())
}
