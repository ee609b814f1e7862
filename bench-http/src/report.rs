//! The report: `results.md` (tables) and `results.svg` (a bar chart of
//! ours ÷ tower-sessions).

use std::fmt::Write as _;

use crate::BoxError;
use crate::driver::{HOT_CONNECTIONS, PAIRS, Results, SESSIONS};
use crate::load::{HotKind, Workload};

/// The median of `values` (0 for none).
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

impl Results {
    /// Median requests/s of `system` on `workload` at `connections`.
    pub(crate) fn rate(&self, system: &str, workload: Workload, connections: usize) -> f64 {
        median(
            self.runs
                .iter()
                .filter(|r| {
                    r.system == system && r.workload == workload && r.connections == connections
                })
                .map(|r| r.counts.rate())
                .collect(),
        )
    }

    /// Non-2xx answers plus transport errors of `system` on `workload`
    /// at `connections`, over all repetitions.
    pub(crate) fn failures(&self, system: &str, workload: Workload, connections: usize) -> u64 {
        self.runs
            .iter()
            .filter(|r| {
                r.system == system && r.workload == workload && r.connections == connections
            })
            .map(|r| r.counts.non_2xx + r.counts.errors)
            .sum()
    }

    /// `n`'s median over `d`'s.
    pub(crate) fn ratio(&self, n: &str, d: &str, workload: Workload, connections: usize) -> f64 {
        let d = self.rate(d, workload, connections);
        if d > 0.0 {
            self.rate(n, workload, connections) / d
        } else {
            0.0
        }
    }
}

