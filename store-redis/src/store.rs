//! [`RedisStore`] and its [`SessionStore`] implementation.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::{Cmd, RedisError, Script, Value};
use session_core::{Error, Record, SessionStore, StorageKey, Timestamp, UserSessions};

use crate::batched::{DeleteCall, SaveCall, TouchCall, Writes};
use crate::codec::{self, CodecError};
use crate::connection::{Conn, Connector, RedisStoreBuilder, backend, timed_out};
use crate::ifeq::{self, IfEq, Outcome};
use crate::loads::Loads;
use crate::scripts::{
    ABSENT, BIND_FIRST, DAMAGED, DONE_OR_CONFLICT, SAVED, Scripts, UNREADABLE, eval, evalsha,
};
use crate::verified::Verified;

mod index;

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
/// assert_eq!(store.list_by_user("alice").await?.records.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connector: Arc<Connector>,
    loads: Arc<Loads>,
    writes: Arc<Writes>,
    prefix: Arc<str>,
    scripts: Arc<Scripts>,
    /// Values loads found sound, for the saves that follow them.
    verified: Arc<Verified>,
    /// Whether the server takes `SET … IFEQ`, as learnt.
    ifeq: Arc<IfEq>,
    operation_timeout: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("mode", &self.connector.mode())
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
    let mut items = match value {
        Value::Int(status) => return Ok(Reply { status, user: None }),
        Value::Array(items) => items,
        other => return Err(CodecError::Reply(format!("{other:?}"))),
    };
    let user = match items.len() {
        1 => None,
        2 => match items.pop() {
            Some(Value::BulkString(bytes)) => {
                Some(String::from_utf8(bytes).map_err(|e| CodecError::BadField {
                    field: "user",
                    source: Box::new(e),
                })?)
            }
            other => return Err(CodecError::Reply(format!("user: {other:?}"))),
        },
        _ => return Err(CodecError::Reply(format!("{items:?}"))),
    };
    match items.first() {
        Some(Value::Int(status)) => Ok(Reply {
            status: *status,
            user,
        }),
        other => Err(CodecError::Reply(format!("status: {other:?}"))),
    }
}

