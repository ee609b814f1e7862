//! The cases, by the store method they exercise. Each is a public async
//! function taking a [`Context`]; [`CASES`](crate::CASES) lists
//! them all.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use session_core::{Error, Record, StorageKey};

use crate::{Context, Failure};

pub mod cookies;
pub mod create;
pub mod data;
pub mod delete;
pub mod expired;
mod hot;
pub mod lifecycle;
pub mod load;
pub mod logout;
pub mod name;
mod probe;
pub mod random;
pub mod reload;
pub mod requests;
pub mod rotation;
pub mod save;
pub mod touch;
pub mod unreadable;
pub mod users;

/// Far enough ahead that no case outlives it.
pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// Awaits a store call; an `Err` becomes a failure naming `op`.
pub(crate) async fn call<T, F>(op: impl Into<String>, fut: F) -> Result<T, Failure>
where
    F: Future<Output = Result<T, Error>>,
{
    fut.await
        .map_err(|e| Failure::new(op, "Ok(..)", format!("Err({e:?})")))
}

/// Fails with `op` unless `got == expected`.
pub(crate) fn ensure_eq<T: PartialEq + Debug>(
    op: impl Into<String>,
    expected: T,
    got: T,
) -> Result<(), Failure> {
    if got == expected {
        Ok(())
    } else {
        Err(Failure::new(
            op,
            format!("{expected:?}"),
            format!("{got:?}"),
        ))
    }
}

/// Creates `record`, failing the case on any error.
pub(crate) async fn create(cx: &Context, record: &Record) -> Result<(), Failure> {
    call(
        format!("create({:?})", record.key),
        cx.store().create(record),
    )
    .await
}

/// Loads `key`, failing the case on any error.
pub(crate) async fn load(cx: &Context, key: &StorageKey) -> Result<Option<Record>, Failure> {
    call(format!("load({key:?})"), cx.store().load(key)).await
}

/// Loads `key` and requires exactly `expected`.
pub(crate) async fn expect_record(
    cx: &Context,
    key: &StorageKey,
    expected: &Record,
) -> Result<(), Failure> {
    let got = load(cx, key).await?;
    ensure_eq(format!("load({key:?})"), Some(expected), got.as_ref())
}

/// Loads `key` and requires `None`.
pub(crate) async fn expect_absent(
    cx: &Context,
    key: &StorageKey,
    why: &str,
) -> Result<(), Failure> {
    match load(cx, key).await? {
        None => Ok(()),
        Some(record) => Err(Failure::new(
            format!("load({key:?}) {why}"),
            "None",
            format!("Some({record:?})"),
        )),
    }
}

/// Saves `record`, requiring success, and returns the new version.
pub(crate) async fn save(cx: &Context, record: &Record) -> Result<u64, Failure> {
    call(
        format!("save({:?}, version {})", record.key, record.version),
        cx.store().save(record),
    )
    .await
}

/// Requires `result` to be the error `matches` accepts, described as `want`.
pub(crate) fn expect_err<T: Debug>(
    op: impl Into<String>,
    want: &str,
    result: Result<T, Error>,
    matches: impl Fn(&Error) -> bool,
) -> Result<(), Failure> {
    match result {
        Err(e) if matches(&e) => Ok(()),
        other => Err(Failure::new(op, want, format!("{other:?}"))),
    }
}

/// Lists `user`'s sessions, failing the case on any error or on any
/// unreadable record reported.
pub(crate) async fn list(cx: &Context, user: &str) -> Result<Vec<Record>, Failure> {
    let listed = call(
        format!("list_by_user({user:?})"),
        cx.store().list_by_user(user),
    )
    .await?;
    ensure_eq(
        format!("unreadable records reported by list_by_user({user:?})"),
        Vec::<StorageKey>::new(),
        listed.unreadable,
    )?;
    Ok(listed.records)
}

/// Requires `user`'s listed sessions to be exactly `expected` (any order),
/// each equal to its stored record.
pub(crate) async fn expect_listed(
    cx: &Context,
    user: &str,
    expected: &[&Record],
) -> Result<(), Failure> {
    let mut got = list(cx, user).await?;
    got.sort_by_key(|r| r.key);
    let mut want: Vec<Record> = expected.iter().map(|r| (*r).clone()).collect();
    want.sort_by_key(|r| r.key);
    if got == want {
        return Ok(());
    }
    let want_keys: Vec<StorageKey> = want.iter().map(|r| r.key).collect();
    Err(Failure::new(
        format!("list_by_user({user:?})"),
        format!(
            "exactly {} record(s) with keys {want_keys:?}, as stored",
            want.len()
        ),
        format!("{} record(s): {got:?}", got.len()),
    ))
}
