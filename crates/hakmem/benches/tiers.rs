//! Criterion micro-benchmarks per tier, calling the facade directly (no LD_PRELOAD):
//! malloc/free pairs per Tiny class, the page-run and direct-mapping paths, remote frees, and
//! realloc growth. `cargo bench -p hakmem`. Whole-program comparisons with other allocators
//! live in `cargo xtask bench`.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hakmem_tiny::class::TINY_CLASSES;
use std::hint::black_box;

fn tiny_pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("tiny/malloc+free");
    for &size in &TINY_CLASSES {
        let size = size as usize;
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| {
                let p = hakmem::malloc(black_box(size));
                // SAFETY: a fresh block, freed once.
                unsafe { hakmem::free(black_box(p)) };
            })
        });
    }
    g.finish();
}

fn tiny_batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("tiny/batch-100");
    for size in [16usize, 256, 1024] {
        g.throughput(Throughput::Elements(100));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let mut ps = [std::ptr::null_mut::<u8>(); 100];
            b.iter(|| {
                for p in ps.iter_mut() {
                    *p = hakmem::malloc(size);
                }
                for &p in ps.iter().rev() {
                    // SAFETY: each block was just allocated, freed once.
                    unsafe { hakmem::free(black_box(p)) };
                }
            })
        });
    }
    g.finish();
}

fn bigger_tiers(c: &mut Criterion) {
    let mut g = c.benchmark_group("tier/malloc+free");
    for (name, size) in [
        ("run-4K", 4096usize),
        ("run-64K", 65536),
        ("run-1M", 1 << 20),
        ("large-2M", 2 << 20),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let p = hakmem::malloc(black_box(size));
                // SAFETY: a fresh block, freed once.
                unsafe { hakmem::free(black_box(p)) };
            })
        });
    }
    g.finish();
}

fn remote_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("tiny/remote-free");
    const N: usize = 10_000;
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("64B", |b| {
        b.iter_batched(
            || {
                (0..N)
                    .map(|_| hakmem::malloc(64) as usize)
                    .collect::<Vec<_>>()
            },
            |blocks| {
                std::thread::spawn(move || {
                    for p in blocks {
                        // SAFETY: blocks of another thread, each freed once, here.
                        unsafe { hakmem::free(p as *mut u8) };
                    }
                })
                .join()
                .unwrap()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn realloc_growth(c: &mut Criterion) {
    c.bench_function("realloc/16B-to-1MiB-x1.5", |b| {
        b.iter(|| {
            let mut size = 16usize;
            let mut p = hakmem::malloc(size);
            while size < 1 << 20 {
                size = size * 3 / 2;
                // SAFETY: `p` is live; the old block is dead after a non-null return.
                p = unsafe { hakmem::realloc(p, size) };
                assert!(!p.is_null());
            }
            // SAFETY: live block, freed once.
            unsafe { hakmem::free(p) };
        })
    });
}

criterion_group!(
    benches,
    tiny_pairs,
    tiny_batches,
    bigger_tiers,
    remote_free,
    realloc_growth
);
criterion_main!(benches);
