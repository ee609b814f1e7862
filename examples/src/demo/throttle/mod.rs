//! Login throttling that an attacker cannot turn against the user.
//!
//! Three counts of wrong passwords, each in a fixed window that starts at
//! its first failure ([`ThrottlePolicy::default`]: 15 minutes):
//!
//! | count | limit | what passing it does |
//! |---|---|---|
//! | one user name from one client address (the *pair*) | 5 | that pair is refused until its window ends |
//! | one client address, over all names | 20 | that address's pairs that already failed get 2 tries, not 5 |
//! | one user name, over all addresses | 50 | that name's pairs that already failed get 2 tries, not 5 |
//!
//! **The rule: a pair with no failures is never refused.** A correct
//! password from an address that has not failed for that name always gets
//! checked, whatever other addresses did to the name and whatever the
//! address did to other names. So nobody can lock anyone out: neither a
//! stranger who tries `alice` from elsewhere (the name-wide count only cuts
//! the tries of addresses that already failed for `alice`), nor one client
//! behind a shared proxy who fails for many names (the address count only
//! cuts the tries of that address's names that already failed). A
//! throttled pair gets `429` with `Retry-After`, even for the right
//! password (checking it would keep the guessing going), and nobody stays
//! throttled past the end of the window that throttled them.
//!
//! The trade-off, stated plainly: an attacker with many addresses gets a
//! few guesses per address and name per window — 5 while the name is
//! quiet, 2 once it has had 50 failures — instead of the 5 per name a
//! name-wide lockout would allow in all. Refusing clean addresses too would
//! give anyone a button that locks any user out. IPv6 addresses count per
//! `/64`, so one end site cannot mint clean addresses; a botnet of real
//! IPv4 addresses can, and stopping that needs what a throttle cannot
//! give: a second factor, screening passwords against breach lists, and
//! alerting on names with many failures (the OWASP Authentication and
//! Credential Stuffing Prevention cheat sheets). These docs are what ASVS
//! 5.0 V6.1.1 asks for: how the controls against guessing are configured,
//! and how they keep others from locking an account out.
//!
//! **Checked and counted in one step.** [`LoginThrottle::begin`] decides
//! and, when it admits an attempt, counts it as a failure at once, under
//! one lock, before the slow hash runs; a correct password takes its count
//! back ([`LoginThrottle::succeeded`]). So a burst of parallel guesses for
//! one pair gets 5 hashes, not one per request, and a request cancelled
//! mid-hash stays counted (the safe side). `begin` also takes the hash
//! gate's admission under the same lock ([`super::gate`]): an attempt the
//! server has no capacity for is neither counted nor hashed.
//!
//! **Bounded.** The table holds at most [`ThrottlePolicy::capacity`]
//! entries of fixed size whatever the user typed (a 128-bit keyed hash of
//! the trimmed, lowercased name; an IPv4 address or an IPv6 `/64`). When
//! it is full, the oldest entry with a single failure makes room; entries
//! with two failures or more are kept until they expire, so a flood of
//! fresh names cannot wash out the counts of a real attack. If even that
//! fails (the table full of repeated failures, which takes tens of
//! thousands of addresses failing twice within a window), new pairs are
//! refused with `503` until the first window ends: fail closed. Expired
//! entries leave from the fronts of queues kept in window order, so no
//! request scans the table.
//!
//! The counts live in the app, not in the session store: a session store
//! is not a rate limiter, and a guesser has no session to count in.
//!
//! Clients are told apart by address only. Behind one shared address (a
//! company's NAT, say) a guesser who tries *your* name uses up the tries
//! of your pair too, as the server cannot tell the two of you apart; the
//! rule protects you from guessers at other addresses. Behind a reverse
//! proxy every client has the proxy's address, so count by a forwarded
//! header that only the proxy can set instead (the app must then ignore
//! that header when it does not come from the proxy). Served without
//! connect info, the demo counts every client as one address.

mod table;

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use table::{Client, Key, NameHasher, Table};

/// The limits of a [`LoginThrottle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Wrong passwords for one user name from one client address within a
    /// window; the next attempt from that pair is refused.
    pub per_pair: u32,
    /// What `per_pair` is cut to while the pair's address or name is past
    /// its own limit below. At least 1: a pair with no failures is never
    /// refused.
    pub per_pair_under_attack: u32,
    /// Wrong passwords from one client address within a window, over all
    /// user names.
    pub per_address: u32,
    /// Wrong passwords for one user name within a window, over all
    /// addresses.
    pub per_name: u32,
    /// How long a window lasts from its first failure (at most
    /// [`ThrottlePolicy::MAX_WINDOW`]).
    pub window: Duration,
    /// How many counts the throttle keeps at most (each a few dozen
    /// bytes; at least 3, the counts of one attempt).
    pub capacity: usize,
}

impl ThrottlePolicy {
    /// The longest window: one day.
    pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            per_pair: 5,
            per_pair_under_attack: 2,
            per_address: 20,
            per_name: 50,
            window: Duration::from_secs(15 * 60),
            capacity: 100_000,
        }
    }
}

