//! `botfleet-telegram`: the Telegram Bot API client of a fleet.
//!
//! Our code is the transport, the limiter and the retries; the Bot API's
//! types come from [`frankenstein`] (types only, re-exported as
//! [`types`], [`methods`] and [`updates`]). It is not a bot framework (no
//! routing of updates, no handlers: that is `botfleet-worker`), and it
//! depends on no botfleet crate but the configuration and the cache (for
//! cache-first reads).
//!
//! - Every send of a token passes through one [`limiter::Limiter`]: exact
//!   sliding windows for the chat, group and token limits, measured so
//!   network jitter cannot break them; two priorities; no head-of-line
//!   blocking; fair across chats.
//! - A 429 that still arrives is obeyed and the send tried again, never
//!   dropped; server errors and failed connections are retried with capped,
//!   jittered exponential backoff; 400/401/403/404 are returned as typed
//!   [`ErrorKind`]s. No error ever contains the token.
//! - The token's budget can be shared by processes through Redis
//!   ([`SharedBudget`]), reads can go through the tiered cache, and
//!   [`Broadcast`] sends one text to many chats with progress and a report.
//!
//! ```no_run
//! # async fn f() -> Result<(), botfleet_telegram::Error> {
//! use botfleet_telegram::{Client, methods::SendMessageParams};
//! let client = Client::builder(std::env::var("BOT_TOKEN").unwrap_or_default())
//!     .base_url("http://127.0.0.1:8081") // the emulator; Telegram by default
//!     .bot("dating")
//!     .build()?;
//! let params = SendMessageParams::builder().chat_id(42).text("hello").build();
//! client.send_message(&params).await?;
//! # Ok(()) }
//! ```

mod broadcast;
mod client;
mod error;
pub mod limiter;
mod metrics;
mod reads;
mod shared;
mod update;

pub use broadcast::{Broadcast, BroadcastReport, Progress};
pub use client::{Client, ClientBuilder, TELEGRAM_API};
pub use error::{Error, ErrorKind};
pub use frankenstein::{methods, types, updates};
pub use reads::Reads;
pub use shared::SharedBudget;
pub use update::parse_update;
