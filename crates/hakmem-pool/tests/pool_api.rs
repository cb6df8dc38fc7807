//! The pools through their own API (`hakmem_pool::alloc`, `free_l2`,
//! `free_l25`, `usable_size_l2/_l25`, the tag-table entries), without the facade:
//! every class of both pools, more than a slab's worth of blocks per class
//! (distinct, non-overlapping, reused after free), stray pointers, the
//! table entries, and frees from another thread.

use hakmem_core::map::tag_of;
use hakmem_pool::{
    L2_CLASSES, L2_MAX, L2_TIER, L25_CLASSES, L25_TIER, MAX_SIZE, alloc, free_l2, free_l25,
    usable_size_l2, usable_size_l25,
};
use hakmem_pool::{L2_TAG as TAG_L2, L25_TAG as TAG_L25};
use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;

fn is_l2(size: usize) -> bool {
    size <= L2_MAX
}

unsafe fn pool_free(p: *mut u8, size: usize) {
    unsafe { if is_l2(size) { free_l2(p) } else { free_l25(p) } }
}

fn pool_usable(p: *mut u8, size: usize) -> usize {
    // SAFETY: `p` is a live block of the pool its size selects.
    unsafe {
        if is_l2(size) {
            usable_size_l2(p)
        } else {
            usable_size_l25(p)
        }
    }
}

/// Every size class, with the smallest and largest request it serves.
fn class_requests() -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for table in [&L2_CLASSES, &L25_CLASSES] {
        let mut prev = if std::ptr::eq(table, &L2_CLASSES) {
            1024
        } else {
            L2_MAX
        };
        for &c in table.iter() {
            let c = c as usize;
            v.push((prev + 1, c));
            v.push((c, c));
            prev = c;
        }
    }
    v
}

fn fill(p: *mut u8, n: usize, seed: u8) {
    unsafe { std::ptr::write_bytes(p, seed, n) };
}

fn verify(p: *const u8, n: usize, seed: u8) -> Option<usize> {
    let s = unsafe { std::slice::from_raw_parts(p, n) };
    s.iter().position(|&b| b != seed)
}

#[test]
fn every_class_exact_size_tag_and_alignment() {
    for (size, class) in class_requests() {
        let p = alloc(size);
        assert!(!p.is_null(), "alloc({size}) null");
        let want_tag = if is_l2(size) { TAG_L2 } else { TAG_L25 };
        assert_eq!(tag_of(p), want_tag, "alloc({size}) = {p:?}: wrong tag");
        assert_eq!(
            pool_usable(p, size),
            class,
            "alloc({size}): usable size is not the class size {class}"
        );
        assert_eq!(p as usize % 128, 0, "alloc({size}) = {p:?} not 128-aligned");
        // An interior pointer is not a block.
        assert_eq!(
            pool_usable(p.wrapping_add(16), size),
            0,
            "usable size of an interior pointer of alloc({size})"
        );
        fill(p, class, 0x3c);
        assert_eq!(verify(p, class, 0x3c), None);
        unsafe { pool_free(p, size) };
    }
}

/// Three slabs' worth (at least 40 blocks) of each class live at once:
/// distinct, non-overlapping, contents intact; after freeing them, the same
/// number of blocks comes mostly from the same addresses.
#[test]
fn many_blocks_per_class_no_overlap_and_reuse() {
    for table in [&L2_CLASSES[..], &L25_CLASSES[..]] {
        for &c in table {
            let c = c as usize;
            let slab = if is_l2(c) { 512 << 10 } else { 4 << 20 };
            let n = (3 * slab / c).clamp(40, 1200);
            let mut blocks: Vec<*mut u8> = (0..n).map(|_| alloc(c)).collect();
            for (i, &p) in blocks.iter().enumerate() {
                assert!(!p.is_null(), "alloc({c}) #{i} null");
                fill(p, c, i as u8);
            }
            let mut sorted: Vec<usize> = blocks.iter().map(|&p| p as usize).collect();
            sorted.sort_unstable();
            for w in sorted.windows(2) {
                assert!(
                    w[1] - w[0] >= c,
                    "class {c}: blocks {:#x} and {:#x} overlap",
                    w[0],
                    w[1]
                );
            }
            for (i, &p) in blocks.iter().enumerate() {
                assert_eq!(
                    verify(p, c, i as u8),
                    None,
                    "class {c}: block #{i} corrupted"
                );
            }
            let first: HashSet<usize> = sorted.into_iter().collect();
            for &p in blocks.iter().rev() {
                unsafe { pool_free(p, c) };
            }
            blocks = (0..n).map(|_| alloc(c)).collect();
            let reused = blocks
                .iter()
                .filter(|&&p| first.contains(&(p as usize)))
                .count();
            assert!(
                reused * 2 >= n,
                "class {c}: only {reused} of {n} blocks reused freed memory"
            );
            for p in blocks {
                unsafe { pool_free(p, c) };
            }
        }
    }
}

