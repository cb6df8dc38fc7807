//! # hakmem-bigcache: reuse of freed large mappings (≥ 2 MiB)
//!
//! Role: keeps freed direct mappings (the blocks `hakmem_core::large` maps one per allocation)
//! for reuse, keyed by size class, bounded by a byte budget and released by age, so that a
//! program that frees and reallocates big blocks avoids both the `mmap`/`munmap` pair and the
//! page faults of touching fresh memory: a cached mapping keeps its physical pages. [`BigCache`]
//! implements `hakmem_core::large::MappingCache`: `large::alloc_in` asks it first, and the
//! free side (`large::free_in`, documented by large.rs) offers it the mapping before unmapping.
//! `examples/cache.rs` shows the round trip.
//!
//! ## Design
//!
//! - **Classes.** A mapping's class is its length in 4 MiB chunks, 1 to [`MAX_CHUNKS`]
//!   (256 MiB); longer mappings are never cached. A take matches the length exactly (the large
//!   path already rounds requests to whole chunks) and the alignment it asks for. Classes are
//!   the hook for keying by call site later: see [`class_of`].
//! - **Slots.** Each class owns [`SLOTS_PER_CLASS`] slots, each one atomic word holding a
//!   mapping's chunk index and the sequence number of its put (`shard.rs`). Every transition
//!   of a slot is one compare-and-swap, so the hit path takes no lock at all, and of two threads
//!   racing for one entry exactly one wins it.
//! - **Budget.** Bytes held (plus bytes reserved by puts in flight) are counted in one atomic.
//!   A put that would exceed the budget first evicts the least recently put entries, across all
//!   classes, until it fits; an entry larger than the whole budget is refused. A put into a full
//!   class evicts that class's oldest entry.
//! - **Age.** An entry unused for longer than `max_age_ms` is released: by [`BigCache::trim`],
//!   which `put`/`take` run at most every `max_age_ms / 4`, or explicitly (`malloc_trim`).
//!   A take prefers a class's most recent entry, so a shrinking working set leaves its surplus
//!   to age out.
//!
//! Evicted and expired mappings go back to the OS through
//! `hakmem_core::segment::OS_PAGES.release`, which clears their owner-map tags.
//!
//! ## Invariants
//!
//! - A cached mapping is handed out at most once: an entry leaves its slot only by a successful
//!   compare-and-swap of its unique word (sequence-stamped, so no ABA).
//! - Nothing is lost: every mapping accepted by `put` is later taken, or released exactly once.
//! - The hit path takes no lock, global or per class; nothing here allocates, formats, or calls
//!   into libc beyond `munmap` (through `OS_PAGES`) and the vDSO clock: it runs inside `malloc`
//!   and `free`. All state is fixed-size and `const`-initialised (usable in a `static`).
//! - Cached bytes never exceed the budget (after [`BigCache::set_config`] lowers it, entries are
//!   evicted down to it at once).
//! - A cached mapping's contents are stale, not zero: `large::alloc_in` reports such a block as
//!   not fresh, and `calloc` must zero it.
//!
//! Under `cfg(loom)` only the slot structure is compiled (the OS-facing cache is gated like
//! core's `segment` and `large`), and `loom_tests` model-checks it.
#![no_std]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod shard;

use hakmem_core::map::{CHUNK_SHIFT, CHUNK_SIZE};

/// The longest mapping cached, in chunks (64 chunks = 256 MiB).
pub const MAX_CHUNKS: usize = 64;
/// Entries each class can hold at once.
pub const SLOTS_PER_CLASS: usize = 16;

/// The size class of a mapping of `len` bytes: its length in chunks minus one, or `None` when
/// `len` is not a whole number of chunks or is longer than [`MAX_CHUNKS`] chunks.
///
/// Hook for keying by call site: the BigCache is meant to learn, per allocation site, which
/// lengths come back; a later version extends this to `class_of(len, site)` (the site hashed
/// into a few sub-shards per length), and nothing else in the cache depends on how a class is
/// chosen as long as every entry of a class has the same length.
#[inline]
pub const fn class_of(len: usize) -> Option<usize> {
    if len == 0 || !len.is_multiple_of(CHUNK_SIZE) || len >> CHUNK_SHIFT > MAX_CHUNKS {
        return None;
    }
    Some((len >> CHUNK_SHIFT) - 1)
}

/// What the cache keeps and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BigCacheConfig {
    /// Only mappings at least this long are kept (default: 2 MiB rounded up to whole chunks,
    /// i.e. every direct mapping).
    pub min_len: usize,
    /// The most bytes held at once (default 256 MiB).
    pub budget_bytes: usize,
    /// Entries unused for longer than this are released (default 2000 ms).
    pub max_age_ms: u64,
}

