//! `hakmem::HakMem` as the `#[global_allocator]` of this test binary: raw
//! `std::alloc` calls over every power-of-two alignment up to 1 MiB and
//! sizes up to 64 MiB, zeroed memory, realloc growth and shrink, and
//! ordinary std collections created and dropped on different threads. All
//! pointers must be reported by `hakmem::owns`, and `hakmem::stats` must
//! count the allocations.

mod common;

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc, realloc};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// Power-of-two alignments 1..=1 MiB.
fn alignments() -> impl Iterator<Item = usize> {
    (0..=20).map(|s| 1usize << s)
}

const SIZES: &[usize] = &[
    1,
    7,
    8,
    15,
    16,
    24,
    100,
    1000,
    1024,
    1025,
    4096,
    4097,
    32 * KIB,
    65536 + 8,
    MIB - 1,
    MIB,
    MIB + 1,
    2 * MIB,
    4 * MIB + 3,
    64 * MIB,
];

/// Byte `i` of the pattern for `seed` (independent of the block length, so
/// prefixes can be checked after realloc).
#[inline]
fn pat(seed: usize, i: usize) -> u8 {
    let x = (seed >> 4) ^ i ^ (i >> 8) ^ (i >> 16);
    (x as u8) ^ 0x5a
}

/// Byte ranges of a block that get a pattern: everything up to 8 MiB, the
/// first and last 256 KiB beyond that.
fn ranges(n: usize) -> [std::ops::Range<usize>; 2] {
    if n <= 8 * MIB {
        [0..n, n..n]
    } else {
        [0..256 * KIB, n - 256 * KIB..n]
    }
}

unsafe fn fill(p: *mut u8, n: usize, seed: usize) {
    for r in ranges(n) {
        let s = unsafe { std::slice::from_raw_parts_mut(p.add(r.start), r.len()) };
        for (k, b) in s.iter_mut().enumerate() {
            *b = pat(seed, r.start + k);
        }
    }
}

/// Index of the first byte in `p[..n]` that lost its pattern.
unsafe fn check(p: *const u8, n: usize, seed: usize) -> Option<usize> {
    for r in ranges(n) {
        let s = unsafe { std::slice::from_raw_parts(p.add(r.start), r.len()) };
        if let Some(k) = s
            .iter()
            .enumerate()
            .position(|(k, b)| *b != pat(seed, r.start + k))
        {
            return Some(r.start + k);
        }
    }
    None
}

fn assert_owned(p: *const u8, n: usize, what: &str) {
    assert!(hakmem::owns(p), "hakmem::owns({p:?}) false for {what}");
    if n > 0 {
        let last = p.wrapping_add(n - 1);
        assert!(
            hakmem::owns(last),
            "hakmem::owns(last byte {last:?}) false for {what}"
        );
    }
}

#[test]
fn every_alignment_and_size() {
    for align in alignments() {
        // All sizes of one alignment live at once, so overlaps show.
        let mut live = Vec::new();
        for &n in SIZES {
            let layout = Layout::from_size_align(n, align).unwrap();
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null(), "alloc({layout:?}) returned null");
            assert_eq!(
                p as usize % align,
                0,
                "alloc({layout:?}) = {p:?} misaligned"
            );
            assert_owned(p, n, &format!("alloc({layout:?})"));
            unsafe { fill(p, n, p as usize) };
            live.push((p, layout));
        }
        for &(p, layout) in &live {
            let bad = unsafe { check(p, layout.size(), p as usize) };
            assert_eq!(
                bad, None,
                "block {p:?} {layout:?} corrupted at byte {bad:?} (overlap?)"
            );
        }
        // Free in an interleaved order.
        for (i, &(p, layout)) in live.iter().enumerate() {
            if i % 2 == 0 {
                unsafe { dealloc(p, layout) };
            }
        }
        for (i, &(p, layout)) in live.iter().enumerate() {
            if i % 2 == 1 {
                unsafe { dealloc(p, layout) };
            }
        }
    }
}

