//! `botfleet analyze` against `botfleet demo` with each fault knob: the
//! injected kind is named first, with evidence and a fix; a fleet without
//! a fault is healthy. Real processes throughout: the demo's supervisor and
//! workers, and PostgreSQL and Redis from the testkit where a knob needs
//! them.

use std::sync::Mutex;
use std::time::Duration;

use botfleet_testkit::{PostgresServer, RedisServer};
use serde_json::Value;

/// One demo at a time: each measures its own host's CPU and time, which a
/// second demo running alongside would blur.
static ONE_DEMO: Mutex<()> = Mutex::new(());

/// Traffic before the analysis, and the window it looks at.
const TRAFFIC: Duration = Duration::from_secs(20);
const WINDOW: &str = "15s";

/// What `analyze` said of a demo run with `faults` and `extra` options.
struct Diagnosis {
    json: Value,
    text: String,
    report: Value,
    demo: String,
}

#[expect(
    clippy::disallowed_methods,
    reason = "a sync test helper: it waits on real processes"
)]
fn diagnose(name: &str, faults: &[&str], extra: &[String]) -> Diagnosis {
    let _one = ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let dir = crate::scratch(&format!("analyze-{name}"));
    let duration = format!("{}s", TRAFFIC.as_secs() + 6);
    let mut args: Vec<String> = ["demo", "--duration", &duration, "--monitor", "127.0.0.1:0"]
        .map(String::from)
        .to_vec();
    for fault in faults {
        args.extend(["--fault".to_owned(), (*fault).to_owned()]);
    }
    args.extend(extra.iter().cloned());
    let crate::Demo {
        mut child,
        lines,
        reading,
    } = crate::demo(&dir, &args, std::process::Stdio::null());
    let mut reach = None;
    loop {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(120)) else {
            let _ = child.kill();
            panic!(
                "the demo never started its traffic; it said:\n{}",
                reading.join().unwrap()
            );
        };
        if let Some(found) = crate::demo_reach(&line) {
            reach = Some(found);
        }
        if line.contains("the synthetic users start writing") {
            break;
        }
    }
    let (url, token_file) = reach.expect("the demo printed how to reach it");
    let token = std::fs::read_to_string(&token_file).unwrap();
    std::thread::sleep(TRAFFIC);
    let analyze = |json: bool| {
        let mut a = vec![
            "analyze",
            "--window",
            WINDOW,
            "--url",
            &url,
            "--token-file",
            &token_file,
        ];
        if json {
            a.push("--json");
        }
        crate::botfleet(&dir, &a, &[])
    };
    let out = analyze(true);
    let json: Value = serde_json::from_str(&crate::stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "analyze --json printed no JSON ({e}): {}{}",
            crate::stdout(&out),
            crate::stderr(&out)
        )
    });
    let healthy = json["healthy"].as_bool() == Some(true);
    assert_eq!(
        out.status.code(),
        Some(if healthy { 0 } else { 1 }),
        "the exit status says whether something binds"
    );
    let text = crate::stdout(&analyze(false));
    let report = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            reqwest::Client::new()
                .get(format!("{url}/performance/report?window={WINDOW}"))
                .bearer_auth(token.trim())
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    // The demo ends by itself (its --duration), draining what is queued.
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if tokio::time::Instant::now() > until {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let demo = reading.join().unwrap();
    assert!(
        !text.contains(token.trim()) && !demo.contains(token.trim()),
        "the control token leaks into the output"
    );
    Diagnosis {
        json,
        text,
        report,
        demo,
    }
}