impl BigCacheConfig {
    /// The defaults: every direct mapping, 256 MiB, 2 s.
    pub const DEFAULT: BigCacheConfig = BigCacheConfig {
        min_len: (2usize << 20).next_multiple_of(CHUNK_SIZE),
        budget_bytes: 256 << 20,
        max_age_ms: 2000,
    };
}

impl Default for BigCacheConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A snapshot of the cache's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BigCacheStats {
    /// Takes served from the cache.
    pub hits: u64,
    /// Takes that found nothing (the caller maps fresh memory).
    pub misses: u64,
    /// Mappings accepted by `put`.
    pub puts: u64,
    /// Mappings the cache released to the OS itself: for the budget, a full class, age, or
    /// [`BigCache::release_all`].
    pub evictions: u64,
    /// Bytes held now (including puts in flight).
    pub cached_bytes: usize,
}

#[cfg(not(loom))]
pub use cache::BigCache;

#[cfg(not(loom))]
mod cache {
    use super::shard::{Shard, older, packable, seq_of, word_base};
    use super::*;
    use core::ptr;
    use hakmem_core::large::MappingCache;
    use hakmem_core::os;
    use hakmem_core::segment::{OS_PAGES, PageSource};
    use hakmem_core::sync::{AtomicU64, AtomicUsize, Ordering::Relaxed};

    /// Counters and configuration, on their own cache lines, away from the slots.
    #[repr(align(64))]
    struct Meta {
        /// Bytes held plus bytes reserved by puts in flight.
        cached: AtomicUsize,
        /// The next put's sequence number (LRU order).
        seq: AtomicU64,
        /// When `put`/`take` next run [`BigCache::trim`].
        next_trim_ms: AtomicU64,
        min_len: AtomicUsize,
        budget: AtomicUsize,
        max_age_ms: AtomicU64,
    }

    #[repr(align(64))]
    struct Counters {
        hits: AtomicU64,
        misses: AtomicU64,
        puts: AtomicU64,
        evictions: AtomicU64,
    }

    /// A cache of freed large mappings; see the crate documentation.
    pub struct BigCache {
        shards: [Shard<SLOTS_PER_CLASS>; MAX_CHUNKS],
        meta: Meta,
        counters: Counters,
    }

    /// The length of the mappings of class `class`.
    #[inline]
    const fn class_len(class: usize) -> usize {
        (class + 1) << CHUNK_SHIFT
    }

    /// Gives a mapping the cache owns back to the OS.
    fn release_mapping(addr: usize, len: usize) {
        // SAFETY: `addr`/`len` is a whole mapping reserved by `OS_PAGES` (the `put` contract)
        // that the caller just removed from its slot, so the cache owned it alone and nothing
        // live is in it.
        unsafe { OS_PAGES.release(ptr::with_exposed_provenance_mut(addr), len) };
    }

    impl BigCache {
        /// An empty cache (`const`: usable in a `static`).
        pub const fn new(config: BigCacheConfig) -> BigCache {
            BigCache {
                shards: [const { Shard::new() }; MAX_CHUNKS],
                meta: Meta {
                    cached: AtomicUsize::new(0),
                    seq: AtomicU64::new(0),
                    next_trim_ms: AtomicU64::new(0),
                    min_len: AtomicUsize::new(config.min_len),
                    budget: AtomicUsize::new(config.budget_bytes),
                    max_age_ms: AtomicU64::new(config.max_age_ms),
                },
                counters: Counters {
                    hits: AtomicU64::new(0),
                    misses: AtomicU64::new(0),
                    puts: AtomicU64::new(0),
                    evictions: AtomicU64::new(0),
                },
            }
        }

        /// The configuration in force.
        pub fn config(&self) -> BigCacheConfig {
            BigCacheConfig {
                min_len: self.meta.min_len.load(Relaxed),
                budget_bytes: self.meta.budget.load(Relaxed),
                max_age_ms: self.meta.max_age_ms.load(Relaxed),
            }
        }

        /// Changes the configuration (the policy calls this once the environment is read).
        /// A lower budget evicts down to it at once; a shorter age applies at the next trim.
        pub fn set_config(&self, config: BigCacheConfig) {
            self.meta.min_len.store(config.min_len, Relaxed);
            self.meta.budget.store(config.budget_bytes, Relaxed);
            self.meta.max_age_ms.store(config.max_age_ms, Relaxed);
            self.meta.next_trim_ms.store(0, Relaxed);
            self.shrink_to_budget();
        }

