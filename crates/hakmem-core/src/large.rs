//! The large path: one direct, chunk-aligned mapping per block above the run limit.
//!
//! Layout: `[base .. p - PAGE)` unused (only when `align > PAGE`), the `Header` page at
//! `p - PAGE`, then the block at `p`, up to the end of the reservation, which is rounded up to
//! whole chunks (address space only: untouched pages cost no memory). So a block can grow in
//! place up to its chunk end for free, and further with `mremap`, which moves pages without
//! copying them.
//!
//! A [`MappingCache`] (the BigCache, crate `hakmem-bigcache`) may keep freed mappings for
//! reuse: [`alloc_in`] asks it first, [`free_in`] offers it the mapping before unmapping.

use crate::map::{self, CHUNK_SIZE, TAG_LARGE};
use crate::os::{self, PAGE};
use crate::segment::{OS_PAGES, PageSource};
use crate::stats;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

const MAGIC: usize = 0x6861_6b6d_4c52_4745; // "hakmLRGE"
/// The header magic of a freed block whose mapping is still ours (cached for reuse): a second
/// `free` of the pointer is a double free, never a second offer to the cache.
const FREED: usize = 0x6861_6b6d_4652_4545; // "hakmFREE"

#[repr(C)]
struct Header {
    magic: usize,
    /// The block this header describes (a check against stray pointers).
    user: *mut u8,
    /// Start and length of the whole reservation.
    base: *mut u8,
    len: usize,
    /// Where the block was allocated from (0: unknown), when (ms) and by which thread: read by
    /// site profiling when the block is freed.
    origin: Origin,
}

/// Where and when a large block was allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    /// The call site (0: unknown).
    pub site: usize,
    /// [`os::now_ms`] at the allocation.
    pub born_ms: u64,
    /// [`os::thread_id`] of the allocating thread.
    pub tid: usize,
}

/// The header offset and the reservation length for a block of `size` bytes aligned to `align`.
/// A zero size counts as one byte: the block must end inside its own reservation (at `head`
/// exactly, it would point one past the end, possibly into another mapping).
fn reservation(size: usize, align: usize) -> Option<(usize, usize)> {
    let head = align.max(PAGE);
    let len = os::align_up(head.checked_add(size.max(1))?, CHUNK_SIZE)?;
    (len <= isize::MAX as usize).then_some((head, len))
}

/// A cache of whole freed mappings, consulted by the large path (implemented by the BigCache).
///
/// Mappings are chunk-aligned, a whole number of chunks long, and stay tagged
/// [`TAG_LARGE`] in the owner map while cached. Their contents are stale, not zero.
///
/// # Safety
/// The large path writes into what `take` and `take_below` return: an implementation hands out
/// only mappings given to it by [`MappingCache::put`] (each once, and only while it holds it),
/// with the length they were put with (or a chunk-aligned part of one).
pub unsafe trait MappingCache: Sync {
    /// Takes a cached mapping of `len` to `max_len` bytes whose base is aligned to `align` (a
    /// power of two ≥ [`CHUNK_SIZE`]), if there is one, with its length. It is the caller's from
    /// then on.
    fn take(&self, len: usize, max_len: usize, align: usize) -> Option<(*mut u8, usize)>;
    /// Offers the mapping `[base, base + len)` for reuse. True: the cache keeps it (and releases
    /// it itself one day, through [`OS_PAGES`]); false: the caller must release it.
    ///
    /// # Safety
    /// `[base, base + len)` must be a whole reservation of [`OS_PAGES`] (or a chunk-aligned
    /// tail of one) tagged [`TAG_LARGE`], holding nothing live, the caller's to give away: on
    /// true, the cache may hand it out or unmap it.
    unsafe fn put(&self, base: *mut u8, len: usize) -> bool;
    /// Takes the longest cached mapping shorter than `len` (aligned to `align`), if any, with
    /// its length: on a miss, the large path grows it with `mremap` rather than mapping `len`
    /// fresh bytes, so only the difference is faulted in. The default has none.
    fn take_below(&self, _len: usize, _align: usize) -> Option<(*mut u8, usize)> {
        None
    }
}

/// No cache: every free unmaps.
pub struct NoCache;

// SAFETY: it hands nothing out.
unsafe impl MappingCache for NoCache {
    fn take(&self, _len: usize, _max_len: usize, _align: usize) -> Option<(*mut u8, usize)> {
        None
    }
    unsafe fn put(&self, _base: *mut u8, _len: usize) -> bool {
        false
    }
}

/// Allocates `size` bytes aligned to `align` (a power of two) in a mapping of its own.
/// Null, with `errno` ENOMEM, when the size is impossible or the OS refuses.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    alloc_in(&NoCache, size, align).0
}

