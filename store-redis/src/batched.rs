//! Writes that arrive while others of their kind are in flight go out
//! [together](session_core::coalesce): saves, touches and deletes each as one
//! call of their many-key script (`SAVE_MANY`, `TOUCH_MANY`, `DELETE_MANY`
//! in `scripts`), which does for each key in turn exactly what the one-key
//! script does, atomically.
//!
//! Creates are not batched. Their common case is native commands (`ZADD
//! GT` when bound, then `SET NX PXAT`), which the multiplexed connection
//! already pipelines with whatever else is in flight; measured, a many-key
//! create script cost the server about twice the time per create, and a
//! coalesced pipeline of the same native commands only added the hop to a
//! sender task (W2 at 64 tasks fell from 0.58–0.62× to 0.49–0.50× the raw
//! client).
//!
//! Each caller gets the reply its one-key script would have given it
//! alone, and handles it itself: a save's "bind first" is answered in the
//! batch, and its second call goes out on its own. A batch runs at the
//! latest `now` of its calls: each was issued before the batch is sent, so
//! that instant lies inside every call. Only a server-wide error (out of
//! memory, a read-only replica) fails a whole batch.
//!
//! Only on a single server: on a cluster, the keys of one batch live in
//! different slots, which one script call cannot span.

use std::sync::Arc;
use std::time::Duration;

use redis::{Cmd, RedisError, Script, Value};

use session_core::Error;

use session_core::coalesce::Coalescer;

use crate::connection::unanswered;
use crate::connection::{Connector, backend};
use crate::scripts::{Scripts, eval, evalsha};

/// The most calls one script call runs.
const MAX_BATCH: usize = 64;

/// How many batches of one kind may be in flight at once.
///
/// More senders shorten the queue but shrink the batches, and on Redis 7
/// a save's script costs the server about 71,000 instructions sent alone
/// against about 54,000 in a batch of ten (callgrind, `session-bench
/// profile redis-cycle` at 1 and 64 tasks). Where the server is the busy
/// side, smaller batches lengthen every batch's time in flight by more
/// than they take off the queue. Traced over W1 runs at 64 tasks on two
/// shared cores (`profile redis-cycle 200000 64`, run one after the
/// other): 2 senders, batches of 10.3, a save 198 µs queued and 716 µs in
/// flight, a cycle (load and save) 1.67 ms; 8 senders, batches of 6.8, 91
/// and 814 µs, 1.95 ms; 32 senders, batches of 3.6, 78 and 1,010 µs,
/// 2.33 ms. (The common save on a server with `SET … IFEQ` is not
/// batched at all: see `ifeq`.)
const SENDERS: usize = 2;

/// One call of a one-key script, alone or as a batch of its kind takes
/// it.
pub(crate) trait Call: Send + 'static {
    /// The store operation, for errors.
    const OPERATION: &'static str;
    /// The store operation this call serves, for its errors (by default
    /// [`Call::OPERATION`]).
    fn operation(&self) -> &'static str {
        Self::OPERATION
    }
    /// The one-key script of this kind.
    fn one(scripts: &Scripts) -> &Script;
    /// The call of the one-key script, when the call goes alone.
    fn single(&self, scripts: &Scripts) -> Cmd;
    /// The many-key script of this kind.
    fn many(scripts: &Scripts) -> &Script;
    /// How many keys each call adds to the many-key script's `KEYS`.
    const KEYS: usize;
    /// Adds this call's keys to the many-key script's `KEYS`.
    fn push_keys(&self, cmd: &mut Cmd);
    /// The caller's clock, ms.
    fn now(&self) -> i64;
    /// Adds this call's arguments after `now` to the many-key script's
    /// `ARGV`.
    fn push_args(&self, cmd: &mut Cmd);
}

/// A save's arguments to the save script (see `SAVE` in `scripts`).
pub(crate) struct SaveCall {
    /// The session's Redis key.
    pub(crate) key: String,
    /// The caller's clock, ms.
    pub(crate) now: i64,
    /// The version read and the new user, as stored.
    pub(crate) expected: Vec<u8>,
    /// The new expiry, ms.
    pub(crate) expires_at: i64,
    /// The new value.
    pub(crate) value: Vec<u8>,
    /// The stored value as a load found it sound, kept for this save
    /// (empty when none: see `verified`).
    pub(crate) seen: Vec<u8>,
}

