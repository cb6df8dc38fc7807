//! The page-run path: runs of whole 4 KiB pages inside 4 MiB run segments, aligned to up to
//! 1 MiB, for requests up to [`RUN_MAX`] that the pools do not serve: the largest sizes (above
//! [`SPAN_MIN`], where one slab per size class would keep each class's high-water mark
//! resident) and alignments beyond what the slab tiers give (128 bytes). One lock, a first-fit
//! bitmap search: freed pages of any run length are reused by the next request of any size.
//!
//! Segment layout: page 0 holds the `RunSegment` header (bitmaps of used and of dirty pages,
//! run length at each run's head page); pages 1..1024 are handed out. `free` finds the header by
//! masking the address and the run length by the page index: O(1), no search.
//!
//! Freed pages stay resident ("dirty") for reuse; purge passes ([`purge`], run from
//! [`crate::purge::tick`]) give dirty pages older than the purge delay back to the OS in
//! batches and unmap segments that stayed empty. Under the `dontneed` policy runs are purged
//! as they are freed.

use crate::config::FreePolicy;
use crate::diag::Fault;
use crate::map::{CHUNK_SIZE, TAG_RUN};
use crate::os::{self, PAGE};
use crate::segment::{OS_PAGES, PageSource};
use crate::stats;
use crate::sync::Mutex;
use core::ptr;

/// Pages per run segment.
const PAGES: usize = CHUNK_SIZE / PAGE;
const WORDS: usize = PAGES / 64;
const MAGIC: usize = 0x6861_6b6d_5255_4e53; // "hakmRUNS"
/// The largest request served by page runs.
pub const RUN_MAX: usize = 1 << 20;
/// Requests above this size (and up to [`RUN_MAX`]) are served by page runs even at the natural
/// alignment.
pub const SPAN_MIN: usize = 64 << 10;
/// Marks the `len` entry of a freed run's first page (the length stays below it), so that a
/// second `free` of the pointer is told apart from a pointer that never started a run. Any
/// mark inside a range is cleared when the range is handed out again.
const FREED: u16 = 0x8000;
const _: () = assert!(PAGES < FREED as usize);

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
    used: [u64; WORDS],
    /// Free pages that are still resident.
    dirty: [u64; WORDS],
    /// Dirty pages that were already dirty at the last purge pass: the next pass purges them.
    aged: [u64; WORDS],
    /// Run length in pages at each run's first page; 0 elsewhere, or [`FREED`] with the length
    /// at the first page of a freed run whose pages were not handed out since.
    len: [u16; PAGES],
}

const _: () = assert!(core::mem::size_of::<RunSegment>() <= PAGE);

struct Segments {
    head: *mut RunSegment,
    count: usize,
}

// SAFETY: the segment list is only touched under the mutex.
unsafe impl Send for Segments {}

static SEGMENTS: Mutex<Segments> = Mutex::new(Segments {
    head: ptr::null_mut(),
    count: 0,
});

/// The lock of the run path (for `fork` handlers).
pub fn lock() -> &'static crate::sync::RawLock {
    SEGMENTS.raw()
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
    let (mut i, end) = (from, from + n);
    while i < end {
        let w = i / 64;
        let lo = i % 64;
        let hi = (end - w * 64).min(64);
        let mask = (u64::MAX >> (64 - (hi - lo))) << lo;
        if on {
            bits[w] |= mask;
        } else {
            bits[w] &= !mask;
        }
        i = w * 64 + hi;
    }
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

fn new_segment() -> *mut RunSegment {
    let base = OS_PAGES.reserve(CHUNK_SIZE, CHUNK_SIZE, TAG_RUN);
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
    }
    seg
}

/// Allocates `size` bytes (≤ [`RUN_MAX`]) aligned to `align` (a power of two ≤ 1 MiB).
/// Null, with `errno` ENOMEM, when the OS refuses memory.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    let n = size.max(1).div_ceil(PAGE);
    let align = (align / PAGE).max(1);
    if size > RUN_MAX || align > RUN_MAX / PAGE {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    let mut segs = SEGMENTS.lock();
    let mut seg = segs.head;
    // SAFETY: every segment on the list is a live run segment; the lock serialises the headers.
    unsafe {
        while !seg.is_null() {
            if let Some(i) = find(&mut *seg, n, align) {
                return take(seg, i, n);
            }
            seg = (*seg).next;
        }
        // No lock while the OS is asked: the page source may reclaim (taking this lock).
        drop(segs);
        seg = new_segment();
        if seg.is_null() {
            return ptr::null_mut();
        }
        segs = SEGMENTS.lock();
        (*seg).next = segs.head;
        segs.head = seg;
        segs.count += 1;
        let i = find(&mut *seg, n, align).expect("a fresh segment fits any run");
        take(seg, i, n)
    }
}

