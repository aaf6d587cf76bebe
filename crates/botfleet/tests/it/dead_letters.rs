//! `botfleet dead-letters` on a data directory.

use crate::{botfleet, scratch, stderr, stdout};

#[test]
fn dead_letters_are_listed_shown_replayed_and_dropped() {
    let dir = scratch("dead-letters");
    let letters = dir.join("data/dead-letters/echo");
    std::fs::create_dir_all(&letters).unwrap();
    for id in [41, 42] {
        std::fs::write(
            letters.join(format!("{id}.json")),
            serde_json::json!({
                "bot": "echo", "update_id": id, "chat": 7, "attempts": 3,
                "reason": "its worker died while handling it, 3 times in 3 attempts",
                "output": ["Traceback (most recent call last):", "ZeroDivisionError"],
                "dead_at": 1_796_645_045u64,
                "update": {"update_id": id, "message": {"text": "boom"}},
            })
            .to_string(),
        )
        .unwrap();
    }
    let run = |args: &[&str]| {
        let mut all = vec!["dead-letters", "--data-dir", "data"];
        all.extend_from_slice(args);
        botfleet(&dir, &all, &[])
    };
    let out = run(&["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "echo\t41\tchat 7\t3 attempts\t2026-12-07T12:04:05Z\tits worker died while handling it, 3 times in 3 attempts\n\
         echo\t42\tchat 7\t3 attempts\t2026-12-07T12:04:05Z\tits worker died while handling it, 3 times in 3 attempts\n"
    );
    let out = run(&["show", "echo", "41"]);
    assert!(
        stdout(&out).contains("  ZeroDivisionError\n"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("\"text\": \"boom\""),
        "{}",
        stdout(&out)
    );
    let out = run(&["replay", "echo", "41"]);
    assert_eq!(stdout(&out), "update 41 handed back to bot echo\n");
    assert!(letters.join("replay/41.json").exists());
    let out = run(&["drop", "echo", "--all"]);
    assert_eq!(stdout(&out), "update 42 dropped from bot echo\n");
    let out = run(&["list"]);
    assert_eq!(stdout(&out), "no dead letters in data/dead-letters\n");
    let out = run(&["drop", "echo", "99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no dead letter 99 of bot echo in data"),
        "{}",
        stderr(&out)
    );
}
