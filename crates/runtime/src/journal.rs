//! The ingest journal of one bot: every update is written here, durably,
//! before its offset is confirmed to Telegram (or its webhook request is
//! answered), and leaves it only when a worker acked it (invariant 1).
//!
//! One append-only file per bot, `<data dir>/journal/<bot>.journal`, of
//! records `[length u32][crc32 u32][kind u8][update id i64][key i64][JSON]`
//! (big-endian; the length counts what follows the checksum). An `update`
//! record holds an update; an `ack` record (no JSON) removes it; a `mark`
//! record carries the highest update id ever journaled across compactions;
//! a `strike` record (its key the count) says how many times a live update
//! crashed its worker or ran past its deadline, so a supervisor's crash
//! does not give a poison update its attempts back.
//! A torn or corrupt tail (a crash in mid-write) is cut off at the first
//! record whose length or checksum does not hold.
//!
//! One thread owns the file. It takes whatever was queued since its last
//! write, writes it in one go, and syncs the data (`fdatasync`) when an
//! append waits for it: a group commit, so a burst costs one sync. Acks are
//! written in the same batches but never waited for; after a crash only
//! updates whose ack had not reached the file yet may be handed out again.
//! When the file is four times what is live and over 16 MiB, the thread
//! rewrites the live records into a new file and renames it over the old.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use botfleet_protocol::Json;
use tokio::sync::{Notify, mpsc, oneshot};

/// An update as ingest hands it on: `(update id, routing key, update)`.
pub type Entry = (i64, i64, Json);

const KIND_UPDATE: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_MARK: u8 = 3;
const KIND_STRIKE: u8 = 4;
/// Kind, update id and key.
const FIXED: usize = 1 + 8 + 8;
/// The largest record read back (an update is at most a few MiB).
const MAX_RECORD: usize = 64 << 20;
/// Compaction: a file over this size...
const COMPACT_OVER: u64 = 16 << 20;
/// ...and this many times the bytes that are live.
const COMPACT_RATIO: u64 = 4;
/// Updates a bot's journal holds, at most, before ingest waits for acks.
pub const MAX_DEPTH: usize = 10_000;
/// Update ids acked recently, remembered to drop a second delivery of one
/// (a webhook retry, the first poll after a crash).
const REMEMBER_ACKED: usize = 100_000;

/// What the journal's thread is asked.
enum Op {
    /// Write these updates (the ones not already live, nor recently acked
    /// unless `force`), sync, and answer with the ones written.
    Append {
        updates: Vec<Entry>,
        force: bool,
        reply: oneshot::Sender<std::io::Result<Vec<Entry>>>,
    },
    /// Remove an update.
    Ack(i64),
    /// A live update's strikes so far.
    Strike(i64, u32),
}

/// A bot's journal (cheap to share: the file is the thread's).
#[derive(Clone)]
pub struct Journal {
    ops: mpsc::UnboundedSender<Op>,
    state: Arc<Shared>,
}

/// What the thread publishes.
struct Shared {
    /// Updates written and not acked.
    depth: AtomicUsize,
    /// The most that may be live before ingest waits.
    max_depth: usize,
    /// Told when an ack makes room.
    room: Notify,
    /// The highest update id ever journaled (0 when none).
    high: AtomicI64,
    /// When the oldest live update was written, as milliseconds since the
    /// journal opened (`i64::MAX` when none is live).
    oldest_ms: AtomicI64,
    opened: tokio::time::Instant,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

/// What a journal held when it was opened.
pub struct Recovered {
    /// Updates written and never acked, in update id order.
    pub pending: Vec<Entry>,
    /// The highest update id ever journaled: ingest asks Telegram for what
    /// comes after it.
    pub high: i64,
    /// Bytes of a torn tail cut off.
    pub cut: u64,
    /// The strikes of pending updates that have any.
    pub strikes: HashMap<i64, u32>,
}

impl Journal {
    /// Opens (or creates) `bot`'s journal in `dir`, reads back what it
    /// holds, and starts its thread.
    pub fn open(dir: &Path, bot: &str, max_depth: usize) -> std::io::Result<(Journal, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{bot}.journal"));
        let (log, recovered) = Log::open(&path)?;
        let state = Arc::new(Shared {
            depth: AtomicUsize::new(recovered.pending.len()),
            max_depth: max_depth.max(1),
            room: Notify::new(),
            high: AtomicI64::new(recovered.high),
            oldest_ms: AtomicI64::new(if recovered.pending.is_empty() {
                i64::MAX
            } else {
                0
            }),
            opened: tokio::time::Instant::now(),
        });
        let (ops, rx) = mpsc::unbounded_channel();
        let thread_state = state.clone();
        let name = bot.to_owned();
        std::thread::Builder::new()
            .name(format!("journal-{bot}"))
            .spawn(move || log.run(rx, &thread_state, &name))?;
        Ok((Journal { ops, state }, recovered))
    }

