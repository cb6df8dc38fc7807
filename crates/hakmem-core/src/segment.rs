//! The page source: chunk-aligned reservations from the OS, registered in the owner map.
//!
//! Tiers obtain memory only through [`PageSource`], so a test or an embedding can substitute
//! its own source; the process uses [`OsPages`].

use crate::config::Thp;
use crate::map::{self, CHUNK_SIZE, Tag};
use crate::{os, stats};

/// Where tiers get their memory from.
pub trait PageSource: Sync {
    /// Reserves `size` bytes aligned to `align` (a power of two ≥ [`CHUNK_SIZE`]), zero-filled,
    /// and records `tag` as the owner of its chunks. Null, with `errno` ENOMEM, when the OS
    /// refuses. [`OsPages`] then gives back what hakmem holds free ([`crate::purge::reclaim`])
    /// and retries once, so the caller must hold no hakmem lock.
    fn reserve(&self, size: usize, align: usize, tag: Tag) -> *mut u8;
    /// Returns a reservation (or its chunk-aligned tail) to the OS.
    ///
    /// # Safety
    /// The range must come from `reserve` and hold nothing live.
    unsafe fn release(&self, p: *mut u8, size: usize);
    /// Releases the physical pages of a page-aligned range, which stays reserved and reads back
    /// as zeros.
    ///
    /// # Safety
    /// The range must lie in a reservation and hold nothing live.
    unsafe fn purge(&self, p: *mut u8, size: usize);
}

/// Applies the THP policy to a fresh reservation: `auto` asks for huge pages only where memory
/// is likely to stay dense and is reused in place (L2.5 slabs and page-run segments, 2 MiB-
/// aligned and at least 2 MiB), `on` everywhere, `off` forbids them (even where the system
/// default is `always`). Big blocks (big page runs, direct mappings) keep the system's default
/// under `auto`: they are written through once when they are made, and a huge-page fault in a
/// region advised `MADV_HUGEPAGE` may compact memory synchronously (the `defrag=madvise`
/// default), which costs more than the small faults it saves (docs/BENCHMARKS.md).
fn advise_thp(p: *mut u8, size: usize, tag: Tag) {
    const HUGE: usize = 2 << 20;
    let dense = matches!(tag, map::TAG_L25 | map::TAG_RUN) && size >= HUGE;
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

impl PageSource for OsPages {
    fn reserve(&self, size: usize, align: usize, tag: Tag) -> *mut u8 {
        debug_assert!(align.is_power_of_two() && align >= CHUNK_SIZE);
        let mut p = os::map_aligned(size, align);
        if p.is_null() {
            // Out of address space (or memory): what hakmem holds free may be what is missing.
            crate::purge::reclaim();
            p = os::map_aligned(size, align);
        }
        if !p.is_null() {
            advise_thp(p, size, tag);
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

    unsafe fn purge(&self, p: *mut u8, size: usize) {
        stats::add_purged(p, size);
        // SAFETY: forwarded contract.
        unsafe { os::purge(p, size) };
    }
}