fn hot_label(kind: HotKind) -> &'static str {
    match kind {
        HotKind::Counter => "shared counter",
        HotKind::OwnKeys => "own keys",
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// The markdown report.
pub(crate) fn markdown(r: &Results) -> String {
    let c = r.config.connections.iter().copied().max().unwrap_or(64);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# End-to-end HTTP benchmark: session-tower vs tower-sessions 0.14\n"
    );
    let _ = writeln!(
        out,
        "`cargo run --release -p session-bench-http{}` — {} repetition(s) interleaved, \
         {:.1} s warm-up + {:.1} s measured per window, {SESSIONS} signed-in sessions per system, \
         one keep-alive HTTP/1.1 connection per client task, all on loopback on one 2-core machine. \
         Medians of requests/s answered 2xx; ratios are ratios of medians.{}\n",
        if r.config.quick { " -- --quick" } else { "" },
        r.config.reps,
        r.config.warmup.as_secs_f64(),
        r.config.window.as_secs_f64(),
        if r.busy_rustc > 0 {
            format!(
                " **Other builds were running during this run (up to {} `rustc` processes): the numbers are distorted.**",
                r.busy_rustc
            )
        } else {
            String::new()
        }
    );

    let _ = writeln!(out, "## Ours ÷ tower-sessions at {c} connections\n");
    let _ = writeln!(
        out,
        "| backend | W1 /counter | W2 /login | W3 /read | W0 /plain (untouched) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (backend, ours, ts) in PAIRS {
        let cells: Vec<String> = Workload::ALL
            .iter()
            .map(|&w| format!("{:.2}×", r.ratio(ours, ts, w, c)))
            .collect();
        let _ = writeln!(out, "| {backend} | {} |", cells.join(" | "));
    }

    for &conns in &r.config.connections {
        let _ = writeln!(out, "\n## Requests/s at {conns} connection(s)\n");
        let _ = writeln!(
            out,
            "| system | W1 /counter | W2 /login | W3 /read | W0 /plain | non-2xx + errors |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for system in crate::driver::SYSTEMS {
            let cells: Vec<String> = Workload::ALL
                .iter()
                .map(|&w| format!("{:.0}", r.rate(system, w, conns)))
                .collect();
            let failures: u64 = Workload::ALL
                .iter()
                .map(|&w| r.failures(system, w, conns))
                .sum();
            let _ = writeln!(out, "| {system} | {} | {failures} |", cells.join(" | "));
        }
    }

    let _ = writeln!(
        out,
        "\n## Overhead over the bare baseline at {c} connections\n"
    );
    let _ = writeln!(
        out,
        "1 − system ÷ bare, requests/s; the bare app has the same routes and no session layer.\n"
    );
    let _ = writeln!(
        out,
        "| system | W0 /plain (untouched) | W3 /read | W1 /counter |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for system in crate::driver::SYSTEMS.iter().filter(|s| **s != "bare") {
        let cells: Vec<String> = [Workload::W0Plain, Workload::W3Read, Workload::W1Counter]
            .iter()
            .map(|&w| format!("{:+.1}%", 100.0 * (1.0 - r.ratio(system, "bare", w, c))))
            .collect();
        let _ = writeln!(out, "| {system} | {} |", cells.join(" | "));
    }

    let _ = writeln!(
        out,
        "\n## Hot session: {HOT_CONNECTIONS} connections on one cookie for {:.0} s\n",
        r.config.hot_window.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "*shared counter*: every connection sends `GET /counter` (the handler adds 1 to `counter`: \
         ours with `Session::update`, tower-sessions with `get` then `insert`), then `GET /read`. *own keys*: connection `c` sends `GET /hit/{{c}}` \
         (reads and increments its own `hit-{{c}}` in the same session; no other request writes \
         that key), then `GET /hits` sums them. Applied ÷ 2xx is 1.0 when no increment was lost.\n"
    );
    let _ = writeln!(
        out,
        "| system | kind | answered 2xx | non-2xx | transport errors | increments applied | applied ÷ 2xx |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    for (system, kind, h) in &r.hot {
        let _ = writeln!(
            out,
            "| {system} | {} | {} | {} | {} | {} | {:.3} |",
            hot_label(*kind),
            h.ok,
            h.non_2xx,
            h.errors,
            h.applied,
            h.ratio()
        );
    }

    let _ = writeln!(out, "\n## Targets of issue 16 (at {c} connections)\n");
    let _ = writeln!(out, "| target | measured | |");
    let _ = writeln!(out, "|---|---:|---|");
    for w in [Workload::W1Counter, Workload::W2Login, Workload::W3Read] {
        let x = r.ratio("ours-memory", "ts-moka", w, c);
        let _ = writeln!(
            out,
            "| memory {} ≥ 1.05× tower-sessions | {x:.3}× | {} |",
            w.label(),
            verdict(x >= 1.05)
        );
    }
    let overhead = 1.0 - r.ratio("ours-memory", "bare", Workload::W0Plain, c);
    let _ = writeln!(
        out,
        "| session-tower overhead over bare, untouched (memory) ≤ 3% | {:+.1}% | {} |",
        100.0 * overhead,
        verdict(overhead <= 0.03)
    );
    for w in [Workload::W1Counter, Workload::W2Login] {
        let x = r.ratio("ours-sqlite", "ts-sqlite", w, c);
        let _ = writeln!(
            out,
            "| SQLite {} ≥ 2.5× tower-sessions | {x:.3}× | {} |",
            w.label(),
            verdict(x >= 2.5)
        );
    }
    for (system, kind, h) in r.hot.iter().filter(|(s, _, _)| s.starts_with("ours-")) {
        let ok = h.applied == h.ok && h.non_2xx == 0 && h.errors == 0;
        let _ = writeln!(
            out,
            "| hot session {system}, {}: ratio 1.0, zero errors | {:.3}, {} failures | {} |",
            hot_label(*kind),
            h.ratio(),
            h.non_2xx + h.errors,
            verdict(ok)
        );
    }

    let _ = writeln!(out, "\n## Every window\n");
    let _ = writeln!(
        out,
        "| workload | connections | rep | system | 2xx/s | non-2xx | errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---:|---:|---:|");
    for run in &r.runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {} | {} |",
            run.workload.label(),
            run.connections,
            run.rep,
            run.system,
            run.counts.rate(),
            run.counts.non_2xx,
            run.counts.errors
        );
    }
    let _ = writeln!(
        out,
        "\n![ours ÷ tower-sessions per backend and workload](results.svg)"
    );
    out
}

