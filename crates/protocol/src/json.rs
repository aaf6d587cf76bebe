//! The JSON encoding: a frame's payload is a JSON array of message objects,
//! each with a `type` (docs/protocol.md). Meant for workers in other
//! languages; Rust workers use the binary one.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::error::DecodeError;
use crate::message::{
    Ack, Action, ActionResult, Delivery, Hello, Json, Message, Outcome, Series, SeriesValue,
    Welcome, WorkerMetrics,
};

/// Appends the messages as a JSON array to `out`.
pub(crate) fn encode(messages: &[Message], out: &mut Vec<u8>) {
    let mut s = String::with_capacity(64 * messages.len());
    s.push('[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        encode_one(m, &mut s);
    }
    s.push(']');
    out.extend_from_slice(s.as_bytes());
}

fn string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

fn encode_one(m: &Message, s: &mut String) {
    let name = m.name();
    // Writing to a String cannot fail.
    let _ = match m {
        Message::Hello(h) => {
            let caps: Vec<String> = h.capabilities.iter().map(|c| string(c)).collect();
            write!(
                s,
                r#"{{"type":"{name}","version":{},"worker_id":{},"pid":{},"bot":{},"capabilities":[{}]}}"#,
                h.version,
                h.worker_id,
                h.pid,
                string(&h.bot),
                caps.join(",")
            )
        }
        Message::Welcome(w) => write!(
            s,
            r#"{{"type":"{name}","version":{},"worker_id":{},"heartbeat_ms":{}}}"#,
            w.version, w.worker_id, w.heartbeat_ms
        ),
        Message::Updates(list) => write_list(s, name, list, |s, d| {
            write!(
                s,
                r#"{{"update_id":{},"attempt":{},"update":{}}}"#,
                d.update_id,
                d.attempt,
                d.update.get()
            )
        }),
        Message::Acks(list) => write_list(s, name, list, |s, a| {
            let outcome = match a.outcome {
                Outcome::Handled => "handled",
                Outcome::Failed => "failed",
                Outcome::Retry => "retry",
            };
            write!(
                s,
                r#"{{"update_id":{},"outcome":"{outcome}"}}"#,
                a.update_id
            )
        }),
        Message::Actions(list) => write_list(s, name, list, |s, a| {
            write!(
                s,
                r#"{{"request_id":{},"method":{},"params":{}}}"#,
                a.request_id,
                string(&a.method),
                a.params.get()
            )
        }),
        Message::Results(list) => write_list(s, name, list, |s, r| {
            write!(
                s,
                r#"{{"request_id":{},"ok":{},"body":{}}}"#,
                r.request_id,
                r.ok,
                r.body.get()
            )
        }),
        Message::Heartbeat(seq) => write!(s, r#"{{"type":"{name}","seq":{seq}}}"#),
        Message::Stats(values) => write_stats(s, name, values),
        Message::Series(list) => write_series(s, name, list),
        Message::Metrics(m) => write!(
            s,
            r#"{{"type":"{name}","handled":{},"failed":{},"in_flight":{},"handling_p50_us":{},"handling_p99_us":{}}}"#,
            m.handled, m.failed, m.in_flight, m.handling_p50_us, m.handling_p99_us
        ),
        Message::Ready | Message::Drain | Message::Drained | Message::Shutdown => {
            write!(s, r#"{{"type":"{name}"}}"#)
        }
        Message::Error { code, message } => write!(
            s,
            r#"{{"type":"{name}","code":{code},"message":{}}}"#,
            string(message)
        ),
    };
}

/// `{"type":"stats","values":{...}}`. JSON has no NaN or infinity: such
/// values are left out.
fn write_stats(s: &mut String, name: &str, values: &[(String, f64)]) -> std::fmt::Result {
    write!(s, r#"{{"type":"{name}","values":{{"#)?;
    for (i, (key, value)) in values.iter().filter(|(_, v)| v.is_finite()).enumerate() {
        if i > 0 {
            s.push(',');
        }
        write!(s, "{}:{value}", string(key))?;
    }
    s.push_str("}}");
    Ok(())
}

/// `{"type":"series","series":[{"name":...,"labels":{...},"counter":N}, ...]}`
/// (or `"gauge":V`, or `"histogram":{"bounds":[...],"counts":[...],"sum":S}`).
/// A series with a value JSON cannot hold (NaN, infinity) is left out.
fn write_series(s: &mut String, name: &str, list: &[Series]) -> std::fmt::Result {
    let finite = |series: &&Series| match &series.value {
        SeriesValue::Counter(_) => true,
        SeriesValue::Gauge(v) => v.is_finite(),
        SeriesValue::Histogram { bounds, sum, .. } => {
            sum.is_finite() && bounds.iter().all(|b| b.is_finite())
        }
    };
    write!(s, r#"{{"type":"{name}","{name}":["#)?;
    for (i, series) in list.iter().filter(finite).enumerate() {
        if i > 0 {
            s.push(',');
        }
        write!(s, r#"{{"name":{},"labels":{{"#, string(&series.name))?;
        for (j, (k, v)) in series.labels.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            write!(s, "{}:{}", string(k), string(v))?;
        }
        s.push_str("},");
        match &series.value {
            SeriesValue::Counter(n) => write!(s, r#""counter":{n}"#)?,
            SeriesValue::Gauge(v) => write!(s, r#""gauge":{v}"#)?,
            SeriesValue::Histogram {
                bounds,
                counts,
                sum,
            } => {
                let bounds: Vec<String> = bounds.iter().map(f64::to_string).collect();
                let counts: Vec<String> = counts.iter().map(u64::to_string).collect();
                write!(
                    s,
                    r#""histogram":{{"bounds":[{}],"counts":[{}],"sum":{sum}}}"#,
                    bounds.join(","),
                    counts.join(",")
                )?;
            }
        }
        s.push('}');
    }
    s.push_str("]}");
    Ok(())
}

/// One series of a `series` message.
fn read_series(v: &Value) -> Result<Series, String> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or("series: no string `name`")?
        .to_owned();
    let labels = match v.get("labels") {
        None => Vec::new(),
        Some(l) => l
            .as_object()
            .ok_or_else(|| format!("series {name}: `labels` is not an object"))?
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_owned()))
                    .ok_or_else(|| format!("series {name}: label `{k}` is not a string"))
            })
            .collect::<Result<_, String>>()?,
    };
    let value = if let Some(n) = v.get("counter") {
        SeriesValue::Counter(
            n.as_u64()
                .ok_or_else(|| format!("series {name}: `counter` is not a whole number"))?,
        )
    } else if let Some(g) = v.get("gauge") {
        SeriesValue::Gauge(
            g.as_f64()
                .ok_or_else(|| format!("series {name}: `gauge` is not a number"))?,
        )
    } else if let Some(h) = v.get("histogram") {
        let numbers = |key: &str| -> Result<Vec<f64>, String> {
            h.get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| format!("series {name}: no array `histogram.{key}`"))?
                .iter()
                .map(|x| {
                    x.as_f64().ok_or_else(|| {
                        format!("series {name}: `histogram.{key}` holds a non-number")
                    })
                })
                .collect()
        };
        let counts = h
            .get("counts")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("series {name}: no array `histogram.counts`"))?
            .iter()
            .map(|x| {
                x.as_u64().ok_or_else(|| {
                    format!("series {name}: `histogram.counts` holds a non-whole number")
                })
            })
            .collect::<Result<_, String>>()?;
        SeriesValue::Histogram {
            bounds: numbers("bounds")?,
            counts,
            sum: h
                .get("sum")
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("series {name}: no number `histogram.sum`"))?,
        }
    } else {
        return Err(format!(
            "series {name}: no `counter`, `gauge` or `histogram`"
        ));
    };
    Ok(Series {
        name,
        labels,
        value,
    })
}

