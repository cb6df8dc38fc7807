//! # hakmem: a fast general-purpose memory allocator
//!
//! Role: the facade. It routes every request to a tier by size alone and every free by the
//! owner tag of the pointer's chunk, and offers the allocator three ways:
//! - `#[global_allocator] static A: hakmem::HakMem = hakmem::HakMem;` in a Rust program;
//! - the functions of this crate ([`malloc`], [`free`], [`realloc`], …) for direct use;
//! - `libhakmem.so` (crate `hakmem-ffi`), the C ABI, for `LD_PRELOAD`.
//!
//! The package is `hakmem-alloc` (`cargo add hakmem-alloc`); its library is imported as
//! `hakmem`:
//!
//! ```no_run
//! #[global_allocator]
//! static A: hakmem::HakMem = hakmem::HakMem;
//!
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect();
//!     assert_eq!(v.len(), 1000);
//! }
//! ```
//!
//! | sizes | tier |
//! |---|---|
//! | 0..=1 KiB | Tiny (`hakmem-tiny`): per-thread 64 KiB slabs |
//! | up to 32 KiB | L2 pool (`hakmem-pool`): per-thread 1 MiB slabs |
//! | up to 64 KiB | L2.5 pool (`hakmem-pool`): per-thread 4 MiB slabs |
//! | up to 1 MiB | page runs (`hakmem_core::run::RUNS`): 4 KiB pages in 4 MiB segments |
//! | up to 64 MiB | big page runs (`hakmem_core::run::BIG_RUNS`): 256 KiB pages in 256 MiB segments |
//! | above | direct mappings (`hakmem_core::large`), freed ones kept for reuse by the BigCache (`hakmem-bigcache`) |
//!
//! Page runs reuse freed pages across sizes (a freed 20 MiB block serves a 12 MiB and a 7 MiB
//! one with its resident pages). Alignments beyond 128 bytes (up to 1 MiB) for sizes up to 1 MiB
//! come from page runs, up to 2 MiB for sizes above 1 MiB up to 64 MiB from big page runs,
//! larger ones from direct mappings (and so does every block above 1 MiB in the learning modes,
//! whose learner tunes the BigCache).
//! Sampled small blocks (`HAKMEM_GUARD_SAMPLE`) come from guard pages (`hakmem_core::guard`),
//! which catch overflows and uses after free; they are freed and resized by their owner tag like
//! any other block.
//!
//! Statistics and control: [`stats()`] returns the counters and what is in use per tier
//! ([`Stats`], [`TierStats`]; a census of the slab headers, nothing counted on the hot paths);
//! [`get_option`] / [`set_option`] read and change the run-time options ([`Tunable`]: purge
//! delay, BigCache budget, THP mode, each saying when a change takes effect); [`purge`] gives
//! free memory back now. `HAKMEM_STATS=1` (or `json`, with `HAKMEM_STATS_FILE` for a file)
//! prints the report at exit of any program using this crate, `#[global_allocator]` included:
//! the table and the JSON keys are documented in [`report`].
//!
//! Invariants: the hot path is a size test and a call into Tiny — no locks, no lookups, no
//! learning; nothing here allocates; every pointer returned is registered in the owner map, so
//! [`free`] of any pointer is safe to dispatch (a stray pointer gets a diagnostic).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use hakmem_bigcache::{BigCache, BigCacheConfig};
use hakmem_core::config::{self, FreePolicy, ROUTE_L2, ROUTE_L25};
use hakmem_core::large::NoCache;
use hakmem_core::map::{self, TAG_LARGE, TAG_NONE};
use hakmem_core::policy::{self, SiteAction};
use hakmem_core::run::{BIG_RUN_MAX, BIG_RUNS, RUN_MAX, SPAN_MIN};
use hakmem_core::sync::{AtomicU8, Ordering};
use hakmem_core::tier::{self, Tier, TierTable};
use hakmem_core::{diag, large, os, run, stats};
use hakmem_tiny::TAG as TAG_TINY;
use hakmem_tiny::class::TINY_MAX;

