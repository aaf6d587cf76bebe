//! Broadcasts: one message to many chats, at the broadcast priority (so
//! replies to users go first), with progress while it runs and a report at
//! the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use frankenstein::methods::SendMessageParams;
use frankenstein::types::ChatId;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::limiter::Priority;
use crate::{Client, ErrorKind};

/// Sends waiting in the limiter at once for one broadcast: enough to keep
/// every window full, few enough not to crowd the scheduler.
const WAITING: usize = 256;

/// How far a broadcast has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Chats to send to.
    pub total: u64,
    /// Delivered so far.
    pub sent: u64,
    /// Failed so far.
    pub failed: u64,
}

/// What a broadcast did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct BroadcastReport {
    /// Delivered.
    pub sent: u64,
    /// Failed, by reason (`blocked`, `chat_not_found`, `rejected`, ...).
    pub failed: BTreeMap<&'static str, u64>,
    /// Group chats that had become supergroups, sent to at their new id.
    pub migrated: Vec<(i64, i64)>,
    /// How long it took.
    pub duration: Duration,
}

/// A broadcast under way.
#[derive(Debug)]
pub struct Broadcast {
    progress: watch::Receiver<Progress>,
    task: JoinHandle<BroadcastReport>,
}

impl Broadcast {
    /// The progress now.
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// A receiver that sees every change of the progress.
    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Waits for the end; the report.
    pub async fn finish(self) -> BroadcastReport {
        self.task.await.unwrap_or_default()
    }
}

impl Client {
    /// Sends `message` (its `chat_id` is replaced) to every chat of
    /// `chats`, at the broadcast priority. A group that became a supergroup
    /// is sent to at its new id; other failures are counted by reason, and
    /// the broadcast goes on.
    pub fn broadcast(&self, chats: Vec<i64>, message: SendMessageParams) -> Broadcast {
        let total = chats.len() as u64;
        let (tx, rx) = watch::channel(Progress {
            total,
            ..Progress::default()
        });
        let client = self.clone();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let slots = Arc::new(Semaphore::new(WAITING));
            let tx = Arc::new(tx);
            let mut sends = Vec::with_capacity(chats.len());
            for chat in chats {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (client, tx) = (client.clone(), tx.clone());
                let mut params = message.clone();
                sends.push(tokio::spawn(async move {
                    let _slot = slot;
                    params.chat_id = ChatId::Integer(chat);
                    let mut result = client.send_message_as(&params, Priority::Broadcast).await;
                    let mut migrated = None;
                    if let Err(e) = &result {
                        if let ErrorKind::Migrated(to) = e.kind {
                            params.chat_id = ChatId::Integer(to);
                            migrated = Some((chat, to));
                            result = client.send_message_as(&params, Priority::Broadcast).await;
                        }
                    }
                    let reason = result.as_ref().err().map(|e| reason(&e.kind));
                    tx.send_modify(|p| match reason {
                        None => p.sent += 1,
                        Some(_) => p.failed += 1,
                    });
                    (reason, migrated)
                }));
            }
            let mut report = BroadcastReport::default();
            for send in sends {
                let Ok((reason, migrated)) = send.await else {
                    continue;
                };
                match reason {
                    None => report.sent += 1,
                    Some(r) => *report.failed.entry(r).or_default() += 1,
                }
                report.migrated.extend(migrated);
            }
            report.duration = start.elapsed();
            report
        });
        Broadcast { progress: rx, task }
    }
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Blocked => "blocked",
        ErrorKind::ChatNotFound => "chat_not_found",
        ErrorKind::Migrated(_) => "migrated_twice",
        ErrorKind::Rejected(_) => "rejected",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::Timeout(_) => "timeout",
        ErrorKind::Server { .. } | ErrorKind::Connect(_) | ErrorKind::Transport(_) => "unavailable",
        _ => "other",
    }
}
