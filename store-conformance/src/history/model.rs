//! The store contract as a pure model: what a key holds after a call, and
//! the answer the call must get. Written from the `# Behavior` bullets of
//! `SessionStore`, independently of any store, so a store and the model
//! can only agree by both being right (or both wrong the same way, which
//! the hand-written cases guard against).
//!
//! A record is live when its deadline lies after the run's base instant;
//! the generator keeps every deadline an hour or more away from it, so
//! this equals the store's own rule (`now < expires_at`) for the whole
//! run.

use session_core::Timestamp;

use super::{Answer, Call, Spec};

/// A call as seen from one key. Calls on one key are themselves; calls
/// that span keys are split into what they do to each key.
#[derive(Clone, Debug)]
pub(crate) enum KeyCall {
    /// A call on this key alone.
    Own(Call),
    /// `list_by_user(user)` listed this key's record as `seen` (`None`:
    /// did not list it).
    Listed { user: usize, seen: Option<Spec> },
    /// `delete_by_user(user)`: removes this key's record if bound to
    /// `user`; its count is checked across keys, not here.
    DeleteByUser(usize),
}

fn live(state: &Option<Spec>, base: Timestamp) -> Option<&Spec> {
    state.as_ref().filter(|spec| spec.expires_at > base)
}

/// The state after `call` on a key holding `state`, and the answer the
/// call must get (`None`: any answer is right).
pub(crate) fn key_step(
    state: &Option<Spec>,
    call: &KeyCall,
    base: Timestamp,
) -> (Option<Spec>, Option<Answer>) {
    let current = live(state, base);
    match call {
        KeyCall::Own(Call::Create(spec)) => match current {
            Some(_) => (state.clone(), Some(Answer::Exists)),
            None => (Some(spec.clone()), Some(Answer::Created)),
        },
        KeyCall::Own(Call::Load(_)) => (state.clone(), Some(Answer::Loaded(current.cloned()))),
        KeyCall::Own(Call::Save(spec)) => match current {
            None => (state.clone(), Some(Answer::NotFound)),
            Some(stored) if stored.version != spec.version => {
                (state.clone(), Some(Answer::Conflict))
            }
            Some(_) => {
                let version = spec.version.saturating_add(1);
                let stored = Spec {
                    version,
                    ..spec.clone()
                };
                (Some(stored), Some(Answer::Saved(version)))
            }
        },
        KeyCall::Own(Call::Touch(_, at)) => match current {
            Some(stored) => {
                let stored = Spec {
                    expires_at: *at,
                    ..stored.clone()
                };
                (Some(stored), Some(Answer::Flag(true)))
            }
            None => (state.clone(), Some(Answer::Flag(false))),
        },
        KeyCall::Own(Call::Delete(_)) => (None, Some(Answer::Flag(current.is_some()))),
        KeyCall::Own(Call::ListByUser(_) | Call::DeleteByUser(_) | Call::DeleteExpired) => {
            // Never routed to one key (see `Model::step`); changes nothing.
            (state.clone(), None)
        }
        KeyCall::Listed { user, .. } => {
            // The listing is compared like a load (see `key_answer`): the
            // record if live and bound to `user`, else nothing.
            let bound = current.filter(|spec| spec.user == Some(*user));
            (state.clone(), Some(Answer::Loaded(bound.cloned())))
        }
        KeyCall::DeleteByUser(user) => match state {
            Some(spec) if spec.user == Some(*user) => (None, None),
            _ => (state.clone(), None),
        },
    }
}

/// The answer a [`KeyCall`] got, in the form [`key_step`] expects it.
pub(crate) fn key_answer(call: &KeyCall, answer: &Answer) -> Answer {
    match call {
        KeyCall::Listed { seen, .. } => Answer::Loaded(seen.clone()),
        _ => answer.clone(),
    }
}

/// The whole world in the model: what each key slot holds.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    base: Timestamp,
    keys: Vec<Option<Spec>>,
}

impl Model {
    /// A model of an empty store with `keys` key slots.
    pub(crate) fn new(base: Timestamp, keys: usize) -> Self {
        Self {
            base,
            keys: vec![None; keys],
        }
    }

    /// The live record under `key`, if any.
    pub(crate) fn live(&self, key: usize) -> Option<&Spec> {
        self.keys.get(key).and_then(|state| live(state, self.base))
    }

    /// Applies `call`; returns the answer it must get (`None`: any).
    pub(crate) fn step(&mut self, call: &Call) -> Option<Answer> {
        let base = self.base;
        match call {
            Call::ListByUser(user) => {
                let listed = self
                    .keys
                    .iter()
                    .filter_map(|state| live(state, base))
                    .filter(|spec| spec.user == Some(*user))
                    .cloned()
                    .collect();
                Some(Answer::Listed(listed, 0))
            }
            Call::DeleteByUser(user) => {
                let mut count = 0;
                for state in &mut self.keys {
                    if state.as_ref().is_some_and(|spec| spec.user == Some(*user)) {
                        count += u64::from(live(state, base).is_some());
                        *state = None;
                    }
                }
                Some(Answer::Count(count))
            }
            Call::DeleteExpired => {
                for state in &mut self.keys {
                    if live(state, base).is_none() {
                        *state = None;
                    }
                }
                // Stores that expire natively may count 0; what it removed
                // shows in later loads.
                None
            }
            single => {
                let slot = single.key().and_then(|key| self.keys.get_mut(key))?;
                let (next, want) = key_step(slot, &KeyCall::Own(single.clone()), base);
                *slot = next;
                want
            }
        }
    }
}

/// Whether `got` is what the model wants (`None`: anything but an error
/// goes; a count for `delete_expired`).
pub(crate) fn accepts(want: Option<&Answer>, got: &Answer) -> bool {
    match want {
        Some(want) => want == got,
        None => !matches!(
            got,
            Answer::Failed(_) | Answer::Exists | Answer::Conflict | Answer::NotFound
        ),
    }
}
