//! The page-run engine: runs of whole pages inside aligned run segments of [`PAGES`] pages,
//! one lock per engine, a first-fit bitmap search: freed pages of any run length are reused by
//! the next request of any size. The process runs two engines of one code, [`Runs`] with a
//! page-size parameter:
//!
//! - [`RUNS`] (4 KiB pages, 4 MiB segments, tag [`TAG_RUN`]): requests up to [`RUN_MAX`] that
//!   the pools do not serve: the largest sizes (above [`SPAN_MIN`], where one slab per size
//!   class would keep each class's high-water mark resident) and alignments beyond what the
//!   slab tiers give (128 bytes), aligned to up to 1 MiB.
//! - [`BIG_RUNS`] (256 KiB pages, 256 MiB segments, tag [`TAG_BIG_RUN`]): blocks above
//!   [`RUN_MAX`] up to [`BIG_RUN_MAX`]. Big blocks that are freed and allocated again in other
//!   sizes reuse each other's resident pages here (a freed 20 MiB block serves a 12 MiB and a
//!   7 MiB one), where one mapping per block could only be reused whole and faulted in every
//!   page beyond the previous block's length.
//!
//! Segment layout: page 0 holds the `RunSegment` header (bitmaps of used, dirty and touched
//! pages, run length at each run's head page); pages 1..[`PAGES`] are handed out. `free` finds
//! the header by masking the address and the run length by the page index: O(1), no search.
//!
//! Freed pages stay resident ("dirty") for reuse; purge passes ([`purge`], run from
//! [`crate::purge::tick`]) give dirty pages older than the purge delay back to the OS in
//! batches and unmap segments that stayed empty. Under the `dontneed` policy runs are purged
//! as they are freed. Pages never handed out since they were mapped or purged read as zero:
//! [`Runs::alloc_zeroed`] skips clearing a run made only of such pages.

use crate::config::FreePolicy;
use crate::diag::Fault;
use crate::map::{CHUNK_SIZE, TAG_BIG_RUN, TAG_RUN, Tag};
use crate::os;
use crate::purge::{Advice, Stage};
use crate::segment::{OS_PAGES, PageSource};
use crate::stats::{self, Counter};
use crate::sync::{Mutex, RawLock};
use core::ptr;

/// Pages per run segment (both engines).
pub const PAGES: usize = 1024;
const WORDS: usize = PAGES / 64;
const MAGIC: usize = 0x6861_6b6d_5255_4e53; // "hakmRUNS"
/// The largest request served by page runs.
pub const RUN_MAX: usize = 1 << 20;
/// The largest request served by big page runs; above it blocks get mappings of their own.
pub const BIG_RUN_MAX: usize = 64 << 20;
/// Requests above this size (and up to [`RUN_MAX`]) are served by page runs even at the natural
/// alignment.
pub const SPAN_MIN: usize = 64 << 10;
/// Marks the `len` entry of a freed run's first page (the length stays below it), so that a
/// second `free` of the pointer is told apart from a pointer that never started a run. Any
/// mark inside a range is cleared when the range is handed out again.
const FREED: u16 = 0x8000;
const _: () = assert!(PAGES < FREED as usize);

/// A run segment's header, in its first page.
#[repr(C)]
struct RunSegment {
    magic: usize,
    next: *mut RunSegment,
    free_pages: usize,
    /// At least the length of the longest free run (a segment whose hint is below a request's
    /// length is skipped without a search).
    max_free: usize,
    /// When the last purge pass over this segment ran, or the first page went dirty after it
    /// (ms; 0: no dirty page).
    dirty_since: u64,
    /// When the segment became empty (ms; 0: it holds a run).
    empty_since: u64,
    /// When a page last went dirty (ms): every page dirty before is older than the time since.
    last_dirtied: u64,
    used: [u64; WORDS],
    /// Free pages that are still resident.
    dirty: [u64; WORDS],
    /// Dirty pages that were already dirty at the last purge pass: the next pass purges them.
    aged: [u64; WORDS],
    /// Pages handed out since the segment was mapped or the page was last purged (the others
    /// read as zero).
    touched: [u64; WORDS],
    /// Run length in pages at each run's first page; 0 elsewhere, or [`FREED`] with the length
    /// at the first page of a freed run whose pages were not handed out since.
    len: [u16; PAGES],
}

const _: () = assert!(core::mem::size_of::<RunSegment>() <= os::PAGE);

struct Segments {
    head: *mut RunSegment,
    count: usize,
}

// SAFETY: the segment list is only touched under the mutex.
unsafe impl Send for Segments {}

