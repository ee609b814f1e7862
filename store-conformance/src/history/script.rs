//! Generating calls, running them against a store, and shrinking a
//! failing script to a small one that still fails.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use session_core::{Data, SessionStore, Timestamp};

use super::linear::{Event, Unexplained, check};
use super::model::{Model, accepts};
use super::{Answer, Call, MARGIN, Spec, World, show_answer, show_call};
use crate::generate::{self, Rng};
use crate::{Context, Failure};

/// The size of a run's world.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) keys: usize,
    pub(crate) users: usize,
}

/// One step of a script: a call, and for saves in concurrent scripts, the
/// version to present relative to what this task last saw of the key,
/// and whether to move the session to the other user than the one seen
/// (the moves between users that race on the per-user index).
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub(crate) call: Call,
    pub(crate) relative: Option<i64>,
    pub(crate) moves: bool,
}

/// Draws calls over a world of `shape`, deadlines around `base`.
pub(crate) struct Generator {
    rng: Rng,
    shape: Shape,
    base: Timestamp,
    writes: u64,
    /// Whether data may hold a string long enough to trip a store that
    /// drops or truncates large values (costly, so sequential runs only).
    large: bool,
}

impl Generator {
    pub(crate) fn new(seed: u64, shape: Shape, base: Timestamp, large: bool) -> Self {
        Self {
            rng: Rng::new(seed),
            shape,
            base,
            writes: 0,
            large,
        }
    }

    fn millis(&mut self, max: usize) -> Duration {
        Duration::from_millis(self.rng.below(max) as u64)
    }

    /// A deadline an hour or more in the future (`percent` of the time)
    /// or in the past, never on a whole second.
    fn deadline(&mut self, percent: usize) -> Timestamp {
        let offset = MARGIN + self.millis(3_600_000);
        let at = if self.rng.chance(percent) {
            self.base.saturating_add(offset)
        } else {
            self.base.saturating_sub(offset)
        };
        if at.as_millis() % 1000 == 0 {
            at.saturating_add(Duration::from_millis(7))
        } else {
            at
        }
    }

    fn data(&mut self) -> Data {
        self.writes += 1;
        let mut data = Data::new();
        data.insert("w".into(), Value::from(self.writes));
        if self.rng.chance(25) {
            data.insert("v".into(), generate::value(&mut self.rng, 2, 6));
        }
        if self.large && self.rng.chance(3) {
            data.insert("large".into(), Value::from("é".repeat(40_000)));
        }
        data
    }

    fn user(&mut self) -> Option<usize> {
        if self.rng.chance(30) {
            None
        } else {
            Some(self.rng.below(self.shape.users))
        }
    }

    fn spec(&mut self, key: usize, version: u64) -> Spec {
        Spec {
            key,
            user: self.user(),
            version,
            created_at: self.base.saturating_sub(self.millis(86_400_000)),
            expires_at: self.deadline(80),
            data: self.data(),
        }
    }

    fn version_near(&mut self, current: Option<u64>) -> u64 {
        match current {
            Some(v) => match self.rng.below(20) {
                0..=11 => v,
                12..=14 => v.saturating_sub(1),
                15..=17 => v + 1,
                _ => self.rng.below(4) as u64,
            },
            None => self.rng.below(4) as u64,
        }
    }

    /// The next call of a sequential script, chosen knowing `model`.
    pub(crate) fn sequential(&mut self, model: &Model) -> Call {
        let key = self.rng.below(self.shape.keys);
        match self.rng.below(100) {
            0..=19 => {
                let version = if self.rng.chance(80) {
                    0
                } else {
                    self.rng.below(4) as u64
                };
                Call::Create(self.spec(key, version))
            }
            20..=34 => Call::Load(key),
            35..=59 => {
                let version = self.version_near(model.live(key).map(|s| s.version));
                Call::Save(self.spec(key, version))
            }
            60..=69 => Call::Touch(key, self.deadline(85)),
            70..=77 => Call::Delete(key),
            78..=87 => Call::ListByUser(self.rng.below(self.shape.users)),
            88..=93 => Call::DeleteByUser(self.rng.below(self.shape.users)),
            _ => Call::DeleteExpired,
        }
    }

