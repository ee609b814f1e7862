//! Bringing a table installed by an older release up to this release's
//! schema, inside [`crate::migrate`]'s transaction.

use session_core::Error;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row as _};

use crate::codec::readable_key;
use crate::digest::stored;
use crate::error::map_sqlx;
use crate::table::TableName;

/// Rows read and digested per statement.
const CHUNK: i64 = 1_000;

/// From schema version 1 to 2: adds the `digest` column and fills it, in
/// key order, a chunk at a time, for every row that decodes into a record
/// (checked here; the digest computed by the server, as for the store's
/// writes); a row that does not decode keeps no digest, and stays
/// unreadable.
pub(crate) async fn from_v1(conn: &mut PgConnection, table: &TableName) -> Result<(), Error> {
    let op = "migrate";
    let t = table.quoted();
    let run = |e: sqlx::Error| map_sqlx(op, e);
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS digest bigint"
    )))
    .execute(&mut *conn)
    .await
    .map_err(run)?;
    let select = format!(
        "SELECT key, \"user\", data::text, version, created_at FROM {t} \
         WHERE key > $1 ORDER BY key LIMIT {CHUNK}"
    );
    let update = format!(
        "UPDATE {t} AS s SET digest = {} WHERE s.key = ANY($1)",
        stored("s.")
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
        let keys: Vec<Vec<u8>> = rows.iter().filter_map(readable_key).collect();
        sqlx::query(AssertSqlSafe(update.clone()))
            .bind(keys)
            .execute(&mut *conn)
            .await
            .map_err(run)?;
        if rows.len() < CHUNK as usize {
            break;
        }
    }
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET value = 2 WHERE name = 'schema_version'",
        table.quoted_with("_meta")
    )))
    .execute(&mut *conn)
    .await
    .map_err(run)?;
    Ok(())
}
