//! The commit queue: commits of one session inside one manager never
//! race, they queue and are folded into rounds.
//!
//! Every storage key with a commit in flight has a *lane*. The first
//! commit to arrive leads: it runs a round (one compare-and-set save, or
//! one rotation) for itself. Commits that arrive meanwhile queue up
//! behind it. When its round is done, the leader answers its batch and
//! hands the whole queue to the first waiter, which leads the next round
//! with every queued change folded into one save. So N simultaneous
//! commits of one session cost a few saves, not N² attempts, and each
//! request still gets its own outcome.
//!
//! A rotation runs in a round of its own; the commits queued behind it
//! then find the old key gone and follow the rotation's marker.
//!
//! Cancellation is safe: a leader dropped mid-round (its request went
//! away) puts its unanswered waiters back at the front of the queue and
//! hands leadership on, so nobody waits for an answer that never comes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::job::{Answer, Job};
use super::stored::Stored;
use crate::{Error, StorageKey};

struct Waiter {
    job: Job,
    /// `None` for the leader's own job.
    reply: Option<oneshot::Sender<Handoff>>,
}

enum Handoff {
    Done(Answer),
    /// Lead the next round: this batch (the receiver's own job first).
    Lead(Vec<Waiter>),
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Waiter>,
    /// The record the last round stored under this key, fresher than any
    /// request's own copy.
    latest: Option<Arc<Stored>>,
}

/// The lanes of one manager, by storage key.
#[derive(Default)]
pub(super) struct CommitQueue {
    map: Mutex<HashMap<StorageKey, Lane>>,
}

impl CommitQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StorageKey, Lane>> {
        // Nothing panics while holding this lock; if something did, the
        // map is still consistent (every update is a single step).
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters `job` into the lane of `key`: either another round carried
    /// it (its answer), or this request leads the next round.
    pub(super) async fn enter(&self, key: StorageKey, job: Job) -> Result<Leader<'_>, Answer> {
        let queued = {
            let mut map = self.lock();
            match map.get_mut(&key) {
                Some(lane) => {
                    let (tx, rx) = oneshot::channel();
                    lane.queue.push_back(Waiter {
                        job,
                        reply: Some(tx),
                    });
                    Err(rx)
                }
                None => {
                    map.insert(key, Lane::default());
                    Ok(job)
                }
            }
        };
        let batch = match queued {
            Ok(job) => vec![Waiter { job, reply: None }],
            Err(rx) => match rx.await {
                Ok(Handoff::Done(answer)) => return Err(answer),
                Ok(Handoff::Lead(batch)) => batch,
                // Only a leader's hand-off drops a sender unused, and it
                // re-queues the waiter first: unreachable, but answer.
                Err(_) => {
                    return Err(Err(Error::backend(
                        Error::CORE,
                        "commit",
                        true,
                        std::io::Error::other("the commit round carrying this change went away"),
                    )));
                }
            },
        };
        let latest = self
            .lock()
            .get_mut(&key)
            .and_then(|lane| lane.latest.take());
        Ok(Leader {
            lanes: self,
            key,
            batch,
            latest,
        })
    }
}

/// The leader of a round. Dropping it (at the end of the round, or when
/// the leading request is cancelled mid-round) re-queues whatever it did
/// not answer and hands the lane to the next waiter, or closes the lane.
pub(super) struct Leader<'a> {
    lanes: &'a CommitQueue,
    key: StorageKey,
    batch: Vec<Waiter>,
    latest: Option<Arc<Stored>>,
}

impl Leader<'_> {
    /// Takes into this round the saves queued behind it since it began
    /// (none when this round is a rotation, which runs alone; a queued
    /// rotation ends the batch).
    pub(super) fn gather(&mut self) {
        if self.batch.iter().any(|w| w.job.rotation.is_some()) {
            return;
        }
        let mut map = self.lanes.lock();
        let Some(lane) = map.get_mut(&self.key) else {
            return;
        };
        while lane.queue.front().is_some_and(|w| w.job.rotation.is_none()) {
            if let Some(next) = lane.queue.pop_front() {
                self.batch.push(next);
            }
        }
    }

    /// The jobs of this round, in arrival order.
    pub(super) fn jobs(&self) -> Vec<&Job> {
        self.batch.iter().map(|w| &w.job).collect()
    }

    /// The record the previous round stored, if known.
    pub(super) fn take_latest(&mut self) -> Option<Arc<Stored>> {
        self.latest.take()
    }

    /// Answers the round's waiters (one answer per job, in order), records
    /// what is now stored, hands the lane on, and returns the leader's own
    /// answer.
    pub(super) fn finish(mut self, answers: Vec<Answer>, latest: Option<Arc<Stored>>) -> Answer {
        let mut mine = None;
        for (waiter, answer) in std::mem::take(&mut self.batch).into_iter().zip(answers) {
            match waiter.reply {
                Some(tx) => {
                    let _ = tx.send(Handoff::Done(answer));
                }
                None => mine = Some(answer),
            }
        }
        if let Some(lane) = self.lanes.lock().get_mut(&self.key) {
            lane.latest = latest;
        }
        mine.unwrap_or_else(|| {
            Err(Error::backend(
                Error::CORE,
                "commit",
                false,
                std::io::Error::other("a commit round returned fewer answers than jobs"),
            ))
        })
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut map = self.lanes.lock();
        let Some(lane) = map.get_mut(&self.key) else {
            return;
        };
        // A cancelled round: its waiters go first in the next one (the
        // leader's own job leaves with its request).
        for waiter in self.batch.drain(..).rev() {
            if waiter.reply.is_some() {
                lane.queue.push_front(waiter);
            }
        }
        loop {
            let Some(mut first) = lane.queue.pop_front() else {
                map.remove(&self.key);
                return;
            };
            let Some(tx) = first.reply.take() else {
                continue;
            };
            let mut batch = vec![first];
            if batch[0].job.rotation.is_none() {
                while lane.queue.front().is_some_and(|w| w.job.rotation.is_none()) {
                    if let Some(next) = lane.queue.pop_front() {
                        batch.push(next);
                    }
                }
            }
            match tx.send(Handoff::Lead(batch)) {
                Ok(()) => return,
                // That request is gone too: its job leaves with it, but
                // the rest of its batch goes back in line.
                Err(Handoff::Lead(batch)) => {
                    for waiter in batch.into_iter().skip(1).rev() {
                        lane.queue.push_front(waiter);
                    }
                }
                Err(Handoff::Done(_)) => {}
            }
        }
    }
}
