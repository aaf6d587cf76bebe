//! `botfleet bench supervisor`: botfleet's supervisor side by side with
//! supervisord, s6, runit, daemontools and PM2 on the same protocol (the
//! team's supervisor reference, section 2.2): start N workers, kill -9 one
//! at a time and wait for its replacement, the supervisor's memory, and a
//! graceful stop. Peers are measured when installed
//! (`bench/supervisors/install.sh`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use super::Machine;
use super::harness::{self, TOKEN};
use super::stats::quantile;

const TOOLS: [&str; 6] = [
    "botfleet",
    "supervisord",
    "s6",
    "runit",
    "daemontools",
    "pm2",
];

#[derive(Debug, Args)]
pub(crate) struct SupervisorBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Workers each supervisor runs.
    #[arg(long, default_value_t = 50)]
    workers: usize,
    /// Workers killed with SIGKILL, one at a time, 1.5 to 2.5 s apart.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// The tools to measure, comma separated (those not installed are
    /// reported as such).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "botfleet,supervisord,s6,runit,daemontools,pm2"
    )]
    tools: Vec<String>,
    /// Be the benchmark's worker: write MARKER/NAME with the pid, then
    /// block (and speak to the supervisor when started by botfleet).
    #[arg(long, hide = true, num_args = 2, value_names = ["MARKER", "NAME"])]
    worker: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Run {
    tool: String,
    version: String,
    start_n: usize,
    start_ms: f64,
    crash_to_ready_ms_p50: f64,
    crash_to_ready_ms_p90: f64,
    kills: usize,
    pss_mib: f64,
    supervisor_processes: usize,
    stop_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    runs: Vec<Run>,
    /// Tools asked for and not installed.
    skipped: Vec<String>,
}

pub(crate) fn run(args: &SupervisorBench) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let [marker, name] = args.worker.as_slice() {
        return runtime.block_on(worker(Path::new(marker), name));
    }
    for t in &args.tools {
        if !TOOLS.contains(&t.as_str()) {
            bail!("unknown tool `{t}`: expected some of {}", TOOLS.join(", "));
        }
    }
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let report = runtime.block_on(measure(args))?;
    super::output(args.json, &report, print)
}

/// The worker every tool runs: the marker first, then block. Under
/// botfleet (`BOTFLEET_WORKER_ID` is set) the worker id completes the name,
/// and the worker speaks the protocol.
async fn worker(marker: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let name = match std::env::var("BOTFLEET_WORKER_ID") {
        Ok(id) => format!("{name}{id}"),
        Err(_) => name.to_owned(),
    };
    let tmp = marker.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, std::process::id().to_string())?;
    std::fs::rename(&tmp, marker.join(name))?;
    if std::env::var_os("BOTFLEET_SOCKET").is_some() {
        botfleet_worker::run(|_update, _cx| async { Ok(()) })
            .await
            .context("the benchmark worker")?;
    } else {
        std::future::pending::<()>().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// How one tool is started and stopped.
struct Tool {
    version: String,
    start: tokio::process::Command,
    /// A command that stops it, or `None` for SIGTERM to the started
    /// process.
    stop: Option<tokio::process::Command>,
    /// Where its supervisor's pid appears, when it detaches (PM2).
    pid_file: Option<PathBuf>,
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

fn version(program: &Path, arg: &str) -> String {
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark asks a peer supervisor for its version"
    )]
    let out = std::process::Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .output();
    out.ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_default()
}

/// Debian's package version of `package`, from dpkg's status file.
fn package_version(package: &str) -> String {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").unwrap_or_default();
    status
        .split("\n\n")
        .find(|p| p.lines().next() == Some(&format!("Package: {package}")))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("Version: ")))
        .map_or_else(String::new, |v| format!("{package} {v}"))
}

/// The command line of the worker `name`.
fn worker_line(exe: &Path, marker: &Path, name: &str) -> String {
    format!(
        "{} bench supervisor --worker {} {name}",
        exe.display(),
        marker.display()
    )
}

