//! Sampled guard-page allocations (GWP-ASan style): a few small blocks, each placed so that it
//! ends where an inaccessible page begins and whose page becomes inaccessible when it is freed.
//! A heap-buffer overflow past such a block, or a use after its free, faults at the first wrong
//! access; a signal handler recognises the address and reports the bug in one line, then
//! aborts.
//!
//! Layout: one reservation of one 4 MiB chunk (owner tag [`TAG_GUARD`]), made on the first
//! guarded allocation, cut into [`SLOTS`] slots of [`SLOT_SIZE`] (16 KiB):
//!
//! ```text
//! slot i:  [ data page, 4 KiB ][ guard pages, 12 KiB, always PROT_NONE ]
//!                      block ^^^ ends at the data page's end
//! ```
//!
//! A block of `size` bytes (`0 < size ≤` [`MAX_SIZE`]) starts at
//! `data page end − round_up(size, 16)`: it is 16-byte aligned and its usable size,
//! `round_up(size, 16)`, ends exactly where the guard pages begin. The data page is `PROT_NONE`
//! whenever its slot holds no live block (never used, or freed), read-write while it does.
//!
//! Slots are taken never-used first; once all have been used, the oldest freed one: freed
//! slots wait in a FIFO quarantine, so a freed block stays inaccessible (and a use after free
//! detectable) for as long as possible. When all [`SLOTS`] blocks are live, [`alloc`] returns
//! null and the caller serves the request normally.
//!
//! Each slot's size and state live in one atomic word of a static table, so the fault handler
//! reads them without a lock. Taking and returning slots (and the `mprotect` calls) happen under
//! one small lock ([`lock`], held across `fork`).
//!
//! Which allocations are guarded is decided elsewhere: the slab engine's slow path samples one
//! allocation in `HAKMEM_GUARD_SAMPLE` ([`crate::config::Config::guard_sample`]) and calls
//! [`alloc`] for it (sizes up to [`MAX_SIZE`], alignments up to 16). `libhakmem.so` also
//! exports `hakmem_guarded_malloc` (testing and debugging) to make one directly.
//!
//! The fault handler (`SIGSEGV` and `SIGBUS`, `SA_SIGINFO | SA_ONSTACK`, installed when the
//! reservation is made, the previous actions saved) classifies the faulting address:
//! - in a guard page: `hakmem: heap-buffer-overflow: <addr> is <n> bytes past the <size>-byte
//!   block <p>` (`n` counts from the block's requested end `p + size`: 0 is the first byte
//!   after it), or, in the upper half of the guard pages with a block in the next slot,
//!   `hakmem: heap-buffer-underflow: <addr> is <n> bytes before the <size>-byte block <p>`;
//! - in a freed slot's data page: `hakmem: use after free: <addr> is <off> bytes into the freed
//!   <size>-byte block <p>`;
//! - in a never-used slot: `hakmem: wild access: <addr> in an unused guard slot`;
//!
//! then it restores the default action and aborts (`SIGABRT`), whatever `HAKMEM_ON_ERROR` says
//! (the faulting access cannot be resumed). An address in a slot that is live again (reused
//! between the fault and the handler's look) is retried. An address outside the reservation is
//! not hakmem's business: the handler restores the previous action and returns, so the faulting
//! instruction runs again under it (a signal sent by `kill`/`raise`, which re-executes nothing,
//! is raised again); from then on guard faults take that action too.

use crate::diag::{self, Fault, StackBuf};
use crate::map::{self, CHUNK_SIZE, TAG_GUARD, Tag};
use crate::os::{self, PAGE};
use crate::segment::{OS_PAGES, PageSource};
use crate::stats;
use crate::sync::{AtomicU32, AtomicUsize, Mutex, Ordering, RawLock};
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::fmt::Write;
use core::mem::MaybeUninit;
use core::ptr;
use core::sync::atomic::AtomicBool;

