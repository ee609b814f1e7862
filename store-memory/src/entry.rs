//! The form a session takes inside the cache: one allocation of 64-bit
//! words that a save overwrites in place.
//!
//! ```text
//! word 0       sequence number (odd while a write is in progress)
//! words 1..    the payload, packed little-endian:
//!                length of the rest      varint
//!                version                 varint
//!                created_at (ms)         zigzag varint
//!                expires_at (ms)         zigzag varint
//!                key tail                16 bytes (the storage key's second half)
//!                check                   8 bytes: checksum of everything after it
//!                user                    varint 0 = none, n + 1 = n bytes follow
//!                user bytes (UTF-8)
//!                data                    the data map as MessagePack
//! ```
//!
//! * **Checked.** What this store did not write is unreadable, the same
//!   to every method: a load, a listing and a save compare the stored
//!   user and data with the checksum written beside them, so a damaged
//!   entry (a flipped bit, a bug writing out of bounds) is
//!   [`Error::Decode`] on load and is never overwritten by a save, even
//!   where the damage still parses. The expiry stays outside the checked
//!   bytes, so `touch` keeps the checksum as it is.
//!
//! * **One allocation, no slack.** The word count is rounded up to an odd
//!   number, which fills the allocator's 16-byte size class exactly; the
//!   spare word (when there is one) is room to grow in place.
//! * **In place.** A save whose payload fits rewrites the words of the
//!   entry the cache already holds, instead of inserting a new value: no
//!   new cache node, no eviction bookkeeping, no epoch garbage. Writers
//!   are serialised by the key's write lock; readers take no lock and use
//!   the sequence number (a seqlock: copy, then check nothing changed
//!   meanwhile, else copy again), so a reader never sees half a write.
//!   The protocol, its memory orderings and its model check are in
//!   [`crate::seqlock`].
//! * **Exact.** The data map is MessagePack, which holds every JSON value
//!   exactly (integers up to `u64`/`i64`, `f64`, strings, nesting) in about
//!   three quarters of the JSON text's bytes; a tree of `serde_json::Value`s
//!   would cost several times the text.

use session_core::{Data, Error, Record, StorageKey, Timestamp};

use crate::seqlock::SeqLock;

/// Bytes of the storage key the cache is keyed by; the rest (the tail) is
/// kept in the entry.
const SHORT: usize = 16;

/// The first half of a storage key: the cache's key.
///
/// Storage keys are SHA-256 digests of 256-bit random ids, so 128 bits of
/// one identify it among any number of sessions a process can hold (two
/// sessions share a short key with probability below 2^-64 even at 2^32
/// sessions). Every read still compares the tail stored in the entry, so a
/// key that merely shares its first half with a stored one finds nothing;
/// such a pair is treated as one key by `create` (`Exists`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ShortKey(pub(crate) [u8; SHORT]);

/// The second half of a storage key.
pub(crate) type Tail = [u8; 32 - SHORT];

/// Splits a storage key into the cache's key and the tail the entry keeps.
pub(crate) fn split(key: &StorageKey) -> (ShortKey, Tail) {
    let bytes = key.as_bytes();
    let mut short = [0u8; SHORT];
    let mut tail = [0u8; 32 - SHORT];
    short.copy_from_slice(&bytes[..SHORT]);
    tail.copy_from_slice(&bytes[SHORT..]);
    (ShortKey(short), tail)
}

/// The storage key made of a short key and a tail.
pub(crate) fn join(short: &ShortKey, tail: &Tail) -> StorageKey {
    let mut bytes = [0u8; 32];
    bytes[..SHORT].copy_from_slice(&short.0);
    bytes[SHORT..].copy_from_slice(tail);
    StorageKey::from_bytes(bytes)
}

/// Room reserved in front of an encoded body for its length varint.
const LEN_ROOM: usize = 5;

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Reads a varint at the front of `bytes`, advancing it.
fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(n);
        }
    }
    None
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (front, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(front)
}

/// A payload being encoded: the body is written after [`LEN_ROOM`]
/// reserved bytes, and the length varint is put right in front of it.
#[derive(Debug)]
pub(crate) struct Payload {
    buf: Vec<u8>,
    start: usize,
}

