//! Cases for [`SessionStore::delete_expired`](session_core::SessionStore::delete_expired).

use std::time::Duration;

use super::{HOUR, call, create, expect_absent, expect_record};
use crate::{Context, Failure, Outcome};

/// `delete_expired` removes (at most) the expired records and leaves every
/// live record loadable and unchanged.
pub async fn delete_expired_removes_expired_and_keeps_live(cx: Context) -> Outcome {
    let mut expired = Vec::new();
    let mut live = Vec::new();
    for i in 0..3u64 {
        let record = cx.expired_record(Duration::from_secs(1 + i * 100))?;
        create(&cx, &record).await?;
        expired.push(record);
        let mut record = cx.live_record(HOUR)?;
        record.user = Some(cx.user("tess"));
        create(&cx, &record).await?;
        live.push(record);
    }
    let removed = call("delete_expired", cx.store().delete_expired()).await?;
    if removed > 3 {
        return Err(Failure::new(
            "delete_expired with 3 expired and 3 live records",
            "a count of at most 3 (stores with native expiry may say 0)",
            removed.to_string(),
        ));
    }
    for record in &live {
        expect_record(&cx, &record.key, record).await?;
    }
    for record in &expired {
        expect_absent(&cx, &record.key, "after delete_expired").await?;
    }
    let again = call("delete_expired (again)", cx.store().delete_expired()).await?;
    if again != 0 {
        return Err(Failure::new(
            "a second delete_expired with nothing newly expired",
            "0",
            again.to_string(),
        ));
    }
    Ok(())
}
