//! The page source: chunk-aligned reservations from the OS, registered in the owner map.
//!
//! Tiers obtain memory only through [`PageSource`], so a test or an embedding can substitute
//! its own source: the process uses [`OsPages`]; [`FixedRegion`] serves a range reserved
//! beforehand (a static array, a range mapped by the embedder) and never calls the OS.

use crate::config::Thp;
use crate::map::{self, CHUNK_SIZE, Tag};
use crate::purge::Advice;
use crate::sync::Mutex;
use crate::{os, stats};
use core::ptr;

/// Where tiers get their memory from.
///
/// # Safety
/// The tiers write into what [`PageSource::reserve`] returns without checking it, so an
/// implementation must return null or a range of `size` bytes aligned to `align`, writable,
/// zero-filled, and used by nothing else until it comes back through
/// [`PageSource::release`]; and [`PageSource::purge`] must leave a range readable and
/// writable.
pub unsafe trait PageSource: Sync {
    /// Reserves `size` bytes (a multiple of [`CHUNK_SIZE`]) aligned to `align` (a power of two
    /// ≥ [`CHUNK_SIZE`]), zero-filled, and records `tag` as the owner of its chunks. `dense`:
    /// the memory is likely to stay densely used and reused in place (huge pages pay off; see
    /// the THP policy). Null, with `errno` ENOMEM, when the source has no room. [`OsPages`]
    /// then gives back what hakmem holds free ([`crate::purge::reclaim`]) and retries once, so
    /// the caller must hold no hakmem lock.
    fn reserve(&self, size: usize, align: usize, tag: Tag, dense: bool) -> *mut u8;
    /// Returns a reservation (or its chunk-aligned tail) to the OS.
    ///
    /// # Safety
    /// The range must come from `reserve` and hold nothing live.
    unsafe fn release(&self, p: *mut u8, size: usize);
    /// Gives back the physical pages of a page-aligned range by `advice`, the range staying
    /// reserved: [`Advice::DontNeed`] now (it reads back as zeros), [`Advice::Free`] when the
    /// system needs memory (it reads back as before or as zeros), [`Advice::Wait`] not at all.
    /// False when refused (the range is as it was).
    ///
    /// # Safety
    /// The range must lie in a reservation and hold nothing live.
    unsafe fn purge(&self, p: *mut u8, size: usize, advice: Advice) -> bool;
}

/// Applies the THP policy to a fresh reservation: `auto` asks for huge pages only where memory
/// is likely to stay dense and is reused in place (L2.5 slabs and page-run segments, 2 MiB-
/// aligned and at least 2 MiB), `on` everywhere, `off` forbids them (even where the system
/// default is `always`). Big blocks (big page runs, direct mappings) keep the system's default
/// under `auto`: they are written through once when they are made, and a huge-page fault in a
/// region advised `MADV_HUGEPAGE` may compact memory synchronously (the `defrag=madvise`
/// default), which costs more than the small faults it saves (docs/BENCHMARKS.md).
fn advise_thp(p: *mut u8, size: usize, dense: bool) {
    const HUGE: usize = 2 << 20;
    let dense = dense && size >= HUGE;
    let advice = match crate::config::get().thp {
        Thp::Off => libc::MADV_NOHUGEPAGE,
        Thp::On => libc::MADV_HUGEPAGE,
        Thp::Auto if dense => libc::MADV_HUGEPAGE,
        Thp::Auto => return,
    };
    // SAFETY: advice on a fresh reservation of ours; failure (no THP support) is harmless.
    os::keep_errno(|| unsafe { libc::madvise(p.cast(), size, advice) });
}

/// The operating system as a page source.
pub struct OsPages;

/// The process's page source.
pub static OS_PAGES: OsPages = OsPages;

// SAFETY: fresh anonymous mappings of the asked size and alignment, zero-filled by the OS;
// `madvise` keeps a range mapped.
unsafe impl PageSource for OsPages {
    fn reserve(&self, size: usize, align: usize, tag: Tag, dense: bool) -> *mut u8 {
        debug_assert!(align.is_power_of_two() && align >= CHUNK_SIZE);
        let mut p = os::map_aligned(size, align);
        if p.is_null() {
            // Out of address space (or memory): what hakmem holds free may be what is missing.
            crate::purge::reclaim();
            p = os::map_aligned(size, align);
        }
        if !p.is_null() {
            advise_thp(p, size, dense);
            map::MAP.set(p as usize, size, tag);
            stats::note_reserved(p, size);
            stats::OS_MAPPED.add(size as u64);
            stats::OS_PEAK.raise_to(stats::OS_MAPPED.get());
            stats::OS_SEGMENTS.add(1);
        } else {
            os::set_errno(libc::ENOMEM);
        }
        p
    }

