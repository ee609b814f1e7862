//! The shared conformance suite, one named test per case.

use std::sync::Arc;

use session_core::{Error, Record};
use session_store_conformance::{Damage, Namespace};
use session_store_memory::MemoryStore;

async fn store(_: Namespace) -> Result<MemoryStore, std::convert::Infallible> {
    Ok(MemoryStore::new(64 * 1024 * 1024))
}

async fn plant(store: Arc<MemoryStore>, record: Record, damage: Damage) -> Result<(), Error> {
    match damage {
        Damage::Frame => store.plant_unreadable(&record).await,
        Damage::Data => store.plant_damaged_data(&record).await,
    }
}

session_store_conformance::suite!(store, unreadable = plant);
