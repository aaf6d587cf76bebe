//! The exposition formats: Prometheus text 0.0.4, and OpenMetrics 1.0 for a
//! scraper that asks for it, and how they write values, labels and help.
//! [`Registry::render`](crate::Registry::render) writes them: each name's
//! lines are one group, `# HELP` and `# TYPE` first; histograms are real
//! buckets (cumulative, `+Inf` equal to `_count`), then `_sum` and
//! `_count`.

/// The content type of Prometheus text 0.0.4.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics text 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A text format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4.
    Prometheus,
    /// OpenMetrics text 1.0.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// it, else Prometheus text.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// Its content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// A float as Prometheus reads it (Go's `ParseFloat`).
pub(crate) fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

pub(crate) fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn registry() -> Registry {
        let r = Registry::new(100);
        metrics::with_local_recorder(&r, || {
            metrics::describe_counter!("botfleet_sent_total", "messages sent");
            metrics::counter!("botfleet_sent_total", "bot" => "dating", "scope" => "a\"b\\c\nd")
                .increment(2);
            metrics::counter!("botfleet_sent_total", "bot" => "analytics").increment(1);
            metrics::gauge!("botfleet_depth").set(f64::INFINITY);
            metrics::histogram!("botfleet_wait_seconds", "bot" => "dating").record(0.003);
        });
        r
    }

    #[test]
    fn prometheus_text_groups_escapes_and_buckets() {
        let text = registry().render(Format::Prometheus, |_| true);
        let expected_start = "# TYPE botfleet_depth gauge\nbotfleet_depth +Inf\n";
        assert!(text.starts_with(expected_start), "{text}");
        assert!(text.contains(
            "# HELP botfleet_sent_total messages sent\n# TYPE botfleet_sent_total counter\n\
             botfleet_sent_total{bot=\"analytics\"} 1\n\
             botfleet_sent_total{bot=\"dating\",scope=\"a\\\"b\\\\c\\nd\"} 2\n"
        ));
        assert!(text.contains("botfleet_wait_seconds_bucket{bot=\"dating\",le=\"0.0025\"} 0\n"));
        assert!(text.contains("botfleet_wait_seconds_bucket{bot=\"dating\",le=\"0.005\"} 1\n"));
        assert!(text.contains("botfleet_wait_seconds_bucket{bot=\"dating\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("botfleet_wait_seconds_sum{bot=\"dating\"} 0.003\n"));
        assert!(text.contains("botfleet_wait_seconds_count{bot=\"dating\"} 1\n"));
        assert!(text.ends_with('\n'));
        // One TYPE per name.
        assert_eq!(text.matches("# TYPE botfleet_sent_total ").count(), 1);
    }

    #[test]
    fn a_filter_keeps_whole_groups_and_bots_own_metrics_get_a_help() {
        let r = registry();
        metrics::with_local_recorder(&r, || metrics::gauge!("my_queue").set(3.0));
        let only = r.render(Format::Prometheus, |n| n.starts_with("botfleet_wait"));
        assert!(
            only.starts_with("# TYPE botfleet_wait_seconds histogram\n"),
            "{only}"
        );
        assert!(!only.contains("botfleet_sent_total"));
        let mine = r.render(Format::Prometheus, |n| n == "my_queue");
        assert_eq!(
            mine,
            "# HELP my_queue a metric of the bot's own, from its workers (not described)\n# TYPE my_queue gauge\nmy_queue 3\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let text = registry().render(Format::OpenMetrics, |_| true);
        assert!(text.contains("# TYPE botfleet_sent counter\n"), "{text}");
        assert!(text.contains("botfleet_sent_total{bot=\"analytics\"} 1\n"));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
    }
}
