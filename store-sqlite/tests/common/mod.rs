//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use session_core::{Error, Record, SessionId, SessionStore, StorageKey, Timestamp};
use session_store_conformance::Damage;
use session_store_sqlite::{SqliteOptions, SqliteStore, TableName};

/// A boxed error for test results.
pub(crate) type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A store in a fresh database file, deleted (with its directory) when
/// the store is dropped.
pub(crate) struct TempFileStore {
    pub(crate) store: SqliteStore,
    pub(crate) dir: tempfile::TempDir,
}

impl TempFileStore {
    /// A fresh file database with table `table`.
    pub(crate) async fn new(table: &str) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let store = SqliteOptions::file(dir.path().join("sessions.db"))
            .table(TableName::new(table)?)
            .open()
            .await?;
        Ok(Self { store, dir })
    }
}

#[async_trait::async_trait]
impl SessionStore for TempFileStore {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.store.create(record).await
    }
    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        self.store.load(key).await
    }
    async fn save(&self, record: &Record) -> Result<u64, Error> {
        self.store.save(record).await
    }
    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.store.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        self.store.delete(key).await
    }
    async fn list_by_user(&self, user: &str) -> Result<session_core::UserSessions, Error> {
        self.store.list_by_user(user).await
    }
    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        self.store.delete_by_user(user).await
    }
    async fn delete_expired(&self) -> Result<u64, Error> {
        self.store.delete_expired().await
    }
    fn name(&self) -> &'static str {
        self.store.name()
    }
}

/// A fresh random storage key.
pub(crate) fn fresh_key() -> TestResult<StorageKey> {
    Ok(SessionId::generate()?.storage_key())
}

/// A record that expires `ttl` from now.
pub(crate) fn live_record(ttl: Duration) -> TestResult<Record> {
    let now = Timestamp::now();
    Ok(Record::new(fresh_key()?, now, now.saturating_add(ttl)))
}

/// A record whose deadline lies `ago` in the past.
pub(crate) fn expired_record(ago: Duration) -> TestResult<Record> {
    let now = Timestamp::now();
    Ok(Record::new(
        fresh_key()?,
        now.saturating_sub(ago + ago),
        now.saturating_sub(ago),
    ))
}

pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// The conformance suite's `unreadable` capability, for both kinds of
/// [`Damage`]:
///
/// - `Frame`: `record`'s row as the store writes it, but with a data
///   column that is not JSON (and no digest);
/// - `Data`: `record`'s row exactly as the store writes it (through the
///   store itself: key, user, version, timestamps and the digest of the
///   real data), then, inside the data, the first value replaced by
///   `1e400`, a number beyond `f64` that `json_valid` accepts and
///   serde_json refuses.
///
/// Either replaces what the key held.
pub(crate) async fn plant_unreadable(
    store: &SqliteStore,
    record: &Record,
    damage: Damage,
) -> Result<(), String> {
    match damage {
        Damage::Frame => plant_broken_frame(store, record).await,
        Damage::Data => plant_damaged_data(store, record).await,
    }
}

async fn plant_broken_frame(store: &SqliteStore, record: &Record) -> Result<(), String> {
    let version = i64::try_from(record.version).map_err(|e| e.to_string())?;
    let statement = format!(
        "INSERT OR REPLACE INTO \"{}\" (key, user, data, version, created_at, expires_at) \
         VALUES (?1, ?2, '{{\"cut\": tru', ?3, ?4, ?5)",
        store.table().as_str()
    );
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(record.key.as_bytes().as_slice())
        .bind(record.user.as_deref())
        .bind(version)
        .bind(record.created_at.as_millis())
        .bind(record.expires_at.as_millis())
        .execute(store.pool())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn plant_damaged_data(store: &SqliteStore, record: &Record) -> Result<(), String> {
    store.delete(&record.key).await.map_err(|e| e.to_string())?;
    store.create(record).await.map_err(|e| e.to_string())?;
    let statement = format!(
        "UPDATE \"{}\" SET data = ?1 WHERE key = ?2",
        store.table().as_str()
    );
    let changed = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(damaged_text(&record.data)?)
        .bind(record.key.as_bytes().as_slice())
        .execute(store.pool())
        .await
        .map_err(|e| e.to_string())?
        .rows_affected();
    if changed == 1 {
        Ok(())
    } else {
        Err(format!("damaging the planted row changed {changed} rows"))
    }
}

/// `data`'s JSON text with its first value (or a new one, if it has
/// none) replaced by `1e400`.
pub(crate) fn damaged_text(data: &session_core::Data) -> Result<String, String> {
    const MARKER: &str = "\u{1}damage\u{1}";
    // How serde_json writes the marker: control characters escaped.
    const WRITTEN: &str = "\"\\u0001damage\\u0001\"";
    let mut damaged = data.clone();
    let first = damaged
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| "n".to_owned());
    damaged.insert(first, serde_json::Value::String(MARKER.to_owned()));
    let text = serde_json::to_string(&damaged).map_err(|e| e.to_string())?;
    if !text.contains(WRITTEN) {
        return Err(format!("cannot find the marker in {text}"));
    }
    Ok(text.replacen(WRITTEN, "1e400", 1))
}
