//! Loads: a lone load sends its own `GET`; loads that arrive while others
//! are in flight go out together, as one `MGET`.
//!
//! Redis pays a fixed cost per command (read, parse, dispatch, reply), and
//! so does the client (a request future, a reply to parse and route). At
//! high concurrency those costs, not the lookups, are what a load spends,
//! and many waiting loads can share them. So a load that finds no other
//! load in flight sends its `GET` at once (no added latency, no extra hop);
//! a load that finds others in flight queues for one of a few sender tasks,
//! each of which takes everything queued (up to [`MAX_BATCH`]) and reads it
//! with one `MGET`. No load ever waits on a timer to fill a batch: a batch
//! is what queued while the previous commands ran.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use redis::{RedisError, Value};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::connection::Connector;

/// The most keys one `MGET` reads.
pub(crate) const MAX_BATCH: usize = 128;

/// How many batches may be in flight at once (one per sender task).
const SENDERS: usize = 2;

/// How many loads may queue before callers wait to enqueue.
const QUEUE: usize = 4096;

/// What a `GET` of the key answered.
pub(crate) type Reply = Result<Value, RedisError>;

/// A load waiting for a sender task: its Redis key, and where the value
/// goes.
struct Waiting {
    key: String,
    reply: oneshot::Sender<Reply>,
}

/// The loads of one store: the connector, and on a single server the
/// queue to the sender tasks and how many loads are in flight. The tasks
/// end when this is dropped.
pub(crate) struct Loads {
    connector: Arc<Connector>,
    /// `None` on a cluster: every load is sent alone.
    batcher: Option<Batcher>,
}

struct Batcher {
    queue: mpsc::Sender<Waiting>,
    in_flight: AtomicUsize,
}

/// Counts a load in flight while alive.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Loads {
    /// On a single server, starts the sender tasks, which send on
    /// `connector`'s connection and give each batch up to `timeout` (the
    /// store's operation timeout).
    pub(crate) fn new(connector: Arc<Connector>, timeout: Duration) -> Self {
        let batcher = connector.is_single().then(|| {
            let (queue, receiver) = mpsc::channel(QUEUE);
            let receiver = Arc::new(Mutex::new(receiver));
            for _ in 0..SENDERS {
                let (receiver, connector) = (Arc::clone(&receiver), Arc::clone(&connector));
                tokio::spawn(run(receiver, connector, timeout));
            }
            Batcher {
                queue,
                in_flight: AtomicUsize::new(0),
            }
        });
        Self { connector, batcher }
    }

    /// What a `GET` of the Redis key `key` answers: sent at once when no
    /// other load is in flight, else through a batch.
    pub(crate) async fn get(&self, key: &str) -> Reply {
        let Some(batcher) = &self.batcher else {
            return get(&self.connector, key).await;
        };
        let alone = batcher.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        let _in_flight = InFlight(&batcher.in_flight);
        if !alone {
            let (reply, answer) = oneshot::channel();
            let waiting = Waiting {
                key: key.to_owned(),
                reply,
            };
            // A closed queue means the sender tasks are gone: load alone.
            if batcher.queue.send(waiting).await.is_ok() {
                return answer.await.unwrap_or_else(|_| {
                    Err(RedisError::from((
                        redis::ErrorKind::Io,
                        "the Redis load batcher is gone (was the store's runtime shut down?)",
                    )))
                });
            }
        }
        get(&self.connector, key).await
    }
}

/// A `GET` of its own.
async fn get(connector: &Connector, key: &str) -> Reply {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut connector.conn())
        .await
}

async fn run(
    receiver: Arc<Mutex<mpsc::Receiver<Waiting>>>,
    connector: Arc<Connector>,
    timeout: Duration,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // One sender at a time waits on the queue; it takes everything
        // queued and lets the next one wait while its batch is in flight.
        let received = receiver.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if received == 0 {
            // Every handle is gone.
            return;
        }
        serve(&connector, timeout, &mut batch).await;
    }
}

/// Answers every load of `batch`, leaving it empty.
async fn serve(connector: &Connector, timeout: Duration, batch: &mut Vec<Waiting>) {
    let generation = connector.generation();
    match tokio::time::timeout(timeout, mget(connector, batch)).await {
        Ok(Ok(values)) => {
            for (waiting, value) in batch.drain(..).zip(values) {
                // The caller may have given up waiting.
                let _ = waiting.reply.send(value);
            }
        }
        Ok(Err(error)) => {
            for waiting in batch.drain(..) {
                let _ = waiting.reply.send(Err(error.clone()));
            }
        }
        Err(_) => {
            // As a lone call's timeout does: the connection may be dead
            // without failing, so it is replaced. The callers' own
            // timeouts have expired, or are about to.
            connector.timed_out(generation);
            for waiting in batch.drain(..) {
                let _ = waiting.reply.send(Err(RedisError::from((
                    redis::ErrorKind::Io,
                    "batched load timed out",
                ))));
            }
        }
    }
}

/// One reply per load of `batch`, in order: `MGET`, then a `GET` of its
/// own for each key `MGET` found nothing under.
async fn mget(connector: &Connector, batch: &[Waiting]) -> Result<Vec<Reply>, RedisError> {
    let mut cmd = redis::cmd("MGET");
    for waiting in batch {
        cmd.arg(&waiting.key);
    }
    let values = match cmd.query_async(&mut connector.conn()).await? {
        Value::Array(values) if values.len() == batch.len() => values,
        other => {
            return Err(RedisError::from((
                redis::ErrorKind::Parse,
                "MGET answered an unexpected reply",
                format!("{other:?}"),
            )));
        }
    };
    let mut replies: Vec<Reply> = values.into_iter().map(Ok).collect();
    let misses: Vec<usize> = (0..replies.len())
        .filter(|&i| matches!(replies.get(i), Some(Ok(Value::Nil))))
        .collect();
    if !misses.is_empty() {
        let again = misses
            .iter()
            .filter_map(|&i| batch.get(i))
            .map(|waiting| get(connector, &waiting.key));
        for (i, reply) in misses.iter().zip(join_all(again).await) {
            if let Some(slot) = replies.get_mut(*i) {
                *slot = reply;
            }
        }
    }
    Ok(replies)
}
