//! One measurement window and the pairwise scores computed from two of them.
//!
//! Role: a [`Window`] is what the allocator measured while one candidate policy ran for a
//! while (operations, CPU time, page faults, resident memory, and the mix of request sizes).
//! [`composite`] turns two windows into one score for the Elo update, and [`shift`] says how
//! far the size mix moved, which is what triggers re-learning.
//!
//! Invariants:
//! - Every function is pure, allocation-free and constant-time (16 histogram buckets at most).
//! - [`composite`] is in `[0, 1]`, equals `0.5` for equal windows, and
//!   `composite(a, b) + composite(b, a) == 1` (up to rounding).
//! - [`shift`] is in `[0, 1]` and is `0` when either histogram is empty.

/// Number of size buckets in a [`Window::size_hist`] (and in the site table).
pub const BUCKETS: usize = 16;

/// log2 of the upper bound of bucket 0: sizes below `1 << (LOW_SHIFT + 1)` (128 KiB) land there.
const LOW_SHIFT: u32 = 16;

/// Weight of the throughput component of [`composite`].
pub const W_THROUGHPUT: f64 = 0.4;
/// Weight of the page-faults-per-operation component of [`composite`].
pub const W_FAULTS: f64 = 0.3;
/// Weight of the resident-memory component of [`composite`].
pub const W_RSS: f64 = 0.3;

/// The size bucket of a request of `size` bytes.
///
/// Bucket `i` holds sizes in `[2^(i+16), 2^(i+17))`, except that bucket 0 also takes every
/// size below 64 KiB (so bucket 0 is "below 128 KiB") and bucket 15 every size from 2 GiB up.
pub const fn size_bucket(size: usize) -> usize {
    if size < (1usize << (LOW_SHIFT + 1)) {
        return 0;
    }
    let b = (size.ilog2() - LOW_SHIFT) as usize;
    if b < BUCKETS { b } else { BUCKETS - 1 }
}

/// What one candidate did during one measurement window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Allocator operations (malloc + free, or whatever the caller counts) in the window.
    pub ops: u64,
    /// CPU time spent in the window, in nanoseconds.
    pub cpu_ns: u64,
    /// Page faults (minor + major) taken in the window.
    pub faults: u64,
    /// Resident set size at the end of the window, in bytes.
    pub rss_bytes: u64,
    /// Requests by size bucket ([`size_bucket`]).
    pub size_hist: [u32; BUCKETS],
}

impl Window {
    /// A window in which nothing happened.
    pub const EMPTY: Window = Window {
        ops: 0,
        cpu_ns: 0,
        faults: 0,
        rss_bytes: 0,
        size_hist: [0; BUCKETS],
    };

    /// A window with the given counters and an empty size histogram.
    pub const fn new(ops: u64, cpu_ns: u64, faults: u64, rss_bytes: u64) -> Window {
        Window {
            ops,
            cpu_ns,
            faults,
            rss_bytes,
            size_hist: [0; BUCKETS],
        }
    }

    /// Counts one request of `size` bytes in the size histogram (saturating).
    pub fn record_size(&mut self, size: usize) {
        let b = &mut self.size_hist[size_bucket(size)];
        *b = b.saturating_add(1);
    }

    /// Operations per CPU-second (a CPU time of 0 counts as 1 ns).
    pub fn throughput(&self) -> f64 {
        self.ops as f64 * 1e9 / self.cpu_ns.max(1) as f64
    }

    /// Page faults per operation (0 when there were no operations).
    pub fn faults_per_op(&self) -> f64 {
        if self.ops == 0 {
            0.0
        } else {
            self.faults as f64 / self.ops as f64
        }
    }
}

/// The share of `x` in `x + y` (higher is better for `x`); `0.5` when both are zero.
///
/// Inputs must be non-negative and finite.
fn pair(x: f64, y: f64) -> f64 {
    let s = x + y;
    if s > 0.0 { x / s } else { 0.5 }
}

