//! Call-site profiling: a lock-free, fixed-capacity table of per-site counters, and the site
//! rules derived from it.
//!
//! Role: the allocator samples some large allocations and records, per call site (a return
//! address), how many blocks and bytes it asked for, of which sizes, how long they lived, and
//! whether a freed block was soon replaced by one of the same size. [`SiteTable::derive_rules`]
//! turns that into the policy's per-site rules (`hakmem_core::policy::SiteRule`):
//! [`SiteAction::Direct`] for sites whose blocks live long (they bypass the cache, so they do
//! not occupy its budget).
//!
//! Invariants:
//! - No allocation, no lock, no `unsafe`: keys are atomic words claimed by compare-and-swap
//!   (open addressing, linear probing), counters are relaxed atomic adds. Any number of
//!   threads may record at once; no count is lost.
//! - A key goes from 0 (empty) to a site address once and never changes again, so a site has
//!   exactly one slot, and a lookup may stop at the first empty slot of its probe sequence.
//! - When the table is full (or the site is 0) the record goes to one shared overflow slot
//!   ([`SiteTable::overflow`]) and the call returns `None`.
//! - A snapshot ([`SiteStats`]) reads each counter once with `Relaxed`: counters are each
//!   exact, but a snapshot taken while others record may mix before and after (e.g. a free
//!   counted whose allocation is not yet).
//! - Atomics come from `hakmem_core::sync`, so the table builds under `cfg(loom)` as well
//!   (where [`SiteTable::new`] is not `const`).

use crate::window::{BUCKETS, size_bucket};
pub use hakmem_core::policy::{SiteAction, SiteRule};
use hakmem_core::sync::{AtomicU64, AtomicUsize, Ordering};

const RELAXED: Ordering = Ordering::Relaxed;

/// The counters of one site.
struct Slot {
    allocs: AtomicU64,
    bytes: AtomicU64,
    frees: AtomicU64,
    lifetime_ms_sum: AtomicU64,
    cross_thread_frees: AtomicU64,
    reused: AtomicU64,
    /// Frees not yet followed by an allocation of the same size bucket: `(bucket + 1) << 32 |
    /// count`, 0 for none. Only the bucket of the most recent free is tracked.
    pending: AtomicU64,
    hist: [AtomicU64; BUCKETS],
}

