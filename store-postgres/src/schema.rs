//! The table layout, its installation ([`migrate`]), the check at connect,
//! and every statement the store runs.
//!
//! Statement texts are built once per store from a validated
//! [`TableName`]; no other runtime text is ever spliced into SQL. All
//! values travel as bind parameters, batches as arrays that `unnest`
//! turns back into rows.

use std::sync::Arc;

use session_core::Error;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, SqlStr};

use crate::digest::{digest_of, intact};
use crate::error::{SchemaMissing, SchemaTooNew, SchemaTooOld, map_sqlx};
use crate::table::TableName;
use crate::upgrade;

/// The schema version this release writes and understands: 2 added the
/// `digest` column (see [`crate::digest`]).
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The columns a record is read from, in this order (see
/// [`crate::codec::decode_row`]): the last says whether the row matches
/// its digest.
fn record_columns() -> String {
    format!(
        "key, \"user\", data::text, version, created_at, expires_at, {}",
        intact("")
    )
}

/// SQLSTATE `undefined_table`.
const UNDEFINED_TABLE: &str = "42P01";

/// Every statement of the store, for one table.
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    pub(crate) table: TableName,
    create: Arc<str>,
    load: Arc<str>,
    save: Arc<str>,
    touch: Arc<str>,
    delete: Arc<str>,
    list_by_user: Arc<str>,
    delete_by_user: Arc<str>,
    sweep: Arc<str>,
    load_many: Arc<str>,
    create_many: Arc<str>,
    save_many: Arc<str>,
    touch_many: Arc<str>,
    delete_many: Arc<str>,
}

fn sql(text: &Arc<str>) -> SqlStr {
    // Built only from fixed text and a validated `TableName`.
    sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(Arc::clone(text)))
}

/// The records of a batch, as rows `v(k, ver, usr, dat, cre, exp)` from
/// six parallel arrays `$1` to `$6`.
const RECORDS: &str = "unnest($1::bytea[], $2::int8[], $3::bytea[], $4::text[], $5::int8[], \
     $6::int8[]) AS v(k, ver, usr, dat, cre, exp)";

