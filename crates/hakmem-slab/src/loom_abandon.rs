//! Loom models of abandoned-slab reclaim: a thread exits holding slabs with live blocks
//! (heap.rs `Heap::abandon_all`, pool.rs `SlabPool::give_back`), other threads free blocks of
//! those slabs (heap.rs `free` / `free_slow`), and the slabs are reclaimed by a thread adopting
//! them on a free (heap.rs `free_slow` → `Heap::adopt` → pool.rs `SlabPool::adopt`), by a
//! thread needing a slab of their class (pool.rs `SlabPool::acquire` + heap.rs
//! `Heap::new_slab`), or by the purge pass (pool.rs `SlabPool::purge`, its abandoned-list walk).
//!
//! The protocol: the `Cell` fields of a slab belong to whoever owns it (its thread, or whoever
//! holds the pool lock while it sits on a pool list); `owner` is an atomic read by every
//! freeing thread to route its free (own thread: the free list; [`ABANDONED`]: try to adopt
//! the slab, then free locally; anyone else: the atomic remote list). The exiting thread
//! touches no block: a slab whose `live()` count (`used` less the remote frees waiting) is 0
//! drops its remote list and goes to the pool's free list, the others are linked into the
//! abandoned list and then marked [`ABANDONED`], both under the pool lock. Every adoption (on a
//! free, through `acquire`) and the purge pass take a slab off the abandoned list under that
//! lock, and only while it is still there (a free's adoption re-checks `owner ==
//! ABANDONED` under the lock, and unlinking resets `owner` to 0), so a slab has one owner at a
//! time; the hand-over itself is the pool lock; remote frees reach the new owner through the
//! remote list's Release push / Acquire take.
//!
//! The models run the protocol's own steps ([`crate::protocol`]: the pool's [`Lists`] and
//! their `abandon`, `take_abandoned`, `adopt` and `reap_abandoned`, and `claim`, `exit_dead`
//! and `retire`), which `SlabPool` and `Heap` run too, on a real [`Slab`] (its `format`,
//! `collect`, `carve`, `free_local`, `check_free` and remote list; under loom its `Cell`
//! fields are loom's checked cells, so any access to them not ordered by happens-before fails
//! the model), under the real futex [`Mutex`] as the pool lock (loom's own mutex where three
//! threads may wait on the lock at once: the futex lock's waiters spin on `yield_now`, and loom
//! explores two spinning waiters taking turns without end). `SlabPool` and `Heap` themselves
//! are not instantiated (`const` statics over mapped segments, TLS, `pthread` keys); what the
//! models add around the steps is the routing of a free by `owner` (heap.rs `free`,
//! `free_slow`), one size class, and slabs one segment each.

extern crate std;

use crate::meta::{ABANDONED, FULL, SLAB_HEADER, Slab};
use crate::protocol::{self, Lists};
use crate::remote::Block;
use core::ops::DerefMut;
use core::ptr;
use hakmem_core::stats::TierCounters;

/// The models' tier counters.
static TINY: TierCounters = TierCounters::new();
use hakmem_core::sync::{Mutex, Ordering};
use loom::thread;
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::vec::Vec;

/// The thread that exits and abandons the slab.
/// A bound on the models' slab sizes (a power of two) for the double-free check.
const SLAB_BYTES: usize = 1 << 16;
const TID_A: usize = 0x1000;
/// An adopter.
const TID_B: usize = 0x2000;
/// A thread freeing a block (remotely, or adopting the slab on the free).
const TID_C: usize = 0x3000;
/// Another adopter.
const TID_D: usize = 0x4000;

/// The parts of heap.rs `Heap` the models need: the thread's id, its heap's id, and whether the
/// heap is set up (`Heap::adopt` only adopts a slab for a heap that is; a thread whose first
/// allocator call is a free into an abandoned slab pushes it remotely).
#[derive(Clone, Copy)]
struct Heap {
    tid: usize,
    id: u64,
    active: bool,
}

impl Heap {
    const fn new(tid: usize, active: bool) -> Heap {
        Heap {
            tid,
            id: (tid >> 12) as u64,
            active,
        }
    }
}

