//! The BigCache in front of the large path: a program that frees and reallocates a big block
//! gets the same mapping back, with no `mmap` and no page faults on the second touch.
//! `cargo run --release -p hakmem-bigcache --example cache`

use hakmem_bigcache::{BigCache, BigCacheConfig};
use hakmem_core::large;
use hakmem_core::os::PAGE;
use hakmem_core::stats;
use std::time::Instant;

/// The process's cache: `const`-initialised, so it can sit in a `static` the allocator uses
/// before `main`; the configuration is adjusted once the environment has been read.
static CACHE: BigCache = BigCache::new(BigCacheConfig::DEFAULT);

fn minor_faults() -> i64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_minflt
    }
}

fn main() {
    CACHE.set_config(BigCacheConfig {
        budget_bytes: 64 << 20,
        ..BigCacheConfig::DEFAULT
    });
    const SIZE: usize = 24 << 20;
    for round in 0..4 {
        let (t, f) = (Instant::now(), minor_faults());
        let (p, fresh) = large::alloc_in(&CACHE, SIZE, PAGE);
        assert!(!p.is_null());
        // SAFETY: p is a live block of SIZE bytes, freed once below. (Fresh or not, it is
        // overwritten whole here; a calloc would have to zero a block that is not fresh.)
        unsafe {
            p.write_bytes(round as u8, SIZE);
            large::free_in(&CACHE, p);
        }
        println!(
            "round {round}: {} mapping at {p:p}, {} page faults, {:?}",
            if fresh { "fresh" } else { "cached" },
            minor_faults() - f,
            t.elapsed()
        );
    }
    let s = CACHE.stats();
    println!(
        "bigcache: hits={} misses={} puts={} evictions={} cached={} MiB; os.mapped={} MiB",
        s.hits,
        s.misses,
        s.puts,
        s.evictions,
        s.cached_bytes >> 20,
        stats::OS_MAPPED.get() >> 20
    );
    CACHE.release_all();
    println!(
        "after release_all: os.mapped={} MiB",
        stats::OS_MAPPED.get() >> 20
    );
}