    /// Writes `updates` durably and returns the ones that are new (an
    /// update already live, or acked recently, is dropped).
    pub async fn append(&self, updates: Vec<Entry>) -> std::io::Result<Vec<Entry>> {
        self.write(updates, false).await
    }

    /// Writes `updates` durably even if they were acked before (a dead
    /// letter handed back); returns the ones not live already.
    pub(crate) async fn replay(&self, updates: Vec<Entry>) -> std::io::Result<Vec<Entry>> {
        self.write(updates, true).await
    }

    async fn write(&self, updates: Vec<Entry>, force: bool) -> std::io::Result<Vec<Entry>> {
        let (reply, rx) = oneshot::channel();
        self.ops
            .send(Op::Append {
                updates,
                force,
                reply,
            })
            .map_err(|_| std::io::Error::other("the journal is closed"))?;
        rx.await
            .map_err(|_| std::io::Error::other("the journal stopped"))?
    }

    /// Removes an acked update (not waited for).
    pub fn ack(&self, update_id: i64) {
        let _ = self.ops.send(Op::Ack(update_id));
    }

    /// Records that a live update has `strikes` strikes (not waited for: a
    /// strike lost in a crash costs one more attempt, nothing else).
    pub(crate) fn strike(&self, update_id: i64, strikes: u32) {
        let _ = self.ops.send(Op::Strike(update_id, strikes));
    }

    /// Updates written and not acked.
    pub fn depth(&self) -> usize {
        self.state.depth.load(Ordering::Relaxed)
    }

    /// How long the oldest live update has waited (zero when none).
    pub(crate) fn oldest_age(&self) -> std::time::Duration {
        let ms = self.state.oldest_ms.load(Ordering::Relaxed);
        if ms == i64::MAX {
            return std::time::Duration::ZERO;
        }
        self.state
            .opened
            .elapsed()
            .saturating_sub(std::time::Duration::from_millis(ms.max(0) as u64))
    }

    /// Waits until fewer than `max_depth` updates are live.
    pub(crate) async fn room(&self) {
        loop {
            let notified = self.state.room.notified();
            if self.depth() < self.state.max_depth {
                return;
            }
            notified.await;
        }
    }
}

/// The file and what the thread knows of it.
struct Log {
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    size: u64,
    /// Live update ids, with the size of their records and when they were
    /// written (ms since the journal opened).
    live: BTreeMap<i64, (u64, i64)>,
    live_bytes: u64,
    /// Recently acked ids, oldest first.
    acked: HashSet<i64>,
    acked_order: VecDeque<i64>,
    high: i64,
    /// Strikes of live updates.
    strikes: HashMap<i64, u32>,
}

impl Log {
    fn open(path: &Path) -> std::io::Result<(Log, Recovered)> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut pending: BTreeMap<i64, (u64, Entry)> = BTreeMap::new();
        let mut acked = Vec::new();
        let mut strikes = HashMap::new();
        let mut high = 0;
        let mut good = 0u64;
        let total = file.metadata()?.len();
        {
            let mut reader = BufReader::new(&mut file);
            while let Some((kind, id, key, body, len)) = read_record(&mut reader)? {
                good += len;
                high = high.max(id);
                match kind {
                    KIND_UPDATE => {
                        let text = String::from_utf8(body).map_err(|_| {
                            std::io::Error::other(format!("update {id}: not UTF-8"))
                        })?;
                        let json = Json::parse(text).map_err(|e| {
                            std::io::Error::other(format!("update {id}: not JSON: {e}"))
                        })?;
                        pending.insert(id, (len, (id, key, json)));
                    }
                    KIND_ACK if pending.remove(&id).is_some() => {
                        strikes.remove(&id);
                        acked.push(id);
                    }
                    KIND_STRIKE if pending.contains_key(&id) => {
                        strikes.insert(id, u32::try_from(key).unwrap_or(u32::MAX));
                    }
                    _ => {}
                }
            }
        }
        if good < total {
            // A torn tail: cut it, so the next record starts clean.
            file.set_len(good)?;
            file.sync_data()?;
        }
        let mut log = Log {
            path: path.to_owned(),
            file,
            size: good,
            live: BTreeMap::new(),
            live_bytes: 0,
            acked: HashSet::new(),
            acked_order: VecDeque::new(),
            high,
            strikes: strikes.clone(),
        };
        for id in acked {
            log.remember_acked(id);
        }
        let mut out = Vec::with_capacity(pending.len());
        for (id, (len, entry)) in pending {
            log.live.insert(id, (len, 0));
            log.live_bytes += len;
            out.push(entry);
        }
        Ok((
            log,
            Recovered {
                pending: out,
                high,
                cut: total - good,
                strikes,
            },
        ))
    }

