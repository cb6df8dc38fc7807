//! The thread heap: per-thread state of one slab tier, living in thread-local storage.
//!
//! `direct[d]` (d: the tier's direct index — word size for Tiny, class for the pools) points at
//! the slab currently serving it (the head of its class's available queue) or at the shared [`EMPTY`] slab, whose free list is always empty: so the
//! first allocation of a fresh thread simply falls into the slow path, which sets the heap up.
//! Each class has a queue of available slabs and a queue of full ones; a few empty slabs are
//! cached per heap before going back to the pool.
//!
//! Remote frees: a free into another thread's slab is held back in the heap's `Pending`
//! table with the other frees into that slab, and the lot is pushed with one CAS (when the
//! entry reaches the slab's `remote_batch`, when another slab needs the entry, at a trim, at
//! thread exit). A held block counts as live in its slab until pushed.
//!
//! Thread exit: a `pthread_key_create` destructor (run after the thread's C++/Rust TLS
//! destructors) pushes the held remote frees, then hands every slab back under one pool lock —
//! empty ones to the pool, the rest abandoned — and resets the heap, so a late malloc on the
//! exiting thread simply sets it up again. Nothing here allocates, and no block is touched but
//! the last of each held chain (its link). An abandoned slab is adopted by the first set-up
//! thread that frees into it (the successor of a thread that handed its blocks on, as in
//! Larson: its frees turn local at once), or by the next thread needing a slab of its class,
//! or given back by a purge pass once all its blocks are free.

use crate::link;
use crate::meta::{ABANDONED, FULL, SECURE, Slab};
use crate::pool::slab_of;
use crate::protocol;
use crate::remote::Block;
use crate::{Geometry, slab_size};
use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr;
use hakmem_core::os::thread_id;
use hakmem_core::sync::{AtomicU32, AtomicU64, Ordering, RawLock};

/// The slab every unused direct entry points to: it never has a free block.
pub static EMPTY: Slab = Slab::empty_at(EMPTY_PTR);
const EMPTY_PTR: *mut Slab = ptr::addr_of!(EMPTY) as *mut Slab;
/// How many times one slow path may send a nearly exhausted head to the back of its queue.
const ROTATE_LIMIT: u32 = 4;

const UNINIT: u8 = 0;
const ACTIVE: u8 = 1;

/// A doubly linked queue of slabs (through `Slab::next`/`prev`).
struct Queue {
    head: Cell<*mut Slab>,
    tail: Cell<*mut Slab>,
}

impl Queue {
    const fn new() -> Queue {
        Queue {
            head: Cell::new(ptr::null_mut()),
            tail: Cell::new(ptr::null_mut()),
        }
    }

    fn push_front(&self, s: &Slab) {
        let p = s as *const Slab as *mut Slab;
        s.prev.set(ptr::null_mut());
        s.next.set(self.head.get());
        match unsafe_ref(self.head.get()) {
            Some(h) => h.prev.set(p),
            None => self.tail.set(p),
        }
        self.head.set(p);
    }

    fn push_back(&self, s: &Slab) {
        let p = s as *const Slab as *mut Slab;
        s.next.set(ptr::null_mut());
        s.prev.set(self.tail.get());
        match unsafe_ref(self.tail.get()) {
            Some(t) => t.next.set(p),
            None => self.head.set(p),
        }
        self.tail.set(p);
    }

    fn remove(&self, s: &Slab) {
        let (prev, next) = (s.prev.get(), s.next.get());
        match unsafe_ref(prev) {
            Some(p) => p.next.set(next),
            None => self.head.set(next),
        }
        match unsafe_ref(next) {
            Some(n) => n.prev.set(prev),
            None => self.tail.set(prev),
        }
        s.next.set(ptr::null_mut());
        s.prev.set(ptr::null_mut());
    }

    fn pop(&self) -> Option<&'static Slab> {
        let s = unsafe_ref(self.head.get())?;
        self.remove(s);
        Some(s)
    }
}

/// Slab pointers in heap queues always point at live slab headers.
fn unsafe_ref(p: *mut Slab) -> Option<&'static Slab> {
    // SAFETY: queue links are null or slab headers in segments that are never unmapped while
    // a heap holds their slabs.
    unsafe { p.as_ref() }
}

/// Remote frees into one slab held back by the freeing thread, to be pushed onto the slab's
/// remote list together with one CAS: in a producer/consumer pattern every free is remote, and
/// a CAS per block keeps the slab's shared line moving between the freeing cores. A held block
/// still counts as live in its slab (`used` covers it, the remote count does not), so the slab
/// cannot be given back or formatted anew while a thread holds it.
struct Pending {
    slab: Cell<*mut Slab>,
    first: Cell<*mut Block>,
    last: Cell<*mut Block>,
    n: Cell<u32>,
}

impl Pending {
    const fn new() -> Pending {
        Pending {
            slab: Cell::new(ptr::null_mut()),
            first: Cell::new(ptr::null_mut()),
            last: Cell::new(ptr::null_mut()),
            n: Cell::new(0),
        }
    }

    /// Pushes the held blocks, if any, and empties the entry.
    #[inline(never)]
    fn flush(&self) {
        let s = self.slab.replace(ptr::null_mut());
        if let Some(s) = unsafe_ref(s) {
            // SAFETY: the entry held `n` dead blocks of `s`, linked first to last, given up by
            // their frees; `s` lives while they count as used.
            unsafe {
                s.remote
                    .push_chain(self.first.get(), self.last.get(), self.n.get(), s.end())
            };
        }
    }
}

/// Blocks a heap in the hardened mode holds freed before they can be handed out again.
const QUARANTINE: usize = 16;

/// Slabs a heap holds remote frees for at once (direct-mapped by slab address).
const PENDING: usize = 32;
/// The most remote frees held back per slab.
const MAX_BATCH: usize = 32;

