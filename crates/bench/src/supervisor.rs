//! `botfleet bench supervisor`: botfleet's supervisor side by side with
//! supervisord, s6, runit, daemontools and PM2 on the same protocol (the
//! team's supervisor reference, section 2.2): start N workers, the
//! supervisor's memory and idle CPU, kill -9 one worker at a time and wait
//! for its replacement, a graceful stop; then, once per tool, a stop whose
//! workers ignore SIGTERM and a crash loop. Rounds run the tools in a
//! shuffled order and the first round is discarded. Readiness is seen with
//! inotify on the marker directory. Peers are measured when installed
//! (`bench/supervisors/install.sh`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use botfleet_config::{BotFile, FleetFile};
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use super::Machine;
use super::harness::{self, TOKEN};
use super::stats::quantile;

const TOOLS: [&str; 7] = [
    "botfleet",
    "supervisord",
    "s6",
    "s6-ready",
    "runit",
    "daemontools",
    "pm2",
];

/// The flags of `botfleet bench supervisor`.
#[derive(Debug, Args)]
pub struct SupervisorBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Workers each supervisor runs.
    #[arg(long, default_value_t = 50)]
    workers: usize,
    /// Rounds; each runs the tools in a new shuffled order, and the first
    /// is discarded (it warms the page cache).
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Workers killed with SIGKILL per tool and round, one at a time, 1.5
    /// to 2.5 s apart.
    #[arg(long, default_value_t = 4)]
    kills: usize,
    /// How long each round measures the supervisor's CPU while nothing
    /// happens.
    #[arg(long, default_value = "2s", value_parser = botfleet_config::duration::arg)]
    idle: Duration,
    /// How long the crash loop kills one worker again as soon as it is
    /// back (once per tool, after the rounds; 0s skips it).
    #[arg(long, default_value = "10s", value_parser = botfleet_config::duration::arg)]
    crash_loop: Duration,
    /// Skip the stop whose workers ignore SIGTERM (up to 30 s per tool:
    /// some tools never send SIGKILL).
    #[arg(long)]
    no_term_series: bool,
    /// The tools to measure, comma separated (those not installed are
    /// reported as such). `s6-ready` is s6 with readiness notification.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "botfleet,supervisord,s6,s6-ready,runit,daemontools,pm2"
    )]
    tools: Vec<String>,
    /// Be the benchmark's worker: write MARKER/NAME with the pid, then
    /// block (and speak to the supervisor when started by botfleet).
    #[arg(long, hide = true, num_args = 2, value_names = ["MARKER", "NAME"])]
    worker: Vec<String>,
    /// As the worker, write a newline to this descriptor once ready (s6's
    /// notification-fd).
    #[arg(long, hide = true)]
    notify_fd: Option<u32>,
    /// As the worker, ignore SIGTERM.
    #[arg(long, hide = true)]
    ignore_term: bool,
}

#[derive(Debug, Serialize)]
struct Run {
    tool: String,
    version: String,
    start_n: usize,
    /// Medians over the counted rounds; `_p90` over them too.
    start_ms: f64,
    start_ms_p90: f64,
    /// Over every kill of the counted rounds.
    crash_to_ready_ms_p50: f64,
    crash_to_ready_ms_p90: f64,
    kills: usize,
    pss_mib: f64,
    rss_mib: f64,
    supervisor_processes: usize,
    /// The supervisor's CPU time while idle, scaled to 10 s.
    idle_cpu_ms_per_10s: f64,
    /// The median over the rounds whose stop ended; `None` when none did.
    stop_ms: Option<f64>,
    /// Rounds whose graceful stop left workers running 30 s later (a
    /// peer's failure, reported, not fatal to the benchmark).
    stops_failed: usize,
    /// Stop of workers that ignore SIGTERM; `None` when they were still
    /// running 30 s after the stop (the tool never sends SIGKILL).
    stop_ms_ignoring_term: Option<f64>,
    /// Replacements seen while each was killed as soon as it was back.
    crash_loop_restarts: Option<usize>,
    rounds_counted: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    /// The floor every tool pays: the worker program alone, from the
    /// harness's spawn to its marker (20 starts).
    worker_start_ms_p50: f64,
    worker_start_ms_p90: f64,
    rounds: usize,
    crash_loop_s: f64,
    /// Whether the stop of workers that ignore SIGTERM was measured.
    term_series: bool,
    runs: Vec<Run>,
    /// Tools asked for and not installed.
    skipped: Vec<String>,
}

