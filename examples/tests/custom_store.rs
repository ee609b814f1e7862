//! The conformance suite against the custom store of
//! `examples/src/custom_store.rs`: every case as its own named test.
//! The root README's "Write your own store" shows it verbatim (checked
//! by the last test below).

use std::convert::Infallible;
use std::sync::Arc;

use examples::custom_store::HashMapStore;
use session_core::Record;
use session_store_conformance::{Damage, Namespace};

// A fresh store per case: nothing is shared, so the namespace is not needed.
async fn store(_: Namespace) -> Result<HashMapStore, Infallible> {
    Ok(HashMapStore::new())
}

// How to damage a record of this store, for the cases on unreadable records.
// This store keeps records as Rust values, so damage to the framing and
// damage inside the data look alike: a value it cannot read.
async fn plant(store: Arc<HashMapStore>, record: Record, damage: Damage) -> Result<(), Infallible> {
    match damage {
        Damage::Frame | Damage::Data => store.damage(&record),
    }
    Ok(())
}

session_store_conformance::suite!(store, unreadable = plant);

// Not part of the example: the root README shows this file from its first
// `use` to the `suite!` line above, verbatim; this keeps the two the same.
#[test]
fn readme_shows_this_file_verbatim() {
    let this = include_str!("custom_store.rs");
    let last = "suite!(store, unreadable = plant);\n";
    let start = this.find("use std::").unwrap_or_default();
    let end = this.find(last).map_or(this.len(), |i| i + last.len());
    let excerpt = format!("```rust\n{}```\n", &this[start..end]);
    assert!(
        include_str!("../../README.md").contains(&excerpt),
        "README.md, \"Write your own store\", must show this excerpt of examples/tests/custom_store.rs verbatim:\n{excerpt}"
    );
}
