//! The methods that post to a chat: the checks the real server makes, the
//! limits (a 429 says which window), and the message that comes back.

use std::collections::VecDeque;

use axum::body::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Reply;
use crate::limits::Scope;
use crate::objects::{self, Chat, ChatKind, User};
use crate::server::{Answer, Params, State};

/// `sendMessage`, `editMessageText`, the media sends, `copyMessage` and
/// `forwardMessage`: the checks, Telegram's limits, then the message.
pub(super) fn send(
    s: &mut State,
    token: &str,
    method: &str,
    p: &Params,
    now: Instant,
    bot: &User,
) -> Reply {
    let Some(chat_id) = p.i64("chat_id") else {
        return Answer::error(400, "Bad Request: chat not found").into();
    };
    let text = p
        .str("text")
        .or_else(|| p.str("caption"))
        .unwrap_or_default();
    let fail = |a: Answer| Reply::from(a).chat(chat_id).text(text.clone());
    let chat = match target_chat(s, token, method, chat_id, &text) {
        Ok(chat) => chat,
        Err(answer) => return fail(answer),
    };
    let media = match media(s, method, p) {
        Ok(media) => media,
        Err(answer) => return fail(answer),
    };
    // Each message of an album counts towards the limits.
    let count = media.len().max(1) as u32;
    if let Err((scope, retry_after)) = within_limits(s, token, p, chat_id, count, now) {
        return Reply::from(Answer::too_many(retry_after))
            .chat(chat_id)
            .text(text)
            .scope(scope);
    }
    let message = message(s, method, p, &chat, bot, &text, media);
    if let Some(created) = s
        .awaiting
        .get_mut(&(bot.id, chat_id))
        .and_then(VecDeque::pop_front)
    {
        s.e2e_ms
            .push(now.saturating_duration_since(created).as_secs_f64() * 1e3);
    }
    if message.is_object() {
        s.bot_messages.insert((bot.id, chat_id), message.clone());
    }
    Reply::from(Answer::ok(message)).chat(chat_id).text(text)
}

/// The chat a send goes to, after the real server's checks: migrated,
/// unknown (made up when chats are lenient), blocked, an empty or too long
/// text.
fn target_chat(
    s: &mut State,
    token: &str,
    method: &str,
    chat_id: i64,
    text: &str,
) -> Result<Chat, Answer> {
    if let Some(&to) = s.migrated.get(&chat_id) {
        return Err(Answer::migrated(to));
    }
    let chat = match s.chats.get(&chat_id) {
        Some(c) => c.clone(),
        None if !s.strict_chats => {
            let kind = if chat_id > 0 {
                ChatKind::Private
            } else {
                ChatKind::Supergroup
            };
            let chat = Chat {
                id: chat_id,
                kind,
                title: format!("chat {chat_id}"),
            };
            s.chats.insert(chat_id, chat.clone());
            chat
        }
        None => return Err(Answer::error(400, "Bad Request: chat not found")),
    };
    if s.bots[token].blocked_by.contains(&chat_id) {
        return Err(Answer::error(403, "Forbidden: bot was blocked by the user"));
    }
    if method == "sendmessage" || method == "editmessagetext" {
        if text.trim().is_empty() {
            return Err(Answer::error(400, "Bad Request: message text is empty"));
        }
        if text.chars().count() > 4096 {
            return Err(Answer::error(400, "Bad Request: message is too long"));
        }
    }
    Ok(chat)
}

/// What is sent besides text: one media object per message.
fn media(s: &mut State, method: &str, p: &Params) -> Result<Vec<(&'static str, Value)>, Answer> {
    Ok(match method {
        "sendphoto" => match attach(s, p, "photo", p.0.get("photo"), "photo") {
            Ok(m) => vec![("photo", m)],
            Err(a) => return Err(a),
        },
        "senddocument" => match attach(s, p, "document", p.0.get("document"), "document") {
            Ok(m) => vec![("document", m)],
            Err(a) => return Err(a),
        },
        "sendmediagroup" => {
            let items = match p.0.get("media") {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::String(json)) => match serde_json::from_str(json) {
                    Ok(Value::Array(items)) => items,
                    _ => {
                        return Err(Answer::error(
                            400,
                            "Bad Request: can't parse media JSON object",
                        ));
                    }
                },
                _ => {
                    return Err(Answer::error(
                        400,
                        "Bad Request: parameter \"media\" is required",
                    ));
                }
            };
            if items.len() > 10 {
                return Err(Answer::error(
                    400,
                    "Bad Request: too many messages to send as an album",
                ));
            }
            if items.len() < 2 {
                return Err(Answer::error(
                    400,
                    "Bad Request: media group must include 2-10 items",
                ));
            }
            let mut media = Vec::new();
            for item in &items {
                let kind = match item["type"].as_str() {
                    Some("photo") => "photo",
                    Some("document" | "video" | "audio") => "document",
                    _ => {
                        return Err(Answer::error(
                            400,
                            "Bad Request: unsupported media type in the group",
                        ));
                    }
                };
                match attach(s, p, kind, item.get("media"), "media") {
                    Ok(m) => media.push((kind, m)),
                    Err(a) => return Err(a),
                }
            }
            media
        }
        _ => Vec::new(),
    })
}