/// The pool lock: the real futex [`Mutex`], or loom's (see the module doc).
trait PoolLock: Sync + 'static {
    fn new(lists: Lists) -> Self;
    fn lock(&self) -> impl DerefMut<Target = Lists> + '_;
}

impl PoolLock for Mutex<Lists> {
    fn new(lists: Lists) -> Self {
        Mutex::new(lists)
    }
    fn lock(&self) -> impl DerefMut<Target = Lists> + '_ {
        Mutex::lock(self)
    }
}

impl PoolLock for loom::sync::Mutex<Lists> {
    fn new(lists: Lists) -> Self {
        loom::sync::Mutex::new(lists)
    }
    fn lock(&self) -> impl DerefMut<Target = Lists> + '_ {
        loom::sync::Mutex::lock(self).unwrap()
    }
}

/// The pool's lists under the pool lock `L` (what `SlabPool` holds, less its segments).
struct Pool<L> {
    lists: L,
}

impl<L: PoolLock> Pool<L> {
    fn new() -> Pool<L> {
        Pool {
            lists: L::new(Lists::new()),
        }
    }

    /// The pool's address, to hand to the model's threads.
    fn addr(&self) -> usize {
        self as *const Pool<L> as usize
    }
}

impl<L> Pool<L> {
    /// The pool at `addr` (from [`Pool::addr`]).
    fn at(addr: usize) -> &'static Pool<L> {
        // SAFETY: the models keep the pool alive until every thread has been joined.
        unsafe { &*(addr as *const Pool<L>) }
    }
}

/// The pool under the real lock.
type FutexPool = Pool<Mutex<Lists>>;
/// The pool under loom's mutex.
type LoomPool = Pool<loom::sync::Mutex<Lists>>;

/// One slab of `cap` blocks of `bs` bytes in heap memory, formatted for [`TID_A`].
struct SlabMem {
    base: *mut u8,
    layout: Layout,
    bs: usize,
    cap: usize,
}

impl SlabMem {
    fn new(bs: usize, cap: usize) -> SlabMem {
        let size = SLAB_HEADER + cap * bs;
        assert!(size <= SLAB_BYTES);
        // Aligned to the slab bound, one slab per segment: the slab keeps its own free count.
        let layout = Layout::from_size_align(size, SLAB_BYTES).unwrap();
        // SAFETY: non-zero size.
        let base = unsafe { alloc_zeroed(layout) };
        assert!(!base.is_null());
        // SAFETY: the memory is fresh, aligned and large enough for the header.
        unsafe { base.cast::<Slab>().write(Slab::empty()) };
        let m = SlabMem {
            base,
            layout,
            bs,
            cap,
        };
        m.slab().format(0, bs, size, TID_A, 1);
        m
    }

    fn addr(&self) -> usize {
        self.base as usize
    }

    fn slab(&self) -> &'static Slab {
        slab(self.addr())
    }

    /// Every block address of the slab, ascending.
    fn blocks(&self) -> Vec<usize> {
        let start = self.slab().start() as usize;
        (0..self.cap).map(|i| start + i * self.bs).collect()
    }
}

impl Drop for SlabMem {
    fn drop(&mut self) {
        // SAFETY: written in `new`, dropped once, then the memory goes back.
        unsafe {
            ptr::drop_in_place(self.base.cast::<Slab>());
            dealloc(self.base, self.layout);
        }
    }
}

fn slab(addr: usize) -> &'static Slab {
    // SAFETY: the models keep the `SlabMem` alive until every thread has been joined.
    unsafe { &*(addr as *const Slab) }
}

/// heap.rs `Heap::alloc` and the slow path's refill of one slab (`slab_with_free`: collect
/// when `free` is dry, then carve); null when the slab has no block left.
fn alloc(s: &Slab) -> usize {
    if !s.has_free() {
        s.collect(&TINY);
        if !s.has_free() && !s.carve(&TINY, false) {
            return 0;
        }
    }
    // SAFETY: the slab is this thread's and its free list holds a block.
    unsafe { s.pop() as usize }
}

