//! The thread heap: per-thread state of the Tiny tier, living in thread-local storage.
//!
//! `direct[wsize]` points at the slab currently serving that word size (the head of its class's
//! available queue) or at the shared [`EMPTY`] slab, whose free list is always empty: so the
//! first allocation of a fresh thread simply falls into the slow path, which sets the heap up.
//! Each class has a queue of available slabs and a queue of full ones; a few empty slabs are
//! cached per heap before going back to the pool.
//!
//! Thread exit: a `pthread_key_create` destructor (run after the thread's C++/Rust TLS
//! destructors) hands every slab back — empty ones to the pool, the rest abandoned to be
//! adopted by other threads — and resets the heap, so a late malloc on the exiting thread
//! simply sets it up again. Nothing here allocates.

use crate::remote::Block;
use crate::segment;
use crate::slab::{FULL, Slab};
use core::cell::Cell;
use core::ptr;
use hakmem_core::class::{TINY_CLASS_COUNT, TINY_CLASSES, TINY_WSIZES, tiny_class, wsize_range};
use hakmem_core::os::thread_id;
use hakmem_core::sync::{AtomicU32, AtomicU64, Ordering};

/// The slab every unused direct entry points to: it never has a free block.
pub static EMPTY: Slab = Slab::empty();
const EMPTY_PTR: *mut Slab = ptr::addr_of!(EMPTY) as *mut Slab;
/// Empty slabs a heap keeps for reuse before returning them to the pool.
const EMPTY_CACHE: u32 = 4;
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

/// Per-thread Tiny state.
#[repr(C)]
pub struct Heap {
    /// Slab serving each word size: the hot path's only table.
    pub(crate) direct: [Cell<*mut Slab>; TINY_WSIZES],
    avail: [Queue; TINY_CLASS_COUNT],
    full: [Queue; TINY_CLASS_COUNT],
    /// The slab pinned per class: the head of `avail`, whose `used` carries a +1 bias so that a
    /// local free never sees it reach 0 (the hot free path then never leaves for the slow path
    /// when the current slab empties, as in a malloc/free loop).
    pinned: [Cell<*mut Slab>; TINY_CLASS_COUNT],
    empty: Cell<*mut Slab>,
    empty_count: Cell<u32>,
    tid: Cell<usize>,
    id: Cell<u64>,
    state: Cell<u8>,
}

impl Heap {
    /// A heap with no slabs (every direct entry on [`EMPTY`]).
    pub const fn new() -> Heap {
        Heap {
            direct: [const { Cell::new(EMPTY_PTR) }; TINY_WSIZES],
            avail: [const { Queue::new() }; TINY_CLASS_COUNT],
            full: [const { Queue::new() }; TINY_CLASS_COUNT],
            pinned: [const { Cell::new(ptr::null_mut()) }; TINY_CLASS_COUNT],
            empty: Cell::new(ptr::null_mut()),
            empty_count: Cell::new(0),
            tid: Cell::new(0),
            id: Cell::new(0),
            state: Cell::new(UNINIT),
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
            && self.state.get() == UNINIT
    }

    fn init(&self) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        self.tid.set(thread_id());
        self.id.set(NEXT_ID.fetch_add(1, Ordering::Relaxed));
        self.state.set(ACTIVE);
        // Last: registering may allocate (and so re-enter this heap, now active).
        register_exit(self);
    }