/// Why [`LoginThrottle::begin`] refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many wrong passwords for this pair: retry after this long
    /// (`429 Too Many Requests`).
    Throttled(Duration),
    /// The table is full of counts that must be kept: retry after this
    /// long (`503 Service Unavailable`).
    Full(Duration),
    /// The caller's `admit` said no (the hash gate is full: `503`).
    NotAdmitted,
}

/// An attempt admitted by [`LoginThrottle::begin`] and already counted as
/// a wrong password. Hand it to [`LoginThrottle::succeeded`] when the
/// password was right; dropping it leaves the failure counted, which is
/// also what happens to an attempt whose request was cancelled mid-hash.
#[derive(Debug)]
#[must_use = "a dropped ticket counts as a wrong password"]
pub struct Ticket {
    pair: Key,
    client: (Key, u64),
    name: (Key, u64),
}

/// Counts wrong passwords per user name and client address, and decides
/// which login attempts get their password checked (see the [module
/// docs](self)).
#[derive(Debug)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    names: NameHasher,
    table: Mutex<Table>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ThrottlePolicy::default())
    }
}

/// The three keys of one attempt.
struct Keys {
    pair: Key,
    client: Key,
    name: Key,
}

impl LoginThrottle {
    /// A throttle with `policy` (its window capped at
    /// [`ThrottlePolicy::MAX_WINDOW`], its capacity at least 3 and its
    /// `per_pair_under_attack` at least 1).
    pub fn new(mut policy: ThrottlePolicy) -> Self {
        policy.window = policy.window.min(ThrottlePolicy::MAX_WINDOW);
        policy.capacity = policy.capacity.max(3);
        policy.per_pair_under_attack = policy.per_pair_under_attack.max(1);
        Self {
            policy,
            names: NameHasher::default(),
            table: Mutex::new(Table::new(policy.capacity)),
        }
    }

    /// The policy.
    pub fn policy(&self) -> ThrottlePolicy {
        self.policy
    }

    fn keys(&self, name: &str, address: Option<IpAddr>) -> Keys {
        let name = self.names.key(name);
        let client = Client::of(address);
        Keys {
            pair: Key::Pair(name, client),
            client: Key::Client(client),
            name: Key::Name(name),
        }
    }

    /// Decides whether `name` from `address` may try a password at `now`
    /// and, if so, calls `admit` (the hash gate's `try_enter`, say) and
    /// counts the attempt as a wrong password, all under one lock. Returns
    /// the [`Ticket`] and what `admit` gave.
    ///
    /// # Errors
    ///
    /// A [`Refusal`]; nothing is counted then.
    pub fn begin<T>(
        &self,
        name: &str,
        address: Option<IpAddr>,
        now: Instant,
        admit: impl FnOnce() -> Option<T>,
    ) -> Result<(Ticket, T), Refusal> {
        let keys = self.keys(name, address);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.prune(now);
        self.decide(&table, &keys, now)
            .map_err(Refusal::Throttled)?;
        let admitted = admit().ok_or(Refusal::NotAdmitted)?;
        if !table.make_room(&[keys.pair, keys.client, keys.name], now) {
            let wait = table
                .first_end()
                .map_or(self.policy.window, |end| end.saturating_duration_since(now));
            return Err(Refusal::Full(wait));
        }
        let window = self.policy.window;
        table.count(keys.pair, now, window);
        let client = (keys.client, table.count(keys.client, now, window));
        let name = (keys.name, table.count(keys.name, now, window));
        Ok((
            Ticket {
                pair: keys.pair,
                client,
                name,
            },
            admitted,
        ))
    }

    /// `Err(wait)` when the pair must be refused at `now`.
    fn decide(&self, table: &Table, keys: &Keys, now: Instant) -> Result<(), Duration> {
        // The rule: a pair with no failures is never refused.
        let Some(pair) = table.live(&keys.pair, now) else {
            return Ok(());
        };
        let policy = &self.policy;
        let pair_wait = pair.ends.saturating_duration_since(now);
        if pair.failures >= policy.per_pair {
            return Err(pair_wait);
        }
        if pair.failures < policy.per_pair_under_attack {
            return Ok(());
        }
        // Cut while the address or the name is past its limit: refused
        // until the pair's window ends or every such limit's window does.
        let pressed = [
            (&keys.client, policy.per_address),
            (&keys.name, policy.per_name),
        ]
        .into_iter()
        .filter_map(|(key, limit)| table.live(key, now).filter(|w| w.failures >= limit))
        .map(|window| window.ends.saturating_duration_since(now))
        .max();
        match pressed {
            Some(wait) => Err(wait.min(pair_wait)),
            None => Ok(()),
        }
    }

    /// The password of `ticket`'s attempt was right: its pair's count
    /// starts over, and the attempt is taken back from its address's and
    /// name's counts (only the attempt: an attacker with an account of
    /// their own must not be able to wipe the count of their guesses at
    /// others, and the name's owner signing in does not end an attack on
    /// the name).
    pub fn succeeded(&self, ticket: Ticket) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.forget(&ticket.pair);
        table.uncount(&ticket.client.0, ticket.client.1);
        table.uncount(&ticket.name.0, ticket.name.1);
    }

    /// How many counts the throttle holds (expired ones not yet dropped
    /// included): never more than the policy's capacity.
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests;
