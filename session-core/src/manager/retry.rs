//! Retries against other processes' saves: how long a commit keeps
//! replaying after a conflict, and the pauses between attempts.

use std::time::{Duration, Instant};

/// Pauses between attempts against other processes' saves: the first
/// retry at once (this manager's copy was merely stale), then randomised
/// pauses growing to 100 ms, until the budget is spent.
pub(super) struct Retry {
    started: Instant,
    budget: Duration,
    attempts: u32,
}

impl Retry {
    pub(super) fn new(budget: Duration) -> Self {
        Self {
            started: Instant::now(),
            budget,
            attempts: 0,
        }
    }

    /// Whether to try again (after the pause, if one is due).
    pub(super) async fn again(&mut self) -> bool {
        self.attempts += 1;
        if self.started.elapsed() >= self.budget {
            return false;
        }
        if self.attempts > 1 {
            let cap_ms = 1u64 << self.attempts.min(7).saturating_sub(1); // 1 .. 64 ms
            let jitter = u64::from(getrandom::u32().unwrap_or(0)) % (cap_ms * 1000 + 1);
            let pause = Duration::from_micros(jitter + cap_ms * 500)
                .min(self.budget.saturating_sub(self.started.elapsed()));
            tokio::time::sleep(pause).await;
        }
        true
    }

    /// The error of a commit whose last save conflicted once the budget
    /// was spent.
    pub(super) fn gave_up(&self, store: &'static str) -> crate::Error {
        crate::Error::gave_up(store, "commit", self.attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pauses of `Retry::again` on tokio's paused clock (exact, however
    /// busy the machine).
    async fn pauses(retry: &mut Retry, n: usize) -> Vec<Duration> {
        let mut pauses = Vec::new();
        for _ in 0..n {
            let started = tokio::time::Instant::now();
            assert!(retry.again().await, "gave up within an hour's budget");
            pauses.push(started.elapsed());
        }
        pauses
    }

    #[tokio::test(start_paused = true)]
    async fn retries_start_at_once_then_pause_randomly_growing_to_about_100_ms() {
        let ms = Duration::from_millis;
        let pauses = pauses(&mut Retry::new(Duration::from_secs(3600)), 16).await;
        assert_eq!(
            pauses[0],
            Duration::ZERO,
            "the first retry waits: {pauses:?}"
        );
        for (i, pause) in pauses.iter().enumerate().skip(1) {
            // Retry i + 1: a random pause of half to one and a half times
            // 2^i ms, at most 64 ms (the timer counts whole milliseconds).
            let cap = ms(1 << i.min(6));
            assert!(
                *pause >= cap / 2 && *pause <= cap * 3 / 2 + ms(1),
                "retry {}: paused {pause:?}, not within {:?}..={:?}: {pauses:?}",
                i + 1,
                cap / 2,
                cap * 3 / 2
            );
        }
        // Random: the ten pauses at the cap spread over its range.
        let at_cap = &pauses[6..];
        let spread = at_cap.iter().max().copied().unwrap_or_default()
            - at_cap.iter().min().copied().unwrap_or_default();
        assert!(spread > ms(5), "pauses at the cap barely vary: {at_cap:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_when_the_budget_is_spent() {
        let started = tokio::time::Instant::now();
        assert!(!Retry::new(Duration::ZERO).again().await);
        assert_eq!(started.elapsed(), Duration::ZERO, "paused before giving up");
    }
}