/// An unexpected status in a script's reply.
fn unexpected(key: StorageKey, status: i64) -> Error {
    Error::decode(key, CodecError::Reply(format!("status {status}")))
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

    pub(crate) fn from_parts(connector: Connector, builder: RedisStoreBuilder) -> Self {
        let connector = Arc::new(connector);
        let timeout = builder.operation_timeout;
        let scripts = Arc::new(Scripts::new());
        let loads = Loads::new(Arc::clone(&connector), timeout);
        let writes = Writes::new(&connector, &scripts, timeout);
        Self {
            connector,
            loads: Arc::new(loads),
            writes: Arc::new(writes),
            prefix: builder.prefix.into(),
            scripts,
            verified: Arc::new(Verified::new()),
            ifeq: Arc::new(IfEq::new()),
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
        let mut out = String::with_capacity(self.prefix.len() + 2 + 64);
        out.push_str(&self.prefix);
        out.push_str("s:");
        key.push_hex(&mut out);
        out
    }

    /// The Redis key of `user`'s index (a sorted set of storage keys in
    /// hex, scored by expiry): `{prefix}u:{escaped user}`, where every byte
    /// other than ASCII letters, digits and `-_.@` is written `%XX`.
    pub fn user_index_key(&self, user: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 2 + user.len());
        out.push_str(&self.prefix);
        out.push_str("u:");
        codec::push_escaped_user(&mut out, user);
        out
    }

    /// The connection to send a command on.
    fn conn(&self) -> Conn {
        self.connector.conn()
    }

    /// Runs `fut` within the operation timeout; when it times out, the
    /// connection it ran on is replaced (see [`Connector::timed_out`]).
    async fn bounded<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let generation = self.connector.generation();
        match tokio::time::timeout(self.operation_timeout, fut).await {
            Ok(result) => result,
            Err(_) => {
                self.connector.timed_out(generation);
                Err(timed_out(operation, self.operation_timeout))
            }
        }
    }

    /// Sends a script call (see [`eval`]).
    async fn eval(&self, script: &Script, cmd: &Cmd) -> Result<Value, RedisError> {
        eval(&self.connector, script, cmd).await
    }

    /// Loads one session (one `GET`); `None` unless live at the moment
    /// the reply arrived. The expiry is read from the header before the
    /// data is parsed, so an expired record costs no JSON parsing.
    async fn fetch(
        &self,
        operation: &'static str,
        key: StorageKey,
    ) -> Result<Option<Record>, Error> {
        let value = match self.loads.get(self.session_key(&key)).await {
            Ok(value) => value,
            Err(e) if is_wrong_type(&e) => return Err(Error::decode(key, CodecError::WrongType)),
            Err(e) => return Err(backend(operation, e)),
        };
        let bytes = match value {
            Value::Nil => return Ok(None),
            Value::BulkString(bytes) => bytes,
            other => {
                return Err(Error::decode(key, CodecError::Reply(format!("{other:?}"))));
            }
        };
        let header = codec::decode_header(&bytes).map_err(|e| Error::decode(key, e))?;
        if header.expires_at <= Timestamp::now() {
            return Ok(None);
        }
        let record = header.into_record(key).map_err(|e| Error::decode(key, e))?;
        // Found sound: a save of this session can skip the digest check
        // while the stored value stays these very bytes.
        self.verified.remember(key, bytes);
        Ok(Some(record))
    }

    async fn do_create(&self, record: &Record) -> Result<(), Error> {
        const OP: &str = "create";
        let value = codec::encode(record, record.version)
            .map_err(|e| Error::backend(crate::NAME, OP, false, e))?;
        let now = Timestamp::now();
        let key = self.session_key(&record.key);
        if record.is_live_at(now) {
            // The common case needs no script: a native `SET NX PXAT`
            // (about a third of the server time of the script). It fails
            // only when the server holds a value under the key, which the
            // script below then judges by our clock (an expired leftover
            // is replaced; anything else is `Exists`).
            let mut set = Cmd::with_capacity(6, key.len() + value.len() + 48);
            set.arg("SET")
                .arg(&key)
                .arg(value.as_slice())
                .arg("NX")
                .arg("PXAT")
                .arg(record.expires_at.as_millis());
            let reply = match &record.user {
                Some(user) => {
                    let member = record.key.to_hex();
                    self.after_index(OP, user, record.expires_at, &member, None, set)
                        .await?
                }
                None => set
                    .query_async(&mut self.conn())
                    .await
                    .map_err(|e| backend(OP, e))?,
            };
            match reply {
                Value::Okay => return Ok(()),
                Value::Nil => {}
                other => {
                    return Err(Error::decode(
                        record.key,
                        CodecError::Reply(format!("{other:?}")),
                    ));
                }
            }
        }
        let script = &self.scripts.create;
        let mut cmd = evalsha(script, &key, 3, value.len() + 64);
        cmd.arg(now.as_millis())
            .arg(record.expires_at.as_millis())
            .arg(value.as_slice());
        match self.eval(script, &cmd).await.map_err(|e| backend(OP, e))? {
            Value::Int(1) => Ok(()),
            Value::Int(0) => Err(Error::Exists),
            other => Err(Error::decode(
                record.key,
                CodecError::Reply(format!("{other:?}")),
            )),
        }
    }

    /// The save script's arguments for `record` saved as `new_version`,
    /// now; `seen`: the stored value as a load found it sound (empty when
    /// none).
    fn save_call(
        &self,
        operation: &'static str,
        record: &Record,
        new_version: u64,
        seen: Vec<u8>,
    ) -> Result<SaveCall, Error> {
        let value = codec::encode(record, new_version)
            .map_err(|e| Error::backend(crate::NAME, operation, false, e))?;
        Ok(SaveCall {
            key: self.session_key(&record.key),
            now: Timestamp::now().as_millis(),
            expected: codec::cas_expectation(record.version, &value),
            expires_at: record.expires_at.as_millis(),
            value,
            seen,
        })
    }

    /// The common save as one `SET … IFEQ` (see `ifeq`), when the value
    /// seen applies and the server may take it: whether it saved. When it
    /// did not, the save script must run, and `call.seen` is cleared if
    /// the stored value is known not to be it (the script then checks the
    /// digest without the needless argument).
    async fn save_if_seen(&self, call: &mut SaveCall) -> Result<bool, Error> {
        if call.seen.is_empty()
            || !self.ifeq.worth_trying()
            || !ifeq::applies(&call.seen, &call.expected, call.now, call.expires_at)
        {
            return Ok(false);
        }
        // Sized for its arguments at once: the two values are most of it.
        let bytes = call.key.len() + call.value.len() + call.seen.len() + 48;
        let mut set = Cmd::with_capacity(7, bytes);
        set.arg("SET")
            .arg(&call.key)
            .arg(call.value.as_slice())
            .arg("IFEQ")
            .arg(call.seen.as_slice())
            .arg("PXAT")
            .arg(call.expires_at);
        let reply = set.query_async(&mut self.conn()).await;
        match self.ifeq.outcome(reply).map_err(|e| backend("save", e))? {
            Outcome::Saved => Ok(true),
            Outcome::NotSeen => {
                call.seen.clear();
                Ok(false)
            }
            Outcome::Unsupported => Ok(false),
        }
    }

    async fn do_save(&self, record: &Record) -> Result<u64, Error> {
        const OP: &str = "save";
        let new_version = record
            .version
            .checked_add(1)
            .ok_or_else(|| Error::backend(crate::NAME, OP, false, VersionOverflow))?;
        // The common case, the user unchanged, is this one call. When the
        // session is bound to another user, the script writes nothing and
        // asks for the new user's index entry first.
        let seen = self.verified.take(&record.key).unwrap_or_default();
        let mut call = self.save_call(OP, record, new_version, seen)?;
        if self.save_if_seen(&mut call).await? {
            return Ok(new_version);
        }
        let value = self
            .writes
            .saves
            .call(&self.connector, &self.scripts, call)
            .await?;
        let mut reply = parse_reply(value).map_err(|e| Error::decode(record.key, e))?;
        if reply.status == BIND_FIRST
            && let Some(user) = &record.user
        {
            // The first call took the value seen: this one checks the
            // digest.
            let call = self
                .save_call(OP, record, new_version, Vec::new())?
                .with_index(&self.scripts, true);
            let hex = record.key.to_hex();
            let script = Some(&self.scripts.save);
            let value = self
                .after_index(OP, user, record.expires_at, &hex, script, call)
                .await?;
            reply = parse_reply(value).map_err(|e| Error::decode(record.key, e))?;
        }
        match reply.status {
            SAVED => {}
            ABSENT => return Err(Error::NotFound),
            DONE_OR_CONFLICT => return Err(Error::Conflict),
            UNREADABLE => return Err(Error::decode(record.key, CodecError::NotASession)),
            DAMAGED => return Err(Error::decode(record.key, CodecError::DigestMismatch)),
            other => return Err(unexpected(record.key, other)),
        }
        // The former user's index keeps its entry until a read of that
        // index prunes it (rule 2 in `index`): removing it here
        // could race with a save moving the session back.
        Ok(new_version)
    }

    async fn do_touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        let call = TouchCall {
            key: self.session_key(key),
            now: Timestamp::now().as_millis(),
            expires_at: expires_at.as_millis(),
            expires_text: codec::expires_text(expires_at),
        };
        let value = self
            .writes
            .touches
            .call(&self.connector, &self.scripts, call)
            .await?;
        let reply = parse_reply(value).map_err(|e| Error::decode(*key, e))?;
        match reply.status {
            ABSENT => return Ok(false),
            DONE_OR_CONFLICT => {}
            UNREADABLE => return Err(Error::decode(*key, CodecError::NotASession)),
            other => return Err(unexpected(*key, other)),
        }
        // An expiry in the past deleted the record; its index entry stays
        // until a read prunes it (rule 2 in `index`). A later
        // expiry leaves the score lagging, which is harmless (rule 3).
        Ok(true)
    }

    /// Runs the delete script on `key` (only if the session is bound to
    /// `only_of`, when given): whether a live session was deleted, and the
    /// user it was bound to.
    async fn delete_script(
        &self,
        operation: &'static str,
        key: &StorageKey,
        now: Timestamp,
        only_of: Option<&str>,
    ) -> Result<(bool, Option<String>), Error> {
        let call = DeleteCall {
            operation,
            key: self.session_key(key),
            now: now.as_millis(),
            only_of: only_of.map(str::to_owned),
        };
        let value = self
            .writes
            .deletes
            .call(&self.connector, &self.scripts, call)
            .await?;
        let reply = parse_reply(value).map_err(|e| Error::decode(*key, e))?;
        match reply.status {
            ABSENT | DONE_OR_CONFLICT => Ok((reply.status == DONE_OR_CONFLICT, reply.user)),
            UNREADABLE => Err(Error::decode(*key, CodecError::NotASession)),
            other => Err(unexpected(*key, other)),
        }
    }

    async fn do_delete(&self, key: &StorageKey) -> Result<bool, Error> {
        const OP: &str = "delete";
        // The index entry stays until a read prunes it (rule 2 in `index`).
        let (deleted, _) = self.delete_script(OP, key, Timestamp::now(), None).await?;
        Ok(deleted)
    }
}

/// A record whose version is `u64::MAX` cannot be saved again.
#[derive(Debug, thiserror::Error)]
#[error("the session's version is at its maximum and cannot be bumped")]
struct VersionOverflow;

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    fn name(&self) -> &'static str {
        crate::NAME
    }

    async fn create(&self, record: &Record) -> Result<(), Error> {
        record.check_create()?;
        self.bounded("create", self.do_create(record)).await
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        self.bounded("load", self.fetch("load", *key)).await
    }

    async fn save(&self, record: &Record) -> Result<u64, Error> {
        record.check_save()?;
        self.bounded("save", self.do_save(record)).await
    }

    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.bounded("touch", self.do_touch(key, expires_at)).await
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        self.bounded("delete", self.do_delete(key)).await
    }

    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
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
