//! Cases for records the store cannot decode (a damaged row, a value
//! written by something else). They need the [`PlantUnreadable`]
//! capability, since only the store's author knows how to damage a record.
//! The first five plant [`Damage::Frame`], the last four
//! [`Damage::Data`]: damage inside the data that leaves the rest of the
//! record, integrity fields included, as the store wrote it.
//!
//! [`PlantUnreadable`]: crate::PlantUnreadable

use session_core::{Error, Record};

use super::{HOUR, call, create, ensure_eq, expect_absent, expect_err, load};
use crate::{Context, Damage, Failure, Outcome};

/// A live record of `user` (or none), planted unreadable with `damage`.
/// Its data is not empty, so that damage inside it has something to
/// replace.
async fn planted(cx: &Context, user: Option<&str>, damage: Damage) -> Result<Record, Failure> {
    let mut record = cx.live_record(HOUR)?;
    record.user = user.map(str::to_owned);
    record.version = 3;
    record
        .data
        .insert("cart".into(), serde_json::json!([1, 2, 3]));
    record.data.insert("theme".into(), "dark".into());
    cx.plant_unreadable(&record, damage).await?;
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
    load_is_decode_and_stays(cx, Damage::Frame).await
}

async fn load_is_decode_and_stays(cx: Context, damage: Damage) -> Outcome {
    let record = planted(&cx, None, damage).await?;
    expect_decode(&cx, &record, "of an unreadable record").await?;
    expect_decode(&cx, &record, "a second time (it must stay)").await
}

/// One unreadable record among a user's sessions does not break
/// `list_by_user`: the readable ones come back, and the unreadable one is
/// reported by key, not hidden.
pub async fn unreadable_record_is_reported_not_fatal_in_list_by_user(cx: Context) -> Outcome {
    reported_not_fatal_in_list_by_user(cx, Damage::Frame).await
}

async fn reported_not_fatal_in_list_by_user(cx: Context, damage: Damage) -> Outcome {
    let user = cx.user("ula");
    let mut good = cx.live_record(HOUR)?;
    good.user = Some(user.clone());
    create(&cx, &good).await?;
    let bad = planted(&cx, Some(&user), damage).await?;
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
    go_with_delete_by_user(cx, Damage::Frame).await
}

async fn go_with_delete_by_user(cx: Context, damage: Damage) -> Outcome {
    let user = cx.user("uwe");
    let mut good = cx.live_record(HOUR)?;
    good.user = Some(user.clone());
    create(&cx, &good).await?;
    let bad = planted(&cx, Some(&user), damage).await?;
    let other = planted(&cx, Some(&cx.user("otto")), damage).await?;
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
    save_is_decode_and_leaves_it(cx, Damage::Frame).await
}

/// Saves over a record planted with `damage`, at its version (with its
/// user, as the request that loaded it before the damage would send it,
/// and with another user) and at other versions: each is `Decode`.
async fn save_is_decode_and_leaves_it(cx: Context, damage: Damage) -> Outcome {
    let bad = planted(&cx, Some(&cx.user("sal")), damage).await?;
    let attempts = [
        (bad.version, bad.user.clone()),
        (bad.version, None),
        (bad.version + 1, bad.user.clone()),
        (0, bad.user.clone()),
    ];
    for (version, user) in attempts {
        let mut attempt = bad.clone();
        attempt.version = version;
        attempt.user = user;
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
    let bad = planted(&cx, None, Damage::Frame).await?;
    let deleted = call("delete(unreadable)", cx.store().delete(&bad.key)).await?;
    ensure_eq("delete of an unreadable record", true, deleted)?;
    ensure_eq(
        "load after deleting an unreadable record",
        None,
        load(&cx, &bad.key).await?,
    )
}

/// Loading a record damaged inside its data (its version, user,
/// timestamps and any integrity field as the store wrote them) is
/// `Decode` naming its key, and the record stays.
pub async fn damaged_data_load_is_decode_and_stays(cx: Context) -> Outcome {
    load_is_decode_and_stays(cx, Damage::Data).await
}

/// A save over a record damaged inside its data is `Decode`, also at the
/// stored version with the stored user (what a request that loaded the
/// record before the damage sends), and the record stays as it was: a save
/// never overwrites what the store cannot read, wherever the damage is.
pub async fn save_over_damaged_data_is_decode_and_leaves_it(cx: Context) -> Outcome {
    save_is_decode_and_leaves_it(cx, Damage::Data).await
}

/// A record damaged inside its data is reported by `list_by_user` by key
/// beside the readable ones, never failing the listing.
pub async fn damaged_data_is_reported_not_fatal_in_list_by_user(cx: Context) -> Outcome {
    reported_not_fatal_in_list_by_user(cx, Damage::Data).await
}

/// "Log out everywhere" removes records damaged inside their data too,
/// and counts them.
pub async fn damaged_data_goes_with_delete_by_user(cx: Context) -> Outcome {
    go_with_delete_by_user(cx, Damage::Data).await
}

/// `load_if_changed` of an unreadable record is `Decode` naming its key,
/// also when the caller knows the record as it was planted.
pub async fn load_if_changed_of_an_unreadable_record_is_decode(cx: Context) -> Outcome {
    load_if_changed_is_decode(cx, Damage::Frame).await
}

/// `load_if_changed` of a record whose data is damaged, with its version
/// and timestamps as the caller knows them, is `Decode`, never
/// `Unchanged`: a store that answers from the version alone would hand a
/// caller's cached copy out for a record it can no longer read.
pub async fn load_if_changed_of_damaged_data_is_decode(cx: Context) -> Outcome {
    load_if_changed_is_decode(cx, Damage::Data).await
}

async fn load_if_changed_is_decode(cx: Context, damage: Damage) -> Outcome {
    let record = planted(&cx, None, damage).await?;
    match cx.store().load_if_changed(&record.key, &record).await {
        Err(Error::Decode { key, .. }) if key == record.key => Ok(()),
        other => Err(Failure::new(
            format!("load_if_changed({:?}) of an unreadable record", record.key),
            "Err(Decode) naming this key",
            format!("{other:?}"),
        )),
    }?;
    expect_decode(&cx, &record, "afterwards (it must stay)").await
}
