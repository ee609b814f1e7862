//! Cases for what a record carries: large, unicode, nested and empty
//! data, and timestamps to the millisecond.

use std::time::Duration;

use serde_json::{Value, json};
use session_core::{Data, Timestamp};

use super::{HOUR, create, expect_record, save};
use crate::{Context, Outcome};

async fn round_trip(cx: &Context, data: Data) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    record.data = data;
    create(cx, &record).await?;
    expect_record(cx, &record.key, &record).await?;
    // And through a save, which may take another code path.
    record.data.insert("saved".into(), json!(true));
    record.version = save(cx, &record).await?;
    expect_record(cx, &record.key, &record).await
}

/// A data map of 1 MiB (16 values of 64 KiB) round-trips through create
/// and save.
pub async fn one_mebibyte_data_round_trips(cx: Context) -> Outcome {
    let mut data = Data::new();
    for i in 0..16u8 {
        let fill = char::from(b'a' + i);
        data.insert(
            format!("chunk{i:02}"),
            Value::String(fill.to_string().repeat(64 * 1024)),
        );
    }
    round_trip(&cx, data).await
}

/// Unicode keys and values (and characters JSON must escape) round-trip.
pub async fn unicode_keys_and_values_round_trip(cx: Context) -> Outcome {
    let mut data = Data::new();
    data.insert("ключ".into(), json!("значение"));
    data.insert("鍵".into(), json!("値 🗝️"));
    data.insert("🦀".into(), json!("zoë, zoe\u{0308}, \u{1F600}"));
    data.insert(
        "escapes".into(),
        json!("quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7}"),
    );
    data.insert("".into(), json!("the empty key"));
    data.insert("rtl".into(), json!("\u{202E}שלום"));
    round_trip(&cx, data).await
}

/// Nested objects and arrays, and every JSON number shape, round-trip.
pub async fn nested_json_round_trips(cx: Context) -> Outcome {
    let mut data = Data::new();
    data.insert(
        "profile".into(),
        json!({
            "id": 42,
            "roles": ["admin", "editor"],
            "prefs": {"theme": {"dark": true, "accent": null}, "langs": [["ko", 1], ["en", 2]]},
        }),
    );
    data.insert(
        "numbers".into(),
        json!([
            0,
            -1,
            i64::MIN,
            i64::MAX,
            u64::MAX,
            0.1,
            -2.5e-300,
            1.7976931348623157e308
        ]),
    );
    data.insert("flags".into(), json!([true, false, null]));
    data.insert("empty".into(), json!({"object": {}, "array": []}));
    round_trip(&cx, data).await
}

/// An empty data map round-trips (as empty, not as missing).
pub async fn empty_data_round_trips(cx: Context) -> Outcome {
    round_trip(&cx, Data::new()).await
}

/// Twenty sessions with distinct data each load back their own data.
pub async fn data_of_different_sessions_never_mixes(cx: Context) -> Outcome {
    let mut records = Vec::new();
    for i in 0..20 {
        let mut record = cx.live_record(HOUR)?;
        record.data.insert("owner".into(), json!(i));
        record
            .data
            .insert(format!("only_{i}"), json!("x".repeat(i)));
        create(&cx, &record).await?;
        records.push(record);
    }
    for record in &records {
        expect_record(&cx, &record.key, record).await?;
    }
    Ok(())
}

/// `created_at` and `expires_at` keep their exact millisecond, on create
/// and on save.
pub async fn timestamps_keep_millisecond_precision(cx: Context) -> Outcome {
    let now = Timestamp::now().as_millis();
    let mut record = cx.live_record(HOUR)?;
    record.created_at = Timestamp::from_millis(now - now % 1000 - 1);
    record.expires_at = Timestamp::from_millis(now - now % 1000 + 3_600_999);
    create(&cx, &record).await?;
    expect_record(&cx, &record.key, &record).await?;
    record.expires_at = record.expires_at.saturating_add(Duration::from_millis(1));
    record.created_at = Timestamp::from_millis(record.created_at.as_millis() + 1);
    record.version = save(&cx, &record).await?;
    expect_record(&cx, &record.key, &record).await
}
