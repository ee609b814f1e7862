//! The throttle's table of failure counts, bounded in entries and in key
//! size, with constant amortized work per request.
//!
//! Every key has a fixed size whatever the client sent: a user name is
//! kept as a 128-bit keyed hash ([`NameKey`]), an address as IPv4 or as
//! its IPv6 `/64` ([`Client`]). Each entry is one fixed window
//! ([`Window`]): it starts at its first failure and ends [`window`] later.
//!
//! Records of the entries wait in two queues in the order their windows
//! started, which, every window being equally long, is the order they end
//! in: expired entries are dropped from the queues' fronts, never by a
//! scan. When the table is full, the oldest entry with a single failure
//! makes room (the least a count can say: one guess). Entries with two
//! failures or more are never evicted, only expired, so a flood of new
//! names cannot flush the counts of a real attack; when nothing can be
//! evicted the table refuses to grow, and the caller refuses the attempt
//! (fail closed).
//!
//! [`window`]: super::ThrottlePolicy::window

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A user name as counted: trimmed and lowercased (so `Alice ` and
/// `alice` share one count), then hashed with two keyed SipHash instances
/// whose random keys are the throttle's own. 16 bytes whatever the name's
/// length, and no one outside the process can aim two names at one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct NameKey([u64; 2]);

/// The keys [`NameKey`]s are hashed with.
#[derive(Debug, Default)]
pub(crate) struct NameHasher([RandomState; 2]);

impl NameHasher {
    /// The key of `name`.
    pub(crate) fn key(&self, name: &str) -> NameKey {
        let normal = name.trim().to_lowercase();
        NameKey([self.0[0].hash_one(&normal), self.0[1].hash_one(&normal)])
    }
}

/// A client address as counted. IPv6 counts per `/64` (one end site's
/// share, which one attacker can fill with fresh addresses at will);
/// IPv4-mapped IPv6 counts as its IPv4 address. Without an address (the
/// app served without connect info) every client is one `Unknown`, as
/// all clients behind one proxy are one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
    /// No address known.
    Unknown,
}

impl Client {
    /// The counted form of `address`.
    pub(crate) fn of(address: Option<IpAddr>) -> Self {
        match address {
            None => Self::Unknown,
            Some(IpAddr::V4(v4)) => Self::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let mut prefix = [0; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    Self::V6(prefix)
                }
            },
        }
    }
}

/// What a count is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// One user name from one client.
    Pair(NameKey, Client),
    /// One client, over all names.
    Client(Client),
    /// One user name, over all clients.
    Name(NameKey),
}

/// One key's failures in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Failures counted, attempts in progress included.
    pub(crate) failures: u32,
    /// When the window ends and the count with it.
    pub(crate) ends: Instant,
    /// Which window of its key this is (a record naming another serial
    /// is stale).
    serial: u64,
}

/// The counts, bounded to `capacity` entries.
#[derive(Debug)]
pub(crate) struct Table {
    entries: HashMap<Key, Window>,
    /// Records of entries not yet seen with two failures, oldest first.
    young: VecDeque<(Key, u64)>,
    /// Records of entries seen with two failures or more, oldest first.
    settled: VecDeque<(Key, u64)>,
    next_serial: u64,
    capacity: usize,
}