/// How many remote frees into a slab of `bs`-byte blocks a heap of tier `G` holds back.
const fn remote_batch<G: Geometry>(bs: usize) -> u32 {
    let n = G::REMOTE_BATCH_BYTES / bs;
    (if n < 1 {
        1
    } else if n > MAX_BATCH {
        MAX_BATCH
    } else {
        n
    }) as u32
}

/// Per-thread state of tier `G`, with `D` direct entries and `C` classes.
#[repr(C)]
pub struct Heap<G: Geometry, const D: usize, const C: usize> {
    /// Slab serving each direct index: the hot path's only table.
    direct: [Cell<*mut Slab>; D],
    avail: [Queue; C],
    full: [Queue; C],
    /// The slab pinned per class: the head of `avail`, whose `used` carries a +1 bias so that a
    /// local free never sees it reach 0 (the hot free path then never leaves for the slow path
    /// when the current slab empties, as in a malloc/free loop).
    pinned: [Cell<*mut Slab>; C],
    empty: Cell<*mut Slab>,
    empty_count: Cell<u32>,
    tid: Cell<usize>,
    id: Cell<u64>,
    /// When this heap last trimmed itself after adopting (ms).
    last_trim: Cell<u64>,
    /// Remote frees held back per slab ([`Pending`]), pushed when an entry reaches
    /// the slab's `remote_batch` or another slab needs it, at a trim and at thread exit.
    pending: [Pending; PENDING],
    /// The hardened mode (`HAKMEM_SECURE=1`): the direct table stays on [`EMPTY`] and `tid`
    /// carries [`SECURE`], so every malloc and free takes the slow path.
    secure: Cell<bool>,
    /// Freed blocks held back in the hardened mode (zeroed, reading as free), the oldest
    /// released when a new one comes: a ring.
    quarantine: [Cell<*mut Block>; QUARANTINE],
    quarantine_next: Cell<u32>,
    /// Guard-page sampling (`Config::guard_rate`): one allocation in `sample_every` comes
    /// from [`hakmem_core::guard`]; `sample_left` counts down to the next. While on, the direct table
    /// stays on [`EMPTY`], as in the hardened mode.
    sample_every: Cell<u32>,
    sample_left: Cell<u32>,
    state: Cell<u8>,
    /// The lock of the heap's slow paths: the owner holds it through each (nested calls count
    /// in `depth`); another thread trimming the heap ([`trim_others`]) only tries it. The hot
    /// paths never take it: they touch the current slabs, which an outside trim leaves alone.
    busy: AtomicU32,
    depth: Cell<u32>,
    /// Outermost slow paths so far, and the count an outside trim saw last (an unchanged count
    /// means the thread was idle in between).
    slow_paths: Cell<u32>,
    seen: Cell<u32>,
    /// Links in the tier's list of set-up heaps (under [`HEAPS`]).
    reg_prev: Cell<*const Self>,
    reg_next: Cell<*const Self>,
    registered: Cell<bool>,
    /// Torn down at thread exit at least once: a late set-up does not register again (the
    /// thread's TLS may go away after its last destructor round).
    exited: Cell<bool>,
    _tier: PhantomData<G>,
}

/// Serialises the lists of set-up heaps of every tier (registration at set-up, removal at
/// thread exit, walks by outside trims). Lock order: after the learner's, before the pools'.
static HEAPS: RawLock = RawLock::new();

/// The lock of the set-up heaps' lists, for `fork` handlers.
pub fn registry_lock() -> &'static RawLock {
    &HEAPS
}

/// The owner's hold on its heap's slow-path lock (released when dropped).
struct SlowPath<'a, G: Geometry, const D: usize, const C: usize>(&'a Heap<G, D, C>);

impl<G: Geometry, const D: usize, const C: usize> Drop for SlowPath<'_, G, D, C> {
    #[inline]
    fn drop(&mut self) {
        let d = self.0.depth.get() - 1;
        self.0.depth.set(d);
        if d == 0 {
            self.0.busy.store(0, Ordering::Release);
        }
    }
}

impl<G: Geometry, const D: usize, const C: usize> Heap<G, D, C> {
    /// A heap with no slabs (every direct entry on [`EMPTY`], every other byte zero).
    ///
    /// # Safety
    /// The heap must be a thread's own and live as long as the thread: its first allocation
    /// registers a thread-exit destructor with its address (a heap on the stack, or moved,
    /// would dangle there). [`crate::thread_heap`] is the way to get one.
    pub const unsafe fn new() -> Self {
        Heap {
            direct: [const { Cell::new(EMPTY_PTR) }; D],
            avail: [const { Queue::new() }; C],
            full: [const { Queue::new() }; C],
            pinned: [const { Cell::new(ptr::null_mut()) }; C],
            empty: Cell::new(ptr::null_mut()),
            empty_count: Cell::new(0),
            tid: Cell::new(0),
            id: Cell::new(0),
            last_trim: Cell::new(0),
            pending: [const { Pending::new() }; PENDING],
            secure: Cell::new(false),
            quarantine: [const { Cell::new(ptr::null_mut()) }; QUARANTINE],
            quarantine_next: Cell::new(0),
            sample_every: Cell::new(0),
            sample_left: Cell::new(0),
            state: Cell::new(UNINIT),
            busy: AtomicU32::new(0),
            depth: Cell::new(0),
            slow_paths: Cell::new(0),
            seen: Cell::new(0),
            reg_prev: Cell::new(ptr::null()),
            reg_next: Cell::new(ptr::null()),
            registered: Cell::new(false),
            exited: Cell::new(false),
            _tier: PhantomData,
        }
    }

