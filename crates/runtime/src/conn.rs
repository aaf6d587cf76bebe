//! Worker connections: the handshake, reading frames, the coalescing
//! writer, heartbeats, and Bot API calls handed to the sender.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use botfleet_protocol::{
    Encoding, FrameReader, Hello, Message, PROTOCOL_VERSION, ReadError, Welcome, encode_frame,
    error_codes, write_coalesced,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bot::{BotCtx, Event};
use crate::slot::SlotShared;

/// The workers the supervisor started, by worker id.
pub(crate) type Registry = Arc<Mutex<HashMap<u32, (Arc<BotCtx>, Arc<SlotShared>)>>>;

static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

/// Accepts worker connections until the listener fails.
pub(crate) async fn accept(listener: UnixListener, registry: Registry) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, registry.clone()));
            }
            Err(e) => {
                tracing::error!("the worker socket failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers `error` in `encoding` and closes.
async fn refuse(
    stream: &mut tokio::net::unix::OwnedWriteHalf,
    encoding: Encoding,
    code: u16,
    message: String,
) {
    metrics::counter!("botfleet_ipc_refused_total", "code" => code.to_string()).increment(1);
    let mut frame = Vec::new();
    encode_frame(encoding, &[Message::Error { code, message }], &mut frame);
    let _ = stream.write_all(&frame).await;
    let _ = stream.shutdown().await;
}

/// The handshake: a `hello` of this protocol version from a worker this
/// supervisor started. Anything else is refused with an `error` that says
/// why, and the connection ends (`None`).
async fn handshake(
    reader: &mut FrameReader<tokio::net::unix::OwnedReadHalf>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
    registry: &Registry,
) -> Option<(Encoding, Hello, Arc<BotCtx>, Arc<SlotShared>)> {
    let (encoding, hello) = match reader.read().await {
        Ok(Some((encoding, mut messages))) => match messages.remove(0) {
            Message::Hello(h) if messages.is_empty() => (encoding, h),
            other => {
                let message = format!("expected hello first, got {}", other.name());
                refuse(write, encoding, error_codes::UNEXPECTED, message).await;
                return None;
            }
        },
        Ok(None) => return None,
        Err(e) => {
            frame_error(None, &e);
            if let Some(code) = e.code() {
                refuse(write, Encoding::Binary, code, e.to_string()).await;
            }
            return None;
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let message = format!(
            "protocol version {} is not spoken here; this supervisor speaks {PROTOCOL_VERSION}",
            hello.version
        );
        refuse(write, encoding, error_codes::VERSION, message).await;
        return None;
    }
    let found = registry.lock().get(&hello.worker_id).cloned();
    let Some((bot, slot)) = found else {
        let message = format!(
            "worker {} was not started by this supervisor",
            hello.worker_id
        );
        refuse(write, encoding, error_codes::UNKNOWN_WORKER, message).await;
        return None;
    };
    Some((encoding, hello, bot, slot))
}

async fn serve(stream: UnixStream, registry: Registry) {
    let (read, mut write) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let Some((encoding, hello, bot, slot)) = handshake(&mut reader, &mut write, &registry).await
    else {
        return;
    };
    let worker = hello.worker_id;
    let conn = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let name = bot.name.clone();
    let (outbox, mut rx) = mpsc::unbounded_channel();
    let writer_bot = name.clone();
    let writer = tokio::spawn(async move {
        write_coalesced(&mut rx, &mut write, encoding, |w| {
            metrics::counter!("botfleet_ipc_frames_total", "bot" => writer_bot.clone(), "direction" => "out")
                .increment(w.frames as u64);
            metrics::histogram!("botfleet_ipc_batch_size", "bot" => writer_bot.clone())
                .record(w.items as f64);
        })
        .await
    });
    let heartbeat = bot.config.supervision.heartbeat_interval;
    let _ = outbox.send(Message::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        worker_id: worker,
        heartbeat_ms: u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX),
    }));
    bot.send(Event::Connected {
        worker,
        conn,
        outbox: outbox.clone(),
    });
    tracing::debug!(bot = %name, worker, pid = hello.pid, "worker connected");
    let mut last_beat = Instant::now();
    let mut check = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            read = reader.read() => {
                let messages = match read {
                    Ok(Some((_, messages))) => messages,
                    Ok(None) => break,
                    Err(ReadError::Io(e)) => {
                        tracing::debug!(bot = %name, worker, "the worker's connection closed: {e}");
                        break;
                    }
                    Err(e) => {
                        frame_error(Some(&name), &e);
                        tracing::error!(bot = %name, worker, "bad frame from the worker, closing its connection: {e}");
                        if let Some(code) = e.code() {
                            let _ = outbox.send(Message::Error { code, message: e.to_string() });
                        }
                        break;
                    }
                };
                metrics::counter!("botfleet_ipc_frames_total", "bot" => name.clone(), "direction" => "in").increment(1);
                last_beat = Instant::now();
                for m in messages {
                    match m {
                        Message::Ready => {
                            slot.ready.notify_one();
                            bot.send(Event::Ready { worker, conn });
                        }
                        Message::Acks(acks) => bot.send(Event::Acks { worker, acks }),
                        Message::Actions(actions) => {
                            for action in actions {
                                let client = bot.client.clone();
                                let outbox = outbox.clone();
                                tokio::spawn(async move {
                                    let result = crate::sender::perform(&client, action).await;
                                    let _ = outbox.send(Message::Results(vec![result]));
                                });
                            }
                        }
                        Message::Heartbeat(_) => {}
                        Message::Metrics(metrics) => bot.send(Event::Metrics { worker, metrics }),
                        Message::Stats(values) => bot.send(Event::Stats { worker, values }),
                        Message::Drained => bot.send(Event::Drained { worker }),
                        Message::Error { code, message } => {
                            tracing::error!(bot = %name, worker, code, "the worker reports an error: {message}");
                        }
                        other => {
                            tracing::error!(bot = %name, worker, message = other.name(), "a message out of turn from the worker; closing its connection");
                            let _ = outbox.send(Message::Error {
                                code: error_codes::UNEXPECTED,
                                message: format!("{} is not a message a worker sends", other.name()),
                            });
                            break;
                        }
                    }
                }
            }
            _ = check.tick() => {
                if last_beat.elapsed() > heartbeat * 3 {
                    metrics::counter!("botfleet_heartbeat_misses_total", "bot" => name.clone()).increment(1);
                    tracing::error!(bot = %name, worker, "no heartbeat for {:?}; restarting the worker", last_beat.elapsed());
                    slot.kill.notify_one();
                    break;
                }
            }
        }
    }
    bot.send(Event::Gone { worker, conn });
    drop(outbox);
    // Let a final error message reach the worker.
    let _ = tokio::time::timeout(Duration::from_millis(500), writer).await;
}

fn frame_error(bot: Option<&str>, e: &ReadError) {
    if matches!(e, ReadError::Io(_)) {
        return;
    }
    let kind = match e {
        ReadError::TooLarge { .. } => "too_large",
        ReadError::Truncated { .. } => "truncated",
        _ => "malformed",
    };
    metrics::counter!("botfleet_ipc_frame_errors_total", "bot" => bot.unwrap_or("-").to_owned(), "kind" => kind)
        .increment(1);
}
