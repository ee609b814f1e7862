//! Cases for [`SessionStore::create`](session_core::SessionStore::create).

use std::time::Duration;

use serde_json::json;
use session_core::{Error, Record, Timestamp, Unstorable};

use super::{HOUR, call, create as create_ok, expect_absent, expect_err, expect_record, load};
use crate::{Context, Failure, Outcome};

/// Create, then load: every field comes back equal (data, user, both
/// timestamps to the millisecond, and the version as given).
pub async fn create_then_load_round_trips_every_field(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    record.user = Some(cx.user("alice"));
    record.version = 5;
    record.created_at = Timestamp::from_millis(record.created_at.as_millis() - 1_234);
    record.expires_at = Timestamp::from_millis(record.expires_at.as_millis() + 567);
    record.data.insert("cart".into(), json!([1, 2, 3]));
    record.data.insert("csrf".into(), json!("x".repeat(43)));
    create_ok(&cx, &record).await?;
    expect_record(&cx, &record.key, &record).await
}

/// A create on a key held by a live record is `Exists`, and the original
/// record is untouched.
pub async fn create_on_taken_key_is_exists_and_keeps_original(cx: Context) -> Outcome {
    let original = cx.live_record(HOUR)?;
    create_ok(&cx, &original).await?;
    let mut intruder = original.clone();
    intruder.data.insert("evil".into(), json!(true));
    intruder.user = Some(cx.user("mallory"));
    intruder.expires_at = original.expires_at.saturating_add(HOUR);
    intruder.version = 9;
    expect_err(
        "create on a taken key",
        "Err(Exists)",
        cx.store().create(&intruder).await,
        |e| matches!(e, Error::Exists),
    )?;
    expect_record(&cx, &original.key, &original).await
}

/// A key held only by an expired record counts as absent: create succeeds
/// and the new record is what loads.
pub async fn create_over_expired_record_succeeds(cx: Context) -> Outcome {
    let old = cx.expired_record(Duration::from_secs(60))?;
    create_ok(&cx, &old).await?;
    let mut fresh = cx.live_record(HOUR)?;
    fresh.key = old.key;
    fresh.data.insert("fresh".into(), json!(true));
    call("create over an expired record", cx.store().create(&fresh)).await?;
    expect_record(&cx, &fresh.key, &fresh).await
}

/// 64 concurrent creates of distinct keys all succeed and all load back.
pub async fn concurrent_creates_of_distinct_keys_all_land(cx: Context) -> Outcome {
    let mut records = Vec::new();
    for i in 0..64 {
        let mut record = cx.live_record(HOUR)?;
        record.data.insert("i".into(), json!(i));
        records.push(record);
    }
    let mut tasks = Vec::new();
    for record in records.clone() {
        let store = cx.store_arc();
        tasks.push(tokio::spawn(async move { store.create(&record).await }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(())) => {}
            other => {
                return Err(Failure::new(
                    format!("concurrent create #{i}"),
                    "Ok(())",
                    format!("{other:?}"),
                ));
            }
        }
    }
    for record in &records {
        let got = load(&cx, &record.key).await?;
        if got.as_ref() != Some(record) {
            return Err(Failure::new(
                format!("load({:?}) after 64 concurrent creates", record.key),
                format!("{record:?}"),
                format!("{got:?}"),
            ));
        }
    }
    Ok(())
}

/// A version above [`Record::MAX_VERSION`] is [`Error::Unstorable`] and
/// writes nothing; [`Record::MAX_VERSION`] itself round-trips.
pub async fn create_with_unstorable_version_is_refused(cx: Context) -> Outcome {
    for version in [Record::MAX_VERSION + 1, u64::MAX] {
        let mut record = cx.live_record(HOUR)?;
        record.version = version;
        expect_err(
            format!("create at version {version}"),
            "Err(Unstorable(Version))",
            cx.store().create(&record).await,
            |e| matches!(e, Error::Unstorable(Unstorable::Version { .. })),
        )?;
        expect_absent(&cx, &record.key, "after a refused create").await?;
    }
    let mut record = cx.live_record(HOUR)?;
    record.version = Record::MAX_VERSION;
    create_ok(&cx, &record).await?;
    expect_record(&cx, &record.key, &record).await
}
