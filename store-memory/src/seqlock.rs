//! A seqlock over a fixed run of 64-bit words: one writer at a time
//! rewrites the words in place, any number of readers copy them without
//! taking a lock, and a reader never returns a copy that mixes two writes.
//!
//! # Layout
//!
//! One allocation of `AtomicU64`s: word 0 is the sequence number, the
//! rest is the payload. The sequence number is even while the payload is
//! at rest and odd while a write is in progress; each write adds 2.
//!
//! # Protocol
//!
//! ```text
//! writer (serialised by the caller)       reader (no lock)
//!   s = seq.load(Relaxed)                   loop {
//!   seq.store(s + 1, Relaxed)   W1            s1 = seq.load(Acquire)       R1
//!   fence(Release)              W2            if s1 is odd: wait, retry
//!   payload[i].store(.., Relaxed) W3          copy payload[i].load(Relaxed) R2
//!   seq.store(s + 2, Release)   W4            fence(Acquire)               R3
//!                                             s2 = seq.load(Relaxed)       R4
//!                                             if s1 == s2: return the copy
//!                                           }
//! ```
//!
//! Every word is an atomic, so a read overlapping a write is no data race
//! (and needs no `unsafe`): it only returns values of different writes,
//! which is what the sequence check catches. The payload loads and stores
//! are `Relaxed`; the orderings that matter are these two pairs:
//!
//! * **W4 (`Release`) → R1 (`Acquire`): a copy is at least as new as its
//!   sequence number.** When R1 reads the even `s + 2` that a write stored
//!   last, that write's payload stores (W3) happen before the reader's
//!   copy (R2), so the copy holds them (or newer values, which R4 then
//!   catches). Without it, R1 could see a write's end while R2 still sees
//!   older words, R4 would see nothing changed, and the reader would return
//!   a stale half next to a new half.
//! * **W2 (`Release` fence) → R3 (`Acquire` fence): a copy that saw any
//!   word of a write also sees that the write began.** If a load of R2
//!   reads a value stored by W3 of a write, the writer's fence W2
//!   (sequenced before that store) synchronises with the reader's fence R3
//!   (sequenced after that load). The odd store W1, sequenced before W2,
//!   then happens before R4, so R4 reads `s + 1` or later, which differs
//!   from `s1`, and the reader retries. W2 keeps W1 from becoming visible
//!   after the payload stores; R3 keeps R4 from being satisfied before the
//!   payload loads (a plain `Acquire` on R4 would not: acquire orders what
//!   comes after a load, not what comes before it).
//!
//! W1 and the first load of `s` can be `Relaxed` because only the writer
//! ever stores the sequence number, and the caller's serialisation orders
//! each writer after the one before it.
//!
//! # Precondition: one writer at a time
//!
//! [`SeqLock::write`] must not run concurrently with another `write` on
//! the same words: two overlapping writers would each bump the sequence
//! from the same `s`, and a reader could see an even number in the middle
//! of the other's stores. The store holds the key's write lock (see
//! `locks.rs`) around every write; readers take no lock and may spin
//! while a write (a few dozen stores) is in progress.
//!
//! # Model checking
//!
//! Under `--cfg session_memory_loom` the atomics are `loom`'s, and the
//! tests at the end of this file explore every interleaving (and every
//! value a `Relaxed` load may return) of one writer and one or two readers:
//!
//! ```text
//! RUSTFLAGS="--cfg session_memory_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p session-store-memory --release --lib seqlock::loom_model
//! ```

use std::sync::Arc;

#[cfg(session_memory_loom)]
use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(session_memory_loom))]
use std::sync::atomic::{AtomicU64, Ordering, fence};

/// A sequence number and the payload words it guards. Cheap to clone
/// (clones share the words).
#[derive(Debug, Clone)]
pub(crate) struct SeqLock(Arc<[AtomicU64]>);

/// The payload words as a reader sees them during one attempt: the values
/// may belong to different writes until [`SeqLock::read`] has checked
/// them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Words<'a>(&'a [AtomicU64]);

impl Words<'_> {
    /// Number of payload words.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The payload words, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|word| word.load(Ordering::Relaxed))
    }
}