/// Allocates everything `s` has left into `got`.
fn drain(s: &Slab, got: &mut Vec<usize>) {
    loop {
        match alloc(s) {
            0 => return,
            b => got.push(b),
        }
    }
}

/// The owner's free (heap.rs `free`): `Slab::free_local`.
///
/// # Safety
/// `b` must be a dead block of `s`, which the caller owns.
unsafe fn free_local(s: &Slab, b: *mut Block) {
    // SAFETY: forwarded contract.
    let used = unsafe { s.free_local(b.cast(), SLAB_BYTES) };
    assert!(used.is_some(), "a live block failed the free check");
}

/// heap.rs `free` + `free_slow`, run by the thread of heap `h` (which never holds the slab in a
/// full queue in these models): local when `h` owns the slab; an adoption then a local free
/// when the slab is abandoned and `h` is set up; else remote. True when this
/// free adopted the slab. A local free that empties the slab would go on to
/// `Heap::slab_emptied` (the slab stays the owner's, cached or given back): not modelled.
///
/// # Safety
/// `b` must be a live block of `s`, owned by the caller.
unsafe fn free<L: PoolLock>(pool: &Pool<L>, h: Heap, s: &Slab, b: usize) -> bool {
    let b = b as *mut Block;
    let owner = s.owner.load(Ordering::Relaxed);
    if owner == h.tid {
        // SAFETY: the slab is ours, the block the caller's.
        unsafe { free_local(s, b) };
        return false;
    }
    // (`free_slow` loads `owner` again for this test, which only ever matters to a full slab.)
    assert_ne!(owner, h.tid | FULL);
    assert!(
        s.check_free(b.cast(), SLAB_BYTES, crate::link::key()),
        "a live block failed the free check"
    );
    if s.owner.load(Ordering::Relaxed) == ABANDONED && adopt_on_free(pool, h, s) {
        // SAFETY: the slab is ours now, the block the caller's.
        unsafe { free_local(s, b) };
        return true;
    }
    // SAFETY: the caller gives up `b`; it counts as used until collected.
    unsafe { s.remote.push(b, s.end()) };
    false
}

/// heap.rs `Heap::adopt`: heap `h`, about to free into the abandoned slab `s`, adopts it
/// when `h` is set up and `s` is still abandoned under the pool lock (`Lists::adopt`).
fn adopt_on_free<L: PoolLock>(pool: &Pool<L>, h: Heap, s: &Slab) -> bool {
    // Read before the lock, as the real code reads it to find the heap's queue.
    let _class = s.class.get();
    if !h.active || !pool.lists.lock().adopt(s) {
        return false;
    }
    claim(h, s);
    true
}

/// A heap's claim of a slab it adopted (`protocol::claim`), then its queueing (the links
/// written as by `Queue::push_back` / `push_front` on an otherwise empty queue).
fn claim(h: Heap, s: &Slab) {
    protocol::claim(s, h.id, h.tid, &TINY);
    s.next.set(ptr::null_mut());
    s.prev.set(ptr::null_mut());
}

/// Thread exit for one slab of the exiting thread (heap.rs `Heap::abandon_all` with pool.rs
/// `SlabPool::give_back`): `protocol::exit_dead` sorts it, then a dead one is released, a live
/// one abandoned under the lock (`Lists::abandon`).
fn abandon_one<L: PoolLock>(pool: &Pool<L>, s: &Slab) {
    if protocol::exit_dead(s, &TINY) {
        release(pool, s);
    } else {
        pool.lists.lock().abandon(s);
    }
}

/// pool.rs `SlabPool::release` less the purge advice and timestamps: `protocol::retire`, then
/// onto the free list.
fn release<L: PoolLock>(pool: &Pool<L>, s: &Slab) {
    protocol::retire(s);
    pool.lists.lock().free_push(s, SLAB_BYTES);
}

/// pool.rs `SlabPool::acquire`'s abandoned branch (`Lists::take_abandoned`) + heap.rs
/// `Heap::new_slab`'s adopted branch, for heap `h`.
fn adopt<L: PoolLock>(pool: &Pool<L>, h: Heap) -> Option<&'static Slab> {
    let s = pool.lists.lock().take_abandoned(0)?;
    claim(h, s);
    Some(s)
}

