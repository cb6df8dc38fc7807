//! The slab engine on a fixed region: a tier whose page source is a static array, so every
//! segment, slab and block comes from it and nothing is mapped from the OS.

use core::cell::UnsafeCell;
use hakmem_core::map::{CHUNK_SIZE, Tag, tag_of};
use hakmem_core::segment::FixedRegion;
use hakmem_core::stats::{OS_MAPPED, OS_SEGMENTS, TierCounters};
use hakmem_slab::Geometry;
use hakmem_slab::heap::{self as engine, Heap};
use hakmem_slab::pool::SlabPool;
use std::collections::HashSet;
use std::sync::Once;

/// Four segments of memory, chunk-aligned, in the test binary's zero-filled data.
#[repr(C, align(4194304))]
struct Arena(UnsafeCell<[u8; 4 * CHUNK_SIZE]>);
// SAFETY: the arena is only ever touched through the region, which hands out each part once.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; 4 * CHUNK_SIZE]));
static REGION: FixedRegion = FixedRegion::new();
static POOL: SlabPool<FixedRegion> = SlabPool::with_source(&REGION);
static COUNTERS: TierCounters = TierCounters::new();

const CLASSES: [u32; 3] = [16, 64, 256];
const TAG: Tag = 1;

/// A three-class tier with 64 KiB slabs, a direct entry per class.
struct Fixed;

// SAFETY: 64 KiB slabs in 4 MiB segments, its own tag (no other tier in this binary) and
// pool; classes ascending multiples of 8; `class_of` gives a class at least `size` for
// every size up to 256; one direct entry per class.
unsafe impl Geometry for Fixed {
    const SLAB_SHIFT: usize = 16;
    const SEGMENT: usize = CHUNK_SIZE;
    const TAG: Tag = TAG;
    const CLASSES: &'static [u32] = &CLASSES;
    const EMPTY_CACHE: u32 = 1;
    const PIN_CURRENT: bool = true;
    const ADOPT_ON_FREE: bool = true;
    const REMOTE_BATCH_BYTES: usize = 0;
    type Pages = FixedRegion;
    fn class_of(size: usize) -> usize {
        CLASSES.iter().position(|&c| size <= c as usize).unwrap()
    }
    fn direct_range(class: usize) -> (usize, usize) {
        (class, class)
    }
    fn pool() -> &'static SlabPool<FixedRegion> {
        &POOL
    }
    fn counters() -> &'static TierCounters {
        &COUNTERS
    }
}

type FixedHeap = Heap<Fixed, 3, 3>;
hakmem_slab::thread_heap!(fn heap() -> FixedHeap, "hakmem_slab_fixed_region_test_heap", 3);

fn setup() {
    static INIT: Once = Once::new();
    // SAFETY: the arena is zero-filled, writable, and used by nothing but the region.
    INIT.call_once(|| unsafe { REGION.init(ARENA.0.get().cast(), 4 * CHUNK_SIZE) });
}

fn alloc(size: usize) -> *mut u8 {
    let class = Fixed::class_of(size);
    // SAFETY: `class < 3` is the direct index of `size`'s class.
    unsafe { heap().alloc(class, size) }
}

fn free(p: *mut u8) {
    // SAFETY: every pointer freed here is a live block of this tier, freed once.
    unsafe { engine::free::<Fixed, 3, 3>(p, heap) }
}

/// Everything the engine hands out or maps lies in the arena, and no OS memory is mapped
/// (this binary has no other tier: the OS page source's counters stay 0).
#[test]
fn the_engine_runs_on_a_fixed_region_without_mmap() {
    setup();
    let (lo, hi) = (
        ARENA.0.get() as usize,
        ARENA.0.get() as usize + 4 * CHUNK_SIZE,
    );
    let mut blocks = Vec::new();
    for round in 0..3 {
        for (i, &c) in CLASSES.iter().enumerate() {
            for n in 0..3000 {
                let size = c as usize - (n % 8);
                let p = alloc(size);
                assert!(!p.is_null(), "round {round}: alloc({size}) failed");
                assert!(
                    (lo..hi).contains(&(p as usize)),
                    "a block outside the region"
                );
                assert!(REGION.contains(p));
                assert_eq!(tag_of(p), TAG);
                // SAFETY: a live block of at least `size` bytes.
                unsafe { p.write_bytes(i as u8 + 1, size) };
                blocks.push((p, size, i as u8 + 1));
            }
        }
        let distinct: HashSet<usize> = blocks.iter().map(|b| b.0 as usize).collect();
        assert_eq!(distinct.len(), blocks.len(), "a block handed out twice");
        for &(p, size, v) in &blocks {
            // SAFETY: the block is live and was filled with `v`.
            let got = unsafe { std::slice::from_raw_parts(p, size) };
            assert!(got.iter().all(|&b| b == v), "a block was overwritten");
        }
        for (p, _, _) in blocks.drain(..) {
            free(p);
        }
    }
    assert_eq!(OS_SEGMENTS.get(), 0, "a segment was mapped from the OS");
    assert_eq!(OS_MAPPED.get(), 0);
    assert!(COUNTERS.carved.get() >= 9000);
}

/// Blocks freed by another thread come back to their owner through the remote lists; a trim
/// gives whole free segments back to the region, which hands them out again.
#[test]
fn remote_frees_and_trims_stay_in_the_region() {
    setup();
    let blocks: Vec<usize> = (0..4000).map(|_| alloc(64) as usize).collect();
    assert!(
        blocks
            .iter()
            .all(|&p| p != 0 && REGION.contains(p as *const u8))
    );
    std::thread::spawn(move || blocks.into_iter().for_each(|p| free(p as *mut u8)))
        .join()
        .unwrap();
    let again: Vec<usize> = (0..4000).map(|_| alloc(64) as usize).collect();
    assert!(
        again
            .iter()
            .all(|&p| p != 0 && REGION.contains(p as *const u8))
    );
    assert!(COUNTERS.remote.get() > 0, "no remote free was collected");
    again.into_iter().for_each(|p| free(p as *mut u8));
    hakmem_core::purge::trim();
    let p = alloc(256);
    assert!(!p.is_null() && REGION.contains(p));
    free(p);
    assert_eq!(OS_SEGMENTS.get(), 0);
}