impl Statements {
    pub(crate) fn new(table: TableName) -> Self {
        let t = table.quoted();
        // A save's compare-and-set, for one record or many: it writes only
        // a live row holding the presented version and matching its
        // digest (what this store wrote), and reports, from the same
        // snapshot, what the key held, so a failed save tells Conflict from
        // NotFound from a row it cannot read without another statement.
        let save_where = format!("s.expires_at > $7 AND {}", intact("s."));
        let readable = intact("s.");
        let record_columns = record_columns();
        // The digest each write leaves (see `crate::digest`): of the
        // parameters, of a batch's rows, of a saved row's next version.
        let created = digest_of("$1", "$2", "$4", "$5", "$3");
        let created_many = digest_of("k", "usr", "ver", "cre", "dat");
        let saved = digest_of("s.key", "$3", "s.version + 1", "$5", "$4");
        let saved_many = digest_of("s.key", "v.usr", "s.version + 1", "v.cre", "v.dat");
        Self {
            // Inserts, or replaces a row that is no longer live; a live row
            // makes the upsert's WHERE false, so nothing changes (0 rows).
            create: format!(
                "INSERT INTO {t} AS s (key, \"user\", data, version, created_at, expires_at, \
                 digest) VALUES ($1, $2, $3::json, $4, $5, $6, {created}) \
                 ON CONFLICT (key) DO UPDATE SET \"user\" = EXCLUDED.\"user\", \
                 data = EXCLUDED.data, version = EXCLUDED.version, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
                 digest = EXCLUDED.digest WHERE s.expires_at <= $7"
            )
            .into(),
            load: format!("SELECT {record_columns} FROM {t} WHERE key = $1 AND expires_at > $2")
                .into(),
            // One row always: whether it saved, and, when it did not, the
            // stored version and readability of a live row under the key
            // (NULLs: none). The probe is gated on the update finding
            // nothing (a one-time filter), so a save that succeeds reads
            // (and hashes) the row once.
            save: format!(
                "WITH upd AS (UPDATE {t} AS s SET \"user\" = $3, data = $4::json, \
                 created_at = $5, expires_at = $6, version = s.version + 1, digest = {saved} \
                 WHERE s.key = $1 AND s.version = $2 AND {save_where} RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM upd), p.version, p.readable \
                 FROM (SELECT 1) AS one LEFT JOIN (SELECT s.version, {readable} AS readable \
                 FROM {t} AS s \
                 WHERE s.key = $1 AND s.expires_at > $7 AND NOT EXISTS (SELECT 1 FROM upd)) \
                 AS p ON true"
            )
            .into(),
            touch: format!("UPDATE {t} SET expires_at = $2 WHERE key = $1 AND expires_at > $3")
                .into(),
            delete: format!("DELETE FROM {t} WHERE key = $1 RETURNING expires_at").into(),
            list_by_user: format!(
                "SELECT {record_columns} FROM {t} WHERE \"user\" = $1 AND expires_at > $2"
            )
            .into(),
            delete_by_user: format!("DELETE FROM {t} WHERE \"user\" = $1 RETURNING expires_at")
                .into(),
            // The outer `expires_at <= $1` is checked again on the newest
            // version of a row a concurrent touch just moved.
            sweep: format!(
                "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires_at <= $1 \
                 LIMIT $2 FOR UPDATE SKIP LOCKED) AND expires_at <= $1"
            )
            .into(),
            // The batched forms (see `crate::batch`): one statement for many
            // distinct keys; each answers per key.
            load_many: format!(
                "SELECT {record_columns} FROM {t} WHERE key = ANY($1) AND expires_at > $2"
            )
            .into(),
            create_many: format!(
                "INSERT INTO {t} AS s (key, \"user\", data, version, created_at, expires_at, \
                 digest) SELECT k, usr, dat::json, ver, cre, exp, {created_many} FROM {RECORDS} \
                 ON CONFLICT (key) DO UPDATE SET \"user\" = EXCLUDED.\"user\", \
                 data = EXCLUDED.data, version = EXCLUDED.version, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
                 digest = EXCLUDED.digest WHERE s.expires_at <= $7 RETURNING key"
            )
            .into(),
            // The outer SELECT sees the rows as before the update; it
            // hashes only those the update left alone.
            save_many: format!(
                "WITH upd AS (UPDATE {t} AS s SET \"user\" = v.usr, data = v.dat::json, \
                 created_at = v.cre, expires_at = v.exp, version = s.version + 1, \
                 digest = {saved_many} \
                 FROM {RECORDS} WHERE s.key = v.k AND s.version = v.ver AND {save_where} \
                 RETURNING s.key) \
                 SELECT v.k, upd.key IS NOT NULL, s.version, \
                 CASE WHEN upd.key IS NULL THEN {readable} END \
                 FROM {RECORDS} LEFT JOIN upd ON upd.key = v.k \
                 LEFT JOIN {t} AS s ON s.key = v.k AND s.expires_at > $7"
            )
            .into(),
            touch_many: format!(
                "UPDATE {t} AS s SET expires_at = v.exp \
                 FROM unnest($1::bytea[], $2::int8[]) AS v(k, exp) \
                 WHERE s.key = v.k AND s.expires_at > $3 RETURNING s.key"
            )
            .into(),
            delete_many: format!("DELETE FROM {t} WHERE key = ANY($1) RETURNING key, expires_at")
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
    pub(crate) fn touch_many(&self) -> SqlStr {
        sql(&self.touch_many)
    }
    pub(crate) fn delete_many(&self) -> SqlStr {
        sql(&self.delete_many)
    }
}

/// The DDL for `table`, every statement idempotent.
fn ddl(table: &TableName) -> Vec<String> {
    let t = table.quoted();
    let meta = table.quoted_with("_meta");
    // Index names are not schema-qualified: they live in the table's schema.
    let name = table.table();
    let mut ddl = Vec::new();
    if let Some(schema) = table.schema() {
        ddl.push(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""));
    }
    ddl.extend([
        format!("CREATE TABLE IF NOT EXISTS {meta} (name text PRIMARY KEY, value bigint NOT NULL)"),
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (\
             key bytea PRIMARY KEY CHECK (octet_length(key) = 32), \
             \"user\" bytea, \
             data json NOT NULL, \
             version bigint NOT NULL, \
             created_at bigint NOT NULL, \
             expires_at bigint NOT NULL, \
             digest bigint)"
        ),
        format!("CREATE INDEX IF NOT EXISTS \"{name}_expires_at_idx\" ON {t} (expires_at)"),
        // A hash index: lookups are by equality only, and it takes user
        // ids of any length (a B-tree entry must fit a third of a page).
        format!(
            "CREATE INDEX IF NOT EXISTS \"{name}_user_idx\" ON {t} USING hash (\"user\") \
             WHERE \"user\" IS NOT NULL"
        ),
        format!(
            "INSERT INTO {meta} (name, value) VALUES ('schema_version', {SCHEMA_VERSION}) \
             ON CONFLICT (name) DO NOTHING"
        ),
    ]);
    ddl
}

/// Installs the session table `table` (and its schema, indexes and
/// version record) where it is missing, brings a table installed by an
/// older release up to this one's schema, and checks the recorded schema
/// version. Idempotent, and safe to run from several app servers at once:
/// it holds a transaction-scoped advisory lock named after the table.
///
/// The upgrade from schema version 1 (before the integrity digest) adds
/// the `digest` column and fills it for every row that decodes into a
/// record; a row that does not stays unreadable. It runs in one
/// transaction, without the store's statement timeout (on a big table it
/// takes a while). Stop the servers of the older release before it: a row
/// they write afterwards carries no valid digest and loads as
/// [`Error::Decode`].
///
/// ```no_run
/// use session_store_postgres::{PostgresStore, TableName, migrate};
///
/// # async fn example(pool: sqlx::PgPool) -> Result<(), session_core::Error> {
/// migrate(&pool, &TableName::default()).await?;
/// let store = PostgresStore::from_pool(pool).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`session_core::Error::Backend`] when a statement fails (for example
/// for lack of privileges), or when the table's recorded schema version is
/// newer than this release understands.
pub async fn migrate(pool: &PgPool, table: &TableName) -> Result<(), Error> {
    let op = "migrate";
    let mut tx = pool.begin().await.map_err(|e| map_sqlx(op, e))?;
    // The store's connections run with a statement timeout meant for
    // session operations, not for filling a column of a big table.
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await
        .map_err(|e| map_sqlx(op, e))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("session-store-postgres {table}"))
        .execute(&mut *tx)
        .await
        .map_err(|e| map_sqlx(op, e))?;
    for statement in ddl(table) {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
            .map_err(|e| map_sqlx(op, e))?;
    }
    let found = version_in(&mut tx, table).await?;
    check_version(op, table, found, true)?;
    if found < SCHEMA_VERSION {
        upgrade::from_v1(&mut tx, table).await?;
    }
    tx.commit().await.map_err(|e| map_sqlx(op, e))
}