/// Like [`alloc`], taking a mapping from `cache` when it has one. The flag is true when the
/// memory is fresh from the OS (hence zero), false when it came from the cache.
pub fn alloc_in(cache: &impl MappingCache, size: usize, align: usize) -> (*mut u8, bool) {
    alloc_at(cache, size, align, Origin::default())
}

/// Like [`alloc_in`], recording `origin` in the block's header (see [`origin`]).
pub fn alloc_at(
    cache: &impl MappingCache,
    size: usize,
    align: usize,
    origin: Origin,
) -> (*mut u8, bool) {
    let Some((head, len)) = reservation(size, align) else {
        os::set_errno(libc::ENOMEM);
        return (ptr::null_mut(), false);
    };
    let seg_align = align.max(CHUNK_SIZE);
    crate::purge::tick(true);
    // The shortest cached mapping that is long enough serves the request (what saves the page
    // faults is the hit rate on varied sizes): up to half as long again it is taken whole (the
    // excess is address space and the pages the previous block touched), a longer one is split.
    let max_len = len + ((len / 2) & !(CHUNK_SIZE - 1));
    let (base, len, fresh) = match cache.take(len, usize::MAX, seg_align) {
        Some((b, l)) if l > max_len => {
            // A longer mapping: split it at the chunk boundary after `len` and give the tail
            // back to the cache (whole chunks, chunk-aligned: a mapping of its own from then on).
            // SAFETY: `len < l`; the tail lies inside the mapping just taken.
            let (tail, rest) = (unsafe { b.add(len) }, l - len);
            stats::OS_SEGMENTS.add(1); // one reservation is two from now on
            // SAFETY: the tail is a chunk-aligned part of a mapping just taken, holding nothing.
            if !unsafe { cache.put(tail, rest) } {
                // SAFETY: the tail is ours and holds nothing live.
                unsafe { OS_PAGES.release(tail, rest) };
            }
            (b, len, false)
        }
        Some((b, l)) => (b, l, false),
        None => match cache.take_below(len, seg_align) {
            // SAFETY: the mapping just taken is ours and holds nothing live.
            Some((b, l)) => match unsafe { grow_mapping(b, l, len, seg_align) } {
                q if q.is_null() => {
                    // SAFETY: as above; growing failed and left it as it was.
                    unsafe { OS_PAGES.release(b, l) };
                    (
                        OS_PAGES.reserve(len, seg_align, TAG_LARGE, false),
                        len,
                        true,
                    )
                }
                q => (q, len, false),
            },
            None => (
                OS_PAGES.reserve(len, seg_align, TAG_LARGE, false),
                len,
                true,
            ),
        },
    };
    if base.is_null() {
        return (base, false);
    }
    if fresh {
        stats::CACHE_MISSES.add(1);
    } else {
        stats::CACHE_HITS.add(1);
    }
    // SAFETY: `head < len`; the header page lies inside the reservation, which is ours.
    unsafe {
        let p = base.add(head);
        p.sub(PAGE).cast::<Header>().write(Header {
            magic: MAGIC,
            user: p,
            base,
            len,
            origin,
        });
        stats::LARGE_ALLOCS.add(1);
        (p, fresh)
    }
}

/// The header magic word at `h`, read atomically (two threads freeing one block race on it).
///
/// # Safety
/// `h` must be a page-aligned address inside one of our reservations.
unsafe fn magic(h: *mut Header) -> &'static AtomicUsize {
    // SAFETY: forwarded contract: mapped, aligned; only ever accessed atomically while shared.
    unsafe { AtomicUsize::from_ptr(&raw mut (*h).magic) }
}

/// The header of a block whose header magic is `want` ([`MAGIC`]: live, [`FREED`]: freed and
/// its mapping still ours), or None for a pointer that is not one.
fn header_as(p: *mut u8, want: usize) -> Option<*mut Header> {
    let addr = p as usize;
    if !addr.is_multiple_of(PAGE) || addr < PAGE || map::MAP.tag(addr - PAGE) != TAG_LARGE {
        return None;
    }
    let h = (addr - PAGE) as *mut Header;
    // SAFETY: the page before `p` is in a chunk tagged large, i.e. inside one of our
    // reservations, which are mapped in whole.
    let ok = unsafe { magic(h).load(Ordering::Acquire) == want && (*h).user == p };
    ok.then_some(h)
}

/// The header of a live block, or None for a pointer that is not one.
fn header(p: *mut u8) -> Option<*mut Header> {
    header_as(p, MAGIC)
}