    fn remember_acked(&mut self, id: i64) {
        if self.acked.insert(id) {
            self.acked_order.push_back(id);
            if self.acked_order.len() > REMEMBER_ACKED {
                if let Some(old) = self.acked_order.pop_front() {
                    self.acked.remove(&old);
                }
            }
        }
    }

    /// Serves `ops` until every `Journal` is gone.
    fn run(mut self, mut ops: mpsc::UnboundedReceiver<Op>, state: &Shared, bot: &str) {
        let mut buf = Vec::new();
        while let Some(first) = ops.blocking_recv() {
            let mut batch = vec![first];
            while let Ok(op) = ops.try_recv() {
                batch.push(op);
            }
            buf.clear();
            let now = state.opened.elapsed().as_millis() as i64;
            let mut waiting = Vec::new();
            let mut freed = false;
            for op in batch {
                match op {
                    Op::Append {
                        updates,
                        force,
                        reply,
                    } => {
                        let mut fresh = Vec::with_capacity(updates.len());
                        for entry in updates {
                            let id = entry.0;
                            if self.live.contains_key(&id) || (!force && self.acked.contains(&id)) {
                                continue;
                            }
                            self.acked.remove(&id);
                            let len = encode(&mut buf, KIND_UPDATE, id, entry.1, entry.2.get());
                            self.live.insert(id, (len, now));
                            self.live_bytes += len;
                            self.high = self.high.max(id);
                            fresh.push(entry);
                        }
                        waiting.push((reply, fresh));
                    }
                    Op::Ack(id) => {
                        if let Some((len, _)) = self.live.remove(&id) {
                            self.strikes.remove(&id);
                            self.live_bytes -= len;
                            encode(&mut buf, KIND_ACK, id, 0, "");
                            self.remember_acked(id);
                            freed = true;
                        }
                    }
                    Op::Strike(id, strikes) => {
                        if self.live.contains_key(&id) {
                            self.strikes.insert(id, strikes);
                            encode(&mut buf, KIND_STRIKE, id, i64::from(strikes), "");
                        }
                    }
                }
            }
            let written = self.write(&buf, !waiting.is_empty());
            if let Err(e) = &written {
                tracing::error!(bot, path = %self.path.display(), "cannot write the journal: {e}");
                metrics::counter!("botfleet_journal_errors_total", "bot" => bot.to_owned())
                    .increment(1);
            }
            state.depth.store(self.live.len(), Ordering::Relaxed);
            state.high.store(self.high, Ordering::Relaxed);
            // The smallest live id: the oldest one, but for a webhook's
            // out-of-order deliveries.
            let oldest = self.live.values().next().map_or(i64::MAX, |&(_, at)| at);
            state.oldest_ms.store(oldest, Ordering::Relaxed);
            metrics::gauge!("botfleet_journal_depth", "bot" => bot.to_owned())
                .set(self.live.len() as f64);
            for (reply, fresh) in waiting {
                let _ = reply.send(match &written {
                    Ok(()) => Ok(fresh),
                    Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                });
            }
            if freed {
                state.room.notify_waiters();
            }
            if self.size > COMPACT_OVER && self.size > COMPACT_RATIO * self.live_bytes.max(1) {
                if let Err(e) = self.compact() {
                    tracing::error!(bot, path = %self.path.display(), "cannot compact the journal: {e}");
                }
            }
        }
        let _ = self.file.sync_data();
    }

