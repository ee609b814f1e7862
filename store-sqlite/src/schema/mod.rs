//! The table layout, its creation, and every statement the store runs.
//!
//! Statement texts are built once per store from a validated
//! [`TableName`]; no other runtime text is ever spliced into SQL. All
//! values travel as bind parameters.

use std::sync::Arc;

use session_core::Error;
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Connection, SqlStr};

use crate::digest::intact;
use crate::error::{SchemaTooNew, map_sqlx};
use crate::options::TableName;

pub(crate) mod params;
mod upgrade;

/// The schema version this release writes and understands: 2 added the
/// `digest` column (see [`crate::digest`]).
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The columns a record is read from (and written to), in this order.
pub(crate) const RECORD_COLUMNS: &str = "key, user, data, version, created_at, expires_at, digest";

/// Every statement of the store, for one table.
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    pub(crate) table: TableName,
    create: Arc<str>,
    load: Arc<str>,
    save: Arc<str>,
    save_same_user: Arc<str>,
    probe: Arc<str>,
    touch: Arc<str>,
    delete: Arc<str>,
    list_by_user: Arc<str>,
    delete_by_user: Arc<str>,
    sweep: Arc<str>,
    load_many: Arc<str>,
    create_many: Arc<str>,
    save_many: Arc<str>,
    save_many_same_user: Arc<str>,
    probe_many: Arc<str>,
    unreadable_many: Arc<str>,
    touch_many: Arc<str>,
    delete_many: Arc<str>,
}

/// The keys of a batch, from its JSON payload (an array of hex strings).
const KEYS: &str = "SELECT unhex(value) FROM json_each(?1)";

/// The records of a batch, from its JSON payload: one array
/// `[key as hex, version, user, data, created_at, expires_at, digest]` per
/// record (see [`params`]).
const RECORDS: &str = "SELECT unhex(value ->> 0) AS k, value ->> 1 AS ver, value ->> 2 AS usr, \
     value ->> 3 AS dat, value ->> 4 AS cre, value ->> 5 AS exp, value ->> 6 AS dig \
     FROM json_each(?1)";

fn sql(text: &Arc<str>) -> SqlStr {
    // Built only from fixed text and a validated `TableName`.
    sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(Arc::clone(text)))
}