/// The number of slots, hence of guarded blocks live at once.
pub const SLOTS: usize = 256;
/// The size of one slot: its data page and its guard pages.
pub const SLOT_SIZE: usize = CHUNK_SIZE / SLOTS;
/// The largest guarded request: a page less one 16-byte grain.
pub const MAX_SIZE: usize = PAGE - GRAIN;
const GRAIN: usize = 16;
// Slot numbers are stored as bytes in the quarantine ring.
const _: () = assert!(SLOTS <= 256 && SLOT_SIZE >= 2 * PAGE);

/// Slot states, the low two bits of a slot word; the requested size is the rest.
const NEVER: u32 = 0;
const LIVE: u32 = 1;
const FREED: u32 = 2;

#[inline]
const fn word(size: usize, state: u32) -> u32 {
    ((size as u32) << 2) | state
}

#[inline]
const fn rounded(size: usize) -> usize {
    (size + GRAIN - 1) & !(GRAIN - 1)
}

/// Changes the protection of a page-aligned range of the reservation; false on failure.
fn protect(addr: usize, len: usize, prot: c_int) -> bool {
    // SAFETY: the range lies in the guard reservation, which this module alone manages.
    os::keep_errno(|| unsafe { libc::mprotect(addr as *mut c_void, len, prot) } == 0)
}

/// Which slots can be taken: the never-used ones (`fresh..SLOTS`) and the quarantine, a FIFO
/// ring of freed slot numbers.
struct Queue {
    fresh: usize,
    ring: [u8; SLOTS],
    head: usize,
    len: usize,
}

impl Queue {
    fn push_back(&mut self, i: usize) {
        self.ring[(self.head + self.len) % SLOTS] = i as u8;
        self.len += 1;
    }
    fn pop_front(&mut self) -> Option<usize> {
        (self.len > 0).then(|| {
            let i = self.ring[self.head] as usize;
            self.head = (self.head + 1) % SLOTS;
            self.len -= 1;
            i
        })
    }
    fn push_front(&mut self, i: usize) {
        self.head = (self.head + SLOTS - 1) % SLOTS;
        self.ring[self.head] = i as u8;
        self.len += 1;
    }
}

/// What a faulting address is, to the guard allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Outside the reservation.
    NotOurs,
    /// In a live slot's data page (it was made accessible again after the fault): retry.
    Retry,
    /// In the guard pages after the block at `block` (`size` bytes): `past` bytes after its end.
    Overflow {
        addr: usize,
        block: usize,
        size: usize,
        past: usize,
    },
    /// In the guard pages before the block at `block`: `before` bytes before its start.
    Underflow {
        addr: usize,
        block: usize,
        size: usize,
        before: usize,
    },
    /// In the data page of the freed block at `block`, `offset` bytes from its start.
    UseAfterFree {
        addr: usize,
        block: usize,
        size: usize,
        offset: isize,
    },
    /// In a slot that never held a block.
    Unused { addr: usize },
    /// In the guard page at the end of a slab (the hardened mode): past its last block.
    SlabEnd { addr: usize },
}

/// Writes the report line of an access (nothing for `NotOurs` and `Retry`).
fn report<const N: usize>(b: &mut StackBuf<N>, a: &Access) {
    let _ = match *a {
        Access::NotOurs | Access::Retry => Ok(()),
        Access::Overflow {
            addr,
            block,
            size,
            past,
        } => writeln!(
            b,
            "hakmem: heap-buffer-overflow: {addr:#x} is {past} bytes past the {size}-byte block {block:#x}"
        ),
        Access::Underflow {
            addr,
            block,
            size,
            before,
        } => writeln!(
            b,
            "hakmem: heap-buffer-underflow: {addr:#x} is {before} bytes before the {size}-byte block {block:#x}"
        ),
        Access::UseAfterFree {
            addr,
            block,
            size,
            offset,
        } if offset < 0 => writeln!(
            b,
            "hakmem: use after free: {addr:#x} is {} bytes before the freed {size}-byte block {block:#x}",
            offset.unsigned_abs()
        ),
        Access::UseAfterFree {
            addr,
            block,
            size,
            offset,
        } => writeln!(
            b,
            "hakmem: use after free: {addr:#x} is {offset} bytes into the freed {size}-byte block {block:#x}"
        ),
        Access::Unused { addr } => {
            writeln!(b, "hakmem: wild access: {addr:#x} in an unused guard slot")
        }
        Access::SlabEnd { addr } => writeln!(
            b,
            "hakmem: heap-buffer-overflow: {addr:#x} is past the last block of its slab, in the slab's guard page"
        ),
    };
}

