//! Statistics for benchmark reports. Quantiles come from HDR histograms
//! (`hdrhistogram`), the one quantile definition of botfleet: the worker
//! SDK's handling times, `bench fleet`'s latencies and every other report.

use hdrhistogram::Histogram;

/// Values are recorded at this resolution (a thousandth of their unit), so
/// one definition serves nanoseconds and mebibytes alike.
const SCALE: f64 = 1000.0;

/// The `q` quantile (0..=1) of `samples` through an HDR histogram of three
/// significant digits (so within 0.1 % of the exact nearest-rank value); 0
/// for no samples. Negative and non-finite samples count as 0.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut h = Histogram::<u64>::new(3).expect("3 significant digits are valid");
    for &v in samples {
        let scaled = if v.is_finite() && v > 0.0 {
            (v * SCALE).round() as u64
        } else {
            0
        };
        // `record` grows the auto-resizing histogram to fit the value
        // (`saturating_record` would clamp it to the current range).
        if h.record(scaled).is_err() {
            h.saturating_record(scaled);
        }
    }
    // The histogram answers with the highest value equivalent to the
    // bucket's; its median equivalent is nearer the samples.
    let at = h.value_at_quantile(q.clamp(0.0, 1.0));
    h.median_equivalent(at) as f64 / SCALE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.001 + 1e-9
    }

    #[test]
    fn quantiles_within_the_histograms_precision() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!(close(quantile(&s, 0.5), 50.0), "{}", quantile(&s, 0.5));
        assert!(close(quantile(&s, 0.99), 99.0), "{}", quantile(&s, 0.99));
        assert!(close(quantile(&s, 1.0), 100.0), "{}", quantile(&s, 1.0));
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert!(close(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0));
        // Small units keep their digits: 4.3 MiB, 3.69 ms.
        assert!(close(quantile(&[4.3], 0.5), 4.3));
        assert!(close(quantile(&[3.69, 3.70, 12.0], 0.5), 3.70));
        // Large ones too: 1.2 s in ns.
        assert!(close(quantile(&[1.2e9], 0.5), 1.2e9));
    }
}