/// pool.rs `SlabPool::purge`'s walk of the abandoned lists (`Lists::reap_abandoned`).
fn purge_abandoned<L: PoolLock>(pool: &Pool<L>) {
    pool.lists.lock().reap_abandoned(&TINY, SLAB_BYTES);
}

/// The end state of every model: the slab is in exactly one place. Either it has an owner
/// (`owner`: it was adopted), which has allocated everything (`got`): then every block was
/// handed out exactly once, `used` counts them all, and neither of the owner's lists nor the
/// remote list holds anything; or it sits on the free list with no live block and nothing left
/// on its remote list (a remote free arriving after the slab went there would be lost, and
/// would corrupt its next user).
fn check_end<L: PoolLock>(
    pool: &Pool<L>,
    mem: &SlabMem,
    owner: Option<usize>,
    mut got: Vec<usize>,
) {
    let s = mem.slab();
    let l = pool.lists.lock();
    assert!(l.abandoned[0].is_null(), "the slab is still abandoned");
    if let Some(tid) = owner {
        assert!(l.free.is_null(), "an adopted slab is also on the free list");
        got.sort_unstable();
        assert_eq!(got, mem.blocks(), "a block was lost or handed out twice");
        assert_eq!(
            s.used.get() as usize,
            mem.cap,
            "used disagrees with the blocks"
        );
        assert_eq!(s.owner.load(Ordering::Relaxed), tid);
        assert!(!s.has_free());
        assert!(s.deferred.get().is_null());
    } else {
        assert_eq!(l.free, s as *const Slab as *mut Slab, "the slab was lost");
        assert!(got.is_empty());
        assert_eq!(s.used.get(), 0, "a slab with live blocks was freed");
        assert_eq!(s.owner.load(Ordering::Relaxed), 0);
    }
    assert!(s.remote.is_empty(), "a remote free was lost");
}

/// The end of a model carried on by B: B adopts the slab if it is still abandoned (unless it
/// already did, `adopted`), drains it if it owns it, and [`check_end`] judges the outcome.
fn finish_as_b<L: PoolLock>(pool: &Pool<L>, mem: &SlabMem, adopted: bool, mut got: Vec<usize>) {
    let adopted = adopted || adopt(pool, Heap::new(TID_B, true)).is_some();
    if adopted {
        drain(mem.slab(), &mut got);
    }
    check_end(pool, mem, adopted.then_some(TID_B), got);
}

/// Thread A exits holding a slab with two live blocks (one given to thread C, one to thread
/// B), two blocks on its free list. Concurrently C (a thread not set up yet) frees its
/// block remotely, and B tries to adopt the slab through `acquire`, then frees its own block
/// (locally if the adoption made it the owner; else adopting the slab on the free if it is
/// abandoned by then, remotely if not) and allocates all it can if it adopted; after the joins
/// B (the main thread) finishes the adoption through `acquire` if it had come too early, and
/// allocates the rest.
///
/// Proves: whatever the interleaving, the slab ends either adopted by B with all four blocks
/// handed out exactly once (none lost on the remote list or the deferred list, none handed out
/// twice, `used` equal to the blocks handed out), or released to the free list with no live
/// block (when both frees landed before A's `live()` check); the owner field routes each free
/// correctly (no thread ever sees its own id on a slab it does not own); and no slab `Cell` is
/// ever touched by two threads without a happens-before edge (the pool lock from A to B, the
/// remote list's Release/Acquire from C and B to the collector).
#[test]
fn loom_abandoned_slab_adopted_with_remote_frees() {
    loom::model(|| {
        let pool = FutexPool::new();
        let pa = pool.addr();
        // 4 blocks of 64 bytes: one carve takes them all (no carving after the abandon).
        let mem = SlabMem::new(64, 4);
        let s = mem.slab();
        let addr = mem.addr();
        // Thread A's life before exit: blocks 0 and 1 go to C and B, block 2 is freed locally.
        let (b0, b1, b2) = (alloc(s), alloc(s), alloc(s));
        // SAFETY: b2 is A's live block.
        assert!(!unsafe { free(&pool, Heap::new(TID_A, true), s, b2) });
        assert_eq!(s.used.get(), 2);

        let a = thread::spawn(move || abandon_one(FutexPool::at(pa), slab(addr)));
        // SAFETY: b0 is C's live block.
        let c = thread::spawn(move || unsafe {
            free(FutexPool::at(pa), Heap::new(TID_C, false), slab(addr), b0)
        });
        let b = thread::spawn(move || {
            let s = slab(addr);
            // Had `acquire` found nothing abandoned, B would have taken a fresh slab of the
            // class: it allocates from the class either way.
            let h = Heap::new(TID_B, true);
            let mut adopted = adopt(FutexPool::at(pa), h).is_some();
            // SAFETY: b1 is B's live block.
            adopted |= unsafe { free(FutexPool::at(pa), h, s, b1) };
            let mut got = Vec::new();
            if adopted {
                drain(s, &mut got);
            }
            (adopted, got)
        });
        a.join().unwrap();
        assert!(!c.join().unwrap(), "C adopted while not set up");
        let (adopted, got) = b.join().unwrap();
        // The main thread carries on as B.
        finish_as_b(&pool, &mem, adopted, got);
    });
}

