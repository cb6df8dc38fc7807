//! The EVO lifecycle: LEARN → FROZEN ⇄ CANARY, and back to LEARN when the workload changes.
//!
//! Role: [`Evo`] is fed one [`Window`] at a time (whatever the allocator measured while the
//! candidate it last chose was running) and answers which candidate runs the next window.
//!
//! - **LEARN**: each window is a game between the candidate that ran it and the candidate of
//!   the most recent window of a *different* candidate, scored by [`composite`]. The first
//!   `warmup_rounds × N` windows go round-robin so that every candidate is tried; after that,
//!   epsilon-greedy ([`Ratings::pick`]). LEARN ends (→ FROZEN) when the leader has stayed the
//!   same for `stable_windows` consecutive windows after warm-up ([`Reason::Stable`]) or after
//!   `learn_budget` windows ([`Reason::Budget`]).
//! - **FROZEN**: the winner runs; no Elo updates. Its first window sets the throughput
//!   baseline, later healthy windows refine it (moving average, weight `baseline_alpha`). After
//!   `canary_every` frozen windows the best-rated other candidate gets one window (→ CANARY).
//! - **CANARY**: the challenger's window is scored against the last healthy frozen window (and
//!   counted as an Elo game). If it scores above `canary_margin` for `canary_wins` canaries in
//!   a row it becomes the winner ([`Reason::CanaryCommit`]); otherwise the winner keeps
//!   running ([`Reason::CanaryWin`] while the streak is building, [`Reason::CanaryRollback`]
//!   on a loss). Either way the next window is a frozen one again.
//! - **Re-learn** (any phase → LEARN): when the size mix of a window differs from the running
//!   baseline by more than `shift_threshold` ([`shift`](crate::window::shift),
//!   [`Reason::Shift`]), or when the winner's throughput stays below `degrade ×` its baseline
//!   for `degrade_windows` consecutive frozen windows ([`Reason::Degrade`]). Ratings are
//!   pulled toward 1500 (they keep `relearn_keep` of their distance), per-candidate window
//!   memory is forgotten, and the window that triggered it becomes the first window of the new
//!   LEARN phase.
//!
//! The size-mix baseline is a moving average (weight `baseline_alpha`) of the normalised size
//! histograms of all windows since the last LEARN start, so at the freeze point it describes
//! the workload that was learned, and afterwards it follows slow drift but not jumps. With
//! `baseline_alpha = 0` both baselines stay where they started.
//!
//! Invariants:
//! - Fixed size, no allocation, no `unsafe`; [`Evo::on_window`] does `O(N)` work.
//! - Windows with `ops == 0` change nothing (they are counted in [`Evo::ignored_windows`]).
//! - The returned candidate is always `< N`; in FROZEN it is the winner, in CANARY the
//!   challenger, never the winner.
//! - With learning off ([`Evo::frozen_at`], [`Evo::set_learning`]) the answer never changes
//!   and neither do ratings, phase or history; only the window counters move.

use crate::elo::{Ratings, Rng};
use crate::window::{BUCKETS, Window, composite, normalise, tv_distance};

/// The phase of the lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Trying candidates and rating them.
    Learn,
    /// Running the winner, watching for change.
    Frozen,
    /// Running the best challenger for one window.
    Canary,
}

impl Phase {
    /// The phase's name in reports: `LEARN`, `FROZEN`, `CANARY`.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Learn => "LEARN",
            Phase::Frozen => "FROZEN",
            Phase::Canary => "CANARY",
        }
    }
}

impl core::fmt::Display for Phase {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a [`Transition`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// LEARN → LEARN: the round-robin warm-up is over; epsilon-greedy from now on.
    Warmup,
    /// LEARN → FROZEN: the leader stayed the same for `stable_windows` windows.
    Stable,
    /// LEARN → FROZEN: `learn_budget` windows were spent.
    Budget,
    /// FROZEN → CANARY: `canary_every` frozen windows passed; the challenger gets one.
    Canary,
    /// CANARY → FROZEN: the challenger won, but not yet `canary_wins` times in a row.
    CanaryWin,
    /// CANARY → FROZEN: the challenger won `canary_wins` times in a row and is the new winner.
    CanaryCommit,
    /// CANARY → FROZEN: the challenger did not win clearly; the winner stays.
    CanaryRollback,
    /// any → LEARN: the size mix moved away from the baseline.
    Shift,
    /// FROZEN → LEARN: the winner's throughput fell below `degrade ×` its baseline.
    Degrade,
}

impl Reason {
    /// The reason's name in reports (lower case, one word).
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Warmup => "warmup",
            Reason::Stable => "stable",
            Reason::Budget => "budget",
            Reason::Canary => "canary",
            Reason::CanaryWin => "canary-win",
            Reason::CanaryCommit => "canary-commit",
            Reason::CanaryRollback => "canary-rollback",
            Reason::Shift => "shift",
            Reason::Degrade => "degrade",
        }
    }
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// One change of phase (or of winner), as kept in the [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The number of the window that caused it (1 = the first non-empty window).
    pub window: u64,
    /// The phase before.
    pub from: Phase,
    /// The phase after.
    pub to: Phase,
    /// Why.
    pub reason: Reason,
    /// The candidate it concerns: the winner on a freeze, commit, win or rollback, the
    /// challenger on a canary start, the leader at the end of warm-up, and the candidate whose
    /// window triggered a re-learn.
    pub candidate: usize,
}

impl Transition {
    const EMPTY: Transition = Transition {
        window: 0,
        from: Phase::Learn,
        to: Phase::Learn,
        reason: Reason::Warmup,
        candidate: 0,
    };
}

