//! Anomaly detection per series, streaming and O(1) per point (the window
//! of the MAD check aside): an EWMA mean and variance give each point a
//! z-score; a modified z-score against the median of the last points
//! (Iglewicz and Hoaglin's MAD) checks it robustly. A point is anomalous
//! only after a warm-up, beyond an absolute floor (no alert on near-zero
//! traffic), in the direction asked (latency up, not down), and only
//! `consecutive` such points in a row make an anomaly: the guard rails of
//! ../shared/reference/monitoring.md §7. The alert rules of a later step
//! use it; it is built and tested on its own first.

use std::collections::VecDeque;

/// Which way a change counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Only values above the baseline (latency, errors).
    Up,
    /// Only values below it (a rate of updates falling).
    Down,
    /// Either.
    Both,
}

/// How a detector judges a point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// The EWMA's weight of the newest point (λ, 0.1 to 0.3 catch small
    /// shifts).
    pub lambda: f64,
    /// The z-score beyond which a point is anomalous (K, 3 by default).
    pub threshold: f64,
    /// The modified z-score beyond which the MAD check agrees (3.5).
    pub mad_threshold: f64,
    /// Points seen before any is judged.
    pub warmup: usize,
    /// Points the MAD check looks back over.
    pub window: usize,
    /// The smallest absolute difference from the baseline that counts.
    pub floor: f64,
    /// Which way counts.
    pub direction: Direction,
    /// Anomalous points in a row that make an anomaly.
    pub consecutive: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lambda: 0.2,
            threshold: 3.0,
            mad_threshold: 3.5,
            warmup: 30,
            window: 60,
            floor: 0.0,
            direction: Direction::Both,
            consecutive: 3,
        }
    }
}

/// One series' detector.
#[derive(Clone, Debug)]
pub struct Detector {
    settings: Settings,
    mean: f64,
    variance: f64,
    seen: usize,
    recent: VecDeque<f64>,
    in_a_row: usize,
}

impl Detector {
    /// A detector with `settings`.
    pub fn new(settings: Settings) -> Detector {
        Detector {
            settings,
            mean: 0.0,
            variance: 0.0,
            seen: 0,
            recent: VecDeque::with_capacity(settings.window),
            in_a_row: 0,
        }
    }

    /// Takes the next point; whether the series is anomalous now (the
    /// point and the `consecutive - 1` before it all were). An anomalous
    /// point does not move the baseline, so a lasting shift stays visible.
    pub fn observe(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return self.in_a_row >= self.settings.consecutive;
        }
        let s = &self.settings;
        let anomalous = self.seen >= s.warmup && self.judge(x);
        if anomalous {
            self.in_a_row += 1;
        } else {
            self.in_a_row = 0;
            self.learn(x);
        }
        self.seen += 1;
        self.in_a_row >= self.settings.consecutive
    }

    /// Whether `x` is off the baseline by both checks.
    fn judge(&self, x: f64) -> bool {
        let s = &self.settings;
        let diff = x - self.mean;
        let way = match s.direction {
            Direction::Up => diff > 0.0,
            Direction::Down => diff < 0.0,
            Direction::Both => true,
        };
        if !way || diff.abs() < s.floor {
            return false;
        }
        let sd = self.variance.sqrt();
        let z = if sd > 0.0 {
            diff.abs() / sd
        } else {
            f64::INFINITY
        };
        if z <= s.threshold {
            return false;
        }
        // The robust check: against the median of the recent points.
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        if sorted.is_empty() {
            return true;
        }
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - median).abs()).collect();
        deviations.sort_by(f64::total_cmp);
        let mad = deviations[deviations.len() / 2];
        if mad == 0.0 {
            // Over half the points equal: any other value stands out.
            return x != median;
        }
        0.6745 * (x - median).abs() / mad > s.mad_threshold
    }

    /// Moves the baseline towards `x`.
    fn learn(&mut self, x: f64) {
        let l = self.settings.lambda;
        if self.seen == 0 {
            self.mean = x;
        } else {
            let diff = x - self.mean;
            self.mean += l * diff;
            self.variance = (1.0 - l) * (self.variance + l * diff * diff);
        }
        if self.recent.len() == self.settings.window {
            self.recent.pop_front();
        }
        self.recent.push_back(x);
    }

    /// The baseline now: the EWMA mean and standard deviation.
    pub fn baseline(&self) -> (f64, f64) {
        (self.mean, self.variance.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gaussian noise from a seeded generator (xorshift and Box-Muller).
    struct Noise(u64);

    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        fn gaussian(&mut self) -> f64 {
            let (u, v) = (self.uniform().max(1e-12), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    #[test]
    fn stationary_noise_raises_nothing() {
        for seed in 1..=20u64 {
            let mut noise = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut d = Detector::new(Settings::default());
            let alarms = (0..5_000)
                .filter(|_| d.observe(100.0 + 5.0 * noise.gaussian()))
                .count();
            assert_eq!(alarms, 0, "seed {seed}");
        }
    }

    #[test]
    fn a_step_is_caught_within_a_few_points() {
        let mut noise = Noise(42);
        let mut d = Detector::new(Settings::default());
        for _ in 0..300 {
            assert!(!d.observe(100.0 + 5.0 * noise.gaussian()));
        }
        // A step of six standard deviations.
        let caught = (0..50).position(|_| d.observe(130.0 + 5.0 * noise.gaussian()));
        assert!(caught.is_some_and(|at| at < 5), "{caught:?}");
        // It stays anomalous while the shift lasts.
        assert!((0..20).all(|_| d.observe(130.0 + 5.0 * noise.gaussian())));
    }

    #[test]
    fn direction_floor_and_warmup_are_respected() {
        let up = Settings {
            direction: Direction::Up,
            ..Settings::default()
        };
        let mut d = Detector::new(up);
        let mut noise = Noise(7);
        for _ in 0..100 {
            d.observe(100.0 + noise.gaussian());
        }
        // A fall is not what this detector watches.
        assert!((0..10).all(|_| !d.observe(50.0)));
        // A tiny series: below the floor, nothing.
        let mut d = Detector::new(Settings {
            floor: 5.0,
            ..Settings::default()
        });
        for i in 0..100 {
            d.observe(f64::from(i % 2) * 0.01);
        }
        assert!((0..10).all(|_| !d.observe(1.0)), "under the floor");
        // During the warm-up, nothing at all.
        let mut d = Detector::new(Settings::default());
        assert!((0..29).all(|i| !d.observe(if i % 2 == 0 { 0.0 } else { 1e9 })));
        // A flat series: any other value stands out (MAD of 0).
        let mut d = Detector::new(Settings::default());
        for _ in 0..100 {
            d.observe(10.0);
        }
        let flagged = (0..3).map(|_| d.observe(11.0)).last();
        assert_eq!(flagged, Some(true));
    }
}
