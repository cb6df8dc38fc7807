//! Loom models of abandoned-slab reclaim: a thread exits holding slabs with live blocks
//! (heap.rs `Heap::abandon_all`, pool.rs `SlabPool::abandon`), other threads free blocks of
//! those slabs remotely (heap.rs `free` / `free_slow`), and the slabs are reclaimed either by a
//! thread adopting them (pool.rs `SlabPool::acquire` + heap.rs `Heap::new_slab`) or by the
//! purge pass (pool.rs `SlabPool::purge`, its abandoned-list walk).
//!
//! The protocol: the `Cell` fields of a slab belong to whoever owns it (its thread, or whoever
//! holds the pool lock while it sits on a pool list); `owner` is an atomic read by every
//! freeing thread to route its free (own thread: the free list, anyone else: the atomic
//! remote list); the hand-over from the exiting thread to the adopter or the purge pass is the
//! pool lock; remote frees reach the new owner through the remote list's Release push /
//! Acquire take.
//!
//! The real `Heap` and `SlabPool` cannot be instantiated under loom (`const` statics over
//! mmap'd segments, TLS, pthread keys, the purge registry), so the models use a stand-in built
//! from the real parts: the real [`Slab`] (its `format`, `collect`, `carve` and
//! `holds_block`; under loom its `Cell` fields are loom's checked cells, so any access to them
//! not ordered by happens-before fails the model), the real [`RemoteList`](super::remote) inside
//! it, and the real futex [`Mutex`] as the pool lock. The pool and heap steps are copied from
//! the functions named on each helper below (the pool's doubly linked, per-segment counted free
//! list is a plain stack here); keep them in step with the real code.

extern crate std;

use super::meta::{FULL, SLAB_HEADER, Slab};
use super::remote::Block;
use crate::stats::TINY;
use crate::sync::{Mutex, Ordering};
use core::ptr;
use loom::sync::Arc;
use loom::thread;
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::vec::Vec;

/// The thread that exits and abandons the slab.
const TID_A: usize = 0x1000;
/// The adopter.
const TID_B: usize = 0x2000;
/// A thread freeing a block remotely.
const TID_C: usize = 0x3000;

/// Stand-in for pool.rs `Lists`: the lists this protocol touches, under the real lock.
struct Lists {
    abandoned: *mut Slab,
    free: *mut Slab,
}

// SAFETY: only touched under the pool mutex (as pool.rs `Lists`).
unsafe impl Send for Lists {}

/// Stand-in for pool.rs `SlabPool`.
struct Pool {
    lists: Mutex<Lists>,
}

impl Pool {
    fn new() -> Pool {
        Pool {
            lists: Mutex::new(Lists {
                abandoned: ptr::null_mut(),
                free: ptr::null_mut(),
            }),
        }
    }
}

/// pool.rs `push`.
fn push(list: &mut *mut Slab, s: &Slab) {
    s.next.set(*list);
    *list = s as *const Slab as *mut Slab;
}

/// pool.rs `pop`.
fn pop(list: &mut *mut Slab) -> Option<&'static Slab> {
    // SAFETY: list entries are live slab headers (the model frees them only at its end).
    let s = unsafe { list.as_ref()? };
    *list = s.next.get();
    s.next.set(ptr::null_mut());
    Some(s)
}

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
        let layout = Layout::from_size_align(size, core::mem::align_of::<Slab>()).unwrap();
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
    if s.free.get().is_null() {
        s.collect(&TINY);
        if s.free.get().is_null() && !s.carve(&TINY) {
            return 0;
        }
    }
    let b = s.free.get();
    // SAFETY: `b` heads the free list of a slab this thread owns.
    s.free.set(unsafe { (*b).next });
    s.used.set(s.used.get() + 1);
    b as usize
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

/// heap.rs `free` + `free_slow`, run by thread `tid` (which never holds the slab in a full
/// queue in these models). A local free that empties the slab would go on to
/// `Heap::slab_emptied` (the slab stays the adopter's, cached or given back): not modelled.
///
/// # Safety
/// `b` must be a live block of `s`, owned by the caller.
unsafe fn free(s: &Slab, tid: usize, b: usize) {
    let b = b as *mut Block;
    if s.owner.load(Ordering::Relaxed) == tid {
        // SAFETY: the block is dead and the slab is ours.
        unsafe { (*b).next = s.free.get() };
        s.free.set(b);
        s.used.set(s.used.get() - 1);
        return;
    }
    assert_ne!(s.owner.load(Ordering::Relaxed), tid | FULL);
    assert!(
        s.holds_block(b.cast()),
        "a live block failed the bounds check"
    );
    // SAFETY: the caller gives up `b`; it counts as used until collected.
    unsafe { s.remote.push(b) };
}

