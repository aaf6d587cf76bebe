//! `botfleet run` as a process: killed with SIGKILL mid-run and started
//! again, it loses nothing.

use std::time::Duration;

use botfleet_config::{BotFile, FleetFile};
use botfleet_emulator::{Emulator, EmulatorConfig};

use crate::{TOKEN, scratch};

fn replies(e: &Emulator, chat: i64) -> Vec<String> {
    e.log()
        .into_iter()
        .filter(|l| l.status == 200 && l.method == "sendmessage" && l.chat_id == Some(chat))
        .filter_map(|l| l.text)
        .collect()
}

fn start(dir: &std::path::Path) -> Supervisor {
    start_with(dir, &[])
}

/// `botfleet run fleet.toml` with `flags` in `dir`, its stdout and stderr
/// in `dir/stdout.log` and `dir/stderr.log`.
pub(crate) fn start_with(dir: &std::path::Path, flags: &[&str]) -> Supervisor {
    #[expect(
        clippy::disallowed_methods,
        reason = "integration tests run the real binary"
    )]
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_botfleet"));
    command
        .args(["run", "fleet.toml", "--data-dir", "data"])
        .args(flags)
        .current_dir(dir)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    Supervisor(command.spawn().unwrap())
}

/// A test's `botfleet run`: killed when the test ends without waiting for
/// it (a failed assertion), so it cannot outlive the test and meddle with
/// the next run's scratch directory.
pub(crate) struct Supervisor(std::process::Child);

