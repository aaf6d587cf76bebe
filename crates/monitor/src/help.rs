//! Each metric's `# HELP` text, from the catalogue in docs/metrics.md: the
//! one place a metric is described, so the exposition and the docs cannot
//! disagree, and a metric missing from the catalogue shows (promtool
//! flags a metric without help).

use std::collections::HashMap;
use std::sync::OnceLock;

/// docs/metrics.md, built in.
const CATALOGUE: &str = include_str!("../../../docs/metrics.md");

/// The help text of `name`, if the catalogue has it.
pub(crate) fn of(name: &str) -> Option<&'static str> {
    static HELP: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    HELP.get_or_init(|| parse(CATALOGUE))
        .get(name)
        .map(String::as_str)
}

/// The rows `| `name` | type | labels | meaning |` of every table.
fn parse(text: &'static str) -> HashMap<&'static str, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // ["", name, type, labels, meaning, ""]
        if cells.len() < 6 || !cells[0].is_empty() {
            continue;
        }
        let Some(name) = cells[1]
            .strip_prefix('`')
            .and_then(|n| n.strip_suffix('`'))
            .filter(|n| n.starts_with("botfleet_") || n.starts_with("process_"))
        else {
            continue;
        };
        // A meaning may hold a `|` of its own: the rest of the row.
        let meaning = cells[4..cells.len() - 1].join("|").replace('`', "");
        out.insert(name, meaning);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_describes_the_runtimes_metrics() {
        assert_eq!(
            of("botfleet_journal_depth"),
            Some("updates in the bot's journal not acked yet (ingest waits at 10,000)")
        );
        assert!(of("botfleet_worker_ready_seconds").is_some());
        assert!(of("botfleet_cache_hits_total").is_some());
        assert_eq!(of("botfleet_no_such_metric"), None);
    }
}
