//! The save round: every queued commit's changes replayed, in arrival
//! order, onto the freshest record, and stored with one compare-and-set
//! save per attempt; after a conflict, reload and replay again.

use std::sync::Arc;

use super::change::Draft;
use super::core::Core;
use super::follow::{Followed, follow};
use super::job::{Answer, Job, Outcome, freshest};
use super::retry::Retry;
use super::size::DataSize;
use super::stored::Stored;
use super::trace::traced;
use crate::{Error, Record, Timestamp};

/// What one attempt at storing a round's record came to.
enum Attempt {
    /// Stored; the record as now stored.
    Saved(Arc<Stored>),
    /// Another process saved first: replay onto this fresher record.
    Stale(Arc<Stored>),
    /// Gone from under its key (or ended here, past its deadline).
    Gone,
    Failed(Error),
}

/// Saves every job's changes; returns one answer per job and the record
/// now stored under the jobs' key, if known.
pub(super) async fn save_round(
    core: &Core,
    jobs: &[&Job],
    latest: Option<Arc<Stored>>,
) -> (Vec<Answer>, Option<Arc<Stored>>) {
    let mut answers: Vec<Option<Answer>> = jobs.iter().map(|_| None).collect();
    let mut base = freshest(latest, jobs.iter().map(|j| &j.base));
    let mut forwarded = false;
    let mut retry = Retry::new(core.config.conflict_budget());
    let stored = loop {
        let Some(Replayed {
            mut next,
            size,
            included,
        }) = base
            .as_ref()
            .and_then(|base| replay(core, base, jobs, &mut answers, |_| {}))
        else {
            break None;
        };
        let now = Timestamp::now();
        next.expires_at = core.policy().expires_at(next.created_at, now);
        let key = next.key;
        let gone = match attempt(core, next, size, now, &mut retry).await {
            Attempt::Saved(saved) => {
                let outcome = || match forwarded {
                    true => Outcome::Forwarded,
                    false => Outcome::Saved(Arc::clone(&saved)),
                };
                fill(&mut answers, &included, || Ok(outcome()));
                break (!forwarded).then_some(saved);
            }
            Attempt::Stale(fresh) => {
                base = Some(fresh);
                continue;
            }
            Attempt::Gone => follow(core, &key).await,
            Attempt::Failed(e) => Err(e),
        };
        match followed(gone, &mut answers, &included, forwarded) {
            Some(moved) => {
                base = Some(moved);
                forwarded = true;
            }
            None => break None,
        }
    };
    let answers = answers
        .into_iter()
        .map(|a| a.unwrap_or(Err(Error::Conflict)))
        .collect();
    (answers, stored)
}

/// Where a round goes after finding its key gone: on into the session a
/// rotation moved it to (`Some`), or it ends with every included job
/// answered.
fn followed(
    gone: Result<Followed, Error>,
    answers: &mut [Option<Answer>],
    included: &[usize],
    forwarded: bool,
) -> Option<Arc<Stored>> {
    match gone {
        Ok(Followed::To(moved)) => return Some(moved),
        Ok(Followed::NewOwner) => fill(answers, included, || Ok(Outcome::Superseded)),
        Ok(Followed::Ended) => {
            let clear = !forwarded;
            fill(answers, included, || Ok(Outcome::Gone { clear }));
        }
        Err(e) => fan_out(answers, included, e),
    }
    None
}

/// Stores `next` (or deletes it, past its absolute deadline).
async fn attempt(
    core: &Core,
    mut next: Record,
    size: DataSize,
    now: Timestamp,
    retry: &mut Retry,
) -> Attempt {
    let key = next.key;
    if next.expires_at <= now {
        // Past its absolute deadline: the session ends here.
        return match traced("delete", Some(&key), core.store.delete(&key)).await {
            Ok(_) => Attempt::Gone,
            Err(e) => Attempt::Failed(e),
        };
    }
    match traced("save", Some(&key), core.store.save(&next)).await {
        Ok(version) => {
            next.version = version;
            Attempt::Saved(Stored::written(next, size))
        }
        Err(Error::Conflict) if retry.again().await => match core.reload(&key).await {
            Ok(Some(fresh)) => Attempt::Stale(fresh),
            Ok(None) => Attempt::Gone,
            Err(e) => Attempt::Failed(e),
        },
        Err(Error::Conflict) => Attempt::Failed(retry.gave_up(core.store.name())),
        Err(Error::NotFound) => Attempt::Gone,
        Err(e) => Attempt::Failed(e),
    }
}

/// A round's record, built by [`replay`].
pub(super) struct Replayed {
    /// The record to store.
    pub(super) next: Record,
    /// Its data's JSON size.
    pub(super) size: DataSize,
    /// The indices of the jobs whose changes it carries.
    pub(super) included: Vec<usize>,
}

/// Replays the changes of the jobs not yet answered onto a copy of `base`
/// (the round's one copy of the data), in order, then `shape`s it. A job
/// whose changes would break a limit is answered with that error and left
/// out; the others go on. `None` when no job is left.
pub(super) fn replay(
    core: &Core,
    base: &Stored,
    jobs: &[&Job],
    answers: &mut [Option<Answer>],
    shape: impl Fn(&mut Record),
) -> Option<Replayed> {
    let pending: Vec<usize> = (0..jobs.len()).filter(|&i| answers[i].is_none()).collect();
    if pending.is_empty() {
        return None;
    }
    let mut next = Record::clone(base);
    let mut size = base.size();
    for &i in &pending {
        apply(&mut next, &mut size, jobs[i]);
    }
    shape(&mut next);
    let ops = pending.iter().flat_map(|&i| jobs[i].ops.iter());
    if core.check_fits(&next, size, ops).is_ok() {
        return Some(Replayed {
            next,
            size,
            included: pending,
        });
    }
    // Someone's changes break a limit: find whose, one job at a time.
    let (mut next, mut size) = (Record::clone(base), base.size());
    let mut included = Vec::new();
    for i in pending {
        let (mut trial, mut trial_size) = (next.clone(), size);
        apply(&mut trial, &mut trial_size, jobs[i]);
        shape(&mut trial);
        match core.check_fits(&trial, trial_size, jobs[i].ops.iter()) {
            Ok(()) => {
                (next, size) = (trial, trial_size);
                included.push(i);
            }
            Err(e) => answers[i] = Some(Err(e)),
        }
    }
    shape(&mut next);
    (!included.is_empty()).then_some(Replayed {
        next,
        size,
        included,
    })
}

fn apply(record: &mut Record, size: &mut DataSize, job: &Job) {
    let mut draft = Draft {
        data: &mut record.data,
        user: &mut record.user,
        size,
    };
    for op in job.ops.iter() {
        op.apply(&mut draft);
    }
}

/// Answers every job in `included` with `answer()`.
fn fill(answers: &mut [Option<Answer>], included: &[usize], answer: impl Fn() -> Answer) {
    for &i in included {
        answers[i] = Some(answer());
    }
}

/// Answers every job in `included` with its own copy of `error`.
pub(super) fn fan_out(answers: &mut [Option<Answer>], included: &[usize], error: Error) {
    let shared = Arc::new(error);
    for &i in included {
        answers[i] = Some(Err(Error::copy_of(&shared)));
    }
}