/// Marks pages `i..i+n` used and returns their address. Caller holds the lock.
unsafe fn take(seg: *mut RunSegment, i: usize, n: usize) -> *mut u8 {
    // SAFETY: the caller holds the lock and `seg` is live.
    unsafe {
        (&mut (*seg).len)[i + 1..i + n].fill(0); // freed-run marks inside the new run
        mark(&mut (*seg).used, i, n, true);
        mark(&mut (*seg).dirty, i, n, false);
        mark(&mut (*seg).aged, i, n, false);
        (*seg).len[i] = n as u16;
        (*seg).free_pages -= n;
        (*seg).empty_since = 0;
    }
    stats::RUN_ALLOCS.add(1);
    (seg as usize + i * PAGE) as *mut u8
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

/// What a pointer into the run segment `seg` that is not a live run is, with the freed run's
/// size for a double free. Caller holds the lock.
fn misuse(seg: &RunSegment, p: *mut u8) -> (Fault, usize) {
    let off = p as usize - seg as *const RunSegment as usize;
    let i = off / PAGE;
    if off.is_multiple_of(PAGE) && seg.len[i] & FREED != 0 {
        (Fault::DoubleFree, (seg.len[i] & !FREED) as usize * PAGE)
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
/// `p` must lie in a chunk the owner map tags as a run segment.
unsafe fn bad_free(p: *mut u8) {
    let seg = (p as usize & !(CHUNK_SIZE - 1)) as *mut RunSegment;
    // SAFETY: the owner map said this chunk is a run segment, so its header page is mapped.
    if unsafe { (*seg).magic } != MAGIC {
        return crate::diag::bad_pointer("free", p);
    }
    let segs = SEGMENTS.lock();
    // SAFETY: a live run segment; the lock serialises its header.
    let (what, size) = misuse(unsafe { &*seg }, p);
    drop(segs);
    crate::diag::fault(what, "free", p, size, 0);
}

/// The segment and page index of `p`, if `p` is the start of a page in a run segment.
fn locate(p: *mut u8) -> Option<(*mut RunSegment, usize)> {
    let addr = p as usize;
    let seg = (addr & !(CHUNK_SIZE - 1)) as *mut RunSegment;
    let i = (addr - seg as usize) / PAGE;
    // SAFETY: the owner map said this chunk is a run segment, so its header page is mapped.
    let ok = addr.is_multiple_of(PAGE) && i > 0 && unsafe { (*seg).magic } == MAGIC;
    ok.then_some((seg, i))
}

/// Frees a run. A pointer that is not the start of a live run is reported through
/// [`crate::diag::fault`] (a double free when it starts a run freed before, else an invalid free)
/// and left alone.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags as a run segment.
pub unsafe fn free(p: *mut u8) {
    let Some((seg, i)) = locate(p) else {
        // SAFETY: forwarded contract.
        return os::keep_errno(|| unsafe { bad_free(p) });
    };
    let eager = crate::config::get().eager_purge();
    os::keep_errno(|| {
        let mut segs = SEGMENTS.lock();
        // SAFETY: `seg` is a live run segment; the lock serialises its header.
        unsafe {
            let n = live_len(&*seg, i);
            if n == 0 {
                let (what, size) = misuse(&*seg, p);
                drop(segs);
                return crate::diag::fault(what, "free", p, size, 0);
            }
            if eager {
                // Keep the pages marked used while the lock is dropped for the system call (a
                // second free meanwhile sees the mark: a double free).
                (*seg).len[i] = FREED | n as u16;
                drop(segs);
                OS_PAGES.purge(p, n * PAGE);
                segs = SEGMENTS.lock();
            } else {
                mark(&mut (*seg).dirty, i, n, true);
                if (*seg).dirty_since == 0 {
                    (*seg).dirty_since = os::now_ms().max(1);
                }
            }
            (*seg).len[i] = FREED | n as u16;
            mark(&mut (*seg).used, i, n, false);
            (*seg).free_pages += n;
            let (left, right) = (last_used(&(*seg).used, i) + 1, first_free_end(&*seg, i + n));
            (*seg).max_free = (*seg).max_free.max(right - left);
            stats::RUN_FREES.add(1);
            if (*seg).free_pages == PAGES - 1 {
                if eager && segs.count > 1 {
                    unlink(&mut segs, seg);
                    drop(segs);
                    return OS_PAGES.release(seg.cast(), CHUNK_SIZE);
                }
                (*seg).empty_since = os::now_ms().max(1);
            }
        }
    });
    os::keep_errno(|| crate::purge::tick(false));
}

/// Bytes of live runs now (their pages), counted over the segments under the lock.
pub fn in_use_bytes() -> u64 {
    let segs = SEGMENTS.lock();
    let (mut seg, mut pages) = (segs.head, 0usize);
    // SAFETY: every segment on the list is live; the lock serialises the headers.
    while let Some(s) = unsafe { seg.as_ref() } {
        pages += PAGES - 1 - s.free_pages;
        seg = s.next;
    }
    (pages * PAGE) as u64
}

/// A purge pass over the run segments: dirty pages freed at least a purge delay ago (all of
/// them when `force`) go back to the OS, and segments empty for that long are unmapped (one is
/// kept unless `force`). Called by [`crate::purge::tick`] and [`crate::purge::trim`].
pub fn purge(now: u64, force: bool) {
    let cfg = crate::config::get();
    if cfg.free_policy == FreePolicy::Keep {
        return;
    }
    let due = |since: u64| since != 0 && (force || now.saturating_sub(since) >= cfg.purge_delay_ms);
    let mut segs = SEGMENTS.lock();
    let mut seg = segs.head;
    // SAFETY: every segment on the list is live; the lock serialises the headers (purging free
    // pages under it keeps them from being handed out meanwhile).
    unsafe {
        while !seg.is_null() {
            let next = (*seg).next;
            if due((*seg).empty_since) && (force || segs.count > 1) {
                unlink(&mut segs, seg);
                OS_PAGES.release(seg.cast(), CHUNK_SIZE);
            } else if due((*seg).dirty_since) {
                purge_dirty(seg, now, force);
            }
            seg = next;
        }
    }
}

/// Gives the dirty ranges of `seg` that were dirty at the previous pass (all of them when
/// `force`) back to the OS, so a page is purged after one to two purge delays without reuse.
/// Caller holds the lock.
unsafe fn purge_dirty(seg: *mut RunSegment, now: u64, force: bool) {
    // SAFETY: the caller holds the lock; dirty pages are free (nothing live in them).
    unsafe {
        let s = &mut *seg;
        if force {
            s.aged = s.dirty;
        }
        let mut i = first_used(&s.aged, 1, PAGES);
        while let Some(start) = i {
            let end = first_free(&s.aged, start);
            OS_PAGES.purge(
                (seg as usize + start * PAGE) as *mut u8,
                (end - start) * PAGE,
            );
            i = first_used(&s.aged, end, PAGES);
        }
        let mut any = false;
        for w in 0..WORDS {
            s.dirty[w] &= !s.aged[w];
            s.aged[w] = s.dirty[w];
            any |= s.dirty[w] != 0;
        }
        s.dirty_since = if any { now.max(1) } else { 0 };
    }
}

/// Resizes the live run at `p` in place to hold `size` bytes (≤ [`RUN_MAX`]): a shrink frees
/// its tail pages, a growth takes the free pages after it. False (nothing changed) when the
/// pages after it are in use, or `p` is not the start of a live run.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags as a run segment, and be live.
pub unsafe fn resize(p: *mut u8, size: usize) -> bool {
    let Some((seg, i)) = locate(p) else {
        return false;
    };
    let want = size.max(1).div_ceil(PAGE);
    let segs = SEGMENTS.lock();
    // SAFETY: `seg` is a live run segment; the lock serialises its header.
    let done = unsafe {
        let s = &mut *seg;
        let have = live_len(s, i);
        if have == 0 || size > RUN_MAX {
            false
        } else if want <= have {
            mark(&mut s.used, i + want, have - want, false);
            mark(&mut s.dirty, i + want, have - want, true);
            s.free_pages += have - want;
            s.len[i] = want as u16;
            if s.dirty_since == 0 {
                s.dirty_since = os::now_ms().max(1);
            }
            let right = first_free_end(s, i + want);
            s.max_free = s.max_free.max(right - (i + want));
            true
        } else if i + want <= PAGES && first_used(&s.used, i + have, i + want).is_none() {
            s.len[i + have..i + want].fill(0); // freed-run marks in the pages taken
            mark(&mut s.used, i + have, want - have, true);
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

/// The usable size of a live run (its whole pages); 0 for a pointer that is not one.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags as a run segment.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    match locate(p) {
        // SAFETY: the run is live (the caller owns it), so its length entry is stable.
        Some((seg, i)) => unsafe { live_len(&*seg, i) * PAGE },
        None => 0,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn first_used_finds_bits() {
        let mut u = [0u64; WORDS];
        assert_eq!(first_used(&u, 0, PAGES), None);
        mark(&mut u, 70, 3, true);
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
}
