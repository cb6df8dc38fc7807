//! The page-run path: requests up to [`RUN_MAX`] with an alignment beyond what the slab tiers
//! give (128 bytes), served as runs of whole 4 KiB pages inside 4 MiB run segments, aligned to
//! up to 1 MiB. Simple and correct rather than fast: one lock, a first-fit bitmap search; the
//! sizes programs allocate in bulk go to the Tiny tier and the pools.
//!
//! Segment layout: page 0 holds the [`RunSegment`] header (bitmap of used pages, run length at
//! each run's head page); pages 1..1024 are handed out. `free` finds the header by masking the
//! address and the run length by the page index: O(1), no search.

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
/// Runs of at least this many pages give their physical memory back when freed.
const PURGE_PAGES: usize = 16;

#[repr(C)]
struct RunSegment {
    magic: usize,
    next: *mut RunSegment,
    free_pages: usize,
    used: [u64; WORDS],
    /// Run length in pages at each run's first page; 0 elsewhere.
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

fn mark(used: &mut [u64; WORDS], from: usize, n: usize, on: bool) {
    for i in from..from + n {
        let bit = 1u64 << (i % 64);
        if on {
            used[i / 64] |= bit;
        } else {
            used[i / 64] &= !bit;
        }
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

/// First fit: the lowest page index where `n` free pages start on a multiple of `align` pages.
/// After a collision the search jumps to the next free page, so it visits each free fragment
/// once instead of every page.
fn find(seg: &RunSegment, n: usize, align: usize) -> Option<usize> {
    let mut i = first_free(&seg.used, 1).div_ceil(align) * align; // page 0 is the header
    while i + n <= PAGES {
        match first_used(&seg.used, i, i + n) {
            None => return Some(i),
            Some(j) => i = first_free(&seg.used, j + 1).div_ceil(align) * align,
        }
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
            if (*seg).free_pages >= n
                && let Some(i) = find(&*seg, n, align)
            {
                return take(seg, i, n);
            }
            seg = (*seg).next;
        }
        seg = new_segment();
        if seg.is_null() {
            return ptr::null_mut();
        }
        (*seg).next = segs.head;
        segs.head = seg;
        segs.count += 1;
        let i = find(&*seg, n, align).expect("a fresh segment fits any run");
        take(seg, i, n)
    }
}

/// Marks pages `i..i+n` used and returns their address. Caller holds the lock.
unsafe fn take(seg: *mut RunSegment, i: usize, n: usize) -> *mut u8 {
    // SAFETY: the caller holds the lock and `seg` is live.
    unsafe {
        mark(&mut (*seg).used, i, n, true);
        (*seg).len[i] = n as u16;
        (*seg).free_pages -= n;
    }
    stats::RUN_ALLOCS.add(1);
    (seg as usize + i * PAGE) as *mut u8
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

/// Frees a run. A pointer that is not the start of a live run gets a diagnostic and is ignored.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags as a run segment.
pub unsafe fn free(p: *mut u8) {
    let Some((seg, i)) = locate(p) else {
        return crate::diag::bad_pointer("free", p);
    };
    os::keep_errno(|| {
        let mut segs = SEGMENTS.lock();
        // SAFETY: `seg` is a live run segment; the lock serialises its header.
        unsafe {
            let n = (*seg).len[i] as usize;
            if n == 0 {
                drop(segs);
                return crate::diag::bad_pointer("free", p);
            }
            if n >= PURGE_PAGES {
                // Keep the pages marked used while the lock is dropped for the system call.
                (*seg).len[i] = 0;
                drop(segs);
                OS_PAGES.purge(p, n * PAGE);
                segs = SEGMENTS.lock();
            }
            (*seg).len[i] = 0;
            mark(&mut (*seg).used, i, n, false);
            (*seg).free_pages += n;
            stats::RUN_FREES.add(1);
            if (*seg).free_pages == PAGES - 1 && segs.count > 1 {
                unlink(&mut segs, seg);
                drop(segs);
                OS_PAGES.release(seg.cast(), CHUNK_SIZE);
            }
        }
    });
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
        Some((seg, i)) => unsafe { (*seg).len[i] as usize * PAGE },
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
        mark(&mut u, 0, PAGES, true);
        assert_eq!(first_free(&u, 0), PAGES);
        mark(&mut u, 0, PAGES, false);
        assert_eq!(u, [0u64; WORDS]);
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
