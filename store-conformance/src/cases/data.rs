//! Cases for what a record carries: large, unicode, nested and empty
//! data, and timestamps to the millisecond.

use std::time::Duration;

use serde_json::{Value, json};
use session_core::{Data, Error, Record, Timestamp, Unstorable};

use super::{HOUR, call, create, ensure_eq, expect_absent, expect_err, expect_record, save};
use crate::{Context, Outcome, generate};

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

/// Generated data loads back equal after `create` and after `save`: deep
/// nesting up to [`Record::MAX_DEPTH`], extreme integers and doubles, long
/// and non-ASCII strings, control characters, hundreds of keys, odd user
/// names. Seeded (`SESSION_SUITE_SEED`), so a failure repeats exactly.
pub async fn generated_data_round_trips(cx: Context) -> Outcome {
    let seed = generate::seed();
    let mut rng = generate::Rng::new(seed);
    for round in 0..24 {
        let mut record = cx.live_record(HOUR)?;
        record.data = generate::data(&mut rng);
        if rng.chance(50) {
            record.user = Some(format!("{}{}", generate::string(&mut rng), cx.namespace()));
        }
        let what = |step: &str| {
            format!("{step} of generated record #{round} (SESSION_SUITE_SEED={seed:#x})")
        };
        call(what("create"), cx.store().create(&record)).await?;
        let loaded = call(what("load after create"), cx.store().load(&record.key)).await?;
        ensure_eq(what("load after create"), Some(&record), loaded.as_ref())?;
        record.data = generate::data(&mut rng);
        record.version = call(what("save"), cx.store().save(&record)).await?;
        let loaded = call(what("load after save"), cx.store().load(&record.key)).await?;
        ensure_eq(what("load after save"), Some(&record), loaded.as_ref())?;
    }
    Ok(())
}

/// `n` arrays nested inside one another around a number.
fn nested(n: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..n {
        value = json!([value]);
    }
    value
}

/// Data nested exactly [`Record::MAX_DEPTH`] levels round-trips; one
/// level deeper is [`Error::Unstorable`] for `create` and for `save`, and
/// nothing is written.
pub async fn data_nested_too_deep_is_unstorable(cx: Context) -> Outcome {
    let mut record = cx.live_record(HOUR)?;
    // The data object is level 1.
    record
        .data
        .insert("deep".into(), nested(Record::MAX_DEPTH - 1));
    create(&cx, &record).await?;
    expect_record(&cx, &record.key, &record).await?;

    let too_deep = |mut r: Record| {
        r.data.insert("deep".into(), nested(Record::MAX_DEPTH));
        r
    };
    let unstorable = |e: &Error| matches!(e, Error::Unstorable(Unstorable::Depth { .. }));
    let refused = too_deep(record.clone());
    expect_err(
        "save with data one level too deep",
        "Err(Unstorable(Depth))",
        cx.store().save(&refused).await,
        unstorable,
    )?;
    expect_record(&cx, &record.key, &record).await?;
    let fresh = too_deep(cx.live_record(HOUR)?);
    expect_err(
        "create with data one level too deep",
        "Err(Unstorable(Depth))",
        cx.store().create(&fresh).await,
        unstorable,
    )?;
    expect_absent(&cx, &fresh.key, "after a refused create").await
}
