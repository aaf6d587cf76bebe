//! Bot API calls from workers: sends go through the bot's one limiter
//! (invariant 3), everything else straight; the result goes back to the
//! worker that asked.

use botfleet_protocol::{Action, ActionResult, Json, PRIORITY_PARAM};
use botfleet_telegram::limiter::Priority;
use botfleet_telegram::types::ChatId;
use botfleet_telegram::{Client, Error, ErrorKind};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Methods that post to a chat and count towards Telegram's limits
/// (edits of a chat's message count too, as the emulator counts them).
fn is_send(method: &str) -> bool {
    let m = method.to_ascii_lowercase();
    (m.starts_with("send") && m != "sendchataction")
        || m.starts_with("edit")
        || matches!(
            m.as_str(),
            "forwardmessage" | "forwardmessages" | "copymessage" | "copymessages"
        )
}

/// Makes `action`'s call and returns its result.
pub(crate) async fn perform(client: &Client, action: Action) -> ActionResult {
    let request_id = action.request_id;
    // The supervisor's reader checks a worker's documents, so this is
    // valid JSON; the parse finds the chat.
    let params: &RawValue = match action.params.raw() {
        Ok(params) => params,
        Err(e) => {
            return failure(
                request_id,
                400,
                &format!("Bad Request: the parameters are not JSON ({e})"),
                None,
            );
        }
    };
    let mut head: Value = serde_json::from_str(params.get()).unwrap_or(Value::Null);
    // A worker's broadcast asks for the broadcast priority with a
    // parameter of botfleet's own, which Telegram must not see.
    let mut priority = Priority::Interactive;
    let stripped;
    let params: &RawValue = match head.as_object_mut().and_then(|o| o.remove(PRIORITY_PARAM)) {
        Some(p) => {
            if p == "broadcast" {
                priority = Priority::Broadcast;
            }
            stripped =
                RawValue::from_string(head.to_string()).unwrap_or_else(|_| params.to_owned());
            &stripped
        }
        None => params,
    };
    // An edit of an inline message has no chat: it goes straight.
    let chat_bound =
        !head["chat_id"].is_null() || !action.method.to_ascii_lowercase().starts_with("edit");
    let outcome = if is_send(&action.method) && chat_bound {
        let chat = match &head["chat_id"] {
            Value::Number(n) => n.as_i64().map(ChatId::Integer),
            Value::String(s) => Some(
                s.parse()
                    .map(ChatId::Integer)
                    .unwrap_or_else(|_| ChatId::String(s.clone())),
            ),
            _ => None,
        };
        let paid = head["allow_paid_broadcast"].as_bool().unwrap_or(false);
        match chat {
            Some(chat) => {
                client
                    .send::<RawValue, Box<RawValue>>(&action.method, &chat, priority, paid, params)
                    .await
            }
            None => {
                return failure(request_id, 400, "Bad Request: chat_id is empty", None);
            }
        }
    } else {
        client
            .call::<RawValue, Box<RawValue>>(&action.method, params)
            .await
    };
    match outcome {
        Ok(result) => ActionResult {
            request_id,
            ok: true,
            body: Json::from_raw(result),
        },
        Err(e) => from_error(request_id, &e),
    }
}

fn from_error(request_id: u64, e: &Error) -> ActionResult {
    let (code, migrate) = match &e.kind {
        ErrorKind::RetryAfter(_) => (429, None),
        ErrorKind::ChatNotFound | ErrorKind::Rejected(_) | ErrorKind::Decode(_) => (400, None),
        ErrorKind::Migrated(to) => (400, Some(*to)),
        ErrorKind::Blocked => (403, None),
        ErrorKind::Unauthorized => (401, None),
        ErrorKind::NotFound(_) => (404, None),
        ErrorKind::Conflict(_) => (409, None),
        ErrorKind::Server { code, .. } => (i64::from(*code), None),
        _ => (0, None),
    };
    failure(request_id, code, &e.to_string(), migrate)
}

fn failure(request_id: u64, code: i64, description: &str, migrate: Option<i64>) -> ActionResult {
    let mut body = json!({ "error_code": code, "description": description });
    if let Some(to) = migrate {
        body["parameters"] = json!({ "migrate_to_chat_id": to });
    }
    ActionResult {
        request_id,
        ok: false,
        body: Json::from_value(&body),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sends_are_told_from_other_calls() {
        for m in [
            "sendMessage",
            "SENDPHOTO",
            "copyMessage",
            "forwardMessages",
            "editMessageText",
        ] {
            assert!(super::is_send(m), "{m}");
        }
        for m in [
            "sendChatAction",
            "getChat",
            "answerCallbackQuery",
            "deleteMessage",
        ] {
            assert!(!super::is_send(m), "{m}");
        }
    }
}
