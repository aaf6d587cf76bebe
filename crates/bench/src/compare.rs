//! `botfleet bench compare`: how often `botfleet compare` cries wolf and
//! how often it sees a real change, as functions of the runs per side. The
//! runs are drawn from a noise model of benchmark timings (docs/benchmarks.md):
//! a log-normal spread and, now and then, an outlier from a busy machine.

use std::io::Write;
use std::process::ExitCode;

use botfleet_analyze::compare::{Settings, Verdict, figure};
use clap::Args;
use serde::Serialize;

use crate::Machine;

/// `botfleet bench compare`'s flags.
#[derive(Debug, Args)]
pub struct CompareBench {
    /// Trials per cell.
    #[arg(long, default_value_t = 2000)]
    trials: u32,
    /// The runs' relative spread (standard deviation of the log), percent.
    #[arg(long, default_value_t = 2.0)]
    noise: f64,
    /// The share of runs that are outliers (20 % to 60 % slower).
    #[arg(long, default_value_t = 0.05)]
    outliers: f64,
    /// The change to detect, percent (a slowdown).
    #[arg(long, default_value_t = 5.0)]
    change: f64,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    runs: usize,
    /// A/A: share of trials called better or worse.
    false_alarm_rate: f64,
    /// A/A: share called the same.
    same_rate: f64,
    /// A/B with the change: share called worse.
    detection_rate: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    trials: u32,
    noise_pct: f64,
    outliers: f64,
    change_pct: f64,
    threshold_pct: f64,
    alpha: f64,
    rows: Vec<Row>,
    took_s: f64,
}

/// One run's time: 1 s, spread log-normally, sometimes an outlier.
fn draw(rng: &mut fastrand::Rng, factor: f64, noise: f64, outliers: f64) -> f64 {
    // Box-Muller.
    let (u, v) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
    let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
    let slow = if rng.f64() < outliers {
        1.2 + 0.4 * rng.f64()
    } else {
        1.0
    };
    factor * (noise / 100.0 * z).exp() * slow
}

/// Runs `botfleet bench compare` and prints its report.
pub fn run(args: &CompareBench) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.trials >= 10, "--trials must be at least 10");
    anyhow::ensure!(
        args.noise >= 0.0 && (0.0..1.0).contains(&args.outliers),
        "--noise must be at least 0 and --outliers within [0, 1)"
    );
    let started = tokio::time::Instant::now();
    let settings = Settings::default();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut rows = Vec::new();
    for runs in [5usize, 10, 20, 40] {
        let (mut alarms, mut same, mut detected) = (0u32, 0u32, 0u32);
        for _ in 0..args.trials {
            let mut sample = |factor: f64| -> Vec<f64> {
                (0..runs)
                    .map(|_| draw(&mut rng, factor, args.noise, args.outliers))
                    .collect()
            };
            let (a, b) = (sample(1.0), sample(1.0));
            match figure("wall_s", &a, &b, settings).verdict {
                Verdict::Better | Verdict::Worse => alarms += 1,
                Verdict::Same => same += 1,
                Verdict::Inconclusive => {}
            }
            let (a, b) = (sample(1.0), sample(1.0 + args.change / 100.0));
            if figure("wall_s", &a, &b, settings).verdict == Verdict::Worse {
                detected += 1;
            }
        }
        let share = |n: u32| f64::from(n) / f64::from(args.trials);
        let _ = writeln!(
            std::io::stderr(),
            "bench compare: {runs} runs per side done"
        );
        rows.push(Row {
            runs,
            false_alarm_rate: share(alarms),
            same_rate: share(same),
            detection_rate: share(detected),
        });
    }
    let report = Report {
        machine: Machine::current(),
        trials: args.trials,
        noise_pct: args.noise,
        outliers: args.outliers,
        change_pct: args.change,
        threshold_pct: settings.threshold_pct,
        alpha: settings.alpha,
        rows,
        took_s: started.elapsed().as_secs_f64(),
    };
    crate::output(args.json, &report, print)
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "compare's verdicts over {} trials a cell: runs with {} % log-normal noise and {} % outliers; A/A, and A/B with a {} % slowdown (threshold +-{} %, alpha {})",
        r.trials,
        r.noise_pct,
        r.outliers * 100.0,
        r.change_pct,
        r.threshold_pct,
        r.alpha
    )?;
    writeln!(
        out,
        "{:>5}  {:>12}  {:>10}  {:>10}",
        "runs", "false alarm", "A/A same", "detected"
    )?;
    for row in &r.rows {
        writeln!(
            out,
            "{:>5}  {:>11.1}%  {:>9.1}%  {:>9.1}%",
            row.runs,
            row.false_alarm_rate * 100.0,
            row.same_rate * 100.0,
            row.detection_rate * 100.0
        )?;
    }
    writeln!(out, "took {:.1} s", r.took_s)
}
