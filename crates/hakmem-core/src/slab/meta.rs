//! A slab: an aligned run of blocks of one size class, its metadata in its first 128 bytes (so
//! the metadata of `p`'s slab is `p` with the low bits cleared), with two free lists: `free`
//! (allocation pops here and the owner's frees push here: last in, first out, so a block freed
//! and soon allocated again is still in the cache) and the atomic remote list (other threads'
//! frees). Allocation only falls to the slow path when `free` runs dry; the slow path then
//! collects the remote list in one go.
//!
//! Ownership: `owner` holds the owning thread's id, plus [`FULL`] while the slab sits in its
//! heap's full queue, [`ABANDONED`] while it waits in the pool after its thread exited, or 0
//! while it is unused or being handed over. A free is local exactly when
//! `owner == thread_id()`, so one compare also routes frees into full slabs to the slow path.
//! Only the owner touches the `Cell` fields; other threads read `owner` and push to `remote`.
#![cfg_attr(loom, allow(dead_code))] // under loom only the models use the slab operations

use super::remote::{Block, RemoteList};
use crate::stats::TierCounters;
use crate::sync::{AtomicU32, AtomicUsize, Cell, Ordering};

/// A `u32` the owner writes and other threads read: a Relaxed atomic (the same instructions as
/// a plain field on x86-64 and aarch64, but no data race). Readers need no ordering: any value
/// they can see lies above every block handed out before the block they hold.
pub struct SharedU32(AtomicU32);

impl SharedU32 {
    /// A cell holding `v`.
    #[cfg(not(loom))]
    pub const fn new(v: u32) -> Self {
        SharedU32(AtomicU32::new(v))
    }
    /// A cell holding `v` (loom's atomics are not const).
    #[cfg(loom)]
    pub fn new(v: u32) -> Self {
        SharedU32(AtomicU32::new(v))
    }
    /// The value.
    #[inline(always)]
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
    /// Sets the value.
    #[inline(always)]
    pub fn set(&self, v: u32) {
        self.0.store(v, Ordering::Relaxed)
    }
}
use core::ptr;

/// Owner flag: the slab is in its owner's full queue.
pub const FULL: usize = 1;
/// Owner value of a slab abandoned by an exited thread, waiting in its pool (thread ids are
/// aligned addresses, so no thread has this id). The first thread to free into it may adopt it.
pub const ABANDONED: usize = 2;
/// Blocks are carved from fresh memory 16 at a time, but at least 4 KiB and at most 8 KiB of
/// them (at least one block): a class with few blocks in use touches little (8 KiB for every
/// class cost ~130 KiB of peak RSS on `xthread`, one first carve per producer and class), and
/// big blocks do not take a slow path every few allocations (4 KiB for every class cost
/// `larson`, 8..1024 bytes, +16% instructions per op).
const CARVE_BLOCKS: usize = 16;
const CARVE_MIN_BYTES: usize = 4 << 10;
const CARVE_MAX_BYTES: usize = 8 << 10;

/// Bytes at the start of each slab taken by its [`Slab`] header; blocks follow, so they are
/// aligned to 128 bytes at most beyond their class size's own alignment.
pub const SLAB_HEADER: usize = core::mem::size_of::<Slab>();