impl Payload {
    /// Encodes `record`'s fields at `version`.
    pub(crate) fn encode(
        record: &Record,
        version: u64,
        tail: &Tail,
        operation: &'static str,
    ) -> Result<Self, Error> {
        let mut buf = Vec::with_capacity(256);
        buf.resize(LEN_ROOM, 0);
        let check_at = put_head(
            &mut buf,
            version,
            record.created_at.as_millis(),
            record.expires_at.as_millis(),
            tail,
            record.user.as_deref().map(str::as_bytes),
        );
        rmp_serde::encode::write(&mut buf, &record.data)
            .map_err(|e| Error::backend(crate::NAME, operation, false, e))?;
        seal(&mut buf, check_at);
        Self::finish(buf)
    }

    /// `record`'s fields with `data` as its (raw, possibly unreadable)
    /// data bytes, under the checksum of the record's real data: damage
    /// the store did not write, which does not update the checksum.
    #[cfg(feature = "testing")]
    pub(crate) fn with_raw_data(record: &Record, tail: &Tail, data: &[u8]) -> Result<Self, Error> {
        let real = Self::encode(record, record.version, tail, "plant")?;
        let mut buf = Vec::with_capacity(LEN_ROOM + 64 + data.len());
        buf.resize(LEN_ROOM, 0);
        let check_at = put_head(
            &mut buf,
            record.version,
            record.created_at.as_millis(),
            record.expires_at.as_millis(),
            tail,
            record.user.as_deref().map(str::as_bytes),
        );
        buf.extend_from_slice(data);
        if let (Some(head), Some(slot)) = (real.head(), buf.get_mut(check_at..check_at + CHECK_LEN))
        {
            slot.copy_from_slice(&head.check.to_le_bytes());
        }
        Self::finish(buf)
    }

    /// The parsed fields of this payload.
    #[cfg(feature = "testing")]
    fn head(&self) -> Option<Head<'_>> {
        Head::parse(self.bytes())
    }

    /// The payload of `head` with another expiry (the checked bytes and
    /// their checksum as they are).
    pub(crate) fn with_expiry(head: &Head<'_>, expires_at: Timestamp) -> Result<Self, Error> {
        let mut buf = Vec::with_capacity(LEN_ROOM + 48 + head.checked.len());
        buf.resize(LEN_ROOM, 0);
        put_varint(&mut buf, head.version);
        put_varint(&mut buf, zigzag(head.created_at));
        put_varint(&mut buf, zigzag(expires_at.as_millis()));
        buf.extend_from_slice(&head.tail);
        buf.extend_from_slice(&head.check.to_le_bytes());
        buf.extend_from_slice(head.checked);
        Self::finish(buf)
    }

    fn finish(mut buf: Vec<u8>) -> Result<Self, Error> {
        let body = buf.len() - LEN_ROOM;
        let mut len = Vec::with_capacity(LEN_ROOM);
        put_varint(&mut len, body as u64);
        if len.len() > LEN_ROOM || u32::try_from(body).is_err() {
            return Err(Error::TooLarge {
                size: body,
                limit: u32::MAX as usize,
            });
        }
        let start = LEN_ROOM - len.len();
        buf[start..LEN_ROOM].copy_from_slice(&len);
        Ok(Self { buf, start })
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Words an entry needs to hold this payload (sequence word included),
    /// rounded up to an odd count.
    fn words(&self) -> usize {
        (1 + self.bytes().len().div_ceil(8)) | 1
    }

    /// Bytes an entry holding this payload weighs.
    pub(crate) fn weight(&self) -> usize {
        weight_of(self.words())
    }
}

/// Writes the fields before the checksum; returns where the checksum goes
/// (8 bytes are reserved there, see [`seal`]). The user follows.
fn put_head(
    buf: &mut Vec<u8>,
    version: u64,
    created_at: i64,
    expires_at: i64,
    tail: &Tail,
    user: Option<&[u8]>,
) -> usize {
    put_varint(buf, version);
    put_varint(buf, zigzag(created_at));
    put_varint(buf, zigzag(expires_at));
    buf.extend_from_slice(tail);
    let check_at = buf.len();
    buf.extend_from_slice(&[0; CHECK_LEN]);
    put_user(buf, user);
    check_at
}

