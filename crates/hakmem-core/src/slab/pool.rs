//! The shared slab pool of one tier, and the segments behind it.
//!
//! A segment is `G::SEGMENT` bytes (whole 4 MiB chunks) cut into slabs of `2^G::SLAB_SHIFT`
//! bytes, each with its metadata in its first 128 bytes: `free(p)` reaches the metadata of `p`'s
//! slab by clearing the low bits of `p`, one instruction, no search.
//!
//! The pool (one lock, taken once per slab, never per block) keeps unused slabs, the never-used
//! rest of the newest segment (handed out in address order, untouched until then), and, per
//! class, the slabs abandoned by threads that exited with live blocks in them, which the next
//! thread needing that class adopts.

use super::meta::Slab;
use super::{Geometry, slab_size};
use crate::config::{self, FreePolicy};
use crate::os::{self, PAGE};
use crate::purge::{self, Advice, Stage};
use crate::segment::{OS_PAGES, PageSource};
use crate::sync::{AtomicU32, AtomicUsize, Mutex, Ordering, RawLock};
use core::ptr;

/// The most classes a tier may have.
pub const MAX_CLASSES: usize = 48;

/// The metadata of the slab holding `p`, which must lie in a segment of geometry `G`.
#[inline(always)]
pub fn slab_of<G: Geometry>(p: *mut u8) -> &'static Slab {
    let s = (p as usize & !(slab_size::<G>() - 1)) as *const Slab;
    // SAFETY: the owner map tagged the chunk as `G`'s, so the slab is mapped; its header was
    // written before any block of it was handed out (a never-used slab reads as zeros: capacity
    // 0, no owner). Segments are never unmapped while they hold slabs in use.
    unsafe { &*s }
}

struct Lists {
    /// Unused slabs, linked through `next`.
    free: *mut Slab,
    /// Abandoned slabs per class, linked through `next`.
    abandoned: [*mut Slab; MAX_CLASSES],
    /// The never-used slabs of the newest segment: `[fresh, fresh_end)`.
    fresh: usize,
    fresh_end: usize,
}

// SAFETY: the lists are only touched under the pool mutex.
unsafe impl Send for Lists {}

/// The shared slab pool of one tier.
pub struct SlabPool {
    lists: Mutex<Lists>,
    /// The `pthread` key whose destructor abandons a thread's heap of this tier.
    pub(crate) exit_key: AtomicU32,
    /// The tier's slab size, set when the pool first maps memory (0 before: not registered
    /// with the purge passes yet).
    slab_size: AtomicUsize,
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

/// Applies `advice` to a dead slab's pages after its header page (which keeps the metadata and
/// the free-list link).
///
/// # Safety
/// The slab must be dead and not in use by anyone else.
unsafe fn purge_body(s: &Slab, size: usize, advice: Advice, stage: Stage) -> Stage {
    if size <= PAGE {
        return stage;
    }
    let body = (s as *const Slab as *mut u8).wrapping_add(PAGE);
    // SAFETY: forwarded contract; the body lies inside the slab.
    unsafe { purge::apply(advice, body, size - PAGE, stage) }
}

impl Lists {
    /// The next never-used slab, its header written.
    fn take_fresh(&mut self, slab_size: usize) -> Option<&'static Slab> {
        if self.fresh == self.fresh_end {
            return None;
        }
        let s = self.fresh as *mut Slab;
        self.fresh += slab_size;
        // SAFETY: a never-used slab of a live segment, exclusively ours under the lock.
        unsafe {
            s.write(Slab::empty());
            Some(&*s)
        }
    }
}

impl Default for SlabPool {
    fn default() -> Self {
        Self::new()
    }
}

impl SlabPool {
    /// An empty pool.
    pub const fn new() -> SlabPool {
        SlabPool {
            lists: Mutex::new(Lists {
                free: ptr::null_mut(),
                abandoned: [ptr::null_mut(); MAX_CLASSES],
                fresh: 0,
                fresh_end: 0,
            }),
            exit_key: AtomicU32::new(u32::MAX),
            slab_size: AtomicUsize::new(0),
        }
    }

    /// The pool lock (for `fork` handlers).
    pub fn lock(&self) -> &RawLock {
        self.lists.raw()
    }

    /// A slab for `class`: an abandoned one with live blocks (adopted, its lists intact) or an
    /// unused one, mapping a new segment when none is left. The flag is true for an adopted
    /// slab. None when the OS refuses memory.
    pub(crate) fn acquire<G: Geometry>(
        &'static self,
        class: usize,
    ) -> Option<(&'static Slab, bool)> {
        let size = slab_size::<G>();
        purge::tick();
        let mut l = self.lists.lock();
        if let Some(s) = pop(&mut l.abandoned[class]) {
            return Some((s, true));
        }
        if let Some(s) = pop(&mut l.free).or_else(|| l.take_fresh(size)) {
            return Some((s, false));
        }
        drop(l);
        let base = OS_PAGES.reserve(G::SEGMENT, G::SEGMENT, G::TAG) as usize;
        if base == 0 {
            return None;
        }
        if self.slab_size.swap(size, Ordering::Relaxed) == 0 {
            purge::register(self);
        }
        let mut l = self.lists.lock();
        // Another thread may have installed a segment meanwhile: keep its rest on the free list.
        while let Some(s) = l.take_fresh(size) {
            push(&mut l.free, s);
        }
        l.fresh = base;
        l.fresh_end = base + G::SEGMENT;
        l.take_fresh(size).map(|s| (s, false))
    }

    /// Returns a slab with no live blocks. Its pages stay resident for reuse until the purge
    /// policy ages them (at once under `dontneed`).
    pub(crate) fn release(&self, s: &Slab) {
        debug_assert_eq!(s.used.get(), 0);
        s.owner.store(0, Ordering::Relaxed);
        s.capacity.set(0);
        s.carved.set(0);
        s.block_size.set(0);
        let size = self.slab_size.load(Ordering::Relaxed);
        let mut stage = Stage::Hot;
        if config::get().free_policy == FreePolicy::DontNeed {
            // SAFETY: the slab is dead and still ours (not yet on the free list).
            stage = unsafe { purge_body(s, size, Advice::DontNeed, stage) };
        }
        s.stage.set(stage as u8);
        s.freed_at.set(os::now_ms());
        push(&mut self.lists.lock().free, s);
        purge::tick();
    }

    /// Ages every free slab at `now` (`force`: purge them all now). Runs under the lock, so no
    /// slab is taken while its pages are being given back.
    pub(crate) fn purge(&self, now: u64, force: bool) {
        let cfg = config::get();
        let size = self.slab_size.load(Ordering::Relaxed);
        let l = self.lists.lock();
        let mut p = l.free;
        // SAFETY: free-list entries are dead slabs of live segments, ours under the lock.
        while let Some(s) = unsafe { p.as_ref() } {
            p = s.next.get();
            let stage = Stage::from_u8(s.stage.get());
            let advice = purge::decide(
                cfg.free_policy,
                cfg.purge_delay_ms,
                stage,
                s.freed_at.get(),
                now,
                force,
            );
            if advice != Advice::Wait {
                // SAFETY: as above.
                let new = unsafe { purge_body(s, size, advice, stage) };
                s.stage.set(new as u8);
                s.freed_at.set(now);
            }
        }
    }
    /// Hands a slab with live blocks to whichever thread next needs its class.
    pub(crate) fn abandon(&self, s: &Slab) {
        s.owner.store(0, Ordering::Release);
        let class = s.class.get() as usize;
        push(&mut self.lists.lock().abandoned[class], s);
    }
}