/// Thread A exits holding a slab with one live block, given to thread C; C frees it remotely
/// while a purge pass walks the abandoned list (retiring each slab with no live block to the
/// free list, its remote list dropped). After the joins, B adopts the slab if it is still
/// abandoned.
///
/// Proves: the purge pass never retires a slab that still has a live block, and a remote free
/// is never stranded on a retired slab's remote list (`live()` only reaches 0 once the last
/// live block has been pushed, and `drop_remote`'s Acquire take orders that push, C's bounds
/// check included, before the purge pass resets the slab); the slab ends in exactly one place
/// (adopted by B with all four blocks handed out once and `used` consistent, or on the free
/// list empty); the purge pass's and A's accesses to the slab's cells are ordered by the pool
/// lock.
#[test]
fn loom_abandoned_slab_purge_pass_with_remote_free() {
    loom::model(|| {
        let pool = FutexPool::new();
        let pa = pool.addr();
        let mem = SlabMem::new(64, 4);
        let s = mem.slab();
        let addr = mem.addr();
        let (b0, b1) = (alloc(s), alloc(s));
        // SAFETY: b1 is A's live block.
        assert!(!unsafe { free(&pool, Heap::new(TID_A, true), s, b1) });
        assert_eq!(s.used.get(), 1);

        let a = thread::spawn(move || abandon_one(FutexPool::at(pa), slab(addr)));
        // SAFETY: b0 is C's live block.
        let c = thread::spawn(move || unsafe {
            free(FutexPool::at(pa), Heap::new(TID_C, false), slab(addr), b0)
        });
        let purge = thread::spawn(move || purge_abandoned(FutexPool::at(pa)));
        a.join().unwrap();
        assert!(!c.join().unwrap(), "C adopted while not set up");
        purge.join().unwrap();
        finish_as_b(&pool, &mem, false, Vec::new());
    });
}

/// A remote free's bounds check (`free_slow` → `Slab::holds_block`, and `usable_size` likewise)
/// reads the slab's `carved` count without synchronising with the owner, while the owner's
/// `Slab::carve` writes it: thread A exits with one carved, live block (given to C) and
/// never-carved memory left; B adopts the slab and carves more while C frees its block. With
/// `carved` a plain cell loom reported the unordered read/write ("Causality violation"); as a
/// Relaxed atomic the check sees the old or the new count, both above the freed block, and the
/// block is collected exactly once.
#[test]
fn loom_remote_bounds_check_races_carve() {
    loom::model(|| {
        let pool = FutexPool::new();
        let pa = pool.addr();
        // 2 blocks of 8 KiB: each carve takes one.
        let mem = SlabMem::new(8 << 10, 2);
        let s = mem.slab();
        let addr = mem.addr();
        let b0 = alloc(s);
        assert_eq!(s.carved.get(), 1);

        let a = thread::spawn(move || abandon_one(FutexPool::at(pa), slab(addr)));
        // SAFETY: b0 is C's live block.
        let c = thread::spawn(move || unsafe {
            free(FutexPool::at(pa), Heap::new(TID_C, false), slab(addr), b0)
        });
        let b = thread::spawn(move || {
            let mut got = Vec::new();
            let adopted = adopt(FutexPool::at(pa), Heap::new(TID_B, true)).is_some();
            if adopted {
                drain(slab(addr), &mut got);
            }
            (adopted, got)
        });
        a.join().unwrap();
        assert!(!c.join().unwrap(), "C adopted while not set up");
        let (adopted, got) = b.join().unwrap();
        finish_as_b(&pool, &mem, adopted, got);
    });
}