impl SaveCall {
    /// The call of the one-key save script; `indexed`: whether the new
    /// user's index already holds the session.
    pub(crate) fn with_index(&self, scripts: &Scripts, indexed: bool) -> Cmd {
        let bytes = self.expected.len() + self.value.len() + self.seen.len() + 64;
        let mut cmd = evalsha(&scripts.save, &self.key, 6, bytes);
        cmd.arg(self.now);
        self.push_args(&mut cmd);
        if indexed {
            cmd.arg("1");
        } else {
            cmd.arg("0");
        }
        cmd
    }
}

impl Call for SaveCall {
    const OPERATION: &'static str = "save";
    const KEYS: usize = 1;
    fn one(scripts: &Scripts) -> &Script {
        &scripts.save
    }
    /// Not yet indexed: a first call.
    fn single(&self, scripts: &Scripts) -> Cmd {
        self.with_index(scripts, false)
    }
    fn many(scripts: &Scripts) -> &Script {
        &scripts.save_many
    }
    fn push_keys(&self, cmd: &mut Cmd) {
        cmd.arg(&self.key);
    }
    fn now(&self) -> i64 {
        self.now
    }
    /// The expectation, expiry, value and the value seen; the many-key
    /// form passes "not indexed" itself (a batched save is never a second
    /// call).
    fn push_args(&self, cmd: &mut Cmd) {
        cmd.arg(self.expected.as_slice())
            .arg(self.expires_at)
            .arg(self.value.as_slice())
            .arg(self.seen.as_slice());
    }
}

/// A touch's arguments to the touch script (see `TOUCH` in `scripts`).
pub(crate) struct TouchCall {
    /// The session's Redis key.
    pub(crate) key: String,
    /// The caller's clock, ms.
    pub(crate) now: i64,
    /// The new expiry, ms.
    pub(crate) expires_at: i64,
    /// The new expiry as written in the header.
    pub(crate) expires_text: Vec<u8>,
}

impl Call for TouchCall {
    const OPERATION: &'static str = "touch";
    const KEYS: usize = 1;
    fn one(scripts: &Scripts) -> &Script {
        &scripts.touch
    }
    fn single(&self, scripts: &Scripts) -> Cmd {
        let mut cmd = evalsha(&scripts.touch, &self.key, 3, 64);
        cmd.arg(self.now);
        self.push_args(&mut cmd);
        cmd
    }
    fn many(scripts: &Scripts) -> &Script {
        &scripts.touch_many
    }
    fn push_keys(&self, cmd: &mut Cmd) {
        cmd.arg(&self.key);
    }
    fn now(&self) -> i64 {
        self.now
    }
    fn push_args(&self, cmd: &mut Cmd) {
        cmd.arg(self.expires_at).arg(self.expires_text.as_slice());
    }
}

/// A delete's arguments to the delete script (see `DELETE` in `scripts`).
pub(crate) struct DeleteCall {
    /// `delete`, or `delete_by_user` for each of its sessions.
    pub(crate) operation: &'static str,
    /// The session's Redis key.
    pub(crate) key: String,
    /// The caller's clock, ms.
    pub(crate) now: i64,
    /// Delete only if the session is bound to this user.
    pub(crate) only_of: Option<String>,
}

impl Call for DeleteCall {
    const OPERATION: &'static str = "delete";
    const KEYS: usize = 1;
    fn operation(&self) -> &'static str {
        self.operation
    }
    fn one(scripts: &Scripts) -> &Script {
        &scripts.delete
    }
    fn single(&self, scripts: &Scripts) -> Cmd {
        let only = self.only_of.as_ref().map_or(0, String::len);
        let mut cmd = evalsha(&scripts.delete, &self.key, 2, 32 + only);
        cmd.arg(self.now);
        if let Some(user) = &self.only_of {
            cmd.arg(user);
        }
        cmd
    }
    fn many(scripts: &Scripts) -> &Script {
        &scripts.delete_many
    }
    fn push_keys(&self, cmd: &mut Cmd) {
        cmd.arg(&self.key);
    }
    fn now(&self) -> i64 {
        self.now
    }
    fn push_args(&self, cmd: &mut Cmd) {
        match &self.only_of {
            Some(user) => cmd.arg("1").arg(user),
            None => cmd.arg("0").arg(""),
        };
    }
}

/// The calls of one kind of one store.
pub(crate) struct Batched<C> {
    /// `None` on a cluster: every call is sent alone.
    batches: Option<Coalescer<C, Result<Value, Error>>>,
}

