//! Ordering, redelivery, restarts, heartbeats, shutdown and bad frames.

use std::time::Duration;

use botfleet_protocol::{Encoding, FrameReader, Hello, Message, encode_frame, error_codes};
use botfleet_testkit::TempDir;
use tokio::io::AsyncWriteExt;

use botfleet_config::BotFile;

use crate::{
    BOT_ID, TOKEN, config, emulator, emulator_with, fleet_file, replies, start, test_worker, until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chat_is_answered_in_order_across_workers() {
    let e = emulator(20).await;
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start(&config(&e, "echo", 3), &dir).await;
    // 20 chats, 10 messages each, injected round-robin.
    for n in 1..=10 {
        for chat in 1..=20 {
            e.inject_message(TOKEN, chat, chat, &format!("#{n}"))
                .unwrap();
        }
    }
    let all = until(Duration::from_secs(60), || {
        (1..=20).all(|chat| replies(&e, chat).len() >= 10)
    })
    .await;
    let status = fleet.status().await;
    assert!(all, "not every message was answered: {status:?}");
    for chat in 1..=20 {
        let expected: Vec<String> = (1..=10).map(|n| format!("echo #{n}")).collect();
        assert_eq!(replies(&e, chat), expected, "chat {chat}");
    }
    assert_eq!(e.stats(BOT_ID).order_violations, 0);
    let report = fleet.shutdown().await;
    let s = &report.bots[0];
    assert_eq!((s.received, s.acked, s.redelivered), (200, 200, 0), "{s:?}");
    // The offset was confirmed: nothing is left for the next run.
    assert_eq!(e.pending_updates(TOKEN), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing_and_keeps_each_chat_in_order() {
    let e = emulator(50).await;
    let dir = TempDir::new("runtime").unwrap();
    let config = config(&e, "echo", 2);
    let mut config = config;
    config.bots[0].worker.env.push((
        "BOTFLEET_TEST_DELAY_MS".into(),
        botfleet_config::WorkerValue::plain("20"),
    ));
    let fleet = start(&config, &dir).await;
    for n in 1..=6 {
        for chat in 1..=50 {
            e.inject_message(TOKEN, chat, chat, &format!("#{n}"))
                .unwrap();
        }
    }
    // Kill one worker with SIGKILL once replies have started.
    assert!(until(Duration::from_secs(30), || replies(&e, 1).len() >= 2).await);
    let (_, _, pid) = fleet.workers()[0];
    assert!(pid > 0);
    rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // Counted without repeats: a redelivered message may be answered twice.
    let all = until(Duration::from_secs(60), || {
        (1..=50).all(|chat| {
            let mut got = replies(&e, chat);
            got.dedup();
            got.len() >= 6
        })
    })
    .await;
    let status = fleet.status().await;
    assert!(all, "messages lost: {status:?}");
    for chat in 1..=50 {
        // Each message answered, in order; a message whose worker died
        // after answering and before acking may be answered twice, next to
        // itself.
        let mut got = replies(&e, chat);
        got.dedup();
        let expected: Vec<String> = (1..=6).map(|n| format!("echo #{n}")).collect();
        assert_eq!(got, expected, "chat {chat}");
    }
    let report = fleet.shutdown().await;
    let s = &report.bots[0];
    assert!(s.restarts >= 1, "{s:?}");
    assert_eq!(s.received, 300, "{s:?}");
    assert_eq!(s.acked, 300, "{s:?}");
    assert_eq!(e.pending_updates(TOKEN), 0);
}

/// A fleet of one worker in `mode` with a restart `intensity` within 30 s,
/// started and waited for until its bot fails (at most 30 s).
async fn start_failing(
    e: &botfleet_emulator::Emulator,
    mode: &str,
    intensity: i64,
    first_backoff: &str,
    dir: &TempDir,
) -> botfleet_runtime::Fleet {
    let file = fleet_file(e, mode, 1, |b| {
        b.set("restart.intensity", intensity)
            .set("restart.period", "30s")
            .set("restart.first_backoff", first_backoff)
    });
    let fleet = start(&file.parse().unwrap(), dir).await;
    let failed = tokio::time::timeout(Duration::from_secs(30), fleet.failed())
        .await
        .expect("the bot fails");
    assert_eq!(failed, "echo");
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_keeps_dying_fails_its_bot_after_the_restart_intensity() {
    let e = emulator(1).await;
    let dir = TempDir::new("runtime").unwrap();
    let began = tokio::time::Instant::now();
    let fleet = start_failing(&e, "exit", 3, "200ms", &dir).await;
    // The first restart at once, the next after 200 and 400 ms (with
    // jitter, between half and all of each), and the fourth exit fails the
    // bot: 300 to 600 ms of waiting in all, plus the starts.
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let status = fleet.status().await;
    assert!(status[0].failed_bot);
    // The first start and 3 restarts, then the fourth restart is refused.
    assert_eq!(status[0].restarts, 4, "{status:?}");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_bot_leaves_the_healthy_bot_answering_and_is_retried() {
    const TYPO: &str = "110201544:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw2";
    const CRASHY: &str = "110201545:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw3";
    let e = emulator(3).await;
    e.add_bot(TYPO, "typo_bot").unwrap();
    e.add_bot(CRASHY, "crashy_bot").unwrap();
    let dir = TempDir::new("runtime").unwrap();
    let failing = |b: BotFile| {
        b.workers(1, 1)
            .set("heartbeat_interval", "200ms")
            .set("restart.intensity", 2)
            .set("restart.first_backoff", "10ms")
            .set("restart.failed_retry", "2s")
            .set("shutdown_grace", "1s")
    };
    let file = fleet_file(&e, "echo", 1, |b| b)
        // A typo in the worker command: it never starts.
        .bot(failing(BotFile::new("typo", TYPO)).command("pyhton3-not-installed", ["worker.py"]))
        // A worker that dies on one update, every time it gets it.
        .bot(
            failing(BotFile::new("crashy", CRASHY))
                .command(test_worker().display().to_string(), Vec::<String>::new())
                .env("BOTFLEET_TEST_WORKER", "crash"),
        );
    let fleet = start(&file.parse().unwrap(), &dir).await;
    e.inject_message(CRASHY, 3, 3, "crash").unwrap();
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while fleet.failed_bots() != ["typo", "crashy"] {
        assert!(
            tokio::time::Instant::now() < end,
            "{:?}",
            fleet.failed_bots()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The healthy bot answers while the other two are failed.
    for n in 1..=3 {
        e.inject_message(TOKEN, 1, 1, &format!("#{n}")).unwrap();
    }
    assert!(
        until(Duration::from_secs(30), || replies(&e, 1).len() == 3).await,
        "{:?}",
        replies(&e, 1)
    );
    assert_eq!(replies(&e, 1), ["echo #1", "echo #2", "echo #3"]);
    // After `failed_retry` the failed bots' workers are started again: the
    // typo fails again; the crashing update was set aside as a dead letter
    // (its third crash), so the other bot answers again.
    let restarts = |status: &[botfleet_runtime::Status], bot: &str| {
        status.iter().find(|s| s.bot == bot).unwrap().restarts
    };
    let before = fleet.status().await;
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = fleet.status().await;
        if restarts(&now, "typo") > restarts(&before, "typo") {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "no retry: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    e.inject_message(CRASHY, 3, 3, "back").unwrap();
    assert!(
        until(Duration::from_secs(30), || replies(&e, 3) == ["echo back"]).await,
        "{:?}",
        fleet.status().await
    );
    let report = fleet.shutdown().await;
    let healthy = report.bots.iter().find(|s| s.bot == "echo").unwrap();
    assert_eq!((healthy.acked, healthy.restarts), (3, 0), "{healthy:?}");
    let crashy = report.bots.iter().find(|s| s.bot == "crashy").unwrap();
    assert_eq!((crashy.acked, crashy.dead_lettered), (1, 1), "{crashy:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_restarted_and_its_update_redelivered() {
    let e = emulator(2).await;
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start(&config(&e, "hang", 1), &dir).await;
    e.inject_message(TOKEN, 2, 2, "#1").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 2) == ["echo #1"]).await);
    // The worker stops itself (SIGSTOP) on "hang"; missed heartbeats get
    // it killed and replaced, and the replacement gets "hang" again.
    e.inject_message(TOKEN, 1, 1, "hang").unwrap();
    let restarted = tokio::time::timeout(Duration::from_secs(30), async {
        while fleet.status().await[0].restarts == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(restarted.is_ok(), "the hung worker was not restarted");
    let report = fleet.shutdown().await;
    assert!(report.bots[0].redelivered >= 1, "{:?}", report.bots[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_acked_as_failed_and_the_worker_goes_on() {
    let e = emulator(1).await;
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start(&config(&e, "panic", 1), &dir).await;
    e.inject_message(TOKEN, 1, 1, "panic").unwrap();
    e.inject_message(TOKEN, 1, 1, "#2").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 1) == ["echo #2"]).await);
    let report = fleet.shutdown().await;
    let s = &report.bots[0];
    assert_eq!((s.acked, s.failed, s.restarts), (2, 1, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_bad_frames_are_refused() {
    let e = emulator(1).await;
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start(&config(&e, "echo", 1), &dir).await;
    // A hello from a worker id the supervisor did not start.
    let stream = tokio::net::UnixStream::connect(fleet.socket())
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    let mut frame = Vec::new();
    encode_frame(
        Encoding::Json,
        &[Message::Hello(Hello {
            version: 1,
            worker_id: 999_999,
            pid: 1,
            bot: "echo".into(),
            capabilities: vec![],
        })],
        &mut frame,
    );
    write.write_all(&frame).await.unwrap();
    let mut reader = FrameReader::new(read);
    let (encoding, reply) = reader.read().await.unwrap().unwrap();
    assert_eq!(
        encoding,
        Encoding::Json,
        "answered in the worker's encoding"
    );
    assert!(
        matches!(&reply[0], Message::Error { code, .. } if *code == error_codes::UNKNOWN_WORKER),
        "{reply:?}"
    );
    assert_eq!(reader.read().await.unwrap(), None, "then closed");
    // Garbage instead of a frame.
    let stream = tokio::net::UnixStream::connect(fleet.socket())
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(&[0, 0, 0, 3, b'x', b'y', b'z'])
        .await
        .unwrap();
    let mut reader = FrameReader::new(read);
    let (_, reply) = reader.read().await.unwrap().unwrap();
    assert!(
        matches!(&reply[0], Message::Error { code, message } if *code == error_codes::MALFORMED && message.contains("unknown encoding byte 0x78")),
        "{reply:?}"
    );
    // The fleet goes on.
    e.inject_message(TOKEN, 1, 1, "#1").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 1) == ["echo #1"]).await);
    fleet.shutdown().await;
}

/// examples/python-worker, end to end: the JSON encoding from another
/// language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_worker_example_answers_in_order() {
    let e = emulator(3).await;
    let dir = TempDir::new("runtime").unwrap();
    let mut config = config(&e, "echo", 2);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/python-worker/worker.py");
    config.bots[0].worker.command = "python3".into();
    config.bots[0].worker.args = vec![botfleet_config::WorkerValue::plain(
        script.display().to_string(),
    )];
    let fleet = start(&config, &dir).await;
    for n in 1..=5 {
        for chat in 1..=3 {
            e.inject_message(TOKEN, chat, chat, &format!("#{n}"))
                .unwrap();
        }
    }
    let all = until(Duration::from_secs(60), || {
        (1..=3).all(|c| replies(&e, c).len() >= 5)
    })
    .await;
    assert!(all, "{:?}", fleet.status().await);
    for chat in 1..=3 {
        let expected: Vec<String> = (1..=5).map(|n| format!("echo #{n}")).collect();
        assert_eq!(replies(&e, chat), expected);
    }
    let report = fleet.shutdown().await;
    assert_eq!(report.bots[0].acked, 15);
    assert_eq!(e.pending_updates(TOKEN), 0);
}

/// A stop in the middle of work: what was taken is finished and confirmed,
/// what was not stays with Telegram for the next run; nothing is lost or
/// answered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_finishes_what_it_handed_out_and_keeps_the_rest() {
    let e = emulator(10).await;
    let dir = TempDir::new("runtime").unwrap();
    // Telegram allows a chat 1 message a second: what the workers hold
    // needs a second or two, well within the grace period, and most of
    // the rest is still queued when the stop comes.
    let mut config = config(&e, "echo", 2);
    config.bots[0].supervision.shutdown_grace = Duration::from_secs(20);
    config.bots[0].worker.env.push((
        "BOTFLEET_TEST_DELAY_MS".into(),
        botfleet_config::WorkerValue::plain("50"),
    ));
    let fleet = start(&config, &dir).await;
    for n in 1..=4 {
        for chat in 1..=10 {
            e.inject_message(TOKEN, chat, chat, &format!("#{n}"))
                .unwrap();
        }
    }
    assert!(until(Duration::from_secs(30), || !replies(&e, 1).is_empty()).await);
    // More arrive while it stops.
    for chat in 1..=10 {
        e.inject_message(TOKEN, chat, chat, "#5").unwrap();
    }
    let report = fleet.shutdown().await;
    let s = &report.bots[0];
    // What the workers held was finished; what was queued stays in the
    // journal, and what was not fetched at Telegram.
    assert_eq!(s.unacked, s.queued, "nothing left in flight: {s:?}");
    assert!(
        s.queued > 0,
        "all done before the stop; the test proves nothing"
    );
    let answered: usize = (1..=10).map(|c| replies(&e, c).len()).sum();
    assert_eq!(answered as u64, s.acked);
    assert_eq!(
        e.pending_updates(TOKEN) as u64,
        50 - s.received,
        "the rest waits at Telegram"
    );
    // The next run answers the rest, each chat still in order.
    let fleet = start(&config, &dir).await;
    let all = until(Duration::from_secs(60), || {
        (1..=10).all(|c| replies(&e, c).len() >= 5)
    })
    .await;
    assert!(all, "{:?}", fleet.status().await);
    for chat in 1..=10 {
        let expected: Vec<String> = (1..=5).map(|n| format!("echo #{n}")).collect();
        assert_eq!(replies(&e, chat), expected, "chat {chat}");
    }
    fleet.shutdown().await;
}

/// A stop that comes while a killed worker's replacement is still
/// starting must not wait for the dead connection's `drained`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_restart_does_not_wait_for_the_dead_worker() {
    let e = emulator(1).await;
    let dir = TempDir::new("runtime").unwrap();
    let mut config = config(&e, "echo", 2);
    config.bots[0].supervision.shutdown_grace = Duration::from_secs(20);
    // Every start takes a while, so the stop finds the replacement not
    // yet connected.
    config.bots[0].worker.env.push((
        "BOTFLEET_TEST_START_DELAY_MS".into(),
        botfleet_config::WorkerValue::plain("1000"),
    ));
    let fleet = start(&config, &dir).await;
    // Both connected and ready, so each has had a connection.
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while fleet.status().await[0].ready_workers < 2 {
        assert!(
            tokio::time::Instant::now() < end,
            "{:?}",
            fleet.status().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _, pid) = fleet.workers()[0];
    rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // The dead connection is gone; its replacement is still starting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fleet.status().await[0].ready_workers, 1);
    let began = tokio::time::Instant::now();
    let report = fleet.shutdown().await;
    let took = began.elapsed();
    assert!(report.bots[0].restarts >= 1, "{:?}", report.bots[0]);
    assert!(
        took < Duration::from_secs(10),
        "the stop took {took:?}: it waited for the killed worker's drain"
    );
}

/// One raw HTTP POST; returns the status.
async fn post(addr: std::net::SocketAddr, secret: Option<&str>, body: &str) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let header = secret.map_or(String::new(), |s| {
        format!("X-Telegram-Bot-Api-Secret-Token: {s}\r\n")
    });
    let request = format!(
        "POST /hook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{header}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    raw.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_bot_gets_its_updates_and_refuses_strangers() {
    let e = emulator(5).await;
    let dir = TempDir::new("runtime").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = fleet_file(&e, "echo", 2, |b| {
        b.set("mode", "webhook")
            .set("webhook.url", format!("http://127.0.0.1:{port}/hook"))
            .set("webhook.listen", format!("127.0.0.1:{port}"))
            .set("webhook.secret_token", "s3cret-Token_1")
    });
    let fleet = start(&file.parse().unwrap(), &dir).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // No secret, a wrong one, and a right one with a body that is no update.
    assert_eq!(post(addr, None, "{}").await, 401);
    assert_eq!(post(addr, Some("guess"), "{}").await, 401);
    assert_eq!(post(addr, Some("s3cret-Token_1"), "{\"no\": 1}").await, 400);
    // Telegram (the emulator) delivers to the webhook the fleet set.
    for n in 1..=4 {
        for chat in 1..=5 {
            e.inject_message(TOKEN, chat, chat, &format!("#{n}"))
                .unwrap();
        }
    }
    let all = until(Duration::from_secs(60), || {
        (1..=5).all(|c| replies(&e, c).len() >= 4)
    })
    .await;
    assert!(all, "{:?}", fleet.status().await);
    for chat in 1..=5 {
        let expected: Vec<String> = (1..=4).map(|n| format!("echo #{n}")).collect();
        assert_eq!(replies(&e, chat), expected);
    }
    // Every update was answered 200 only after its ack: none is pending.
    assert!(until(Duration::from_secs(10), || e.pending_updates(TOKEN) == 0).await);
    let report = fleet.shutdown().await;
    assert_eq!(report.bots[0].acked, 20);
}

/// A queue builds up: workers are added (at most doubling per tick, up to
/// max_workers); the load goes: they are removed one at a time, with their
/// chats handed over, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autoscaler_follows_the_queue_up_and_down() {
    // No send limits: the handlers' own time is the work.
    let e = emulator_with(
        botfleet_emulator::EmulatorConfig::default().limits(botfleet_emulator::Limits::unlimited()),
        40,
    )
    .await;
    let dir = TempDir::new("runtime").unwrap();
    let mut config: botfleet_config::FleetConfig = fleet_file(&e, "echo", 1, |b| b)
        .unlimited_sends()
        .parse()
        .unwrap();
    config.bots[0].max_workers = 4;
    let s = &mut config.bots[0].supervision.scaling;
    s.target_queue_per_worker = 2;
    s.target_latency = Duration::from_secs(10);
    // Each handler sleeps 300 ms: busy time, which more workers share.
    s.tick = Duration::from_millis(200);
    s.scale_down_window = Duration::from_millis(600);
    config.bots[0].worker.env.push((
        "BOTFLEET_TEST_DELAY_MS".into(),
        botfleet_config::WorkerValue::plain("300"),
    ));
    let fleet = start(&config, &dir).await;
    for n in 1..=5 {
        for chat in 1..=40 {
            e.inject_message(TOKEN, chat, chat, &format!("#{n}"))
                .unwrap();
        }
    }
    let mut most = 0;
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let s = fleet.status().await;
            most = most.max(s[0].ready_workers);
            if (1..=40).all(|c| replies(&e, c).len() >= 5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "{:?}", fleet.status().await);
    assert!(most >= 3, "scaled up to {most} workers only");
    assert!(most <= 4, "above max_workers: {most}");
    // Idle: back down to min_workers, one at a time.
    let down = tokio::time::timeout(Duration::from_secs(30), async {
        while fleet.workers().len() > 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(down.is_ok(), "still {} workers", fleet.workers().len());
    for chat in 1..=40 {
        let expected: Vec<String> = (1..=5).map(|n| format!("echo #{n}")).collect();
        assert_eq!(replies(&e, chat), expected, "chat {chat}");
    }
    let report = fleet.shutdown().await;
    assert_eq!(report.bots[0].acked, 200);
    assert_eq!(
        report.bots[0].restarts, 0,
        "a retired worker is not restarted"
    );
}

/// The SDK's caches share the fleet's Redis: one worker loads, every other
/// worker reads its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_a_cache_through_the_fleets_redis() {
    let e = emulator(30).await;
    let dir = TempDir::new("runtime").unwrap();
    let redis = botfleet_testkit::redis().unwrap();
    let file = fleet_file(&e, "cache", 3, |b| b).redis(redis.url());
    let fleet = start(&file.parse().unwrap(), &dir).await;
    // One message per chat at first, so the first load is one worker's...
    e.inject_message(TOKEN, 1, 1, "hi").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 1).len() == 1).await);
    // ...then every chat, spread over the three workers.
    for chat in 2..=30 {
        e.inject_message(TOKEN, chat, chat, "hi").unwrap();
    }
    assert!(
        until(Duration::from_secs(60), || (1..=30)
            .all(|c| replies(&e, c).len() == 1))
        .await
    );
    let first = replies(&e, 1).remove(0);
    assert!(first.starts_with("loaded by worker "), "{first}");
    for chat in 2..=30 {
        assert_eq!(
            replies(&e, chat),
            std::slice::from_ref(&first),
            "chat {chat}"
        );
    }
    fleet.shutdown().await;
}

/// With `panic_retries(1)`, a handler that panics once is run again and
/// its update handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_once_is_retried() {
    let e = emulator(1).await;
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start(&config(&e, "panic_once", 1), &dir).await;
    e.inject_message(TOKEN, 1, 1, "panic").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 1) == ["echo panic"]).await);
    let report = fleet.shutdown().await;
    let s = &report.bots[0];
    assert_eq!((s.acked, s.failed, s.restarts), (1, 0, 0), "{s:?}");
}