/// Injected 429s first, then the token's, chat's and group's windows; the
/// scope and `retry_after` of a refusal.
fn within_limits(
    s: &mut State,
    token: &str,
    p: &Params,
    chat_id: i64,
    count: u32,
    now: Instant,
) -> Result<(), (Scope, u64)> {
    if s.faults.random_429 > 0.0 && s.random() < s.faults.random_429 {
        let (lo, hi) = s.faults.retry_after;
        let n = lo + (s.random() * (hi.saturating_sub(lo) + 1) as f64) as u64;
        return Err((Scope::Injected, n.max(1)));
    }
    let limits = s.limits;
    let paid = p.bool("allow_paid_broadcast");
    let bot_state = s.bots.get_mut(token).expect("checked");
    bot_state
        .windows
        .try_send(&limits, chat_id, count, paid, now)
}

/// The message (or album) a send creates, as Telegram returns it.
fn message(
    s: &mut State,
    method: &str,
    p: &Params,
    chat: &Chat,
    bot: &User,
    text: &str,
    media: Vec<(&'static str, Value)>,
) -> Value {
    let chat_id = chat.id;
    let date = s.unix_time();
    if media.is_empty() {
        let message_id = match p.i64("message_id") {
            Some(id) if method == "editmessagetext" => id,
            _ => s.next_message_id(chat_id),
        };
        let mut message = objects::message(message_id, date, chat, bot, text);
        // An inline keyboard comes back in the message, as Telegram does,
        // so synthetic users can press its buttons.
        let markup = match p.0.get("reply_markup") {
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok(),
            Some(v) => Some(v.clone()),
            None => None,
        };
        if let Some(markup) = markup.filter(|m| m["inline_keyboard"].is_array()) {
            message["reply_markup"] = markup;
        }
        message
    } else {
        let group = (method == "sendmediagroup")
            .then(|| format!("{}", 13_000_000_000_000_000u64 + s.log.len() as u64));
        let mut messages = Vec::new();
        for (i, (kind, object)) in media.into_iter().enumerate() {
            let mut m = objects::message(s.next_message_id(chat_id), date, chat, bot, "");
            let m_obj = m.as_object_mut().expect("a message is an object");
            m_obj.remove("text");
            m_obj.insert(kind.to_owned(), object);
            if i == 0 && !text.is_empty() {
                m_obj.insert("caption".to_owned(), json!(text));
            }
            if let Some(group) = &group {
                m_obj.insert("media_group_id".to_owned(), json!(group));
            }
            messages.push(m);
        }
        if method == "sendmediagroup" {
            Value::Array(messages)
        } else {
            messages.pop().expect("one media object")
        }
    }
}

/// The media object of a photo or document: an upload (the part named
/// `field`, or `attach://name`), a known file id, or a URL (not fetched: the
/// emulator never reaches off loopback).
fn attach(
    s: &mut State,
    p: &Params,
    kind: &str,
    value: Option<&Value>,
    field: &str,
) -> Result<Value, Answer> {
    let reference = value.and_then(Value::as_str);
    let upload = match reference {
        Some(r) if r.starts_with("attach://") => Some(
            p.upload(r)
                .ok_or_else(|| Answer::error(400, "Bad Request: wrong HTTP URL specified"))?,
        ),
        Some(_) => None,
        None => p.upload(field),
    };
    let id = match (upload, reference) {
        (Some(part), _) => {
            let name = part.filename.clone().unwrap_or_default();
            s.files.store(kind, &name, part.data.clone())
        }
        (None, Some(r)) if s.files.get(r).is_some() => r.to_owned(),
        (None, Some(r)) if r.starts_with("http://") || r.starts_with("https://") => {
            let name = r.rsplit('/').next().unwrap_or("file").to_owned();
            s.files.store(kind, &name, Bytes::new())
        }
        (None, Some(_)) => {
            return Err(Answer::error(
                400,
                "Bad Request: wrong file identifier/HTTP URL specified",
            ));
        }
        (None, None) => {
            return Err(Answer::error(
                400,
                &format!("Bad Request: there is no {kind} in the request"),
            ));
        }
    };
    let f = s.files.get(&id).expect("just stored or checked");
    Ok(if kind == "photo" {
        json!([{
            "file_id": id,
            "file_unique_id": f.unique_id,
            "file_size": f.data.len(),
            "width": 90,
            "height": 90,
        }])
    } else {
        json!({
            "file_id": id,
            "file_unique_id": f.unique_id,
            "file_name": f.name,
            "file_size": f.data.len(),
        })
    })
}
