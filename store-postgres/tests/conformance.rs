//! The shared conformance suite, each case in a schema of its own on the
//! server the harness finds (`DATABASE_URL`, else a throwaway cluster).

use std::sync::Arc;

use session_core::{Error, Record};
use session_store_conformance::{Damage, Namespace};
use session_store_postgres::testing::TestStore;

async fn factory(ns: Namespace) -> Result<TestStore, String> {
    TestStore::in_schema(ns.as_str(), |options| options).await
}

async fn plant(store: Arc<TestStore>, record: Record, damage: Damage) -> Result<(), Error> {
    match damage {
        Damage::Frame => store.plant_unreadable(&record).await,
        Damage::Data => store.plant_damaged_data(&record).await,
    }
}

session_store_conformance::suite!(factory, unreadable = plant);
