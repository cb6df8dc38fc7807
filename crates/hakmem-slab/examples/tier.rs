//! A slab tier of one's own: two size classes (32 and 128 bytes) in 64 KiB slabs over the OS's
//! pages, a thread heap in TLS, and a remote free from another thread.

use hakmem_core::map::{CHUNK_SIZE, Tag};
use hakmem_core::segment::OsPages;
use hakmem_core::stats::TierCounters;
use hakmem_slab::Geometry;
use hakmem_slab::heap::{self as engine, Heap};
use hakmem_slab::pool::SlabPool;

struct Pair;

static POOL: SlabPool = SlabPool::new();
static COUNTERS: TierCounters = TierCounters::new();

// SAFETY: 64 KiB slabs in 4 MiB segments; tag 1 is this program's only slab tier and `POOL`
// is its alone; classes ascending multiples of 8; `class_of` covers sizes up to 128; one
// direct entry per class.
unsafe impl Geometry for Pair {
    const SLAB_SHIFT: usize = 16;
    const SEGMENT: usize = CHUNK_SIZE;
    const TAG: Tag = 1;
    const CLASSES: &'static [u32] = &[32, 128];
    const EMPTY_CACHE: u32 = 2;
    const PIN_CURRENT: bool = true;
    const ADOPT_ON_FREE: bool = false;
    const REMOTE_BATCH_BYTES: usize = 0;
    type Pages = OsPages;
    fn class_of(size: usize) -> usize {
        (size > 32) as usize
    }
    fn direct_range(class: usize) -> (usize, usize) {
        (class, class)
    }
    fn pool() -> &'static SlabPool {
        &POOL
    }
    fn counters() -> &'static TierCounters {
        &COUNTERS
    }
}

type PairHeap = Heap<Pair, 2, 2>;
hakmem_slab::thread_heap!(fn heap() -> PairHeap, "hakmem_slab_example_pair_heap", 2);

fn alloc(size: usize) -> *mut u8 {
    // SAFETY: the direct index of `size` (≤ 128) is its class, below 2.
    unsafe { heap().alloc(Pair::class_of(size), size) }
}

fn main() {
    let small: Vec<usize> = (0..1000).map(|_| alloc(24) as usize).collect();
    let big = alloc(100);
    assert!(small.iter().all(|&p| p != 0) && !big.is_null());
    // Another thread frees the small blocks: remote frees, collected by this thread later.
    std::thread::spawn(move || {
        for p in small {
            // SAFETY: live blocks of this tier, each freed once.
            unsafe { engine::free::<Pair, 2, 2>(p as *mut u8, heap) };
        }
    })
    .join()
    .unwrap();
    // SAFETY: as above.
    unsafe { engine::free::<Pair, 2, 2>(big, heap) };
    // Allocating as many again reuses them once the slab's own list runs dry.
    let again: Vec<usize> = (0..3000).map(|_| alloc(24) as usize).collect();
    println!(
        "{} blocks; carved={} slabs={} remote={}",
        again.len(),
        COUNTERS.carved.get(),
        COUNTERS.slabs.get(),
        COUNTERS.remote.get()
    );
}
