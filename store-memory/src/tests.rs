#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;

fn record(ttl: Duration) -> Record {
    let now = Timestamp::now();
    Record::new(
        session_core::SessionId::generate().unwrap().storage_key(),
        now,
        now.saturating_add(ttl),
    )
}

fn indexed(store: &MemoryStore, user: &str) -> usize {
    let inner = &store.inner;
    inner.index.keys_of(inner.user_hash(user.as_bytes())).len()
}

/// How long a test waits for background work (a sweep, a writer task)
/// before it fails: such work takes milliseconds.
const POLL_LIMIT: Duration = Duration::from_secs(5);

async fn entry_of(store: &MemoryStore, key: &StorageKey) -> Option<Entry> {
    store.inner.cache.get(&entry::split(key).0).await
}

#[tokio::test]
async fn record_larger_than_capacity_is_too_large_and_not_stored() {
    let store = MemoryStore::new(4096);
    let mut big = record(Duration::from_secs(60));
    big.data.insert("blob".into(), "x".repeat(8192).into());
    match store.create(&big).await {
        Err(Error::TooLarge { size, limit }) => {
            assert!(size > 8192);
            assert_eq!(limit, 4096);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(store.load(&big.key).await.unwrap(), None);
}

#[tokio::test]
async fn eviction_is_lru_and_list_by_user_prunes_evicted_sessions() {
    // Room for a handful of ~1 KiB sessions.
    let store = MemoryStore::new(8 * 1024);
    let mut first = record(Duration::from_secs(600));
    first.user = Some("u".into());
    first.data.insert("pad".into(), "x".repeat(900).into());
    store.create(&first).await.unwrap();
    let mut others = Vec::new();
    for _ in 0..40 {
        // Keep reading `first` so that it stays the most recently used.
        assert!(store.load(&first.key).await.unwrap().is_some());
        let mut r = record(Duration::from_secs(600));
        r.user = Some("u".into());
        r.data.insert("pad".into(), "y".repeat(900).into());
        store.create(&r).await.unwrap();
        others.push(r);
        store.run_pending_tasks().await;
    }
    store.run_pending_tasks().await;
    assert!(store.weighted_bytes() <= 8 * 1024);
    // The newest session was admitted (LRU, not TinyLFU's admission filter).
    let newest = others.last().unwrap();
    assert!(store.load(&newest.key).await.unwrap().is_some());
    // The hot session survived; old cold ones were evicted.
    assert!(store.load(&first.key).await.unwrap().is_some());
    assert!(store.load(&others[0].key).await.unwrap().is_none());
    // The index lists exactly what is still there, and listing pruned the
    // entries of evicted sessions.
    let listed = store.list_by_user("u").await.unwrap();
    let mut alive = 0;
    for r in std::iter::once(&first).chain(&others) {
        if store.load(&r.key).await.unwrap().is_some() {
            alive += 1;
        }
    }
    assert_eq!(listed.records.len(), alive);
    assert!(alive < 10, "{alive} sessions alive in 8 KiB");
    assert_eq!(indexed(&store, "u"), alive);
}

#[tokio::test]
async fn the_sweep_removes_expired_sessions_and_their_index_entries() {
    let store = MemoryStore::default();
    let mut gone = record(Duration::ZERO);
    gone.expires_at = Timestamp::now().saturating_sub(Duration::from_secs(1));
    gone.user = Some("gone".into());
    store.create(&gone).await.unwrap();
    let mut kept = record(Duration::from_secs(600));
    kept.user = Some("kept".into());
    store.create(&kept).await.unwrap();
    assert_eq!(store.delete_expired().await.unwrap(), 1);
    assert!(entry_of(&store, &gone.key).await.is_none());
    assert_eq!(indexed(&store, "gone"), 0);
    assert_eq!(store.inner.index.len(), 1);
    assert_eq!(store.load(&kept.key).await.unwrap(), Some(kept));
    assert_eq!(store.entry_count(), 1);
}

#[tokio::test]
async fn expired_sessions_are_swept_without_being_asked() {
    let store = MemoryStore::default();
    let mut gone = record(Duration::ZERO);
    gone.expires_at = Timestamp::now().saturating_sub(Duration::from_secs(1));
    gone.user = Some("gone".into());
    store.create(&gone).await.unwrap();
    // Nothing is due yet: an unrelated operation sweeps nothing.
    let other = record(Duration::from_secs(600));
    assert_eq!(store.load(&other.key).await.unwrap(), None);
    tokio::task::yield_now().await;
    assert!(entry_of(&store, &gone.key).await.is_some());
    // Once the interval has passed (here: the deadline moved into the
    // past), the next operation starts a sweep on the runtime.
    store.inner.next_sweep.store(0, Ordering::Relaxed);
    assert_eq!(store.load(&other.key).await.unwrap(), None);
    // The sweep runs on its own task (its scans on the blocking pool): it
    // takes milliseconds; give it a few seconds, then fail.
    let started = std::time::Instant::now();
    while entry_of(&store, &gone.key).await.is_some() || store.inner.index.len() > 0 {
        assert!(
            started.elapsed() < POLL_LIMIT,
            "no sweep removed the expired session within {POLL_LIMIT:?} (entry still held: {}, index entries: {})",
            entry_of(&store, &gone.key).await.is_some(),
            store.inner.index.len(),
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // ... and scheduled the next one an interval later.
    assert!(store.inner.next_sweep.load(Ordering::Relaxed) > Timestamp::now().as_millis());
}

#[tokio::test]
async fn a_stale_index_entry_is_never_listed_nor_deleted() {
    // Plant an index entry that points at alice's live session under
    // mallory's name: readers must check the session's own user.
    let store = MemoryStore::default();
    let mut alice = record(Duration::from_secs(600));
    alice.user = Some("alice".into());
    store.create(&alice).await.unwrap();
    let inner = &store.inner;
    inner
        .index
        .add(inner.user_hash(b"mallory"), entry::split(&alice.key).0);
    assert!(
        store
            .list_by_user("mallory")
            .await
            .unwrap()
            .records
            .is_empty()
    );
    assert_eq!(store.delete_by_user("mallory").await.unwrap(), 0);
    assert_eq!(store.load(&alice.key).await.unwrap(), Some(alice.clone()));
    assert_eq!(
        store.list_by_user("alice").await.unwrap().records,
        vec![alice]
    );
}

#[tokio::test]
async fn an_index_entry_of_a_vanished_session_is_pruned_on_read() {
    let store = MemoryStore::default();
    let ghost = record(Duration::from_secs(600)).key;
    let inner = &store.inner;
    inner
        .index
        .add(inner.user_hash(b"bob"), entry::split(&ghost).0);
    assert!(store.list_by_user("bob").await.unwrap().records.is_empty());
    assert_eq!(inner.index.len(), 0);
}

#[tokio::test]
async fn a_save_that_fits_rewrites_the_entry_in_place() {
    let store = MemoryStore::default();
    let mut r = record(Duration::from_secs(600));
    r.user = Some("alice".into());
    r.data.insert("n".into(), 1.into());
    store.create(&r).await.unwrap();
    let before = entry_of(&store, &r.key).await.unwrap();
    r.data.insert("n".into(), 2.into());
    r.version = store.save(&r).await.unwrap();
    let after = entry_of(&store, &r.key).await.unwrap();
    assert!(before.same(&after), "saved in place");
    assert_eq!(store.load(&r.key).await.unwrap(), Some(r.clone()));
    // A save that does not fit makes a new entry.
    r.data.insert("pad".into(), "x".repeat(500).into());
    r.version = store.save(&r).await.unwrap();
    let grown = entry_of(&store, &r.key).await.unwrap();
    assert!(!after.same(&grown));
    assert_eq!(store.load(&r.key).await.unwrap(), Some(r.clone()));
    // Changing the user moves the index entry.
    r.user = Some("bob".into());
    r.version = store.save(&r).await.unwrap();
    assert_eq!((indexed(&store, "alice"), indexed(&store, "bob")), (0, 1));
    assert_eq!(store.list_by_user("bob").await.unwrap().records, vec![r]);
}

/// Sets its flag when dropped: when the task holding it ends, even by a
/// panic.
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_half_a_save() {
    let store = MemoryStore::default();
    let mut r = record(Duration::from_secs(600));
    r.data.insert("n".into(), 0.into());
    r.data.insert("text".into(), "0".repeat(40).into());
    store.create(&r).await.unwrap();
    let key = r.key;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, done) = (store.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let _done = SetOnDrop(done);
            for n in 1..=2000u64 {
                r.data.insert("n".into(), n.into());
                let digit = char::from(b'0' + (n % 10) as u8);
                r.data
                    .insert("text".into(), digit.to_string().repeat(40).into());
                r.version = store.save(&r).await.unwrap();
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (store, done) = (store.clone(), Arc::clone(&done));
        readers.push(tokio::spawn(async move {
            loop {
                // Read the flag first: a read after the writer ended must
                // see its last save.
                let finished = done.load(Ordering::SeqCst);
                let got = store.load(&key).await.unwrap().unwrap();
                let n = got.data["n"].as_u64().unwrap();
                assert_eq!(got.version, n, "version and data of one save");
                let digit = char::from(b'0' + (n % 10) as u8);
                assert_eq!(got.data["text"], digit.to_string().repeat(40));
                if n == 2000 {
                    break;
                }
                assert!(
                    !finished,
                    "the writer ended, yet a load sees save {n} of 2000"
                );
                tokio::task::yield_now().await;
            }
        }));
    }
    writer.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test]
async fn keys_sharing_their_first_half_stay_apart() {
    let store = MemoryStore::default();
    let a = record(Duration::from_secs(600));
    let mut bytes = *a.key.as_bytes();
    bytes[31] ^= 1;
    let mut b = a.clone();
    b.key = StorageKey::from_bytes(bytes);
    store.create(&a).await.unwrap();
    assert!(matches!(store.create(&b).await, Err(Error::Exists)));
    assert_eq!(store.load(&b.key).await.unwrap(), None);
    assert!(matches!(store.save(&b).await, Err(Error::NotFound)));
    assert!(!store.touch(&b.key, a.expires_at).await.unwrap());
    assert!(!store.delete(&b.key).await.unwrap());
    assert_eq!(store.load(&a.key).await.unwrap(), Some(a));
}

#[tokio::test]
async fn a_damaged_entry_is_a_decode_error_and_stays() {
    let store = MemoryStore::default();
    let r = record(Duration::from_secs(600));
    let short = entry::split(&r.key).0;
    store
        .inner
        .cache
        .insert(short, Entry::from_words(&[0, 0xff, 1]))
        .await;
    assert!(matches!(
        store.load(&r.key).await,
        Err(Error::Decode { .. })
    ));
    assert!(matches!(store.save(&r).await, Err(Error::Decode { .. })));
    assert!(matches!(
        store.touch(&r.key, r.expires_at).await,
        Err(Error::Decode { .. })
    ));
    assert!(matches!(store.create(&r).await, Err(Error::Decode { .. })));
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert!(store.inner.cache.contains_key(&short));
    // Deleting it is the way out.
    assert!(store.delete(&r.key).await.unwrap());
    assert!(!store.inner.cache.contains_key(&short));
    store.create(&r).await.unwrap();
}

/// The weight of `record`'s entry, as a `create` stores it.
fn weight_of(record: &Record) -> usize {
    let tail = entry::split(&record.key).1;
    Payload::encode(record, record.version, &tail, "create")
        .unwrap()
        .weight()
}

#[tokio::test]
async fn capacity_counts_and_debug_follow_the_entries() {
    assert_eq!(MemoryStore::default().max_bytes(), 256 * 1024 * 1024);
    let store = MemoryStore::new(1 << 20);
    assert_eq!(store.max_bytes(), 1 << 20);
    let records: Vec<Record> = (0..3).map(|_| record(Duration::from_secs(600))).collect();
    for r in &records {
        store.create(r).await.unwrap();
    }
    store.run_pending_tasks().await;
    let weights = |rs: &[Record]| rs.iter().map(|r| weight_of(r) as u64).sum::<u64>();
    assert_eq!(store.entry_count(), 3);
    assert_eq!(store.weighted_bytes(), weights(&records));
    assert!(store.delete(&records[0].key).await.unwrap());
    store.run_pending_tasks().await;
    assert_eq!(store.entry_count(), 2);
    assert_eq!(store.weighted_bytes(), weights(&records[1..]));
    assert_eq!(
        format!("{store:?}"),
        format!(
            "MemoryStore {{ max_bytes: 1048576, entries: 2, weighted_bytes: {} }}",
            weights(&records[1..])
        )
    );
}

#[tokio::test]
async fn a_record_of_exactly_the_capacity_fits() {
    let r = record(Duration::from_secs(600));
    let weight = weight_of(&r);
    let exact = MemoryStore::new(weight as u64);
    exact.create(&r).await.unwrap();
    assert_eq!(exact.load(&r.key).await.unwrap(), Some(r.clone()));
    let smaller = MemoryStore::new(weight as u64 - 1);
    match smaller.create(&r).await {
        Err(Error::TooLarge { size, limit }) => assert_eq!((size, limit), (weight, weight - 1)),
        other => panic!("expected TooLarge {{ size: {weight}, .. }}, got {other:?}"),
    }
}

#[tokio::test]
async fn sweeps_are_an_interval_apart() {
    let before = Timestamp::now().as_millis();
    let store = MemoryStore::default();
    let after = Timestamp::now().as_millis();
    let interval = SWEEP_INTERVAL.as_millis() as i64;
    let due = store.inner.next_sweep.load(Ordering::Relaxed);
    assert!(
        (before + interval..=after + interval).contains(&due),
        "first sweep due at {due}, not {interval} ms after {before}..={after}"
    );
    // Not due yet: no operation starts a sweep (starting one moves the
    // due time an interval on).
    let later = after + interval / 2;
    store.inner.next_sweep.store(later, Ordering::Relaxed);
    let r = record(Duration::from_secs(600));
    store.create(&r).await.unwrap();
    assert_eq!(store.load(&r.key).await.unwrap(), Some(r));
    assert_eq!(store.inner.next_sweep.load(Ordering::Relaxed), later);
}

#[tokio::test]
async fn many_stale_index_entries_make_a_sweep_due() {
    let store = MemoryStore::default();
    store.run_pending_tasks().await;
    assert_eq!(store.entry_count(), 0);
    let inner = &store.inner;
    let ghost = inner.user_hash(b"ghost");
    let stale = |i: u32| {
        let mut short = [0xee; 16];
        short[..4].copy_from_slice(&i.to_be_bytes());
        entry::ShortKey(short)
    };
    let due = inner.next_sweep.load(Ordering::Relaxed);
    // Up to twice (live entries + 1024) stale entries are tolerated ...
    for i in 0..2048 {
        inner.index.add(ghost, stale(i));
    }
    inner.check_index_size();
    assert_eq!(inner.next_sweep.load(Ordering::Relaxed), due);
    // ... one more makes a sweep due at once.
    inner.index.add(ghost, stale(2048));
    inner.check_index_size();
    assert_eq!(inner.next_sweep.load(Ordering::Relaxed), i64::MIN);

    // Through the store: a create of a signed-in session checks, and the
    // next operation sweeps the stale entries away.
    let store = MemoryStore::default();
    let inner = &store.inner;
    for i in 0..2100 {
        inner.index.add(inner.user_hash(b"ghost"), stale(i));
    }
    let mut r = record(Duration::from_secs(600));
    r.user = Some("alice".into());
    store.create(&r).await.unwrap();
    assert_eq!(inner.next_sweep.load(Ordering::Relaxed), i64::MIN);
    assert_eq!(store.load(&r.key).await.unwrap(), Some(r));
    let started = std::time::Instant::now();
    while inner.index.len() > 1 {
        assert!(
            started.elapsed() < POLL_LIMIT,
            "no sweep pruned the stale index entries within {POLL_LIMIT:?} ({} left)",
            inner.index.len()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(indexed(&store, "alice"), 1);
    assert_eq!(indexed(&store, "ghost"), 0);
}
