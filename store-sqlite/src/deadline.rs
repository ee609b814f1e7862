//! Every call bounded in time: the operation timeout, the deadline each
//! write carries to the writer, and what a caller can conclude when the
//! deadline passes. A leaf.
//!
//! A caller waits for its answer until its deadline and no longer. A
//! write's [`Claim`] decides, between the caller giving up and the writer
//! committing, which came first: the writer commits a write only after
//! moving its claim from waiting to committing (in the connection's
//! commit hook, see `write::gate`), and a caller gives up only by moving
//! it from waiting to abandoned. So a caller that gives up before the
//! commit knows that nothing of its write was applied, nor ever will be;
//! one that gives up while its write is being committed is told that it
//! may have been.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long a store call may take unless configured otherwise (the same
/// bound as the Redis and PostgreSQL stores'): waiting for the writer (a
/// write lock another process holds included), for a pooled connection
/// and for SQLite, together.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// A call that did not finish within its operation timeout: the source of
/// the retryable [`Error::Backend`](session_core::Error::Backend) it
/// fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "no answer from SQLite within {after:?}: {}",
    if *.committing {
        "the write was being committed, so it may or may not have been applied"
    } else {
        "nothing of it was applied"
    }
)]
pub struct TimedOut {
    after: Duration,
    committing: bool,
}

impl TimedOut {
    pub(crate) fn new(after: Duration, committing: bool) -> Self {
        Self { after, committing }
    }

    /// The operation timeout that passed.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// Whether the operation may have taken effect: `true` only for a
    /// write whose commit had begun when its caller gave up (a short
    /// window, unless the disk stalls). Otherwise nothing of it was
    /// applied, and nothing will be: the writer never commits a write
    /// whose caller gave up.
    pub fn may_have_applied(&self) -> bool {
        self.committing
    }
}

/// The write waits to be committed.
const WAITING: u8 = 0;
/// The writer is committing it.
const COMMITTING: u8 = 1;
/// Its caller gave up: it is never committed.
const ABANDONED: u8 = 2;

/// One write's deadline and whether it may still be committed, shared by
/// its caller and the writer (see the module docs).
#[derive(Debug)]
pub(crate) struct Claim {
    deadline: Instant,
    state: AtomicU8,
}

impl Claim {
    pub(crate) fn new(deadline: Instant) -> Self {
        Self {
            deadline,
            state: AtomicU8::new(WAITING),
        }
    }

    /// Whether the caller still waits (it has not given up, and its
    /// deadline has not passed: at the deadline the write is abandoned
    /// here, whichever notices first).
    pub(crate) fn is_wanted(&self) -> bool {
        if Instant::now() >= self.deadline {
            let _ = self.swap(WAITING, ABANDONED);
        }
        self.state.load(Ordering::Acquire) != ABANDONED
    }

    /// The writer is about to commit the write: `false` when its caller
    /// gave up, and then it must not be.
    pub(crate) fn commit(&self) -> bool {
        self.is_wanted() && matches!(self.swap(WAITING, COMMITTING), Ok(_) | Err(COMMITTING))
    }

    /// Takes back [`Claim::commit`]: the commit did not happen after all.
    pub(crate) fn uncommit(&self) {
        let _ = self.swap(COMMITTING, WAITING);
    }

    /// The caller gives up at its deadline: whether the write was being
    /// committed (from now on it never will be, if not).
    pub(crate) fn give_up(&self) -> bool {
        matches!(self.swap(WAITING, ABANDONED), Err(COMMITTING))
    }

    fn swap(&self, from: u8, to: u8) -> Result<u8, u8> {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whoever_comes_first_decides() {
        let later = Instant::now() + Duration::from_secs(60);
        let committed = Claim::new(later);
        assert!(committed.commit());
        assert!(committed.commit(), "a batch commits more than once");
        assert!(committed.give_up(), "given up while committing: may apply");

        let abandoned = Claim::new(later);
        assert!(!abandoned.give_up(), "given up before the commit");
        assert!(!abandoned.is_wanted());
        assert!(!abandoned.commit(), "never committed once abandoned");

        let taken_back = Claim::new(later);
        assert!(taken_back.commit());
        taken_back.uncommit();
        assert!(!taken_back.give_up(), "the commit was taken back");

        let overdue = Claim::new(Instant::now());
        assert!(!overdue.commit(), "past its deadline: never committed");
        assert!(!overdue.give_up());
    }
}