    /// A script of `len` steps for one task of a concurrent history:
    /// mostly read-modify-write pairs on a few keys, so tasks race.
    pub(crate) fn task(&mut self, len: usize) -> Vec<Step> {
        let mut steps: Vec<Step> = Vec::with_capacity(len);
        while steps.len() < len {
            let key = self.rng.below(self.shape.keys);
            let step = |call| Step {
                call,
                relative: None,
                moves: false,
            };
            match self.rng.below(100) {
                0..=14 => steps.push(step(Call::Create(self.spec(key, 0)))),
                15..=49 => {
                    steps.push(step(Call::Load(key)));
                    let relative = match self.rng.below(10) {
                        0 => -1,
                        1 => 1,
                        _ => 0,
                    };
                    let moves = self.rng.chance(40);
                    steps.push(Step {
                        call: Call::Save(self.spec(key, 0)),
                        relative: Some(relative),
                        moves,
                    });
                    if moves && self.rng.chance(50) {
                        let user = self.rng.below(self.shape.users);
                        steps.push(step(Call::ListByUser(user)));
                    }
                }
                50..=59 => steps.push(Step {
                    call: Call::Save(self.spec(key, 0)),
                    relative: Some(0),
                    moves: false,
                }),
                60..=69 => steps.push(step(Call::Touch(key, self.deadline(85)))),
                70..=77 => steps.push(step(Call::Delete(key))),
                78..=91 => steps.push(step(Call::ListByUser(self.rng.below(self.shape.users)))),
                92..=96 => steps.push(step(Call::DeleteByUser(self.rng.below(self.shape.users)))),
                _ => steps.push(step(Call::DeleteExpired)),
            }
        }
        steps.truncate(len);
        steps
    }

    /// A script that moves one session back and forth between users:
    /// creates it (one task wins), then loads, saves it to the other user
    /// than the one seen, and lists a user, over and over. These are the
    /// moves whose index updates race when a store gets them wrong.
    pub(crate) fn moves_task(&mut self, len: usize) -> Vec<Step> {
        let mut first = self.spec(0, 0);
        first.user = Some(0);
        let mut steps = vec![Step {
            call: Call::Create(first),
            relative: None,
            moves: false,
        }];
        while steps.len() < len {
            steps.push(Step {
                call: Call::Load(0),
                relative: None,
                moves: false,
            });
            let mut spec = self.spec(0, 0);
            spec.expires_at = self.deadline(100);
            steps.push(Step {
                call: Call::Save(spec),
                relative: Some(0),
                moves: true,
            });
            steps.push(Step {
                call: Call::ListByUser(self.rng.below(self.shape.users)),
                relative: None,
                moves: false,
            });
        }
        steps
    }
}

/// Where a sequential script and the model first disagree.
pub(crate) struct Mismatch {
    pub(crate) index: usize,
    pub(crate) want: Option<Answer>,
    pub(crate) got: Answer,
}

/// Runs `calls` in order against fresh keys and users; the first answer
/// the model does not accept, if any.
pub(crate) async fn run_sequence(
    cx: &Context,
    calls: &[Call],
    shape: Shape,
    base: Timestamp,
) -> Result<Option<Mismatch>, Failure> {
    let world = World::fresh(cx, shape.keys, shape.users)?;
    let mut model = Model::new(base, shape.keys);
    for (index, call) in calls.iter().enumerate() {
        let want = model.step(call);
        let got = world.execute(cx.store(), call).await?;
        if !accepts(want.as_ref(), &got) {
            return Ok(Some(Mismatch { index, want, got }));
        }
    }
    Ok(None)
}

/// How many replays shrinking may spend on one failure.
const SHRINK_RUNS: usize = 400;

