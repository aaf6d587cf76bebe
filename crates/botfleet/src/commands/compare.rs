//! `botfleet compare`: benchmark documents, or two commands run
//! interleaved, compared figure by figure (docs/compare.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use botfleet_analyze::compare::{self, Figure, Settings, Verdict};
use clap::Args;

use crate::exit;

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// BASE, then NEW...: `botfleet bench ... --json` output. A file may
    /// hold several runs (a JSON array of documents, JSON lines, or
    /// documents one after another); a directory's *.json files are its
    /// runs; the NEW files together are the new side.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Run the two commands given after `--` (`-- CMD_A ... -- CMD_B ...`)
    /// this many times each, interleaved in a random order, and compare
    /// their wall time and the JSON figures they print.
    #[arg(long, value_name = "N")]
    runs: Option<u32>,
    /// A 95 % interval wider than +- this many percent is inconclusive;
    /// one inside it without a significant change is the same.
    #[arg(long, value_name = "PCT", default_value_t = 5.0)]
    threshold: f64,
    /// A significant change smaller than this many percent is the same.
    #[arg(long, value_name = "PCT", default_value_t = 1.0)]
    min_change: f64,
    /// The Mann-Whitney test's significance level.
    #[arg(long, default_value_t = 0.01)]
    alpha: f64,
    /// The order of the interleaved runs [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Print the comparison as JSON (../shared/BENCHMARKS.md).
    #[arg(long)]
    json: bool,
    /// The two commands, after `--`, separated by `--`.
    #[arg(last = true, allow_hyphen_values = true, value_name = "CMD")]
    commands: Vec<String>,
}

pub(crate) fn run(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    if !(args.threshold > 0.0 && args.threshold < 100.0) {
        return usage(&format!(
            "--threshold must be between 0 and 100 (got {})",
            args.threshold
        ));
    }
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return usage(&format!(
            "--alpha must be between 0 and 1 (got {})",
            args.alpha
        ));
    }
    if !(args.min_change >= 0.0 && args.min_change < args.threshold) {
        return usage(&format!(
            "--min-change must be at least 0 and below --threshold (got {})",
            args.min_change
        ));
    }
    let settings = Settings {
        alpha: args.alpha,
        threshold_pct: args.threshold,
        min_change_pct: args.min_change,
    };
    let (base, new) = match args.runs {
        Some(runs) => {
            if !args.files.is_empty() {
                return usage("give either files or --runs with two commands, not both");
            }
            let Some((a, b)) = split_commands(&args.commands) else {
                return usage(
                    "--runs needs two commands: compare --runs N -- CMD_A ... -- CMD_B ...",
                );
            };
            if runs < 2 {
                return usage("--runs must be at least 2");
            }
            interleaved(runs, &a, &b, args.seed)?
        }
        None => {
            if !args.commands.is_empty() {
                return usage("commands after -- need --runs N");
            }
            let [base, new @ ..] = args.files.as_slice() else {
                return usage("give BASE.json and NEW.json (or --runs N -- CMD_A -- CMD_B)");
            };
            if new.is_empty() {
                return usage("give NEW.json after BASE.json");
            }
            let base = documents(base)?;
            let mut docs = Vec::new();
            for file in new {
                docs.extend(documents(file)?);
            }
            (base, docs)
        }
    };
    let (figures, alone) = compare::documents(&base, &new, settings);
    if figures.is_empty() {
        bail!("the two sides share no figure");
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({
            "alpha": settings.alpha,
            "threshold_pct": settings.threshold_pct,
            "min_change_pct": settings.min_change_pct,
            "figures": figures,
            "only_one_side": alone,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        table(&mut out, &figures, &alone, settings)?;
    }
    let worse = figures.iter().any(|f| f.verdict == Verdict::Worse);
    Ok(ExitCode::from(if worse { exit::FAILURE } else { exit::OK }))
}

fn usage(message: &str) -> anyhow::Result<ExitCode> {
    writeln!(std::io::stderr().lock(), "error: {message}")?;
    Ok(ExitCode::from(exit::USAGE))
}

/// `CMD_A ... -- CMD_B ...` as two argument lists.
fn split_commands(args: &[String]) -> Option<(Vec<String>, Vec<String>)> {
    let at = args.iter().position(|a| a == "--")?;
    let (a, b) = (args[..at].to_vec(), args[at + 1..].to_vec());
    (!a.is_empty() && !b.is_empty()).then_some((a, b))
}

/// The runs a file holds: one document, an array of them, or several one
/// after another (JSON lines); a directory's *.json files, sorted.
fn documents(path: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{} has no .json file", path.display());
        }
        let mut out = Vec::new();
        for file in files {
            out.extend(documents(&file)?);
        }
        return Ok(out);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for doc in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
        match doc {
            Ok(serde_json::Value::Array(runs)) if runs.iter().all(|r| r.is_object()) => {
                out.extend(runs);
            }
            Ok(doc) => out.push(doc),
            Err(e) => bail!(
                "{}:{}:{}: not JSON: {e}",
                path.display(),
                e.line(),
                e.column()
            ),
        }
    }
    if out.is_empty() {
        bail!("{} holds no JSON document", path.display());
    }
    Ok(out)
}

