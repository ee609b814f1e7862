//! Cases for records the store cannot decode (a damaged row, a value
//! written by something else). They need the [`PlantUnreadable`]
//! capability, since only the store's author knows how to damage a record.
//!
//! [`PlantUnreadable`]: crate::PlantUnreadable

use session_core::{Error, Record};

use super::{HOUR, call, create, ensure_eq, expect_absent, expect_err, load};
use crate::{Context, Failure, Outcome};

/// A live record of `user` (or none), planted unreadable.
async fn planted(cx: &Context, user: Option<&str>) -> Result<Record, Failure> {
    let mut record = cx.live_record(HOUR)?;
    record.user = user.map(str::to_owned);
    record.version = 3;
    cx.plant_unreadable(&record).await?;
    Ok(record)
}

/// Requires `load(key)` to be `Decode` naming that key.
async fn expect_decode(cx: &Context, record: &Record, why: &str) -> Outcome {
    match cx.store().load(&record.key).await {
        Err(Error::Decode { key, .. }) if key == record.key => Ok(()),
        other => Err(Failure::new(
            format!("load({:?}) {why}", record.key),
            "Err(Decode) naming this key",
            format!("{other:?}"),
        )),
    }
}

/// Loading an unreadable record is `Decode` naming its key, and the
/// record stays for inspection.
pub async fn unreadable_load_is_decode_and_stays(cx: Context) -> Outcome {
    let record = planted(&cx, None).await?;
    expect_decode(&cx, &record, "of an unreadable record").await?;
    expect_decode(&cx, &record, "a second time (it must stay)").await
}

/// One unreadable record among a user's sessions does not break
/// `list_by_user`: the readable ones come back, and the unreadable one is
/// reported by key, not hidden.
pub async fn unreadable_record_is_reported_not_fatal_in_list_by_user(cx: Context) -> Outcome {
    let user = cx.user("ula");
    let mut good = cx.live_record(HOUR)?;
    good.user = Some(user.clone());
    create(&cx, &good).await?;
    let bad = planted(&cx, Some(&user)).await?;
    let listed = call(
        format!("list_by_user({user:?})"),
        cx.store().list_by_user(&user),
    )
    .await?;
    ensure_eq(
        "readable records listed beside an unreadable one",
        vec![good.clone()],
        listed.records,
    )?;
    ensure_eq(
        "unreadable keys reported by list_by_user",
        vec![bad.key],
        listed.unreadable,
    )?;
    expect_decode(&cx, &bad, "after it was listed").await
}

/// "Log out everywhere" removes a user's unreadable records too, and
/// counts them.
pub async fn unreadable_records_go_with_delete_by_user(cx: Context) -> Outcome {
    let user = cx.user("uwe");
    let mut good = cx.live_record(HOUR)?;
    good.user = Some(user.clone());
    create(&cx, &good).await?;
    let bad = planted(&cx, Some(&user)).await?;
    let other = planted(&cx, Some(&cx.user("otto"))).await?;
    let deleted = call(
        format!("delete_by_user({user:?})"),
        cx.store().delete_by_user(&user),
    )
    .await?;
    ensure_eq("sessions deleted by delete_by_user", 2, deleted)?;
    expect_absent(&cx, &good.key, "after delete_by_user").await?;
    expect_absent(&cx, &bad.key, "(the unreadable one) after delete_by_user").await?;
    expect_decode(&cx, &other, "of another user after delete_by_user").await
}

/// A save over an unreadable record is `Decode`, at the stored version or
/// any other, and the record stays as it was: a save never overwrites
/// what it could not check.
pub async fn save_over_unreadable_is_decode_and_leaves_it(cx: Context) -> Outcome {
    let bad = planted(&cx, Some(&cx.user("sal"))).await?;
    for version in [bad.version, bad.version + 1, 0] {
        let mut attempt = cx.live_record(HOUR)?;
        attempt.key = bad.key;
        attempt.version = version;
        attempt.data.insert("overwrite".into(), true.into());
        expect_err(
            format!("save over an unreadable record at version {version}"),
            "Err(Decode)",
            cx.store().save(&attempt).await,
            |e| matches!(e, Error::Decode { key, .. } if *key == bad.key),
        )?;
        expect_decode(&cx, &bad, "after a refused save").await?;
    }
    Ok(())
}

/// `delete` removes an unreadable record (the one way to get rid of it)
/// and says so.
pub async fn delete_removes_an_unreadable_record(cx: Context) -> Outcome {
    let bad = planted(&cx, None).await?;
    let deleted = call("delete(unreadable)", cx.store().delete(&bad.key)).await?;
    ensure_eq("delete of an unreadable record", true, deleted)?;
    ensure_eq(
        "load after deleting an unreadable record",
        None,
        load(&cx, &bad.key).await?,
    )
}