impl std::ops::Deref for Supervisor {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Supervisor {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_killed_mid_run_loses_nothing() {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    for u in 1..=10 {
        e.add_user(u, "user");
    }
    let dir = scratch("run-killed");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/python-worker/worker.py");
    let file = FleetFile::new().telegram_api(e.base_url()).bot(
        BotFile::new("echo", TOKEN)
            .workers(2, 2)
            .command("python3", [script.display().to_string()]),
    );
    std::fs::write(dir.join("fleet.toml"), file.to_toml()).unwrap();
    let mut supervisor = start(&dir);
    for n in 1..=4 {
        for chat in 1..=10 {
            e.inject_message(TOKEN, chat, chat, &format!("#{n}"))
                .unwrap();
        }
    }
    // Once some answers went out, SIGKILL the supervisor: no drain, no
    // confirmation.
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while (1..=10).map(|c| replies(&e, c).len()).sum::<usize>() < 5 {
        assert!(tokio::time::Instant::now() < end, "no answer at all");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    supervisor.kill().unwrap();
    supervisor.wait().unwrap();
    let before: usize = (1..=10).map(|c| replies(&e, c).len()).sum();
    assert!(
        before < 40,
        "everything was answered before the kill ({before}); the test proves nothing"
    );
    // Its workers see the socket close and exit; a new supervisor takes
    // over where Telegram's offset stands.
    let mut supervisor = start(&dir);
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = (1..=10).all(|c| {
            let mut r = replies(&e, c);
            r.dedup();
            r.len() >= 4
        });
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "updates lost after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for chat in 1..=10 {
        // At least once: an update answered just before the kill may be
        // answered again, right after itself; never out of order.
        let mut got = replies(&e, chat);
        got.dedup();
        let expected: Vec<String> = (1..=4).map(|n| format!("echo #{n}")).collect();
        assert_eq!(got, expected, "chat {chat}");
    }
    // A clean stop this time: SIGTERM, exit 0, the offset confirmed.
    terminate(&supervisor);
    let status = supervisor.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(e.pending_updates(TOKEN), 0);
}

pub(crate) fn terminate(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

fn log(dir: &std::path::Path, name: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(dir.join(name)).unwrap_or_default()).into_owned()
}

/// Waits until `done` holds, for at most `limit`.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

pub(crate) fn python_worker() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/python-worker/worker.py")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_bot_does_not_stop_the_fleet_and_the_default_log_says_why() {
    const BROKEN: &str = "110201544:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw2";
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    e.add_bot(BROKEN, "broken_bot").unwrap();
    e.add_user(1, "user");
    let dir = scratch("run-broken-bot");
    let file = FleetFile::new()
        .telegram_api(e.base_url())
        .bot(
            BotFile::new("echo", TOKEN)
                .workers(1, 1)
                .command("python3", [python_worker()]),
        )
        // Its worker says why on stderr and exits before it is ready.
        .bot(
            BotFile::new("broken", BROKEN)
                .workers(1, 1)
                .set("restart.intensity", 2)
                .set("restart.first_backoff", "10ms")
                .command("sh", ["-c", "echo 'cannot import handlers' >&2; exit 3"]),
        );
    std::fs::write(dir.join("fleet.toml"), file.to_toml()).unwrap();
    let mut supervisor = start(&dir);
    assert!(
        until(Duration::from_secs(30), || log(&dir, "stderr.log")
            .contains("bot failed"))
        .await,
        "{}",
        log(&dir, "stderr.log")
    );
    e.inject_message(TOKEN, 1, 1, "#1").unwrap();
    assert!(
        until(Duration::from_secs(30), || replies(&e, 1) == ["echo #1"]).await,
        "the healthy bot does not answer: {}",
        log(&dir, "stderr.log")
    );
    assert!(
        supervisor.try_wait().unwrap().is_none(),
        "the fleet stopped"
    );
    terminate(&supervisor);
    let status = supervisor.wait().unwrap();
    // Stopped while a bot is failed: exit status 1.
    assert_eq!(status.code(), Some(1), "{status}");
    let stdout = log(&dir, "stdout.log");
    for line in [
        "bot echo: polling, 1 worker, `python3 ",
        "bot broken: polling, 1 worker, `sh -c ",
        "bot echo: 1 updates received, 1 handled (0 failed)",
        "; the bot is failed",
        "botfleet: stopped while broken failed (exit status 1)",
    ] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
    // The default level is WARN: the worker's stderr and its exits show,
    // INFO lines do not.
    let stderr = log(&dir, "stderr.log");
    for line in [
        "cannot import handlers",
        "worker exited (exit status: 3 before it was ready)",
        "bot failed: 3 restarts within 10s (restart intensity 2)",
    ] {
        assert!(stderr.contains(line), "{line:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains(" INFO "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v_shows_info_and_q_hides_warnings() {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    let dir = scratch("run-verbosity");
    let file = FleetFile::new().telegram_api(e.base_url()).bot(
        BotFile::new("echo", TOKEN)
            .workers(1, 1)
            .set("restart.intensity", 1)
            .command("sh", ["-c", "echo 'a warning' >&2; exit 3"]),
    );
    std::fs::write(dir.join("fleet.toml"), file.to_toml()).unwrap();
    for (flag, shown, hidden) in [
        (
            "-v",
            vec![" INFO ", "restarting the worker", "a warning"],
            vec![" DEBUG "],
        ),
        ("-q", vec!["bot failed"], vec![" WARN ", "a warning"]),
    ] {
        let mut supervisor = start_with(&dir, &[flag]);
        assert!(
            until(Duration::from_secs(30), || log(&dir, "stdout.log")
                .contains("running;"))
            .await,
            "{flag}"
        );
        assert!(
            until(Duration::from_secs(30), || log(&dir, "stderr.log")
                .contains("bot failed"))
            .await,
            "{flag}: {}",
            log(&dir, "stderr.log")
        );
        terminate(&supervisor);
        supervisor.wait().unwrap();
        let stderr = log(&dir, "stderr.log");
        for line in shown {
            assert!(stderr.contains(line), "{flag}: {line:?} not in:\n{stderr}");
        }
        for line in hidden {
            assert!(!stderr.contains(line), "{flag}: {line:?} in:\n{stderr}");
        }
    }
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// An emulator with bot `echo_bot` and users 1..=`users`, and a fleet file
/// in a fresh `dir` whose one worker runs `sh -c SCRIPT` with the Python
/// worker as `$0`.
async fn echo_fleet(name: &str, users: i64, script: &str) -> (Emulator, std::path::PathBuf) {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    for u in 1..=users {
        e.add_user(u, "user");
    }
    let dir = scratch(name);
    let file = FleetFile::new().telegram_api(e.base_url()).bot(
        BotFile::new("echo", TOKEN)
            .workers(1, 1)
            .command("sh", ["-c", script, &python_worker()]),
    );
    std::fs::write(dir.join("fleet.toml"), file.to_toml()).unwrap();
    (e, dir)
}

/// Waits for chat `chat`'s answer to `text`.
async fn answered(e: &Emulator, dir: &std::path::Path, chat: i64, text: &str) {
    e.inject_message(TOKEN, chat, chat, text).unwrap();
    let want = format!("echo {text}");
    assert!(
        until(Duration::from_secs(30), || replies(e, chat).contains(&want)).await,
        "no answer to {text:?}: {}",
        log(dir, "stderr.log")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_printing_a_10_mb_line_and_bad_bytes_keeps_working_in_bounded_memory() {
    // Before it starts, the worker prints a 10 MB line and bytes that are
    // not UTF-8, then goes on printing while it works.
    let script = r#"{ head -c 10000000 /dev/zero | tr '\0' y; printf '\n\377\376 after\n'; } >&2; exec python3 "$0""#;
    let (e, dir) = echo_fleet("run-big-line", 2, script).await;
    let mut supervisor = start(&dir);
    answered(&e, &dir, 1, "#1").await;
    let stderr = log(&dir, "stderr.log");
    // The line is cut, said so, and the bad bytes are replaced.
    assert!(
        stderr.contains("[line cut: 9983616 more bytes]"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.contains("\u{fffd}\u{fffd} after"),
        "{}",
        &stderr[stderr.len().saturating_sub(3000)..]
    );
    // Its memory: the relay kept 16 KiB of the line, not 10 MB. Against
    // the same fleet whose worker prints nothing (a fixed bound broke as
    // the binary grew: a debug build's supervisor is near 40 MiB alone).
    let held = rss(supervisor.id());
    answered(&e, &dir, 2, "#2").await;
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
    let (plain_e, plain_dir) = echo_fleet("run-big-line-plain", 1, r#"exec python3 "$0""#).await;
    let mut plain = start(&plain_dir);
    answered(&plain_e, &plain_dir, 1, "#1").await;
    let baseline = rss(plain.id());
    terminate(&plain);
    assert!(plain.wait().unwrap().success());
    assert!(
        held < baseline + (6 << 20),
        "the supervisor holds {} MiB after the 10 MB line, {} MiB without it",
        held >> 20,
        baseline >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_announcing_16_mib_frames_leave_the_supervisor_memory_bounded() {
    use std::io::Write;
    let (e, dir) = echo_fleet("run-big-frames", 1, r#"exec python3 "$0""#).await;
    let mut supervisor = start_with(&dir, &["--socket-dir", "sock"]);
    answered(&e, &dir, 1, "#1").await;
    let before = rss(supervisor.id());
    // 20 connections each announce a 16 MiB frame and send one byte; 20
    // more announce a frame a hello could be and send one byte.
    let mut held = Vec::new();
    for announced in [16u32 << 20, 4000] {
        for _ in 0..20 {
            let mut c =
                std::os::unix::net::UnixStream::connect(dir.join("sock/supervisor.sock")).unwrap();
            // The supervisor may refuse the frame (and close) before the
            // byte arrives: a broken pipe here is its answer, not a fault.
            let _ = c
                .write_all(&announced.to_be_bytes())
                .and_then(|()| c.write_all(&[2]));
            held.push(c);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss(supervisor.id());
    assert!(
        after < before + (16 << 20),
        "the supervisor went from {} to {} MiB",
        before >> 20,
        after >> 20
    );
    answered(&e, &dir, 1, "#2").await;
    let stderr = log(&dir, "stderr.log");
    assert!(stderr.contains("reason=\"bad_frame\""), "{stderr}");
    drop(held);
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_starved_supervisor_still_restarts_a_killed_worker() {
    let (e, dir) = echo_fleet("run-no-fds", 2, r#"exec python3 "$0""#).await;
    // The supervisor may open 256 files, and 400 idle connections knock.
    #[expect(
        clippy::disallowed_methods,
        reason = "integration tests run the real binary"
    )]
    let mut command = std::process::Command::new("sh");
    command
        .args([
            "-c",
            r#"ulimit -n 256 && exec "$0" run fleet.toml --data-dir data --socket-dir sock"#,
            env!("CARGO_BIN_EXE_botfleet"),
        ])
        .current_dir(&dir)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let mut supervisor = command.spawn().unwrap();
    answered(&e, &dir, 1, "#1").await;
    let mut idle = Vec::new();
    for _ in 0..400 {
        match std::os::unix::net::UnixStream::connect(dir.join("sock/supervisor.sock")) {
            Ok(c) => idle.push(c),
            Err(e) => panic!("connect: {e}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Kill the worker: its replacement needs pipes and a connection.
    let worker: i32 = std::fs::read_dir(format!("/proc/{}/task", supervisor.id()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("children")).ok())
        .find_map(|c| c.split_whitespace().next().map(|p| p.parse().unwrap()))
        .expect("the worker process");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(worker).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    answered(&e, &dir, 2, "#2").await;
    assert!(
        supervisor.try_wait().unwrap().is_none(),
        "the fleet stopped"
    );
    let stderr = log(&dir, "stderr.log");
    assert!(
        stderr.contains("refused a connection to the worker socket"),
        "{stderr}"
    );
    drop(idle);
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
}

fn hangup(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_removes_and_rolls_bots_and_loses_nothing() {
    const GONE: &str = "110201544:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw2";
    const NEW: &str = "110201545:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw3";
    let e = std::sync::Arc::new(Emulator::start(EmulatorConfig::default()).await.unwrap());
    e.add_bot(TOKEN, "keep_bot").unwrap();
    e.add_bot(GONE, "gone_bot").unwrap();
    e.add_bot(NEW, "new_bot").unwrap();
    for u in 1..=30 {
        e.add_user(u, "user");
    }
    let dir = scratch("run-sighup");
    let python = |name: &str, token: &str| {
        BotFile::new(name, token)
            .workers(2, 3)
            .command("python3", [python_worker()])
    };
    let before = FleetFile::new()
        .telegram_api(e.base_url())
        .bot(python("keep", TOKEN))
        .bot(python("gone", GONE));
    std::fs::write(dir.join("fleet.toml"), before.to_toml()).unwrap();
    let mut supervisor = start(&dir);
    assert!(
        until(Duration::from_secs(30), || log(&dir, "stdout.log")
            .contains("running;"))
        .await,
        "{}",
        log(&dir, "stderr.log")
    );
    // Traffic to `keep` on chats 1..=10 all along; `gone` gets chats 11..=15
    // before the reload.
    let sender = {
        let e = e.clone();
        tokio::spawn(async move {
            for n in 1..=8 {
                for chat in 1..=10 {
                    e.inject_message(TOKEN, chat, chat, &format!("#{n}"))
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };
    for chat in 11..=15 {
        e.inject_message(GONE, chat, chat, "#1").unwrap();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    // `keep` gets another command (the same worker through a shell), `gone`
    // goes, `new` comes.
    let after = FleetFile::new()
        .telegram_api(e.base_url())
        .bot(
            BotFile::new("keep", TOKEN)
                .workers(2, 3)
                .command("sh", ["-c", r#"exec python3 "$0""#, &python_worker()]),
        )
        .bot(python("new", NEW));
    std::fs::write(dir.join("fleet.toml"), after.to_toml()).unwrap();
    hangup(&supervisor);
    assert!(
        until(Duration::from_secs(60), || log(&dir, "stdout.log")
            .contains("botfleet: reloaded"))
        .await,
        "{}\n{}",
        log(&dir, "stdout.log"),
        log(&dir, "stderr.log")
    );
    let stdout = log(&dir, "stdout.log");
    assert!(
        stdout.contains("botfleet: reloaded: added new; removed gone; rolled keep"),
        "{stdout}"
    );
    sender.await.unwrap();
    for chat in 16..=20 {
        e.inject_message(NEW, chat, chat, "#1").unwrap();
    }
    // Every message was answered once, in order: sent = handled.
    let expected: Vec<String> = (1..=8).map(|n| format!("echo #{n}")).collect();
    assert!(
        until(Duration::from_secs(60), || (1..=10)
            .all(|c| replies(&e, c).len() >= 8))
        .await,
        "{:?}",
        (1..=10).map(|c| replies(&e, c).len()).collect::<Vec<_>>()
    );
    for chat in 1..=10 {
        assert_eq!(replies(&e, chat), expected, "chat {chat}");
    }
    for chat in 11..=20 {
        assert!(
            until(Duration::from_secs(30), || replies(&e, chat) == ["echo #1"]).await,
            "chat {chat}: {:?}",
            replies(&e, chat)
        );
    }
    assert_eq!(
        e.pending_updates(GONE),
        0,
        "the removed bot confirmed its offset"
    );
    // The new workers run the new command.
    let ps = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|p| std::fs::read(p.unwrap().path().join("cmdline")).ok())
        .filter(|c| c.starts_with(b"sh\0-c\0exec python3"))
        .count();
    assert!(ps == 0, "the shell execs python: no sh left ({ps})");
    // An invalid file changes nothing.
    std::fs::write(dir.join("fleet.toml"), "[[bot]]\nname = 7\n").unwrap();
    hangup(&supervisor);
    assert!(
        until(Duration::from_secs(30), || log(&dir, "stderr.log")
            .contains("the running fleet is kept"))
        .await,
        "{}",
        log(&dir, "stderr.log")
    );
    assert!(
        log(&dir, "stderr.log").contains("fleet.toml:2:8: bot[0].name"),
        "{}",
        log(&dir, "stderr.log")
    );
    e.inject_message(NEW, 21, 21, "#2").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 21) == ["echo #2"]).await);
    terminate(&supervisor);
    let status = supervisor.wait().unwrap();
    assert!(status.success(), "{status}");
    let stdout = log(&dir, "stdout.log");
    assert!(
        stdout.contains("bot keep: 80 updates received, 80 handled (0 failed)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_killed_mid_burst_repeats_only_what_was_in_flight() {
    let (e, dir) = echo_fleet("run-kill-burst", 30, r#"exec python3 "$0""#).await;
    let mut supervisor = start(&dir);
    // A burst of 300: 10 messages in each of 30 chats.
    for n in 1..=10 {
        for chat in 1..=30 {
            e.inject_message(TOKEN, chat, chat, &format!("#{n}"))
                .unwrap();
        }
    }
    let total = |e: &Emulator| (1..=30).map(|c| replies(e, c).len()).sum::<usize>();
    assert!(
        until(Duration::from_secs(60), || total(&e) >= 60).await,
        "{}",
        log(&dir, "stderr.log")
    );
    supervisor.kill().unwrap();
    supervisor.wait().unwrap();
    let before = total(&e);
    assert!(
        before < 300,
        "all answered before the kill; the test proves nothing"
    );
    let mut supervisor = start(&dir);
    let distinct = |e: &Emulator| {
        (1..=30)
            .map(|c| {
                let mut r = replies(e, c);
                r.dedup();
                r.len()
            })
            .sum::<usize>()
    };
    assert!(
        until(Duration::from_secs(90), || distinct(&e) >= 300).await,
        "lost: {} of 300 answered\n{}",
        distinct(&e),
        log(&dir, "stderr.log")
    );
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
    // Workers told to stop are not reported as exits.
    let stderr = log(&dir, "stderr.log");
    assert!(
        !stderr.contains("worker exited (exit status: 0"),
        "{stderr}"
    );
    for chat in 1..=30 {
        let mut got = replies(&e, chat);
        got.dedup();
        let expected: Vec<String> = (1..=10).map(|n| format!("echo #{n}")).collect();
        assert_eq!(got, expected, "chat {chat}");
    }
    // A chat has one update in flight at a time: only those can repeat.
    let repeated = total(&e) - 300;
    assert!(repeated <= 30, "{repeated} answered twice");
    assert_eq!(e.pending_updates(TOKEN), 0);
}

/// A poison update's strikes are in the journal: a supervisor killed with
/// SIGKILL between two of its crashes gives it no attempts back, and it is
/// set aside at its third crash in all. The worker is `bench chaos`'s,
/// which kills itself on "poison" and says so in `crashes.log`.
#[cfg(feature = "bench")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_updates_strikes_survive_a_supervisor_kill() {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    e.add_user(1, "user");
    let dir = scratch("run-strikes");
    let handled = dir.join("handled.log");
    let file = FleetFile::new().telegram_api(e.base_url()).bot(
        BotFile::new("echo", TOKEN)
            .workers(1, 1)
            // The first restart is at once, the second waits 2 to 4 s: the
            // supervisor is killed in that gap.
            .set("restart.first_backoff", "4s")
            .set("restart.max_backoff", "4s")
            .command(
                env!("CARGO_BIN_EXE_botfleet"),
                ["bench", "chaos", "--worker", &handled.display().to_string()],
            ),
    );
    std::fs::write(dir.join("fleet.toml"), file.to_toml()).unwrap();
    let crashes = || log(&dir, "crashes.log").lines().count();
    let mut supervisor = start(&dir);
    let poison = e.inject_message(TOKEN, 1, 1, "poison").unwrap();
    assert!(
        until(Duration::from_secs(60), || crashes() >= 2).await,
        "{}",
        log(&dir, "stderr.log")
    );
    // Its second strike reaches the journal; then the supervisor dies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    supervisor.kill().unwrap();
    supervisor.wait().unwrap();
    assert_eq!(crashes(), 2, "{}", log(&dir, "stderr.log"));
    let mut supervisor = start(&dir);
    let letter = dir.join(format!("data/dead-letters/echo/{poison}.json"));
    assert!(
        until(Duration::from_secs(60), || letter.exists()).await,
        "never set aside: {} crashes\n{}",
        crashes(),
        log(&dir, "stderr.log")
    );
    assert_eq!(crashes(), 3, "one attempt after the restart, not three");
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
}

/// The monitor's address, from `run`'s start lines.
fn monitor_url(dir: &std::path::Path) -> Option<String> {
    log(dir, "stdout.log")
        .lines()
        .find_map(|l| l.strip_prefix("botfleet: monitor at "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// `botfleet run` in `dir`, once its monitor's address is on stdout: the
/// process and the address.
async fn start_monitored(dir: &std::path::Path) -> (Supervisor, String) {
    let supervisor = start(dir);
    assert!(
        until(Duration::from_secs(30), || monitor_url(dir).is_some()).await,
        "{}{}",
        log(dir, "stdout.log"),
        log(dir, "stderr.log")
    );
    (supervisor, monitor_url(dir).unwrap())
}

/// A fleet file in `dir` whose one bot `echo` runs the Python worker,
/// `file` giving the rest.
fn python_echo_fleet(dir: &std::path::Path, file: FleetFile) {
    let file = file.bot(
        BotFile::new("echo", TOKEN)
            .workers(1, 1)
            .command("sh", ["-c", r#"exec python3 "$0""#, &python_worker()]),
    );
    std::fs::write(dir.join("fleet.toml"), file.to_toml()).unwrap();
}

/// `botfleet run` starts its monitor: `/ready` follows the workers,
/// `/metrics` has the supervisor's series, and `promtool check metrics`
/// finds nothing wrong with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_its_metrics_and_readiness() {
    let (e, dir) = echo_fleet("run-monitor", 3, r#"exec python3 "$0""#).await;
    let (mut supervisor, base) = start_monitored(&dir).await;
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        let r = client.get(format!("{base}/ready")).send().await.unwrap();
        if r.status() == 200 {
            ready = true;
            break;
        }
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["ready"], false);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "{}", log(&dir, "stderr.log"));
    answered(&e, &dir, 1, "hello").await;
    let scrape = || async {
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // The worker's counter comes with its next heartbeat.
    let mut text = scrape().await;
    for _ in 0..100 {
        if text.contains("echo_replies_total{bot=\"echo\",language=\"python\",worker=\"0\"} 1\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = scrape().await;
    }
    for series in [
        "botfleet_journal_depth{bot=\"echo\"} ",
        "botfleet_worker_ready_seconds_bucket{bot=\"echo\",le=\"+Inf\"} ",
        "botfleet_monitor_series_dropped_total 0\n",
        // The Python worker's own counter, forwarded (docs/protocol.md).
        "echo_replies_total{bot=\"echo\",language=\"python\",worker=\"0\"} 1\n",
        // The host, the supervisor and its worker from /proc.
        "botfleet_host_memory_available_bytes ",
        "process_resident_memory_bytes ",
        "botfleet_worker_resident_memory_bytes{bot=\"echo\",worker=\"0\"} ",
        "botfleet_worker_cpu_seconds_total{bot=\"echo\",worker=\"0\"} ",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    assert!(!text.contains(TOKEN), "the bot's token leaked");
    // The fleet at a glance: the bot, its worker with pid and figures.
    let fleet: serde_json::Value = client
        .get(format!("{base}/api/v1/fleet"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bot = &fleet["bots"][0];
    assert_eq!(
        (&bot["name"], &bot["state"]),
        (&"echo".into(), &"ready".into()),
        "{fleet}"
    );
    let worker = &bot["workers"][0];
    assert!(worker["pid"].as_u64().unwrap() > 0, "{fleet}");
    assert_eq!(
        (&worker["slot"], &worker["state"]),
        (&0.into(), &"ready".into()),
        "{fleet}"
    );
    assert!(worker["rss_mib"].as_f64().unwrap() > 1.0, "{fleet}");
    let (ok, said) = botfleet_testkit::check_metrics(&text).unwrap();
    assert!(ok, "promtool: {said}\n{text}");
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
}

/// The monitor polls the fleet's PostgreSQL and Redis: their figures are
/// on `/metrics`, and Redis killed makes `/ready` say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_polls_postgres_and_redis_and_ready_follows_them() {
    let (postgres, redis) = tokio::task::spawn_blocking(|| {
        (
            botfleet_testkit::PostgresServer::start().unwrap(),
            botfleet_testkit::RedisServer::start().unwrap(),
        )
    })
    .await
    .unwrap();
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    let dir = scratch("run-deps");
    python_echo_fleet(
        &dir,
        FleetFile::new()
            .telegram_api(e.base_url())
            .database(postgres.url("postgres"))
            .redis(redis.url()),
    );
    let (mut supervisor, base) = start_monitored(&dir).await;
    let client = reqwest::Client::new();
    let get = |path: &'static str| {
        let request = client.get(format!("{base}{path}"));
        async move { request.send().await.unwrap() }
    };
    let mut text = String::new();
    for _ in 0..150 {
        text = get("/metrics").await.text().await.unwrap();
        if text.contains("botfleet_redis_up 1\n") && text.contains("botfleet_postgres_up 1\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for series in [
        "botfleet_postgres_up 1\n",
        "botfleet_postgres_connections{application=\"botfleet-monitor\",state=\"active\"} ",
        "botfleet_postgres_cache_hit_ratio ",
        "botfleet_redis_up 1\n",
        "botfleet_redis_used_memory_bytes ",
        "botfleet_redis_keyspace_hits_total ",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    let (ok, said) = botfleet_testkit::check_metrics(&text).unwrap();
    assert!(ok, "promtool: {said}");
    let database = get("/metrics/database").await.text().await.unwrap();
    assert!(database.contains("botfleet_postgres_up 1\n"), "{database}");
    assert!(!database.contains("botfleet_redis_up"), "{database}");
    let cache = get("/metrics/cache").await.text().await.unwrap();
    assert!(cache.contains("botfleet_redis_up 1\n"), "{cache}");
    let password_free = !text.contains("postgres://") && !text.contains("redis://");
    assert!(password_free, "a URL leaked");
    // Redis dies: within two polls, /ready says so.
    let redis = std::sync::Arc::new(redis);
    let r = redis.clone();
    tokio::task::spawn_blocking(move || r.kill().unwrap())
        .await
        .unwrap();
    let mut body = serde_json::Value::Null;
    for _ in 0..150 {
        let r = get("/ready").await;
        body = r.json().await.unwrap();
        if body["reasons"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "Redis does not answer"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body["ready"], false, "{body}");
    assert!(
        body["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "Redis does not answer"),
        "{body}"
    );
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
}

/// A real Prometheus scrapes a running fleet, with the monitor's token,
/// and its query API returns the fleet's series with the values the
/// monitor shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_fleet_and_queries_its_series() {
    const MONITOR_TOKEN: &str = "a-scrape-token-0123456789";
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    for u in 1..=3 {
        e.add_user(u, "user");
    }
    let dir = scratch("run-prometheus");
    python_echo_fleet(
        &dir,
        FleetFile::new()
            .telegram_api(e.base_url())
            .set("monitor.token", MONITOR_TOKEN),
    );
    let (mut supervisor, base) = start_monitored(&dir).await;
    let target = base.trim_start_matches("http://").to_owned();
    let prometheus = tokio::task::spawn_blocking(move || {
        botfleet_testkit::PrometheusServer::start(&target, Some(MONITOR_TOKEN)).unwrap()
    })
    .await
    .unwrap();
    for chat in 1..=3 {
        answered(&e, &dir, chat, "hi").await;
    }
    let client = reqwest::Client::new();
    let query = |q: &'static str| {
        let request = client
            .get(format!("{}/api/v1/query", prometheus.url()))
            .query(&[("query", q)]);
        async move {
            let body: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            body["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_owned)
        }
    };
    let mut acked = None;
    for _ in 0..100 {
        acked = query(r#"botfleet_updates_acked_total{bot="echo"}"#).await;
        if acked.as_deref() == Some("3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(acked.as_deref(), Some("3"), "{}", prometheus.log());
    assert_eq!(
        query(r#"up{job="botfleet"}"#).await.as_deref(),
        Some("1"),
        "the scrape with the token works"
    );
    // A histogram, as buckets: Prometheus computes its quantile.
    assert!(
        query(r#"histogram_quantile(0.99, botfleet_update_handling_seconds_bucket{bot="echo"})"#)
            .await
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 0.0)
    );
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
}

/// A fault in a running fleet (its Redis killed) fires an alert that a
/// real Alertmanager receives and the operator's chat is told of through
/// the bot; Redis back, both hear it resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_fires_an_alert_to_alertmanager_and_a_chat_then_resolves() {
    const OPS: i64 = 77;
    let (redis, alertmanager) = tokio::task::spawn_blocking(|| {
        (
            botfleet_testkit::RedisServer::start().unwrap(),
            botfleet_testkit::AlertmanagerServer::start().unwrap(),
        )
    })
    .await
    .unwrap();
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    e.add_user(OPS, "ops");
    let dir = scratch("run-alerts");
    python_echo_fleet(
        &dir,
        FleetFile::new()
            .telegram_api(e.base_url())
            .redis(redis.url())
            .set("monitor.poll_interval", "1s"),
    );
    let rules = format!(
        r#"
[alerts]
interval = "1s"
route.group_wait = "1s"
route.group_interval = "1s"
[[alerts.telegram]]
bot = "echo"
chat_id = {OPS}
[[alerts.alertmanager]]
url = "{}"
[[alerts.groups]]
name = "test"
[[alerts.groups.rules]]
alert = "RedisGone"
expr = "botfleet_redis_up == 0"
for = "2s"
labels = {{ severity = "critical" }}
annotations = {{ summary = "Redis is gone (up = {{{{ $value }}}})" }}
"#,
        alertmanager.url()
    );
    let fleet_file = dir.join("fleet.toml");
    let text = std::fs::read_to_string(&fleet_file).unwrap() + &rules;
    std::fs::write(&fleet_file, text).unwrap();
    let (mut supervisor, base) = start_monitored(&dir).await;
    let client = reqwest::Client::new();
    let get_json = |url: String| {
        let request = client.get(url);
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    // The rules loaded: the built-in pack and ours.
    let rules = get_json(format!("{base}/api/v1/rules")).await;
    let names: Vec<&str> = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert!(
        names.contains(&"RedisGone") && names.contains(&"BotFailed"),
        "{rules}"
    );
    let mut up = false;
    for _ in 0..100 {
        let r = get_json(format!("{base}/api/v1/query?query=botfleet_redis_up")).await;
        if r["data"]["result"][0]["value"][1] == "1" {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "Redis never polled: {}", log(&dir, "stderr.log"));
    let redis = std::sync::Arc::new(redis);
    let r = redis.clone();
    tokio::task::spawn_blocking(move || r.kill().unwrap())
        .await
        .unwrap();
    let in_alertmanager = |am: serde_json::Value| {
        am.as_array().is_some_and(|alerts| {
            alerts.iter().any(|a| {
                a["labels"]["alertname"] == "RedisGone" && a["labels"]["severity"] == "critical"
            })
        })
    };
    let mut received = serde_json::Value::Null;
    for _ in 0..300 {
        received = get_json(format!("{}/api/v2/alerts", alertmanager.url())).await;
        if in_alertmanager(received.clone()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        in_alertmanager(received.clone()),
        "{received}\n{}\n{}",
        alertmanager.log(),
        log(&dir, "stderr.log")
    );
    let ours = get_json(format!("{base}/api/v1/alerts")).await;
    let firing = ours["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "RedisGone")
        .cloned()
        .unwrap_or_default();
    assert_eq!(firing["state"], "firing", "{ours}");
    assert_eq!(
        firing["annotations"]["summary"], "Redis is gone (up = 0)",
        "{ours}"
    );
    assert!(
        until(Duration::from_secs(30), || {
            replies(&e, OPS)
                .iter()
                .any(|t| t.starts_with("🔥 FIRING") && t.contains("RedisGone"))
        })
        .await,
        "the chat heard nothing: {:?}",
        replies(&e, OPS)
    );
    // Redis back: resolved in Alertmanager (gone from its active list long
    // before the 4 minutes a firing alert is held) and in the chat.
    let r = redis.clone();
    tokio::task::spawn_blocking(move || r.restart().unwrap())
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..300 {
        received = get_json(format!("{}/api/v2/alerts", alertmanager.url())).await;
        if !in_alertmanager(received.clone()) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "{received}");
    assert!(
        until(Duration::from_secs(30), || replies(&e, OPS).iter().any(
            |t| t.starts_with("✅ RESOLVED") && t.contains("RedisGone")
        ))
        .await,
        "{:?}",
        replies(&e, OPS)
    );
    let said = log(&dir, "stderr.log") + &log(&dir, "stdout.log");
    assert!(!said.contains(TOKEN), "the token leaked");
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
}

/// `botfleet status`, `restart`, `stop`, `start` and `reload` against a
/// running fleet, found through its data directory: every worker with its
/// pid; a restart under load and a stop/start lose nothing; a reload adds
/// a bot and removes one; a wrong token and no fleet are said clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_and_operates_a_running_fleet() {
    use crate::{botfleet, stderr, stdout};
    const SECOND: &str = "220302654:AAGjJ7rRq6cl8mTnUf0m8l6rHd0qXz3xYp2";
    const THIRD: &str = "330403765:AAKkK8sSr7dm9nUoVg1n9m7sIe1rYa4yZq3";
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    e.add_bot(SECOND, "second_bot").unwrap();
    e.add_bot(THIRD, "third_bot").unwrap();
    for u in 1..=20 {
        e.add_user(u, "user");
    }
    let dir = scratch("run-cli");
    let bot = |name: &str, token: &str| {
        BotFile::new(name, token)
            .workers(2, 2)
            .command("sh", ["-c", r#"exec python3 "$0""#, &python_worker()])
    };
    let file = |bots: Vec<BotFile>| {
        let mut f = FleetFile::new().telegram_api(e.base_url());
        for b in bots {
            f = f.bot(b);
        }
        std::fs::write(dir.join("fleet.toml"), f.to_toml()).unwrap();
    };
    file(vec![bot("echo", TOKEN), bot("second", SECOND)]);
    let (mut supervisor, _) = start_monitored(&dir).await;
    answered(&e, &dir, 1, "#1").await;
    let cli = |args: Vec<String>| {
        let dir = dir.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                botfleet(&dir, &args, &[])
            })
            .await
            .unwrap()
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let status = || async {
        let out = cli(args(&["status", "--json", "--data-dir", "data"])).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    let pids = |s: &serde_json::Value, name: &str| -> Vec<u64> {
        let bots = s["bots"].as_array().unwrap();
        let bot = bots.iter().find(|b| b["name"] == name).unwrap();
        bot["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["pid"].as_u64().unwrap())
            .collect()
    };
    // Both workers of echo are ready, listed with their pids.
    let mut before = Vec::new();
    for _ in 0..100 {
        let s = status().await;
        before = pids(&s, "echo");
        if before.len() == 2 && before.iter().all(|p| *p > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(before.len(), 2);
    let table = cli(args(&["status", "--data-dir", "data"])).await;
    let table = stdout(&table);
    for pid in &before {
        assert!(table.contains(&pid.to_string()), "{table}");
    }
    assert!(
        table.contains("echo") && table.contains("second"),
        "{table}"
    );
    // A restart of echo under load: every message answered, new pids,
    // second untouched.
    let second_before = pids(&status().await, "second");
    let restart = tokio::spawn(cli(args(&["restart", "echo", "--data-dir", "data"])));
    let mut sent = Vec::new();
    for i in 0..40 {
        let chat = 1 + i % 20;
        let text = format!("r{i}");
        e.inject_message(TOKEN, chat, chat, &text).unwrap();
        sent.push((chat, text));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = restart.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "echo restarted\n");
    for (chat, text) in &sent {
        let want = format!("echo {text}");
        assert!(
            until(Duration::from_secs(30), || replies(&e, *chat)
                .contains(&want))
            .await,
            "lost {text} in the restart: {}",
            log(&dir, "stderr.log")
        );
    }
    let after = pids(&status().await, "echo");
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        pids(&status().await, "second"),
        second_before,
        "second was touched"
    );
    // Stop, a message meanwhile, start: it is answered after.
    let out = cli(args(&["stop", "echo", "--data-dir", "data"])).await;
    assert_eq!(stdout(&out), "echo stopped\n", "{}", stderr(&out));
    let s = status().await;
    let echo = s["bots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "echo")
        .unwrap()
        .clone();
    assert_eq!(echo["state"], "stopped", "{s}");
    e.inject_message(TOKEN, 3, 3, "while stopped").unwrap();
    let out = cli(args(&["start", "echo", "--data-dir", "data"])).await;
    assert_eq!(stdout(&out), "echo started\n", "{}", stderr(&out));
    assert!(
        until(Duration::from_secs(30), || replies(&e, 3)
            .contains(&"echo while stopped".to_owned()))
        .await,
        "the message sent while echo was stopped was lost"
    );
    let out = cli(args(&["stop", "nobody", "--data-dir", "data"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no bot is named nobody"),
        "{}",
        stderr(&out)
    );
    // Reload: second goes, third comes.
    file(vec![bot("echo", TOKEN), bot("third", THIRD)]);
    let out = cli(args(&["reload", "--data-dir", "data"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "reloaded: added third; removed second\n");
    let s = status().await;
    let names: Vec<&str> = s["bots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert!(
        names.contains(&"third") && !names.contains(&"second"),
        "{s}"
    );
    // Dead letters through the control API: listed and dropped with the
    // control token only (they hold users' messages).
    let letters = dir.join("data/dead-letters/echo");
    std::fs::create_dir_all(&letters).unwrap();
    std::fs::write(
        letters.join("41.json"),
        serde_json::json!({
            "bot": "echo", "update_id": 41, "chat": 7, "attempts": 3,
            "reason": "its worker died while handling it", "output": [],
            "dead_at": 1_796_645_045u64, "update": {"update_id": 41},
        })
        .to_string(),
    )
    .unwrap();
    let base = std::fs::read_to_string(dir.join("data/monitor.url")).unwrap();
    let base = base.trim();
    let control = std::fs::read_to_string(dir.join("data/control.token")).unwrap();
    let http = reqwest::Client::new();
    let listed = http
        .get(format!("{base}/api/v1/dead-letters?bot=echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 401, "dead letters without the token");
    let listed: serde_json::Value = http
        .get(format!("{base}/api/v1/dead-letters?bot=echo"))
        .bearer_auth(control.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["dead_letters"][0]["update_id"], 41, "{listed}");
    let post = |path: &str| {
        http.post(format!("{base}{path}"))
            .bearer_auth(control.trim())
            .send()
    };
    let missing = post("/api/v1/dead-letters/echo/99/replay").await.unwrap();
    assert_eq!(missing.status(), 409);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("no dead letter 99 of bot echo")
    );
    let dropped: serde_json::Value = post("/api/v1/dead-letters/echo/41/drop")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dropped["dropped"][0], 41, "{dropped}");
    assert!(!letters.join("41.json").exists());
    // A wrong token, and no fleet at all, are said as such.
    std::fs::write(dir.join("bad.token"), "not-the-token").unwrap();
    let out = cli(args(&[
        "restart",
        "echo",
        "--data-dir",
        "data",
        "--token-file",
        "bad.token",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refused the token from bad.token"),
        "{}",
        stderr(&out)
    );
    let out = cli(args(&["status", "--url", "http://127.0.0.1:9"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no fleet answers at http://127.0.0.1:9"),
        "{}",
        stderr(&out)
    );
    let token = std::fs::read_to_string(dir.join("data/control.token")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("data/control.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        !log(&dir, "stderr.log").contains(token.trim()),
        "the control token leaked"
    );
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
    assert!(
        !dir.join("data/control.token").exists(),
        "the token file outlived the fleet"
    );
}

/// `botfleet logs`: a worker's lines only, by level, and with --follow the
/// new ones as they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_one_workers_lines_by_level() {
    use crate::{botfleet, stderr, stdout};
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    e.add_user(1, "user");
    let dir = scratch("run-logs");
    // `$$$$` is the shell's `$$` once the fleet file's `$$` escape is read.
    let script = r#"echo "WARNING hello from $$$$" >&2; echo "ERROR oops in $$$$" >&2; echo "plain $$$$"; exec python3 "$0""#;
    let file = FleetFile::new()
        .telegram_api(e.base_url())
        .set("logs.dir", "logs")
        .bot(
            BotFile::new("echo", TOKEN)
                .workers(2, 2)
                .command("sh", ["-c", script, &python_worker()]),
        );
    std::fs::write(dir.join("fleet.toml"), file.to_toml()).unwrap();
    let (mut supervisor, base) = start_monitored(&dir).await;
    answered(&e, &dir, 1, "#1").await;
    let fleet: serde_json::Value = reqwest::get(format!("{base}/api/v1/fleet"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid_of = |slot: u64| -> String {
        fleet["bots"][0]["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["slot"] == slot)
            .map(|w| w["pid"].to_string())
            .unwrap()
    };
    let (zero, one) = (pid_of(0), pid_of(1));
    let cli = |args: &'static [&'static str]| {
        let dir = dir.clone();
        async move {
            tokio::task::spawn_blocking(move || botfleet(&dir, args, &[]))
                .await
                .unwrap()
        }
    };
    let mut out = cli(&["logs", "echo", "--worker", "0", "--data-dir", "data"]).await;
    for _ in 0..50 {
        if stdout(&out).contains(&format!("oops in {zero}")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        out = cli(&["logs", "echo", "--worker", "0", "--data-dir", "data"]).await;
    }
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for want in [
        format!("echo/0 [{zero}] WARN  WARNING hello from {zero}"),
        format!("echo/0 [{zero}] ERROR ERROR oops in {zero}"),
        format!("echo/0 [{zero}] INFO  plain {zero}"),
    ] {
        assert!(said.contains(&want), "{want} missing:\n{said}");
    }
    assert!(!said.contains(&one) && !said.contains("echo/1"), "{said}");
    let errors = stdout(&cli(&["logs", "--level", "error", "--data-dir", "data"]).await);
    assert!(
        errors.contains(&format!("oops in {zero}")) && errors.contains(&format!("oops in {one}")),
        "{errors}"
    );
    assert!(
        !errors.contains("hello from") && !errors.contains("plain"),
        "{errors}"
    );
    // --follow prints what comes after: a restarted worker's first lines
    // (the first workers' are over a second old by then).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    #[expect(
        clippy::disallowed_methods,
        reason = "integration tests run the real binary"
    )]
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_botfleet"))
        .args([
            "logs",
            "--follow",
            "--since",
            "1s",
            "--level",
            "error",
            "--data-dir",
            "data",
        ])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted = cli(&["restart", "echo", "--data-dir", "data"]).await;
    assert_eq!(restarted.status.code(), Some(0), "{}", stderr(&restarted));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    follow.kill().unwrap();
    let followed = follow.wait_with_output().unwrap();
    let followed = String::from_utf8_lossy(&followed.stdout);
    assert!(followed.matches("ERROR oops in").count() >= 2, "{followed}");
    assert!(
        !followed.contains(&format!("oops in {zero}")),
        "old lines again: {followed}"
    );
    terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
}
