//! Idle + absolute expiry, as pure functions.

use std::time::Duration;

use crate::Timestamp;

/// When sessions expire: an idle (sliding) timeout and an absolute timeout.
///
/// `expires_at = min(last_activity + idle, created_at + absolute)`.
///
/// Sliding expiry must not cost a write per read-only request, so
/// [`ExpiryPolicy::touch_due`] asks for a `touch` only when the expiry
/// would move later by more than [`ExpiryPolicy::touch_step`].
///
/// ```
/// use std::time::Duration;
/// use session_core::{ExpiryPolicy, Timestamp};
///
/// let policy = ExpiryPolicy::new(Duration::from_secs(30 * 60), Duration::from_secs(12 * 3600));
/// let created = Timestamp::from_millis(0);
/// // 30 minutes after the last activity...
/// assert_eq!(policy.expires_at(created, created).as_millis(), 30 * 60 * 1000);
/// // ...but never later than 12 hours after creation.
/// let late = Timestamp::from_millis(12 * 3600 * 1000 - 60_000);
/// assert_eq!(policy.expires_at(created, late).as_millis(), 12 * 3600 * 1000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    idle: Duration,
    absolute: Duration,
    touch_step: Duration,
}

impl Default for ExpiryPolicy {
    /// 30 minutes idle, 24 hours absolute, 1 minute touch step.
    fn default() -> Self {
        Self::new(Self::DEFAULT_IDLE, Self::DEFAULT_ABSOLUTE)
    }
}

impl ExpiryPolicy {
    /// Default idle timeout: 30 minutes.
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
    /// Default absolute timeout: 24 hours.
    pub const DEFAULT_ABSOLUTE: Duration = Duration::from_secs(24 * 3600);
    /// Default touch step: 1 minute.
    pub const DEFAULT_TOUCH_STEP: Duration = Duration::from_secs(60);

    /// A policy with the given timeouts and the default touch step.
    pub const fn new(idle: Duration, absolute: Duration) -> Self {
        Self {
            idle,
            absolute,
            touch_step: Self::DEFAULT_TOUCH_STEP,
        }
    }

    /// Sets how far the expiry must move before a read-only request pays
    /// for a `touch`. Zero touches on every request that moves it at all.
    pub const fn with_touch_step(mut self, step: Duration) -> Self {
        self.touch_step = step;
        self
    }

    /// The idle (sliding) timeout.
    pub const fn idle(&self) -> Duration {
        self.idle
    }

    /// The absolute timeout, counted from creation.
    pub const fn absolute(&self) -> Duration {
        self.absolute
    }

    /// The touch step.
    pub const fn touch_step(&self) -> Duration {
        self.touch_step
    }

    /// The absolute deadline of a session created at `created_at`.
    pub fn absolute_deadline(&self, created_at: Timestamp) -> Timestamp {
        created_at.saturating_add(self.absolute)
    }

    /// `min(last_activity + idle, created_at + absolute)`.
    pub fn expires_at(&self, created_at: Timestamp, last_activity: Timestamp) -> Timestamp {
        last_activity
            .saturating_add(self.idle)
            .min(self.absolute_deadline(created_at))
    }

    /// For a live session read at `now` whose stored expiry is `current`:
    /// the new expiry to `touch` it to, or `None` when the move would be no
    /// more than the touch step (or would not move it later at all).
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_core::{ExpiryPolicy, Timestamp};
    ///
    /// let policy = ExpiryPolicy::new(Duration::from_secs(600), Duration::from_secs(86_400));
    /// let created = Timestamp::from_millis(0);
    /// let current = policy.expires_at(created, created); // 600 s
    /// // 30 s later the expiry would move by 30 s: below the 60 s step.
    /// assert_eq!(policy.touch_due(created, current, Timestamp::from_millis(30_000)), None);
    /// // 61 s later it would move by 61 s: touch.
    /// assert_eq!(
    ///     policy.touch_due(created, current, Timestamp::from_millis(61_000)),
    ///     Some(Timestamp::from_millis(661_000)),
    /// );
    /// ```
    pub fn touch_due(
        &self,
        created_at: Timestamp,
        current: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let next = self.expires_at(created_at, now);
        (next.duration_since(current) > self.touch_step).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn ms(v: u64) -> Timestamp {
        Timestamp::from_millis(v as i64)
    }

    fn policy(idle_min: u64, abs_min: u64) -> ExpiryPolicy {
        ExpiryPolicy::new(
            Duration::from_millis(idle_min * MIN),
            Duration::from_millis(abs_min * MIN),
        )
    }

    #[test]
    fn idle_slides_with_activity() {
        let p = policy(30, 24 * 60);
        assert_eq!(p.expires_at(ms(0), ms(0)), ms(30 * MIN));
        assert_eq!(p.expires_at(ms(0), ms(10 * MIN)), ms(40 * MIN));
    }

    #[test]
    fn absolute_caps_activity() {
        let p = policy(30, 60);
        // At minute 29 the idle deadline (59) is still under the cap (60).
        assert_eq!(p.expires_at(ms(0), ms(29 * MIN)), ms(59 * MIN));
        // Exactly at the boundary both agree.
        assert_eq!(p.expires_at(ms(0), ms(30 * MIN)), ms(60 * MIN));
        // Past it the absolute deadline wins, however active the session.
        assert_eq!(p.expires_at(ms(0), ms(31 * MIN)), ms(60 * MIN));
        assert_eq!(p.expires_at(ms(0), ms(59 * MIN)), ms(60 * MIN));
    }

    #[test]
    fn idle_longer_than_absolute_is_capped_from_the_start() {
        let p = policy(120, 60);
        assert_eq!(p.expires_at(ms(0), ms(0)), ms(60 * MIN));
    }

    #[test]
    fn touch_boundaries() {
        let p = policy(30, 24 * 60); // step: 1 minute
        let current = p.expires_at(ms(0), ms(0));
        // Moves by exactly the step: not due (strictly more is needed).
        assert_eq!(p.touch_due(ms(0), current, ms(MIN)), None);
        // One millisecond more: due.
        assert_eq!(
            p.touch_due(ms(0), current, ms(MIN + 1)),
            Some(ms(31 * MIN + 1))
        );
        // A stored expiry already later than the policy's (say, set by a
        // longer policy): never pulled earlier by a touch.
        assert_eq!(p.touch_due(ms(0), ms(100 * MIN), ms(5 * MIN)), None);
    }

    #[test]
    fn touch_never_passes_the_absolute_deadline() {
        let p = policy(30, 60);
        // Stored expiry already at the cap: nothing to move.
        assert_eq!(p.touch_due(ms(0), ms(60 * MIN), ms(45 * MIN)), None);
        // Stored 58, now 40: next = min(70, 60) = 60, a move of 2 min: due.
        assert_eq!(
            p.touch_due(ms(0), ms(58 * MIN), ms(40 * MIN)),
            Some(ms(60 * MIN))
        );
    }

    #[test]
    fn zero_step_touches_on_any_move() {
        let p = policy(30, 24 * 60).with_touch_step(Duration::ZERO);
        let current = p.expires_at(ms(0), ms(0));
        assert_eq!(p.touch_due(ms(0), current, ms(0)), None);
        assert_eq!(p.touch_due(ms(0), current, ms(1)), Some(ms(30 * MIN + 1)));
    }

    #[test]
    fn defaults() {
        let p = ExpiryPolicy::default();
        assert_eq!(p.idle(), Duration::from_secs(1800));
        assert_eq!(p.absolute(), Duration::from_secs(86_400));
        assert_eq!(p.touch_step(), Duration::from_secs(60));
    }
}
