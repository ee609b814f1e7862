//! One write at a time: the statements a write runs when it is alone in
//! its batch, or when the batched statement for its group failed and each
//! write of the group runs on its own to get its exact result.

use sqlx::sqlite::SqliteConnection;

use crate::schema::Statements;
use crate::writer::{Answer, Row, SaveOutcome, Write};

/// Runs one write's statements on the writer's connection.
pub(crate) async fn apply(
    conn: &mut SqliteConnection,
    sql: &Statements,
    write: &Write,
    now: i64,
) -> Result<Answer, sqlx::Error> {
    Ok(match write {
        Write::Create(row) => {
            let done = bind_row(sqlx::query(sql.create()), row)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Answer::Changed(done.rows_affected())
        }
        Write::Save(row) => Answer::Save(save(conn, sql, row, now).await?),
        Write::Touch { key, expires_at } => {
            let done = sqlx::query(sql.touch())
                .bind(key.as_slice())
                .bind(*expires_at)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Answer::Changed(done.rows_affected())
        }
        Write::Delete { key } => Answer::Removed(
            sqlx::query_scalar(sql.delete())
                .bind(key.as_slice())
                .fetch_all(&mut *conn)
                .await?,
        ),
        Write::DeleteByUser { user } => Answer::Removed(
            sqlx::query_scalar(sql.delete_by_user())
                .bind(user.as_str())
                .fetch_all(&mut *conn)
                .await?,
        ),
        Write::Sweep { limit } => {
            let done = sqlx::query(sql.sweep())
                .bind(now)
                .bind(*limit)
                .execute(&mut *conn)
                .await?;
            Answer::Changed(done.rows_affected())
        }
    })
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
    let live: Option<i64> = sqlx::query_scalar(sql.probe())
        .bind(row.key.as_slice())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match live {
        Some(0) => SaveOutcome::Unreadable,
        Some(_) => SaveOutcome::Conflict,
        None => SaveOutcome::NotFound,
    })
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds `?1`…`?6` in [`crate::schema::RECORD_COLUMNS`] order.
fn bind_row<'q>(query: Query<'q>, row: &'q Row) -> Query<'q> {
    query
        .bind(row.key.as_slice())
        .bind(row.user.as_deref())
        .bind(row.data.as_str())
        .bind(row.version)
        .bind(row.created_at)
        .bind(row.expires_at)
}

/// Binds the parameters of both save statements.
fn bind_save<'q>(query: Query<'q>, row: &'q Row, now: i64) -> Query<'q> {
    query
        .bind(row.key.as_slice())
        .bind(row.version)
        .bind(row.user.as_deref())
        .bind(row.data.as_str())
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(now)
}