/// `{"type":"<name>","<name>":[...]}`: a list message, each item written
/// by `item`.
fn write_list<T>(
    s: &mut String,
    name: &str,
    items: &[T],
    mut item: impl FnMut(&mut String, &T) -> std::fmt::Result,
) -> std::fmt::Result {
    write!(s, r#"{{"type":"{name}","{name}":["#)?;
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        item(s, x)?;
    }
    s.push_str("]}");
    Ok(())
}

/// Decodes a JSON payload: an array of message objects.
pub(crate) fn decode(payload: &[u8]) -> Result<Vec<Message>, DecodeError> {
    let values: Vec<Value> = serde_json::from_slice(payload).map_err(|e| {
        DecodeError::new(
            0,
            format!(
                "not a JSON array of messages (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    if values.is_empty() {
        return Err(DecodeError::new(0, "a frame with no message"));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| message(v).map_err(|why| DecodeError::new(0, format!("message {i}: {why}"))))
        .collect()
}

fn message(v: &Value) -> Result<Message, String> {
    let o = v.as_object().ok_or("not an object")?;
    let kind = o
        .get("type")
        .and_then(Value::as_str)
        .ok_or("no string `type`")?;
    Ok(match kind {
        "hello" => Message::Hello(Hello {
            version: int(o, "version")?,
            worker_id: int(o, "worker_id")?,
            pid: int(o, "pid")?,
            bot: text(o, "bot")?,
            capabilities: match o.get("capabilities") {
                None => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|c| {
                        c.as_str()
                            .map(str::to_owned)
                            .ok_or("capabilities: not a string")
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err("capabilities: not an array".into()),
            },
        }),
        "welcome" => Message::Welcome(Welcome {
            version: int(o, "version")?,
            worker_id: int(o, "worker_id")?,
            heartbeat_ms: int(o, "heartbeat_ms")?,
        }),
        "ready" => Message::Ready,
        "updates" => Message::Updates(
            list(o, "updates")?
                .iter()
                .map(|u| {
                    Ok(Delivery {
                        update_id: int(u, "update_id")?,
                        attempt: int(u, "attempt").or_else(|_| absent(u, "attempt", 0))?,
                        update: document(u, "update")?,
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
        "acks" => Message::Acks(
            list(o, "acks")?
                .iter()
                .map(|a| {
                    let outcome = match a.get("outcome").and_then(Value::as_str) {
                        None | Some("handled") => Outcome::Handled,
                        Some("failed") => Outcome::Failed,
                        Some("retry") => Outcome::Retry,
                        Some(other) => {
                            return Err(format!(
                                "acks: outcome `{other}` is not \"handled\", \"failed\" or \"retry\""
                            ));
                        }
                    };
                    Ok(Ack {
                        update_id: int(a, "update_id")?,
                        outcome,
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
        "actions" => Message::Actions(
            list(o, "actions")?
                .iter()
                .map(|a| {
                    Ok(Action {
                        request_id: int(a, "request_id")?,
                        method: text(a, "method")?,
                        params: match a.get("params") {
                            None => Json::from_value(&Value::Object(Map::new())),
                            Some(_) => document(a, "params")?,
                        },
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
        "results" => Message::Results(
            list(o, "results")?
                .iter()
                .map(|r| {
                    Ok(ActionResult {
                        request_id: int(r, "request_id")?,
                        ok: r
                            .get("ok")
                            .and_then(Value::as_bool)
                            .ok_or("results: no boolean `ok`")?,
                        body: document(r, "body")?,
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
        "stats" => Message::Stats(
            o.field("values")
                .and_then(Value::as_object)
                .ok_or("stats: no object `values`")?
                .iter()
                .map(|(k, v)| {
                    v.as_f64()
                        .map(|v| (k.clone(), v))
                        .ok_or_else(|| format!("stats: `{k}` is not a number"))
                })
                .collect::<Result<_, String>>()?,
        ),
        "series" => Message::Series(
            list(o, "series")?
                .iter()
                .map(read_series)
                .collect::<Result<_, String>>()?,
        ),
        "heartbeat" => Message::Heartbeat(int(o, "seq").or_else(|_| absent(o, "seq", 0))?),
        "metrics" => Message::Metrics(WorkerMetrics {
            handled: int(o, "handled")?,
            failed: int(o, "failed")?,
            in_flight: int(o, "in_flight")?,
            handling_p50_us: int(o, "handling_p50_us")?,
            handling_p99_us: int(o, "handling_p99_us")?,
        }),
        "drain" => Message::Drain,
        "drained" => Message::Drained,
        "shutdown" => Message::Shutdown,
        "error" => Message::Error {
            code: int(o, "code")?,
            message: text(o, "message")?,
        },
        other => return Err(format!("unknown message type `{other}`")),
    })
}

/// The default of an optional integer field, if it is really absent.
fn absent<T>(o: &impl Fields, key: &str, default: T) -> Result<T, String> {
    if o.field(key).is_none() {
        Ok(default)
    } else {
        Err(format!("`{key}` is not an integer in range"))
    }
}

/// Field access on a JSON object or on a value that should be one.
trait Fields {
    fn field(&self, key: &str) -> Option<&Value>;
}

impl Fields for Map<String, Value> {
    fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

impl Fields for Value {
    fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

fn int<T: TryFrom<i64> + TryFrom<u64>>(o: &impl Fields, key: &str) -> Result<T, String> {
    let v = o.field(key).ok_or_else(|| format!("no `{key}`"))?;
    let parsed = match (v.as_i64(), v.as_u64()) {
        (_, Some(u)) => T::try_from(u).ok(),
        (Some(i), None) => T::try_from(i).ok(),
        _ => None,
    };
    parsed.ok_or_else(|| format!("`{key}` is not an integer in range"))
}

fn text(o: &impl Fields, key: &str) -> Result<String, String> {
    o.field(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no string `{key}`"))
}

fn list<'a>(o: &'a impl Fields, key: &str) -> Result<&'a Vec<Value>, String> {
    o.field(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("no array `{key}`"))
}

fn document(o: &impl Fields, key: &str) -> Result<Json, String> {
    o.field(key)
        .map(Json::from_value)
        .ok_or_else(|| format!("no `{key}`"))
}
