//! `botfleet compare`: on real commands run interleaved, and on benchmark
//! documents.

use crate::{botfleet, scratch, stderr, stdout};

/// The verdict of `wall_s` in a `compare --json` answer.
fn wall_verdict(answer: &serde_json::Value) -> String {
    answer["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "wall_s")
        .map(|f| f["verdict"].as_str().unwrap().to_owned())
        .unwrap()
}

fn compare(
    dir: &std::path::Path,
    runs: &str,
    a: &[&str],
    b: &[&str],
    seed: u64,
) -> (Option<i32>, serde_json::Value) {
    let seed = seed.to_string();
    let mut args = vec!["compare", "--json", "--runs", runs, "--seed", &seed, "--"];
    args.extend(a);
    args.push("--");
    args.extend(b);
    let out = botfleet(dir, &args, &[]);
    let answer = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code(), answer)
}

/// Two identical commands, 40 trials of 16 runs a side: "same" in at
/// least 95 % of them (the machine's own noise is the noise).
#[test]
fn identical_commands_are_the_same_in_95_percent_of_40_trials() {
    let dir = scratch("compare-aa");
    let sleep = ["sleep", "0.04"];
    let mut same = 0;
    let mut seen = Vec::new();
    for trial in 0..40 {
        let (code, answer) = compare(&dir, "16", &sleep, &sleep, trial);
        let verdict = wall_verdict(&answer);
        assert_eq!(
            code,
            Some(if verdict == "worse" { 1 } else { 0 }),
            "{answer}"
        );
        if verdict == "same" {
            same += 1;
        }
        seen.push(verdict);
    }
    assert!(same >= 38, "same in {same} of 40: {seen:?}");
}

/// A 5 % slowdown at 20 runs a side is worse, and the exit code says so.
#[test]
fn a_five_percent_slowdown_is_worse_at_20_runs() {
    let dir = scratch("compare-ab");
    let (code, answer) = compare(&dir, "20", &["sleep", "0.1"], &["sleep", "0.105"], 1);
    assert_eq!(wall_verdict(&answer), "worse", "{answer}");
    assert_eq!(code, Some(1));
}

/// Benchmark documents: several runs a side, one figure changed; it alone
/// is reported, and bad input is told where.
#[test]
fn benchmark_documents_with_one_figure_changed() {
    let dir = scratch("compare-docs");
    let doc = |p99: f64, sent: f64, i: usize| {
        serde_json::json!({
            "machine": {"cores": 2},
            "p99_ms": p99,
            "workloads": [{"name": "W1", "sent": sent + i as f64 * 0.01, "efficiency": 0.95}],
        })
        .to_string()
    };
    // Five runs a side as JSON lines; p99 up by a third on the new side.
    let base: Vec<String> = (0..5)
        .map(|i| doc(8.0 + i as f64 * 0.05, 100.0, i))
        .collect();
    let new: Vec<String> = (0..5)
        .map(|i| doc(11.0 + i as f64 * 0.05, 100.0, i))
        .collect();
    std::fs::write(dir.join("base.json"), base.join("\n")).unwrap();
    std::fs::write(dir.join("new.json"), new.join("\n")).unwrap();
    let out = botfleet(&dir, &["compare", "--json", "base.json", "new.json"], &[]);
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let verdicts: Vec<(String, String)> = answer["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("p99_ms".to_owned(), "worse".to_owned()),
            ("workloads[W1].efficiency".to_owned(), "same".to_owned()),
            ("workloads[W1].sent".to_owned(), "same".to_owned()),
        ],
        "{answer}"
    );
    assert_eq!(out.status.code(), Some(1));
    // The table says the same.
    let out = botfleet(&dir, &["compare", "base.json", "new.json"], &[]);
    let table = stdout(&out);
    assert!(
        table.contains("p99_ms") && table.contains("worse"),
        "{table}"
    );
    assert!(
        table.contains("3 figures: 1 worse, 0 better, 2 same"),
        "{table}"
    );
    // Broken JSON is told with its place; a missing file, with its name.
    std::fs::write(dir.join("broken.json"), "{\"p99_ms\": 8,\n  oops}").unwrap();
    let out = botfleet(&dir, &["compare", "base.json", "broken.json"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("broken.json:2:"), "{}", stderr(&out));
    let out = botfleet(&dir, &["compare", "base.json", "missing.json"], &[]);
    assert!(
        stderr(&out).contains("cannot read missing.json"),
        "{}",
        stderr(&out)
    );
    let out = botfleet(&dir, &["compare", "base.json"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    // A command that fails stops the comparison with its own words.
    let out = botfleet(
        &dir,
        &[
            "compare",
            "--runs",
            "2",
            "--",
            "sh",
            "-c",
            "echo boom >&2; exit 3",
            "--",
            "true",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("boom") && stderr(&out).contains("exit status: 3"),
        "{}",
        stderr(&out)
    );
}
