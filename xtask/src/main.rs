//! `cargo xtask`: project automation, in Rust so it runs wherever cargo does.
//!
//! `cargo xtask ci` is the one test command: the README gives it, `.ci/run`
//! calls it, and it runs on a fresh Debian machine with only the Rust
//! toolchain (as root it installs PostgreSQL and Redis with apt).

mod structure;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  ci         install the test servers if missing (as root, with apt), then
             run the structure check, fmt --check, clippy -D warnings (also
             of the lean build), doc -D warnings and every test
  structure  check ARCHITECTURE.md's layers, testkit rule and code map
             against `cargo metadata`
  help       print this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["ci"] => match ci() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                let _ = writeln!(std::io::stderr(), "xtask ci: {error}");
                ExitCode::FAILURE
            }
        },
        ["structure"] => match structure_check() {
            Ok(()) => {
                say("structure: ARCHITECTURE.md matches the crate graph");
                ExitCode::SUCCESS
            }
            Err(error) => {
                let _ = writeln!(std::io::stderr(), "xtask structure: {error}");
                ExitCode::FAILURE
            }
        },
        [] | ["help" | "-h" | "--help"] => {
            let _ = write!(std::io::stdout(), "{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            let _ = write!(std::io::stderr(), "unknown task {other:?}\n\n{USAGE}");
            ExitCode::from(64)
        }
    }
}

/// A cargo step: its name, cargo's arguments and extra environment.
type Step = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

fn ci() -> Result<(), String> {
    let mut timings = Vec::new();
    let started = now();
    install_servers_if_missing()?;
    timings.push(("test servers".to_owned(), elapsed(started)));

    say("==> structure: ARCHITECTURE.md against cargo metadata");
    let started = now();
    structure_check()?;
    timings.push(("structure".to_owned(), elapsed(started)));

    let steps: [Step; 5] = [
        ("fmt", &["fmt", "--all", "--", "--check"], &[]),
        (
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
        // The lean production binary (no `bench` feature) builds clean too.
        (
            "lean build",
            &[
                "clippy",
                "-p",
                "botfleet",
                "--no-default-features",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
        (
            "doc",
            &[
                "doc",
                "--workspace",
                "--no-deps",
                "--all-features",
                "--locked",
            ],
            &[("RUSTDOCFLAGS", "-D warnings")],
        ),
        (
            "test",
            &["test", "--workspace", "--all-features", "--locked"],
            &[],
        ),
    ];
    for (name, args, env) in steps {
        say(&format!("==> cargo {}", args.join(" ")));
        let started = now();
        let mut command = cargo();
        command.args(args).envs(env.iter().copied());
        let status = command
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        timings.push((name.to_owned(), elapsed(started)));
        if !status.success() {
            return Err(format!("step `{name}` failed ({status})"));
        }
    }
    say("==> all checks passed");
    for (name, time) in timings {
        say(&format!("    {name:<14} {:>6.1} s", time.as_secs_f64()));
    }
    Ok(())
}

/// The tests start their own PostgreSQL and Redis from the system's
/// programs. When those are missing: as root, install them with apt; as
/// another user, say what to install.
fn install_servers_if_missing() -> Result<(), String> {
    // The runtime's tests also run the Python worker example.
    let python = python_present();
    let missing = match botfleet_testkit::preflight() {
        Ok(()) if python => return Ok(()),
        Ok(()) => Vec::new(),
        Err(missing) => missing.into_iter().map(|e| e.to_string()).collect(),
    };
    let mut missing = missing;
    if !python {
        missing.push("python3 (the runtime's tests run examples/python-worker)".to_owned());
    }
    let list = missing
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n");
    if !is_root() {
        return Err(format!(
            "the tests need PostgreSQL, Redis, Prometheus (with promtool), Alertmanager, Chromium (with its driver) and Python 3 installed:\n{list}\nrun as root to install them automatically, or: sudo apt-get install -y postgresql redis-server prometheus prometheus-alertmanager chromium chromium-driver python3"
        ));
    }
    say(&format!(
        "==> installing the test servers with apt-get:\n{list}"
    ));
    for args in [
        &["update"][..],
        &[
            "install",
            "-y",
            "--no-install-recommends",
            "postgresql",
            "redis-server",
            "prometheus",
            "prometheus-alertmanager",
            "chromium",
            "chromium-driver",
            "python3",
        ][..],
    ] {
        #[expect(
            clippy::disallowed_methods,
            reason = "xtask drives system tools; it is not part of the product"
        )]
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run apt-get (is this Debian or Ubuntu?): {e}"))?;
        if !status.success() {
            return Err(format!("apt-get {} failed ({status})", args.join(" ")));
        }
    }
    botfleet_testkit::preflight().map_err(|still| {
        let list = still.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>();
        format!("still missing after apt-get install:\n{}", list.join("\n"))
    })
}

/// Reads the workspace's metadata and checks ARCHITECTURE.md against it.
fn structure_check() -> Result<(), String> {
    let output = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata = String::from_utf8(output.stdout)
        .map_err(|_| "cargo metadata printed something that is not UTF-8".to_owned())?;
    let root: serde_json::Value =
        serde_json::from_str(&metadata).map_err(|e| format!("cargo metadata: {e}"))?;
    let root = root["workspace_root"]
        .as_str()
        .map(PathBuf::from)
        .ok_or("cargo metadata: no workspace_root")?;
    structure::check(&root, &metadata)
}

fn python_present() -> bool {
    #[expect(
        clippy::disallowed_methods,
        reason = "xtask drives system tools; it is not part of the product"
    )]
    let status = Command::new("python3")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    status.is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    #[expect(
        clippy::disallowed_methods,
        reason = "xtask drives cargo; it is not part of the product"
    )]
    Command::new(cargo)
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[expect(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "xtask measures wall time of its steps; there is no async runtime here"
)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

#[expect(clippy::disallowed_types, reason = "see `now`")]
fn elapsed(since: std::time::Instant) -> Duration {
    since.elapsed()
}
