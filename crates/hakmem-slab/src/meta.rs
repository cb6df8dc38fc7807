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

//!
//! Every link in a block is encoded and checked (`link`): a block is handed out only after
//! the link that led to it decoded to a block boundary of this slab, and a free is accepted
//! only for a carved block boundary whose first word does not already decode as a link.

use crate::link;
use crate::remote::{Block, RemoteList};
use hakmem_core::diag::Fault;
use hakmem_core::os::PAGE;
use hakmem_core::stats::TierCounters;
use hakmem_core::sync::{AtomicU32, AtomicUsize, Cell, Ordering};

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
/// Owner flag: the owning heap runs the hardened mode (`HAKMEM_SECURE=1`), so no free of its
/// blocks takes the hot path (the owner test there compares the bare thread id).
pub const SECURE: usize = 4;
/// Blocks are carved from fresh memory 16 at a time, but at least 4 KiB and at most 8 KiB of
/// them (at least one block): a class with few blocks in use touches little (each producer's
/// first carve of each class is resident at once), and big blocks do not take a slow path
/// every few allocations (docs/BENCHMARKS.md, "Figures behind design choices").
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
/// free just took, and a remote free touches one line of the header.
#[repr(C, align(128))]
pub struct Slab {
    // First line: the owner's.
    /// The owner's free list; [`Slab::end`] when empty.
    pub(crate) free: Cell<*mut Block>,
    pub(crate) next: Cell<*mut Slab>,
    pub(crate) prev: Cell<*mut Slab>,
    pub(crate) heap_id: Cell<u64>,
    /// Collected remote frees waiting for `free` to run dry (owner only; counted free; null
    /// when empty).
    pub(crate) deferred: Cell<*mut Block>,
    /// [`link::divisor`] of `block_size` (the allocation's link check reads it here, on the
    /// owner's line; `div` is the same on the shared line).
    pub(crate) div_local: Cell<u64>,
    pub(crate) used: Cell<u32>,
    /// `capacity ·` [`link::excess`]: the bound of [`link::index_below`] for every block.
    pub(crate) capacity_bound: Cell<u32>,
    pub(crate) class: Cell<u8>,
    // Second line: shared with other threads.
    pub(crate) owner: AtomicUsize,
    pub(crate) remote: RemoteList,
    /// [`link::divisor`] of `block_size`, for the block-boundary check of a free.
    pub(crate) div: Cell<u64>,
    /// While in the pool's free list: when it was freed (ms).
    pub(crate) freed_at: Cell<u64>,
    pub(crate) block_size: Cell<u32>,
    /// Blocks carved so far. Read by other threads (`usable_size`): atomic.
    pub(crate) carved: SharedU32,
    /// `carved ·` [`link::excess`]: the bound of [`link::index_below`] for the carved blocks
    /// (a free's check).
    pub(crate) carved_bound: SharedU32,
    /// How many remote frees into this slab a thread may hold back (`heap::Pending`): set by
    /// the heap with `block_size`.
    pub(crate) remote_batch: Cell<u32>,
    pub(crate) capacity: Cell<u32>,
    /// In the first slab of a segment: how many of the segment's slabs are in the pool's free
    /// list (all of them: the segment can go back to the OS whole).
    pub(crate) seg_free: Cell<u32>,
    /// While in the pool's free list: how resident it still is (`purge::Stage`).
    pub(crate) stage: Cell<u8>,
    /// 1 when the slab's last page is a guard page (the hardened mode; kept while the slab
    /// lives, for every format after).
    pub(crate) guarded: Cell<u8>,
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::offset_of;
    assert!(
        offset_of!(Slab, class) < 64,
        "the owner's fields fill the first line"
    );
    assert!(
        offset_of!(Slab, owner) == 64,
        "the shared fields start the second line"
    );
    assert!(offset_of!(Slab, stage) < 128);
    assert!(core::mem::size_of::<Slab>() == 128);
};

// SAFETY: the Cell fields are touched only by the owning thread (or under the pool lock while
// the slab has no owner); other threads use the atomics only.
unsafe impl Sync for Slab {}

/// A slab with no memory and no blocks whose free list reads `$free` (const where the
/// atomics are).
macro_rules! empty_slab {
    ($free:expr) => {
        Slab {
            free: Cell::new($free),
            next: Cell::new(ptr::null_mut()),
            prev: Cell::new(ptr::null_mut()),
            heap_id: Cell::new(0),
            deferred: Cell::new(ptr::null_mut()),
            div_local: Cell::new(0),
            used: Cell::new(0),
            capacity_bound: Cell::new(0),
            class: Cell::new(0),
            owner: AtomicUsize::new(0),
            remote: RemoteList::new(),
            div: Cell::new(0),
            freed_at: Cell::new(0),
            block_size: Cell::new(0),
            carved: SharedU32::new(0),
            carved_bound: SharedU32::new(0),
            remote_batch: Cell::new(0),
            capacity: Cell::new(0),
            seg_free: Cell::new(0),
            stage: Cell::new(0),
            guarded: Cell::new(0),
        }
    };
}

