//! `botfleet compare`: is a change real or noise? Each figure's runs on
//! the base side against the new side: the medians, the relative change
//! with its 95 % confidence interval (Hodges-Lehmann), the Mann-Whitney
//! p-value, and a verdict (docs/compare.md).

use serde::Serialize;

use crate::stats::{hodges_lehmann, mann_whitney_p, median};

/// How a figure is judged.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// The significance level of the Mann-Whitney test.
    pub alpha: f64,
    /// An interval wider than ± this (percent) is inconclusive; one
    /// inside it, without a significant change, is no change.
    pub threshold_pct: f64,
    /// A significant change smaller than this (percent) is no change.
    pub min_change_pct: f64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            alpha: 0.01,
            threshold_pct: 5.0,
            min_change_pct: 1.0,
        }
    }
}

/// A figure's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Significantly better, by at least the smallest change that counts.
    Better,
    /// Significantly worse, by at least the smallest change that counts.
    Worse,
    /// No significant change that counts, the interval within ± the
    /// threshold.
    Same,
    /// The interval wider than ± the threshold, or a change the runs
    /// cannot confirm.
    Inconclusive,
}

impl Verdict {
    /// As the table says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Same => "same",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One figure compared (the JSON of `compare --json`, ../shared/BENCHMARKS.md).
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// The figure's path in its document (`rows[W1].efficiency`).
    pub name: String,
    /// Runs on the base side.
    pub n_base: usize,
    /// Runs on the new side.
    pub n_new: usize,
    /// The base side's median.
    pub base_median: f64,
    /// The new side's median.
    pub new_median: f64,
    /// The Hodges-Lehmann shift, percent of the base median.
    pub change_pct: f64,
    /// Its 95 % interval's low end, percent.
    pub ci_low_pct: f64,
    /// Its 95 % interval's high end, percent.
    pub ci_high_pct: f64,
    /// The two-sided Mann-Whitney p-value.
    pub p_value: f64,
    /// What the figure did.
    pub verdict: Verdict,
    /// Whether a higher value is the better one (throughputs, ratios).
    pub higher_is_better: bool,
}

/// Compares one figure's runs.
pub fn figure(name: &str, base: &[f64], new: &[f64], settings: Settings) -> Figure {
    let higher_is_better = higher_is_better(name);
    let base_median = median(base);
    let new_median = median(new);
    let p_value = mann_whitney_p(base, new);
    let pct = |x: f64| {
        if base_median == 0.0 {
            if x == 0.0 {
                0.0
            } else {
                f64::INFINITY.copysign(x)
            }
        } else {
            100.0 * x / base_median.abs()
        }
    };
    let (change_pct, ci_low_pct, ci_high_pct) = match hodges_lehmann(base, new) {
        Some((shift, low, high)) => (pct(shift), pct(low), pct(high)),
        None => (f64::NAN, f64::NAN, f64::NAN),
    };
    let t = settings.threshold_pct;
    let half_width = (ci_high_pct - ci_low_pct) / 2.0;
    let within = ci_low_pct >= -t && ci_high_pct <= t;
    let excludes_zero = ci_low_pct > 0.0 || ci_high_pct < 0.0;
    let verdict = if half_width.is_nan() || half_width > t {
        Verdict::Inconclusive
    } else if p_value < settings.alpha
        && excludes_zero
        && change_pct.abs() >= settings.min_change_pct
    {
        if (change_pct > 0.0) == higher_is_better {
            Verdict::Better
        } else {
            Verdict::Worse
        }
    } else if within {
        Verdict::Same
    } else {
        Verdict::Inconclusive
    };
    Figure {
        name: name.to_owned(),
        n_base: base.len(),
        n_new: new.len(),
        base_median,
        new_median,
        change_pct,
        ci_low_pct,
        ci_high_pct,
        p_value,
        verdict,
        higher_is_better,
    }
}

/// Whether a higher value of the figure `name` is better. Its last part
/// decides: errors, losses, drops, timeouts and 429s are worse when
/// higher; rates, throughputs, hit ratios, efficiencies, speedups and
/// anything per second are better; anything else (times, sizes, CPU,
/// memory) is a cost, worse when higher (docs/compare.md).
pub fn higher_is_better(name: &str) -> bool {
    let last = name
        .rsplit(['.', '/', '['])
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase();
    const BAD: [&str; 9] = [
        "err",
        "fail",
        "lost",
        "dup",
        "429",
        "reorder",
        "drop",
        "timeout",
        "false_alarm",
    ];
    const GOOD: [&str; 9] = [
        "per_s",
        "per_sec",
        "throughput",
        "hit_ratio",
        "efficiency",
        "speedup",
        "ops",
        "detection",
        "accuracy",
    ];
    if BAD.iter().any(|w| last.contains(w)) {
        return false;
    }
    GOOD.iter().any(|w| last.contains(w)) || last == "rate" || last.ends_with("_rate")
}

/// Every number of a JSON document by its path: objects by key, arrays by
/// each element's `name` (or `workload`, `policy`, `trace`, `tool`, `kind`,
/// `id`) when it has one, else by index. `machine` (the run's facts, not
/// its figures) is left out.
pub fn flatten(doc: &serde_json::Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    walk(doc, String::new(), &mut out);
    out
}

