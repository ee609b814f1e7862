//! What travels through the write path: each write with the typed slot
//! its caller waits on. A leaf: it imports nothing else of the write path,
//! and every other module of it imports these types from here.
//!
//! Each kind of write answers with its own type (a create whether it
//! wrote, a save its [`SaveOutcome`], a delete the expiry of the row it
//! removed …), so the store matches every answer exhaustively and no
//! runner can hand a write the answer of another kind.

use std::sync::Arc;

use session_core::{Error, StorageKey};
use tokio::sync::oneshot;

use crate::codec::Row;
use crate::deadline::Claim;

/// The outcome of a compare-and-set save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaveOutcome {
    /// Written.
    Saved,
    /// A live row holds another version.
    Conflict,
    /// No live row.
    NotFound,
    /// A live row whose data is not valid JSON: left as it is.
    Unreadable,
}

/// A new expiry for a live row.
#[derive(Debug)]
pub(crate) struct Touch {
    pub(crate) key: StorageKey,
    pub(crate) expires_at: i64,
}

/// One write, with the reply its caller waits on.
#[derive(Debug)]
pub(crate) enum Write {
    /// Insert, or replace a row that is no longer live; answers whether it
    /// wrote.
    Create(Row, Reply<bool>),
    /// Compare-and-set on the row's version.
    Save(Row, Reply<SaveOutcome>),
    /// Move the expiry of a live row; answers whether a row moved.
    Touch(Touch, Reply<bool>),
    /// Remove a row, live or not; answers the removed row's `expires_at`.
    Delete(StorageKey, Reply<Option<i64>>),
    /// Remove a user's rows; answers the `expires_at` of each.
    DeleteByUser(String, Reply<Vec<i64>>),
    /// Remove up to this many expired rows; answers how many went.
    Sweep(i64, Reply<u64>),
}

/// A write, the instant it was issued at, and its caller's deadline.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) write: Write,
    /// Milliseconds since the epoch when the caller issued the write.
    pub(crate) now: i64,
    /// Whether the write may still be committed (see [`Claim`]).
    pub(crate) claim: Arc<Claim>,
}

/// Where one write's result goes: kept until the batch is settled (a
/// failed commit replaces it), then sent to the caller.
#[derive(Debug)]
pub(crate) struct Reply<T> {
    result: Option<Result<T, Error>>,
    sender: oneshot::Sender<Result<T, Error>>,
}

/// A write that no runner settled: cannot happen (every plan covers every
/// write), but answered with an error rather than a panic.
#[derive(Debug, thiserror::Error)]
#[error("internal error: the SQLite writer skipped this write")]
struct NotRun;

impl<T> Reply<T> {
    /// A reply and the receiver its caller waits on.
    pub(crate) fn channel() -> (Self, oneshot::Receiver<Result<T, Error>>) {
        let (sender, receiver) = oneshot::channel();
        let reply = Self {
            result: None,
            sender,
        };
        (reply, receiver)
    }

    /// Records the write's result, replacing any earlier one.
    pub(crate) fn settle(&mut self, result: Result<T, Error>) {
        self.result = Some(result);
    }

    /// Whether a result is recorded.
    pub(crate) fn is_settled(&self) -> bool {
        self.result.is_some()
    }

    /// Forgets the recorded result: the write runs again.
    fn reset(&mut self) {
        self.result = None;
    }

    fn send(self, operation: &'static str) {
        let result = self
            .result
            .unwrap_or_else(|| Err(Error::backend(crate::NAME, operation, false, NotRun)));
        // The caller may have given up waiting; nothing to do then.
        let _ = self.sender.send(result);
    }
}

impl Write {
    /// The name of the store operation that issued the write, for errors.
    pub(crate) fn operation(&self) -> &'static str {
        match self {
            Write::Create(..) => "create",
            Write::Save(..) => "save",
            Write::Touch(..) => "touch",
            Write::Delete(..) => "delete",
            Write::DeleteByUser(..) => "delete_by_user",
            Write::Sweep(..) => "delete_expired",
        }
    }

    /// The key the write names, if it names exactly one.
    pub(crate) fn key(&self) -> Option<&StorageKey> {
        match self {
            Write::Create(row, _) | Write::Save(row, _) => Some(&row.key),
            Write::Touch(touch, _) => Some(&touch.key),
            Write::Delete(key, _) => Some(key),
            Write::DeleteByUser(..) | Write::Sweep(..) => None,
        }
    }

    /// Whether the write has a result.
    pub(crate) fn is_settled(&self) -> bool {
        match self {
            Write::Create(_, reply) | Write::Touch(_, reply) => reply.is_settled(),
            Write::Save(_, reply) => reply.is_settled(),
            Write::Delete(_, reply) => reply.is_settled(),
            Write::DeleteByUser(_, reply) => reply.is_settled(),
            Write::Sweep(_, reply) => reply.is_settled(),
        }
    }

    /// Forgets the write's result: it runs again (its batch was not
    /// committed).
    pub(crate) fn reset(&mut self) {
        match self {
            Write::Create(_, reply) | Write::Touch(_, reply) => reply.reset(),
            Write::Save(_, reply) => reply.reset(),
            Write::Delete(_, reply) => reply.reset(),
            Write::DeleteByUser(_, reply) => reply.reset(),
            Write::Sweep(_, reply) => reply.reset(),
        }
    }

    /// Fails the write with `error`, replacing any result it had.
    pub(crate) fn fail(&mut self, error: Error) {
        match self {
            Write::Create(_, reply) | Write::Touch(_, reply) => reply.settle(Err(error)),
            Write::Save(_, reply) => reply.settle(Err(error)),
            Write::Delete(_, reply) => reply.settle(Err(error)),
            Write::DeleteByUser(_, reply) => reply.settle(Err(error)),
            Write::Sweep(_, reply) => reply.settle(Err(error)),
        }
    }

    /// Sends the write's result to its caller.
    pub(crate) fn answer(self) {
        let operation = self.operation();
        match self {
            Write::Create(_, reply) | Write::Touch(_, reply) => reply.send(operation),
            Write::Save(_, reply) => reply.send(operation),
            Write::Delete(_, reply) => reply.send(operation),
            Write::DeleteByUser(_, reply) => reply.send(operation),
            Write::Sweep(_, reply) => reply.send(operation),
        }
    }
}
