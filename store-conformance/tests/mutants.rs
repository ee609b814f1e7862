//! Tests of the tests: each fault planted in the reference store must make
//! the cases named for it fail. A suite that passes a broken store proves
//! nothing.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{Fault, Reference, runtime};
use session_store_conformance::{
    CASES, Case, Context, Namespace, PlantUnreadable, UNREADABLE_CASES, run,
};

/// Runs every case against a fresh store with `fault`, concurrently, and
/// returns the names of the cases that failed.
fn failing_cases(fault: Fault) -> BTreeSet<&'static str> {
    failing(CASES, fault)
}

/// Runs each of `cases` against a fresh store with `fault`, able to plant
/// damage, concurrently, and returns the names of those that failed.
fn failing(cases: &'static [Case], fault: Fault) -> BTreeSet<&'static str> {
    runtime().block_on(async {
        let runs = cases.iter().map(|case| async move {
            let store = Arc::new(Reference::new(fault));
            let planter = Arc::clone(&store);
            let plant: PlantUnreadable = Arc::new(move |record, damage| {
                planter.plant_unreadable(&record, damage);
                Box::pin(async { Ok(()) })
            });
            let cx = Context::new(store, Namespace::random().unwrap()).with_unreadable(plant);
            (case.name, run(case, cx).await)
        });
        futures_util::future::join_all(runs)
            .await
            .into_iter()
            .filter(|(_, outcome)| outcome.is_err())
            .map(|(name, _)| name)
            .collect()
    })
}

fn assert_caught(fault: Fault, must_fail: &[&str]) {
    let failed = failing_cases(fault);
    for name in must_fail {
        assert!(
            CASES.iter().any(|c| c.name == *name),
            "test names unknown case {name}"
        );
        assert!(
            failed.contains(name),
            "fault {fault:?} was not caught by `{name}`; failing cases: {failed:?}"
        );
    }
}

#[test]
fn the_correct_reference_store_passes_everything() {
    assert_eq!(failing_cases(Fault::None), BTreeSet::new());
}

#[test]
fn save_ignoring_the_version_is_caught() {
    assert_caught(
        Fault::SaveIgnoresVersion,
        &[
            "save_with_stale_version_is_conflict_and_changes_nothing",
            "save_with_version_ahead_is_conflict",
            "concurrent_saves_from_same_version_exactly_one_wins",
        ],
    );
}

#[test]
fn a_check_then_act_save_is_caught() {
    assert_caught(
        Fault::SaveCheckThenActRace,
        &["concurrent_saves_from_same_version_exactly_one_wins"],
    );
}

#[test]
fn a_save_that_resurrects_is_caught() {
    assert_caught(
        Fault::SaveResurrects,
        &[
            "save_after_delete_is_not_found_and_does_not_recreate",
            "save_after_expiry_is_not_found",
            "save_of_never_created_key_is_not_found",
        ],
    );
}

#[test]
fn a_save_that_does_not_store_the_bump_is_caught() {
    assert_caught(
        Fault::SaveDoesNotStoreBump,
        &["save_bumps_version_and_returns_it"],
    );
}

#[test]
fn a_save_that_keeps_the_old_user_is_caught() {
    assert_caught(
        Fault::SaveKeepsOldUser,
        &[
            "save_binding_a_user_adds_to_index",
            "save_moving_user_updates_index",
            "save_unbinding_user_removes_from_index",
            "save_writes_every_field",
        ],
    );
}

#[test]
fn a_create_that_overwrites_is_caught() {
    assert_caught(
        Fault::CreateOverwrites,
        &["create_on_taken_key_is_exists_and_keeps_original"],
    );
}

#[test]
fn a_create_that_refuses_an_expired_key_is_caught() {
    assert_caught(
        Fault::CreateRefusesExpiredKey,
        &["create_over_expired_record_succeeds"],
    );
}

#[test]
fn a_load_that_ignores_expiry_is_caught() {
    assert_caught(
        Fault::LoadIgnoresExpiry,
        &[
            "load_past_deadline_is_none",
            "short_real_deadline_disappears",
            "touch_into_past_makes_record_unloadable",
        ],
    );
}

#[test]
fn a_touch_that_bumps_the_version_is_caught() {
    assert_caught(
        Fault::TouchBumpsVersion,
        &["touch_extends_without_changing_data_or_version"],
    );
}

#[test]
fn a_touch_that_revives_is_caught() {
    assert_caught(
        Fault::TouchRevives,
        &["touch_does_not_revive_expired_record"],
    );
}

#[test]
fn a_delete_that_always_says_true_is_caught() {
    assert_caught(
        Fault::DeleteAlwaysTrue,
        &[
            "delete_returns_true_then_false",
            "delete_of_expired_record_is_false",
        ],
    );
}

#[test]
fn listing_expired_sessions_is_caught() {
    assert_caught(
        Fault::ListIncludesExpired,
        &[
            "expired_sessions_are_not_listed",
            "list_by_user_returns_exactly_live_sessions_of_user",
        ],
    );
}

#[test]
fn counting_expired_sessions_in_delete_by_user_is_caught() {
    assert_caught(
        Fault::DeleteByUserCountsExpired,
        &["delete_by_user_counts_only_live_sessions"],
    );
}

#[test]
fn delete_expired_dropping_live_sessions_is_caught() {
    assert_caught(
        Fault::DeleteExpiredDropsLive,
        &["delete_expired_removes_expired_and_keeps_live"],
    );
}

#[test]
fn losing_milliseconds_is_caught() {
    assert_caught(
        Fault::TimestampsInSeconds,
        &[
            "timestamps_keep_millisecond_precision",
            "create_then_load_round_trips_every_field",
        ],
    );
}

#[test]
fn dropping_large_values_is_caught() {
    assert_caught(Fault::DropsLargeValues, &["one_mebibyte_data_round_trips"]);
}

#[test]
fn the_correct_reference_store_passes_every_unreadable_case() {
    assert_eq!(failing(UNREADABLE_CASES, Fault::None), BTreeSet::new());
}

#[test]
fn a_save_that_checks_only_the_frame_is_caught() {
    assert_eq!(
        failing(UNREADABLE_CASES, Fault::SaveChecksOnlyTheFrame),
        BTreeSet::from(["save_over_damaged_data_is_decode_and_leaves_it"])
    );
}

#[test]
fn a_reload_that_trusts_the_version_alone_is_caught() {
    assert_caught(
        Fault::ReloadByVersionOnly,
        &["load_if_changed_after_touch_is_the_touched_record"],
    );
    assert_eq!(
        failing(UNREADABLE_CASES, Fault::ReloadByVersionOnly),
        BTreeSet::from([
            "load_if_changed_of_an_unreadable_record_is_decode",
            "load_if_changed_of_damaged_data_is_decode",
        ])
    );
}

#[test]
fn a_reload_that_keeps_a_deleted_record_is_caught() {
    assert_caught(
        Fault::ReloadKeepsTheDeleted,
        &["load_if_changed_of_a_deleted_or_expired_record_is_none"],
    );
}
