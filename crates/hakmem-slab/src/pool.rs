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

use crate::meta::Slab;
use crate::{Geometry, slab_size};
use core::ptr;
use hakmem_core::config;
use hakmem_core::os::{self, PAGE};
use hakmem_core::purge::{self, Advice, Stage};
use hakmem_core::segment::{OS_PAGES, OsPages, PageSource};
use hakmem_core::stats::TierCounters;
use hakmem_core::sync::{AtomicPtr, AtomicU32, AtomicUsize, Mutex, Ordering, RawLock};

pub use crate::protocol::MAX_CLASSES;
use crate::protocol::{self, Lists, seg_first};

/// The metadata of the slab holding `p`.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags `G::TAG` (a segment of geometry `G`): the slab is
/// then mapped, and its header was written before any block of it was handed out (a never-used
/// slab reads as zeros: capacity 0, no owner). Segments are never unmapped while they hold
/// slabs in use.
#[inline(always)]
pub(crate) unsafe fn slab_of<G: Geometry>(p: *mut u8) -> &'static Slab {
    let s = (p as usize & !(slab_size::<G>() - 1)) as *const Slab;
    // SAFETY: forwarded contract.
    unsafe { &*s }
}

/// The shared slab pool of one tier, taking its segments from the page source `S`.
pub struct SlabPool<S: PageSource + 'static = OsPages> {
    /// Where the segments come from and go back to.
    pages: &'static S,
    lists: Mutex<Lists>,
    /// The `pthread` key whose destructor abandons a thread's heap of this tier.
    pub(crate) exit_key: AtomicU32,
    /// The tier's slab size, set when the pool first maps memory (0 before: not registered
    /// with the purge passes yet).
    slab_size: AtomicUsize,
    /// The tier's segment size, set with `slab_size`.
    segment: AtomicUsize,
    /// The tier's counters, set with `slab_size`.
    counters: AtomicPtr<TierCounters>,
    /// `fn()` trimming the calling thread's heap of this tier (0 until a heap exists).
    local_trim: AtomicUsize,
    /// `fn(bool, bool) -> bool` trimming the other threads' heaps of this tier from outside (0
    /// until a heap registers).
    outside_trim: AtomicUsize,
    /// `fn()` cutting the list of heaps down to the calling thread's in a `fork` child.
    registry_after_fork: AtomicUsize,
    /// The tier's set-up heaps (a list through the heaps, under the heap registry's lock).
    pub(crate) heaps: AtomicPtr<()>,
}

/// Applies `advice` to a dead slab's pages after its header page (which keeps the metadata and
/// the free-list link).
///
/// # Safety
/// The slab must be dead and not in use by anyone else.
unsafe fn purge_body<S: PageSource>(
    pages: &S,
    s: &Slab,
    size: usize,
    advice: Advice,
    stage: Stage,
) -> Stage {
    if size <= PAGE {
        return stage;
    }
    let body = (s as *const Slab as *mut u8).wrapping_add(PAGE);
    // SAFETY: forwarded contract; the body lies inside the slab.
    unsafe { purge::apply(pages, advice, body, size - PAGE, stage) }
}

impl Default for SlabPool {
    fn default() -> Self {
        Self::new()
    }
}

impl SlabPool {
    /// An empty pool over the OS's pages.
    pub const fn new() -> SlabPool {
        SlabPool::with_source(&OS_PAGES)
    }
}

