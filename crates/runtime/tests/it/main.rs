//! The fleet runtime with real worker processes against the emulator.
//!
//! The workers are the example `test-worker` (`examples/test-worker.rs`),
//! which `cargo test` builds beside this binary; `BOTFLEET_TEST_WORKER`
//! picks its behaviour.

mod fleet;

use std::time::Duration;

use botfleet_config::{BotFile, FleetConfig, FleetFile};
use botfleet_emulator::{Emulator, EmulatorConfig};
use botfleet_runtime::{Fleet, RunOptions};
use botfleet_testkit::TempDir;

pub(crate) const TOKEN: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1";
pub(crate) const BOT_ID: i64 = 110201543;

/// The fleet file of one bot whose workers run in `mode`, against
/// `emulator`; `bot` adds to the bot's table.
pub(crate) fn fleet_file(
    emulator: &Emulator,
    mode: &str,
    workers: u32,
    bot: impl FnOnce(BotFile) -> BotFile,
) -> FleetFile {
    FleetFile::new()
        .telegram_api(emulator.base_url())
        .set("telegram.attempts", 20)
        .set("telegram.first_backoff", "50ms")
        .bot(bot(BotFile::new("echo", TOKEN)
            .workers(workers, workers)
            .set("heartbeat_interval", "200ms")
            .set("ready_timeout", "20s")
            .set("shutdown_grace", "5s")
            .command(test_worker().display().to_string(), Vec::<String>::new())
            .env("BOTFLEET_TEST_WORKER", mode)))
}

/// [`fleet_file`] without additions, read.
pub(crate) fn config(emulator: &Emulator, mode: &str, workers: u32) -> FleetConfig {
    fleet_file(emulator, mode, workers, |b| b).parse().unwrap()
}

/// The test worker program: cargo puts examples in `examples/` beside the
/// `deps/` directory of this test binary.
pub(crate) fn test_worker() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps")
        .join("examples")
        .join("test-worker");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test -p botfleet-runtime` (which builds the examples), or build it with `cargo build -p botfleet-runtime --example test-worker`",
        path.display()
    );
    path
}

/// An emulator with users 1..=`users`.
pub(crate) async fn emulator(users: i64) -> Emulator {
    emulator_with(EmulatorConfig::default(), users).await
}

/// An emulator of `config` with users 1..=`users`.
pub(crate) async fn emulator_with(config: EmulatorConfig, users: i64) -> Emulator {
    let e = Emulator::start(config).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    for u in 1..=users {
        e.add_user(u, "user");
    }
    e
}

pub(crate) async fn start(config: &FleetConfig, dir: &TempDir) -> Fleet {
    Fleet::start(
        config,
        RunOptions::default()
            .socket_dir(dir.path().join("run"))
            .data_dir(dir.path().join("data")),
    )
    .await
    .unwrap()
}

/// The texts the bot sent to `chat`, in the emulator's order.
pub(crate) fn replies(e: &Emulator, chat: i64) -> Vec<String> {
    e.log()
        .into_iter()
        .filter(|l| l.status == 200 && l.method == "sendmessage" && l.chat_id == Some(chat))
        .filter_map(|l| l.text)
        .collect()
}

/// Waits until `done` holds, for at most `limit`.
pub(crate) async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}
