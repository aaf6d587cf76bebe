//! `botfleet bench cache` in single-trace mode (no Redis needed).

use crate::{botfleet, scratch, stderr, stdout};

#[test]
fn one_trace_cell_reports_every_policy_as_json() {
    let dir = scratch("bench-trace");
    // A loop over 3 keys, read 3 times, gzip-compressed like the LIRS traces.
    let text = "1\n2\n3\n1\n2\n3\n1\n2\n3\n";
    std::fs::write(dir.join("loop.txt"), text).unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "compresses a fixture with the system gzip"
    )]
    let status = std::process::Command::new("gzip")
        .arg("-kf")
        .arg(dir.join("loop.txt"))
        .status()
        .unwrap();
    assert!(status.success());
    let output = botfleet(
        &dir,
        &[
            "bench",
            "cache",
            "--trace",
            "loop.txt.gz",
            "--format",
            "lirs",
            "--capacity",
            "2",
            "--json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json = stdout(&output);
    // Exactly one JSON document; LRU never hits a loop bigger than the
    // cache, OPT keeps two keys and hits 4 of 9.
    for (policy, hits) in [("lru", 0), ("opt", 4)] {
        let needle = format!("\"policy\": \"{policy}\",\n      \"hit_ratio\"");
        let at = json
            .find(&needle)
            .unwrap_or_else(|| panic!("{policy} missing:\n{json}"));
        let after = &json[at..];
        let hits_field = format!("\"hits\": {hits}");
        let end = after.find('}').unwrap();
        assert!(
            after[..end].contains(&hits_field),
            "{policy}: {}",
            &after[..end]
        );
    }
    for policy in ["botfleet", "moka", "quick_cache"] {
        assert!(
            json.contains(&format!("\"policy\": \"{policy}\"")),
            "{policy} missing"
        );
    }
    assert!(json.trim_end().ends_with('}'));
}

#[test]
fn missing_traces_are_a_clear_error() {
    let dir = scratch("bench-no-traces");
    let output = botfleet(&dir, &["bench", "cache", "--hit-ratio-only"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("pass --traces DIR or set BOTFLEET_TRACES"),
        "{}",
        stderr(&output)
    );
    let output = botfleet(
        &dir,
        &[
            "bench",
            "cache",
            "--trace",
            "nope.gz",
            "--format",
            "lirs",
            "--capacity",
            "9",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot read the trace nope.gz"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bench_db_reports_every_section_as_json() {
    let dir = scratch("bench-db");
    let output = botfleet(
        &dir,
        &[
            "bench",
            "db",
            "--rows",
            "300",
            "--rounds",
            "2",
            "--queries",
            "20",
            "--json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    for key in [
        "p50_us_raw",
        "p50_us_pool",
        "p99_us_raw",
        "p99_us_pool",
        "p50_us_sqlx_default",
    ] {
        assert!(
            json["acquire"][key].as_f64().unwrap() > 0.0,
            "acquire.{key}"
        );
    }
    assert_eq!(json["batch"]["rows"], 300);
    assert_eq!(json["batch"]["written_batched"], 300);
    assert!(json["batch"]["speedup"].as_f64().unwrap() > 1.0);
    assert!(json["instrumentation_overhead_pct"].is_number());
    let budget = &json["budget"];
    assert_eq!(
        (
            budget["max_connections"].as_u64(),
            budget["processes"].as_u64()
        ),
        (Some(20), Some(6))
    );
    let peak = budget["peak_connections"].as_i64().unwrap();
    assert!(
        peak > 0 && peak <= budget["usable"].as_i64().unwrap(),
        "{budget}"
    );
    assert!(stderr(&output).contains("[budget]"), "progress on stderr");
}

#[test]
fn bench_telegram_runs_a_workload_as_json() {
    let dir = scratch("bench-telegram");
    let output = botfleet(
        &dir,
        &["bench", "telegram", "--workloads", "W7", "--json"],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let run = &json["runs"][0];
    assert_eq!(run["workload"], "W7");
    assert_eq!(
        (run["delivered"].as_u64(), run["expected"].as_u64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(
        (run["pacing_429"].as_u64(), run["duplicates"].as_u64()),
        (Some(0), Some(0))
    );
    for key in ["time_s", "t_min_s", "efficiency", "p50_ms", "p99_ms"] {
        assert!(run[key].is_number(), "{key}");
    }
    let output = botfleet(&dir, &["bench", "telegram", "--workloads", "W9"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("unknown workload `W9`"),
        "{}",
        stderr(&output)
    );
}

/// `bench ipc` with a real worker process, small: the contract's keys, and
/// batching writes fewer frames than one update per frame.
#[test]
fn ipc_reports_both_modes_as_json() {
    let dir = scratch("bench-ipc");
    let output = botfleet(
        &dir,
        &[
            "bench",
            "ipc",
            "--updates",
            "500",
            "--rounds",
            "1",
            "--rate",
            "500",
            "--json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    for key in [
        "updates_per_s_batched",
        "updates_per_s_unbatched",
        "speedup",
        "rtt_us_p50",
        "rtt_us_p99",
    ] {
        assert!(json[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {json}");
    }
    assert_eq!(
        json["frames_unbatched"], 501,
        "one frame per update, and the welcome"
    );
    assert!(json["frames_batched"].as_u64().unwrap() < 100, "{json}");
}

/// `bench chaos`, short, with every fault: workers killed while traffic
/// flows, a poison and a stuck update, PostgreSQL and Redis killed and
/// started again, the supervisor killed and started again. Nothing lost,
/// nothing reordered, exactly the poison and the stuck set aside, and
/// every duplicate explained by an ack in flight at a kill.
#[test]
fn chaos_with_every_fault_loses_nothing_and_sets_aside_exactly_the_poison_and_the_stuck() {
    let dir = scratch("bench-chaos");
    let output = botfleet(
        &dir,
        &[
            "bench",
            "chaos",
            "--duration",
            "6s",
            "--rate",
            "300",
            "--chats",
            "60",
            "--workers",
            "2",
            "--kill-every",
            "400ms",
            "--poison",
            "1",
            "--stuck",
            "1",
            "--outage",
            "1s",
            "--json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(json["kills"].as_u64().unwrap() >= 5, "{json}");
    let faults = json["faults"].as_array().unwrap();
    let injected = |kind: &str| {
        faults.iter().find(|f| f["kind"] == kind).unwrap()["injected"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        [
            "poison",
            "stuck_chat",
            "postgres_restart",
            "redis_kill",
            "supervisor_kill"
        ]
        .map(injected),
        [1; 5],
        "{json}"
    );
    assert_eq!(json["dead_lettered"], 2, "{json}");
    assert!(json["sent"].as_u64().unwrap() >= 1_700, "{json}");
    assert_eq!(json["lost"], 0, "{json}");
    assert_eq!(json["order_violations"], 0, "{json}");
    assert_eq!(
        json["duplicates_to_handlers"], json["duplicates_in_flight"],
        "a duplicate no kill explains: {json}"
    );
    // Every handled update wrote its row through the outages.
    assert!(
        json["rows"].as_u64().unwrap() >= json["handled"].as_u64().unwrap(),
        "{json}"
    );
    assert!(json["untouched"].as_u64().unwrap() > 0, "{json}");
    for key in ["p99_ms", "p99_ms_untouched"] {
        assert!(json[key].is_number(), "{key}: {json}");
    }
}

/// `bench scaling`, short, on its own PostgreSQL: the contract's keys, and
/// the fleet never holds more connections than its budget.
#[test]
fn scaling_stays_within_the_connection_budget() {
    let dir = scratch("bench-scaling");
    let output = botfleet(
        &dir,
        &[
            "bench",
            "scaling",
            "--step",
            "3s",
            "--low",
            "50",
            "--high",
            "600",
            "--max-workers",
            "4",
            "--json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{json}");
    for key in ["rate", "workers_settled", "settle_s", "p99_ms"] {
        assert!(steps[1][key].is_number(), "{key}: {json}");
    }
    let peak = json["peak_connections"].as_i64().unwrap();
    let budget = json["budget"].as_i64().unwrap();
    assert!(
        peak > 0 && peak <= budget,
        "{peak} connections, budget {budget}"
    );
}

#[test]
fn bench_journal_measures_the_three_stores_as_json() {
    let dir = scratch("bench-journal");
    let output = botfleet(
        &dir,
        &[
            "bench",
            "journal",
            "--updates",
            "200",
            "--batch",
            "20",
            "--rounds",
            "1",
            "--json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let stores: Vec<&str> = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["store"].as_str().unwrap())
        .collect();
    assert_eq!(stores, ["file", "sqlite", "postgres"]);
    for s in report["stores"].as_array().unwrap() {
        assert!(s["updates_per_s"].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["append_p99_us"].as_f64().unwrap() >= s["append_p50_us"].as_f64().unwrap());
    }
}

/// `bench fleet` at one rate, short, and its head-of-line scenario: the
/// contract's keys, nothing lost, and private chats answered while a group
/// is held at its limit.
#[test]
fn fleet_answers_private_chats_while_a_group_is_held_at_its_limit() {
    let dir = scratch("bench-fleet");
    let output = botfleet(
        &dir,
        &[
            "bench",
            "fleet",
            "--rate",
            "50",
            "--duration",
            "2s",
            "--ramp",
            "1s",
            "--users",
            "100",
            "--hol-chats",
            "200",
            "--hol-rate",
            "50",
            "--hol-duration",
            "4s",
            "--json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    for key in ["p50_ms", "p99_ms", "p999_ms", "rate"] {
        assert!(json[key].is_number(), "{key}: {json}");
    }
    assert!(
        json["journal"].as_str().unwrap().contains("journal"),
        "{json}"
    );
    assert_eq!(json["lost"], 0, "{json}");
    assert_eq!(json["monitor"], true, "{json}");
    let hol = &json["hol"];
    assert!(hol["private_chats"].as_u64().unwrap() >= 100, "{hol}");
    // The group was held: most of its 30 commands wait for its limit...
    assert!(hol["group_replies"].as_u64().unwrap() < 20, "{hol}");
    // ...and no private chat waited behind it (a held group holds its
    // answers for tens of seconds).
    assert!(hol["private_p99_ms"].as_f64().unwrap() < 5_000.0, "{hol}");
}

/// `bench monitor`, short: every implementation measured, the store's
/// memory per series measured near what its layout says.
#[test]
fn bench_monitor_measures_the_three_recorders_and_the_store() {
    let dir = scratch("bench-monitor");
    let output = botfleet(
        &dir,
        &[
            "bench",
            "monitor",
            "--ops",
            "1000",
            "--rounds",
            "1",
            "--alert-rounds",
            "3",
            "--skip-fleet",
            "--json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let record = json["record"].as_array().unwrap();
    assert_eq!(record.len(), 6, "{json}");
    for row in record {
        for key in ["counter_ns", "histogram_ns"] {
            assert!(row[key].as_f64().unwrap() > 0.0, "{key}: {row}");
        }
    }
    let render = json["render"].as_array().unwrap();
    assert_eq!(render.len(), 6, "{json}");
    // The same 10,000 series, about the same bytes whoever renders them.
    for row in render.iter().filter(|r| r["series"] == 10_000) {
        let bytes = row["bytes"].as_u64().unwrap();
        assert!((400_000..600_000).contains(&bytes), "{row}");
    }
    let computed = json["memory_bytes_per_series_computed"].as_f64().unwrap();
    let measured = json["memory_bytes_per_series_default"].as_f64().unwrap();
    assert!(
        (measured - computed).abs() < computed * 0.25,
        "measured {measured}, computed {computed}"
    );
    assert!(
        json["memory_bytes_per_series_hour"].as_f64().unwrap() > 28_000.0,
        "{json}"
    );
    // Sampled each second, evaluated each second: an alert fires within
    // about two.
    let latency = json["alert_latency_ms"].as_f64().unwrap();
    assert!(latency > 0.0 && latency < 3_000.0, "{json}");
    assert!(json["fleet_cost"].is_null(), "{json}");
}

/// `bench dashboard`, short: the page's weight, a first chart in the
/// headless browser, the CPU figures and the status time.
#[test]
fn bench_dashboard_measures_the_operators_surfaces() {
    let dir = scratch("bench-dashboard");
    let output = botfleet(
        &dir,
        &[
            "bench",
            "dashboard",
            "--workers",
            "1",
            "--seconds",
            "1s",
            "--rounds",
            "1",
            "--clients",
            "1",
            "--json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let bytes = json["page_bytes"].as_u64().unwrap();
    assert!((5_000..100_000).contains(&bytes), "{json}");
    assert!(json["first_chart_ms"].as_f64().unwrap() > 0.0, "{json}");
    for key in [
        "cpu_pct_idle",
        "cpu_pct_with_dashboards",
        "status_ms",
        "fleet_api_ms",
    ] {
        assert!(json[key].as_f64().unwrap() > 0.0, "{key}: {json}");
    }
}
