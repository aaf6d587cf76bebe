//! What goes wrong reading a frame.

use std::io;

/// A payload that does not decode: where and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed frame at byte {offset} of the payload: {message}")]
pub struct DecodeError {
    /// Where in the payload (0 for JSON, whose message says line and
    /// column).
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

impl DecodeError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> DecodeError {
        DecodeError {
            offset,
            message: message.into(),
        }
    }
}

/// Reading a frame failed. Every case but `Io` means the peer broke the
/// protocol: the connection should be answered with
/// [`Message::Error`](crate::Message::Error) and closed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed.
    #[error("reading a frame: {0}")]
    Io(#[from] io::Error),
    /// The length prefix announced more than the limit; the payload was not
    /// read.
    #[error("a frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The connection closed in the middle of a frame.
    #[error("the connection closed {got} bytes into a frame of {len}")]
    Truncated {
        /// The announced length (or 4, for a cut length prefix).
        len: usize,
        /// The bytes that came.
        got: usize,
    },
    /// The payload is not valid.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
}

impl ReadError {
    /// The code to send in a [`Message::Error`](crate::Message::Error)
    /// before closing, or `None` when the socket itself failed.
    pub fn code(&self) -> Option<u16> {
        use crate::message::error_codes;
        match self {
            ReadError::Io(_) => None,
            ReadError::TooLarge { .. } => Some(error_codes::TOO_LARGE),
            ReadError::Truncated { .. } | ReadError::Malformed(_) => Some(error_codes::MALFORMED),
        }
    }
}