/// A guard allocator over one reservation; the process uses one, `GUARD`.
struct Guard {
    /// The reservation's address (0 until the first allocation), published with Release.
    base: AtomicUsize,
    /// Per slot: `size << 2 | state`, written under `queue`'s lock, read by anyone.
    slots: [AtomicU32; SLOTS],
    queue: Mutex<Queue>,
    /// Whether making the reservation installs the fault handler (the process instance only).
    handles_faults: bool,
}

impl Guard {
    const fn new(handles_faults: bool) -> Self {
        Guard {
            base: AtomicUsize::new(0),
            slots: [const { AtomicU32::new(0) }; SLOTS],
            queue: Mutex::new(Queue {
                fresh: 0,
                ring: [0; SLOTS],
                head: 0,
                len: 0,
            }),
            handles_faults,
        }
    }

    /// The slot holding `addr`, with the reservation's base, if `addr` is in the reservation.
    #[inline]
    fn slot_of(&self, addr: usize) -> Option<(usize, usize)> {
        let base = self.base.load(Ordering::Acquire);
        let off = addr.wrapping_sub(base);
        (base != 0 && off < CHUNK_SIZE).then_some((base, off / SLOT_SIZE))
    }

    /// The start of the block of `size` bytes in slot `i`.
    #[inline]
    fn block_start(base: usize, i: usize, size: usize) -> usize {
        base + i * SLOT_SIZE + PAGE - rounded(size)
    }

    /// Makes the reservation (caller holds the lock): the whole chunk `PROT_NONE`, the fault
    /// handler installed. 0 when the OS refuses.
    fn reserve(&self) -> usize {
        let p = OS_PAGES.reserve(CHUNK_SIZE, CHUNK_SIZE, TAG_GUARD, false);
        if p.is_null() {
            return 0;
        }
        let base = p as usize;
        // SAFETY: advice on our fresh reservation (huge pages would only be split by mprotect);
        // failure is harmless.
        os::keep_errno(|| unsafe { libc::madvise(p.cast(), CHUNK_SIZE, libc::MADV_NOHUGEPAGE) });
        if !protect(base, CHUNK_SIZE, libc::PROT_NONE) {
            // SAFETY: the fresh reservation holds nothing.
            unsafe { OS_PAGES.release(p, CHUNK_SIZE) };
            os::set_errno(libc::ENOMEM);
            return 0;
        }
        if self.handles_faults {
            ensure_handlers();
        }
        self.base.store(base, Ordering::Release);
        base
    }

    fn alloc(&self, size: usize) -> *mut u8 {
        if size == 0 || size > MAX_SIZE {
            return ptr::null_mut();
        }
        let mut q = self.queue.lock();
        let mut base = self.base.load(Ordering::Relaxed);
        if base == 0 {
            base = self.reserve();
            if base == 0 {
                return ptr::null_mut();
            }
        }
        let (i, fresh) = if q.fresh < SLOTS {
            q.fresh += 1;
            (q.fresh - 1, true)
        } else if let Some(i) = q.pop_front() {
            (i, false)
        } else {
            return ptr::null_mut(); // every slot is live
        };
        let page = base + i * SLOT_SIZE;
        if !protect(page, PAGE, libc::PROT_READ | libc::PROT_WRITE) {
            // Out of kernel mappings: the slot goes back where it came from.
            if fresh {
                q.fresh -= 1;
            } else {
                q.push_front(i);
            }
            return ptr::null_mut();
        }
        if !fresh {
            // SAFETY: the data page was just made writable and belongs to no block.
            unsafe { ptr::write_bytes(page as *mut u8, 0, PAGE) };
        }
        self.slots[i].store(word(size, LIVE), Ordering::Release);
        drop(q);
        stats::GUARD_ALLOCS.add(1);
        Self::block_start(base, i, size) as *mut u8
    }

