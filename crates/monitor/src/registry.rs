//! The recorder: every `counter!`, `gauge!` and `histogram!` of the process
//! lands here, in a handle of atomics the caller keeps (the `metrics`
//! facade caches it at the call site), so recording takes no lock. The
//! registry holds the same handles for reading: a snapshot for `/metrics`.
//!
//! The number of series is capped: a new series past the cap gets a handle
//! that records nothing, and is counted in
//! `botfleet_monitor_series_dropped_total`, so a label gone unbounded (a
//! bug) never grows memory without bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use parking_lot::RwLock;

/// The default cap on series (each label set of each name is one).
pub const DEFAULT_SERIES_CAP: usize = 10_000;

/// A series' kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Only goes up, in fractions.
    FloatCounter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in buckets.
    Histogram,
}

/// A counter: a whole number that only goes up.
#[derive(Debug, Default)]
struct CounterCell(AtomicU64);

impl metrics::CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

/// A gauge: an `f64` in the bits of an atomic.
#[derive(Debug, Default)]
struct GaugeCell(AtomicU64);

impl GaugeCell {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(f(f64::from_bits(bits)).to_bits())
            });
    }
}

impl metrics::GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// A histogram: a count per bucket (not cumulative), the sum and the
/// count. Values above the last bound count in the overflow bucket.
#[derive(Debug)]
struct HistogramCell {
    bounds: Arc<[f64]>,
    /// One per bound, and the overflow.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl HistogramCell {
    fn new(bounds: Arc<[f64]>) -> HistogramCell {
        HistogramCell {
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }
}

impl metrics::HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let at = self.bounds.partition_point(|&b| b < value);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Bucket bounds for durations in seconds: 0.5 ms to 60 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Bucket bounds for sizes in bytes: 64 B to 64 MiB, by fours.
pub const BYTES_BUCKETS: &[f64] = &[
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
/// Bucket bounds for anything else (counts, ratios): 1, 2, 5 by tens.
pub const PLAIN_BUCKETS: &[f64] = &[
    0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10_000.0,
];

/// The buckets of a histogram named `name`, by its unit suffix.
pub fn buckets_for(name: &str) -> &'static [f64] {
    if name.ends_with("_seconds") {
        SECONDS_BUCKETS
    } else if name.ends_with("_bytes") {
        BYTES_BUCKETS
    } else {
        PLAIN_BUCKETS
    }
}

#[derive(Clone, Debug)]
enum Cell {
    Counter(Arc<CounterCell>),
    /// A counter read from elsewhere as a float (CPU seconds from /proc).
    FloatCounter(Arc<GaugeCell>),
    Gauge(Arc<GaugeCell>),
    Histogram(Arc<HistogramCell>),
}

/// What a name was described as.
#[derive(Clone, Debug, Default)]
struct Description {
    help: String,
    unit: Option<Unit>,
}

/// The process's metrics (cheap to clone: one shared registry).
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// A series' handle and its rendered labels.
type Held = (Cell, Arc<str>);

#[derive(Debug)]
struct Inner {
    /// Each series' handle and its labels as the exposition writes them
    /// (sorted, escaped; made once).
    series: RwLock<HashMap<(Kind, Key), Held>>,
    descriptions: RwLock<HashMap<String, Description>>,
    cap: std::sync::atomic::AtomicUsize,
    dropped: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(DEFAULT_SERIES_CAP)
    }
}

/// One series' value at a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A counter's count.
    Counter(u64),
    /// A counter with fractions (seconds of CPU).
    FloatCounter(f64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram: `(upper bound, cumulative count)` per bucket (the last
    /// is `+Inf`), the sum and the count.
    Histogram {
        /// Cumulative counts by upper bound, ending with `+Inf`.
        buckets: Vec<(f64, u64)>,
        /// The sum of every observation.
        sum: f64,
        /// Observations.
        count: u64,
    },
}

/// One series at a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The metric's name.
    pub name: String,
    /// Its labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: Value,
}

/// Every series at one moment (what the store records and a worker
/// forwards; `/metrics` is written by [`Registry::render`]).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Sorted by name, then labels.
    pub series: Vec<Series>,
}

