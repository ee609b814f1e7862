//! A small throughput harness for comparing session stores (and raw
//! clients) in one run.
//!
//! A [`System`] is a name plus an async operation over a [`Step`] (which
//! task runs it, and which key index to use). [`Bench::compare`] runs each
//! system with `tasks` concurrent tokio tasks for a warm-up, then for a
//! fixed measured window, and repeats that [`BenchConfig::reps`] times,
//! interleaving the systems (A, B, A, B, ...) so that drift on a shared,
//! noisy machine hits every system alike. The result keeps every run; the
//! headline number is the median ops/s per system and the ratio of
//! medians, rendered as Markdown by [`render_markdown`].
//!
//! Errors are never dropped: every failed operation is counted (inside and
//! outside the measured window separately), its message tallied, and both
//! appear in the rendered report. Only successful operations completed
//! inside the window count as ops.
//!
//! The drivers share their sessions (keys, users, the ≈200-byte payload)
//! through [`data`] and their command line through [`cli`].
//!
//! ```no_run
//! use examples::bench::{Bench, BenchConfig, Keys, System};
//!
//! # async fn demo() -> Result<(), examples::bench::BenchError> {
//! let noop = System::new("noop", |_step| async { Ok::<(), std::convert::Infallible>(()) });
//! let also = System::new("also-noop", |_step| async { Ok::<(), std::convert::Infallible>(()) });
//! let bench = Bench::new(BenchConfig::default());
//! let cmp = bench.compare("nothing", 4, &Keys::Shared(100), &[noop, also]).await?;
//! println!("{}", examples::bench::render_markdown("demo", &[cmp], &[("noop", "also-noop")]));
//! # Ok(())
//! # }
//! ```

pub mod cli;
pub mod data;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most this many distinct error messages are kept per run and task;
/// further distinct messages are tallied under [`OTHER_ERRORS`].
const MAX_DISTINCT_ERRORS: usize = 16;

/// The tally line for errors whose messages were not kept individually.
pub const OTHER_ERRORS: &str = "(other error messages, not kept)";

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What one operation is asked to do: which task runs it, and the key
/// index it should use (chosen by the harness according to [`Keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The task running the operation, `0..tasks`.
    pub task: usize,
    /// The key index to operate on.
    pub index: u64,
}

/// How the harness picks the key index of each [`Step`].
#[derive(Debug, Clone)]
pub enum Keys {
    /// Uniformly random in `0..n`, every task over the whole set (two
    /// tasks may hit the same key at once).
    Shared(u64),
    /// Uniformly random over the task's own stripe, `{i < n : i % tasks ==
    /// task}`: no two tasks ever touch the same index, so per-key state
    /// (a CAS version, say) can be kept without conflicts. Needs `n >=
    /// tasks`.
    Striped(u64),
    /// A fresh index on every operation, never handed out before by this
    /// counter (for creates of new keys).
    Fresh(FreshKeys),
}

/// A shared source of never-repeating key indices for [`Keys::Fresh`].
/// Clones share the counter.
#[derive(Debug, Clone)]
pub struct FreshKeys(Arc<AtomicU64>);

impl FreshKeys {
    /// Indices from `start` upwards (start above a pre-populated key set).
    pub fn starting_at(start: u64) -> Self {
        Self(Arc::new(AtomicU64::new(start)))
    }

    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// The future an operation returns: `Err` carries the error's message.
pub type OpFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

type Op = Arc<dyn Fn(Step) -> OpFuture + Send + Sync>;

/// One contestant: a name and an async operation over a [`Step`].
///
/// The operation should do exactly one unit of work (one `load`, one
/// `save`, ...) and fail with an error for anything that is not a correct
/// result (a missing row, a conflict), so that it shows up in the report.
#[derive(Clone)]
pub struct System {
    name: String,
    op: Op,
}

impl fmt::Debug for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("System")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl System {
    /// A system named `name` running `op` once per operation.
    pub fn new<F, Fut, E>(name: impl Into<String>, op: F) -> Self
    where
        F: Fn(Step) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let op = Arc::new(move |step: Step| -> OpFuture {
            let fut = op(step);
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        });
        Self {
            name: name.into(),
            op,
        }
    }

