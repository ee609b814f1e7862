//! Login throttling: too many wrong passwords for one user name, or from
//! one client address, within a window get `429 Too Many Requests` with
//! `Retry-After` until the window ends.
//!
//! State lives in the app, not in the session store: a session store is
//! not a rate limiter, and the attacker has no session to count in.
//!
//! The policy ([`ThrottlePolicy::default`]): 5 wrong passwords per user
//! name and 20 per client address, per 15-minute window. Counting starts at
//! the first failure; the window is fixed, so nobody is locked out for
//! longer than one window after their last counted failure, and a
//! correct password resets its user name's count (not its address's: an
//! attacker with an account of their own must not be able to wipe the
//! count of their guesses at others). While a key is throttled, even a
//! correct password is refused (checking it would keep the guessing
//! going), and the slow password hash is not computed at all.
//!
//! Memory: one small entry per user name and address that failed within a
//! window; expired entries are dropped whenever the table passes
//! [`PRUNE_AT`] entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Entries above which expired ones are dropped on the next failure.
pub const PRUNE_AT: usize = 10_000;

/// How many failures within how long throttle a user name or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Wrong passwords per user name within a window.
    pub per_user: u32,
    /// Wrong passwords per client address within a window.
    pub per_address: u32,
    /// How long a window lasts from its first failure.
    pub window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            per_user: 5,
            per_address: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    failures: u32,
    ends: Instant,
}

/// Counts failed logins per user name and per client address.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    windows: Mutex<HashMap<Key, Window>>,
}

/// The user name as counted: trimmed and lowercased, so `Alice` and
/// `alice ` share one count.
fn user_key(user: &str) -> Key {
    Key::User(user.trim().to_lowercase())
}

impl LoginThrottle {
    /// A throttle with `policy`.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The policy.
    pub fn policy(&self) -> ThrottlePolicy {
        self.policy
    }

    fn keys(user: &str, address: Option<IpAddr>) -> impl Iterator<Item = Key> {
        std::iter::once(user_key(user)).chain(address.map(Key::Address))
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::User(_) => self.policy.per_user,
            Key::Address(_) => self.policy.per_address,
        }
    }

    /// `Err(wait)` when `user` or `address` is throttled at `now`: the
    /// attempt must be refused, and may be retried after `wait`.
    pub fn check(&self, user: &str, address: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let wait = Self::keys(user, address)
            .filter_map(|key| {
                let window = windows.get(&key)?;
                (window.ends > now && window.failures >= self.limit(&key))
                    .then(|| window.ends - now)
            })
            .max();
        wait.map_or(Ok(()), Err)
    }

    /// Counts a wrong password for `user` from `address` at `now`.
    pub fn failed(&self, user: &str, address: Option<IpAddr>, now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, window| window.ends > now);
        }
        for key in Self::keys(user, address) {
            let window = windows.entry(key).or_insert(Window {
                failures: 0,
                ends: now + self.policy.window,
            });
            if window.ends <= now {
                *window = Window {
                    failures: 0,
                    ends: now + self.policy.window,
                };
            }
            window.failures = window.failures.saturating_add(1);
        }
    }

    /// A correct password for `user`: its count starts over.
    pub fn succeeded(&self, user: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.remove(&user_key(user));
    }

    /// How many user names and addresses are being counted.
    pub fn tracked(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn addr(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn the_sixth_wrong_password_for_a_name_waits_until_the_window_ends() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for i in 0..5 {
            assert_eq!(throttle.check("alice", addr(i), start), Ok(()));
            throttle.failed("alice", addr(i), start);
        }
        // From any address, in any case: the name is throttled.
        let later = start + 5 * MIN;
        assert_eq!(throttle.check("Alice ", addr(99), later), Err(10 * MIN));
        assert_eq!(throttle.check("bob", addr(99), later), Ok(()));
        // Not locked out forever: the window ends.
        assert_eq!(throttle.check("alice", addr(99), start + 15 * MIN), Ok(()));
    }

    #[test]
    fn one_address_guessing_many_names_is_throttled() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for i in 0..20 {
            assert_eq!(throttle.check(&format!("user{i}"), addr(7), start), Ok(()));
            throttle.failed(&format!("user{i}"), addr(7), start);
        }
        assert_eq!(throttle.check("someone", addr(7), start), Err(15 * MIN));
        assert_eq!(throttle.check("someone", addr(8), start), Ok(()));
    }

    #[test]
    fn a_correct_password_resets_the_name_but_not_the_address() {
        let throttle = LoginThrottle::new(ThrottlePolicy {
            per_user: 2,
            per_address: 3,
            window: MIN,
        });
        let now = Instant::now();
        throttle.failed("alice", addr(1), now);
        throttle.failed("alice", addr(1), now);
        assert!(throttle.check("alice", addr(2), now).is_err());
        throttle.succeeded("alice");
        assert_eq!(throttle.check("alice", addr(2), now), Ok(()));
        throttle.failed("mallory", addr(1), now);
        assert!(throttle.check("anyone", addr(1), now).is_err());
    }

    #[test]
    fn a_new_window_starts_after_the_old_one_ends_and_expired_entries_are_pruned() {
        let throttle = LoginThrottle::new(ThrottlePolicy {
            per_user: 1,
            per_address: 100,
            window: MIN,
        });
        let start = Instant::now();
        throttle.failed("alice", None, start);
        assert!(throttle.check("alice", None, start).is_err());
        throttle.failed("alice", None, start + MIN);
        assert_eq!(throttle.check("alice", None, start + MIN), Err(MIN));
        for i in 0..PRUNE_AT {
            throttle.failed(&format!("u{i}"), None, start);
        }
        assert!(throttle.tracked() >= PRUNE_AT);
        throttle.failed("late", None, start + 3 * MIN);
        assert_eq!(throttle.tracked(), 1);
    }
}