/// Runs `botfleet bench supervisor` (or its hidden worker role) and prints its report.
pub fn run(args: &SupervisorBench) -> anyhow::Result<ExitCode> {
    if let [marker, name] = args.worker.as_slice() {
        return worker(args, Path::new(marker), name);
    }
    for t in &args.tools {
        if !TOOLS.contains(&t.as_str()) {
            bail!("unknown tool `{t}`: expected some of {}", TOOLS.join(", "));
        }
    }
    if args.workers == 0 || args.rounds < 2 || args.kills == 0 {
        bail!(
            "--workers and --kills must be at least 1, --rounds at least 2 (the first is discarded)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(measure(args))?;
    super::output(args.json, &report, print)
}

/// The worker every tool runs: the marker first, then block. Under
/// botfleet (`BOTFLEET_WORKER_ID` is set) the worker id completes the name,
/// and the worker speaks the protocol. The marker is written before the
/// async runtime starts, so readiness is the program's start alone.
fn worker(args: &SupervisorBench, marker: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let build = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    };
    // Ignoring SIGTERM: a handler of our own that does nothing, in place
    // before the worker says it is ready (so the runtime comes first).
    let (early, term) = if args.ignore_term {
        let runtime = build()?;
        let term = {
            let _guard = runtime.enter();
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
        };
        (Some(runtime), Some(term))
    } else {
        (None, None)
    };
    let name = match std::env::var(botfleet_protocol::env::WORKER_ID) {
        Ok(id) => format!("{name}{id}"),
        Err(_) => name.to_owned(),
    };
    let tmp = marker.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, std::process::id().to_string())?;
    std::fs::rename(&tmp, marker.join(name))?;
    if let Some(fd) = args.notify_fd {
        // s6's notification-fd is a pipe: reopening it through /proc gives
        // its write end without touching raw descriptors.
        let mut notify = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{fd}"))
            .with_context(|| format!("cannot open the notification descriptor {fd}"))?;
        notify.write_all(b"\n")?;
    }
    let runtime = match early {
        Some(runtime) => runtime,
        None => build()?,
    };
    runtime.block_on(async move {
        let _term = term;
        if std::env::var_os(botfleet_protocol::env::SOCKET).is_some() {
            botfleet_worker::run(|_update, _cx| async { Ok(()) })
                .await
                .context("the benchmark worker")?;
        } else {
            std::future::pending::<()>().await;
        }
        Ok(ExitCode::SUCCESS)
    })
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

/// The command line of the worker `name`, with `extra` arguments.
fn worker_line(exe: &Path, marker: &Path, name: &str, extra: &[&str]) -> String {
    format!(
        "{} {}",
        exe.display(),
        worker_args(marker, name, extra).join(" ")
    )
}

/// The worker's arguments after the program.
fn worker_args(marker: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    ["bench", "supervisor", "--worker"]
        .into_iter()
        .map(str::to_owned)
        .chain([marker.display().to_string(), name.to_owned()])
        .chain(extra.iter().map(|a| (*a).to_owned()))
        .collect()
}

/// Prepares `tool` in `dir` for `n` workers started with the worker's
/// `extra` arguments; `None` when not installed.
fn prepare(
    tool: &str,
    dir: &Path,
    n: usize,
    exe: &Path,
    api: &str,
    extra: &[&str],
) -> anyhow::Result<Option<Tool>> {
    let marker = dir.join("ready");
    std::fs::create_dir_all(&marker)?;
    let names: Vec<String> = (0..n).map(|i| format!("w{i:03}")).collect();
    let ready = tool == "s6-ready";
    let run_script = |service: &Path, name: &str| -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(service)?;
        let run = service.join("run");
        let mut line = worker_line(exe, &marker, name, extra);
        if ready {
            line.push_str(" --notify-fd 3");
            std::fs::write(service.join("notification-fd"), "3\n")?;
        }
        std::fs::write(&run, format!("#!/bin/sh\nexec {line}\n"))?;
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    };
    Ok(Some(match tool {
        "botfleet" => {
            // Each worker's marker is `w<worker id>`: the id is stable
            // across restarts.
            let args = ["bench", "supervisor", "--worker"]
                .map(String::from)
                .into_iter()
                .chain([marker.display().to_string(), "w".to_owned()])
                .chain(extra.iter().map(|a| (*a).to_owned()));
            let fleet = FleetFile::new().telegram_api(api).bot(
                BotFile::new("bench", TOKEN)
                    .workers(
                        u32::try_from(n).unwrap_or(u32::MAX),
                        u32::try_from(n).unwrap_or(u32::MAX),
                    )
                    .set("restart.intensity", 10_000)
                    .command(exe.display().to_string(), args),
            );
            std::fs::write(dir.join("fleet.toml"), fleet.to_toml())?;
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
                    worker_line(exe, &marker, name, extra)
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
        "s6" | "s6-ready" | "runit" | "daemontools" => {
            let (program, package) = match tool {
                "s6" | "s6-ready" => ("s6-svscan", "s6"),
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
                "s6" | "s6-ready" => which("s6-svscanctl").map(|ctl| {
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
                        "args": worker_args(&marker, name, extra),
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

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
}

/// The marker directory's new files, as inotify reports them: a worker
/// is seen the moment its marker is renamed into place.
struct Markers {
    dir: PathBuf,
    fd: rustix::fd::OwnedFd,
    buf: Vec<std::mem::MaybeUninit<u8>>,
}

impl Markers {
    fn new(dir: &Path) -> anyhow::Result<Markers> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .context("inotify_init")?;
        inotify::add_watch(
            &fd,
            dir,
            inotify::WatchFlags::MOVED_TO | inotify::WatchFlags::CREATE,
        )
        .with_context(|| format!("inotify on {}", dir.display()))?;
        Ok(Markers {
            dir: dir.to_owned(),
            fd,
            buf: vec![std::mem::MaybeUninit::uninit(); 64 * 1024],
        })
    }

    /// Blocks until `done` holds, checking it after every batch of events;
    /// false after `limit`.
    fn wait(&mut self, limit: Duration, mut done: impl FnMut(&Path) -> bool) -> bool {
        let end = Instant::now() + limit;
        tokio::task::block_in_place(|| {
            loop {
                if done(&self.dir) {
                    return true;
                }
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                let timeout = rustix::event::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                let mut fds = [rustix::event::PollFd::new(
                    &self.fd,
                    rustix::event::PollFlags::IN,
                )];
                let _ = rustix::event::poll(&mut fds, Some(&timeout));
                // Drain what is there; the events only say "look again".
                let mut reader = rustix::fs::inotify::Reader::new(&self.fd, &mut self.buf);
                while reader.next().is_ok() {}
            }
        })
    }

    fn wait_for(&mut self, name: &str, limit: Duration) -> bool {
        self.wait(limit, |dir| dir.join(name).is_file())
    }
}

/// CPU time (ns) of `pids` and all their threads, from schedstat.
fn cpu_ns(pids: &[u32]) -> u64 {
    pids.iter()
        .flat_map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A field of /proc/PID/smaps_rollup in KiB.
fn rollup_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What one session of a tool measured.
#[derive(Default)]
struct Session {
    version: String,
    start_ms: f64,
    pss_kib: u64,
    rss_kib: u64,
    processes: usize,
    idle_cpu_ns: u64,
    crash_ms: Vec<f64>,
    stop_ms: Option<f64>,
    crash_loop: Option<usize>,
}

/// What a session does besides start and stop.
struct Plan {
    extra: &'static [&'static str],
    idle: Duration,
    kills: usize,
    crash_loop: Duration,
}

/// Starts `tool` with `n` workers, measures what `plan` asks, stops it;
/// `None` when the tool is not installed.
async fn session(
    tool: &str,
    n: usize,
    exe: &Path,
    api: &str,
    plan: &Plan,
    rng: &mut fastrand::Rng,
) -> anyhow::Result<Option<Session>> {
    let dir =
        botfleet_testkit::TempDir::new(&format!("bench-sup-{tool}")).context("a work directory")?;
    let Some(mut t) = prepare(tool, dir.path(), n, exe, api, plan.extra)? else {
        return Ok(None);
    };
    let marker = dir.path().join("ready");
    let mut seen = Markers::new(&marker)?;
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
    let mut out = Session {
        version: t.version.clone(),
        ..Session::default()
    };
    if !seen.wait(Duration::from_secs(60), |d| markers(d).len() >= n) {
        bail!(
            "{tool}: only {} of {n} workers started within 60 s",
            markers(&marker).len()
        );
    }
    out.start_ms = began.elapsed().as_secs_f64() * 1e3;
    // The supervisor's own processes: everything below its root but the
    // workers.
    let root = match &t.pid_file {
        Some(f) => {
            let mut found = false;
            for _ in 0..1000 {
                if f.is_file() {
                    found = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if !found {
                bail!("{tool}: no pid file at {} within 10 s", f.display());
            }
            std::fs::read_to_string(f)?
                .trim()
                .parse()
                .with_context(|| format!("{}", f.display()))?
        }
        None => child.id().unwrap_or(0),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let workers: std::collections::HashSet<u32> = markers(&marker).values().copied().collect();
    let procs: Vec<u32> = tree(root)
        .into_iter()
        .filter(|p| !workers.contains(p) && alive(*p))
        .collect();
    out.pss_kib = procs.iter().map(|&p| rollup_kib(p, "Pss:")).sum();
    out.rss_kib = procs.iter().map(|&p| rollup_kib(p, "Rss:")).sum();
    out.processes = procs.len();
    if !plan.idle.is_zero() {
        let before = cpu_ns(&procs);
        tokio::time::sleep(plan.idle).await;
        out.idle_cpu_ns = cpu_ns(&procs).saturating_sub(before);
    }
    for k in 0..plan.kills {
        let gap = 1500 + rng.u64(..1000);
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
        if !seen.wait_for(&name, Duration::from_secs(30)) {
            bail!("{tool}: worker {name} was not back within 30 s of its kill");
        }
        out.crash_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    if !plan.crash_loop.is_zero() {
        // One worker, killed again the moment it is back.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let end = Instant::now() + plan.crash_loop;
        let name = markers(&marker)
            .keys()
            .min()
            .cloned()
            .context("no worker to crash")?;
        let mut restarts = 0;
        while let Some(pid) = markers(&marker).get(&name).copied() {
            std::fs::remove_file(marker.join(&name))?;
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || !seen.wait_for(&name, left) {
                break;
            }
            restarts += 1;
        }
        out.crash_loop = Some(restarts);
        // Let the worker come back before the stop.
        seen.wait_for(&name, Duration::from_secs(30));
    }
    // The stop.
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
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
    }
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end && pids.iter().any(|&p| alive(p)) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    if left.is_empty() {
        out.stop_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
    } else if plan.extra.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "[{tool}] {} workers still running 30 s after the stop: {left:?}",
            left.len()
        );
    }
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
    Ok(Some(out))
}

/// The worker program started 20 times by the harness itself: spawn to
/// marker, p50 and p90.
async fn worker_alone(exe: &Path) -> anyhow::Result<(f64, f64)> {
    let dir = botfleet_testkit::TempDir::new("bench-sup-alone").context("a work directory")?;
    let marker = dir.path().join("ready");
    std::fs::create_dir_all(&marker)?;
    let mut seen = Markers::new(&marker)?;
    let mut times = Vec::new();
    for i in 0..21 {
        let name = format!("a{i}");
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new(exe)
            .args(worker_args(&marker, &name, &[]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the benchmark worker")?;
        if !seen.wait_for(&name, Duration::from_secs(10)) {
            bail!("the worker alone wrote no marker within 10 s");
        }
        // The first start warms the page cache.
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let _ = child.kill().await;
    }
    Ok((round2(quantile(&times, 0.5)), round2(quantile(&times, 0.9))))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

async fn measure(args: &SupervisorBench) -> anyhow::Result<Report> {
    let exe = std::env::current_exe().context("cannot find the botfleet executable")?;
    let emulator = harness::emulator("bench_bot", 0).await?;
    let api = emulator.base_url();
    // Seeded: the kills' spacing and the rounds' order repeat from run to run.
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let mut skipped = Vec::new();
    let mut tools: Vec<String> = args.tools.clone();
    tools.dedup();
    let (worker_start_ms_p50, worker_start_ms_p90) = worker_alone(&exe).await?;
    let _ = writeln!(
        std::io::stderr(),
        "[worker alone] spawn to marker p50 {worker_start_ms_p50} ms, p90 {worker_start_ms_p90} ms"
    );
    let mut sessions: HashMap<String, Vec<Session>> = HashMap::new();
    let plan = Plan {
        extra: &[],
        idle: args.idle,
        kills: args.kills,
        crash_loop: Duration::ZERO,
    };
    for round in 1..=args.rounds {
        rng.shuffle(&mut tools);
        let _ = writeln!(
            std::io::stderr(),
            "[round {round}/{}{}] {}",
            args.rounds,
            if round == 1 { ", discarded" } else { "" },
            tools.join(" ")
        );
        for tool in &tools {
            if skipped.contains(tool) {
                continue;
            }
            match session(tool, args.workers, &exe, &api, &plan, &mut rng).await? {
                None => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "[{tool}] not installed; skipped (bench/supervisors/install.sh)"
                    );
                    skipped.push(tool.clone());
                }
                Some(s) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "[{tool}] start {:.1} ms, crash to ready {:?} ms, stop {} ms",
                        s.start_ms,
                        s.crash_ms.iter().map(|v| round2(*v)).collect::<Vec<_>>(),
                        s.stop_ms.map_or("-".to_owned(), |v| format!("{v:.1}"))
                    );
                    if round > 1 {
                        sessions.entry(tool.clone()).or_default().push(s);
                    }
                }
            }
        }
    }
    let mut term = HashMap::new();
    let mut crash_loop = HashMap::new();
    for tool in tools.iter().filter(|t| !skipped.contains(t)) {
        if !args.no_term_series {
            let _ = writeln!(
                std::io::stderr(),
                "[{tool}] stop of workers that ignore SIGTERM ..."
            );
            let plan = Plan {
                extra: &["--ignore-term"],
                idle: Duration::ZERO,
                kills: 0,
                crash_loop: Duration::ZERO,
            };
            if let Some(s) = session(tool, args.workers, &exe, &api, &plan, &mut rng).await? {
                term.insert(tool.clone(), s.stop_ms);
            }
        }
        if !args.crash_loop.is_zero() {
            let _ = writeln!(
                std::io::stderr(),
                "[{tool}] crash loop for {:?} ...",
                args.crash_loop
            );
            let plan = Plan {
                extra: &[],
                idle: Duration::ZERO,
                kills: 0,
                crash_loop: args.crash_loop,
            };
            if let Some(s) = session(tool, args.workers, &exe, &api, &plan, &mut rng).await? {
                crash_loop.insert(tool.clone(), s.crash_loop);
            }
        }
    }
    let mut runs = Vec::new();
    for tool in args.tools.iter().filter(|t| !skipped.contains(t)) {
        let Some(list) = sessions.get(tool) else {
            continue;
        };
        let of = |f: &dyn Fn(&Session) -> f64| list.iter().map(f).collect::<Vec<f64>>();
        let start = of(&|s| s.start_ms);
        let pss = of(&|s| s.pss_kib as f64 / 1024.0);
        let rss = of(&|s| s.rss_kib as f64 / 1024.0);
        let stop: Vec<f64> = list.iter().filter_map(|s| s.stop_ms).collect();
        let stops_failed = list.len() - stop.len();
        let crash: Vec<f64> = list.iter().flat_map(|s| s.crash_ms.clone()).collect();
        let idle_ns: u64 = list.iter().map(|s| s.idle_cpu_ns).sum();
        let idle_s = args.idle.as_secs_f64() * list.len() as f64;
        runs.push(Run {
            tool: tool.clone(),
            version: list[0].version.clone(),
            start_n: args.workers,
            start_ms: round2(quantile(&start, 0.5)),
            start_ms_p90: round2(quantile(&start, 0.9)),
            crash_to_ready_ms_p50: round2(quantile(&crash, 0.5)),
            crash_to_ready_ms_p90: round2(quantile(&crash, 0.9)),
            kills: list.iter().map(|s| s.crash_ms.len()).sum(),
            pss_mib: round2(quantile(&pss, 0.5)),
            rss_mib: round2(quantile(&rss, 0.5)),
            supervisor_processes: list[0].processes,
            idle_cpu_ms_per_10s: if idle_s > 0.0 {
                round2(idle_ns as f64 / 1e6 * 10.0 / idle_s)
            } else {
                0.0
            },
            stop_ms: (!stop.is_empty()).then(|| round2(quantile(&stop, 0.5))),
            stops_failed,
            stop_ms_ignoring_term: term.get(tool).copied().flatten().map(round2),
            crash_loop_restarts: crash_loop.get(tool).copied().flatten(),
            rounds_counted: list.len(),
        });
    }
    Ok(Report {
        machine: Machine::current(),
        worker_start_ms_p50,
        worker_start_ms_p90,
        rounds: args.rounds,
        crash_loop_s: args.crash_loop.as_secs_f64(),
        term_series: !args.no_term_series,
        runs,
        skipped,
    })
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB; {} rounds, the first discarded; medians (start, PSS, stop) over the rest",
        r.machine.cores, r.machine.memory_mib, r.rounds
    )?;
    writeln!(
        out,
        "\n{:<12} {:>7} {:>9} {:>8} {:>10} {:>10} {:>7} {:>7} {:>5} {:>9} {:>8} {:>10} {:>6}",
        "tool",
        "workers",
        "start ms",
        "p90",
        "crash p50",
        "crash p90",
        "PSS MiB",
        "RSS",
        "procs",
        "idle ms/10s",
        "stop ms",
        "stop, TERM ignored",
        "loop"
    )?;
    for run in &r.runs {
        writeln!(
            out,
            "{:<12} {:>7} {:>9.1} {:>8.1} {:>10.2} {:>10.2} {:>7.1} {:>7.1} {:>5} {:>11.1} {:>8} {:>18} {:>6}",
            run.tool,
            run.start_n,
            run.start_ms,
            run.start_ms_p90,
            run.crash_to_ready_ms_p50,
            run.crash_to_ready_ms_p90,
            run.pss_mib,
            run.rss_mib,
            run.supervisor_processes,
            run.idle_cpu_ms_per_10s,
            run.stop_ms
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
            match (r.term_series, run.stop_ms_ignoring_term) {
                (false, _) => "-".to_owned(),
                (true, None) => "never (30 s)".to_owned(),
                (true, Some(v)) => format!("{v:.1}"),
            },
            run.crash_loop_restarts
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
        )?;
    }
    writeln!(out)?;
    for run in &r.runs {
        writeln!(
            out,
            "{:<12} {} ({} kills)",
            run.tool, run.version, run.kills
        )?;
        if run.stops_failed > 0 {
            writeln!(
                out,
                "{:<12} workers still running 30 s after the graceful stop in {} of {} rounds (stop ms is over the others)",
                run.tool, run.stops_failed, run.rounds_counted
            )?;
        }
    }
    writeln!(
        out,
        "loop: replacements while one worker was killed each time it was back, over {:.0} s",
        r.crash_loop_s
    )?;
    writeln!(
        out,
        "the worker program alone, spawn to marker: p50 {:.2} ms, p90 {:.2} ms",
        r.worker_start_ms_p50, r.worker_start_ms_p90
    )?;
    if !r.skipped.is_empty() {
        writeln!(out, "\nnot installed: {}", r.skipped.join(", "))?;
    }
    Ok(())
}
