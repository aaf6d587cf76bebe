//! What `botfleet rules` does with rules besides running them: unit tests
//! on synthetic series (promtool's `test rules`, in TOML), and an export
//! in Prometheus's rule-file format that `promtool check rules` accepts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use botfleet_config::promql::{ANOMALOUS, Expr};
use botfleet_config::{RuleGroup, RuleTest, RuleTests};

use crate::alerts::{Engine, State};
use crate::registry::{Series, Snapshot, Value};
use crate::store::Store;

/// The test's time zero, in Unix seconds (any whole minute works).
const ZERO: i64 = 1_700_000_040;

/// Expands promtool's value notation: space-separated numbers, `_` for no
/// sample, `a+bxn` / `a-bxn` (a, then n more values b apart), `axn` (a,
/// n + 1 times) and `_xn` (n + 1 missing samples).
pub fn expand_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let bad =
            || format!("`{token}` is not a value: write a number, `_`, `a+bxn`, `a-bxn` or `axn`");
        let number = |s: &str| -> Result<f64, String> {
            match s {
                "Inf" | "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                _ => s.parse::<f64>().map_err(|_| bad()),
            }
        };
        let Some((head, times)) = token.split_once('x') else {
            out.push(if token == "_" {
                None
            } else {
                Some(number(token)?)
            });
            continue;
        };
        let n: usize = times.parse().map_err(|_| bad())?;
        if n > 100_000 {
            return Err(format!("`{token}`: at most 100,000 repetitions"));
        }
        if head == "_" {
            out.extend(std::iter::repeat_n(None, n + 1));
            continue;
        }
        // The step's sign: the last + or - that is not the number's own.
        let split = head
            .char_indices()
            .skip(1)
            .filter(|&(i, c)| (c == '+' || c == '-') && !head[..i].ends_with(['e', 'E']))
            .last();
        let (start, step) = match split {
            Some((i, _)) => (number(&head[..i])?, number(&head[i..])?),
            None => (number(head)?, 0.0),
        };
        for k in 0..=n {
            out.push(Some(start + step * k as f64));
        }
    }
    Ok(out)
}

/// A failed check of a rules test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Where the check is written.
    pub origin: String,
    /// The test's name.
    pub test: String,
    /// What differed.
    pub message: String,
}

/// What a run of the tests found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Tests run.
    pub tests: usize,
    /// Alert checks made.
    pub checks: usize,
    /// The checks that failed.
    pub failures: Vec<Failure>,
}

/// Runs `tests` against `groups`: each test feeds its series into a fresh
/// store, value by value, evaluates the rules every `evaluation_interval`
/// as the monitor would, and compares the firing alerts at each
/// `eval_time` with the ones expected.
pub fn run_tests(tests: &RuleTests, groups: &[RuleGroup]) -> Result<Report, String> {
    let mut report = Report::default();
    let step = tests.evaluation_interval.as_secs().max(1) as i64;
    for test in &tests.tests {
        report.tests += 1;
        let mut engine = Engine::new(groups)?;
        let samples = samples(test)?;
        let store = Store::new(samples.len().max(1) * 4 + 100);
        let end = test
            .alert_rule_test
            .iter()
            .map(|a| a.eval_time.as_secs() as i64)
            .max()
            .unwrap_or(0);
        let mut checks: Vec<_> = test.alert_rule_test.iter().collect();
        checks.sort_by_key(|a| a.eval_time);
        let mut checks = checks.into_iter().peekable();
        let mut fed = 0;
        let mut t = 0;
        loop {
            // Every value up to t, in time order, one snapshot per second.
            let mut by_time: BTreeMap<i64, Vec<Series>> = BTreeMap::new();
            for (at, series) in samples.iter().skip(fed).take_while(|(at, _)| *at <= t) {
                by_time.entry(*at).or_default().push(series.clone());
                fed += 1;
            }
            for (at, series) in by_time {
                store.record(ZERO + at, &Snapshot { series });
            }
            engine.eval(&store, ZERO + t);
            // The checks up to t; past the end, those between two
            // evaluations see the last one.
            let last = t + step > end;
            while let Some(check) = checks.next_if(|c| last || c.eval_time.as_secs() as i64 <= t) {
                report.checks += 1;
                if let Some(message) = compare(&engine, check) {
                    report.failures.push(Failure {
                        origin: check.origin.clone(),
                        test: test.name.clone(),
                        message,
                    });
                }
            }
            if last {
                break;
            }
            t += step;
        }
    }
    Ok(report)
}

