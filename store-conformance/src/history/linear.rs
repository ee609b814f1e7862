//! Linearizability of concurrent histories, decided one key at a time.
//!
//! A history is linearizable when some sequential order of its calls,
//! consistent with real time (a call that returned before another was
//! invoked comes first), makes every answer the one the model gives
//! (Herlihy & Wing). The search is Wing & Gong's, with Lowe's memo of
//! (calls placed, state) pairs, as in Porcupine and Knossos.
//!
//! Every call on one key touches that key alone, and the contract makes
//! each key atomic on its own, so the history is checked per key (P-
//! compositionality). The calls that span keys are split:
//!
//! - `list_by_user(u)` becomes, on every key, the observation "listed
//!   with this record" or "not listed", which must hold at some instant
//!   within the call. The contract promises no snapshot across keys, so
//!   this per-key rule is exactly what it promises, no more.
//! - `delete_by_user(u)` becomes, on every key, "removed if bound to `u`";
//!   its count must not exceed the number of keys the history ever bound
//!   to `u` (a sound bound, not the exact count; the sequential runs
//!   check the exact count).
//! - `delete_expired()` changes nothing a live-or-absent model can see;
//!   what it wrongly removes shows in later answers.
//!
//! A per-key check is necessary for the whole history to be linearizable,
//! so a failure here is always a real violation.

use std::collections::HashSet;
use std::time::Duration;

use session_core::Timestamp;

use super::model::{KeyCall, key_answer, key_step};
use super::{Answer, Call, FOREIGN, Spec};

/// One call of a concurrent history: who made it, when, and its answer.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) task: usize,
    pub(crate) call: Call,
    pub(crate) answer: Answer,
    pub(crate) invoked: Duration,
    pub(crate) returned: Duration,
}

/// Why a history is not linearizable.
#[derive(Clone, Debug)]
pub(crate) struct Unexplained {
    /// The index in the history of the first answer no order explains.
    pub(crate) event: usize,
    /// What was wrong with it.
    pub(crate) why: String,
}

struct Entry {
    event: usize,
    call: KeyCall,
    answer: Answer,
    invoked: Duration,
    /// `None`: still pending (any answer, placed anywhere after `invoked`).
    returned: Option<Duration>,
}

/// Checks `history` over `keys` key slots and `users` user slots.
pub(crate) fn check(history: &[Event], keys: usize, base: Timestamp) -> Result<(), Unexplained> {
    cross_key_rules(history, keys)?;
    for key in 0..keys {
        let entries = project(history, key);
        if !linearizable(&entries, base) {
            return Err(first_unexplained(&entries, key, base));
        }
    }
    Ok(())
}

