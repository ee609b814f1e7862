//! Generated histories: the randomized half of the suite.
//!
//! A history is a list of store calls over a small *world*: a few fresh
//! keys and a few users, named by slot (`k0`, `u1`) so that one generated
//! script can be replayed against fresh keys as often as shrinking needs.
//! Every deadline lies at least an hour before or after the run's base
//! instant, so whether a record is live never depends on how fast the
//! store answers: the model decides it from the base alone.
//!
//! - [`model`] is the contract as a pure function: per key, the state
//!   after a call and the answer the call must get.
//! - [`linear`] decides whether a concurrent history is linearizable, one
//!   key at a time.
//! - [`script`] generates calls, runs them, and shrinks failures.

use std::fmt;
use std::time::Duration;

use session_core::{Data, Error, Record, SessionStore, StorageKey, Timestamp};

use crate::{Context, Failure};

pub(crate) mod linear;
pub(crate) mod model;
pub(crate) mod script;

/// How far from the base instant every generated deadline lies, at least.
pub(crate) const MARGIN: Duration = Duration::from_secs(3600);

/// A slot that stands for a key or user outside the run's world (a store
/// answering with one is wrong, and the answer never matches).
pub(crate) const FOREIGN: usize = usize::MAX;

/// The fields of a record, with its key and user as slots.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Spec {
    pub(crate) key: usize,
    pub(crate) user: Option<usize>,
    pub(crate) version: u64,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) data: Data,
}

/// One store call.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Call {
    Create(Spec),
    Load(usize),
    Save(Spec),
    Touch(usize, Timestamp),
    Delete(usize),
    ListByUser(usize),
    DeleteByUser(usize),
    DeleteExpired,
}

impl Call {
    /// The key slot a single-key call works on.
    pub(crate) fn key(&self) -> Option<usize> {
        match self {
            Self::Create(spec) | Self::Save(spec) => Some(spec.key),
            Self::Load(key) | Self::Touch(key, _) | Self::Delete(key) => Some(*key),
            Self::ListByUser(_) | Self::DeleteByUser(_) | Self::DeleteExpired => None,
        }
    }
}

/// What a call answered, with keys and users as slots.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Answer {
    /// `create` succeeded.
    Created,
    /// `save` succeeded with this new version.
    Saved(u64),
    /// `load`'s answer.
    Loaded(Option<Spec>),
    /// `touch`'s or `delete`'s answer.
    Flag(bool),
    /// `list_by_user`'s records, ordered by key slot, and how many
    /// unreadable keys it reported.
    Listed(Vec<Spec>, usize),
    /// `delete_by_user`'s or `delete_expired`'s count.
    Count(u64),
    Exists,
    Conflict,
    NotFound,
    /// Any other error, as text.
    Failed(String),
}

/// The concrete keys and users a run's slots stand for.
pub(crate) struct World {
    pub(crate) keys: Vec<StorageKey>,
    pub(crate) users: Vec<String>,
}

impl World {
    /// Fresh keys, and users unique to this world.
    pub(crate) fn fresh(cx: &Context, keys: usize, users: usize) -> Result<Self, Failure> {
        let tag = cx.fresh_key()?.to_hex();
        let tag = tag.get(..8).unwrap_or("");
        Ok(Self {
            keys: (0..keys)
                .map(|_| cx.fresh_key())
                .collect::<Result<_, _>>()?,
            users: (0..users).map(|u| cx.user(&format!("u{u}{tag}"))).collect(),
        })
    }

    fn key_slot(&self, key: &StorageKey) -> usize {
        self.keys.iter().position(|k| k == key).unwrap_or(FOREIGN)
    }

    fn user_slot(&self, user: &str) -> usize {
        self.users.iter().position(|u| u == user).unwrap_or(FOREIGN)
    }

    fn key(&self, slot: usize) -> Result<StorageKey, Failure> {
        self.keys.get(slot).copied().ok_or_else(|| {
            Failure::new(
                "a generated call",
                format!("key slot < {}", self.keys.len()),
                format!("k{slot}"),
            )
        })
    }

    fn user(&self, slot: usize) -> Result<&str, Failure> {
        self.users.get(slot).map(String::as_str).ok_or_else(|| {
            Failure::new(
                "a generated call",
                format!("user slot < {}", self.users.len()),
                format!("u{slot}"),
            )
        })
    }

    fn record(&self, spec: &Spec) -> Result<Record, Failure> {
        let user = match spec.user {
            Some(slot) => Some(self.user(slot)?.to_owned()),
            None => None,
        };
        Ok(Record {
            key: self.key(spec.key)?,
            data: spec.data.clone(),
            user,
            created_at: spec.created_at,
            expires_at: spec.expires_at,
            version: spec.version,
        })
    }

    fn spec(&self, record: Record) -> Spec {
        Spec {
            key: self.key_slot(&record.key),
            user: record.user.as_deref().map(|u| self.user_slot(u)),
            version: record.version,
            created_at: record.created_at,
            expires_at: record.expires_at,
            data: record.data,
        }
    }

