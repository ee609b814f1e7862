//! What every part of a commit shares: the store, the configuration and
//! the commit queue, with the checks and calls that need only them.

use std::sync::Arc;

use super::change::Op;
use super::commit_queue::CommitQueue;
use super::config::SessionConfig;
use super::load_queue::LoadQueue;
use super::recent::Recent;
use super::size::DataSize;
use super::stored::Stored;
use super::trace::traced;
use crate::record::values_within_depth;
use crate::{
    Error, ExpiryPolicy, Record, Reload, SessionId, SessionStore, StorageKey, Timestamp, Unstorable,
};

/// One manager's store, configuration and commit queue.
pub(super) struct Core {
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) config: SessionConfig,
    pub(super) queue: CommitQueue,
    pub(super) recent: Recent,
    pub(super) loads: LoadQueue,
}

impl Core {
    pub(super) fn new(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self {
            store,
            config,
            queue: CommitQueue::default(),
            recent: Recent::default(),
            loads: LoadQueue::default(),
        }
    }

    pub(super) fn policy(&self) -> &ExpiryPolicy {
        self.config.expiry()
    }

    /// Whether a stored record is usable at `now` under this policy: live,
    /// and not past the absolute deadline counted from its creation.
    pub(super) fn alive(&self, record: &Record, now: Timestamp) -> bool {
        record.is_live_at(now) && now < self.policy().absolute_deadline(record.created_at)
    }

    /// Loads `key`; `None` when it is gone or past its deadline.
    /// A record this manager wrote lately is only checked for changes
    /// (and shared when unchanged), any other loaded.
    pub(super) async fn load_alive(&self, key: &StorageKey) -> Result<Option<Arc<Stored>>, Error> {
        let found = self.loads.load(*key, || self.load_live(key)).await?;
        // Shared loads may finish a moment apart: check liveness now.
        Ok(found.filter(|r| self.alive(r, Timestamp::now())))
    }

    /// One store call for [`Core::load_alive`], which checks liveness.
    async fn load_live(&self, key: &StorageKey) -> Result<Option<Arc<Stored>>, Error> {
        let Some(known) = self.recent.get(key) else {
            let loaded = traced("load", Some(key), self.store.load(key)).await?;
            return Ok(loaded.map(Stored::loaded));
        };
        let call = self.store.load_if_changed(key, &known);
        Ok(match traced("load_if_changed", Some(key), call).await? {
            Reload::Unchanged => Some(known),
            Reload::Loaded(None) => {
                self.recent.forget(key);
                None
            }
            Reload::Loaded(Some(record)) => {
                let stored = Stored::loaded(record);
                self.recent.put(&stored);
                Some(stored)
            }
        })
    }

    /// Loads `key` again after a conflict; `None` when it is gone or past
    /// its deadline.
    pub(super) async fn reload(&self, key: &StorageKey) -> Result<Option<Arc<Stored>>, Error> {
        tracing::debug!(%key, "session save conflicted; reloading to replay");
        self.load_alive(key).await
    }

    /// Whether `record`, whose data is `size` large, may be stored after
    /// `ops` were applied to it: within the size limit, and within the
    /// limits every store enforces, checked for what `ops` touched (the
    /// rest was stored before).
    pub(super) fn check_fits<'a>(
        &self,
        record: &Record,
        size: DataSize,
        ops: impl Iterator<Item = &'a Op>,
    ) -> Result<(), Error> {
        self.check_size(record, size)?;
        if record.version > Record::MAX_VERSION - 1 {
            return Err(Error::Unstorable(Unstorable::Version {
                version: record.version,
                max: Record::MAX_VERSION - 1,
            }));
        }
        let touched = ops.filter_map(|op| op.key().and_then(|k| record.data.get(k)));
        if !values_within_depth(touched, Record::MAX_DEPTH) {
            return Err(Error::Unstorable(Unstorable::Depth {
                max: Record::MAX_DEPTH,
            }));
        }
        Ok(())
    }

    /// Whether `record`, whose data is `size` large, is within
    /// [`SessionConfig::max_size`] (data and user name).
    pub(super) fn check_size(&self, record: &Record, size: DataSize) -> Result<(), Error> {
        let size = size.total() + record.user.as_deref().map_or(0, str::len);
        let limit = self.config.max_size();
        if size > limit {
            return Err(Error::TooLarge { size, limit });
        }
        Ok(())
    }

    /// Creates `record` under `id`; should the key be taken (a 2^-256
    /// event, or a buggy store), retries with fresh ids a few times.
    pub(super) async fn create_with_fresh_key(
        &self,
        record: &mut Record,
        mut id: SessionId,
    ) -> Result<SessionId, Error> {
        let mut attempts = 0;
        loop {
            record.key = id.storage_key();
            match traced("create", Some(&record.key), self.store.create(record)).await {
                Ok(()) => return Ok(id),
                Err(Error::Exists) if attempts < 3 => {
                    attempts += 1;
                    id = SessionId::generate()?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
