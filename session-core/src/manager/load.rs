//! Finding the session a request's cookies name: the well-formed ids
//! among them, tried in order, and the rotation marker of an id a
//! rotation moved away from.

use std::sync::Arc;

use super::core::Core;
use super::follow::live_marker;
use super::marker;
use super::stored::Stored;
use crate::{Error, SessionId};

/// The most session ids a request's cookies are tried for.
pub(super) const MAX_CANDIDATES: usize = 3;

/// What the request's cookies said.
pub(super) struct Incoming {
    /// The well-formed ids among the request's cookies of the session's
    /// name, in the order sent, without repeats, at most
    /// [`MAX_CANDIDATES`] (kept inline: a request
    /// with a cookie allocates nothing for it).
    pub(super) ids: Ids,
    /// Whether the request carried any cookie of the session's name.
    pub(super) sent: bool,
    /// Whether every such cookie was looked at: malformed, or among
    /// `ids` (not dropped past the limit).
    pub(super) complete: bool,
}

impl Incoming {
    /// Sorts cookie values: malformed ones are dropped (no store call
    /// ever sees them), well-formed ones kept in order, up to the limit.
    pub(super) fn from_values<V: AsRef<[u8]>>(values: impl IntoIterator<Item = V>) -> Self {
        let mut incoming = Self {
            ids: Ids::default(),
            sent: false,
            complete: true,
        };
        for value in values {
            incoming.sent = true;
            let Ok(id) = SessionId::parse_bytes(value.as_ref()) else {
                continue;
            };
            if incoming.ids.iter().any(|known| *known == id) {
                continue;
            }
            if !incoming.ids.push(id) {
                incoming.complete = false;
                break;
            }
        }
        incoming
    }
}

/// Up to [`MAX_CANDIDATES`] ids, inline.
#[derive(Default)]
pub(super) struct Ids {
    ids: [Option<SessionId>; MAX_CANDIDATES],
    len: usize,
}

impl Ids {
    /// Adds `id`; `false` (and nothing added) when full.
    fn push(&mut self, id: SessionId) -> bool {
        match self.ids.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(id);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The ids, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &SessionId> + '_ {
        self.ids.iter().take(self.len).flatten()
    }

    /// How many there are.
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

/// What the request's ids led to.
pub(super) enum Found {
    /// This id names this live session.
    Live(SessionId, Arc<Stored>),
    /// One of them was moved away from by a rotation.
    Moved,
}

/// The first of `ids` that names a live session; failing that, whether
/// one of them was moved away from by a rotation whose marker still
/// stands. At most two loads per id, and only for ids that missed.
pub(super) async fn find(core: &Core, ids: &Ids) -> Result<Option<Found>, Error> {
    for id in ids.iter() {
        if let Some(record) = core.load_alive(&id.storage_key()).await? {
            return Ok(Some(Found::Live(id.clone(), record)));
        }
    }
    for id in ids.iter() {
        let found = live_marker(core, &id.storage_key()).await?;
        if found.is_some_and(|m| marker::moved_to(&m).is_some()) {
            return Ok(Some(Found::Moved));
        }
    }
    Ok(None)
}
