//! The shared conformance suite, one named test per case.

use session_store_conformance::Namespace;
use session_store_memory::MemoryStore;

async fn store(_: Namespace) -> Result<MemoryStore, std::convert::Infallible> {
    Ok(MemoryStore::new(64 * 1024 * 1024))
}

session_store_conformance::suite!(store);