/// Shrinks a failing sequential script: drops chunks of calls, halving
/// the chunk size, while what is left still fails.
pub(crate) async fn shrink_sequence(
    cx: &Context,
    mut calls: Vec<Call>,
    mut mismatch: Mismatch,
    shape: Shape,
    base: Timestamp,
) -> Result<(Vec<Call>, Mismatch), Failure> {
    calls.truncate(mismatch.index + 1);
    let mut runs = 0;
    let mut chunk = calls.len().div_ceil(2);
    while chunk >= 1 && runs < SHRINK_RUNS {
        let mut start = 0;
        while start < calls.len() && runs < SHRINK_RUNS {
            let mut candidate = calls.clone();
            candidate.drain(start..(start + chunk).min(calls.len()));
            runs += 1;
            match run_sequence(cx, &candidate, shape, base).await? {
                Some(found) => {
                    candidate.truncate(found.index + 1);
                    calls = candidate;
                    mismatch = found;
                }
                None => start += chunk,
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    Ok((calls, mismatch))
}

/// Describes a shrunk sequential failure.
pub(crate) fn sequence_failure(
    seed: u64,
    sequence: usize,
    original: usize,
    calls: &[Call],
    mismatch: &Mismatch,
    base: Timestamp,
) -> Failure {
    let mut text = format!(
        "random sequence {sequence} of seed {seed:#x} (rerun: SESSION_SUITE_SEED={seed:#x}), \
         shrunk from {original} to {} calls:",
        calls.len()
    );
    for (i, call) in calls.iter().enumerate() {
        let _ = write!(text, "\n    #{i} {}", show_call(call, base));
    }
    let want = mismatch
        .want
        .as_ref()
        .map_or_else(|| "any count".to_owned(), |w| show_answer(w, base));
    Failure::new(
        format!("{text}\n  the last call, #{}", mismatch.index),
        want,
        show_answer(&mismatch.got, base),
    )
}

/// Runs one task per script at once, each call timed from a shared
/// start; returns every call with its answer.
pub(crate) async fn run_history(
    cx: &Context,
    scripts: &[Vec<Step>],
    shape: Shape,
) -> Result<Vec<Event>, Failure> {
    let world = Arc::new(World::fresh(cx, shape.keys, shape.users)?);
    let barrier = Arc::new(tokio::sync::Barrier::new(scripts.len()));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(scripts.len());
    for (task, script) in scripts.iter().enumerate() {
        let (world, barrier, store) = (Arc::clone(&world), Arc::clone(&barrier), cx.store_arc());
        let script = script.clone();
        tasks.push(tokio::spawn(async move {
            run_task(task, &script, &world, &*store, &barrier, start).await
        }));
    }
    let mut history = Vec::new();
    for task in tasks {
        let events = task.await.map_err(|e| {
            Failure::new("a task of a random history", "to finish", e.to_string())
        })??;
        history.extend(events);
    }
    history.sort_by_key(|e| e.invoked);
    Ok(history)
}

async fn run_task(
    task: usize,
    script: &[Step],
    world: &World,
    store: &dyn SessionStore,
    barrier: &tokio::sync::Barrier,
    start: Instant,
) -> Result<Vec<Event>, Failure> {
    // What this task last saw of each key: version and user.
    let mut seen: Vec<(u64, Option<usize>)> = vec![(0, None); world.keys.len()];
    let users = world.users.len().max(1);
    let mut events = Vec::with_capacity(script.len());
    barrier.wait().await;
    for step in script {
        let mut call = step.call.clone();
        if let (Call::Save(spec), Some(relative)) = (&mut call, step.relative) {
            let (version, user) = seen.get(spec.key).copied().unwrap_or((0, None));
            spec.version = version.saturating_add_signed(relative);
            if step.moves {
                spec.user = Some(user.map_or(0, |u| (u + 1) % users));
            }
        }
        let invoked = start.elapsed();
        let answer = world.execute(store, &call).await?;
        let returned = start.elapsed();
        match (&call, &answer) {
            (Call::Create(spec), Answer::Created) => seen[spec.key] = (spec.version, spec.user),
            (Call::Load(key), Answer::Loaded(Some(spec))) => {
                seen[*key] = (spec.version, spec.user);
            }
            (Call::Save(spec), Answer::Saved(v)) => seen[spec.key] = (*v, spec.user),
            _ => {}
        }
        events.push(Event {
            task,
            call,
            answer,
            invoked,
            returned,
        });
    }
    Ok(events)
}

/// Runs `scripts` and checks the history; the history and what no order
/// explains, if it is not linearizable.
pub(crate) async fn run_and_check(
    cx: &Context,
    scripts: &[Vec<Step>],
    shape: Shape,
    base: Timestamp,
) -> Result<Option<(Vec<Event>, Unexplained)>, Failure> {
    let history = run_history(cx, scripts, shape).await?;
    Ok(check(&history, shape.keys, base)
        .err()
        .map(|unexplained| (history, unexplained)))
}

/// How often a shrinking candidate of a concurrent history is rerun
/// before it counts as passing (races do not fire every time).
const RACE_TRIES: usize = 4;

/// Shrinks a failing concurrent history: drops whole tasks, then chunks
/// of each task's script, keeping a candidate when one of a few reruns
/// still fails.
pub(crate) async fn shrink_history(
    cx: &Context,
    mut scripts: Vec<Vec<Step>>,
    mut found: (Vec<Event>, Unexplained),
    shape: Shape,
    base: Timestamp,
) -> Result<(Vec<Vec<Step>>, (Vec<Event>, Unexplained)), Failure> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let fails =
        async |candidate: &[Vec<Step>]| -> Result<Option<(Vec<Event>, Unexplained)>, Failure> {
            for _ in 0..RACE_TRIES {
                if let Some(found) = run_and_check(cx, candidate, shape, base).await? {
                    return Ok(Some(found));
                }
            }
            Ok(None)
        };
    let mut task = 0;
    while task < scripts.len() && scripts.len() > 1 && Instant::now() < deadline {
        let mut candidate = scripts.clone();
        candidate.remove(task);
        match fails(&candidate).await? {
            Some(again) => (scripts, found) = (candidate, again),
            None => task += 1,
        }
    }
    for task in 0..scripts.len() {
        let mut chunk = scripts[task].len().div_ceil(2);
        while chunk >= 1 && Instant::now() < deadline {
            let mut start = 0;
            while start < scripts[task].len() && Instant::now() < deadline {
                let mut candidate = scripts.clone();
                let end = (start + chunk).min(candidate[task].len());
                candidate[task].drain(start..end);
                match fails(&candidate).await? {
                    Some(again) => (scripts, found) = (candidate, again),
                    None => start += chunk,
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    Ok((scripts, found))
}

/// Describes a shrunk concurrent failure.
pub(crate) fn history_failure(
    seed: u64,
    number: usize,
    original: usize,
    history: &[Event],
    unexplained: &Unexplained,
    base: Timestamp,
) -> Failure {
    let mut text = format!(
        "random concurrent history {number} of seed {seed:#x} (rerun: SESSION_SUITE_SEED={seed:#x}; \
         races may need a few runs), shrunk from {original} to {} calls; \
         [task] invoked..returned (µs since start):",
        history.len()
    );
    for (i, event) in history.iter().enumerate() {
        let mark = if i == unexplained.event {
            "  <-- unexplained"
        } else {
            ""
        };
        let _ = write!(
            text,
            "\n    [t{}] {}..{} {} -> {}{mark}",
            event.task,
            event.invoked.as_micros(),
            event.returned.as_micros(),
            show_call(&event.call, base),
            show_answer(&event.answer, base),
        );
    }
    let got = history
        .get(unexplained.event)
        .map_or_else(String::new, |e| show_answer(&e.answer, base));
    Failure::new(
        text,
        format!("a linearizable history ({})", unexplained.why),
        got,
    )
}