/// How many transitions the [`History`] keeps.
pub const HISTORY_LEN: usize = 32;

/// A ring of the last [`HISTORY_LEN`] transitions.
#[derive(Clone, Debug)]
pub struct History {
    items: [Transition; HISTORY_LEN],
    next: usize,
    len: usize,
    total: u64,
}

impl History {
    const fn new() -> Self {
        History {
            items: [Transition::EMPTY; HISTORY_LEN],
            next: 0,
            len: 0,
            total: 0,
        }
    }

    fn push(&mut self, t: Transition) {
        self.items[self.next] = t;
        self.next = (self.next + 1) % HISTORY_LEN;
        self.len = (self.len + 1).min(HISTORY_LEN);
        self.total += 1;
    }

    /// How many transitions are kept (at most [`HISTORY_LEN`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no transition happened yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many transitions happened in all, including those that fell out of the ring.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The most recent transition.
    pub fn last(&self) -> Option<&Transition> {
        if self.len == 0 {
            None
        } else {
            Some(&self.items[(self.next + HISTORY_LEN - 1) % HISTORY_LEN])
        }
    }

    /// The kept transitions, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Transition> + ExactSizeIterator + '_ {
        let start = (self.next + HISTORY_LEN - self.len) % HISTORY_LEN;
        (0..self.len).map(move |i| &self.items[(start + i) % HISTORY_LEN])
    }
}

/// The tunables of [`Evo`]. Out-of-range values are clamped by [`Evo::new`] (counts to at
/// least 1, fractions to `[0, 1]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvoParams {
    /// Elo K factor (default 32).
    pub k_factor: f64,
    /// Exploration probability in LEARN after warm-up, per mille (default 100 = 10%).
    pub epsilon_permille: u32,
    /// Round-robin rounds at the start of each LEARN phase: the first
    /// `warmup_rounds × N` windows try every candidate in turn (default 2; 0 = none).
    pub warmup_rounds: u32,
    /// Freeze when the leader stayed the same for this many consecutive windows after
    /// warm-up (default 4).
    pub stable_windows: u32,
    /// Freeze after this many LEARN windows at the latest (default 40).
    pub learn_budget: u32,
    /// Frozen windows between canaries (default 8: the challenger runs 1 window in 9).
    pub canary_every: u32,
    /// A canary wins when its [`composite`] score against the last frozen window exceeds this
    /// (default 0.6).
    pub canary_margin: f64,
    /// Consecutive canary wins needed to commit the challenger (default 2).
    pub canary_wins: u32,
    /// Re-learn when [`shift`](crate::window::shift) from the size-mix baseline exceeds this
    /// (default 0.5).
    pub shift_threshold: f64,
    /// Re-learn when the winner's throughput falls below this fraction of its baseline for
    /// `degrade_windows` consecutive frozen windows (default 0.5).
    pub degrade: f64,
    /// See `degrade` (default 2).
    pub degrade_windows: u32,
    /// On re-learn each rating keeps this fraction of its distance from 1500 (default 0.5).
    pub relearn_keep: f64,
    /// Weight of the newest window in the moving-average baselines (default 0.125; 0 keeps
    /// the first value).
    pub baseline_alpha: f64,
    /// Seed of the exploration PRNG.
    pub seed: u64,
}

