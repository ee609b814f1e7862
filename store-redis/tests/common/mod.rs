//! Finds (or starts) the Redis the tests run against: see
//! `session_store_redis::testing`, plus the conformance factories.
#![allow(dead_code, unreachable_pub, unused_imports)]

use session_store_conformance::Namespace;
use session_store_redis::RedisStore;
pub use session_store_redis::testing::*;

/// The key prefix a test namespace uses.
pub fn prefix(ns: &Namespace) -> String {
    format!("test:{ns}:")
}

/// The conformance factory for a single server.
pub async fn single_store(ns: Namespace) -> Result<RedisStore, String> {
    let url = shared_url()?;
    RedisStore::builder(url.clone())
        .prefix(prefix(&ns))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

/// The conformance factory for the cluster.
#[cfg(feature = "cluster")]
pub async fn cluster_store(ns: Namespace) -> Result<RedisStore, String> {
    let nodes = shared_cluster()?;
    RedisStore::cluster_builder(nodes.clone())
        .prefix(prefix(&ns))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to the cluster {nodes:?}: {e}"))
}