pub mod report;
pub use report::{Stats, TierStats};

mod options;
pub use options::{OutOfRange, Tunable, get_option, set_option};

/// The allocator, for `#[global_allocator]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HakMem;

/// The alignment `malloc(size)` guarantees: 16 bytes (8 for sizes up to 8).
#[inline(always)]
pub const fn natural_align(size: usize) -> usize {
    if size <= 8 { 8 } else { 16 }
}

/// Allocates `size` bytes aligned to [`natural_align`]. Null when out of memory; every null
/// return of this crate's allocation functions leaves `errno` = ENOMEM.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    if size <= TINY_MAX {
        hakmem_tiny::alloc(size)
    } else {
        malloc_big(size)
    }
}

/// `malloc` above Tiny, entered by a tail jump from [`malloc`]: on x86-64 its return address is
/// still `malloc`'s caller's, which it reads as the call site (two instructions, off the Tiny
/// path) and passes on. Elsewhere the site is unknown (0).
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
extern "C" fn malloc_big(size: usize) -> *mut u8 {
    core::arch::naked_asm!("mov rsi, [rsp]", "jmp {f}", f = sym malloc_big_at)
}

#[cfg(not(target_arch = "x86_64"))]
fn malloc_big(size: usize) -> *mut u8 {
    alloc_big_at(size, 16, 0)
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
extern "C" fn malloc_big_at(size: usize, site: usize) -> *mut u8 {
    alloc_big_at(size, 16, site)
}

/// Every pool block is aligned to 128 bytes (slabs are aligned, the header is 128 bytes, and
/// every class size is a multiple of 256).
const POOL_ALIGN: usize = 128;

/// Where Tiny's requests go while it is switched off: the pools (or page runs).
fn tiny_diverted(size: usize) -> *mut u8 {
    alloc_big(size, natural_align(size))
}

/// Hands [`tiny_diverted`] to the Tiny tier when the library loads (before any thread can have
/// read the configuration that switches Tiny off).
#[used]
#[unsafe(link_section = ".init_array")]
static DIVERT_TINY: extern "C" fn() = {
    extern "C" fn set() {
        hakmem_tiny::divert_to(tiny_diverted);
    }
    set
};

/// Whether a pool serves `size` (above Tiny, or any size when Tiny is off): L2 up to 32 KiB,
/// L2.5 up to [`SPAN_MIN`], each when its switch is on.
#[inline(always)]
fn pooled(size: usize) -> bool {
    let r = config::routes();
    if size <= hakmem_pool::L2_MAX {
        r & ROUTE_L2 != 0
    } else {
        size <= SPAN_MIN && r & ROUTE_L25 != 0
    }
}

/// Sizes above Tiny (or alignments Tiny cannot give).
#[inline(never)]
fn alloc_big(size: usize, align: usize) -> *mut u8 {
    alloc_big_at(size, align, 0)
}

/// [`alloc_big`] from call site `site` (0: unknown).
#[inline(never)]
fn alloc_big_at(size: usize, align: usize, site: usize) -> *mut u8 {
    if align <= POOL_ALIGN && pooled(size) {
        hakmem_pool::alloc(size.max(TINY_MAX + 1))
    } else if size <= RUN_MAX && align <= RUN_MAX {
        run::alloc(size, align)
    } else if big_run(size, align) {
        learn::on_large_alloc(size, site); // site profiling counts every big block
        match BIG_RUNS.alloc(size, align) {
            // No room for a big-run segment (a tight address-space limit): a mapping of its own.
            p if p.is_null() => alloc_large_at(size, align, site).0,
            p => p,
        }
    } else {
        alloc_large_at(size, align, site).0
    }
}

/// Whether a block above [`RUN_MAX`] comes from the big page runs: up to [`BIG_RUN_MAX`],
/// aligned to at most 2 MiB (more would strand most of a segment), unless the configuration
/// learns the BigCache budget (the learning modes): the learner tunes direct mappings, so big
/// blocks stay there.
#[inline]
fn big_run(size: usize, align: usize) -> bool {
    size > RUN_MAX && size <= BIG_RUN_MAX && align <= BIG_RUN_ALIGN && !learn::active()
}

/// The largest alignment the big page runs serve.
const BIG_RUN_ALIGN: usize = 2 << 20;

#[cfg(feature = "learn")]
mod learn;
#[cfg(not(feature = "learn"))]
#[path = "learn_off.rs"]
mod learn;

/// Writes the learner's leaderboard, lifecycle history and profiled sites to standard error
/// (`HAKMEM_ELO_REPORT=1` at exit), without allocating; one line saying so in a build without
/// the `learn` feature.
pub fn learning_report() {
    learn::report();
}

/// The locks a `fork` must hold, in the order to take them (release in reverse), after the
/// background purger's pass lock (`hakmem_core::purger::fork_prepare`): the learner (it takes
/// the policy's writer lock inside, and no thread takes it while holding a tier's lock), then
/// the heap registry (a thread registers its heap inside an allocation, an outside trim takes
/// the pools' locks inside it), then each tier's.
pub fn fork_locks() -> [&'static hakmem_core::sync::RawLock; 8] {
    let [tiny] = hakmem_tiny::fork_locks();
    let [l2, l25] = hakmem_pool::fork_locks();
    let [run, big_run] = hakmem_core::run::locks();
    [
        learn::fork_lock(),
        hakmem_slab::heap::registry_lock(),
        tiny,
        l2,
        l25,
        run,
        big_run,
        hakmem_core::guard::lock(),
    ]
}

/// Installs the BigCache's release as the last step of core's reclaim (run when the OS refuses
/// memory), when the library loads.
#[used]
#[unsafe(link_section = ".init_array")]
static RECLAIM_HOOK: extern "C" fn() = {
    extern "C" fn set() {
        hakmem_core::purge::set_reclaim_hook(release_cached);
        hakmem_core::purge::set_age_hook(age_cached);
    }
    set
};

/// A purge pass's step for the BigCache: releases entries past their age; returns the bytes
/// still cached (for the background purger, which then comes back).
fn age_cached(now: u64) -> usize {
    if BIGCACHE_SET.load(Ordering::Acquire) == 0 {
        return 0;
    }
    BIGCACHE.trim(now);
    BIGCACHE.stats().cached_bytes
}

/// Gives every cached mapping back to the OS (the BigCache is lock-free: safe to run from
/// inside any allocation).
fn release_cached() {
    BIGCACHE.release_all();
}

/// The process's cache of freed direct mappings.
static BIGCACHE: BigCache = BigCache::new(BigCacheConfig::DEFAULT);
static BIGCACHE_SET: AtomicU8 = AtomicU8::new(0);

/// The BigCache, if the configuration uses one (set up from the configuration on first use:
/// entries unused for ten purge delays go back to the OS).
fn bigcache() -> Option<&'static BigCache> {
    let cfg = config::get();
    if !cfg.bigcache || cfg.free_policy == FreePolicy::DontNeed {
        return None; // `dontneed` asks for the lowest RSS: nothing kept
    }
    if BIGCACHE_SET.load(Ordering::Acquire) == 0 && BIGCACHE_SET.swap(1, Ordering::AcqRel) == 0 {
        let max_age_ms = match cfg.free_policy {
            FreePolicy::Keep => u64::MAX / 2,
            _ => cfg.purge_delay_ms.saturating_mul(10).max(1),
        };
        // The rest as it stands: a budget set by `set_option` before the first use holds.
        BIGCACHE.set_config(BigCacheConfig {
            max_age_ms,
            ..BIGCACHE.config()
        });
    }
    Some(&BIGCACHE)
}