#[test]
fn tier_entries_serve_their_own_blocks() {
    // Each pool's table entry carries its tag and frees and measures its blocks; neither
    // resizes in place (a block's size is its class's).
    assert_eq!((L2_TIER.tag, L25_TIER.tag), (TAG_L2, TAG_L25));
    let p = alloc(1025);
    assert!(!p.is_null() && tag_of(p) == TAG_L2);
    // SAFETY: live blocks of each pool, measured and freed through their tier once.
    unsafe {
        assert_eq!((L2_TIER.usable_size)(p), 1280);
        assert!((L2_TIER.resize)(p, 1100).is_null());
        (L2_TIER.free)(p);
    }
    let p = alloc(MAX_SIZE);
    assert!(!p.is_null() && tag_of(p) == TAG_L25 && (p as usize).is_multiple_of(128));
    // SAFETY: as above.
    unsafe {
        assert_eq!((L25_TIER.usable_size)(p), MAX_SIZE);
        assert!((L25_TIER.resize)(p, MAX_SIZE - 1).is_null());
        (L25_TIER.free)(p);
    }
}

/// Blocks allocated on one thread, verified and freed on another, for several
/// rounds: the allocating thread reuses the remotely freed blocks, and the
/// pool's remote counter counts them.
#[test]
fn remote_frees_are_reused() {
    for size in [
        1025,
        4096,
        24 << 10,
        32 << 10,
        33 << 10,
        200 << 10,
        MAX_SIZE,
    ] {
        let n = if is_l2(size) { 200 } else { 12 };
        let rounds = 10;
        let r0 = hakmem_pool::L2_COUNTERS.remote.get() + hakmem_pool::L25_COUNTERS.remote.get();
        let (to_b, from_a) = mpsc::channel::<Vec<usize>>();
        let (to_a, from_b) = mpsc::channel::<()>();
        let b = thread::spawn(move || {
            for batch in from_a {
                for (i, &a) in batch.iter().enumerate() {
                    let p = a as *mut u8;
                    assert_eq!(
                        verify(p, size, i as u8),
                        None,
                        "{size}: block corrupted before remote free"
                    );
                    unsafe { pool_free(p, size) };
                }
                to_a.send(()).unwrap();
            }
        });
        let a = thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut reused = 0;
            for round in 0..rounds {
                let batch: Vec<usize> = (0..n)
                    .map(|i| {
                        let p = alloc(size);
                        assert!(!p.is_null());
                        fill(p, size, i as u8);
                        p as usize
                    })
                    .collect();
                if round > 0 {
                    reused += batch.iter().filter(|a| seen.contains(*a)).count();
                }
                seen.extend(batch.iter().copied());
                to_b.send(batch).unwrap();
                from_b.recv().unwrap();
            }
            reused
        });
        let reused = a.join().unwrap();
        b.join().unwrap();
        let grew =
            (hakmem_pool::L2_COUNTERS.remote.get() + hakmem_pool::L25_COUNTERS.remote.get()) - r0;
        assert!(
            reused >= n * (rounds - 1) / 2,
            "{size}: only {reused} blocks reused remotely freed memory"
        );
        assert!(
            grew >= (n * (rounds - 1)) as u64,
            "{size}: {} remote frees grew pool.remote by {grew}",
            n * rounds
        );
    }
}

/// `alloc` is safe for every size: one outside the pools' range is refused with null, never
/// turned into a bad class index.
#[test]
fn sizes_outside_the_pools_are_refused() {
    for size in [0, 1, 100, 1024, MAX_SIZE + 1, 64 << 20, usize::MAX] {
        assert!(alloc(size).is_null(), "alloc({size})");
    }
    let p = alloc(1025);
    assert!(!p.is_null());
    // SAFETY: a live L2 block.
    unsafe { free_l2(p) };
}