    /// Runs `call` against `store` and translates the answer into slots.
    pub(crate) async fn execute(
        &self,
        store: &dyn SessionStore,
        call: &Call,
    ) -> Result<Answer, Failure> {
        Ok(match call {
            Call::Create(spec) => answer(store.create(&self.record(spec)?).await, |()| {
                Answer::Created
            }),
            Call::Load(key) => answer(store.load(&self.key(*key)?).await, |record| {
                Answer::Loaded(record.map(|r| self.spec(r)))
            }),
            Call::Save(spec) => answer(store.save(&self.record(spec)?).await, Answer::Saved),
            Call::Touch(key, at) => answer(store.touch(&self.key(*key)?, *at).await, Answer::Flag),
            Call::Delete(key) => answer(store.delete(&self.key(*key)?).await, Answer::Flag),
            Call::ListByUser(user) => answer(store.list_by_user(self.user(*user)?).await, |list| {
                let mut specs: Vec<Spec> = list.records.into_iter().map(|r| self.spec(r)).collect();
                specs.sort_by_key(|s| s.key);
                Answer::Listed(specs, list.unreadable.len())
            }),
            Call::DeleteByUser(user) => {
                answer(store.delete_by_user(self.user(*user)?).await, Answer::Count)
            }
            Call::DeleteExpired => answer(store.delete_expired().await, Answer::Count),
        })
    }
}

fn answer<T>(result: Result<T, Error>, ok: impl FnOnce(T) -> Answer) -> Answer {
    match result {
        Ok(value) => ok(value),
        Err(Error::Exists) => Answer::Exists,
        Err(Error::Conflict) => Answer::Conflict,
        Err(Error::NotFound) => Answer::NotFound,
        Err(e) => Answer::Failed(format!("{e:?}")),
    }
}

/// Writes a deadline relative to the run's base instant.
pub(crate) struct Rel(pub(crate) Timestamp, pub(crate) Timestamp);

impl fmt::Display for Rel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis().saturating_sub(self.1.as_millis());
        if ms >= 0 {
            write!(f, "base+{ms}ms")
        } else {
            write!(f, "base{ms}ms")
        }
    }
}

fn slot(prefix: char, slot: usize) -> String {
    if slot == FOREIGN {
        format!("{prefix}?")
    } else {
        format!("{prefix}{slot}")
    }
}

/// Displays a spec compactly, deadlines relative to `base`.
pub(crate) fn show_spec(spec: &Spec, base: Timestamp) -> String {
    let user = spec.user.map_or_else(|| "-".to_owned(), |u| slot('u', u));
    let data = serde_json::to_string(&spec.data).unwrap_or_default();
    let data = if data.len() > 60 {
        format!(
            "{}…({} bytes)",
            data.chars().take(40).collect::<String>(),
            data.len()
        )
    } else {
        data
    };
    format!(
        "{} v{} user {} created {} expires {} data {}",
        slot('k', spec.key),
        spec.version,
        user,
        Rel(spec.created_at, base),
        Rel(spec.expires_at, base),
        data
    )
}

/// Displays a call, deadlines relative to `base`.
pub(crate) fn show_call(call: &Call, base: Timestamp) -> String {
    match call {
        Call::Create(spec) => format!("create({})", show_spec(spec, base)),
        Call::Load(key) => format!("load({})", slot('k', *key)),
        Call::Save(spec) => format!("save({})", show_spec(spec, base)),
        Call::Touch(key, at) => format!("touch({}, {})", slot('k', *key), Rel(*at, base)),
        Call::Delete(key) => format!("delete({})", slot('k', *key)),
        Call::ListByUser(user) => format!("list_by_user({})", slot('u', *user)),
        Call::DeleteByUser(user) => format!("delete_by_user({})", slot('u', *user)),
        Call::DeleteExpired => "delete_expired()".to_owned(),
    }
}

/// Displays an answer, deadlines relative to `base`.
pub(crate) fn show_answer(answer: &Answer, base: Timestamp) -> String {
    match answer {
        Answer::Created => "Ok(())".to_owned(),
        Answer::Saved(v) => format!("Ok({v})"),
        Answer::Loaded(None) => "Ok(None)".to_owned(),
        Answer::Loaded(Some(spec)) => format!("Ok(Some({}))", show_spec(spec, base)),
        Answer::Flag(flag) => format!("Ok({flag})"),
        Answer::Listed(specs, unreadable) => {
            let specs: Vec<String> = specs.iter().map(|s| show_spec(s, base)).collect();
            format!("Ok([{}], {unreadable} unreadable)", specs.join("; "))
        }
        Answer::Count(n) => format!("Ok({n})"),
        Answer::Exists => "Err(Exists)".to_owned(),
        Answer::Conflict => "Err(Conflict)".to_owned(),
        Answer::NotFound => "Err(NotFound)".to_owned(),
        Answer::Failed(e) => format!("Err({e})"),
    }
}