impl Slot {
    #[cfg(not(loom))]
    const fn new() -> Slot {
        Slot {
            allocs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            lifetime_ms_sum: AtomicU64::new(0),
            cross_thread_frees: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            hist: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }

    #[cfg(loom)]
    fn new() -> Slot {
        Slot {
            allocs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            lifetime_ms_sum: AtomicU64::new(0),
            cross_thread_frees: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            hist: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn alloc(&self, size: usize) {
        let b = size_bucket(size);
        self.allocs.fetch_add(1, RELAXED);
        self.bytes.fetch_add(size as u64, RELAXED);
        self.hist[b].fetch_add(1, RELAXED);
        // Does this allocation replace a recently freed block of the same size bucket?
        let tag = (b as u64 + 1) << 32;
        let matches = |p: u64| p & !0xffff_ffff == tag && p as u32 > 0;
        if matches(self.pending.load(RELAXED))
            && self
                .pending
                .fetch_update(RELAXED, RELAXED, |p| matches(p).then(|| p - 1))
                .is_ok()
        {
            self.reused.fetch_add(1, RELAXED);
        }
    }

    fn free(&self, size: usize, lifetime_ms: u64, cross_thread: bool) {
        let b = size_bucket(size);
        self.frees.fetch_add(1, RELAXED);
        self.lifetime_ms_sum.fetch_add(lifetime_ms, RELAXED);
        if cross_thread {
            self.cross_thread_frees.fetch_add(1, RELAXED);
        }
        let tag = (b as u64 + 1) << 32;
        let _ = self.pending.fetch_update(RELAXED, RELAXED, |p| {
            Some(if p & !0xffff_ffff == tag {
                tag | (p as u32).saturating_add(1) as u64
            } else {
                tag | 1
            })
        });
    }

    fn snapshot(&self) -> SiteStats {
        SiteStats {
            allocs: self.allocs.load(RELAXED),
            bytes: self.bytes.load(RELAXED),
            frees: self.frees.load(RELAXED),
            lifetime_ms_sum: self.lifetime_ms_sum.load(RELAXED),
            cross_thread_frees: self.cross_thread_frees.load(RELAXED),
            reused: self.reused.load(RELAXED),
            size_hist: core::array::from_fn(|i| self.hist[i].load(RELAXED)),
        }
    }
}

/// A snapshot of one site's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Allocations recorded.
    pub allocs: u64,
    /// Bytes requested by those allocations.
    pub bytes: u64,
    /// Frees recorded.
    pub frees: u64,
    /// Sum of the lifetimes of the freed blocks, in milliseconds.
    pub lifetime_ms_sum: u64,
    /// Frees done by a thread other than the allocating one.
    pub cross_thread_frees: u64,
    /// Allocations that followed a free of the same size bucket from this site (a freed block
    /// replaced by a similar one: what a cache would have served).
    pub reused: u64,
    /// Allocations by size bucket ([`size_bucket`]).
    pub size_hist: [u64; BUCKETS],
}

impl SiteStats {
    /// Blocks allocated and not (yet) freed.
    pub fn live(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
    }

    /// Mean lifetime of the freed blocks in milliseconds, or `None` if none was freed.
    pub fn mean_lifetime_ms(&self) -> Option<u64> {
        self.lifetime_ms_sum.checked_div(self.frees)
    }

    /// Allocations of at least `size` bytes, at bucket granularity (buckets from
    /// `size_bucket(size)` up).
    pub fn allocs_at_least(&self, size: usize) -> u64 {
        self.size_hist[size_bucket(size)..].iter().sum()
    }

    /// The action the rules of `p` give this site (see [`RuleParams`]).
    pub fn action(&self, p: &RuleParams) -> SiteAction {
        if self.allocs_at_least(p.large_min) < p.min_allocs.max(1) {
            return SiteAction::Default;
        }
        // Long-lived: most blocks never freed, or freed blocks lived long on average.
        let live = self.live() as u128;
        if live * 1000 > self.allocs as u128 * p.live_permille as u128 {
            return SiteAction::Direct;
        }
        let Some(mean) = self.mean_lifetime_ms() else {
            return SiteAction::Direct;
        };
        if mean >= p.long_lifetime_ms {
            return SiteAction::Direct;
        }
        SiteAction::Default
    }
}

/// Thresholds of the site rules.
///
/// A site gets a rule only with at least `min_allocs` allocations of `large_min` bytes or
/// more. Then it is [`SiteAction::Direct`] if more than `live_permille`‰ of its blocks are
/// still live, or none was freed, or its freed blocks lived `long_lifetime_ms` or more on
/// average; else no rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleParams {
    /// Minimum number of large allocations before a site gets a rule (default 8).
    pub min_allocs: u64,
    /// "Large" means at least this many bytes, at [`size_bucket`] granularity (default 1 MiB).
    pub large_min: usize,
    /// Mean lifetime from which blocks count as long-lived, in ms (default 1000).
    pub long_lifetime_ms: u64,
    /// Share of allocations, in ‰, still live above which the site is `Direct` (default 500).
    pub live_permille: u64,
}

impl Default for RuleParams {
    fn default() -> Self {
        RuleParams {
            min_allocs: 8,
            large_min: 1 << 20,
            long_lifetime_ms: 1000,
            live_permille: 500,
        }
    }
}

/// A lock-free table of up to `CAP` call sites and their counters, plus one overflow slot.
pub struct SiteTable<const CAP: usize> {
    keys: [AtomicUsize; CAP],
    slots: [Slot; CAP],
    other: Slot,
}

impl<const CAP: usize> Default for SiteTable<CAP> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CAP: usize> SiteTable<CAP> {
    /// An empty table (usable as a `static` initialiser).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        SiteTable {
            keys: [const { AtomicUsize::new(0) }; CAP],
            slots: [const { Slot::new() }; CAP],
            other: Slot::new(),
        }
    }

    /// An empty table.
    #[cfg(loom)]
    pub fn new() -> Self {
        SiteTable {
            keys: core::array::from_fn(|_| AtomicUsize::new(0)),
            slots: core::array::from_fn(|_| Slot::new()),
            other: Slot::new(),
        }
    }

    /// The capacity, `CAP`.
    pub const fn capacity(&self) -> usize {
        CAP
    }

    /// The first slot of `site`'s probe sequence (Fibonacci hashing, then multiply-shift onto
    /// `0..CAP`; the multiply spreads aligned addresses over the high bits).
    fn home(site: usize) -> usize {
        let h = (site as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h as u128 * CAP as u128) >> 64) as usize
    }

    /// The slot of `site`, claiming an empty one if `insert`; `None` if the site is 0, absent
    /// (lookup) or the table is full (insert).
    fn find(&self, site: usize, insert: bool) -> Option<usize> {
        if site == 0 {
            return None;
        }
        let mut i = Self::home(site);
        for _ in 0..CAP {
            let k = self.keys[i].load(Ordering::Acquire);
            if k == site {
                return Some(i);
            }
            if k == 0 {
                if !insert {
                    // Keys are never removed: the site would be here or earlier.
                    return None;
                }
                match self.keys[i].compare_exchange(0, site, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Some(i),
                    Err(k) if k == site => return Some(i),
                    Err(_) => {}
                }
            }
            i += 1;
            if i == CAP {
                i = 0;
            }
        }
        None
    }

    fn slot(&self, idx: Option<usize>) -> &Slot {
        match idx {
            Some(i) => &self.slots[i],
            None => &self.other,
        }
    }

    /// Records an allocation of `size` bytes from `site`. Returns the site's slot index, or
    /// `None` if it was counted in the overflow slot (table full, or `site == 0`).
    pub fn record_alloc(&self, site: usize, size: usize) -> Option<usize> {
        let idx = self.find(site, true);
        self.slot(idx).alloc(size);
        idx
    }

    /// Records the free of a block of `size` bytes allocated from `site`, which lived
    /// `lifetime_ms` milliseconds, freed by another thread than the allocating one if
    /// `cross_thread`. A site never recorded by [`record_alloc`](Self::record_alloc) is
    /// counted in the overflow slot (and `None` returned), as is one that overflowed there.
    pub fn record_free(
        &self,
        site: usize,
        size: usize,
        lifetime_ms: u64,
        cross_thread: bool,
    ) -> Option<usize> {
        let idx = self.find(site, false);
        self.slot(idx).free(size, lifetime_ms, cross_thread);
        idx
    }

    /// A snapshot of `site`'s counters, or `None` if it has no slot.
    pub fn get(&self, site: usize) -> Option<SiteStats> {
        self.find(site, false).map(|i| self.slots[i].snapshot())
    }

    /// A snapshot of the overflow slot: everything recorded for sites that found no slot.
    pub fn overflow(&self) -> SiteStats {
        self.other.snapshot()
    }

    /// The number of sites with a slot.
    pub fn len(&self) -> usize {
        self.keys
            .iter()
            .filter(|k| k.load(Ordering::Acquire) != 0)
            .count()
    }

    /// True if no site has a slot yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every site with a slot and a snapshot of its counters, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, SiteStats)> + '_ {
        self.keys.iter().zip(&self.slots).filter_map(|(k, s)| {
            let site = k.load(Ordering::Acquire);
            (site != 0).then(|| (site, s.snapshot()))
        })
    }

    /// Calls `f` with every site with a slot and a snapshot of its counters, in slot order.
    pub fn for_each(&self, mut f: impl FnMut(usize, &SiteStats)) {
        for (site, stats) in self.iter() {
            f(site, &stats);
        }
    }

    /// Writes a rule for each site whose action under `p` is not [`SiteAction::Default`] into
    /// `out`, in slot order, and returns how many it wrote (at most `out.len()`; sites beyond
    /// that are left out).
    pub fn derive_rules(&self, p: &RuleParams, out: &mut [SiteRule]) -> usize {
        let mut n = 0;
        for (site, stats) in self.iter() {
            if n == out.len() {
                break;
            }
            let action = stats.action(p);
            if action != SiteAction::Default {
                out[n] = SiteRule { site, action };
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const MIB: usize = 1 << 20;

    static GLOBAL: SiteTable<16> = SiteTable::new();

    #[test]
    fn static_table_records() {
        assert_eq!(
            GLOBAL.record_alloc(0x4000, 3 * MIB),
            GLOBAL.record_alloc(0x4000, MIB)
        );
        let s = GLOBAL.get(0x4000).unwrap();
        assert_eq!((s.allocs, s.bytes), (2, 4 * MIB as u64));
        assert_eq!(s.size_hist[size_bucket(3 * MIB)], 1);
        assert_eq!(s.size_hist[size_bucket(MIB)], 1);
        assert_eq!(GLOBAL.capacity(), 16);
    }

    #[test]
    fn records_and_snapshots() {
        let t: SiteTable<8> = SiteTable::new();
        assert!(t.is_empty());
        assert!(t.get(0x1234).is_none());
        let i = t.record_alloc(0x1234, 2 * MIB).unwrap();
        assert_eq!(t.record_alloc(0x1234, 2 * MIB), Some(i));
        assert_eq!(t.record_free(0x1234, 2 * MIB, 30, true), Some(i));
        assert_eq!(t.record_free(0x1234, 2 * MIB, 50, false), Some(i));
        let s = t.get(0x1234).unwrap();
        assert_eq!(s.allocs, 2);
        assert_eq!(s.frees, 2);
        assert_eq!(s.lifetime_ms_sum, 80);
        assert_eq!(s.mean_lifetime_ms(), Some(40));
        assert_eq!(s.cross_thread_frees, 1);
        assert_eq!(s.live(), 0);
        assert_eq!(s.allocs_at_least(MIB), 2);
        assert_eq!(s.allocs_at_least(4 * MIB), 0);
        assert_eq!(t.len(), 1);
        // A free for a site never allocated from goes to overflow.
        assert_eq!(t.record_free(0x9999, MIB, 1, false), None);
        assert_eq!(t.overflow().frees, 1);
        assert_eq!(t.len(), 1);
        // Site 0 is the empty key: overflow.
        assert_eq!(t.record_alloc(0, MIB), None);
        assert_eq!(t.overflow().allocs, 1);
        assert!(t.get(0).is_none());
    }

    #[test]
    fn reuse_tracking() {
        let t: SiteTable<4> = SiteTable::new();
        let s = 0x10;
        // free then alloc of the same size bucket: reuse.
        t.record_alloc(s, 3 * MIB);
        t.record_free(s, 3 * MIB, 1, false);
        t.record_alloc(s, 3 * MIB + 5);
        assert_eq!(t.get(s).unwrap().reused, 1);
        // A different size bucket is not reuse.
        t.record_free(s, 3 * MIB, 1, false);
        t.record_alloc(s, 20 * MIB);
        assert_eq!(t.get(s).unwrap().reused, 1);
        // ... and that free stays pending. Frees batch up: with two more, three allocations
        // are replacements, and a fourth (nothing pending) is not.
        t.record_free(s, 3 * MIB, 1, false);
        t.record_free(s, 3 * MIB, 1, false);
        for _ in 0..4 {
            t.record_alloc(s, 3 * MIB);
        }
        let st = t.get(s).unwrap();
        assert_eq!(st.reused, 4);
        assert_eq!(st.frees, 4);
        // A free of another bucket replaces what was pending.
        t.record_free(s, 3 * MIB, 1, false);
        t.record_free(s, 20 * MIB, 1, false);
        t.record_alloc(s, 3 * MIB);
        assert_eq!(t.get(s).unwrap().reused, 4);
        t.record_alloc(s, 20 * MIB);
        assert_eq!(t.get(s).unwrap().reused, 5);
    }

    #[test]
    fn full_table_goes_to_overflow() {
        let t: SiteTable<4> = SiteTable::new();
        let sites = [0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000];
        let got: Vec<_> = sites.iter().map(|&s| t.record_alloc(s, MIB)).collect();
        assert!(got[..4].iter().all(|g| g.is_some()), "{got:?}");
        assert!(got[4..].iter().all(|g| g.is_none()), "{got:?}");
        let mut slots: Vec<usize> = got[..4].iter().map(|g| g.unwrap()).collect();
        slots.sort();
        assert_eq!(slots, [0, 1, 2, 3]);
        assert_eq!(t.len(), 4);
        // The known sites keep their slots, the others keep overflowing.
        for &s in &sites {
            t.record_alloc(s, MIB);
        }
        for &s in &sites[..4] {
            assert_eq!(t.get(s).unwrap().allocs, 2);
        }
        assert_eq!(t.overflow().allocs, 4);
        assert_eq!(t.record_free(0x6000, MIB, 5, false), None);
        assert_eq!(t.overflow().frees, 1);
        let total: u64 = t.iter().map(|(_, s)| s.allocs).sum::<u64>() + t.overflow().allocs;
        assert_eq!(total, 12);
        // Zero capacity: everything overflows.
        let z: SiteTable<0> = SiteTable::new();
        assert_eq!(z.record_alloc(0x1000, MIB), None);
        assert_eq!(z.overflow().allocs, 1);
        assert!(z.is_empty());
    }

    #[test]
    fn colliding_sites_probe() {
        // Sites that all hash to the same home slot still get one slot each.
        let t: SiteTable<8> = SiteTable::new();
        let home = SiteTable::<8>::home(0x1000);
        let same: Vec<usize> = (1..100_000usize)
            .map(|k| k * 0x10)
            .filter(|&s| SiteTable::<8>::home(s) == home)
            .take(5)
            .collect();
        assert_eq!(same.len(), 5);
        for &s in &same {
            t.record_alloc(s, MIB);
        }
        for &s in &same {
            assert_eq!(t.get(s).unwrap().allocs, 1);
        }
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn concurrent_records_lose_nothing() {
        const THREADS: usize = 4;
        const ITERS: usize = 20_000;
        const SITES: usize = 24;
        let t: SiteTable<32> = SiteTable::new();
        std::thread::scope(|sc| {
            for th in 0..THREADS {
                let t = &t;
                sc.spawn(move || {
                    for i in 0..ITERS {
                        // Every thread walks the sites in a different order, so first inserts race.
                        let site = 0x7f00_0000_0000 + ((i * (th + 1) * 7) % SITES + 1) * 0x40;
                        let size = MIB << (i % 3);
                        t.record_alloc(site, size);
                        if i % 2 == 0 {
                            t.record_free(site, size, 3, th % 2 == 1);
                        }
                    }
                });
            }
        });
        assert_eq!(t.len(), SITES, "each site claimed exactly one slot");
        let mut allocs = 0;
        let mut frees = 0;
        let mut bytes = 0;
        let mut hist = 0;
        let mut cross = 0;
        let mut life = 0;
        t.for_each(|_, s| {
            allocs += s.allocs;
            frees += s.frees;
            bytes += s.bytes;
            hist += s.size_hist.iter().sum::<u64>();
            cross += s.cross_thread_frees;
            life += s.lifetime_ms_sum;
            assert!(s.reused <= s.frees);
        });
        let n = (THREADS * ITERS) as u64;
        assert_eq!(allocs, n);
        assert_eq!(hist, n);
        assert_eq!(frees, n / 2);
        assert_eq!(life, 3 * n / 2);
        assert_eq!(cross, n / 4);
        let per_thread: u64 = (0..ITERS).map(|i| (MIB << (i % 3)) as u64).sum();
        assert_eq!(bytes, per_thread * THREADS as u64);
        assert_eq!(t.overflow(), SiteStats::default());
    }

    #[test]
    fn concurrent_overflow_counts_everything() {
        let t: SiteTable<4> = SiteTable::new();
        std::thread::scope(|sc| {
            for th in 0..4usize {
                let t = &t;
                sc.spawn(move || {
                    for i in 0..10_000usize {
                        t.record_alloc(((i + th) % 12 + 1) * 0x1000, MIB);
                    }
                });
            }
        });
        let inside: u64 = t.iter().map(|(_, s)| s.allocs).sum();
        assert_eq!(t.len(), 4);
        assert_eq!(inside + t.overflow().allocs, 40_000);
    }

    /// `n` allocations of `size` from `site`, each freed after `life_ms` and, if `churn`,
    /// immediately replaced (alloc, free, alloc, free, ...); otherwise all allocated first and
    /// freed at the end (if `free`).
    fn pattern(
        t: &SiteTable<16>,
        site: usize,
        n: usize,
        size: usize,
        life_ms: u64,
        churn: bool,
        free: bool,
    ) {
        if churn {
            for _ in 0..n {
                t.record_alloc(site, size);
                t.record_free(site, size, life_ms, false);
            }
        } else {
            for _ in 0..n {
                t.record_alloc(site, size);
            }
            if free {
                for _ in 0..n {
                    t.record_free(site, size, life_ms, false);
                }
            }
        }
    }

    #[test]
    fn rules_short_vs_long_lived() {
        let t: SiteTable<16> = SiteTable::new();
        let p = RuleParams::default();
        let churner = 0x100;
        let keeper = 0x200;
        let leaker = 0x300;
        let small = 0x400;
        let rare = 0x500;
        let batch = 0x600;
        pattern(&t, churner, 16, 3 * MIB, 20, true, true);
        pattern(&t, keeper, 16, 3 * MIB, 5_000, true, true);
        pattern(&t, leaker, 16, 8 * MIB, 0, false, false);
        pattern(&t, small, 100, 64 * 1024, 5, true, true);
        pattern(&t, rare, 4, 3 * MIB, 20, true, true);
        pattern(&t, batch, 16, 3 * MIB, 20, false, true);

        let action = |s| t.get(s).unwrap().action(&p);
        assert_eq!(action(churner), SiteAction::Default, "short-lived");
        assert_eq!(action(keeper), SiteAction::Direct);
        assert_eq!(action(leaker), SiteAction::Direct);
        assert_eq!(action(small), SiteAction::Default, "not large");
        assert_eq!(action(rare), SiteAction::Default, "too few allocations");
        assert_eq!(
            action(batch),
            SiteAction::Default,
            "short-lived but never replaced"
        );

        let mut out = [SiteRule::default(); 8];
        let n = t.derive_rules(&p, &mut out);
        assert_eq!(n, 2);
        let mut rules: Vec<_> = out[..n].iter().map(|r| (r.site, r.action)).collect();
        rules.sort_by_key(|r| r.0);
        assert_eq!(
            rules,
            [(keeper, SiteAction::Direct), (leaker, SiteAction::Direct)]
        );
        // A short output slice holds what fits.
        let mut one = [SiteRule::default(); 1];
        assert_eq!(t.derive_rules(&p, &mut one), 1);
        assert_ne!(one[0].action, SiteAction::Default);
        assert_eq!(t.derive_rules(&p, &mut []), 0);

        // Thresholds come from the params: with a 10 s "long", the keeper gets no rule.
        let lenient = RuleParams {
            long_lifetime_ms: 10_000,
            ..p
        };
        assert_eq!(action(keeper), SiteAction::Direct);
        assert_eq!(t.get(keeper).unwrap().action(&lenient), SiteAction::Default);
    }

    #[test]
    fn rule_edge_cases() {
        let p = RuleParams::default();
        let mut s = SiteStats {
            allocs: 10,
            ..SiteStats::default()
        };
        s.size_hist[size_bucket(2 * MIB)] = 10;
        assert_eq!(s.action(&p), SiteAction::Direct, "nothing freed");
        s.frees = 6;
        s.lifetime_ms_sum = 6 * 999;
        assert_eq!(
            s.action(&p),
            SiteAction::Default,
            "short-lived, mostly freed"
        );
        s.lifetime_ms_sum = 6 * 1000;
        assert_eq!(
            s.action(&p),
            SiteAction::Direct,
            "mean lifetime reaches the long threshold"
        );
        s.lifetime_ms_sum = 60;
        s.frees = 4; // 6 of 10 live
        assert_eq!(s.action(&p), SiteAction::Direct, "most blocks live");
        assert_eq!(SiteAction::Direct.name(), "direct");
        assert_eq!(SiteStats::default().mean_lifetime_ms(), None);
    }
}