    unsafe fn release(&self, p: *mut u8, size: usize) {
        map::MAP.clear(p as usize, size);
        stats::OS_MAPPED.sub(size as u64);
        stats::OS_SEGMENTS.sub(1);
        // SAFETY: forwarded contract.
        unsafe { os::unmap(p, size) };
    }

    unsafe fn purge(&self, p: *mut u8, size: usize, advice: Advice) -> bool {
        let how = match advice {
            Advice::Wait => return true,
            Advice::Free => libc::MADV_FREE,
            Advice::DontNeed => libc::MADV_DONTNEED,
        };
        // SAFETY: the caller owns the dead range (forwarded contract).
        let rc = os::keep_errno(|| unsafe { libc::madvise(p.cast(), size, how) });
        if rc == 0 {
            stats::add_purged(p, size);
        }
        rc == 0
    }
}

/// A page source over one range reserved beforehand: chunk-aligned pieces of it are handed out
/// in address order, and pieces given back are handed out again (first fit by size and
/// alignment). Nothing here calls the OS (no `mmap`, no `madvise`: purging zeroes the range by
/// hand), so the engine runs on it where there is no OS memory to map, and its counters
/// (`stats::OS_*`) stay out of it. Its chunks are registered in the owner map as the OS
/// source's are.
pub struct FixedRegion {
    state: Mutex<RegionState>,
}

struct RegionState {
    /// The chunk-aligned range served: `[start, end)`.
    start: usize,
    /// The part never handed out: `[next, end)`.
    next: usize,
    end: usize,
    /// Pieces given back: (address, size), 0-sized for an empty slot.
    returned: [(usize, usize); 16],
}

impl FixedRegion {
    /// A source with no range yet: every reservation fails until [`FixedRegion::init`].
    #[cfg(not(loom))]
    pub const fn new() -> FixedRegion {
        FixedRegion {
            state: Mutex::new(RegionState {
                start: 0,
                next: 0,
                end: 0,
                returned: [(0, 0); 16],
            }),
        }
    }

    /// Hands the source the range `[base, base + len)`, whose chunk-aligned part it then
    /// serves (a range it held before is forgotten).
    ///
    /// # Safety
    /// The range must be writable memory that nothing else uses while the source lives, and
    /// zero-filled.
    pub unsafe fn init(&self, base: *mut u8, len: usize) {
        let start = (base as usize).next_multiple_of(CHUNK_SIZE);
        let end = (base as usize + len) & !(CHUNK_SIZE - 1);
        let mut st = self.state.lock();
        st.start = start.min(end);
        st.next = st.start;
        st.end = end;
        st.returned = [(0, 0); 16];
    }

    /// Bytes never handed out yet.
    pub fn unused(&self) -> usize {
        let st = self.state.lock();
        st.end - st.next
    }

    /// Whether `p` lies in the range.
    pub fn contains(&self, p: *const u8) -> bool {
        let st = self.state.lock();
        (st.start..st.end).contains(&(p as usize))
    }
}

#[cfg(not(loom))]
impl Default for FixedRegion {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: pieces of the range `init` was given (writable, used by nothing else, zero-filled;
// zeroed again when they come back), each handed out once until released.
unsafe impl PageSource for FixedRegion {
    fn reserve(&self, size: usize, align: usize, tag: Tag, _dense: bool) -> *mut u8 {
        let mut st = self.state.lock();
        let reused = st
            .returned
            .iter()
            .position(|&(a, s)| s == size && a.is_multiple_of(align));
        let p = match reused {
            Some(i) => {
                let (a, _) = st.returned[i];
                st.returned[i] = (0, 0);
                a
            }
            None => {
                let a = st.next.next_multiple_of(align);
                if st.next == 0 || a > st.end || st.end - a < size {
                    os::set_errno(libc::ENOMEM);
                    return ptr::null_mut();
                }
                st.next = a + size;
                a
            }
        };
        drop(st);
        map::MAP.set(p, size, tag);
        p as *mut u8
    }

    unsafe fn release(&self, p: *mut u8, size: usize) {
        map::MAP.clear(p as usize, size);
        // SAFETY: the range is ours and dead (forwarded contract); zeroed for its next user.
        unsafe { p.write_bytes(0, size) };
        let mut st = self.state.lock();
        if let Some(slot) = st.returned.iter_mut().find(|r| r.1 == 0) {
            *slot = (p as usize, size);
        }
        // A 17th piece given back at once stays unused: the region is a test's, not a heap's.
    }

    unsafe fn purge(&self, p: *mut u8, size: usize, advice: Advice) -> bool {
        if advice == Advice::DontNeed {
            // SAFETY: the range is reserved and dead (forwarded contract).
            unsafe { p.write_bytes(0, size) };
        }
        true
    }
}