const ELEMENT_KEYS: [&str; 7] = ["name", "workload", "policy", "trace", "tool", "kind", "id"];

fn walk(v: &serde_json::Value, path: String, out: &mut Vec<(String, f64)>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match v {
        serde_json::Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.push((path, x));
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if path.is_empty() && k == "machine" {
                    continue;
                }
                walk(v, join(k), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let label = ELEMENT_KEYS
                    .iter()
                    .find_map(|k| item.get(k).and_then(|v| v.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| i.to_string());
                walk(item, format!("{path}[{label}]"), out);
            }
        }
        _ => {}
    }
}

/// The runs of each figure over documents, in first-seen order.
pub fn runs(docs: &[serde_json::Value]) -> Vec<(String, Vec<f64>)> {
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for doc in docs {
        for (name, x) in flatten(doc) {
            match at.get(&name) {
                Some(&i) => out[i].1.push(x),
                None => {
                    at.insert(name.clone(), out.len());
                    out.push((name, vec![x]));
                }
            }
        }
    }
    out
}

/// Compares every figure the two sides share; figures on one side only
/// are named in the second list.
pub fn documents(
    base: &[serde_json::Value],
    new: &[serde_json::Value],
    settings: Settings,
) -> (Vec<Figure>, Vec<String>) {
    let base = runs(base);
    let new = runs(new);
    let new_at: std::collections::HashMap<&str, &[f64]> = new
        .iter()
        .map(|(n, xs)| (n.as_str(), xs.as_slice()))
        .collect();
    let base_names: std::collections::HashSet<&str> =
        base.iter().map(|(n, _)| n.as_str()).collect();
    let mut figures = Vec::new();
    let mut alone = Vec::new();
    for (name, b) in &base {
        match new_at.get(name.as_str()) {
            Some(n) => figures.push(figure(name, b, n, settings)),
            None => alone.push(name.clone()),
        }
    }
    alone.extend(
        new.iter()
            .filter(|(n, _)| !base_names.contains(n.as_str()))
            .map(|(n, _)| n.clone()),
    );
    (figures, alone)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` runs around `center` with a spread of +-`spread` percent,
    /// deterministic.
    fn noisy(center: f64, spread: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| center * (1.0 + spread / 100.0 * (2.0 * rng.f64() - 1.0)))
            .collect()
    }

    #[test]
    fn verdicts_follow_the_interval_the_test_and_the_direction() {
        let s = Settings::default();
        let base = noisy(100.0, 1.0, 20, 1);
        // The same distribution: same.
        let f = figure("wall_s", &base, &noisy(100.0, 1.0, 20, 2), s);
        assert_eq!(f.verdict, Verdict::Same, "{f:?}");
        // 10 % more time is worse; 10 % more updates per second is better.
        let more = noisy(110.0, 1.0, 20, 3);
        let f = figure("wall_s", &base, &more, s);
        assert_eq!(f.verdict, Verdict::Worse, "{f:?}");
        assert!(
            (f.change_pct - 10.0).abs() < 1.5 && f.ci_low_pct > 5.0,
            "{f:?}"
        );
        assert_eq!(
            figure("updates_per_s", &base, &more, s).verdict,
            Verdict::Better
        );
        // Wild noise and few runs: inconclusive, not a false alarm.
        let f = figure(
            "wall_s",
            &noisy(100.0, 40.0, 3, 4),
            &noisy(100.0, 40.0, 3, 5),
            s,
        );
        assert_eq!(f.verdict, Verdict::Inconclusive, "{f:?}");
    }

    #[test]
    fn directions_by_name() {
        for name in [
            "updates_per_s",
            "rows[W1].efficiency",
            "hit_ratio",
            "rate",
            "detection_rate",
        ] {
            assert!(higher_is_better(name), "{name}");
        }
        for name in [
            "p99_ms",
            "wall_s",
            "rss_mib",
            "errors",
            "lost",
            "error_rate",
            "429s",
            "cpu_pct",
        ] {
            assert!(!higher_is_better(name), "{name}");
        }
    }

    #[test]
    fn documents_are_flattened_by_path_and_row_name() {
        let doc = serde_json::json!({
            "machine": {"cores": 2},
            "p99_ms": 8.5,
            "rows": [{"name": "W1", "sent": 10}, {"sent": 20}],
            "ok": true,
        });
        assert_eq!(
            flatten(&doc),
            vec![
                ("p99_ms".to_owned(), 8.5),
                ("rows[W1].sent".to_owned(), 10.0),
                ("rows[1].sent".to_owned(), 20.0),
            ]
        );
        // One figure changed between two single runs: only it is not the
        // same; a figure on one side only is named.
        let mut new = doc.clone();
        new["rows"][0]["sent"] = serde_json::json!(15);
        new["extra"] = serde_json::json!(1);
        let (figures, alone) = documents(&[doc], &[new], Settings::default());
        let moved: Vec<&str> = figures
            .iter()
            .filter(|f| f.verdict != Verdict::Same)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(moved, ["rows[W1].sent"]);
        assert_eq!(alone, ["extra"]);
    }
}
