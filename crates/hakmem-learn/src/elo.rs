//! Elo ratings of a fixed set of candidate policies, a small seedable PRNG, and the
//! epsilon-greedy choice between them.
//!
//! Role: every comparison of two measurement windows is a "game" between the two candidates
//! that ran them; [`Ratings::update`] moves both ratings by the standard Elo rule, and
//! [`Ratings::pick`] chooses which candidate runs next (mostly the leader, sometimes another).
//!
//! Invariants:
//! - Fixed size (`N` candidates, `N >= 1`, checked at compile time), no allocation, no `unsafe`.
//! - [`Ratings::update`] is zero-sum: what one candidate gains the other loses.
//! - Ties in rating are broken by the lower index, so every query is deterministic.
//! - [`Rng`] never has a zero state, so it never gets stuck.

use crate::math::pow10;

/// The rating every candidate starts with.
pub const INITIAL_RATING: f64 = 1500.0;

/// The K factor used by [`Ratings::default`].
pub const DEFAULT_K: f64 = 32.0;

/// The standard Elo expectation: the expected score of a player rated `ra` against one rated
/// `rb`, `1 / (1 + 10^((rb - ra) / 400))`.
pub fn expected(ra: f64, rb: f64) -> f64 {
    1.0 / (1.0 + pow10((rb - ra) / 400.0))
}

/// Elo ratings and game counts of `N` candidates.
#[derive(Clone, Debug)]
pub struct Ratings<const N: usize> {
    rating: [f64; N],
    games: [u32; N],
    k: f64,
}

impl<const N: usize> Default for Ratings<N> {
    fn default() -> Self {
        Self::new(DEFAULT_K)
    }
}

impl<const N: usize> Ratings<N> {
    /// All candidates at [`INITIAL_RATING`] with no games; `k` is the K factor (the most a
    /// rating moves in one game).
    pub const fn new(k: f64) -> Self {
        const { assert!(N > 0, "Ratings needs at least one candidate") };
        Ratings {
            rating: [INITIAL_RATING; N],
            games: [0; N],
            k,
        }
    }

    /// The number of candidates, `N`.
    pub const fn len(&self) -> usize {
        N
    }

    /// Always false: there is at least one candidate.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The K factor.
    pub fn k(&self) -> f64 {
        self.k
    }

    /// The rating of candidate `i` (panics if `i >= N`).
    pub fn rating(&self, i: usize) -> f64 {
        self.rating[i]
    }

    /// The number of games candidate `i` has played (panics if `i >= N`).
    pub fn games(&self, i: usize) -> u32 {
        self.games[i]
    }

    /// The expected score of candidate `a` against candidate `b`.
    pub fn expected(&self, a: usize, b: usize) -> f64 {
        expected(self.rating[a], self.rating[b])
    }

    /// Records one game: `score_a` is `a`'s score against `b` in `[0, 1]` (clamped; NaN counts
    /// as a draw). Moves `a` by `K * (score_a - expected)` and `b` by the opposite, counts a
    /// game for both, and returns `a`'s change. A game of a candidate against itself is
    /// ignored (returns 0).
    pub fn update(&mut self, a: usize, b: usize, score_a: f64) -> f64 {
        if a == b {
            return 0.0;
        }
        let s = if score_a.is_nan() {
            0.5
        } else {
            score_a.clamp(0.0, 1.0)
        };
        let delta = self.k * (s - self.expected(a, b));
        self.rating[a] += delta;
        self.rating[b] -= delta;
        self.games[a] = self.games[a].saturating_add(1);
        self.games[b] = self.games[b].saturating_add(1);
        delta
    }

    /// The highest-rated candidate (the lowest index among equals).
    pub fn leader(&self) -> usize {
        self.best_except(None)
    }

    /// The highest-rated candidate other than `i`, or `None` when `N == 1`.
    pub fn best_other(&self, i: usize) -> Option<usize> {
        if N < 2 {
            None
        } else {
            Some(self.best_except(Some(i)))
        }
    }

