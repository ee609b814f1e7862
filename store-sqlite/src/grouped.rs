//! Many writes per statement: runs a batch of writes as a few multi-row
//! statements.
//!
//! The batch is [planned](crate::plan) into rounds of writes on pairwise
//! distinct keys. Inside a round, all creates become one `INSERT … SELECT
//! … ON CONFLICT DO UPDATE … WHERE <expired> RETURNING key`, all saves one
//! `UPDATE … FROM … RETURNING key` (the same-user form first, then the
//! full form for the rows it did not change, then one probe that tells
//! `Conflict` from `NotFound` for the rest), all touches one `UPDATE …
//! FROM`, all deletes one `DELETE … RETURNING`. The keys a statement
//! returns are the writes that took effect; since keys in a round are
//! distinct, each returned key belongs to exactly one write.
//!
//! A group uses the latest `now` of its writes. Every write of the batch
//! was issued before the statement runs, so that instant lies inside every
//! write's call: each result is one the write could have had on its own.
//!
//! A batch whose plan takes several statements runs inside the writer's
//! `BEGIN IMMEDIATE … COMMIT`, so they share one commit; a batch that is a
//! single multi-row statement (the common case: many saves, or many
//! creates) needs no explicit transaction, since one statement commits
//! atomically by itself ([`needs_transaction`]).
//!
//! When a multi-row statement fails, SQLite undoes just that statement,
//! and each write of its group runs again on its own
//! ([`crate::single`]), so a write that fails fails alone. Inside a
//! transaction, an error that may have rolled back the whole transaction
//! instead voids the batch: [`run`] returns it, and the writer rolls back
//! and fails every write.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use session_core::Error;
use sqlx::sqlite::SqliteConnection;

use crate::error::{map_sqlx, voids_transaction};
use crate::payload;
use crate::plan::{Step, key_of, plan};
use crate::schema::Statements;
use crate::single;
use crate::writer::{Answer, Row, SaveOutcome, Write};

/// One write of a batch.
#[derive(Debug)]
pub(crate) struct Job<'a> {
    pub(crate) operation: &'static str,
    pub(crate) write: &'a Write,
    pub(crate) now: i64,
}

/// A write the plan left out: cannot happen (the plan covers every
/// write), but answered with an error rather than a panic.
#[derive(Debug, thiserror::Error)]
#[error("internal error: the SQLite writer skipped this write")]
struct NotRun;

/// What the runner has found out about one write so far.
type Slot = Option<Result<Answer, Error>>;

/// Where a batch runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode<'a> {
    /// Each statement commits as it runs: for a batch that is one
    /// multi-row statement (see [`needs_transaction`]); a failed statement
    /// undoes only itself.
    Autocommit,
    /// Inside the writer's open transaction. The flag is set by the
    /// connection's rollback hook when SQLite rolls back the whole
    /// transaction.
    Transaction(&'a AtomicBool),
}

