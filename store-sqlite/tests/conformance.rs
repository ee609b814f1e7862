//! The shared conformance suite, twice: against a fresh temporary database
//! file per case, and against the in-memory mode.

mod common;

/// A fresh database file per case; the namespace doubles as table name.
mod file {
    use session_store_conformance::Namespace;

    use crate::common::{TempFileStore, TestResult};

    async fn factory(ns: Namespace) -> TestResult<TempFileStore> {
        TempFileStore::new(ns.as_str()).await
    }

    async fn plant(
        store: std::sync::Arc<TempFileStore>,
        record: session_core::Record,
        damage: session_store_conformance::Damage,
    ) -> Result<(), String> {
        crate::common::plant_unreadable(&store.store, &record, damage).await
    }

    session_store_conformance::suite!(factory, unreadable = plant);
}

/// A fresh in-memory database per case, shared by the whole pool.
mod memory {
    use session_store_conformance::Namespace;
    use session_store_sqlite::{SqliteOptions, SqliteStore, TableName};

    use crate::common::TestResult;

    async fn factory(ns: Namespace) -> TestResult<SqliteStore> {
        Ok(SqliteOptions::in_memory()
            .table(TableName::new(ns.as_str())?)
            .open()
            .await?)
    }

    async fn plant(
        store: std::sync::Arc<SqliteStore>,
        record: session_core::Record,
        damage: session_store_conformance::Damage,
    ) -> Result<(), String> {
        crate::common::plant_unreadable(&store, &record, damage).await
    }

    session_store_conformance::suite!(factory, unreadable = plant);
}