    /// Points the direct entries of `class` at the head of its available queue, and moves the
    /// pin to it. (The head only changes when the old one is full or removed, never empty.)
    fn refresh_direct(&self, class: usize) {
        let head = self.avail[class].head.get();
        let old = self.pinned[class].replace(head);
        if old != head {
            if let Some(o) = unsafe_ref(old) {
                o.used.set(o.used.get() - 1);
            }
            if let Some(h) = unsafe_ref(head) {
                h.used.set(h.used.get() + 1);
            }
        }
        let s = if head.is_null() { EMPTY_PTR } else { head };
        let (a, b) = wsize_range(class);
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
        if self.state.get() != ACTIVE {
            self.init();
        }
        let class = tiny_class(size);
        let Some(s) = self.slab_with_free(class) else {
            return ptr::null_mut();
        };
        let b = s.free.get();
        // SAFETY: `b` heads the free list of a slab this thread owns.
        unsafe { s.free.set((*b).next) };
        s.used.set(s.used.get() + 1);
        b.cast()
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
                if s.free.get().is_null() {
                    s.collect();
                }
                if s.free.get().is_null() && !s.carve() {
                    self.avail[class].remove(s);
                    self.full[class].push_front(s);
                    s.owner.store(self.tid.get() | FULL, Ordering::Relaxed);
                    self.refresh_direct(class);
                    continue;
                }
                // `used` includes the pin, hence the + 1.
                let free = s.carved.get() + 1 - s.used.get();
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
            let s = match self.reclaim_full(class) {
                Some(s) => s,
                None => self.new_slab(class)?,
            };
            self.avail[class].push_front(s);
            self.refresh_direct(class);
        }
    }

    /// A full slab of `class` to which other threads have freed blocks, moved off the full queue.
    fn reclaim_full(&self, class: usize) -> Option<&'static Slab> {
        let mut p = self.full[class].head.get();
        while let Some(s) = unsafe_ref(p) {
            p = s.next.get();
            if !s.remote.is_empty() {
                self.full[class].remove(s);
                s.owner.store(self.tid.get(), Ordering::Relaxed);
                s.collect();
                return Some(s);
            }
        }
        None
    }

    /// A slab for `class` from the heap's empty cache or the pool.
    fn new_slab(&self, class: usize) -> Option<&'static Slab> {
        let bs = TINY_CLASSES[class] as usize;
        if let Some(s) = unsafe_ref(self.empty.get()) {
            self.empty.set(s.next.get());
            self.empty_count.set(self.empty_count.get() - 1);
            s.format(class, bs, self.tid.get(), self.id.get());
            return Some(s);
        }
        let (s, adopted) = segment::acquire(class)?;
        segment::count_acquired();
        if adopted {
            s.heap_id.set(self.id.get());
            s.owner.store(self.tid.get(), Ordering::Relaxed);
            s.collect();
        } else {
            s.format(class, bs, self.tid.get(), self.id.get());
        }
        Some(s)
    }

    /// A local free made the last block of a slab free (never the pinned one): cache it or give
    /// it back.
    #[cold]
    #[inline(never)]
    pub(crate) fn slab_emptied(&self, s: &Slab) {
        if !self.owns(s) {
            return;
        }
        self.avail[s.class.get() as usize].remove(s);
        self.retire(s);
    }

    fn retire(&self, s: &Slab) {
        if self.empty_count.get() < EMPTY_CACHE {
            s.next.set(self.empty.get());
            self.empty.set(s as *const Slab as *mut Slab);
            self.empty_count.set(self.empty_count.get() + 1);
        } else {
            segment::release(s);
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

    /// Gives every slab back (thread exit) and resets the heap to its initial state.
    pub(crate) fn abandon_all(&self) {
        for class in 0..TINY_CLASS_COUNT {
            if let Some(p) = unsafe_ref(self.pinned[class].replace(ptr::null_mut())) {
                p.used.set(p.used.get() - 1);
            }
            for q in [&self.avail[class], &self.full[class]] {
                while let Some(s) = q.pop() {
                    s.collect();
                    if s.used.get() == 0 {
                        segment::release(s);
                    } else {
                        segment::abandon(s);
                    }
                }
            }
            self.refresh_direct(class);
        }
        while let Some(s) = unsafe_ref(self.empty.get()) {
            self.empty.set(s.next.get());
            segment::release(s);
        }
        self.empty_count.set(0);
        self.state.set(UNINIT);
    }
}

impl Default for Heap {
    fn default() -> Self {
        Self::new()
    }
}

const KEY_NONE: u32 = u32::MAX;
const KEY_BUSY: u32 = u32::MAX - 1;
static EXIT_KEY: AtomicU32 = AtomicU32::new(KEY_NONE);

unsafe extern "C" fn on_thread_exit(heap: *mut libc::c_void) {
    // SAFETY: the key's value is the exiting thread's own heap, still in its TLS.
    unsafe { (*heap.cast::<Heap>()).abandon_all() };
}

/// Makes the thread's exit call `on_thread_exit(heap)`.
fn register_exit(heap: &Heap) {
    let mut key = EXIT_KEY.load(Ordering::Acquire);
    while key >= KEY_BUSY {
        if key == KEY_NONE
            && EXIT_KEY
                .compare_exchange(KEY_NONE, KEY_BUSY, Ordering::Acquire, Ordering::Acquire)
                .is_ok()
        {
            let mut k: libc::pthread_key_t = 0;
            // SAFETY: creating a key with a destructor that does not unwind.
            let rc = unsafe { libc::pthread_key_create(&mut k, Some(on_thread_exit)) };
            key = if rc == 0 { k } else { KEY_NONE };
            EXIT_KEY.store(key, Ordering::Release);
            if rc != 0 {
                return; // no exit hook: the heap's slabs stay owned (bounded leak per thread)
            }
            break;
        }
        core::hint::spin_loop();
        key = EXIT_KEY.load(Ordering::Acquire);
    }
    // SAFETY: the key exists; the value is this thread's heap, valid until it exits.
    unsafe { libc::pthread_setspecific(key, heap as *const Heap as *const libc::c_void) };
}

/// The free slow path for a block of `s` whose owner is not simply this thread: a full slab of
/// this heap, or another thread's (or an abandoned) slab. Stray pointers get a diagnostic.
#[cold]
#[inline(never)]
pub(crate) fn free_slow(heap: &Heap, s: &Slab, p: *mut u8) {
    let b = p.cast::<Block>();
    if s.owner.load(Ordering::Relaxed) == thread_id() | FULL && heap.unfull(s) {
        // SAFETY: `b` is a dead block of a slab this thread owns.
        unsafe { (*b).next = s.local_free.get() };
        s.local_free.set(b);
        s.used.set(s.used.get() - 1);
        if s.used.get() == 0 {
            heap.slab_emptied(s);
        }
        return;
    }
    if !s.holds_block(p) {
        return hakmem_core::diag::bad_pointer("free", p);
    }
    // SAFETY: the caller gives up `b`; the slab outlives the push because `b` counts as used.
    unsafe { s.remote.push(b) };
}
