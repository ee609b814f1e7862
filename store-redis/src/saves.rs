//! Saves: a lone save calls the save script on its own; saves that arrive
//! while others are in flight are [coalesced](crate::coalesce) into one
//! call of the many-key save script (`SAVE_MANY` in `scripts`), which runs
//! the same compare-and-set for each key in turn, atomically.
//!
//! Each caller gets the reply the save script would have given it alone
//! and handles it itself (including "bind first", whose second call goes
//! out on its own). The batch runs at the latest `now` of its saves: each
//! was issued before the batch is sent, so that instant lies inside every
//! save's call. A script error fails the batch (such errors are
//! server-wide: out of memory, a read-only replica); a value that is not
//! a session is judged per key, as alone.
//!
//! Only on a single server: on a cluster, the keys of one batch live in
//! different slots, which one script call cannot span.

use std::sync::Arc;
use std::time::Duration;

use redis::{RedisError, Value};

use crate::coalesce::{Coalescer, Reply};
use crate::connection::Connector;
use crate::scripts::Scripts;
use crate::store::{eval, evalsha};

/// The most saves one script call runs.
const MAX_BATCH: usize = 64;

/// How many batches may be in flight at once (one per sender task).
const SENDERS: usize = 2;

/// One save's arguments to the save script (see `SAVE` in `scripts`).
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
}

impl SaveCall {
    /// The call of the one-key save script; `indexed`: whether the new
    /// user's index already holds the session.
    pub(crate) fn single(&self, scripts: &Scripts, indexed: bool) -> redis::Cmd {
        let mut cmd = evalsha(&scripts.save, &self.key);
        cmd.arg(self.now)
            .arg(self.expected.as_slice())
            .arg(self.expires_at)
            .arg(self.value.as_slice())
            .arg(if indexed { "1" } else { "0" });
        cmd
    }
}

/// The saves of one store.
pub(crate) struct Saves {
    /// `None` on a cluster: every save is sent alone.
    batches: Option<Coalescer<SaveCall, Value>>,
}

impl Saves {
    /// On a single server, starts the sender tasks, which send on
    /// `connector`'s connection and give each batch up to `timeout` (the
    /// store's operation timeout).
    pub(crate) fn new(connector: Arc<Connector>, scripts: Arc<Scripts>, timeout: Duration) -> Self {
        let batches = connector.is_single().then(|| {
            Coalescer::spawn(SENDERS, MAX_BATCH, move |calls: Vec<SaveCall>| {
                let (connector, scripts) = (Arc::clone(&connector), Arc::clone(&scripts));
                async move { save_many(&connector, &scripts, timeout, calls).await }
            })
        });
        Self { batches }
    }

    /// The save script's reply to `call` (not yet indexed): sent at once
    /// with `alone` when no other save is in flight, else in a batch.
    pub(crate) async fn run<F>(
        &self,
        call: SaveCall,
        alone: impl FnOnce(SaveCall) -> F,
    ) -> Reply<Value>
    where
        F: Future<Output = Reply<Value>>,
    {
        match &self.batches {
            Some(batches) => batches.run(call, alone).await,
            None => alone(call).await,
        }
    }
}

/// One reply per call, in order, within `timeout` (after which the
/// connection is replaced, as after a lone call's timeout).
async fn save_many(
    connector: &Connector,
    scripts: &Scripts,
    timeout: Duration,
    calls: Vec<SaveCall>,
) -> Vec<Reply<Value>> {
    let script = &scripts.save_many;
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(calls.len());
    for call in &calls {
        cmd.arg(&call.key);
    }
    cmd.arg(calls.iter().map(|call| call.now).max().unwrap_or(i64::MIN));
    for call in &calls {
        cmd.arg(call.expected.as_slice())
            .arg(call.expires_at)
            .arg(call.value.as_slice())
            .arg("0");
    }
    let generation = connector.generation();
    let error = match tokio::time::timeout(timeout, eval(connector, script, &cmd)).await {
        Ok(Ok(Value::Array(replies))) if replies.len() == calls.len() => {
            return replies.into_iter().map(Ok).collect();
        }
        Ok(Ok(other)) => RedisError::from((
            redis::ErrorKind::Parse,
            "the many-key save script answered an unexpected reply",
            format!("{other:?}"),
        )),
        Ok(Err(error)) => error,
        Err(_) => {
            connector.timed_out(generation);
            RedisError::from((redis::ErrorKind::Io, "a batch of saves timed out"))
        }
    };
    calls.iter().map(|_| Err(error.clone())).collect()
}