    /// Enters a slow path: takes the heap's lock unless this thread holds it already.
    #[inline]
    fn enter(&self) -> SlowPath<'_, G, D, C> {
        let d = self.depth.get();
        if d == 0 {
            while self.busy.swap(1, Ordering::Acquire) != 0 {
                core::hint::spin_loop(); // an outside trim, done in microseconds
            }
            self.slow_paths.set(self.slow_paths.get().wrapping_add(1));
        }
        self.depth.set(d + 1);
        SlowPath(self)
    }

    /// Pops a block from the slab serving direct index `d` (the hot path); `size` is the
    /// request, for the slow path. Null only when the OS refuses memory.
    ///
    /// # Safety
    /// `d < D` (the index is not checked), and `d` is the direct index of `size`'s class, one
    /// of `G::direct_range(G::class_of(size))`: the block comes from the class `d` serves.
    #[inline(always)]
    pub unsafe fn alloc(&self, d: usize, size: usize) -> *mut u8 {
        // SAFETY: d < D (the caller's contract); direct entries point at live slabs or EMPTY,
        // and only this thread touches its slabs' free lists.
        unsafe {
            let s = &*self.direct.get_unchecked(d).get();
            if !s.has_free() {
                return self.alloc_slow(size);
            }
            s.pop().cast()
        }
    }

    /// Whether the heap is in its initial state (no slabs, not set up).
    pub fn is_fresh(&self) -> bool {
        let null = |c: &Cell<*mut Slab>| c.get().is_null();
        self.direct.iter().all(|d| d.get() == EMPTY_PTR)
            && self
                .avail
                .iter()
                .chain(&self.full)
                .all(|q| null(&q.head) && null(&q.tail))
            && self.pinned.iter().all(null)
            && null(&self.empty)
            && self.empty_count.get() == 0
            && self.tid.get() == 0
            && self.id.get() == 0
            && self.last_trim.get() == 0
            && self.pending.iter().all(|e| {
                null(&e.slab) && e.first.get().is_null() && e.last.get().is_null() && e.n.get() == 0
            })
            && !self.secure.get()
            && self.quarantine.iter().all(|q| q.get().is_null())
            && self.quarantine_next.get() == 0
            && self.sample_every.get() == 0
            && self.sample_left.get() == 0
            && self.state.get() == UNINIT
            && self.depth.get() == 0
            && !self.registered.get()
    }

    fn init(&self) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let cfg = hakmem_core::config::get();
        let secure = cfg.secure;
        self.secure.set(secure);
        self.sample_every.set(cfg.guard_rate());
        self.sample_left.set(cfg.guard_rate());
        self.tid.set(thread_id() | if secure { SECURE } else { 0 });
        self.id.set(NEXT_ID.fetch_add(1, Ordering::Relaxed));
        self.state.set(ACTIVE);
        if !self.exited.get() {
            self.register();
        }
        // Last: registering may allocate (and so re-enter this heap, now active).
        register_exit::<G, D, C>(self);
    }

    /// Adds the heap to its tier's list of set-up heaps, for outside trims.
    fn register(&self) {
        let pool = G::pool();
        HEAPS.lock();
        let head = pool
            .heaps
            .load(Ordering::Relaxed)
            .cast_const()
            .cast::<Self>();
        self.reg_prev.set(ptr::null());
        self.reg_next.set(head);
        // SAFETY: listed heaps are live (a heap leaves the list before its thread's TLS goes).
        if let Some(h) = unsafe { head.as_ref() } {
            h.reg_prev.set(self);
        }
        pool.heaps
            .store((self as *const Self).cast_mut().cast(), Ordering::Relaxed);
        self.registered.set(true);
        pool.set_outside_trim(trim_others::<G, D, C>, registry_after_fork::<G, D, C>);
        // SAFETY: taken above.
        unsafe { HEAPS.unlock() };
    }

    /// Takes the heap off its tier's list (thread exit; waits for a trim walking the list).
    fn unregister(&self) {
        if !self.registered.get() {
            return;
        }
        let pool = G::pool();
        HEAPS.lock();
        let (prev, next) = (self.reg_prev.get(), self.reg_next.get());
        // SAFETY: listed heaps are live; the lock serialises the links.
        match unsafe { prev.as_ref() } {
            Some(p) => p.reg_next.set(next),
            None => pool.heaps.store(next.cast_mut().cast(), Ordering::Relaxed),
        }
        // SAFETY: as above.
        if let Some(n) = unsafe { next.as_ref() } {
            n.reg_prev.set(prev);
        }
        self.registered.set(false);
        // SAFETY: taken above.
        unsafe { HEAPS.unlock() };
    }

    /// An outside trim (another thread, holding [`HEAPS`] and this heap's lock): unlinks every
    /// full slab whose blocks have all been freed (by other threads: the owner's own frees move
    /// a full slab back to its available queue) and, when `empties`, the cached empty slabs;
    /// returns them chained through `next`. Full slabs and the empty cache are only touched on
    /// the owner's slow paths, which the lock keeps out.
    fn take_unused(&self, empties: bool) -> *mut Slab {
        let mut chain: *mut Slab = ptr::null_mut();
        if self.state.get() != ACTIVE {
            return chain;
        }
        for q in &self.full {
            let mut p = q.head.get();
            while let Some(s) = unsafe_ref(p) {
                p = s.next.get();
                if s.live() == 0 {
                    q.remove(s);
                    s.drop_remote(G::counters());
                    s.next.set(chain);
                    chain = s as *const Slab as *mut Slab;
                }
            }
        }
        if empties {
            while let Some(s) = unsafe_ref(self.empty.get()) {
                self.empty.set(s.next.get());
                s.next.set(chain);
                chain = s as *const Slab as *mut Slab;
            }
            self.empty_count.set(0);
        }
        chain
    }

    /// Points the direct entries of `class` at the head of its available queue, and moves the
    /// pin to it. (The head only changes when the old one is full or removed, never empty.)
    fn refresh_direct(&self, class: usize) {
        let head = self.avail[class].head.get();
        let old = self.pinned[class].replace(if G::PIN_CURRENT {
            head
        } else {
            ptr::null_mut()
        });
        if G::PIN_CURRENT && old != head {
            if let Some(o) = unsafe_ref(old) {
                o.used.set(o.used.get() - 1);
            }
            if let Some(h) = unsafe_ref(head) {
                h.used.set(h.used.get() + 1);
            }
        }
        let s = if head.is_null() || self.secure.get() || self.sample_every.get() != 0 {
            EMPTY_PTR
        } else {
            head
        };
        let (a, b) = G::direct_range(class);
        for d in &self.direct[a..=b] {
            d.set(s);
        }
    }

    /// Whether `s` belongs to this heap (not a slab orphaned by a dead thread with the same id).
    fn owns(&self, s: &Slab) -> bool {
        self.state.get() == ACTIVE && s.heap_id.get() == self.id.get()
    }

    /// Allocates a block of `size` bytes when the direct slab had none.
    #[cold]
    #[inline(never)]
    pub(crate) fn alloc_slow(&self, size: usize) -> *mut u8 {
        if let Some(p) = G::divert(size) {
            return p;
        }
        let _slow = self.enter();
        if self.state.get() != ACTIVE {
            self.init();
        }
        let class = G::class_of(size);
        if self.sample_every.get() != 0
            && let Some(p) = self.sample(size, class)
        {
            return p;
        }
        let Some(s) = self.slab_with_free(class) else {
            return ptr::null_mut();
        };
        #[cfg(debug_assertions)]
        self.check(class);
        // SAFETY: `s` is this thread's and has a free block.
        unsafe { s.pop() }.cast()
    }

    /// Every `sample_every`-th allocation: a guard-page block ([`hakmem_core::guard`]) for `size`
    /// bytes of `class`, if it fits one. A pool's block must keep its class's alignment (the
    /// facade sends it aligned requests up to 128 bytes by size), so it gets the class size;
    /// a Tiny request is sized exactly (an aligned one arrives as its class size already).
    #[cold]
    fn sample(&self, size: usize, class: usize) -> Option<*mut u8> {
        let left = self.sample_left.get().saturating_sub(1);
        if left != 0 {
            self.sample_left.set(left);
            return None;
        }
        self.sample_left.set(self.sample_every.get());
        let bs = G::CLASSES[class] as usize;
        let n = if bs <= 1024 { size.max(1) } else { bs };
        let p = hakmem_core::guard::alloc(n);
        (!p.is_null()).then_some(p)
    }

    /// The head of `class`'s available queue, made to have a free block.
    ///
    /// A head that collects only a few blocks goes to the back of the queue (up to
    /// [`ROTATE_LIMIT`] times per call): while it waits there, frees accumulate on it, so each
    /// visit yields a batch instead of one block per slow path. A head with nothing at all goes
    /// to the full queue, out of the way until a free lands in it.
    fn slab_with_free(&self, class: usize) -> Option<&'static Slab> {
        let mut rotations = 0;
        loop {
            if let Some(s) = unsafe_ref(self.avail[class].head.get()) {
                if !s.has_free() {
                    s.collect(G::counters());
                }
                if !s.has_free() {
                    // Recycle before carving: a full slab may have had blocks freed into it.
                    // Only for a worthwhile batch (1/16 of the slab, what keeps a head from
                    // being rotated away), or the slow path would come back after a few blocks.
                    // Not bounded by the rotation budget: each step leaves a head with blocks
                    // (which returns, or spends the budget), so carving waits for real need
                    // instead of carving blocks that then sit idle (docs/BENCHMARKS.md,
                    // "Figures behind design choices").
                    let min = (s.capacity.get() / 16).max(1);
                    if let Some(r) = self.reclaim_full(class, 4, min) {
                        rotations += 1;
                        self.avail[class].push_front(r);
                        self.refresh_direct(class);
                        continue;
                    }
                    // Or the next available slab, when blocks wait on it.
                    if let Some(n) = unsafe_ref(s.next.get())
                        && (n.remote.count() >= min || n.has_free())
                    {
                        rotations += 1;
                        self.avail[class].remove(s);
                        self.avail[class].push_back(s);
                        self.refresh_direct(class);
                        continue;
                    }
                }
                if !s.has_free() && !s.carve(G::counters(), self.secure.get()) {
                    self.avail[class].remove(s);
                    self.full[class].push_front(s);
                    s.owner.store(self.tid.get() | FULL, Ordering::Relaxed);
                    self.refresh_direct(class);
                    continue;
                }
                // `used` includes the pin, if any.
                let free = s.carved.get() + G::PIN_CURRENT as u32 - s.used.get();
                if free * 16 < s.capacity.get()
                    && rotations < ROTATE_LIMIT
                    && !s.next.get().is_null()
                {
                    rotations += 1;
                    self.avail[class].remove(s);
                    self.avail[class].push_back(s);
                    self.refresh_direct(class);
                    continue;
                }
                return Some(s);
            }
            let s = match self.reclaim_full(class, usize::MAX, 1) {
                Some(s) => s,
                None => self.new_slab(class)?,
            };
            self.avail[class].push_front(s);
            self.refresh_direct(class);
        }
    }

    /// A full slab of `class` to which other threads have freed blocks, moved off the full queue.
    /// Looks at the first `limit` slabs of the queue, and takes one only if at least `min`
    /// blocks wait on it.
    fn reclaim_full(&self, class: usize, mut limit: usize, min: u32) -> Option<&'static Slab> {
        let mut p = self.full[class].head.get();
        while let Some(s) = unsafe_ref(p) {
            if limit == 0 {
                return None;
            }
            limit -= 1;
            p = s.next.get();
            if s.remote.count() >= min.max(1) {
                self.full[class].remove(s);
                s.owner.store(self.tid.get(), Ordering::Relaxed);
                s.collect(G::counters());
                return Some(s);
            }
        }
        None
    }

    /// A slab for `class` from the heap's empty cache or the pool.
    fn new_slab(&self, class: usize) -> Option<&'static Slab> {
        let (bs, size) = (G::CLASSES[class] as usize, slab_size::<G>());
        if let Some(s) = unsafe_ref(self.empty.get()) {
            self.empty.set(s.next.get());
            self.empty_count.set(self.empty_count.get() - 1);
            s.format(class, bs, size, self.tid.get(), self.id.get());
            s.remote_batch.set(remote_batch::<G>(bs));
            if self.secure.get() {
                s.guard_tail(size, G::TAG);
            }
            return Some(s);
        }
        let (s, adopted) = G::pool().acquire::<G>(class)?;
        G::counters().slabs.add(1);
        if adopted {
            protocol::claim(s, self.id.get(), self.tid.get(), G::counters());
        } else {
            s.format(class, bs, size, self.tid.get(), self.id.get());
            s.remote_batch.set(remote_batch::<G>(bs));
            if self.secure.get() {
                s.guard_tail(size, G::TAG);
            }
        }
        Some(s)
    }

    /// A local free made the last block of a slab free (never the pinned one, when the tier
    /// pins): cache it or give it back.
    #[cold]
    #[inline(never)]
    pub(crate) fn slab_emptied(&self, s: &Slab) {
        if !self.owns(s) {
            return;
        }
        let _slow = self.enter();
        let class = s.class.get() as usize;
        let was_head = core::ptr::eq(self.avail[class].head.get(), s);
        self.avail[class].remove(s);
        if was_head {
            self.refresh_direct(class);
        }
        self.retire(s);
        #[cfg(debug_assertions)]
        self.check(class);
    }

    fn retire(&self, s: &Slab) {
        if self.empty_count.get() < G::EMPTY_CACHE {
            s.next.set(self.empty.get());
            self.empty.set(s as *const Slab as *mut Slab);
            self.empty_count.set(self.empty_count.get() + 1);
        } else {
            G::pool().release(s);
        }
    }

    /// A local free into a full slab: move it back to the available queue. False when the slab
    /// is not this heap's after all (then the caller frees remotely).
    #[cold]
    #[inline(never)]
    pub(crate) fn unfull(&self, s: &Slab) -> bool {
        if !self.owns(s) {
            return false;
        }
        let class = s.class.get() as usize;
        self.full[class].remove(s);
        s.owner.store(self.tid.get(), Ordering::Relaxed);
        // At the back: frees keep accumulating on it until its turn comes.
        let was_empty = self.avail[class].head.get().is_null();
        self.avail[class].push_back(s);
        if was_empty {
            self.refresh_direct(class);
        }
        true
    }

    /// Gives back what this heap holds but does not use: every slab whose blocks are all free
    /// (after collecting other threads' frees), the pinned one included, and the cached empty slabs (they go to the pool, whose purge policy
    /// returns their pages). Called by the owner thread at a purge pass, outside any heap
    /// operation.
    pub(crate) fn trim(&self) {
        if self.state.get() != ACTIVE {
            return;
        }
        let _slow = self.enter();
        self.flush_quarantine();
        self.flush_pending();
        for class in 0..C {
            // Slabs whose last blocks were freed by other threads are only found by collecting.
            let head = self.avail[class].head.get();
            for q in [&self.avail[class], &self.full[class]] {
                let mut p = q.head.get();
                while let Some(s) = unsafe_ref(p) {
                    p = s.next.get();
                    if core::ptr::eq(s, self.pinned[class].get()) {
                        continue;
                    }
                    if s.live() == 0 {
                        q.remove(s);
                        s.drop_remote(G::counters());
                        G::pool().release(s);
                    }
                }
            }
            // An unpinned tier's current slab may have gone: the direct entries must follow.
            if self.avail[class].head.get() != head {
                self.refresh_direct(class);
            }
            let Some(s) = unsafe_ref(self.pinned[class].get()) else {
                continue;
            };
            if s.live() == 1 {
                self.pinned[class].set(ptr::null_mut());
                s.used.set(s.used.get() - 1);
                s.drop_remote(G::counters());
                self.avail[class].remove(s);
                self.refresh_direct(class);
                G::pool().release(s);
            }
        }
        while let Some(s) = unsafe_ref(self.empty.get()) {
            self.empty.set(s.next.get());
            G::pool().release(s);
        }
        self.empty_count.set(0);
        #[cfg(debug_assertions)]
        for class in 0..C {
            self.check(class);
        }
    }

    /// Checks the heap's invariants for `class` (debug builds, where the heap is between
    /// operations): every slab of the class's available and full queues has the class, its
    /// block size, this heap's id and the queue's owner word; each queue is linked the same
    /// both ways; the pinned slab is the available head (none when the tier does not pin);
    /// the class's direct entries point at the head or at [`EMPTY`] (only [`EMPTY`] while
    /// every call takes the slow path); the empty cache holds `empty_count` slabs, none in
    /// use. The head's blocks are checked by [`Slab::check`]; the other slabs' only by their
    /// own checks when they come to the head, so a check costs a walk of the queues.
    #[cfg(debug_assertions)]
    fn check(&self, class: usize) {
        if self.state.get() != ACTIVE {
            return;
        }
        let head = self.avail[class].head.get();
        let tid = self.tid.get();
        for (q, owner) in [(&self.avail[class], tid), (&self.full[class], tid | FULL)] {
            let mut prev: *mut Slab = ptr::null_mut();
            let mut p = q.head.get();
            while let Some(s) = unsafe_ref(p) {
                assert_eq!(s.prev.get(), prev, "slab {p:p}: prev link");
                assert_eq!(s.class.get() as usize, class, "slab {p:p}: class");
                assert_eq!(
                    s.block_size.get(),
                    G::CLASSES[class],
                    "slab {p:p}: block size"
                );
                assert_eq!(s.heap_id.get(), self.id.get(), "slab {p:p}: heap id");
                assert_eq!(s.owner.load(Ordering::Relaxed), owner, "slab {p:p}: owner");
                assert!(
                    !core::ptr::eq(s.next.get(), s),
                    "slab {p:p}: linked to itself"
                );
                prev = p;
                p = s.next.get();
            }
            assert_eq!(q.tail.get(), prev, "class {class}: queue tail");
        }
        let pinned = self.pinned[class].get();
        let want = if G::PIN_CURRENT {
            head
        } else {
            ptr::null_mut()
        };
        assert_eq!(pinned, want, "class {class}: pinned slab is not the head");
        let slow = self.secure.get() || self.sample_every.get() != 0;
        let (a, b) = G::direct_range(class);
        for (i, d) in self.direct[a..=b].iter().enumerate() {
            let d = d.get();
            assert!(
                d == EMPTY_PTR || (d == head && !slow),
                "direct[{}] of class {class}: {d:p}, head {head:p}",
                a + i
            );
        }
        let (mut n, mut p) = (0, self.empty.get());
        while let Some(s) = unsafe_ref(p) {
            assert_eq!(s.used.get(), 0, "cached empty slab {p:p} in use");
            n += 1;
            assert!(n <= G::EMPTY_CACHE, "empty cache over {}", G::EMPTY_CACHE);
            p = s.next.get();
        }
        assert_eq!(n, self.empty_count.get(), "empty cache count");
        if let Some(h) = unsafe_ref(head) {
            h.check(G::PIN_CURRENT);
        }
    }

    /// After an adoption: trims this heap once per half purge delay (its own clock, so a thread
    /// that keeps adopting trims whatever the other threads do), so an adopted slab it no
    /// longer allocates from goes back once other threads have freed all its blocks.
    #[cold]
    #[inline(never)]
    fn trim_after_adopt(&self) {
        let now = hakmem_core::os::now_ms();
        let every = (hakmem_core::config::get().purge_delay_ms / 2).max(1);
        if now.wrapping_sub(self.last_trim.get()) >= every {
            self.last_trim.set(now);
            self.trim();
            hakmem_core::purge::tick(false);
        }
    }

    /// Gives every slab back (thread exit) and resets the heap to its initial state: slabs
    /// with no live block to the pool's free list, the others abandoned for adoption, all
    /// under one acquisition of the pool lock. No block is touched.
    pub(crate) fn abandon_all(&self) {
        let _slow = self.enter();
        self.unregister();
        self.exited.set(true);
        // First: held blocks may be of this heap's own slabs (adopted since), and count there.
        self.flush_quarantine();
        self.flush_pending();
        let (mut dead, mut live): (*mut Slab, *mut Slab) = (ptr::null_mut(), ptr::null_mut());
        for class in 0..C {
            if let Some(p) = unsafe_ref(self.pinned[class].replace(ptr::null_mut())) {
                p.used.set(p.used.get() - 1);
            }
            for q in [&self.avail[class], &self.full[class]] {
                while let Some(s) = q.pop() {
                    let chain = match protocol::exit_dead(s, G::counters()) {
                        true => &mut dead,
                        false => &mut live,
                    };
                    s.next.set(*chain);
                    *chain = s as *const Slab as *mut Slab;
                }
            }
            self.refresh_direct(class);
        }
        while let Some(s) = unsafe_ref(self.empty.get()) {
            self.empty.set(s.next.get());
            s.next.set(dead);
            dead = s as *const Slab as *mut Slab;
        }
        self.empty_count.set(0);
        self.state.set(UNINIT);
        if !dead.is_null() || !live.is_null() {
            G::pool().give_back(dead, live);
        }
    }

    /// A free of `b` into `s`, a slab of another thread (or abandoned): held back in this
    /// heap's [`Pending`] entry for `s`, pushed with the entry's other blocks. The usual case
    /// (the entry already holds blocks of `s`) is a handful of instructions with no call but a
    /// tail call to the flush; everything else is in [`Self::free_remote_other`].
    #[inline(always)]
    fn free_remote(&self, s: &Slab, b: *mut Block) {
        let sp = s as *const Slab as *mut Slab;
        let e = &self.pending[(sp as usize >> G::SLAB_SHIFT) % PENDING];
        if G::REMOTE_BATCH_BYTES == 0 || e.slab.get() != sp {
            return self.free_remote_other(s, b);
        }
        // SAFETY: `b` is dead and now held by this heap (an entry is only ever filled while
        // the heap is active).
        unsafe { (*b).next = link::encode(e.first.get() as usize, b as usize) as *mut Block };
        e.first.set(b);
        let n = e.n.get() + 1;
        e.n.set(n);
        if n >= s.remote_batch.get() {
            e.flush();
        }
    }

    /// [`Self::free_remote`] when the entry holds another slab's blocks or none: the entry is
    /// flushed and starts on `s`. A heap never set up is set up first (so its thread's exit
    /// pushes what it holds); one already torn down at thread exit pushes at once.
    #[inline(never)]
    fn free_remote_other(&self, s: &Slab, b: *mut Block) {
        if G::REMOTE_BATCH_BYTES == 0 || (self.state.get() != ACTIVE && self.id.get() != 0) {
            // SAFETY: `b` is a dead block of `s`, given up by the caller.
            return unsafe { s.remote.push(b, s.end()) };
        }
        if self.state.get() != ACTIVE {
            self.init();
        }
        let sp = s as *const Slab as *mut Slab;
        let e = &self.pending[(sp as usize >> G::SLAB_SHIFT) % PENDING];
        e.flush();
        if s.remote_batch.get() <= 1 {
            // SAFETY: as above.
            return unsafe { s.remote.push(b, s.end()) };
        }
        // SAFETY: as above. The link reads as a free block's from now on (see `link`).
        unsafe { (*b).next = link::encode(s.end() as usize, b as usize) as *mut Block };
        e.slab.set(sp);
        e.first.set(b);
        e.last.set(b);
        e.n.set(1);
    }

    /// The hardened mode's free of `b`, a checked block of `s`, a slab of this heap: the block
    /// is zeroed, made to read as free (a second free of it is a double free), and held in the
    /// quarantine; the oldest held block goes back to its slab.
    fn quarantine_free(&self, s: &Slab, b: *mut Block) {
        let bs = s.block_size.get() as usize;
        // SAFETY: `b` is a dead block of `bs` bytes, the caller's to dispose of.
        unsafe {
            ptr::write_bytes(b.cast::<u8>(), 0, bs);
            (*b).next = link::encode(s.end() as usize, b as usize) as *mut Block;
        }
        let i = self.quarantine_next.get() as usize;
        self.quarantine_next.set(((i + 1) % QUARANTINE) as u32);
        let old = self.quarantine[i].replace(b);
        if !old.is_null() {
            self.release_held(old);
        }
    }

    /// Gives a block out of the quarantine back to its slab (this heap's).
    fn release_held(&self, b: *mut Block) {
        // SAFETY: a quarantined block is one of this heap's tier.
        let s = unsafe { slab_of::<G>(b.cast()) };
        if s.owner.load(Ordering::Relaxed) & FULL != 0 && !self.unfull(s) {
            return;
        }
        // SAFETY: a dead, checked block of a slab this heap owns.
        unsafe { s.push(b, link::key()) };
        s.used.set(s.used.get() - 1);
        if s.used.get() == 0 {
            self.slab_emptied(s);
        }
    }

    /// Gives every quarantined block back (a trim, thread exit).
    fn flush_quarantine(&self) {
        for q in &self.quarantine {
            let b = q.replace(ptr::null_mut());
            if !b.is_null() {
                self.release_held(b);
            }
        }
        self.quarantine_next.set(0);
    }

    /// Pushes every held remote free.
    #[inline(never)]
    fn flush_pending(&self) {
        if G::REMOTE_BATCH_BYTES == 0 {
            return;
        }
        for e in &self.pending {
            if !e.slab.get().is_null() {
                e.flush();
            }
        }
    }

    /// A free into the abandoned slab `s`: adopt it (the free then becomes local, and so do
    /// the next ones into it). False when this heap is not set up (its thread's first
    /// allocator call is this free) or another thread adopted the slab first.
    ///
    /// Also for a class this heap has no slab of yet: the adopted slab becomes its current
    /// one. A thread that inherits another's blocks (Larson's successor threads) frees into
    /// its predecessor's slabs before it allocates from each class; were it to adopt only for
    /// classes it already allocated from, its first malloc of a class would take whichever
    /// slab was abandoned last, often another lineage's, and more of the frees would stay
    /// remote (docs/BENCHMARKS.md, "Figures behind design choices"). A
    /// thread that only frees holds at most one adopted slab
    /// per class this way (the current one, pinned); the others go back as they empty, and
    /// [`Self::trim_after_adopt`] returns those that other threads emptied.
    #[cold]
    #[inline(never)]
    fn adopt(&self, s: &Slab) -> bool {
        let class = s.class.get() as usize;
        if self.state.get() != ACTIVE || !G::pool().adopt(s) {
            return false;
        }
        protocol::claim(s, self.id.get(), self.tid.get(), G::counters());
        let was_empty = self.avail[class].head.get().is_null();
        self.avail[class].push_back(s);
        if was_empty {
            self.refresh_direct(class);
        }
        true
    }
}