impl Statements {
    pub(crate) fn new(table: TableName) -> Self {
        let t = table.as_str();
        // Whether the row matches its digest (what this store wrote): a
        // save writes only such a row, and the probes tell a conflict from
        // a row the store cannot read by it (see `crate::digest`).
        let row_intact = intact("");
        let t_intact = intact(&format!("\"{t}\"."));
        Self {
            // Inserts, or replaces a row that is no longer live; a live row
            // makes the upsert's WHERE false, so nothing changes (0 rows).
            create: format!(
                "INSERT INTO \"{t}\" ({RECORD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8) \
                 ON CONFLICT(key) DO UPDATE SET user = excluded.user, data = excluded.data, \
                 version = excluded.version, created_at = excluded.created_at, \
                 expires_at = excluded.expires_at, digest = excluded.digest \
                 WHERE \"{t}\".expires_at <= ?7"
            )
            .into(),
            load: format!(
                "SELECT {RECORD_COLUMNS} FROM \"{t}\" WHERE key = ?1 AND expires_at > ?2"
            )
            .into(),
            save: format!(
                "UPDATE \"{t}\" SET user = ?3, data = ?4, created_at = ?5, expires_at = ?6, \
                 version = version + 1, digest = ?8 \
                 WHERE key = ?1 AND version = ?2 AND expires_at > ?7 AND {row_intact}"
            )
            .into(),
            // The same compare-and-set when the user is unchanged: the
            // user column (and so its index entry) is not rewritten.
            save_same_user: format!(
                "UPDATE \"{t}\" SET data = ?4, created_at = ?5, expires_at = ?6, \
                 version = version + 1, digest = ?8 \
                 WHERE key = ?1 AND version = ?2 AND expires_at > ?7 AND user IS ?3 \
                 AND {row_intact}"
            )
            .into(),
            // A live row: 1 when it matches its digest (a conflict), 0
            // when not (unreadable: a save never overwrites it).
            probe: format!("SELECT {row_intact} FROM \"{t}\" WHERE key = ?1 AND expires_at > ?2")
                .into(),
            touch: format!("UPDATE \"{t}\" SET expires_at = ?2 WHERE key = ?1 AND expires_at > ?3")
                .into(),
            delete: format!("DELETE FROM \"{t}\" WHERE key = ?1 RETURNING expires_at").into(),
            list_by_user: format!(
                "SELECT {RECORD_COLUMNS} FROM \"{t}\" WHERE user = ?1 AND expires_at > ?2"
            )
            .into(),
            delete_by_user: format!("DELETE FROM \"{t}\" WHERE user = ?1 RETURNING expires_at")
                .into(),
            sweep: format!(
                "DELETE FROM \"{t}\" WHERE key IN \
                 (SELECT key FROM \"{t}\" WHERE expires_at <= ?1 LIMIT ?2)"
            )
            .into(),
            // The batched forms (see `crate::write`): one statement for
            // many records or keys, handed over as one JSON text in ?1; ?2
            // is the batch's `now`. Each reports which keys it changed.
            load_many: format!(
                "SELECT {RECORD_COLUMNS} FROM \"{t}\" WHERE key IN ({KEYS}) AND expires_at > ?2"
            )
            .into(),
            create_many: format!(
                "INSERT INTO \"{t}\" ({RECORD_COLUMNS}) \
                 SELECT k, usr, dat, ver, cre, exp, dig FROM ({RECORDS}) WHERE true \
                 ON CONFLICT(key) DO UPDATE SET user = excluded.user, data = excluded.data, \
                 version = excluded.version, created_at = excluded.created_at, \
                 expires_at = excluded.expires_at, digest = excluded.digest \
                 WHERE \"{t}\".expires_at <= ?2 RETURNING key"
            )
            .into(),
            save_many: format!(
                "UPDATE \"{t}\" SET user = v.usr, data = v.dat, created_at = v.cre, \
                 expires_at = v.exp, version = \"{t}\".version + 1, digest = v.dig \
                 FROM ({RECORDS}) AS v \
                 WHERE \"{t}\".key = v.k AND \"{t}\".version = v.ver AND \"{t}\".expires_at > ?2 \
                 AND {t_intact} RETURNING key"
            )
            .into(),
            save_many_same_user: format!(
                "UPDATE \"{t}\" SET data = v.dat, created_at = v.cre, \
                 expires_at = v.exp, version = \"{t}\".version + 1, digest = v.dig \
                 FROM ({RECORDS}) AS v \
                 WHERE \"{t}\".key = v.k AND \"{t}\".version = v.ver AND \"{t}\".expires_at > ?2 \
                 AND \"{t}\".user IS v.usr AND {t_intact} \
                 RETURNING key"
            )
            .into(),
            // Live rows that match their digest (conflicts), and live rows
            // that do not (unreadable).
            probe_many: format!(
                "SELECT key FROM \"{t}\" WHERE key IN ({KEYS}) AND expires_at > ?2 \
                 AND {row_intact}"
            )
            .into(),
            unreadable_many: format!(
                "SELECT key FROM \"{t}\" WHERE key IN ({KEYS}) AND expires_at > ?2 \
                 AND NOT {row_intact}"
            )
            .into(),
            // Records here are `[key as hex, expires_at]`.
            touch_many: format!(
                "UPDATE \"{t}\" SET expires_at = v.exp FROM \
                 (SELECT unhex(value ->> 0) AS k, value ->> 1 AS exp FROM json_each(?1)) AS v \
                 WHERE \"{t}\".key = v.k AND \"{t}\".expires_at > ?2 RETURNING key"
            )
            .into(),
            delete_many: format!(
                "DELETE FROM \"{t}\" WHERE key IN ({KEYS}) RETURNING key, expires_at"
            )
            .into(),
            table,
        }
    }

    pub(crate) fn create(&self) -> SqlStr {
        sql(&self.create)
    }
    pub(crate) fn load(&self) -> SqlStr {
        sql(&self.load)
    }
    pub(crate) fn save(&self) -> SqlStr {
        sql(&self.save)
    }
    pub(crate) fn save_same_user(&self) -> SqlStr {
        sql(&self.save_same_user)
    }
    pub(crate) fn probe(&self) -> SqlStr {
        sql(&self.probe)
    }
    pub(crate) fn touch(&self) -> SqlStr {
        sql(&self.touch)
    }
    pub(crate) fn delete(&self) -> SqlStr {
        sql(&self.delete)
    }
    pub(crate) fn list_by_user(&self) -> SqlStr {
        sql(&self.list_by_user)
    }
    pub(crate) fn delete_by_user(&self) -> SqlStr {
        sql(&self.delete_by_user)
    }
    pub(crate) fn sweep(&self) -> SqlStr {
        sql(&self.sweep)
    }
    pub(crate) fn load_many(&self) -> SqlStr {
        sql(&self.load_many)
    }
    pub(crate) fn create_many(&self) -> SqlStr {
        sql(&self.create_many)
    }
    pub(crate) fn save_many(&self) -> SqlStr {
        sql(&self.save_many)
    }
    pub(crate) fn save_many_same_user(&self) -> SqlStr {
        sql(&self.save_many_same_user)
    }
    pub(crate) fn probe_many(&self) -> SqlStr {
        sql(&self.probe_many)
    }
    pub(crate) fn unreadable_many(&self) -> SqlStr {
        sql(&self.unreadable_many)
    }
    pub(crate) fn touch_many(&self) -> SqlStr {
        sql(&self.touch_many)
    }
    pub(crate) fn delete_many(&self) -> SqlStr {
        sql(&self.delete_many)
    }
}