#[test]
fn alloc_zeroed_is_zero_even_after_reuse() {
    let sizes = [
        1,
        16,
        48,
        100,
        1024,
        1025,
        4096,
        50_000,
        MIB,
        MIB + 1,
        3 * MIB,
    ];
    for align in [1, 8, 16, 64, 4096, MIB] {
        for &n in &sizes {
            let layout = Layout::from_size_align(n, align).unwrap();
            let k = if n <= 65536 { 16 } else { 3 };
            for round in 0..8 {
                let mut ps = Vec::new();
                for _ in 0..k {
                    let p = unsafe { alloc(layout) };
                    assert!(!p.is_null());
                    unsafe { std::ptr::write_bytes(p, 0xAA, n) };
                    ps.push(p);
                }
                for p in ps.drain(..) {
                    unsafe { dealloc(p, layout) };
                }
                for _ in 0..k {
                    let p = unsafe { alloc_zeroed(layout) };
                    assert!(!p.is_null(), "alloc_zeroed({layout:?}) null");
                    assert_eq!(p as usize % align, 0, "alloc_zeroed({layout:?}) misaligned");
                    assert_owned(p, n, "alloc_zeroed");
                    let s = unsafe { std::slice::from_raw_parts(p, n) };
                    let nz = s.iter().position(|&b| b != 0);
                    assert_eq!(
                        nz, None,
                        "alloc_zeroed({layout:?}) round {round}: byte {nz:?} not zero"
                    );
                    ps.push(p);
                }
                for p in ps.drain(..) {
                    unsafe {
                        std::ptr::write_bytes(p, 0xAA, n);
                        dealloc(p, layout);
                    }
                }
            }
        }
    }
    // A big zeroed block, checked completely.
    let layout = Layout::from_size_align(64 * MIB, 4096).unwrap();
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null());
    let s = unsafe { std::slice::from_raw_parts(p, layout.size()) };
    assert!(s.iter().all(|&b| b == 0), "64 MiB alloc_zeroed not zero");
    unsafe { dealloc(p, layout) };
}

/// realloc keeps the contents (min of old and new size) and the layout's
/// alignment, growing 16 B -> 2 MiB and shrinking back, step by step and in
/// single jumps.
#[test]
fn realloc_keeps_contents_and_alignment() {
    for align in [1, 8, 16, 32, 64, 256, 4096, 65536, MIB] {
        let seed = 0xC0FFEE + align;
        // Step by step.
        let mut layout = Layout::from_size_align(16, align).unwrap();
        let mut p = unsafe { alloc(layout) };
        assert!(!p.is_null());
        unsafe { fill(p, 16, seed) };
        let mut sizes: Vec<usize> = (4..=21).map(|s| 1usize << s).collect(); // 16 B .. 2 MiB
        let down: Vec<usize> = sizes.iter().rev().skip(1).copied().collect();
        sizes.extend(down);
        for &n in &sizes[1..] {
            let old = layout.size();
            let q = unsafe { realloc(p, layout, n) };
            assert!(!q.is_null(), "realloc {old} -> {n} (align {align}) null");
            assert_eq!(
                q as usize % align,
                0,
                "realloc {old} -> {n} lost alignment {align}: {q:?}"
            );
            let keep = old.min(n);
            let bad = unsafe { check(q, keep, seed) };
            assert_eq!(
                bad, None,
                "realloc {old} -> {n} (align {align}) lost contents at {bad:?}"
            );
            assert_owned(q, n, "realloc result");
            p = q;
            layout = Layout::from_size_align(n, align).unwrap();
            unsafe { fill(p, n, seed) };
        }
        // Jumps: 16 -> 2 MiB -> 16 -> 64 MiB -> 1.
        for n in [2 * MIB, 16, 64 * MIB, 1] {
            let old = layout.size();
            let q = unsafe { realloc(p, layout, n) };
            assert!(!q.is_null(), "realloc {old} -> {n} null");
            assert_eq!(
                q as usize % align,
                0,
                "realloc {old} -> {n} lost alignment {align}"
            );
            let bad = unsafe { check(q, old.min(n), seed) };
            assert_eq!(bad, None, "realloc {old} -> {n} lost contents at {bad:?}");
            p = q;
            layout = Layout::from_size_align(n, align).unwrap();
            unsafe { fill(p, n, seed) };
        }
        unsafe { dealloc(p, layout) };
    }
}

/// Raw blocks allocated on one thread and freed on another, many times.
#[test]
fn cross_thread_dealloc() {
    let (tx, rx) = mpsc::sync_channel::<Vec<(usize, Layout)>>(4);
    let consumer = thread::spawn(move || {
        let mut freed = 0usize;
        for batch in rx {
            for (addr, layout) in batch {
                let p = addr as *mut u8;
                let bad = unsafe { check(p, layout.size(), addr) };
                assert_eq!(
                    bad, None,
                    "block {p:?} {layout:?} corrupted at {bad:?} before remote free"
                );
                unsafe { dealloc(p, layout) };
                freed += 1;
            }
        }
        freed
    });
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut sent = 0usize;
    for _round in 0..60 {
        let mut batch = Vec::with_capacity(1000);
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = match x % 100 {
                0 => 2 * MIB + (x >> 40) as usize % MIB,
                1..=10 => 1025 + (x >> 20) as usize % (64 * KIB),
                _ => 1 + (x >> 20) as usize % 1024,
            };
            let align = 1usize << ((x >> 50) % 8);
            let layout = Layout::from_size_align(n, align).unwrap();
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null());
            unsafe { fill(p, n, p as usize) };
            batch.push((p as usize, layout));
        }
        sent += batch.len();
        tx.send(batch).unwrap();
    }
    drop(tx);
    assert_eq!(consumer.join().unwrap(), sent);
}