/// Trims every other thread's set-up heap of tier `G` from outside (`malloc_trim`, the
/// background purger): each one whose lock is free gives back its full slabs whose blocks have
/// all been freed since (by other threads, while it idles), and its cached empty slabs when
/// `all` or when it made no slow-path call since the previous outside trim.
///
/// Lock order: the registry, the pool, then each heap's lock, which is only tried (its owner
/// takes the pool lock inside it). `background`: the registry and pool locks are only tried
/// too; false when one was busy.
fn trim_others<G: Geometry, const D: usize, const C: usize>(all: bool, background: bool) -> bool {
    let pool = G::pool();
    let me = thread_id();
    if background {
        if !HEAPS.try_lock() {
            return false;
        }
    } else {
        HEAPS.lock();
    }
    let done = pool.give_back_with(background, |give| {
        let mut h = pool
            .heaps
            .load(Ordering::Relaxed)
            .cast_const()
            .cast::<Heap<G, D, C>>();
        // SAFETY: listed heaps are live while the registry lock is held (a heap unregisters
        // under it before its thread's TLS goes); their slow-path state is read and changed
        // only under their own lock.
        while let Some(heap) = unsafe { h.as_ref() } {
            h = heap.reg_next.get();
            if heap.tid.get() & !SECURE == me
                || heap
                    .busy
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let idle = heap.slow_paths.get() == heap.seen.get();
            heap.seen.set(heap.slow_paths.get());
            let chain = heap.take_unused(all || idle);
            heap.busy.store(0, Ordering::Release);
            if !chain.is_null() {
                give(chain);
            }
        }
    });
    // SAFETY: taken above.
    unsafe { HEAPS.unlock() };
    done
}

