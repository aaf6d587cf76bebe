//! `botfleet-protocol`: the wire format between the supervisor and its
//! workers, and the only botfleet crate whose types are serialized.
//!
//! A connection is a stream of frames over a Unix domain socket. A frame is
//! a 4-byte big-endian length and a payload; the payload holds one or more
//! [`Message`]s, in the compact binary encoding (Rust workers) or as a JSON
//! array (workers in other languages). The worker chooses with the
//! encoding of its [`Hello`]; the supervisor answers in the same one.
//! `docs/protocol.md` describes both byte by byte.
//!
//! Telegram updates, call parameters and results travel as [`Json`]: the
//! bytes Telegram sent, never re-serialized.
//!
//! A frame that is too large, cut short or malformed is a [`ReadError`]
//! that says where and why; it never panics and never hangs (the decoder
//! is fuzzed: `fuzz/`).
//!
//! ```
//! use botfleet_protocol::{Encoding, Message, decode_payload, encode_frame};
//!
//! let mut frame = Vec::new();
//! encode_frame(Encoding::Json, &[Message::Ready, Message::Heartbeat(7)], &mut frame);
//! assert_eq!(&frame[4..], br#"[{"type":"ready"},{"type":"heartbeat","seq":7}]"#);
//! let (encoding, messages) = decode_payload(&frame[4..]).unwrap();
//! assert_eq!(encoding, Encoding::Json);
//! assert_eq!(messages, [Message::Ready, Message::Heartbeat(7)]);
//! ```

mod binary;
pub mod env;
mod error;
mod frame;
mod json;
mod message;
pub mod stats;

pub use error::{DecodeError, ReadError};
pub use frame::{
    DEFAULT_MAX_BATCH, Encoding, FrameReader, MAX_FRAME, Written, decode_payload, encode_frame,
    write_batched, write_coalesced,
};
pub use message::{
    Ack, Action, ActionResult, Delivery, Hello, Json, Message, Outcome, PRIORITY_PARAM,
    PROTOCOL_VERSION, Series, SeriesValue, Welcome, WorkerMetrics, error_codes,
};