/// The metadata of one slab, at the slab's start: two cache lines. The first holds what only
/// the owner touches (its allocation pops, local frees and queue links); the second what other
/// threads read or write: `owner`, the remote list, and the fields of the remote free's bounds
/// check. So in a producer/consumer pattern the owner's pops never wait for a line a remote
/// free just took, and a remote free touches one line of the header. (Splitting off only
/// `owner` and the remote list measured no gain: the bounds check still read the first line,
/// and each pop then had to invalidate the reader's copy.)
#[repr(C, align(128))]
pub struct Slab {
    // First line: the owner's.
    pub(crate) free: Cell<*mut Block>,
    pub(crate) used: Cell<u32>,
    pub(crate) capacity: Cell<u32>,
    pub(crate) next: Cell<*mut Slab>,
    pub(crate) prev: Cell<*mut Slab>,
    pub(crate) heap_id: Cell<u64>,
    /// Collected remote frees waiting for `free` to run dry (owner only; counted free).
    pub(crate) deferred: Cell<*mut Block>,
    /// While in the pool's free list: when it was freed (ms) and how resident it still is
    /// (`purge::Stage`).
    pub(crate) freed_at: Cell<u64>,
    /// In the first slab of a segment: how many of the segment's slabs are in the pool's free
    /// list (all of them: the segment can go back to the OS whole).
    pub(crate) seg_free: Cell<u32>,
    pub(crate) class: Cell<u8>,
    pub(crate) stage: Cell<u8>,
    // Second line: shared with other threads.
    pub(crate) owner: AtomicUsize,
    pub(crate) remote: RemoteList,
    pub(crate) block_size: Cell<u32>,
    /// Read by other threads (the bounds check of a remote free, `usable_size`): atomic.
    pub(crate) carved: SharedU32,
    /// [`reciprocal`] of `block_size`, for the bounds check (set with it).
    pub(crate) recip: Cell<u64>,
    /// How many remote frees into this slab a thread may hold back (`heap::Pending`): set by
    /// the heap with `block_size`.
    pub(crate) remote_batch: Cell<u32>,
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::offset_of;
    assert!(
        offset_of!(Slab, stage) < 64,
        "the owner's fields fill the first line"
    );
    assert!(
        offset_of!(Slab, owner) == 64,
        "the shared fields start the second line"
    );
    assert!(offset_of!(Slab, remote_batch) < 128);
    assert!(core::mem::size_of::<Slab>() == 128);
};

// SAFETY: the Cell fields are touched only by the owning thread (or under the pool lock while
// the slab has no owner); other threads use the atomics only.
unsafe impl Sync for Slab {}

impl Slab {
    /// A slab with no memory and no blocks.
    #[cfg(not(loom))]
    pub const fn empty() -> Slab {
        Slab {
            free: Cell::new(ptr::null_mut()),
            used: Cell::new(0),
            block_size: Cell::new(0),
            owner: AtomicUsize::new(0),
            remote: RemoteList::new(),
            capacity: Cell::new(0),
            carved: SharedU32::new(0),
            recip: Cell::new(0),
            remote_batch: Cell::new(0),
            class: Cell::new(0),
            next: Cell::new(ptr::null_mut()),
            prev: Cell::new(ptr::null_mut()),
            heap_id: Cell::new(0),
            deferred: Cell::new(ptr::null_mut()),
            freed_at: Cell::new(0),
            stage: Cell::new(0),
            seg_free: Cell::new(0),
        }
    }

    /// A slab with no memory and no blocks (loom: not `const`, its cells are checked).
    #[cfg(loom)]
    pub fn empty() -> Slab {
        Slab {
            free: Cell::new(ptr::null_mut()),
            used: Cell::new(0),
            block_size: Cell::new(0),
            owner: AtomicUsize::new(0),
            remote: RemoteList::new(),
            capacity: Cell::new(0),
            carved: SharedU32::new(0),
            recip: Cell::new(0),
            remote_batch: Cell::new(0),
            class: Cell::new(0),
            next: Cell::new(ptr::null_mut()),
            prev: Cell::new(ptr::null_mut()),
            heap_id: Cell::new(0),
            deferred: Cell::new(ptr::null_mut()),
            freed_at: Cell::new(0),
            stage: Cell::new(0),
            seg_free: Cell::new(0),
        }
    }

    /// Prepares an unused slab of `slab_size` bytes to serve blocks of `block_size` for the
    /// thread `tid`.
    pub(crate) fn format(
        &self,
        class: usize,
        block_size: usize,
        slab_size: usize,
        tid: usize,
        heap_id: u64,
    ) {
        debug_assert!(self.remote.is_empty() && self.used.get() == 0);
        self.free.set(ptr::null_mut());
        self.deferred.set(ptr::null_mut());
        self.used.set(0);
        self.carved.set(0);
        self.class.set(class as u8);
        self.block_size.set(block_size as u32);
        self.recip.set(reciprocal(block_size));
        self.capacity
            .set(((slab_size - SLAB_HEADER) / block_size) as u32);
        self.heap_id.set(heap_id);
        self.owner.store(tid, Ordering::Relaxed);
    }