    fn free(&self, p: *mut u8) {
        let addr = p as usize;
        let Some((base, i)) = self.slot_of(addr) else {
            diag::fault(Fault::InvalidFree("not a block"), "free", p, 0, 0);
            return;
        };
        let mut q = self.queue.lock();
        let w = self.slots[i].load(Ordering::Relaxed);
        let (state, size) = (w & 3, (w >> 2) as usize);
        let start = Self::block_start(base, i, size);
        let page_end = base + i * SLOT_SIZE + PAGE;
        let bad = match state {
            LIVE if addr == start => None,
            LIVE if addr > start && addr < page_end => Some(Fault::InvalidFree("interior pointer")),
            FREED if addr == start => Some(Fault::DoubleFree),
            _ => Some(Fault::InvalidFree("not a block")),
        };
        if let Some(f) = bad {
            drop(q);
            let class = if state == NEVER { 0 } else { rounded(size) };
            diag::fault(f, "free", p, class, 0);
            return;
        }
        // State first, protection second: a fault on the page always finds the slot freed.
        self.slots[i].store(word(size, FREED), Ordering::Release);
        // A failure (out of kernel mappings) leaves the page accessible: the use after free
        // goes unseen, nothing else changes.
        protect(page_end - PAGE, PAGE, libc::PROT_NONE);
        q.push_back(i);
    }

    fn usable_size(&self, p: *const u8) -> usize {
        let addr = p as usize;
        let Some((base, i)) = self.slot_of(addr) else {
            return 0;
        };
        let w = self.slots[i].load(Ordering::Acquire);
        let size = (w >> 2) as usize;
        if w & 3 == LIVE && addr == Self::block_start(base, i, size) {
            rounded(size)
        } else {
            0
        }
    }

    /// Classifies a faulting address. Lock-free: only atomic loads (async-signal-safe).
    fn classify(&self, addr: usize) -> Access {
        let Some((base, i)) = self.slot_of(addr) else {
            return Access::NotOurs;
        };
        let slot = base + i * SLOT_SIZE;
        let w = self.slots[i].load(Ordering::Acquire);
        let (state, size) = (w & 3, (w >> 2) as usize);
        let block = Self::block_start(base, i, size);
        if addr - slot >= PAGE {
            // A guard page: the block before it, or, in the upper half, the block after it.
            if addr - slot >= PAGE + (SLOT_SIZE - PAGE) / 2 && i + 1 < SLOTS {
                let next = self.slots[i + 1].load(Ordering::Acquire);
                if next & 3 != NEVER {
                    let size = (next >> 2) as usize;
                    let block = Self::block_start(base, i + 1, size);
                    return Access::Underflow {
                        addr,
                        block,
                        size,
                        before: block - addr,
                    };
                }
            }
            if state == NEVER {
                return Access::Unused { addr };
            }
            return Access::Overflow {
                addr,
                block,
                size,
                past: addr - (block + size),
            };
        }
        match state {
            LIVE => Access::Retry,
            FREED => Access::UseAfterFree {
                addr,
                block,
                size,
                offset: addr as isize - block as isize,
            },
            _ => Access::Unused { addr },
        }
    }
}

static GUARD: Guard = Guard::new(true);

/// A guarded block of `size` bytes (`0 < size ≤` [`MAX_SIZE`]), zero-filled, 16-byte aligned,
/// ending exactly at a `PROT_NONE` page (its usable size is `size` rounded up to 16). Null for
/// any other size, when all [`SLOTS`] guarded blocks are live, or when the OS refuses memory.
/// The first call reserves the guard chunk and installs the fault handler.
pub fn alloc(size: usize) -> *mut u8 {
    GUARD.alloc(size)
}

/// Frees a guarded block: its page becomes inaccessible and its slot joins the quarantine. A
/// pointer that is not a live block's start is reported by [`diag::fault`] (double free,
/// invalid free: interior pointer / not a block) and left alone.
///
/// # Safety
/// `p` must lie in the guard reservation ([`owns`]); if it is a live block, nothing may use it
/// afterwards.
pub unsafe fn free(p: *mut u8) {
    GUARD.free(p)
}

