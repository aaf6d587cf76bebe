//! The exposition formats: Prometheus text 0.0.4, and OpenMetrics 1.0 for a
//! scraper that asks for it. Each name's lines are one group, `# HELP` and
//! `# TYPE` first; histograms are real buckets (cumulative, `+Inf` equal
//! to `_count`), then `_sum` and `_count`.

use std::fmt::Write;

use crate::registry::{Snapshot, Value};

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

/// `snapshot` in `format`.
pub fn render(snapshot: &Snapshot, format: Format) -> String {
    let mut out = String::with_capacity(snapshot.series.len() * 64);
    let mut i = 0;
    let series = &snapshot.series;
    while i < series.len() {
        let name = &series[i].name;
        let kind = kind_of(&series[i].value);
        let mut end = i;
        while end < series.len() && &series[end].name == name {
            end += 1;
        }
        // A name used with two kinds cannot be exposed as both: the
        // first kind wins.
        let group = series[i..end].iter().filter(|s| kind_of(&s.value) == kind);
        let family = match (format, kind) {
            (Format::OpenMetrics, "counter") => name.strip_suffix("_total").unwrap_or(name),
            _ => name.as_str(),
        };
        if let Some(help) = snapshot.help.get(name) {
            let _ = writeln!(out, "# HELP {family} {}", escape_help(help));
        }
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for s in group {
            match &s.value {
                Value::Counter(n) => {
                    sample(&mut out, family, counter_suffix(format), &s.labels, None);
                    let _ = writeln!(out, " {n}");
                }
                Value::FloatCounter(v) => {
                    sample(&mut out, family, counter_suffix(format), &s.labels, None);
                    let _ = writeln!(out, " {}", float(*v));
                }
                Value::Gauge(v) => {
                    sample(&mut out, family, "", &s.labels, None);
                    let _ = writeln!(out, " {}", float(*v));
                }
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    for (bound, n) in buckets {
                        sample(&mut out, family, "_bucket", &s.labels, Some(*bound));
                        let _ = writeln!(out, " {n}");
                    }
                    sample(&mut out, family, "_sum", &s.labels, None);
                    let _ = writeln!(out, " {}", float(*sum));
                    sample(&mut out, family, "_count", &s.labels, None);
                    let _ = writeln!(out, " {count}");
                }
            }
        }
        i = end;
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Counter(_) | Value::FloatCounter(_) => "counter",
        Value::Gauge(_) => "gauge",
        Value::Histogram { .. } => "histogram",
    }
}

/// A counter's sample suffix: its name already ends in `_total` in
/// Prometheus text; OpenMetrics names the family without it.
fn counter_suffix(format: Format) -> &'static str {
    match format {
        Format::Prometheus => "",
        Format::OpenMetrics => "_total",
    }
}

/// Writes `name{labels}` (with `le` for a bucket).
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    le: Option<f64>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
    }
    if let Some(bound) = le {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "le=\"{}\"", float(bound));
    }
    out.push('}');
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
        let text = render(&registry().snapshot(), Format::Prometheus);
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
    fn the_registrys_own_render_writes_what_the_snapshot_would() {
        let r = registry();
        metrics::with_local_recorder(&r, || {
            metrics::gauge!("my_queue").set(3.0);
            metrics::counter!("botfleet_cpu_total").increment(1);
        });
        r.set_float_counter("process_cpu_seconds_total", &[], 1.5);
        for format in [Format::Prometheus, Format::OpenMetrics] {
            assert_eq!(r.render(format, |_| true), render(&r.snapshot(), format));
        }
        let only = r.render(Format::Prometheus, |n| n.starts_with("botfleet_wait"));
        assert!(
            only.starts_with("# TYPE botfleet_wait_seconds histogram\n"),
            "{only}"
        );
        assert!(!only.contains("botfleet_sent_total"));
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let text = render(&registry().snapshot(), Format::OpenMetrics);
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