/// The start-up hook runs before ready, its Bot API calls are answered,
/// and what it built reaches every handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_built_at_start_up_reaches_the_handler() {
    let e = emulator(2).await;
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start(&config(&e, "state", 1), &dir).await;
    e.inject_message(TOKEN, 1, 1, "hi").unwrap();
    e.inject_message(TOKEN, 2, 2, "hi").unwrap();
    assert!(
        until(Duration::from_secs(30), || {
            replies(&e, 1) == ["state echo_bot"] && replies(&e, 2) == ["state echo_bot"]
        })
        .await
    );
    let report = fleet.shutdown().await;
    assert_eq!(report.bots[0].restarts, 0, "{:?}", report.bots[0]);
}

/// A start-up hook that fails ends the worker before it is ready: restarted
/// like a crash, and the bot fails past the restart intensity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_start_up_is_a_crash_before_ready() {
    let e = emulator(1).await;
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start_failing(&e, "start_fails", 2, "50ms", &dir).await;
    let status = fleet.status().await;
    assert_eq!(status[0].ready_workers, 0, "{status:?}");
    fleet.shutdown().await;
}

/// A worker that prints bytes that are not UTF-8, and lines far over the
/// log's cap, keeps its output pipe: every update is answered, nothing
/// fails, nothing restarts (issue 14, finding 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_printing_garbage_keeps_running() {
    let e = emulator(1).await;
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start(&config(&e, "garbage", 1), &dir).await;
    let want: Vec<String> = (1..=5).map(|n| format!("echo #{n}")).collect();
    for n in 1..=5 {
        e.inject_message(TOKEN, 1, 1, &format!("#{n}")).unwrap();
    }
    assert!(
        until(Duration::from_secs(30), || replies(&e, 1) == want).await,
        "{:?}",
        replies(&e, 1)
    );
    let report = fleet.shutdown().await;
    let s = &report.bots[0];
    assert_eq!((s.acked, s.failed, s.restarts), (5, 0, 0), "{s:?}");
}

