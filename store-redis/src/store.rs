//! [`RedisStore`] and its [`SessionStore`] implementation.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use redis::{ErrorKind, RedisError, Value};
use session_core::{Error, Record, SessionStore, StorageKey, Timestamp};

use crate::codec::{self, CodecError};
use crate::connection::{Conn, RedisStoreBuilder, backend, timed_out};
use crate::scripts::{ABSENT, DONE_OR_CONFLICT, SAVED, Scripts, UNREADABLE};

/// A [`SessionStore`] on Redis or Valkey, single server or cluster.
///
/// Cheap to clone: clones share one multiplexed, self-repairing connection.
/// See the [crate documentation](crate) for the data layout, the atomicity
/// of each operation and how the per-user index is kept.
///
/// ```no_run
/// use std::time::Duration;
/// use session_core::{Record, SessionId, SessionStore, Timestamp};
/// use session_store_redis::RedisStore;
///
/// # async fn demo() -> Result<(), session_core::Error> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .prefix("myapp:session:")
///     .operation_timeout(Duration::from_secs(2))
///     .connect()
///     .await?;
/// let now = Timestamp::now();
/// let mut record = Record::new(
///     SessionId::generate()?.storage_key(),
///     now,
///     now.saturating_add(Duration::from_secs(3600)),
/// );
/// record.user = Some("alice".into());
/// store.create(&record).await?;
/// record.data.insert("theme".into(), "dark".into());
/// record.version = store.save(&record).await?;
/// assert_eq!(store.load(&record.key).await?, Some(record.clone()));
/// assert_eq!(store.list_by_user("alice").await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: Arc<str>,
    scripts: Arc<Scripts>,
    operation_timeout: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.conn {
            Conn::Single(_) => "single",
            #[cfg(feature = "cluster")]
            Conn::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("mode", &mode)
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

/// What a script said, decoded from its `{status[, user]}` reply.
struct Reply {
    status: i64,
    user: Option<String>,
}

fn parse_reply(value: Value) -> Result<Reply, CodecError> {
    let bad = |v: &Value| CodecError::Reply(format!("{v:?}"));
    let Value::Array(items) = &value else {
        return Err(bad(&value));
    };
    let status = match items.first() {
        Some(Value::Int(n)) => *n,
        _ => return Err(bad(&value)),
    };
    let user =
        match items.get(1) {
            None | Some(Value::Nil) => None,
            Some(Value::BulkString(bytes)) => Some(String::from_utf8(bytes.clone()).map_err(
                |e| CodecError::BadField {
                    field: codec::F_USER,
                    source: Box::new(e),
                },
            )?),
            Some(_) => return Err(bad(&value)),
        };
    Ok(Reply { status, user })
}

fn is_wrong_type(err: &RedisError) -> bool {
    err.code() == Some("WRONGTYPE")
}

impl RedisStore {
    /// A builder for a store on the single server at `url`
    /// (`redis://host:port/db`, `rediss://…`, `unix:///path/redis.sock`,
    /// `redis+unix:///path`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::single(url.into())
    }

    /// A builder for a store on a Redis Cluster, given one or more of its
    /// nodes (`redis://host:port`); the rest are discovered.
    #[cfg(feature = "cluster")]
    pub fn cluster_builder<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisStoreBuilder::cluster(nodes.into_iter().map(Into::into).collect())
    }

    /// Connects to the single server at `url` with the default prefix and
    /// timeouts (see [`RedisStoreBuilder`]).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), session_core::Error> {
    /// let store = session_store_redis::RedisStore::connect("redis://127.0.0.1/").await?;
    /// assert_eq!(store.prefix(), "session:");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RedisStoreBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Self, Error> {
        Self::builder(url).connect().await
    }

    pub(crate) fn from_parts(conn: Conn, builder: RedisStoreBuilder) -> Self {
        Self {
            conn,
            prefix: builder.prefix.into(),
            scripts: Arc::new(Scripts::new()),
            operation_timeout: builder.operation_timeout,
        }
    }

    /// The key prefix this store writes under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of the session stored under `key`:
    /// `{prefix}s:{64 hex digits}`. Useful for operators and tests.
    pub fn session_key(&self, key: &StorageKey) -> String {
        format!("{}s:{}", self.prefix, key.to_hex())
    }

    /// The Redis key of `user`'s index (a sorted set of storage keys in
    /// hex, scored by expiry): `{prefix}u:{escaped user}`, where every byte
    /// other than ASCII letters, digits and `-_.@` is written `%XX`.
    pub fn user_index_key(&self, user: &str) -> String {
        format!("{}u:{}", self.prefix, codec::escape_user(user))
    }

    /// Runs `fut` within the operation timeout.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.operation_timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(timed_out(operation, self.operation_timeout)),
        }
    }

    /// Adds `member` to `user`'s index with at least `score`.
    async fn index_add(
        &self,
        operation: &'static str,
        user: &str,
        score: Timestamp,
        member: &str,
    ) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        self.scripts
            .index_add
            .key(self.user_index_key(user))
            .arg(score.as_millis())
            .arg(member)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| backend(operation, e))
    }

    /// Removes `member` from `user`'s index after the session changed. The
    /// session write already happened, so a failure here only leaves a
    /// stale entry (filtered and pruned on read): it is logged, not
    /// returned.
    async fn index_remove_after(&self, operation: &'static str, user: &str, member: &str) {
        let mut conn = self.conn.clone();
        let result: Result<i64, _> = redis::cmd("ZREM")
            .arg(self.user_index_key(user))
            .arg(member)
            .query_async(&mut conn)
            .await;
        if let Err(error) = result {
            tracing::warn!(operation, %error, "could not remove a session from its user index; the stale entry will be pruned on read");
        }
    }

    /// Reads `user`'s index: (member, score) pairs.
    async fn index_entries(
        &self,
        operation: &'static str,
        user: &str,
    ) -> Result<Vec<(String, f64)>, Error> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(self.user_index_key(user))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(operation, e))
    }

    /// Index upkeep after a read: prune `prune` (only if their score is
    /// still `<= now`), raise `raise`. Failures are logged.
    async fn index_upkeep(
        &self,
        operation: &'static str,
        user: &str,
        now: Timestamp,
        prune: &[String],
        raise: &[(Timestamp, String)],
    ) {
        if prune.is_empty() && raise.is_empty() {
            return;
        }
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.index_upkeep.key(self.user_index_key(user));
        invocation.arg(now.as_millis()).arg(prune.len());
        for member in prune {
            invocation.arg(member);
        }
        for (score, member) in raise {
            invocation.arg(score.as_millis()).arg(member);
        }
        if let Err(error) = invocation.invoke_async::<i64>(&mut conn).await {
            tracing::warn!(operation, %error, "user index upkeep failed; it will be retried on the next read");
        }
    }

    /// Loads one session (one `HGETALL`); `None` unless live at the moment
    /// the reply arrived.
    async fn fetch(
        &self,
        operation: &'static str,
        key: StorageKey,
    ) -> Result<Option<Record>, Error> {
        let mut conn = self.conn.clone();
        let fields: HashMap<Vec<u8>, Vec<u8>> = match redis::cmd("HGETALL")
            .arg(self.session_key(&key))
            .query_async(&mut conn)
            .await
        {
            Ok(fields) => fields,
            Err(e) if is_wrong_type(&e) => return Err(Error::decode(key, CodecError::NotAHash)),
            Err(e) if e.kind() == ErrorKind::UnexpectedReturnType => {
                return Err(Error::decode(key, CodecError::Reply(e.to_string())));
            }
            Err(e) => return Err(backend(operation, e)),
        };
        let record = codec::decode(key, fields).map_err(|e| Error::decode(key, e))?;
        let now = Timestamp::now();
        Ok(record.filter(|r| r.is_live_at(now)))
    }

    async fn do_create(&self, record: &Record) -> Result<(), Error> {
        const OP: &str = "create";
        let encoded = codec::encode(record).map_err(|e| Error::backend(OP, false, e))?;
        let member = record.key.to_hex();
        let now = Timestamp::now();
        // Index first: a crash after this leaves a stale entry, never a
        // live session missing from its index.
        if let Some(user) = &record.user
            && record.is_live_at(now)
        {
            self.index_add(OP, user, record.expires_at, &member).await?;
        }
        let mut conn = self.conn.clone();
        let created: i64 = self
            .scripts
            .create
            .key(self.session_key(&record.key))
            .arg(now.as_millis())
            .arg(record.version)
            .arg(encoded.data)
            .arg(encoded.created)
            .arg(encoded.expires)
            .arg(if record.user.is_some() { "1" } else { "0" })
            .arg(record.user.as_deref().unwrap_or(""))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| backend(OP, e))?;
        if created == 1 {
            Ok(())
        } else {
            Err(Error::Exists)
        }
    }

    async fn do_save(&self, record: &Record) -> Result<u64, Error> {
        const OP: &str = "save";
        let new_version = record
            .version
            .checked_add(1)
            .ok_or_else(|| Error::backend(OP, false, VersionOverflow))?;
        let encoded = codec::encode(record).map_err(|e| Error::backend(OP, false, e))?;
        let member = record.key.to_hex();
        let now = Timestamp::now();
        let live = record.is_live_at(now);
        // Index of the (new) user first, as in `create`.
        if let Some(user) = &record.user
            && live
        {
            self.index_add(OP, user, record.expires_at, &member).await?;
        }
        let mut conn = self.conn.clone();
        let value: Value = self
            .scripts
            .save
            .key(self.session_key(&record.key))
            .arg(now.as_millis())
            .arg(record.version)
            .arg(new_version)
            .arg(encoded.data)
            .arg(encoded.created)
            .arg(encoded.expires)
            .arg(if record.user.is_some() { "1" } else { "0" })
            .arg(record.user.as_deref().unwrap_or(""))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| backend(OP, e))?;
        let reply = parse_reply(value).map_err(|e| Error::decode(record.key, e))?;
        match reply.status {
            SAVED => {}
            ABSENT => return Err(Error::NotFound),
            DONE_OR_CONFLICT => return Err(Error::Conflict),
            UNREADABLE => return Err(Error::decode(record.key, CodecError::NotAHash)),
            other => {
                return Err(Error::decode(
                    record.key,
                    CodecError::Reply(other.to_string()),
                ));
            }
        }
        // Old index last: only once the session no longer names that user.
        if let Some(old) = &reply.user
            && Some(old) != record.user.as_ref()
        {
            self.index_remove_after(OP, old, &member).await;
        }
        if !live && let Some(user) = &record.user {
            self.index_remove_after(OP, user, &member).await;
        }
        Ok(new_version)
    }

    async fn do_touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        const OP: &str = "touch";
        let now = Timestamp::now();
        let mut conn = self.conn.clone();
        let value: Value = self
            .scripts
            .touch
            .key(self.session_key(key))
            .arg(now.as_millis())
            .arg(expires_at.as_millis())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| backend(OP, e))?;
        let reply = parse_reply(value).map_err(|e| Error::decode(*key, e))?;
        match reply.status {
            ABSENT => return Ok(false),
            DONE_OR_CONFLICT => {}
            UNREADABLE => return Err(Error::decode(*key, CodecError::NotAHash)),
            other => return Err(Error::decode(*key, CodecError::Reply(other.to_string()))),
        }
        if let Some(user) = &reply.user {
            let member = key.to_hex();
            if expires_at > now {
                // Raise (or restore) the entry's score. A failure leaves a
                // score below the real expiry, which pruning tolerates
                // because it re-checks the session itself.
                if let Err(error) = self.index_add(OP, user, expires_at, &member).await {
                    tracing::warn!(operation = OP, %error, "could not raise a user index score");
                }
            } else {
                self.index_remove_after(OP, user, &member).await;
            }
        }
        Ok(true)
    }

    async fn do_delete(&self, key: &StorageKey) -> Result<bool, Error> {
        const OP: &str = "delete";
        let mut conn = self.conn.clone();
        let value: Value = self
            .scripts
            .delete
            .key(self.session_key(key))
            .arg(Timestamp::now().as_millis())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| backend(OP, e))?;
        let reply = parse_reply(value).map_err(|e| Error::decode(*key, e))?;
        match reply.status {
            ABSENT | DONE_OR_CONFLICT => {}
            UNREADABLE => return Err(Error::decode(*key, CodecError::NotAHash)),
            other => return Err(Error::decode(*key, CodecError::Reply(other.to_string()))),
        }
        if let Some(user) = &reply.user {
            self.index_remove_after(OP, user, &key.to_hex()).await;
        }
        Ok(reply.status == DONE_OR_CONFLICT)
    }

    async fn do_list_by_user(&self, user: &str) -> Result<Vec<Record>, Error> {
        const OP: &str = "list_by_user";
        let now = Timestamp::now();
        let entries = self.index_entries(OP, user).await?;
        let mut keys = Vec::with_capacity(entries.len());
        let mut prune = Vec::new();
        for (member, score) in entries {
            match StorageKey::from_hex(&member) {
                Ok(key) => keys.push((key, member, score)),
                // Not ours: nothing can ever make it valid.
                Err(_) => prune.push(member),
            }
        }
        let fetched = join_all(keys.iter().map(|(key, _, _)| self.fetch(OP, *key))).await;
        let mut found = Vec::new();
        let mut raise = Vec::new();
        let mut first_error = None;
        for ((_, member, score), result) in keys.into_iter().zip(fetched) {
            match result {
                Ok(Some(record)) if record.user.as_deref() == Some(user) => {
                    if score < record.expires_at.as_millis() as f64 {
                        raise.push((record.expires_at, member));
                    }
                    found.push(record);
                }
                Ok(_) => prune.push(member),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.index_upkeep(OP, user, now, &prune, &raise).await;
        match first_error {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    async fn do_delete_by_user(&self, user: &str) -> Result<u64, Error> {
        const OP: &str = "delete_by_user";
        let now = Timestamp::now();
        let entries = self.index_entries(OP, user).await?;
        let mut keys = Vec::with_capacity(entries.len());
        let mut removed = Vec::new();
        for (member, _) in entries {
            match StorageKey::from_hex(&member) {
                Ok(key) => keys.push((key, member)),
                Err(_) => removed.push(member),
            }
        }
        let deletes = join_all(keys.iter().map(|(key, _)| {
            let mut conn = self.conn.clone();
            let mut invocation = self.scripts.delete.key(self.session_key(key));
            invocation.arg(now.as_millis()).arg(user);
            async move {
                let value: Value = invocation
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| backend(OP, e))?;
                let reply = parse_reply(value).map_err(|e| Error::decode(*key, e))?;
                match reply.status {
                    ABSENT | DONE_OR_CONFLICT => Ok(reply.status == DONE_OR_CONFLICT),
                    UNREADABLE => Err(Error::decode(*key, CodecError::NotAHash)),
                    other => Err(Error::decode(*key, CodecError::Reply(other.to_string()))),
                }
            }
        }))
        .await;
        let mut count = 0u64;
        let mut prune = Vec::new();
        let mut first_error = None;
        for ((_, member), result) in keys.into_iter().zip(deletes) {
            match result {
                Ok(true) => {
                    count += 1;
                    removed.push(member);
                }
                Ok(false) => prune.push(member),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !removed.is_empty() {
            let mut conn = self.conn.clone();
            let result: Result<i64, _> = redis::cmd("ZREM")
                .arg(self.user_index_key(user))
                .arg(&removed)
                .query_async(&mut conn)
                .await;
            if let Err(error) = result {
                tracing::warn!(operation = OP, %error, "could not remove deleted sessions from their user index");
            }
        }
        self.index_upkeep(OP, user, now, &prune, &[]).await;
        match first_error {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }
}

/// A record whose version is `u64::MAX` cannot be saved again.
#[derive(Debug, thiserror::Error)]
#[error("the session's version is at its maximum and cannot be bumped")]
struct VersionOverflow;

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.bounded("create", self.do_create(record)).await
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        self.bounded("load", self.fetch("load", *key)).await
    }

    async fn save(&self, record: &Record) -> Result<u64, Error> {
        self.bounded("save", self.do_save(record)).await
    }

    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.bounded("touch", self.do_touch(key, expires_at)).await
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        self.bounded("delete", self.do_delete(key)).await
    }

    async fn list_by_user(&self, user: &str) -> Result<Vec<Record>, Error> {
        self.bounded("list_by_user", self.do_list_by_user(user))
            .await
    }

    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        self.bounded("delete_by_user", self.do_delete_by_user(user))
            .await
    }

    /// Redis expires records natively (`PEXPIREAT`), so there is nothing
    /// to sweep: always `Ok(0)`, without a round trip.
    async fn delete_expired(&self) -> Result<u64, Error> {
        Ok(0)
    }
}
