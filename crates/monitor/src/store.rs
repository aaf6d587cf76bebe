//! The in-memory time-series store: every series of the registry, sampled
//! each second, kept at 1-s resolution for the last hour and as 1-min
//! aggregates (min, max, mean, last) for 24 hours. Each series is two
//! fixed rings, allocated when the series first appears:
//!
//! - 3,600 seconds × an `f64` (28,800 bytes): counters keep their exact
//!   totals, so a rate over the last hour is exact;
//! - 1,440 minutes × (`f32` min, max and mean, `f64` last; 24 bytes with
//!   alignment) (34,560 bytes).
//!
//! So a series costs [`BYTES_PER_SERIES`] (63,360 bytes) plus its name and
//! labels, whatever its age. The number of series is capped; one more is
//! not stored and is counted (`botfleet_monitor_store_dropped_total`).
//! Histograms are stored as Prometheus stores them: a series per bucket
//! (`_bucket` with `le`), `_sum` and `_count`.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::registry::{Snapshot, Value};

/// Seconds kept at full resolution.
pub const SECONDS: usize = 3600;
/// Minutes kept as aggregates by default (24 hours).
pub const MINUTES: usize = 1440;
/// The memory of one series' rings, with the default retention.
pub const BYTES_PER_SERIES: usize = SECONDS * 8 + MINUTES * MINUTE_BYTES;
/// The memory of one minute's aggregate.
pub const MINUTE_BYTES: usize = std::mem::size_of::<Minute>();
/// The default cap on stored series.
pub const DEFAULT_STORE_SERIES: usize = 2000;

/// A series' labels, sorted.
pub type Labels = Vec<(String, String)>;
/// A series' identity: its name and sorted labels.
pub type SeriesKey = (String, Labels);

/// A selected series: name, labels and samples `(unix seconds, value)`.
pub type Selected = (String, Labels, Vec<(i64, f64)>);

/// One minute's aggregate.
#[derive(Clone, Copy, Debug)]
struct Minute {
    min: f32,
    max: f32,
    mean: f32,
    last: f64,
}

impl Minute {
    const NONE: Minute = Minute {
        min: f32::NAN,
        max: f32::NAN,
        mean: f32::NAN,
        last: f64::NAN,
    };
}

/// The minute being filled.
#[derive(Clone, Copy, Debug)]
struct Accumulator {
    minute: i64,
    min: f64,
    max: f64,
    sum: f64,
    n: u32,
    last: f64,
}

struct Ring {
    seconds: Box<[f64]>,
    minutes: Box<[Minute]>,
    /// The newest second written (Unix seconds).
    newest: i64,
    acc: Option<Accumulator>,
}

impl Ring {
    fn new(minutes: usize) -> Ring {
        Ring {
            seconds: vec![f64::NAN; SECONDS].into_boxed_slice(),
            minutes: vec![Minute::NONE; minutes].into_boxed_slice(),
            newest: i64::MIN,
            acc: None,
        }
    }

    fn put(&mut self, t: i64, value: f64) {
        if t <= self.newest && self.newest != i64::MIN {
            // The same second again (or the clock went back): keep the
            // newest value only.
            if t == self.newest {
                self.seconds[slot(t, SECONDS)] = value;
            }
            return;
        }
        // Seconds skipped hold nothing.
        if self.newest != i64::MIN {
            let gap = (t - self.newest - 1).min(SECONDS as i64);
            for s in 1..=gap {
                self.seconds[slot(self.newest + s, SECONDS)] = f64::NAN;
            }
        }
        self.seconds[slot(t, SECONDS)] = value;
        self.newest = t;
        let minute = t.div_euclid(60);
        match &mut self.acc {
            Some(acc) if acc.minute == minute => {
                acc.min = acc.min.min(value);
                acc.max = acc.max.max(value);
                acc.sum += value;
                acc.n += 1;
                acc.last = value;
            }
            other => {
                if let Some(done) = other.take() {
                    let len = self.minutes.len();
                    let skipped = (minute - done.minute - 1).min(len as i64);
                    self.minutes[slot(done.minute, len)] = Minute {
                        min: done.min as f32,
                        max: done.max as f32,
                        mean: (done.sum / f64::from(done.n)) as f32,
                        last: done.last,
                    };
                    for m in 1..=skipped {
                        self.minutes[slot(done.minute + m, len)] = Minute::NONE;
                    }
                }
                *other = Some(Accumulator {
                    minute,
                    min: value,
                    max: value,
                    sum: value,
                    n: 1,
                    last: value,
                });
            }
        }
    }

