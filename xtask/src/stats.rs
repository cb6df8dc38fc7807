//! Pure statistics used by the bench harness: median / min / max summaries and the
//! run-by-run ratio between two allocators.

use serde::Serialize;

/// Median, minimum and maximum of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// Median of `values` (mean of the two middle values for an even count).
/// Returns `None` for an empty slice; NaNs are ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median, min and max of `values`; `None` when there is no (non-NaN) value.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let median = median(values)?;
    let finite = values.iter().copied().filter(|x| !x.is_nan());
    let min = finite.clone().fold(f64::INFINITY, f64::min);
    let max = finite.fold(f64::NEG_INFINITY, f64::max);
    Some(Summary { median, min, max })
}

/// A cell whose runs spread by more than this (`max / min - 1`) is marked unstable.
pub const UNSTABLE_SPREAD: f64 = 0.2;

/// Run-to-run spread of a sample: `max / min - 1` (0 when all runs agree). `None` with
/// fewer than two (non-NaN) values; infinite when the smallest is 0 (or below) and the
/// largest is not.
pub fn spread(values: &[f64]) -> Option<f64> {
    let v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.len() < 2 {
        return None;
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(if max == min {
        0.0
    } else if min <= 0.0 {
        f64::INFINITY
    } else {
        max / min - 1.0
    })
}

/// Whether a spread (from [`spread`]) is above [`UNSTABLE_SPREAD`].
pub fn is_unstable(spread: Option<f64>) -> bool {
    spread.is_some_and(|s| s > UNSTABLE_SPREAD)
}

/// Ratio of one run of hakmem against one run of a peer, oriented so that a value
/// above 1.0 always means "hakmem is better": `hakmem / peer` when a higher metric
/// is better (throughput), `peer / hakmem` when a lower metric is better (time, bytes).
/// `None` when the ratio is undefined (a zero or non-finite denominator or operand).
pub fn oriented_ratio(hakmem: f64, peer: f64, higher_is_better: bool) -> Option<f64> {
    let (num, den) = if higher_is_better {
        (hakmem, peer)
    } else {
        (peer, hakmem)
    };
    if !num.is_finite() || !den.is_finite() || den == 0.0 {
        return None;
    }
    Some(num / den)
}

/// Run-by-run ratio: run `i` of `hakmem` is paired with run `i` of `peer` (the same
/// repetition, so that drift of the machine affects both alike); a pair where either
/// run failed (`None`) is dropped. Returns the median of the per-pair oriented ratios.
pub fn paired_ratio(
    hakmem: &[Option<f64>],
    peer: &[Option<f64>],
    higher_is_better: bool,
) -> Option<f64> {
    let ratios = paired_ratios(hakmem, peer, higher_is_better);
    median(&ratios)
}

/// The individual per-repetition ratios behind [`paired_ratio`].
pub fn paired_ratios(
    hakmem: &[Option<f64>],
    peer: &[Option<f64>],
    higher_is_better: bool,
) -> Vec<f64> {
    hakmem
        .iter()
        .zip(peer.iter())
        .filter_map(|(h, p)| oriented_ratio((*h)?, (*p)?, higher_is_better))
        .collect()
}

/// Geometric mean of positive values (used for the summary row); `None` when empty
/// or when any value is not strictly positive.
pub fn geomean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        return None;
    }
    let s: f64 = values.iter().map(|v| v.ln()).sum();
    Some((s / values.len() as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0, 4.0]), Some(3.0));
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn summary_min_max() {
        let s = summarize(&[10.0, 2.0, 7.0, 30.0]).unwrap();
        assert_eq!(s.median, 8.5);
        assert_eq!(s.min, 2.0);
        assert_eq!(s.max, 30.0);
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn ratio_orientation() {
        // Throughput: hakmem 200 vs peer 100 -> hakmem is 2x better.
        assert_eq!(oriented_ratio(200.0, 100.0, true), Some(2.0));
        // Time: hakmem 50 ms vs peer 100 ms -> hakmem is 2x better.
        assert_eq!(oriented_ratio(50.0, 100.0, false), Some(2.0));
        assert_eq!(oriented_ratio(1.0, 0.0, true), None);
        assert_eq!(oriented_ratio(0.0, 1.0, false), None);
    }

    #[test]
    fn paired_ratio_is_run_by_run_not_ratio_of_medians() {
        // Machine drifts: run 0 fast for both, run 1 slow for both, run 2 medium.
        let h = [Some(200.0), Some(100.0), Some(150.0)];
        let p = [Some(100.0), Some(50.0), Some(150.0)];
        // Per-run ratios: 2.0, 2.0, 1.0 -> median 2.0.
        assert_eq!(paired_ratio(&h, &p, true), Some(2.0));
        // The ratio of medians would be 150/100 = 1.5: make sure we do not compute that.
        assert_ne!(paired_ratio(&h, &p, true), Some(1.5));
    }

    #[test]
    fn paired_ratio_drops_failed_pairs() {
        let h = [Some(100.0), None, Some(300.0), Some(1.0)];
        let p = [Some(100.0), Some(10.0), None];
        // Only pair 0 survives (pair 3 has no peer run at all).
        assert_eq!(paired_ratios(&h, &p, true), vec![1.0]);
        assert_eq!(paired_ratio(&[None], &[Some(1.0)], true), None);
    }

    #[test]
    fn spread_and_unstable() {
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[5.0]), None);
        assert_eq!(spread(&[5.0, f64::NAN]), None);
        assert_eq!(spread(&[5.0, 5.0, 5.0]), Some(0.0));
        assert_eq!(spread(&[0.0, 0.0]), Some(0.0));
        assert!((spread(&[100.0, 120.0, 110.0]).unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(spread(&[14.0, 60.0, 30.0, 20.0]), Some(60.0 / 14.0 - 1.0));
        assert_eq!(spread(&[0.0, 3.0]), Some(f64::INFINITY));
        // The reported quick runs: big 14..60 ops/s, phased 100..52k ops/s.
        assert!(is_unstable(spread(&[14.0, 60.0])));
        assert!(is_unstable(spread(&[100.0, 52_000.0])));
        assert!(is_unstable(spread(&[0.0, 3.0])));
        assert!(
            !is_unstable(spread(&[100.0, 120.0])),
            "exactly 20% is stable"
        );
        assert!(is_unstable(spread(&[100.0, 120.5])));
        assert!(!is_unstable(spread(&[100.0])), "one run says nothing");
        assert!(!is_unstable(None));
    }

    #[test]
    fn geomean_basic() {
        let g = geomean(&[1.0, 4.0]).unwrap();
        assert!((g - 2.0).abs() < 1e-12);
        assert_eq!(geomean(&[]), None);
        assert_eq!(geomean(&[1.0, 0.0]), None);
    }
}
