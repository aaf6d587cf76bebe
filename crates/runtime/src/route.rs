//! Which chat an update belongs to, for routing and ordering.

use serde_json::Value;

/// The routing key of an update: its chat id; the user's id for inline
/// queries, callback queries and the like; its own update id otherwise (so
/// it is ordered with nothing).
pub(crate) fn key(update: &Value, update_id: i64) -> i64 {
    let Some(o) = update.as_object() else {
        return update_id;
    };
    for (field, value) in o {
        let found = match field.as_str() {
            "message"
            | "edited_message"
            | "channel_post"
            | "edited_channel_post"
            | "business_message"
            | "edited_business_message"
            | "my_chat_member"
            | "chat_member"
            | "chat_join_request"
            | "message_reaction"
            | "message_reaction_count"
            | "chat_boost"
            | "removed_chat_boost" => value["chat"]["id"].as_i64(),
            "callback_query"
            | "inline_query"
            | "chosen_inline_result"
            | "shipping_query"
            | "pre_checkout_query"
            | "poll_answer" => value["from"]["id"]
                .as_i64()
                .or_else(|| value["user"]["id"].as_i64()),
            _ => None,
        };
        if let Some(key) = found {
            return key;
        }
    }
    update_id
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn routes_by_chat_then_user_then_update() {
        assert_eq!(
            super::key(&json!({"update_id": 1, "message": {"chat": {"id": -5}}}), 1),
            -5
        );
        assert_eq!(
            super::key(
                &json!({"update_id": 2, "callback_query": {"from": {"id": 7}, "message": {"chat": {"id": -5}}}}),
                2
            ),
            7
        );
        assert_eq!(
            super::key(&json!({"update_id": 3, "poll": {"id": "x"}}), 3),
            3
        );
        assert_eq!(super::key(&json!([1]), 4), 4);
    }
}