/// A direct mapping, from the BigCache when it has one; true when fresh (zero) memory.
fn alloc_large(size: usize, align: usize) -> (*mut u8, bool) {
    alloc_large_at(size, align, 0)
}

/// [`alloc_large`] from call site `site`, profiled for the learner.
fn alloc_large_at(size: usize, align: usize, site: usize) -> (*mut u8, bool) {
    learn::on_large_alloc(size, site);
    let origin = large::Origin {
        site,
        born_ms: os::now_ms(),
        tid: os::thread_id(),
    };
    let (p, fresh) = match bigcache() {
        Some(c) => large::alloc_at(c, size, align, origin),
        None => large::alloc_at(&NoCache, size, align, origin),
    };
    if !p.is_null() {
        // SAFETY: a live direct mapping, just handed out.
        stats::LARGE_BYTES.add(unsafe { large::usable_size(p) } as u64);
    }
    (p, fresh)
}

/// Frees a direct mapping: into the BigCache unless there is none or the block's site has a
/// `Direct` rule in the policy snapshot.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags as large.
unsafe fn free_large(p: *mut u8) {
    // SAFETY: forwarded contract.
    let origin = unsafe { large::origin(p) };
    if let Some((_, size)) = origin {
        stats::LARGE_BYTES.sub_saturating(size as u64);
    }
    let mut cache = bigcache();
    let len = origin.map_or(0, |(_, size)| size);
    if let Some((o, size)) = origin
        && o.site != 0
    {
        learn::on_large_free(o.site, size, o.born_ms, o.tid);
        if policy::current().site_action(o.site) == SiteAction::Direct {
            cache = None;
        }
    }
    // SAFETY: forwarded contract.
    unsafe {
        match cache {
            Some(c) => {
                large::free_in(c, p);
                hakmem_core::purger::notify_fenced(len);
            }
            None => large::free(p),
        }
    }
}

