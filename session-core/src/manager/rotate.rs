//! The rotation: a login or `cycle_id` moves the session to a fresh id,
//! with every change committed before the move. The new record is created
//! first, then a marker naming it is left under the old key's marker key,
//! then the old record is retired with a compare-and-set save that expires
//! it at once. A save that landed in between makes that save conflict:
//! the new record is brought up to date and the old one retired again.

use std::sync::Arc;

use super::change::Rotation;
use super::core::Core;
use super::follow::live_marker;
use super::job::{Answer, Job, Outcome, freshest};
use super::marker;
use super::retry::Retry;
use super::save::{Replayed, replay};
use super::stored::Stored;
use super::trace::traced;
use crate::{Data, Error, Record, SessionId, StorageKey, Timestamp};

/// What the moved record's lifetime becomes.
#[derive(Clone, Copy)]
struct Lifetime {
    created_at: Timestamp,
    expires_at: Timestamp,
}

impl Lifetime {
    /// Gives `record` this lifetime, as a record not yet stored.
    fn shape(self, record: &mut Record) {
        record.created_at = self.created_at;
        record.expires_at = self.expires_at;
        record.version = 0;
    }
}

/// Runs `job`'s rotation, in a round of its own.
pub(super) async fn rotate(core: &Core, job: &Job, latest: Option<Arc<Stored>>) -> Answer {
    let mut answer = [None];
    let Some(base) = freshest(latest, [&job.base]) else {
        return Err(Error::Conflict);
    };
    let now = Timestamp::now();
    // Login starts a new absolute lifetime; a plain cycle keeps it.
    let created_at = match job.rotation {
        Some(Rotation::Login) => now,
        Some(Rotation::Cycle) | None => base.created_at,
    };
    let life = Lifetime {
        created_at,
        expires_at: core.policy().expires_at(created_at, now),
    };
    let Some(Replayed { mut next, size, .. }) =
        replay(core, &base, &[job], &mut answer, |r| life.shape(r))
    else {
        return answer[0].take().unwrap_or(Err(Error::Conflict));
    };
    if life.expires_at <= now {
        traced("delete", Some(&base.key), core.store.delete(&base.key)).await?;
        return Ok(Outcome::Gone { clear: true });
    }
    // The new record first: if this fails, the old one is untouched.
    let id = core
        .create_with_fresh_key(&mut next, SessionId::generate()?)
        .await?;
    // A login that changes who the session belongs to does not let
    // requests holding the old id write into the new session.
    let new_owner = base.user != next.user;
    let grace = core.config.rotation_grace();
    let marker = marker::marker(&base.key, &next.key, new_owner, now, grace);
    match traced("create", Some(&marker.key), core.store.create(&marker)).await {
        // Exists: a rotation racing this one left its marker first;
        // retiring the old record below decides nothing else.
        Ok(()) | Err(Error::Exists) => {}
        Err(e) => return Err(e),
    }
    retire(core, job, base, id, Stored::written(next, size), life).await
}

/// Retires the old record (`base`), bringing the new one up to date with
/// any save that landed on the old one meanwhile.
async fn retire(
    core: &Core,
    job: &Job,
    mut base: Arc<Stored>,
    id: SessionId,
    mut next: Arc<Stored>,
    life: Lifetime,
) -> Answer {
    let old_key = base.key;
    let mut retry = Retry::new(core.config.conflict_budget());
    loop {
        let retired = Record {
            key: old_key,
            data: Data::new(),
            user: None,
            created_at: base.created_at,
            expires_at: Timestamp::now(),
            version: base.version,
        };
        match traced("save", Some(&old_key), core.store.save(&retired)).await {
            Ok(_) => return Ok(Outcome::Rotated(id, next)),
            Err(Error::Conflict) if retry.again().await => {
                let Some(fresh) = core.reload(&old_key).await? else {
                    return rotated_away(core, &old_key, id, next).await;
                };
                base = fresh;
                match catch_up(core, job, &base, &next, life).await? {
                    Some(updated) => next = updated,
                    None => return rotated_away(core, &old_key, id, next).await,
                }
            }
            Err(Error::Conflict) => return Err(retry.gave_up(core.store.name())),
            Err(Error::NotFound) => return rotated_away(core, &old_key, id, next).await,
            Err(e) => return Err(e),
        }
    }
}

/// Replays `job` onto the old record's fresher `base` and saves it as the
/// new record; `None` when the new record went meanwhile.
async fn catch_up(
    core: &Core,
    job: &Job,
    base: &Stored,
    next: &Stored,
    life: Lifetime,
) -> Result<Option<Arc<Stored>>, Error> {
    let mut answer = [None];
    let new_key = next.key;
    let Some(Replayed {
        next: mut updated,
        size,
        ..
    }) = replay(core, base, &[job], &mut answer, |r| {
        r.key = new_key;
        life.shape(r);
    })
    else {
        return Err(answer[0]
            .take()
            .and_then(Result::err)
            .unwrap_or(Error::Conflict));
    };
    updated.version = next.version;
    match traced("save", Some(&new_key), core.store.save(&updated)).await {
        Ok(version) => {
            updated.version = version;
            Ok(Some(Stored::written(updated, size)))
        }
        // Only a commit that found the old record gone follows the marker
        // into the new one: the old record went meanwhile.
        Err(Error::Conflict) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The old record vanished during a rotation: if another rotation's
/// marker stands for it, that rotation retired it and this one's new
/// session stands on its own; if not, the session was logged out (or
/// ended otherwise), and the new record goes too, and so does this
/// rotation's own marker (naming its new key), which was written before
/// the old record was found gone and proves nothing: left standing, it
/// would make the logged-out id look moved.
async fn rotated_away(
    core: &Core,
    old_key: &StorageKey,
    id: SessionId,
    next: Arc<Stored>,
) -> Answer {
    let own = match live_marker(core, old_key)
        .await?
        .as_ref()
        .map(marker::moved_to)
    {
        Some(to) if to != Some(next.key) => return Ok(Outcome::Rotated(id, next)),
        Some(_) => true,
        None => false,
    };
    traced("delete", Some(&next.key), core.store.delete(&next.key)).await?;
    if own {
        let marker = marker::marker_key(old_key);
        traced("delete", Some(&marker), core.store.delete(&marker)).await?;
    }
    Ok(Outcome::Gone { clear: true })
}
