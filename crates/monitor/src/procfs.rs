//! Host and process figures from /proc, sampled into the registry: the
//! host's CPU time by mode, memory and load; the supervisor's own CPU
//! time, memory (RSS and PSS), threads and open descriptors (under the
//! names Prometheus's client libraries use, `process_...`); the same for
//! every worker process, labelled by `bot` and `worker` (its slot).

use std::path::Path;

use crate::Registry;

/// A worker process to sample: its bot, its slot's index, its pid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerProcess {
    /// The bot's name.
    pub bot: String,
    /// The slot's index (the `worker` label).
    pub slot: u32,
    /// The process id.
    pub pid: u32,
}

/// What `/proc/<pid>` says of one process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessFigures {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Proportional set size, bytes (`None` when smaps_rollup is not
    /// readable).
    pub pss_bytes: Option<u64>,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors (`None` when `/proc/<pid>/fd` is not readable).
    pub open_fds: Option<u64>,
    /// When it started, seconds after boot.
    pub start_seconds: f64,
}

/// Reads /proc/`pid`; `None` when the process is gone.
pub fn process(proc_root: &Path, pid: u32) -> Option<ProcessFigures> {
    let dir = proc_root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let mut figures = parse_stat(&stat, ticks_per_second(), page_size())?;
    figures.pss_bytes = std::fs::read_to_string(dir.join("smaps_rollup"))
        .ok()
        .and_then(|t| kib_field(&t, "Pss:"));
    figures.open_fds = std::fs::read_dir(dir.join("fd"))
        .ok()
        .map(|d| d.count() as u64);
    Some(figures)
}

/// `/proc/<pid>/stat`: the fields after the command (which may hold
/// spaces and parentheses), counted from `state` as field 3.
fn parse_stat(stat: &str, ticks: f64, page: u64) -> Option<ProcessFigures> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): field n is fields[n - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcessFigures {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        threads: field(20)?,
        start_seconds: field(22)? as f64 / ticks,
        rss_bytes: field(24)? * page,
        pss_bytes: None,
        open_fds: None,
    })
}

/// A `Name:   123 kB` line's value in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// The kernel's clock ticks per second (USER_HZ).
fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// The host's CPU time by mode, seconds: the `cpu` line of /proc/stat.
fn host_cpu(stat: &str, ticks: f64) -> Vec<(&'static str, f64)> {
    const MODES: [&str; 8] = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return Vec::new();
    };
    line.split_whitespace()
        .skip(1)
        .zip(MODES)
        .filter_map(|(v, mode)| v.parse::<u64>().ok().map(|t| (mode, t as f64 / ticks)))
        .collect()
}

/// Samples the host, this process and `workers` into `registry`.
pub fn sample(registry: &Registry, proc_root: &Path, workers: &[WorkerProcess]) {
    let ticks = ticks_per_second();
    if let Ok(stat) = std::fs::read_to_string(proc_root.join("stat")) {
        for (mode, seconds) in host_cpu(&stat, ticks) {
            registry.set_float_counter(
                "botfleet_host_cpu_seconds_total",
                &[("mode".to_owned(), mode.to_owned())],
                seconds,
            );
        }
        let cpus = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count();
        registry.set_gauge("botfleet_host_cpus", &[], cpus as f64);
    }
    if let Ok(meminfo) = std::fs::read_to_string(proc_root.join("meminfo")) {
        if let Some(total) = kib_field(&meminfo, "MemTotal:") {
            registry.set_gauge("botfleet_host_memory_total_bytes", &[], total as f64);
        }
        if let Some(available) = kib_field(&meminfo, "MemAvailable:") {
            registry.set_gauge(
                "botfleet_host_memory_available_bytes",
                &[],
                available as f64,
            );
        }
    }
    if let Some(load1) = std::fs::read_to_string(proc_root.join("loadavg"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
    {
        registry.set_gauge("botfleet_host_load1", &[], load1);
    }
    if let Some(me) = process(proc_root, std::process::id()) {
        registry.set_float_counter("process_cpu_seconds_total", &[], me.cpu_seconds);
        registry.set_gauge("process_resident_memory_bytes", &[], me.rss_bytes as f64);
        registry.set_gauge("process_threads", &[], me.threads as f64);
        if let Some(fds) = me.open_fds {
            registry.set_gauge("process_open_fds", &[], fds as f64);
        }
        if let Some(pss) = me.pss_bytes {
            registry.set_gauge("botfleet_supervisor_pss_bytes", &[], pss as f64);
        }
        if let Some(boot) = boot_time(proc_root) {
            registry.set_gauge("process_start_time_seconds", &[], boot + me.start_seconds);
        }
    }
    for w in workers {
        let Some(p) = process(proc_root, w.pid) else {
            continue;
        };
        let labels = [
            ("bot".to_owned(), w.bot.clone()),
            ("worker".to_owned(), w.slot.to_string()),
        ];
        registry.set_float_counter("botfleet_worker_cpu_seconds_total", &labels, p.cpu_seconds);
        registry.set_gauge(
            "botfleet_worker_resident_memory_bytes",
            &labels,
            p.rss_bytes as f64,
        );
        registry.set_gauge("botfleet_worker_threads", &labels, p.threads as f64);
        if let Some(pss) = p.pss_bytes {
            registry.set_gauge("botfleet_worker_pss_bytes", &labels, pss as f64);
        }
        if let Some(fds) = p.open_fds {
            registry.set_gauge("botfleet_worker_open_fds", &labels, fds as f64);
        }
    }
}

/// When the host booted, seconds since the Unix epoch (`btime`).
fn boot_time(proc_root: &Path) -> Option<f64> {
    std::fs::read_to_string(proc_root.join("stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_a_strange_command_is_read_from_its_end() {
        let stat = "4242 (my (odd) worker) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 12345 100000000 2560 18446744073709551615";
        let p = parse_stat(stat, 100.0, 4096).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.threads, 7);
        assert_eq!(p.start_seconds, 123.45);
        assert_eq!(p.rss_bytes, 2560 * 4096);
        assert!(parse_stat("garbage", 100.0, 4096).is_none());
    }

    #[test]
    fn host_figures_and_this_process_are_sampled() {
        let r = Registry::new(1000);
        let me = WorkerProcess {
            bot: "echo".into(),
            slot: 0,
            pid: std::process::id(),
        };
        let gone = WorkerProcess {
            bot: "echo".into(),
            slot: 1,
            pid: u32::MAX,
        };
        sample(&r, Path::new("/proc"), &[me, gone]);
        let s = r.snapshot();
        let has = |name: &str, slot: Option<&str>| {
            s.series.iter().any(|x| {
                x.name == name
                    && slot.is_none_or(|w| x.labels.contains(&("worker".to_owned(), w.to_owned())))
            })
        };
        for name in [
            "botfleet_host_cpu_seconds_total",
            "botfleet_host_cpus",
            "botfleet_host_memory_total_bytes",
            "botfleet_host_memory_available_bytes",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_threads",
            "process_start_time_seconds",
        ] {
            assert!(has(name, None), "{name}");
        }
        assert!(has("botfleet_worker_resident_memory_bytes", Some("0")));
        assert!(
            !has("botfleet_worker_resident_memory_bytes", Some("1")),
            "a gone pid"
        );
    }
}
