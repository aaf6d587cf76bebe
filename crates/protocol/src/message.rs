//! The messages between the supervisor and a worker.

use std::fmt;

use serde_json::value::RawValue;

/// The protocol version this crate speaks. A worker says which it speaks in
/// [`Hello`]; the supervisor refuses another with [`Message::Error`].
pub const PROTOCOL_VERSION: u16 = 1;

/// The parameter of an [`Action`] that names its priority: with the value
/// `"broadcast"`, the supervisor sends it at the limiter's broadcast
/// priority (replies to users go first). The supervisor removes it before
/// the call reaches Telegram.
pub const PRIORITY_PARAM: &str = "botfleet_priority";

/// A JSON document carried verbatim: a Telegram update, the parameters of a
/// Bot API call, its result. Neither side re-serializes it.
///
/// A document is checked to be valid JSON when it is made, except one a
/// [`FrameReader`](crate::FrameReader) built with
/// [`trust_json`](crate::FrameReader::trust_json) decoded: that one is
/// checked when it is parsed or passed on.
#[derive(Clone)]
pub struct Json(Repr);

#[derive(Clone)]
enum Repr {
    Checked(Box<RawValue>),
    Unchecked(Box<str>),
}

impl Json {
    /// `text` if it is one valid JSON document.
    pub fn parse(text: String) -> Result<Json, serde_json::Error> {
        RawValue::from_string(text).map(Json::from_raw)
    }

    /// `text` as it is, checked only when it is parsed or passed on.
    pub(crate) fn unchecked(text: String) -> Json {
        Json(Repr::Unchecked(text.into_boxed_str()))
    }

    /// The JSON of `value`.
    pub fn from_value<T: serde::Serialize + ?Sized>(value: &T) -> Json {
        Json::from_raw(
            serde_json::value::to_raw_value(value).expect("a JSON value always serializes"),
        )
    }

    /// A document already parsed as raw JSON.
    pub fn from_raw(raw: Box<RawValue>) -> Json {
        Json(Repr::Checked(raw))
    }

    /// The document as raw JSON, to pass on without parsing it again; an
    /// error only for a document decoded unchecked that is not JSON.
    pub fn raw(&self) -> Result<&RawValue, serde_json::Error> {
        match &self.0 {
            Repr::Checked(raw) => Ok(raw),
            Repr::Unchecked(text) => serde_json::from_str(text),
        }
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        match &self.0 {
            Repr::Checked(raw) => raw.get(),
            Repr::Unchecked(text) => text,
        }
    }

    /// Parses the text into `T`.
    pub fn deserialize<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get())
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

/// A worker introduces itself: the first message on a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Hello {
    /// The protocol version the worker speaks.
    pub version: u16,
    /// The id the supervisor gave the worker (`BOTFLEET_WORKER_ID`).
    pub worker_id: u32,
    /// The worker's process id.
    pub pid: u32,
    /// The bot the worker serves (`BOTFLEET_BOT`).
    pub bot: String,
    /// Optional features the worker supports, by name (none are defined in
    /// version 1; unknown names are ignored).
    pub capabilities: Vec<String>,
}

/// The supervisor accepts a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct Welcome {
    /// The protocol version of the connection.
    pub version: u16,
    /// The worker's id, as the supervisor knows it.
    pub worker_id: u32,
    /// How often the worker must send a [`Message::Heartbeat`]; missing
    /// three in a row gets it restarted.
    pub heartbeat_ms: u32,
}

/// One update for a worker to handle.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Telegram's `update_id`.
    pub update_id: i64,
    /// 0 the first time; more when the update is redelivered after its
    /// worker died.
    pub attempt: u32,
    /// The update as Telegram sent it.
    pub update: Json,
}

/// How a worker handled an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handler returned.
    Handled,
    /// The handler failed or panicked; the update is not retried.
    Failed,
    /// The handler could not finish because a dependency is unavailable
    /// (the database, Redis, Telegram): the supervisor keeps the update and
    /// hands it out again later, in its chat's order.
    Retry,
}

/// A worker is done with an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The update's `update_id`.
    pub update_id: i64,
    /// How it went.
    pub outcome: Outcome,
}

/// A Bot API call a worker wants the supervisor to make.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// The worker's id for the call; the result carries it back.
    pub request_id: u64,
    /// The Bot API method, such as `sendMessage`.
    pub method: String,
    /// Its parameters, a JSON object.
    pub params: Json,
}

/// The result of an [`Action`].
#[derive(Clone, Debug, PartialEq)]
pub struct ActionResult {
    /// The action's `request_id`.
    pub request_id: u64,
    /// Whether the call succeeded.
    pub ok: bool,
    /// On success the method's `result`; on failure an object with
    /// `error_code`, `description` and, when Telegram gave them,
    /// `parameters`.
    pub body: Json,
}