/// The DDL for `table`, every statement idempotent.
fn ddl(table: &TableName) -> [String; 5] {
    let t = table.as_str();
    [
        format!(
            "CREATE TABLE IF NOT EXISTS \"{t}_meta\" (\
             name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS \"{t}\" (\
             key BLOB PRIMARY KEY NOT NULL, \
             user TEXT, \
             data TEXT NOT NULL, \
             version INTEGER NOT NULL, \
             created_at INTEGER NOT NULL, \
             expires_at INTEGER NOT NULL, \
             digest TEXT\
             ) WITHOUT ROWID"
        ),
        format!("CREATE INDEX IF NOT EXISTS \"{t}_expires_at_idx\" ON \"{t}\" (expires_at)"),
        format!(
            "CREATE INDEX IF NOT EXISTS \"{t}_user_idx\" ON \"{t}\" (user) WHERE user IS NOT NULL"
        ),
        format!(
            "INSERT INTO \"{t}_meta\" (name, value) VALUES ('schema_version', {SCHEMA_VERSION}) \
             ON CONFLICT(name) DO NOTHING"
        ),
    ]
}

/// Creates the schema for `table` if it is missing, brings a table of an
/// older release up to this one's schema (see [`upgrade`]), all in one
/// `BEGIN IMMEDIATE` transaction (so concurrent openers of one file
/// serialise), and checks the recorded schema version. Waiting for a
/// pooled connection ends at `deadline`; waiting for the write lock at the
/// busy timeout; an upgrade of a big table takes as long as it takes.
pub(crate) async fn ensure(
    pool: &SqlitePool,
    table: &TableName,
    deadline: tokio::time::Instant,
) -> Result<(), Error> {
    let op = "open";
    let mut conn = tokio::time::timeout_at(deadline, pool.acquire())
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
        .map_err(|e| map_sqlx(op, e))?;
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| map_sqlx(op, e))?;
    for statement in ddl(table) {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
            .map_err(|e| map_sqlx(op, e))?;
    }
    let found: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT value FROM \"{}_meta\" WHERE name = 'schema_version'",
        table.as_str()
    )))
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| map_sqlx(op, e))?;
    if found > SCHEMA_VERSION {
        // Dropping the transaction rolls it back.
        return Err(Error::backend(
            crate::NAME,
            op,
            false,
            SchemaTooNew {
                table: table.as_str().to_owned(),
                found,
                supported: SCHEMA_VERSION,
            },
        ));
    }
    if found < SCHEMA_VERSION {
        upgrade::from_v1(&mut tx, table).await?;
    }
    tx.commit().await.map_err(|e| map_sqlx(op, e))
}

#[cfg(test)]
mod tests {
    use sqlx::{AssertSqlSafe, Row as _};

    use crate::test_db::{TestResult, db};

    #[tokio::test]
    async fn batched_statements_look_rows_up_by_primary_key() -> TestResult {
        let db = db().await?;
        for statement in [
            db.sql.load_many(),
            db.sql.create_many(),
            db.sql.save_many(),
            db.sql.save_many_same_user(),
            db.sql.probe_many(),
            db.sql.touch_many(),
            db.sql.delete_many(),
        ] {
            let text = statement.as_str().to_owned();
            let plan: Vec<String> =
                sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {text}")))
                    .bind("[]")
                    .bind(0i64)
                    .fetch_all(db.store.pool())
                    .await?
                    .iter()
                    .map(|row| row.try_get::<String, _>(3))
                    .collect::<Result<_, _>>()?;
            assert!(
                !plan.iter().any(|step| step.starts_with("SCAN sessions")),
                "{text}: {plan:?}"
            );
        }
        Ok(())
    }
}