const KEY_NONE: u32 = u32::MAX;
const KEY_BUSY: u32 = u32::MAX - 1;

unsafe extern "C" fn on_thread_exit<G: Geometry, const D: usize, const C: usize>(
    heap: *mut libc::c_void,
) {
    // SAFETY: the key's value is the exiting thread's own heap, still in its TLS.
    unsafe { (*heap.cast::<Heap<G, D, C>>()).abandon_all() };
}

/// In a `fork` child: the tier's list of heaps keeps only the calling thread's (the others'
/// threads are gone, and glibc hands their stacks, with their TLS, to the child's new threads:
/// left listed, a reused heap would be linked in twice).
fn registry_after_fork<G: Geometry, const D: usize, const C: usize>() {
    let pool = G::pool();
    let key = pool.exit_key.load(Ordering::Acquire);
    let mine = if key >= KEY_BUSY {
        ptr::null_mut()
    } else {
        // SAFETY: the key exists; its value for this thread is null or this thread's live heap.
        unsafe { libc::pthread_getspecific(key) }.cast::<Heap<G, D, C>>()
    };
    // SAFETY: as above.
    match unsafe { mine.as_ref() } {
        Some(h) if h.registered.get() => {
            h.reg_prev.set(ptr::null());
            h.reg_next.set(ptr::null());
            pool.heaps.store(mine.cast(), Ordering::Relaxed);
        }
        _ => pool.heaps.store(ptr::null_mut(), Ordering::Relaxed),
    }
}

