//! How tiers compose: each owns a tag in the address → owner map and describes itself as a
//! [`Tier`], the entry points for pointers it handed out; the facade routes `malloc` by size
//! and `free`, `malloc_usable_size` and in-place `realloc` by the tag of the pointer's chunk,
//! through one [`TierTable`].

use crate::map::{TAG_BIG_RUN, TAG_GUARD, TAG_RUN, Tag};

/// One layer of the allocator, as the tag table holds it: what is done with a pointer into a
/// chunk tagged [`Tier::tag`]. Allocation is not here: the facade routes it by size (and
/// alignment) before any tier is involved.
#[derive(Clone, Copy)]
pub struct Tier {
    /// The owner-map tag of this tier's chunks.
    pub tag: Tag,
    /// The tier's name, for diagnostics.
    pub name: &'static str,
    /// Frees a block of this tier (a pointer that is not one is reported and left alone).
    ///
    /// # Safety
    /// The pointer lies in a chunk tagged `tag`, and is not used afterwards.
    pub free: unsafe fn(*mut u8),
    /// The usable size of a live block of this tier (0 for a pointer that is not one).
    ///
    /// # Safety
    /// The pointer lies in a chunk tagged `tag`.
    pub usable_size: unsafe fn(*mut u8) -> usize,
    /// Resizes a live block to the given size without copying: the block's address, possibly
    /// moved by the kernel (a remapped mapping), or null when it cannot (the caller then
    /// allocates, copies and frees).
    ///
    /// # Safety
    /// The pointer is a live block of this tier; after a non-null return only that is used.
    pub resize: unsafe fn(*mut u8, usize) -> *mut u8,
}

/// [`Tier::resize`] of a tier that never resizes in place (the slab tiers: a block's size is
/// its class's).
///
/// # Safety
/// None needed: the pointer is not touched.
pub unsafe fn no_resize(_p: *mut u8, _size: usize) -> *mut u8 {
    core::ptr::null_mut()
}

/// The tag → tier table: at most one tier per tag.
pub struct TierTable {
    by_tag: [Option<&'static Tier>; 8],
}

impl TierTable {
    /// A table of `tiers`; panics (at compile time, in a `const`) when two share a tag or a
    /// tag is out of range.
    pub const fn new(tiers: &[&'static Tier]) -> TierTable {
        let mut by_tag: [Option<&'static Tier>; 8] = [None; 8];
        let mut i = 0;
        while i < tiers.len() {
            let t = tiers[i].tag as usize;
            assert!(t != 0 && t < 8, "tag 0 is no tier's, and tags are below 8");
            assert!(by_tag[t].is_none(), "two tiers with one tag");
            by_tag[t] = Some(tiers[i]);
            i += 1;
        }
        TierTable { by_tag }
    }

    /// The tier owning chunks tagged `tag`, if any.
    #[inline(always)]
    pub fn get(&self, tag: Tag) -> Option<&'static Tier> {
        match self.by_tag.get(tag as usize) {
            Some(t) => *t,
            None => None,
        }
    }
}

/// Core's page runs (4 KiB pages, up to 1 MiB) as a tier.
pub const RUN_TIER: Tier = Tier {
    tag: TAG_RUN,
    name: "runs",
    free: crate::run::free,
    usable_size: crate::run::usable_size,
    resize: resize_run,
};

/// Core's big page runs (256 KiB pages, above 1 MiB) as a tier.
pub const BIG_RUN_TIER: Tier = Tier {
    tag: TAG_BIG_RUN,
    name: "big runs",
    free: free_big_run,
    usable_size: usable_size_big_run,
    resize: resize_big_run,
};

/// Core's guard-page blocks (sampled, `HAKMEM_GUARD_SAMPLE`) as a tier.
pub const GUARD_TIER: Tier = Tier {
    tag: TAG_GUARD,
    name: "guard",
    free: crate::guard::free,
    usable_size: usable_size_guard,
    resize: no_resize,
};

/// # Safety
/// As [`Tier::resize`].
unsafe fn resize_run(p: *mut u8, size: usize) -> *mut u8 {
    // Only runs above the pools' range: a smaller size belongs to a pool, where it moves.
    // SAFETY: forwarded contract.
    if size > crate::run::SPAN_MIN && unsafe { crate::run::resize(p, size) } {
        p
    } else {
        core::ptr::null_mut()
    }
}

/// # Safety
/// As [`Tier::free`].
unsafe fn free_big_run(p: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe { crate::run::BIG_RUNS.free(p) }
}

/// # Safety
/// As [`Tier::usable_size`].
unsafe fn usable_size_big_run(p: *mut u8) -> usize {
    // SAFETY: forwarded contract.
    unsafe { crate::run::BIG_RUNS.usable_size(p) }
}

/// # Safety
/// As [`Tier::resize`].
unsafe fn resize_big_run(p: *mut u8, size: usize) -> *mut u8 {
    // Only to sizes the big runs serve: a smaller one moves to its own tier.
    // SAFETY: forwarded contract.
    if size > crate::run::RUN_MAX && unsafe { crate::run::BIG_RUNS.resize(p, size) } {
        p
    } else {
        core::ptr::null_mut()
    }
}

/// # Safety
/// As [`Tier::usable_size`].
unsafe fn usable_size_guard(p: *mut u8) -> usize {
    // SAFETY: forwarded contract.
    unsafe { crate::guard::usable_size(p) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_finds_each_tier_by_its_tag() {
        static T: TierTable = TierTable::new(&[&RUN_TIER, &BIG_RUN_TIER, &GUARD_TIER]);
        assert_eq!(T.get(TAG_RUN).map(|t| t.name), Some("runs"));
        assert_eq!(T.get(TAG_BIG_RUN).map(|t| t.name), Some("big runs"));
        assert_eq!(T.get(TAG_GUARD).map(|t| t.name), Some("guard"));
        assert!(T.get(0).is_none());
        assert!(T.get(1).is_none());
        assert!(T.get(200).is_none());
    }

    #[test]
    fn a_run_resizes_in_place_through_its_tier() {
        let p = crate::run::alloc(200 << 10, 16);
        assert!(!p.is_null());
        // SAFETY: `p` is a live run, resized, measured and freed through its tier once.
        unsafe {
            assert_eq!((RUN_TIER.usable_size)(p), 200 << 10);
            let q = (RUN_TIER.resize)(p, 100 << 10);
            assert_eq!(q, p, "a shrink stays in place");
            assert_eq!((RUN_TIER.usable_size)(p), 100 << 10);
            assert!((RUN_TIER.resize)(p, 100).is_null(), "a pool size moves");
            (RUN_TIER.free)(p);
        }
    }
}