/// Prepares `tool` in `dir` for `n` workers; `None` when not installed.
fn prepare(
    tool: &str,
    dir: &Path,
    n: usize,
    exe: &Path,
    api: &str,
) -> anyhow::Result<Option<Tool>> {
    let marker = dir.join("ready");
    std::fs::create_dir_all(&marker)?;
    let names: Vec<String> = (0..n).map(|i| format!("w{i:03}")).collect();
    let run_script = |service: &Path, name: &str| -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(service)?;
        let run = service.join("run");
        std::fs::write(
            &run,
            format!("#!/bin/sh\nexec {}\n", worker_line(exe, &marker, name)),
        )?;
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    };
    Ok(Some(match tool {
        "botfleet" => {
            // Each worker's marker is `w<worker id>`: the id is stable
            // across restarts.
            let fleet = format!(
                "[telegram]\napi_url = \"{api}\"\n[[bot]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nmin_workers = {n}\nmax_workers = {n}\nshutdown_grace = \"5s\"\n[bot.restart]\nintensity = 1000\n[bot.worker]\ncommand = \"{}\"\nargs = [\"bench\", \"supervisor\", \"--worker\", \"{}\", \"w\"]\n",
                exe.display(),
                marker.display()
            );
            std::fs::write(dir.join("fleet.toml"), fleet)?;
            let mut start = tokio::process::Command::new(exe);
            start
                .args(["run", "fleet.toml", "--data-dir", "data"])
                .current_dir(dir);
            Tool {
                version: format!("botfleet {}", env!("CARGO_PKG_VERSION")),
                start,
                stop: None,
                pid_file: None,
            }
        }
        "supervisord" => {
            let Some(bin) = which("supervisord") else {
                return Ok(None);
            };
            let mut conf = format!(
                "[supervisord]\nnodaemon=true\nlogfile=/dev/null\nlogfile_maxbytes=0\npidfile={}\n",
                dir.join("supervisord.pid").display()
            );
            for name in &names {
                conf.push_str(&format!(
                    "[program:{name}]\ncommand={}\nautorestart=true\nstartsecs=1\nstartretries=1000\nstdout_logfile=NONE\nstderr_logfile=NONE\n",
                    worker_line(exe, &marker, name)
                ));
            }
            std::fs::write(dir.join("supervisord.conf"), conf)?;
            let mut start = tokio::process::Command::new(&bin);
            start.args(["-c", "supervisord.conf"]).current_dir(dir);
            Tool {
                version: format!("supervisord {}", version(&bin, "--version")),
                start,
                stop: None,
                pid_file: None,
            }
        }
        "s6" | "runit" | "daemontools" => {
            let (program, package) = match tool {
                "s6" => ("s6-svscan", "s6"),
                "runit" => ("runsvdir", "runit"),
                _ => ("svscan", "daemontools"),
            };
            let Some(bin) = which(program) else {
                return Ok(None);
            };
            let scan = dir.join("scan");
            for name in &names {
                run_script(&scan.join(name), name)?;
            }
            let mut start = tokio::process::Command::new(&bin);
            start.arg(&scan);
            let stop = match tool {
                "s6" => which("s6-svscanctl").map(|ctl| {
                    let mut c = tokio::process::Command::new(ctl);
                    c.arg("-t").arg(&scan);
                    c
                }),
                // runsv exits only once its service is down: bring them
                // down (TERM, KILL after 7 s) and out.
                "runit" => which("sv").map(|sv| {
                    let mut c = tokio::process::Command::new(sv);
                    c.arg("force-shutdown")
                        .args(names.iter().map(|n| scan.join(n)));
                    c
                }),
                _ => None,
            };
            Tool {
                version: package_version(package),
                start,
                stop,
                pid_file: None,
            }
        }
        "pm2" => {
            let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/supervisors/node");
            let bin = base.join("node_modules/.bin/pm2");
            if !bin.is_file() {
                return Ok(None);
            }
            let apps: Vec<serde_json::Value> = names
                .iter()
                .map(|name| {
                    serde_json::json!({
                        "name": name,
                        "script": exe,
                        "args": ["bench", "supervisor", "--worker", marker, name],
                        "interpreter": "none",
                        "autorestart": true,
                        "out_file": "/dev/null",
                        "error_file": "/dev/null",
                    })
                })
                .collect();
            std::fs::write(
                dir.join("ecosystem.json"),
                serde_json::to_string(&serde_json::json!({ "apps": apps }))?,
            )?;
            let home = dir.join("pm2home");
            let mut start = tokio::process::Command::new(&bin);
            start
                .args(["start", "ecosystem.json"])
                .env("PM2_HOME", &home)
                .current_dir(dir);
            let mut stop = tokio::process::Command::new(&bin);
            stop.arg("kill").env("PM2_HOME", &home).current_dir(dir);
            Tool {
                version: std::fs::read_to_string(base.join("node_modules/pm2/package.json"))
                    .ok()
                    .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
                    .and_then(|p| p["version"].as_str().map(|v| format!("pm2 {v}")))
                    .unwrap_or_else(|| "pm2".to_owned()),
                start,
                stop: Some(stop),
                pid_file: Some(home.join("pm2.pid")),
            }
        }
        other => bail!("unknown tool {other}"),
    }))
}