    fn best_except(&self, skip: Option<usize>) -> usize {
        let mut best: Option<usize> = None;
        for i in 0..N {
            if Some(i) == skip {
                continue;
            }
            match best {
                Some(b) if self.rating[i] <= self.rating[b] => {}
                _ => best = Some(i),
            }
        }
        best.unwrap_or(0)
    }

    /// Candidate indices from best to worst (stable: equal ratings keep index order).
    pub fn ranking(&self) -> [usize; N] {
        let mut order: [usize; N] = core::array::from_fn(|i| i);
        // Insertion sort: N is small and this must not allocate.
        for i in 1..N {
            let mut j = i;
            while j > 0 && self.rating[order[j]] > self.rating[order[j - 1]] {
                order.swap(j, j - 1);
                j -= 1;
            }
        }
        order
    }

    /// Pulls every rating toward [`INITIAL_RATING`]: `r = 1500 + (r - 1500) * keep`, with
    /// `keep` clamped to `[0, 1]` (0 forgets everything, 1 keeps everything). Game counts stay.
    pub fn moderate(&mut self, keep: f64) {
        let keep = keep.clamp(0.0, 1.0);
        for r in &mut self.rating {
            *r = INITIAL_RATING + (*r - INITIAL_RATING) * keep;
        }
    }

    /// Epsilon-greedy choice: with probability `epsilon_permille / 1000` (and `N > 1`) a
    /// uniformly random candidate other than the leader (explore), else the leader (exploit).
    pub fn pick(&self, rng: &mut Rng, epsilon_permille: u32) -> usize {
        let leader = self.leader();
        if N > 1 && rng.chance(epsilon_permille) {
            let r = rng.below(N - 1);
            if r >= leader { r + 1 } else { r }
        } else {
            leader
        }
    }
}