/// Trims the calling thread's heap of tier `G`, if it has one (found through the exit key).
fn trim_local<G: Geometry, const D: usize, const C: usize>() {
    let key = G::pool().exit_key.load(Ordering::Acquire);
    if key >= KEY_BUSY {
        return;
    }
    // SAFETY: the key exists; its value for this thread is null or this thread's live heap.
    let h = unsafe { libc::pthread_getspecific(key) }.cast::<Heap<G, D, C>>();
    // SAFETY: as above.
    if let Some(h) = unsafe { h.as_ref() } {
        h.trim();
    }
}

/// Makes the thread's exit call `on_thread_exit(heap)` (one key per tier, created once).
fn register_exit<G: Geometry, const D: usize, const C: usize>(heap: &Heap<G, D, C>) {
    let slot = &G::pool().exit_key;
    let mut key = slot.load(Ordering::Acquire);
    while key >= KEY_BUSY {
        if key == KEY_NONE
            && slot
                .compare_exchange(KEY_NONE, KEY_BUSY, Ordering::Acquire, Ordering::Acquire)
                .is_ok()
        {
            let mut k: libc::pthread_key_t = 0;
            // SAFETY: creating a key with a destructor that does not unwind.
            let rc = unsafe { libc::pthread_key_create(&mut k, Some(on_thread_exit::<G, D, C>)) };
            key = if rc == 0 { k } else { KEY_NONE };
            slot.store(key, Ordering::Release);
            G::pool().set_local_trim(trim_local::<G, D, C>);
            if rc != 0 {
                return; // no exit hook: the heap's slabs stay owned (bounded leak per thread)
            }
            break;
        }
        core::hint::spin_loop();
        key = slot.load(Ordering::Acquire);
    }
    // SAFETY: the key exists; the value is this thread's heap, valid until it exits.
    unsafe { libc::pthread_setspecific(key, heap as *const Heap<G, D, C> as *const libc::c_void) };
}