/// Allocates `size` bytes aligned to `align` (a power of two). Null when out of memory, and
/// (errno EINVAL) when `align` is not a power of two.
pub fn alloc_aligned(size: usize, align: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return not_a_power_of_two();
    }
    aligned(size, align)
}

/// Null with errno EINVAL: the answer to an alignment that is not a power of two.
#[cold]
fn not_a_power_of_two() -> *mut u8 {
    hakmem_core::os::set_errno(libc::EINVAL);
    ptr::null_mut()
}

/// [`alloc_aligned`] for an `align` known to be a power of two (a `Layout`'s): the routing by
/// size and alignment trusts it.
fn aligned(size: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if align <= natural_align(size) {
        malloc(size)
    } else if size <= TINY_MAX && align <= hakmem_tiny::MAX_ALIGN {
        hakmem_tiny::alloc_aligned(size, align)
    } else {
        alloc_big(size, align)
    }
}

/// Allocates `size` zeroed bytes aligned to `align` (a power of two). Null when out of
/// memory, and (errno EINVAL) when `align` is not a power of two.
pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return not_a_power_of_two();
    }
    zeroed(size, align)
}

/// [`alloc_zeroed`] for an `align` known to be a power of two.
fn zeroed(size: usize, align: usize) -> *mut u8 {
    if big_run(size, align) {
        let p = BIG_RUNS.alloc_zeroed(size, align);
        if !p.is_null() {
            return p;
        }
    }
    if size > hakmem_pool::MAX_SIZE && (align <= POOL_ALIGN || size > RUN_MAX) {
        // Fresh mappings are zero already; only one from the BigCache needs clearing.
        let (p, fresh) = alloc_large(size, align);
        if !p.is_null() && !fresh {
            // SAFETY: `p` is a live block of at least `size` bytes.
            unsafe { ptr::write_bytes(p, 0, size) };
        }
        return p;
    }
    let p = aligned(size, align);
    if !p.is_null() {
        // SAFETY: `p` is a fresh block of at least `size` bytes.
        unsafe { ptr::write_bytes(p, 0, size) };
    }
    p
}