/// Vec / String / HashMap / BTreeMap / Box made on producer threads and
/// dropped on consumer threads (after checking their contents).
#[test]
fn std_collections_across_threads() {
    enum Item {
        Bytes(Vec<u8>, u8),
        Text(String, usize),
        Map(HashMap<u64, String>, u64),
        Tree(BTreeMap<u32, Vec<u32>>, u32),
        Boxed(Box<[u64; 32]>, u64),
    }
    let (tx, rx) = mpsc::sync_channel::<Item>(256);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            thread::spawn(move || {
                let mut n = 0usize;
                loop {
                    let item = match rx.lock().unwrap().recv() {
                        Ok(i) => i,
                        Err(_) => break,
                    };
                    match item {
                        Item::Bytes(v, b) => {
                            assert!(v.iter().all(|&x| x == b), "Vec<u8> corrupted")
                        }
                        Item::Text(s, k) => assert_eq!(s, format!("item-{k}-").repeat(k % 40 + 1)),
                        Item::Map(m, k) => {
                            assert_eq!(m.len(), (k % 100) as usize + 1);
                            for (key, v) in &m {
                                assert_eq!(*v, key.to_string(), "HashMap value corrupted");
                            }
                        }
                        Item::Tree(t, k) => {
                            assert_eq!(t.len(), (k % 50) as usize + 1);
                            for (key, v) in &t {
                                assert_eq!(v.len(), (*key % 17) as usize);
                                assert!(v.iter().all(|&x| x == *key), "BTreeMap value corrupted");
                            }
                        }
                        Item::Boxed(b, k) => assert!(b.iter().all(|&x| x == k), "Box corrupted"),
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let producers: Vec<_> = (0..4u64)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for k in 0..2500u64 {
                    let i = t * 10_000 + k;
                    let item = match i % 5 {
                        0 => {
                            let b = i as u8;
                            let len = if i % 97 == 0 {
                                300_000
                            } else {
                                (i % 3000) as usize
                            };
                            Item::Bytes(vec![b; len], b)
                        }
                        1 => {
                            Item::Text(format!("item-{i}-").repeat(i as usize % 40 + 1), i as usize)
                        }
                        2 => Item::Map(
                            (0..=i % 100)
                                .map(|x| (x * i, (x * i).to_string()))
                                .collect(),
                            i,
                        ),
                        3 => {
                            let k = i as u32;
                            let t = (0..=k % 50)
                                .map(|x| (x * 3 + k, vec![x * 3 + k; ((x * 3 + k) % 17) as usize]));
                            Item::Tree(t.collect(), k)
                        }
                        _ => Item::Boxed(Box::new([i; 32]), i),
                    };
                    tx.send(item).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.join().unwrap();
    }
    let total: usize = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(total, 4 * 2500);
}

/// Many short threads leave their allocations to the main thread (thread
/// exit with cached blocks, thread-local destructors).
#[test]
fn short_threads_leave_blocks_behind() {
    let mut kept = Vec::new();
    for round in 0..50 {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                thread::spawn(move || {
                    let mut v: Vec<Vec<u64>> = Vec::new();
                    for i in 0..200u64 {
                        let tmp = vec![i; (i % 50) as usize]; // freed on this thread
                        v.push(vec![i ^ t; (i % 300) as usize + 1]);
                        drop(tmp);
                    }
                    if t == 0 && round % 10 == 0 {
                        v.push(vec![7; 3 * MIB / 8]);
                    }
                    (t, v)
                })
            })
            .collect();
        for h in hs {
            kept.push(h.join().unwrap());
        }
        if kept.len() > 40 {
            kept.drain(..20);
        }
    }
    for (t, v) in &kept {
        for (i, inner) in v.iter().enumerate().take(200) {
            assert!(
                inner.iter().all(|&x| x == i as u64 ^ t),
                "block left by a thread corrupted"
            );
        }
    }
}

static STATIC_BYTES: [u8; 64] = [1; 64];

#[test]
fn owns_std_allocations_and_not_others() {
    let b = Box::new(42u64);
    assert!(
        hakmem::owns(&*b as *const u64 as *const u8),
        "Box not owned"
    );
    let v: Vec<u8> = vec![1; 5000];
    assert_owned(v.as_ptr(), v.len(), "Vec<u8>");
    let s = "x".repeat(3 * MIB);
    assert_owned(s.as_ptr(), s.len(), "String 3 MiB");
    let mut m = HashMap::new();
    m.insert(1u32, String::from("one"));
    assert!(hakmem::owns(m[&1].as_ptr()), "HashMap value not owned");
    let big: Vec<u64> = Vec::with_capacity(64 * MIB / 8);
    assert!(
        hakmem::owns(big.as_ptr() as *const u8),
        "64 MiB Vec not owned"
    );
    let on_stack = 5u64;
    assert!(
        !hakmem::owns(&on_stack as *const u64 as *const u8),
        "owns(stack address)"
    );
    assert!(!hakmem::owns(STATIC_BYTES.as_ptr()), "owns(static)");
    assert!(
        !hakmem::owns("a string literal".as_ptr()),
        "owns(string literal)"
    );
    assert!(!hakmem::owns(std::ptr::null()), "owns(null)");
    let f: fn() = owns_std_allocations_and_not_others;
    assert!(!hakmem::owns(f as *const u8), "owns(code address)");
}

/// Runs [`stats_in_fresh_process`] alone in a child process of this test
/// binary: with other tests freeing memory concurrently (and heaps of exited
/// threads possibly being reused), the counters' growth is only predictable
/// in a fresh process.
#[test]
fn stats_count_allocations() {
    common::run_alone("stats_in_fresh_process");
}

#[test]
#[ignore = "run in a fresh process by stats_count_allocations"]
fn stats_in_fresh_process() {
    // Tiny: 20,000 live 32-byte blocks.
    let s0 = hakmem::stats();
    let tiny: Vec<Box<[u8; 32]>> = (0..20_000).map(|i| Box::new([i as u8; 32])).collect();
    let s1 = hakmem::stats();
    assert!(
        s1.tiny_carved >= s0.tiny_carved + 18_000,
        "20000 live 32-byte boxes grew tiny_carved by {}",
        s1.tiny_carved - s0.tiny_carved
    );
    assert!(s1.tiny_slabs > 0, "tiny_slabs = 0");
    drop(tiny);

    // L2.5 pool: 10 live 64 KiB blocks (a size this process never used
    // before, so they are carved fresh), then L2: 10 live 5 KiB blocks.
    for (n, what) in [(64 * KIB, "64 KiB"), (5 * KIB, "5 KiB")] {
        let s0 = hakmem::stats();
        let blocks: Vec<Vec<u8>> = (0..10).map(|_| vec![3u8; n]).collect();
        let s1 = hakmem::stats();
        assert!(
            s1.pool_carved >= s0.pool_carved + 10,
            "10 live {what} blocks grew pool_carved by {}",
            s1.pool_carved - s0.pool_carved
        );
        assert!(
            s1.pool_slabs > s0.pool_slabs,
            "10 live {what} blocks of a fresh class took no pool slab"
        );
        assert_eq!(
            (s1.run_allocs, s1.large_allocs),
            (s0.run_allocs, s0.large_allocs),
            "{what} blocks went to the page runs or direct mappings"
        );
        drop(blocks);
    }

    // Run path: over-aligned blocks (8 KiB aligned to 4096).
    let layout = Layout::from_size_align(8 * KIB, 4096).unwrap();
    let s0 = hakmem::stats();
    // `black_box`: an allocation whose block is never used may be optimised away whole (the
    // compiler knows `alloc`/`dealloc` pairs), and then nothing is counted.
    let runs: Vec<*mut u8> = (0..10)
        .map(|_| std::hint::black_box(unsafe { alloc(layout) }))
        .collect();
    let s1 = hakmem::stats();
    assert!(runs.iter().all(|p| !p.is_null()));
    assert!(
        s1.run_allocs >= s0.run_allocs + 10,
        "10 live 8 KiB blocks aligned to 4096 grew run_allocs by {}",
        s1.run_allocs - s0.run_allocs
    );
    for p in runs {
        unsafe { dealloc(p, layout) };
    }
    let s2 = hakmem::stats();
    assert!(
        s2.run_frees >= s1.run_frees + 10,
        "freeing 10 run blocks grew run_frees by {}",
        s2.run_frees - s1.run_frees
    );

    // Large path: 3 live 4 MiB blocks.
    let s0 = hakmem::stats();
    let large: Vec<Vec<u8>> = (0..3).map(|_| vec![5u8; 4 * MIB]).collect();
    let s1 = hakmem::stats();
    assert!(
        s1.large_allocs >= s0.large_allocs + 3,
        "3 live 4 MiB blocks grew large_allocs by {}",
        s1.large_allocs - s0.large_allocs
    );
    assert!(
        s1.os_mapped >= 12 * MIB as u64,
        "os_mapped = {} with 12 MiB live",
        s1.os_mapped
    );
    assert!(s1.os_segments > 0, "os_segments = 0");
    drop(large);
    let s2 = hakmem::stats();
    assert!(
        s2.large_frees >= s1.large_frees + 3,
        "freeing 3 large blocks grew large_frees by {}",
        s2.large_frees - s1.large_frees
    );
    let _ = s2.tiny_remote;
}
