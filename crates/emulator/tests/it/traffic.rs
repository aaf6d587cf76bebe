//! Synthetic users and end-to-end latency.

use std::collections::HashMap;
use std::time::Duration;

use botfleet_emulator::{Emulator, EmulatorConfig, Limits, Traffic};

use crate::{TOKEN, api};

#[tokio::test]
async fn synthetic_users_send_a_mix_and_replies_are_timed() {
    let e = Emulator::start(EmulatorConfig::default().limits(Limits::unlimited()))
        .await
        .unwrap();
    e.add_bot(TOKEN, "b_bot").unwrap();
    let a = e.addr();
    // A bot that answers every update in its chat.
    let bot = tokio::spawn(async move {
        let mut offset = 0;
        let mut per_user: HashMap<i64, u32> = HashMap::new();
        let mut kinds = (0, 0);
        loop {
            let r = api(
                a,
                "getUpdates",
                &format!(r#"{{"offset": {offset}, "timeout": 1}}"#),
            )
            .await;
            let updates = r.body["result"].as_array().cloned().unwrap_or_default();
            if updates.is_empty() {
                return (per_user, kinds);
            }
            for u in updates {
                offset = u["update_id"].as_i64().unwrap() + 1;
                let (chat, from) = if let Some(m) = u.get("message") {
                    kinds.0 += 1;
                    (
                        m["chat"]["id"].as_i64().unwrap(),
                        m["from"]["id"].as_i64().unwrap(),
                    )
                } else {
                    kinds.1 += 1;
                    let q = &u["callback_query"];
                    (
                        q["message"]["chat"]["id"].as_i64().unwrap(),
                        q["from"]["id"].as_i64().unwrap(),
                    )
                };
                *per_user.entry(from).or_default() += 1;
                let r = api(
                    a,
                    "sendMessage",
                    &format!(r#"{{"chat_id": {chat}, "text": "ok"}}"#),
                )
                .await;
                assert_eq!(r.status, 200, "{r:?}");
            }
        }
    });
    let traffic = e.start_traffic(
        TOKEN,
        Traffic {
            users: 50,
            rate: 300.0,
            ..Traffic::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let report = traffic.stop().await;
    let (per_user, (messages, buttons)) = bot.await.unwrap();
    assert!((150..=500).contains(&report.updates), "{report:?}");
    assert_eq!(
        report.texts + report.commands + report.buttons,
        report.updates
    );
    assert_eq!(
        messages + buttons,
        report.updates,
        "the bot saw every update"
    );
    assert_eq!(buttons, report.buttons);
    assert!(
        report.commands > 0 && report.texts > 0 && report.in_groups > 0,
        "{report:?}"
    );
    // Zipf: the first user is the most active.
    let top = per_user
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(u, _)| *u)
        .unwrap();
    assert_eq!(top, 100_000_001, "{per_user:?}");
    let latencies = e.latencies_ms();
    assert_eq!(
        latencies.len() as u64,
        report.updates,
        "every update answered once"
    );
    assert!(latencies.iter().all(|l| (0.0..5_000.0).contains(l)));
}
