//! # hakmem-tiny: blocks of 1..=1024 bytes from per-thread slabs
//!
//! Role: the Tiny tier, an instance of the slab engine (`hakmem_slab`) with 64 KiB slabs
//! in 4 MiB segments, 21 size classes ([`class`]) and a direct table indexed by word
//! size. `malloc` is a pop from the current slab's free list, a local `free` is a push onto the
//! slab's free list; a `free` from another thread is held back in the freeing thread's heap
//! with the other frees into the same slab (up to 2 KiB, `REMOTE_BATCH_BYTES`) and pushed with
//! them, one CAS, onto the slab's remote list, collected by the owner in a batch when its free
//! list runs dry. There is no lock on either fast path; the shared slab pool is locked about
//! once per 64 KiB of allocation.
//!
//! Invariants:
//! - A block belongs to exactly one list at a time: a slab's `free`, `deferred` or remote
//!   list, a freeing thread's held-back batch, or the program. `used` counts the blocks outside
//!   the slab's own lists (plus one for the pinned current slab of each class).
//! - Only the owning thread touches a slab's non-atomic fields; `owner == thread_id()` is the
//!   test for a local free.
//! - The thread heap is `const`-initialised TLS with no destructor ([`tls`]): first touch
//!   allocates nothing, and thread exit goes through a `pthread` key destructor.
//! - A segment is never unmapped while any of its slabs is in use.
#![warn(missing_docs)]

pub mod class;
#[cfg(not(loom))]
pub mod tls;

#[cfg(not(loom))]
pub use api::*;

#[cfg(not(loom))]
mod api {
    use crate::class::{
        TINY_CLASS_COUNT, TINY_CLASSES, TINY_MAX, TINY_WSIZES, tiny_class, tiny_class_aligned,
        wsize, wsize_range,
    };
    use crate::tls::heap;
    use core::sync::atomic::{AtomicPtr, Ordering};
    use hakmem_core::map::{CHUNK_SIZE, Tag};
    use hakmem_core::segment::OsPages;
    use hakmem_core::stats::TierCounters;
    use hakmem_core::tier::Tier;
    use hakmem_slab::Geometry;
    use hakmem_slab::heap::{self as engine, Heap};
    use hakmem_slab::meta::SLAB_HEADER;
    use hakmem_slab::pool::SlabPool;

    pub use crate::class::TINY_MAX as MAX_SIZE;

    /// The owner-map tag of Tiny's segments.
    pub const TAG: Tag = 1;

    /// The Tiny tier's counters.
    pub static COUNTERS: TierCounters = TierCounters::new();

    /// The Tiny tier's shape: 64 KiB slabs, a direct entry per word size.
    pub struct TinyGeometry;

    static POOL: SlabPool = SlabPool::new();