/// Every value of the test's series as `(seconds since zero, series)`,
/// sorted by time.
fn samples(test: &RuleTest) -> Result<Vec<(i64, Series)>, String> {
    let interval = test.interval.as_secs().max(1) as i64;
    let mut out = Vec::new();
    for (text, values) in &test.input_series {
        let (name, labels) = series_of(text)
            .map_err(|e| format!("{}: {}: series {text:?}: {e}", test.origin, test.name))?;
        let values = expand_values(values)
            .map_err(|e| format!("{}: {}: values of {text}: {e}", test.origin, test.name))?;
        for (i, v) in values.into_iter().enumerate() {
            if let Some(v) = v {
                out.push((
                    i as i64 * interval,
                    Series {
                        name: name.clone(),
                        labels: labels.clone(),
                        value: Value::Gauge(v),
                    },
                ));
            }
        }
    }
    out.sort_by_key(|(t, _)| *t);
    Ok(out)
}

/// `name{a="b"}` into its name and sorted labels.
fn series_of(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let expr = botfleet_config::promql::parse(text).map_err(|e| e.trim().to_owned())?;
    let Expr::VectorSelector(vs) = expr else {
        return Err("write a series as name{label=\"value\", ...}".to_owned());
    };
    let name = vs
        .name
        .clone()
        .ok_or_else(|| "the series needs a name".to_owned())?;
    let mut labels = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == "__name__" {
            continue;
        }
        if !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            return Err(format!("label {} must be given with =", m.name));
        }
        labels.push((m.name.clone(), m.value.clone()));
    }
    labels.sort();
    Ok((name, labels))
}

/// What differs between the firing alerts of `check.alertname` and those
/// expected, if anything.
fn compare(engine: &Engine, check: &botfleet_config::AlertTest) -> Option<String> {
    let mut got: Vec<(BTreeMap<String, String>, BTreeMap<String, String>)> = engine
        .alerts()
        .into_iter()
        .filter(|a| a.state == State::Firing && a.name() == check.alertname)
        .map(|a| {
            let mut labels = a.labels;
            labels.remove("alertname");
            (labels, a.annotations)
        })
        .collect();
    got.sort();
    let mut missing = Vec::new();
    for exp in &check.exp_alerts {
        let labels: BTreeMap<String, String> = exp.exp_labels.iter().cloned().collect();
        let found = got.iter().position(|(l, annotations)| {
            *l == labels
                && exp.exp_annotations.as_ref().is_none_or(|e| {
                    let e: BTreeMap<String, String> = e.iter().cloned().collect();
                    e == *annotations
                })
        });
        match found {
            Some(i) => {
                got.remove(i);
            }
            None => missing.push(show(&labels, exp.exp_annotations.as_deref())),
        }
    }
    if missing.is_empty() && got.is_empty() {
        return None;
    }
    let mut message = format!(
        "{} at {}:",
        check.alertname,
        botfleet_config::duration::format(check.eval_time)
    );
    for m in &missing {
        let _ = write!(message, "\n    expected firing, not found: {m}");
    }
    for (labels, annotations) in &got {
        let annotations: Vec<(String, String)> = annotations.clone().into_iter().collect();
        let _ = write!(
            message,
            "\n    firing, not expected: {}",
            show(labels, Some(&annotations))
        );
    }
    Some(message)
}

