//! Tiny segments and the shared slab pool.
//!
//! A Tiny segment is one 4 MiB chunk: slab 0 holds the [`TinySegment`] header (the metadata of
//! all 64 slabs), slabs 1..64 hold blocks. `free(p)` reaches the metadata of `p`'s slab with a
//! mask and a shift, no search.
//!
//! The pool (one lock, taken about once per 64 KiB of allocation, never per block) keeps unused
//! slabs and, per class, the slabs abandoned by threads that exited with live blocks in them,
//! which the next thread needing that class adopts.

use crate::slab::{SLAB_SHIFT, SLAB_SIZE, Slab};
use core::ptr;
use hakmem_core::class::TINY_CLASS_COUNT;
use hakmem_core::map::{CHUNK_SIZE, TAG_TINY};
use hakmem_core::segment::{OS_PAGES, PageSource};
use hakmem_core::stats;
use hakmem_core::sync::{Mutex, Ordering, RawLock};

/// Slabs per segment (slab 0 is the header).
pub const SLABS: usize = CHUNK_SIZE / SLAB_SIZE;

/// The header of a Tiny segment, at its base.
#[repr(C)]
pub struct TinySegment {
    slabs: [Slab; SLABS],
}

const _: () = assert!(core::mem::size_of::<TinySegment>() <= SLAB_SIZE);

/// The metadata of the slab holding `p`, which must lie in a Tiny segment.
#[inline(always)]
pub fn slab_of(p: *mut u8) -> &'static Slab {
    let addr = p as usize;
    let seg = (addr & !(CHUNK_SIZE - 1)) as *const TinySegment;
    let i = (addr >> SLAB_SHIFT) & (SLABS - 1);
    // SAFETY: the owner map tagged the chunk Tiny, so its header is mapped and initialised,
    // and segments are never unmapped while they hold slabs in use.
    unsafe { &*ptr::addr_of!((*seg).slabs).cast::<Slab>().add(i) }
}

struct Pool {
    /// Unused slabs, linked through `next`.
    free: *mut Slab,
    /// Abandoned slabs per class, linked through `next`.
    abandoned: [*mut Slab; TINY_CLASS_COUNT],
}

// SAFETY: the lists are only touched under the pool mutex.
unsafe impl Send for Pool {}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: ptr::null_mut(),
    abandoned: [ptr::null_mut(); TINY_CLASS_COUNT],
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

/// A slab for class `class`: an abandoned one with live blocks (adopted, its lists intact) or
/// an unused one, mapping a new segment when none is left. The second value is true for an
/// adopted slab. None when the OS refuses memory.
pub(crate) fn acquire(class: usize) -> Option<(&'static Slab, bool)> {
    let mut pool = POOL.lock();
    if let Some(s) = pop(&mut pool.abandoned[class]) {
        return Some((s, true));
    }
    if let Some(s) = pop(&mut pool.free) {
        return Some((s, false));
    }
    drop(pool);
    let base = OS_PAGES.reserve(CHUNK_SIZE, CHUNK_SIZE, TAG_TINY);
    if base.is_null() {
        return None;
    }
    let seg = base.cast::<TinySegment>();
    // SAFETY: a fresh zeroed segment; slab headers are initialised before anyone sees them.
    let slabs = unsafe {
        let slabs = ptr::addr_of_mut!((*seg).slabs).cast::<Slab>();
        for i in 0..SLABS {
            slabs.add(i).write(Slab::empty());
            (*slabs.add(i)).start.set(base.add(i * SLAB_SIZE));
        }
        core::slice::from_raw_parts(slabs, SLABS)
    };
    let mut pool = POOL.lock();
    for s in &slabs[2..] {
        push(&mut pool.free, s);
    }
    Some((&slabs[1], false))
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