impl Table {
    /// An empty table of at most `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            young: VecDeque::new(),
            settled: VecDeque::new(),
            next_serial: 0,
            capacity,
        }
    }

    /// How many entries there are (expired ones not yet dropped included).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// `key`'s window, if it has failures and has not ended at `now`.
    pub(crate) fn live(&self, key: &Key, now: Instant) -> Option<Window> {
        self.entries
            .get(key)
            .filter(|window| window.failures > 0 && window.ends > now)
            .copied()
    }

    /// Drops the entries whose windows ended by `now`, from the queues'
    /// fronts: each record is looked at once, so the work is constant per
    /// counted failure, amortized.
    pub(crate) fn prune(&mut self, now: Instant) {
        for queue in [&mut self.young, &mut self.settled] {
            while let Some(&(key, serial)) = queue.front() {
                if let Some(window) = self.entries.get(&key).filter(|w| w.serial == serial) {
                    if window.ends > now {
                        break;
                    }
                    self.entries.remove(&key);
                }
                queue.pop_front();
            }
        }
    }

    /// Makes room for whichever of `keys` have no entry yet, evicting the
    /// oldest single-failure entries as needed. `false` when the table is
    /// full of entries with two failures or more (the caller must then not
    /// count).
    pub(crate) fn make_room(&mut self, keys: &[Key], now: Instant) -> bool {
        let needed = keys
            .iter()
            .filter(|key| !self.entries.contains_key(key))
            .count();
        if self.entries.len() + needed <= self.capacity {
            return true;
        }
        self.prune(now);
        while self.entries.len() + needed > self.capacity {
            if !self.evict_one() {
                return false;
            }
        }
        true
    }

    /// Evicts the oldest entry with at most one failure; entries met on
    /// the way with more move to the settled queue, in the same order.
    fn evict_one(&mut self) -> bool {
        while let Some((key, serial)) = self.young.pop_front() {
            match self.entries.get(&key) {
                Some(window) if window.serial == serial => {
                    if window.failures <= 1 {
                        self.entries.remove(&key);
                        return true;
                    }
                    self.settled.push_back((key, serial));
                }
                _ => {} // a stale record
            }
        }
        false
    }

    /// When the first live window ends: after that, room can be made.
    pub(crate) fn first_end(&self) -> Option<Instant> {
        let front = |queue: &VecDeque<(Key, u64)>| {
            queue.iter().find_map(|(key, serial)| {
                self.entries
                    .get(key)
                    .filter(|w| w.serial == *serial)
                    .map(|w| w.ends)
            })
        };
        match (front(&self.young), front(&self.settled)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counts one failure for `key` at `now`, in its live window or in a
    /// new one of length `window`; returns the window's serial. The caller
    /// has made room ([`Table::make_room`]).
    pub(crate) fn count(&mut self, key: Key, now: Instant, window: Duration) -> u64 {
        if let Some(live) = self.entries.get_mut(&key).filter(|w| w.ends > now) {
            live.failures = live.failures.saturating_add(1);
            return live.serial;
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        // `window` is capped at a day (ThrottlePolicy::MAX_WINDOW), so this
        // cannot overflow while the clock has a day of range left; if it
        // ever did, the window would be empty rather than the app panic.
        let ends = now.checked_add(window).unwrap_or(now);
        self.entries.insert(
            key,
            Window {
                failures: 1,
                ends,
                serial,
            },
        );
        self.young.push_back((key, serial));
        self.compact();
        serial
    }

    /// Takes back one failure counted in `key`'s window `serial` (not in a
    /// later window of the same key); the entry goes at zero.
    pub(crate) fn uncount(&mut self, key: &Key, serial: u64) {
        if let Some(window) = self.entries.get_mut(key).filter(|w| w.serial == serial) {
            window.failures = window.failures.saturating_sub(1);
            if window.failures == 0 {
                self.entries.remove(key);
            }
        }
    }

    /// Forgets `key`'s count.
    pub(crate) fn forget(&mut self, key: &Key) {
        self.entries.remove(key);
    }

    /// Drops stale records once the queues hold twice as many records as
    /// the table can hold entries: a pass over at most `2 × capacity`
    /// records after at least `capacity` new ones, so constant work per
    /// record, amortized. Afterwards every record names a live entry.
    fn compact(&mut self) {
        if self.young.len() + self.settled.len() <= 2 * self.capacity + 16 {
            return;
        }
        let entries = &self.entries;
        let current =
            |(key, serial): &(Key, u64)| entries.get(key).is_some_and(|w| w.serial == *serial);
        self.young.retain(current);
        self.settled.retain(current);
    }

    /// How many records the queues hold (tests check they stay bounded).
    #[cfg(test)]
    pub(crate) fn records(&self) -> usize {
        self.young.len() + self.settled.len()
    }
}
