//! The shared behaviour suite for [`SessionStore`]s.
//!
//! Every `# Behavior` bullet of [`SessionStore`] has a case here. Each case
//! is a plain public async function over a [`Context`] (a store plus a
//! random [`Namespace`]), listed in [`CASES`], so the suite can be driven
//! from any harness. Most users adopt it in one line with [`suite!`], which
//! expands to one separately named `#[test]` per case:
//!
//! ```
//! # mod example {
//! // tests/conformance.rs of your store crate
//! use session_store_conformance::Namespace;
//! use session_store_memory::MemoryStore; // your store here
//!
//! async fn store(_: Namespace) -> Result<MemoryStore, std::convert::Infallible> {
//!     Ok(MemoryStore::default()) // e.g. a key prefix or table named after the namespace
//! }
//! session_store_conformance::suite!(store);
//! # }
//! ```
//!
//! The factory is called once per case with a fresh namespace; it must
//! return a store that sees only what was written through that namespace
//! (a new in-memory store, a key prefix, a table name, a temporary file),
//! so cases can share one server and run in parallel. Each test builds its
//! own multi-threaded tokio runtime, so your crate needs no tokio attribute.
//!
//! Eleven more cases check unreadable records ([`UNREADABLE_CASES`]):
//! records whose framing is broken and records damaged inside their data
//! ([`Damage`]). Only the store's author knows how to damage a record, so
//! they run when you pass a way to plant one (see [`PlantUnreadable`]);
//! without it they are generated as ignored tests:
//!
//! ```
//! # mod example {
//! use std::sync::Arc;
//! use session_core::{Error, Record};
//! use session_store_conformance::{Damage, Namespace};
//! use session_store_memory::MemoryStore; // your store here
//!
//! async fn store(_: Namespace) -> Result<MemoryStore, std::convert::Infallible> {
//!     Ok(MemoryStore::default())
//! }
//!
//! // Stores `record`'s key, user and deadline with contents the store
//! // cannot decode, damaged where `damage` says.
//! async fn plant(store: Arc<MemoryStore>, record: Record, damage: Damage) -> Result<(), Error> {
//!     match damage {
//!         Damage::Frame => store.plant_unreadable(&record).await,
//!         Damage::Data => store.plant_damaged_data(&record).await,
//!     }
//! }
//! session_store_conformance::suite!(store, unreadable = plant);
//! # }
//! ```
//!
//! A few cases model a second app server: a second
//! [`SessionManager`](session_core::SessionManager) on the same sessions
//! ([`PEER_CASES`]). Under [`suite!`] both managers share the one store;
//! a store whose instances can share data (two pools on one database) can
//! run these cases again with a second instance as the peer
//! ([`Context::with_peer`]), so that two stores race each other.
//!
//! A complete small store written by the rules of this suite, on a
//! `Mutex<HashMap>` and the public API of `session-core` only, with its
//! one-line conformance test, is the workspace's custom-store example:
//! `examples/src/custom_store.rs` and `examples/tests/custom_store.rs` in
//! the [repository](https://example.invalid/session-stores) ("Write your
//! own store" in its README).
//!
//! A failing case panics with a message naming the case, the operation,
//! what was expected and what came back.
//!
//! Besides the hand-written cases, the `random_*` cases generate scripts:
//! sequential ones compared call by call with a pure model of the
//! contract, and concurrent ones whose recorded history must be
//! linearizable (checked per key). They are seeded by
//! `SESSION_SUITE_SEED` (decimal or `0x` hex; a fixed default otherwise)
//! and scaled by `SESSION_SUITE_BUDGET` (default 1, a few seconds per
//! backend; `100` for a soak). A failure names the seed and shows the
//! script shrunk to the calls that still fail.
//!
//! [`SessionStore`]: session_core::SessionStore
#![deny(missing_docs)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use session_core::{Error, Record, SessionId, SessionStore, StorageKey, Timestamp};

pub mod cases;
mod generate;
mod history;