/// What a worker reports about itself, with each heartbeat or less often.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerMetrics {
    /// Updates handled since the worker started.
    pub handled: u64,
    /// Updates whose handler failed since the worker started.
    pub failed: u64,
    /// Updates being handled now.
    pub in_flight: u32,
    /// Median handling time over the last reporting period, µs.
    pub handling_p50_us: u64,
    /// 99th percentile handling time over the last reporting period, µs.
    pub handling_p99_us: u64,
}

/// One series of a worker's own metrics (what its code recorded through
/// the `metrics` facade), at its latest value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The metric's name (`botfleet_db_query_duration_seconds`).
    pub name: String,
    /// Its labels, without `bot` and `worker` (the supervisor adds them).
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: SeriesValue,
}

/// A series' value: totals since the worker started, so a lost message
/// loses nothing and a restart shows as a reset.
#[derive(Clone, Debug, PartialEq)]
pub enum SeriesValue {
    /// A counter's total.
    Counter(u64),
    /// A gauge's value now.
    Gauge(f64),
    /// A histogram: the upper bound of each bucket (increasing), the
    /// observations in each bucket and above the last bound (one more than
    /// `bounds`, not cumulative), and the sum of every observation.
    Histogram {
        /// Upper bounds, increasing.
        bounds: Vec<f64>,
        /// Observations per bucket, the last above every bound.
        counts: Vec<u64>,
        /// The sum of the observations.
        sum: f64,
    },
}

/// Every message of the protocol. A frame carries one or more.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Worker -> supervisor, first: who the worker is.
    Hello(Hello),
    /// Supervisor -> worker: accepted.
    Welcome(Welcome),
    /// Worker -> supervisor: initialized, send updates.
    Ready,
    /// Supervisor -> worker: updates to handle.
    Updates(Vec<Delivery>),
    /// Worker -> supervisor: updates done with.
    Acks(Vec<Ack>),
    /// Worker -> supervisor: Bot API calls to make.
    Actions(Vec<Action>),
    /// Supervisor -> worker: the results of calls.
    Results(Vec<ActionResult>),
    /// Worker -> supervisor: alive; a sequence number.
    Heartbeat(u64),
    /// Worker -> supervisor: counters and handling times.
    Metrics(WorkerMetrics),
    /// Worker -> supervisor: named values of the worker's own, each the
    /// latest (a count since start, or a gauge): cache hits by tier, pool
    /// use, time spent in the database. The supervisor keeps each worker's
    /// latest and sums them per bot.
    Stats(Vec<(String, f64)>),
    /// Worker -> supervisor: the series of the worker's own metrics that
    /// changed since its last `series`, each at its latest value. The
    /// supervisor serves them with `bot` and `worker` labels added.
    Series(Vec<Series>),
    /// Supervisor -> worker: no more updates will come; finish the ones in
    /// hand, then answer [`Message::Drained`].
    Drain,
    /// Worker -> supervisor: every update received has been acked.
    Drained,
    /// Supervisor -> worker: exit now.
    Shutdown,
    /// Either way, before closing: why the connection is refused.
    Error {
        /// A code from [`error_codes`].
        code: u16,
        /// What went wrong, for a human.
        message: String,
    },
}

/// The codes of [`Message::Error`].
pub mod error_codes {
    /// The peer speaks another protocol version.
    pub const VERSION: u16 = 1;
    /// A frame could not be decoded.
    pub const MALFORMED: u16 = 2;
    /// A frame exceeded the size limit.
    pub const TOO_LARGE: u16 = 3;
    /// A message came at the wrong time (an update before the handshake).
    pub const UNEXPECTED: u16 = 4;
    /// The worker is not one the supervisor started.
    pub const UNKNOWN_WORKER: u16 = 5;
    /// The connecting process is not the worker its `hello` names (its pid
    /// or bot differ, or the supervisor did not start it).
    pub const NOT_THE_WORKER: u16 = 6;
    /// The worker named in the `hello` already has a live connection.
    pub const ALREADY_CONNECTED: u16 = 7;
    /// The supervisor takes no more connections now (too many waiting for
    /// their `hello`, or too few file descriptors left).
    pub const BUSY: u16 = 8;
    /// No `hello` came within the handshake deadline.
    pub const TOO_SLOW: u16 = 9;
}

impl Message {
    /// The message's name, as the JSON encoding's `type` writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome(_) => "welcome",
            Message::Ready => "ready",
            Message::Updates(_) => "updates",
            Message::Acks(_) => "acks",
            Message::Actions(_) => "actions",
            Message::Results(_) => "results",
            Message::Heartbeat(_) => "heartbeat",
            Message::Metrics(_) => "metrics",
            Message::Stats(_) => "stats",
            Message::Series(_) => "series",
            Message::Drain => "drain",
            Message::Drained => "drained",
            Message::Shutdown => "shutdown",
            Message::Error { .. } => "error",
        }
    }
}