/// Checks on `conn` that `table` has the schema this release writes.
pub(crate) async fn check(conn: &mut sqlx::PgConnection, table: &TableName) -> Result<(), Error> {
    let found = version_in(conn, table).await?;
    check_version("open", table, found, false)
}

/// The schema version recorded for `table`.
async fn version_in(conn: &mut sqlx::PgConnection, table: &TableName) -> Result<i64, Error> {
    let op = "open";
    let found: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT value FROM {} WHERE name = 'schema_version'",
        table.quoted_with("_meta")
    )))
    .fetch_optional(conn)
    .await;
    match found {
        Ok(Some(version)) => Ok(version),
        Ok(None) => Err(Error::backend(
            crate::NAME,
            op,
            false,
            SchemaMissing {
                table: table.to_string(),
            },
        )),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNDEFINED_TABLE) => {
            Err(Error::backend(
                crate::NAME,
                op,
                false,
                SchemaMissing {
                    table: table.to_string(),
                },
            ))
        }
        Err(e) => Err(map_sqlx(op, e)),
    }
}

/// Refuses a schema version newer than this release's, and, unless
/// `older_ok` (a migration, which upgrades it), an older one.
fn check_version(
    op: &'static str,
    table: &TableName,
    found: i64,
    older_ok: bool,
) -> Result<(), Error> {
    if found > SCHEMA_VERSION {
        return Err(Error::backend(
            crate::NAME,
            op,
            false,
            SchemaTooNew {
                table: table.to_string(),
                found,
                supported: SCHEMA_VERSION,
            },
        ));
    }
    if found < SCHEMA_VERSION && !older_ok {
        return Err(Error::backend(
            crate::NAME,
            op,
            false,
            SchemaTooOld {
                table: table.to_string(),
                found,
                supported: SCHEMA_VERSION,
            },
        ));
    }
    Ok(())
}
