//! Tiny segments and the shared slab pool.
//!
//! A Tiny segment is one 4 MiB chunk cut into 64 slabs of 64 KiB, each with its metadata in its
//! first 128 bytes: `free(p)` reaches the metadata of `p`'s slab by clearing the low 16 bits of
//! `p`, one instruction, no search.
//!
//! The pool (one lock, taken about once per 64 KiB of allocation, never per block) keeps unused
//! slabs, the never-used rest of the newest segment (handed out in address order, untouched until
//! then), and, per class, the slabs abandoned by threads that exited with live blocks in them,
//! which the next thread needing that class adopts.

use crate::slab::{SLAB_SIZE, Slab};
use core::ptr;
use hakmem_core::class::TINY_CLASS_COUNT;
use hakmem_core::map::{CHUNK_SIZE, TAG_TINY};
use hakmem_core::segment::{OS_PAGES, PageSource};
use hakmem_core::stats;
use hakmem_core::sync::{Mutex, Ordering, RawLock};

/// The metadata of the slab holding `p`, which must lie in a Tiny segment.
#[inline(always)]
pub fn slab_of(p: *mut u8) -> &'static Slab {
    let s = (p as usize & !(SLAB_SIZE - 1)) as *const Slab;
    // SAFETY: the owner map tagged the chunk Tiny, so the slab is mapped; its header was written
    // before any block of it was handed out (a never-used slab reads as zeros: capacity 0, no
    // owner). Segments are never unmapped while they hold slabs in use.
    unsafe { &*s }
}

struct Pool {
    /// Unused slabs, linked through `next`.
    free: *mut Slab,
    /// Abandoned slabs per class, linked through `next`.
    abandoned: [*mut Slab; TINY_CLASS_COUNT],
    /// The never-used slabs of the newest segment: `[fresh, fresh_end)`.
    fresh: usize,
    fresh_end: usize,
}

// SAFETY: the lists are only touched under the pool mutex.
unsafe impl Send for Pool {}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: ptr::null_mut(),
    abandoned: [ptr::null_mut(); TINY_CLASS_COUNT],
    fresh: 0,
    fresh_end: 0,
});

/// The pool lock (for `fork` handlers).
pub fn lock() -> &'static RawLock {
    POOL.raw()
}

fn push(list: &mut *mut Slab, s: &Slab) {
    s.next.set(*list);
    *list = s as *const Slab as *mut Slab;
}

fn pop(list: &mut *mut Slab) -> Option<&'static Slab> {
    // SAFETY: list entries are slab headers inside live segments.
    let s = unsafe { list.as_ref()? };
    *list = s.next.get();
    s.next.set(ptr::null_mut());
    Some(s)
}

impl Pool {
    /// The next never-used slab, its header written.
    fn take_fresh(&mut self) -> Option<&'static Slab> {
        if self.fresh == self.fresh_end {
            return None;
        }
        let s = self.fresh as *mut Slab;
        self.fresh += SLAB_SIZE;
        // SAFETY: a never-used slab of a live segment, exclusively ours under the lock.
        unsafe {
            s.write(Slab::empty());
            Some(&*s)
        }
    }
}

/// A slab for class `class`: an abandoned one with live blocks (adopted, its lists intact) or
/// an unused one, mapping a new segment when none is left. The second value is true for an
/// adopted slab. None when the OS refuses memory.
pub(crate) fn acquire(class: usize) -> Option<(&'static Slab, bool)> {
    let mut pool = POOL.lock();
    if let Some(s) = pop(&mut pool.abandoned[class]) {
        return Some((s, true));
    }
    if let Some(s) = pop(&mut pool.free).or_else(|| pool.take_fresh()) {
        return Some((s, false));
    }
    drop(pool);
    let base = OS_PAGES.reserve(CHUNK_SIZE, CHUNK_SIZE, TAG_TINY) as usize;
    if base == 0 {
        return None;
    }
    let mut pool = POOL.lock();
    // Another thread may have installed a segment meanwhile: keep its rest on the free list.
    while let Some(s) = pool.take_fresh() {
        push(&mut pool.free, s);
    }
    pool.fresh = base;
    pool.fresh_end = base + CHUNK_SIZE;
    pool.take_fresh().map(|s| (s, false))
}

/// Returns a slab with no live blocks to the pool.
pub(crate) fn release(s: &Slab) {
    debug_assert_eq!(s.used.get(), 0);
    s.owner.store(0, Ordering::Relaxed);
    s.capacity.set(0);
    s.carved.set(0);
    s.block_size.set(0);
    push(&mut POOL.lock().free, s);
}

/// Hands a slab with live blocks to whichever thread next needs its class.
pub(crate) fn abandon(s: &Slab) {
    s.owner.store(0, Ordering::Release);
    let class = s.class.get() as usize;
    push(&mut POOL.lock().abandoned[class], s);
}

/// Counts slabs taken by heaps.
pub(crate) fn count_acquired() {
    stats::TINY_SLABS.add(1);
}
