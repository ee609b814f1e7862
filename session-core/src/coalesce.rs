//! Coalescing without timers, for store authors: an operation that finds
//! no other of its kind in flight goes out at once, on its own;
//! operations that arrive while others are in flight queue, and one of a
//! few sender tasks takes everything queued and sends it as one batch
//! (one command, one statement).
//!
//! A backend pays a fixed cost per command or statement (a round trip,
//! parsing, dispatch, a commit), and so does the client. At high
//! concurrency those costs, not the work on each key, are what an
//! operation spends, and many waiting operations can share them. No
//! operation ever waits on a timer to fill a batch: a batch is what queued
//! while the previous ones ran, so a lone operation pays nothing, and one
//! under load waits at most for the batches already in flight.
//!
//! The Redis and PostgreSQL stores of this workspace batch their loads and
//! writes with it.
//!
//! ```
//! use session_core::coalesce::Coalescer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), session_core::Error> {
//! // Doubles numbers; a batch is answered item by item, in order.
//! let doubler: Coalescer<u32, Result<u32, String>> = Coalescer::spawn(
//!     2,
//!     64,
//!     || Err("the batch went unanswered".to_owned()),
//!     |items: Vec<u32>| async move { items.into_iter().map(|n| Ok(n * 2)).collect() },
//! )?;
//! // Nothing else in flight: this one runs alone, right here.
//! let answer = doubler.run(21, |n| async move { Ok(n * 2) }).await;
//! assert_eq!(answer, Ok(42));
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::Error;

/// How many operations may queue before callers wait to enqueue.
const QUEUE: usize = 4096;

struct Waiting<I, R> {
    item: I,
    reply: oneshot::Sender<R>,
}

/// Runs operations of one kind (items `I`, each answered with an `R`)
/// alone or in batches (see the module docs). The sender tasks end when
/// this is dropped.
pub struct Coalescer<I, R> {
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

impl<I: Send + 'static, R: Send + 'static> Coalescer<I, R> {
    /// Starts `senders` tasks (at least one) on the current tokio runtime,
    /// each sending the batches it takes (up to `max_batch` items) with
    /// `send`, which answers every item of a batch, in order; an item it
    /// leaves unanswered gets `unanswered()`, and so does an item whose
    /// sender tasks went away (their runtime shut down).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when called outside a tokio runtime.
    pub fn spawn<S, F>(
        senders: usize,
        max_batch: usize,
        unanswered: fn() -> R,
        send: S,
    ) -> Result<Self, Error>
    where
        S: Fn(Vec<I>) -> F + Send + Sync + 'static,
        F: Future<Output = Vec<R>> + Send,
    {
        let runtime =
            Handle::try_current().map_err(|e| Error::backend(Error::CORE, "spawn", false, e))?;
        let max_batch = max_batch.max(1);
        let (queue, receiver) = mpsc::channel(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        let send = Arc::new(send);
        for _ in 0..senders.max(1) {
            let (receiver, send) = (Arc::clone(&receiver), Arc::clone(&send));
            runtime.spawn(async move {
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
        Ok(Self {
            queue,
            in_flight: AtomicUsize::new(0),
            unanswered,
        })
    }

    /// Runs `item`: with `alone` when no other operation of this kind is
    /// in flight (or the sender tasks are gone), else queued for the next
    /// batch, and returns its own answer.
    pub async fn run<F>(&self, item: I, alone: impl FnOnce(I) -> F) -> R
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