/// heap.rs `Heap::abandon_all` for one slab of the exiting thread: collect, then pool.rs
/// `release` when nothing is live, else pool.rs `abandon`.
fn abandon_one(pool: &Pool, s: &Slab) {
    s.collect(&TINY);
    if s.used.get() == 0 {
        release(pool, s);
    } else {
        s.owner.store(0, Ordering::Release);
        push(&mut pool.lists.lock().abandoned, s);
    }
}

/// pool.rs `SlabPool::release` (less the purge advice and timestamps).
fn release(pool: &Pool, s: &Slab) {
    assert_eq!(s.used.get(), 0);
    s.owner.store(0, Ordering::Relaxed);
    s.capacity.set(0);
    s.carved.set(0);
    s.block_size.set(0);
    push(&mut pool.lists.lock().free, s);
}

/// pool.rs `SlabPool::acquire` (its abandoned-list branch) + heap.rs `Heap::new_slab` (its
/// adopted branch), for thread `tid` with heap id `heap_id`.
fn adopt(pool: &Pool, tid: usize, heap_id: u64) -> Option<&'static Slab> {
    let s = pop(&mut pool.lists.lock().abandoned)?;
    s.heap_id.set(heap_id);
    s.owner.store(tid, Ordering::Relaxed);
    s.collect(&TINY);
    Some(s)
}

/// pool.rs `SlabPool::purge`, its walk of the abandoned list: collect each slab and move the
/// ones with no live block left to the free list. (The real walk links through
/// `Cell::as_ptr`, which loom's cell lacks; this one keeps the previous slab instead.)
fn purge_abandoned(pool: &Pool) {
    let mut l = pool.lists.lock();
    let mut prev: Option<&Slab> = None;
    let mut p = l.abandoned;
    // SAFETY: abandoned slabs are live, ownerless, touched only under this lock.
    while let Some(s) = unsafe { p.as_ref() } {
        p = s.next.get();
        s.collect(&TINY);
        if s.used.get() == 0 {
            match prev {
                Some(q) => q.next.set(p),
                None => l.abandoned = p,
            }
            s.capacity.set(0);
            s.carved.set(0);
            s.block_size.set(0);
            s.stage.set(0);
            s.freed_at.set(0);
            push(&mut l.free, s);
        } else {
            prev = Some(s);
        }
    }
}

/// The end state of every model: the slab is in exactly one place. Either its owner is
/// [`TID_B`] (adopted), which has allocated everything (`got`): then every block was handed
/// out exactly once and `used` counts them all; or it sits on the free list with no live
/// block and nothing left on its remote list (a remote free arriving after the slab went
/// there would be lost, and would corrupt its next user).
fn check_end(pool: &Pool, mem: &SlabMem, adopted: bool, mut got: Vec<usize>) {
    let s = mem.slab();
    let l = pool.lists.lock();
    assert!(l.abandoned.is_null(), "the slab is still abandoned");
    if adopted {
        assert!(l.free.is_null(), "an adopted slab is also on the free list");
        got.sort_unstable();
        assert_eq!(got, mem.blocks(), "a block was lost or handed out twice");
        assert_eq!(
            s.used.get() as usize,
            mem.cap,
            "used disagrees with the blocks"
        );
        assert_eq!(s.owner.load(Ordering::Relaxed), TID_B);
        assert!(s.free.get().is_null());
    } else {
        assert_eq!(l.free, s as *const Slab as *mut Slab, "the slab was lost");
        assert!(got.is_empty());
        assert_eq!(s.used.get(), 0, "a slab with live blocks was freed");
        assert_eq!(s.owner.load(Ordering::Relaxed), 0);
    }
    assert!(s.remote.is_empty(), "a remote free was lost");
}