/// Frees a block from any hakmem function; null is ignored. A pointer hakmem did not hand out
/// gets a diagnostic on stderr and is left alone.
///
/// # Safety
/// `p` must be null or a live block from hakmem, not used afterwards.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    let tag = map::tag_of(p);
    if tag == TAG_TINY {
        // SAFETY: the owner map says `p` is in a Tiny segment; the caller says it is live.
        unsafe { hakmem_tiny::free(p) }
    } else {
        // SAFETY: forwarded contract.
        unsafe { free_other(p, tag) }
    }
}

#[cold]
#[inline(never)]
unsafe fn free_other(p: *mut u8, tag: map::Tag) {
    // SAFETY: each arm runs only for pointers in chunks of its own tier.
    match TIERS.get(tag) {
        // SAFETY: the owner map says `p` lies in a chunk of this tier.
        Some(t) => unsafe { (t.free)(p) },
        None if p.is_null() => {}
        None => diag::bad_pointer("free", p),
    }
}

/// Every tier, by the tag of the chunks it owns: where `free`, `usable_size` and `realloc`
/// send a pointer (Tiny's `free` is also called directly, inlined, before the table).
static TIERS: TierTable = TierTable::new(&[
    &hakmem_tiny::TIER,
    &hakmem_pool::L2_TIER,
    &hakmem_pool::L25_TIER,
    &tier::RUN_TIER,
    &tier::BIG_RUN_TIER,
    &LARGE_TIER,
    &tier::GUARD_TIER,
]);

/// Direct mappings, freed into the BigCache (see [`free_large`]).
const LARGE_TIER: Tier = Tier {
    tag: TAG_LARGE,
    name: "large",
    free: free_large,
    usable_size: large::usable_size,
    resize: resize_large,
};

/// Resizes a direct mapping (`mremap`, which may move it) to a size above the page runs'.
///
/// # Safety
/// As [`Tier::resize`].
unsafe fn resize_large(p: *mut u8, size: usize) -> *mut u8 {
    if size <= RUN_MAX {
        return ptr::null_mut();
    }
    // SAFETY: `p` is a live direct mapping.
    let old = unsafe { large::usable_size(p) };
    // SAFETY: as above.
    let q = unsafe { large::resize(p, size) };
    if !q.is_null() {
        stats::LARGE_BYTES.sub_saturating(old as u64);
        // SAFETY: `q` is the live mapping resized.
        stats::LARGE_BYTES.add(unsafe { large::usable_size(q) } as u64);
    }
    q
}

/// The number of usable bytes of a live block (at least what was asked for); 0 for null or a
/// pointer hakmem did not hand out.
///
/// # Safety
/// `p` must be null or a live block from hakmem.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    let tag = map::tag_of(p);
    if tag == TAG_TINY {
        // SAFETY: the owner map says `p` is in a Tiny segment.
        return unsafe { hakmem_tiny::usable_size(p) };
    }
    // SAFETY: the owner map says `p` lies in a chunk of this tier.
    TIERS.get(tag).map_or(0, |t| unsafe { (t.usable_size)(p) })
}

/// Resizes a block to `size` bytes keeping its contents (C `realloc` without errno): null `p`
/// allocates; `size == 0` frees and returns null. On failure returns null and `p` stays valid.
///
/// # Safety
/// `p` must be null or a live block from hakmem, not used after a non-null return.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: forwarded contract.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    let tag = map::tag_of(p);
    // SAFETY: the caller says `p` is live.
    let old = unsafe { usable_size(p) };
    if tag == TAG_NONE || old == 0 {
        diag::bad_pointer("realloc", p);
        return ptr::null_mut();
    }
    // A guarded block (tag `TAG_GUARD`) shrinks in place like the others; anything else moves it
    // out of the guard pages by the malloc + copy + free below.
    if size <= old && size > old / 2 {
        return p;
    }
    if let Some(t) = TIERS.get(tag) {
        // SAFETY: `p` is a live block of the tagged tier.
        let q = unsafe { (t.resize)(p, size) };
        if !q.is_null() {
            return q;
        }
    }
    let q = malloc(size);
    if !q.is_null() {
        // SAFETY: both blocks are live, distinct, and at least min(old, size) long.
        unsafe {
            ptr::copy_nonoverlapping(p, q, old.min(size));
            free(p);
        }
    }
    q
}

