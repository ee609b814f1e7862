//! Tests of the manager-level random case: stores that break what the
//! `SessionManager` relies on (compare-and-set saves, no resurrection,
//! deletes that delete, the per-user index) must make the `requests_`
//! cases fail, and the correct reference store must pass them.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{Fault, Reference, cases_named, runtime};
use session_core::{Error, Record, SessionStore, StorageKey, Timestamp, UserSessions};
use session_store_conformance::{Case, Context, Failure, Namespace, run};

/// A fault of this file's own, on top of the reference store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    None,
    /// `delete` says it deleted but keeps the record: logouts end nothing.
    DeleteKeepsRecord,
    /// `list_by_user` never lists anything.
    ListForgetsUsers,
}

struct Wrapped {
    inner: Reference,
    extra: Extra,
}

#[async_trait::async_trait]
impl SessionStore for Wrapped {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.inner.create(record).await
    }
    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        self.inner.load(key).await
    }
    async fn save(&self, record: &Record) -> Result<u64, Error> {
        self.inner.save(record).await
    }
    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        if self.extra == Extra::DeleteKeepsRecord {
            return Ok(self.inner.load(key).await?.is_some());
        }
        self.inner.delete(key).await
    }
    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        let mut listed = self.inner.list_by_user(user).await?;
        if self.extra == Extra::ListForgetsUsers {
            listed.records.clear();
        }
        Ok(listed)
    }
    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        self.inner.delete_by_user(user).await
    }
    async fn delete_expired(&self) -> Result<u64, Error> {
        self.inner.delete_expired().await
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

/// The manager-level cases this file is about.
fn request_cases() -> Vec<&'static Case> {
    let cases = cases_named("requests_");
    assert!(
        cases
            .iter()
            .any(|c| c.name == "requests_random_concurrent_requests_are_explained_by_some_order"),
        "the random case is in CASES"
    );
    cases
}

/// Runs every `requests_` case against a fresh store with the faults;
/// returns each case's name and failure, if it failed.
fn outcomes(fault: Fault, extra: Extra) -> Vec<(&'static str, Option<Failure>)> {
    runtime().block_on(async {
        let mut out = Vec::new();
        for case in request_cases() {
            let store = Wrapped {
                inner: Reference::new(fault),
                extra,
            };
            let cx = Context::new(Arc::new(store), Namespace::random().unwrap());
            out.push((case.name, run(case, cx).await.err()));
        }
        out
    })
}

/// Requires the random case (and any case in `also`) to fail; prints
/// what they said, for the record.
fn assert_caught(fault: Fault, extra: Extra, also: &[&str]) {
    let outcomes = outcomes(fault, extra);
    for (name, failure) in &outcomes {
        if let Some(failure) = failure {
            println!("{fault:?}/{extra:?} caught by {name}:\n{failure}\n");
        }
    }
    let failed = |name: &str| {
        outcomes
            .iter()
            .any(|(n, failure)| *n == name && failure.is_some())
    };
    for name in std::iter::once("requests_random_concurrent_requests_are_explained_by_some_order")
        .chain(also.iter().copied())
    {
        assert!(
            failed(name),
            "{fault:?}/{extra:?} was not caught by `{name}`"
        );
    }
}

#[test]
fn the_correct_reference_store_passes_the_request_cases() {
    for (name, failure) in outcomes(Fault::None, Extra::None) {
        assert!(
            failure.is_none(),
            "{name} failed on the correct store: {failure:?}"
        );
    }
}

#[test]
fn a_save_ignoring_the_version_loses_updates_and_is_caught() {
    assert_caught(Fault::SaveIgnoresVersion, Extra::None, &[]);
}

#[test]
fn a_check_then_act_save_loses_updates_and_is_caught() {
    assert_caught(Fault::SaveCheckThenActRace, Extra::None, &[]);
}

#[test]
fn a_save_that_resurrects_is_caught() {
    assert_caught(
        Fault::SaveResurrects,
        Extra::None,
        &["requests_login_after_logout_elsewhere_is_never_resurrected"],
    );
}

#[test]
fn a_load_that_ignores_expiry_opens_old_ids_and_is_caught() {
    assert_caught(Fault::LoadIgnoresExpiry, Extra::None, &[]);
}

#[test]
fn a_delete_that_keeps_the_record_is_caught() {
    assert_caught(
        Fault::None,
        Extra::DeleteKeepsRecord,
        &["requests_login_after_logout_elsewhere_is_never_resurrected"],
    );
}

#[test]
fn a_user_index_that_forgets_is_caught() {
    assert_caught(Fault::None, Extra::ListForgetsUsers, &[]);
}
