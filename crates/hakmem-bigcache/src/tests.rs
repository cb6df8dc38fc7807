//! Unit tests of the cache with real mappings. Every test holds [`SERIAL`]: they check the
//! process-wide `OS_MAPPED` counter and owner-map tags, which other tests' mappings would move.

use super::*;
use hakmem_core::large::{self, MappingCache};
use hakmem_core::map::{MAP, TAG_LARGE};
use hakmem_core::os::PAGE;
use hakmem_core::segment::{OS_PAGES, PageSource};
use hakmem_core::stats::OS_MAPPED;
use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::vec::Vec;

const C: usize = CHUNK_SIZE;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(budget_bytes: usize, max_age_ms: u64) -> BigCacheConfig {
    BigCacheConfig {
        budget_bytes,
        max_age_ms,
        ..BigCacheConfig::DEFAULT
    }
}

/// A fresh mapping as the large path makes them.
fn map(len: usize, align: usize) -> *mut u8 {
    let p = OS_PAGES.reserve(len, align, TAG_LARGE, false);
    assert!(!p.is_null());
    p
}

fn unmap(p: *mut u8, len: usize) {
    // SAFETY: `p`/`len` is a whole reservation of `map` that the test owns and no longer uses.
    unsafe { OS_PAGES.release(p, len) };
}

/// [`BigCache::put_at`] of a mapping the test gives away.
fn put(cache: &BigCache, base: *mut u8, len: usize, now_ms: u64) -> bool {
    // SAFETY: every mapping a test offers is a whole reservation of `map` (or a chunk-aligned
    // tail of one) that it no longer uses, or a range the cache must refuse without touching.
    unsafe { cache.put_at(base, len, now_ms) }
}

fn tagged(p: *mut u8) -> bool {
    MAP.tag(p as usize) == TAG_LARGE
}

#[test]
fn defaults() {
    let d = BigCacheConfig::default();
    assert_eq!(d.min_len, C, "2 MiB rounded up to whole chunks");
    assert_eq!(d.budget_bytes, 256 << 20);
    assert_eq!(d.max_age_ms, 2000);
    assert_eq!(class_of(C), Some(0));
    assert_eq!(class_of(MAX_CHUNKS * C), Some(MAX_CHUNKS - 1));
    assert_eq!(class_of((MAX_CHUNKS + 1) * C), None);
    assert_eq!(class_of(C + PAGE), None);
    assert_eq!(class_of(0), None);
    static S: BigCache = BigCache::new(BigCacheConfig::DEFAULT);
    assert_eq!(S.config(), d);
    assert_eq!(S.stats(), BigCacheStats::default());
}

#[test]
fn hit_and_miss() {
    let _g = serial();
    let cache = BigCache::new(config(64 << 20, 2000));
    let m = map(2 * C, C);
    // SAFETY: m is ours; its first page is mapped.
    unsafe { m.write(0x5a) };
    assert!(put(&cache, m, 2 * C, 0));
    assert_eq!(cache.stats().cached_bytes, 2 * C);
    assert!(tagged(m), "a cached mapping stays tagged large");
    assert_eq!(cache.take_at(C, C, 1), None, "shorter: miss");
    assert_eq!(cache.take_at(3 * C, C, 1), None, "longer: miss");
    assert_eq!(cache.take_at(2 * C, C, 1), Some(m), "same length: hit");
    // SAFETY: m is ours again; its pages were kept, contents too.
    assert_eq!(unsafe { m.read() }, 0x5a);
    assert_eq!(cache.take_at(2 * C, C, 1), None, "handed out once");
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.puts, s.evictions), (1, 3, 1, 0));
    assert_eq!(s.cached_bytes, 0);
    unmap(m, 2 * C);
}

#[test]
fn take_honours_alignment() {
    let _g = serial();
    const A: usize = 64 << 20;
    let cache = BigCache::new(config(256 << 20, 2000));
    // A mapping whose base is not 64 MiB-aligned (15 in 16 are).
    let mut spare = Vec::new();
    let odd = loop {
        let p = map(C, C);
        if !(p as usize).is_multiple_of(A) {
            break p;
        }
        spare.push(p);
    };
    assert!(put(&cache, odd, C, 0));
    assert_eq!(cache.take_at(C, A, 0), None, "misaligned for the request");
    let aligned = map(C, A);
    assert!(put(&cache, aligned, C, 1));
    assert_eq!(cache.take_at(C, A, 2), Some(aligned));
    assert_eq!(cache.take_at(C, C, 2), Some(odd));
    assert_eq!(cache.take_at(C, 3 * C, 2), None, "not a power of two");
    for p in spare.into_iter().chain([odd, aligned]) {
        unmap(p, C);
    }
}