impl<C: Send + 'static> Batched<C> {
    /// On a single server, starts the sender tasks, each sending the
    /// batches it takes with `send`.
    fn with<S, F>(
        connector: &Arc<Connector>,
        unanswered: fn() -> Result<Value, Error>,
        send: S,
    ) -> Self
    where
        S: Fn(Arc<Connector>, Vec<C>) -> F + Send + Sync + 'static,
        F: Future<Output = Vec<Result<Value, Error>>> + Send,
    {
        // Outside a tokio runtime no sender task can start: then every
        // call goes out alone.
        let batches = connector.is_single().then(|| {
            let connector = Arc::clone(connector);
            Coalescer::spawn(SENDERS, MAX_BATCH, unanswered, move |calls| {
                send(Arc::clone(&connector), calls)
            })
            .ok()
        });
        Self {
            batches: batches.flatten(),
        }
    }

    /// The reply to `call`: sent at once with `alone` when no other call
    /// of its kind is in flight, else in a batch.
    pub(crate) async fn run<F>(&self, call: C, alone: impl FnOnce(C) -> F) -> Result<Value, Error>
    where
        F: Future<Output = Result<Value, Error>>,
    {
        match &self.batches {
            Some(batches) => batches.run(call, alone).await,
            None => alone(call).await,
        }
    }
}

impl<C: Call> Batched<C> {
    /// The reply to `call`, sent alone (as its one-key script) or in a
    /// batch.
    pub(crate) async fn call(
        &self,
        connector: &Connector,
        scripts: &Scripts,
        call: C,
    ) -> Result<Value, Error> {
        self.run(call, |call| async move {
            let cmd = call.single(scripts);
            eval(connector, C::one(scripts), &cmd)
                .await
                .map_err(|e| backend(call.operation(), e))
        })
        .await
    }

    /// Batches as calls of the many-key script, each given up to
    /// `timeout` (the store's operation timeout).
    fn scripted(connector: &Arc<Connector>, scripts: &Arc<Scripts>, timeout: Duration) -> Self {
        let scripts = Arc::clone(scripts);
        Self::with(
            connector,
            || Err(backend(C::OPERATION, unanswered())),
            move |connector, calls| {
                let scripts = Arc::clone(&scripts);
                async move { call_many(&connector, &scripts, timeout, calls).await }
            },
        )
    }
}

/// One reply per call, in order, within `timeout` (after which the
/// connection is replaced, as after a lone call's timeout).
async fn call_many<C: Call>(
    connector: &Connector,
    scripts: &Scripts,
    timeout: Duration,
    calls: Vec<C>,
) -> Vec<Result<Value, Error>> {
    let script = C::many(scripts);
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(calls.len() * C::KEYS);
    for call in &calls {
        call.push_keys(&mut cmd);
    }
    cmd.arg(calls.iter().map(Call::now).max().unwrap_or(i64::MIN));
    for call in &calls {
        call.push_args(&mut cmd);
    }
    let generation = connector.generation();
    let error = match tokio::time::timeout(timeout, eval(connector, script, &cmd)).await {
        Ok(Ok(Value::Array(replies))) if replies.len() == calls.len() => {
            return replies
                .into_iter()
                .zip(&calls)
                .map(|(reply, call)| match reply {
                    Value::ServerError(error) => Err(backend(call.operation(), error.into())),
                    reply => Ok(reply),
                })
                .collect();
        }
        Ok(Ok(other)) => RedisError::from((
            redis::ErrorKind::Parse,
            "a many-key script answered an unexpected reply",
            format!("{other:?}"),
        )),
        Ok(Err(error)) => error,
        Err(_) => {
            connector.timed_out(generation);
            RedisError::from((redis::ErrorKind::Io, "a batch of script calls timed out"))
        }
    };
    calls
        .iter()
        .map(|call| Err(backend(call.operation(), error.clone())))
        .collect()
}

/// The batched writes of one store, by kind.
pub(crate) struct Writes {
    pub(crate) saves: Batched<SaveCall>,
    pub(crate) touches: Batched<TouchCall>,
    pub(crate) deletes: Batched<DeleteCall>,
}

impl Writes {
    /// Starts the batches of each kind (on a single server).
    pub(crate) fn new(
        connector: &Arc<Connector>,
        scripts: &Arc<Scripts>,
        timeout: Duration,
    ) -> Self {
        Self {
            saves: Batched::scripted(connector, scripts, timeout),
            touches: Batched::scripted(connector, scripts, timeout),
            deletes: Batched::scripted(connector, scripts, timeout),
        }
    }
}
