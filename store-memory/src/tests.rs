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
async fn eviction_is_lru_and_unindexes_evicted_sessions() {
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
    // The index lists exactly what is still there and holds no more than that.
    let listed = store.list_by_user("u").await.unwrap();
    let mut alive = 0;
    for r in std::iter::once(&first).chain(&others) {
        if store.load(&r.key).await.unwrap().is_some() {
            alive += 1;
        }
    }
    assert_eq!(listed.len(), alive);
    assert!(alive < 10, "{alive} sessions alive in 8 KiB");
    assert_eq!(store.inner.index.keys_of("u").len(), alive);
}

#[tokio::test]
async fn expiry_unindexes_through_the_listener() {
    let store = MemoryStore::default();
    let mut r = record(Duration::ZERO);
    r.expires_at = Timestamp::now().saturating_sub(Duration::from_secs(1));
    r.user = Some("gone".into());
    store.create(&r).await.unwrap();
    store.delete_expired().await.unwrap();
    assert_eq!(store.inner.index.user_count(), 0);
}

#[tokio::test]
async fn a_stale_index_entry_is_never_listed_nor_deleted() {
    // Plant an index entry that points at alice's live session under
    // mallory's name: readers must check the session's own user.
    let store = MemoryStore::default();
    let mut alice = record(Duration::from_secs(600));
    alice.user = Some("alice".into());
    store.create(&alice).await.unwrap();
    let incarnation = store
        .inner
        .cache
        .get(&alice.key)
        .await
        .unwrap()
        .incarnation();
    store.inner.index.add("mallory", alice.key, incarnation);
    assert!(store.list_by_user("mallory").await.unwrap().is_empty());
    assert_eq!(store.delete_by_user("mallory").await.unwrap(), 0);
    assert_eq!(store.load(&alice.key).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.list_by_user("alice").await.unwrap(), vec![alice]);
}

#[tokio::test]
async fn an_index_entry_of_a_vanished_session_is_pruned_on_read() {
    let store = MemoryStore::default();
    let ghost = record(Duration::from_secs(600)).key;
    store.inner.index.add("bob", ghost, 7);
    assert!(store.list_by_user("bob").await.unwrap().is_empty());
    assert_eq!(store.inner.index.user_count(), 0);
}