/// The score in `[0, 1]` of window `a` against window `b`; above `0.5` means `a` did better.
///
/// `W_THROUGHPUT` (40%) of it is throughput (operations per CPU-second, higher is better),
/// `W_FAULTS` (30%) page faults per operation (lower is better), `W_RSS` (30%) resident memory
/// (lower is better). Each component is the smooth pairwise share `x / (x + y)` of the better
/// direction, `0.5` when both sides are zero.
pub fn composite(a: &Window, b: &Window) -> f64 {
    let t = pair(a.throughput(), b.throughput());
    let f = pair(b.faults_per_op(), a.faults_per_op());
    let r = pair(b.rss_bytes as f64, a.rss_bytes as f64);
    (W_THROUGHPUT * t + W_FAULTS * f + W_RSS * r).clamp(0.0, 1.0)
}

/// A histogram scaled to fractions that sum to 1, or `None` if it is empty.
pub fn normalise(h: &[u32; BUCKETS]) -> Option<[f64; BUCKETS]> {
    let total: u64 = h.iter().map(|&c| c as u64).sum();
    if total == 0 {
        return None;
    }
    let t = total as f64;
    let mut out = [0.0; BUCKETS];
    for (o, &c) in out.iter_mut().zip(h) {
        *o = c as f64 / t;
    }
    Some(out)
}

/// Total-variation distance of two distributions given as fractions: `½ Σ |a_i - b_i|`,
/// clamped to `[0, 1]`.
pub fn tv_distance(a: &[f64; BUCKETS], b: &[f64; BUCKETS]) -> f64 {
    let s: f64 = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum();
    (0.5 * s).clamp(0.0, 1.0)
}