/// The live block whose mapping holds `p` (an address in a chunk tagged large), with its
/// usable size: found by walking back chunk by chunk and trying each place a header can be
/// (the page before a block that starts at a power-of-two offset from its chunk-aligned base).
/// Diagnostics only.
fn enclosing(p: *mut u8) -> Option<(*mut u8, usize)> {
    let addr = p as usize;
    let mut chunk = addr & !(CHUNK_SIZE - 1);
    for _ in 0..(1 << 16) {
        if map::MAP.tag(chunk) != TAG_LARGE {
            return None;
        }
        let mut off = PAGE;
        while off <= CHUNK_SIZE {
            let h = (chunk + off - PAGE) as *mut Header;
            // SAFETY: `h` lies in a chunk tagged large (mapped in whole); the words are read
            // only to be compared, as anything else would be a stray pointer of the caller's.
            let (m, user, base, len) = unsafe {
                (
                    magic(h).load(Ordering::Relaxed),
                    ptr::read_volatile(&raw const (*h).user),
                    ptr::read_volatile(&raw const (*h).base) as usize,
                    ptr::read_volatile(&raw const (*h).len),
                )
            };
            if m == MAGIC && user as usize == h as usize + PAGE && base <= addr {
                let end = base.saturating_add(len);
                return (addr < end).then_some((user, end - user as usize));
            }
            off *= 2;
        }
        if chunk < CHUNK_SIZE {
            return None;
        }
        chunk -= CHUNK_SIZE;
    }
    None
}

/// Reports a `free` of `p` (in a chunk tagged large) that is not a live block: a double free
/// while the mapping is still ours (cached), an interior pointer of a live block, or neither.
/// The memory is left alone.
fn bad_free(p: *mut u8) {
    use crate::diag::{Fault, fault};
    if let Some(h) = header_as(p, FREED) {
        // SAFETY: a freed block's header, in a mapping still ours.
        let size = unsafe { (*h).base as usize + (*h).len - p as usize };
        return fault(Fault::DoubleFree, "free", p, size, 0);
    }
    match enclosing(p) {
        Some((_, size)) => fault(Fault::InvalidFree("interior pointer"), "free", p, size, 0),
        None => fault(Fault::InvalidFree("not a block"), "free", p, 0, 0),
    }
}

/// The origin recorded for a live block, with its usable size; None for a stray pointer.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags as large.
pub unsafe fn origin(p: *mut u8) -> Option<(Origin, usize)> {
    // SAFETY: `h` is the live header.
    header(p).map(|h| unsafe { ((*h).origin, (*h).base as usize + (*h).len - p as usize) })
}

/// Frees a block. A pointer that is not a live block is reported through [`crate::diag::fault`]
/// (a double free while the freed mapping is still ours, in the BigCache; else an invalid free)
/// and left alone.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags as large.
pub unsafe fn free(p: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe { free_in(&NoCache, p) }
}

/// Frees a block, offering its mapping to `cache` before unmapping it.
///
/// # Safety
/// As for [`free`].
pub unsafe fn free_in(cache: &impl MappingCache, p: *mut u8) {
    os::keep_errno(|| {
        // Claim the block: of two frees of it, only one turns the live magic into the freed one.
        // SAFETY: `h` is a header page in a chunk tagged large.
        let Some(h) = header(p).filter(|&h| unsafe {
            magic(h)
                .compare_exchange(MAGIC, FREED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }) else {
            return bad_free(p);
        };
        // SAFETY: `h` is the header of the block just claimed; the block is dead after this.
        unsafe {
            let (base, len) = ((*h).base, (*h).len);
            stats::LARGE_FREES.add(1);
            if !cache.put(base, len) {
                OS_PAGES.release(base, len);
            }
        }
        crate::purge::tick(true);
    });
}

/// The usable size of a live block (to the end of its reservation); 0 for a stray pointer.
///
/// # Safety
/// `p` must lie in a chunk the owner map tags as large.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    match header(p) {
        // SAFETY: `h` is the live header.
        Some(h) => unsafe { (*h).base as usize + (*h).len - p as usize },
        None => 0,
    }
}

/// Grows the mapping `[base, base + len)` to `new_len` bytes (whole chunks) aligned to `align`:
/// in place when the address space after it is free, else by moving its pages with `mremap`
/// onto a fresh aligned reservation (the old range is gone then). Returns the mapping's base,
/// or null (nothing changed) when the OS refuses.
///
/// # Safety
/// The range must be one of our large reservations, with nothing in it that others use.
unsafe fn grow_mapping(base: *mut u8, len: usize, new_len: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded contract: the range is ours.
    if unsafe { os::grow_in_place(base, len, new_len) } {
        map::MAP.set(base as usize, new_len, TAG_LARGE);
        stats::OS_MAPPED.add((new_len - len) as u64);
        stats::OS_PEAK.raise_to(stats::OS_MAPPED.get());
        return base;
    }
    let target = OS_PAGES.reserve(new_len, align.max(CHUNK_SIZE), TAG_LARGE, false);
    if target.is_null() {
        return ptr::null_mut();
    }
    // The old range is forgotten before the move unmaps it: once it is gone, another thread
    // may map a segment at the same address and tag it, and a clear after that would untag
    // the newcomer (its blocks would read as foreign). Nobody else looks the range up: the
    // block is the caller's.
    map::MAP.clear(base as usize, len);
    // SAFETY: both ranges are ours; the pages move, the old range goes away.
    if unsafe { os::remap_to(base, len, new_len, target) }.is_null() {
        map::MAP.set(base as usize, len, TAG_LARGE);
        // SAFETY: the target is a fresh reservation of ours.
        unsafe { OS_PAGES.release(target, new_len) };
        return ptr::null_mut();
    }
    stats::OS_MAPPED.sub(len as u64);
    stats::OS_SEGMENTS.sub(1);
    target
}

