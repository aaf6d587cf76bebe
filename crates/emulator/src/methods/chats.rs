//! The methods that read a chat: `getChat`, `getChatMemberCount`,
//! `getChatMember`, `getChatAdministrators`.

use serde_json::json;

use super::Reply;
use crate::objects::User;
use crate::server::{Answer, Params, State};

fn chat_not_found(p: &Params) -> Reply {
    Reply::from(Answer::error(400, "Bad Request: chat not found")).chat(p.i64("chat_id"))
}

/// `getChat`: the chat's full info.
pub(super) fn get_chat(s: &State, p: &Params) -> Reply {
    match p.i64("chat_id").and_then(|c| s.chats.get(&c)) {
        Some(chat) => Reply::from(Answer::ok(chat.full_info())).chat(chat.id),
        None => chat_not_found(p),
    }
}

/// `getChatMemberCount`: 2 in a private chat, a number derived from the id
/// in a group.
pub(super) fn get_chat_member_count(s: &State, p: &Params) -> Reply {
    match p.i64("chat_id").and_then(|c| s.chats.get(&c)) {
        Some(chat) => {
            let count = if chat.id > 0 {
                2
            } else {
                1 + chat.id.unsigned_abs() % 500
            };
            Reply::from(Answer::ok(json!(count))).chat(chat.id)
        }
        None => chat_not_found(p),
    }
}

/// `getChatMember`: the bot is an administrator without rights, anyone
/// else a member.
pub(super) fn get_chat_member(s: &State, p: &Params, bot: &User) -> Reply {
    let chat = p.i64("chat_id");
    let user = p
        .i64("user_id")
        .and_then(|u| s.users.get(&u).or((u == bot.id).then_some(bot)));
    match (chat.and_then(|c| s.chats.get(&c)), user) {
        (None, _) => chat_not_found(p),
        (Some(_), None) => {
            Reply::from(Answer::error(400, "Bad Request: user not found")).chat(chat)
        }
        (Some(_), Some(user)) => {
            let status = if user.id == bot.id {
                "administrator"
            } else {
                "member"
            };
            let mut member = json!({ "status": status, "user": user.json() });
            if status == "administrator" {
                for right in [
                    "can_be_edited",
                    "is_anonymous",
                    "can_manage_chat",
                    "can_delete_messages",
                    "can_manage_video_chats",
                    "can_restrict_members",
                    "can_promote_members",
                    "can_change_info",
                    "can_invite_users",
                    "can_post_stories",
                    "can_edit_stories",
                    "can_delete_stories",
                ] {
                    member[right] = json!(false);
                }
            }
            Reply::from(Answer::ok(member)).chat(chat)
        }
    }
}

/// `getChatAdministrators`: one owner.
pub(super) fn get_chat_administrators(s: &State, p: &Params) -> Reply {
    match p.i64("chat_id").and_then(|c| s.chats.get(&c)) {
        Some(chat) => {
            let owner = User {
                id: 1,
                is_bot: false,
                first_name: "Owner".into(),
                username: None,
            };
            let admins =
                json!([{ "status": "creator", "user": owner.json(), "is_anonymous": false }]);
            Reply::from(Answer::ok(admins)).chat(chat.id)
        }
        None => chat_not_found(p),
    }
}
