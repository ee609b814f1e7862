//! The shared conformance suite, against a single server and (feature
//! `cluster`) against a 3-master cluster. See `common` for how the tests
//! find Redis.

mod common;

mod single {
    session_store_conformance::suite!(
        super::common::single_store,
        unreadable = super::common::plant_single
    );
}

#[cfg(feature = "cluster")]
mod cluster {
    session_store_conformance::suite!(
        super::common::cluster_store,
        unreadable = super::common::plant_cluster
    );
}
