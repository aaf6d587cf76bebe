//! Synthetic users: a traffic generator that sends a bot text messages,
//! commands and button presses from a population of users and groups, at a
//! configured rate (open loop: arrivals do not wait for replies), with Zipf
//! popularity and optional bursts. Every reply the bot sends to a chat
//! answers that chat's oldest unanswered update, which gives the end-to-end
//! latency (update created -> reply accepted by the emulator).

use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Emulator;
use crate::objects::{ChatKind, User};

/// What the synthetic users do (build it with `..Traffic::default()`).
#[derive(Clone, Debug)]
pub struct Traffic {
    /// Users (ids from `first_user`).
    pub users: u32,
    /// Groups (ids from `-1001000000001` down), each with every user.
    pub groups: u32,
    /// Updates per second, on average.
    pub rate: f64,
    /// Popularity: user `k` (from 1) is picked with weight `1 / k^zipf`.
    pub zipf: f64,
    /// The share of updates that are commands (the rest: text, buttons).
    pub commands: f64,
    /// The share of button presses (on the bot's last message to the user).
    pub buttons: f64,
    /// The share of updates sent in a group rather than in private.
    pub in_groups: f64,
    /// The commands users send.
    pub command_list: Vec<String>,
    /// The button data users press.
    pub button_data: Vec<String>,
    /// The first user id.
    pub first_user: i64,
    /// Every `every`, the rate is multiplied by `factor` for `length`.
    pub burst: Option<(Duration, Duration, f64)>,
    /// Random seed (the same seed, the same traffic).
    pub seed: u64,
    /// The shortest time between two updates of one user, as a person
    /// types (zero: no bound). A user picked sooner is drawn again, so the
    /// rate holds and the most active users are capped.
    pub user_gap: Duration,
    /// Which updates expect a reply, and so count in the end-to-end
    /// latency.
    pub replies: Replies,
    /// The rate climbs linearly from a twentieth to `rate` over this long
    /// (zero: full rate at once).
    pub ramp: Duration,
}

/// Which synthetic updates a bot answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Replies {
    /// Every update (a chat bot).
    #[default]
    All,
    /// Commands and button presses only (a bot that listens to groups).
    Commands,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            users: 1_000,
            groups: 5,
            rate: 50.0,
            zipf: 1.0,
            commands: 0.3,
            buttons: 0.3,
            in_groups: 0.2,
            command_list: ["/start", "/next", "/profile", "/matches", "/stats"]
                .map(String::from)
                .to_vec(),
            button_data: ["like", "skip", "next"].map(String::from).to_vec(),
            first_user: 100_000_001,
            burst: None,
            seed: 1,
            user_gap: Duration::ZERO,
            replies: Replies::All,
            ramp: Duration::ZERO,
        }
    }
}

/// What the generator sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrafficReport {
    /// Updates created.
    pub updates: u64,
    /// Plain texts.
    pub texts: u64,
    /// Commands.
    pub commands: u64,
    /// Button presses (callback queries).
    pub buttons: u64,
    /// Updates in groups.
    pub in_groups: u64,
}

/// A running generator.
#[derive(Debug)]
pub struct TrafficHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<TrafficReport>,
}

