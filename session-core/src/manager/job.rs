//! What a commit hands to a round ([`Job`]) and what the round answers
//! ([`Outcome`]).

use std::sync::Arc;

use super::change::{Op, Rotation};
use super::stored::Stored;
use crate::{Error, SessionId};

/// One request's commit, as a round sees it.
pub(super) struct Job {
    /// The record the request loaded.
    pub(super) base: Arc<Stored>,
    /// The request's changes, in order (shared with the request, which
    /// keeps them until the commit succeeds).
    pub(super) ops: Arc<Vec<Op>>,
    /// The rotation the request asked for, if any.
    pub(super) rotation: Option<Rotation>,
}

/// What a round did for one job.
pub(super) enum Outcome {
    /// Saved under the job's own key; the record as now stored.
    Saved(Arc<Stored>),
    /// This job's rotation moved the session to `id`.
    Rotated(SessionId, Arc<Stored>),
    /// Nothing needed writing.
    Untouched,
    /// Saved into the session this one was rotated into, whose id this
    /// request must not learn.
    Forwarded,
    /// Not saved: a login moved the session to a new owner after this
    /// request loaded it.
    Superseded,
    /// The session ended; `clear` says whether the cookie must be cleared
    /// (not when the cookie may by now hold a rotated session's id).
    Gone {
        /// Whether to clear the browser's cookie.
        clear: bool,
    },
}

/// A round's answer to one job.
pub(super) type Answer = Result<Outcome, Error>;

/// The record with the highest version among `latest` and `others` (all
/// copies of one key); `None` only when there are none.
pub(super) fn freshest<'a>(
    latest: Option<Arc<Stored>>,
    others: impl IntoIterator<Item = &'a Arc<Stored>>,
) -> Option<Arc<Stored>> {
    let mut best = latest;
    for record in others {
        if best.as_ref().is_none_or(|b| b.version < record.version) {
            best = Some(Arc::clone(record));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Record, StorageKey, Timestamp};

    fn at_version(version: u64) -> Arc<Stored> {
        let mut record = Record::new(
            StorageKey::from_bytes([7; 32]),
            Timestamp::from_millis(0),
            Timestamp::from_millis(1),
        );
        record.version = version;
        Stored::loaded(record)
    }

    #[test]
    fn freshest_is_the_highest_version() {
        let version = |r: Option<Arc<Stored>>| r.map(|r| r.version);
        let (v1, v2, v3, v4) = (at_version(1), at_version(2), at_version(3), at_version(4));
        assert_eq!(version(freshest(None, [&v1, &v3, &v2])), Some(3));
        assert_eq!(version(freshest(Some(at_version(5)), [&v3])), Some(5));
        assert_eq!(version(freshest(Some(at_version(2)), [&v4, &v1])), Some(4));
        assert_eq!(version(freshest(None, [])), None);
    }
}