#[test]
fn newest_entry_is_taken_first() {
    let _g = serial();
    let cache = BigCache::new(config(64 << 20, 2000));
    let (a, b) = (map(C, C), map(C, C));
    assert!(put(&cache, a, C, 0));
    assert!(put(&cache, b, C, 1));
    assert_eq!(cache.take_at(C, C, 2), Some(b));
    assert_eq!(cache.take_at(C, C, 2), Some(a));
    unmap(a, C);
    unmap(b, C);
}

#[test]
fn refuses_what_it_must_not_keep() {
    let _g = serial();
    let cache = BigCache::new(BigCacheConfig {
        min_len: 2 * C,
        budget_bytes: 8 * C,
        max_age_ms: 2000,
    });
    let small = map(C, C);
    assert!(!put(&cache, small, C, 0), "below min_len");
    let big = map(12 * C, C);
    assert!(!put(&cache, big, 12 * C, 0), "larger than the whole budget");
    assert!(!put(&cache, big, 12 * C - PAGE, 0), "not whole chunks");
    // SAFETY: the offset stays inside `big`.
    let inner = unsafe { big.add(PAGE) };
    assert!(!put(&cache, inner, 2 * C, 0), "base not chunk-aligned");
    assert!(!put(&cache, core::ptr::null_mut(), 2 * C, 0), "null");
    let s = cache.stats();
    assert_eq!((s.puts, s.evictions, s.cached_bytes), (0, 0, 0));
    assert!(
        tagged(small) && tagged(big),
        "refused mappings are the caller's"
    );
    unmap(small, C);
    unmap(big, 12 * C);

    // Longer than MAX_CHUNKS chunks: never cached, whatever the budget.
    let cache = BigCache::new(config(usize::MAX, 2000));
    let huge_len = (MAX_CHUNKS + 1) * C;
    let huge = map(huge_len, C);
    assert!(!put(&cache, huge, huge_len, 0));
    assert_eq!(cache.take_at(huge_len, C, 0), None);
    unmap(huge, huge_len);
}

#[test]
fn budget_evicts_least_recently_put() {
    let _g = serial();
    let cache = BigCache::new(config(4 * C, 1 << 40));
    let (a, b, c) = (map(C, C), map(C, C), map(2 * C, C));
    assert!(put(&cache, a, C, 0));
    assert!(put(&cache, b, C, 1));
    assert!(put(&cache, c, 2 * C, 2));
    assert_eq!(cache.stats().cached_bytes, 4 * C, "exactly the budget");
    let (d, e) = (map(C, C), map(2 * C, C));
    let mapped = OS_MAPPED.get();

    // One more chunk: the oldest entry (a) goes, the others stay.
    assert!(put(&cache, d, C, 3));
    assert!(!tagged(a), "a was released to the OS");
    assert!(tagged(b) && tagged(c) && tagged(d));
    assert_eq!(OS_MAPPED.get(), mapped - C as u64, "a was unmapped");
    assert_eq!(cache.stats().evictions, 1);

    // Two chunks: b then c (the oldest) go, d stays even though c would have sufficed.
    assert!(put(&cache, e, 2 * C, 4));
    assert!(!tagged(b) && !tagged(c));
    assert!(tagged(d) && tagged(e));
    let s = cache.stats();
    assert_eq!((s.puts, s.evictions, s.cached_bytes), (5, 3, 3 * C));
    assert_eq!(
        OS_MAPPED.get(),
        mapped - 4 * C as u64,
        "a, b and c were unmapped"
    );

    assert_eq!(cache.take_at(C, C, 5), Some(d));
    assert_eq!(cache.take_at(2 * C, C, 5), Some(e));
    assert_eq!(cache.entries(), 0);
    unmap(d, C);
    unmap(e, 2 * C);
}

#[test]
fn full_class_evicts_its_oldest() {
    let _g = serial();
    let cache = BigCache::new(config(1 << 40, 1 << 40));
    let maps: Vec<*mut u8> = (0..=SLOTS_PER_CLASS).map(|_| map(C, C)).collect();
    for (t, &m) in maps.iter().enumerate() {
        assert!(put(&cache, m, C, t as u64));
    }
    assert_eq!(cache.entries(), SLOTS_PER_CLASS);
    assert!(!tagged(maps[0]), "the oldest of the class was released");
    assert_eq!(cache.stats().evictions, 1);
    for &m in maps[1..].iter().rev() {
        assert_eq!(cache.take_at(C, C, 100), Some(m));
        unmap(m, C);
    }
}