/// Gives every free slab and cached mapping back to the OS now, whatever the purge delay (what
/// `malloc_trim` does).
pub fn trim() {
    hakmem_core::purge::trim();
    BIGCACHE.release_all();
}

/// Gives free memory back to the OS now: [`trim`] (C: `hakmem_purge`, `malloc_trim`).
pub fn purge() {
    trim();
}

/// Whether `p` lies in memory hakmem manages.
pub fn owns(p: *const u8) -> bool {
    map::tag_of(p) != TAG_NONE
}

/// The allocator's state now: the process-wide counters ([`Stats`]'s first fields, as
/// before), plus what is in use in each tier (a census of the slab tiers' headers, the page
/// runs' and the direct mappings' byte counts), the resident set and the BigCache's holding.
/// A moment's values while other threads allocate; nothing is allocated, and each slab tier's
/// lock is taken for its walk. Formats: [`Stats`]'s `Display` (the `hakmem-stats:` line),
/// `report::{Table, Json}` (the exit report's, keys documented there).
pub fn stats() -> Stats {
    let mut s = report::counters();
    // SAFETY: no preconditions.
    s.pid = unsafe { libc::getpid() } as u64;
    let fill = |t: &mut TierStats, c: Option<hakmem_slab::census::Census>| {
        if let Some(c) = c {
            (t.blocks, t.bytes, t.slabs) = (c.blocks, c.bytes, c.slabs);
        }
    };
    fill(&mut s.tiny, hakmem_tiny::census());
    let [l2, l25] = hakmem_pool::census();
    fill(&mut s.l2, l2);
    fill(&mut s.l25, l25);
    s.run_bytes = run::in_use_bytes();
    s.cache_bytes = BIGCACHE.stats().cached_bytes as u64;
    s.in_use = s.tiny.bytes + s.l2.bytes + s.l25.bytes + s.run_bytes + s.large_bytes;
    s.resident = os::resident_bytes();
    s
}

/// `HAKMEM_STATS`: when the library (or program) loads, keeps a duplicate of fd 2 for the
/// report (`report::init`); the report itself runs at exit ([`REPORT_AT_EXIT`]).
/// In `libhakmem.so` and in a Rust program with `HakMem` as its global allocator alike.
#[used]
#[unsafe(link_section = ".init_array")]
static REPORT_INIT: extern "C" fn() = {
    extern "C" fn init() {
        report::init();
    }
    init
};

/// The `HAKMEM_STATS` report, as a destructor: it runs after `main` returns or `exit` is
/// called, after the handlers the program registered with `atexit`.
#[used]
#[unsafe(link_section = ".fini_array")]
static REPORT_AT_EXIT: extern "C" fn() = {
    extern "C" fn report() {
        hakmem_core::purger::stop();
        let how = config::get().stats;
        if how != config::StatsReport::Off {
            report::write(report::format(&stats(), how).as_bytes());
        }
    }
    report
};

// SAFETY: every method returns blocks of at least `layout.size()` bytes aligned to
// `layout.align()`, or null; blocks stay valid until freed exactly once.
unsafe impl GlobalAlloc for HakMem {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        aligned(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: GlobalAlloc's contract: `p` came from this allocator and is live.
        unsafe { free(p) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        zeroed(layout.size(), layout.align())
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let align = layout.align();
        if align <= natural_align(size) {
            // SAFETY: GlobalAlloc's contract; `size > 0`.
            return unsafe { realloc(p, size) };
        }
        // SAFETY: `p` is live (GlobalAlloc's contract).
        let old = unsafe { usable_size(p) };
        if size <= old && size > old / 2 {
            return p; // already aligned, and big enough
        }
        let q = aligned(size, align);
        if !q.is_null() {
            // SAFETY: both blocks are live and distinct.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(size));
                free(p);
            }
        }
        q
    }
}