/// The crate's `README.md`, whose code blocks are compiled as doctests so
/// they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[doc(hidden)]
pub mod __private {
    pub use tokio;
}

/// A random name that isolates one case from every other: use it as a key
/// prefix, a table name or a file name. Lowercase ASCII letters and digits,
/// starting with a letter, at most 16 characters, so it is a valid SQL
/// identifier and Redis key part as it is.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// A fresh random namespace (from the OS CSPRNG).
    ///
    /// # Errors
    ///
    /// When the operating system cannot provide randomness.
    pub fn random() -> Result<Self, Error> {
        let hex = SessionId::generate()?.storage_key().to_hex();
        Ok(Self(format!("t{}", &hex[..15])))
    }

    /// The namespace as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({})", self.0)
    }
}

/// Where a planted unreadable record is damaged (see [`PlantUnreadable`]).
///
/// The cases plant both kinds: a store must refuse to load either
/// ([`Error::Decode`] naming the key), keep it in place, report it from
/// `list_by_user`, remove it with `delete` and `delete_by_user`, and never
/// overwrite it with a `save`, whatever version the save presents.
///
/// Not `#[non_exhaustive]` on purpose: a new kind of damage needs every
/// store's planting code to learn it, so adding one is a breaking change
/// that makes your `match` fail to compile rather than plant the wrong
/// thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Damage {
    /// The record's framing is broken: the store cannot even tell what the
    /// value holds (a truncated value, bytes that are not the store's
    /// format, data that is not a JSON object).
    Frame,
    /// Everything the store keeps beside the data (key, version, user,
    /// timestamps) is stored exactly as the store writes it, and so is any
    /// integrity field it keeps (a digest or checksum, as computed for the
    /// record's real data); inside the data, a value is replaced by one
    /// the store's decoder refuses, keeping the framing intact. For a store
    /// of JSON text: an object like `{"n": 1e400}`, a number beyond `f64`
    /// that serde_json refuses but the JSON grammar (and PostgreSQL's
    /// `json`, SQLite's `json_valid`) accepts. This is what a person or a
    /// tool editing the backend directly leaves behind.
    Data,
}

/// The optional capability behind the suite's cases on unreadable
/// records: store the given record's key, user, timestamps and version
/// the way the store under test does, but with contents it cannot decode,
/// damaged as the [`Damage`] says (its [`SessionStore::load`] must then
/// answer [`Error::Decode`]). The record must be listed under its user,
/// as a real one would be.
///
/// Build one with [`suite!`]'s `unreadable = …` argument, or by hand for
/// [`Context::with_unreadable`].
pub type PlantUnreadable = Arc<
    dyn Fn(Record, Damage) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// What a case runs against: the store under test and its namespace, and
/// optionally a peer store (another app server on the same data).
#[derive(Clone)]
pub struct Context {
    store: Arc<dyn SessionStore>,
    peer: Option<Arc<dyn SessionStore>>,
    namespace: Namespace,
    unreadable: Option<PlantUnreadable>,
}

impl Context {
    /// A context over `store`, isolated by `namespace`.
    pub fn new(store: Arc<dyn SessionStore>, namespace: Namespace) -> Self {
        Self {
            store,
            peer: None,
            namespace,
            unreadable: None,
        }
    }