/// Whether `jobs` need an explicit transaction to share one commit: false
/// when the plan is a single multi-row statement (one round of one kind of
/// write, small enough for one payload), which commits atomically by
/// itself. A group of saves may still need a second update (a changed
/// user) and a probe; like a lone save's, those run as statements of
/// their own, each on the one writer connection.
pub(crate) fn needs_transaction(jobs: &[Job<'_>]) -> bool {
    match plan(jobs.iter().map(|job| job.write)).as_slice() {
        [Step::Round(round)] => {
            let first = round
                .first()
                .and_then(|&i| jobs.get(i))
                .and_then(|job| kind(job.write));
            let one_kind = round
                .iter()
                .all(|&i| jobs.get(i).and_then(|job| kind(job.write)) == first);
            !(one_kind && chunks(jobs, round).len() == 1)
        }
        _ => true,
    }
}

/// Runs `jobs` as planned and returns each job's result, in order; `Err`
/// when, in [`Mode::Transaction`], a statement failed in a way that may
/// have rolled back the whole transaction (the caller must then roll back
/// and fail every job).
pub(crate) async fn run(
    conn: &mut SqliteConnection,
    sql: &Statements,
    mode: Mode<'_>,
    jobs: &[Job<'_>],
) -> Result<Vec<Result<Answer, Error>>, sqlx::Error> {
    let mut runner = Runner {
        conn,
        sql,
        mode,
        jobs,
        results: jobs.iter().map(|_| None).collect(),
    };
    for step in plan(jobs.iter().map(|job| job.write)) {
        match step {
            Step::Alone(i) => runner.one(i).await?,
            Step::Round(round) => runner.round(&round).await?,
        }
    }
    Ok(runner
        .results
        .into_iter()
        .zip(jobs)
        .map(|(slot, job)| {
            slot.unwrap_or_else(|| Err(Error::backend(job.operation, false, NotRun)))
        })
        .collect())
}

/// The record a create or save writes.
fn row_of(write: &Write) -> Option<&Row> {
    match write {
        Write::Create(row) | Write::Save(row) => Some(row),
        _ => None,
    }
}

/// `group` cut into runs whose payload stays under
/// [`payload::MAX_PAYLOAD`].
fn chunks(jobs: &[Job<'_>], group: &[usize]) -> Vec<Vec<usize>> {
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for &i in group {
        let row = jobs.get(i).and_then(|job| row_of(job.write));
        let size = row.map_or(160, payload::size);
        if !chunk.is_empty() && bytes + size > payload::MAX_PAYLOAD {
            chunks.push(std::mem::take(&mut chunk));
            bytes = 0;
        }
        chunk.push(i);
        bytes += size;
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// The kinds of keyed writes, each run as one statement per round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Save,
    Touch,
    Delete,
}

fn kind(write: &Write) -> Option<Kind> {
    match write {
        Write::Create(_) => Some(Kind::Create),
        Write::Save(_) => Some(Kind::Save),
        Write::Touch { .. } => Some(Kind::Touch),
        Write::Delete { .. } => Some(Kind::Delete),
        Write::DeleteByUser { .. } | Write::Sweep { .. } => None,
    }
}

struct Runner<'c, 'j> {
    conn: &'c mut SqliteConnection,
    sql: &'c Statements,
    mode: Mode<'c>,
    jobs: &'c [Job<'j>],
    results: Vec<Slot>,
}

impl Runner<'_, '_> {
    fn write(&self, i: usize) -> Option<&Write> {
        self.jobs.get(i).map(|job| job.write)
    }

    fn key(&self, i: usize) -> Option<&[u8]> {
        self.write(i).and_then(key_of)
    }

    fn row(&self, i: usize) -> Option<&Row> {
        self.write(i).and_then(row_of)
    }

    /// The latest `now` of the writes `indexes`.
    fn now(&self, indexes: &[usize]) -> i64 {
        indexes
            .iter()
            .filter_map(|&i| self.jobs.get(i).map(|job| job.now))
            .max()
            .unwrap_or(i64::MIN)
    }

    /// Whether `error` (just raised) rolled back, or may have rolled back,
    /// the transaction. In autocommit mode a failed statement undoes only
    /// itself.
    fn voids(&self, error: &sqlx::Error) -> bool {
        match self.mode {
            Mode::Autocommit => false,
            Mode::Transaction(rolled_back) => {
                voids_transaction(error) || rolled_back.load(Ordering::Acquire)
            }
        }
    }

    fn settle(&mut self, i: usize, result: Result<Answer, Error>) {
        if let Some(slot) = self.results.get_mut(i) {
            *slot = Some(result);
        }
    }

    /// Runs write `i` on its own.
    async fn one(&mut self, i: usize) -> Result<(), sqlx::Error> {
        let Some(job) = self.jobs.get(i) else {
            return Ok(());
        };
        match single::apply(self.conn, self.sql, job.write, job.now).await {
            Ok(answer) => self.settle(i, Ok(answer)),
            Err(error) if self.voids(&error) => return Err(error),
            Err(error) => self.settle(i, Err(map_sqlx(job.operation, error))),
        }
        Ok(())
    }

    /// After a multi-row statement failed with `error`: runs each of the
    /// unsettled writes `indexes` on its own, unless the error voids the
    /// transaction.
    async fn fallback(&mut self, error: sqlx::Error, indexes: &[usize]) -> Result<(), sqlx::Error> {
        if self.voids(&error) {
            return Err(error);
        }
        tracing::debug!(%error, writes = indexes.len(), "batched write failed; running its writes one by one");
        for &i in indexes {
            self.one(i).await?;
        }
        Ok(())
    }

    /// Runs one round: writes on pairwise distinct keys.
    async fn round(&mut self, round: &[usize]) -> Result<(), sqlx::Error> {
        for wanted in [Kind::Create, Kind::Save, Kind::Touch, Kind::Delete] {
            let group: Vec<usize> = round
                .iter()
                .copied()
                .filter(|&i| self.write(i).and_then(kind) == Some(wanted))
                .collect();
            for chunk in chunks(self.jobs, &group) {
                match (chunk.as_slice(), wanted) {
                    ([], _) => {}
                    ([i], _) => self.one(*i).await?,
                    (_, Kind::Create) => self.creates(&chunk).await?,
                    (_, Kind::Save) => self.saves(&chunk).await?,
                    (_, Kind::Touch) => self.touches(&chunk).await?,
                    (_, Kind::Delete) => self.deletes(&chunk).await?,
                }
            }
        }
        Ok(())
    }

    /// The JSON records of the writes `indexes`.
    fn records(&self, indexes: &[usize]) -> Result<String, sqlx::Error> {
        payload::records(indexes.iter().filter_map(|&i| self.row(i)))
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))
    }

    /// The JSON keys of the writes `indexes`.
    fn keys(&self, indexes: &[usize]) -> Result<String, sqlx::Error> {
        payload::keys(indexes.iter().filter_map(|&i| self.key(i)))
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))
    }

    /// Runs `statement` on `payload` and the group's `now`, collecting the
    /// keys it returns.
    async fn returned_keys(
        &mut self,
        statement: sqlx::SqlStr,
        payload: Result<String, sqlx::Error>,
        now: i64,
    ) -> Result<HashSet<Vec<u8>>, sqlx::Error> {
        let keys: Vec<Vec<u8>> = sqlx::query_scalar(statement)
            .bind(payload?)
            .bind(now)
            .fetch_all(&mut *self.conn)
            .await?;
        Ok(keys.into_iter().collect())
    }

    /// Settles each of `indexes` whose key is in `returned` with `hit`;
    /// returns the others, unsettled.
    fn settle_hits(
        &mut self,
        indexes: &[usize],
        returned: &HashSet<Vec<u8>>,
        hit: impl Fn() -> Answer,
    ) -> Vec<usize> {
        let (hits, misses): (Vec<usize>, Vec<usize>) = indexes
            .iter()
            .partition(|&&i| self.key(i).is_some_and(|key| returned.contains(key)));
        self.settle_all(&hits, hit);
        misses
    }

    /// Settles each of `indexes` with `answer`.
    fn settle_all(&mut self, indexes: &[usize], answer: impl Fn() -> Answer) {
        for &i in indexes {
            self.settle(i, Ok(answer()));
        }
    }

    /// Runs a statement that changes at most one row per write and
    /// returns the keys it changed: those writes changed one row, the
    /// others none.
    async fn changed_by(
        &mut self,
        chunk: &[usize],
        statement: sqlx::SqlStr,
        payload: Result<String, sqlx::Error>,
    ) -> Result<(), sqlx::Error> {
        match self
            .returned_keys(statement, payload, self.now(chunk))
            .await
        {
            Ok(returned) => {
                let unchanged = self.settle_hits(chunk, &returned, || Answer::Changed(1));
                self.settle_all(&unchanged, || Answer::Changed(0));
                Ok(())
            }
            Err(error) => self.fallback(error, chunk).await,
        }
    }

    async fn creates(&mut self, chunk: &[usize]) -> Result<(), sqlx::Error> {
        let payload = self.records(chunk);
        self.changed_by(chunk, self.sql.create_many(), payload)
            .await
    }

    async fn saves(&mut self, chunk: &[usize]) -> Result<(), sqlx::Error> {
        let now = self.now(chunk);
        let mut open = chunk.to_vec();
        for statement in [self.sql.save_many_same_user(), self.sql.save_many()] {
            let payload = self.records(&open);
            match self.returned_keys(statement, payload, now).await {
                Ok(returned) => {
                    open = self.settle_hits(&open, &returned, || Answer::Save(SaveOutcome::Saved));
                }
                Err(error) => return self.fallback(error, &open).await,
            }
            if open.is_empty() {
                return Ok(());
            }
        }
        // Nothing matched these: a live readable row with another version
        // is a conflict, a live unreadable row is left alone, no live row
        // means the session is gone.
        for (statement, outcome) in [
            (self.sql.probe_many(), SaveOutcome::Conflict),
            (self.sql.unreadable_many(), SaveOutcome::Unreadable),
        ] {
            let payload = self.keys(&open);
            match self.returned_keys(statement, payload, now).await {
                Ok(live) => open = self.settle_hits(&open, &live, || Answer::Save(outcome)),
                Err(error) => return self.fallback(error, &open).await,
            }
            if open.is_empty() {
                return Ok(());
            }
        }
        self.settle_all(&open, || Answer::Save(SaveOutcome::NotFound));
        Ok(())
    }

    async fn touches(&mut self, chunk: &[usize]) -> Result<(), sqlx::Error> {
        let payload = payload::expiries(chunk.iter().filter_map(|&i| match self.write(i) {
            Some(Write::Touch { key, expires_at }) => Some((key.as_slice(), *expires_at)),
            _ => None,
        }))
        .map_err(|e| sqlx::Error::Encode(Box::new(e)));
        self.changed_by(chunk, self.sql.touch_many(), payload).await
    }

    async fn deletes(&mut self, chunk: &[usize]) -> Result<(), sqlx::Error> {
        let removed: Result<Vec<(Vec<u8>, i64)>, sqlx::Error> = match self.keys(chunk) {
            Ok(payload) => {
                sqlx::query_as(self.sql.delete_many())
                    .bind(payload)
                    .fetch_all(&mut *self.conn)
                    .await
            }
            Err(error) => Err(error),
        };
        match removed {
            Ok(removed) => {
                let removed: HashMap<Vec<u8>, i64> = removed.into_iter().collect();
                for &i in chunk {
                    let expiries = self
                        .key(i)
                        .and_then(|key| removed.get(key))
                        .map_or_else(Vec::new, |&e| vec![e]);
                    self.settle(i, Ok(Answer::Removed(expiries)));
                }
                Ok(())
            }
            Err(error) => self.fallback(error, chunk).await,
        }
    }
}