/// One page-run engine: segments of [`PAGES`] pages of `1 << SHIFT` bytes each, every segment
/// aligned to its own size and tagged `tag` in the owner map, serving requests up to `max`.
pub struct Runs<const SHIFT: u32> {
    segs: Mutex<Segments>,
    tag: Tag,
    max: usize,
    /// Free pages wait this many purge delays before they are purged.
    delay_mult: u64,
    /// Best fit over all segments (the tightest free fragment), rather than first fit.
    best_fit: bool,
    allocs: &'static Counter,
    frees: &'static Counter,
}

/// The page runs of requests up to [`RUN_MAX`] (4 KiB pages, 4 MiB segments).
pub static RUNS: Runs<12> = Runs::new(
    TAG_RUN,
    RUN_MAX,
    Fit::First,
    1,
    &stats::RUN_ALLOCS,
    &stats::RUN_FREES,
);
/// The page runs of big blocks, above [`RUN_MAX`] up to [`BIG_RUN_MAX`] (256 KiB pages, 256 MiB
/// segments). Best fit keeps the long free fragments whole for long requests, and free pages
/// wait ten purge delays (what the BigCache gives cached mappings): a big block is costly to
/// fault in again.
pub static BIG_RUNS: Runs<18> = Runs::new(
    TAG_BIG_RUN,
    BIG_RUN_MAX,
    Fit::Best,
    10,
    &stats::LARGE_ALLOCS,
    &stats::LARGE_FREES,
);

/// How an engine picks the free pages of a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fit {
    /// The lowest-addressed fit in the first segment that has one (cheap: most requests stop
    /// in the first segment).
    First,
    /// Over all segments, the free pages that touch the fewest fresh (non-resident) pages, then
    /// the shortest free fragment that fits (fewer long fragments cut up).
    Best,
}

/// The locks of both engines (for `fork` handlers; no thread holds both).
pub fn locks() -> [&'static RawLock; 2] {
    [RUNS.lock(), BIG_RUNS.lock()]
}

/// Allocates `size` bytes (≤ [`RUN_MAX`]) aligned to `align` (a power of two ≤ 1 MiB) from
/// [`RUNS`]. Null, with `errno` ENOMEM, when the OS refuses memory.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    RUNS.alloc(size, align)
}

/// Frees a run of [`RUNS`] (see [`Runs::free`]).
///
/// # Safety
/// `p` must lie in a chunk the owner map tags [`TAG_RUN`].
pub unsafe fn free(p: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe { RUNS.free(p) }
}

/// Resizes a run of [`RUNS`] in place (see [`Runs::resize`]).
///
/// # Safety
/// As for [`Runs::resize`], with the tag [`TAG_RUN`].
pub unsafe fn resize(p: *mut u8, size: usize) -> bool {
    // SAFETY: forwarded contract.
    unsafe { RUNS.resize(p, size) }
}

/// The usable size of a live run of [`RUNS`]; 0 for a pointer that is not one.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags [`TAG_RUN`].
pub unsafe fn usable_size(p: *mut u8) -> usize {
    // SAFETY: forwarded contract.
    unsafe { RUNS.usable_size(p) }
}

/// Bytes of live runs now, in both engines (their whole pages).
pub fn in_use_bytes() -> u64 {
    RUNS.in_use_bytes() + BIG_RUNS.in_use_bytes()
}

/// A purge pass over both engines (see [`Runs::purge`]); returns the bytes still waiting.
/// `background`: only try the locks (a busy one counts as work left).
pub fn purge(now: u64, force: bool, background: bool) -> usize {
    RUNS.purge(now, force, background) + BIG_RUNS.purge(now, force, background)
}

impl<const SHIFT: u32> Runs<SHIFT> {
    /// The page size of this engine.
    pub const PAGE: usize = 1 << SHIFT;
    /// The size (and alignment) of its segments.
    pub const SEGMENT: usize = PAGES << SHIFT;
    const GEOMETRY: () = assert!(
        1 << SHIFT >= os::PAGE && Self::SEGMENT.is_multiple_of(CHUNK_SIZE),
        "pages of at least the OS page, segments of whole chunks"
    );

    /// An engine with no segment yet, whose free pages wait `delay_mult` purge delays.
    pub const fn new(
        tag: Tag,
        max: usize,
        fit: Fit,
        delay_mult: u64,
        allocs: &'static Counter,
        frees: &'static Counter,
    ) -> Self {
        let () = Self::GEOMETRY;
        Runs {
            segs: Mutex::new(Segments {
                head: ptr::null_mut(),
                count: 0,
            }),
            tag,
            max,
            delay_mult,
            best_fit: matches!(fit, Fit::Best),
            allocs,
            frees,
        }
    }

    /// The engine's lock (for `fork` handlers).
    pub fn lock(&self) -> &RawLock {
        self.segs.raw()
    }

