//! Every call bounded in time: the operation timeout, the deadline each
//! call carries to whoever runs its statement, and what a caller can
//! conclude when the deadline passes. A leaf.
//!
//! Two clocks bound a call:
//!
//! - the server's: each pooled connection runs with a `statement_timeout`
//!   of [`statement_timeout`] (45% of the operation timeout), so a
//!   statement stuck on a lock (`LOCK TABLE`, `VACUUM FULL`, a long
//!   transaction holding the row) is cancelled *by the server*, which
//!   rolls it back and says so: a definite "nothing of it was applied";
//! - the client's: the call as a whole (waiting for a connection, for its
//!   batch, for the answer) ends at its deadline whatever the server does,
//!   for a server that does not answer at all.
//!
//! A statement is sent only within the first 45% of its call's time (its
//! [`Budget`]'s send window): one that waited longer for a connection or
//! for its batch is not sent at all. So the server's answer to any
//! statement, a cancellation included, is due by 90% of the operation
//! timeout, before the caller's deadline. When the client's deadline
//! passes all the same (the server stopped answering), the [`TimedOut`]
//! error says whether the statement had been sent: an operation whose
//! caller gave up before it was sent is never sent afterwards
//! ([`Ticket`]).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long a store call may take unless configured otherwise (the same
/// bound as the Redis store's): waiting for a connection, for a batch and
/// for the server's answer, together.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// The shortest operation timeout: PostgreSQL's `statement_timeout` counts
/// whole milliseconds, and zero would switch it off.
const MIN_OPERATION_TIMEOUT: Duration = Duration::from_millis(3);

/// `timeout`, at least [`MIN_OPERATION_TIMEOUT`].
pub(crate) fn clamp(timeout: Duration) -> Duration {
    timeout.max(MIN_OPERATION_TIMEOUT)
}

/// The `statement_timeout` the store's connections run with for an
/// operation timeout of `operation`: 45% of it (at least 1 ms). With the
/// send window of the same length, the server answers every statement
/// (or cancels it) by 90% of the operation timeout (see the module docs).
pub fn statement_timeout(operation: Duration) -> Duration {
    operation
        .mul_f64(SHARE)
        .max(Duration::from_millis(1))
        .min(Duration::from_millis(i32::MAX as u64))
}

/// The share of the operation timeout given to the server's statement
/// timeout, and the share in which a statement may be sent.
const SHARE: f64 = 0.45;

/// When a call must be over, and by when its statement must have been
/// sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    deadline: Instant,
    send_by: Instant,
}

impl Budget {
    /// The budget of a call starting now, with operation timeout
    /// `timeout`.
    pub(crate) fn starting_now(timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            deadline: now + timeout,
            send_by: now + timeout.mul_f64(SHARE),
        }
    }

    /// When the caller gives up.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether a statement sent now would be answered (or cancelled by
    /// the server) before the deadline.
    pub(crate) fn may_send(&self) -> bool {
        Instant::now() <= self.send_by
    }
}

/// A call that did not finish within its operation timeout: the source of
/// the retryable [`Error::Backend`](session_core::Error::Backend) it
/// fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "PostgreSQL: the operation timeout ({after:?}) ran out {}",
    if *.sent {
        "after the statement was sent: it may or may not have been applied"
    } else {
        "before the statement could be sent: nothing of it was applied"
    }
)]
pub struct TimedOut {
    after: Duration,
    sent: bool,
}

impl TimedOut {
    pub(crate) fn new(after: Duration, sent: bool) -> Self {
        Self { after, sent }
    }

    /// The operation timeout that passed.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// Whether the operation may have taken effect. `false` when its
    /// statement was never sent (it waited for a connection, or in the
    /// queue of its batch, past its send window): nothing of it was
    /// applied, and nothing will be. `true` when the statement was sent
    /// and no answer came in time (a server that stopped answering): it
    /// may have been applied, or may still be.
    pub fn may_have_applied(&self) -> bool {
        self.sent
    }
}

/// The statement of this operation has not been sent, and may be.
const WAITING: u8 = 0;
/// The statement has been sent (or is being sent).
const SENT: u8 = 1;
/// The caller gave up before the statement was sent: it never will be.
const ABANDONED: u8 = 2;

/// One operation's budget and whether its statement was sent, shared by
/// its caller and whoever sends it (the caller itself, or a batch's
/// sender task). Whichever comes first decides: the sender marks it sent,
/// or the caller, at its deadline, marks it abandoned.
#[derive(Debug)]
pub(crate) struct Ticket {
    budget: Budget,
    state: AtomicU8,
}

impl Ticket {
    pub(crate) fn new(budget: Budget) -> Self {
        Self {
            budget,
            state: AtomicU8::new(WAITING),
        }
    }

    /// The call's budget.
    pub(crate) fn budget(&self) -> Budget {
        self.budget
    }

    /// Marks the statement as about to be sent; `false` when the caller
    /// gave up, or its send window has passed (then it is abandoned
    /// here): then it must not be sent. A statement marked sent may be
    /// sent again (alone, after its batch's statement failed) within the
    /// window.
    pub(crate) fn send(&self) -> bool {
        if !self.budget.may_send() {
            let _ = self.swap(WAITING, ABANDONED);
            return false;
        }
        matches!(self.swap(WAITING, SENT), Ok(_) | Err(SENT))
    }

    /// The caller gives up at its deadline: whether the statement had been
    /// sent (from now on it never will be, if not).
    pub(crate) fn give_up(&self) -> bool {
        matches!(self.swap(WAITING, ABANDONED), Err(SENT))
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
        let budget = Budget::starting_now(Duration::from_secs(60));
        let sent = Ticket::new(budget);
        assert!(sent.send());
        assert!(sent.send(), "sending again (a batch's fallback) is allowed");
        assert!(sent.give_up(), "given up after it was sent: may be applied");

        let abandoned = Ticket::new(budget);
        assert!(!abandoned.give_up(), "given up before it was sent");
        assert!(!abandoned.send(), "never sent once abandoned");

        let overdue = Ticket::new(Budget::starting_now(Duration::ZERO));
        assert!(!overdue.send(), "past its send window: never sent");
        assert!(!overdue.give_up());
    }

    #[test]
    fn the_server_answers_well_before_the_client_gives_up() {
        let t = DEFAULT_OPERATION_TIMEOUT;
        let s = statement_timeout(t);
        assert_eq!(s, Duration::from_millis(1350));
        let budget = Budget::starting_now(t);
        // Sent at the end of the window, cancelled by the server after
        // its statement timeout: still 10% of the timeout to spare.
        assert!(budget.send_by + s + t / 10 <= budget.deadline);
        assert_eq!(
            statement_timeout(Duration::from_micros(10)),
            Duration::from_millis(1)
        );
    }
}