impl<S: PageSource + 'static> SlabPool<S> {
    /// An empty pool whose segments come from `pages`.
    pub const fn with_source(pages: &'static S) -> SlabPool<S> {
        SlabPool {
            pages,
            lists: Mutex::new(Lists::new()),
            exit_key: AtomicU32::new(u32::MAX),
            slab_size: AtomicUsize::new(0),
            segment: AtomicUsize::new(0),
            counters: AtomicPtr::new(ptr::null_mut()),
            local_trim: AtomicUsize::new(0),
            outside_trim: AtomicUsize::new(0),
            registry_after_fork: AtomicUsize::new(0),
            heaps: AtomicPtr::new(ptr::null_mut()),
        }
    }

    pub(crate) fn set_outside_trim(&self, f: fn(bool, bool) -> bool, after_fork: fn()) {
        self.outside_trim.store(f as usize, Ordering::Release);
        self.registry_after_fork
            .store(after_fork as usize, Ordering::Release);
    }

    /// In a `fork` child, with the registry lock reset: the list of set-up heaps keeps only
    /// the calling thread's (see `heap::registry_after_fork`).
    pub(crate) fn registry_after_fork(&self) {
        let f = self.registry_after_fork.load(Ordering::Acquire);
        if f != 0 {
            // SAFETY: the word was stored from a `fn()` by `set_outside_trim`.
            let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
            f();
        }
    }

    /// Trims the other threads' heaps of this tier (see `heap::trim_others`): their unused
    /// full slabs, and their empty caches when `all` or when they idled since the last trim.
    /// `background`: only try the locks; false when one was busy (nothing done).
    pub(crate) fn trim_others(&self, all: bool, background: bool) -> bool {
        let f = self.outside_trim.load(Ordering::Acquire);
        if f == 0 {
            return true;
        }
        // SAFETY: the word was stored from a `fn(bool, bool) -> bool` by `set_outside_trim`.
        let f: fn(bool, bool) -> bool = unsafe { core::mem::transmute::<usize, _>(f) };
        f(all, background)
    }

    /// Runs `collect` under the pool lock, putting every chain of dead slabs (linked through
    /// `next`) it hands to its argument on the free list. `background`: only try the lock;
    /// false when it was busy (`collect` not run).
    pub(crate) fn give_back_with(
        &self,
        background: bool,
        collect: impl FnOnce(&mut dyn FnMut(*mut Slab)),
    ) -> bool {
        let mut l = match background {
            true => match self.lists.try_lock() {
                Some(l) => l,
                None => return false,
            },
            false => self.lists.lock(),
        };
        let segment = self.segment.load(Ordering::Relaxed);
        collect(&mut |chain| {
            let mut p = chain;
            // SAFETY: chain entries are dead slabs handed over by their heap, ours now.
            while let Some(s) = unsafe { p.as_ref() } {
                p = s.next.get();
                self.prepare_release(s);
                l.free_push(s, segment);
            }
        });
        true
    }

    pub(crate) fn set_local_trim(&self, f: fn()) {
        self.local_trim.store(f as usize, Ordering::Release);
    }

    /// Trims the calling thread's heap of this tier (see `Heap::trim`).
    pub(crate) fn trim_local(&self) {
        let f = self.local_trim.load(Ordering::Acquire);
        if f != 0 {
            // SAFETY: the word was stored from a `fn()` by `set_local_trim`.
            let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
            f();
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
        purge::tick(false);
        let mut l = self.lists.lock();
        if let Some(s) = l.take_abandoned(class) {
            return Some((s, true));
        }
        if let Some(s) = l.free_pop(G::SEGMENT).or_else(|| l.take_fresh(size)) {
            return Some((s, false));
        }
        drop(l);
        let base = self.pages.reserve(G::SEGMENT, G::SEGMENT, G::TAG, G::DENSE) as usize;
        if base == 0 {
            return None;
        }
        self.segment.store(G::SEGMENT, Ordering::Relaxed);
        self.counters.store(
            G::counters() as *const TierCounters as *mut TierCounters,
            Ordering::Relaxed,
        );
        if self.slab_size.swap(size, Ordering::Relaxed) == 0 {
            purge::register(self);
        }
        let mut l = self.lists.lock();
        // Another thread may have installed a segment meanwhile: keep its rest on the free list.
        while let Some(s) = l.take_fresh(size) {
            l.free_push(s, G::SEGMENT);
        }
        l.fresh = base;
        l.fresh_end = base + G::SEGMENT;
        l.take_fresh(size).map(|s| (s, false))
    }

    /// Returns a slab with no live blocks. Its pages stay resident for reuse until the purge
    /// policy ages them (at once under `dontneed`).
    pub(crate) fn release(&self, s: &Slab) {
        self.prepare_release(s);
        let segment = self.segment.load(Ordering::Relaxed);
        self.lists.lock().free_push(s, segment);
        hakmem_core::purger::notify(self.slab_size.load(Ordering::Relaxed));
        purge::tick(false);
    }

    /// Clears a dead slab's header for the free list (and purges its body at once under
    /// `dontneed`); outside the lock.
    fn prepare_release(&self, s: &Slab) {
        protocol::retire(s);
        let size = self.slab_size.load(Ordering::Relaxed);
        let mut stage = Stage::Hot;
        if config::get().eager_purge() {
            // SAFETY: the slab is dead and still ours (not yet on the free list).
            stage = unsafe { purge_body(self.pages, s, size, Advice::DontNeed, stage) };
        }
        s.stage.set(stage as u8);
        s.freed_at.set(os::now_ms());
    }

    /// Thread exit: gives back the slabs of the chain `dead` (linked through `next`, no live
    /// block) and abandons those of the chain `live` (live blocks, adopted later), under one
    /// lock acquisition.
    pub(crate) fn give_back(&self, dead: *mut Slab, live: *mut Slab) {
        let mut p = dead;
        // SAFETY: chain entries are slab headers of the exiting thread, ours until listed.
        while let Some(s) = unsafe { p.as_ref() } {
            p = s.next.get();
            self.prepare_release(s);
        }
        let segment = self.segment.load(Ordering::Relaxed);
        let mut l = self.lists.lock();
        let mut p = dead;
        let mut n = 0;
        // SAFETY: as above (`next` is read before the push rewrites it).
        while let Some(s) = unsafe { p.as_ref() } {
            p = s.next.get();
            l.free_push(s, segment);
            n += 1;
        }
        let mut p = live;
        // SAFETY: as above.
        while let Some(s) = unsafe { p.as_ref() } {
            p = s.next.get();
            l.abandon(s);
        }
        drop(l);
        hakmem_core::purger::notify(n * self.slab_size.load(Ordering::Relaxed));
        purge::tick(false);
    }

    /// Adopts the abandoned slab `s` for a thread about to free into it: true when it was
    /// still abandoned (its owner is then 0 and the caller must claim it), false when someone
    /// else took it first.
    pub(crate) fn adopt(&self, s: &Slab) -> bool {
        self.lists.lock().adopt(s)
    }

    /// Ages every free slab at `now` (`force`: purge them all now). A slab due to go cold whose
    /// whole segment is free takes its segment back to the OS instead (one `munmap`, nothing
    /// left resident). Runs under the lock, so no slab is taken while its pages go back. True
    /// Returns the bytes of free slabs not cold yet (a later pass has work). `background`: only
    /// try the lock (the purger thread never waits for one: see `hakmem_core::purger`); busy counts
    /// one byte.
    pub(crate) fn purge(&self, now: u64, force: bool, background: bool) -> usize {
        let cfg = config::get();
        let size = self.slab_size.load(Ordering::Relaxed);
        let segment = self.segment.load(Ordering::Relaxed);
        if size == 0 || cfg.free_policy == config::FreePolicy::Keep {
            return 0;
        }
        let mut waiting = 0;
        let per_segment = (segment / size) as u32;
        let mut l = match background {
            true => match self.lists.try_lock() {
                Some(l) => l,
                None => return 1,
            },
            false => self.lists.lock(),
        };
        // Abandoned slabs whose blocks have all been freed since (remotely) are free slabs now.
        // SAFETY: set together with `slab_size`, which is non-zero here.
        let counters = unsafe { &*self.counters.load(Ordering::Relaxed) };
        l.reap_abandoned(counters, segment);
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
            let base = s as *const Slab as usize & !(segment - 1);
            let in_fresh = l.fresh < l.fresh_end && l.fresh_end - segment == base;
            if advice == Advice::DontNeed
                && seg_first(s, segment).seg_free.get() == per_segment
                && !in_fresh
            {
                // Step the cursor past this segment, then unlink all its slabs and unmap it.
                // SAFETY: as above.
                while let Some(n) = unsafe { p.as_ref() } {
                    if n as *const Slab as usize & !(segment - 1) != base {
                        break;
                    }
                    p = n.next.get();
                }
                for i in 0..per_segment as usize {
                    // SAFETY: every slab of the segment is on the free list (the count says so).
                    l.free_remove(unsafe { &*((base + i * size) as *const Slab) }, segment);
                }
                // SAFETY: the whole segment is free and off every list.
                unsafe { self.pages.release(base as *mut u8, segment) };
                continue;
            }
            if advice != Advice::Wait {
                // SAFETY: as above.
                let new = unsafe { purge_body(self.pages, s, size, advice, stage) };
                s.stage.set(new as u8);
                s.freed_at.set(now);
            }
            // Whether a later pass would still age it (a `free`-policy slab stays warm).
            let later = purge::decide(
                cfg.free_policy,
                0,
                Stage::from_u8(s.stage.get()),
                0,
                u64::MAX,
                false,
            );
            if later != Advice::Wait {
                waiting += size;
            }
        }
        waiting
    }
}

impl<S: PageSource + 'static> purge::Purgeable for SlabPool<S> {
    fn purge(&self, now: u64, force: bool, background: bool) -> usize {
        SlabPool::purge(self, now, force, background)
    }
    fn trim_local(&self) {
        SlabPool::trim_local(self)
    }
    fn trim_others(&self, all: bool, background: bool) -> bool {
        SlabPool::trim_others(self, all, background)
    }
    fn after_fork_child(&self) {
        self.registry_after_fork()
    }
}
