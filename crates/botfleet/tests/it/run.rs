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

fn start(dir: &std::path::Path) -> std::process::Child {
    #[expect(
        clippy::disallowed_methods,
        reason = "integration tests run the real binary"
    )]
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_botfleet"));
    command
        .args(["run", "fleet.toml", "--data-dir", "data"])
        .current_dir(dir)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.spawn().unwrap()
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

fn terminate(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}