#[test]
fn old_entries_are_released() {
    let _g = serial();
    let cache = BigCache::new(config(64 << 20, 1000));
    let (a, b) = (map(C, C), map(C, C));
    assert!(put(&cache, a, C, 0));
    assert!(put(&cache, b, C, 800));
    cache.trim(1500);
    assert!(!tagged(a), "unused for 1500 ms > 1000: released");
    assert!(tagged(b), "unused for 700 ms: kept");
    assert_eq!(cache.entries(), 1);

    // A put runs the trim when its period (max_age / 4) has passed: b (1200 ms) goes.
    let c = map(2 * C, C);
    assert!(put(&cache, c, 2 * C, 2000));
    assert!(!tagged(b));
    assert_eq!(cache.take_at(C, C, 2000), None);
    assert_eq!(cache.take_at(2 * C, C, 2100), Some(c));

    // So does a take, after looking (a miss here).
    let d = map(C, C);
    assert!(put(&cache, d, C, 3000));
    assert_eq!(cache.take_at(2 * C, C, 5000), None);
    assert!(!tagged(d), "released by the take's trim");
    let s = cache.stats();
    assert_eq!((s.puts, s.hits, s.evictions, s.cached_bytes), (4, 1, 3, 0));
    assert_eq!(cache.entries(), 0);
    unmap(c, 2 * C);
}

#[test]
fn old_entry_wanted_now_is_reused() {
    let _g = serial();
    let cache = BigCache::new(config(64 << 20, 1000));
    let a = map(C, C);
    assert!(put(&cache, a, C, 0));
    assert_eq!(
        cache.take_at(C, C, 10_000),
        Some(a),
        "taken before the trim runs"
    );
    unmap(a, C);
}

#[test]
fn release_all_and_lower_budget_unmap() {
    let _g = serial();
    let before = OS_MAPPED.get();
    let cache = BigCache::new(config(64 << 20, 2000));
    let lens = [C, 2 * C, 3 * C, C];
    let maps: Vec<*mut u8> = lens.iter().map(|&l| map(l, C)).collect();
    let total: usize = lens.iter().sum();
    assert_eq!(OS_MAPPED.get(), before + total as u64);
    for (t, (&m, &l)) in maps.iter().zip(&lens).enumerate() {
        assert!(put(&cache, m, l, t as u64));
    }
    assert_eq!(
        OS_MAPPED.get(),
        before + total as u64,
        "cached, still mapped"
    );

    // Lowering the budget to 4 chunks evicts the oldest (C, 2C) at once.
    cache.set_config(config(4 * C, 2000));
    assert_eq!(cache.stats().cached_bytes, 4 * C);
    assert_eq!(OS_MAPPED.get(), before + 4 * C as u64);
    assert!(!tagged(maps[0]) && !tagged(maps[1]) && tagged(maps[2]) && tagged(maps[3]));

    cache.release_all();
    assert_eq!(OS_MAPPED.get(), before, "everything unmapped");
    assert!(maps.iter().all(|&m| !tagged(m)));
    let s = cache.stats();
    assert_eq!((s.evictions, s.cached_bytes), (4, 0));
    assert_eq!(cache.entries(), 0);
}

#[test]
fn large_path_takes_from_the_cache() {
    let _g = serial();
    let cache = BigCache::new(config(64 << 20, 2000));
    let base = map(2 * C, C);
    assert!(put(&cache, base, 2 * C, hakmem_core::os::now_ms()));
    // 5 MiB plus the header page round up to exactly two chunks: a hit.
    let (p, fresh) = large::alloc_in(&cache, 5 << 20, PAGE);
    assert!(!fresh, "the block came from the cache");
    assert_eq!(p as usize, base as usize + PAGE);
    let (q, fresh) = large::alloc_in(&cache, 5 << 20, PAGE);
    assert!(fresh, "the cache had only one");
    assert_eq!(cache.stats().hits, 1);
    // SAFETY: both are live blocks of the large path, freed once.
    unsafe {
        assert!(large::usable_size(p) >= 5 << 20);
        large::free(p);
        large::free(q);
    }
    assert!(!tagged(base));
}

