//! Cases for [`SessionStore::save`](session_core::SessionStore::save):
//! compare-and-set, no resurrection, and the per-user index.

use std::time::Duration;

use serde_json::json;
use session_core::{Error, Record, Timestamp, Unstorable};

use super::{
    HOUR, call, create, ensure_eq, expect_absent, expect_err, expect_listed, expect_record, load,
    save as save_ok,
};
use crate::{Context, Failure, Outcome};

fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Conflict)
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound)
}

/// Each save returns `version + 1`, and a load shows that version.
pub async fn save_bumps_version_and_returns_it(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    create(&cx, &record).await?;
    for expected in 1..=3u64 {
        record.data.insert("step".into(), json!(expected));
        let version = save_ok(&cx, &record).await?;
        ensure_eq(format!("save #{expected} return value"), expected, version)?;
        record.version = version;
        expect_record(&cx, &record.key, &record).await?;
    }
    Ok(())
}

/// A save writes data, user, `created_at` and `expires_at`.
pub async fn save_writes_every_field(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    create(&cx, &record).await?;
    record.data.clear();
    record
        .data
        .insert("replaced".into(), json!({"all": "of it"}));
    record.user = Some(cx.user("carol"));
    record.created_at = Timestamp::from_millis(record.created_at.as_millis() - 7);
    record.expires_at = record
        .expires_at
        .saturating_add(Duration::from_millis(12_345));
    record.version = save_ok(&cx, &record).await?;
    expect_record(&cx, &record.key, &record).await
}

/// A save presenting an older version is `Conflict` and changes nothing.
pub async fn save_with_stale_version_is_conflict_and_changes_nothing(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    create(&cx, &record).await?;
    let stale = record.clone();
    record.data.insert("first".into(), json!("writer"));
    record.version = save_ok(&cx, &record).await?;
    let mut late = stale;
    late.data.insert("second".into(), json!("writer"));
    late.user = Some(cx.user("late"));
    expect_err(
        "save with version 0 after the store moved to 1",
        "Err(Conflict)",
        cx.store().save(&late).await,
        is_conflict,
    )?;
    expect_record(&cx, &record.key, &record).await?;
    expect_listed(&cx, &cx.user("late"), &[]).await
}

/// A save presenting a version the store never reached is `Conflict`.
pub async fn save_with_version_ahead_is_conflict(cx: Context) -> Outcome {
    let record = cx.live_record(HOUR)?;
    create(&cx, &record).await?;
    let mut ahead = record.clone();
    ahead.version = 7;
    ahead.data.insert("ahead".into(), json!(true));
    expect_err(
        "save with version 7 while the store holds 0",
        "Err(Conflict)",
        cx.store().save(&ahead).await,
        is_conflict,
    )?;
    expect_record(&cx, &record.key, &record).await
}

/// Of 16 concurrent saves from the same version, exactly one succeeds, the
/// rest are `Conflict`, and the winner's data is what loads.
pub async fn concurrent_saves_from_same_version_exactly_one_wins(cx: Context) -> Outcome {
    let record = cx.live_record(HOUR)?;
    create(&cx, &record).await?;
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let mut mine = record.clone();
        mine.data.insert("writer".into(), json!(writer));
        let store = cx.store_arc();
        tasks.push(tokio::spawn(async move {
            let result = store.save(&mine).await;
            (mine, result)
        }));
    }
    let mut winners = Vec::new();
    for (writer, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok((mine, Ok(version))) => winners.push((mine, version)),
            Ok((_, Err(Error::Conflict))) => {}
            other => {
                return Err(Failure::new(
                    format!("concurrent save by writer {writer}"),
                    "Ok(1) or Err(Conflict)",
                    format!("{:?}", other.map(|(_, result)| result)),
                ));
            }
        }
    }
    let [(mut winner, version)] = <[_; 1]>::try_from(winners).map_err(|winners| {
        Failure::new(
            "16 concurrent saves from version 0",
            "exactly one success",
            format!("{} successes", winners.len()),
        )
    })?;
    ensure_eq("the winning save's version", 1, version)?;
    winner.version = version;
    expect_record(&cx, &record.key, &winner).await
}

/// A save after delete is `NotFound` and does not bring the session back.
pub async fn save_after_delete_is_not_found_and_does_not_recreate(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    record.user = Some(cx.user("dave"));
    create(&cx, &record).await?;
    let deleted = call("delete", cx.store().delete(&record.key)).await?;
    ensure_eq("delete of a live record", true, deleted)?;
    record
        .data
        .insert("written after logout".into(), json!(true));
    expect_err(
        "save after delete",
        "Err(NotFound)",
        cx.store().save(&record).await,
        is_not_found,
    )?;
    expect_absent(&cx, &record.key, "after a save of a deleted session").await?;
    expect_listed(&cx, &cx.user("dave"), &[]).await
}

