//! # hakmem-pool: the L2 and L2.5 pools (above 1 KiB up to 1 MiB)
//!
//! Role: two instances of the slab engine (`hakmem_slab`) for the sizes between the Tiny
//! tier and the direct mappings, each with its own owner-map tag:
//!
//! | pool | sizes | classes | slab | current slab |
//! |---|---|---|---|---|
//! | L2 | 1 KiB < n ≤ 32 KiB | 20: 1.25, 1.5, 1.75, 2 KiB, 2.5 … 32 KiB | 1 MiB | pinned |
//! | L2.5 | 32 KiB < n ≤ 1 MiB | 20: 40, 48, 56, 64, 80 KiB … 1 MiB | 4 MiB | not pinned |
//!
//! Four classes per doubling bound the internal waste below 25% of the request (the 40, 48 and
//! 56 KiB bridge classes cover the 32–64 KiB gap). Each thread has a heap per pool (TLS): a
//! malloc pops from its current slab of the class, a local free pushes onto the slab's local
//! list, a free from another thread is one CAS onto the slab's remote list (pushed at once: the
//! pools hold no remote frees back, `REMOTE_BATCH_BYTES = 0`). Ownership is found from the address (owner map → pool, mask → slab).
//!
//! Invariants: no lock on the fast paths (the shared slab pool is locked once per slab); nothing
//! allocates; `malloc_usable_size` is the class size; emptied L2.5 slabs go straight back to the
//! pool, whose purge policy returns their memory to the OS.
#![warn(missing_docs)]

#[cfg(not(loom))]
pub use api::*;

/// The class of `size` among four-per-doubling classes starting above `2^base_lg`.
const fn quarter_class(size: usize, base_lg: u32) -> usize {
    let s = size - 1;
    let lg = usize::BITS - 1 - s.leading_zeros();
    ((lg - base_lg) * 4) as usize + ((s >> (lg - 2)) & 3)
}

/// The block size of class `c` of four-per-doubling classes starting above `2^base_lg`.
const fn quarter_size(c: usize, base_lg: u32) -> u32 {
    let lg = base_lg + (c / 4) as u32;
    (1 << lg) + (((c % 4) as u32 + 1) << (lg - 2))
}

const fn quarter_table<const N: usize>(base_lg: u32) -> [u32; N] {
    let mut t = [0u32; N];
    let mut c = 0;
    while c < N {
        t[c] = quarter_size(c, base_lg);
        c += 1;
    }
    t
}

/// Classes per pool.
pub const CLASSES_PER_POOL: usize = 20;
/// The largest L2 size.
pub const L2_MAX: usize = 32 << 10;
/// The largest L2.5 size (and of the pools).
pub const MAX_SIZE: usize = 1 << 20;
/// L2 block sizes.
pub static L2_CLASSES: [u32; CLASSES_PER_POOL] = quarter_table(10);
/// L2.5 block sizes.
pub static L25_CLASSES: [u32; CLASSES_PER_POOL] = quarter_table(15);

/// The L2 class of `size` (1 KiB < size ≤ 32 KiB; another size gives no class of L2's).
#[inline(always)]
pub(crate) const fn l2_class(size: usize) -> usize {
    quarter_class(size, 10)
}

/// The L2.5 class of `size` (32 KiB < size ≤ 1 MiB; another size gives no class of L2.5's).
#[inline(always)]
pub(crate) const fn l25_class(size: usize) -> usize {
    quarter_class(size, 15)
}

#[cfg(not(loom))]
mod api {
    use super::*;
    use hakmem_core::map::{CHUNK_SIZE, Tag};
    use hakmem_core::segment::OsPages;
    use hakmem_core::stats::TierCounters;
    use hakmem_core::sync::RawLock;
    use hakmem_core::tier::Tier;
    use hakmem_slab::Geometry;
    use hakmem_slab::heap::{self as engine, Heap};
    use hakmem_slab::pool::SlabPool;

    /// The owner-map tag of L2 segments.
    pub const L2_TAG: Tag = 4;
    /// The owner-map tag of L2.5 segments.
    pub const L25_TAG: Tag = 5;

