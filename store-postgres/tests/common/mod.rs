//! What the fault tests (`faults.rs`, `timeouts.rs`) share.
#![allow(dead_code)] // each test binary uses a subset

use std::time::Duration;

use serde_json::json;
use session_core::{Record, SessionId, Timestamp};

pub(crate) type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) const HOUR: Duration = Duration::from_secs(3600);
/// Scheduling slack on a loaded 2-core machine.
pub(crate) const SLACK: Duration = Duration::from_secs(2);

/// A fresh live record of `user`, at version 0.
pub(crate) fn record(user: Option<&str>) -> TestResult<Record> {
    let now = Timestamp::now();
    let mut record = Record::new(
        SessionId::generate()?.storage_key(),
        now,
        now.saturating_add(HOUR),
    );
    record.user = user.map(str::to_owned);
    record.data.insert("n".into(), json!(0));
    Ok(record)
}
