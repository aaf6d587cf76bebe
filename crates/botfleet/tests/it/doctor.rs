//! `botfleet doctor` on a good set-up (the emulator with the bot,
//! PostgreSQL with pg_stat_statements, Redis 7, the demo's worker started
//! once) and on each broken one: a wrong token, a webhook set while the
//! bot polls, a PostgreSQL too small for the budget, Redis unreachable, a
//! missing worker program, a tight descriptor limit, a data directory
//! others can read. Redis 6 is the version rule's unit test
//! (`botfleet_analyze::doctor`): no Redis 6 is packaged here.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use botfleet_config::{BotFile, FleetFile};
use botfleet_emulator::{Emulator, EmulatorConfig};
use botfleet_testkit::{PostgresServer, RedisServer};
use serde_json::Value;

const TOKEN: &str = "330403765:AAFkL8QmZ0n1bD4vYx7pQe2WcR5tUu9sHa3";
const UNKNOWN: &str = "440504876:AAGmN9RnA1o2cE5wZy8qRf3XdS6uVv0tIb4";

/// The servers of the good set-up.
struct Setup {
    emulator: Emulator,
    _postgres: PostgresServer,
    database: String,
    redis: RedisServer,
    dir: PathBuf,
}

async fn setup(name: &str) -> Setup {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emulator.add_bot(TOKEN, "doctor_bot").unwrap();
    let postgres = PostgresServer::builder()
        .setting("shared_preload_libraries", "pg_stat_statements")
        .start()
        .unwrap();
    let database = postgres.url("postgres");
    postgres
        .psql(
            "postgres",
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
        )
        .unwrap();
    let redis = RedisServer::builder()
        .setting("maxmemory", "64mb")
        .setting("maxmemory-policy", "allkeys-lfu")
        .start()
        .unwrap();
    let dir = crate::scratch(&format!("doctor-{name}"));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    Setup {
        emulator,
        _postgres: postgres,
        database,
        redis,
        dir,
    }
}

impl Setup {
    /// The good fleet file, changed by `change`.
    fn file(&self, change: impl FnOnce(FleetFile, BotFile) -> (FleetFile, BotFile)) -> PathBuf {
        let exe = env!("CARGO_BIN_EXE_botfleet");
        let file = FleetFile::new()
            .set("environment", "prod")
            .database(self.database.clone())
            .redis(self.redis.url())
            .telegram_api(self.emulator.base_url())
            .set("monitor.bind", "127.0.0.1:0");
        let bot = BotFile::new("dating", TOKEN)
            .workers(1, 2)
            .command(exe, ["demo-worker", "dating"]);
        let (file, bot) = change(file, bot);
        let path = self.dir.join("fleet.toml");
        std::fs::write(&path, file.bot(bot).to_toml()).unwrap();
        path
    }

    /// `botfleet doctor FILE --json` (with `extra`), its JSON and exit code;
    /// through `sh` with `limit` open files when given.
    async fn doctor(
        &self,
        file: &Path,
        extra: &[&str],
        limit: Option<u32>,
    ) -> (Value, Option<i32>) {
        let mut args: Vec<String> = vec![
            "doctor".into(),
            file.display().to_string(),
            "--json".into(),
            "--data-dir".into(),
            self.dir.join("data").display().to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let dir = self.dir.clone();
        let out = tokio::task::spawn_blocking(move || {
            let exe = env!("CARGO_BIN_EXE_botfleet");
            match limit {
                None => {
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    crate::botfleet(&dir, &a, &[])
                }
                Some(n) => {
                    let script = format!("ulimit -n {n} && exec \"$0\" \"$@\"");
                    let mut a: Vec<&str> = vec!["-c", &script, exe];
                    a.extend(args.iter().map(String::as_str));
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "integration tests run the real binary, here under a limit"
                    )]
                    let out = std::process::Command::new("sh")
                        .args(&a)
                        .current_dir(&dir)
                        .output()
                        .unwrap();
                    out
                }
            }
        })
        .await
        .unwrap();
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor printed no JSON ({e}): {}{}",
                crate::stdout(&out),
                crate::stderr(&out)
            )
        });
        assert!(
            !crate::stdout(&out).contains(TOKEN) && !crate::stderr(&out).contains(TOKEN),
            "a token leaks into doctor's output"
        );
        (json, out.status.code())
    }
}

/// The check named `name`.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
}