impl Registry {
    /// A registry that holds at most `cap` series.
    pub fn new(cap: usize) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                series: RwLock::new(HashMap::new()),
                descriptions: RwLock::new(HashMap::new()),
                cap: std::sync::atomic::AtomicUsize::new(cap),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Sets the cap on series (`[monitor] series_cap`); series held beyond
    /// it stay, new ones are refused.
    pub fn set_cap(&self, cap: usize) {
        self.inner.cap.store(cap, Ordering::Relaxed);
    }

    /// Series refused because the cap was reached.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Series held.
    pub fn len(&self) -> usize {
        self.inner.series.read().len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The handle of `key`'s series of `kind`, made on first use (a
    /// histogram with `bounds`, or those of its name); `None` past the cap.
    fn cell(&self, kind: Kind, key: &Key, bounds: Option<Arc<[f64]>>) -> Option<Cell> {
        let wanted = (kind, key.clone());
        if let Some((cell, _)) = self.inner.series.read().get(&wanted) {
            return Some(cell.clone());
        }
        let mut series = self.inner.series.write();
        if let Some((cell, _)) = series.get(&wanted) {
            return Some(cell.clone());
        }
        let cap = self.inner.cap.load(Ordering::Relaxed);
        if series.len() >= cap {
            drop(series);
            if self.inner.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    metric = key.name(),
                    cap,
                    "the monitor holds its cap of series; new series are dropped (a label with unbounded values?)"
                );
            }
            return None;
        }
        let cell = match kind {
            Kind::Counter => Cell::Counter(Arc::default()),
            Kind::FloatCounter => Cell::FloatCounter(Arc::default()),
            Kind::Gauge => Cell::Gauge(Arc::default()),
            Kind::Histogram => Cell::Histogram(Arc::new(HistogramCell::new(
                bounds.unwrap_or_else(|| Arc::from(buckets_for(key.name()))),
            ))),
        };
        let mut labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        labels.sort_unstable();
        let rendered = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", crate::expo::escape_label(v)))
            .collect::<Vec<_>>()
            .join(",");
        series.insert(wanted, (cell.clone(), Arc::from(rendered)));
        Some(cell)
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.descriptions.write().insert(
            key.as_str().to_owned(),
            Description {
                help: description.into_owned(),
                unit,
            },
        );
    }

    /// Adds `delta` to the counter `name{labels}` (another process's
    /// series, merged: a worker's, forwarded to its supervisor).
    pub fn add_counter(&self, name: &str, labels: &[(String, String)], delta: u64) {
        if let Some(Cell::Counter(c)) = self.cell(Kind::Counter, &key(name, labels), None) {
            c.0.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// Sets the counter `name{labels}` to `total`, a float read from
    /// elsewhere (never lower than it was).
    pub fn set_float_counter(&self, name: &str, labels: &[(String, String)], total: f64) {
        if let Some(Cell::FloatCounter(c)) = self.cell(Kind::FloatCounter, &key(name, labels), None)
        {
            c.update(|v| v.max(total));
        }
    }

    /// Sets the gauge `name{labels}`.
    pub fn set_gauge(&self, name: &str, labels: &[(String, String)], value: f64) {
        if let Some(Cell::Gauge(g)) = self.cell(Kind::Gauge, &key(name, labels), None) {
            g.0.store(value.to_bits(), Ordering::Relaxed);
        }
    }

    /// Adds observations to the histogram `name{labels}`: `counts` per
    /// bucket of `bounds` and above them (one more than `bounds`), and
    /// their sum. False, and nothing added, when the series has other
    /// bounds (or the counts do not fit them).
    pub fn add_histogram(
        &self,
        name: &str,
        labels: &[(String, String)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) -> bool {
        if counts.len() != bounds.len() + 1 {
            return false;
        }
        let Some(Cell::Histogram(h)) =
            self.cell(Kind::Histogram, &key(name, labels), Some(Arc::from(bounds)))
        else {
            return false;
        };
        if *h.bounds != *bounds {
            return false;
        }
        for (bucket, n) in h.buckets.iter().zip(counts) {
            bucket.fetch_add(*n, Ordering::Relaxed);
        }
        let _ = h
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + sum).to_bits())
            });
        h.count
            .fetch_add(counts.iter().sum::<u64>(), Ordering::Relaxed);
        true
    }

    /// Drops every series that has all of `labels` (a worker slot's, when
    /// the slot goes); returns how many.
    pub fn remove_labelled(&self, labels: &[(&str, &str)]) -> usize {
        let mut series = self.inner.series.write();
        let before = series.len();
        series.retain(|(_, key), _| {
            !labels
                .iter()
                .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        });
        before - series.len()
    }

    /// The exposition of every series whose name `keep` keeps, in
    /// `format`, written straight from the handles (labels were rendered
    /// when each series was made): what `/metrics` serves.
    pub fn render(&self, format: crate::Format, keep: impl Fn(&str) -> bool) -> String {
        use crate::expo::{escape_help, float};
        use std::fmt::Write;
        const DROPPED: &str = "botfleet_monitor_series_dropped_total";
        enum Row<'a> {
            Cell(&'a Cell),
            Dropped(u64),
        }
        let series = self.inner.series.read();
        let mut rows: Vec<(&str, &str, Kind, Row<'_>)> = series
            .iter()
            .filter(|((_, key), _)| keep(key.name()))
            .map(|((kind, key), (cell, labels))| (key.name(), &**labels, *kind, Row::Cell(cell)))
            .collect();
        if keep(DROPPED) {
            rows.push((DROPPED, "", Kind::Counter, Row::Dropped(self.dropped())));
        }
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.cmp(b.1)));
        let descriptions = self.inner.descriptions.read();
        let mut out = String::with_capacity(rows.len() * 64);
        let open_metrics = format == crate::Format::OpenMetrics;
        let mut i = 0;
        while i < rows.len() {
            let (name, _, kind, _) = rows[i];
            let mut end = i;
            while end < rows.len() && rows[end].0 == name {
                end += 1;
            }
            let counter = matches!(kind, Kind::Counter | Kind::FloatCounter);
            let family = if open_metrics && counter {
                name.strip_suffix("_total").unwrap_or(name)
            } else {
                name
            };
            let suffix = if open_metrics && counter {
                "_total"
            } else {
                ""
            };
            let help = match descriptions.get(name) {
                Some(d) => Some(match d.unit {
                    Some(u) => format!("{} ({})", d.help, u.as_str()),
                    None => d.help.clone(),
                }),
                None => crate::help::of(name).map(str::to_owned).or_else(|| {
                    (!name.starts_with("botfleet_")).then(|| {
                        "a metric of the bot's own, from its workers (not described)".to_owned()
                    })
                }),
            };
            if let Some(help) = help {
                let _ = writeln!(out, "# HELP {family} {}", escape_help(&help));
            }
            let type_name = match kind {
                Kind::Counter | Kind::FloatCounter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# TYPE {family} {type_name}");
            let same_type = |k: Kind| {
                matches!(
                    (k, kind),
                    (
                        Kind::Counter | Kind::FloatCounter,
                        Kind::Counter | Kind::FloatCounter
                    ) | (Kind::Gauge, Kind::Gauge)
                        | (Kind::Histogram, Kind::Histogram)
                )
            };
            for (_, labels, k, row) in &rows[i..end] {
                if !same_type(*k) {
                    continue;
                }
                let braces = |out: &mut String, extra: Option<f64>| {
                    if labels.is_empty() && extra.is_none() {
                        return;
                    }
                    out.push('{');
                    out.push_str(labels);
                    if let Some(le) = extra {
                        if !labels.is_empty() {
                            out.push(',');
                        }
                        let _ = write!(out, "le=\"{}\"", float(le));
                    }
                    out.push('}');
                };
                match row {
                    Row::Dropped(n) => {
                        let _ = write!(out, "{family}{suffix}");
                        braces(&mut out, None);
                        let _ = writeln!(out, " {n}");
                    }
                    Row::Cell(Cell::Counter(c)) => {
                        let _ = write!(out, "{family}{suffix}");
                        braces(&mut out, None);
                        let _ = writeln!(out, " {}", c.0.load(Ordering::Relaxed));
                    }
                    Row::Cell(Cell::FloatCounter(c)) => {
                        let _ = write!(out, "{family}{suffix}");
                        braces(&mut out, None);
                        let _ = writeln!(
                            out,
                            " {}",
                            float(f64::from_bits(c.0.load(Ordering::Relaxed)))
                        );
                    }
                    Row::Cell(Cell::Gauge(g)) => {
                        out.push_str(family);
                        braces(&mut out, None);
                        let _ = writeln!(
                            out,
                            " {}",
                            float(f64::from_bits(g.0.load(Ordering::Relaxed)))
                        );
                    }
                    Row::Cell(Cell::Histogram(h)) => {
                        let mut total = 0;
                        for (at, bucket) in h.buckets.iter().enumerate() {
                            total += bucket.load(Ordering::Relaxed);
                            let bound = h.bounds.get(at).copied().unwrap_or(f64::INFINITY);
                            let _ = write!(out, "{family}_bucket");
                            braces(&mut out, Some(bound));
                            let _ = writeln!(out, " {total}");
                        }
                        let _ = write!(out, "{family}_sum");
                        braces(&mut out, None);
                        let _ = writeln!(
                            out,
                            " {}",
                            float(f64::from_bits(h.sum.load(Ordering::Relaxed)))
                        );
                        let _ = write!(out, "{family}_count");
                        braces(&mut out, None);
                        let _ = writeln!(out, " {total}");
                    }
                }
            }
            i = end;
        }
        if open_metrics {
            out.push_str("# EOF\n");
        }
        out
    }

    /// Every series now, sorted by name and labels.
    pub fn snapshot(&self) -> Snapshot {
        let cells: Vec<((Kind, Key), Cell)> = self
            .inner
            .series
            .read()
            .iter()
            .map(|(k, (c, _))| (k.clone(), c.clone()))
            .collect();
        let mut series: Vec<Series> = cells
            .into_iter()
            .map(|((_, key), cell)| {
                let mut labels: Vec<(String, String)> = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                let value = match cell {
                    Cell::Counter(c) => Value::Counter(c.0.load(Ordering::Relaxed)),
                    Cell::FloatCounter(c) => {
                        Value::FloatCounter(f64::from_bits(c.0.load(Ordering::Relaxed)))
                    }
                    Cell::Gauge(g) => Value::Gauge(f64::from_bits(g.0.load(Ordering::Relaxed))),
                    Cell::Histogram(h) => {
                        let mut total = 0;
                        let mut buckets: Vec<(f64, u64)> = h
                            .bounds
                            .iter()
                            .copied()
                            .chain([f64::INFINITY])
                            .zip(h.buckets.iter())
                            .map(|(bound, n)| {
                                total += n.load(Ordering::Relaxed);
                                (bound, total)
                            })
                            .collect();
                        // The count is the last bucket's: both read from
                        // the same loads, so `+Inf` always equals it.
                        let count = total;
                        if let Some(last) = buckets.last_mut() {
                            last.1 = count;
                        }
                        Value::Histogram {
                            buckets,
                            sum: f64::from_bits(h.sum.load(Ordering::Relaxed)),
                            count,
                        }
                    }
                };
                Series {
                    name: key.name().to_owned(),
                    labels,
                    value,
                }
            })
            .collect();
        series.push(Series {
            name: "botfleet_monitor_series_dropped_total".to_owned(),
            labels: Vec::new(),
            value: Value::Counter(self.dropped()),
        });
        series.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.labels.cmp(&b.labels)));
        Snapshot { series }
    }
}

