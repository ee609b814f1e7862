//! Many writes per statement: runs a batch of writes as a few multi-row
//! statements.
//!
//! The batch is [planned](super::plan) into rounds of writes on pairwise
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
//! ([`super::single`]), so a write that fails fails alone. Inside a
//! transaction, an error that may have rolled back the whole transaction
//! instead voids the batch: [`run`] returns it, and the writer rolls back
//! and fails every write.

//!
//! A round is first split by kind into typed groups ([`Groups`]): each
//! runner below sees only writes of its kind, and settles each with that
//! kind's answer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use session_core::StorageKey;
use sqlx::SqlStr;
use sqlx::sqlite::SqliteConnection;

use super::plan::{Step, plan};
use super::single;
use super::types::{Job, Reply, SaveOutcome, Touch, Write};
use crate::codec::Row;
use crate::error::{is_busy, map_sqlx, voids_transaction};
use crate::schema::Statements;
use crate::schema::params::{self, MAX_PAYLOAD};

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

/// Roughly how many payload bytes a write without a record takes (a key
/// as hex, an integer, separators).
const KEYED_SIZE: usize = 160;

/// Whether `jobs` need an explicit transaction to share one commit: false
/// when the plan is a single multi-row statement (one round of one kind of
/// write, small enough for one payload), which commits atomically by
/// itself. A group of saves may still need a second update (a changed
/// user) and a probe; like a lone save's, those run as statements of
/// their own, each on the one writer connection.
pub(crate) fn needs_transaction(jobs: &[Job]) -> bool {
    let steps = plan(jobs.iter().map(|job| &job.write));
    let [Step::Round(round)] = steps.as_slice() else {
        return true;
    };
    let writes = || {
        round
            .iter()
            .filter_map(|&i| jobs.get(i))
            .map(|job| &job.write)
    };
    let kind = |write: &Write| std::mem::discriminant(write);
    let first = writes().next().map(kind);
    let one_kind = writes().all(|write| Some(kind(write)) == first);
    // `chunks` keeps a group whole exactly when it has one write or fits.
    let bytes: usize = writes().map(size).sum();
    !(one_kind && (round.len() <= 1 || bytes <= MAX_PAYLOAD))
}

/// Roughly how many payload bytes `write` adds to its statement.
fn size(write: &Write) -> usize {
    match write {
        Write::Create(row, _) | Write::Save(row, _) => params::size(row),
        _ => KEYED_SIZE,
    }
}

/// Runs `jobs` as planned, settling each job's reply; `Err` when, in
/// [`Mode::Transaction`], a statement failed in a way that may have rolled
/// back the whole transaction (the caller must then roll back and fail
/// every job), or, in [`Mode::Autocommit`], a statement found the
/// database locked (the caller fails the jobs not settled).
pub(crate) async fn run(
    conn: &mut SqliteConnection,
    sql: &Statements,
    mode: Mode<'_>,
    jobs: &mut [Job],
) -> Result<(), sqlx::Error> {
    let steps = plan(jobs.iter().map(|job| &job.write));
    let mut runner = Runner { conn, sql, mode };
    for step in steps {
        match step {
            Step::Alone(i) => {
                if let Some(job) = jobs.get_mut(i) {
                    runner.alone(job).await?;
                }
            }
            Step::Round(round) => {
                // A round lists its writes in batch order.
                let members = jobs
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| round.binary_search(i).is_ok())
                    .map(|(_, job)| job);
                runner.round(Groups::of(members)).await?;
            }
        }
    }
    Ok(())
}

/// One keyed write of a round, typed by its kind: what it writes, where
/// its answer goes, and when it was issued.
struct Item<'j, I, O> {
    input: &'j I,
    reply: &'j mut Reply<O>,
    now: i64,
}

/// The keyed writes of one round, by kind.
struct Groups<'j> {
    creates: Vec<Item<'j, Row, bool>>,
    saves: Vec<Item<'j, Row, SaveOutcome>>,
    touches: Vec<Item<'j, Touch, bool>>,
    deletes: Vec<Item<'j, StorageKey, Option<i64>>>,
}

impl<'j> Groups<'j> {
    fn of(jobs: impl Iterator<Item = &'j mut Job>) -> Self {
        let mut groups = Groups {
            creates: Vec::new(),
            saves: Vec::new(),
            touches: Vec::new(),
            deletes: Vec::new(),
        };
        for job in jobs {
            let now = job.now;
            match &mut job.write {
                Write::Create(input, reply) => groups.creates.push(Item { input, reply, now }),
                Write::Save(input, reply) => groups.saves.push(Item { input, reply, now }),
                Write::Touch(input, reply) => groups.touches.push(Item { input, reply, now }),
                Write::Delete(input, reply) => groups.deletes.push(Item { input, reply, now }),
                // The planner gives these steps of their own, never a round;
                // were one here, it would be answered as not run.
                Write::DeleteByUser(..) | Write::Sweep(..) => {}
            }
        }
        groups
    }
}