/// Writes the checksum of everything after `check_at + CHECK_LEN` at
/// `check_at`.
fn seal(buf: &mut [u8], check_at: usize) {
    let (head, checked) = buf.split_at_mut(check_at + CHECK_LEN);
    if let Some(slot) = head.get_mut(check_at..) {
        slot.copy_from_slice(&checksum(checked).to_le_bytes());
    }
}

/// Bytes of the checksum field.
const CHECK_LEN: usize = 8;

/// A checksum of `bytes` that catches damage, not attacks (nothing
/// outside the process can write an entry): eight bytes at a time,
/// multiplied and rotated, the length mixed in, then a final avalanche.
/// About a nanosecond per 8 bytes, a few percent of a decode.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(31);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(31);
    }
    // fmix64 of MurmurHash3: every input bit reaches every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn put_user(buf: &mut Vec<u8>, user: Option<&[u8]>) {
    match user {
        None => buf.push(0),
        Some(user) => {
            put_varint(buf, user.len() as u64 + 1);
            buf.extend_from_slice(user);
        }
    }
}

/// The weight of an entry of `words` words: the words, the `Arc` header
/// around them, and the short key. (moka's own per-entry bookkeeping comes
/// on top and is not counted.)
fn weight_of(words: usize) -> usize {
    8 * words + 2 * std::mem::size_of::<usize>() + SHORT
}

/// The fields of a stored payload, borrowed from a [`Snapshot`].
#[derive(Debug)]
pub(crate) struct Head<'a> {
    pub(crate) version: u64,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) tail: Tail,
    /// The checksum stored over `checked`.
    check: u64,
    /// The checked bytes: the user field and the data.
    checked: &'a [u8],
    pub(crate) user: Option<&'a [u8]>,
    pub(crate) data: &'a [u8],
}

impl Head<'_> {
    /// Parses a payload; `None` when it is damaged.
    fn parse(mut bytes: &[u8]) -> Option<Head<'_>> {
        let len = usize::try_from(take_varint(&mut bytes)?).ok()?;
        let mut body = take(&mut bytes, len)?;
        let version = take_varint(&mut body)?;
        let created_at = unzigzag(take_varint(&mut body)?);
        let expires_at = unzigzag(take_varint(&mut body)?);
        let mut tail = [0u8; 32 - SHORT];
        tail.copy_from_slice(take(&mut body, 32 - SHORT)?);
        let mut check = [0u8; CHECK_LEN];
        check.copy_from_slice(take(&mut body, CHECK_LEN)?);
        let checked = body;
        let user = match take_varint(&mut body)? {
            0 => None,
            n => Some(take(&mut body, usize::try_from(n - 1).ok()?)?),
        };
        Some(Head {
            version,
            created_at,
            expires_at,
            tail,
            check: u64::from_le_bytes(check),
            checked,
            user,
            data: body,
        })
    }

    /// Whether the record is live at `now`.
    pub(crate) fn is_live_at(&self, now: Timestamp) -> bool {
        now.as_millis() < self.expires_at
    }

    /// Whether the user and data are what this store wrote (their
    /// checksum matches): what every read checks before decoding and what
    /// a save checks before overwriting.
    pub(crate) fn is_intact(&self) -> bool {
        checksum(self.checked) == self.check
    }

    /// Whether the record is bound to `user`.
    pub(crate) fn is_of(&self, user: &str) -> bool {
        self.user == Some(user.as_bytes())
    }

    /// The record, stored under `key`: [`Error::Decode`] when it is not
    /// intact or does not decode.
    pub(crate) fn decode(&self, key: StorageKey) -> Result<Record, Error> {
        if !self.is_intact() {
            return Err(Error::decode(key, DAMAGED));
        }
        let data: Data = rmp_serde::from_slice(self.data).map_err(|e| Error::decode(key, e))?;
        let user = self
            .user
            .map(|u| String::from_utf8(u.to_vec()).map_err(|e| Error::decode(key, e)))
            .transpose()?;
        Ok(Record {
            key,
            data,
            user,
            created_at: Timestamp::from_millis(self.created_at),
            expires_at: Timestamp::from_millis(self.expires_at),
            version: self.version,
        })
    }
}

