//! Process-wide counters, updated only on slow paths (refills, segment and page-run operations),
//! never per Tiny malloc/free. They prove which allocator served a program and feed `HAKMEM_STATS`.

// Plain std atomics: statistics are not a structure the loom models check.
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

impl Default for TierCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl TierCounters {
    /// Zeroed counters (each slab tier keeps one static set).
    pub const fn new() -> Self {
        TierCounters {
            carved: Striped::new(),
            slabs: Striped::new(),
            remote: Striped::new(),
        }
    }
}

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
}
