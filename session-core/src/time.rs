//! Millisecond-precision UTC timestamps.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: whole milliseconds since the Unix epoch, UTC.
///
/// Sessions need nothing finer and nothing coarser: every backend stores
/// this integer as is (Redis `PXAT`, an SQLite `INTEGER`), so a record reads
/// back exactly as it was written.
///
/// ```
/// use std::time::Duration;
/// use session_core::Timestamp;
///
/// let t = Timestamp::from_millis(1_700_000_000_123);
/// assert_eq!(t.saturating_add(Duration::from_millis(877)).as_millis(), 1_700_000_001_000);
/// assert!(Timestamp::now() > t);
/// ```
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// The latest representable instant.
    pub const MAX: Self = Self(i64::MAX);

    /// The current wall-clock time, truncated to the millisecond. A clock
    /// set before 1970 reads as [`Timestamp::EPOCH`].
    pub fn now() -> Self {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(_) => Self::EPOCH,
        }
    }

    /// The timestamp `ms` milliseconds after the epoch (negative: before).
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// `self + d`, clamped at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// `self - d`, clamped at `i64::MIN` milliseconds.
    pub fn saturating_sub(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(ms))
    }

    /// How long from `earlier` to `self`; zero when `earlier` is not earlier.
    pub fn duration_since(self, earlier: Self) -> Duration {
        let ms = self.0.saturating_sub(earlier.0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(
            Timestamp::MAX.saturating_add(Duration::from_secs(1)),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::from_millis(5).saturating_add(Duration::MAX),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::from_millis(10).duration_since(Timestamp::from_millis(25)),
            Duration::ZERO
        );
        assert_eq!(
            Timestamp::from_millis(25).duration_since(Timestamp::from_millis(10)),
            Duration::from_millis(15)
        );
        assert_eq!(
            Timestamp::from_millis(25).saturating_sub(Duration::from_millis(30)),
            Timestamp::from_millis(-5)
        );
    }

    #[test]
    fn now_is_after_2020() {
        assert!(Timestamp::now() > Timestamp::from_millis(1_577_836_800_000));
    }
}