    /// Appends `buf`; syncs when `durable`.
    fn write(&mut self, buf: &[u8], durable: bool) -> std::io::Result<()> {
        if !buf.is_empty() {
            self.file.write_all(buf)?;
            self.size += buf.len() as u64;
        }
        if durable {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Rewrites the live records into a new file, then renames it over the
    /// old one (the high mark first, so it survives).
    fn compact(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("journal.tmp");
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        let mut buf = Vec::new();
        let mut size = encode(&mut buf, KIND_MARK, self.high, 0, "");
        out.write_all(&buf)?;
        let mut reader = BufReader::new(File::open(&self.path)?);
        while let Some((kind, id, key, body, _)) = read_record(&mut reader)? {
            if kind == KIND_UPDATE && self.live.contains_key(&id) {
                buf.clear();
                let text = String::from_utf8_lossy(&body);
                size += encode(&mut buf, KIND_UPDATE, id, key, &text);
                if let Some(&n) = self.strikes.get(&id) {
                    size += encode(&mut buf, KIND_STRIKE, id, i64::from(n), "");
                }
                out.write_all(&buf)?;
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        self.size = size;
        Ok(())
    }
}

/// Appends one record to `buf`; returns its size.
fn encode(buf: &mut Vec<u8>, kind: u8, id: i64, key: i64, body: &str) -> u64 {
    let start = buf.len();
    let len = (FIXED + body.len()) as u32;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&[0; 4]);
    let payload = buf.len();
    buf.push(kind);
    buf.extend_from_slice(&id.to_be_bytes());
    buf.extend_from_slice(&key.to_be_bytes());
    buf.extend_from_slice(body.as_bytes());
    let crc = crc32fast::hash(&buf[payload..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    (buf.len() - start) as u64
}

/// One record read back: `(kind, id, key, body, its size)`.
type Record = (u8, i64, i64, Vec<u8>, u64);

/// The next whole record; `None` at the end, or at a torn or corrupt
/// record (the rest is not trusted).
fn read_record(r: &mut impl Read) -> std::io::Result<Option<Record>> {
    let mut head = [0u8; 8];
    if !read_all(r, &mut head)? {
        return Ok(None);
    }
    let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
    if !(FIXED..=MAX_RECORD).contains(&len) {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    if !read_all(r, &mut payload)? || crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    let kind = payload[0];
    let id = i64::from_be_bytes(payload[1..9].try_into().expect("8 bytes"));
    let key = i64::from_be_bytes(payload[9..17].try_into().expect("8 bytes"));
    let body = payload.split_off(FIXED);
    Ok(Some((kind, id, key, body, (8 + len) as u64)))
}

/// Fills `buf`; `false` when the input ends first.
fn read_all(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: i64) -> Entry {
        let json =
            Json::parse(format!(r#"{{"update_id":{id},"message":{{"text":"hi"}}}}"#)).unwrap();
        (id, id % 3, json)
    }

    fn ids(entries: &[Entry]) -> Vec<i64> {
        entries.iter().map(|e| e.0).collect()
    }

    #[tokio::test]
    async fn what_was_not_acked_comes_back_and_acked_updates_do_not() {
        let dir = botfleet_testkit::TempDir::new("journal").unwrap();
        let (j, r) = Journal::open(dir.path(), "echo", 100).unwrap();
        assert!(r.pending.is_empty());
        let fresh = j.append((1..=5).map(update).collect()).await.unwrap();
        assert_eq!(ids(&fresh), [1, 2, 3, 4, 5]);
        // A second delivery of a live one is dropped.
        let fresh = j.append(vec![update(3), update(6)]).await.unwrap();
        assert_eq!(ids(&fresh), [6]);
        j.ack(2);
        j.ack(4);
        // An acked one given again is dropped too.
        let fresh = j.append(vec![update(2)]).await.unwrap();
        assert!(fresh.is_empty());
        assert_eq!(j.depth(), 4);
        drop(j);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (j, r) = Journal::open(dir.path(), "echo", 100).unwrap();
        assert_eq!(ids(&r.pending), [1, 3, 5, 6]);
        assert_eq!(r.high, 6);
        assert_eq!(r.pending[0].2.get(), update(1).2.get());
        assert_eq!(j.depth(), 4);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_the_rest_is_kept() {
        let dir = botfleet_testkit::TempDir::new("journal").unwrap();
        let (j, _) = Journal::open(dir.path(), "echo", 100).unwrap();
        j.append((1..=3).map(update).collect()).await.unwrap();
        drop(j);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let path = dir.path().join("echo.journal");
        let whole = std::fs::read(&path).unwrap();
        // Half a record more, as a crash in mid-write leaves it.
        let mut torn = whole.clone();
        let mut extra = Vec::new();
        encode(&mut extra, KIND_UPDATE, 4, 1, r#"{"update_id":4}"#);
        torn.extend_from_slice(&extra[..extra.len() / 2]);
        std::fs::write(&path, &torn).unwrap();
        let (j, r) = Journal::open(dir.path(), "echo", 100).unwrap();
        assert_eq!(ids(&r.pending), [1, 2, 3]);
        assert_eq!(r.cut, (extra.len() / 2) as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole.len() as u64);
        // A flipped bit in the last record: it and what follows are dropped.
        let fresh = j.append(vec![update(4)]).await.unwrap();
        assert_eq!(ids(&fresh), [4]);
        drop(j);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, r) = Journal::open(dir.path(), "echo", 100).unwrap();
        assert_eq!(ids(&r.pending), [1, 2, 3]);
    }

    #[tokio::test]
    async fn compaction_keeps_the_live_updates_and_the_high_mark() {
        let dir = botfleet_testkit::TempDir::new("journal").unwrap();
        let (j, _) = Journal::open(dir.path(), "echo", 1_000_000).unwrap();
        let big = "x".repeat(4000);
        let mut id = 0;
        // About 24 MiB written, all but the last update acked.
        for _ in 0..60 {
            let batch: Vec<Entry> = (0..100)
                .map(|_| {
                    id += 1;
                    let json = Json::parse(format!(r#"{{"update_id":{id},"t":"{big}"}}"#)).unwrap();
                    (id, 1, json)
                })
                .collect();
            j.append(batch).await.unwrap();
            for acked in id - 99..id {
                j.ack(acked);
            }
            // The live one of each batch has a strike; it must survive.
            j.strike(id, 2);
        }
        j.append(vec![update(id + 1)]).await.unwrap();
        drop(j);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let size = std::fs::metadata(dir.path().join("echo.journal"))
            .unwrap()
            .len();
        // 24 MiB written; compacted once past 16 MiB.
        assert!(size < 12 << 20, "compacted: {size} bytes");
        let (_, r) = Journal::open(dir.path(), "echo", 100).unwrap();
        let mut want: Vec<i64> = (1..=60).map(|b| b * 100).collect();
        want.push(id + 1);
        assert_eq!(ids(&r.pending), want);
        assert_eq!(r.high, id + 1);
        assert_eq!(r.strikes.len(), 60);
        assert!(r.strikes.values().all(|&n| n == 2));
    }

    #[tokio::test]
    async fn strikes_of_live_updates_survive_a_restart_and_leave_with_the_ack() {
        let dir = botfleet_testkit::TempDir::new("journal").unwrap();
        let (j, _) = Journal::open(dir.path(), "echo", 100).unwrap();
        j.append((1..=3).map(update).collect()).await.unwrap();
        j.strike(1, 1);
        j.strike(1, 2);
        j.strike(2, 1);
        j.ack(2);
        // Not live: nothing to remember.
        j.strike(9, 1);
        drop(j);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (_, r) = Journal::open(dir.path(), "echo", 100).unwrap();
        assert_eq!(ids(&r.pending), [1, 3]);
        assert_eq!(r.strikes, HashMap::from([(1, 2)]));
    }

    #[tokio::test]
    async fn ingest_waits_for_room() {
        let dir = botfleet_testkit::TempDir::new("journal").unwrap();
        let (j, _) = Journal::open(dir.path(), "echo", 3).unwrap();
        j.append((1..=3).map(update).collect()).await.unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), j.room()).await;
        assert!(waiting.is_err(), "full");
        j.ack(1);
        tokio::time::timeout(std::time::Duration::from_secs(5), j.room())
            .await
            .expect("room after an ack");
    }
}
