//! # hakmem-tiny: blocks of 1..=1024 bytes from per-thread slabs
//!
//! Role: the Tiny tier. Each thread has a [`heap::Heap`] in thread-local storage; each size
//! class is served by 64 KiB slabs owned by one thread. `malloc` is a pop from the current
//! slab's free list, a local `free` is a push onto the slab's local list; a `free` from another
//! thread is one CAS onto the slab's remote list, collected by the owner in a batch when its
//! free list runs dry. There is no lock on either fast path; the shared slab pool is locked
//! about once per 64 KiB of allocation.
//!
//! Invariants:
//! - A block belongs to exactly one list at a time: a slab's `free`, `local_free` or remote
//!   list, or the program. `used` counts the blocks outside the first two lists.
//! - Only the owning thread touches a slab's non-atomic fields; `owner == thread_id()` is the
//!   test for a local free (see [`slab`]).
//! - Thread-local state is `const`-initialised and has no destructor: first touch allocates
//!   nothing, and thread exit goes through a `pthread` key destructor ([`heap`]).
//! - A segment is never unmapped while any of its slabs is in use.
//! - `std` is linked only for `thread_local!` (const-initialised, no destructor: a plain TLS
//!   slot); nothing here allocates.
#![warn(missing_docs)]

#[cfg(not(loom))]
pub mod heap;
pub mod remote;
#[cfg(not(loom))]
pub mod segment;
#[cfg(not(loom))]
pub mod slab;
#[cfg(not(loom))]
pub mod tls;

#[cfg(not(loom))]
pub use api::*;

#[cfg(not(loom))]
mod api {
    use crate::heap::free_slow;
    use crate::segment::slab_of;
    use hakmem_core::class::{TINY_CLASSES, TINY_MAX, tiny_class_aligned, wsize};
    use hakmem_core::map::{TAG_TINY, Tag};
    use hakmem_core::os::thread_id;
    use hakmem_core::sync::Ordering;
    use hakmem_core::tier::Tier;

    pub use hakmem_core::class::TINY_MAX as MAX_SIZE;

    use crate::tls::heap;

    /// Allocates `size` bytes (`size <= 1024`; 0 gives a unique 8-byte block). Blocks of 16
    /// bytes or more are 16-byte aligned. Null only when the OS refuses memory.
    #[inline(always)]
    pub fn alloc(size: usize) -> *mut u8 {
        debug_assert!(size <= TINY_MAX);
        let heap = heap();
        // SAFETY: wsize(size) < TINY_WSIZES; direct entries point at live slabs or EMPTY, and
        // only this thread touches its slabs' free lists.
        unsafe {
            let s = &*heap.direct.get_unchecked(wsize(size)).get();
            let b = s.free.get();
            if b.is_null() {
                return heap.alloc_slow(size);
            }
            s.free.set((*b).next);
            s.used.set(s.used.get() + 1);
            b.cast()
        }
    }

    /// The largest alignment Tiny can give beyond `malloc`'s own: block offsets within a slab
    /// are 128 (the header) plus multiples of the class size.
    pub const MAX_ALIGN: usize = crate::slab::SLAB_HEADER;

    /// Allocates `size` bytes aligned to `align` (a power of two ≤ [`MAX_ALIGN`],
    /// `size <= 1024`), from a class whose block size is a multiple of `align`.
    pub fn alloc_aligned(size: usize, align: usize) -> *mut u8 {
        if align > MAX_ALIGN {
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
    /// `p` must lie in a chunk the owner map tags [`TAG_TINY`] and be a live block.
    #[inline(always)]
    pub unsafe fn free(p: *mut u8) {
        let s = slab_of(p);
        if s.owner.load(Ordering::Relaxed) == thread_id() {
            let b = p.cast::<crate::remote::Block>();
            // SAFETY: the block is dead and its slab is ours: only this thread uses its lists.
            unsafe { (*b).next = s.local_free.get() };
            s.local_free.set(b);
            let used = s.used.get() - 1;
            s.used.set(used);
            if used == 0 {
                // Never the current slab of its class (pinned: see `heap`).
                heap().slab_emptied(s);
            }
        } else {
            free_slow(heap(), s, p);
        }
    }

    /// The block size of a live Tiny block (0 for a pointer that is not one).
    ///
    /// # Safety
    /// `p` must lie in a chunk the owner map tags [`TAG_TINY`].
    pub unsafe fn usable_size(p: *mut u8) -> usize {
        let s = slab_of(p);
        if s.holds_block(p) {
            s.block_size.get() as usize
        } else {
            0
        }
    }

    /// The Tiny tier as a [`Tier`].
    pub struct TinyTier;

    impl Tier for TinyTier {
        const TAG: Tag = TAG_TINY;
        fn alloc(&self, size: usize, align: usize) -> *mut u8 {
            if size > TINY_MAX || align > MAX_ALIGN {
                core::ptr::null_mut()
            } else if align <= 8 || (align <= 16 && size > 8) {
                alloc(size)
            } else {
                alloc_aligned(size, align)
            }
        }
        unsafe fn free(&self, p: *mut u8) {
            // SAFETY: forwarded contract.
            unsafe { free(p) }
        }
        unsafe fn usable_size(&self, p: *mut u8) -> usize {
            // SAFETY: forwarded contract.
            unsafe { usable_size(p) }
        }
    }

    /// The locks `fork` must hold (taken in this order by the `prepare` handler).
    pub fn fork_locks() -> [&'static hakmem_core::sync::RawLock; 1] {
        [crate::segment::lock()]
    }
}
