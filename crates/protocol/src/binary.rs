//! The compact encoding: big-endian integers, length-prefixed strings and
//! JSON documents, counted lists (docs/protocol.md, byte by byte).

use crate::error::DecodeError;
use crate::message::{
    Ack, Action, ActionResult, Delivery, Hello, Json, Message, Outcome, Series, SeriesValue,
    Welcome, WorkerMetrics,
};

/// The first byte of a binary payload.
pub(crate) const MAGIC: u8 = 0xBF;

mod tag {
    pub(super) const HELLO: u8 = 1;
    pub(super) const WELCOME: u8 = 2;
    pub(super) const READY: u8 = 3;
    pub(super) const UPDATES: u8 = 4;
    pub(super) const ACKS: u8 = 5;
    pub(super) const ACTIONS: u8 = 6;
    pub(super) const RESULTS: u8 = 7;
    pub(super) const HEARTBEAT: u8 = 8;
    pub(super) const METRICS: u8 = 9;
    pub(super) const DRAIN: u8 = 10;
    pub(super) const DRAINED: u8 = 11;
    pub(super) const SHUTDOWN: u8 = 12;
    pub(super) const ERROR: u8 = 13;
    pub(super) const STATS: u8 = 14;
    pub(super) const SERIES: u8 = 15;
}

/// Appends the messages, after the magic byte, to `out`.
pub(crate) fn encode(messages: &[Message], out: &mut Vec<u8>) {
    out.push(MAGIC);
    for m in messages {
        encode_one(m, out);
    }
}

fn encode_one(m: &Message, out: &mut Vec<u8>) {
    match m {
        Message::Hello(h) => {
            out.push(tag::HELLO);
            out.extend_from_slice(&h.version.to_be_bytes());
            out.extend_from_slice(&h.worker_id.to_be_bytes());
            out.extend_from_slice(&h.pid.to_be_bytes());
            bytes(out, h.bot.as_bytes());
            count(out, h.capabilities.len());
            for c in &h.capabilities {
                bytes(out, c.as_bytes());
            }
        }
        Message::Welcome(w) => {
            out.push(tag::WELCOME);
            out.extend_from_slice(&w.version.to_be_bytes());
            out.extend_from_slice(&w.worker_id.to_be_bytes());
            out.extend_from_slice(&w.heartbeat_ms.to_be_bytes());
        }
        Message::Ready => out.push(tag::READY),
        Message::Updates(list) => {
            out.push(tag::UPDATES);
            count(out, list.len());
            for d in list {
                out.extend_from_slice(&d.update_id.to_be_bytes());
                out.extend_from_slice(&d.attempt.to_be_bytes());
                bytes(out, d.update.get().as_bytes());
            }
        }
        Message::Acks(list) => {
            out.push(tag::ACKS);
            count(out, list.len());
            for a in list {
                out.extend_from_slice(&a.update_id.to_be_bytes());
                out.push(match a.outcome {
                    Outcome::Handled => 0,
                    Outcome::Failed => 1,
                    Outcome::Retry => 2,
                });
            }
        }
        Message::Actions(list) => {
            out.push(tag::ACTIONS);
            count(out, list.len());
            for a in list {
                out.extend_from_slice(&a.request_id.to_be_bytes());
                bytes(out, a.method.as_bytes());
                bytes(out, a.params.get().as_bytes());
            }
        }
        Message::Results(list) => {
            out.push(tag::RESULTS);
            count(out, list.len());
            for r in list {
                out.extend_from_slice(&r.request_id.to_be_bytes());
                out.push(u8::from(r.ok));
                bytes(out, r.body.get().as_bytes());
            }
        }
        Message::Heartbeat(seq) => {
            out.push(tag::HEARTBEAT);
            out.extend_from_slice(&seq.to_be_bytes());
        }
        Message::Metrics(m) => {
            out.push(tag::METRICS);
            out.extend_from_slice(&m.handled.to_be_bytes());
            out.extend_from_slice(&m.failed.to_be_bytes());
            out.extend_from_slice(&m.in_flight.to_be_bytes());
            out.extend_from_slice(&m.handling_p50_us.to_be_bytes());
            out.extend_from_slice(&m.handling_p99_us.to_be_bytes());
        }
        Message::Stats(values) => {
            out.push(tag::STATS);
            count(out, values.len());
            for (name, value) in values {
                bytes(out, name.as_bytes());
                out.extend_from_slice(&value.to_bits().to_be_bytes());
            }
        }
        Message::Series(list) => {
            out.push(tag::SERIES);
            count(out, list.len());
            for series in list {
                bytes(out, series.name.as_bytes());
                count(out, series.labels.len());
                for (k, v) in &series.labels {
                    bytes(out, k.as_bytes());
                    bytes(out, v.as_bytes());
                }
                match &series.value {
                    SeriesValue::Counter(n) => {
                        out.push(0);
                        out.extend_from_slice(&n.to_be_bytes());
                    }
                    SeriesValue::Gauge(v) => {
                        out.push(1);
                        out.extend_from_slice(&v.to_bits().to_be_bytes());
                    }
                    SeriesValue::Histogram {
                        bounds,
                        counts,
                        sum,
                    } => {
                        out.push(2);
                        count(out, bounds.len());
                        for b in bounds {
                            out.extend_from_slice(&b.to_bits().to_be_bytes());
                        }
                        count(out, counts.len());
                        for n in counts {
                            out.extend_from_slice(&n.to_be_bytes());
                        }
                        out.extend_from_slice(&sum.to_bits().to_be_bytes());
                    }
                }
            }
        }
        Message::Drain => out.push(tag::DRAIN),
        Message::Drained => out.push(tag::DRAINED),
        Message::Shutdown => out.push(tag::SHUTDOWN),
        Message::Error { code, message } => {
            out.push(tag::ERROR);
            out.extend_from_slice(&code.to_be_bytes());
            bytes(out, message.as_bytes());
        }
    }
}

