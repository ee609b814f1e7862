//! Ordering a batch of writes into steps that run many writes per
//! statement yet give every write the result it would get if the writes
//! ran one by one, in arrival order.
//!
//! Writes naming a key (create, save, touch, delete) touch only that key's
//! row, so writes on different keys commute: they may run in any order,
//! and together. Writes on the *same* key must keep their order. So the
//! planner puts each keyed write in the round after the last earlier write
//! on its key (the first write on a key in round 0, the second in round 1,
//! …): inside a round all keys differ, and rounds run in order. A write
//! that affects rows it cannot name up front (delete by user, a sweep) is
//! a barrier: everything before it runs first, then it runs alone, then
//! the rest.

use std::collections::HashMap;

use session_core::StorageKey;

use super::types::Write;

/// One step of a plan; indexes point into the batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A write whose rows are not known up front; it runs on its own.
    Alone(usize),
    /// Writes on pairwise distinct keys, in arrival order.
    Round(Vec<usize>),
}

/// The steps that run `writes` (in batch order) with sequential semantics.
pub(crate) fn plan<'a>(writes: impl IntoIterator<Item = &'a Write>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut seen: HashMap<&'a StorageKey, usize> = HashMap::new();
    for (i, write) in writes.into_iter().enumerate() {
        match write.key() {
            Some(key) => {
                let round = seen.entry(key).or_insert(0);
                match rounds.get_mut(*round) {
                    Some(writes) => writes.push(i),
                    None => rounds.push(vec![i]),
                }
                *round += 1;
            }
            None => {
                steps.extend(rounds.drain(..).map(Step::Round));
                seen.clear();
                steps.push(Step::Alone(i));
            }
        }
    }
    steps.extend(rounds.into_iter().map(Step::Round));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::types::Reply;

    fn delete(k: u8) -> Write {
        Write::Delete(StorageKey::from_bytes([k; 32]), Reply::channel().0)
    }

    #[test]
    fn distinct_keys_share_one_round() {
        let writes = [delete(1), delete(2), delete(3)];
        assert_eq!(plan(&writes), [Step::Round(vec![0, 1, 2])]);
    }

    #[test]
    fn a_repeated_key_moves_to_the_next_round() {
        let writes = [delete(1), delete(2), delete(1), delete(1), delete(3)];
        assert_eq!(
            plan(&writes),
            [
                Step::Round(vec![0, 1, 4]),
                Step::Round(vec![2]),
                Step::Round(vec![3])
            ]
        );
    }

    #[test]
    fn writes_without_a_key_are_barriers() {
        let writes = [
            delete(1),
            delete(1),
            Write::Sweep(1, Reply::channel().0),
            delete(1),
            Write::DeleteByUser("u".into(), Reply::channel().0),
        ];
        assert_eq!(
            plan(&writes),
            [
                Step::Round(vec![0]),
                Step::Round(vec![1]),
                Step::Alone(2),
                Step::Round(vec![3]),
                Step::Alone(4),
            ]
        );
        assert!(plan(&[]).is_empty());
    }
}