    /// The system's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Timing and repetition settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Run before each measured window; its ops are not counted.
    pub warmup: Duration,
    /// The measured window of each run.
    pub window: Duration,
    /// Repetitions per system; systems are interleaved within each.
    pub reps: usize,
    /// Print a line per run to stderr.
    pub progress: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            warmup: Duration::from_millis(500),
            window: Duration::from_secs(2),
            reps: 3,
            progress: true,
        }
    }
}

/// What went wrong with the harness itself (operation errors are not
/// harness errors: they are counted in the [`Sample`]s).
#[derive(Debug)]
pub enum BenchError {
    /// `compare` was called without systems, with zero tasks or reps, or
    /// with fewer striped keys than tasks.
    BadSetup(String),
    /// A worker task panicked or was cancelled.
    Task(tokio::task::JoinError),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSetup(what) => write!(f, "bad benchmark setup: {what}"),
            Self::Task(e) => write!(f, "benchmark task failed: {e}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::BadSetup(_) => None,
            Self::Task(e) => Some(e),
        }
    }
}

/// One run of one system: warm-up plus measured window.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Successful operations completed inside the window.
    pub ops: u64,
    /// Failed operations completed inside the window.
    pub errors: u64,
    /// Failed operations completed during the warm-up or after the window
    /// closed (still reported, never dropped).
    pub errors_outside_window: u64,
    /// The window as actually measured.
    pub window: Duration,
    /// Error messages and how often each occurred (inside and outside the
    /// window).
    pub error_messages: BTreeMap<String, u64>,
}

impl Sample {
    /// Successful operations per second inside the window.
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// Every failed operation of the run.
    pub fn total_errors(&self) -> u64 {
        self.errors + self.errors_outside_window
    }
}

/// All runs of one system in one comparison, in run order.
#[derive(Debug, Clone)]
pub struct SystemResult {
    /// The system's name.
    pub name: String,
    /// One sample per repetition.
    pub samples: Vec<Sample>,
}

impl SystemResult {
    /// The median of the runs' ops/s (mean of the middle two for an even
    /// count; 0 with no runs).
    pub fn median_ops_per_sec(&self) -> f64 {
        median(self.samples.iter().map(Sample::ops_per_sec).collect())
    }

    /// The lowest and highest ops/s of the runs.
    pub fn range_ops_per_sec(&self) -> (f64, f64) {
        let rates = self.samples.iter().map(Sample::ops_per_sec);
        let lo = rates.clone().fold(f64::INFINITY, f64::min);
        let hi = rates.fold(0.0, f64::max);
        (if lo.is_finite() { lo } else { 0.0 }, hi)
    }

    /// Every failed operation of every run.
    pub fn total_errors(&self) -> u64 {
        self.samples.iter().map(Sample::total_errors).sum()
    }

    /// Error messages over all runs, with counts.
    pub fn error_messages(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for sample in &self.samples {
            for (msg, n) in &sample.error_messages {
                *all.entry(msg.clone()).or_insert(0) += n;
            }
        }
        all
    }
}

/// The systems of one workload at one concurrency, measured interleaved.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The workload's name (e.g. `load`).
    pub workload: String,
    /// Concurrent tasks.
    pub tasks: usize,
    /// One result per system, in the order given.
    pub results: Vec<SystemResult>,
}

impl Comparison {
    /// The result of the system named `name`.
    pub fn result(&self, name: &str) -> Option<&SystemResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// Median ops/s of `numerator` over median ops/s of `denominator`.
    pub fn ratio_of_medians(&self, numerator: &str, denominator: &str) -> Option<f64> {
        let n = self.result(numerator)?.median_ops_per_sec();
        let d = self.result(denominator)?.median_ops_per_sec();
        (d > 0.0).then(|| n / d)
    }