/// Sends `hello` on a new connection and returns the supervisor's answer.
async fn hello_answer(socket: &std::path::Path, hello: Hello) -> Vec<Message> {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut frame = Vec::new();
    encode_frame(Encoding::Binary, &[Message::Hello(hello)], &mut frame);
    write.write_all(&frame).await.unwrap();
    let mut reader = FrameReader::new(read);
    let answer = reader.read().await.unwrap().unwrap().1;
    assert_eq!(reader.read().await.unwrap(), None, "then closed");
    answer
}

fn refused_with(answer: &[Message], code: u16, words: &str) -> bool {
    matches!(answer, [Message::Error { code: c, message }] if *c == code && message.contains(words))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_is_refused_and_the_real_worker_keeps_its_updates() {
    let e = emulator(40).await;
    let dir = TempDir::new("runtime").unwrap();
    // A shell starts two copies of the worker under one slot: both are the
    // slot's descendants and name its worker id; one connection per id.
    let script = r#"BOTFLEET_TEST_START_DELAY_MS=300 "$0" & exec "$0""#;
    let file = fleet_file(&e, "echo", 1, |b| {
        b.command("sh", ["-c", script, &test_worker().display().to_string()])
    });
    let fleet = start(&file.parse().unwrap(), &dir).await;
    e.inject_message(TOKEN, 1, 1, "#0").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 1) == ["echo #0"]).await);
    let (_, id, pid) = fleet.workers()[0];
    let hello = |pid: u32, bot: &str| Hello {
        version: 1,
        worker_id: id,
        pid,
        bot: bot.into(),
        capabilities: vec![],
    };
    // The worker's id and pid, from another process: the peer credentials
    // tell.
    let answer = hello_answer(fleet.socket(), hello(pid, "echo")).await;
    assert!(
        refused_with(&answer, error_codes::NOT_THE_WORKER, "but process"),
        "{answer:?}"
    );
    // Its own pid: not a process the supervisor started.
    let answer = hello_answer(fleet.socket(), hello(std::process::id(), "echo")).await;
    assert!(
        refused_with(
            &answer,
            error_codes::NOT_THE_WORKER,
            "nor one of its descendants"
        ),
        "{answer:?}"
    );
    let answer = hello_answer(fleet.socket(), hello(std::process::id(), "other")).await;
    assert!(
        refused_with(&answer, error_codes::NOT_THE_WORKER, "not of \"other\""),
        "{answer:?}"
    );
    // The real worker got every update and answered it.
    for chat in 1..=40 {
        e.inject_message(TOKEN, chat, chat, "#1").unwrap();
    }
    assert!(
        until(Duration::from_secs(30), || (1..=40)
            .all(|c| replies(&e, c).contains(&"echo #1".to_owned())))
        .await,
        "unanswered: {:?}",
        (1..=40)
            .filter(|&c| !replies(&e, c).contains(&"echo #1".to_owned()))
            .collect::<Vec<_>>()
    );
    let report = fleet.shutdown().await;
    let s = &report.bots[0];
    // The second copy was refused (already connected) and exited; the
    // first kept the slot.
    assert_eq!((s.acked, s.failed, s.restarts), (41, 0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_dropped_after_the_handshake_deadline() {
    let e = emulator(1).await;
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start(&config(&e, "echo", 1), &dir).await;
    let stream = tokio::net::UnixStream::connect(fleet.socket())
        .await
        .unwrap();
    let began = tokio::time::Instant::now();
    let mut reader = FrameReader::new(stream);
    let answer = tokio::time::timeout(Duration::from_secs(10), reader.read())
        .await
        .expect("answered within the deadline")
        .unwrap()
        .unwrap()
        .1;
    assert!(
        refused_with(&answer, error_codes::TOO_SLOW, "no hello within"),
        "{answer:?}"
    );
    assert!(
        began.elapsed() >= Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_onto_a_broken_command_stops_and_keeps_the_old_workers() {
    let e = emulator(3).await;
    let dir = TempDir::new("runtime").unwrap();
    let file = |mode: &str| {
        fleet_file(&e, mode, 1, |b| {
            b.workers(1, 2)
                .set("ready_timeout", "2s")
                .set("restart.intensity", 100)
        })
    };
    let mut fleet = start(&file("echo").parse().unwrap(), &dir).await;
    e.inject_message(TOKEN, 1, 1, "#1").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 1) == ["echo #1"]).await);
    let before = fleet.workers();
    // The new command exits before it is ready: the roll gives up.
    let done = fleet.reload(&file("exit").parse().unwrap()).await;
    assert!(done.rolled.is_empty(), "{done:?}");
    assert!(
        done.problems
            .iter()
            .any(|p| p.contains("was not ready within 2s")),
        "{done:?}"
    );
    assert_eq!(fleet.workers(), before, "the old worker stays");
    e.inject_message(TOKEN, 2, 2, "#2").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 2) == ["echo #2"]).await);
    // A command that works rolls.
    let done = fleet
        .reload(
            &fleet_file(&e, "echo", 1, |b| {
                b.workers(1, 2)
                    .set("ready_timeout", "2s")
                    .set("restart.intensity", 100)
                    .env("BOTFLEET_TEST_DELAY_MS", "1")
            })
            .parse()
            .unwrap(),
        )
        .await;
    assert_eq!(done.rolled, ["echo"], "{done:?}");
    assert_ne!(fleet.workers(), before, "a new worker");
    e.inject_message(TOKEN, 3, 3, "#3").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 3) == ["echo #3"]).await);
    let report = fleet.shutdown().await;
    assert_eq!(report.bots[0].acked, 3, "{:?}", report.bots[0]);
}

