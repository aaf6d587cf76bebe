//! Frames: a 4-byte big-endian length, then the payload. Reading them,
//! writing them, and the writer that coalesces whatever is queued into one
//! frame (invariant 6).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::{DecodeError, ReadError};
use crate::message::Message;
use crate::{binary, json};

/// The largest frame read by default: 16 MiB.
pub const MAX_FRAME: usize = 16 << 20;

/// A frame's buffer starts at this size and doubles as its bytes arrive.
const GROW_FROM: usize = 64 << 10;
/// A reader keeps a buffer up to this size between frames; a larger one
/// (left by a large frame) is freed.
const KEEP_BUFFER: usize = 1 << 20;

/// A frame's payload encoding, told by its first byte (`0xBF` binary, `[`
/// JSON). A worker picks one with its hello; the supervisor answers in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The compact encoding, for Rust workers.
    Binary,
    /// A JSON array of message objects, for workers in other languages.
    Json,
}

/// Appends one frame holding `messages` to `out`.
pub fn encode_frame(encoding: Encoding, messages: &[Message], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match encoding {
        Encoding::Binary => binary::encode(messages, out),
        Encoding::Json => json::encode(messages, out),
    }
    let len = u32::try_from(out.len() - start - 4).expect("frames stay under 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Decodes a payload (without its length prefix).
pub fn decode_payload(payload: &[u8]) -> Result<(Encoding, Vec<Message>), DecodeError> {
    decode(payload, true)
}

fn decode(payload: &[u8], check_json: bool) -> Result<(Encoding, Vec<Message>), DecodeError> {
    match payload.first() {
        Some(&binary::MAGIC) => Ok((Encoding::Binary, binary::decode(payload, check_json)?)),
        Some(b'[') => Ok((Encoding::Json, json::decode(payload)?)),
        Some(other) => Err(DecodeError::new(
            0,
            format!("unknown encoding byte 0x{other:02x} (0xBF binary, '[' JSON)"),
        )),
        None => Err(DecodeError::new(0, "an empty frame")),
    }
}

/// Reads frames from a stream.
///
/// [`FrameReader::read`] is cancel-safe: a frame's bytes read so far are
/// kept in the reader, so a `read` dropped in a `select!` loses nothing and
/// the next call goes on where it stopped.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
    check_json: bool,
    /// The length prefix, and how many of its bytes are in.
    head: [u8; 4],
    head_got: usize,
    /// The payload's length once the prefix is in, and how much of it is
    /// in `buf`.
    body: Option<usize>,
    got: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Frames of at most [`MAX_FRAME`] bytes from `inner`.
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            max: MAX_FRAME,
            buf: Vec::new(),
            check_json: true,
            head: [0; 4],
            head_got: 0,
            body: None,
            got: 0,
        }
    }

    /// Takes the JSON documents of binary frames (updates, call results)
    /// as they come, without checking that they are JSON: a worker reading
    /// its supervisor does, since every document is parsed or passed on
    /// later, which checks it, and the check costs as much as the rest of
    /// the IPC of an update. Lengths, UTF-8 and the messages' structure
    /// are still checked.
    pub fn trust_json(mut self) -> Self {
        self.check_json = false;
        self
    }

    /// Changes the largest frame accepted.
    pub fn max_frame(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The next frame's messages and their encoding; `None` when the peer
    /// closed the connection between frames. Cancel-safe (see the type).
    pub async fn read(&mut self) -> Result<Option<(Encoding, Vec<Message>)>, ReadError> {
        let len = match self.body {
            Some(len) => len,
            None => {
                let Some(len) = self.read_len().await? else {
                    return Ok(None);
                };
                if len > self.max {
                    return Err(ReadError::TooLarge { len, max: self.max });
                }
                // A large buffer of an earlier frame is given back.
                if self.buf.capacity() > KEEP_BUFFER {
                    self.buf = Vec::new();
                }
                self.buf.clear();
                self.body = Some(len);
                self.got = 0;
                len
            }
        };
        while self.got < len {
            // The buffer grows with the bytes that arrive (doubling, from
            // GROW_FROM), never to the announced length up front: a peer
            // that announces 16 MiB and sends one byte costs GROW_FROM.
            if self.got == self.buf.len() {
                let more = self.got.max(GROW_FROM).min(len - self.got);
                self.buf.resize(self.got + more, 0);
            }
            match self.inner.read(&mut self.buf[self.got..]).await? {
                0 => return Err(ReadError::Truncated { len, got: self.got }),
                n => self.got += n,
            }
        }
        self.body = None;
        Ok(Some(decode(&self.buf[..len], self.check_json)?))
    }

    /// The bytes the reader holds for the frame in progress (its buffer's
    /// capacity).
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    async fn read_len(&mut self) -> Result<Option<usize>, ReadError> {
        while self.head_got < 4 {
            match self.inner.read(&mut self.head[self.head_got..]).await? {
                0 if self.head_got == 0 => return Ok(None),
                0 => {
                    return Err(ReadError::Truncated {
                        len: 4,
                        got: self.head_got,
                    });
                }
                n => self.head_got += n,
            }
        }
        self.head_got = 0;
        Ok(Some(u32::from_be_bytes(self.head) as usize))
    }
}