        /// The counters.
        pub fn stats(&self) -> BigCacheStats {
            let c = &self.counters;
            BigCacheStats {
                hits: c.hits.load(Relaxed),
                misses: c.misses.load(Relaxed),
                puts: c.puts.load(Relaxed),
                evictions: c.evictions.load(Relaxed),
                cached_bytes: self.meta.cached.load(Relaxed),
            }
        }

        /// The number of entries held (a snapshot).
        pub fn entries(&self) -> usize {
            self.shards.iter().map(Shard::count).sum()
        }

        /// [`MappingCache::put`] at time `now_ms` (of [`os::now_ms`]'s clock): keeps the
        /// mapping `[base, base + len)` unless it is below the minimum length, longer than
        /// [`MAX_CHUNKS`] chunks or the whole budget, or not chunk-aligned.
        ///
        /// # Safety
        /// As for [`MappingCache::put`]: the mapping is a whole reservation of `OS_PAGES` (or a
        /// chunk-aligned tail of one) tagged large, holding nothing live, given to the cache,
        /// which may hand it out or unmap it.
        pub unsafe fn put_at(&self, base: *mut u8, len: usize, now_ms: u64) -> bool {
            let addr = base.expose_provenance();
            let Some(class) = class_of(len) else {
                return false;
            };
            if !packable(addr) || len < self.meta.min_len.load(Relaxed) {
                return false;
            }
            self.maybe_trim(now_ms);
            if !self.reserve(len) {
                return false;
            }
            let seq = self.meta.seq.fetch_add(1, Relaxed);
            let shard = &self.shards[class];
            for _ in 0..4 {
                if shard.insert(addr, seq, now_ms) {
                    self.counters.puts.fetch_add(1, Relaxed);
                    return true;
                }
                // The class is full: its oldest entry makes room.
                if let Some((i, w)) = shard.oldest()
                    && shard.remove(i, w)
                {
                    self.evict(word_base(w), len);
                }
            }
            // Still full: puts from other threads keep refilling it. Give up the reservation.
            self.meta.cached.fetch_sub(len, Relaxed);
            false
        }

        /// [`MappingCache::take`] at time `now_ms`: a cached mapping of exactly `len` bytes
        /// whose base is a multiple of `align` (a power of two), the most recently put one.
        pub fn take_at(&self, len: usize, align: usize, now_ms: u64) -> Option<*mut u8> {
            self.take_fit_at(len, len, align, now_ms).map(|(p, _)| p)
        }

        /// Takes the shortest cached mapping of `len..=max_len` bytes (whole chunks) whose base
        /// is aligned to `align`, with its length. A hit counts once, a miss once.
        pub fn take_fit_at(
            &self,
            len: usize,
            max_len: usize,
            align: usize,
            now_ms: u64,
        ) -> Option<(*mut u8, usize)> {
            let got = match (class_of(len), align.is_power_of_two()) {
                (Some(first), true) => {
                    let last = class_of(max_len.max(len)).unwrap_or(MAX_CHUNKS - 1);
                    (first..=last).find_map(|c| {
                        self.shards[c]
                            .take_newest(align.max(CHUNK_SIZE))
                            .map(|b| (b, (c + 1) * CHUNK_SIZE))
                    })
                }
                _ => None,
            };
            match got {
                Some((_, got_len)) => {
                    self.meta.cached.fetch_sub(got_len, Relaxed);
                    self.counters.hits.fetch_add(1, Relaxed);
                }
                None => {
                    self.counters.misses.fetch_add(1, Relaxed);
                }
            }
            // After the take: an old entry that is wanted now is better reused than released.
            self.maybe_trim(now_ms);
            got.map(|(b, l)| (ptr::with_exposed_provenance_mut(b), l))
        }

        /// Takes the longest cached mapping shorter than `len` whose base is aligned to `align`,
        /// with its length (the large path grows it to `len` with `mremap`: its pages are
        /// reused, only the rest is fresh). Counted as neither a hit nor a miss.
        pub fn take_below_at(
            &self,
            len: usize,
            align: usize,
            now_ms: u64,
        ) -> Option<(*mut u8, usize)> {
            if !align.is_power_of_two() || len <= CHUNK_SIZE {
                return None;
            }
            let top = (len / CHUNK_SIZE - 1).min(MAX_CHUNKS);
            let got = (0..top).rev().find_map(|c| {
                self.shards[c]
                    .take_newest(align.max(CHUNK_SIZE))
                    .map(|b| (b, (c + 1) * CHUNK_SIZE))
            });
            if let Some((_, l)) = got {
                self.meta.cached.fetch_sub(l, Relaxed);
            }
            self.maybe_trim(now_ms);
            got.map(|(b, l)| (ptr::with_exposed_provenance_mut(b), l))
        }