/// A longer cached mapping is split (the tail goes back to the cache); a shorter one is grown
/// with `mremap`, keeping its pages (the bytes the previous block wrote are still there).
#[test]
fn large_path_splits_longer_and_grows_shorter_mappings() {
    let _g = serial();
    let cache = BigCache::new(config(256 << 20, 2000));
    let now = hakmem_core::os::now_ms();
    let long = map(6 * C, C);
    assert!(put(&cache, long, 6 * C, now));
    // Two chunks wanted, six cached: split, four go back.
    let (p, fresh) = large::alloc_in(&cache, 5 << 20, PAGE);
    assert!(!fresh);
    assert_eq!(p as usize, long as usize + PAGE);
    assert_eq!(cache.stats().cached_bytes, 4 * C, "the tail is cached");
    // SAFETY: `p` is a live block of two chunks less the header page.
    unsafe { assert_eq!(large::usable_size(p), 2 * C - PAGE) };
    let (tail, _) = cache
        .take_fit_at(4 * C, 4 * C, C, now)
        .expect("the tail is cached");
    assert_eq!(tail as usize, long as usize + 2 * C);
    // A one-chunk mapping with a mark in it, then a three-chunk request: grown, pages kept.
    let short = map(C, C);
    // SAFETY: `short` is a fresh mapping of one chunk the test owns.
    unsafe { short.add(PAGE + 100).write(0x5a) };
    assert!(put(&cache, short, C, now));
    let (q, fresh) = large::alloc_in(&cache, 3 * C - 2 * PAGE, PAGE);
    assert!(!fresh, "grown from a cached mapping, not fresh");
    // SAFETY: `q` is a live block of three chunks less the header page.
    unsafe {
        assert_eq!(*q.add(100), 0x5a, "the cached pages moved with the mapping");
        assert!(large::usable_size(q) >= 3 * C - 2 * PAGE);
        q.add(3 * C - 2 * PAGE - 1).write(1);
        large::free(p);
        large::free(q);
    }
    unmap(tail, 4 * C);
    assert!(!tagged(long) && !tagged(short));
}

/// Threads take, scribble on, and put back real mappings of two lengths; a mapping handed to
/// two threads at once is caught both by a registry of owned bases and by the scribbles.
#[test]
fn stress_never_handed_out_twice() {
    let _g = serial();
    static CACHE: BigCache = BigCache::new(BigCacheConfig {
        min_len: CHUNK_SIZE,
        budget_bytes: 6 * CHUNK_SIZE,
        max_age_ms: 2000,
    });
    let before = OS_MAPPED.get();
    let owned: Mutex<HashSet<usize>> = Mutex::new(HashSet::new());
    const THREADS: usize = 8;
    const ROUNDS: usize = 3000;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let owned = &owned;
            s.spawn(move || {
                let id = t as u64 + 1;
                let mut rng = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                for _ in 0..ROUNDS {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let len = if rng & 1 == 0 { C } else { 2 * C };
                    let p = CACHE
                        .take(len, len, C)
                        .map(|(p, _)| p)
                        .unwrap_or_else(|| map(len, C));
                    assert!(
                        owned.lock().unwrap().insert(p as usize),
                        "{p:p} handed out twice"
                    );
                    let words = [0, len / 2, len - 8];
                    // SAFETY: p is a whole mapping of `len` bytes that this thread owns.
                    unsafe {
                        for &o in &words {
                            p.add(o).cast::<u64>().write_volatile(id);
                        }
                        for _ in 0..(rng >> 60) {
                            std::thread::yield_now();
                        }
                        for &o in &words {
                            assert_eq!(p.add(o).cast::<u64>().read_volatile(), id);
                        }
                    }
                    assert!(owned.lock().unwrap().remove(&(p as usize)));
                    // SAFETY: `p` is a whole mapping this thread took or made and no longer uses.
                    if !unsafe { CACHE.put(p, len) } {
                        unmap(p, len);
                    }
                }
            });
        }
    });
    let s = CACHE.stats();
    std::println!("{s:?}");
    assert!(s.hits > 0, "the cache served something: {s:?}");
    assert!(s.cached_bytes <= 6 * C);
    CACHE.release_all();
    let s = CACHE.stats();
    assert_eq!(s.cached_bytes, 0);
    assert_eq!(
        s.puts,
        s.hits + s.evictions,
        "every accepted mapping was taken or released exactly once: {s:?}"
    );
    assert_eq!(OS_MAPPED.get(), before, "nothing leaked");
}
