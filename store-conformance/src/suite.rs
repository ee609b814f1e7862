//! The lists of cases, the constants built from them, and the [`suite!`]
//! macro that turns them into tests.

use crate::{Case, Part, cases};

/// Expands to one `#[test]` per case in [`STORE_CASES`],
/// [`MANAGER_CASES`] and [`UNREADABLE_CASES`], each named after its case,
/// each with a fresh store from `factory` in a fresh
/// [`Namespace`](crate::Namespace). A failing test's message says which
/// part failed: the store contract or the session manager (see [`Part`]).
///
/// `factory` is any expression callable as
/// `FnOnce(Namespace) -> impl Future<Output = Result<S, E>>` where
/// `S: SessionStore` and `E: Display`: usually the path of an `async fn`.
/// Put the call in a module of its own to run the suite twice in one file
/// (say against a single server and a cluster).
///
/// The cases on unreadable records need a way to plant one, which only
/// the store's author can write (see [`PlantUnreadable`](crate::PlantUnreadable)):
/// pass it as `unreadable = plant`, where `plant` is callable as
/// `Fn(Arc<S>, Record, Damage) -> impl Future<Output = Result<(), E>>`
/// (plant each [`Damage`](crate::Damage) as it says). Without it
/// those cases are generated as ignored tests, so the test output shows
/// them as not run rather than hiding them.
///
/// ```
/// # mod example {
/// use std::convert::Infallible;
/// use session_store_conformance::Namespace;
/// use session_store_memory::MemoryStore;
///
/// async fn store(_: Namespace) -> Result<MemoryStore, Infallible> {
///     Ok(MemoryStore::default())
/// }
/// session_store_conformance::suite!(store);
/// # }
/// ```
#[macro_export]
macro_rules! suite {
    ($factory:expr) => {
        $crate::__for_each_case!(suite $factory);
        $crate::__for_each_unreadable_case!(suite_ignored $factory);
    };
    ($factory:expr, unreadable = $plant:expr $(,)?) => {
        $crate::__for_each_case!(suite $factory);
        $crate::__for_each_unreadable_case!(suite_unreadable $factory, $plant);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite_tests {
    (
        $factory:expr;
        store: [$($smodule:ident :: $scase:ident),* $(,)?]
        manager: [$($mmodule:ident :: $mcase:ident),* $(,)?]
    ) => {
        $crate::__suite_tests!(@tests $factory; Store; $($smodule::$scase),*);
        $crate::__suite_tests!(@tests $factory; Manager; $($mmodule::$mcase),*);

        /// The cases this expansion of `suite!` covers, in order.
        #[allow(dead_code)]
        const CONFORMANCE_CASES_COVERED: &[&str] =
            &[$(::core::stringify!($scase),)* $(::core::stringify!($mcase)),*];
    };
    (@tests $factory:expr; $part:ident; $($module:ident :: $case:ident),*) => {
        $(
            #[test]
            fn $case() {
                $crate::run_case(
                    &$crate::Case {
                        name: ::core::stringify!($case),
                        part: $crate::Part::$part,
                        run: |cx| ::std::boxed::Box::pin($crate::cases::$module::$case(cx)),
                    },
                    $factory,
                );
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite_unreadable_tests {
    ($factory:expr, $plant:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::run_case_unreadable(
                    &$crate::Case {
                        name: ::core::stringify!($case),
                        part: $crate::Part::Store,
                        run: |cx| ::std::boxed::Box::pin($crate::cases::$module::$case(cx)),
                    },
                    $factory,
                    $plant,
                );
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite_ignored_tests {
    ($factory:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            #[ignore = "needs a way to plant unreadable records: suite!(factory, unreadable = plant)"]
            fn $case() {
                $crate::run_case(
                    &$crate::Case {
                        name: ::core::stringify!($case),
                        part: $crate::Part::Store,
                        run: |cx| ::std::boxed::Box::pin($crate::cases::$module::$case(cx)),
                    },
                    $factory,
                );
            }
        )*
    };
}

/// One [`Case`] of `part`, from its path under [`cases`].
macro_rules! case {
    ($part:ident, $module:ident :: $case:ident) => {
        Case {
            name: ::core::stringify!($case),
            part: Part::$part,
            run: |cx| Box::pin(cases::$module::$case(cx)),
        }
    };
}

macro_rules! cases_const {
    (
        ;
        store: [$($smodule:ident :: $scase:ident),* $(,)?]
        manager: [$($mmodule:ident :: $mcase:ident),* $(,)?]
    ) => {
        /// The store contract cases ([`Part::Store`]): each calls the
        /// store's methods directly and checks a `# Behavior` bullet of
        /// [`SessionStore`](session_core::SessionStore). A failure is a bug
        /// in the store. In order; [`suite!`] expands to each.
        pub const STORE_CASES: &[Case] = &[$(case!(Store, $smodule::$scase)),*];

        /// The session manager cases ([`Part::Manager`]): each drives a
        /// [`SessionManager`](session_core::SessionManager) over the store
        /// (lazy loading, lossless concurrent commits, rotation, logout,
        /// expiry). When every store contract case passes, a failure here
        /// points at `session-core`'s manager first. In order; [`suite!`]
        /// expands to each.
        pub const MANAGER_CASES: &[Case] = &[$(case!(Manager, $mmodule::$mcase)),*];

        /// Every case that needs nothing but the store: [`STORE_CASES`]
        /// then [`MANAGER_CASES`]. [`suite!`] expands to exactly these,
        /// one test each, and to [`UNREADABLE_CASES`].
        pub const CASES: &[Case] = &[
            $(case!(Store, $smodule::$scase),)*
            $(case!(Manager, $mmodule::$mcase)),*
        ];
    };
}

macro_rules! unreadable_cases_const {
    (; $($module:ident :: $case:ident),* $(,)?) => {
        /// The cases on unreadable records, which need the
        /// [`PlantUnreadable`](crate::PlantUnreadable) capability, in
        /// order. They are store contract cases ([`Part::Store`]).
        pub const UNREADABLE_CASES: &[Case] = &[$(case!(Store, $module::$case)),*];
    };
}

/// The cases that model a second app server: each builds a second
/// [`SessionManager`](session_core::SessionManager) over
/// [`Context::peer_store_arc`](crate::Context::peer_store_arc). They are in
/// [`MANAGER_CASES`] too (where the peer is the store itself); a backend
/// whose stores can share data (two pools on one database, two clients of
/// one server) runs these again with a second store given to
/// [`Context::with_peer`](crate::Context::with_peer), so that the "other
/// app server" really is another store:
///
/// ```
/// use std::sync::Arc;
/// use session_store_conformance::{Context, Namespace, PEER_CASES, run};
/// use session_store_memory::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// for case in PEER_CASES {
///     let store = MemoryStore::default(); // your store here
///     let peer = store.clone(); // a second store on the same data
///     let cx = Context::new(Arc::new(store), Namespace::random()?).with_peer(Arc::new(peer));
///     run(case, cx).await?;
/// }
/// # Ok(())
/// # }
/// ```
pub const PEER_CASES: &[Case] = &[
    case!(Manager, lifecycle::lifecycle_two_managers_lose_no_update),
    case!(Manager, lifecycle::lifecycle_many_managers_lose_no_update),
    case!(
        Manager,
        lifecycle::lifecycle_concurrent_updates_lose_no_increment
    ),
    case!(
        Manager,
        rotation::lifecycle_commit_after_a_move_is_forwarded_or_superseded
    ),
    case!(
        Manager,
        requests::requests_login_after_logout_elsewhere_is_never_resurrected
    ),
    case!(
        Manager,
        requests::requests_random_concurrent_requests_are_explained_by_some_order
    ),
];

/// The list of cases on unreadable records, fed to both
/// [`UNREADABLE_CASES`] and [`suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_unreadable_case {
    (suite_ignored $factory:expr) => {
        $crate::__for_each_unreadable_case!(@list [$crate::__suite_ignored_tests] { $factory });
    };
    (suite_unreadable $factory:expr, $plant:expr) => {
        $crate::__for_each_unreadable_case!(@list [$crate::__suite_unreadable_tests] { $factory, $plant });
    };
    (consts) => {
        $crate::__for_each_unreadable_case!(@list [unreadable_cases_const] {});
    };
    (@list [$($callback:tt)*] { $($arg:tt)* }) => {
        $($callback)*! { $($arg)*;
            unreadable::unreadable_load_is_decode_and_stays,
            unreadable::unreadable_record_is_reported_not_fatal_in_list_by_user,
            unreadable::unreadable_records_go_with_delete_by_user,
            unreadable::save_over_unreadable_is_decode_and_leaves_it,
            unreadable::delete_removes_an_unreadable_record,
            unreadable::damaged_data_load_is_decode_and_stays,
            unreadable::save_over_damaged_data_is_decode_and_leaves_it,
            unreadable::damaged_data_is_reported_not_fatal_in_list_by_user,
            unreadable::damaged_data_goes_with_delete_by_user,
            unreadable::load_if_changed_of_an_unreadable_record_is_decode,
            unreadable::load_if_changed_of_damaged_data_is_decode,
        }
    };
}

/// The one list of cases, in two parts, fed to [`STORE_CASES`],
/// [`MANAGER_CASES`], [`CASES`] and [`suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_case {
    (suite $factory:expr) => {
        $crate::__for_each_case!(@list [$crate::__suite_tests] { $factory });
    };
    (consts) => {
        $crate::__for_each_case!(@list [cases_const] {});
    };
    (@list [$($callback:tt)*] { $($arg:tt)* }) => {
        $($callback)*! { $($arg)*;
            store: [
                create::create_then_load_round_trips_every_field,
                create::create_on_taken_key_is_exists_and_keeps_original,
                create::create_over_expired_record_succeeds,
                create::concurrent_creates_of_distinct_keys_all_land,
                create::create_with_unstorable_version_is_refused,
                load::load_of_unknown_key_is_none,
                load::load_past_deadline_is_none,
                load::load_far_future_record,
                load::short_real_deadline_disappears,
                reload::load_if_changed_of_an_unchanged_record_is_unchanged_or_equal,
                reload::load_if_changed_after_save_is_the_saved_record,
                reload::load_if_changed_after_touch_is_the_touched_record,
                reload::load_if_changed_of_a_deleted_or_expired_record_is_none,
                save::save_bumps_version_and_returns_it,
                save::save_writes_every_field,
                save::save_with_stale_version_is_conflict_and_changes_nothing,
                save::save_with_version_ahead_is_conflict,
                save::concurrent_saves_from_same_version_exactly_one_wins,
                save::save_after_delete_is_not_found_and_does_not_recreate,
                save::save_after_expiry_is_not_found,
                save::save_of_never_created_key_is_not_found,
                save::save_binding_a_user_adds_to_index,
                save::save_moving_user_updates_index,
                save::save_unbinding_user_removes_from_index,
                save::save_with_unstorable_version_is_refused,
                save::save_with_past_expiry_retires_the_record,
                touch::touch_extends_without_changing_data_or_version,
                touch::touch_can_shorten_expiry,
                touch::touch_of_missing_key_is_false_and_creates_nothing,
                touch::touch_does_not_revive_expired_record,
                touch::touch_into_past_makes_record_unloadable,
                delete::delete_returns_true_then_false,
                delete::delete_leaves_other_sessions_alone,
                delete::delete_of_expired_record_is_false,
                delete::deleted_session_leaves_user_index,
                users::create_with_user_is_listed,
                users::list_by_user_returns_exactly_live_sessions_of_user,
                users::list_by_unknown_user_is_empty,
                users::expired_sessions_are_not_listed,
                users::user_names_match_exactly,
                users::delete_by_user_removes_exactly_those_and_counts,
                users::delete_by_user_counts_only_live_sessions,
                users::delete_by_unknown_user_is_zero,
                expired::delete_expired_removes_expired_and_keeps_live,
                data::one_mebibyte_data_round_trips,
                data::unicode_keys_and_values_round_trip,
                data::nested_json_round_trips,
                data::empty_data_round_trips,
                data::data_of_different_sessions_never_mixes,
                data::timestamps_keep_millisecond_precision,
                data::generated_data_round_trips,
                data::data_nested_too_deep_is_unstorable,
                random::random_sequences_match_the_model,
                random::random_concurrent_histories_are_linearizable,
                random::random_concurrent_moves_between_users_keep_the_index,
                name::name_is_stable_and_not_empty,
            ]
            manager: [
                lifecycle::lifecycle_untouched_session_makes_no_store_call,
                lifecycle::lifecycle_read_only_request_loads_once,
                lifecycle::lifecycle_idle_timeout_slides_with_throttled_touches,
                lifecycle::lifecycle_absolute_timeout_beats_activity,
                lifecycle::lifecycle_new_empty_session_is_never_stored,
                cookies::lifecycle_malformed_cookie_never_reaches_the_store,
                cookies::lifecycle_unknown_id_gets_a_fresh_id,
                cookies::lifecycle_first_live_cookie_of_several_is_used,
                cookies::lifecycle_cookies_naming_no_session_are_cleared_only_when_all_were_tried,
                lifecycle::lifecycle_concurrent_requests_lose_no_update,
                lifecycle::lifecycle_256_concurrent_requests_lose_no_update,
                lifecycle::lifecycle_two_managers_lose_no_update,
                lifecycle::lifecycle_many_managers_lose_no_update,
                lifecycle::lifecycle_concurrent_updates_lose_no_increment,
                lifecycle::lifecycle_commit_outlasts_a_burst_of_conflicts,
                lifecycle::lifecycle_too_large_change_fails_only_its_request,
                rotation::lifecycle_login_keeps_a_change_committed_before_it,
                rotation::lifecycle_commit_after_a_move_is_forwarded_or_superseded,
                rotation::lifecycle_request_with_a_moved_id_keeps_the_cookie,
                rotation::lifecycle_login_as_another_user_starts_empty,
                rotation::lifecycle_login_racing_commits_loses_nothing,
                logout::lifecycle_logout_elsewhere_is_never_resurrected,
                rotation::lifecycle_login_rotates_the_id,
                rotation::lifecycle_failed_create_during_login_loses_nothing,
                rotation::lifecycle_cycle_id_keeps_data_user_and_deadline,
                lifecycle::lifecycle_too_large_is_refused_before_any_write,
                logout::lifecycle_logout_deletes_and_clears,
                logout::lifecycle_failed_logout_reports_the_error_and_stays_logged_out,
                logout::lifecycle_logout_everywhere_ends_every_session_of_the_user,
                lifecycle::lifecycle_typed_values_round_trip,
                logout::lifecycle_logout_session_ends_only_the_users_own_session,
                lifecycle::lifecycle_clear_removes_every_key_and_keeps_the_user,
                lifecycle::lifecycle_taken_key_is_retried_with_a_fresh_id,
                lifecycle::lifecycle_size_limit_is_exact,
                lifecycle::lifecycle_read_only_commit_after_logout_or_login_elsewhere,
                rotation::lifecycle_login_gives_up_when_the_conflict_budget_is_spent,
                lifecycle::lifecycle_queued_commits_build_on_the_save_before_them,
                lifecycle::lifecycle_failed_save_reports_the_store_error,
                requests::requests_login_after_logout_elsewhere_is_never_resurrected,
                requests::requests_random_concurrent_requests_are_explained_by_some_order,
            ]
        }
    };
}

__for_each_case!(consts);
__for_each_unreadable_case!(consts);
