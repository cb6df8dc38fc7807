//! Process-wide counters, updated only on slow paths (refills, segment and page-run operations),
//! never per Tiny malloc/free. They prove which allocator served a program and feed `HAKMEM_STATS`.

// Plain std atomics: statistics are not a structure the loom models check.
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

/// One counter.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Subtracts `n`.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    /// Raises the value to `v` if it is below (a high-water mark).
    #[inline]
    pub fn raise_to(&self, v: u64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Stripes of a [`Striped`] counter.
const STRIPES: usize = 16;

/// One stripe, alone on its cache line.
#[repr(align(64))]
struct Stripe(AtomicU64);

/// A counter that threads add to often (a slab tier's, bumped at every refill and collection):
/// each thread adds to one of `STRIPES` cache lines chosen by its thread pointer, so two
/// threads on two cores rarely write the same line (one shared line cost a cross-core miss per
/// add, the whole refill or collection waiting on it).
pub struct Striped([Stripe; STRIPES]);

impl Striped {
    const fn new() -> Self {
        Striped([const { Stripe(AtomicU64::new(0)) }; STRIPES])
    }
    /// Adds `n` to the calling thread's stripe.
    #[inline]
    pub fn add(&self, n: u64) {
        // Fibonacci hashing of the thread pointer: thread control blocks sit a stack apart,
        // so their low bits are alike.
        let h = (crate::os::thread_id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0[(h >> (u64::BITS - STRIPES.trailing_zeros())) as usize]
            .0
            .fetch_add(n, Ordering::Relaxed);
    }
    /// The sum of the stripes (a moment's value: adds may land while it reads).
    pub fn get(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |t, s| t.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

/// The counters of one slab tier.
pub struct TierCounters {
    /// Blocks carved from fresh slab memory.
    pub carved: Striped,
    /// Slabs taken by thread heaps (fresh, reused or adopted).
    pub slabs: Striped,
    /// Blocks freed by a thread other than the owner, as collected by owners.
    pub remote: Striped,
}

impl TierCounters {
    const fn new() -> Self {
        TierCounters {
            carved: Striped::new(),
            slabs: Striped::new(),
            remote: Striped::new(),
        }
    }
}

/// The Tiny tier's counters.
pub static TINY: TierCounters = TierCounters::new();
/// The pools' counters (L2 and L2.5 together).
pub static POOL: TierCounters = TierCounters::new();
/// Page-run allocations (sizes above Tiny up to the run limit).
pub static RUN_ALLOCS: Counter = Counter::new();
/// Page-run frees.
pub static RUN_FREES: Counter = Counter::new();
/// Direct-mapping allocations.
pub static LARGE_ALLOCS: Counter = Counter::new();
/// Direct-mapping frees.
pub static LARGE_FREES: Counter = Counter::new();
/// Bytes currently mapped from the OS.
pub static OS_MAPPED: Counter = Counter::new();
/// Segments currently mapped.
pub static OS_SEGMENTS: Counter = Counter::new();
/// The most bytes mapped at once.
pub static OS_PEAK: Counter = Counter::new();
/// Bytes given back to the OS while staying mapped (`MADV_FREE` / `MADV_DONTNEED`).
pub static OS_PURGED: Counter = Counter::new();
/// Direct-mapping allocations served by a cached mapping (the BigCache).
pub static CACHE_HITS: Counter = Counter::new();
/// Direct-mapping allocations that mapped fresh memory.
pub static CACHE_MISSES: Counter = Counter::new();

/// Heap misuses detected and reported (double frees, invalid frees, corrupted free lists).
pub static FAULTS: Counter = Counter::new();
/// Reclaims run because the OS refused memory (see `purge::reclaim`).
pub static RECLAIMS: Counter = Counter::new();
/// Guarded blocks handed out ([`crate::guard`]).
pub static GUARD_ALLOCS: Counter = Counter::new();

/// A copy of every counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tiny blocks carved (see [`TierCounters`]).
    pub tiny_carved: u64,
    /// Tiny slabs taken.
    pub tiny_slabs: u64,
    /// Tiny remote frees collected.
    pub tiny_remote: u64,
    /// Pool blocks carved.
    pub pool_carved: u64,
    /// Pool slabs taken.
    pub pool_slabs: u64,
    /// Pool remote frees collected.
    pub pool_remote: u64,
    /// See [`RUN_ALLOCS`].
    pub run_allocs: u64,
    /// See [`RUN_FREES`].
    pub run_frees: u64,
    /// See [`LARGE_ALLOCS`].
    pub large_allocs: u64,
    /// See [`LARGE_FREES`].
    pub large_frees: u64,
    /// See [`OS_MAPPED`].
    pub os_mapped: u64,
    /// See [`OS_SEGMENTS`].
    pub os_segments: u64,
    /// See [`OS_PEAK`].
    pub os_peak: u64,
    /// See [`OS_PURGED`].
    pub os_purged: u64,
    /// See [`CACHE_HITS`].
    pub cache_hits: u64,
    /// See [`CACHE_MISSES`].
    pub cache_misses: u64,
    /// See [`FAULTS`].
    pub faults: u64,
    /// See [`RECLAIMS`].
    pub reclaims: u64,
    /// See [`GUARD_ALLOCS`].
    pub guard_allocs: u64,
}

/// Reads every counter.
pub fn snapshot() -> Stats {
    Stats {
        tiny_carved: TINY.carved.get(),
        tiny_slabs: TINY.slabs.get(),
        tiny_remote: TINY.remote.get(),
        pool_carved: POOL.carved.get(),
        pool_slabs: POOL.slabs.get(),
        pool_remote: POOL.remote.get(),
        run_allocs: RUN_ALLOCS.get(),
        run_frees: RUN_FREES.get(),
        large_allocs: LARGE_ALLOCS.get(),
        large_frees: LARGE_FREES.get(),
        os_mapped: OS_MAPPED.get(),
        os_segments: OS_SEGMENTS.get(),
        os_peak: OS_PEAK.get(),
        os_purged: OS_PURGED.get(),
        cache_hits: CACHE_HITS.get(),
        cache_misses: CACHE_MISSES.get(),
        faults: FAULTS.get(),
        reclaims: RECLAIMS.get(),
        guard_allocs: GUARD_ALLOCS.get(),
    }
}

impl fmt::Display for Stats {
    /// `hakmem-stats: key=value ...`, the line `HAKMEM_STATS=1` prints and benchmarks parse.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hakmem-stats: tiny.carved={} tiny.slabs={} tiny.remote={} pool.carved={} pool.slabs={} \
             pool.remote={} run.allocs={} run.frees={} large.allocs={} large.frees={} \
             large.cache_hits={} large.cache_misses={} os.mapped={} os.segments={} os.peak={} \
             os.purged={} os.reclaims={} faults={} guarded={}",
            self.tiny_carved,
            self.tiny_slabs,
            self.tiny_remote,
            self.pool_carved,
            self.pool_slabs,
            self.pool_remote,
            self.run_allocs,
            self.run_frees,
            self.large_allocs,
            self.large_frees,
            self.cache_hits,
            self.cache_misses,
            self.os_mapped,
            self.os_segments,
            self.os_peak,
            self.os_purged,
            self.reclaims,
            self.faults,
            self.guard_allocs
        )
    }
}

/// Writes the stats line plus a newline to stderr, without allocating.
pub fn print() {
    let mut b = crate::diag::StackBuf::<1024>::new();
    let _ = writeln!(b, "{}", snapshot());
    crate::diag::write_stderr(b.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn striped_counter_sums_every_threads_adds() {
        static C: Striped = Striped::new();
        let threads: Vec<_> = (0..8u64)
            .map(|i| std::thread::spawn(move || (0..1000).for_each(|_| C.add(i + 1))))
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        // 1000 × (1 + 2 + ... + 8), whichever stripes the threads landed on.
        assert_eq!(C.get(), 36_000);
    }

    #[test]
    fn line_format_is_parseable() {
        let s = Stats {
            tiny_carved: 7,
            os_segments: 2,
            ..Stats::default()
        };
        let mut b = crate::diag::StackBuf::<512>::new();
        write!(b, "{s}").unwrap();
        let line = core::str::from_utf8(b.as_bytes()).unwrap();
        assert!(line.starts_with("hakmem-stats: "));
        let kv: Vec<(&str, u64)> = line["hakmem-stats: ".len()..]
            .split(' ')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        assert_eq!(kv.len(), 19);
        assert!(kv.contains(&("tiny.carved", 7)));
        assert!(kv.contains(&("os.segments", 2)));
    }
}