/// Runs `a` and `b` `runs` times each in a shuffled order; each run's
/// document is its wall time and the figures of the JSON it printed.
fn interleaved(
    runs: u32,
    a: &[String],
    b: &[String],
    seed: Option<u64>,
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<serde_json::Value>)> {
    let mut order: Vec<bool> = (0..runs).flat_map(|_| [true, false]).collect();
    let mut rng = match seed {
        Some(seed) => fastrand::Rng::with_seed(seed),
        None => fastrand::Rng::new(),
    };
    rng.shuffle(&mut order);
    let (mut base, mut new) = (Vec::new(), Vec::new());
    let total = order.len();
    let mut err = std::io::stderr().lock();
    for (i, is_a) in order.into_iter().enumerate() {
        let (command, side, n) = if is_a {
            (a, "A", base.len() + 1)
        } else {
            (b, "B", new.len() + 1)
        };
        write!(err, "\rcompare: run {}/{total} ({side} #{n})", i + 1)?;
        err.flush()?;
        let doc = run_once(command)
            .with_context(|| format!("command {side} (`{}`), its run {n}", command.join(" ")))?;
        if is_a { base.push(doc) } else { new.push(doc) }
    }
    writeln!(err)?;
    Ok((base, new))
}

/// One run of `command`: `{"wall_s": ..., ...its JSON}`.
fn run_once(command: &[String]) -> anyhow::Result<serde_json::Value> {
    #[expect(
        clippy::disallowed_methods,
        reason = "compare runs the user's commands, as a shell would; no process group or log to own"
    )]
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let started = tokio::time::Instant::now();
    let output = cmd.output().context("cannot start it")?;
    let wall = started.elapsed().as_secs_f64();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("it failed ({}): {}", output.status, tail.join("\n"));
    }
    let mut doc = serde_json::Map::new();
    doc.insert("wall_s".to_owned(), serde_json::json!(wall));
    if let Ok(serde_json::Value::Object(printed)) =
        serde_json::from_slice::<serde_json::Value>(&output.stdout)
    {
        for (k, v) in printed {
            if k != "wall_s" {
                doc.insert(k, v);
            }
        }
    }
    Ok(serde_json::Value::Object(doc))
}

/// The benchstat-like table.
fn table(
    out: &mut impl Write,
    figures: &[Figure],
    alone: &[String],
    settings: Settings,
) -> std::io::Result<()> {
    let width = figures
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(6)
        .clamp(6, 60);
    writeln!(
        out,
        "{:<width$}  {:>12}  {:>12}  {:>9}  {:>20}  {:>6}  verdict",
        "figure", "base", "new", "change", "95 % CI", "p"
    )?;
    for f in figures {
        let pct = |x: f64| {
            if x.is_finite() {
                format!("{x:+.1} %")
            } else {
                "-".to_owned()
            }
        };
        writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>9}  {:>20}  {:>6.3}  {}{}",
            f.name,
            number(f.base_median),
            number(f.new_median),
            pct(f.change_pct),
            format!("[{}, {}]", pct(f.ci_low_pct), pct(f.ci_high_pct)),
            f.p_value,
            f.verdict.as_str(),
            if f.verdict == Verdict::Inconclusive && f.n_base.min(f.n_new) < 4 {
                " (too few runs)"
            } else {
                ""
            }
        )?;
    }
    let count = |v: Verdict| figures.iter().filter(|f| f.verdict == v).count();
    writeln!(
        out,
        "{} figures: {} worse, {} better, {} same, {} inconclusive (threshold +-{} %, alpha {})",
        figures.len(),
        count(Verdict::Worse),
        count(Verdict::Better),
        count(Verdict::Same),
        count(Verdict::Inconclusive),
        settings.threshold_pct,
        settings.alpha
    )?;
    if !alone.is_empty() {
        writeln!(out, "on one side only: {}", alone.join(", "))?;
    }
    Ok(())
}

fn number(x: f64) -> String {
    if !x.is_finite() {
        "-".to_owned()
    } else if x.abs() >= 1e6 || (x != 0.0 && x.abs() < 1e-3) {
        format!("{x:.4e}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}
