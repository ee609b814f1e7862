//! Cases for
//! [`SessionStore::load_if_changed`](session_core::SessionStore::load_if_changed).
//! A store may always answer by loading; what it may never do is call a
//! record unchanged that is not.

use std::time::Duration;

use serde_json::json;
use session_core::{Record, Reload, StorageKey};

use super::{HOUR, call, create, ensure_eq, load, save};
use crate::{Context, Failure, Outcome};

/// `load_if_changed(key, known)`, failing the case on any error.
async fn reload(cx: &Context, key: &StorageKey, known: &Record) -> Result<Reload, Failure> {
    call(
        format!("load_if_changed({key:?}, version {})", known.version),
        cx.store().load_if_changed(key, known),
    )
    .await
}

/// Requires `got` to be what `load` returns now: `Loaded(expected)`.
fn expect_loaded(why: &str, expected: Option<&Record>, got: Reload) -> Outcome {
    match got {
        Reload::Loaded(record) => ensure_eq(why, expected, record.as_ref()),
        other => Err(Failure::new(
            why,
            format!("Loaded({expected:?})"),
            format!("{other:?}"),
        )),
    }
}

/// A record with a user and some data, created and loaded back.
async fn created(cx: &Context) -> Result<Record, Failure> {
    let mut record = cx.live_record(HOUR)?;
    record.user = Some(cx.user("rena"));
    record.data.insert("cart".into(), json!([1, 2]));
    create(cx, &record).await?;
    load(cx, &record.key)
        .await?
        .ok_or_else(|| Failure::new("load after create", "Some(..)", "None"))
}

/// A record nobody changed is `Unchanged`, or loaded again equal.
pub async fn load_if_changed_of_an_unchanged_record_is_unchanged_or_equal(cx: Context) -> Outcome {
    let known = created(&cx).await?;
    match reload(&cx, &known.key, &known).await? {
        Reload::Unchanged => Ok(()),
        got => expect_loaded("load_if_changed of an unchanged record", Some(&known), got),
    }
}

/// After a save, the saved record: never `Unchanged`.
pub async fn load_if_changed_after_save_is_the_saved_record(cx: Context) -> Outcome {
    let known = created(&cx).await?;
    let mut next = known.clone();
    next.data.insert("cart".into(), json!([1, 2, 3]));
    next.version = save(&cx, &next).await?;
    let got = reload(&cx, &known.key, &known).await?;
    expect_loaded("load_if_changed after a save", Some(&next), got)?;
    // And the new record, known, is unchanged (or equal) in turn.
    match reload(&cx, &next.key, &next).await? {
        Reload::Unchanged => Ok(()),
        got => expect_loaded("load_if_changed of the saved record", Some(&next), got),
    }
}

/// A touch keeps the version but moves the expiry: the touched record,
/// never `Unchanged`.
pub async fn load_if_changed_after_touch_is_the_touched_record(cx: Context) -> Outcome {
    let known = created(&cx).await?;
    let later = known
        .expires_at
        .saturating_add(Duration::from_millis(61_007));
    let touched = call("touch(live, later)", cx.store().touch(&known.key, later)).await?;
    ensure_eq("touch of a live record", true, touched)?;
    let mut expected = known.clone();
    expected.expires_at = later;
    let got = reload(&cx, &known.key, &known).await?;
    expect_loaded("load_if_changed after a touch", Some(&expected), got)
}

/// After a delete, and for a record that expired, `Loaded(None)`.
pub async fn load_if_changed_of_a_deleted_or_expired_record_is_none(cx: Context) -> Outcome {
    let known = created(&cx).await?;
    call("delete(live)", cx.store().delete(&known.key)).await?;
    let got = reload(&cx, &known.key, &known).await?;
    expect_loaded("load_if_changed after a delete", None, got)?;
    let expired = cx.expired_record(Duration::from_secs(5))?;
    create(&cx, &expired).await?;
    let got = reload(&cx, &expired.key, &expired).await?;
    expect_loaded("load_if_changed of an expired record", None, got)
}