    /// The ratio of each repetition's pair of runs (they ran back to back).
    pub fn paired_ratios(&self, numerator: &str, denominator: &str) -> Vec<f64> {
        match (self.result(numerator), self.result(denominator)) {
            (Some(n), Some(d)) => n
                .samples
                .iter()
                .zip(&d.samples)
                .map(|(a, b)| {
                    let b = b.ops_per_sec();
                    if b > 0.0 { a.ops_per_sec() / b } else { 0.0 }
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Runs comparisons with one [`BenchConfig`].
#[derive(Debug, Clone)]
pub struct Bench {
    config: BenchConfig,
}

impl Bench {
    /// A harness with these settings.
    pub fn new(config: BenchConfig) -> Self {
        Self { config }
    }

    /// The settings.
    pub fn config(&self) -> &BenchConfig {
        &self.config
    }

    /// Runs every system `reps` times with `tasks` concurrent tasks,
    /// interleaved: rep 1 of each system in the order given, then rep 2,
    /// and so on.
    ///
    /// # Errors
    ///
    /// [`BenchError::BadSetup`] for no systems, zero tasks or reps, or
    /// fewer striped keys than tasks; [`BenchError::Task`] when a worker
    /// task panics. Operation errors are not returned: they are counted.
    pub async fn compare(
        &self,
        workload: &str,
        tasks: usize,
        keys: &Keys,
        systems: &[System],
    ) -> Result<Comparison, BenchError> {
        if systems.is_empty() || tasks == 0 || self.config.reps == 0 {
            return Err(BenchError::BadSetup(format!(
                "{workload}: need at least one system, task and repetition"
            )));
        }
        match keys {
            Keys::Shared(0) => {
                return Err(BenchError::BadSetup(format!("{workload}: empty key set")));
            }
            Keys::Striped(n) if *n < tasks as u64 => {
                return Err(BenchError::BadSetup(format!(
                    "{workload}: {n} striped keys for {tasks} tasks"
                )));
            }
            _ => {}
        }
        let mut results: Vec<SystemResult> = systems
            .iter()
            .map(|s| SystemResult {
                name: s.name.clone(),
                samples: Vec::with_capacity(self.config.reps),
            })
            .collect();
        for rep in 0..self.config.reps {
            for (system, result) in systems.iter().zip(&mut results) {
                let seed = (rep as u64) << 32 | result.samples.len() as u64;
                let sample = self.run_once(system, tasks, keys, seed).await?;
                if self.config.progress {
                    eprintln!(
                        "  {workload:>8} {tasks:>3} tasks  rep {}/{}  {:<12} {:>10.0} ops/s  errors {}",
                        rep + 1,
                        self.config.reps,
                        system.name,
                        sample.ops_per_sec(),
                        sample.total_errors(),
                    );
                }
                result.samples.push(sample);
            }
        }
        Ok(Comparison {
            workload: workload.to_owned(),
            tasks,
            results,
        })
    }

    async fn run_once(
        &self,
        system: &System,
        tasks: usize,
        keys: &Keys,
        seed: u64,
    ) -> Result<Sample, BenchError> {
        let phase = Arc::new(AtomicU8::new(WARMUP));
        let mut handles = Vec::with_capacity(tasks);
        for task in 0..tasks {
            let op = Arc::clone(&system.op);
            let phase = Arc::clone(&phase);
            let keys = keys.clone();
            let mut rng = Rng::new(seed ^ (task as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            handles.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    if phase.load(Ordering::Relaxed) == STOP {
                        break;
                    }
                    let index = pick(&keys, &mut rng, task, tasks);
                    let outcome = op(Step { task, index }).await;
                    let in_window = phase.load(Ordering::Relaxed) == MEASURE;
                    tally.record(outcome, in_window);
                    // Ops that never wait (an in-memory map) must still let
                    // the other tasks on this worker run.
                    tokio::task::consume_budget().await;
                }
                tally
            }));
        }
        tokio::time::sleep(self.config.warmup).await;
        phase.store(MEASURE, Ordering::Relaxed);
        let start = Instant::now();
        tokio::time::sleep(self.config.window).await;
        phase.store(STOP, Ordering::Relaxed);
        let window = start.elapsed();
        let mut sample = Sample {
            window,
            ..Sample::default()
        };
        for handle in handles {
            let tally = handle.await.map_err(BenchError::Task)?;
            sample.ops += tally.ops;
            sample.errors += tally.errors;
            sample.errors_outside_window += tally.errors_outside_window;
            for (msg, n) in tally.messages {
                *sample.error_messages.entry(msg).or_insert(0) += n;
            }
        }
        Ok(sample)
    }
}

#[derive(Default)]
struct Tally {
    ops: u64,
    errors: u64,
    errors_outside_window: u64,
    messages: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, outcome: Result<(), String>, in_window: bool) {
        match outcome {
            Ok(()) => {
                if in_window {
                    self.ops += 1;
                }
            }
            Err(msg) => {
                if in_window {
                    self.errors += 1;
                } else {
                    self.errors_outside_window += 1;
                }
                let slot = if self.messages.len() < MAX_DISTINCT_ERRORS
                    || self.messages.contains_key(&msg)
                {
                    msg
                } else {
                    OTHER_ERRORS.to_owned()
                };
                *self.messages.entry(slot).or_insert(0) += 1;
            }
        }
    }
}

fn pick(keys: &Keys, rng: &mut Rng, task: usize, tasks: usize) -> u64 {
    match keys {
        Keys::Shared(n) => rng.below(*n),
        Keys::Striped(n) => {
            let tasks = tasks as u64;
            let task = task as u64;
            // Indices task, task + tasks, ... below n.
            let stripe = (n - task).div_ceil(tasks);
            task + rng.below(stripe) * tasks
        }
        Keys::Fresh(fresh) => fresh.next(),
    }
}

/// A splitmix64 generator: cheap, and good enough to spread keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A number in `0..n` (`n > 0`; 0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            // Multiply-shift: unbiased enough for picking keys.
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }
}

