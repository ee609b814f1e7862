//! The shared conformance suite, one named test per case.

use std::sync::Arc;

use session_core::{Error, Record};
use session_store_conformance::Namespace;
use session_store_memory::MemoryStore;

async fn store(_: Namespace) -> Result<MemoryStore, std::convert::Infallible> {
    Ok(MemoryStore::new(64 * 1024 * 1024))
}

async fn plant(store: Arc<MemoryStore>, record: Record) -> Result<(), Error> {
    store.plant_unreadable(&record).await
}

session_store_conformance::suite!(store, unreadable = plant);