impl Slab {
    /// A slab with no memory and no blocks.
    #[cfg(not(loom))]
    pub const fn empty() -> Slab {
        empty_slab!(ptr::null_mut())
    }

    /// A slab with no memory and no blocks whose free list reads "empty" when the slab lives
    /// at `at` (for a static that stands for "no slab", with its own address).
    #[cfg(not(loom))]
    pub const fn empty_at(at: *const Slab) -> Slab {
        empty_slab!(at as *mut Block)
    }

    /// A slab with no memory and no blocks (loom: not `const`, its cells are checked).
    #[cfg(loom)]
    pub fn empty() -> Slab {
        empty_slab!(ptr::null_mut())
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
        link::init_key();
        // The hardened mode keeps the last page for a guard (see `guard_tail`).
        let end = if tid & SECURE != 0 && slab_size > 4 * PAGE {
            slab_size - PAGE
        } else {
            slab_size
        };
        let capacity = (end - SLAB_HEADER) / block_size;
        self.free.set(self.end());
        self.deferred.set(ptr::null_mut());
        self.used.set(0);
        self.carved.set(0);
        self.carved_bound.set(0);
        self.class.set(class as u8);
        self.block_size.set(block_size as u32);
        self.div.set(link::divisor(block_size));
        self.div_local.set(link::divisor(block_size));
        self.capacity.set(capacity as u32);
        self.capacity_bound
            .set((capacity as u64 * link::excess(block_size)) as u32);
        self.heap_id.set(heap_id);
        self.owner.store(tid, Ordering::Relaxed);
    }

    /// Makes the slab's last page a guard page (the hardened mode, after [`Self::format`]; once
    /// per slab: it stays while the slab's segment lives).
    pub(crate) fn guard_tail(&self, slab_size: usize, tag: hakmem_core::map::Tag) {
        #[cfg(not(loom))]
        if self.guarded.get() == 0
            && slab_size > 4 * PAGE
            // SAFETY: the caller formatted this slab of its tier's (tagged `tag`) with its
            // blocks clear of the last page (`format`'s `secure` capacity).
            && unsafe {
                hakmem_core::guard::guard_slab_tail(self as *const Slab as usize, slab_size, tag)
            }
        {
            self.guarded.set(1);
        }
        #[cfg(loom)]
        let _ = (slab_size, tag);
    }

    /// Forgets the slab's format (it holds no live block): no pointer into it is a block.
    pub(crate) fn unformat(&self) {
        self.capacity.set(0);
        self.carved.set(0);
        self.carved_bound.set(0);
        self.capacity_bound.set(0);
        self.block_size.set(0);
    }

    /// The end of every list of this slab's blocks: the slab's own address (never a block).
    #[inline(always)]
    pub(crate) fn end(&self) -> *mut Block {
        self as *const Slab as *mut Block
    }

    /// Whether the owner's free list holds a block.
    #[inline(always)]
    pub(crate) fn has_free(&self) -> bool {
        self.free.get() != self.end()
    }

    /// The first block's address.
    #[inline]
    pub(crate) fn start(&self) -> *mut u8 {
        (self as *const Slab as *mut u8).wrapping_add(SLAB_HEADER)
    }

    /// Pops the head of the free list (owner only, [`Self::has_free`] true), after checking
    /// that its link decodes to a block boundary of this slab or to the list's end; starts
    /// fetching the next head.
    ///
    /// # Safety
    /// The caller owns the slab and its free list holds a block.
    #[inline(always)]
    pub(crate) unsafe fn pop(&self) -> *mut Block {
        let b = self.free.get();
        // SAFETY: `b` heads the free list of a slab the caller owns.
        let next = link::decode(unsafe { (*b).next } as usize, b as usize);
        if !link::CHECKED {
            // SAFETY: forwarded.
            unsafe { self.take(b, next as *mut Block) };
            return b;
        }
        // One branch, never taken in a sound program: the list's end is checked as the first
        // block (a conditional move), so it is no separate case here; the next allocation's
        // `has_free` finds it, as without checks.
        let start = self.start() as usize;
        let probe = core::hint::select_unpredictable(next == self.end() as usize, start, next);
        if !link::index_below(
            probe.wrapping_sub(start),
            self.div_local.get(),
            self.capacity_bound.get(),
        ) {
            // SAFETY: forwarded.
            return unsafe { self.pop_corrupt(b) };
        }
        // SAFETY: forwarded.
        unsafe { self.take(b, next as *mut Block) };
        b
    }

