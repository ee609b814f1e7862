//! Cases for [`SessionStore::touch`](session_core::SessionStore::touch).

use std::time::Duration;

use serde_json::json;
use session_core::Timestamp;

use super::{HOUR, call, create, ensure_eq, expect_absent, expect_listed, expect_record, save};
use crate::{Context, Outcome};

/// Touch moves `expires_at` later and changes neither data, user nor
/// version.
pub async fn touch_extends_without_changing_data_or_version(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    record.user = Some(cx.user("gina"));
    record.data.insert("kept".into(), json!([1, "two"]));
    create(&cx, &record).await?;
    record.version = save(&cx, &record).await?;
    let later = record
        .expires_at
        .saturating_add(Duration::from_millis(3_600_123));
    let touched = call("touch(live, later)", cx.store().touch(&record.key, later)).await?;
    ensure_eq("touch of a live record", true, touched)?;
    record.expires_at = later;
    expect_record(&cx, &record.key, &record).await?;
    expect_listed(&cx, &cx.user("gina"), &[&record]).await
}

/// Touch may also move the expiry earlier, as long as it stays ahead.
pub async fn touch_can_shorten_expiry(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    create(&cx, &record).await?;
    let sooner = Timestamp::now().saturating_add(Duration::from_millis(600_001));
    let touched = call("touch(live, sooner)", cx.store().touch(&record.key, sooner)).await?;
    ensure_eq("touch of a live record", true, touched)?;
    record.expires_at = sooner;
    expect_record(&cx, &record.key, &record).await
}

/// Touch of a key nothing is stored under is `false` and creates nothing.
pub async fn touch_of_missing_key_is_false_and_creates_nothing(cx: Context) -> Outcome {
    let key = cx.fresh_key()?;
    let later = Timestamp::now().saturating_add(HOUR);
    let touched = call("touch(missing)", cx.store().touch(&key, later)).await?;
    ensure_eq("touch of a missing key", false, touched)?;
    expect_absent(&cx, &key, "after touching a missing key").await
}

/// Touch of an expired record is `false` and does not revive it.
pub async fn touch_does_not_revive_expired_record(cx: Context) -> Outcome {
    let record = cx.expired_record(Duration::from_secs(5))?;
    create(&cx, &record).await?;
    let later = Timestamp::now().saturating_add(HOUR);
    let touched = call(
        "touch(expired, later)",
        cx.store().touch(&record.key, later),
    )
    .await?;
    ensure_eq("touch of an expired record", false, touched)?;
    expect_absent(&cx, &record.key, "after touching an expired record").await
}

/// Touch of a live record into the past returns `true` and makes it
/// unloadable at once.
pub async fn touch_into_past_makes_record_unloadable(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    record.user = Some(cx.user("hank"));
    create(&cx, &record).await?;
    let past = Timestamp::now().saturating_sub(Duration::from_secs(1));
    let touched = call("touch(live, past)", cx.store().touch(&record.key, past)).await?;
    ensure_eq("touch of a live record into the past", true, touched)?;
    expect_absent(&cx, &record.key, "after touching it into the past").await?;
    expect_listed(&cx, &cx.user("hank"), &[]).await
}