/// Adopt-on-free against every other way in: thread A exits holding a slab with three live
/// blocks (given to B, C and D) and one block on its free list. Concurrently B and C (both
/// set up) free their blocks, each adopting the slab on the free if it finds
/// it abandoned (else freeing remotely), while D (the main thread, needing a slab of the class)
/// tries to adopt it through `acquire`. After the joins D frees its block the same way (locally
/// if it adopted the slab, adopting it on the free if it is still abandoned, remotely if B or C
/// owns it); then the owner allocates everything. (Loom's mutex: B, C and D may all wait on the
/// pool lock while A holds it.)
///
/// Proves: at most one adoption succeeds per abandonment (a free's adoption re-checks
/// `ABANDONED` under the pool lock, and every adoption resets `owner` under it), so a free
/// that loses the race falls back to a remote push and one thread at a time owns the slab; the
/// frees that land while it changes hands (on A's remote list, in the `owner` 0 window, after
/// the new owner's collect) all reach the owner, so the four blocks are handed out exactly once
/// with `used` consistent and the remote and deferred lists empty at the end; and the winner's
/// accesses to the slab's cells (collect, the local free, the queue links) never race A's, the
/// losers' or the other adopters' (loom reports no unordered `Cell` access).
#[test]
fn loom_adopt_on_free_races_adopt_and_remote_free() {
    loom::model(|| {
        let pool = LoomPool::new();
        let pa = pool.addr();
        let mem = SlabMem::new(64, 4);
        let s = mem.slab();
        let addr = mem.addr();
        // Thread A's life before exit: blocks 0, 1 and 2 go to B, C and D; block 3 stays free.
        let (bb, bc, bd) = (alloc(s), alloc(s), alloc(s));
        assert_eq!(s.used.get(), 3);
        let (hb, hc, hd) = (
            Heap::new(TID_B, true),
            Heap::new(TID_C, true),
            Heap::new(TID_D, true),
        );

        let a = thread::spawn(move || abandon_one(LoomPool::at(pa), slab(addr)));
        // SAFETY: bb is B's live block.
        let b = thread::spawn(move || unsafe { free(LoomPool::at(pa), hb, slab(addr), bb) });
        // SAFETY: bc is C's live block.
        let c = thread::spawn(move || unsafe { free(LoomPool::at(pa), hc, slab(addr), bc) });
        // The main thread is D.
        let d_acquired = adopt(&pool, hd).is_some();
        a.join().unwrap();
        let b_adopted = b.join().unwrap();
        let c_adopted = c.join().unwrap();
        let owners: Vec<usize> = [(b_adopted, TID_B), (c_adopted, TID_C), (d_acquired, TID_D)]
            .into_iter()
            .filter_map(|(won, tid)| won.then_some(tid))
            .collect();
        assert!(owners.len() <= 1, "adopted twice: {owners:x?}");
        let mut owner = owners.first().copied();
        // SAFETY: bd is D's live block.
        if unsafe { free(&pool, hd, s, bd) } {
            assert!(owner.is_none(), "adopted twice");
            owner = Some(TID_D);
        }
        // D's block was live at A's exit: the slab was abandoned, and someone adopted it.
        assert!(owner.is_some(), "the abandoned slab was never adopted");
        let mut got = Vec::new();
        drain(s, &mut got);
        check_end(&pool, &mem, owner, got);
    });
}
