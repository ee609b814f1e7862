//! A deliberately simple reference store for testing the suite itself, with
//! switchable faults: the correct store must pass every case, and each
//! fault must be caught by the cases named for it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use session_core::{Error, Record, SessionStore, StorageKey, Timestamp, UserSessions};

/// A way to break the reference store on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each test binary uses a subset
pub(crate) enum Fault {
    None,
    SaveIgnoresVersion,
    SaveCheckThenActRace,
    SaveResurrects,
    SaveDoesNotStoreBump,
    SaveKeepsOldUser,
    CreateOverwrites,
    CreateRefusesExpiredKey,
    LoadIgnoresExpiry,
    TouchBumpsVersion,
    TouchRevives,
    DeleteAlwaysTrue,
    ListIncludesExpired,
    DeleteByUserCountsExpired,
    DeleteExpiredDropsLive,
    TimestampsInSeconds,
    DropsLargeValues,
}

pub(crate) struct Reference {
    fault: Fault,
    records: Mutex<HashMap<StorageKey, Record>>,
    /// Keys whose record is "damaged": listed, deletable, never decoded.
    unreadable: Mutex<HashSet<StorageKey>>,
}

impl Reference {
    pub(crate) fn new(fault: Fault) -> Self {
        Self {
            fault,
            records: Mutex::new(HashMap::new()),
            unreadable: Mutex::new(HashSet::new()),
        }
    }

    /// The `unreadable` capability: `record` is stored, but reads as
    /// damaged.
    #[allow(dead_code)] // each test binary uses a subset
    pub(crate) fn plant_unreadable(&self, record: &Record) {
        self.records
            .lock()
            .unwrap()
            .insert(record.key, record.clone());
        self.unreadable.lock().unwrap().insert(record.key);
    }

    fn damaged(&self, key: &StorageKey) -> Result<(), Error> {
        if self.unreadable.lock().unwrap().contains(key) {
            return Err(Error::decode(*key, std::io::Error::other("planted damage")));
        }
        Ok(())
    }

    fn live(&self, key: &StorageKey) -> Option<Record> {
        let records = self.records.lock().unwrap();
        let record = records.get(key)?;
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
        let mut records = self.records.lock().unwrap();
        let taken = match records.get(&record.key) {
            Some(r) if self.fault == Fault::CreateRefusesExpiredKey => {
                let _ = r;
                true
            }
            Some(r) => r.is_live_at(Timestamp::now()),
            None => false,
        };
        if taken && self.fault != Fault::CreateOverwrites {
            return Err(Error::Exists);
        }
        records.insert(record.key, self.mangle(record.clone()));
        self.unreadable.lock().unwrap().remove(&record.key);
        Ok(())
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        let live = self.live(key);
        if live.is_some() {
            self.damaged(key)?;
        }
        Ok(live)
    }

    async fn save(&self, record: &Record) -> Result<u64, Error> {
        record.check_save()?;
        if self.live(&record.key).is_some() {
            self.damaged(&record.key)?;
        }
        if self.fault == Fault::SaveCheckThenActRace {
            // Check, yield, then act: two saves can both pass the check.
            let current = self.live(&record.key).ok_or(Error::NotFound)?;
            if current.version != record.version {
                return Err(Error::Conflict);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let mut stored = self.mangle(record.clone());
            stored.version = record.version + 1;
            self.records.lock().unwrap().insert(record.key, stored);
            return Ok(record.version + 1);
        }
        let mut records = self.records.lock().unwrap();
        let now = Timestamp::now();
        let current = records
            .get(&record.key)
            .filter(|r| r.is_live_at(now))
            .cloned();
        let Some(current) = current else {
            if self.fault == Fault::SaveResurrects {
                let mut stored = self.mangle(record.clone());
                stored.version = record.version + 1;
                records.insert(record.key, stored);
                return Ok(record.version + 1);
            }
            return Err(Error::NotFound);
        };
        if current.version != record.version && self.fault != Fault::SaveIgnoresVersion {
            return Err(Error::Conflict);
        }
        let mut stored = self.mangle(record.clone());
        stored.version = if self.fault == Fault::SaveDoesNotStoreBump {
            record.version
        } else {
            record.version + 1
        };
        if self.fault == Fault::SaveKeepsOldUser {
            stored.user = current.user;
        }
        records.insert(record.key, stored);
        Ok(record.version + 1)
    }

    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        let mut records = self.records.lock().unwrap();
        let now = Timestamp::now();
        match records.get_mut(key) {
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
        self.unreadable.lock().unwrap().remove(key);
        let removed = self.records.lock().unwrap().remove(key);
        let live = removed.is_some_and(|r| r.is_live_at(Timestamp::now()));
        Ok(live || self.fault == Fault::DeleteAlwaysTrue)
    }

    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        let now = Timestamp::now();
        let (unreadable, records): (Vec<Record>, Vec<Record>) = self
            .records
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.user.as_deref() == Some(user))
            .filter(|r| r.is_live_at(now) || self.fault == Fault::ListIncludesExpired)
            .cloned()
            .partition(|r| self.unreadable.lock().unwrap().contains(&r.key));
        Ok(UserSessions {
            records,
            unreadable: unreadable.into_iter().map(|r| r.key).collect(),
        })
    }

    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        let now = Timestamp::now();
        let mut records = self.records.lock().unwrap();
        let mut count = 0;
        records.retain(|_, r| {
            if r.user.as_deref() != Some(user) {
                return true;
            }
            if r.is_live_at(now) || self.fault == Fault::DeleteByUserCountsExpired {
                count += 1;
            }
            false
        });
        Ok(count)
    }

    async fn delete_expired(&self) -> Result<u64, Error> {
        let now = Timestamp::now();
        let mut records = self.records.lock().unwrap();
        let before = records.len();
        if self.fault == Fault::DeleteExpiredDropsLive {
            records.clear();
        } else {
            records.retain(|_, r| r.is_live_at(now));
        }
        Ok((before - records.len()) as u64)
    }
}
