//! The statistics `botfleet compare` judges with: medians, the
//! Mann-Whitney U test (counted exactly up to 60 runs in all, ties
//! included; the normal approximation with a tie correction beyond) and the Hodges-Lehmann
//! estimate of the shift between two samples with its confidence interval.
//! Rank statistics, because benchmark timings are skewed and have
//! outliers: they assume no distribution (../shared/reference, benchstat).

/// The median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The two-sided p-value of the Mann-Whitney U test that `a` and `b` come
/// from one distribution (1 when either is empty): exact up to
/// 60 runs in all, ties included; beyond, the normal
/// approximation with the tie correction.
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return 1.0;
    }
    // Ranks of the pooled samples, ties given their mean rank, doubled so
    // they stay integers.
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let total = pooled.len();
    let mut ranks2 = Vec::with_capacity(total);
    let mut rank_a2 = 0usize;
    let mut ties = 0.0;
    let mut i = 0;
    while i < total {
        let mut j = i;
        while j + 1 < total && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        // Ranks i+1 ..= j+1: their mean, doubled.
        let rank2 = i + j + 2;
        for p in &pooled[i..=j] {
            ranks2.push(rank2);
            if p.1 {
                rank_a2 += rank2;
            }
        }
        i = j + 1;
    }
    if total <= EXACT_MAX {
        return exact_p(&ranks2, n, rank_a2);
    }
    let u = rank_a2 as f64 / 2.0 - (n * (n + 1)) as f64 / 2.0;
    let (nf, mf, tf) = (n as f64, m as f64, total as f64);
    let mean = nf * mf / 2.0;
    let var = nf * mf / 12.0 * ((tf + 1.0) - ties / (tf * (tf - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    // With the continuity correction.
    let z = ((u - mean).abs() - 0.5).max(0.0) / var.sqrt();
    (2.0 * (1.0 - normal_cdf(z))).min(1.0)
}

/// Up to this many runs in all, the p-value is counted exactly.
const EXACT_MAX: usize = 60;

/// The exact two-sided p-value of a rank sum: of every way to choose
/// which `n` of the pooled values (their doubled ranks `ranks2`) are the
/// first sample's, the share whose rank sum is at least as far out as
/// `observed2` on its side, doubled.
fn exact_p(ranks2: &[usize], n: usize, observed2: usize) -> f64 {
    let max: usize = ranks2.iter().sum();
    // ways[k][s]: the subsets of k values whose doubled ranks sum to s.
    let mut ways = vec![vec![0.0f64; max + 1]; n + 1];
    ways[0][0] = 1.0;
    for &r in ranks2 {
        for k in (1..=n).rev() {
            let (before, at) = ways.split_at_mut(k);
            let (from, to) = (&before[k - 1], &mut at[0]);
            for s in (r..=max).rev() {
                to[s] += from[s - r];
            }
        }
    }
    let dist = &ways[n];
    let all: f64 = dist.iter().sum();
    let low: f64 = dist[..=observed2].iter().sum();
    let high: f64 = dist[observed2..].iter().sum();
    (2.0 * low.min(high) / all).min(1.0)
}

/// The standard normal distribution function.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

/// The error function (Abramowitz and Stegun 7.1.26, error below 1.5e-7).
fn erf(x: f64) -> f64 {
    let sign = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    sign * (1.0 - poly * (-x * x).exp())
}

/// The Hodges-Lehmann estimate of the shift from `a` to `b` (the median
/// of every difference b - a) and its 95 % confidence interval, the
/// differences' order statistics the Mann-Whitney distribution points at
/// (the range of the differences when the samples are too small for 95 %).
pub fn hodges_lehmann(a: &[f64], b: &[f64]) -> Option<(f64, f64, f64)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut d: Vec<f64> = a
        .iter()
        .flat_map(|x| b.iter().map(move |y| y - x))
        .collect();
    d.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let nm = d.len();
    let k = (n * m / 2.0 - 1.959_964 * (n * m * (n + m + 1.0) / 12.0).sqrt()).floor();
    let k = if k < 1.0 { 1 } else { k as usize };
    Some((median(&d), d[k - 1], d[nm - k]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn exact_mann_whitney_matches_the_counting() {
        // Completely separated samples of 4: 2 of the 70 arrangements are
        // as extreme, one on each side.
        let p = mann_whitney_p(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]);
        assert!((p - 2.0 / 70.0).abs() < 1e-12, "{p}");
        // Symmetric, and 1 for interleaved samples.
        let q = mann_whitney_p(&[5.0, 6.0, 7.0, 8.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!((p - q).abs() < 1e-12);
        let p = mann_whitney_p(&[1.0, 4.0, 5.0, 8.0], &[2.0, 3.0, 6.0, 7.0]);
        assert!(p > 0.99, "{p}");
        // Three against three can never be significant at 5 %.
        assert!(mann_whitney_p(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]) > 0.05);
        // Exact for a case past the old limit of pairs too (30 against 30).
        let a: Vec<f64> = (0..30).map(f64::from).collect();
        let b: Vec<f64> = (30..60).map(f64::from).collect();
        assert!(mann_whitney_p(&a, &b) < 1e-10);
    }

    #[test]
    fn ties_are_counted_exactly() {
        // Three against three, each side constant: 2 of the 20 ways to
        // split the ranks are as extreme.
        let p = mann_whitney_p(&[1.0; 3], &[2.0; 3]);
        assert!((p - 0.1).abs() < 1e-12, "{p}");
        // All equal is no evidence.
        assert_eq!(mann_whitney_p(&[1.0; 10], &[1.0; 10]), 1.0);
    }

    #[test]
    fn the_normal_approximation_agrees_with_the_exact_count() {
        // 35 against 35: beyond EXACT_MAX, so approximated; the exact count
        // of the same ranks agrees.
        let a: Vec<f64> = (0..35).map(|i| f64::from(i) * 2.0).collect();
        let b: Vec<f64> = (0..35).map(|i| f64::from(i) * 2.0 + 15.0).collect();
        let approx = mann_whitney_p(&a, &b);
        let mut pooled: Vec<(f64, bool)> = a
            .iter()
            .map(|&x| (x, true))
            .chain(b.iter().map(|&x| (x, false)))
            .collect();
        pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
        let ranks2: Vec<usize> = (0..70).map(|i| 2 * i + 2).collect();
        let observed2: usize = pooled
            .iter()
            .zip(&ranks2)
            .filter(|(p, _)| p.1)
            .map(|(_, r)| r)
            .sum();
        let exact = exact_p(&ranks2, 35, observed2);
        assert!((approx - exact).abs() < 0.01, "{approx} vs {exact}");
        assert!(exact < 0.05, "{exact}");
    }

    #[test]
    fn hodges_lehmann_finds_the_shift_and_brackets_it() {
        let a: Vec<f64> = (0..20).map(|i| 100.0 + f64::from(i % 5)).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 10.0).collect();
        let (shift, low, high) = hodges_lehmann(&a, &b).unwrap();
        assert_eq!(shift, 10.0);
        assert!(
            low <= 10.0 && high >= 10.0 && low > 5.0 && high < 15.0,
            "{low} {high}"
        );
        // One run a side: the one difference, exactly.
        assert_eq!(hodges_lehmann(&[2.0], &[3.0]), Some((1.0, 1.0, 1.0)));
        assert_eq!(hodges_lehmann(&[], &[3.0]), None);
    }
}
