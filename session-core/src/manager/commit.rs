//! A commit by what the request did: a new session is created, a read
//! touched when its expiry is due, and a change queued into a round, which
//! is a rotation ([`rotate`](super::rotate)) or a save
//! ([`save`](super::save)). Works on what the request hands over, never on
//! the request's own state (which only `session.rs` writes).

use std::sync::Arc;

use super::core::Core;
use super::follow::{Followed, follow};
use super::job::{Answer, Job, Outcome};
use super::rotate::rotate;
use super::save::save_round;
use super::size::DataSize;
use super::stored::Stored;
use super::trace::traced;
use crate::{Data, Record, SessionId, Timestamp};

/// Stores a session the request created, under its fresh `id`.
pub(super) async fn create(core: &Core, id: SessionId, data: Data, user: Option<String>) -> Answer {
    let now = Timestamp::now();
    let mut record = Record {
        key: id.storage_key(),
        data,
        user,
        created_at: now,
        expires_at: core.policy().expires_at(now, now),
        version: 0,
    };
    let size = DataSize::of(&record.data);
    core.check_size(&record, size)?;
    record.check_create()?;
    let id = core.create_with_fresh_key(&mut record, id).await?;
    let stored = Stored::written(record, size);
    core.recent.put(&stored);
    Ok(Outcome::Rotated(id, stored))
}

/// A request that only read: touches the record when the sliding expiry
/// would move by more than the touch step.
pub(super) async fn read(core: &Core, stored: &Arc<Stored>) -> Answer {
    let now = Timestamp::now();
    let Some(next) = core
        .policy()
        .touch_due(stored.created_at, stored.expires_at, now)
    else {
        // Nothing to write; the cookie stays as it is.
        return Ok(Outcome::Untouched);
    };
    let key = stored.key;
    if traced("touch", Some(&key), core.store.touch(&key, next)).await? {
        let mut record = Record::clone(stored);
        record.expires_at = next;
        Ok(Outcome::Saved(Stored::written(record, stored.size())))
    } else {
        // Gone: logged out, or moved by a rotation (then the cookie may
        // already hold the new id and must be left alone).
        let moved = !matches!(follow(core, &key).await?, Followed::Ended);
        Ok(Outcome::Gone { clear: !moved })
    }
}

/// Queues a changed session's `job` behind the commits of the same
/// session in flight; the first in line leads a round for everyone
/// queued, the others get their answer from it.
pub(super) async fn change(core: &Core, job: Job) -> Answer {
    let key = job.base.key;
    let contended = others_hold(&job.base);
    let mut leader = match core.queue.enter(key, job).await {
        Err(answer) => return answer,
        Ok(leader) => leader,
    };
    if contended {
        // Other requests hold this session: let them reach the queue, so
        // that one save carries them all (a store that answers at once
        // would otherwise save once per request, each save a copy).
        tokio::task::yield_now().await;
        leader.gather();
    }
    let latest = leader.take_latest();
    let jobs = leader.jobs();
    let (answers, latest) = match jobs.as_slice() {
        [job] if job.rotation.is_some() => {
            let answer = rotate(core, job, latest).await;
            if let Ok(Outcome::Rotated(_, stored)) = &answer {
                core.recent.put(stored);
            }
            (vec![answer], None)
        }
        _ => save_round(core, &jobs, latest).await,
    };
    if let Some(stored) = &latest {
        core.recent.put(stored);
    }
    leader.finish(answers, latest)
}

/// Whether requests other than this one hold `base` (the record a job
/// builds on): each request holds it twice while committing (its session
/// and its job), the set of recent records once.
fn others_hold(base: &Arc<Stored>) -> bool {
    Arc::strong_count(base) > 3
}