    /// Bytes of live runs now (their pages), counted over the segments under the lock.
    pub fn in_use_bytes(&self) -> u64 {
        let segs = self.segs.lock();
        let (mut seg, mut pages) = (segs.head, 0usize);
        // SAFETY: every segment on the list is live; the lock serialises the headers.
        while let Some(s) = unsafe { seg.as_ref() } {
            pages += PAGES - 1 - s.free_pages;
            seg = s.next;
        }
        (pages * Self::PAGE) as u64
    }

    /// The largest request it serves.
    pub fn max(&self) -> usize {
        self.max
    }

    fn new_segment(&self) -> *mut RunSegment {
        let base = OS_PAGES.reserve(Self::SEGMENT, Self::SEGMENT, self.tag, self.tag == TAG_RUN);
        if base.is_null() {
            return ptr::null_mut();
        }
        let seg = base.cast::<RunSegment>();
        // SAFETY: the header page is fresh, zeroed, exclusively ours.
        unsafe {
            (*seg).magic = MAGIC;
            (*seg).free_pages = PAGES - 1;
            (*seg).max_free = PAGES - 1;
            (*seg).used[0] = 1;
            (*seg).touched[0] = 1;
        }
        seg
    }

    /// Allocates `size` bytes (≤ [`Runs::max`]) aligned to `align` (a power of two ≤ the
    /// maximum). Null, with `errno` ENOMEM, when the OS refuses memory or the request is out of
    /// range.
    pub fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        self.alloc_run(size, align).0
    }

    /// Like [`Runs::alloc`], with the run cleared to zero (only where its pages may have been
    /// written: pages never handed out since they were mapped or purged are zero already).
    pub fn alloc_zeroed(&self, size: usize, align: usize) -> *mut u8 {
        let (p, zero) = self.alloc_run(size, align);
        if !p.is_null() && !zero {
            // SAFETY: a live run of at least `size` bytes, the caller's.
            unsafe { ptr::write_bytes(p, 0, size) };
        }
        p
    }

    /// A run of `size` bytes, with whether all of its pages read as zero.
    fn alloc_run(&self, size: usize, align: usize) -> (*mut u8, bool) {
        let n = size.max(1).div_ceil(Self::PAGE);
        let align = (align / Self::PAGE).max(1);
        if size > self.max || align > self.max / Self::PAGE {
            os::set_errno(libc::ENOMEM);
            return (ptr::null_mut(), false);
        }
        let mut segs = self.segs.lock();
        let mut seg = segs.head;
        // SAFETY: every segment on the list is a live run segment; the lock serialises the
        // headers.
        unsafe {
            let found = if self.best_fit {
                best_fit(seg, n, align)
            } else {
                first_fit(seg, n, align)
            };
            if let Some((seg, i)) = found {
                return self.take(seg, i, n);
            }
            // No lock while the OS is asked: the page source may reclaim (taking this lock).
            drop(segs);
            seg = self.new_segment();
            if seg.is_null() {
                return (ptr::null_mut(), false);
            }
            segs = self.segs.lock();
            (*seg).next = segs.head;
            segs.head = seg;
            segs.count += 1;
            let i = find(&mut *seg, n, align).expect("a fresh segment fits any run");
            self.take(seg, i, n)
        }
    }

    /// Marks pages `i..i+n` used and returns their address, with whether they were all
    /// untouched (zero). Caller holds the lock.
    unsafe fn take(&self, seg: *mut RunSegment, i: usize, n: usize) -> (*mut u8, bool) {
        // SAFETY: the caller holds the lock and `seg` is live.
        let zero = unsafe {
            let s = &mut *seg;
            s.len[i + 1..i + n].fill(0); // freed-run marks inside the new run
            let zero = first_used(&s.touched, i, i + n).is_none();
            mark(&mut s.used, i, n, true);
            mark(&mut s.touched, i, n, true);
            mark(&mut s.dirty, i, n, false);
            mark(&mut s.aged, i, n, false);
            s.len[i] = n as u16;
            s.free_pages -= n;
            s.empty_since = 0;
            zero
        };
        self.allocs.add(1);
        ((seg as usize + i * Self::PAGE) as *mut u8, zero)
    }

    /// What a pointer into the run segment `seg` that is not a live run is, with the freed
    /// run's size for a double free. Caller holds the lock.
    fn misuse(seg: &RunSegment, p: *mut u8) -> (Fault, usize) {
        let off = p as usize - seg as *const RunSegment as usize;
        let i = off / Self::PAGE;
        if off.is_multiple_of(Self::PAGE) && seg.len[i] & FREED != 0 {
            (
                Fault::DoubleFree,
                (seg.len[i] & !FREED) as usize * Self::PAGE,
            )
        } else if i > 0 && is_used(seg, i) {
            (Fault::InvalidFree("interior pointer"), 0)
        } else {
            (Fault::InvalidFree("not a block"), 0)
        }
    }

    /// Reports a `free` of `p`, in a run segment, that is not the start of a live run: a double
    /// free, an interior pointer or a pointer to free pages; the block is left alone.
    ///
    /// # Safety
    /// `p` must lie in a chunk the owner map tags as a segment of this engine.
    unsafe fn bad_free(&self, p: *mut u8) {
        let seg = (p as usize & !(Self::SEGMENT - 1)) as *mut RunSegment;
        // SAFETY: the owner map said this chunk is a run segment, so its header page is mapped.
        if unsafe { (*seg).magic } != MAGIC {
            return crate::diag::bad_pointer("free", p);
        }
        let segs = self.segs.lock();
        // SAFETY: a live run segment; the lock serialises its header.
        let (what, size) = Self::misuse(unsafe { &*seg }, p);
        drop(segs);
        crate::diag::fault(what, "free", p, size, 0);
    }

    /// The segment and page index of `p`, if `p` is the start of a page in a run segment.
    fn locate(p: *mut u8) -> Option<(*mut RunSegment, usize)> {
        let addr = p as usize;
        let seg = (addr & !(Self::SEGMENT - 1)) as *mut RunSegment;
        let i = (addr - seg as usize) / Self::PAGE;
        // SAFETY: the owner map said this chunk is a run segment, so its header page is mapped.
        let ok = addr.is_multiple_of(Self::PAGE) && i > 0 && unsafe { (*seg).magic } == MAGIC;
        ok.then_some((seg, i))
    }

    /// Frees a run. A pointer that is not the start of a live run is reported through
    /// [`crate::diag::fault`] (a double free when it starts a run freed before, else an invalid
    /// free) and left alone.
    ///
    /// # Safety
    /// `p` must lie in a chunk the owner map tags as a segment of this engine.
    pub unsafe fn free(&self, p: *mut u8) {
        let Some((seg, i)) = Self::locate(p) else {
            // SAFETY: forwarded contract.
            return os::keep_errno(|| unsafe { self.bad_free(p) });
        };
        let eager = crate::config::get().eager_purge();
        let freed = os::keep_errno(|| {
            let mut segs = self.segs.lock();
            // SAFETY: `seg` is a live run segment; the lock serialises its header.
            unsafe {
                let n = live_len(&*seg, i);
                if n == 0 {
                    let (what, size) = Self::misuse(&*seg, p);
                    drop(segs);
                    crate::diag::fault(what, "free", p, size, 0);
                    return 0;
                }
                if eager {
                    // Keep the pages marked used while the lock is dropped for the system call
                    // (a second free meanwhile sees the mark: a double free).
                    (*seg).len[i] = FREED | n as u16;
                    drop(segs);
                    OS_PAGES.purge(p, n * Self::PAGE, Advice::DontNeed);
                    segs = self.segs.lock();
                    mark(&mut (*seg).touched, i, n, false);
                } else {
                    self.dirty(&mut *seg, i, n);
                }
                (*seg).len[i] = FREED | n as u16;
                mark(&mut (*seg).used, i, n, false);
                (*seg).free_pages += n;
                let (left, right) = (last_used(&(*seg).used, i) + 1, first_free_end(&*seg, i + n));
                (*seg).max_free = (*seg).max_free.max(right - left);
                self.frees.add(1);
                if (*seg).free_pages == PAGES - 1 {
                    if eager && segs.count > 1 {
                        unlink(&mut segs, seg);
                        drop(segs);
                        OS_PAGES.release(seg.cast(), Self::SEGMENT);
                        return 0;
                    }
                    (*seg).empty_since = os::now_ms().max(1);
                }
                if eager { 0 } else { n * Self::PAGE }
            }
        });
        os::keep_errno(|| {
            if freed != 0 {
                crate::purger::notify(freed);
            }
            crate::purge::tick(false)
        });
    }

    /// Marks the freed pages `i..i+n` dirty. When nothing went dirty in the segment for a whole
    /// delay, every page dirty before is that old: it is aged at once, for the next pass to
    /// purge (a program that frees, then sleeps, gets the pages back at its next call). Caller
    /// holds the lock.
    fn dirty(&self, s: &mut RunSegment, i: usize, n: usize) {
        let now = os::now_ms().max(1);
        let delay = crate::config::get()
            .purge_delay_ms
            .saturating_mul(self.delay_mult);
        if now.saturating_sub(s.last_dirtied) >= delay {
            s.aged = s.dirty;
        }
        mark(&mut s.dirty, i, n, true);
        s.last_dirtied = now;
        if s.dirty_since == 0 {
            s.dirty_since = now;
        }
    }

    /// A purge pass: dirty pages freed at least `delay_mult` purge delays ago (all of them when
    /// `force`) go back to the OS, and segments empty for that long are unmapped (one is kept
    /// unless `force`). Returns the bytes still waiting for a later pass (dirty pages; an
    /// empty segment to unmap counts one). `background`: only try the lock; busy counts one.
    pub fn purge(&self, now: u64, force: bool, background: bool) -> usize {
        let cfg = crate::config::get();
        if cfg.free_policy == FreePolicy::Keep {
            return 0;
        }
        let delay = cfg.purge_delay_ms.saturating_mul(self.delay_mult);
        let due = |since: u64| since != 0 && (force || now.saturating_sub(since) >= delay);
        let mut waiting = 0;
        let mut segs = match background {
            true => match self.segs.try_lock() {
                Some(l) => l,
                None => return 1,
            },
            false => self.segs.lock(),
        };
        let mut seg = segs.head;
        // SAFETY: every segment on the list is live; the lock serialises the headers (purging
        // free pages under it keeps them from being handed out meanwhile).
        unsafe {
            while !seg.is_null() {
                let next = (*seg).next;
                if due((*seg).empty_since) && (force || segs.count > 1) {
                    unlink(&mut segs, seg);
                    OS_PAGES.release(seg.cast(), Self::SEGMENT);
                    seg = next;
                    continue;
                }
                if due((*seg).dirty_since) {
                    // Nothing went dirty for a whole delay: every dirty page is due.
                    let all = force || due((*seg).last_dirtied);
                    Self::purge_dirty(seg, now, all, force);
                }
                if (*seg).dirty_since != 0 {
                    waiting += count_set(&(*seg).dirty, 0, PAGES) * Self::PAGE;
                }
                waiting += ((*seg).empty_since != 0 && segs.count > 1) as usize;
                seg = next;
            }
        }
        waiting
    }

    /// Gives the dirty ranges of `seg` that were dirty at the previous pass (all of them when
    /// `force`) back to the OS, so a page is purged after one to two purge delays without
    /// reuse (after one when no page went dirty since). Caller holds the lock.
    unsafe fn purge_dirty(seg: *mut RunSegment, now: u64, force: bool, trim: bool) {
        // The purge policy's last step for pages free this long (`purge::decide`): under
        // `free` a lazy free (the pages stay touched: they may keep their contents), else back
        // to the OS, zero on reuse; a trim (`trim`) always gives them back.
        let lazy = !trim && crate::config::get().free_policy == FreePolicy::Free;
        let advice = if lazy {
            crate::purge::Advice::Free
        } else {
            crate::purge::Advice::DontNeed
        };
        // SAFETY: the caller holds the lock; dirty pages are free (nothing live in them).
        unsafe {
            let s = &mut *seg;
            if force {
                s.aged = s.dirty;
            }
            let mut i = first_used(&s.aged, 1, PAGES);
            while let Some(start) = i {
                let end = first_free(&s.aged, start);
                let p = (seg as usize + start * Self::PAGE) as *mut u8;
                crate::purge::apply(&OS_PAGES, advice, p, (end - start) * Self::PAGE, Stage::Hot);
                i = first_used(&s.aged, end, PAGES);
            }
            let mut any = false;
            for w in 0..WORDS {
                if !lazy {
                    s.touched[w] &= !s.aged[w];
                }
                s.dirty[w] &= !s.aged[w];
                s.aged[w] = s.dirty[w];
                any |= s.dirty[w] != 0;
            }
            s.dirty_since = if any { now.max(1) } else { 0 };
        }
    }

    /// Resizes the live run at `p` in place to hold `size` bytes (≤ [`Runs::max`]): a shrink
    /// frees its tail pages, a growth takes the free pages after it. False (nothing changed)
    /// when the pages after it are in use, or `p` is not the start of a live run.
    ///
    /// # Safety
    /// `p` must lie in a chunk the owner map tags as a segment of this engine, and be live.
    pub unsafe fn resize(&self, p: *mut u8, size: usize) -> bool {
        let Some((seg, i)) = Self::locate(p) else {
            return false;
        };
        let want = size.max(1).div_ceil(Self::PAGE);
        let segs = self.segs.lock();
        // SAFETY: `seg` is a live run segment; the lock serialises its header.
        let done = unsafe {
            let s = &mut *seg;
            let have = live_len(s, i);
            if have == 0 || size > self.max {
                false
            } else if want <= have {
                mark(&mut s.used, i + want, have - want, false);
                self.dirty(s, i + want, have - want);
                s.free_pages += have - want;
                s.len[i] = want as u16;
                let right = first_free_end(s, i + want);
                s.max_free = s.max_free.max(right - (i + want));
                true
            } else if i + want <= PAGES && first_used(&s.used, i + have, i + want).is_none() {
                s.len[i + have..i + want].fill(0); // freed-run marks in the pages taken
                mark(&mut s.used, i + have, want - have, true);
                mark(&mut s.touched, i + have, want - have, true);
                mark(&mut s.dirty, i + have, want - have, false);
                mark(&mut s.aged, i + have, want - have, false);
                s.free_pages -= want - have;
                s.len[i] = want as u16;
                true
            } else {
                false
            }
        };
        drop(segs);
        done
    }

    /// The usable size of a live run (its whole pages); 0 for a pointer that is not one.
    ///
    /// # Safety
    /// `p` must lie in a chunk the owner map tags as a segment of this engine.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        match Self::locate(p) {
            // SAFETY: the run is live (the caller owns it), so its length entry is stable.
            Some((seg, i)) => unsafe { live_len(&*seg, i) * Self::PAGE },
            None => 0,
        }
    }
}

