//! The command line shared by the benchmark drivers (`bench_sqlite`,
//! `bench_redis`, ...):
//!
//! ```text
//! --seconds S   measured window per run
//! --warmup W    warm-up before each window
//! --reps R      repetitions (systems interleaved within each)
//! --out PATH    where the Markdown report goes (also printed)
//! --only NAME   run one workload (load, save, create)
//! --tasks LIST  concurrency levels, comma-separated (default 1,64)
//! --systems L   run only these systems, comma-separated (for profiling)
//! --breakdown   add the driver's diagnostic systems
//! ```

use std::path::PathBuf;
use std::time::Duration;

use super::{BenchConfig, System};

/// A driver's settings, from its defaults and the command line.
#[derive(Debug, Clone)]
pub struct Args {
    /// Warm-up before each measured window.
    pub warmup: Duration,
    /// The measured window of each run.
    pub window: Duration,
    /// Repetitions per system.
    pub reps: usize,
    /// Where the Markdown report is written.
    pub out: PathBuf,
    /// Whether to add the driver's diagnostic systems.
    pub breakdown: bool,
    /// Run only this workload.
    pub only: Option<String>,
    /// Concurrency levels (tokio tasks), in order.
    pub tasks: Vec<usize>,
    /// Run only the systems named here.
    pub systems: Option<Vec<String>>,
}

impl Args {
    /// Defaults: a 0.5 s warm-up, `window` measured, 3 repetitions, the
    /// report at `target/bench/{report}` in the workspace.
    pub fn defaults(window: Duration, report: &str) -> Self {
        Self {
            warmup: Duration::from_millis(500),
            window,
            reps: 3,
            out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench"))
                .join(report),
            breakdown: false,
            only: None,
            tasks: super::data::TASK_COUNTS.to_vec(),
            systems: None,
        }
    }

    /// Applies the process's command line to `self`. `Ok(None)` when
    /// `--help` was asked for (the usage is printed to stdout);
    /// `breakdown_help` says what `--breakdown` adds.
    ///
    /// # Errors
    ///
    /// An unknown flag, a missing or malformed value, or zero
    /// repetitions or window.
    pub fn parse_env(self, program: &str, breakdown_help: &str) -> Result<Option<Self>, String> {
        self.parse(program, breakdown_help, std::env::args().skip(1))
    }