/// The pids in the marker directory, by worker name.
fn markers(dir: &Path) -> HashMap<String, u32> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            let pid = std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((name, pid))
        })
        .collect()
}

/// Every process below `root` (included), from /proc.
fn tree(root: u32) -> Vec<u32> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) {
            // The ppid follows the command, which is in parentheses.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
                    parent.insert(pid, ppid);
                }
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|&(_, &pp)| pp == p).map(|(&c, _)| c));
        i += 1;
    }
    out
}

/// PSS in KiB of `pid`.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
}

async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    done()
}

async fn measure(args: &SupervisorBench) -> anyhow::Result<Report> {
    let exe = std::env::current_exe().context("cannot find the botfleet executable")?;
    let emulator = harness::emulator("bench_bot", 0).await?;
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for tool in &args.tools {
        let dir = botfleet_testkit::TempDir::new(&format!("bench-sup-{tool}"))
            .context("a work directory")?;
        let Some(mut t) = prepare(tool, dir.path(), args.workers, &exe, &emulator.base_url())?
        else {
            let _ = writeln!(
                std::io::stderr(),
                "[{tool}] not installed; skipped (bench/supervisors/install.sh)"
            );
            skipped.push(tool.clone());
            continue;
        };
        let _ = writeln!(
            std::io::stderr(),
            "[{tool}] starting {} workers ...",
            args.workers
        );
        let marker = dir.path().join("ready");
        t.start
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let began = Instant::now();
        let mut child = t
            .start
            .spawn()
            .with_context(|| format!("cannot start {tool}"))?;
        let n = args.workers;
        if !wait_for(Duration::from_secs(60), || markers(&marker).len() >= n).await {
            bail!(
                "{tool}: only {} of {n} workers started within 60 s",
                markers(&marker).len()
            );
        }
        let start_ms = began.elapsed().as_secs_f64() * 1e3;
        // The supervisor's own processes: everything below its root but
        // the workers.
        let root = match &t.pid_file {
            Some(f) => {
                wait_for(Duration::from_secs(10), || f.is_file()).await;
                std::fs::read_to_string(f)?
                    .trim()
                    .parse()
                    .context("pm2.pid")?
            }
            None => child.id().unwrap_or(0),
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let workers: std::collections::HashSet<u32> = markers(&marker).values().copied().collect();
        let mut procs: Vec<u32> = tree(root)
            .into_iter()
            .filter(|p| !workers.contains(p))
            .collect();
        // A wrapping shell of the worker (none here: every tool execs it).
        procs.retain(|&p| alive(p));
        let pss_mib = procs.iter().map(|&p| pss_kib(p)).sum::<u64>() as f64 / 1024.0;
        // Crash to ready.
        let _ = writeln!(
            std::io::stderr(),
            "[{tool}] {} kills, 1.5-2.5 s apart ...",
            args.kills
        );
        let mut times = Vec::new();
        for k in 0..args.kills {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let gap = 1500 + seed % 1000;
            tokio::time::sleep(Duration::from_millis(gap)).await;
            let current = markers(&marker);
            let mut names: Vec<&String> = current.keys().collect();
            names.sort();
            let name = names[k % names.len()].clone();
            let pid = current[&name];
            std::fs::remove_file(marker.join(&name))?;
            let t0 = Instant::now();
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
            if !wait_for(Duration::from_secs(30), || marker.join(&name).is_file()).await {
                bail!("{tool}: worker {name} was not back within 30 s of its kill");
            }
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        // Graceful stop.
        let pids: Vec<u32> = markers(&marker).values().copied().collect();
        let t0 = Instant::now();
        match t.stop.as_mut() {
            Some(stop) => {
                let _ = stop
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await;
            }
            None => {
                if let Some(p) = child
                    .id()
                    .and_then(|p| rustix::process::Pid::from_raw(p as i32))
                {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
                }
            }
        }
        if tool == "daemontools" {
            // svscan has no stop of its own: take the services down.
            if let Some(svc) = which("svc") {
                let _ = tokio::process::Command::new(svc)
                    .arg("-dx")
                    .args(
                        std::fs::read_dir(dir.path().join("scan"))?
                            .flatten()
                            .map(|e| e.path()),
                    )
                    .status()
                    .await;
            }
        }
        let stopped = wait_for(Duration::from_secs(30), || pids.iter().all(|&p| !alive(p))).await;
        let stop_ms = t0.elapsed().as_secs_f64() * 1e3;
        // Whatever is left of this tool goes.
        if let Some(p) = rustix::process::Pid::from_raw(child.id().unwrap_or(0) as i32) {
            let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
        }
        for &p in tree(root).iter().chain(&pids) {
            if let Some(p) = rustix::process::Pid::from_raw(p as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        let _ = child.wait().await;
        if !stopped {
            bail!("{tool}: workers still running 30 s after the stop");
        }
        runs.push(Run {
            tool: tool.clone(),
            version: t.version,
            start_n: n,
            start_ms: (start_ms * 10.0).round() / 10.0,
            crash_to_ready_ms_p50: (quantile(&mut times.clone(), 0.5) * 100.0).round() / 100.0,
            crash_to_ready_ms_p90: (quantile(&mut times, 0.9) * 100.0).round() / 100.0,
            kills: args.kills,
            pss_mib: (pss_mib * 10.0).round() / 10.0,
            supervisor_processes: procs.len(),
            stop_ms: (stop_ms * 10.0).round() / 10.0,
        });
    }
    Ok(Report {
        machine: Machine::current(),
        runs,
        skipped,
    })
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB",
        r.machine.cores, r.machine.memory_mib
    )?;
    writeln!(
        out,
        "\n{:<12} {:>8} {:>10} {:>12} {:>12} {:>9} {:>6} {:>9}  version",
        "tool", "workers", "start ms", "crash p50", "crash p90", "PSS MiB", "procs", "stop ms"
    )?;
    for run in &r.runs {
        writeln!(
            out,
            "{:<12} {:>8} {:>10.1} {:>12.2} {:>12.2} {:>9.1} {:>6} {:>9.1}  {}",
            run.tool,
            run.start_n,
            run.start_ms,
            run.crash_to_ready_ms_p50,
            run.crash_to_ready_ms_p90,
            run.pss_mib,
            run.supervisor_processes,
            run.stop_ms,
            run.version
        )?;
    }
    if !r.skipped.is_empty() {
        writeln!(out, "\nnot installed: {}", r.skipped.join(", "))?;
    }
    Ok(())
}