    /// The value at second `t`, if it is within the last hour and stored.
    fn second(&self, t: i64) -> Option<f64> {
        if t > self.newest || self.newest - t >= SECONDS as i64 {
            return None;
        }
        let v = self.seconds[slot(t, SECONDS)];
        (!v.is_nan()).then_some(v)
    }

    /// Minute `m`'s aggregate, if within 24 hours and stored (the minute
    /// being filled counts, as it stands).
    fn minute(&self, m: i64) -> Option<Minute> {
        if let Some(acc) = self.acc.filter(|a| a.minute == m) {
            return Some(Minute {
                min: acc.min as f32,
                max: acc.max as f32,
                mean: (acc.sum / f64::from(acc.n)) as f32,
                last: acc.last,
            });
        }
        let newest = self.newest.div_euclid(60);
        let len = self.minutes.len();
        if m >= newest || newest - m >= len as i64 {
            return None;
        }
        let v = self.minutes[slot(m, len)];
        (!v.last.is_nan()).then_some(v)
    }
}

/// The least-squares line through `points` (x, y): `(slope, value at
/// x = 0)`; `None` with fewer than two distinct x.
pub(crate) fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

fn slot(t: i64, len: usize) -> usize {
    t.rem_euclid(len as i64) as usize
}

/// How a query folds a minute when it reads the 24-hour resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// The smallest value of the minute.
    Min,
    /// The largest.
    Max,
    /// The mean.
    Mean,
    /// The last (what a counter wants).
    Last,
}

impl Aggregate {
    /// `min`, `max`, `mean` or `last`.
    pub fn parse(text: &str) -> Option<Aggregate> {
        match text {
            "min" => Some(Aggregate::Min),
            "max" => Some(Aggregate::Max),
            "mean" => Some(Aggregate::Mean),
            "last" => Some(Aggregate::Last),
            _ => None,
        }
    }
}

/// A query's answer for one series.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Points {
    /// The series' name.
    pub name: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `[unix seconds, value]`, oldest first; steps without a value are
    /// left out.
    pub points: Vec<(i64, f64)>,
}

/// The store (cheap to share behind an `Arc`).
pub struct Store {
    inner: Mutex<Inner>,
}

struct Inner {
    series: HashMap<SeriesKey, Ring>,
    cap: usize,
    /// Minute aggregates kept per series.
    minutes: usize,
    dropped: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("Store")
            .field("series", &inner.series.len())
            .field("cap", &inner.cap)
            .finish()
    }
}

impl Store {
    /// A store of at most `cap` series, each keeping a day of minutes.
    pub fn new(cap: usize) -> Store {
        Store::with_retention(cap, MINUTES)
    }

    /// A store of at most `cap` series, each keeping `minutes` minutes'
    /// aggregates (at least 60).
    pub fn with_retention(cap: usize, minutes: usize) -> Store {
        Store {
            inner: Mutex::new(Inner {
                series: HashMap::new(),
                cap,
                minutes: minutes.max(60),
                dropped: 0,
            }),
        }
    }