/// The key of `name{labels}`.
fn key(name: &str, labels: &[(String, String)]) -> Key {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(k, v)| metrics::Label::new(k.clone(), v.clone()))
        .collect();
    Key::from_parts(name.to_owned(), labels)
}

impl metrics::Recorder for Registry {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.cell(Kind::Counter, key, None) {
            Some(Cell::Counter(c)) => Counter::from_arc(c),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.cell(Kind::Gauge, key, None) {
            Some(Cell::Gauge(g)) => Gauge::from_arc(g),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.cell(Kind::Histogram, key, None) {
            Some(Cell::Histogram(h)) => Histogram::from_arc(h),
            _ => Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_read_back() {
        let r = Registry::new(100);
        metrics::with_local_recorder(&r, || {
            metrics::counter!("botfleet_x_total", "bot" => "a").increment(3);
            metrics::counter!("botfleet_x_total", "bot" => "a").increment(2);
            metrics::gauge!("botfleet_depth").set(7.5);
            metrics::gauge!("botfleet_depth").decrement(0.5);
            for v in [0.0004, 0.003, 0.003, 100.0] {
                metrics::histogram!("botfleet_wait_seconds").record(v);
            }
        });
        let s = r.snapshot();
        let get = |name: &str| s.series.iter().find(|x| x.name == name).unwrap();
        assert_eq!(get("botfleet_x_total").value, Value::Counter(5));
        assert_eq!(
            get("botfleet_x_total").labels,
            [("bot".to_owned(), "a".to_owned())]
        );
        assert_eq!(get("botfleet_depth").value, Value::Gauge(7.0));
        let Value::Histogram {
            buckets,
            sum,
            count,
        } = &get("botfleet_wait_seconds").value
        else {
            panic!("not a histogram");
        };
        assert_eq!(*count, 4);
        assert!((sum - 100.0064).abs() < 1e-9);
        assert_eq!(buckets[0], (0.0005, 1));
        // 0.003 is in the 0.005 bucket; cumulative from there.
        assert_eq!(buckets[3], (0.005, 3));
        assert_eq!(buckets[buckets.len() - 2], (60.0, 3));
        assert_eq!(*buckets.last().unwrap(), (f64::INFINITY, 4));
    }

    #[test]
    fn another_processs_series_merge_in() {
        let r = Registry::new(100);
        let labels = [("bot".to_owned(), "a".to_owned())];
        r.add_counter("botfleet_w_total", &labels, 3);
        r.add_counter("botfleet_w_total", &labels, 2);
        r.set_gauge("botfleet_w_depth", &labels, 4.0);
        assert!(r.add_histogram("botfleet_w_seconds", &labels, &[0.1, 1.0], &[1, 2, 3], 9.5));
        assert!(r.add_histogram("botfleet_w_seconds", &labels, &[0.1, 1.0], &[1, 0, 0], 0.05));
        // Other bounds, or counts that do not fit: refused.
        assert!(!r.add_histogram("botfleet_w_seconds", &labels, &[0.5], &[1, 1], 1.0));
        assert!(!r.add_histogram("botfleet_w_seconds", &labels, &[0.1, 1.0], &[1], 1.0));
        r.add_counter("botfleet_w_total", &[("bot".to_owned(), "b".to_owned())], 1);
        let s = r.snapshot();
        let get = |name: &str| {
            s.series
                .iter()
                .find(|x| x.name == name)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(get("botfleet_w_total"), Value::Counter(5));
        assert_eq!(get("botfleet_w_depth"), Value::Gauge(4.0));
        assert_eq!(r.remove_labelled(&[("bot", "a")]), 3);
        assert_eq!(r.len(), 1, "bot b's stays");
        assert_eq!(
            get("botfleet_w_seconds"),
            Value::Histogram {
                buckets: vec![(0.1, 2), (1.0, 4), (f64::INFINITY, 7)],
                sum: 9.55,
                count: 7
            }
        );
    }

    #[test]
    fn series_past_the_cap_are_dropped_and_counted() {
        let r = Registry::new(10);
        metrics::with_local_recorder(&r, || {
            for chat in 0..1000 {
                metrics::counter!("botfleet_bad_total", "chat" => chat.to_string()).increment(1);
            }
        });
        assert_eq!(r.len(), 10);
        assert_eq!(r.dropped(), 990);
        let s = r.snapshot();
        let dropped = s
            .series
            .iter()
            .find(|x| x.name == "botfleet_monitor_series_dropped_total")
            .unwrap();
        assert_eq!(dropped.value, Value::Counter(990));
    }
}
