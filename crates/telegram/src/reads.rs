//! Cache-first reads: `getMe`, `getChat`, `getChatMember`,
//! `getChatMemberCount` and `getChatAdministrators` through the tiered
//! cache (L1, and Redis when given), so a fleet asks Telegram once per TTL
//! instead of once per update. Membership updates (`chat_member`,
//! `my_chat_member`) drop what they change; the calls saved are counted.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use botfleet_cache::{Redis, TieredCache};
use frankenstein::methods::{
    GetChatAdministratorsParams, GetChatMemberCountParams, GetChatMemberParams, GetChatParams,
};
use frankenstein::types::{ChatFullInfo, ChatMember, User};
use frankenstein::updates::{Update, UpdateContent};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Client, Error, ErrorKind};

/// What a cache key must be.
trait Key:
    std::hash::Hash + Eq + Clone + std::fmt::Display + std::str::FromStr + Send + Sync + 'static
{
}
impl<
    T: std::hash::Hash + Eq + Clone + std::fmt::Display + std::str::FromStr + Send + Sync + 'static,
> Key for T
{
}

/// What a cached value must be.
trait Val: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Val for T {}

/// The Bot API reads of one bot, cache first. Cheap to clone.
#[derive(Clone)]
pub struct Reads {
    client: Client,
    me: TieredCache<String, User>,
    chats: TieredCache<i64, ChatFullInfo>,
    members: TieredCache<String, ChatMember>,
    counts: TieredCache<i64, u32>,
    admins: TieredCache<i64, Vec<ChatMember>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads")
            .field("reads", &self.reads())
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Counters {
    reads: AtomicU64,
    calls: AtomicU64,
}

impl Reads {
    /// Reads of `client`'s bot (`bot` names its cache keys), kept for `ttl`
    /// (`getMe` for a day); through Redis when `redis` is given, so every
    /// process of the bot shares them.
    pub fn new(client: Client, bot: &str, ttl: Duration, redis: Option<Redis>) -> Reads {
        fn cache<K, V>(
            ns: &str,
            bot: &str,
            ttl: Duration,
            redis: &Option<Redis>,
        ) -> TieredCache<K, V>
        where
            K: Key,
            V: Val,
        {
            let b = TieredCache::builder(ns)
                .bot(bot)
                .ttl(ttl)
                .negative_ttl(Duration::ZERO);
            match redis {
                Some(r) => b.redis(r.clone()).build(),
                None => b.build(),
            }
        }
        Reads {
            me: cache("tg-me", bot, Duration::from_secs(86_400), &redis),
            chats: cache("tg-chat", bot, ttl, &redis),
            members: cache("tg-member", bot, ttl, &redis),
            counts: cache("tg-member-count", bot, ttl, &redis),
            admins: cache("tg-admins", bot, ttl, &redis),
            client,
            counters: Arc::default(),
        }
    }

    /// Reads asked of this handle.
    pub fn reads(&self) -> u64 {
        self.counters.reads.load(Ordering::Relaxed)
    }

    /// Reads that reached Telegram.
    pub fn calls(&self) -> u64 {
        self.counters.calls.load(Ordering::Relaxed)
    }

    /// Exports the reads and the calls that reached Telegram through the
    /// `metrics` facade.
    pub fn report_metrics(&self) {
        crate::metrics::reads(self.client.bot(), self.reads(), self.calls());
    }

    /// Calls the cache saved: reads minus calls.
    pub fn calls_saved(&self) -> u64 {
        self.reads().saturating_sub(self.calls())
    }

    async fn read<K, V, F, Fut>(
        &self,
        cache: &TieredCache<K, V>,
        key: K,
        method: &str,
        call: F,
    ) -> Result<V, Error>
    where
        K: Key,
        V: Val,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, Error>>,
    {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        // A call's error comes back through the cache boxed; keep ours.
        let failed: Arc<Mutex<Option<Error>>> = Arc::default();
        let stash = failed.clone();
        let counters = self.counters.clone();
        let result = cache
            .get_or_load(&key, || async move {
                counters.calls.fetch_add(1, Ordering::Relaxed);
                match call().await {
                    Ok(v) => Ok(Some(v)),
                    Err(e) => {
                        let message = e.to_string();
                        *stash.lock() = Some(e);
                        Err(message)
                    }
                }
            })
            .await;
        let unexpected = |what: String| Error {
            method: method.to_owned(),
            kind: ErrorKind::Decode(what),
        };
        match result {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(unexpected("the cache remembered an absence".into())),
            Err(e) => Err(failed
                .lock()
                .take()
                .unwrap_or_else(|| unexpected(e.to_string()))),
        }
    }

    /// `getMe`.
    pub async fn get_me(&self) -> Result<User, Error> {
        let c = self.client.clone();
        self.read(&self.me, "me".to_owned(), "getMe", || async move {
            c.get_me().await
        })
        .await
    }

    /// `getChat`.
    pub async fn get_chat(&self, chat: i64) -> Result<ChatFullInfo, Error> {
        let c = self.client.clone();
        self.read(&self.chats, chat, "getChat", || async move {
            c.get_chat(&GetChatParams::builder().chat_id(chat).build())
                .await
        })
        .await
    }

    /// `getChatMember`.
    pub async fn get_chat_member(&self, chat: i64, user: u64) -> Result<ChatMember, Error> {
        let c = self.client.clone();
        self.read(
            &self.members,
            format!("{chat}:{user}"),
            "getChatMember",
            || async move {
                c.get_chat_member(
                    &GetChatMemberParams::builder()
                        .chat_id(chat)
                        .user_id(user)
                        .build(),
                )
                .await
            },
        )
        .await
    }

    /// `getChatMemberCount`.
    pub async fn get_chat_member_count(&self, chat: i64) -> Result<u32, Error> {
        let c = self.client.clone();
        self.read(&self.counts, chat, "getChatMemberCount", || async move {
            c.get_chat_member_count(&GetChatMemberCountParams::builder().chat_id(chat).build())
                .await
        })
        .await
    }

    /// `getChatAdministrators`.
    pub async fn get_chat_administrators(&self, chat: i64) -> Result<Vec<ChatMember>, Error> {
        let c = self.client.clone();
        self.read(&self.admins, chat, "getChatAdministrators", || async move {
            c.get_chat_administrators(&GetChatAdministratorsParams::builder().chat_id(chat).build())
                .await
        })
        .await
    }

    /// Drops what a membership update changes: the member, the chat's
    /// count and administrators (and the chat itself, for `my_chat_member`:
    /// the bot's own rights changed). Other updates are ignored.
    pub async fn observe(&self, update: &Update) {
        let (changed, mine) = match &update.content {
            UpdateContent::ChatMember(c) => (c, false),
            UpdateContent::MyChatMember(c) => (c, true),
            _ => return,
        };
        let chat = changed.chat.id;
        let user = member_user(&changed.new_chat_member).id;
        self.members.invalidate(&format!("{chat}:{user}")).await;
        self.counts.invalidate(&chat).await;
        self.admins.invalidate(&chat).await;
        if mine {
            self.chats.invalidate(&chat).await;
        }
    }
}

fn member_user(m: &ChatMember) -> &User {
    match m {
        ChatMember::Creator(m) => &m.user,
        ChatMember::Administrator(m) => &m.user,
        ChatMember::Member(m) => &m.user,
        ChatMember::Restricted(m) => &m.user,
        ChatMember::Left(m) => &m.user,
        ChatMember::Kicked(m) => &m.user,
    }
}