    /// The same context with a peer: a second store over the same data
    /// (the same namespace, table, key prefix or file), as another app
    /// server would open it, with its own connections and its own
    /// batching. The cases in [`PEER_CASES`] run their second
    /// [`SessionManager`](session_core::SessionManager) (the "other app
    /// server") over it, so they check that two stores, not just two
    /// managers over one store, lose no update and resurrect nothing.
    ///
    /// Without a peer, those cases use the store under test for both
    /// managers.
    pub fn with_peer(mut self, peer: Arc<dyn SessionStore>) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The same context, able to plant unreadable records (for the cases
    /// in [`UNREADABLE_CASES`]).
    pub fn with_unreadable(mut self, plant: PlantUnreadable) -> Self {
        self.unreadable = Some(plant);
        self
    }

    /// Plants an unreadable record in the store under test.
    ///
    /// # Errors
    ///
    /// A [`Failure`] when the store provides no way to do so, or planting
    /// failed.
    pub async fn plant_unreadable(&self, record: &Record, damage: Damage) -> Result<(), Failure> {
        let Some(plant) = &self.unreadable else {
            return Err(Failure::new(
                "plant an unreadable record",
                "a store that provides the capability (suite!(factory, unreadable = plant))",
                "no such capability",
            ));
        };
        plant(record.clone(), damage).await.map_err(|e| {
            Failure::new(
                format!(
                    "plant an unreadable record ({damage:?}) under {:?}",
                    record.key
                ),
                "Ok",
                e,
            )
        })
    }

    /// The store under test.
    pub fn store(&self) -> &dyn SessionStore {
        &*self.store
    }

    /// A shared handle to the store under test (for spawned tasks).
    pub fn store_arc(&self) -> Arc<dyn SessionStore> {
        Arc::clone(&self.store)
    }

    /// The store another app server uses: the peer given to
    /// [`Context::with_peer`] if any, else the store under test itself.
    /// Cases build their second manager over this one.
    pub fn peer_store_arc(&self) -> Arc<dyn SessionStore> {
        Arc::clone(self.peer.as_ref().unwrap_or(&self.store))
    }

    /// This case's namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// A user name unique to this case, so a shared backend's per-user
    /// index never mixes cases.
    pub fn user(&self, name: &str) -> String {
        format!("{name}@{}", self.namespace)
    }

    /// A fresh storage key (the hash of a fresh random id).
    ///
    /// # Errors
    ///
    /// A [`Failure`] when the OS cannot provide randomness.
    pub fn fresh_key(&self) -> Result<StorageKey, Failure> {
        SessionId::generate()
            .map(|id| id.storage_key())
            .map_err(|e| Failure::new("SessionId::generate()", "a fresh id", format!("Err({e})")))
    }

    /// A new record at version 0 that expires `ttl` from now, with one
    /// data entry naming this case's namespace.
    ///
    /// # Errors
    ///
    /// A [`Failure`] when the OS cannot provide randomness.
    pub fn live_record(&self, ttl: Duration) -> Result<Record, Failure> {
        let now = Timestamp::now();
        let mut record = Record::new(self.fresh_key()?, now, now.saturating_add(ttl));
        record.data.insert(
            "ns".into(),
            serde_json::Value::from(self.namespace.as_str()),
        );
        Ok(record)
    }

    /// A new record whose `expires_at` lies `ago` in the past.
    ///
    /// # Errors
    ///
    /// A [`Failure`] when the OS cannot provide randomness.
    pub fn expired_record(&self, ago: Duration) -> Result<Record, Failure> {
        let mut record = self.live_record(Duration::ZERO)?;
        record.created_at = record.created_at.saturating_sub(ago + ago);
        record.expires_at = record.expires_at.saturating_sub(ago);
        Ok(record)
    }
}

/// Why a case failed: the operation, what was expected, and what came back.
#[derive(Clone, PartialEq, Eq)]
pub struct Failure {
    /// The case's name, filled in by the runner.
    pub case: &'static str,
    /// The store call (or check) that went wrong, with its arguments.
    pub operation: String,
    /// What the contract requires.
    pub expected: String,
    /// What the store did instead.
    pub got: String,
}

impl Failure {
    /// A failure of `operation`: `expected` was required, `got` came back.
    pub fn new(
        operation: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Self {
            case: "",
            operation: operation.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance case `{}` failed\n  operation: {}\n  expected:  {}\n  got:       {}",
            self.case, self.operation, self.expected, self.got
        )
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}

/// What a case returns.
pub type Outcome = Result<(), Failure>;

/// A boxed case future.
pub type CaseFuture = Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>;

/// One case of the suite: its name and how to run it.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name (also its test name under [`suite!`]).
    pub name: &'static str,
    /// Runs the case.
    pub run: fn(Context) -> CaseFuture,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

/// How long one case may take before it fails as hung, at the default
/// budget; a larger `SESSION_SUITE_BUDGET` scales it alike.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `case` against the store under `context`, with [`CASE_TIMEOUT`]
/// (times the budget, when above 1),
/// and names the case in any failure.
///
/// # Errors
///
/// The case's [`Failure`], or one saying it timed out.
pub async fn run(case: &Case, context: Context) -> Outcome {
    let limit = CASE_TIMEOUT.mul_f64(generate::budget().max(1.0));
    let outcome = match tokio::time::timeout(limit, (case.run)(context)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::new(
            "the whole case",
            format!("to finish within {limit:?}"),
            "it was still running (a store call hangs?)",
        )),
    };
    outcome.map_err(|mut failure| {
        failure.case = case.name;
        failure
    })
}

/// Runs one case the way [`suite!`]'s tests do: builds a multi-threaded
/// runtime, makes a fresh namespace, calls `factory` for the store, runs
/// the case, and panics with the failure's full message if it fails.
///
/// # Panics
///
/// When the case fails, the factory fails, or no runtime can be built:
/// this is the test harness, and a panic is how a test reports failure.
pub fn run_case<F, Fut, S, E>(case: &Case, factory: F)
where
    F: FnOnce(Namespace) -> Fut,
    Fut: Future<Output = Result<S, E>>,
    S: SessionStore,
    E: fmt::Display,
{
    run_case_with(
        case,
        factory,
        None::<fn(Arc<S>, Record, Damage) -> std::future::Ready<Result<(), String>>>,
    );
}

/// Like [`run_case`], with a way to plant unreadable records in the store
/// (`plant(store, record, damage)`; see [`PlantUnreadable`]).
///
/// # Panics
///
/// As [`run_case`].
pub fn run_case_unreadable<F, Fut, S, E, P, PFut, PE>(case: &Case, factory: F, plant: P)
where
    F: FnOnce(Namespace) -> Fut,
    Fut: Future<Output = Result<S, E>>,
    S: SessionStore,
    E: fmt::Display,
    P: Fn(Arc<S>, Record, Damage) -> PFut + Send + Sync + 'static,
    PFut: Future<Output = Result<(), PE>> + Send + 'static,
    PE: fmt::Display,
{
    run_case_with(case, factory, Some(plant));
}

#[allow(clippy::panic)]
fn run_case_with<F, Fut, S, E, P, PFut, PE>(case: &Case, factory: F, plant: Option<P>)
where
    F: FnOnce(Namespace) -> Fut,
    Fut: Future<Output = Result<S, E>>,
    S: SessionStore,
    E: fmt::Display,
    P: Fn(Arc<S>, Record, Damage) -> PFut + Send + Sync + 'static,
    PFut: Future<Output = Result<(), PE>> + Send + 'static,
    PE: fmt::Display,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!(
            "conformance case `{}`: cannot build a tokio runtime: {e}",
            case.name
        ),
    };
    let result = runtime.block_on(async {
        let namespace = Namespace::random().map_err(|e| {
            format!(
                "conformance case `{}`: cannot draw a namespace: {e}",
                case.name
            )
        })?;
        let store = factory(namespace.clone()).await.map_err(|e| {
            format!(
                "conformance case `{}`: the store factory failed for namespace {namespace}: {e}",
                case.name
            )
        })?;
        let store = Arc::new(store);
        let mut context = Context::new(Arc::clone(&store) as Arc<dyn SessionStore>, namespace);
        if let Some(plant) = plant {
            let plant = Arc::new(plant);
            context = context.with_unreadable(Arc::new(move |record, damage| {
                let fut = plant(Arc::clone(&store), record, damage);
                Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
            }));
        }
        run(case, context)
            .await
            .map_err(|failure| failure.to_string())
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// Expands to one `#[test]` per case in [`CASES`] and
/// [`UNREADABLE_CASES`], each named after its case, each with a fresh store
/// from `factory` in a fresh [`Namespace`].
///
/// `factory` is any expression callable as
/// `FnOnce(Namespace) -> impl Future<Output = Result<S, E>>` where
/// `S: SessionStore` and `E: Display`: usually the path of an `async fn`.
/// Put the call in a module of its own to run the suite twice in one file
/// (say against a single server and a cluster).
///
/// The cases on unreadable records need a way to plant one, which only
/// the store's author can write (see [`PlantUnreadable`]): pass it as
/// `unreadable = plant`, where `plant` is callable as
/// `Fn(Arc<S>, Record, Damage) -> impl Future<Output = Result<(), E>>`
/// (plant each [`Damage`] as it says). Without it
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
    ($factory:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::run_case(
                    &$crate::Case {
                        name: ::core::stringify!($case),
                        run: |cx| ::std::boxed::Box::pin($crate::cases::$module::$case(cx)),
                    },
                    $factory,
                );
            }
        )*

        /// The cases this expansion of `suite!` covers, in order.
        #[allow(dead_code)]
        const CONFORMANCE_CASES_COVERED: &[&str] = &[$(::core::stringify!($case)),*];
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
                        run: |cx| ::std::boxed::Box::pin($crate::cases::$module::$case(cx)),
                    },
                    $factory,
                );
            }
        )*
    };
}