    /// [`Self::pop`] of `b` whose link is neither a block of this slab nor the list's end: a
    /// corruption, reported; the rest of the list is dropped (its blocks leak, none is handed
    /// out).
    ///
    /// # Safety
    /// As for [`Self::pop`].
    #[cold]
    #[inline(never)]
    unsafe fn pop_corrupt(&self, b: *mut Block) -> *mut Block {
        let bs = self.block_size.get() as usize;
        hakmem_core::diag::fault(Fault::Corruption, "malloc", b.cast(), bs, 0);
        // SAFETY: forwarded.
        unsafe { self.take(b, self.end()) };
        b
    }

    /// Hands out the head `b` of the free list, `next` becoming the head.
    ///
    /// # Safety
    /// As for [`Self::pop`]; `next` is `b`'s checked link.
    #[inline(always)]
    unsafe fn take(&self, b: *mut Block, next: *mut Block) {
        // SAFETY: `b` is the caller's. Its link goes: a live block must not read as a free
        // one, nor show the key.
        if link::CHECKED {
            unsafe { (*b).next = ptr::null_mut() };
        }
        self.free.set(next);
        self.used.set(self.used.get() + 1);
        prefetch(next);
    }

    /// Pushes the dead block `b` onto the owner's free list; `key` is [`link::key`].
    ///
    /// # Safety
    /// The caller owns the slab; `b` is one of its blocks, checked by [`Self::check_free`].
    #[inline(always)]
    pub(crate) unsafe fn push(&self, b: *mut Block, key: usize) {
        let raw = if link::CHECKED {
            self.free.get() as usize ^ (b as usize ^ key)
        } else {
            self.free.get() as usize
        };
        // SAFETY: the block is dead and the caller's.
        unsafe { (*b).next = raw as *mut Block };
        self.free.set(b);
    }

    /// A free of `p` by the slab's owner: checked ([`Self::check_free`]) and pushed onto the
    /// free list. The blocks still in use after it, or `None` when the check failed (nothing
    /// done: the caller reports it with [`Self::misuse`]).
    ///
    /// # Safety
    /// The calling thread owns the slab, and `p` lies in it.
    #[inline(always)]
    pub(crate) unsafe fn free_local(&self, p: *mut u8, slab_size: usize) -> Option<u32> {
        let key = link::key();
        if !self.check_free(p, slab_size, key) {
            return None;
        }
        // SAFETY: the block is dead and the slab is ours: only this thread uses its lists.
        unsafe { self.push(p.cast(), key) };
        let used = self.used.get() - 1;
        self.used.set(used);
        Some(used)
    }

    /// Whether a free of `p`, a pointer into this slab of `slab_size` bytes, may go ahead: a
    /// carved block boundary whose first word does not read as a free block's link (`key`:
    /// [`link::key`]). Else [`Self::misuse`] tells which fault it is.
    #[inline(always)]
    pub(crate) fn check_free(&self, p: *mut u8, slab_size: usize, key: usize) -> bool {
        if !link::CHECKED {
            return true;
        }
        let off = (p as usize).wrapping_sub(self.start() as usize);
        // SAFETY: `p` lies in this slab, which is mapped (a never-used or purged page reads 0).
        let raw = unsafe { (*p.cast::<Block>()).next } as usize;
        link::index_below(off, self.div.get(), self.carved_bound.get())
            & !link::looks_free(raw, key, slab_size)
    }

    /// Reports the fault [`Self::check_free`] found with `p` (the caller then leaves it alone).
    #[cold]
    #[inline(never)]
    pub(crate) fn misuse(&self, p: *mut u8, op: &str) {
        let off = (p as usize).wrapping_sub(self.start() as usize);
        let bs = self.block_size.get() as usize;
        let fault = if off >= self.carved.get() as usize * bs {
            Fault::InvalidFree("not a block")
        } else if !link::is_multiple(off, self.div.get()) {
            Fault::InvalidFree("interior pointer")
        } else {
            Fault::DoubleFree
        };
        hakmem_core::diag::fault(fault, op, p, bs, 0);
    }