/// Why a record whose checksum does not match is unreadable.
pub(crate) const DAMAGED: &str = "damaged session: its user or data differ from what was stored";

/// A consistent copy of an entry's payload.
#[derive(Debug)]
pub(crate) struct Snapshot(Vec<u8>);

impl Snapshot {
    /// The parsed fields, or `None` when the payload is damaged.
    pub(crate) fn head(&self) -> Option<Head<'_>> {
        Head::parse(&self.0)
    }
}

/// One session as the cache holds it. Cheap to clone (clones share the
/// words).
#[derive(Debug, Clone)]
pub(crate) struct Entry(SeqLock);

/// Payload word `i`: bytes `8 * i ..` of `bytes`, zero-padded, little-endian.
fn word_of(bytes: &[u8], i: usize) -> u64 {
    let mut word = [0u8; 8];
    let start = i * 8;
    if let Some(chunk) = bytes.get(start..bytes.len().min(start + 8)) {
        word[..chunk.len()].copy_from_slice(chunk);
    }
    u64::from_le_bytes(word)
}

impl Entry {
    /// A new entry holding `payload`.
    pub(crate) fn new(payload: &Payload) -> Self {
        let bytes = payload.bytes();
        Self(SeqLock::new(
            (0..payload.words() - 1).map(|i| word_of(bytes, i)),
        ))
    }

    /// An entry made of raw words, the sequence number first (tests of
    /// damaged entries).
    #[cfg(test)]
    pub(crate) fn from_words(words: &[u64]) -> Self {
        Self(SeqLock::from_raw(words))
    }

    /// Whether both handles share one entry.
    #[cfg(test)]
    pub(crate) fn same(&self, other: &Self) -> bool {
        self.0.same(&other.0)
    }

    /// Bytes this entry weighs.
    pub(crate) fn weight(&self) -> usize {
        weight_of(self.0.len())
    }

    /// Whether `payload` can be written into this entry in place: it fits,
    /// and the entry is not more than twice the size it needs.
    pub(crate) fn fits(&self, payload: &Payload) -> bool {
        let need = payload.words();
        need <= self.0.len() && self.0.len() <= 2 * need + 1
    }

