//! Cases for [`SessionStore::load`](session_core::SessionStore::load).

use std::time::Duration;

use session_core::Timestamp;

use super::{create, expect_absent, expect_record, load};
use crate::{Context, Failure, Outcome};

/// Loading a key nothing was stored under is `None`.
pub async fn load_of_unknown_key_is_none(cx: Context) -> Outcome {
    let key = cx.fresh_key()?;
    expect_absent(&cx, &key, "of a key never stored").await
}

/// A record whose `expires_at` is in the past loads as `None`, whether or
/// not the backend has removed it yet.
pub async fn load_past_deadline_is_none(cx: Context) -> Outcome {
    for ago in [Duration::from_millis(1), Duration::from_secs(3600)] {
        let record = cx.expired_record(ago)?;
        create(&cx, &record).await?;
        expect_absent(
            &cx,
            &record.key,
            &format!("of a record that expired {ago:?} ago"),
        )
        .await?;
    }
    Ok(())
}

/// A record that expires far in the future (ten years) loads.
pub async fn load_far_future_record(cx: Context) -> Outcome {
    let record = cx.live_record(Duration::from_secs(10 * 365 * 24 * 3600))?;
    create(&cx, &record).await?;
    expect_record(&cx, &record.key, &record).await
}

/// A record with a real deadline one second ahead loads before it and
/// disappears after it (polled every 25 ms, for at most 2 s past the
/// deadline; no fixed sleep).
pub async fn short_real_deadline_disappears(cx: Context) -> Outcome {
    let mut record = cx.live_record(Duration::from_secs(1))?;
    record.expires_at = Timestamp::now().saturating_add(Duration::from_secs(1));
    let deadline = record.expires_at;
    create(&cx, &record).await?;
    // Poll; a load issued more than this after the deadline must miss.
    let grace = Duration::from_millis(50);
    let give_up = deadline.saturating_add(Duration::from_secs(2));
    loop {
        let asked_at = Timestamp::now();
        let got = load(&cx, &record.key).await?;
        let answered_at = Timestamp::now();
        match got {
            None if answered_at < deadline => {
                return Err(Failure::new(
                    format!("load({:?}) before its deadline", record.key),
                    format!("the record (it lives until {deadline})"),
                    format!("None at {answered_at}"),
                ));
            }
            None => return Ok(()),
            Some(found) if asked_at > deadline.saturating_add(grace) => {
                return Err(Failure::new(
                    format!(
                        "load({:?}) issued {}ms after its deadline",
                        record.key,
                        asked_at.duration_since(deadline).as_millis()
                    ),
                    "None",
                    format!("Some({found:?})"),
                ));
            }
            Some(found) if found != record => {
                return Err(Failure::new(
                    format!("load({:?}) before its deadline", record.key),
                    format!("{record:?}"),
                    format!("{found:?}"),
                ));
            }
            Some(_) if answered_at > give_up => {
                return Err(Failure::new(
                    format!("polling load({:?})", record.key),
                    format!("None by {give_up}"),
                    "the record was still there",
                ));
            }
            Some(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
