//! Process-wide counters, updated only on slow paths (refills, segment and page-run operations),
//! never per Tiny malloc/free. They prove which allocator served a program and feed `HAKMEM_STATS`.

// Plain std atomics: statistics are not a structure the loom models check.
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
    /// Subtracts `n`, stopping at 0 (for a count a misuse could drive below 0).
    #[inline]
    pub fn sub_saturating(&self, n: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
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
/// The L2 pool's counters.
pub static POOL: TierCounters = TierCounters::new();
/// The L2.5 pool's counters (`pool_*` in [`Stats`] and the stats line sum both pools).
pub static L25: TierCounters = TierCounters::new();
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
/// Bytes of direct mappings in use (kept by the facade, which sees every allocation, resize
/// and free of them).
pub static LARGE_BYTES: Counter = Counter::new();

/// Bytes purged, by the owner-map tag of the memory (index: `map::Tag`; 0: not tagged).
static PURGED: [Counter; 8] = [const { Counter::new() }; 8];

/// Counts `len` bytes purged at `p` in [`OS_PURGED`] and in its tier's share.
#[cfg(not(loom))]
pub fn add_purged(p: *const u8, len: usize) {
    OS_PURGED.add(len as u64);
    PURGED[crate::map::tag_of(p) as usize & 7].add(len as u64);
}

/// Bytes purged so far from memory tagged `tag`.
pub fn purged(tag: crate::map::Tag) -> u64 {
    PURGED[tag as usize & 7].get()
}

/// The lowest and highest chunk index ever reserved (`CHUNK_LO > CHUNK_HI`: none yet), so a
/// census walks the owner map over hakmem's few gigabytes of addresses, not all of it.
static CHUNK_LO: AtomicUsize = AtomicUsize::new(usize::MAX);
static CHUNK_HI: AtomicUsize = AtomicUsize::new(0);

/// Records a reservation of `len` bytes at `base` (every slab segment comes through here).
pub fn note_reserved(base: *const u8, len: usize) {
    let first = base as usize >> crate::map::CHUNK_SHIFT;
    let last = (base as usize + len.max(1) - 1) >> crate::map::CHUNK_SHIFT;
    CHUNK_LO.fetch_min(first, Ordering::Relaxed);
    CHUNK_HI.fetch_max(last, Ordering::Relaxed);
}

/// The chunk indexes to walk for a census: every chunk ever reserved lies in it.
pub fn chunk_range() -> core::ops::RangeInclusive<usize> {
    CHUNK_LO.load(Ordering::Relaxed)..=CHUNK_HI.load(Ordering::Relaxed)
}

/// The state of one slab tier now: what its slabs hold (a census at the time of the call) and
/// its cumulative counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Blocks allocated and not freed.
    pub blocks: u64,
    /// Bytes of those blocks (by their size class).
    pub bytes: u64,
    /// Slabs formatted for a size class now (held by threads, cached, or abandoned).
    pub slabs: u64,
    /// Blocks freed by another thread than the owner, as collected so far (cumulative).
    pub remote_frees: u64,
    /// Bytes of the tier's memory given back to the OS so far (cumulative).
    pub purged: u64,
}

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
    /// The process id.
    pub pid: u64,
    /// Bytes allocated and not freed, all tiers: what the program holds (block sizes by
    /// class, so at least what it asked for).
    pub in_use: u64,
    /// The process's resident set (`/proc/self/statm`), bytes; 0 when unreadable.
    pub resident: u64,
    /// The Tiny tier (≤ 1 KiB).
    pub tiny: TierStats,
    /// The L2 pool (up to 32 KiB).
    pub l2: TierStats,
    /// The L2.5 pool (up to 1 MiB).
    pub l25: TierStats,
    /// Bytes of page runs in use.
    pub run_bytes: u64,
    /// Bytes of page-run memory given back to the OS so far.
    pub run_purged: u64,
    /// Bytes of direct mappings in use ([`LARGE_BYTES`]).
    pub large_bytes: u64,
    /// Bytes of direct-mapping memory given back to the OS while mapped so far.
    pub large_purged: u64,
    /// Bytes of freed direct mappings the BigCache holds for reuse.
    pub cache_bytes: u64,
}

/// Reads every counter: the cumulative ones and the tiers' remote-free and purge counts; the
/// figures of a census (blocks, bytes and slabs in use, resident, cached) are left 0, for the
/// facade to fill in (`hakmem::stats`).
pub fn snapshot() -> Stats {
    use crate::map::{TAG_L2, TAG_L25, TAG_LARGE, TAG_RUN, TAG_TINY};
    let tier = |c: &TierCounters, tag| TierStats {
        remote_frees: c.remote.get(),
        purged: purged(tag),
        ..TierStats::default()
    };
    Stats {
        tiny_carved: TINY.carved.get(),
        tiny_slabs: TINY.slabs.get(),
        tiny_remote: TINY.remote.get(),
        pool_carved: POOL.carved.get() + L25.carved.get(),
        pool_slabs: POOL.slabs.get() + L25.slabs.get(),
        pool_remote: POOL.remote.get() + L25.remote.get(),
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
        pid: 0,
        in_use: 0,
        resident: 0,
        tiny: tier(&TINY, TAG_TINY),
        l2: tier(&POOL, TAG_L2),
        l25: tier(&L25, TAG_L25),
        run_bytes: 0,
        run_purged: purged(TAG_RUN),
        large_bytes: LARGE_BYTES.get(),
        large_purged: purged(TAG_LARGE),
        cache_bytes: 0,
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