    /// Takes the remote frees (owner only): the list is taken whole, its count from the head
    /// word, without touching a block, and `used` drops by that count. The blocks go to
    /// `free` when it is dry, else to `deferred`, which `free` takes over when it runs dry.
    pub(crate) fn collect(&self, counters: &TierCounters) {
        if !self.has_free() && !self.deferred.get().is_null() {
            self.free.set(self.deferred.replace(ptr::null_mut()));
        }
        let (remote, n) = self.remote.take_all();
        if remote.is_null() {
            return;
        }
        self.used.set(self.used.get() - n);
        counters.remote.add(n as u64);
        if !self.has_free() {
            // The usual case (collection runs when `free` is dry): no walk at all.
            self.free.set(remote);
        } else if self.deferred.get().is_null() {
            self.deferred.set(remote);
        } else {
            // SAFETY: both lists hold dead blocks of this slab, now the owner's.
            unsafe { self.deferred.set(self.concat(remote, self.deferred.get())) };
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

    /// Carves a batch of never-used blocks ([`CARVE_BLOCKS`]) onto `free` (owner only), in
    /// address order or, when `shuffle`, in a random one. False when the slab has no fresh
    /// memory left.
    pub(crate) fn carve(&self, counters: &TierCounters, shuffle: bool) -> bool {
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
        let first = self.start().wrapping_add(carved as usize * bs);
        if shuffle {
            self.carve_shuffled(first, n as usize, bs);
        } else {
            // SAFETY: blocks carved..carved+n lie inside this slab and are unused.
            unsafe {
                let mut b = first;
                for _ in 1..n {
                    let next = b.add(bs);
                    (*b.cast::<Block>()).next =
                        link::encode(next as usize, b as usize) as *mut Block;
                    b = next;
                }
                let last = link::encode(self.free.get() as usize, b as usize);
                (*b.cast::<Block>()).next = last as *mut Block;
            }
            self.free.set(first.cast());
        }
        self.carved.set(carved + n);
        self.carved_bound
            .set(((carved + n) as u64 * (bs as u64).wrapping_mul(self.div.get())) as u32);
        true
    }

    /// Pushes the `n` fresh blocks of `bs` bytes from `first` onto `free` in a random order
    /// (Fisher–Yates, seeded by the key and the address): where the next block comes from is
    /// not predictable from the last.
    #[cold]
    fn carve_shuffled(&self, first: *mut u8, n: usize, bs: usize) {
        const MAX: usize = CARVE_MAX_BYTES / 8;
        let mut order = [0u16; MAX];
        let n = n.min(MAX);
        let mut x = (link::key() ^ first as usize ^ hakmem_core::os::now_ms() as usize) as u64 | 1;
        for (i, o) in order[..n].iter_mut().enumerate() {
            *o = i as u16;
        }
        for i in (1..n).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for &i in &order[..n] {
            let b = first.wrapping_add(i as usize * bs).cast::<Block>();
            // SAFETY: a fresh block of this slab, the owner's.
            unsafe { self.push(b, link::key()) };
        }
    }

    /// Checks the slab's invariants (debug builds, by the owner at a point where it is not in
    /// the middle of an operation): the carved blocks are at most the capacity and the bounds
    /// and divisors agree with the counts; the owner's two lists (`free`, `deferred`) are
    /// chains of carved blocks ending at the slab's end, and with the blocks out (`used` less
    /// the pin, when `pinned`) they make up the carved ones; the remote list counts no more
    /// blocks than are out. Once a fault has been reported the counts are not compared: a
    /// corrupt list is cut and its blocks leak.
    #[cfg(debug_assertions)]
    pub(crate) fn check(&self, pinned: bool) {
        let at = self as *const Slab;
        let (carved, cap) = (self.carved.get(), self.capacity.get());
        let bs = self.block_size.get() as usize;
        assert!(bs != 0 && cap != 0, "slab {at:p}: not formatted");
        assert!(carved <= cap, "slab {at:p}: {carved} carved of {cap}");
        let m = link::divisor(bs);
        assert!(
            self.div.get() == m && self.div_local.get() == m,
            "slab {at:p}: divisor"
        );
        let excess = link::excess(bs);
        assert_eq!(
            self.carved_bound.get(),
            (carved as u64 * excess) as u32,
            "slab {at:p}: carved bound"
        );
        assert_eq!(
            self.capacity_bound.get(),
            (cap as u64 * excess) as u32,
            "slab {at:p}: capacity bound"
        );
        let used = self.used.get();
        let pin = pinned as u32;
        assert!(used >= pin, "slab {at:p}: pinned with used {used}");
        let out = used - pin;
        assert!(
            out <= carved,
            "slab {at:p}: {out} blocks out of {carved} carved"
        );
        let remote = self.remote.count();
        assert!(
            remote <= out,
            "slab {at:p}: {remote} remote frees, {out} out"
        );
        if hakmem_core::stats::FAULTS.get() != 0 {
            return;
        }
        let free = self.list_len(self.free.get(), carved);
        let deferred = match self.deferred.get() {
            d if d.is_null() => 0,
            d => self.list_len(d, carved),
        };
        assert_eq!(
            free + deferred + out,
            carved,
            "slab {at:p}: {free} free + {deferred} deferred + {out} out != {carved} carved"
        );
    }

    /// The length of one of the owner's lists of this slab (debug builds): every link must
    /// lead to a carved block or to the end, in at most `carved` steps.
    #[cfg(debug_assertions)]
    fn list_len(&self, head: *mut Block, carved: u32) -> u32 {
        let mut n = 0;
        let mut b = head;
        while b != self.end() {
            assert!(
                self.holds_block(b.cast()),
                "slab {:p}: list link {b:p} is not a carved block",
                self as *const Slab
            );
            n += 1;
            assert!(n <= carved, "slab {:p}: a list cycles", self as *const Slab);
            // SAFETY: a carved block on one of the owner's lists: dead, its first word a link.
            b = link::decode(unsafe { (*b).next } as usize, b as usize) as *mut Block;
        }
        n
    }

    /// Whether `p` is the start of a carved block of this (formatted) slab.
    pub(crate) fn holds_block(&self, p: *mut u8) -> bool {
        let off = (p as usize).wrapping_sub(self.start() as usize);
        link::index_below(off, self.div.get(), self.carved_bound.get())
    }

    /// Prepends the list `a` to `b`; returns the head. (Walks `a`: only when an adopted slab
    /// still has both of its owner-side lists in use.) A link of `a` that is not a block of
    /// this slab is a corruption: reported, and `a` is cut there.
    ///
    /// # Safety
    /// `a` must be a non-empty list of dead blocks of this slab owned by the caller.
    unsafe fn concat(&self, a: *mut Block, b: *mut Block) -> *mut Block {
        let mut tail = a;
        loop {
            // SAFETY: `tail` is a checked block of the caller's list.
            let next = link::decode(unsafe { (*tail).next } as usize, tail as usize);
            if next == self.end() as usize {
                break;
            }
            if !self.holds_block(next as *mut u8) {
                let bs = self.block_size.get() as usize;
                hakmem_core::diag::fault(Fault::Corruption, "malloc", tail.cast(), bs, 0);
                break;
            }
            tail = next as *mut Block;
        }
        // SAFETY: as above.
        unsafe { (*tail).next = link::encode(b as usize, tail as usize) as *mut Block };
        a
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

/// Starts fetching the block the next allocation of a class will hand out: a block another
/// core freed last is a cache miss, and a run of allocations (a producer filling a batch) then
/// overlaps those misses instead of taking them one after the other. A hint: any address is
/// fine.
#[inline(always)]
fn prefetch(b: *mut Block) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(b.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = b;
}

#[cfg(all(test, not(loom), debug_assertions))]
mod tests {
    use super::*;

    /// A fresh 64 KiB slab of 16-byte blocks with one batch carved, in a mapping of its own.
    fn slab() -> &'static Slab {
        let p = hakmem_core::os::map_aligned(1 << 16, 1 << 16).cast::<Slab>();
        assert!(!p.is_null());
        // SAFETY: a fresh mapping of one slab, ours for the test (never unmapped).
        let s = unsafe {
            p.write(Slab::empty());
            &*p
        };
        s.format(1, 16, 1 << 16, 0x1000, 1);
        assert!(s.carve(&hakmem_core::stats::TierCounters::new(), false));
        s
    }

    #[test]
    fn check_accepts_a_consistent_slab() {
        let s = slab();
        s.check(false);
        // SAFETY: the test owns the slab; its free list holds blocks.
        let b = unsafe { s.pop() };
        s.check(false);
        s.used.set(s.used.get() + 1);
        s.check(true);
        s.used.set(s.used.get() - 1);
        // SAFETY: `b` is a block of the slab just popped, dead again.
        unsafe { s.push(b, link::key()) };
        s.used.set(s.used.get() - 1);
        s.check(false);
    }

    #[test]
    #[should_panic(expected = "blocks out of")]
    fn check_finds_more_blocks_out_than_carved() {
        let s = slab();
        s.used.set(s.carved.get() + 1);
        s.check(false);
    }

    #[test]
    #[should_panic(expected = "pinned with used 0")]
    fn check_finds_a_pin_without_its_bias() {
        slab().check(true);
    }
}
