//! Cases for the per-user index:
//! [`list_by_user`](session_core::SessionStore::list_by_user) and
//! [`delete_by_user`](session_core::SessionStore::delete_by_user).

use std::time::Duration;

use session_core::Record;

use super::{HOUR, call, create, ensure_eq, expect_absent, expect_listed, expect_record};
use crate::{Context, Outcome};

async fn bound(cx: &Context, user: &str) -> Result<Record, crate::Failure> {
    let mut record = cx.live_record(HOUR)?;
    record.user = Some(user.to_owned());
    create(cx, &record).await?;
    Ok(record)
}

async fn bound_expired(cx: &Context, user: &str) -> Result<Record, crate::Failure> {
    let mut record = cx.expired_record(Duration::from_secs(5))?;
    record.user = Some(user.to_owned());
    create(cx, &record).await?;
    Ok(record)
}

/// A session created already bound to a user is listed under that user.
pub async fn create_with_user_is_listed(cx: Context) -> Outcome {
    let user = cx.user("kim");
    let record = bound(&cx, &user).await?;
    expect_listed(&cx, &user, &[&record]).await
}

/// `list_by_user` returns exactly the user's live sessions: not another
/// user's, not unbound ones, not expired or deleted ones.
pub async fn list_by_user_returns_exactly_live_sessions_of_user(cx: Context) -> Outcome {
    let (lee, max) = (cx.user("lee"), cx.user("max"));
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(bound(&cx, &lee).await?);
    }
    let theirs = [bound(&cx, &max).await?, bound(&cx, &max).await?];
    create(&cx, &cx.live_record(HOUR)?).await?; // unbound
    bound_expired(&cx, &lee).await?;
    let deleted = bound(&cx, &lee).await?;
    call("delete", cx.store().delete(&deleted.key)).await?;
    expect_listed(&cx, &lee, &mine.iter().collect::<Vec<_>>()).await?;
    expect_listed(&cx, &max, &theirs.iter().collect::<Vec<_>>()).await
}

/// A user with no sessions lists nothing.
pub async fn list_by_unknown_user_is_empty(cx: Context) -> Outcome {
    create(&cx, &cx.live_record(HOUR)?).await?;
    expect_listed(&cx, &cx.user("nobody"), &[]).await
}

/// A user whose sessions all expired lists nothing.
pub async fn expired_sessions_are_not_listed(cx: Context) -> Outcome {
    let user = cx.user("olga");
    bound_expired(&cx, &user).await?;
    let record = bound(&cx, &user).await?;
    let past = session_core::Timestamp::now().saturating_sub(Duration::from_secs(1));
    call("touch into the past", cx.store().touch(&record.key, past)).await?;
    expect_listed(&cx, &user, &[]).await
}

/// User names match exactly: case, surrounding spaces, prefixes and
/// non-ASCII characters all make a different user.
pub async fn user_names_match_exactly(cx: Context) -> Outcome {
    let names = [
        cx.user("pat"),
        cx.user("Pat"),
        cx.user("pat "),
        cx.user("pa"),
        cx.user("p:at*"),
        cx.user("zoë 🦀"),
        cx.user("zoe\u{0308} 🦀"),
    ];
    let mut records = Vec::new();
    for name in &names {
        records.push(bound(&cx, name).await?);
    }
    for (name, record) in names.iter().zip(&records) {
        expect_listed(&cx, name, &[record]).await?;
    }
    Ok(())
}

/// `delete_by_user` deletes exactly that user's sessions and returns the
/// count; other users' and unbound sessions stay.
pub async fn delete_by_user_removes_exactly_those_and_counts(cx: Context) -> Outcome {
    let (quinn, rose) = (cx.user("quinn"), cx.user("rose"));
    let mut doomed = Vec::new();
    for _ in 0..4 {
        doomed.push(bound(&cx, &quinn).await?);
    }
    let other = bound(&cx, &rose).await?;
    let unbound = cx.live_record(HOUR)?;
    create(&cx, &unbound).await?;
    let removed = call(
        format!("delete_by_user({quinn:?})"),
        cx.store().delete_by_user(&quinn),
    )
    .await?;
    ensure_eq("delete_by_user count", 4, removed)?;
    for record in &doomed {
        expect_absent(&cx, &record.key, "after delete_by_user").await?;
    }
    expect_listed(&cx, &quinn, &[]).await?;
    expect_record(&cx, &other.key, &other).await?;
    expect_listed(&cx, &rose, &[&other]).await?;
    expect_record(&cx, &unbound.key, &unbound).await
}

/// `delete_by_user` counts only sessions that were live.
pub async fn delete_by_user_counts_only_live_sessions(cx: Context) -> Outcome {
    let user = cx.user("sam");
    bound(&cx, &user).await?;
    bound(&cx, &user).await?;
    bound_expired(&cx, &user).await?;
    let removed = call(
        format!("delete_by_user({user:?})"),
        cx.store().delete_by_user(&user),
    )
    .await?;
    ensure_eq("delete_by_user count (2 live, 1 expired)", 2, removed)?;
    expect_listed(&cx, &user, &[]).await
}

/// `delete_by_user` of a user with no sessions is 0 and deletes nothing.
pub async fn delete_by_unknown_user_is_zero(cx: Context) -> Outcome {
    let record = cx.live_record(HOUR)?;
    create(&cx, &record).await?;
    let nobody = cx.user("nobody");
    let removed = call(
        format!("delete_by_user({nobody:?})"),
        cx.store().delete_by_user(&nobody),
    )
    .await?;
    ensure_eq("delete_by_user count", 0, removed)?;
    expect_record(&cx, &record.key, &record).await
}