/// The splitmix64 finaliser: a bijection on `u64` that scatters
/// neighbouring inputs, for deriving distinct random-looking keys from
/// indices.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// A one-line description of this machine (CPU model where Linux tells,
/// logical CPUs, OS and architecture), for the report's header.
pub fn machine_description() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        });
    let model = model.unwrap_or_else(|| "unknown CPU".to_owned());
    format!(
        "{model}, {cpus} logical CPUs available, {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// `1234567.8` as `1,234,568`.
pub fn format_rate(rate: f64) -> String {
    let whole = rate.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Every system of any of `comparisons`: those of the comparison with the
/// most systems in its order, then any others in order of appearance.
pub fn system_names(comparisons: &[Comparison]) -> Vec<&str> {
    let widest = comparisons.iter().max_by_key(|c| c.results.len());
    let mut names: Vec<&str> = Vec::new();
    for r in widest
        .into_iter()
        .chain(comparisons)
        .flat_map(|c| &c.results)
    {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    names
}

/// Renders comparisons as Markdown: a headline table (median ops/s per
/// system, the requested ratios of medians, errors), then every run in
/// order with the paired per-repetition ratios, then every error message.
///
/// `ratios` lists `(numerator, denominator)` system names. The table's
/// columns are every system of any comparison ([`system_names`]); a
/// workload that did not run a system shows `-` there (and in the ratios
/// that need it).
pub fn render_markdown(title: &str, comparisons: &[Comparison], ratios: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let names = system_names(comparisons);

    let _ = writeln!(out, "### {title}\n");
    let mut header = String::from("| workload | tasks |");
    let mut rule = String::from("|---|---:|");
    for name in &names {
        let _ = write!(header, " {name} ops/s |");
        rule.push_str("---:|");
    }
    for (n, d) in ratios {
        let _ = write!(header, " {n} / {d} |");
        rule.push_str("---:|");
    }
    header.push_str(" errors |");
    rule.push_str("---:|");
    let _ = writeln!(out, "{header}\n{rule}");
    for c in comparisons {
        let _ = write!(out, "| {} | {} |", c.workload, c.tasks);
        for name in &names {
            match c.result(name) {
                Some(r) => {
                    let _ = write!(out, " {} |", format_rate(r.median_ops_per_sec()));
                }
                None => out.push_str(" - |"),
            }
        }
        for (n, d) in ratios {
            match c.ratio_of_medians(n, d) {
                Some(r) => {
                    let _ = write!(out, " {r:.2} |");
                }
                None => out.push_str(" - |"),
            }
        }
        let errors: u64 = c.results.iter().map(SystemResult::total_errors).sum();
        let _ = writeln!(out, " {errors} |");
    }

    let _ = writeln!(
        out,
        "\nops/s: median over the repetitions of successful operations per second \
         in the measured window. Ratios: ratio of those medians. Errors: every failed \
         operation, warm-up included.\n"
    );
    let _ = writeln!(
        out,
        "<details><summary>Every run, in the order run</summary>\n"
    );
    for c in comparisons {
        let _ = writeln!(out, "- **{}, {} tasks**", c.workload, c.tasks);
        for r in &c.results {
            let (lo, hi) = r.range_ops_per_sec();
            let runs: Vec<String> = r
                .samples
                .iter()
                .map(|s| format_rate(s.ops_per_sec()))
                .collect();
            let _ = writeln!(
                out,
                "  - {}: {} ops/s (range {}–{}), errors {}",
                r.name,
                runs.join(", "),
                format_rate(lo),
                format_rate(hi),
                r.total_errors()
            );
        }
        for (n, d) in ratios {
            let paired: Vec<String> = c
                .paired_ratios(n, d)
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect();
            if !paired.is_empty() {
                let _ = writeln!(out, "  - {n} / {d} per repetition: {}", paired.join(", "));
            }
        }
    }
    let _ = writeln!(out, "\n</details>\n");

    let mut any_errors = false;
    for c in comparisons {
        for r in &c.results {
            for (msg, count) in r.error_messages() {
                if !any_errors {
                    let _ = writeln!(out, "Errors:\n");
                    any_errors = true;
                }
                let _ = writeln!(
                    out,
                    "- {}, {} tasks, {}: {count} × `{msg}`",
                    c.workload, c.tasks, r.name
                );
            }
        }
    }
    if !any_errors {
        let _ = writeln!(out, "No operation failed.");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn striped_indices_stay_in_the_tasks_stripe() {
        let mut rng = Rng::new(7);
        for tasks in [1usize, 3, 64] {
            for task in 0..tasks {
                for _ in 0..200 {
                    let i = pick(&Keys::Striped(1000), &mut rng, task, tasks);
                    assert!(i < 1000);
                    assert_eq!(i as usize % tasks, task);
                }
            }
        }
    }

    #[test]
    fn rates_are_grouped() {
        assert_eq!(format_rate(0.4), "0");
        assert_eq!(format_rate(999.6), "1,000");
        assert_eq!(format_rate(1_234_567.0), "1,234,567");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_are_counted_and_reported() -> Result<(), BenchError> {
        let ok = System::new("ok", |_| async { Ok::<(), String>(()) });
        let failing = System::new("failing", |step: Step| async move {
            if step.index.is_multiple_of(2) {
                Err(format!("even {}", step.index % 4))
            } else {
                Ok(())
            }
        });
        let bench = Bench::new(BenchConfig {
            warmup: Duration::from_millis(20),
            window: Duration::from_millis(50),
            reps: 2,
            progress: false,
        });
        let cmp = bench
            .compare("mixed", 4, &Keys::Shared(100), &[ok, failing])
            .await?;
        let failing = cmp.result("failing").map(SystemResult::total_errors);
        assert!(failing.is_some_and(|n| n > 0));
        assert_eq!(cmp.result("ok").map(SystemResult::total_errors), Some(0));
        assert!(cmp.ratio_of_medians("failing", "ok").is_some());
        let md = render_markdown("t", &[cmp], &[("failing", "ok")]);
        assert!(md.contains("`even 0`") && md.contains("`even 2`"), "{md}");
        Ok(())
    }
}
