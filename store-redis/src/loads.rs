//! Loads: a lone load sends its own `GET`; loads that arrive while others
//! are in flight go out together, as one `MGET`.
//!
//! A load that finds no other load in flight sends its `GET` at once (no
//! added latency, no extra hop); loads that find others in flight are
//! [coalesced](session_core::coalesce): one of a few sender tasks takes
//! everything queued (up to [`MAX_BATCH`]) and reads it with one `MGET`.
//!
//! Each caller gets its own reply and decodes it itself, so a corrupted
//! record fails only the loads of its key. `MGET` answers nil both for an
//! absent key and for a key holding another type (where `GET` fails with
//! `WRONGTYPE`, which a load reports as unreadable); so each nil of a batch
//! is asked again with its own `GET`, which tells the two apart. A miss
//! thus costs one more command under load, a hit nothing more.
//!
//! Only on a single server: on a cluster, keys of one batch live in
//! different slots (an `MGET` across slots fails with `CROSSSLOT`), so
//! every load there sends its own `GET`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use redis::{RedisError, Value};

use session_core::coalesce::Coalescer;

use crate::connection::Connector;
use crate::connection::{Reply, unanswered};

/// The most keys one `MGET` reads.
pub(crate) const MAX_BATCH: usize = 128;

/// How many batches may be in flight at once (one per sender task).
///
/// Not more: traced over W1 runs at 64 tasks on Valkey 8.1 (two shared
/// cores, `session-bench profile valkey-cycle 200000 64`, twice each),
/// 2 senders took 6.0 s, 4 took 6.7 to 6.8 s and 8 took 6.4 to 6.5 s: a
/// load queued less (252 µs with 2, 144 µs with 8) but its smaller batch
/// spent longer in flight (427 µs, 721 µs), the client and the server
/// paying their fixed cost per command more often.
const SENDERS: usize = 2;

/// The loads of one store.
pub(crate) struct Loads {
    connector: Arc<Connector>,
    /// `None` on a cluster: every load is sent alone.
    batches: Option<Coalescer<String, Reply<Value>>>,
}

impl Loads {
    /// On a single server, starts the sender tasks, which send on
    /// `connector`'s connection and give each batch up to `timeout` (the
    /// store's operation timeout).
    pub(crate) fn new(connector: Arc<Connector>, timeout: Duration) -> Self {
        // Outside a tokio runtime no sender task can start: then every
        // load goes out alone.
        let batches = connector.is_single().then(|| {
            let connector = Arc::clone(&connector);
            Coalescer::spawn(
                SENDERS,
                MAX_BATCH,
                || Err(unanswered()),
                move |keys: Vec<String>| {
                    let connector = Arc::clone(&connector);
                    async move { mget(&connector, timeout, keys).await }
                },
            )
            .ok()
        });
        let batches = batches.flatten();
        Self { connector, batches }
    }

    /// What a `GET` of the Redis key `key` answers: sent at once when no
    /// other load is in flight, else through a batch.
    pub(crate) async fn get(&self, key: String) -> Reply<Value> {
        match &self.batches {
            Some(batches) => batches.run(key, |key| get(&self.connector, key)).await,
            None => get(&self.connector, key).await,
        }
    }
}

/// A `GET` of its own.
async fn get(connector: &Connector, key: String) -> Reply<Value> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut connector.conn())
        .await
}

/// One reply per key, in order, within `timeout` (after which the
/// connection is replaced, as after a lone call's timeout: it may be dead
/// without failing).
async fn mget(connector: &Connector, timeout: Duration, keys: Vec<String>) -> Vec<Reply<Value>> {
    let generation = connector.generation();
    let error = match tokio::time::timeout(timeout, mget_checked(connector, &keys)).await {
        Ok(Ok(replies)) => return replies,
        Ok(Err(error)) => error,
        Err(_) => {
            connector.timed_out(generation);
            RedisError::from((redis::ErrorKind::Io, "a batch of loads timed out"))
        }
    };
    keys.iter().map(|_| Err(error.clone())).collect()
}

/// `MGET`, then a `GET` of its own for each key `MGET` found nothing
/// under.
async fn mget_checked(
    connector: &Connector,
    keys: &[String],
) -> Result<Vec<Reply<Value>>, RedisError> {
    let mut cmd = redis::cmd("MGET");
    for key in keys {
        cmd.arg(key);
    }
    let values = match cmd.query_async(&mut connector.conn()).await? {
        Value::Array(values) if values.len() == keys.len() => values,
        other => {
            return Err(RedisError::from((
                redis::ErrorKind::Parse,
                "MGET answered an unexpected reply",
                format!("{other:?}"),
            )));
        }
    };
    let mut replies: Vec<Reply<Value>> = values.into_iter().map(Ok).collect();
    let misses: Vec<usize> = (0..replies.len())
        .filter(|&i| matches!(replies.get(i), Some(Ok(Value::Nil))))
        .collect();
    if !misses.is_empty() {
        let again = misses
            .iter()
            .filter_map(|&i| keys.get(i))
            .map(|key| get(connector, key.clone()));
        for (i, reply) in misses.iter().zip(join_all(again).await) {
            if let Some(slot) = replies.get_mut(*i) {
                *slot = reply;
            }
        }
    }
    Ok(replies)
}