        /// Releases every entry unused for longer than `max_age_ms` at time `now_ms`, then
        /// evicts down to the budget if it was lowered.
        pub fn trim(&self, now_ms: u64) {
            if self.meta.cached.load(Relaxed) == 0 {
                return;
            }
            let max_age = self.meta.max_age_ms.load(Relaxed);
            for (class, shard) in self.shards.iter().enumerate() {
                while let Some(addr) = shard.take_where(|t| now_ms.saturating_sub(t) > max_age) {
                    self.evict(addr, class_len(class));
                }
            }
            self.shrink_to_budget();
        }

        /// Releases every entry (for `malloc_trim`, and tests).
        pub fn release_all(&self) {
            for (class, shard) in self.shards.iter().enumerate() {
                while let Some(addr) = shard.take_where(|_| true) {
                    self.evict(addr, class_len(class));
                }
            }
        }

        /// Runs [`BigCache::trim`] when its time has come (one thread per period).
        fn maybe_trim(&self, now_ms: u64) {
            let next = self.meta.next_trim_ms.load(Relaxed);
            if now_ms < next {
                return;
            }
            let period = (self.meta.max_age_ms.load(Relaxed) / 4).max(1);
            if self
                .meta
                .next_trim_ms
                .compare_exchange(next, now_ms.saturating_add(period), Relaxed, Relaxed)
                .is_ok()
            {
                self.trim(now_ms);
            }
        }

        /// Counts `len` more bytes against the budget, evicting the least recently put entries
        /// until they fit. False when they cannot (larger than the budget, or the budget is
        /// taken by puts in flight).
        fn reserve(&self, len: usize) -> bool {
            let budget = self.meta.budget.load(Relaxed);
            if len > budget {
                return false;
            }
            let mut cur = self.meta.cached.load(Relaxed);
            loop {
                if cur <= budget - len {
                    match self
                        .meta
                        .cached
                        .compare_exchange_weak(cur, cur + len, Relaxed, Relaxed)
                    {
                        Ok(_) => return true,
                        Err(c) => cur = c,
                    }
                } else if self.evict_lru() {
                    cur = self.meta.cached.load(Relaxed);
                } else {
                    return false;
                }
            }
        }

        /// Evicts entries, least recently put first, while more than the budget is cached.
        fn shrink_to_budget(&self) {
            while self.meta.cached.load(Relaxed) > self.meta.budget.load(Relaxed) {
                if !self.evict_lru() {
                    break;
                }
            }
        }

        /// Evicts the least recently put entry of all classes. False when there is none.
        fn evict_lru(&self) -> bool {
            loop {
                let mut best: Option<(usize, usize, u64)> = None;
                for (class, shard) in self.shards.iter().enumerate() {
                    if let Some((i, w)) = shard.oldest()
                        && best.is_none_or(|(_, _, b)| older(seq_of(w), seq_of(b)))
                    {
                        best = Some((class, i, w));
                    }
                }
                let Some((class, i, w)) = best else {
                    return false;
                };
                if self.shards[class].remove(i, w) {
                    self.evict(word_base(w), class_len(class));
                    return true;
                }
                // Taken by another thread meanwhile: look again.
            }
        }

        /// Releases an entry just removed from its slot.
        fn evict(&self, addr: usize, len: usize) {
            self.meta.cached.fetch_sub(len, Relaxed);
            self.counters.evictions.fetch_add(1, Relaxed);
            release_mapping(addr, len);
        }
    }

    impl Default for BigCache {
        fn default() -> Self {
            Self::new(BigCacheConfig::DEFAULT)
        }
    }

    // SAFETY: `take` and `take_below` hand out only entries `put` stored, each removed from
    // its slot (once) before it is returned.
    unsafe impl MappingCache for BigCache {
        fn take(&self, len: usize, max_len: usize, align: usize) -> Option<(*mut u8, usize)> {
            self.take_fit_at(len, max_len, align, os::now_ms())
        }
        unsafe fn put(&self, base: *mut u8, len: usize) -> bool {
            // SAFETY: forwarded contract.
            unsafe { self.put_at(base, len, os::now_ms()) }
        }
        fn take_below(&self, len: usize, align: usize) -> Option<(*mut u8, usize)> {
            self.take_below_at(len, align, os::now_ms())
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