    /// A consistent copy of the whole payload.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut out = Vec::new();
        self.0.read(|words| {
            out.clear();
            out.reserve(8 * words.len());
            for word in words.iter() {
                out.extend_from_slice(&word.to_le_bytes());
            }
        });
        Snapshot(out)
    }

    /// The stored expiry in ms (`None` for a damaged entry). Allocates
    /// nothing.
    pub(crate) fn expires_at(&self) -> Option<i64> {
        // Length (≤ 5 bytes), version, created and expires (≤ 10 each).
        let (prefix, room) = self.0.read(|words| {
            let mut prefix = [0u8; 40];
            for (chunk, word) in prefix.chunks_exact_mut(8).zip(words.iter()) {
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            (prefix, 8 * words.len())
        });
        let mut rest = &prefix[..];
        (|| {
            // A length beyond the entry's words: damaged.
            let len = usize::try_from(take_varint(&mut rest)?).ok()?;
            if len > room {
                return None;
            }
            take_varint(&mut rest)?;
            take_varint(&mut rest)?;
            take_varint(&mut rest).map(unzigzag)
        })()
    }

    /// Overwrites the payload in place.
    ///
    /// The caller must hold the key's write lock (one writer at a time) and
    /// have checked [`Entry::fits`]; a payload that does not fit is not
    /// written, and `false` is returned.
    pub(crate) fn overwrite(&self, payload: &Payload) -> bool {
        let bytes = payload.bytes();
        self.0
            .write((0..bytes.len().div_ceil(8)).map(|i| word_of(bytes, i)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(user: Option<&str>) -> Record {
        let mut r = Record::new(
            StorageKey::from_bytes(std::array::from_fn(|i| i as u8)),
            Timestamp::from_millis(-5),
            Timestamp::from_millis(1_700_000_000_123),
        );
        r.user = user.map(String::from);
        r.data.insert("k".into(), serde_json::json!(["v", 1]));
        r.version = 3;
        r
    }

    #[test]
    fn keys_split_and_join() {
        let key = record(None).key;
        let (short, tail) = split(&key);
        assert_eq!(join(&short, &tail), key);
    }

    #[test]
    fn round_trips_with_and_without_user_and_in_place() {
        for user in [None, Some(""), Some("zoë 🦀")] {
            let r = record(user);
            let (_, tail) = split(&r.key);
            let entry = Entry::new(&Payload::encode(&r, 9, &tail, "test").unwrap());
            let snap = entry.snapshot();
            let head = snap.head().unwrap();
            assert_eq!(head.version, 9);
            assert_eq!(head.tail, tail);
            assert_eq!(head.user, user.map(str::as_bytes));
            assert_eq!(entry.expires_at(), Some(r.expires_at.as_millis()));
            let mut expected = r.clone();
            expected.version = 9;
            assert_eq!(head.decode(r.key).unwrap(), expected);

            let moved = Payload::with_expiry(&head, Timestamp::from_millis(5)).unwrap();
            assert!(entry.fits(&moved));
            assert!(entry.overwrite(&moved));
            assert_eq!(entry.expires_at(), Some(5));
            let snap = entry.snapshot();
            let head = snap.head().unwrap();
            assert_eq!((head.version, head.user), (9, user.map(str::as_bytes)));
            assert_eq!(head.decode(r.key).unwrap().data, r.data);
        }
    }

    #[test]
    fn a_bigger_payload_does_not_fit_and_is_not_written() {
        let r = record(Some("alice"));
        let (_, tail) = split(&r.key);
        let entry = Entry::new(&Payload::encode(&r, 0, &tail, "test").unwrap());
        let mut big = r.clone();
        big.data.insert("pad".into(), "x".repeat(100).into());
        let big = Payload::encode(&big, 1, &tail, "test").unwrap();
        assert!(!entry.fits(&big));
        assert!(!entry.overwrite(&big));
        assert_eq!(entry.snapshot().head().unwrap().version, 0);
    }

    #[test]
    fn word_count_is_odd_and_weight_counts_every_word() {
        let r = record(Some("alice"));
        let (_, tail) = split(&r.key);
        let payload = Payload::encode(&r, 0, &tail, "test").unwrap();
        let entry = Entry::new(&payload);
        assert_eq!(entry.0.len() % 2, 1);
        assert!(8 * (entry.0.len() - 1) >= payload.bytes().len());
        assert_eq!(entry.weight(), 8 * entry.0.len() + 16 + 16);
        assert_eq!(payload.weight(), entry.weight());
    }

    #[test]
    fn a_damaged_entry_is_a_decode_error_not_a_panic() {
        for words in [vec![], vec![0], vec![0, u64::MAX], vec![0, 0xff, 7, 7]] {
            let entry = Entry::from_words(&words);
            assert!(entry.snapshot().head().is_none());
            let _ = entry.expires_at();
        }
    }

    #[test]
    fn any_flipped_bit_in_the_user_or_data_is_caught_and_touch_keeps_the_check() {
        let r = record(Some("alice"));
        let (_, tail) = split(&r.key);
        let payload = Payload::encode(&r, 4, &tail, "test").unwrap();
        let bytes = payload.bytes().to_vec();
        let head = Head::parse(&bytes).unwrap();
        assert!(head.is_intact());
        let checked_from = bytes.len() - head.checked.len();
        for at in checked_from..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                if let Some(head) = Head::parse(&damaged) {
                    assert!(!head.is_intact(), "byte {at} bit {bit}");
                    assert!(head.decode(r.key).is_err(), "byte {at} bit {bit}");
                }
            }
        }
        let moved = Payload::with_expiry(&head, Timestamp::from_millis(9)).unwrap();
        let moved = Head::parse(moved.bytes()).unwrap();
        assert!(moved.is_intact());
        assert_eq!(moved.expires_at, 9);
    }

    #[test]
    fn varints_round_trip() {
        for n in [0, 1, -1, 127, -128, i64::MAX, i64::MIN, 1_700_000_000_123] {
            let mut buf = Vec::new();
            put_varint(&mut buf, zigzag(n));
            let mut rest = buf.as_slice();
            assert_eq!(take_varint(&mut rest).map(unzigzag), Some(n));
            assert!(rest.is_empty());
        }
    }
}