impl SeqLock {
    /// Payload words `payload`, at sequence number 0.
    pub(crate) fn new(payload: impl Iterator<Item = u64>) -> Self {
        Self(
            std::iter::once(0)
                .chain(payload)
                .map(AtomicU64::new)
                .collect(),
        )
    }

    /// Raw words, the sequence number first (tests of damaged entries; no
    /// words at all is an empty payload).
    #[cfg(test)]
    pub(crate) fn from_raw(words: &[u64]) -> Self {
        Self(words.iter().map(|&w| AtomicU64::new(w)).collect())
    }

    /// Whether both handles share one allocation.
    #[cfg(test)]
    pub(crate) fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Words in the allocation, the sequence number included.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Runs `read` on the payload words until it ran without a write
    /// overlapping it, and returns that run's result.
    ///
    /// `read` may run more than once, and every run but the last may see
    /// a mix of two writes: it must not panic on, or act on, what it sees;
    /// only the last run's result is returned.
    pub(crate) fn read<R>(&self, mut read: impl FnMut(Words<'_>) -> R) -> R {
        let Some((seq, words)) = self.0.split_first() else {
            return read(Words(&[]));
        };
        let mut spins = 0u32;
        loop {
            let before = seq.load(Ordering::Acquire); // R1
            if before & 1 == 0 {
                let result = read(Words(words)); // R2
                fence(Ordering::Acquire); // R3
                if seq.load(Ordering::Relaxed) == before {
                    // R4
                    return result;
                }
            }
            // A write is in progress (a few dozen stores): wait for it.
            spins = spins.wrapping_add(1);
            wait(spins);
        }
    }

    /// Overwrites the first payload words with `new`, leaving the rest as
    /// they are. A `new` longer than the payload is not written, and
    /// `false` is returned.
    ///
    /// The caller must serialise writes (see the module's documentation).
    pub(crate) fn write<I>(&self, new: I) -> bool
    where
        I: IntoIterator<Item = u64>,
        I::IntoIter: ExactSizeIterator,
    {
        let new = new.into_iter();
        let Some((seq, words)) = self.0.split_first() else {
            return false;
        };
        if new.len() > words.len() {
            return false;
        }
        let start = seq.load(Ordering::Relaxed);
        seq.store(start.wrapping_add(1), Ordering::Relaxed); // W1
        fence(Ordering::Release); // W2
        for (word, value) in words.iter().zip(new) {
            word.store(value, Ordering::Relaxed); // W3
        }
        seq.store(start.wrapping_add(2), Ordering::Release); // W4
        true
    }
}

/// One turn of a reader's wait for a write to finish.
#[cfg(not(session_memory_loom))]
fn wait(spins: u32) {
    if spins.is_multiple_of(64) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Under loom a waiting reader must yield, or the model would explore its
/// spinning forever.
#[cfg(session_memory_loom)]
fn wait(_spins: u32) {
    loom::thread::yield_now();
}

#[cfg(all(test, not(session_memory_loom)))]
mod tests {
    use super::*;

    #[test]
    fn writes_a_prefix_and_keeps_the_rest() {
        let lock = SeqLock::new([1, 2, 3].into_iter());
        assert_eq!(lock.len(), 4);
        assert!(lock.write([7, 8]));
        assert_eq!(lock.read(|w| w.iter().collect::<Vec<_>>()), [7, 8, 3]);
        assert!(!lock.write([0; 4]));
        assert_eq!(lock.read(|w| w.iter().collect::<Vec<_>>()), [7, 8, 3]);
        // One write (the refused one bumps nothing): 0 + 2.
        assert_eq!(lock.0[0].load(Ordering::Relaxed), 2);
    }

    #[test]
    fn no_words_at_all_is_an_empty_payload() {
        let lock = SeqLock::from_raw(&[]);
        assert_eq!(lock.read(|w| w.len()), 0);
        assert!(!lock.write([]));
    }
}

/// The protocol under loom: every interleaving of one writer and one or
/// two readers over a few words, and every value each `Relaxed` load may
/// return under the memory model.
///
/// ```text
/// RUSTFLAGS="--cfg session_memory_loom" CARGO_TARGET_DIR=target/loom \
///     cargo test -p session-store-memory --release --lib seqlock::loom_model
/// ```
///
/// Each test also asserts that some execution handed the reader's closure
/// a torn copy (words of two writes) which the sequence check then made it
/// retry: the case the seqlock exists for is really explored.
///
/// The tests fail, each with "a torn read was returned", when the reader's
/// re-check (R4) is removed, and equally when the fence R3 or W2 is
/// removed or R1 or W4 is weakened to `Relaxed` (checked by hand on each
/// mutation). Cold, the build takes about 3 minutes on two shared cores;
/// the two models run in about a second (about 5,100 and 10,700
/// executions).
#[cfg(all(test, session_memory_loom))]
mod loom_model {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as Std};

    use loom::thread;

    use super::SeqLock;

    /// Payload words.
    const WORDS: usize = 3;

    /// The payload the writer's `k`th write stores (`k = 0`: the initial
    /// one); every word names its write.
    fn state(k: u64) -> Vec<u64> {
        (0..WORDS as u64).map(|i| 10 * k + i).collect()
    }

    /// Which state `copy` is, if it is one.
    fn which(copy: &[u64]) -> Option<u64> {
        let k = copy.first()? / 10;
        (copy == state(k).as_slice()).then_some(k)
    }

    /// One read: a copy of the words, checked to be one whole state, whose
    /// number is returned. Records in `torn` whether a run of the closure
    /// saw a mix.
    fn read(lock: &SeqLock, torn: &AtomicBool) -> u64 {
        let copy = lock.read(|words| {
            let copy: Vec<u64> = words.iter().collect();
            if which(&copy).is_none() {
                torn.store(true, Std::Relaxed);
            }
            copy
        });
        match which(&copy) {
            Some(k) => k,
            None => panic!("a torn read was returned: {copy:?}"),
        }
    }

    /// Runs `model` under loom, and checks that some execution retried a
    /// torn copy. Prints the number of executions explored.
    fn check(name: &str, model: impl Fn(&'static AtomicBool) + Sync + Send + 'static) {
        static TORN: AtomicBool = AtomicBool::new(false);
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        // Tests run one at a time here (see `serial`), so the statics are
        // this test's.
        TORN.store(false, Std::Relaxed);
        RUNS.store(0, Std::Relaxed);
        let mut builder = loom::model::Builder::new();
        // Interleavings with at most this many preemptions (loom's usual
        // bound; `LOOM_MAX_PREEMPTIONS` overrides it). One is enough for a
        // torn copy: the writer's whole write between two of the reader's
        // loads. Unbounded, the readers' waiting loops make the model
        // explode.
        builder.preemption_bound.get_or_insert(2);
        builder.check(move || {
            RUNS.fetch_add(1, Std::Relaxed);
            model(&TORN);
        });
        println!(
            "loom: {name}: {} executions explored",
            RUNS.load(Std::Relaxed)
        );
        assert!(
            TORN.load(Std::Relaxed),
            "{name}: no execution produced a torn copy to retry"
        );
    }

    /// The loom tests share statics: one at a time.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn one_writer_two_writes_one_reader_reading_twice() {
        let _serial = serial();
        check("1 writer (2 writes), 1 reader (2 reads)", |torn| {
            let lock = SeqLock::new(state(0).into_iter());
            let writer = {
                let lock = lock.clone();
                thread::spawn(move || {
                    assert!(lock.write(state(1)));
                    assert!(lock.write(state(2)));
                })
            };
            let first = read(&lock, torn);
            let second = read(&lock, torn);
            // A later read never goes back to an older write.
            assert!(first <= second, "read {first} then {second}");
            writer.join().unwrap();
            assert_eq!(read(&lock, torn), 2);
        });
    }

    #[test]
    fn one_writer_two_readers() {
        let _serial = serial();
        check("1 writer (1 write), 2 readers", |torn| {
            let lock = SeqLock::new(state(0).into_iter());
            let reader = {
                let lock = lock.clone();
                thread::spawn(move || read(&lock, torn))
            };
            let writer = {
                let lock = lock.clone();
                thread::spawn(move || assert!(lock.write(state(1))))
            };
            let here = read(&lock, torn);
            let there = reader.join().unwrap();
            writer.join().unwrap();
            assert!(here <= 1 && there <= 1);
            assert_eq!(read(&lock, torn), 1);
        });
    }
}
