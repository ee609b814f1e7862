//! The peer store ("another app server on the same data"): proves that
//! `PEER_CASES` lists exactly the cases that call the store given to
//! `Context::with_peer` (every case of `CASES` is run with a counting peer
//! over the same reference store, and the ones that used it must be
//! exactly `PEER_CASES`), that each passes with a peer, and that without
//! a peer `peer_store_arc` is the store under test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Fault, Reference, runtime};
use session_core::{Error, Record, SessionStore, StorageKey, Timestamp, UserSessions};
use session_store_conformance::{CASES, Context, Namespace, PEER_CASES, run};

/// Another handle on the same reference store that counts the calls made
/// through it.
struct Peer {
    inner: Arc<Reference>,
    calls: AtomicU64,
}

impl Peer {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl SessionStore for Peer {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.count();
        self.inner.create(record).await
    }
    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        self.count();
        self.inner.load(key).await
    }
    async fn save(&self, record: &Record) -> Result<u64, Error> {
        self.count();
        self.inner.save(record).await
    }
    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.count();
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        self.count();
        self.inner.delete(key).await
    }
    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        self.count();
        self.inner.list_by_user(user).await
    }
    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        self.count();
        self.inner.delete_by_user(user).await
    }
    async fn delete_expired(&self) -> Result<u64, Error> {
        self.count();
        self.inner.delete_expired().await
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

#[test]
fn peer_cases_are_exactly_the_cases_that_use_the_peer_and_pass_with_one() {
    let names = |cases: &[session_store_conformance::Case]| -> BTreeSet<&'static str> {
        cases.iter().map(|c| c.name).collect()
    };
    let all = names(CASES);
    let peer = names(PEER_CASES);
    assert_eq!(peer.len(), PEER_CASES.len(), "peer case names are unique");
    assert!(
        peer.is_subset(&all),
        "every peer case is in CASES: {:?}",
        peer.difference(&all).collect::<Vec<_>>()
    );

    let (used, failed) = runtime().block_on(async {
        let runs = CASES.iter().map(|case| async move {
            let store = Arc::new(Reference::new(Fault::None));
            let peer = Arc::new(Peer {
                inner: Arc::clone(&store),
                calls: AtomicU64::new(0),
            });
            let cx = Context::new(store, Namespace::random().unwrap())
                .with_peer(Arc::clone(&peer) as Arc<dyn SessionStore>);
            let outcome = run(case, cx).await;
            (case.name, peer.calls.load(Ordering::SeqCst), outcome)
        });
        let results = futures_util::future::join_all(runs).await;
        let used: BTreeSet<&str> = results
            .iter()
            .filter(|(_, calls, _)| *calls > 0)
            .map(|(name, _, _)| *name)
            .collect();
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(|(_, _, outcome)| outcome.err().map(|f| f.to_string()))
            .collect();
        (used, failed)
    });
    assert_eq!(failed, Vec::<String>::new(), "cases failed with a peer");
    assert_eq!(
        used, peer,
        "the cases that called the peer store must be exactly PEER_CASES"
    );
}

#[test]
fn without_a_peer_the_peer_store_is_the_store_under_test() {
    let store: Arc<dyn SessionStore> = Arc::new(Reference::new(Fault::None));
    let cx = Context::new(Arc::clone(&store), Namespace::random().unwrap());
    assert!(Arc::ptr_eq(&cx.peer_store_arc(), &store));
    let other: Arc<dyn SessionStore> = Arc::new(Reference::new(Fault::None));
    let cx = cx.with_peer(Arc::clone(&other));
    assert!(Arc::ptr_eq(&cx.peer_store_arc(), &other));
    assert!(Arc::ptr_eq(&cx.store_arc(), &store));
}