impl TrafficHandle {
    /// Stops it; what it sent.
    pub async fn stop(self) -> TrafficReport {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

impl Emulator {
    /// Creates the users and groups of `traffic` and starts sending their
    /// updates to `token`'s bot until stopped.
    pub fn start_traffic(&self, token: &str, traffic: Traffic) -> TrafficHandle {
        let users: Vec<i64> = (0..i64::from(traffic.users))
            .map(|i| traffic.first_user + i)
            .collect();
        let groups: Vec<i64> = (0..i64::from(traffic.groups))
            .map(|i| -1_001_000_000_001 - i)
            .collect();
        for &u in &users {
            self.add_user(u, &format!("User{}", u - traffic.first_user + 1));
        }
        for (i, &g) in groups.iter().enumerate() {
            self.add_group(g, &format!("Group {}", i + 1), ChatKind::Supergroup);
        }
        // Zipf: cumulative weights over the users, by rank.
        let mut cdf = Vec::with_capacity(users.len());
        let mut sum = 0.0;
        for k in 1..=users.len() {
            sum += 1.0 / (k as f64).powf(traffic.zipf);
            cdf.push(sum);
        }
        let (stop, mut stopped) = watch::channel(false);
        let state = self.state.clone();
        let token = token.to_owned();
        let task = tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(traffic.seed);
            let mut report = TrafficReport::default();
            let mut last_seen: Vec<Option<Instant>> = vec![None; users.len()];
            let start = Instant::now();
            let mut next = start;
            loop {
                // Open loop: exponential gaps at the (burst-adjusted) rate.
                let in_burst = traffic.burst.is_some_and(|(every, length, _)| {
                    let t = next.saturating_duration_since(start).as_secs_f64();
                    t % every.as_secs_f64() < length.as_secs_f64()
                });
                let ramped = if traffic.ramp.is_zero() {
                    1.0
                } else {
                    let t = next.saturating_duration_since(start).as_secs_f64();
                    (t / traffic.ramp.as_secs_f64()).clamp(0.05, 1.0)
                };
                let rate =
                    traffic.rate * ramped * traffic.burst.filter(|_| in_burst).map_or(1.0, |b| b.2);
                let gap = -(1.0 - rng.f64()).ln() / rate.max(1e-9);
                next += Duration::from_secs_f64(gap);
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = stopped.changed() => return report,
                }
                let mut user = 0;
                for _ in 0..8 {
                    let pick = rng.f64() * sum;
                    let k = cdf.partition_point(|&c| c < pick).min(users.len() - 1);
                    user = users[k];
                    if traffic.user_gap.is_zero()
                        || last_seen[k].is_none_or(|t: Instant| {
                            next.saturating_duration_since(t) >= traffic.user_gap
                        })
                    {
                        last_seen[k] = Some(next);
                        break;
                    }
                }
                let in_group = !groups.is_empty() && rng.f64() < traffic.in_groups;
                let chat = if in_group {
                    groups[(rng.f64() * groups.len() as f64) as usize % groups.len()]
                } else {
                    user
                };
                let roll = rng.f64();
                let mut s = state.lock();
                let Some(bot_id) = s.bots.get(&token).map(|b| b.user.id) else {
                    return report;
                };
                let from = s.users.get(&user).cloned().unwrap_or(User {
                    id: user,
                    is_bot: false,
                    first_name: "User".into(),
                    username: None,
                });
                let last = s.bot_messages.get(&(bot_id, chat)).cloned();
                // Latency counts from the scheduled arrival, not from when
                // this task got to it: a late generator does not hide a
                // slow bot (no coordinated omission).
                let created = next;
                let (made, plain_text) = if roll < traffic.buttons
                    && last.is_some()
                    && !traffic.button_data.is_empty()
                {
                    // A button of the bot's last message when it has
                    // some, else one of the configured data.
                    let offered: Vec<&str> = last
                        .as_ref()
                        .and_then(|m| m["reply_markup"]["inline_keyboard"].as_array())
                        .map(|rows| {
                            rows.iter()
                                .filter_map(|r| r.as_array())
                                .flatten()
                                .filter_map(|b| b["callback_data"].as_str())
                                .collect()
                        })
                        .unwrap_or_default();
                    let data = if offered.is_empty() {
                        traffic.button_data[(rng.f64() * traffic.button_data.len() as f64) as usize
                            % traffic.button_data.len()]
                        .as_str()
                    } else {
                        offered[(rng.f64() * offered.len() as f64) as usize % offered.len()]
                    };
                    report.buttons += 1;
                    let query = json!({
                        "id": format!("{}", report.updates + 1),
                        "from": from.json(),
                        "chat_instance": format!("{chat}"),
                        "data": data,
                        "message": last,
                    });
                    (
                        s.push_update(&token, |_| json!({ "callback_query": query })),
                        false,
                    )
                } else {
                    let (text, plain_text) = if roll < traffic.buttons + traffic.commands
                        && !traffic.command_list.is_empty()
                    {
                        report.commands += 1;
                        let command = traffic.command_list[(rng.f64()
                            * traffic.command_list.len() as f64)
                            as usize
                            % traffic.command_list.len()]
                        .clone();
                        (command, false)
                    } else {
                        report.texts += 1;
                        (format!("hello {}", report.updates + 1), true)
                    };
                    (s.inject_message(&token, chat, user, &text).ok(), plain_text)
                };
                let expects_reply = traffic.replies == Replies::All || !plain_text;
                if made.is_some() {
                    report.updates += 1;
                    if in_group {
                        report.in_groups += 1;
                    }
                    if expects_reply {
                        s.awaiting
                            .entry((bot_id, chat))
                            .or_default()
                            .push_back(created);
                    }
                }
            }
        });
        TrafficHandle { stop, task }
    }

    /// End-to-end latencies so far (a synthetic update created -> the
    /// bot's reply to that chat accepted), in milliseconds.
    pub fn latencies_ms(&self) -> Vec<f64> {
        self.with(|s| s.e2e_ms.clone())
    }

    /// The end-to-end latencies after the first `skip`, in milliseconds.
    pub fn latencies_ms_from(&self, skip: usize) -> Vec<f64> {
        self.with(|s| {
            s.e2e_ms
                .get(skip..)
                .map(<[f64]>::to_vec)
                .unwrap_or_default()
        })
    }
}
