//! Per-key write serialisation: a fixed array of async locks, one chosen by
//! the key.

use tokio::sync::{Mutex, MutexGuard};

use crate::entry::ShortKey;

/// Number of lock stripes. Keys are SHA-256 digests, so they spread
/// evenly; two sessions share a stripe with probability 1/4096, which only
/// makes one wait for the other's (microsecond) write.
const STRIPES: usize = 4096;

/// Serialises every write to one key (create, save, touch, delete) so that
/// each is a read-decide-write step no other write interleaves with,
/// without moka's per-key compute machinery on the hot path.
#[derive(Debug)]
pub(crate) struct KeyLocks {
    stripes: Box<[Mutex<()>]>,
}

impl KeyLocks {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Waits for, and holds, the lock of `key`'s stripe.
    pub(crate) async fn lock(&self, key: &ShortKey) -> MutexGuard<'_, ()> {
        let index = usize::from(u16::from_le_bytes([key.0[0], key.0[1]])) % STRIPES;
        // In bounds: `index < STRIPES`, the slice's length.
        self.stripes[index].lock().await
    }
}

/// Hashes a short key (half a storage key) by folding its two words.
///
/// Storage keys are SHA-256 digests, already uniformly distributed, so
/// SipHash's extra mixing buys nothing. Nor does its keyed protection
/// against crafted collisions: the cache only ever holds keys of sessions
/// that were created, whose ids the server generated; a key an attacker
/// chooses is at most looked up, never inserted, and a lookup walks only
/// the stored keys of its bucket.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Fold every 8-byte word in: the whole digest when given one, and a
        // well-defined (if weak) hash for anything else.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _: usize) {
        // The length prefix of the key's byte array: always 32.
    }
}
