//! The hand-over protocol of slabs between threads' heaps and their tier's pool: the steps
//! that [`crate::heap`] and [`crate::pool`] run, and that the loom models
//! (`loom_abandon.rs`) compose into racing threads, so the models check this code itself.
//!
//! The `Cell` fields of a slab belong to whoever owns it: its thread, or whoever holds the
//! pool lock while it sits on a pool list ([`Lists`], only touched under that lock). `owner`
//! is an atomic that every freeing thread reads to route its free (own thread: the free list;
//! [`ABANDONED`]: try to adopt the slab, then free locally; anyone else: the atomic remote
//! list). An exiting thread touches no block: a slab with no live block drops its remote list
//! and goes to the free list ([`exit_dead`], [`retire`]); the others are linked into the
//! abandoned list and then marked abandoned, under the lock ([`Lists::abandon`]). Every way
//! out of the abandoned list ([`Lists::take_abandoned`], a free's [`Lists::adopt`], the purge
//! pass's [`Lists::reap_abandoned`]) runs under the lock and only while the slab is still
//! there, and resets `owner` to 0, so a slab has one owner at a time; remote frees reach the
//! new owner ([`claim`]) through the remote list's Release push / Acquire take.

use crate::meta::{ABANDONED, Slab, link_front, unlink};
use core::ptr;
use hakmem_core::stats::TierCounters;
use hakmem_core::sync::Ordering;

/// The most classes a tier may have.
pub const MAX_CLASSES: usize = 48;

/// The pool's lists of slabs, under its lock.
pub(crate) struct Lists {
    /// Unused slabs, doubly linked through `next`/`prev`, counted per segment in the segment's
    /// first slab (`seg_free`).
    pub(crate) free: *mut Slab,
    /// Abandoned slabs per class, doubly linked through `next`/`prev` (a thread freeing into
    /// one adopts it from the middle of its list).
    pub(crate) abandoned: [*mut Slab; MAX_CLASSES],
    /// The never-used slabs of the newest segment: `[fresh, fresh_end)`.
    pub(crate) fresh: usize,
    pub(crate) fresh_end: usize,
}

// SAFETY: the lists are only touched under the pool mutex.
unsafe impl Send for Lists {}

/// The first slab of the segment of `segment` bytes holding `s`: it keeps the segment's count.
pub(crate) fn seg_first(s: &Slab, segment: usize) -> &'static Slab {
    // SAFETY: segments are aligned to their size and their first slab's header page is never
    // purged while the segment is mapped.
    unsafe { &*((s as *const Slab as usize & !(segment - 1)) as *const Slab) }
}

impl Lists {
    /// Empty lists.
    pub(crate) const fn new() -> Lists {
        Lists {
            free: ptr::null_mut(),
            abandoned: [ptr::null_mut(); MAX_CLASSES],
            fresh: 0,
            fresh_end: 0,
        }
    }

    /// Takes `s` off its class's abandoned list and out of the abandoned state (owner 0: a
    /// racing free now pushes remotely, and the new owner collects it).
    pub(crate) fn abandoned_remove(&mut self, s: &Slab) {
        unlink(&mut self.abandoned[s.class.get() as usize], s);
        s.owner.store(0, Ordering::Relaxed);
    }

    pub(crate) fn free_push(&mut self, s: &Slab, segment: usize) {
        link_front(&mut self.free, s);
        let first = seg_first(s, segment);
        first.seg_free.set(first.seg_free.get() + 1);
    }

    pub(crate) fn free_remove(&mut self, s: &Slab, segment: usize) {
        unlink(&mut self.free, s);
        let first = seg_first(s, segment);
        first.seg_free.set(first.seg_free.get() - 1);
    }

    pub(crate) fn free_pop(&mut self, segment: usize) -> Option<&'static Slab> {
        // SAFETY: as in `free_push`.
        let s = unsafe { self.free.as_ref()? };
        self.free_remove(s, segment);
        Some(s)
    }

    /// The next never-used slab, its header written.
    pub(crate) fn take_fresh(&mut self, slab_size: usize) -> Option<&'static Slab> {
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

    /// Thread exit: links `s`, a slab of the exiting thread with live blocks, into its class's
    /// abandoned list, then marks it [`ABANDONED`] (after linking: a free that sees
    /// `ABANDONED` and then takes the lock finds the slab on its list). No block is touched.
    pub(crate) fn abandon(&mut self, s: &Slab) {
        link_front(&mut self.abandoned[s.class.get() as usize], s);
        s.owner.store(ABANDONED, Ordering::Release);
    }

    /// The head of `class`'s abandoned list, taken off it (ownerless: the caller claims it).
    pub(crate) fn take_abandoned(&mut self, class: usize) -> Option<&'static Slab> {
        // SAFETY: abandoned-list entries are slab headers in live segments.
        let s = unsafe { self.abandoned[class].as_ref()? };
        self.abandoned_remove(s);
        Some(s)
    }

    /// A free's adoption of `s`: true when it was still abandoned (now taken off its list,
    /// ownerless: the caller claims it), false when someone else took it first.
    pub(crate) fn adopt(&mut self, s: &Slab) -> bool {
        if s.owner.load(Ordering::Relaxed) != ABANDONED {
            return false;
        }
        self.abandoned_remove(s);
        true
    }

    /// The purge pass's walk of the abandoned lists: every slab whose blocks have all been
    /// freed since its thread left (remotely) drops its remote list and moves to the free list
    /// (segments of `segment` bytes), aged as long free, so the same pass can give it back.
    pub(crate) fn reap_abandoned(&mut self, counters: &TierCounters, segment: usize) {
        for class in 0..MAX_CLASSES {
            let mut p = self.abandoned[class];
            // SAFETY: abandoned slabs are ownerless, touched only under the pool lock.
            while let Some(s) = unsafe { p.as_ref() } {
                p = s.next.get();
                if s.live() == 0 {
                    self.abandoned_remove(s);
                    s.drop_remote(counters);
                    s.unformat();
                    // Its last block went at some unknown time since the thread left.
                    s.stage.set(0);
                    s.freed_at.set(0);
                    self.free_push(s, segment);
                }
            }
        }
    }
}

/// Makes `s`, just taken off an abandoned list, the slab of the heap `heap_id` of thread `tid`:
/// its owner from now on, with the remote frees that reached it collected.
pub(crate) fn claim(s: &Slab, heap_id: u64, tid: usize, counters: &TierCounters) {
    s.heap_id.set(heap_id);
    s.owner.store(tid, Ordering::Relaxed);
    s.collect(counters);
}

/// Thread exit's sorting of one of its slabs: true when no block of `s` is live any more (its
/// remote list dropped: it goes back to the pool's free list), false when it must be
/// abandoned.
pub(crate) fn exit_dead(s: &Slab, counters: &TierCounters) -> bool {
    if s.live() != 0 {
        return false;
    }
    s.drop_remote(counters);
    true
}

/// A dead slab leaves its last owner for the pool's free list: ownerless and unformatted.
pub(crate) fn retire(s: &Slab) {
    debug_assert_eq!(s.used.get(), 0);
    debug_assert!(s.remote.is_empty());
    s.owner.store(0, Ordering::Relaxed);
    s.unformat();
}