/// xorshift64* pseudo-random numbers: tiny, fast, seedable, and good enough for exploration.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded from `seed` (any value, 0 included; the seed is scrambled with
    /// splitmix64 so that nearby seeds give unrelated streams).
    pub const fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng {
            state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `[0, n)` (0 when `n == 0`), by multiply-shift (bias below `n / 2^64`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// True with probability `permille / 1000` (always for 1000 and up, never for 0).
    pub fn chance(&mut self, permille: u32) -> bool {
        (self.below(1000) as u32) < permille
    }

    /// A number in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_equal_is_half() {
        assert_eq!(expected(1500.0, 1500.0), 0.5);
        assert_eq!(expected(2100.0, 2100.0), 0.5);
        let r: Ratings<3> = Ratings::default();
        assert_eq!(r.expected(0, 2), 0.5);
    }

    #[test]
    fn expected_known_values() {
        // 1 / (1 + 10^(-0.5)) = 0.759746926647958...
        let e = expected(1600.0, 1400.0);
        assert!((e - 0.759_746_926_647_958).abs() < 1e-12, "{e}");
        assert!((expected(1400.0, 1600.0) - (1.0 - e)).abs() < 1e-12);
        // 400 points: 10:1 odds.
        assert!((expected(1900.0, 1500.0) - 10.0 / 11.0).abs() < 1e-12);
    }

    #[test]
    fn update_is_zero_sum_and_standard() {
        let mut r: Ratings<2> = Ratings::new(32.0);
        let d = r.update(0, 1, 1.0);
        assert_eq!(d, 16.0);
        assert_eq!(r.rating(0), 1516.0);
        assert_eq!(r.rating(1), 1484.0);
        assert_eq!((r.games(0), r.games(1)), (1, 1));
        // Many games with arbitrary scores: the total stays 3000.
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let a = rng.below(2);
            r.update(a, 1 - a, rng.next_f64());
        }
        assert!((r.rating(0) + r.rating(1) - 3000.0).abs() < 1e-9);
        assert_eq!(r.games(0), 1001);
    }

    #[test]
    fn update_known_example() {
        // 1600 vs 1400, K = 32, the favourite loses: 32 * (0 - 0.7597) = -24.31.
        let mut r: Ratings<2> = Ratings::new(32.0);
        r.rating = [1600.0, 1400.0];
        let d = r.update(0, 1, 0.0);
        assert!((d + 32.0 * 0.759_746_926_647_958).abs() < 1e-9, "{d}");
        assert!((r.rating(0) - 1_575.688_098_347_265).abs() < 1e-9);
        assert!((r.rating(1) - 1_424.311_901_652_735).abs() < 1e-9);
    }

    #[test]
    fn update_edge_cases() {
        let mut r: Ratings<3> = Ratings::default();
        assert_eq!(r.update(1, 1, 1.0), 0.0);
        assert_eq!(r.games(1), 0);
        assert_eq!(r.update(0, 1, f64::NAN), 0.0); // a draw between equals
        assert_eq!(r.update(0, 2, 7.0), 16.0); // clamped to 1
        let e = r.expected(2, 1);
        let d = r.update(2, 1, -3.0); // clamped to 0
        assert!((d + 32.0 * e).abs() < 1e-12, "{d}");
    }

    #[test]
    fn leader_ranking_and_best_other() {
        let mut r: Ratings<4> = Ratings::default();
        assert_eq!(r.leader(), 0, "ties go to the lowest index");
        assert_eq!(r.best_other(0), Some(1));
        assert_eq!(r.ranking(), [0, 1, 2, 3]);
        r.rating = [1500.0, 1520.0, 1560.0, 1520.0];
        assert_eq!(r.leader(), 2);
        assert_eq!(r.best_other(2), Some(1));
        assert_eq!(r.best_other(1), Some(2));
        assert_eq!(r.ranking(), [2, 1, 3, 0]);
        let one: Ratings<1> = Ratings::default();
        assert_eq!(one.leader(), 0);
        assert_eq!(one.best_other(0), None);
        assert_eq!(one.ranking(), [0]);
        assert_eq!(one.len(), 1);
        assert!(!one.is_empty());
    }

    #[test]
    fn moderate_pulls_halfway() {
        let mut r: Ratings<3> = Ratings {
            rating: [1700.0, 1300.0, 1500.0],
            games: [5, 5, 0],
            k: DEFAULT_K,
        };
        r.moderate(0.5);
        assert_eq!(r.rating, [1600.0, 1400.0, 1500.0]);
        assert_eq!(r.games(0), 5);
        r.moderate(0.0);
        assert_eq!(r.rating, [1500.0; 3]);
    }

    #[test]
    fn pick_epsilon_greedy() {
        let mut r: Ratings<4> = Ratings::default();
        r.rating[3] = 1600.0;
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            assert_eq!(r.pick(&mut rng, 0), 3, "pure exploitation");
        }
        let mut counts = [0u32; 4];
        for _ in 0..1000 {
            counts[r.pick(&mut rng, 1000)] += 1;
        }
        assert_eq!(counts[3], 0, "pure exploration never picks the leader");
        assert!(counts[..3].iter().all(|&c| c > 250), "{counts:?}");
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[r.pick(&mut rng, 100)] += 1;
        }
        let explored = 10_000 - counts[3];
        assert!((800..1200).contains(&explored), "{counts:?}");
        let one: Ratings<1> = Ratings::default();
        assert_eq!(one.pick(&mut rng, 1000), 0);
    }

    #[test]
    fn rng_basics() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let mut c = Rng::new(43);
        let xs: [u64; 8] = core::array::from_fn(|_| a.next_u64());
        let ys: [u64; 8] = core::array::from_fn(|_| b.next_u64());
        let zs: [u64; 8] = core::array::from_fn(|_| c.next_u64());
        assert_eq!(xs, ys, "deterministic");
        assert_ne!(xs, zs, "seed matters");
        let mut z = Rng::new(0);
        assert_ne!(z.next_u64(), 0);
        assert_eq!(z.below(0), 0);
        assert_eq!(z.below(1), 0);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let v = z.below(10);
            counts[v] += 1;
        }
        assert!(
            counts.iter().all(|&n| (9_000..11_000).contains(&n)),
            "{counts:?}"
        );
        for _ in 0..1000 {
            assert!(!z.chance(0));
            assert!(z.chance(1000));
            assert!(z.chance(5000));
            let f = z.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        let hits = (0..100_000).filter(|_| z.chance(250)).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
    }
}
