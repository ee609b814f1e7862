//! The fixture of the crate's unit tests: a store on a fresh file, plus
//! a second connection for tests that run batches by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use session_core::{Error, Record, SessionId, SessionStore, StorageKey, Timestamp};
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Connection};

use crate::SqliteStore;
use crate::schema::Statements;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// A store on a fresh file, plus a second connection to run batches on
/// (standing in for the writer's).
pub(crate) struct Db {
    pub(crate) store: SqliteStore,
    pub(crate) sql: Statements,
    pub(crate) conn: SqliteConnection,
    _dir: tempfile::TempDir,
}

pub(crate) async fn db() -> Result<Db, Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("batch.db")).await?;
    let options = (*store.pool().connect_options()).clone();
    let conn = SqliteConnection::connect_with(&options).await?;
    Ok(Db {
        sql: Statements::new(store.table().clone()),
        store,
        conn,
        _dir: dir,
    })
}

impl Db {
    pub(crate) async fn exec(&self, sql: &str) -> TestResult {
        sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    pub(crate) async fn version(&self, key: &StorageKey) -> Result<Option<u64>, Error> {
        Ok(self.store.load(key).await?.map(|r| r.version))
    }
}

pub(crate) fn now() -> i64 {
    Timestamp::now().as_millis()
}

pub(crate) fn record(user: Option<&str>) -> Record {
    let now = Timestamp::now();
    let key = SessionId::generate().unwrap().storage_key();
    let mut record = Record::new(key, now, now.saturating_add(HOUR));
    record.user = user.map(str::to_owned);
    record
}

pub(crate) fn expired() -> Record {
    let now = Timestamp::now();
    let key = SessionId::generate().unwrap().storage_key();
    Record::new(
        key,
        now.saturating_sub(HOUR + HOUR),
        now.saturating_sub(HOUR),
    )
}