/// Total-variation distance of the two size histograms after normalisation, in `[0, 1]`:
/// 0 for the same size mix, 1 for disjoint ones, and 0 if either histogram is empty.
pub fn shift(a: &[u32; BUCKETS], b: &[u32; BUCKETS]) -> f64 {
    match (normalise(a), normalise(b)) {
        (Some(x), Some(y)) => tv_distance(&x, &y),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;

    fn w(ops: u64, cpu_ns: u64, faults: u64, rss: u64) -> Window {
        Window::new(ops, cpu_ns, faults, rss)
    }

    #[test]
    fn buckets() {
        assert_eq!(size_bucket(0), 0);
        assert_eq!(size_bucket(1), 0);
        assert_eq!(size_bucket(64 * KIB), 0);
        assert_eq!(size_bucket(128 * KIB - 1), 0);
        assert_eq!(size_bucket(128 * KIB), 1);
        assert_eq!(size_bucket(256 * KIB - 1), 1);
        assert_eq!(size_bucket(256 * KIB), 2);
        assert_eq!(size_bucket(MIB), 4);
        assert_eq!(size_bucket(2 * MIB - 1), 4);
        assert_eq!(size_bucket(2 * MIB), 5);
        assert_eq!(size_bucket(1 << 31), 15);
        assert_eq!(size_bucket(1 << 32), 15);
        assert_eq!(size_bucket(usize::MAX), 15);
        // Monotone.
        let mut prev = 0;
        for s in (0..40).map(|k| 1usize << k) {
            let b = size_bucket(s);
            assert!(b >= prev && b < BUCKETS);
            prev = b;
        }
    }

    #[test]
    fn record_size_saturates() {
        let mut x = Window::EMPTY;
        x.record_size(3 * MIB);
        assert_eq!(x.size_hist[5], 1);
        x.size_hist[5] = u32::MAX;
        x.record_size(3 * MIB);
        assert_eq!(x.size_hist[5], u32::MAX);
    }

    #[test]
    fn derived_rates() {
        let a = w(1000, 1_000_000, 50, 0);
        assert_eq!(a.throughput(), 1e6);
        assert_eq!(a.faults_per_op(), 0.05);
        assert_eq!(Window::EMPTY.faults_per_op(), 0.0);
        assert_eq!(w(5, 0, 0, 0).throughput(), 5e9);
    }

    #[test]
    fn composite_equal_is_half() {
        let a = w(1000, 1_000_000, 10, 1 << 20);
        assert_eq!(composite(&a, &a), 0.5);
        assert_eq!(composite(&Window::EMPTY, &Window::EMPTY), 0.5);
        let z = w(1000, 1_000_000, 0, 0);
        assert_eq!(composite(&z, &z), 0.5);
    }

    #[test]
    fn composite_strictly_better_wins() {
        let a = w(2000, 1_000_000, 10, 1 << 20);
        let b = w(1000, 1_000_000, 10, 2 << 20);
        let s = composite(&a, &b);
        assert!(s > 0.5, "{s}");
        assert!((s + composite(&b, &a) - 1.0).abs() < 1e-12);
        // All three components are exactly 2:1 here.
        assert!((s - 2.0 / 3.0).abs() < 1e-12, "{s}");
    }

    #[test]
    fn composite_only_faults_better() {
        let a = w(1000, 1_000_000, 5, 1 << 20);
        let b = w(1000, 1_000_000, 10, 1 << 20);
        let s = composite(&a, &b);
        assert!(s > 0.5 && s < 0.65, "{s}");
        assert!((s - (0.5 * 0.7 + 0.3 * 2.0 / 3.0)).abs() < 1e-12);
        // Even with no faults at all, the faults component alone reaches at most 0.65.
        let z = w(1000, 1_000_000, 0, 1 << 20);
        assert!((composite(&z, &b) - 0.65).abs() < 1e-12);
    }

    #[test]
    fn composite_weights() {
        let base = w(1000, 1_000_000, 10, 1 << 20);
        // Only throughput better, by far: approaches 0.5 + 0.4 * 0.5 = 0.7.
        let fast = w(1_000_000_000, 1_000_000, 10_000_000, 1 << 20);
        let s = composite(&fast, &base);
        assert!(s > 0.69 && s < 0.7, "{s}");
        // Only RSS better, by far: approaches 0.65.
        let small = w(1000, 1_000_000, 10, 1);
        let s = composite(&small, &base);
        assert!(s > 0.649 && s < 0.65, "{s}");
        // Zero faults vs some faults: the faults component is 1.
        let nof = w(1000, 1_000_000, 0, 1 << 20);
        assert!((composite(&nof, &base) - 0.65).abs() < 1e-12);
        // Same throughput expressed with different op/cpu scales is equal.
        let scaled = w(2000, 2_000_000, 20, 1 << 20);
        assert!((composite(&scaled, &base) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn composite_in_range() {
        let xs = [
            Window::EMPTY,
            w(1, 1, 0, 0),
            w(u64::MAX, 1, u64::MAX, u64::MAX),
            w(0, u64::MAX, u64::MAX, 0),
            w(1000, 0, 3, 7),
        ];
        for a in &xs {
            for b in &xs {
                let s = composite(a, b);
                assert!((0.0..=1.0).contains(&s), "{a:?} {b:?} {s}");
            }
        }
    }

    #[test]
    fn shift_distance() {
        let mut a = [0u32; BUCKETS];
        let mut b = [0u32; BUCKETS];
        assert_eq!(shift(&a, &b), 0.0);
        a[0] = 10;
        assert_eq!(shift(&a, &b), 0.0, "b empty");
        assert_eq!(shift(&b, &a), 0.0, "a empty");
        b[0] = 3;
        assert_eq!(shift(&a, &b), 0.0, "same mix, different totals");
        b[0] = 0;
        b[5] = 7;
        assert_eq!(shift(&a, &b), 1.0, "disjoint");
        b[0] = 7;
        assert!((shift(&a, &b) - 0.5).abs() < 1e-12, "half moved");
        a = [1; BUCKETS];
        b = [1; BUCKETS];
        b[0] = 17; // 17/32 vs 1/16 in bucket 0
        let want = 17.0 / 32.0 - 1.0 / 16.0;
        assert!((shift(&a, &b) - want).abs() < 1e-12);
        assert!((shift(&a, &b) - shift(&b, &a)).abs() < 1e-15, "symmetric");
        let full = [u32::MAX; BUCKETS];
        assert!(shift(&full, &full).abs() < 1e-15);
    }

    #[test]
    fn normalise_sums_to_one() {
        let mut h = [0u32; BUCKETS];
        assert!(normalise(&h).is_none());
        h[1] = 1;
        h[7] = 3;
        let f = normalise(&h).unwrap();
        assert_eq!(f[1], 0.25);
        assert_eq!(f[7], 0.75);
        assert!((f.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }
}
