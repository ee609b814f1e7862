//! What every statement of a store needs (the pool, the statement texts,
//! the operation timeout), and running one statement within a deadline.

use std::time::Duration;

use session_core::{Error, Timestamp};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, Postgres};
use tokio::time::{Instant, timeout_at};

use crate::deadline::{Budget, TimedOut};
use crate::error::{SharedFailure, is_cancelled, is_unavailable, map_shared, map_sqlx};
use crate::schema::Statements;

/// The pool, the statement texts and the operation timeout of one store.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) sql: Statements,
    /// How long a call may take (see [`crate::deadline`]).
    pub(crate) timeout: Duration,
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

/// Why a step bounded by a deadline failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The driver or the server failed.
    Sql(sqlx::Error),
    /// The deadline passed; `sent`: after the statement was sent.
    TimedOut { sent: bool },
}

impl Failure {
    /// Whether every other statement sent now would fail the same way:
    /// the server or the connection is unavailable, the server cancelled
    /// the statement after its statement timeout (it waited on a lock),
    /// or the deadline passed.
    pub(crate) fn is_general(&self) -> bool {
        match self {
            Failure::Sql(error) => is_unavailable(error) || is_cancelled(error),
            Failure::TimedOut { .. } => true,
        }
    }
}

/// A failure shared by every operation of a batch, each answered with an
/// [`Error`] of its own.
#[derive(Debug, Clone)]
pub(crate) enum General {
    Sql(SharedFailure),
    TimedOut { sent: bool },
}

impl Shared {
    /// The budget of a call starting now.
    pub(crate) fn budget(&self) -> Budget {
        Budget::starting_now(self.timeout)
    }

    /// A pooled connection, waited for until `deadline` at most.
    pub(crate) async fn acquire(
        &self,
        deadline: Instant,
    ) -> Result<PoolConnection<Postgres>, Failure> {
        // Boxed: sqlx's acquire is a future of some kilobytes, which every
        // operation's own future would otherwise carry and move around.
        match timeout_at(deadline, Box::pin(self.pool.acquire())).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) => Err(Failure::Sql(error)),
            Err(_) => Err(Failure::TimedOut { sent: false }),
        }
    }

    /// The error `operation` fails with after the deadline passed.
    pub(crate) fn timed_out(&self, operation: &'static str, sent: bool) -> Error {
        Error::backend(
            crate::NAME,
            operation,
            true,
            TimedOut::new(self.timeout, sent),
        )
    }

    /// The error `operation` fails with after `failure`.
    pub(crate) fn error(&self, operation: &'static str, failure: Failure) -> Error {
        match failure {
            Failure::Sql(error) => map_sqlx(operation, error),
            Failure::TimedOut { sent } => self.timed_out(operation, sent),
        }
    }

    /// `failure` as one every operation of a batch can be answered with.
    pub(crate) fn general(failure: Failure) -> General {
        match failure {
            Failure::Sql(error) => General::Sql(SharedFailure(std::sync::Arc::new(error))),
            Failure::TimedOut { sent } => General::TimedOut { sent },
        }
    }

    /// The error of one operation of a batch that failed with `general`.
    pub(crate) fn general_error(&self, operation: &'static str, general: &General) -> Error {
        match general {
            General::Sql(failure) => map_shared(operation, failure),
            General::TimedOut { sent } => self.timed_out(operation, *sent),
        }
    }

    /// Runs `statement` on a pooled connection within `budget` (waiting
    /// for the connection included; not at all if the send window passed
    /// meanwhile); the failure of `operation` if not.
    pub(crate) async fn bounded<T>(
        &self,
        operation: &'static str,
        budget: Budget,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, Error> {
        let deadline = budget.deadline();
        let mut conn = self
            .acquire(deadline)
            .await
            .map_err(|f| self.error(operation, f))?;
        if !budget.may_send() {
            return Err(self.timed_out(operation, false));
        }
        let outcome = timeout_at(deadline, statement(&mut conn)).await;
        settle(outcome, &mut conn).map_err(|f| self.error(operation, f))
    }
}

/// The result of a statement run on `conn` until a deadline. A connection
/// whose statement ran out of time is closed rather than returned to the
/// pool: its state is unknown, and returning it would wait for an answer
/// from a server that may not give one.
pub(crate) fn settle<T>(
    outcome: Result<Result<T, sqlx::Error>, tokio::time::error::Elapsed>,
    conn: &mut PoolConnection<Postgres>,
) -> Result<T, Failure> {
    match outcome {
        Ok(result) => result.map_err(Failure::Sql),
        Err(_) => {
            conn.close_on_drop();
            Err(Failure::TimedOut { sent: true })
        }
    }
}
