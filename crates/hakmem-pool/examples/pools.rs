//! The L2 and L2.5 pools on their own: blocks above 1 KiB up to 1 MiB from this thread's slabs,
//! their exact class sizes (four per doubling: waste below 25%), and frees from another thread.
//! `cargo run --release -p hakmem-pool --example pools`

use hakmem_core::map::tag_of;
use hakmem_pool::{L2_TAG as TAG_L2, L25_TAG as TAG_L25};

fn main() {
    let sizes = [
        1025,
        3000,
        20_000,
        32 << 10,
        40_000,
        100_000,
        700_000,
        1 << 20,
    ];
    let mut blocks = Vec::new();
    for &n in &sizes {
        let p = hakmem_pool::alloc(n);
        assert!(!p.is_null());
        // SAFETY: each arm runs for a block of its own pool (the owner map's tag says which).
        let (pool, usable) = match tag_of(p) {
            TAG_L2 => ("L2", unsafe { hakmem_pool::usable_size_l2(p) }),
            TAG_L25 => ("L2.5", unsafe { hakmem_pool::usable_size_l25(p) }),
            t => panic!("{n} bytes came from tier {t}"),
        };
        assert!(usable >= n && (usable - n) * 4 <= n);
        // SAFETY: `p` is a live block of `usable` bytes.
        unsafe { p.write_bytes(0xA5, usable) };
        println!("{n:>8} B -> {pool:<4} class {usable:>8} B at {p:?}");
        blocks.push((p as usize, pool));
    }
    // Another thread frees them all: each free is one CAS onto the block's slab.
    std::thread::spawn(move || {
        for (p, pool) in blocks {
            // SAFETY: live blocks of the main thread's heaps, freed once.
            unsafe {
                match pool {
                    "L2" => hakmem_pool::free_l2(p as *mut u8),
                    _ => hakmem_pool::free_l25(p as *mut u8),
                }
            }
        }
    })
    .join()
    .unwrap();
    // The owner collects those remote frees when its slabs of those classes run dry.
    let again: Vec<usize> = (0..64).map(|_| hakmem_pool::alloc(3000) as usize).collect();
    for p in again {
        // SAFETY: live L2 blocks of this thread, freed once.
        unsafe { hakmem_pool::free_l2(p as *mut u8) };
    }
    let c = &hakmem_pool::L2_COUNTERS;
    println!(
        "L2: carved={} slabs={} remote={}",
        c.carved.get(),
        c.slabs.get(),
        c.remote.get()
    );
}
