//! `botfleet analyze`: the running fleet's bottlenecks, from its monitor's
//! `/performance/report` (the analysis `botfleet_runtime::monitor` serves
//! there), printed for people.

use std::io::Write;
use std::time::Duration;

use botfleet_analyze::fleet::human_s;
use serde_json::Value;

/// Prints an analysis (`/performance/report`'s `analysis`) for people.
pub(crate) fn print(out: &mut impl Write, a: &Value, url: &str) -> std::io::Result<()> {
    let window = a["window_s"].as_u64().unwrap_or(0);
    let findings = a["findings"].as_array().cloned().unwrap_or_default();
    if a["healthy"].as_bool() == Some(true) {
        writeln!(
            out,
            "healthy: nothing binds over the last {} at {url}",
            botfleet_config::duration::format(Duration::from_secs(window))
        )?;
    } else {
        writeln!(
            out,
            "{} bottleneck{} over the last {} at {url}, the worst first:",
            findings.len(),
            if findings.len() == 1 { "" } else { "s" },
            botfleet_config::duration::format(Duration::from_secs(window))
        )?;
        for f in &findings {
            writeln!(
                out,
                "\n{}. {}  {}",
                f["rank"],
                f["kind"].as_str().unwrap_or("?"),
                f["summary"].as_str().unwrap_or("")
            )?;
            for e in f["evidence"].as_array().into_iter().flatten() {
                writeln!(out, "   evidence: {}", e["what"].as_str().unwrap_or(""))?;
                writeln!(out, "             {}", e["series"].as_str().unwrap_or(""))?;
            }
            writeln!(out, "   fix: {}", f["fix"].as_str().unwrap_or(""))?;
        }
    }
    let bots = a["bots"].as_array().cloned().unwrap_or_default();
    if !bots.is_empty() {
        writeln!(
            out,
            "\nwhere an update's time goes (means per update):\n{:<12} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "bot",
            "upd/s",
            "queue",
            "ipc",
            "handler",
            "cpu",
            "db wait",
            "db query",
            "cache L2",
            "loads",
            "tg limit",
            "tg api",
            "other"
        )?;
        for b in &bots {
            let s = |k: &str| human_s(b[k].as_f64().unwrap_or(0.0));
            writeln!(
                out,
                "{:<12} {:>7.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                b["bot"].as_str().unwrap_or("?"),
                b["updates_per_s"].as_f64().unwrap_or(0.0),
                s("queue_s"),
                s("ipc_s"),
                s("handler_s"),
                s("cpu_s"),
                s("db_acquire_s"),
                s("db_query_s"),
                s("cache_l2_s"),
                s("cache_load_s"),
                s("telegram_limiter_s"),
                s("telegram_api_s"),
                s("other_s"),
            )?;
        }
        writeln!(
            out,
            "(handler = db wait + db query + cache L2 + tg limit + tg api + other; loads overlap the database's parts)"
        )?;
    }
    let s = &a["saturation"];
    let opt_pct = |v: &Value| {
        v.as_f64()
            .map_or("-".to_owned(), |x| format!("{:.0} %", x * 100.0))
    };
    writeln!(
        out,
        "\nsaturation: host CPU {} busy of {} CPUs, the fleet using {}; memory {} available{}; descriptors: supervisor {}, a worker at most {}",
        opt_pct(&s["host_cpu_busy"]),
        s["cpus"]
            .as_f64()
            .map_or("-".to_owned(), |c| format!("{c:.0}")),
        s["fleet_cpus"]
            .as_f64()
            .map_or("-".to_owned(), |c| format!("{c:.2}")),
        opt_pct(&s["memory_available"]),
        s["worker_memory_growth"]
            .as_f64()
            .filter(|g| g.abs() >= 1024.0 * 1024.0)
            .map(|g| format!(", the workers growing {:.1} MiB/s", g / 1048576.0))
            .unwrap_or_default(),
        s["supervisor_fds"]
            .as_f64()
            .map_or("-".to_owned(), |c| format!("{c:.0}")),
        s["worker_fds_max"]
            .as_f64()
            .map_or("-".to_owned(), |c| format!("{c:.0}")),
    )?;
    let d = &a["dependencies"];
    let up = |v: &Value| match v.as_bool() {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "not polled",
    };
    writeln!(
        out,
        "dependencies: PostgreSQL {}, Redis {}",
        up(&d["postgres_up"]),
        up(&d["redis_up"])
    )?;
    for note in a["notes"].as_array().into_iter().flatten() {
        writeln!(out, "note: {}", note.as_str().unwrap_or(""))?;
    }
    Ok(())
}