/// The rules that need no search: answers naming keys outside the world,
/// errors, and `delete_by_user`'s count bound.
fn cross_key_rules(history: &[Event], keys: usize) -> Result<(), Unexplained> {
    for (index, event) in history.iter().enumerate() {
        let fail = |why: String| Err(Unexplained { event: index, why });
        match (&event.call, &event.answer) {
            (_, Answer::Failed(e)) => return fail(format!("the store failed: {e}")),
            (Call::ListByUser(_), Answer::Listed(specs, unreadable)) => {
                if *unreadable != 0 {
                    return fail("it reported unreadable records, but none were planted".into());
                }
                if specs.iter().any(|s| s.key == FOREIGN || s.key >= keys) {
                    return fail("it listed a key no call of this history wrote".into());
                }
                if specs.windows(2).any(|w| w[0].key == w[1].key) {
                    return fail("it listed one key twice".into());
                }
            }
            (Call::DeleteByUser(user), Answer::Count(count)) => {
                let bound: HashSet<usize> = history
                    .iter()
                    .filter_map(|e| match &e.call {
                        Call::Create(s) | Call::Save(s) if s.user == Some(*user) => Some(s.key),
                        _ => None,
                    })
                    .collect();
                if *count > bound.len() as u64 {
                    return fail(format!(
                        "it counted {count}, but the history bound only {} keys to that user",
                        bound.len()
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The calls of `history` as seen from key slot `key`.
fn project(history: &[Event], key: usize) -> Vec<Entry> {
    history
        .iter()
        .enumerate()
        .filter_map(|(index, event)| {
            let call = match &event.call {
                Call::ListByUser(user) => {
                    let seen = match &event.answer {
                        Answer::Listed(specs, _) => specs.iter().find(|s| s.key == key).cloned(),
                        _ => None,
                    };
                    KeyCall::Listed { user: *user, seen }
                }
                Call::DeleteByUser(user) => KeyCall::DeleteByUser(*user),
                Call::DeleteExpired => return None,
                single => {
                    if single.key() != Some(key) {
                        return None;
                    }
                    KeyCall::Own(single.clone())
                }
            };
            Some(Entry {
                event: index,
                answer: key_answer(&call, &event.answer),
                call,
                invoked: event.invoked,
                returned: Some(event.returned),
            })
        })
        .collect()
}

/// Interns states so the memo can hold small ids.
#[derive(Default)]
struct States(Vec<Spec>);

impl States {
    fn id(&mut self, state: &Option<Spec>) -> usize {
        let Some(spec) = state else { return 0 };
        if let Some(i) = self.0.iter().position(|s| s == spec) {
            return i + 1;
        }
        self.0.push(spec.clone());
        self.0.len()
    }
}

struct Search<'a> {
    entries: &'a [Entry],
    base: Timestamp,
    states: States,
    seen: HashSet<(u128, usize)>,
}

impl Search<'_> {
    fn run(&mut self, done: u128, state: &Option<Spec>) -> bool {
        let all = self.entries.len();
        if done.count_ones() as usize == all {
            return true;
        }
        let open = || (0..all).filter(move |i| done & (1u128 << i) == 0);
        // The earliest return among open calls: no call invoked after it
        // can come first.
        let horizon = open()
            .filter_map(|i| self.entries[i].returned)
            .min()
            .unwrap_or(Duration::MAX);
        let candidates: Vec<usize> = open()
            .filter(|&i| self.entries[i].invoked <= horizon)
            .collect();
        for i in candidates {
            let entry = &self.entries[i];
            let (next, want) = key_step(state, &entry.call, self.base);
            let pending = entry.returned.is_none();
            if !pending && want.as_ref().is_some_and(|want| *want != entry.answer) {
                continue;
            }
            let placed = done | (1u128 << i);
            let id = self.states.id(&next);
            if self.seen.insert((placed, id)) && self.run(placed, &next) {
                return true;
            }
        }
        false
    }
}

fn linearizable(entries: &[Entry], base: Timestamp) -> bool {
    // The generator keeps every key's share of a history under 128 calls;
    // a larger one is not searched (and reported as unexplained).
    if entries.len() > 128 {
        return false;
    }
    Search {
        entries,
        base,
        states: States::default(),
        seen: HashSet::new(),
    }
    .run(0, &None)
}

/// The first call, by return time, whose answer no order of what came
/// before it (and of what was still running) explains.
fn first_unexplained(entries: &[Entry], key: usize, base: Timestamp) -> Unexplained {
    let mut by_return: Vec<usize> = (0..entries.len()).collect();
    by_return.sort_by_key(|&i| entries[i].returned);
    for &last in &by_return {
        let Some(cut) = entries[last].returned else {
            continue;
        };
        let prefix: Vec<Entry> = entries
            .iter()
            .filter(|e| e.invoked <= cut)
            .map(|e| Entry {
                event: e.event,
                call: e.call.clone(),
                answer: e.answer.clone(),
                invoked: e.invoked,
                returned: e.returned.filter(|&r| r <= cut),
            })
            .collect();
        if !linearizable(&prefix, base) {
            return Unexplained {
                event: entries[last].event,
                why: format!(
                    "no order of the calls on k{key} before it (and of those still running) explains this answer"
                ),
            };
        }
    }
    Unexplained {
        event: entries.first().map_or(0, |e| e.event),
        why: format!("the calls on k{key} have no linearization (more than 128 of them?)"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use session_core::Data;

    const BASE: Timestamp = Timestamp::from_millis(1_000_000_000_000);

    fn spec(version: u64, user: Option<usize>, w: u64) -> Spec {
        let mut data = Data::new();
        data.insert("w".into(), w.into());
        Spec {
            key: 0,
            user,
            version,
            created_at: BASE,
            expires_at: Timestamp::from_millis(BASE.as_millis() + 3_600_000),
            data,
        }
    }

    fn event(task: usize, call: Call, answer: Answer, from: u64, to: u64) -> Event {
        Event {
            task,
            call,
            answer,
            invoked: Duration::from_micros(from),
            returned: Duration::from_micros(to),
        }
    }

    #[test]
    fn two_saves_of_one_version_cannot_both_win() {
        let history = [
            event(0, Call::Create(spec(0, None, 1)), Answer::Created, 0, 1),
            event(0, Call::Save(spec(0, None, 2)), Answer::Saved(1), 2, 10),
            event(1, Call::Save(spec(0, None, 3)), Answer::Saved(1), 3, 9),
        ];
        let unexplained = check(&history, 1, BASE).unwrap_err();
        assert!(
            unexplained.event == 1 || unexplained.event == 2,
            "{unexplained:?}"
        );
    }

    #[test]
    fn overlapping_calls_may_take_effect_in_either_order() {
        // The load overlaps the save and sees its write: fine. A later
        // load that returns before the save is invoked may not see it.
        let saved = Spec {
            version: 1,
            ..spec(0, Some(0), 2)
        };
        let history = [
            event(0, Call::Create(spec(0, None, 1)), Answer::Created, 0, 1),
            event(0, Call::Save(spec(0, Some(0), 2)), Answer::Saved(1), 5, 20),
            event(1, Call::Load(0), Answer::Loaded(Some(saved.clone())), 6, 7),
            event(1, Call::ListByUser(0), Answer::Listed(vec![saved], 0), 8, 9),
        ];
        assert!(check(&history, 1, BASE).is_ok());
        let stale = [
            event(0, Call::Create(spec(0, None, 1)), Answer::Created, 0, 1),
            event(0, Call::Save(spec(0, Some(0), 2)), Answer::Saved(1), 5, 20),
            event(1, Call::ListByUser(0), Answer::Listed(vec![], 0), 21, 22),
        ];
        let unexplained = check(&stale, 1, BASE).unwrap_err();
        assert_eq!(unexplained.event, 2);
    }

    #[test]
    fn a_deleted_record_may_not_come_back() {
        let history = [
            event(0, Call::Create(spec(0, None, 1)), Answer::Created, 0, 1),
            event(0, Call::Delete(0), Answer::Flag(true), 2, 3),
            event(
                1,
                Call::Touch(0, spec(0, None, 1).expires_at),
                Answer::Flag(true),
                4,
                5,
            ),
        ];
        assert_eq!(check(&history, 1, BASE).unwrap_err().event, 2);
    }
}
