//! The suite, adopted in one line by a correct reference store: proves the
//! macro expands to one passing test per case, and exactly the cases in
//! `CASES`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Fault, Reference};
use session_store_conformance::{
    CASES, MANAGER_CASES, Namespace, Part, STORE_CASES, UNREADABLE_CASES,
};

async fn store(_: Namespace) -> Result<Reference, std::convert::Infallible> {
    Ok(Reference::new(Fault::None))
}

async fn plant(
    store: std::sync::Arc<Reference>,
    record: session_core::Record,
    damage: session_store_conformance::Damage,
) -> Result<(), String> {
    store.plant_unreadable(&record, damage);
    Ok(())
}

session_store_conformance::suite!(store, unreadable = plant);

#[test]
fn suite_macro_covers_exactly_the_cases() {
    let listed: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    assert_eq!(CONFORMANCE_CASES_COVERED, listed.as_slice());
    let mut unique = listed.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), listed.len(), "case names must be unique");
    assert!(listed.len() >= 30, "only {} cases", listed.len());
}

#[test]
fn cases_are_the_store_cases_then_the_manager_cases() {
    let names = |cases: &[session_store_conformance::Case]| -> Vec<&str> {
        cases.iter().map(|c| c.name).collect()
    };
    let mut parts = names(STORE_CASES);
    parts.extend(names(MANAGER_CASES));
    assert_eq!(names(CASES), parts);
    assert!(STORE_CASES.iter().all(|c| c.part == Part::Store));
    assert!(UNREADABLE_CASES.iter().all(|c| c.part == Part::Store));
    assert!(MANAGER_CASES.iter().all(|c| c.part == Part::Manager));
    // What a store author reads in a failure: whose bug it is.
    assert_eq!(Part::Store.to_string(), "store contract");
    assert_eq!(Part::Manager.to_string(), "session manager");
}

/// The case modules of the store contract (unreadable records aside).
const STORE_MODULES: [&str; 11] = [
    include_str!("../src/cases/create.rs"),
    include_str!("../src/cases/load.rs"),
    include_str!("../src/cases/reload.rs"),
    include_str!("../src/cases/save.rs"),
    include_str!("../src/cases/touch.rs"),
    include_str!("../src/cases/delete.rs"),
    include_str!("../src/cases/users.rs"),
    include_str!("../src/cases/expired.rs"),
    include_str!("../src/cases/data.rs"),
    include_str!("../src/cases/random.rs"),
    include_str!("../src/cases/name.rs"),
];

/// The case modules of the session manager.
const MANAGER_MODULES: [&str; 7] = [
    include_str!("../src/cases/lifecycle.rs"),
    include_str!("../src/cases/rotation.rs"),
    include_str!("../src/cases/cookies.rs"),
    include_str!("../src/cases/logout.rs"),
    include_str!("../src/cases/requests/mod.rs"),
    include_str!("../src/cases/requests/attempt.rs"),
    include_str!("../src/cases/hot.rs"),
];

/// Every store contract case calls the store only (no manager), and every
/// manager case builds one: the split follows what each case drives.
#[test]
fn the_parts_follow_what_each_case_drives() {
    let unreadable = include_str!("../src/cases/unreadable.rs");
    for source in STORE_MODULES.iter().chain([&unreadable]) {
        assert!(!source.contains("SessionManager::"), "{}", &source[..80]);
        assert!(!source.contains("manager("), "{}", &source[..80]);
    }
}

#[test]
fn every_public_case_function_is_listed() {
    // Scan the case modules' sources: a `pub async fn` that is not in
    // CASES would be a case nobody runs.
    let sources = STORE_MODULES.iter().chain(&MANAGER_MODULES);
    let mut found: Vec<&str> = sources
        .flat_map(|s| s.lines())
        .filter_map(|l| l.strip_prefix("pub async fn "))
        .map(|l| l.split('(').next().unwrap())
        .collect();
    let mut listed: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    found.sort_unstable();
    listed.sort_unstable();
    assert_eq!(found, listed);
}

#[test]
fn a_failure_names_case_operation_expected_and_got() {
    let case = CASES
        .iter()
        .find(|c| c.name == "save_with_stale_version_is_conflict_and_changes_nothing")
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let failure = runtime
        .block_on(session_store_conformance::run(
            case,
            session_store_conformance::Context::new(
                std::sync::Arc::new(Reference::new(Fault::SaveIgnoresVersion)),
                Namespace::random().unwrap(),
            ),
        ))
        .unwrap_err();
    let text = failure.to_string();
    assert_eq!(failure.part, Some(Part::Store));
    assert!(
        text.starts_with(
            "store contract case `save_with_stale_version_is_conflict_and_changes_nothing` failed"
        ),
        "{text}"
    );
    assert!(
        text.contains("save_with_stale_version_is_conflict_and_changes_nothing"),
        "{text}"
    );
    assert!(text.contains("operation: save with version 0"), "{text}");
    assert!(text.contains("expected:  Err(Conflict)"), "{text}");
    assert!(text.contains("got:       Ok(1)"), "{text}");
}
