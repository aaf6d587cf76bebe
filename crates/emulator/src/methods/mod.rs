//! The Bot API methods other than `getUpdates`'s long poll, one module per
//! group: [`send`] (what posts to a chat), [`chats`] (what reads one),
//! [`webhook`], and [`updates`] (`getUpdates`). Each answers with a
//! [`Reply`]: the answer and what the call log records of it.

pub(crate) mod chats;
pub(crate) mod send;
pub(crate) mod updates;
pub(crate) mod webhook;

use serde_json::json;
use tokio::time::Instant;

use crate::limits::Scope;
use crate::server::{Answer, Params, State};

/// A method's answer and what the call log records of it.
pub(crate) struct Reply {
    pub(crate) answer: Answer,
    /// The chat the call was about.
    pub(crate) chat: Option<i64>,
    /// The text it sent.
    pub(crate) text: Option<String>,
    /// Which limit a 429 came from.
    pub(crate) scope: Option<Scope>,
}

impl From<Answer> for Reply {
    fn from(answer: Answer) -> Reply {
        Reply {
            answer,
            chat: None,
            text: None,
            scope: None,
        }
    }
}

impl Reply {
    /// About `chat` (nothing when `None`).
    pub(crate) fn chat(mut self, chat: impl Into<Option<i64>>) -> Reply {
        self.chat = chat.into();
        self
    }

    /// Sent `text`.
    pub(crate) fn text(mut self, text: String) -> Reply {
        self.text = Some(text);
        self
    }

    /// A 429 from the `scope` limit.
    pub(crate) fn scope(mut self, scope: Scope) -> Reply {
        self.scope = Some(scope);
        self
    }
}

/// Answers `method` (lower case) for the bot of `token`, which the caller
/// checked exists.
pub(crate) fn call(s: &mut State, token: &str, method: &str, p: &Params, now: Instant) -> Reply {
    let bot = s
        .bots
        .get(token)
        .map(|b| b.user.clone())
        .expect("checked by the caller");
    match method {
        "getme" => Answer::ok(bot.json()).into(),
        "logout" | "close" => Answer::ok(json!(true)).into(),
        "sendmessage" | "editmessagetext" | "sendphoto" | "copymessage" | "forwardmessage"
        | "senddice" | "sendsticker" | "senddocument" | "sendmediagroup" => {
            send::send(s, token, method, p, now, &bot)
        }
        "getfile" => match p.str("file_id").and_then(|id| s.files.file_json(&id)) {
            Some(file) => Answer::ok(file).into(),
            None => Answer::error(400, "Bad Request: invalid file_id").into(),
        },
        "answercallbackquery" | "deletemessage" | "sendchataction" => {
            Reply::from(Answer::ok(json!(true))).chat(p.i64("chat_id"))
        }
        "getchat" => chats::get_chat(s, p),
        "getchatmembercount" => chats::get_chat_member_count(s, p),
        "getchatmember" => chats::get_chat_member(s, p, &bot),
        "getchatadministrators" => chats::get_chat_administrators(s, p),
        "setwebhook" => webhook::set_webhook(s, token, p, now),
        "deletewebhook" => webhook::delete_webhook(s, token, p).into(),
        "getwebhookinfo" => webhook::get_webhook_info(s, token).into(),
        _ => Answer::error(404, "Not Found: method not found").into(),
    }
}
