//! Cases for [`SessionStore::delete`](session_core::SessionStore::delete).

use std::time::Duration;

use super::{HOUR, call, create, ensure_eq, expect_absent, expect_listed, expect_record};
use crate::{Context, Outcome};

/// Delete of a live record is `true`; a second delete is `false`.
pub async fn delete_returns_true_then_false(cx: Context) -> Outcome {
    let record = cx.live_record(HOUR)?;
    create(&cx, &record).await?;
    let first = call("delete (first)", cx.store().delete(&record.key)).await?;
    ensure_eq("first delete", true, first)?;
    expect_absent(&cx, &record.key, "after delete").await?;
    let second = call("delete (second)", cx.store().delete(&record.key)).await?;
    ensure_eq("second delete", false, second)?;
    let never = cx.fresh_key()?;
    let missing = call("delete (never stored)", cx.store().delete(&never)).await?;
    ensure_eq("delete of a key never stored", false, missing)
}

/// Delete removes its own record and no other.
pub async fn delete_leaves_other_sessions_alone(cx: Context) -> Outcome {
    let user = cx.user("ivy");
    let mut records = Vec::new();
    for _ in 0..5 {
        let mut record = cx.live_record(HOUR)?;
        record.user = Some(user.clone());
        create(&cx, &record).await?;
        records.push(record);
    }
    let victim = records.remove(2);
    let deleted = call("delete", cx.store().delete(&victim.key)).await?;
    ensure_eq("delete of a live record", true, deleted)?;
    for record in &records {
        expect_record(&cx, &record.key, record).await?;
    }
    let survivors: Vec<_> = records.iter().collect();
    expect_listed(&cx, &user, &survivors).await
}

/// Delete of an expired record reports `false`: nothing live was removed.
pub async fn delete_of_expired_record_is_false(cx: Context) -> Outcome {
    let record = cx.expired_record(Duration::from_secs(5))?;
    create(&cx, &record).await?;
    let deleted = call("delete(expired)", cx.store().delete(&record.key)).await?;
    ensure_eq("delete of an expired record", false, deleted)?;
    expect_absent(&cx, &record.key, "after deleting an expired record").await
}

/// A deleted session disappears from its user's list.
pub async fn deleted_session_leaves_user_index(cx: Context) -> Outcome {
    let user = cx.user("jack");
    let mut keep = cx.live_record(HOUR)?;
    keep.user = Some(user.clone());
    let mut gone = cx.live_record(HOUR)?;
    gone.user = Some(user.clone());
    create(&cx, &keep).await?;
    create(&cx, &gone).await?;
    let deleted = call("delete", cx.store().delete(&gone.key)).await?;
    ensure_eq("delete of a live record", true, deleted)?;
    expect_listed(&cx, &user, &[&keep]).await
}
