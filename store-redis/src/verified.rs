//! The stored values this store last read and found sound, kept a short
//! while so that a save of the same session can send them back.
//!
//! A save must not overwrite a value this store cannot read, so the save
//! script checks the stored value's digest: a SHA-1 of the whole value
//! (`redis.sha1hex`), the dearest part of a save on the server (measured
//! with callgrind on Redis 7: about 10,000 instructions for a 300-byte
//! session, plus 4,000 for the copy of the bytes it hashes, on top of
//! some 58,000 for the rest of the script). But a session is
//! usually saved by the process that just loaded it, and that load
//! already checked the same bytes (digest and data). So a load keeps the
//! bytes it found sound here, and the save sends them back: when the
//! stored value is still exactly those bytes, the script knows it is
//! sound without hashing it (Lua strings are interned, so the comparison
//! of two equal values is one pointer comparison). Anything else (no
//! bytes kept, a touch or a save in between, damage since the load) takes
//! the digest check as before; nothing here can make a save succeed that
//! the digest check would refuse. Where the server has `SET … IFEQ`, the
//! bytes are that command's comparison value instead, and the common save
//! runs no script at all (see `ifeq`).
//!
//! Bounded: each of [`SHARDS`] shards holds two generations of at most
//! [`GENERATION_BYTES`] bytes of values each; when the current one is
//! full it becomes the previous one, and the previous one is dropped.
//! Values longer than [`MAX_VALUE`] are not kept. A save takes its
//! session's bytes out, so the common load-then-save cycle leaves nothing
//! behind.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, PoisonError};

use session_core::StorageKey;

/// Shards, each behind its own lock.
const SHARDS: usize = 8;
/// The most bytes of values one generation of one shard holds.
const GENERATION_BYTES: usize = 128 * 1024;
/// Longer values are not kept (their save checks the digest).
const MAX_VALUE: usize = 16 * 1024;

/// Hashes a storage key by its first eight bytes: storage keys are
/// SHA-256 digests, uniform already, and only keys of stored sessions
/// are ever kept (a load that finds nothing keeps nothing).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        for (slot, byte) in word.iter_mut().zip(bytes) {
            *slot = *byte;
        }
        self.0 ^= u64::from_le_bytes(word);
    }

    // The array's length, hashed before its bytes: the same for every key.
    fn write_usize(&mut self, _: usize) {}
}

type Map = HashMap<StorageKey, Vec<u8>, BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct Shard {
    current: Map,
    current_bytes: usize,
    previous: Map,
}

/// See the module documentation.
pub(crate) struct Verified {
    shards: [Mutex<Shard>; SHARDS],
}

impl Verified {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }

    fn shard(&self, key: &StorageKey) -> &Mutex<Shard> {
        // The last byte picks the shard (the first ones hash within it).
        let at = key.as_bytes().last().map_or(0, |b| usize::from(*b));
        &self.shards[at % SHARDS]
    }

    /// Keeps `value`, the stored value of `key` that a load just found
    /// sound (its digest and its data).
    pub(crate) fn remember(&self, key: StorageKey, value: Vec<u8>) {
        if value.len() > MAX_VALUE {
            return;
        }
        let mut shard = self
            .shard(&key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.current_bytes + value.len() > GENERATION_BYTES {
            shard.previous = std::mem::take(&mut shard.current);
            shard.current_bytes = 0;
        }
        shard.current_bytes += value.len();
        if let Some(old) = shard.current.insert(key, value) {
            shard.current_bytes = shard.current_bytes.saturating_sub(old.len());
        }
    }

    /// Takes out the bytes kept for `key`, if any; the caller checks that
    /// they are of the version it saves over.
    pub(crate) fn take(&self, key: &StorageKey) -> Option<Vec<u8>> {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match shard.current.remove(key) {
            Some(value) => {
                shard.current_bytes = shard.current_bytes.saturating_sub(value.len());
                Some(value)
            }
            None => shard.previous.remove(key),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn key(n: u16) -> StorageKey {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&n.to_le_bytes());
        bytes[31] = 3;
        StorageKey::from_bytes(bytes)
    }

    #[test]
    fn keeps_and_gives_back_once() {
        let kept = Verified::new();
        kept.remember(key(1), b"one".to_vec());
        kept.remember(key(2), b"two".to_vec());
        kept.remember(key(1), b"uno".to_vec());
        assert_eq!(kept.take(&key(1)).as_deref(), Some(&b"uno"[..]));
        assert_eq!(kept.take(&key(1)), None);
        assert_eq!(kept.take(&key(2)).as_deref(), Some(&b"two"[..]));
        assert_eq!(kept.take(&key(3)), None);
    }

    #[test]
    fn bounded_by_bytes_in_two_generations() {
        let kept = Verified::new();
        let value = vec![b'x'; 1000];
        // All in one shard (the same last byte).
        for n in 0..1000 {
            kept.remember(key(n), value.clone());
        }
        let shard = kept.shard(&key(0)).lock().unwrap();
        let held: usize = shard
            .current
            .values()
            .chain(shard.previous.values())
            .map(Vec::len)
            .sum();
        assert!(held <= 2 * GENERATION_BYTES, "{held}");
        assert_eq!(
            shard.current_bytes,
            shard.current.values().map(Vec::len).sum::<usize>()
        );
        drop(shard);
        // The newest are kept, the oldest are gone.
        assert!(kept.take(&key(999)).is_some());
        assert!(kept.take(&key(0)).is_none());
        // Too long to keep.
        kept.remember(key(5000), vec![b'y'; MAX_VALUE + 1]);
        assert_eq!(kept.take(&key(5000)), None);
    }
}
