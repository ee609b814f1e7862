//! Bringing a table of an older release up to this release's schema,
//! inside [`super::ensure`]'s transaction.

use session_core::Error;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Row as _};

use crate::codec::digest_if_readable;
use crate::digest::hex;
use crate::error::map_sqlx;
use crate::options::TableName;

/// Rows read and digested per statement.
const CHUNK: usize = 1_000;

/// From schema version 1 to 2: adds the `digest` column and fills it, in
/// key order, a chunk at a time, for every row that decodes into a record
/// (the digest computed here, as the store computes it for its writes); a
/// row that does not decode keeps no digest, and stays unreadable.
pub(super) async fn from_v1(conn: &mut SqliteConnection, table: &TableName) -> Result<(), Error> {
    let op = "open";
    let run = |e: sqlx::Error| map_sqlx(op, e);
    let t = table.as_str();
    let has_digest: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pragma_table_info(?1) WHERE name = 'digest'")
            .bind(t)
            .fetch_one(&mut *conn)
            .await
            .map_err(run)?;
    if has_digest == 0 {
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE \"{t}\" ADD COLUMN digest TEXT"
        )))
        .execute(&mut *conn)
        .await
        .map_err(run)?;
    }
    let select = format!(
        "SELECT key, user, data, version, created_at FROM \"{t}\" WHERE key > ?1 \
         ORDER BY key LIMIT {CHUNK}"
    );
    let update = format!(
        "UPDATE \"{t}\" SET digest = v.dig FROM \
         (SELECT unhex(value ->> 0) AS k, value ->> 1 AS dig FROM json_each(?1)) AS v \
         WHERE \"{t}\".key = v.k"
    );
    let mut after: Vec<u8> = Vec::new();
    loop {
        let rows = sqlx::query(AssertSqlSafe(select.clone()))
            .bind(&after)
            .fetch_all(&mut *conn)
            .await
            .map_err(run)?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.try_get(0).map_err(run)?;
        let digests: Vec<(String, String)> = rows
            .iter()
            .filter_map(digest_if_readable)
            .map(|(key, digest)| (hex(&key), digest))
            .collect();
        let payload = serde_json::to_string(&digests)
            .map_err(|e| Error::backend(crate::NAME, op, false, e))?;
        sqlx::query(AssertSqlSafe(update.clone()))
            .bind(payload)
            .execute(&mut *conn)
            .await
            .map_err(run)?;
        if rows.len() < CHUNK {
            break;
        }
    }
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE \"{t}_meta\" SET value = 2 WHERE name = 'schema_version'"
    )))
    .execute(&mut *conn)
    .await
    .map_err(run)?;
    Ok(())
}
