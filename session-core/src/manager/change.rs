//! A request's changes: the ordered log a commit replays onto the freshest
//! stored record ([`Op`]), and the request's own view of its session
//! while it runs ([`View`]: the changed keys over the record it loaded, so
//! a request that writes one key copies one key, not the session).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::size::DataSize;
use crate::{Data, Record};

/// Why a session moves to a fresh id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Rotation {
    /// A login: a new absolute lifetime.
    Login,
    /// `cycle_id`: the same absolute lifetime.
    Cycle,
}

/// The new value of a key from its current one (`None`: leave the key as
/// it is, for a current value of another type).
type UpdateFn = dyn Fn(Option<&Value>) -> Option<Value> + Send + Sync;

/// A read-modify-write of one key.
#[derive(Clone)]
pub(super) struct Updater(pub(super) Arc<UpdateFn>);

impl fmt::Debug for Updater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Updater(..)")
    }
}

/// A change to a session, replayable onto fresh data.
#[derive(Clone, Debug)]
pub(super) enum Op {
    Insert(String, Value),
    /// Recomputed from the value it finds at each replay, so a
    /// read-modify-write (a counter) loses nothing to a concurrent commit.
    Update(String, Updater),
    Remove(String),
    Clear,
    /// Binds the session to a user; from another user's session, the data
    /// goes first (the new user starts empty), from an anonymous one or
    /// the same user's, it stays.
    Login(String),
}

/// Data, user and size of a record being built by a commit round.
pub(super) struct Draft<'a> {
    pub(super) data: &'a mut Data,
    pub(super) user: &'a mut Option<String>,
    pub(super) size: &'a mut DataSize,
}

impl Op {
    /// Applies the change to `draft`, keeping its size up to date.
    pub(super) fn apply(&self, draft: &mut Draft<'_>) {
        match self {
            Self::Insert(k, v) => put(draft, k, v.clone()),
            Self::Update(k, update) => {
                if let Some(v) = (update.0)(draft.data.get(k)) {
                    put(draft, k, v);
                }
            }
            Self::Remove(k) => {
                if let Some(old) = draft.data.remove(k) {
                    draft.size.sub(k, &old);
                }
            }
            Self::Clear => clear(draft),
            Self::Login(new) => {
                if draft.user.as_ref().is_some_and(|old| old != new) {
                    clear(draft);
                }
                *draft.user = Some(new.clone());
            }
        }
    }

    /// The key whose value this change sets, if it sets one.
    pub(super) fn key(&self) -> Option<&str> {
        match self {
            Self::Insert(k, _) | Self::Update(k, _) => Some(k),
            _ => None,
        }
    }
}

fn put(draft: &mut Draft<'_>, key: &str, value: Value) {
    draft.size.add(key, &value);
    if let Some(old) = draft.data.insert(key.to_owned(), value) {
        draft.size.sub(key, &old);
    }
}

fn clear(draft: &mut Draft<'_>) {
    draft.data.clear();
    *draft.size = DataSize::default();
}

/// What a request sees of its session: the record it loaded (if any) with
/// its own changes laid over it.
#[derive(Default)]
pub(super) struct View {
    /// Every key this request set (`Some`) or removed (`None`).
    keys: HashMap<String, Option<Value>>,
    /// Whether this request emptied the data (keys set since then are in
    /// `keys`).
    cleared: bool,
    /// The user this request bound the session to.
    user: Option<String>,
}

impl View {
    /// The current value of `key`.
    pub(super) fn get<'a>(&'a self, base: Option<&'a Record>, key: &str) -> Option<&'a Value> {
        match self.keys.get(key) {
            Some(value) => value.as_ref(),
            None if self.cleared => None,
            None => base.and_then(|r| r.data.get(key)),
        }
    }

    /// The user the session is bound to.
    pub(super) fn user<'a>(&'a self, base: Option<&'a Record>) -> Option<&'a str> {
        self.user
            .as_deref()
            .or_else(|| base.and_then(|r| r.user.as_deref()))
    }

    /// Whether the session holds no key and no user.
    pub(super) fn is_empty(&self, base: Option<&Record>) -> bool {
        if self.user(base).is_some() || self.keys.values().any(Option::is_some) {
            return false;
        }
        self.cleared || base.is_none_or(|r| r.data.keys().all(|k| self.keys.contains_key(k)))
    }

    /// The data and user of a session that had no stored record: what
    /// this request put in.
    pub(super) fn to_new(&self) -> (Data, Option<String>) {
        let data = self
            .keys
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
        (data, self.user.clone())
    }

    /// Sets `key` to `value` (`None`: removes it).
    pub(super) fn set(&mut self, key: String, value: Option<Value>) {
        self.keys.insert(key, value);
    }

    /// Applies `op` as the request makes it.
    pub(super) fn apply(&mut self, base: Option<&Record>, op: &Op) {
        match op {
            Op::Insert(k, v) => self.set(k.clone(), Some(v.clone())),
            Op::Update(k, update) => {
                if let Some(v) = (update.0)(self.get(base, k)) {
                    self.set(k.clone(), Some(v));
                }
            }
            Op::Remove(k) => self.set(k.clone(), None),
            Op::Clear => self.clear(),
            Op::Login(new) => {
                if self.user(base).is_some_and(|old| old != new) {
                    self.clear();
                }
                self.user = Some(new.clone());
            }
        }
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.cleared = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StorageKey, Timestamp};
    use serde_json::json;

    fn base() -> Record {
        let mut record = Record::new(
            StorageKey::from_bytes([1; 32]),
            Timestamp::from_millis(0),
            Timestamp::from_millis(1),
        );
        record.data.insert("a".into(), json!(1));
        record.data.insert("b".into(), json!([2]));
        record.user = Some("ada".into());
        record
    }

    fn ops() -> Vec<Op> {
        let bump = Updater(Arc::new(|v: Option<&Value>| {
            Some(json!(v.and_then(Value::as_u64).unwrap_or(0) + 1))
        }));
        vec![
            Op::Insert("c".into(), json!({"x": "y"})),
            Op::Update("a".into(), bump.clone()),
            Op::Remove("b".into()),
            Op::Update("n".into(), bump),
            Op::Login("ada".into()),
            Op::Login("bob".into()),
            Op::Insert("d".into(), json!("after the switch")),
        ]
    }

    /// A view over a record answers what the record with the same
    /// changes applied holds, after every step, and the tracked size
    /// stays what serde_json writes.
    #[test]
    fn the_view_and_the_replay_agree() {
        let base = base();
        let (mut data, mut user) = (base.data.clone(), base.user.clone());
        let mut size = DataSize::of(&data);
        let mut view = View::default();
        for op in ops() {
            op.apply(&mut Draft {
                data: &mut data,
                user: &mut user,
                size: &mut size,
            });
            view.apply(Some(&base), &op);
            for key in ["a", "b", "c", "d", "n"] {
                assert_eq!(view.get(Some(&base), key), data.get(key), "{op:?}: {key}");
            }
            assert_eq!(view.user(Some(&base)), user.as_deref(), "{op:?}");
            assert_eq!(
                view.is_empty(Some(&base)),
                data.is_empty() && user.is_none()
            );
            let json = serde_json::to_vec(&data).map(|v| v.len()).unwrap_or(0);
            assert_eq!(size.total(), json, "{op:?}");
        }
    }

    #[test]
    fn a_new_session_is_empty_until_something_is_set() {
        let mut view = View::default();
        assert!(view.is_empty(None));
        view.set("k".into(), None);
        assert!(view.is_empty(None));
        view.set("k".into(), Some(json!(1)));
        assert!(!view.is_empty(None));
    }
}
