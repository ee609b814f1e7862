//! Randomized cases: generated scripts instead of hand-picked ones, so
//! the suite also tries the orders nobody thought of.
//!
//! - Sequential scripts over a few keys and users are compared, answer by
//!   answer, with a pure model of the contract.
//! - Concurrent scripts run as tasks at once; the recorded history must
//!   be linearizable (some order consistent with real time explains every
//!   answer), checked per key.
//!
//! The seed is `SESSION_SUITE_SEED` (else a fixed default) and the amount
//! of work scales with `SESSION_SUITE_BUDGET`. A failure names the seed
//! and shows the script shrunk to the calls that still fail it.

use session_core::Timestamp;

use crate::generate::{self, Rng};
use crate::history::model::Model;
use crate::history::script::{
    Generator, Shape, history_failure, run_and_check, run_sequence, sequence_failure,
    shrink_history, shrink_sequence,
};
use crate::{Context, Outcome};

/// The seed of the `n`-th script of a run seeded with `seed`.
fn seed_of(seed: u64, n: usize) -> u64 {
    Rng::new(seed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64()
}

/// Random sequences of every call (creates, loads, saves with current,
/// stale and future versions, touches forward and into the past,
/// deletes, listings, per-user and expired deletes) over four keys and
/// two users answer exactly as the model of the contract does.
pub async fn random_sequences_match_the_model(cx: Context) -> Outcome {
    let seed = generate::seed();
    let shape = Shape { keys: 4, users: 2 };
    let sequences = generate::scaled(40);
    for sequence in 0..sequences {
        let base = Timestamp::now();
        let mut generator = Generator::new(seed_of(seed, sequence), shape, base, true);
        let mut model = Model::new(base, shape.keys);
        let calls: Vec<_> = (0..40)
            .map(|_| {
                let call = generator.sequential(&model);
                model.step(&call);
                call
            })
            .collect();
        if let Some(mismatch) = run_sequence(&cx, &calls, shape, base).await? {
            let original = calls.len();
            let (calls, mismatch) = shrink_sequence(&cx, calls, mismatch, shape, base).await?;
            return Err(sequence_failure(
                seed, sequence, original, &calls, &mismatch, base,
            ));
        }
    }
    report(
        "random_sequences_match_the_model",
        seed,
        sequences,
        sequences * 40,
    );
    Ok(())
}

/// One line on what a passing randomized case checked (shown with
/// `--nocapture`, for soaks).
fn report(case: &str, seed: u64, scripts: usize, calls: usize) {
    eprintln!("{case}: seed {seed:#x}, {scripts} scripts, {calls} calls checked");
}

/// Two to four tasks at once run random calls, mostly read-modify-write
/// pairs, on one to three keys shared by two users; every history is
/// linearizable: no lost or resurrected write, no index entry lost to a
/// race, no listing or count that no order explains.
pub async fn random_concurrent_histories_are_linearizable(cx: Context) -> Outcome {
    let seed = generate::seed();
    let (histories, mut calls) = (generate::scaled(60), 0);
    for number in 0..histories {
        let mut rng = Rng::new(seed_of(seed, number));
        let shape = Shape {
            keys: 1 + rng.below(3),
            users: 2,
        };
        let base = Timestamp::now();
        let mut generator = Generator::new(rng.next_u64(), shape, base, false);
        let scripts: Vec<_> = (0..2 + rng.below(3))
            .map(|_| generator.task(6 + rng.below(10)))
            .collect();
        calls += scripts.iter().map(Vec::len).sum::<usize>();
        if let Some(found) = run_and_check(&cx, &scripts, shape, base).await? {
            let original = found.0.len();
            let (_, (history, unexplained)) =
                shrink_history(&cx, scripts, found, shape, base).await?;
            return Err(history_failure(
                seed,
                number,
                original,
                &history,
                &unexplained,
                base,
            ));
        }
    }
    report(
        "random_concurrent_histories_are_linearizable",
        seed,
        histories,
        calls,
    );
    Ok(())
}

/// Two or three tasks move one session back and forth between two users
/// (load, save to the other user, list a user), racing each other's
/// index updates; every history is linearizable, so no listing ever
/// misses the session while it is that user's.
pub async fn random_concurrent_moves_between_users_keep_the_index(cx: Context) -> Outcome {
    let seed = generate::seed();
    let shape = Shape { keys: 1, users: 2 };
    let (histories, mut calls) = (generate::scaled(40), 0);
    for number in 0..histories {
        let mut rng = Rng::new(seed_of(seed, number));
        let base = Timestamp::now();
        let mut generator = Generator::new(rng.next_u64(), shape, base, false);
        let scripts: Vec<_> = (0..2 + rng.below(2))
            .map(|_| generator.moves_task(10 + rng.below(12)))
            .collect();
        calls += scripts.iter().map(Vec::len).sum::<usize>();
        if let Some(found) = run_and_check(&cx, &scripts, shape, base).await? {
            let original = found.0.len();
            let (_, (history, unexplained)) =
                shrink_history(&cx, scripts, found, shape, base).await?;
            return Err(history_failure(
                seed,
                number,
                original,
                &history,
                &unexplained,
                base,
            ));
        }
    }
    report(
        "random_concurrent_moves_between_users_keep_the_index",
        seed,
        histories,
        calls,
    );
    Ok(())
}