/// Asserts that `kind` is the first finding, with evidence and a fix, in
/// the JSON, the text and `/performance/report`.
fn named_first(d: &Diagnosis, kind: &str) {
    let first = &d.json["findings"][0];
    assert_eq!(
        first["kind"], kind,
        "analyze names {kind} first; it said:\n{}\n(the demo said:\n{})",
        d.text, d.demo
    );
    assert_eq!(first["rank"], 1);
    assert_eq!(d.json["healthy"], false);
    assert_eq!(d.json["window_s"], 15);
    let evidence = first["evidence"].as_array().unwrap();
    assert!(!evidence.is_empty(), "{first}");
    for e in evidence {
        assert!(e["series"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
        assert!(e["value"].as_f64().is_some_and(f64::is_finite), "{e}");
        assert!(e["threshold"].as_f64().is_some_and(f64::is_finite), "{e}");
    }
    assert!(
        first["fix"].as_str().is_some_and(|f| f.len() > 20),
        "{first}"
    );
    assert!(
        d.text.contains(&format!("1. {kind}  ")) && d.text.contains("fix: "),
        "{}",
        d.text
    );
    assert_eq!(
        d.report["analysis"]["findings"][0]["kind"], kind,
        "/performance/report serves the same analysis"
    );
    assert_eq!(d.report["findings"][0]["kind"], kind);
}

fn postgres() -> PostgresServer {
    PostgresServer::builder()
        .setting("shared_preload_libraries", "pg_stat_statements")
        .start()
        .unwrap()
}

/// A fresh database on `server`, and the demo's options for it.
fn with_postgres(server: &PostgresServer) -> (botfleet_testkit::TestDatabase, Vec<String>) {
    let db = server.create_database().unwrap();
    let args = vec!["--postgres".to_owned(), db.url().to_owned()];
    (db, args)
}

#[test]
fn a_fleet_without_a_fault_is_healthy() {
    let d = diagnose("healthy", &[], &[]);
    assert_eq!(d.json["healthy"], true, "{}", d.text);
    assert_eq!(d.json["findings"][0]["kind"], "healthy");
    assert_eq!(d.json["findings"].as_array().unwrap().len(), 1);
    assert!(d.text.starts_with("healthy: nothing binds"), "{}", d.text);
    // The time breakdown is there for both bots, with traffic.
    let bots = d.json["bots"].as_array().unwrap();
    assert_eq!(bots.len(), 2, "{}", d.json);
    for b in bots {
        assert!(b["updates_per_s"].as_f64().unwrap() > 1.0, "{b}");
        assert!(b["handler_s"].as_f64().unwrap() > 0.0, "{b}");
        assert!(b["handling_s"].as_f64().unwrap() >= b["handler_s"].as_f64().unwrap() * 0.5);
    }
    assert!(d.json["saturation"]["cpus"].as_f64().unwrap() >= 1.0);
    assert_eq!(d.report["analysis"]["healthy"], true);
}

#[test]
fn host_cpu_is_named_first() {
    named_first(&diagnose("host-cpu", &["host.cpu"], &[]), "host.cpu");
}

#[test]
fn host_memory_is_named_first() {
    named_first(
        &diagnose("host-memory", &["host.memory"], &[]),
        "host.memory",
    );
}

#[test]
fn pool_exhaustion_is_named_first() {
    let d = diagnose("pool", &["db.pool_exhausted"], &[]);
    named_first(&d, "db.pool_exhausted");
    assert!(
        d.json["findings"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("max_connections from 1 to 2"),
        "the fix names the setting and its new value: {}",
        d.text
    );
}

#[test]
fn a_small_cache_is_named_first() {
    let d = diagnose("cache", &["cache.too_small"], &[]);
    named_first(&d, "cache.too_small");
    assert!(
        d.json["findings"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("(now 8)"),
        "the fleet file's capacity reached the workers' caches: {}",
        d.text
    );
}

#[test]
fn telegram_limits_are_named_first() {
    named_first(
        &diagnose("rate", &["telegram.rate_limited"], &[]),
        "telegram.rate_limited",
    );
}

#[test]
fn a_slow_bot_api_is_named_first() {
    named_first(
        &diagnose("slow-api", &["telegram.slow_api"], &[]),
        "telegram.slow_api",
    );
}

#[test]
fn a_slow_worker_link_is_named_first() {
    named_first(&diagnose("ipc", &["ipc"], &[]), "ipc");
}

#[test]
fn handler_errors_are_named_first() {
    named_first(
        &diagnose("errors", &["handler.errors"], &[]),
        "handler.errors",
    );
}

#[test]
fn saturated_workers_are_named_first() {
    let d = diagnose("saturated", &["workers.saturated"], &[]);
    named_first(&d, "workers.saturated");
}

#[test]
fn a_slow_query_is_named_first() {
    let server = postgres();
    let (_db, args) = with_postgres(&server);
    let d = diagnose("slow-query", &["db.slow_query"], &args);
    named_first(&d, "db.slow_query");
}

#[test]
fn a_missing_index_is_named_first_with_the_index_to_create() {
    let server = postgres();
    let (_db, args) = with_postgres(&server);
    let d = diagnose("missing-index", &["db.missing_index"], &args);
    named_first(&d, "db.missing_index");
    let fix = d.json["findings"][0]["fix"].as_str().unwrap();
    assert!(
        fix.contains("CREATE INDEX")
            && fix.contains("demo_fault_lookups")
            && fix.contains("user_id"),
        "the fix is the index: {}",
        d.text
    );
}

#[test]
fn workers_capped_by_the_budget_are_named_first() {
    let server = postgres();
    let (_db, args) = with_postgres(&server);
    let d = diagnose("capped", &["workers.capped_by_budget"], &args);
    named_first(&d, "workers.capped_by_budget");
}

#[test]
fn a_database_gone_is_named_first() {
    let server = postgres();
    let (_db, args) = with_postgres(&server);
    let d = diagnose("db-down", &["db.down"], &args);
    named_first(&d, "db.down");
}

#[test]
fn redis_gone_is_named_first() {
    let redis = RedisServer::start().unwrap();
    let d = diagnose(
        "redis-down",
        &["cache.redis_down"],
        &["--redis".to_owned(), redis.url()],
    );
    named_first(&d, "cache.redis_down");
}

#[test]
fn a_knob_that_needs_a_server_says_so() {
    let dir = crate::scratch("analyze-knob-needs");
    let out = crate::botfleet(&dir, &["demo", "--fault", "db.down"], &[]);
    assert_ne!(out.status.code(), Some(0), "{}", crate::stderr(&out));
    assert!(
        crate::stderr(&out).contains("--fault db.down needs --postgres"),
        "{}",
        crate::stderr(&out)
    );
    let out = crate::botfleet(&dir, &["demo", "--fault", "db.slow"], &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        crate::stderr(&out).contains("the knobs are db.down, cache.redis_down"),
        "{}",
        crate::stderr(&out)
    );
}

#[test]
fn analyze_without_a_fleet_says_so() {
    let dir = crate::scratch("analyze-no-fleet");
    let out = crate::botfleet(&dir, &["analyze", "--url", "http://127.0.0.1:9"], &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        crate::stderr(&out).contains("no fleet answers at http://127.0.0.1:9"),
        "{}",
        crate::stderr(&out)
    );
}
