//! Following rotation markers: where a session went that a commit found
//! gone from under its key.

use std::sync::Arc;

use super::core::Core;
use super::marker;
use super::stored::Stored;
use super::trace::traced;
use crate::{Error, StorageKey, Timestamp};

/// How many markers a commit follows at most (a session rotated that many
/// times while one request ran is treated as ended).
const MAX_HOPS: usize = 4;

/// Where the markers of a session gone from under its key lead.
pub(super) enum Followed {
    /// To this live session, moved with the same owner: changes go there.
    To(Arc<Stored>),
    /// To a session a login gave a new owner: changes are dropped.
    NewOwner,
    /// Nowhere: the session ended (logged out, expired, or the markers
    /// ran out).
    Ended,
}

/// For a session gone from under `key`: where its markers lead,
/// following at most a few.
pub(super) async fn follow(core: &Core, key: &StorageKey) -> Result<Followed, Error> {
    let mut key = *key;
    for _ in 0..MAX_HOPS {
        let Some(found) = live_marker(core, &key).await? else {
            return Ok(Followed::Ended);
        };
        let Some(to) = marker::moved_to(&found) else {
            return Ok(Followed::Ended);
        };
        if marker::new_owner(&found) {
            return Ok(Followed::NewOwner);
        }
        if let Some(record) = core.reload(&to).await? {
            return Ok(Followed::To(record));
        }
        key = to;
    }
    Ok(Followed::Ended)
}

/// The live marker a rotation left for `key`, if any.
pub(super) async fn live_marker(
    core: &Core,
    key: &StorageKey,
) -> Result<Option<crate::Record>, Error> {
    let marker = marker::marker_key(key);
    Ok(traced("load", Some(&marker), core.store.load(&marker))
        .await?
        .filter(|m| m.is_live_at(Timestamp::now())))
}
