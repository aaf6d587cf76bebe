//! The worker program of the runtime's integration tests (`tests/it`): a
//! botfleet worker whose behaviour the test picks by environment. `cargo
//! test` builds it with the tests; they start it from cargo's target
//! directory.

use std::time::Duration;

use botfleet_telegram::updates::UpdateContent;
use botfleet_worker::{Context, HandlerResult, Update};

/// Modes (`BOTFLEET_TEST_WORKER`, required):
/// - `echo`: answers each message with `echo <text>`, after
///   `BOTFLEET_TEST_DELAY_MS`;
/// - `exit`: exits at once with status 3, before it is ready;
/// - `hang`: echoes, but stops itself (SIGSTOP) on a message `hang`;
/// - `panic`: echoes, but panics on a message `panic`;
/// - `db`: runs `SELECT 1` on the bot's database, then echoes (a database
///   that is down makes the update go again later);
/// - `stuck`: echoes, but a handler given the message `stuck` never ends
///   (the worker goes on heartbeating and handling other chats);
/// - `crash`: echoes, but exits with status 1 on a message `crash` (a
///   process that dies on one update, every time);
/// - `panic_once`: echoes, but panics the first time it sees `panic`, and
///   is run with one retry after a panic;
/// - `BOTFLEET_TEST_START_DELAY_MS` (any mode): waits that long before
///   connecting;
/// - `cache`: answers every message with the value of one key of a tiered
///   cache, loaded by whichever worker asks first (shared through Redis);
/// - `state`: asks the Bot API for its own name in the start-up hook
///   (`with_state`) and answers every message with `state <username>`;
/// - `start_fails`: its start-up hook fails, so it never gets ready;
/// - `garbage`: echoes, but first prints bytes that are not UTF-8 and a
///   200 kB line to its stdout (a write that fails fails the update).
fn main() {
    let Ok(mode) = std::env::var("BOTFLEET_TEST_WORKER") else {
        #[expect(
            clippy::print_stderr,
            reason = "the one line a person who ran it by hand needs"
        )]
        {
            eprintln!(
                "test-worker: set BOTFLEET_TEST_WORKER (echo, exit, hang, db, stuck, panic, crash, panic_once, cache, state, start_fails or garbage); the runtime's tests start this program"
            );
        }
        std::process::exit(64);
    };
    if mode == "exit" {
        std::process::exit(3);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // `panic_once` runs a panicking handler again, once.
    let retries = u32::from(mode == "panic_once");
    // `BOTFLEET_TEST_START_DELAY_MS`: a slow start, before connecting.
    let delay = std::env::var("BOTFLEET_TEST_START_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis);
    let result = runtime.block_on(async {
        tokio::time::sleep(delay).await;
        match mode.as_str() {
            "state" => {
                botfleet_worker::with_state(
                    |cx: Context| async move {
                        let me: serde_json::Value =
                            cx.api().call("getMe", &serde_json::json!({})).await?;
                        Ok(me["username"].as_str().unwrap_or("?").to_owned())
                    },
                    handle_with_state,
                )
                .run()
                .await
            }
            "start_fails" => {
                botfleet_worker::Worker::new(handle)
                    .on_start(|_| async { Err("no database to migrate".into()) })
                    .run()
                    .await
            }
            _ => {
                botfleet_worker::Worker::new(handle)
                    .panic_retries(retries)
                    .run()
                    .await
            }
        }
    });
    if let Err(e) = result {
        #[expect(
            clippy::print_stderr,
            reason = "the worker's last word, captured by the supervisor's log"
        )]
        {
            eprintln!("worker: {e}");
        }
        std::process::exit(1);
    }
    std::process::exit(0);
}

async fn handle_with_state(
    update: Update,
    cx: Context,
    username: std::sync::Arc<String>,
) -> HandlerResult {
    if let UpdateContent::Message(message) = update.into_content()? {
        cx.api()
            .send_message(message.chat.id, &format!("state {username}"))
            .await?;
    }
    Ok(())
}

async fn handle(update: Update, cx: Context) -> HandlerResult {
    let UpdateContent::Message(message) = update.into_content()? else {
        return Ok(());
    };
    let text = message.text.clone().unwrap_or_default();
    let mode = std::env::var("BOTFLEET_TEST_WORKER").unwrap_or_default();
    if mode == "garbage" {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(b"not \xff\xfe utf-8\n")?;
        out.write_all(&vec![b'y'; 200_000])?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    if mode == "hang" && text == "hang" {
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::STOP);
    }
    if mode == "panic" && text == "panic" {
        panic!("asked to panic");
    }
    if mode == "db" {
        let db = cx.db().ok_or("the fleet has no database")?;
        db.query("SELECT 1").execute().await?;
    }
    if mode == "stuck" && text == "stuck" {
        std::future::pending::<()>().await;
    }
    if mode == "crash" && text == "crash" {
        std::process::exit(1);
    }
    if mode == "panic_once" && text == "panic" {
        static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !PANICKED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("asked to panic, once");
        }
    }
    if mode == "cache" {
        static CACHE: std::sync::OnceLock<botfleet_cache::TieredCache<i64, String>> =
            std::sync::OnceLock::new();
        let cache = CACHE.get_or_init(|| cx.cache::<i64, String>("greeting").build());
        let worker = cx.worker_id();
        let value = cache
            .get_or_load(&1, || async move {
                Ok::<_, std::io::Error>(Some(format!("loaded by worker {worker}")))
            })
            .await?
            .unwrap_or_default();
        cx.api().send_message(message.chat.id, &value).await?;
        return Ok(());
    }
    let delay: u64 = std::env::var("BOTFLEET_TEST_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    cx.api()
        .send_message(message.chat.id, &format!("echo {text}"))
        .await?;
    Ok(())
}
