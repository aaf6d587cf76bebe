//! The Bot API objects the emulator answers with: complete enough that
//! typed clients (teloxide, frankenstein, our own) deserialize them.

use serde_json::{Value, json};

/// A user or a bot.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    /// Its id (positive).
    pub id: i64,
    /// Whether it is a bot.
    pub is_bot: bool,
    /// First name.
    pub first_name: String,
    /// Username, without `@`.
    pub username: Option<String>,
}

impl User {
    pub(crate) fn json(&self) -> Value {
        let mut v = json!({ "id": self.id, "is_bot": self.is_bot, "first_name": self.first_name });
        if let Some(u) = &self.username {
            v["username"] = json!(u);
        }
        if !self.is_bot {
            v["language_code"] = json!("en");
        }
        v
    }
}

/// What kind of chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatKind {
    /// A one-to-one chat with a user (id > 0).
    Private,
    /// A basic group (id < 0).
    Group,
    /// A supergroup (id < -10^12).
    Supergroup,
    /// A channel (id < -10^12).
    Channel,
}

impl ChatKind {
    fn as_str(self) -> &'static str {
        match self {
            ChatKind::Private => "private",
            ChatKind::Group => "group",
            ChatKind::Supergroup => "supergroup",
            ChatKind::Channel => "channel",
        }
    }
}

/// A chat.
#[derive(Clone, Debug, PartialEq)]
pub struct Chat {
    /// Its id: the user's id for a private chat, negative for the others.
    pub id: i64,
    /// Its kind.
    pub kind: ChatKind,
    /// A group's title, or the user's first name.
    pub title: String,
}

impl Chat {
    pub(crate) fn json(&self) -> Value {
        let mut v = json!({ "id": self.id, "type": self.kind.as_str() });
        if self.kind == ChatKind::Private {
            v["first_name"] = json!(self.title);
        } else {
            v["title"] = json!(self.title);
        }
        v
    }
}

impl Chat {
    /// `ChatFullInfo`, as `getChat` answers: the chat with the fields the
    /// Bot API marks required.
    pub(crate) fn full_info(&self) -> Value {
        let mut v = self.json();
        v["accent_color_id"] = json!(self.id.unsigned_abs() % 7);
        v["max_reaction_count"] = json!(11);
        v["accepted_gift_types"] = json!({
            "unlimited_gifts": false,
            "limited_gifts": false,
            "unique_gifts": false,
            "premium_subscription": false,
            "gifts_from_channels": false,
        });
        v
    }
}

pub(crate) fn message(message_id: i64, date: i64, chat: &Chat, from: &User, text: &str) -> Value {
    json!({
        "message_id": message_id,
        "date": date,
        "chat": chat.json(),
        "from": from.json(),
        "text": text,
    })
}