    // SAFETY: 64 KiB slabs in 4 MiB chunks, Tiny's own tag and pool; `tiny_class` and
    // `wsize_range` are the class table's, checked by the class module's tests.
    unsafe impl Geometry for TinyGeometry {
        const SLAB_SHIFT: usize = 16;
        const SEGMENT: usize = CHUNK_SIZE;
        const TAG: Tag = TAG;
        const CLASSES: &'static [u32] = &TINY_CLASSES;
        const EMPTY_CACHE: u32 = 4;
        const PIN_CURRENT: bool = true;
        const ADOPT_ON_FREE: bool = true;
        const REMOTE_BATCH_BYTES: usize = 2048;
        fn class_of(size: usize) -> usize {
            tiny_class(size)
        }
        fn direct_range(class: usize) -> (usize, usize) {
            wsize_range(class)
        }
        type Pages = OsPages;
        fn pool() -> &'static SlabPool {
            &POOL
        }
        fn counters() -> &'static TierCounters {
            &COUNTERS
        }
        fn divert(size: usize) -> Option<*mut u8> {
            if hakmem_core::config::routes() & hakmem_core::config::ROUTE_TINY != 0 {
                return None;
            }
            let f = DIVERT.load(Ordering::Relaxed);
            // SAFETY: DIVERT holds null or a `fn(usize) -> *mut u8` stored by `divert_to`.
            (!f.is_null())
                .then(|| unsafe { core::mem::transmute::<*mut (), fn(usize) -> *mut u8>(f)(size) })
        }
    }

    static DIVERT: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

    /// Where Tiny requests go while the tier is switched off (`HAKMEM_TINY_POOL=0`): set by
    /// the crate that routes sizes (the facade gives its pools). Until it is set, and while the
    /// tier is on, Tiny serves them. Blocks from slabs a thread took before the switch was
    /// read stay valid.
    pub fn divert_to(f: fn(usize) -> *mut u8) {
        DIVERT.store(f as *mut (), Ordering::Relaxed);
    }

    /// A thread's Tiny heap.
    pub type TinyHeap = Heap<TinyGeometry, TINY_WSIZES, TINY_CLASS_COUNT>;

    /// Allocates `size` bytes (`size <= 1024`; 0 gives a unique 8-byte block). Blocks of 16
    /// bytes or more are 16-byte aligned. Null for a size above 1024 (not Tiny's), and (errno
    /// ENOMEM) when the OS refuses memory. (A caller that has routed by size already pays
    /// nothing for the bound: the compiler folds it into the caller's.)
    #[inline(always)]
    pub fn alloc(size: usize) -> *mut u8 {
        if size > TINY_MAX {
            return core::ptr::null_mut();
        }
        // SAFETY: `size <= TINY_MAX`, so its word size indexes the direct table and is one of
        // its class's.
        unsafe { heap().alloc(wsize(size), size) }
    }

    /// The largest alignment Tiny can give beyond `malloc`'s own: block offsets within a slab
    /// are 128 (the header) plus multiples of the class size.
    pub const MAX_ALIGN: usize = SLAB_HEADER;

    /// Allocates `size` bytes aligned to `align` (a power of two ≤ [`MAX_ALIGN`],
    /// `size <= 1024`), from a class whose block size is a multiple of `align`. Null for any
    /// other size or alignment.
    pub fn alloc_aligned(size: usize, align: usize) -> *mut u8 {
        if align > MAX_ALIGN || !align.is_power_of_two() {
            return core::ptr::null_mut();
        }
        match tiny_class_aligned(size, align) {
            Some(c) => alloc(TINY_CLASSES[c] as usize),
            None => core::ptr::null_mut(),
        }
    }

    /// Frees a block of the Tiny tier.
    ///
    /// # Safety
    /// `p` must lie in a chunk the owner map tags [`TAG`] and be a live block.
    #[inline(always)]
    pub unsafe fn free(p: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { engine::free::<TinyGeometry, TINY_WSIZES, TINY_CLASS_COUNT>(p, heap) }
    }

    /// The block size of a live Tiny block (0 for a pointer that is not one).
    ///
    /// # Safety
    /// `p` must lie in a chunk the owner map tags [`TAG`].
    pub unsafe fn usable_size(p: *mut u8) -> usize {
        // SAFETY: forwarded contract.
        unsafe { engine::usable_size::<TinyGeometry>(p) }
    }

    /// The Tiny tier as the facade's tag table holds it (its hot `free` is also called
    /// directly, inlined, before the table is looked at).
    pub const TIER: Tier = Tier {
        tag: TAG,
        name: "tiny",
        free: tier_free,
        usable_size,
        resize: hakmem_core::tier::no_resize,
    };

    /// [`free`] as a function pointer.
    ///
    /// # Safety
    /// As [`free`].
    unsafe fn tier_free(p: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { free(p) }
    }

    /// The locks `fork` must hold.
    pub fn fork_locks() -> [&'static hakmem_core::sync::RawLock; 1] {
        [POOL.lock()]
    }

    /// What the tier's slabs hold now (`hakmem_slab::census`); `None` if its lock stayed taken.
    pub fn census() -> Option<hakmem_slab::census::Census> {
        hakmem_slab::census::census::<TinyGeometry>()
    }
}