/// Index of the first used page in `[from, to)`, if any.
fn first_used(used: &[u64; WORDS], from: usize, to: usize) -> Option<usize> {
    let mut i = from;
    while i < to {
        let w = i / 64;
        let word = used[w] >> (i % 64);
        if word != 0 {
            let j = i + word.trailing_zeros() as usize;
            return (j < to).then_some(j);
        }
        i = (w + 1) * 64;
    }
    None
}

/// Sets (`on`) or clears bits `from..from + n`, a word at a time.
fn mark(bits: &mut [u64; WORDS], from: usize, n: usize, on: bool) {
    for (w, mask) in word_masks(from, from + n) {
        if on {
            bits[w] |= mask;
        } else {
            bits[w] &= !mask;
        }
    }
}

/// The words covering bits `from..to`, each with the mask of its bits in the range.
fn word_masks(from: usize, to: usize) -> impl Iterator<Item = (usize, u64)> {
    let mut i = from;
    core::iter::from_fn(move || {
        (i < to).then(|| {
            let (w, lo) = (i / 64, i % 64);
            let hi = (to - w * 64).min(64);
            i = w * 64 + hi;
            (w, (u64::MAX >> (64 - (hi - lo))) << lo)
        })
    })
}

/// Index of the first free page at or after `from` (PAGES if none).
fn first_free(used: &[u64; WORDS], from: usize) -> usize {
    let mut i = from;
    while i < PAGES {
        let w = i / 64;
        let free = !used[w] >> (i % 64);
        if free != 0 {
            return (i + free.trailing_zeros() as usize).min(PAGES);
        }
        i = (w + 1) * 64;
    }
    PAGES
}