/// Thread A exits holding a slab with two live blocks (one given to thread C, one to thread
/// B), two blocks on its free list. Concurrently C frees its block
/// remotely, and B tries to adopt the slab, frees its own block (locally if the adoption made
/// it the owner, remotely if not) and allocates all it can; after the joins B (the main thread)
/// finishes the adoption if it had come too early, and allocates the rest.
///
/// Proves: whatever the interleaving, the slab ends either adopted by B with all four blocks
/// handed out exactly once (none lost on the remote list, none handed out twice, `used` equal
/// to the blocks handed out), or released to the free list with no live block (when both frees
/// landed before A's final collect); the owner field routes each free correctly (no thread
/// ever sees its own id on a slab it does not own); and no slab `Cell` is ever touched by two
/// threads without a happens-before edge (the pool lock from A to B, the remote list's
/// Release/Acquire from C and B to the collector).
#[test]
fn loom_abandoned_slab_adopted_with_remote_frees() {
    loom::model(|| {
        let pool = Arc::new(Pool::new());
        // 4 blocks of 64 bytes: one carve takes them all (no carving after the abandon).
        let mem = SlabMem::new(64, 4);
        let s = mem.slab();
        let addr = mem.addr();
        // Thread A's life before exit: blocks 0 and 1 go to C and B, block 2 is freed locally.
        let (b0, b1, b2) = (alloc(s), alloc(s), alloc(s));
        // SAFETY: b2 is A's live block.
        unsafe { free(s, TID_A, b2) };
        assert_eq!(s.used.get(), 2);

        let p = pool.clone();
        let a = thread::spawn(move || abandon_one(&p, slab(addr)));
        // SAFETY: b0 is C's live block.
        let c = thread::spawn(move || unsafe { free(slab(addr), TID_C, b0) });
        let p = pool.clone();
        let b = thread::spawn(move || {
            let s = slab(addr);
            let adopted = adopt(&p, TID_B, 2).is_some();
            // SAFETY: b1 is B's live block.
            unsafe { free(s, TID_B, b1) };
            let mut got = Vec::new();
            if adopted {
                drain(s, &mut got);
            }
            (adopted, got)
        });
        a.join().unwrap();
        c.join().unwrap();
        let (mut adopted, mut got) = b.join().unwrap();
        // The main thread carries on as B.
        if !adopted {
            adopted = adopt(&pool, TID_B, 2).is_some();
        }
        if adopted {
            drain(s, &mut got);
        }
        check_end(&pool, &mem, adopted, got);
    });
}

/// Thread A exits holding a slab with one live block, given to thread C; C frees it remotely
/// while a purge pass walks the abandoned list (collecting each slab and retiring those with no
/// live block to the free list). After the joins, B adopts the slab if it is still abandoned.
///
/// Proves: the purge pass never retires a slab that still has a live block, and a remote free
/// is never stranded on a retired slab's remote list (the used count only reaches 0 after the
/// last remote push has been collected, under the Release/Acquire of the remote list); the slab
/// ends in exactly one place (adopted by B with all four blocks handed out once and `used`
/// consistent, or on the free list empty); the purge pass's and A's accesses to the slab's
/// cells are ordered by the pool lock.
#[test]
fn loom_abandoned_slab_purge_pass_with_remote_free() {
    loom::model(|| {
        let pool = Arc::new(Pool::new());
        let mem = SlabMem::new(64, 4);
        let s = mem.slab();
        let addr = mem.addr();
        let (b0, b1) = (alloc(s), alloc(s));
        // SAFETY: b1 is A's live block.
        unsafe { free(s, TID_A, b1) };
        assert_eq!(s.used.get(), 1);

        let p = pool.clone();
        let a = thread::spawn(move || abandon_one(&p, slab(addr)));
        // SAFETY: b0 is C's live block.
        let c = thread::spawn(move || unsafe { free(slab(addr), TID_C, b0) });
        let p = pool.clone();
        let purge = thread::spawn(move || purge_abandoned(&p));
        a.join().unwrap();
        c.join().unwrap();
        purge.join().unwrap();
        let mut got = Vec::new();
        let adopted = adopt(&pool, TID_B, 2).is_some();
        if adopted {
            drain(s, &mut got);
        }
        check_end(&pool, &mem, adopted, got);
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
        let pool = Arc::new(Pool::new());
        // 2 blocks of 8 KiB: each carve takes one.
        let mem = SlabMem::new(8 << 10, 2);
        let s = mem.slab();
        let addr = mem.addr();
        let b0 = alloc(s);
        assert_eq!(s.carved.get(), 1);

        let p = pool.clone();
        let a = thread::spawn(move || abandon_one(&p, slab(addr)));
        // SAFETY: b0 is C's live block.
        let c = thread::spawn(move || unsafe { free(slab(addr), TID_C, b0) });
        let p = pool.clone();
        let b = thread::spawn(move || {
            let mut got = Vec::new();
            let adopted = adopt(&p, TID_B, 2).is_some();
            if adopted {
                drain(slab(addr), &mut got);
            }
            (adopted, got)
        });
        a.join().unwrap();
        c.join().unwrap();
        let (mut adopted, mut got) = b.join().unwrap();
        if !adopted {
            adopted = adopt(&pool, TID_B, 2).is_some();
        }
        if adopted {
            drain(s, &mut got);
        }
        check_end(&pool, &mem, adopted, got);
    });
}