    /// As [`parse_env`](Self::parse_env), over `argv` (without the
    /// program name).
    ///
    /// # Errors
    ///
    /// As [`parse_env`](Self::parse_env).
    pub fn parse(
        mut self,
        program: &str,
        breakdown_help: &str,
        argv: impl IntoIterator<Item = String>,
    ) -> Result<Option<Self>, String> {
        let secs = |flag: &str, text: String| -> Result<Duration, String> {
            text.parse::<f64>()
                .map_err(|e| e.to_string())
                .and_then(|s| Duration::try_from_secs_f64(s).map_err(|e| e.to_string()))
                .map_err(|e| format!("{flag} {text:?}: {e}"))
        };
        let mut it = argv.into_iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--seconds" => self.window = secs(&flag, value()?)?,
                "--warmup" => self.warmup = secs(&flag, value()?)?,
                "--reps" => {
                    let text = value()?;
                    self.reps = text.parse().map_err(|e| format!("--reps {text:?}: {e}"))?;
                }
                "--out" => self.out = PathBuf::from(value()?),
                "--breakdown" => self.breakdown = true,
                "--only" => self.only = Some(value()?),
                "--tasks" => {
                    let text = value()?;
                    self.tasks = text
                        .split(',')
                        .map(|t| t.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("--tasks {text:?}: {e}"))?;
                }
                "--systems" => {
                    let list = value()?.split(',').map(|s| s.trim().to_owned()).collect();
                    self.systems = Some(list);
                }
                "-h" | "--help" => {
                    println!(
                        "usage: {program} [--seconds S (window, {})] [--warmup W ({})] \
                         [--reps R ({})] [--out PATH ({})] [--only load|save|create] \
                         [--tasks 1,64] [--systems NAME,...] [--breakdown ({breakdown_help})]",
                        self.window.as_secs_f64(),
                        self.warmup.as_secs_f64(),
                        self.reps,
                        self.out.display(),
                    );
                    return Ok(None);
                }
                other => return Err(format!("unknown argument {other:?} (try --help)")),
            }
        }
        if self.reps == 0 || self.window.is_zero() {
            return Err("--reps and --seconds must be positive".to_owned());
        }
        if self.tasks.is_empty() || self.tasks.contains(&0) {
            return Err("--tasks must list positive numbers".to_owned());
        }
        Ok(Some(self))
    }

    /// Whether `workload` is to be run (`--only`).
    pub fn wants(&self, workload: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == workload)
    }

    /// `systems` less those `--systems` leaves out.
    pub fn select(&self, systems: Vec<System>) -> Vec<System> {
        match &self.systems {
            None => systems,
            Some(keep) => systems
                .into_iter()
                .filter(|s| keep.iter().any(|k| k == s.name()))
                .collect(),
        }
    }

    /// The harness settings (progress lines on).
    pub fn bench_config(&self) -> BenchConfig {
        BenchConfig {
            warmup: self.warmup,
            window: self.window,
            reps: self.reps,
            progress: true,
        }
    }

    /// The command that reruns these settings (`--out` left out).
    pub fn command(&self, program: &str) -> String {
        let mut command = format!(
            "cargo run --release -p examples --example {program} -- --seconds {} --warmup {} \
             --reps {}",
            self.window.as_secs_f64(),
            self.warmup.as_secs_f64(),
            self.reps
        );
        if let Some(only) = &self.only {
            command.push_str(&format!(" --only {only}"));
        }
        if self.tasks != super::data::TASK_COUNTS {
            let tasks: Vec<String> = self.tasks.iter().map(usize::to_string).collect();
            command.push_str(&format!(" --tasks {}", tasks.join(",")));
        }
        if let Some(systems) = &self.systems {
            command.push_str(&format!(" --systems {}", systems.join(",")));
        }
        if self.breakdown {
            command.push_str(" --breakdown");
        }
        command
    }

    /// Writes `report` to [`out`](Self::out), creating its directory.
    ///
    /// # Errors
    ///
    /// When the directory or file cannot be written.
    pub fn write_report(&self, report: &str) -> std::io::Result<()> {
        if let Some(parent) = self.out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&self.out, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Option<Args>, String> {
        Args::defaults(Duration::from_secs(2), "x.md").parse(
            "bench_x",
            "nothing",
            argv.iter().map(|s| (*s).to_owned()),
        )
    }

    #[test]
    fn flags() -> Result<(), String> {
        let args = parse(&[
            "--seconds",
            "1.5",
            "--reps",
            "5",
            "--only",
            "save",
            "--breakdown",
        ])?
        .ok_or("no args")?;
        assert_eq!(args.window, Duration::from_millis(1500));
        assert_eq!(args.reps, 5);
        assert!(args.breakdown && args.wants("save") && !args.wants("load"));
        assert_eq!(
            args.command("bench_x"),
            "cargo run --release -p examples --example bench_x -- --seconds 1.5 --warmup 0.5 \
             --reps 5 --only save --breakdown"
        );
        assert!(parse(&["--help"])?.is_none());
        assert!(parse(&["--reps", "0"]).is_err());
        assert!(parse(&["--seconds"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        let args = parse(&["--tasks", "64", "--systems", "ours,raw"])?.ok_or("no args")?;
        assert_eq!(args.tasks, [64]);
        assert!(args.command("b").ends_with("--tasks 64 --systems ours,raw"));
        assert!(parse(&["--tasks", "0"]).is_err());
        Ok(())
    }
}