/// The end of the free run that starts at or continues through page `i`.
fn first_free_end(seg: &RunSegment, i: usize) -> usize {
    first_used(&seg.used, i, PAGES).unwrap_or(PAGES)
}

/// Index of the last used page before `to` (page 0, the header, is always used).
fn last_used(used: &[u64; WORDS], to: usize) -> usize {
    let mut i = to;
    while i > 0 {
        let w = (i - 1) / 64;
        let keep = i - w * 64; // bits of word `w` below `i`
        let word = used[w] & (u64::MAX >> (64 - keep));
        if word != 0 {
            return w * 64 + 63 - word.leading_zeros() as usize;
        }
        i = w * 64;
    }
    0
}

/// First fit: the lowest page index where `n` free pages start on a multiple of `align` pages.
/// After a collision the search jumps to the next free page, so it visits each free fragment
/// once instead of every page. An unaligned search that fails records the longest free run it
/// saw in the segment's `max_free` hint.
fn find(seg: &mut RunSegment, n: usize, align: usize) -> Option<usize> {
    if seg.free_pages < n || seg.max_free < n {
        return None;
    }
    let mut longest = 0;
    let mut i = first_free(&seg.used, 1).div_ceil(align) * align; // page 0 is the header
    while i + n <= PAGES {
        match first_used(&seg.used, i, i + n) {
            None => return Some(i),
            Some(j) => {
                longest = longest.max(j - i);
                i = first_free(&seg.used, j + 1).div_ceil(align) * align;
            }
        }
    }
    if align == 1 {
        seg.max_free = longest.max(PAGES.saturating_sub(i));
    }
    None
}

