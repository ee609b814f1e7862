//! A deliberately simple reference store for testing the suite itself, with
//! switchable faults: the correct store must pass every case, and each
//! fault must be caught by the cases named for it.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use session_core::{Error, Record, Reload, SessionStore, StorageKey, Timestamp, UserSessions};
use session_store_conformance::{CASES, Case, Damage};

/// A way to break the reference store on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each test binary uses a subset
pub(crate) enum Fault {
    None,
    SaveIgnoresVersion,
    /// Compare-and-set with an await between the check and the write.
    SaveCheckThenActRace,
    SaveResurrects,
    SaveDoesNotStoreBump,
    SaveKeepsOldUser,
    CreateOverwrites,
    CreateRefusesExpiredKey,
    LoadIgnoresExpiry,
    TouchBumpsVersion,
    TouchRevives,
    /// Touch reads the record, awaits, then writes it back with the new
    /// deadline: revives a record deleted meanwhile, undoes a save.
    TouchRevivesUnderRace,
    DeleteAlwaysTrue,
    /// Delete checks liveness, awaits, then removes: its answer describes
    /// a record that may not be the one it removed.
    DeleteNotAtomic,
    /// A save that moves a session between users removes it from the old
    /// user's index after an await, without checking it is still not
    /// that user's: U→V racing V→U loses the session from U's index.
    IndexLosesMoves,
    ListIncludesExpired,
    DeleteByUserCountsExpired,
    DeleteExpiredDropsLive,
    TimestampsInSeconds,
    DropsLargeValues,
    /// A save checks only that the stored record is framed right, as a
    /// store that checks `{`…`}` would: at the stored version it
    /// overwrites a record damaged inside its data.
    SaveChecksOnlyTheFrame,
    /// `load_if_changed` answers `Unchanged` whenever the stored version
    /// is the known one: misses a touch, and hands out a damaged record.
    ReloadByVersionOnly,
    /// `load_if_changed` answers `Unchanged` for a record that is gone.
    ReloadKeepsTheDeleted,
}

/// The runtime the suite's own tests run cases on: two workers, timers on.
#[allow(dead_code)] // each test binary uses a subset
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The cases of the suite whose names start with `prefix`.
#[allow(dead_code)] // each test binary uses a subset
pub(crate) fn cases_named(prefix: &str) -> Vec<&'static Case> {
    CASES
        .iter()
        .filter(|c| c.name.starts_with(prefix))
        .collect()
}

/// How long a racy fault waits between its check and its act.
const RACE_WINDOW: Duration = Duration::from_millis(3);

#[derive(Default)]
struct Inner {
    records: HashMap<StorageKey, Record>,
    /// The per-user index, kept apart from the records as a real
    /// backend's would be: user -> keys.
    index: HashMap<String, HashSet<StorageKey>>,
    /// Keys whose record is "damaged", and where: listed, deletable,
    /// never decoded.
    unreadable: HashMap<StorageKey, Damage>,
}

impl Inner {
    fn unindex(&mut self, user: &str, key: &StorageKey) {
        if let Some(keys) = self.index.get_mut(user) {
            keys.remove(key);
            if keys.is_empty() {
                self.index.remove(user);
            }
        }
    }

    /// Stores `record` and moves its index entry to its user.
    fn put(&mut self, record: Record) {
        if let Some(old) = self.records.get(&record.key).and_then(|r| r.user.clone()) {
            self.unindex(&old, &record.key);
        }
        self.index_only(&record);
        self.records.insert(record.key, record);
    }

    fn index_only(&mut self, record: &Record) {
        if let Some(user) = &record.user {
            self.index
                .entry(user.clone())
                .or_default()
                .insert(record.key);
        }
    }

    /// Removes the record under `key` and its index entry.
    fn take(&mut self, key: &StorageKey) -> Option<Record> {
        self.unreadable.remove(key);
        let record = self.records.remove(key)?;
        if let Some(user) = &record.user {
            self.unindex(user, key);
        }
        Some(record)
    }