/// A horizontal bar chart: per backend and workload, ours ÷
/// tower-sessions at each connection count, with a line at 1.0.
pub(crate) fn svg(r: &Results) -> String {
    const W: f64 = 760.0;
    const LEFT: f64 = 190.0;
    const RIGHT: f64 = 40.0;
    const BAR: f64 = 12.0;
    const TOP: f64 = 50.0;
    let colours = ["#2b6cb0", "#9bc1e6"];
    let rows: Vec<(String, Vec<f64>)> = PAIRS
        .iter()
        .flat_map(|(backend, ours, ts)| {
            Workload::ALL.iter().map(move |&w| {
                let ratios = r
                    .config
                    .connections
                    .iter()
                    .map(|&c| r.ratio(ours, ts, w, c))
                    .collect();
                (format!("{backend} {}", w.label()), ratios)
            })
        })
        .collect();
    let max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.5_f64, f64::max)
        .ceil();
    let scale = (W - LEFT - RIGHT) / max;
    let per_row = BAR * r.config.connections.len() as f64 + 8.0;
    let h = TOP + per_row * rows.len() as f64 + 40.0;
    let mut body = String::new();
    for (i, (label, ratios)) in rows.iter().enumerate() {
        let y = TOP + per_row * i as f64;
        let _ = writeln!(
            body,
            r#"<text x="{:.0}" y="{:.1}" text-anchor="end" font-size="12">{label}</text>"#,
            LEFT - 8.0,
            y + BAR * ratios.len() as f64 / 2.0 + 4.0
        );
        for (j, ratio) in ratios.iter().enumerate() {
            let yb = y + BAR * j as f64;
            let _ = writeln!(
                body,
                r#"<rect x="{LEFT}" y="{yb:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10">{ratio:.2}×</text>"#,
                ratio * scale,
                BAR - 1.0,
                colours[j % colours.len()],
                LEFT + ratio * scale + 3.0,
                yb + BAR - 3.0
            );
        }
    }
    let x1 = LEFT + scale;
    let _ = writeln!(
        body,
        r##"<line x1="{x1:.1}" y1="{:.0}" x2="{x1:.1}" y2="{:.0}" stroke="#c53030" stroke-dasharray="4 3"/><text x="{x1:.1}" y="{:.0}" font-size="11" text-anchor="middle" fill="#c53030">1.0 = parity</text>"##,
        TOP - 6.0,
        h - 30.0,
        h - 16.0
    );
    let mut legend = String::new();
    for (j, c) in r.config.connections.iter().enumerate() {
        let x = LEFT + 160.0 * j as f64;
        let _ = write!(
            legend,
            r#"<rect x="{x:.0}" y="28" width="12" height="12" fill="{}"/><text x="{:.0}" y="38" font-size="12">{c} connection(s)</text>"#,
            colours[j % colours.len()],
            x + 16.0
        );
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W:.0}" height="{h:.0}" viewBox="0 0 {W:.0} {h:.0}" font-family="Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="18" font-size="14" font-weight="bold">session-tower ÷ tower-sessions 0.14, requests/s over HTTP (higher is better for ours)</text>
{legend}
{body}</svg>
"##
    )
}

/// Writes `results.md` and `results.svg` and prints the markdown.
pub(crate) fn write(r: &Results) -> Result<(), BoxError> {
    std::fs::create_dir_all(&r.config.out)?;
    let md = markdown(r);
    let md_path = r.config.out.join("results.md");
    let svg_path = r.config.out.join("results.svg");
    std::fs::write(&md_path, &md)?;
    std::fs::write(&svg_path, svg(r))?;
    println!("{md}");
    eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    Ok(())
}