/// First fit over the segment list from `seg`: the first segment with room, its lowest fit.
///
/// # Safety
/// Every segment on the list is live and the caller holds the engine's lock.
unsafe fn first_fit(
    mut seg: *mut RunSegment,
    n: usize,
    align: usize,
) -> Option<(*mut RunSegment, usize)> {
    // SAFETY: forwarded contract.
    while let Some(s) = unsafe { seg.as_mut() } {
        if let Some(i) = find(s, n, align) {
            return Some((seg, i));
        }
        seg = s.next;
    }
    None
}

/// Best fit over the segment list from `seg` (see [`find_best`]).
///
/// # Safety
/// As for [`first_fit`].
unsafe fn best_fit(
    mut seg: *mut RunSegment,
    n: usize,
    align: usize,
) -> Option<(*mut RunSegment, usize)> {
    let mut best: Option<(*mut RunSegment, usize, FitKey)> = None;
    // SAFETY: forwarded contract.
    while let Some(s) = unsafe { seg.as_mut() } {
        if let Some((i, key)) = find_best(s, n, align)
            && best.is_none_or(|b| key < b.2)
        {
            best = Some((seg, i, key));
            if key == (0, n) {
                break; // an exact fit of resident pages: nothing beats it
            }
        }
        seg = s.next;
    }
    best.map(|(seg, i, _)| (seg, i))
}