    /// The records the index lists under `user` that are still that
    /// user's.
    fn indexed(&self, user: &str) -> Vec<&Record> {
        self.index
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|key| self.records.get(key))
            .filter(|r| r.user.as_deref() == Some(user))
            .collect()
    }
}

pub(crate) struct Reference {
    fault: Fault,
    inner: Mutex<Inner>,
}

impl Reference {
    pub(crate) fn new(fault: Fault) -> Self {
        Self {
            fault,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// The `unreadable` capability: `record` is stored, but reads as
    /// damaged.
    #[allow(dead_code)] // each test binary uses a subset
    pub(crate) fn plant_unreadable(&self, record: &Record, damage: Damage) {
        let mut inner = self.lock();
        inner.put(record.clone());
        inner.unreadable.insert(record.key, damage);
    }

    fn damaged(&self, key: &StorageKey) -> Result<(), Error> {
        if self.lock().unreadable.contains_key(key) {
            return Err(Error::decode(*key, std::io::Error::other("planted damage")));
        }
        Ok(())
    }

    /// What a save checks before it writes over `record.key`.
    fn damaged_for_save(&self, record: &Record) -> Result<(), Error> {
        if self.fault == Fault::SaveChecksOnlyTheFrame {
            let inner = self.lock();
            let same_version = inner
                .records
                .get(&record.key)
                .is_some_and(|r| r.version == record.version);
            if same_version && inner.unreadable.get(&record.key) == Some(&Damage::Data) {
                return Ok(());
            }
        }
        self.damaged(&record.key)
    }

    fn live(&self, key: &StorageKey) -> Option<Record> {
        let inner = self.lock();
        let record = inner.records.get(key)?;
        (self.fault == Fault::LoadIgnoresExpiry || record.is_live_at(Timestamp::now()))
            .then(|| record.clone())
    }

    fn mangle(&self, mut record: Record) -> Record {
        if self.fault == Fault::TimestampsInSeconds {
            let secs = |t: Timestamp| Timestamp::from_millis(t.as_millis() / 1000 * 1000);
            record.created_at = secs(record.created_at);
            record.expires_at = secs(record.expires_at);
        }
        if self.fault == Fault::DropsLargeValues {
            record
                .data
                .retain(|_, v| v.as_str().is_none_or(|s| s.len() < 60_000));
        }
        record
    }
}

#[async_trait::async_trait]
impl SessionStore for Reference {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        record.check_create()?;
        let mut inner = self.lock();
        let taken = match inner.records.get(&record.key) {
            Some(_) if self.fault == Fault::CreateRefusesExpiredKey => true,
            Some(r) => r.is_live_at(Timestamp::now()),
            None => false,
        };
        if taken && self.fault != Fault::CreateOverwrites {
            return Err(Error::Exists);
        }
        inner.take(&record.key);
        inner.put(self.mangle(record.clone()));
        Ok(())
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        let live = self.live(key);
        if live.is_some() {
            self.damaged(key)?;
        }
        Ok(live)
    }

    async fn load_if_changed(&self, key: &StorageKey, known: &Record) -> Result<Reload, Error> {
        let Some(live) = self.live(key) else {
            return Ok(match self.fault {
                Fault::ReloadKeepsTheDeleted => Reload::Unchanged,
                _ => Reload::Loaded(None),
            });
        };
        if self.fault == Fault::ReloadByVersionOnly && live.version == known.version {
            return Ok(Reload::Unchanged);
        }
        self.damaged(key)?;
        let same = (live.version, live.created_at, live.expires_at)
            == (known.version, known.created_at, known.expires_at);
        Ok(if same {
            Reload::Unchanged
        } else {
            Reload::Loaded(Some(live))
        })
    }

    async fn save(&self, record: &Record) -> Result<u64, Error> {
        record.check_save()?;
        if self.live(&record.key).is_some() {
            self.damaged_for_save(record)?;
        }
        let mut stored = self.mangle(record.clone());
        stored.version = record.version + 1;
        if self.fault == Fault::SaveCheckThenActRace {
            // Check, await, then act: two saves can both pass the check.
            let current = self.live(&record.key).ok_or(Error::NotFound)?;
            if current.version != record.version {
                return Err(Error::Conflict);
            }
            tokio::time::sleep(RACE_WINDOW).await;
            self.lock().put(stored);
            return Ok(record.version + 1);
        }
        let late_unindex = {
            let mut inner = self.lock();
            let now = Timestamp::now();
            let current = inner
                .records
                .get(&record.key)
                .filter(|r| r.is_live_at(now))
                .cloned();
            let Some(current) = current else {
                if self.fault == Fault::SaveResurrects {
                    inner.put(stored);
                    return Ok(record.version + 1);
                }
                return Err(Error::NotFound);
            };
            if current.version != record.version && self.fault != Fault::SaveIgnoresVersion {
                return Err(Error::Conflict);
            }
            if self.fault == Fault::SaveDoesNotStoreBump {
                stored.version = record.version;
            }
            if self.fault == Fault::SaveKeepsOldUser {
                stored.user = current.user.clone();
            }
            if self.fault == Fault::IndexLosesMoves && current.user != stored.user {
                // Write the record and the new index entry now; drop the
                // old entry later, without looking at who owns it by then.
                inner.index_only(&stored);
                inner.records.insert(record.key, stored);
                current.user
            } else {
                inner.put(stored);
                None
            }
        };
        if let Some(old) = late_unindex {
            tokio::time::sleep(RACE_WINDOW).await;
            self.lock().unindex(&old, &record.key);
        }
        Ok(record.version + 1)
    }

    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        let now = Timestamp::now();
        if self.fault == Fault::TouchRevivesUnderRace {
            let Some(mut record) = self.live(key) else {
                return Ok(false);
            };
            tokio::time::sleep(RACE_WINDOW).await;
            record.expires_at = expires_at;
            self.lock().put(record);
            return Ok(true);
        }
        let mut inner = self.lock();
        match inner.records.get_mut(key) {
            Some(r) if r.is_live_at(now) || self.fault == Fault::TouchRevives => {
                r.expires_at = expires_at;
                if self.fault == Fault::TouchBumpsVersion {
                    r.version += 1;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        if self.fault == Fault::DeleteNotAtomic {
            let live = self.live(key).is_some();
            tokio::time::sleep(RACE_WINDOW).await;
            self.lock().take(key);
            return Ok(live);
        }
        let removed = self.lock().take(key);
        let live = removed.is_some_and(|r| r.is_live_at(Timestamp::now()));
        Ok(live || self.fault == Fault::DeleteAlwaysTrue)
    }

    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        let now = Timestamp::now();
        let inner = self.lock();
        let (unreadable, records): (Vec<Record>, Vec<Record>) = inner
            .indexed(user)
            .into_iter()
            .filter(|r| r.is_live_at(now) || self.fault == Fault::ListIncludesExpired)
            .cloned()
            .partition(|r| inner.unreadable.contains_key(&r.key));
        Ok(UserSessions {
            records,
            unreadable: unreadable.into_iter().map(|r| r.key).collect(),
        })
    }

    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        let now = Timestamp::now();
        let mut inner = self.lock();
        let keys: Vec<StorageKey> = inner.indexed(user).iter().map(|r| r.key).collect();
        let mut count = 0;
        for key in keys {
            if let Some(r) = inner.take(&key)
                && (r.is_live_at(now) || self.fault == Fault::DeleteByUserCountsExpired)
            {
                count += 1;
            }
        }
        Ok(count)
    }

    async fn delete_expired(&self) -> Result<u64, Error> {
        let now = Timestamp::now();
        let mut inner = self.lock();
        let doomed: Vec<StorageKey> = inner
            .records
            .values()
            .filter(|r| self.fault == Fault::DeleteExpiredDropsLive || !r.is_live_at(now))
            .map(|r| r.key)
            .collect();
        for key in &doomed {
            inner.take(key);
        }
        Ok(doomed.len() as u64)
    }
}