macro_rules! cases_const {
    (; $($module:ident :: $case:ident),* $(,)?) => {
        /// Every case of the suite that needs nothing but the store, in
        /// order. [`suite!`] expands to exactly these, one test each, and
        /// to [`UNREADABLE_CASES`].
        pub const CASES: &[Case] = &[$(
            Case {
                name: ::core::stringify!($case),
                run: |cx| Box::pin(cases::$module::$case(cx)),
            }
        ),*];
    };
}

macro_rules! unreadable_cases_const {
    (; $($module:ident :: $case:ident),* $(,)?) => {
        /// The cases on unreadable records, which need the
        /// [`PlantUnreadable`] capability, in order.
        pub const UNREADABLE_CASES: &[Case] = &[$(
            Case {
                name: ::core::stringify!($case),
                run: |cx| Box::pin(cases::$module::$case(cx)),
            }
        ),*];
    };
}

macro_rules! peer_case {
    ($module:ident :: $case:ident) => {
        Case {
            name: ::core::stringify!($case),
            run: |cx| Box::pin(cases::$module::$case(cx)),
        }
    };
}

/// The cases that model a second app server: each builds a second
/// [`SessionManager`](session_core::SessionManager) over
/// [`Context::peer_store_arc`]. They are in [`CASES`] too (where the peer
/// is the store itself); a backend whose stores can share data (two pools
/// on one database, two clients of one server) runs these again with a
/// second store given to [`Context::with_peer`], so that the "other app
/// server" really is another store:
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
    peer_case!(lifecycle::lifecycle_two_managers_lose_no_update),
    peer_case!(lifecycle::lifecycle_many_managers_lose_no_update),
    peer_case!(lifecycle::lifecycle_concurrent_updates_lose_no_increment),
    peer_case!(rotation::lifecycle_commit_after_a_move_is_forwarded_or_superseded),
    peer_case!(requests::requests_login_after_logout_elsewhere_is_never_resurrected),
    peer_case!(requests::requests_random_concurrent_requests_are_explained_by_some_order),
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

/// The one list of cases, fed to both [`CASES`] and [`suite!`].
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
            random::random_sequences_match_the_model,
            random::random_concurrent_histories_are_linearizable,
            random::random_concurrent_moves_between_users_keep_the_index,
            requests::requests_login_after_logout_elsewhere_is_never_resurrected,
            requests::requests_random_concurrent_requests_are_explained_by_some_order,
        }
    };
}

__for_each_case!(consts);
__for_each_unreadable_case!(consts);
