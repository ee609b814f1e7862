//! Coalescing without timers: an operation that finds no other of its
//! kind in flight goes out at once, on its own; operations that arrive
//! while others are in flight queue, and one of a few sender tasks takes
//! everything queued and sends it as one command.
//!
//! Redis pays a fixed cost per command (read, parse, dispatch, and for a
//! script the Lua entry), and so does the client (a request future, a
//! reply to parse and route). At high concurrency those costs, not the
//! work on each key, are what an operation spends, and many waiting
//! operations can share them. No operation ever waits on a timer to fill
//! a batch: a batch is what queued while the previous commands ran, so a
//! lone operation pays nothing, and one under load waits at most for the
//! batches already in flight.
//!
//! [`loads`](crate::loads) and [`batched`](crate::batched) each give a
//! [`Coalescer`] the function that sends one batch.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use redis::RedisError;
use tokio::sync::{Mutex, mpsc, oneshot};

/// How many operations may queue before callers wait to enqueue.
const QUEUE: usize = 4096;

/// What a Redis command answered.
pub(crate) type Reply<T> = Result<T, RedisError>;

struct Waiting<I, R> {
    item: I,
    reply: oneshot::Sender<R>,
}

/// Sends operations of one kind (items `I`, each answered with an `R`)
/// alone or in batches (see the module docs). The sender tasks end when
/// this is dropped.
pub(crate) struct Coalescer<I, R> {
    queue: mpsc::Sender<Waiting<I, R>>,
    in_flight: AtomicUsize,
    /// The answer of an operation whose batch went unanswered.
    unanswered: fn() -> R,
}

/// Counts an operation in flight while alive.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The sender tasks went away (their runtime shut down) with this
/// operation, or a batch answered fewer operations than it held.
pub(crate) fn unanswered() -> RedisError {
    RedisError::from((
        redis::ErrorKind::Io,
        "a batch of this store went unanswered (was the store's tokio runtime shut down?)",
    ))
}

impl<I: Send + 'static, R: Send + 'static> Coalescer<I, R> {
    /// Starts `senders` tasks, each sending the batches it takes (up to
    /// `max_batch` items) with `send`, which answers every item of a batch,
    /// in order; an item it leaves unanswered gets `unanswered()`.
    pub(crate) fn spawn<S, F>(
        senders: usize,
        max_batch: usize,
        unanswered: fn() -> R,
        send: S,
    ) -> Self
    where
        S: Fn(Vec<I>) -> F + Send + Sync + 'static,
        F: Future<Output = Vec<R>> + Send,
    {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        let send = Arc::new(send);
        for _ in 0..senders.max(1) {
            let (receiver, send) = (Arc::clone(&receiver), Arc::clone(&send));
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(max_batch);
                loop {
                    // One sender at a time waits on the queue; it takes
                    // everything queued and lets the next one wait while
                    // its batch is in flight.
                    let received = receiver.lock().await.recv_many(&mut batch, max_batch).await;
                    if received == 0 {
                        // Every handle is gone.
                        return;
                    }
                    let (items, replies): (Vec<I>, Vec<_>) = batch
                        .drain(..)
                        .map(|waiting: Waiting<I, R>| (waiting.item, waiting.reply))
                        .unzip();
                    let mut answers = send(items).await.into_iter();
                    for reply in replies {
                        // The caller may have given up waiting.
                        let _ = reply.send(answers.next().unwrap_or_else(unanswered));
                    }
                }
            });
        }
        Self {
            queue,
            in_flight: AtomicUsize::new(0),
            unanswered,
        }
    }

    /// Runs `item`: with `alone` when no other operation of this kind is
    /// in flight (or the sender tasks are gone), else in a batch.
    pub(crate) async fn run<F>(&self, item: I, alone: impl FnOnce(I) -> F) -> R
    where
        F: Future<Output = R>,
    {
        let first = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        let _in_flight = InFlight(&self.in_flight);
        if first {
            return alone(item).await;
        }
        let (reply, answer) = oneshot::channel();
        match self.queue.send(Waiting { item, reply }).await {
            Ok(()) => answer.await.unwrap_or_else(|_| (self.unanswered)()),
            Err(closed) => alone(closed.0.item).await,
        }
    }
}
