//! The update a handler gets: its id at once, its content parsed on first
//! use.

use std::sync::OnceLock;

use botfleet_protocol::Json;
use botfleet_telegram::updates::UpdateContent;

/// One update from Telegram, as the supervisor delivered it.
///
/// The JSON is parsed into Bot API types only when the handler asks for
/// [`content`](Update::content): a handler that routes on a few updates
/// and ignores the rest does not pay for parsing the rest (a text message
/// takes about 3 µs to parse, more than the IPC that brought it).
#[derive(Clone)]
pub struct Update {
    id: i64,
    json: Json,
    content: OnceLock<Result<UpdateContent, String>>,
}

impl std::fmt::Debug for Update {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Update")
            .field("id", &self.id)
            .field("json", &self.json.get())
            .finish()
    }
}

/// An update whose JSON is not an update of the Bot API this SDK knows.
#[derive(Clone, Debug, thiserror::Error)]
#[error("update {id} does not parse: {message}")]
pub struct UpdateError {
    /// The update's id.
    pub id: i64,
    /// What is wrong, from the parser.
    pub message: String,
}

impl Update {
    /// An update with id `id` and text `json` (the SDK makes them; public
    /// so a handler can be tested without a supervisor).
    pub fn new(id: i64, json: Json) -> Update {
        Update {
            id,
            json,
            content: OnceLock::new(),
        }
    }

    /// The update's `update_id`.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The update's JSON text, as Telegram sent it.
    pub fn json(&self) -> &str {
        self.json.get()
    }

    /// The update's content in Bot API types, parsed the first time it is
    /// asked for.
    pub fn content(&self) -> Result<&UpdateContent, UpdateError> {
        self.content
            .get_or_init(|| parse(self.json.get()))
            .as_ref()
            .map_err(|message| UpdateError {
                id: self.id,
                message: message.clone(),
            })
    }

    /// The update's content, owned.
    pub fn into_content(self) -> Result<UpdateContent, UpdateError> {
        let id = self.id;
        match self.content.into_inner() {
            Some(parsed) => parsed,
            None => parse(self.json.get()),
        }
        .map_err(|message| UpdateError { id, message })
    }
}

fn parse(json: &str) -> Result<UpdateContent, String> {
    botfleet_telegram::parse_update(json)
        .map(|u| u.content)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(json: &str) -> Update {
        Update::new(7, Json::parse(json.to_owned()).unwrap())
    }

    #[test]
    fn content_is_parsed_once_and_kept() {
        let u = update(
            r#"{"update_id":7,"message":{"message_id":1,"date":0,"chat":{"id":42,"type":"private"},"text":"hi"}}"#,
        );
        let UpdateContent::Message(m) = u.content().unwrap() else {
            panic!("a message");
        };
        assert_eq!((m.chat.id, m.text.as_deref()), (42, Some("hi")));
        assert!(std::ptr::eq(u.content().unwrap(), u.content().unwrap()));
        assert!(matches!(u.into_content(), Ok(UpdateContent::Message(_))));
    }

    #[test]
    fn a_bad_update_is_an_error_naming_it() {
        let u = update(r#"{"update_id":7,"message":{"date":0}}"#);
        let e = u.content().unwrap_err().to_string();
        assert!(
            e.starts_with("update 7 does not parse:") && e.contains("message_id"),
            "{e}"
        );
        assert_eq!(u.into_content().unwrap_err().id, 7);
    }
}