/// The usable size of a live guarded block (its size rounded up to 16); 0 for any other
/// pointer.
///
/// # Safety
/// None beyond `p` being a pointer value: nothing is dereferenced (it is `unsafe` to match the
/// other tiers' `usable_size`).
pub unsafe fn usable_size(p: *const u8) -> usize {
    GUARD.usable_size(p)
}

/// Whether `p` lies in the guard reservation.
pub fn owns(p: *const u8) -> bool {
    GUARD.slot_of(p as usize).is_some()
}

/// The guard allocator's lock (for `fork` handlers).
pub fn lock() -> &'static RawLock {
    GUARD.queue.raw()
}

/// The actions `SIGSEGV` and `SIGBUS` had before the handler was installed.
struct Previous(UnsafeCell<[MaybeUninit<libc::sigaction>; 2]>);
// SAFETY: written once, under the guard lock, before the handler is installed; read only by the
// handler afterwards.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new([MaybeUninit::uninit(); 2]));

const SIGNALS: [c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// Installs the fault handler once per process (the guard reservation and the hardened mode's
/// slab guards both need it).
fn ensure_handlers() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if !INSTALLED.swap(true, Ordering::AcqRel) {
        install_handlers();
    }
}

/// The slab tiers whose slabs end in a guard page (the hardened mode): (owner-map tag, slab
/// size) pairs, for the fault handler.
static SLAB_GUARDS: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

/// Makes the last page of the slab at `slab` (`slab_size` bytes, of the tier tagged `tag`) a
/// guard page: an overflow past the slab's last block stops there with a report instead of
/// running into the next slab's header. False when the OS refuses (the slab works unguarded).
///
/// # Safety
/// `[slab, slab + slab_size)` must be a slab the caller owns, in a chunk tagged `tag`, whose
/// last page holds nothing and is never written again while the slab is formatted so.
pub unsafe fn guard_slab_tail(slab: usize, slab_size: usize, tag: Tag) -> bool {
    let entry = (tag as usize) << 56 | slab_size;
    for g in &SLAB_GUARDS {
        match g.compare_exchange(0, entry, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(e) if e == entry => break,
            Err(_) => {}
        }
    }
    ensure_handlers();
    protect(slab + slab_size - PAGE, PAGE, libc::PROT_NONE)
}

/// Whether `addr` lies in the guard page at the end of a slab (see [`guard_slab_tail`]).
fn in_slab_guard(addr: usize) -> bool {
    let tag = map::MAP.tag(addr) as usize;
    SLAB_GUARDS.iter().any(|g| {
        let e = g.load(Ordering::Acquire);
        let size = e & ((1 << 56) - 1);
        e != 0 && e >> 56 == tag && size.is_power_of_two() && addr & (size - 1) >= size - PAGE
    })
}

/// Installs [`on_fault`] for `SIGSEGV` and `SIGBUS`, saving the previous actions first.
fn install_handlers() {
    let handler: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) = on_fault;
    for (k, sig) in SIGNALS.into_iter().enumerate() {
        // SAFETY: the saved action is written before the handler that reads it is installed,
        // by the one thread making the reservation; `sa` is fully initialised (zeroed is a
        // valid sigaction) before use.
        unsafe {
            let prev = (*PREVIOUS.0.get())[k].as_mut_ptr();
            if libc::sigaction(sig, ptr::null(), prev) != 0 {
                continue;
            }
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = handler as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, ptr::null_mut());
        }
    }
}

