//! The gate on the writer's commits: SQLite asks the connection's commit
//! hook before every commit, and the hook lets a batch's first commit
//! through only when every write of the batch is still wanted by its
//! caller ([`Claim::commit`]). When a caller gave up (its deadline
//! passed while the batch waited, say, for a write lock another process
//! held), the hook refuses: SQLite rolls the transaction back, and the
//! writer runs the batch again without that write. So a write whose
//! caller gave up is never committed.
//!
//! The first commit claims every write of the batch at once, also the
//! writes that later statements of the batch commit (a batch without an
//! explicit transaction commits statement by statement): a refusal can
//! only come first, before anything of the batch was committed, so
//! running the batch again is exact. After a refusal, every further
//! commit of that run is refused too, until the writer arms the gate for
//! the next run.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::deadline::Claim;

/// The gate of one writer connection (see the module docs).
#[derive(Debug, Default, Clone)]
pub(crate) struct Gate {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// The writes of the running batch.
    claims: Vec<Arc<Claim>>,
    /// Whether they are still to be claimed (no commit of the batch yet).
    pending: bool,
    /// Whether a commit of the running batch was refused.
    refused: bool,
}

impl State {
    /// Answers the commit hook: whether this commit may go ahead.
    fn on_commit(&mut self) -> bool {
        if self.refused {
            return false;
        }
        if !self.pending {
            return true;
        }
        for (i, claim) in self.claims.iter().enumerate() {
            if !claim.commit() {
                for taken in &self.claims[..i] {
                    taken.uncommit();
                }
                self.refused = true;
                return false;
            }
        }
        self.pending = false;
        true
    }
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent through a panic (each field is set
        // in one step), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The commit hook's answer (`false` turns the commit into a
    /// rollback).
    pub(crate) fn on_commit(&self) -> bool {
        self.lock().on_commit()
    }

    /// Arms the gate for a run of a batch whose writes hold `claims`.
    pub(crate) fn arm(&self, claims: impl Iterator<Item = Arc<Claim>>) {
        let mut state = self.lock();
        state.claims.clear();
        state.claims.extend(claims);
        state.pending = true;
        state.refused = false;
    }

    /// Whether a commit of the current run was refused: nothing of the
    /// batch was committed.
    pub(crate) fn refused(&self) -> bool {
        self.lock().refused
    }

    /// Forgets the batch (between batches, every commit goes ahead).
    pub(crate) fn disarm(&self) {
        let mut state = self.lock();
        state.claims.clear();
        state.pending = false;
        state.refused = false;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    #[test]
    fn the_first_commit_claims_every_write_or_is_refused() {
        let later = Instant::now() + Duration::from_secs(60);
        let (a, b) = (Arc::new(Claim::new(later)), Arc::new(Claim::new(later)));
        let gate = Gate::default();
        gate.arm([Arc::clone(&a), Arc::clone(&b)].into_iter());
        assert!(gate.on_commit());
        assert!(gate.on_commit(), "later commits of the run go ahead");
        assert!(a.give_up() && b.give_up(), "claimed: being committed");
        assert!(!gate.refused());

        let (c, d) = (Arc::new(Claim::new(later)), Arc::new(Claim::new(later)));
        assert!(!d.give_up());
        gate.arm([Arc::clone(&c), Arc::clone(&d)].into_iter());
        assert!(!gate.on_commit(), "d's caller gave up");
        assert!(gate.refused());
        assert!(!gate.on_commit(), "every further commit of the run too");
        assert!(!c.give_up(), "c's claim was taken back");
        gate.disarm();
        assert!(gate.on_commit());
    }
}
