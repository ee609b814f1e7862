//! The shared conformance suite against a single Redis server
//! (`redis::`), a single Valkey server (`valkey::`) and (feature
//! `cluster`) a 3-master Redis cluster (`cluster::`). See `common` for how
//! the tests find each server.

mod common;

mod redis {
    session_store_conformance::suite!(
        super::common::redis_store,
        unreadable = super::common::plant_redis
    );
}

mod valkey {
    session_store_conformance::suite!(
        super::common::valkey_store,
        unreadable = super::common::plant_valkey
    );
}

#[cfg(feature = "cluster")]
mod cluster {
    session_store_conformance::suite!(
        super::common::cluster_store,
        unreadable = super::common::plant_cluster
    );
}