    /// The L2 pool's counters.
    pub static L2_COUNTERS: TierCounters = TierCounters::new();
    /// The L2.5 pool's counters (the stats line's `pool.*` sums both pools).
    pub static L25_COUNTERS: TierCounters = TierCounters::new();

    /// The L2 pool's shape: 1 MiB slabs, current slab pinned (larger slabs mean fewer slabs per
    /// class, so a freed block is more often on the current slab's list and reused hot; see
    /// docs/BENCHMARKS.md, "Figures behind design choices").
    pub struct L2;
    /// The L2.5 pool's shape: 4 MiB slabs (one per segment), emptied slabs returned at once.
    pub struct L25;

    static L2_POOL: SlabPool = SlabPool::new();
    static L25_POOL: SlabPool = SlabPool::new();

    // SAFETY: 1 MiB slabs in 4 MiB chunks, L2's own tag and pool; `l2_class` is checked
    // against `L2_CLASSES` by `classes_bound_waste_and_cover_ranges`; a direct entry per class.
    unsafe impl Geometry for L2 {
        const SLAB_SHIFT: usize = 20;
        const SEGMENT: usize = CHUNK_SIZE;
        const TAG: Tag = L2_TAG;
        const CLASSES: &'static [u32] = &L2_CLASSES;
        const EMPTY_CACHE: u32 = 2;
        const PIN_CURRENT: bool = true;
        const ADOPT_ON_FREE: bool = false;
        const REMOTE_BATCH_BYTES: usize = 0;
        fn class_of(size: usize) -> usize {
            l2_class(size)
        }
        fn direct_range(class: usize) -> (usize, usize) {
            (class, class)
        }
        type Pages = OsPages;
        fn pool() -> &'static SlabPool {
            &L2_POOL
        }
        fn counters() -> &'static TierCounters {
            &L2_COUNTERS
        }
    }

    // SAFETY: 4 MiB slabs, one per chunk, L2.5's own tag and pool; `l25_class` is checked as
    // `l2_class` is; a direct entry per class.
    unsafe impl Geometry for L25 {
        const SLAB_SHIFT: usize = 22;
        const SEGMENT: usize = CHUNK_SIZE;
        const TAG: Tag = L25_TAG;
        const CLASSES: &'static [u32] = &L25_CLASSES;
        const EMPTY_CACHE: u32 = 0;
        const PIN_CURRENT: bool = false;
        const ADOPT_ON_FREE: bool = false;
        const REMOTE_BATCH_BYTES: usize = 0;
        const DENSE: bool = true;
        fn class_of(size: usize) -> usize {
            l25_class(size)
        }
        fn direct_range(class: usize) -> (usize, usize) {
            (class, class)
        }
        type Pages = OsPages;
        fn pool() -> &'static SlabPool {
            &L25_POOL
        }
        fn counters() -> &'static TierCounters {
            &L25_COUNTERS
        }
    }

    type L2Heap = Heap<L2, CLASSES_PER_POOL, CLASSES_PER_POOL>;
    type L25Heap = Heap<L25, CLASSES_PER_POOL, CLASSES_PER_POOL>;

    hakmem_slab::thread_heap!(fn l2_heap() -> L2Heap, "hakmem_pool_l2_tls_heap", CLASSES_PER_POOL);
    hakmem_slab::thread_heap!(fn l25_heap() -> L25Heap, "hakmem_pool_l25_tls_heap", CLASSES_PER_POOL);

    #[cfg(test)]
    #[test]
    fn fresh_threads_have_fresh_heaps() {
        std::thread::spawn(|| assert!(l2_heap().is_fresh() && l25_heap().is_fresh()))
            .join()
            .unwrap();
    }

    /// Allocates `size` bytes (1 KiB < size ≤ 1 MiB), 16-byte aligned (128 for L2.5).
    /// Null for a size outside that range (not the pools'), and (errno ENOMEM) when the OS
    /// refuses memory.
    #[inline]
    pub fn alloc(size: usize) -> *mut u8 {
        if size <= 1024 || size > MAX_SIZE {
            return core::ptr::null_mut();
        }
        // SAFETY: the size is in the pool's range, so its class (the direct index) is below
        // CLASSES_PER_POOL.
        unsafe {
            if size <= L2_MAX {
                l2_heap().alloc(l2_class(size), size)
            } else {
                l25_heap().alloc(l25_class(size), size)
            }
        }
    }

    /// Frees an L2 block.
    ///
    /// # Safety
    /// `p` must be a live block in a chunk the owner map tags [`L2_TAG`].
    #[inline]
    pub unsafe fn free_l2(p: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { engine::free::<L2, CLASSES_PER_POOL, CLASSES_PER_POOL>(p, l2_heap) }
    }

    /// Frees an L2.5 block.
    ///
    /// # Safety
    /// `p` must be a live block in a chunk the owner map tags [`L25_TAG`].
    #[inline]
    pub unsafe fn free_l25(p: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { engine::free::<L25, CLASSES_PER_POOL, CLASSES_PER_POOL>(p, l25_heap) }
    }

    /// The class size of a live L2 block (0 for a pointer that is not one).
    ///
    /// # Safety
    /// `p` must lie in a chunk the owner map tags [`L2_TAG`] (its slab header is read).
    pub unsafe fn usable_size_l2(p: *mut u8) -> usize {
        // SAFETY: forwarded contract.
        unsafe { engine::usable_size::<L2>(p) }
    }

    /// The class size of a live L2.5 block (0 for a pointer that is not one).
    ///
    /// # Safety
    /// `p` must lie in a chunk the owner map tags [`L25_TAG`] (its slab header is read).
    pub unsafe fn usable_size_l25(p: *mut u8) -> usize {
        // SAFETY: forwarded contract.
        unsafe { engine::usable_size::<L25>(p) }
    }

    /// The L2 pool as the facade's tag table holds it.
    pub const L2_TIER: Tier = Tier {
        tag: L2_TAG,
        name: "L2",
        free: free_l2,
        usable_size: usable_size_l2,
        resize: hakmem_core::tier::no_resize,
    };

    /// The L2.5 pool as the facade's tag table holds it.
    pub const L25_TIER: Tier = Tier {
        tag: L25_TAG,
        name: "L2.5",
        free: free_l25,
        usable_size: usable_size_l25,
        resize: hakmem_core::tier::no_resize,
    };

    /// The locks `fork` must hold.
    pub fn fork_locks() -> [&'static RawLock; 2] {
        [L2_POOL.lock(), L25_POOL.lock()]
    }

    /// What the L2 and the L2.5 pools' slabs hold now (`hakmem_slab::census`); `None` for a
    /// pool whose lock stayed taken.
    pub fn census() -> [Option<hakmem_slab::census::Census>; 2] {
        [
            hakmem_slab::census::census::<L2>(),
            hakmem_slab::census::census::<L25>(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_bound_waste_and_cover_ranges() {
        for (lo, hi, class, table) in [
            (
                1025usize,
                L2_MAX,
                l2_class as fn(usize) -> usize,
                &L2_CLASSES,
            ),
            (L2_MAX + 1, MAX_SIZE, l25_class, &L25_CLASSES),
        ] {
            assert_eq!(class(lo), 0);
            assert_eq!(class(hi), CLASSES_PER_POOL - 1);
            assert_eq!(table[CLASSES_PER_POOL - 1] as usize, hi);
            for size in (lo..=hi).step_by(7).chain([lo, hi]) {
                let c = class(size);
                let bs = table[c] as usize;
                assert!(bs >= size, "size {size} in class {bs}");
                assert!(
                    (bs - size) * 4 < size,
                    "size {size} wastes {} in class {bs}",
                    bs - size
                );
                if c > 0 {
                    assert!(
                        (table[c - 1] as usize) < size,
                        "size {size} not in its smallest class"
                    );
                }
                assert_eq!(bs % 256, 0, "class {bs} keeps 256-byte multiples");
            }
        }
        // The bridge classes between 32 and 64 KiB.
        assert_eq!(&L25_CLASSES[..4], &[40 << 10, 48 << 10, 56 << 10, 64 << 10]);
    }
}