    /// The first block's address.
    #[inline]
    pub(crate) fn start(&self) -> *mut u8 {
        (self as *const Slab as *mut u8).wrapping_add(SLAB_HEADER)
    }

    /// Takes the remote frees (owner only): the list is taken whole, its count from the head
    /// word, without touching a block, and `used` drops by that count. The blocks go to
    /// `free` when it is dry, else to `deferred`, which `free` takes over when it runs dry.
    pub(crate) fn collect(&self, counters: &TierCounters) {
        if self.free.get().is_null() && !self.deferred.get().is_null() {
            self.free.set(self.deferred.replace(ptr::null_mut()));
        }
        let (remote, n) = self.remote.take_all();
        if remote.is_null() {
            return;
        }
        self.used.set(self.used.get() - n);
        counters.remote.add(n as u64);
        if self.free.get().is_null() {
            // The usual case (collection runs when `free` is dry): no walk at all.
            self.free.set(remote);
        } else if self.deferred.get().is_null() {
            self.deferred.set(remote);
        } else {
            // SAFETY: both lists hold dead blocks of this slab, now the owner's.
            unsafe { self.deferred.set(concat(remote, self.deferred.get())) };
        }
    }

    /// Blocks handed out and not freed yet: `used` less the remote frees waiting (owner, or
    /// under the pool lock). The waiting count can only grow meanwhile, so 0 is final: no block
    /// is left that anyone could free.
    pub(crate) fn live(&self) -> u32 {
        self.used.get() - self.remote.count()
    }

    /// Forgets the remote list of a slab with no live block (about to be given back).
    pub(crate) fn drop_remote(&self, counters: &TierCounters) {
        debug_assert_eq!(self.live(), 0);
        let (_, n) = self.remote.take_all();
        self.used.set(self.used.get() - n);
        counters.remote.add(n as u64);
    }

    /// Carves a batch of never-used blocks ([`CARVE_BLOCKS`]) onto `free` (owner only). False when
    /// the slab has no fresh memory left.
    pub(crate) fn carve(&self, counters: &TierCounters) -> bool {
        let (carved, cap, bs) = (
            self.carved.get(),
            self.capacity.get(),
            self.block_size.get() as usize,
        );
        if carved == cap {
            return false;
        }
        let bytes = (CARVE_BLOCKS * bs).clamp(CARVE_MIN_BYTES, CARVE_MAX_BYTES);
        let n = ((bytes / bs) as u32).clamp(1, cap - carved);
        // Counted first: a locked add waits for every earlier store to drain, and the stores
        // below all miss (fresh memory): after them it stalled for all of them.
        counters.carved.add(n as u64);
        // SAFETY: blocks carved..carved+n lie inside this slab's 64 KiB and are unused.
        unsafe {
            let first = self.start().add(carved as usize * bs);
            let mut b = first;
            for _ in 1..n {
                let next = b.add(bs);
                (*b.cast::<Block>()).next = next.cast();
                b = next;
            }
            (*b.cast::<Block>()).next = self.free.get();
            self.free.set(first.cast());
        }
        self.carved.set(carved + n);
        true
    }

    /// Whether `p` is the start of a block of this (formatted) slab.
    pub(crate) fn holds_block(&self, p: *mut u8) -> bool {
        let (start, bs) = (self.start() as usize, self.block_size.get() as usize);
        let off = (p as usize).wrapping_sub(start);
        bs != 0 && off < self.carved.get() as usize * bs && is_multiple(off, bs, self.recip.get())
    }
}

/// log2 of the fixed-point scale of [`reciprocal`].
const RECIP_SHIFT: u32 = 44;
/// Offsets and block sizes [`is_multiple`] is exact for (slabs are at most 4 MiB).
pub const RECIP_LIMIT: usize = 1 << 22;

