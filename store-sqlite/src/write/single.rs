//! One write at a time: the statements a write runs when it is alone in
//! its batch, or when the batched statement for its group failed and each
//! write of the group runs on its own to get its exact result.
//!
//! One function per kind of write, each answering that kind's type, and
//! [`apply`], which runs any write and settles its reply.

use session_core::StorageKey;
use sqlx::sqlite::SqliteConnection;

use super::types::{SaveOutcome, Touch, Write};
use crate::codec::Row;
use crate::schema::Statements;

/// Runs `write` on its own and settles its reply; on an error the reply is
/// left unsettled and the error returned, for the caller to judge (it may
/// have rolled back the whole transaction).
pub(crate) async fn apply(
    conn: &mut SqliteConnection,
    sql: &Statements,
    write: &mut Write,
    now: i64,
) -> Result<(), sqlx::Error> {
    match write {
        Write::Create(row, reply) => reply.settle(Ok(create(conn, sql, row, now).await?)),
        Write::Save(row, reply) => reply.settle(Ok(save(conn, sql, row, now).await?)),
        Write::Touch(touch, reply) => reply.settle(Ok(self::touch(conn, sql, touch, now).await?)),
        Write::Delete(key, reply) => reply.settle(Ok(delete(conn, sql, key, now).await?)),
        Write::DeleteByUser(user, reply) => {
            reply.settle(Ok(sqlx::query_scalar(sql.delete_by_user())
                .bind(user.as_str())
                .fetch_all(&mut *conn)
                .await?))
        }
        Write::Sweep(limit, reply) => {
            let done = sqlx::query(sql.sweep())
                .bind(now)
                .bind(*limit)
                .execute(&mut *conn)
                .await?;
            reply.settle(Ok(done.rows_affected()));
        }
    }
    Ok(())
}

/// Inserts `row`, or replaces a row of its key that is no longer live at
/// `now`; whether it wrote.
pub(crate) async fn create(
    conn: &mut SqliteConnection,
    sql: &Statements,
    row: &Row,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = bind_row(sqlx::query(sql.create()), row)
        .bind(now)
        .bind(row.digest.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Compare-and-set. The common case (same user) leaves the user column,
/// and so its index, untouched; a changed user takes the full update; when
/// neither changes a row, a read on the same (writer) connection tells a
/// conflict from a missing session: no other write of this store can come
/// in between, and inside a batch's transaction none at all.
pub(crate) async fn save(
    conn: &mut SqliteConnection,
    sql: &Statements,
    row: &Row,
    now: i64,
) -> Result<SaveOutcome, sqlx::Error> {
    for statement in [sql.save_same_user(), sql.save()] {
        let done = bind_save(sqlx::query(statement), row, now)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() > 0 {
            return Ok(SaveOutcome::Saved);
        }
    }
    // 1: matches its digest; 0: not (see `crate::digest::intact`).
    let live: Option<i64> = sqlx::query_scalar(sql.probe())
        .bind(row.key.as_bytes().as_slice())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match live {
        Some(0) => SaveOutcome::Unreadable,
        Some(_) => SaveOutcome::Conflict,
        None => SaveOutcome::NotFound,
    })
}

/// Moves the expiry of a row live at `now`; whether one moved.
pub(crate) async fn touch(
    conn: &mut SqliteConnection,
    sql: &Statements,
    touch: &Touch,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(sql.touch())
        .bind(touch.key.as_bytes().as_slice())
        .bind(touch.expires_at)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Removes the row of `key`, live or not; its `expires_at` if there was
/// one. (`now` is unused: a delete removes expired rows too.)
pub(crate) async fn delete(
    conn: &mut SqliteConnection,
    sql: &Statements,
    key: &StorageKey,
    _now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    // The key is the primary key: at most one row comes back.
    let removed: Vec<i64> = sqlx::query_scalar(sql.delete())
        .bind(key.as_bytes().as_slice())
        .fetch_all(&mut *conn)
        .await?;
    Ok(removed.into_iter().next())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds `?1`…`?6` in [`crate::schema::RECORD_COLUMNS`] order (the
/// digest, `?8`, comes after `now`).
fn bind_row<'q>(query: Query<'q>, row: &'q Row) -> Query<'q> {
    query
        .bind(row.key.as_bytes().as_slice())
        .bind(row.user.as_deref())
        .bind(row.data.as_str())
        .bind(row.version)
        .bind(row.created_at)
        .bind(row.expires_at)
}

/// Binds the parameters of both save statements.
fn bind_save<'q>(query: Query<'q>, row: &'q Row, now: i64) -> Query<'q> {
    query
        .bind(row.key.as_bytes().as_slice())
        .bind(row.version)
        .bind(row.user.as_deref())
        .bind(row.data.as_str())
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(now)
        .bind(row.digest.as_str())
}
