//! The randomized cases alone, without a single hand-written one, catch
//! every fault planted in the reference store: the generated scripts find
//! the orders nobody wrote down.
//!
//! Run with `--nocapture` to see each fault's shrunk failure.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{Fault, Reference, cases_named, runtime};
use session_store_conformance::{Case, Context, Namespace, run};

fn random_cases() -> Vec<&'static Case> {
    let cases = cases_named("random_");
    assert_eq!(
        cases.len(),
        3,
        "the randomized cases changed: update this test"
    );
    cases
}

/// Runs the randomized cases against a reference store with `fault`;
/// the first failure's message, if any.
fn first_failure(fault: Fault) -> Option<String> {
    runtime().block_on(async {
        for case in random_cases() {
            let cx = Context::new(
                Arc::new(Reference::new(fault)),
                Namespace::random().unwrap(),
            );
            if let Err(failure) = run(case, cx).await {
                return Some(failure.to_string());
            }
        }
        None
    })
}

fn assert_caught(fault: Fault) {
    match first_failure(fault) {
        Some(message) => println!("fault {fault:?} caught:\n{message}\n"),
        None => panic!("fault {fault:?} was not caught by the randomized cases"),
    }
}

#[test]
fn the_correct_reference_store_passes_the_randomized_cases() {
    assert_eq!(first_failure(Fault::None), None);
}

macro_rules! caught {
    ($($name:ident: $fault:ident,)*) => {$(
        #[test]
        fn $name() {
            assert_caught(Fault::$fault);
        }
    )*};
}

caught! {
    save_ignoring_the_version: SaveIgnoresVersion,
    check_then_act_save: SaveCheckThenActRace,
    save_that_resurrects: SaveResurrects,
    save_that_does_not_store_the_bump: SaveDoesNotStoreBump,
    save_that_keeps_the_old_user: SaveKeepsOldUser,
    create_that_overwrites: CreateOverwrites,
    create_that_refuses_an_expired_key: CreateRefusesExpiredKey,
    load_that_ignores_expiry: LoadIgnoresExpiry,
    touch_that_bumps_the_version: TouchBumpsVersion,
    touch_that_revives: TouchRevives,
    delete_that_always_says_true: DeleteAlwaysTrue,
    listing_expired_sessions: ListIncludesExpired,
    delete_by_user_counting_expired: DeleteByUserCountsExpired,
    delete_expired_dropping_live: DeleteExpiredDropsLive,
    timestamps_in_seconds: TimestampsInSeconds,
    dropping_large_values: DropsLargeValues,
    touch_that_revives_under_a_race: TouchRevivesUnderRace,
    delete_not_atomic_with_a_concurrent_write: DeleteNotAtomic,
    index_losing_a_session_to_moves_between_users: IndexLosesMoves,
}