impl Default for EvoParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `x` clamped to `[0, 1]`, or `default` if it is NaN.
const fn unit(x: f64, default: f64) -> f64 {
    if x.is_nan() {
        default
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// `x`, or 1 if it is 0.
const fn at_least_one(x: u32) -> u32 {
    if x == 0 { 1 } else { x }
}

impl EvoParams {
    /// The defaults (what [`Default::default`] returns), usable in `const` context.
    pub const DEFAULT: EvoParams = EvoParams {
        k_factor: crate::elo::DEFAULT_K,
        epsilon_permille: 100,
        warmup_rounds: 2,
        stable_windows: 4,
        learn_budget: 40,
        canary_every: 8,
        canary_margin: 0.6,
        canary_wins: 2,
        shift_threshold: 0.5,
        degrade: 0.5,
        degrade_windows: 2,
        relearn_keep: 0.5,
        baseline_alpha: 0.125,
        seed: 0x6861_6b6d_656d, // "hakmem"
    };

    const fn sanitised(mut self) -> Self {
        let d = Self::DEFAULT;
        if !(self.k_factor.is_finite() && self.k_factor >= 0.0) {
            self.k_factor = d.k_factor;
        }
        if self.epsilon_permille > 1000 {
            self.epsilon_permille = 1000;
        }
        self.stable_windows = at_least_one(self.stable_windows);
        self.learn_budget = at_least_one(self.learn_budget);
        self.canary_every = at_least_one(self.canary_every);
        self.canary_wins = at_least_one(self.canary_wins);
        self.degrade_windows = at_least_one(self.degrade_windows);
        self.canary_margin = unit(self.canary_margin, d.canary_margin);
        self.shift_threshold = unit(self.shift_threshold, d.shift_threshold);
        self.degrade = unit(self.degrade, d.degrade);
        self.relearn_keep = unit(self.relearn_keep, d.relearn_keep);
        self.baseline_alpha = unit(self.baseline_alpha, d.baseline_alpha);
        self
    }
}

/// The lifecycle state machine over `N` candidate policies (see the module documentation).
#[derive(Clone, Debug)]
pub struct Evo<const N: usize> {
    params: EvoParams,
    ratings: Ratings<N>,
    rng: Rng,
    learning: bool,
    phase: Phase,
    /// The candidate running the window in progress (the last answer).
    current: usize,
    /// The frozen winner (meaningful in FROZEN and CANARY).
    winner: usize,

    // LEARN
    last: [Option<Window>; N],
    last_seq: [u64; N],
    learn_windows: u32,
    leader: usize,
    leader_streak: u32,

    // FROZEN / CANARY
    frozen_windows: u32,
    last_frozen: Option<Window>,
    base_tput: Option<f64>,
    degrade_streak: u32,
    canary_streak: u32,
    streak_challenger: usize,

    // size-mix baseline, all phases
    base_hist: Option<[f64; BUCKETS]>,

    // counters
    windows: u64,
    ignored: u64,
    runs: [u64; N],
    history: History,
}

impl<const N: usize> Default for Evo<N> {
    fn default() -> Self {
        Self::new(EvoParams::default())
    }
}

impl<const N: usize> Evo<N> {
    /// A learning lifecycle in LEARN; candidate 0 runs the first window. `const`, so it can
    /// initialise a `static`.
    pub const fn new(params: EvoParams) -> Self {
        let params = params.sanitised();
        Evo {
            params,
            ratings: Ratings::new(params.k_factor),
            rng: Rng::new(params.seed),
            learning: true,
            phase: Phase::Learn,
            current: 0,
            winner: 0,
            last: [None; N],
            last_seq: [0; N],
            learn_windows: 0,
            leader: 0,
            leader_streak: 0,
            frozen_windows: 0,
            last_frozen: None,
            base_tput: None,
            degrade_streak: 0,
            canary_streak: 0,
            streak_challenger: 0,
            base_hist: None,
            windows: 0,
            ignored: 0,
            runs: [0; N],
            history: History::new(),
        }
    }

    /// EVO off: always `candidate` (clamped to `N - 1`), never learning, with default
    /// parameters. [`set_learning(true)`](Self::set_learning) turns learning on from FROZEN.
    pub const fn frozen_at(candidate: usize) -> Self {
        let mut e = Self::new(EvoParams::DEFAULT);
        let c = if candidate < N { candidate } else { N - 1 };
        e.learning = false;
        e.phase = Phase::Frozen;
        e.current = c;
        e.winner = c;
        e
    }

    /// Turns learning off or on.
    ///
    /// Off pins the best candidate known (the winner in FROZEN or CANARY, the Elo leader in
    /// LEARN) in FROZEN, and [`on_window`](Self::on_window) returns it from then on. On, after
    /// off, resumes FROZEN on that candidate with fresh baselines (canaries will challenge it).
    /// Neither records a transition.
    pub fn set_learning(&mut self, on: bool) {
        if on == self.learning {
            return;
        }
        if !on {
            self.winner = self.winner();
            self.current = self.winner;
            self.phase = Phase::Frozen;
        }
        self.learning = on;
        self.reset_frozen_state();
        self.base_hist = None;
    }

    /// Whether the lifecycle is learning (false in EVO-off mode).
    pub fn is_learning(&self) -> bool {
        self.learning
    }

    /// The parameters in use (after clamping).
    pub fn params(&self) -> &EvoParams {
        &self.params
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The candidate running now: the answer of the last [`on_window`](Self::on_window).
    pub fn current(&self) -> usize {
        self.current
    }

    /// The best candidate known: the frozen winner in FROZEN and CANARY, the Elo leader in
    /// LEARN.
    pub fn winner(&self) -> usize {
        match self.phase {
            Phase::Learn if self.learning => self.ratings.leader(),
            _ => self.winner,
        }
    }

    /// The candidate a canary would run now (the best-rated one other than the winner), or
    /// `None` with a single candidate.
    pub fn challenger(&self) -> Option<usize> {
        self.ratings.best_other(self.winner())
    }

    /// The Elo ratings.
    pub fn ratings(&self) -> &Ratings<N> {
        &self.ratings
    }

    /// The last transitions.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Non-empty windows seen.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// Windows ignored because they had no operations.
    pub fn ignored_windows(&self) -> u64 {
        self.ignored
    }

    /// Non-empty windows run by candidate `i` (panics if `i >= N`).
    pub fn runs(&self, i: usize) -> u64 {
        self.runs[i]
    }

    /// Windows spent in the current LEARN phase (0 outside LEARN).
    pub fn learn_windows(&self) -> u32 {
        if self.phase == Phase::Learn {
            self.learn_windows
        } else {
            0
        }
    }

    /// Feeds the window just measured (run by [`current`](Self::current)) and returns the
    /// candidate to run during the next window.
    pub fn on_window(&mut self, w: &Window) -> usize {
        if w.ops == 0 {
            self.ignored += 1;
            return self.current;
        }
        let ran = self.current;
        self.windows += 1;
        self.runs[ran] += 1;
        if !self.learning {
            return ran;
        }

        let mix = normalise(&w.size_hist);
        if let (Some(m), Some(b)) = (&mix, &self.base_hist)
            && tv_distance(m, b) > self.params.shift_threshold
        {
            self.relearn(Reason::Shift, ran, mix);
            let next = self.learn_step(w, ran);
            return self.finish(next);
        }
        if let Some(m) = mix {
            self.base_hist = Some(match self.base_hist {
                None => m,
                Some(mut b) => {
                    let a = self.params.baseline_alpha;
                    for (x, y) in b.iter_mut().zip(m) {
                        *x += a * (y - *x);
                    }
                    b
                }
            });
        }

        let next = match self.phase {
            Phase::Learn => self.learn_step(w, ran),
            Phase::Frozen => self.frozen_step(w, ran, mix),
            Phase::Canary => self.canary_step(w, ran),
        };
        self.finish(next)
    }

    fn finish(&mut self, next: usize) -> usize {
        debug_assert!(next < N);
        self.current = next;
        next
    }

    fn record(&mut self, to: Phase, reason: Reason, candidate: usize) {
        self.history.push(Transition {
            window: self.windows,
            from: self.phase,
            to,
            reason,
            candidate,
        });
        self.phase = to;
    }

    fn warmup_len(&self) -> u64 {
        self.params.warmup_rounds as u64 * N as u64
    }

    fn learn_step(&mut self, w: &Window, ran: usize) -> usize {
        // The most recent window of another candidate is the opponent.
        let mut opponent: Option<usize> = None;
        for j in 0..N {
            if j != ran
                && self.last[j].is_some()
                && opponent.is_none_or(|o| self.last_seq[j] > self.last_seq[o])
            {
                opponent = Some(j);
            }
        }
        if let Some(j) = opponent
            && let Some(other) = &self.last[j]
        {
            let s = composite(w, other);
            self.ratings.update(ran, j, s);
        }
        self.last[ran] = Some(*w);
        self.last_seq[ran] = self.windows;
        self.learn_windows = self.learn_windows.saturating_add(1);
        let n = self.learn_windows as u64;
        let warm = self.warmup_len();

        if n >= self.params.learn_budget as u64 {
            return self.freeze(Reason::Budget);
        }
        if n < warm {
            return (ran + 1) % N;
        }
        let leader = self.ratings.leader();
        if n == warm {
            self.record(Phase::Learn, Reason::Warmup, leader);
        }
        if n == warm || leader != self.leader {
            self.leader = leader;
            self.leader_streak = 1;
        } else {
            self.leader_streak += 1;
        }
        if self.leader_streak >= self.params.stable_windows {
            return self.freeze(Reason::Stable);
        }
        self.ratings
            .pick(&mut self.rng, self.params.epsilon_permille)
    }

    fn freeze(&mut self, reason: Reason) -> usize {
        self.winner = self.ratings.leader();
        self.reset_frozen_state();
        self.record(Phase::Frozen, reason, self.winner);
        self.winner
    }

    fn reset_frozen_state(&mut self) {
        self.frozen_windows = 0;
        self.last_frozen = None;
        self.base_tput = None;
        self.degrade_streak = 0;
        self.canary_streak = 0;
    }

    fn frozen_step(&mut self, w: &Window, ran: usize, mix: Option<[f64; BUCKETS]>) -> usize {
        let tp = w.throughput();
        match self.base_tput {
            None => {
                self.base_tput = Some(tp);
                self.last_frozen = Some(*w);
            }
            Some(b) if tp < self.params.degrade * b => {
                self.degrade_streak += 1;
                if self.degrade_streak >= self.params.degrade_windows {
                    self.relearn(Reason::Degrade, ran, mix);
                    return self.learn_step(w, ran);
                }
            }
            Some(b) => {
                self.degrade_streak = 0;
                self.base_tput = Some(b + self.params.baseline_alpha * (tp - b));
                self.last_frozen = Some(*w);
            }
        }
        self.frozen_windows = self.frozen_windows.saturating_add(1);
        if self.frozen_windows >= self.params.canary_every
            && self.degrade_streak == 0
            && self.last_frozen.is_some()
            && let Some(c) = self.challenger()
        {
            self.frozen_windows = 0;
            self.record(Phase::Canary, Reason::Canary, c);
            return c;
        }
        self.winner
    }

    fn canary_step(&mut self, w: &Window, ran: usize) -> usize {
        let Some(reference) = self.last_frozen else {
            // Unreachable: a canary starts only with a frozen reference window.
            self.record(Phase::Frozen, Reason::CanaryRollback, self.winner);
            return self.winner;
        };
        let s = composite(w, &reference);
        self.ratings.update(ran, self.winner, s);
        if self.streak_challenger != ran {
            self.streak_challenger = ran;
            self.canary_streak = 0;
        }
        if s > self.params.canary_margin {
            self.canary_streak += 1;
            if self.canary_streak >= self.params.canary_wins {
                self.winner = ran;
                self.reset_frozen_state();
                self.record(Phase::Frozen, Reason::CanaryCommit, ran);
                return ran;
            }
            self.record(Phase::Frozen, Reason::CanaryWin, self.winner);
        } else {
            self.canary_streak = 0;
            self.record(Phase::Frozen, Reason::CanaryRollback, self.winner);
        }
        self.winner
    }

    /// Any phase → LEARN. The triggering window is then fed to `learn_step` by the caller.
    fn relearn(&mut self, reason: Reason, ran: usize, mix: Option<[f64; BUCKETS]>) {
        self.ratings.moderate(self.params.relearn_keep);
        self.last = [None; N];
        self.last_seq = [0; N];
        self.learn_windows = 0;
        self.leader_streak = 0;
        self.reset_frozen_state();
        if mix.is_some() {
            self.base_hist = mix;
        }
        self.record(Phase::Learn, reason, ran);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elo::INITIAL_RATING;

    /// A synthetic window: `tput` ops in one CPU-second, `faults`, `rss` and everything in
    /// size bucket `bucket`.
    fn win(tput: f64, faults: f64, rss: f64, bucket: usize) -> Window {
        let mut w = Window::new(tput as u64, 1_000_000_000, faults as u64, rss as u64);
        w.size_hist[bucket] = 1000;
        w
    }

    /// Candidate quality: (throughput, faults, rss).
    type Quality = (f64, f64, f64);

    /// Window for candidate `c` with multiplicative noise of ±`noise`.
    fn world(q: &[Quality], c: usize, rng: &mut Rng, noise: f64, bucket: usize) -> Window {
        let mut j = || 1.0 + noise * (2.0 * rng.next_f64() - 1.0);
        let (t, f, r) = q[c];
        win(t * j(), f * j(), r * j(), bucket)
    }

    /// Runs `n` windows of `q` through `evo`, returning the candidates chosen.
    fn drive<const N: usize>(
        evo: &mut Evo<N>,
        q: &[Quality],
        n: usize,
        noise: f64,
        bucket: usize,
        rng: &mut Rng,
    ) -> std::vec::Vec<usize> {
        let mut out = std::vec::Vec::new();
        let mut c = evo.current();
        for _ in 0..n {
            let w = world(q, c, rng, noise, bucket);
            c = evo.on_window(&w);
            assert!(c < N);
            out.push(c);
        }
        out
    }

    fn reasons<const N: usize>(evo: &Evo<N>) -> std::vec::Vec<Reason> {
        evo.history().iter().map(|t| t.reason).collect()
    }

    /// Candidate 2 best on all three measures.
    const BEST2: [Quality; 4] = [
        (100_000.0, 500.0, 100e6),
        (110_000.0, 480.0, 105e6),
        (150_000.0, 300.0, 80e6),
        (105_000.0, 520.0, 98e6),
    ];

    fn learned_on_2() -> (Evo<4>, Rng) {
        let mut evo: Evo<4> = Evo::default();
        let mut rng = Rng::new(99);
        let mut c = evo.current();
        while evo.phase() == Phase::Learn {
            c = evo.on_window(&world(&BEST2, c, &mut rng, 0.03, 3));
            assert!(evo.windows() <= 40);
        }
        // Stops right at the freeze: the next window is the first frozen one.
        assert_eq!(evo.history().last().unwrap().reason, Reason::Stable);
        assert_eq!(evo.winner(), 2);
        (evo, rng)
    }

    #[test]
    fn warmup_is_round_robin() {
        let mut evo: Evo<4> = Evo::default();
        let mut rng = Rng::new(1);
        let picks = drive(&mut evo, &BEST2, 7, 0.0, 3, &mut rng);
        // Candidate 0 ran first; the answers continue the round-robin.
        assert_eq!(picks, [1, 2, 3, 0, 1, 2, 3]);
        for i in 0..4 {
            assert!(evo.runs(i) >= 1);
        }
        assert_eq!(evo.phase(), Phase::Learn);
        assert!(evo.history().is_empty());
        assert_eq!(evo.learn_windows(), 7);
    }

    #[test]
    fn learns_the_best_and_freezes_on_stable() {
        let mut evo: Evo<4> = Evo::default();
        let mut rng = Rng::new(5);
        let picks = drive(&mut evo, &BEST2, 20, 0.03, 3, &mut rng);
        assert_eq!(evo.phase(), Phase::Frozen);
        assert_eq!(evo.winner(), 2);
        assert_eq!(evo.ratings().leader(), 2);
        let r = reasons(&evo);
        // Frozen at window 11, then the first canary (window 20) lost.
        assert_eq!(
            r,
            [
                Reason::Warmup,
                Reason::Stable,
                Reason::Canary,
                Reason::CanaryRollback
            ],
            "{:?}",
            evo.history()
        );
        let freeze = evo.history().iter().nth(1).unwrap();
        assert_eq!(
            (freeze.from, freeze.to, freeze.candidate),
            (Phase::Learn, Phase::Frozen, 2)
        );
        // Warm-up (8) + stable (4, counting the last warm-up window) = frozen at window 11.
        assert_eq!(freeze.window, 11);
        // Then 8 frozen windows (12..=19) of the winner, and a canary.
        assert!(picks[10..18].iter().all(|&c| c == 2), "{picks:?}");
        assert_eq!(evo.phase(), Phase::Frozen, "the canary ran window 20");
        assert_ne!(picks[18], 2, "{picks:?}");
        assert_eq!(picks[19], 2, "{picks:?}");
        assert!(evo.ratings().rating(2) > INITIAL_RATING);
    }

    #[test]
    fn freezes_on_budget_with_noisy_equal_candidates() {
        let equal = [(100_000.0, 500.0, 100e6); 4];
        // Equal candidates can still look "stable" for a few windows by chance (a harmless
        // freeze on any of them); the budget is the backstop. Make Stable unreachable to see it.
        let mut evo: Evo<4> = Evo::new(EvoParams {
            stable_windows: 1000,
            ..EvoParams::default()
        });
        let mut rng = Rng::new(11);
        let mut c = evo.current();
        let mut n = 0;
        let mut seen = [false; 4];
        while evo.phase() == Phase::Learn {
            c = evo.on_window(&world(&equal, c, &mut rng, 0.3, 3));
            seen[c] = true;
            n += 1;
            assert!(n <= 40, "must freeze within the budget");
        }
        assert_eq!(n, 40);
        assert_eq!(reasons(&evo), [Reason::Warmup, Reason::Budget]);
        assert_eq!(evo.history().last().unwrap().window, 40);
        assert_eq!(evo.winner(), evo.ratings().leader());
        assert_eq!(seen, [true; 4]);
        // The ratings stay close together: nobody is clearly better.
        let spread = evo.ratings().rating(evo.ratings().ranking()[0])
            - evo.ratings().rating(evo.ratings().ranking()[3]);
        assert!(spread < 100.0, "{spread}");

        // With the default parameters it freezes within the budget either way.
        for seed in 0..20 {
            let mut evo: Evo<4> = Evo::default();
            let mut rng = Rng::new(seed);
            drive(&mut evo, &equal, 40, 0.3, 3, &mut rng);
            let t = evo
                .history()
                .iter()
                .find(|t| t.to == Phase::Frozen)
                .unwrap();
            assert!(matches!(t.reason, Reason::Stable | Reason::Budget));
            assert!(t.window <= 40);
        }
    }

    #[test]
    fn budget_can_end_learning_during_warmup() {
        let mut evo: Evo<4> = Evo::new(EvoParams {
            learn_budget: 3,
            ..EvoParams::default()
        });
        let mut rng = Rng::new(3);
        drive(&mut evo, &BEST2, 3, 0.0, 3, &mut rng);
        assert_eq!(evo.phase(), Phase::Frozen);
        assert_eq!(reasons(&evo), [Reason::Budget]);
    }

    #[test]
    fn canary_commits_a_clearly_better_challenger() {
        let (mut evo, mut rng) = learned_on_2();
        let ch = evo.challenger().unwrap();
        assert_ne!(ch, 2);
        // The challenger becomes clearly better: 2x throughput, half the faults and RSS.
        let mut q = BEST2;
        q[ch] = (300_000.0, 150.0, 40e6);
        let before = evo.history().len();
        let mut c = evo.current();
        let mut canary_windows = 0;
        for _ in 0..40 {
            let was_canary = evo.phase() == Phase::Canary;
            c = evo.on_window(&world(&q, c, &mut rng, 0.02, 3));
            if was_canary {
                canary_windows += 1;
            }
            if evo.winner() == ch {
                break;
            }
        }
        assert_eq!(evo.winner(), ch, "{:?}", evo.history());
        assert_eq!(evo.phase(), Phase::Frozen);
        assert_eq!(canary_windows, 2);
        let r: std::vec::Vec<_> = evo
            .history()
            .iter()
            .skip(before)
            .map(|t| t.reason)
            .collect();
        assert_eq!(
            r,
            [
                Reason::Canary,
                Reason::CanaryWin,
                Reason::Canary,
                Reason::CanaryCommit
            ]
        );
        assert_eq!(evo.current(), ch);
        // The new winner keeps running; the old one is now the challenger.
        let picks = drive(&mut evo, &q, 5, 0.02, 3, &mut rng);
        assert!(picks.iter().all(|&p| p == ch), "{picks:?}");
    }

    #[test]
    fn canary_rolls_back_when_the_challenger_is_not_better() {
        let (mut evo, mut rng) = learned_on_2();
        let ratings_before = evo.ratings().clone();
        let before = evo.history().len();
        let mut picks = std::vec::Vec::new();
        let mut c = evo.current();
        for _ in 0..9 {
            c = evo.on_window(&world(&BEST2, c, &mut rng, 0.02, 3));
            picks.push(c);
        }
        // 8 frozen windows of the winner, then one canary window, then the winner again.
        let ch = ratings_before.best_other(2).unwrap();
        assert!(picks[..7].iter().all(|&p| p == 2), "{picks:?}");
        assert_eq!(picks[7], ch, "{picks:?}");
        assert_eq!(picks[8], 2, "{picks:?}");
        let r: std::vec::Vec<_> = evo
            .history()
            .iter()
            .skip(before)
            .map(|t| t.reason)
            .collect();
        assert_eq!(r, [Reason::Canary, Reason::CanaryRollback]);
        assert_eq!(evo.winner(), 2);
        assert_eq!(evo.phase(), Phase::Frozen);
        // The canary was an Elo game the challenger lost.
        assert!(evo.ratings().rating(ch) < ratings_before.rating(ch));
        assert_eq!(evo.ratings().games(ch), ratings_before.games(ch) + 1);
        // Many more rounds: still frozen on 2, canary share is 1 window in 9.
        let picks = drive(&mut evo, &BEST2, 90, 0.02, 3, &mut rng);
        assert_eq!(evo.winner(), 2);
        let canaries = picks.iter().filter(|&&p| p != 2).count();
        assert_eq!(canaries, 10, "{picks:?}");
    }

    #[test]
    fn a_single_canary_win_does_not_commit() {
        let (mut evo, mut rng) = learned_on_2();
        let ch = evo.challenger().unwrap();
        let mut good = BEST2;
        good[ch] = (300_000.0, 150.0, 40e6);
        let mut c = evo.current();
        // Clearly better during the first canary only.
        while evo.history().last().unwrap().reason != Reason::CanaryWin {
            let q = if evo.phase() == Phase::Canary {
                &good
            } else {
                &BEST2
            };
            c = evo.on_window(&world(q, c, &mut rng, 0.02, 3));
        }
        assert_eq!(evo.winner(), 2);
        // Then no better during the next one: rollback, and the streak starts over.
        while evo.history().last().unwrap().reason == Reason::CanaryWin
            || evo.phase() == Phase::Canary
        {
            c = evo.on_window(&world(&BEST2, c, &mut rng, 0.02, 3));
        }
        let last = evo.history().last().unwrap().reason;
        assert!(
            matches!(last, Reason::CanaryRollback),
            "{:?}",
            evo.history()
        );
        assert_eq!(evo.winner(), 2);
    }

    #[test]
    fn relearns_on_size_shift() {
        let (mut evo, mut rng) = learned_on_2();
        drive(&mut evo, &BEST2, 3, 0.02, 3, &mut rng);
        let before: [f64; 4] = core::array::from_fn(|i| evo.ratings().rating(i));
        let ran = evo.current();
        // Same performance, but every request is now in bucket 9 instead of 3.
        let next = evo.on_window(&world(&BEST2, ran, &mut rng, 0.0, 9));
        assert_eq!(evo.phase(), Phase::Learn);
        let t = evo.history().last().unwrap();
        assert_eq!(
            (t.from, t.to, t.reason, t.candidate),
            (Phase::Frozen, Phase::Learn, Reason::Shift, ran)
        );
        // Ratings were pulled halfway back to 1500 (no game was played in that window).
        for (i, b) in before.iter().enumerate() {
            let want = INITIAL_RATING + (b - INITIAL_RATING) * 0.5;
            assert!((evo.ratings().rating(i) - want).abs() < 1e-9);
        }
        // The triggering window was the first of the new warm-up, which continues round-robin.
        assert_eq!(next, (ran + 1) % 4);
        assert_eq!(evo.learn_windows(), 1);
        // Learning on the new workload, where candidate 0 is now best, converges again.
        let q = [
            (200_000.0, 200.0, 60e6),
            (110_000.0, 480.0, 105e6),
            (120_000.0, 400.0, 90e6),
            (105_000.0, 520.0, 98e6),
        ];
        drive(&mut evo, &q, 40, 0.03, 9, &mut rng);
        assert_eq!(evo.phase(), Phase::Frozen);
        assert_eq!(evo.winner(), 0);
        // A small wobble of the size mix does not trigger anything.
        let mut w = world(&q, 0, &mut rng, 0.0, 9);
        w.size_hist[3] = 300;
        evo.on_window(&w);
        assert_ne!(evo.phase(), Phase::Learn);
        assert_ne!(evo.history().last().unwrap().reason, Reason::Shift);
    }

    #[test]
    fn shift_during_learn_restarts_learning() {
        let mut evo: Evo<4> = Evo::default();
        let mut rng = Rng::new(8);
        drive(&mut evo, &BEST2, 5, 0.0, 3, &mut rng);
        drive(&mut evo, &BEST2, 1, 0.0, 12, &mut rng);
        assert_eq!(reasons(&evo), [Reason::Shift]);
        let t = evo.history().last().unwrap();
        assert_eq!((t.from, t.to), (Phase::Learn, Phase::Learn));
        assert_eq!(evo.learn_windows(), 1);
    }

    #[test]
    fn relearns_on_degrade_after_two_windows() {
        let (mut evo, mut rng) = learned_on_2();
        drive(&mut evo, &BEST2, 2, 0.0, 3, &mut rng);
        let mut slow = BEST2;
        slow[2].0 *= 0.3;
        // One slow window is tolerated...
        drive(&mut evo, &slow, 1, 0.0, 3, &mut rng);
        assert_eq!(evo.phase(), Phase::Frozen);
        // ... and a healthy one resets the count.
        drive(&mut evo, &BEST2, 1, 0.0, 3, &mut rng);
        drive(&mut evo, &slow, 1, 0.0, 3, &mut rng);
        assert_eq!(evo.phase(), Phase::Frozen);
        let n = evo.history().total();
        // Two in a row re-learn.
        drive(&mut evo, &slow, 1, 0.0, 3, &mut rng);
        assert_eq!(evo.phase(), Phase::Learn);
        assert_eq!(evo.history().total(), n + 1);
        let t = evo.history().last().unwrap();
        assert_eq!(
            (t.from, t.reason, t.candidate),
            (Phase::Frozen, Reason::Degrade, 2)
        );
    }

    #[test]
    fn degraded_windows_do_not_trigger_a_canary() {
        let (mut evo, mut rng) = learned_on_2();
        let mut slow = BEST2;
        slow[2].0 *= 0.3;
        // Baseline, then 6 healthy, then a slow one at the canary point.
        drive(&mut evo, &BEST2, 7, 0.0, 3, &mut rng);
        drive(&mut evo, &slow, 1, 0.0, 3, &mut rng);
        assert_eq!(evo.phase(), Phase::Frozen);
        assert_eq!(evo.current(), 2);
    }

    #[test]
    fn frozen_mode_never_changes() {
        let mut evo: Evo<4> = Evo::frozen_at(3);
        assert!(!evo.is_learning());
        assert_eq!(evo.phase(), Phase::Frozen);
        assert_eq!(evo.current(), 3);
        let mut rng = Rng::new(2);
        for i in 0..500 {
            // Wildly varying windows: shifts, degradations, a far better candidate 0.
            let w = world(&BEST2, i % 4, &mut rng, 0.9, i % 16);
            assert_eq!(evo.on_window(&w), 3);
        }
        assert_eq!(evo.phase(), Phase::Frozen);
        assert!(evo.history().is_empty());
        assert_eq!(evo.winner(), 3);
        for i in 0..4 {
            assert_eq!(evo.ratings().rating(i), INITIAL_RATING);
            assert_eq!(evo.ratings().games(i), 0);
        }
        assert_eq!(evo.windows(), 500);
        assert_eq!(evo.runs(3), 500);
        let clamped: Evo<4> = Evo::frozen_at(9);
        assert_eq!(clamped.current(), 3);
    }

    #[test]
    fn set_learning_off_pins_and_on_resumes() {
        let mut evo: Evo<4> = Evo::default();
        let mut rng = Rng::new(4);
        drive(&mut evo, &BEST2, 10, 0.02, 3, &mut rng);
        assert_eq!(evo.phase(), Phase::Learn);
        let leader = evo.ratings().leader();
        evo.set_learning(false);
        assert_eq!(
            (evo.phase(), evo.current(), evo.winner()),
            (Phase::Frozen, leader, leader)
        );
        let h = evo.history().total();
        let picks = drive(&mut evo, &BEST2, 50, 0.5, 7, &mut rng);
        assert!(picks.iter().all(|&p| p == leader));
        assert_eq!(evo.history().total(), h);
        evo.set_learning(true);
        assert!(evo.is_learning());
        assert_eq!(evo.phase(), Phase::Frozen);
        // First window after resuming re-anchors both baselines; no re-learn on the jump in mix.
        drive(&mut evo, &BEST2, 1, 0.0, 7, &mut rng);
        assert_eq!(evo.winner(), leader);
    }

    #[test]
    fn empty_windows_are_ignored() {
        let mut evo: Evo<4> = Evo::default();
        let mut rng = Rng::new(6);
        drive(&mut evo, &BEST2, 3, 0.0, 3, &mut rng);
        let c = evo.current();
        let mut empty = Window::EMPTY;
        empty.size_hist[15] = 99; // a size mix alone does not make a window count
        empty.cpu_ns = 5;
        for _ in 0..10 {
            assert_eq!(evo.on_window(&empty), c);
        }
        assert_eq!(evo.windows(), 3);
        assert_eq!(evo.ignored_windows(), 10);
        assert_eq!(evo.learn_windows(), 3);
        assert!(evo.history().is_empty());
    }

    #[test]
    fn history_ring_keeps_the_last_32() {
        let mut evo: Evo<2> = Evo::default();
        let mut rng = Rng::new(9);
        let q = [(100_000.0, 500.0, 100e6); 2];
        // Alternate the size mix every window: each window is a shift → 40 re-learns.
        drive(&mut evo, &q, 1, 0.0, 0, &mut rng);
        for i in 0..40 {
            drive(
                &mut evo,
                &q,
                1,
                0.0,
                if i % 2 == 0 { 8 } else { 0 },
                &mut rng,
            );
        }
        let h = evo.history();
        assert_eq!(h.total(), 40);
        assert_eq!(h.len(), HISTORY_LEN);
        let ws: std::vec::Vec<u64> = h.iter().map(|t| t.window).collect();
        let want: std::vec::Vec<u64> = (10..=41).collect();
        assert_eq!(ws, want);
        assert_eq!(h.last().unwrap().window, 41);
        assert_eq!(h.iter().next_back().unwrap().window, 41);
        assert!(h.iter().all(|t| t.reason == Reason::Shift));
    }

    #[test]
    fn single_candidate_works() {
        let mut evo: Evo<1> = Evo::default();
        let mut rng = Rng::new(10);
        let q = [(100_000.0, 500.0, 100e6)];
        let picks = drive(&mut evo, &q, 100, 0.1, 3, &mut rng);
        assert!(picks.iter().all(|&p| p == 0));
        assert_eq!(evo.phase(), Phase::Frozen);
        assert_eq!(evo.challenger(), None);
        assert!(evo.history().iter().all(|t| t.reason != Reason::Canary));
    }

    #[test]
    fn params_are_sanitised() {
        let evo: Evo<3> = Evo::new(EvoParams {
            k_factor: f64::NAN,
            epsilon_permille: 5000,
            stable_windows: 0,
            learn_budget: 0,
            canary_every: 0,
            canary_wins: 0,
            degrade_windows: 0,
            canary_margin: 2.0,
            shift_threshold: f64::NAN,
            degrade: -1.0,
            relearn_keep: 3.0,
            baseline_alpha: f64::NAN,
            ..EvoParams::default()
        });
        let p = evo.params();
        let d = EvoParams::default();
        assert_eq!(p.k_factor, d.k_factor);
        assert_eq!(p.epsilon_permille, 1000);
        assert_eq!(
            (
                p.stable_windows,
                p.learn_budget,
                p.canary_every,
                p.canary_wins,
                p.degrade_windows
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(
            (p.canary_margin, p.degrade, p.relearn_keep),
            (1.0, 0.0, 1.0)
        );
        assert_eq!(
            (p.shift_threshold, p.baseline_alpha),
            (d.shift_threshold, d.baseline_alpha)
        );
    }

    static EVO: hakmem_core::sync::Mutex<Evo<4>> =
        hakmem_core::sync::Mutex::new(Evo::new(EvoParams::DEFAULT));
    static OFF: Evo<4> = Evo::frozen_at(2);
    const SANE: Evo<2> = Evo::new(EvoParams {
        stable_windows: 0,
        degrade: 7.0,
        ..EvoParams::DEFAULT
    });

    #[test]
    fn const_construction() {
        let mut evo = EVO.lock();
        assert_eq!(evo.params(), &EvoParams::default());
        let mut rng = Rng::new(12);
        drive(&mut evo, &BEST2, 12, 0.0, 3, &mut rng);
        assert_eq!(evo.winner(), 2);
        assert_eq!((OFF.current(), OFF.is_learning()), (2, false));
        assert_eq!(
            (SANE.params().stable_windows, SANE.params().degrade),
            (1, 1.0)
        );
    }

    #[test]
    fn names() {
        assert_eq!(Phase::Canary.name(), "CANARY");
        assert_eq!(Reason::CanaryRollback.name(), "canary-rollback");
        assert_eq!(
            std::format!("{} {}", Phase::Learn, Reason::Degrade),
            "LEARN degrade"
        );
    }
}