/// `items` cut into runs whose payload stays under [`MAX_PAYLOAD`] (a
/// single write larger than that runs alone).
fn chunks<'j, I, O>(
    items: Vec<Item<'j, I, O>>,
    size: impl Fn(&I) -> usize,
) -> Vec<Vec<Item<'j, I, O>>> {
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = size(item.input);
        if !chunk.is_empty() && bytes + size > MAX_PAYLOAD {
            chunks.push(std::mem::take(&mut chunk));
            bytes = 0;
        }
        chunk.push(item);
        bytes += size;
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// The latest `now` of `items`: every write of the batch was issued before
/// its statement runs, so that instant lies inside each write's call.
fn latest<I, O>(items: &[Item<'_, I, O>]) -> i64 {
    items.iter().map(|item| item.now).max().unwrap_or(i64::MIN)
}

fn encode(payload: Result<String, serde_json::Error>) -> Result<String, sqlx::Error> {
    payload.map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

struct Runner<'c> {
    conn: &'c mut SqliteConnection,
    sql: &'c Statements,
    mode: Mode<'c>,
}

impl Runner<'_> {
    /// Whether `error` (just raised) rolled back, or may have rolled back,
    /// the transaction, or, in autocommit mode (where a failed statement
    /// undoes only itself), found the database locked by another
    /// connection: then every other write would wait for the lock again,
    /// and the run ends.
    fn voids(&self, error: &sqlx::Error) -> bool {
        match self.mode {
            Mode::Autocommit => is_busy(error),
            Mode::Transaction(rolled_back) => {
                voids_transaction(error) || rolled_back.load(Ordering::Acquire)
            }
        }
    }

    /// After a multi-row statement of `writes` writes failed with `error`:
    /// `Err` when the error voids the transaction, else `Ok`, and the
    /// caller runs the writes it has not settled one by one.
    fn fall_back(&self, error: sqlx::Error, writes: usize) -> Result<(), sqlx::Error> {
        if self.voids(&error) {
            return Err(error);
        }
        tracing::debug!(%error, writes, "batched write failed; running its writes one by one");
        Ok(())
    }

    /// Runs a write that the plan puts on its own.
    async fn alone(&mut self, job: &mut Job) -> Result<(), sqlx::Error> {
        match single::apply(self.conn, self.sql, &mut job.write, job.now).await {
            Ok(()) => Ok(()),
            Err(error) if self.voids(&error) => Err(error),
            Err(error) => {
                let operation = job.write.operation();
                job.write.fail(map_sqlx(operation, error));
                Ok(())
            }
        }
    }

    /// Runs each unsettled write of `items` with its own statements (`one`,
    /// from [`single`]).
    async fn one_by_one<I, O>(
        &mut self,
        items: &mut [Item<'_, I, O>],
        operation: &'static str,
        one: impl AsyncFn(&mut SqliteConnection, &Statements, &I, i64) -> Result<O, sqlx::Error>,
    ) -> Result<(), sqlx::Error> {
        for item in items.iter_mut().filter(|item| !item.reply.is_settled()) {
            match one(self.conn, self.sql, item.input, item.now).await {
                Ok(answer) => item.reply.settle(Ok(answer)),
                Err(error) if self.voids(&error) => return Err(error),
                Err(error) => item.reply.settle(Err(map_sqlx(operation, error))),
            }
        }
        Ok(())
    }

    /// Runs one round: writes on pairwise distinct keys.
    async fn round(&mut self, groups: Groups<'_>) -> Result<(), sqlx::Error> {
        for chunk in chunks(groups.creates, params::size) {
            self.creates(chunk).await?;
        }
        for chunk in chunks(groups.saves, params::size) {
            self.saves(chunk).await?;
        }
        for chunk in chunks(groups.touches, |_| KEYED_SIZE) {
            self.touches(chunk).await?;
        }
        for chunk in chunks(groups.deletes, |_| KEYED_SIZE) {
            self.deletes(chunk).await?;
        }
        Ok(())
    }

    /// Runs `statement` on `payload` and `now`, collecting the keys it
    /// returns.
    async fn returned_keys(
        &mut self,
        statement: SqlStr,
        payload: Result<String, serde_json::Error>,
        now: i64,
    ) -> Result<HashSet<Vec<u8>>, sqlx::Error> {
        let keys: Vec<Vec<u8>> = sqlx::query_scalar(statement)
            .bind(encode(payload)?)
            .bind(now)
            .fetch_all(&mut *self.conn)
            .await?;
        Ok(keys.into_iter().collect())
    }

    /// Runs `statement`, a multi-row write whose returned keys are the
    /// writes that took effect, and settles each of `chunk` with whether
    /// its key came back; `false` when the statement failed without
    /// voiding the transaction (the caller then runs the writes one by
    /// one).
    async fn settle_returned<I>(
        &mut self,
        chunk: &mut [Item<'_, I, bool>],
        statement: SqlStr,
        payload: Result<String, serde_json::Error>,
        key: impl Fn(&I) -> &StorageKey,
    ) -> Result<bool, sqlx::Error> {
        match self.returned_keys(statement, payload, latest(chunk)).await {
            Ok(returned) => {
                for item in chunk {
                    let key = key(item.input).as_bytes().as_slice();
                    item.reply.settle(Ok(returned.contains(key)));
                }
                Ok(true)
            }
            Err(error) => {
                self.fall_back(error, chunk.len())?;
                Ok(false)
            }
        }
    }

    async fn creates(&mut self, mut chunk: Vec<Item<'_, Row, bool>>) -> Result<(), sqlx::Error> {
        if chunk.len() > 1 {
            let payload = params::records(chunk.iter().map(|item| item.input));
            let statement = self.sql.create_many();
            if self
                .settle_returned(&mut chunk, statement, payload, |row| &row.key)
                .await?
            {
                return Ok(());
            }
        }
        self.one_by_one(&mut chunk, "create", single::create).await
    }

    async fn saves(
        &mut self,
        mut chunk: Vec<Item<'_, Row, SaveOutcome>>,
    ) -> Result<(), sqlx::Error> {
        if chunk.len() > 1
            && let Err(error) = self.save_many(&mut chunk).await
        {
            self.fall_back(error, chunk.len())?;
        }
        self.one_by_one(&mut chunk, "save", single::save).await
    }

    /// The compare-and-set for many saves: the same-user form, the full
    /// form for the rows it did not change, then probes telling a conflict
    /// (a live readable row) and an unreadable row from a missing one, each
    /// statement only for the saves still open. A failed statement leaves
    /// the saves it did not settle open.
    async fn save_many(
        &mut self,
        chunk: &mut [Item<'_, Row, SaveOutcome>],
    ) -> Result<(), sqlx::Error> {
        let now = latest(chunk);
        let steps = [
            (self.sql.save_many_same_user(), true, SaveOutcome::Saved),
            (self.sql.save_many(), true, SaveOutcome::Saved),
            (self.sql.probe_many(), false, SaveOutcome::Conflict),
            (self.sql.unreadable_many(), false, SaveOutcome::Unreadable),
        ];
        for (statement, with_records, outcome) in steps {
            let mut open: Vec<&mut Item<'_, Row, SaveOutcome>> = chunk
                .iter_mut()
                .filter(|item| !item.reply.is_settled())
                .collect();
            if open.is_empty() {
                return Ok(());
            }
            let payload = if with_records {
                params::records(open.iter().map(|item| item.input))
            } else {
                params::keys(open.iter().map(|item| &item.input.key))
            };
            let hits = self.returned_keys(statement, payload, now).await?;
            for item in &mut open {
                if hits.contains(item.input.key.as_bytes().as_slice()) {
                    item.reply.settle(Ok(outcome));
                }
            }
        }
        // No live row matched the rest: the session is gone.
        for item in chunk.iter_mut().filter(|item| !item.reply.is_settled()) {
            item.reply.settle(Ok(SaveOutcome::NotFound));
        }
        Ok(())
    }

    async fn touches(&mut self, mut chunk: Vec<Item<'_, Touch, bool>>) -> Result<(), sqlx::Error> {
        if chunk.len() > 1 {
            let payload = params::expiries(
                chunk
                    .iter()
                    .map(|item| (&item.input.key, item.input.expires_at)),
            );
            let statement = self.sql.touch_many();
            if self
                .settle_returned(&mut chunk, statement, payload, |touch| &touch.key)
                .await?
            {
                return Ok(());
            }
        }
        self.one_by_one(&mut chunk, "touch", single::touch).await
    }

    async fn deletes(
        &mut self,
        mut chunk: Vec<Item<'_, StorageKey, Option<i64>>>,
    ) -> Result<(), sqlx::Error> {
        if chunk.len() > 1 {
            let removed: Result<Vec<(Vec<u8>, i64)>, sqlx::Error> =
                match encode(params::keys(chunk.iter().map(|item| item.input))) {
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
                    for item in &mut chunk {
                        let key = item.input.as_bytes().as_slice();
                        item.reply.settle(Ok(removed.get(key).copied()));
                    }
                    return Ok(());
                }
                Err(error) => self.fall_back(error, chunk.len())?,
            }
        }
        self.one_by_one(&mut chunk, "delete", single::delete).await
    }
}
