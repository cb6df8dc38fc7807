//! How tiers compose: each owns a tag in the address → owner map and implements [`Tier`]; the
//! facade routes `malloc` by size and `free` by the tag of the pointer's chunk.

use crate::map::{TAG_LARGE, TAG_RUN, Tag};

/// One layer of the allocator, serving a range of sizes from memory it owns.
pub trait Tier {
    /// The owner-map tag of this tier's chunks.
    const TAG: Tag;
    /// Allocates at least `size` bytes aligned to `align`; null when out of memory or when the
    /// request is outside the tier's range.
    fn alloc(&self, size: usize, align: usize) -> *mut u8;
    /// Frees a block of this tier.
    ///
    /// # Safety
    /// `p` must lie in a chunk tagged [`Tier::TAG`] and be a live block of this tier, not used
    /// afterwards (the tiers report the double and invalid frees they detect, but the slab
    /// tiers' checks are compiled out with the `unchecked` feature).
    unsafe fn free(&self, p: *mut u8);
    /// The usable size of a live block of this tier.
    ///
    /// # Safety
    /// `p` must lie in a chunk tagged [`Tier::TAG`].
    unsafe fn usable_size(&self, p: *mut u8) -> usize;
}

/// Core's page-run path as a tier.
pub struct RunTier;

impl Tier for RunTier {
    const TAG: Tag = TAG_RUN;
    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        crate::run::alloc(size, align)
    }
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { crate::run::free(p) }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: forwarded contract.
        unsafe { crate::run::usable_size(p) }
    }
}

/// Core's direct-mapping path as a tier.
pub struct LargeTier;

impl Tier for LargeTier {
    const TAG: Tag = TAG_LARGE;
    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        crate::large::alloc(size, align)
    }
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { crate::large::free(p) }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: forwarded contract.
        unsafe { crate::large::usable_size(p) }
    }
}