/// Frees a block of tier `G` (the hot path): a push onto the slab's free list when this
/// thread owns the slab, else the slow path. `heap` gives this thread's heap (only called off
/// the hot path).
///
/// # Safety
/// `p` must be a live block in a chunk the owner map tags `G::TAG`.
#[inline(always)]
pub unsafe fn free<G: Geometry, const D: usize, const C: usize>(
    p: *mut u8,
    heap: impl FnOnce() -> &'static Heap<G, D, C>,
) {
    // SAFETY: forwarded contract.
    let s = unsafe { slab_of::<G>(p) };
    if s.owner.load(Ordering::Relaxed) == thread_id() {
        // SAFETY: the slab is this thread's, and `p` lies in it.
        match unsafe { s.free_local(p, slab_size::<G>()) } {
            None => s.misuse(p, "free"),
            // Never the current slab of its class (pinned: see `Heap`).
            Some(0) => heap().slab_emptied(s),
            Some(_) => {}
        }
    } else {
        free_slow(heap(), s, p);
    }
}

/// The usable size of a live block of tier `G` (its class's block size); 0 for a pointer that
/// is not a block.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags `G::TAG` (its slab header is read).
pub unsafe fn usable_size<G: Geometry>(p: *mut u8) -> usize {
    // SAFETY: forwarded contract.
    let s = unsafe { slab_of::<G>(p) };
    if s.holds_block(p) {
        s.block_size.get() as usize
    } else {
        0
    }
}

