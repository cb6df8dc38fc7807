//! hakmem-core on its own: page runs, a direct mapping grown without copying, and the owner map
//! telling which tier owns an address. `cargo run --release -p hakmem-core --example pages`

use hakmem_core::{large, map, run};

fn main() {
    let r = run::alloc(10_000, 4096);
    let mut big = large::alloc(3 << 20, 4096);
    // SAFETY: both blocks are live; `big` is resized in place or moved, never copied.
    unsafe {
        println!(
            "run of {} bytes at {r:p}, tag {}",
            run::usable_size(r),
            map::tag_of(r)
        );
        big.write(42);
        big = large::resize(big, 64 << 20);
        println!(
            "mapping of {} bytes at {big:p}, first byte {}",
            large::usable_size(big),
            *big
        );
        run::free(r);
        large::free(big);
    }
    println!(
        "stack address tag: {}",
        map::tag_of(&r as *const _ as *const u8)
    );
    use hakmem_core::stats::{OS_MAPPED, OS_PEAK, OS_SEGMENTS};
    println!(
        "os.mapped={} os.segments={} os.peak={}",
        OS_MAPPED.get(),
        OS_SEGMENTS.get(),
        OS_PEAK.get()
    );
}