/// What one write of the coalescing writer carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Frames written (more than one only when a frame would pass half the
    /// size limit).
    pub frames: usize,
    /// Messages in them, after merging.
    pub messages: usize,
    /// Updates, acks, actions or results in them.
    pub items: usize,
    /// Bytes written.
    pub bytes: usize,
}

/// Writes what `rx` receives to `out`: whatever is queued when a write
/// starts goes out in one frame, and nothing waits to fill a batch
/// (invariant 6). Consecutive lists of the same kind (updates, acks,
/// actions, results) are merged into one message. `on_write` sees each
/// write. Returns when `rx` is closed and drained, or when the socket fails.
pub async fn write_coalesced<W: AsyncWrite + Unpin>(
    rx: &mut mpsc::UnboundedReceiver<Message>,
    out: &mut W,
    encoding: Encoding,
    on_write: impl FnMut(Written),
) -> std::io::Result<()> {
    write_batched(rx, out, encoding, DEFAULT_MAX_BATCH, on_write).await
}

/// The most updates, acks, actions or results one write of
/// [`write_coalesced`] carries.
pub const DEFAULT_MAX_BATCH: usize = 4096;

/// [`write_coalesced`] with at most `max_items` updates, acks, actions or
/// results per write; 1 turns batching off (one item per frame and per
/// write, for measuring what batching buys).
pub async fn write_batched<W: AsyncWrite + Unpin>(
    rx: &mut mpsc::UnboundedReceiver<Message>,
    out: &mut W,
    encoding: Encoding,
    max_items: usize,
    mut on_write: impl FnMut(Written),
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut batch: Vec<Message> = Vec::new();
    let max_items = max_items.max(1);
    while let Some(first) = rx.recv().await {
        batch.clear();
        let mut taken = items(&first);
        push_merged(&mut batch, first);
        // What is already queued rides along; a bound keeps frames sane.
        while taken < max_items {
            match rx.try_recv() {
                Ok(m) => {
                    taken += items(&m);
                    push_merged(&mut batch, m);
                }
                Err(_) => break,
            }
        }
        buf.clear();
        let mut written = Written {
            frames: 0,
            messages: batch.len(),
            items: batch.iter().map(items).sum(),
            bytes: 0,
        };
        // Split only when one frame would pass half the read limit.
        let mut start = 0;
        let mut size = 0;
        for (i, m) in batch.iter().enumerate() {
            size += estimate(m);
            if size > MAX_FRAME / 2 && i > start {
                encode_frame(encoding, &batch[start..i], &mut buf);
                written.frames += 1;
                start = i;
                size = estimate(m);
            }
        }
        encode_frame(encoding, &batch[start..], &mut buf);
        written.frames += 1;
        written.bytes = buf.len();
        out.write_all(&buf).await?;
        out.flush().await?;
        on_write(written);
    }
    Ok(())
}

fn push_merged(batch: &mut Vec<Message>, m: Message) {
    match (batch.last_mut(), m) {
        (Some(Message::Updates(a)), Message::Updates(b)) => a.extend(b),
        (Some(Message::Acks(a)), Message::Acks(b)) => a.extend(b),
        (Some(Message::Actions(a)), Message::Actions(b)) => a.extend(b),
        (Some(Message::Results(a)), Message::Results(b)) => a.extend(b),
        (_, m) => batch.push(m),
    }
}

fn items(m: &Message) -> usize {
    match m {
        Message::Updates(l) => l.len(),
        Message::Acks(l) => l.len(),
        Message::Actions(l) => l.len(),
        Message::Results(l) => l.len(),
        _ => 1,
    }
}

/// About how many bytes `m` takes encoded.
fn estimate(m: &Message) -> usize {
    match m {
        Message::Updates(l) => l.iter().map(|d| d.update.get().len() + 32).sum(),
        Message::Actions(l) => l
            .iter()
            .map(|a| a.params.get().len() + a.method.len() + 32)
            .sum(),
        Message::Results(l) => l.iter().map(|r| r.body.get().len() + 32).sum(),
        Message::Acks(l) => l.len() * 40,
        Message::Hello(h) => {
            h.bot.len() + h.capabilities.iter().map(String::len).sum::<usize>() + 64
        }
        Message::Error { message, .. } => message.len() + 32,
        _ => 64,
    }
}