/// The free slow path for a block of `s` whose owner is not simply this thread: another
/// thread's slab, full or not (the usual case, kept short: checks and the held-back push), or
/// a full slab of this heap or an abandoned one ([`free_special`]). Stray pointers get a
/// diagnostic.
#[cold]
#[inline(never)]
fn free_slow<G: Geometry, const D: usize, const C: usize>(
    heap: &Heap<G, D, C>,
    s: &Slab,
    p: *mut u8,
) {
    // Thread ids are aligned: bit 1 is set only in `ABANDONED`. Another thread's full slab
    // takes the usual path.
    let owner = s.owner.load(Ordering::Relaxed);
    if owner & (ABANDONED | SECURE) != 0 || owner == thread_id() | FULL {
        return free_special(heap, s, p);
    }
    if !s.check_free(p, slab_size::<G>(), link::key()) {
        return s.misuse(p, "free");
    }
    heap.free_remote(s, p.cast());
}

/// [`free_slow`] into a full, abandoned or hardened slab: a full slab of this heap goes back to
/// its available queue, an abandoned one may be adopted, a hardened one of this heap takes
/// the block into the quarantine; else a remote free (zeroed first in the hardened mode).
#[inline(never)]
fn free_special<G: Geometry, const D: usize, const C: usize>(
    heap: &Heap<G, D, C>,
    s: &Slab,
    p: *mut u8,
) {
    let b = p.cast::<Block>();
    let _slow = heap.enter();
    if !s.check_free(p, slab_size::<G>(), link::key()) {
        return s.misuse(p, "free");
    }
    let owner = s.owner.load(Ordering::Relaxed);
    let me = heap.tid.get();
    if me != 0 && owner & !FULL == me && heap.owns(s) && (owner & FULL == 0 || heap.unfull(s)) {
        return free_owned(heap, s, b);
    }
    if G::ADOPT_ON_FREE && owner == ABANDONED && heap.adopt(s) {
        free_owned(heap, s, b);
        return heap.trim_after_adopt();
    }
    if owner & SECURE != 0 {
        // SAFETY: the block is dead and the caller's; its first word is rewritten at the push.
        unsafe { ptr::write_bytes(p, 0, s.block_size.get() as usize) };
    }
    heap.free_remote(s, b);
}

/// A free into a slab this thread owns, off the hot path (just moved back from the full
/// queue, or just adopted): the same push as `free`'s.
fn free_owned<G: Geometry, const D: usize, const C: usize>(
    heap: &Heap<G, D, C>,
    s: &Slab,
    b: *mut Block,
) {
    if heap.secure.get() {
        return heap.quarantine_free(s, b);
    }
    // SAFETY: `b` is a dead, checked block of a slab this thread owns.
    unsafe { s.push(b, link::key()) };
    s.used.set(s.used.get() - 1);
    if s.used.get() == 0 {
        heap.slab_emptied(s);
    }
}