/// A save after the record expired is `NotFound` and does not revive it.
pub async fn save_after_expiry_is_not_found(cx: Context) -> Outcome {
    let mut record = cx.expired_record(Duration::from_secs(5))?;
    create(&cx, &record).await?;
    record.expires_at = Timestamp::now().saturating_add(HOUR);
    expect_err(
        "save of an expired record (with a future expires_at)",
        "Err(NotFound)",
        cx.store().save(&record).await,
        is_not_found,
    )?;
    expect_absent(&cx, &record.key, "after a save of an expired session").await
}

/// A save under a key that was never created is `NotFound` and creates
/// nothing.
pub async fn save_of_never_created_key_is_not_found(cx: Context) -> Outcome {
    let record = cx.live_record(HOUR)?;
    expect_err(
        "save of a never-created key",
        "Err(NotFound)",
        cx.store().save(&record).await,
        is_not_found,
    )?;
    expect_absent(&cx, &record.key, "after a save of a never-created key").await
}

/// Binding an unbound session to a user by save lists it under that user.
pub async fn save_binding_a_user_adds_to_index(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    create(&cx, &record).await?;
    let user = cx.user("erin");
    expect_listed(&cx, &user, &[]).await?;
    record.user = Some(user.clone());
    record.version = save_ok(&cx, &record).await?;
    expect_listed(&cx, &user, &[&record]).await
}

/// Moving a session from user A to user B by save lists it under B only.
pub async fn save_moving_user_updates_index(cx: Context) -> Outcome {
    let (a, b) = (cx.user("a"), cx.user("b"));
    let mut record = cx.live_record(HOUR)?;
    record.user = Some(a.clone());
    create(&cx, &record).await?;
    expect_listed(&cx, &a, &[&record]).await?;
    record.user = Some(b.clone());
    record.version = save_ok(&cx, &record).await?;
    expect_listed(&cx, &a, &[]).await?;
    expect_listed(&cx, &b, &[&record]).await?;
    let removed = call(
        format!("delete_by_user({a:?})"),
        cx.store().delete_by_user(&a),
    )
    .await?;
    ensure_eq("delete_by_user of the former user", 0, removed)?;
    let loaded = load(&cx, &record.key).await?;
    ensure_eq(
        "load after delete_by_user of the former user",
        Some(&record),
        loaded.as_ref(),
    )
}

/// Unbinding a session (user set to `None`) by save removes it from the
/// former user's list.
pub async fn save_unbinding_user_removes_from_index(cx: Context) -> Outcome {
    let user = cx.user("frank");
    let mut record = cx.live_record(HOUR)?;
    record.user = Some(user.clone());
    create(&cx, &record).await?;
    record.user = None;
    record.version = save_ok(&cx, &record).await?;
    expect_listed(&cx, &user, &[]).await?;
    expect_record(&cx, &record.key, &record).await
}

/// A save whose successor version would be above [`Record::MAX_VERSION`]
/// is [`Error::Unstorable`] and changes nothing.
pub async fn save_with_unstorable_version_is_refused(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    record.version = Record::MAX_VERSION;
    super::create(&cx, &record).await?;
    for version in [Record::MAX_VERSION, u64::MAX] {
        let mut attempt = record.clone();
        attempt.version = version;
        attempt.data.insert("changed".into(), json!(true));
        expect_err(
            format!("save at version {version}"),
            "Err(Unstorable(Version))",
            cx.store().save(&attempt).await,
            |e| matches!(e, Error::Unstorable(Unstorable::Version { .. })),
        )?;
        expect_record(&cx, &record.key, &record).await?;
    }
    Ok(())
}

/// A save whose `expires_at` is not in the future retires the record at
/// once (a version-checked delete): it no longer loads, is no longer
/// listed, and a later save is `NotFound`. At a stale version it is a
/// conflict like any save, and the record stays.
pub async fn save_with_past_expiry_retires_the_record(cx: Context) -> Outcome {
    let user = cx.user("pia");
    let mut record = cx.live_record(HOUR)?;
    record.user = Some(user.clone());
    create(&cx, &record).await?;
    record.version = save_ok(&cx, &record).await?;

    let mut stale = record.clone();
    stale.version = record.version - 1;
    stale.expires_at = Timestamp::now();
    expect_err(
        "save with a past expiry at a stale version",
        "Err(Conflict)",
        cx.store().save(&stale).await,
        is_conflict,
    )?;
    expect_record(&cx, &record.key, &record).await?;

    let mut retired = record.clone();
    retired.expires_at = Timestamp::now().saturating_sub(Duration::from_millis(1));
    save_ok(&cx, &retired).await?;
    expect_absent(&cx, &record.key, "after a save with a past expiry").await?;
    expect_listed(&cx, &user, &[]).await?;
    let mut later = record.clone();
    later.version += 1;
    later.expires_at = Timestamp::now().saturating_add(HOUR);
    expect_err(
        "save after the record was retired",
        "Err(NotFound)",
        cx.store().save(&later).await,
        is_not_found,
    )?;
    expect_absent(&cx, &record.key, "after a save of a retired record").await
}