/// When each chat of `chats` got its first answer, from `since`.
fn answered_within(e: &botfleet_emulator::Emulator, chats: impl Iterator<Item = i64>) -> bool {
    chats.into_iter().all(|c| !replies(e, c).is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_held_by_its_limit_does_not_delay_private_chats() {
    let e = emulator(10).await;
    e.add_group(-100, "busy group", botfleet_emulator::ChatKind::Group);
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start(&config(&e, "echo", 2), &dir).await;
    // 30 messages in one group: Telegram allows 20 a minute there, so the
    // group's answers take more than a minute.
    for n in 1..=30 {
        e.inject_message(TOKEN, -100, 1, &format!("g{n}")).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = tokio::time::Instant::now();
    for chat in 1..=10 {
        e.inject_message(TOKEN, chat, chat, "hi").unwrap();
    }
    assert!(
        until(Duration::from_secs(20), || answered_within(&e, 1..=10)).await,
        "private chats wait behind the group: {:?}",
        fleet.status().await
    );
    let took = began.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        replies(&e, -100).len() < 30,
        "the group is still held by its limit"
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_acks_holds_only_its_own_chat() {
    let e = emulator(21).await;
    let dir = TempDir::new("runtime").unwrap();
    let fleet = start(&config(&e, "stuck", 1), &dir).await;
    e.inject_message(TOKEN, 21, 21, "stuck").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for chat in 1..=20 {
        e.inject_message(TOKEN, chat, chat, "hi").unwrap();
    }
    assert!(
        until(Duration::from_secs(10), || answered_within(&e, 1..=20)).await,
        "other chats wait behind the stuck one: {:?}",
        fleet.status().await
    );
    let status = fleet.status().await;
    assert_eq!((status[0].acked, status[0].unacked), (20, 1), "{status:?}");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_update_becomes_a_dead_letter_and_its_chat_goes_on() {
    let e = emulator(2).await;
    let dir = TempDir::new("runtime").unwrap();
    let file = fleet_file(&e, "crash", 1, |b| {
        b.set("restart.intensity", 20)
            .set("restart.first_backoff", "10ms")
    });
    let fleet = start(&file.parse().unwrap(), &dir).await;
    let poison = e.inject_message(TOKEN, 1, 1, "crash").unwrap();
    e.inject_message(TOKEN, 1, 1, "#2").unwrap();
    e.inject_message(TOKEN, 2, 2, "hi").unwrap();
    assert!(
        until(Duration::from_secs(30), || replies(&e, 1) == ["echo #2"]).await,
        "{:?}",
        fleet.status().await
    );
    assert_eq!(replies(&e, 2), ["echo hi"]);
    let data = dir.path().join("data");
    let letters = botfleet_runtime::dead::list(&data, Some("echo")).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        (letter.update_id, letter.chat, letter.attempts),
        (poison, 1, 3)
    );
    assert!(
        letter
            .reason
            .contains("its worker died while handling it, 3 times"),
        "{letter:?}"
    );
    assert_eq!(letter.update["message"]["text"], "crash");
    let s = &fleet.status().await[0];
    assert_eq!(
        (s.dead_lettered, s.restarts, s.failed_bot),
        (1, 3, false),
        "{s:?}"
    );
    // Replayed, it is handed out again: three more crashes, set aside again.
    botfleet_runtime::dead::replay(&data, "echo", poison).unwrap();
    assert!(
        botfleet_runtime::dead::list(&data, None)
            .unwrap()
            .is_empty()
    );
    assert!(
        until(Duration::from_secs(30), || {
            botfleet_runtime::dead::list(&data, None).is_ok_and(|l| l.len() == 1)
        })
        .await
    );
    let s = &fleet.status().await[0];
    assert_eq!((s.dead_lettered, s.restarts), (2, 6), "{s:?}");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_update_past_its_deadline_restarts_its_worker_then_is_set_aside() {
    let e = emulator(2).await;
    let dir = TempDir::new("runtime").unwrap();
    let file = fleet_file(&e, "stuck", 1, |b| {
        b.set("handling_deadline", "1s")
            .set("max_attempts", 2)
            .set("restart.first_backoff", "10ms")
            .set("scaling.tick", "200ms")
    });
    let fleet = start(&file.parse().unwrap(), &dir).await;
    let stuck = e.inject_message(TOKEN, 1, 1, "stuck").unwrap();
    e.inject_message(TOKEN, 1, 1, "#2").unwrap();
    e.inject_message(TOKEN, 2, 2, "hi").unwrap();
    assert!(until(Duration::from_secs(10), || replies(&e, 2) == ["echo hi"]).await);
    assert!(
        until(Duration::from_secs(30), || replies(&e, 1) == ["echo #2"]).await,
        "{:?}",
        fleet.status().await
    );
    let letter = botfleet_runtime::dead::show(&dir.path().join("data"), "echo", stuck).unwrap();
    assert!(
        letter.reason.contains("past its handling deadline (1s)"),
        "{letter:?}"
    );
    let s = &fleet.status().await[0];
    assert_eq!((s.dead_lettered, s.restarts), (1, 2), "{s:?}");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_nothing_and_restarts_no_worker() {
    let e = emulator(20).await;
    let dir = TempDir::new("runtime").unwrap();
    let server = botfleet_testkit::PostgresServer::start().unwrap();
    let file = fleet_file(&e, "db", 1, |b| b).database(server.url("postgres"));
    let fleet = start(&file.parse().unwrap(), &dir).await;
    for chat in 1..=10 {
        e.inject_message(TOKEN, chat, chat, "#1").unwrap();
    }
    assert!(
        until(Duration::from_secs(30), || (1..=10)
            .all(|c| replies(&e, c).len() == 1))
        .await
    );
    // PostgreSQL stops for 10 s while messages come in.
    server.stop().unwrap();
    for chat in 1..=20 {
        e.inject_message(TOKEN, chat, chat, "#2").unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = fleet.status().await;
    assert!(during[0].retried > 0, "{during:?}");
    server.start_again().unwrap();
    // Every user is answered once it is back, each chat in order.
    assert!(
        until(Duration::from_secs(60), || (1..=20)
            .all(|c| replies(&e, c).contains(&"echo #2".to_owned())))
        .await,
        "{:?}",
        fleet.status().await
    );
    for chat in 1..=10 {
        assert_eq!(replies(&e, chat), ["echo #1", "echo #2"], "chat {chat}");
    }
    let report = fleet.shutdown().await;
    let s = &report.bots[0];
    assert_eq!((s.acked, s.failed, s.restarts), (30, 0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_during_a_database_outage_heartbeats_until_it_is_back() {
    let e = emulator(2).await;
    let dir = TempDir::new("runtime").unwrap();
    let server = botfleet_testkit::PostgresServer::start().unwrap();
    let file = fleet_file(&e, "db", 1, |b| b).database(server.url("postgres"));
    let fleet = start(&file.parse().unwrap(), &dir).await;
    e.inject_message(TOKEN, 1, 1, "#1").unwrap();
    assert!(until(Duration::from_secs(30), || replies(&e, 1).len() == 1).await);
    server.stop().unwrap();
    // Its replacement starts while the database is down: it waits for it
    // (heartbeats go on, 200 ms apart), within `ready_timeout` (20 s).
    let (_, _, pid) = fleet.workers()[0];
    rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.start_again().unwrap();
    e.inject_message(TOKEN, 2, 2, "#2").unwrap();
    assert!(
        until(Duration::from_secs(30), || replies(&e, 2) == ["echo #2"]).await,
        "{:?}",
        fleet.status().await
    );
    let report = fleet.shutdown().await;
    assert_eq!(
        report.bots[0].restarts, 1,
        "only the kill: {:?}",
        report.bots[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autoscaler_does_not_chase_a_backlog_of_telegrams_limits() {
    let e = emulator(3).await;
    let dir = TempDir::new("runtime").unwrap();
    let file = fleet_file(&e, "echo", 1, |b| {
        b.workers(1, 4)
            .set("scaling.target_queue_per_worker", 2)
            .set("scaling.tick", "200ms")
    });
    let fleet = start(&file.parse().unwrap(), &dir).await;
    // 30 messages to 3 chats: Telegram allows each chat one a second, so
    // they wait for the limiter, which more workers cannot speed up.
    for n in 1..=10 {
        for chat in 1..=3 {
            e.inject_message(TOKEN, chat, chat, &format!("#{n}"))
                .unwrap();
        }
    }
    let mut most = 0;
    for _ in 0..30 {
        most = most.max(fleet.workers().len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = &fleet.status().await[0];
    assert!(s.unacked > 10, "the backlog is there: {s:?}");
    assert_eq!(most, 1, "scaled up on a limiter backlog: {s:?}");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_removed_by_a_reload_keeps_its_queue_in_the_journal_for_its_return() {
    let e = emulator(1).await;
    let dir = TempDir::new("runtime").unwrap();
    let with_bot = fleet_file(&e, "echo", 1, |b| b.env("BOTFLEET_TEST_DELAY_MS", "300"));
    let mut fleet = start(&with_bot.parse().unwrap(), &dir).await;
    for n in 1..=8 {
        e.inject_message(TOKEN, 1, 1, &format!("#{n}")).unwrap();
    }
    assert!(until(Duration::from_secs(30), || !replies(&e, 1).is_empty()).await);
    // The bot goes: what it holds is finished, the rest waits in its
    // journal (Telegram has confirmed it all).
    let mut without: botfleet_config::FleetConfig = with_bot.parse().unwrap();
    without.bots.clear();
    let done = fleet.reload(&without).await;
    assert_eq!(done.removed, ["echo"], "{done:?}");
    let answered = replies(&e, 1).len();
    assert!(
        answered < 8,
        "all answered before the reload; the test proves nothing"
    );
    assert_eq!(e.pending_updates(TOKEN), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        replies(&e, 1).len(),
        answered,
        "nothing answered while it is away"
    );
    // It comes back: the rest, in order.
    let done = fleet.reload(&with_bot.parse().unwrap()).await;
    assert_eq!(done.added, ["echo"], "{done:?}");
    assert!(until(Duration::from_secs(30), || replies(&e, 1).len() >= 8).await);
    let expected: Vec<String> = (1..=8).map(|n| format!("echo #{n}")).collect();
    assert_eq!(replies(&e, 1), expected);
    fleet.shutdown().await;
}

/// The Python example acks "retry" when its call got no answer from
/// Telegram, a 429 or a 5xx, and "failed" for other errors.
#[test]
fn the_python_worker_example_asks_for_a_retry_when_telegram_is_away() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-worker");
    let check = r#"
import worker
cases = [({"ok": True, "body": {}}, "handled"),
         ({"ok": False, "body": {"error_code": 0}}, "retry"),
         ({"ok": False, "body": {"error_code": 502}}, "retry"),
         ({"ok": False, "body": {"error_code": 429}}, "retry"),
         ({"ok": False, "body": {"error_code": 400}}, "failed"),
         ({"ok": False, "body": {"error_code": 403}}, "failed")]
for result, want in cases:
    got = worker.outcome(result)
    assert got == want, (result, got, want)
print("ok")
"#;
    #[expect(
        clippy::disallowed_methods,
        reason = "runs the example with the system's Python"
    )]
    let output = std::process::Command::new("python3")
        .args(["-c", check])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The count of `name`'s histogram for `bot`'s slot `worker` in the
/// installed registry (0 when it has none).
fn forwarded_count(name: &str, worker: &str) -> u64 {
    let Some(registry) = botfleet_monitor::installed() else {
        return 0;
    };
    registry
        .snapshot()
        .series
        .into_iter()
        .filter(|s| {
            s.name == name
                && s.labels.contains(&("bot".to_owned(), "echo".to_owned()))
                && s.labels.contains(&("worker".to_owned(), worker.to_owned()))
        })
        .map(|s| match s.value {
            botfleet_monitor::registry::Value::Histogram { count, .. } => count,
            _ => 0,
        })
        .sum()
}

/// The value of `name`'s gauge for `bot`'s slot `worker` in the installed
/// registry.
fn forwarded_gauge(name: &str, worker: &str) -> Option<f64> {
    botfleet_monitor::installed()?
        .snapshot()
        .series
        .into_iter()
        .find(|s| {
            s.name == name
                && s.labels.contains(&("bot".to_owned(), "echo".to_owned()))
                && s.labels.contains(&("worker".to_owned(), worker.to_owned()))
        })
        .and_then(|s| match s.value {
            botfleet_monitor::registry::Value::Gauge(v) => Some(v),
            _ => None,
        })
}

/// A worker's own metrics (here its database's query times) reach the
/// supervisor's registry labelled by bot and slot, and a worker killed and
/// started again keeps its slot's label, its counts adding to the old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_metrics_reach_the_monitor_and_survive_a_restart_under_the_same_slot() {
    botfleet_monitor::install(botfleet_monitor::registry::DEFAULT_SERIES_CAP)
        .expect("the tests install no other recorder");
    const QUERIES: &str = "botfleet_db_query_duration_seconds";
    let e = emulator(6).await;
    let dir = TempDir::new("runtime").unwrap();
    let server = botfleet_testkit::PostgresServer::start().unwrap();
    let file = fleet_file(&e, "db", 1, |b| b).database(server.url("postgres"));
    let fleet = start(&file.parse().unwrap(), &dir).await;
    for chat in 1..=3 {
        e.inject_message(TOKEN, chat, chat, "#1").unwrap();
    }
    assert!(
        until(Duration::from_secs(30), || forwarded_count(QUERIES, "0")
            >= 3)
        .await,
        "{:?}",
        botfleet_monitor::installed().map(|r| r
            .snapshot()
            .series
            .into_iter()
            .map(|s| (s.name, s.labels))
            .collect::<Vec<_>>())
    );
    // The pool's gauges too, exported by the SDK each second.
    assert!(
        until(Duration::from_secs(10), || forwarded_gauge(
            "botfleet_db_pool_connections_max",
            "0"
        )
        .is_some_and(|v| v >= 1.0))
        .await,
        "the worker's pool gauges never reached the monitor"
    );
    let before = forwarded_count(QUERIES, "0");
    let (_, _, pid) = fleet.workers()[0];
    rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    for chat in 4..=6 {
        e.inject_message(TOKEN, chat, chat, "#1").unwrap();
    }
    assert!(
        until(Duration::from_secs(30), || forwarded_count(QUERIES, "0")
            >= before + 3)
        .await,
        "the restarted worker's queries did not add to its slot's: {} then {}",
        before,
        forwarded_count(QUERIES, "0")
    );
    assert_eq!(
        forwarded_count(QUERIES, "1"),
        0,
        "a second label for one slot"
    );
    fleet.shutdown().await;
    // The bot is stopped (its actor ends after `shutdown` returns), and
    // its slots' series leave with it.
    assert!(
        until(Duration::from_secs(5), || forwarded_count(QUERIES, "0")
            == 0)
        .await
    );
}