    /// Series stored.
    pub fn len(&self) -> usize {
        self.inner.lock().series.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Series not stored because the cap was reached (counted once each
    /// time they were offered).
    pub fn dropped(&self) -> u64 {
        self.inner.lock().dropped
    }

    /// Stores `snapshot` as second `t` (Unix seconds).
    pub fn record(&self, t: i64, snapshot: &Snapshot) {
        let mut inner = self.inner.lock();
        for s in &snapshot.series {
            match &s.value {
                Value::Counter(n) => inner.put(&s.name, &s.labels, None, t, *n as f64),
                Value::FloatCounter(v) | Value::Gauge(v) => {
                    inner.put(&s.name, &s.labels, None, t, *v);
                }
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    for (bound, n) in buckets {
                        let le = crate::expo::float(*bound);
                        inner.put(
                            &s.name,
                            &s.labels,
                            Some(("_bucket", Some(le))),
                            t,
                            *n as f64,
                        );
                    }
                    inner.put(&s.name, &s.labels, Some(("_sum", None)), t, *sum);
                    inner.put(&s.name, &s.labels, Some(("_count", None)), t, *count as f64);
                }
            }
        }
    }

    /// The series named `name` whose labels include every pair of
    /// `matchers`, from `start` to `end` (Unix seconds) every `step`
    /// seconds: from the 1-s ring when the range is within the last hour
    /// and the step under a minute, else from the minutes, folded by
    /// `aggregate`.
    pub fn query(
        &self,
        name: &str,
        matchers: &[(String, String)],
        start: i64,
        end: i64,
        step: i64,
        aggregate: Aggregate,
    ) -> Vec<Points> {
        let step = step.max(1);
        let inner = self.inner.lock();
        let mut out: Vec<Points> = inner
            .series
            .iter()
            .filter(|((n, labels), _)| n == name && matchers.iter().all(|m| labels.contains(m)))
            .map(|((n, labels), ring)| {
                let fine = step < 60 && ring.newest - start < SECONDS as i64;
                let mut points = Vec::new();
                let mut t = start;
                while t <= end {
                    let value = if fine {
                        ring.second(t)
                    } else {
                        ring.minute(t.div_euclid(60)).map(|m| match aggregate {
                            Aggregate::Min => f64::from(m.min),
                            Aggregate::Max => f64::from(m.max),
                            Aggregate::Mean => f64::from(m.mean),
                            Aggregate::Last => m.last,
                        })
                    };
                    if let Some(v) = value {
                        points.push((t, v));
                    }
                    t += step;
                }
                Points {
                    name: n.clone(),
                    labels: labels.iter().cloned().collect(),
                    points,
                }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The newest value of each series named `name` with `matchers`,
    /// summed (`None` when there is none).
    pub fn latest(&self, name: &str, matchers: &[(String, String)]) -> Option<f64> {
        let inner = self.inner.lock();
        let mut found = None;
        for ((n, labels), ring) in &inner.series {
            if n == name && matchers.iter().all(|m| labels.contains(m)) {
                if let Some(v) = ring.second(ring.newest) {
                    *found.get_or_insert(0.0) += v;
                }
            }
        }
        found
    }

    /// How much the series named `name` with `matchers` grew, summed, over
    /// the last `window` seconds of each, and over how long: a counter's
    /// increase (a value lower than the one before, a reset, counts from
    /// zero). `None` without two samples.
    pub fn increase(
        &self,
        name: &str,
        matchers: &[(String, String)],
        window: i64,
    ) -> Option<(f64, f64)> {
        let inner = self.inner.lock();
        let mut total: Option<(f64, f64)> = None;
        for ((n, labels), ring) in &inner.series {
            if n != name || !matchers.iter().all(|m| labels.contains(m)) {
                continue;
            }
            let mut grew = 0.0;
            let mut first = None;
            let mut previous: Option<f64> = None;
            for t in ring.newest - window.min(SECONDS as i64 - 1)..=ring.newest {
                let Some(v) = ring.second(t) else { continue };
                if first.is_none() {
                    first = Some(t);
                }
                if let Some(p) = previous {
                    grew += if v >= p { v - p } else { v };
                }
                previous = Some(v);
            }
            if let Some(first) = first.filter(|&f| f < ring.newest) {
                let seconds = (ring.newest - first) as f64;
                let entry = total.get_or_insert((0.0, seconds));
                entry.0 += grew;
                entry.1 = entry.1.max(seconds);
            }
        }
        total
    }

    /// The `q` quantile of the histogram `name` (its `_bucket` series with
    /// `matchers`, buckets summed over the other labels) from what it
    /// observed in the last `window` seconds, as Prometheus's
    /// `histogram_quantile` does (linear within the bucket); `None` without
    /// observations.
    pub fn quantile(
        &self,
        name: &str,
        matchers: &[(String, String)],
        window: i64,
        q: f64,
    ) -> Option<f64> {
        let bucket = format!("{name}_bucket");
        let les: Vec<String> = {
            let inner = self.inner.lock();
            let mut les: Vec<String> = inner
                .series
                .keys()
                .filter(|(n, labels)| *n == bucket && matchers.iter().all(|m| labels.contains(m)))
                .filter_map(|(_, labels)| {
                    labels
                        .iter()
                        .find(|(k, _)| k == "le")
                        .map(|(_, v)| v.clone())
                })
                .collect();
            les.sort();
            les.dedup();
            les
        };
        let mut buckets: Vec<(f64, f64)> = les
            .into_iter()
            .filter_map(|le| {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse::<f64>().ok()?
                };
                let mut m = matchers.to_vec();
                m.push(("le".to_owned(), le));
                Some((bound, self.increase(&bucket, &m, window)?.0))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        crate::promql::bucket_quantile(q, &buckets).filter(|v| !v.is_nan())
    }

    /// The least-squares line through the last `window` seconds of each
    /// series named `name` with `matchers`: `(labels, slope per second,
    /// value at the newest second)`. What PromQL's `deriv` and
    /// `predict_linear` compute; a series with fewer than two points in
    /// the window has none.
    pub fn trend(
        &self,
        name: &str,
        matchers: &[(String, String)],
        window: i64,
    ) -> Vec<(Labels, f64, f64)> {
        let inner = self.inner.lock();
        let mut out = Vec::new();
        for ((n, labels), ring) in &inner.series {
            if n != name || !matchers.iter().all(|m| labels.contains(m)) {
                continue;
            }
            let points: Vec<(f64, f64)> = (ring.newest - window.min(SECONDS as i64 - 1)
                ..=ring.newest)
                .filter_map(|t| ring.second(t).map(|v| ((t - ring.newest) as f64, v)))
                .collect();
            if let Some((slope, intercept)) = least_squares(&points) {
                out.push((labels.clone(), slope, intercept));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// PromQL's `predict_linear`: each series' value `ahead` seconds after
    /// its newest, from the trend of the last `window` seconds.
    pub fn predict_linear(
        &self,
        name: &str,
        matchers: &[(String, String)],
        window: i64,
        ahead: f64,
    ) -> Vec<(Labels, f64)> {
        self.trend(name, matchers, window)
            .into_iter()
            .map(|(labels, slope, now)| (labels, now + slope * ahead))
            .collect()
    }

    /// How many seconds until each series reaches `threshold` at its
    /// trend over the last `window` seconds (`None` when it is not heading
    /// there): "connections exceed the budget within the hour".
    pub fn time_until(
        &self,
        name: &str,
        matchers: &[(String, String)],
        window: i64,
        threshold: f64,
    ) -> Vec<(Labels, Option<f64>)> {
        self.trend(name, matchers, window)
            .into_iter()
            .map(|(labels, slope, now)| {
                let gap = threshold - now;
                let eta = if gap == 0.0 {
                    Some(0.0)
                } else if slope != 0.0 && gap.signum() == slope.signum() {
                    Some(gap / slope)
                } else {
                    None
                };
                (labels, eta)
            })
            .collect()
    }

    /// Every series whose name and labels `keep` accepts, with its samples
    /// in `(start, end]` (Unix seconds), oldest first: by the second within
    /// the last hour of the series, and before that each minute's last
    /// value, stamped at the minute's last second. What PromQL's range and
    /// instant selectors read.
    pub fn select(
        &self,
        keep: impl Fn(&str, &Labels) -> bool,
        start: i64,
        end: i64,
    ) -> Vec<Selected> {
        let inner = self.inner.lock();
        let mut out = Vec::new();
        for ((name, labels), ring) in &inner.series {
            if ring.newest == i64::MIN || !keep(name, labels) {
                continue;
            }
            let fine_from = ring.newest - (SECONDS as i64 - 1);
            let mut points = Vec::new();
            if start + 1 < fine_from {
                let first = (start + 1).div_euclid(60);
                let last = (fine_from - 1).min(end).div_euclid(60);
                for m in first..=last {
                    let stamp = m * 60 + 59;
                    if stamp <= start || stamp > end || stamp >= fine_from {
                        continue;
                    }
                    if let Some(minute) = ring.minute(m) {
                        points.push((stamp, minute.last));
                    }
                }
            }
            for t in (start + 1).max(fine_from)..=end.min(ring.newest) {
                if let Some(v) = ring.second(t) {
                    points.push((t, v));
                }
            }
            if !points.is_empty() {
                out.push((name.clone(), labels.clone(), points));
            }
        }
        out
    }

    /// The names stored, sorted.
    pub fn names(&self) -> Vec<String> {
        let inner = self.inner.lock();
        let mut names: Vec<String> = inner.series.keys().map(|(n, _)| n.clone()).collect();
        names.sort();
        names.dedup();
        names
    }
}

impl Inner {
    /// Stores `value` at `t` for `name{labels}`, or for the histogram part
    /// `(suffix, le)` of it.
    fn put(
        &mut self,
        name: &str,
        labels: &[(String, String)],
        part: Option<(&str, Option<String>)>,
        t: i64,
        value: f64,
    ) {
        let (name, labels) = match part {
            None => (name.to_owned(), labels.to_vec()),
            Some((suffix, le)) => {
                let mut labels = labels.to_vec();
                if let Some(le) = le {
                    labels.push(("le".to_owned(), le));
                    labels.sort();
                }
                (format!("{name}{suffix}"), labels)
            }
        };
        let key = (name, labels);
        if let Some(ring) = self.series.get_mut(&key) {
            ring.put(t, value);
            return;
        }
        if self.series.len() >= self.cap {
            self.dropped += 1;
            return;
        }
        let mut ring = Ring::new(self.minutes);
        ring.put(t, value);
        self.series.insert(key, ring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Series;

    fn gauge(name: &str, v: f64) -> Snapshot {
        Snapshot {
            series: vec![Series {
                name: name.to_owned(),
                labels: vec![("bot".to_owned(), "a".to_owned())],
                value: Value::Gauge(v),
            }],
        }
    }

    const T0: i64 = 1_796_645_040; // a minute's start

    #[test]
    fn the_last_hour_is_kept_by_the_second_with_gaps_left_empty() {
        let s = Store::new(10);
        for i in 0..10 {
            if i != 5 {
                s.record(T0 + i, &gauge("g", i as f64));
            }
        }
        let q = s.query("g", &[], T0, T0 + 9, 1, Aggregate::Mean);
        assert_eq!(q.len(), 1);
        let times: Vec<i64> = q[0].points.iter().map(|p| p.0 - T0).collect();
        assert_eq!(times, [0, 1, 2, 3, 4, 6, 7, 8, 9]);
        assert_eq!(q[0].points[6], (T0 + 7, 7.0));
        // A matcher that does not hold: nothing.
        let none = s.query(
            "g",
            &[("bot".into(), "b".into())],
            T0,
            T0 + 9,
            1,
            Aggregate::Mean,
        );
        assert!(none.is_empty());
    }

    #[test]
    fn older_than_an_hour_comes_from_the_minutes_aggregated() {
        let s = Store::new(10);
        // Two hours, the value being the minute's index and the second.
        for i in 0..7200 {
            s.record(
                T0 + i,
                &gauge("g", (i / 60) as f64 * 100.0 + (i % 60) as f64),
            );
        }
        // The first minute is out of the 1-s ring: its aggregates.
        let q = s.query("g", &[], T0, T0 + 119, 60, Aggregate::Max);
        assert_eq!(q[0].points, [(T0, 59.0), (T0 + 60, 159.0)]);
        let q = s.query("g", &[], T0, T0, 60, Aggregate::Min);
        assert_eq!(q[0].points, [(T0, 0.0)]);
        let q = s.query("g", &[], T0 + 60, T0 + 60, 60, Aggregate::Mean);
        assert_eq!(q[0].points, [(T0 + 60, 129.5)]);
        let q = s.query("g", &[], T0 + 60, T0 + 60, 60, Aggregate::Last);
        assert_eq!(q[0].points, [(T0 + 60, 159.0)]);
        // The last hour by the second.
        let q = s.query("g", &[], T0 + 7199, T0 + 7199, 1, Aggregate::Mean);
        assert_eq!(q[0].points, [(T0 + 7199, 11959.0)]);
        // Past 24 hours: nothing.
        s.record(T0 + 25 * 3600, &gauge("g", 1.0));
        let q = s.query("g", &[], T0, T0 + 60, 60, Aggregate::Last);
        assert!(q[0].points.is_empty(), "{:?}", q[0].points);
    }

    #[test]
    fn trends_predict_and_say_when_a_threshold_comes() {
        let s = Store::new(10);
        // 2 per second from 100, with a bump that least squares averages.
        for i in 0..120 {
            let bump = if i == 60 { 3.0 } else { 0.0 };
            s.record(T0 + i, &gauge("conns", 100.0 + 2.0 * i as f64 + bump));
        }
        let t = s.trend("conns", &[], 300);
        assert_eq!(t.len(), 1);
        assert!((t[0].1 - 2.0).abs() < 0.01, "{t:?}");
        assert!((t[0].2 - 338.0).abs() < 0.5, "{t:?}");
        let p = s.predict_linear("conns", &[], 300, 3600.0);
        assert!((p[0].1 - (338.0 + 7200.0)).abs() < 40.0, "{p:?}");
        // 1,000 is 331 s away at 2/s; a threshold behind it is never.
        let eta = s.time_until("conns", &[], 300, 1000.0)[0].1.unwrap();
        assert!((eta - 331.0).abs() < 1.0, "{eta}");
        assert_eq!(s.time_until("conns", &[], 300, 0.0)[0].1, None);
        // One point: no line.
        s.record(T0, &gauge("lonely", 1.0));
        assert!(s.trend("lonely", &[], 300).is_empty());
    }

    #[test]
    fn a_shorter_retention_keeps_fewer_minutes() {
        let s = Store::with_retention(10, 90);
        for i in 0..3 * 3600 {
            s.record(T0 + i, &gauge("g", 1.0));
        }
        let newest = T0 + 3 * 3600 - 1;
        let q = s.query("g", &[], newest - 100 * 60, newest, 60, Aggregate::Last);
        let minutes = q[0].points.len();
        assert!((89..=91).contains(&minutes), "{minutes} minutes kept");
    }

    #[test]
    fn increases_latest_values_and_quantiles_over_a_window() {
        let s = Store::new(100);
        // A counter reset half way: 0, 10, 20, then 5 (a restart), 15.
        for (i, v) in [0.0, 10.0, 20.0, 5.0, 15.0].into_iter().enumerate() {
            s.record(T0 + i as i64, &gauge("c_total", v));
        }
        assert_eq!(s.increase("c_total", &[], 60), Some((35.0, 4.0)));
        assert_eq!(s.increase("c_total", &[], 1), Some((10.0, 1.0)));
        assert_eq!(s.latest("c_total", &[]), Some(15.0));
        assert_eq!(s.latest("nothing", &[]), None);
        // A histogram: 100 observations in the last 10 s, 90 under 0.1, 9
        // under 1, 1 above.
        let h = |n: u64| Snapshot {
            series: vec![Series {
                name: "h_seconds".to_owned(),
                labels: Vec::new(),
                value: Value::Histogram {
                    buckets: vec![(0.1, 90 * n), (1.0, 99 * n), (f64::INFINITY, 100 * n)],
                    sum: 0.0,
                    count: 100 * n,
                },
            }],
        };
        s.record(T0, &h(0));
        s.record(T0 + 10, &h(1));
        let p50 = s.quantile("h_seconds", &[], 60, 0.5).unwrap();
        assert!((p50 - 0.1 * 50.0 / 90.0).abs() < 1e-9, "{p50}");
        let p95 = s.quantile("h_seconds", &[], 60, 0.95).unwrap();
        assert!((p95 - (0.1 + 0.9 * 5.0 / 9.0)).abs() < 1e-9, "{p95}");
        // Above every bound: the highest finite one.
        assert_eq!(s.quantile("h_seconds", &[], 60, 1.0), Some(1.0));
        assert_eq!(
            s.quantile("h_seconds", &[("bot".into(), "x".into())], 60, 0.5),
            None
        );
    }

    #[test]
    fn histograms_are_buckets_sum_and_count_and_the_cap_holds() {
        let s = Store::new(5);
        let snapshot = Snapshot {
            series: vec![Series {
                name: "h_seconds".to_owned(),
                labels: Vec::new(),
                value: Value::Histogram {
                    buckets: vec![(0.1, 1), (f64::INFINITY, 3)],
                    sum: 2.5,
                    count: 3,
                },
            }],
        };
        s.record(T0, &snapshot);
        assert_eq!(
            s.names(),
            ["h_seconds_bucket", "h_seconds_count", "h_seconds_sum"]
        );
        let inf = s.query(
            "h_seconds_bucket",
            &[("le".into(), "+Inf".into())],
            T0,
            T0,
            1,
            Aggregate::Last,
        );
        assert_eq!(inf[0].points, [(T0, 3.0)]);
        // Four series stored; with the cap at five, one more fits, then
        // the rest are dropped and counted.
        for i in 0..4 {
            s.record(T0, &gauge(&format!("g{i}"), 1.0));
        }
        assert_eq!(s.len(), 5);
        assert_eq!(s.dropped(), 3);
    }
}
