//! # hakmem-slab: the slab engine shared by the Tiny tier and the pools
//!
//! Role: a *slab* is an aligned run of memory holding blocks of one size class, its metadata
//! ([`meta::Slab`]) in its first 128 bytes, so the metadata of any block is found by masking the
//! block's address. Each slab is owned by one thread's [`heap::Heap`]; allocation pops from the
//! slab's free list, the owner's frees push onto the same list, other threads' frees push onto
//! its atomic remote list (`remote`). Unused and abandoned slabs live in a shared
//! [`pool::SlabPool`] (one lock, taken once per slab, never per block), which takes its
//! segments from a [`PageSource`](hakmem_core::segment::PageSource) the tier names.
//!
//! A tier is a [`Geometry`]: slab size, segment size, owner-map tag, block sizes, counters,
//! page source, and how its direct table maps to classes. The engine knows no tier: Tiny
//! (`hakmem-tiny`) and the pools (`hakmem-pool`) each define theirs and hand it to the engine.
//! [`census`] counts what a tier's slabs hold; [`thread_heap!`] gives each thread its heap.
//!
//! Invariants:
//! - A block belongs to exactly one list at a time: a slab's `free`, `deferred` or remote
//!   list, a freeing thread's held-back batch, or the program; `used` counts the blocks outside
//!   the slab's own lists (plus one for a pinned current slab).
//! - Only the owning thread touches a slab's non-atomic fields (or whoever holds the pool lock
//!   while the slab sits on a pool list); `owner` routes every free.
//! - A segment is never given back while any of its slabs is in use.
//! - Nothing here allocates through a global allocator or takes a lock libc might hold.
#![no_std]
#![warn(missing_docs)]
// A loom build holds only what the models drive: the rest of the engine is compiled out.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(any(test, loom))]
extern crate std;

#[cfg(not(loom))]
pub mod census;
#[cfg(not(loom))]
pub mod heap;
pub(crate) mod link;
pub mod meta;
#[cfg(not(loom))]
pub mod pool;
pub(crate) mod protocol;
pub(crate) mod remote;
#[cfg(not(loom))]
pub mod tls;

#[cfg(all(test, loom))]
mod loom_abandon;

#[cfg(not(loom))]
pub use tier::*;

#[cfg(not(loom))]
mod tier {
    use crate::pool;
    use hakmem_core::map::Tag;
    use hakmem_core::segment::PageSource;
    use hakmem_core::stats::TierCounters;

    /// What distinguishes one slab tier from another.
    ///
    /// # Safety
    /// The engine lays out memory and indexes its tables by these items without checking
    /// them, so an implementation must describe a consistent tier: `SLAB_SHIFT` at most 22 and
    /// `SEGMENT` a multiple of both the slab size and the 4 MiB chunk; `TAG` owned by this tier
    /// alone; `CLASSES` ascending, each a multiple of 8 that fits in a slab after its header,
    /// at most [`pool::MAX_CLASSES`] of them; `class_of(size)`, for every size the tier is
    /// sent, a class whose block size is at least `size`; `direct_range(class)` inside the
    /// heap's direct table, the ranges of the classes in order and together covering it;
    /// `pool()` a pool used by this tier only.
    pub unsafe trait Geometry: 'static {
        /// log2 of the slab size. Slabs are aligned to their size.
        const SLAB_SHIFT: usize;
        /// Bytes mapped per segment: a multiple of both the slab size and the 4 MiB chunk.
        const SEGMENT: usize;
        /// The owner-map tag of this tier's segments.
        const TAG: Tag;
        /// Block size of each class, ascending.
        const CLASSES: &'static [u32];
        /// Empty slabs a heap keeps for reuse before returning them to the pool.
        const EMPTY_CACHE: u32;
        /// Whether the current slab of each class is pinned (a +1 bias on `used`, so the hot
        /// free path never sees it empty). Right for small blocks, where a malloc/free loop must
        /// stay on the fast path; for big blocks an emptied slab is better given back at once.
        const PIN_CURRENT: bool;
        /// Whether a thread freeing into an abandoned slab adopts the
        /// slab (its frees into it turn local). Right for small slabs, where a successor thread
        /// drains what its predecessor left (Larson); for big slabs an adopter that soon stops
        /// allocating keeps a large region's free blocks from the threads that do, which costs
        /// peak RSS (docs/BENCHMARKS.md, "Figures behind design choices").
        const ADOPT_ON_FREE: bool;
        /// Bytes of remote frees into one slab a thread may hold back to push together, with
        /// one CAS (see `heap::Pending`: at most 32 blocks); 0: each is pushed at once. Right
        /// for small slabs, whose blocks are freed remotely by the thousand
        /// (producer/consumer); counted in bytes so that a slab of big blocks is not kept
        /// short of free ones. For big slabs the held-back blocks would keep a whole region
        /// from going back.
        const REMOTE_BATCH_BYTES: usize;
        /// The class serving `size` (slow path only).
        fn class_of(size: usize) -> usize;
        /// The first and last direct-table entries served by `class`.
        fn direct_range(class: usize) -> (usize, usize);
        /// Whether the tier's memory stays densely used and is reused in place, so huge pages
        /// pay off (the THP policy's `auto` asks for them only there).
        const DENSE: bool = false;
        /// Where the tier's segments come from.
        type Pages: PageSource + 'static;
        /// The tier's shared slab pool.
        fn pool() -> &'static pool::SlabPool<Self::Pages>;
        /// The tier's counters.
        fn counters() -> &'static TierCounters;
        /// Where a request goes instead while the tier is switched off (`HAKMEM_TINY_POOL=0`,
        /// ...): asked on the slow path only, before a slab is taken, so a tier that is on
        /// pays nothing on its fast path. `None`: the tier serves it.
        fn divert(_size: usize) -> Option<*mut u8> {
            None
        }
    }

    /// The slab size of a geometry.
    pub const fn slab_size<G: Geometry>() -> usize {
        1 << G::SLAB_SHIFT
    }
}
