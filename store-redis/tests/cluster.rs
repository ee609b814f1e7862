//! Cluster-only checks beyond the conformance suite (feature `cluster`).
#![cfg(feature = "cluster")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use session_core::{Record, SessionId, SessionStore, Timestamp};
use session_store_conformance::Namespace;
use session_store_redis::RedisStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reloaded_after_a_flush_on_every_node() {
    let nodes = common::shared_cluster().unwrap_or_else(|e| panic!("{e}"));
    let ns = Namespace::random().unwrap();
    let store = RedisStore::cluster_builder(nodes.clone())
        .prefix(common::prefix(&ns))
        .connect()
        .await
        .unwrap();
    let now = Timestamp::now();
    let mut records = Vec::new();
    // Enough sessions to land on every master.
    for i in 0..12 {
        let mut r = Record::new(
            SessionId::generate().unwrap().storage_key(),
            now,
            now.saturating_add(Duration::from_secs(3600)),
        );
        r.user = Some(format!("user{}", i % 3));
        store.create(&r).await.unwrap();
        records.push(r);
    }
    for node in &nodes {
        let port = node
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        common::redis_cli(&["-p", &port, "script", "flush"]).unwrap();
    }
    for r in &mut records {
        r.data.insert("after".into(), serde_json::json!("flush"));
        r.version = store.save(r).await.unwrap();
        assert_eq!(store.load(&r.key).await.unwrap().as_ref(), Some(&*r));
    }
    assert_eq!(store.list_by_user("user1").await.unwrap().records.len(), 4);
    assert_eq!(store.delete_by_user("user2").await.unwrap(), 4);
}