fn show(labels: &BTreeMap<String, String>, annotations: Option<&[(String, String)]>) -> String {
    let l: Vec<(String, String)> = labels.clone().into_iter().collect();
    let mut out = crate::promql::show(&l);
    if let Some(a) = annotations {
        out.push_str(&format!(" annotations {}", crate::promql::show(a)));
    }
    out
}

/// `groups` in Prometheus's rule-file format (YAML), for `promtool check
/// rules` or a Prometheus of the operator's. Rules that use botfleet's own
/// functions (`anomalous`) have no Prometheus equivalent: they are listed
/// in a comment instead.
pub fn export(groups: &[RuleGroup]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::from("# Exported by `botfleet rules export`.\ngroups:\n");
    let mut left_out = Vec::new();
    for group in groups {
        let _ = writeln!(out, "  - name: {}", q(&group.name));
        let kept: Vec<_> = group
            .rules
            .iter()
            .filter(|r| {
                let ours = r.expr.contains(ANOMALOUS);
                if ours {
                    left_out.push(format!("{}/{}", group.name, r.alert));
                }
                !ours
            })
            .collect();
        if !group.labels.is_empty() {
            out.push_str("    labels:\n");
            for (k, v) in &group.labels {
                let _ = writeln!(out, "      {k}: {}", q(v));
            }
        }
        if kept.is_empty() {
            out.push_str("    rules: []\n");
            continue;
        }
        out.push_str("    rules:\n");
        for r in kept {
            let _ = writeln!(out, "      - alert: {}", q(&r.alert));
            let _ = writeln!(out, "        expr: {}", q(&r.expr));
            if !r.for_.is_zero() {
                let _ = writeln!(out, "        for: {}", prometheus_duration(r.for_));
            }
            if !r.keep_firing_for.is_zero() {
                let _ = writeln!(
                    out,
                    "        keep_firing_for: {}",
                    prometheus_duration(r.keep_firing_for)
                );
            }
            for (title, pairs) in [("labels", &r.labels), ("annotations", &r.annotations)] {
                if pairs.is_empty() {
                    continue;
                }
                let _ = writeln!(out, "        {title}:");
                for (k, v) in pairs {
                    let _ = writeln!(out, "          {k}: {}", q(v));
                }
            }
        }
    }
    if !left_out.is_empty() {
        let _ = writeln!(
            out,
            "# Left out (botfleet's anomalous() has no Prometheus equivalent): {}",
            left_out.join(", ")
        );
    }
    out
}

/// `1h2m3s`, as Prometheus writes durations.
fn prometheus_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (n, unit) in [
        (s / 86_400, "d"),
        (s / 3600 % 24, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
    ] {
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promtools_value_notation_expands() {
        let v = |t: &str| expand_values(t).unwrap();
        assert_eq!(v("1 2 _ 3"), [Some(1.0), Some(2.0), None, Some(3.0)]);
        assert_eq!(v("0+10x3"), [Some(0.0), Some(10.0), Some(20.0), Some(30.0)]);
        assert_eq!(v("5-1x2"), [Some(5.0), Some(4.0), Some(3.0)]);
        assert_eq!(v("-2+1x1"), [Some(-2.0), Some(-1.0)]);
        assert_eq!(v("7x2 _x1"), [Some(7.0), Some(7.0), Some(7.0), None, None]);
        assert_eq!(v("1e3+1e-1x1"), [Some(1000.0), Some(1000.1)]);
        assert!(expand_values("1 two").unwrap_err().contains("`two`"));
        assert!(expand_values("1+x3").is_err());
    }

    #[test]
    fn durations_are_written_as_prometheus_reads_them() {
        let d = std::time::Duration::from_secs;
        assert_eq!(prometheus_duration(d(90)), "1m30s");
        assert_eq!(prometheus_duration(d(4 * 3600)), "4h");
        assert_eq!(prometheus_duration(d(86_400 + 60)), "1d1m");
    }
}
