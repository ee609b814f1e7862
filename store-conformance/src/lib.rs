//! The shared behaviour suite for [`SessionStore`]s.
//!
//! Every `# Behavior` bullet of [`SessionStore`] has a case here. Each case
//! is a plain public async function over a [`Context`] (a store plus a
//! random [`Namespace`]), listed in [`CASES`], so the suite can be driven
//! from any harness. The cases come in two parts ([`Part`]), and a failure
//! says which:
//!
//! - [`STORE_CASES`] (and [`UNREADABLE_CASES`]): the **store contract**.
//!   Each calls the store's methods directly and checks one `# Behavior`
//!   bullet; a failure is a bug in the store.
//! - [`MANAGER_CASES`]: the **session manager** over the store (lazy
//!   loading, lossless concurrent commits, rotation, logout, expiry). With
//!   every store contract case passing, a failure here points at
//!   `session-core`'s `SessionManager` first.
//!
//! Most users adopt the whole suite in one line with [`suite!`], which
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
//! # Stability
//!
//! Case functions, [`Case`], [`Context`], [`Failure`] and [`suite!`]
//! follow semver. The *set* of cases does not: a minor release may add
//! cases (a bullet newly checked, a bug found in some store), and one may
//! then fail on a store that passed before. That is the suite doing its
//! job; pin the minor version if a new case must not surprise you. Cases
//! are not removed or renamed within a major version, except to fix a case
//! that tested something the contract does not promise.
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
mod suite;

pub use suite::{CASES, MANAGER_CASES, PEER_CASES, STORE_CASES, UNREADABLE_CASES};

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

/// Which part of the suite a case belongs to, and so whose bug its
/// failure most likely is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Part {
    /// A store contract case ([`STORE_CASES`], [`UNREADABLE_CASES`]): the
    /// store's own methods against a `# Behavior` bullet of
    /// [`SessionStore`]. A failure is the store's bug.
    Store,
    /// A session manager case ([`MANAGER_CASES`]): a
    /// [`SessionManager`](session_core::SessionManager) over the store.
    /// When every store contract case passes, a failure is most likely
    /// `session-core`'s bug.
    Manager,
}

impl Part {
    /// How a failure message names the part: `"store contract"` or
    /// `"session manager"`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Store => "store contract",
            Self::Manager => "session manager",
        }
    }

    /// Whose bug a failure of this part most likely is, in a sentence.
    fn blame(self) -> &'static str {
        match self {
            Self::Store => "the store breaks a `# Behavior` bullet of SessionStore",
            Self::Manager => {
                "SessionManager misbehaved over this store; if every store contract case \
                 passes, suspect session-core before the store"
            }
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a case failed: the operation, what was expected, and what came back.
#[derive(Clone, PartialEq, Eq)]
pub struct Failure {
    /// The case's name, filled in by the runner.
    pub case: &'static str,
    /// The case's part, filled in by the runner (`None` until then).
    pub part: Option<Part>,
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
            part: None,
            operation: operation.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.part {
            Some(part) => write!(f, "{part} case `{}` failed ({})", self.case, part.blame())?,
            None => write!(f, "conformance case `{}` failed", self.case)?,
        }
        write!(
            f,
            "\n  operation: {}\n  expected:  {}\n  got:       {}",
            self.operation, self.expected, self.got
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
    /// Which part of the suite it belongs to.
    pub part: Part,
    /// Runs the case.
    pub run: fn(Context) -> CaseFuture,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("part", &self.part)
            .finish()
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
        failure.part = Some(case.part);
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