/// `ceil(2^44 / bs)`: with it, `is_multiple` tests divisibility by `bs` with a multiply
/// instead of a division (~25 cycles on the remote-free path, where every free checks that
/// its pointer is a block boundary).
pub const fn reciprocal(bs: usize) -> u64 {
    (1u64 << RECIP_SHIFT).div_ceil(bs as u64)
}

/// Whether `off` is a multiple of `bs`, for `off, bs < 2^22`, `bs ≥ 8` (the smallest block)
/// and `recip = reciprocal(bs)`.
/// Exact: writing `recip·bs = 2^44 + e` with `0 ≤ e < bs`, `off·recip / 2^44` exceeds
/// `off / bs` by `off·e / (bs·2^44) < 1/bs`, so its floor is `off / bs` rounded down, and
/// `off` is a multiple exactly when that quotient times `bs` gives it back. `off·recip`
/// stays below 2^22 · (2^41 + 1) < 2^64.
#[inline(always)]
pub fn is_multiple(off: usize, bs: usize, recip: u64) -> bool {
    debug_assert!(off < RECIP_LIMIT && (8..RECIP_LIMIT).contains(&bs));
    let q = (off as u64 * recip) >> RECIP_SHIFT;
    q * bs as u64 == off as u64
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reciprocal_divisibility_is_exact() {
        let mut sizes: std::vec::Vec<usize> = (8..=2048).collect();
        sizes.extend([
            3000,
            4096,
            10_000,
            32 << 10,
            40 << 10,
            56 << 10,
            1 << 20,
            (1 << 22) - 1,
        ]);
        for bs in sizes {
            let r = reciprocal(bs);
            // Every multiple below the limit, and its neighbours.
            for k in 0..(RECIP_LIMIT / bs).min(4096) {
                let m = k * bs;
                assert!(is_multiple(m, bs, r), "{m} is a multiple of {bs}");
                for off in [m + 1, m + bs / 2, m + bs - 1] {
                    if off < RECIP_LIMIT {
                        assert_eq!(is_multiple(off, bs, r), off % bs == 0, "off {off} bs {bs}");
                    }
                }
            }
            // The top of the range.
            for off in RECIP_LIMIT - 3 * bs.min(1000)..RECIP_LIMIT {
                assert_eq!(is_multiple(off, bs, r), off % bs == 0, "off {off} bs {bs}");
            }
        }
    }
}

/// Pushes `s` on the front of the doubly linked slab list `head` (through `next`/`prev`).
/// Pool lists only: the caller holds the pool lock.
pub(crate) fn link_front(head: &mut *mut Slab, s: &Slab) {
    let p = s as *const Slab as *mut Slab;
    s.prev.set(ptr::null_mut());
    s.next.set(*head);
    // SAFETY: list entries are slab headers in live segments, ours under the pool lock.
    if let Some(h) = unsafe { head.as_ref() } {
        h.prev.set(p);
    }
    *head = p;
}

/// Unlinks `s` from the doubly linked slab list `head`.
pub(crate) fn unlink(head: &mut *mut Slab, s: &Slab) {
    let (prev, next) = (s.prev.get(), s.next.get());
    // SAFETY: as in `link_front`.
    unsafe {
        match prev.as_ref() {
            Some(p) => p.next.set(next),
            None => *head = next,
        }
        if let Some(n) = next.as_ref() {
            n.prev.set(prev);
        }
    }
    s.next.set(ptr::null_mut());
    s.prev.set(ptr::null_mut());
}

/// Prepends the list `a` to `b`; returns the head. (Walks `a`: only when an adopted slab
/// still has both of its owner-side lists in use.)
///
/// # Safety
/// `a` must be a non-empty, null-terminated list of dead blocks owned by the caller.
unsafe fn concat(a: *mut Block, b: *mut Block) -> *mut Block {
    let mut tail = a;
    // SAFETY: walking a list the caller owns.
    unsafe {
        while !(*tail).next.is_null() {
            tail = (*tail).next;
        }
        (*tail).next = b;
    }
    a
}