/// The fault handler. Async-signal-safe: atomic loads, formatting into a stack buffer,
/// `write(2)`, `sigaction`, `raise`, `abort`.
extern "C" fn on_fault(sig: c_int, info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    os::keep_errno(|| {
        // SAFETY: an SA_SIGINFO handler is passed the signal's siginfo.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        // A non-positive code: sent by kill/raise/sigqueue, not raised by an access.
        let access = match if code > 0 {
            GUARD.classify(addr)
        } else {
            Access::NotOurs
        } {
            Access::NotOurs if code > 0 && in_slab_guard(addr) => Access::SlabEnd { addr },
            a => a,
        };
        match access {
            Access::Retry => {}
            Access::NotOurs => {
                let k = SIGNALS.iter().position(|&s| s == sig).unwrap_or(0);
                // SAFETY: the saved action was written before this handler was installed.
                unsafe {
                    libc::sigaction(sig, (*PREVIOUS.0.get())[k].as_ptr(), ptr::null_mut());
                    if code <= 0 {
                        // Blocked while this handler runs: delivered to the restored action on
                        // return.
                        libc::raise(sig);
                    }
                }
            }
            _ => {
                stats::FAULTS.add(1);
                let mut b = StackBuf::<256>::new();
                report(&mut b, &access);
                diag::write_stderr(b.as_bytes());
                // SAFETY: restoring the default action and aborting, both async-signal-safe.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                    libc::abort();
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn line(a: &Access) -> String {
        let mut b = StackBuf::<256>::new();
        report(&mut b, a);
        String::from(core::str::from_utf8(b.as_bytes()).unwrap())
    }

    #[test]
    fn blocks_end_at_the_guard_page() {
        static G: Guard = Guard::new(false);
        for size in [1, 15, 16, 17, 100, 1000, MAX_SIZE] {
            let p = G.alloc(size);
            assert!(!p.is_null(), "{size}");
            let a = p as usize;
            assert_eq!(a % 16, 0);
            assert_eq!(
                (a + rounded(size)) % PAGE,
                0,
                "{size}: does not end at a page end"
            );
            assert_eq!(G.usable_size(p), rounded(size));
            assert!(G.slot_of(a).is_some() && G.slot_of(a + rounded(size) - 1).is_some());
            // SAFETY: a live block of `rounded(size)` bytes.
            let s = unsafe { core::slice::from_raw_parts_mut(p, rounded(size)) };
            assert!(s.iter().all(|&x| x == 0));
            s.fill(0xA5);
            assert_eq!(G.classify(a), Access::Retry);
            assert_eq!(
                G.classify(a + rounded(size)),
                Access::Overflow {
                    addr: a + rounded(size),
                    block: a,
                    size,
                    past: rounded(size) - size
                }
            );
            G.free(p);
            assert_eq!(G.usable_size(p), 0);
            assert_eq!(
                G.classify(a + 3),
                Access::UseAfterFree {
                    addr: a + 3,
                    block: a,
                    size,
                    offset: 3
                }
            );
        }
        assert_eq!(G.alloc(0), ptr::null_mut());
        assert_eq!(G.alloc(MAX_SIZE + 1), ptr::null_mut());
        assert_eq!(G.classify(16), Access::NotOurs);
    }

    #[test]
    fn all_slots_then_quarantine_in_fifo_order() {
        static G: Guard = Guard::new(false);
        let live: Vec<*mut u8> = (0..SLOTS).map(|i| G.alloc(1 + i % MAX_SIZE)).collect();
        assert!(live.iter().all(|p| !p.is_null()));
        assert_eq!(G.alloc(8), ptr::null_mut(), "a 257th live block");
        // Free in a scrambled order; the slots come back in that order, oldest first.
        let order: Vec<usize> = (0..SLOTS).map(|i| (i * 37) % SLOTS).collect();
        for &i in &order {
            G.free(live[i]);
        }
        for &i in &order {
            let p = G.alloc(32);
            let slot = |p: *mut u8| G.slot_of(p as usize).unwrap().1;
            assert_eq!(slot(p), slot(live[i]));
            // SAFETY: a live block of 32 bytes: reused slots are zero-filled again.
            assert!(
                unsafe { core::slice::from_raw_parts(p, 32) }
                    .iter()
                    .all(|&x| x == 0)
            );
            G.free(p);
        }
    }

    /// Four threads take and return slots at once (more than 256 blocks in all, up to 64 each
    /// live): no block is handed out twice, each keeps its contents, every free is accepted.
    #[test]
    fn threads_share_the_slots() {
        static G: Guard = Guard::new(false);
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut live: Vec<(usize, u8)> = Vec::new();
                    for i in 0..2000usize {
                        if live.len() == 64 || (i % 3 == 2 && !live.is_empty()) {
                            let (p, tag) = live.swap_remove(i % live.len());
                            // SAFETY: a live block of this thread's, 48 usable bytes.
                            let s = unsafe { core::slice::from_raw_parts(p as *const u8, 48) };
                            assert!(s.iter().all(|&x| x == tag), "a block changed hands");
                            G.free(p as *mut u8);
                        } else {
                            let p = G.alloc(40);
                            assert!(!p.is_null());
                            let tag = t * 64 + (i % 64) as u8;
                            // SAFETY: a fresh block of 48 usable bytes.
                            unsafe { ptr::write_bytes(p, tag, 48) };
                            live.push((p as usize, tag));
                        }
                    }
                    live.into_iter().for_each(|(p, _)| G.free(p as *mut u8));
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let q = G.queue.lock();
        assert_eq!(
            (q.fresh, q.len),
            (SLOTS, SLOTS),
            "every slot back in the quarantine"
        );
    }

    #[test]
    fn classification_and_report_lines() {
        static G: Guard = Guard::new(false);
        let p = G.alloc(100) as usize;
        let q = G.alloc(24) as usize; // the next slot
        let slot = p - (PAGE - 112);
        assert_eq!(slot + SLOT_SIZE, q - (PAGE - 32));
        let a = G.classify(p + 112);
        assert_eq!(
            line(&a),
            std::format!(
                "hakmem: heap-buffer-overflow: {:#x} is 12 bytes past the 100-byte block {p:#x}\n",
                p + 112
            )
        );
        let low = q - 100;
        assert_eq!(G.classify(low), Access::Retry, "below the block, same page");
        let under = slot + SLOT_SIZE - 8;
        assert_eq!(
            line(&G.classify(under)),
            std::format!(
                "hakmem: heap-buffer-underflow: {under:#x} is {} bytes before the 24-byte block {q:#x}\n",
                q - under
            )
        );
        G.free(q as *mut u8);
        assert_eq!(
            line(&G.classify(q + 5)),
            std::format!(
                "hakmem: use after free: {:#x} is 5 bytes into the freed 24-byte block {q:#x}\n",
                q + 5
            )
        );
        assert_eq!(
            line(&G.classify(q - 16)),
            std::format!(
                "hakmem: use after free: {:#x} is 16 bytes before the freed 24-byte block {q:#x}\n",
                q - 16
            )
        );
        let unused = slot + 5 * SLOT_SIZE + 8;
        assert_eq!(
            line(&G.classify(unused)),
            std::format!("hakmem: wild access: {unused:#x} in an unused guard slot\n")
        );
        assert_eq!(line(&Access::NotOurs), "");
        G.free(p as *mut u8);
    }

    #[test]
    fn pages_are_protected_as_documented() {
        static G: Guard = Guard::new(false);
        let p = G.alloc(64) as usize;
        let page = p & !(PAGE - 1);
        // Whether the byte at `a` is readable: `write(2)` from an unreadable buffer fails with
        // EFAULT instead of faulting.
        let readable = |a: usize| {
            let mut fds = [0; 2];
            let mut v = 0u8;
            // SAFETY: a fresh pipe; the write reads one byte at `a` in the kernel (EFAULT if
            // unmapped or PROT_NONE); the read drains it into a local.
            unsafe {
                assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
                let n = libc::write(fds[1], a as *const c_void, 1);
                if n == 1 {
                    libc::read(fds[0], (&raw mut v).cast(), 1);
                }
                libc::close(fds[0]);
                libc::close(fds[1]);
                n == 1
            }
        };
        assert!(readable(p) && readable(page));
        assert!(!readable(page + PAGE), "the guard page is readable");
        assert!(!readable(page + SLOT_SIZE - 1));
        assert!(!readable(page + SLOT_SIZE), "an unused slot is readable");
        G.free(p as *mut u8);
        assert!(!readable(p), "a freed block is readable");
    }
}