/// `name` failed with a fix, and every other check passed.
fn only_failed(report: &Value, code: Option<i32>, name: &str, detail: &str) {
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    let c = check(report, name);
    assert_eq!(c["ok"], false, "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains(detail),
        "{name}'s detail says {detail:?}: {c}"
    );
    assert!(c["fix"].as_str().is_some_and(|f| f.len() > 10), "{c}");
    for other in report["checks"].as_array().unwrap() {
        if other["name"] != name {
            assert_eq!(other["ok"], true, "only {name} fails: {report:#}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_setup_passes_every_check_and_workers_say_hello() {
    let s = setup("good").await;
    let file = s.file(|f, b| (f, b));
    let (report, code) = s.doctor(&file, &["--start-workers"], None).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    for name in [
        "fleet file",
        "telegram dating",
        "webhook dating",
        "postgres",
        "postgres budget",
        "pg_stat_statements",
        "redis",
        "redis memory",
        "redis persistence",
        "worker dating",
        "data directory",
        "socket directory",
        "descriptors",
        "disk",
        "monitor",
    ] {
        assert_eq!(check(&report, name)["ok"], true, "{name}: {report:#}");
    }
    assert!(
        check(&report, "worker dating")["detail"]
            .as_str()
            .unwrap()
            .contains("said hello"),
        "{report:#}"
    );
    assert!(
        check(&report, "telegram dating")["detail"]
            .as_str()
            .unwrap()
            .contains("@doctor_bot")
    );
    // The text: one line per check, ✓ each, and the verdict.
    let text = crate::stdout(&crate::botfleet(
        &s.dir,
        &["doctor", file.to_str().unwrap(), "--data-dir", "data"],
        &[],
    ));
    assert!(
        text.lines().filter(|l| l.starts_with("✓ ")).count() >= 15,
        "{text}"
    );
    assert!(text.ends_with("checks passed\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_setup_fails_its_check_with_the_fix() {
    let s = setup("broken").await;

    // A token Telegram does not know.
    let file = s.file(|f, _| {
        (
            f,
            BotFile::new("dating", UNKNOWN)
                .workers(1, 2)
                .command(env!("CARGO_BIN_EXE_botfleet"), ["demo-worker", "dating"]),
        )
    });
    let (report, code) = s.doctor(&file, &[], None).await;
    assert_eq!(code, Some(1));
    let c = check(&report, "telegram dating");
    assert_eq!(c["ok"], false, "{report:#}");
    assert!(c["detail"].as_str().unwrap().contains("401"), "{c}");
    assert!(c["fix"].as_str().unwrap().contains("@BotFather"), "{c}");
    assert!(
        !report.to_string().contains(UNKNOWN),
        "the wrong token is not shown"
    );

    // A webhook set while the bot polls.
    let client = reqwest::Client::new();
    let set: Value = client
        .post(format!("{}/bot{TOKEN}/setWebhook", s.emulator.base_url()))
        .json(&serde_json::json!({ "url": "https://bots.example.com/hook" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(set["ok"], true, "{set}");
    let file = s.file(|f, b| (f, b));
    let (report, code) = s.doctor(&file, &[], None).await;
    only_failed(
        &report,
        code,
        "webhook dating",
        "https://bots.example.com/hook",
    );
    assert!(
        check(&report, "webhook dating")["fix"]
            .as_str()
            .unwrap()
            .contains("deleteWebhook")
    );
    client
        .post(format!(
            "{}/bot{TOKEN}/deleteWebhook",
            s.emulator.base_url()
        ))
        .send()
        .await
        .unwrap();

    // A worker program that is not there.
    let file = s.file(|f, b| (f, b.command("/nonexistent/botfleet-worker", ["x"])));
    let (report, code) = s.doctor(&file, &[], None).await;
    only_failed(
        &report,
        code,
        "worker dating",
        "/nonexistent/botfleet-worker",
    );

    // A worker that dies before its hello, and one that never says it.
    let file = s.file(|f, b| {
        (
            f,
            b.command("sh", ["-c", "echo cannot start here >&2; exit 3"]),
        )
    });
    let (report, code) = s.doctor(&file, &["--start-workers"], None).await;
    only_failed(
        &report,
        code,
        "worker dating",
        "before its hello; its last line: cannot start here",
    );
    let file = s.file(|f, b| (f, b.command("sh", ["-c", "exec sleep 60"])));
    let (report, code) = s.doctor(&file, &["--start-workers"], None).await;
    only_failed(&report, code, "worker dating", "no hello within");

    // Redis unreachable.
    let file = s.file(|f, b| (f.redis("redis://127.0.0.1:9"), b));
    let (report, code) = s.doctor(&file, &[], None).await;
    only_failed(&report, code, "redis", "cannot reach Redis");

    // A descriptor limit too tight for the workers.
    let file = s.file(|f, b| (f, b.workers(1, 40)));
    let (report, code) = s.doctor(&file, &[], Some(64)).await;
    only_failed(&report, code, "descriptors", "the hard limit is 64");

    // A data directory others can read.
    std::fs::set_permissions(s.dir.join("data"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = s.file(|f, b| (f, b));
    let (report, code) = s.doctor(&file, &[], None).await;
    only_failed(&report, code, "data directory", "755");
    assert!(
        check(&report, "data directory")["fix"]
            .as_str()
            .unwrap()
            .contains("chmod 700")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_too_small_for_the_budget_fails() {
    let s = setup("small-postgres").await;
    let small = PostgresServer::builder()
        .max_connections(8)
        .setting("shared_preload_libraries", "pg_stat_statements")
        .start()
        .unwrap();
    small
        .psql(
            "postgres",
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
        )
        .unwrap();
    let url = small.url("postgres");
    let file = s.file(|f, b| (f.database(url), b.workers(2, 20)));
    let (report, code) = s.doctor(&file, &[], None).await;
    only_failed(&report, code, "postgres budget", "max_connections");
    assert!(
        check(&report, "postgres budget")["fix"]
            .as_str()
            .unwrap()
            .contains("raise max_connections")
    );
}

#[test]
fn an_invalid_fleet_file_is_the_one_failed_check() {
    let dir = crate::scratch("doctor-invalid");
    std::fs::write(dir.join("fleet.toml"), "[[bot]]\nname = \"x\"\n").unwrap();
    let out = crate::botfleet(&dir, &["doctor", "fleet.toml"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", crate::stderr(&out));
    let text = crate::stdout(&out);
    assert!(text.starts_with("✗ fleet file: fleet.toml"), "{text}");
    assert!(text.contains("fix: correct the file"), "{text}");
    assert!(
        text.ends_with("not ready: 1 of 1 checks failed\n"),
        "{text}"
    );
}
