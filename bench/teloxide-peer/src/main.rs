//! The teloxide peer of `botfleet bench telegram`.
//!
//! Reads one job as JSON on stdin, sends every message of it through
//! teloxide-core's `Throttle` adaptor to the emulator, and prints one JSON
//! line per delivered message on stdout. The benchmark reads the emulator's
//! log for everything else (429s, duplicates, order), so both clients are
//! judged by the same server.
//!
//! The send loop is what a careful teloxide user writes: one task per chat
//! sending that chat's messages in order; `Throttle` itself waits out a 429
//! and retries it; any other error (the emulator's 500 bursts) is retried
//! after 200 ms, up to 20 times, as botfleet's client is configured in the
//! same benchmark.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use teloxide_core::adaptors::throttle::Limits;
use teloxide_core::payloads::SendMessageSetters;
use teloxide_core::requests::{Request, Requester, RequesterExt};
use teloxide_core::types::ChatId;
use teloxide_core::{ApiError, Bot, RequestError};
use tokio::io::AsyncReadExt;

#[derive(Deserialize)]
struct Job {
    api_url: String,
    tokens: Vec<String>,
    /// `(chat id, messages)` in the order the tasks are started.
    chats: Vec<(i64, u32)>,
    paid: bool,
    /// teloxide's limit for supergroups and channels (its default is 10).
    group_per_min: u32,
}

#[derive(Serialize)]
struct Sent {
    chat: i64,
    latency_ms: f64,
    done_s: f64,
}

#[derive(Serialize)]
struct Failed<'a> {
    chat: i64,
    error: &'a str,
}

/// The teloxide-core version this peer was built with, from its lock file.
fn teloxide_version() -> &'static str {
    let lock = include_str!("../Cargo.lock");
    lock.split("[[package]]")
        .find(|p| p.contains("name = \"teloxide-core\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map_or("unknown", |v| v.trim_matches('"'))
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("teloxide-core {}", teloxide_version());
        return;
    }
    let mut input = String::new();
    if let Err(e) = tokio::io::stdin().read_to_string(&mut input).await {
        eprintln!("botfleet-teloxide-peer: cannot read the job on stdin: {e}");
        std::process::exit(2);
    }
    let job: Job = match serde_json::from_str(&input) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("botfleet-teloxide-peer: the job on stdin is not valid: {e}");
            std::process::exit(2);
        }
    };
    let api_url: reqwest::Url = match job.api_url.parse() {
        Ok(url) => url,
        Err(e) => {
            eprintln!("botfleet-teloxide-peer: bad api_url: {e}");
            std::process::exit(2);
        }
    };
    let limits = Limits {
        messages_per_min_channel_or_supergroup: job.group_per_min,
        ..Limits::default()
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for token in &job.tokens {
        let bot = Bot::new(token.clone())
            .set_api_url(api_url.clone())
            .throttle(limits.clone());
        for &(chat, n) in &job.chats {
            let bot = bot.clone();
            let paid = job.paid;
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for k in 1..=n {
                    let text = format!("message #{k}");
                    let t = Instant::now();
                    let mut attempt = 0;
                    loop {
                        let mut request = bot.send_message(ChatId(chat), text.clone());
                        if paid {
                            request = request.allow_paid_broadcast(true);
                        }
                        match request.send().await {
                            Ok(_) => {
                                out.push(Ok(Sent {
                                    chat,
                                    latency_ms: t.elapsed().as_secs_f64() * 1e3,
                                    done_s: start.elapsed().as_secs_f64(),
                                }));
                                break;
                            }
                            Err(e) if attempt < 20 && retryable(&e) => {
                                attempt += 1;
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            Err(e) => {
                                out.push(Err((chat, e.to_string())));
                                break;
                            }
                        }
                    }
                }
                out
            }));
        }
    }
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut failed = 0;
    for task in tasks {
        let results = match task.await {
            Ok(results) => results,
            Err(e) => {
                eprintln!("botfleet-teloxide-peer: a send task panicked: {e}");
                std::process::exit(1);
            }
        };
        for r in results {
            let line = match r {
                Ok(sent) => serde_json::to_string(&sent),
                Err((chat, error)) => {
                    failed += 1;
                    serde_json::to_string(&Failed {
                        chat,
                        error: &error,
                    })
                }
            };
            let line = line.expect("plain structs serialize");
            if writeln!(stdout, "{line}").is_err() {
                std::process::exit(1);
            }
        }
    }
    if failed > 0 {
        eprintln!("botfleet-teloxide-peer: {failed} messages failed");
    }
}

/// Server errors and network errors are worth another try; a 429 that
/// reaches here was already retried by `Throttle`, so it is retried too.
fn retryable(e: &RequestError) -> bool {
    match e {
        RequestError::Api(ApiError::Unknown(_)) => true,
        RequestError::Api(_) => false,
        _ => true,
    }
}
