//! Float helpers that `core` lacks without `std`: [`exp2`] and [`pow10`].
//!
//! Role: the Elo expectation needs `10^x`; `f64::powf` lives in `std` (it calls libm), so this
//! module computes it with a range reduction and a short Taylor polynomial.
//!
//! Invariants:
//! - Pure and allocation-free; no `unsafe`, no calls into libm.
//! - Relative error below `1e-13` for every `x` whose result is a normal `f64` (measured in the
//!   tests against `std` over `[-300, 300]` for `pow10` and `[-1000, 1000]` for `exp2`; the Elo
//!   code only uses `|x| <= 10`). Results below the smallest normal value are flushed to zero.

use core::f64::consts::{LN_2, LOG2_10};

/// `2^x`.
///
/// NaN gives NaN, `x >= 1024` gives `+inf`, `x < -1022` gives `0.0` (subnormal results are
/// flushed to zero).
pub fn exp2(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x >= 1024.0 {
        return f64::INFINITY;
    }
    if x < -1022.0 {
        return 0.0;
    }
    // x = n + f with n the nearest integer, |f| <= 0.5, so 2^f = e^(f ln 2) with |f ln 2| < 0.35.
    let n = round_half_away(x);
    let y = (x - n as f64) * LN_2;
    // Taylor series of e^y to degree 13 (Horner): the next term is below 4e-18.
    let mut p = 1.0;
    let mut k = 13;
    while k > 0 {
        p = 1.0 + p * y / k as f64;
        k -= 1;
    }
    // n is in [-1022, 1024]; scale in two steps so each factor is a normal power of two.
    let a = n / 2;
    p * pow2i(a) * pow2i(n - a)
}

/// `10^x`, as `exp2(x * log2(10))`.
///
/// Same edge behaviour as [`exp2`]: overflow gives `+inf`, underflow `0.0`.
pub fn pow10(x: f64) -> f64 {
    exp2(x * LOG2_10)
}

/// The integer nearest to `x` (halves away from zero); `x` must lie in `[-1023, 1024)`.
fn round_half_away(x: f64) -> i64 {
    let t = x as i64; // truncates toward zero
    let f = x - t as f64;
    if f >= 0.5 {
        t + 1
    } else if f <= -0.5 {
        t - 1
    } else {
        t
    }
}

/// `2^k` for `k` in `[-1022, 1023]`, built from its exponent bits.
fn pow2i(k: i64) -> f64 {
    debug_assert!((-1022..=1023).contains(&k));
    f64::from_bits(((k + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel_err(got: f64, want: f64) -> f64 {
        ((got - want) / want).abs()
    }

    #[test]
    fn exp2_integers_are_exact() {
        for k in -1022..=1023 {
            assert_eq!(exp2(k as f64), pow2i(k), "2^{k}");
        }
        assert_eq!(exp2(0.0), 1.0);
        assert_eq!(exp2(10.0), 1024.0);
        assert_eq!(exp2(-1.0), 0.5);
    }

    #[test]
    fn exp2_matches_std() {
        let mut worst = 0.0f64;
        let mut x = -1000.0;
        while x < 1000.0 {
            worst = worst.max(rel_err(exp2(x), x.exp2()));
            x += 0.0137;
        }
        assert!(worst < 1e-13, "worst relative error {worst:e}");
    }

    #[test]
    fn pow10_matches_std_over_elo_range() {
        let mut worst = 0.0f64;
        for i in -100_000..=100_000 {
            let x = i as f64 * 1e-4; // [-10, 10]
            worst = worst.max(rel_err(pow10(x), 10f64.powf(x)));
        }
        assert!(worst < 1e-13, "worst relative error {worst:e}");
    }

    #[test]
    fn pow10_matches_std_over_wide_range() {
        let mut worst = 0.0f64;
        let mut x = -300.0;
        while x < 300.0 {
            worst = worst.max(rel_err(pow10(x), 10f64.powf(x)));
            x += 0.00731;
        }
        // Well inside the 1e-6 the Elo code needs; the product x*log2(10) costs a few ulps.
        assert!(worst < 1e-13, "worst relative error {worst:e}");
    }

    #[test]
    fn pow10_known_values() {
        assert!(rel_err(pow10(2.0), 100.0) < 1e-15);
        assert!(rel_err(pow10(-0.5), 0.316_227_766_016_837_94) < 1e-15);
        assert!(rel_err(pow10(0.5), 3.162_277_660_168_379_5) < 1e-15);
        assert_eq!(pow10(0.0), 1.0);
    }

    #[test]
    fn edges() {
        assert!(exp2(f64::NAN).is_nan());
        assert_eq!(exp2(1024.0), f64::INFINITY);
        assert_eq!(exp2(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp2(-1023.0), 0.0);
        assert_eq!(exp2(f64::NEG_INFINITY), 0.0);
        // Just below the overflow edge: large but finite and accurate.
        let x = 1023.9;
        assert!(exp2(x).is_finite());
        assert!(rel_err(exp2(x), x.exp2()) < 1e-13);
        // Just above the flush edge.
        let x = -1021.7;
        assert!(rel_err(exp2(x), x.exp2()) < 1e-13);
        assert_eq!(pow10(400.0), f64::INFINITY);
        assert_eq!(pow10(-400.0), 0.0);
    }

    #[test]
    fn rounding_helper() {
        assert_eq!(round_half_away(0.49), 0);
        assert_eq!(round_half_away(0.5), 1);
        assert_eq!(round_half_away(-0.5), -1);
        assert_eq!(round_half_away(-0.49), 0);
        assert_eq!(round_half_away(1023.6), 1024);
        assert_eq!(round_half_away(-1022.0), -1022);
    }
}