/// Resizes a live block to at least `new` bytes without copying: shrinking unmaps the chunks
/// past the new end; growing stays in place when the reservation (or the address space after it)
/// has room, else moves the pages with `mremap`. Returns
/// the block's (possibly new) address, or null when the OS refuses; the old block then stays
/// valid.
///
/// # Safety
/// `p` must be a live block from [`alloc`].
pub unsafe fn resize(p: *mut u8, new: usize) -> *mut u8 {
    let Some(h) = header(p) else {
        return ptr::null_mut();
    };
    // SAFETY: `h` is the live header of a block the caller owns.
    unsafe {
        let (base, len) = ((*h).base, (*h).len);
        let head = p as usize - base as usize;
        let Some((_, new_len)) = reservation(new, head) else {
            return ptr::null_mut();
        };
        if new_len < len {
            // Shrink: give the whole chunks past the new end back.
            map::MAP.clear(base as usize + new_len, len - new_len);
            stats::OS_MAPPED.sub((len - new_len) as u64);
            os::unmap(base.add(new_len), len - new_len);
            (*h).len = new_len;
            return p;
        }
        if new_len == len {
            return p;
        }
        let align = if head > PAGE { head } else { CHUNK_SIZE };
        let target = grow_mapping(base, len, new_len, align);
        if target.is_null() {
            return ptr::null_mut();
        }
        if target == base {
            (*h).len = new_len;
            return p;
        }
        let q = target.add(head);
        let h = q.sub(PAGE).cast::<Header>();
        (*h).user = q;
        (*h).base = target;
        (*h).len = new_len;
        q
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn alloc_grow_free() {
        let p = alloc(3 << 20, PAGE);
        assert!(!p.is_null());
        // SAFETY: p is a fresh block of 3 MiB; it is grown, checked and freed once.
        unsafe {
            assert!(usable_size(p) >= 3 << 20);
            p.write(7);
            p.add((3 << 20) - 1).write(9);
            let q = resize(p, 40 << 20);
            assert!(!q.is_null());
            assert!(usable_size(q) >= 40 << 20);
            assert_eq!((*q, *q.add((3 << 20) - 1)), (7, 9));
            q.add((40 << 20) - 1).write(1);
            let r = resize(q, 5 << 20);
            assert_eq!(r, q, "shrinking stays in place");
            assert_eq!(
                usable_size(r),
                (8 << 20) - PAGE,
                "the chunks past 5 MiB went back"
            );
            assert_eq!(map::MAP.tag(r as usize + (9 << 20)), map::TAG_NONE);
            assert_eq!((*r, *r.add((3 << 20) - 1)), (7, 9));
            free(r);
            assert_eq!(map::MAP.tag(q as usize), map::TAG_NONE);
        }
    }

    #[test]
    fn aligned_blocks() {
        for align in [PAGE, 1 << 16, 1 << 21, 1 << 23] {
            let p = alloc(5000, align);
            assert_eq!(p as usize % align, 0);
            // SAFETY: fresh block, freed once.
            unsafe {
                assert!(usable_size(p) >= 5000);
                free(p);
            }
        }
    }

    #[test]
    fn zero_size_lies_inside_its_mapping() {
        for align in [PAGE, 1 << 21, CHUNK_SIZE, 2 * CHUNK_SIZE, 16 * CHUNK_SIZE] {
            let p = alloc(0, align);
            assert_eq!(p as usize % align, 0);
            assert_eq!(map::MAP.tag(p as usize), TAG_LARGE, "align {align}");
            // SAFETY: fresh block of at least one byte, grown, then freed once.
            unsafe {
                assert!(usable_size(p) >= 1, "align {align}");
                p.write(1);
                let q = resize(p, 100);
                assert!(!q.is_null() && usable_size(q) >= 100);
                free(q);
            }
        }
    }

    #[test]
    fn impossible_sizes_fail() {
        assert!(alloc(usize::MAX - 10, PAGE).is_null());
        assert!(alloc(isize::MAX as usize, PAGE).is_null());
    }
}