/// How good a best-fit candidate is (lower is better): fresh pages it touches, then the
/// length of its free fragment.
type FitKey = (usize, usize);

/// Best fit in one segment: the start (on a multiple of `align` pages) of `n` free pages, in
/// the free fragment where they touch the fewest fresh pages (pages not resident: each costs a
/// page fault and zeroing), then in the shortest such fragment; with that choice's key
/// (fresh pages, fragment length).
fn find_best(seg: &mut RunSegment, n: usize, align: usize) -> Option<(usize, FitKey)> {
    if seg.free_pages < n || seg.max_free < n {
        return None;
    }
    let (mut best, mut longest): (Option<(usize, FitKey)>, usize) = (None, 0);
    let mut start = first_free(&seg.used, 1); // page 0 is the header
    while start < PAGES {
        let end = first_used(&seg.used, start, PAGES).unwrap_or(PAGES);
        let (frag, at) = (end - start, start.div_ceil(align) * align);
        longest = longest.max(frag);
        if at + n <= end {
            let key = (n - count_set(&seg.touched, at, at + n), frag);
            if best.is_none_or(|b| key < b.1) {
                best = Some((at, key));
                if key == (0, n) {
                    break;
                }
            }
        }
        start = first_free(&seg.used, end);
    }
    if best.is_none() && align == 1 {
        seg.max_free = longest;
    }
    best
}

/// The number of bits set in `from..to`.
fn count_set(bits: &[u64; WORDS], from: usize, to: usize) -> usize {
    word_masks(from, to)
        .map(|(w, mask)| (bits[w] & mask).count_ones() as usize)
        .sum()
}

/// The length in pages of the live run starting at page `i` (0: no live run starts there).
fn live_len(seg: &RunSegment, i: usize) -> usize {
    match seg.len[i] {
        l if l & FREED != 0 => 0,
        l => l as usize,
    }
}

fn is_used(seg: &RunSegment, i: usize) -> bool {
    seg.used[i / 64] >> (i % 64) & 1 != 0
}