fn count(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("lists are bounded by the frame size");
    out.extend_from_slice(&n.to_be_bytes());
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    count(out, b.len());
    out.extend_from_slice(b);
}

/// Decodes a binary payload (magic byte included); JSON documents are
/// checked unless `check_json` is false.
pub(crate) fn decode(payload: &[u8], check_json: bool) -> Result<Vec<Message>, DecodeError> {
    let mut r = Reader {
        buf: payload,
        at: 1,
        check_json,
    };
    let mut messages = Vec::new();
    while r.at < r.buf.len() {
        messages.push(r.message()?);
    }
    if messages.is_empty() {
        return Err(DecodeError::new(1, "a frame with no message"));
    }
    Ok(messages)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    check_json: bool,
}

impl Reader<'_> {
    fn message(&mut self) -> Result<Message, DecodeError> {
        let start = self.at;
        let tag = self.u8("a message tag")?;
        Ok(match tag {
            tag::HELLO => {
                let version = self.u16("hello.version")?;
                let worker_id = self.u32("hello.worker_id")?;
                let pid = self.u32("hello.pid")?;
                let bot = self.string("hello.bot")?;
                let n = self.count("hello.capabilities", 4)?;
                let mut capabilities = Vec::with_capacity(n);
                for _ in 0..n {
                    capabilities.push(self.string("hello.capabilities[]")?);
                }
                Message::Hello(Hello {
                    version,
                    worker_id,
                    pid,
                    bot,
                    capabilities,
                })
            }
            tag::WELCOME => Message::Welcome(Welcome {
                version: self.u16("welcome.version")?,
                worker_id: self.u32("welcome.worker_id")?,
                heartbeat_ms: self.u32("welcome.heartbeat_ms")?,
            }),
            tag::READY => Message::Ready,
            tag::UPDATES => {
                let n = self.count("updates", 8 + 4 + 4)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(Delivery {
                        update_id: self.i64("updates[].update_id")?,
                        attempt: self.u32("updates[].attempt")?,
                        update: self.json("updates[].update")?,
                    });
                }
                Message::Updates(list)
            }
            tag::ACKS => {
                let n = self.count("acks", 8 + 1)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    let update_id = self.i64("acks[].update_id")?;
                    let at = self.at;
                    let outcome = match self.u8("acks[].outcome")? {
                        0 => Outcome::Handled,
                        1 => Outcome::Failed,
                        2 => Outcome::Retry,
                        other => {
                            return Err(DecodeError::new(
                                at,
                                format!("acks[].outcome: unknown value {other}"),
                            ));
                        }
                    };
                    list.push(Ack { update_id, outcome });
                }
                Message::Acks(list)
            }
            tag::ACTIONS => {
                let n = self.count("actions", 8 + 4 + 4)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(Action {
                        request_id: self.u64("actions[].request_id")?,
                        method: self.string("actions[].method")?,
                        params: self.json("actions[].params")?,
                    });
                }
                Message::Actions(list)
            }
            tag::RESULTS => {
                let n = self.count("results", 8 + 1 + 4)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    let request_id = self.u64("results[].request_id")?;
                    let at = self.at;
                    let ok = match self.u8("results[].ok")? {
                        0 => false,
                        1 => true,
                        other => {
                            return Err(DecodeError::new(
                                at,
                                format!("results[].ok: {other} is neither 0 nor 1"),
                            ));
                        }
                    };
                    list.push(ActionResult {
                        request_id,
                        ok,
                        body: self.json("results[].body")?,
                    });
                }
                Message::Results(list)
            }
            tag::HEARTBEAT => Message::Heartbeat(self.u64("heartbeat.seq")?),
            tag::METRICS => Message::Metrics(WorkerMetrics {
                handled: self.u64("metrics.handled")?,
                failed: self.u64("metrics.failed")?,
                in_flight: self.u32("metrics.in_flight")?,
                handling_p50_us: self.u64("metrics.handling_p50_us")?,
                handling_p99_us: self.u64("metrics.handling_p99_us")?,
            }),
            tag::STATS => {
                let n = self.count("stats", 4 + 8)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = self.string("stats[].name")?;
                    let value = f64::from_bits(self.u64("stats[].value")?);
                    values.push((name, value));
                }
                Message::Stats(values)
            }
            tag::SERIES => {
                let n = self.count("series", 4 + 4 + 1 + 8)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = self.string("series[].name")?;
                    let labels_n = self.count("series[].labels", 8)?;
                    let mut labels = Vec::with_capacity(labels_n);
                    for _ in 0..labels_n {
                        let k = self.string("series[].labels[].name")?;
                        let v = self.string("series[].labels[].value")?;
                        labels.push((k, v));
                    }
                    let at = self.at;
                    let value = match self.u8("series[].kind")? {
                        0 => SeriesValue::Counter(self.u64("series[].counter")?),
                        1 => SeriesValue::Gauge(f64::from_bits(self.u64("series[].gauge")?)),
                        2 => {
                            let nb = self.count("series[].bounds", 8)?;
                            let mut bounds = Vec::with_capacity(nb);
                            for _ in 0..nb {
                                bounds.push(f64::from_bits(self.u64("series[].bounds[]")?));
                            }
                            let nc = self.count("series[].counts", 8)?;
                            let mut counts = Vec::with_capacity(nc);
                            for _ in 0..nc {
                                counts.push(self.u64("series[].counts[]")?);
                            }
                            let sum = f64::from_bits(self.u64("series[].sum")?);
                            SeriesValue::Histogram {
                                bounds,
                                counts,
                                sum,
                            }
                        }
                        other => {
                            return Err(DecodeError::new(
                                at,
                                format!(
                                    "series[].kind: {other} is not 0 (counter), 1 (gauge) or 2 (histogram)"
                                ),
                            ));
                        }
                    };
                    list.push(Series {
                        name,
                        labels,
                        value,
                    });
                }
                Message::Series(list)
            }
            tag::DRAIN => Message::Drain,
            tag::DRAINED => Message::Drained,
            tag::SHUTDOWN => Message::Shutdown,
            tag::ERROR => Message::Error {
                code: self.u16("error.code")?,
                message: self.string("error.message")?,
            },
            other => {
                return Err(DecodeError::new(
                    start,
                    format!("unknown message tag {other}"),
                ));
            }
        })
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(DecodeError::new(
                self.at,
                format!(
                    "{what}: the frame ends after {} more bytes, {n} needed",
                    self.buf.len() - self.at
                ),
            )),
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        let b = self.take(8, what)?;
        Ok(i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    /// A list's count, checked against what the rest of the frame can hold
    /// (each item takes at least `min_item` bytes), so that a forged count
    /// never allocates more than the frame.
    fn count(&mut self, what: &str, min_item: usize) -> Result<usize, DecodeError> {
        let at = self.at;
        let n = self.u32(what)? as usize;
        let room = (self.buf.len() - self.at) / min_item.max(1);
        if n > room {
            return Err(DecodeError::new(
                at,
                format!("{what}: a count of {n} items does not fit in the frame"),
            ));
        }
        Ok(n)
    }

    fn raw(&mut self, what: &str) -> Result<&[u8], DecodeError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let at = self.at;
        let raw = self.raw(what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| DecodeError::new(at, format!("{what}: not valid UTF-8")))
    }

    fn json(&mut self, what: &str) -> Result<Json, DecodeError> {
        let at = self.at;
        let text = self.string(what)?;
        if !self.check_json {
            return Ok(Json::unchecked(text));
        }
        Json::parse(text)
            .map_err(|e| DecodeError::new(at, format!("{what}: not one JSON document ({e})")))
    }
}