unsafe fn unlink(segs: &mut Segments, seg: *mut RunSegment) {
    let mut link: *mut *mut RunSegment = &mut segs.head;
    // SAFETY: walking the locked list of live segments.
    unsafe {
        while !(*link).is_null() {
            if *link == seg {
                *link = (*seg).next;
                segs.count -= 1;
                return;
            }
            link = &mut (**link).next;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::os::PAGE;
    use std::vec::Vec;

    #[test]
    fn first_used_finds_bits() {
        let mut u = [0u64; WORDS];
        assert_eq!(first_used(&u, 0, PAGES), None);
        mark(&mut u, 70, 3, true);
        assert_eq!(count_set(&u, 0, PAGES), 3);
        assert_eq!(count_set(&u, 71, 200), 2);
        assert_eq!(count_set(&u, 0, 70), 0);
        assert_eq!(first_used(&u, 0, PAGES), Some(70));
        assert_eq!(first_used(&u, 71, 200), Some(71));
        assert_eq!(first_used(&u, 73, PAGES), None);
        assert_eq!(first_used(&u, 0, 70), None);
        assert_eq!(first_free(&u, 70), 73);
        assert_eq!(first_free(&u, 5), 5);
        assert_eq!(last_used(&u, 70), 0);
        assert_eq!(last_used(&u, 71), 70);
        assert_eq!(last_used(&u, PAGES), 72);
        assert_eq!(last_used(&u, 64), 0);
        mark(&mut u, 0, PAGES, true);
        assert_eq!(first_free(&u, 0), PAGES);
        mark(&mut u, 0, PAGES, false);
        assert_eq!(u, [0u64; WORDS]);
        for (from, n) in [
            (0, 1),
            (3, 61),
            (63, 2),
            (60, 200),
            (64, 64),
            (1, PAGES - 1),
        ] {
            let mut m = [0u64; WORDS];
            mark(&mut m, from, n, true);
            for i in 0..PAGES {
                let set = m[i / 64] >> (i % 64) & 1 == 1;
                assert_eq!(
                    set,
                    (from..from + n).contains(&i),
                    "mark({from}, {n}) bit {i}"
                );
            }
            mark(&mut m, from, n, false);
            assert_eq!(m, [0u64; WORDS]);
        }
    }

    #[test]
    fn resize_in_place() {
        let p = alloc(8 * PAGE, 1);
        assert!(!p.is_null());
        // SAFETY: p is a live run, resized only within what `resize` grants.
        unsafe {
            p.write_bytes(7, 8 * PAGE);
            assert!(resize(p, 2 * PAGE));
            assert_eq!(usable_size(p), 2 * PAGE);
            let q = alloc(PAGE, 1); // may land in the freed tail
            if q as usize == p as usize + 2 * PAGE {
                assert!(!resize(p, 3 * PAGE), "the page after it is in use");
            }
            free(q);
            if resize(p, 6 * PAGE + 1) {
                assert_eq!(usable_size(p), 7 * PAGE);
                p.add(7 * PAGE - 1).write(9);
            }
            assert_eq!(*p.add(PAGE), 7);
            assert!(!resize(p.add(PAGE), PAGE), "not the start of a run");
            free(p);
        }
    }

    #[test]
    fn runs_do_not_overlap_and_align() {
        let mut ps = Vec::new();
        for (k, &(size, align)) in [
            (5000, 1),
            (1 << 20, 1),
            (4096, 65536),
            (100_000, 1 << 20),
            (1025, 8),
        ]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
        {
            let p = alloc(size, align);
            assert!(!p.is_null());
            assert_eq!(p as usize % align.max(PAGE), 0);
            // SAFETY: p is a fresh run of `size` bytes.
            unsafe {
                assert!(usable_size(p) >= size);
                core::ptr::write_bytes(p, k as u8, size);
            }
            ps.push((p, size, k as u8));
        }
        for &(p, size, k) in &ps {
            // SAFETY: each run is live and was filled with its own byte.
            unsafe {
                assert_eq!(*p, k);
                assert_eq!(*p.add(size - 1), k);
                free(p);
            }
        }
    }

    /// The big-run tests share [`BIG_RUNS`], so they run in one test, one after the other.
    #[test]
    fn big_runs() {
        big_runs_reuse_freed_pages_across_sizes();
        untouched_pages_skip_the_clearing_and_purged_ones_read_zero();
    }

    fn big_runs_reuse_freed_pages_across_sizes() {
        const BIG: usize = Runs::<18>::PAGE;
        let a = BIG_RUNS.alloc(20 << 20, 1);
        assert!(!a.is_null());
        assert_eq!(a as usize % BIG, 0);
        // SAFETY: `a` is a live run of 20 MiB; it is written, freed, and its pages reused.
        unsafe {
            assert_eq!(BIG_RUNS.usable_size(a), 20 << 20);
            a.write_bytes(0xa5, 20 << 20);
            BIG_RUNS.free(a);
            // Two smaller blocks fit in the pages the first one freed (first fit, same segment).
            let b = BIG_RUNS.alloc(12 << 20, 1);
            let c = BIG_RUNS.alloc(7 << 20, 1);
            assert_eq!(b, a, "first fit reuses the freed pages");
            assert_eq!(c as usize, a as usize + (12 << 20));
            // Reused pages are not zero: alloc_zeroed must clear them.
            BIG_RUNS.free(c);
            let z = BIG_RUNS.alloc_zeroed(7 << 20, 1);
            assert_eq!(z, c);
            assert!(
                core::slice::from_raw_parts(z, 7 << 20)
                    .iter()
                    .all(|&x| x == 0)
            );
            // Growing in place into free pages, shrinking back.
            BIG_RUNS.free(z);
            assert!(BIG_RUNS.resize(b, 15 << 20));
            assert_eq!(BIG_RUNS.usable_size(b), 15 << 20);
            assert!(BIG_RUNS.resize(b, 3 << 20));
            assert!(
                !BIG_RUNS.resize(b, BIG_RUN_MAX + 1),
                "beyond the engine's range"
            );
            BIG_RUNS.free(b);
        }
        assert!(BIG_RUNS.alloc(BIG_RUN_MAX + 1, 1).is_null());
    }

    fn untouched_pages_skip_the_clearing_and_purged_ones_read_zero() {
        let (p, _) = BIG_RUNS.alloc_run(2 << 20, 1 << 20);
        assert!(!p.is_null());
        // SAFETY: `p` is a live run of 2 MiB.
        unsafe {
            p.write_bytes(1, 2 << 20);
            BIG_RUNS.free(p);
        }
        // After a forced purge the same pages read as zero and count as untouched again.
        BIG_RUNS.purge(os::now_ms(), true, false);
        let (q, zero) = BIG_RUNS.alloc_run(2 << 20, 1 << 20);
        assert!(!q.is_null());
        // SAFETY: `q` is a live run of 2 MiB.
        unsafe {
            assert!(
                core::slice::from_raw_parts(q, 2 << 20)
                    .iter()
                    .all(|&x| x == 0)
            );
            assert_eq!(q, p, "first fit takes the purged pages again");
            assert!(zero, "purged pages are reported zero");
            BIG_RUNS.free(q);
        }
    }
}
