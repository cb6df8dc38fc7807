//! The size tiers through the facade's own functions (`hakmem::malloc`, `free`,
//! `usable_size`, `realloc`, `alloc_aligned`, `alloc_zeroed`, `owns`), no global
//! allocator: every class boundary of every tier, a sweep of sizes, alignments,
//! realloc across tiers, zeroed memory after reuse, and blocks of every tier
//! freed by another thread (with the remote-free counters checked in a fresh
//! child process).
//!
//! Routing (the contract these tests hold the facade to):
//!
//! | sizes | owner-map tag | usable size |
//! |---|---|---|
//! | 0..=1024 | `TAG_TINY` | the Tiny class |
//! | 1025..=32 KiB | `TAG_L2` | the L2 class (four per doubling) |
//! | 32 KiB+1..=64 KiB | `TAG_L25` | the L2.5 class |
//! | 64 KiB+1..=1 MiB | `TAG_RUN` | whole pages (page runs: freed pages reused across sizes) |
//! | 1 MiB+1..=64 MiB | `TAG_BIG_RUN` | whole 256 KiB pages (big page runs) |
//! | above 64 MiB | `TAG_LARGE` | to the end of the mapping |
//!
//! Alignments up to 128 keep the size's tier; larger ones (up to 1 MiB) with
//! sizes up to 1 MiB come from page runs (`TAG_RUN`), up to 2 MiB with sizes up
//! to 64 MiB from big page runs, anything else from direct mappings.

mod common;

use hakmem::{alloc_aligned, alloc_zeroed, free, malloc, owns, realloc, usable_size};
use hakmem_core::map::{TAG_BIG_RUN, TAG_LARGE, TAG_RUN, Tag, tag_of};
use hakmem_core::run::{BIG_RUN_MAX, SPAN_MIN};
use hakmem_pool::{L2_CLASSES, L25_CLASSES};
use hakmem_pool::{L2_TAG as TAG_L2, L25_TAG as TAG_L25};
use hakmem_tiny::TAG as TAG_TINY;
use hakmem_tiny::class::TINY_CLASSES;
use std::collections::{HashSet, VecDeque};
use std::sync::mpsc;
use std::thread;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const SPAN_MIN_PLUS_1: usize = SPAN_MIN + 1;
const MIB_PLUS_1: usize = MIB + 1;
/// The page of the big page runs.
const BIG_PAGE: usize = 256 * KIB;

fn tag_name(t: Tag) -> &'static str {
    match t {
        TAG_TINY => "tiny",
        TAG_L2 => "L2",
        TAG_L25 => "L2.5",
        TAG_RUN => "run",
        TAG_BIG_RUN => "big run",
        TAG_LARGE => "large",
        _ => "none",
    }
}

/// The tier a `malloc(size)` must come from.
fn tier_of(size: usize) -> Tag {
    match size {
        0..=1024 => TAG_TINY,
        1025..=32768 => TAG_L2,
        32769..=SPAN_MIN => TAG_L25,
        SPAN_MIN_PLUS_1..=MIB => TAG_RUN,
        MIB_PLUS_1..=BIG_RUN_MAX => TAG_BIG_RUN,
        _ => TAG_LARGE,
    }
}

/// The smallest entry of `table` holding `size`.
fn class_in(table: &[u32], size: usize) -> usize {
    table
        .iter()
        .map(|&c| c as usize)
        .find(|&c| c >= size)
        .unwrap_or_else(|| panic!("no class holds {size}"))
}

/// The exact usable size of `malloc(size)` for the slab tiers (the class
/// size); None above 1 MiB.
fn class_size(size: usize) -> Option<usize> {
    match tier_of(size) {
        TAG_TINY => Some(class_in(&TINY_CLASSES, size.max(1))),
        TAG_L2 => Some(class_in(&L2_CLASSES, size)),
        TAG_L25 => Some(class_in(&L25_CLASSES, size)),
        TAG_RUN => Some(size.div_ceil(4096) * 4096),
        TAG_BIG_RUN => Some(size.div_ceil(BIG_PAGE) * BIG_PAGE),
        _ => None,
    }
}

/// Word `j` of the pattern for `seed`: byte `i` of a block depends only on
/// (seed, i), so prefixes can be checked after a realloc.
#[inline]
fn pat_word(seed: usize, j: usize) -> u64 {
    let x = (seed as u64 >> 3) ^ (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29) ^ 0x5a5a
}

/// Fills `p[..n]` with the pattern of `seed`.
unsafe fn fill(p: *mut u8, n: usize, seed: usize) {
    let words = n / 8;
    for j in 0..words {
        unsafe {
            p.add(8 * j)
                .cast::<u64>()
                .write_unaligned(pat_word(seed, j))
        };
    }
    let last = pat_word(seed, words).to_le_bytes();
    for (k, &b) in last.iter().enumerate().take(n - 8 * words) {
        unsafe { p.add(8 * words + k).write(b) };
    }
}

/// The first byte of `p[..n]` that lost the pattern of `seed`.
unsafe fn check(p: *const u8, n: usize, seed: usize) -> Option<usize> {
    let words = n / 8;
    for j in 0..words {
        let got = unsafe { p.add(8 * j).cast::<u64>().read_unaligned() };
        let want = pat_word(seed, j);
        if got != want {
            let (g, w) = (got.to_le_bytes(), want.to_le_bytes());
            return Some(8 * j + (0..8).find(|&k| g[k] != w[k]).unwrap());
        }
    }
    let last = pat_word(seed, words).to_le_bytes();
    (0..n - 8 * words)
        .find_map(|k| (unsafe { *p.add(8 * words + k) } != last[k]).then_some(8 * words + k))
}

/// A live block: its address, the size asked for and its usable size.
struct Block {
    p: *mut u8,
    size: usize,
    usable: usize,
}

/// `malloc(size)` with every per-block check of the tier contract; the whole
/// usable size is filled with the block's pattern (seeded by its address).
fn checked_malloc(size: usize) -> Block {
    let p = malloc(size);
    assert!(!p.is_null(), "malloc({size}) = null");
    let usable = unsafe { usable_size(p) };
    assert!(
        usable >= size,
        "malloc({size}): usable size {usable} < size"
    );
    let align = if size <= 8 { 8 } else { 16 };
    assert_eq!(
        p as usize % align,
        0,
        "malloc({size}) = {p:?} not {align}-aligned"
    );
    let (want, got) = (tier_of(size), tag_of(p));
    assert_eq!(
        got,
        want,
        "malloc({size}) = {p:?} came from tier {} (want {})",
        tag_name(got),
        tag_name(want)
    );
    if let Some(class) = class_size(size) {
        assert_eq!(
            usable, class,
            "malloc({size}): usable size {usable}, want the class size {class}"
        );
    }
    if size > 64 && size <= MIB {
        assert!(
            (usable - size) * 4 <= size,
            "malloc({size}): usable size {usable} wastes more than 25%"
        );
    } else if size <= 64 {
        assert!(
            usable <= size.max(1) + 15,
            "malloc({size}): usable size {usable} wastes more than 15 bytes"
        );
    }
    assert!(owns(p), "owns(malloc({size}) = {p:?}) is false");
    let last = p.wrapping_add(usable - 1);
    assert!(
        owns(last),
        "owns(last usable byte {last:?} of malloc({size})) is false"
    );
    unsafe { fill(p, usable, p as usize) };
    Block { p, size, usable }
}

/// Verifies a block's pattern (over its whole usable size) and frees it.
fn verify_and_free(b: Block, what: &str) {
    let bad = unsafe { check(b.p, b.usable, b.p as usize) };
    assert_eq!(
        bad, None,
        "{what}: block {:?} of malloc({}) (usable {}) corrupted at byte {bad:?}: overlap?",
        b.p, b.size, b.usable
    );
    let again = unsafe { usable_size(b.p) };
    assert_eq!(
        again, b.usable,
        "{what}: usable size of {:?} changed while live",
        b.p
    );
    unsafe { free(b.p) };
}

/// Every class size of every tier and every tier limit.
fn boundaries() -> Vec<usize> {
    let mut v: Vec<usize> = TINY_CLASSES
        .iter()
        .chain(&L2_CLASSES)
        .chain(&L25_CLASSES)
        .map(|&c| c as usize)
        .filter(|&c| c <= SPAN_MIN)
        .collect();
    v.extend([
        1024,
        1025,
        32 * KIB,
        32 * KIB + 1,
        SPAN_MIN,
        SPAN_MIN + 1,
        MIB,
        MIB + 1,
        2 * MIB,
    ]);
    v.sort_unstable();
    v.dedup();
    v
}

/// b-1, b and b+1 for every boundary b, all three live at once (with the
/// blocks of the previous boundary still live too), filled over their whole
/// usable size and verified before they are freed.
#[test]
fn class_boundaries_of_every_tier() {
    let bounds = boundaries();
    assert!(bounds.len() >= 48, "only {} boundaries", bounds.len());
    let mut prev: Vec<Block> = Vec::new();
    for &b in &bounds {
        let group: Vec<Block> = [b - 1, b, b + 1].into_iter().map(checked_malloc).collect();
        for old in prev.drain(..) {
            verify_and_free(old, &format!("boundary before {b}"));
        }
        prev = group;
    }
    for old in prev {
        verify_and_free(old, "last boundary");
    }
    // malloc(0) is a valid, distinct, freeable block.
    let (a, c) = (malloc(0), malloc(0));
    assert!(!a.is_null() && !c.is_null() && a != c, "malloc(0) twice");
    assert_eq!(tag_of(a), TAG_TINY, "malloc(0) not from Tiny");
    unsafe {
        free(a);
        free(c);
    }
}

/// Every size 1..=4096, then a geometric stride (about 37 sizes per doubling,
/// odd offsets) up to 2 MiB + 1; the last 48 blocks stay live, each verified
/// when freed.
#[test]
fn size_sweep() {
    let mut sizes: Vec<usize> = (1..=4096).collect();
    let mut s = 4096usize;
    while s < 2 * MIB {
        s += s / 37 + 13;
        sizes.push(s.min(2 * MIB + 1));
    }
    let mut live: VecDeque<Block> = VecDeque::new();
    for &n in &sizes {
        live.push_back(checked_malloc(n));
        if live.len() > 48 {
            verify_and_free(live.pop_front().unwrap(), "sweep");
        }
    }
    for b in live {
        verify_and_free(b, "sweep end");
    }
}

/// The tier an `alloc_aligned(size, align)` must come from.
fn aligned_tier_of(size: usize, align: usize) -> Tag {
    if align <= 128 {
        tier_of(size)
    } else if size <= MIB && align <= MIB {
        TAG_RUN
    } else if size > MIB && size <= BIG_RUN_MAX && align <= 2 * MIB {
        TAG_BIG_RUN
    } else {
        TAG_LARGE
    }
}

/// alloc_aligned for every power-of-two alignment 8..=2 MiB and sizes around
/// every tier limit: aligned, usable >= size, owned to the last byte, from the
/// right tier; all sizes of one alignment live at once and verified.
#[test]
fn alignments_around_tier_limits() {
    let sizes = [
        1,
        8,
        16,
        100,
        1023,
        1024,
        1025,
        4096,
        32 * KIB - 1,
        32 * KIB,
        32 * KIB + 1,
        MIB - 1,
        MIB,
        MIB + 1,
        2 * MIB - 1,
        2 * MIB,
        2 * MIB + 1,
    ];
    for shift in 3..=21 {
        let align = 1usize << shift;
        let mut live = Vec::new();
        for &n in &sizes {
            let p = alloc_aligned(n, align);
            let what = format!("alloc_aligned({n}, {align})");
            assert!(!p.is_null(), "{what} = null");
            assert_eq!(p as usize % align, 0, "{what} = {p:?} misaligned");
            let usable = unsafe { usable_size(p) };
            assert!(usable >= n, "{what}: usable size {usable} < {n}");
            assert!(owns(p), "{what}: owns({p:?}) false");
            assert!(
                owns(p.wrapping_add(usable - 1)),
                "{what}: last usable byte not owned"
            );
            let (want, got) = (aligned_tier_of(n, align), tag_of(p));
            assert_eq!(
                got,
                want,
                "{what} = {p:?} came from tier {} (want {})",
                tag_name(got),
                tag_name(want)
            );
            unsafe { fill(p, usable, p as usize) };
            live.push(Block { p, size: n, usable });
        }
        for b in live {
            verify_and_free(b, &format!("align {align}"));
        }
    }
}

/// One realloc step of [`realloc_chain`]: the common prefix survives, the
/// block is big enough and in the right tier (or kept in place), and the new
/// size gets the pattern.
unsafe fn realloc_step(p: *mut u8, old: usize, new: usize, seed: usize) -> *mut u8 {
    let old_usable = unsafe { usable_size(p) };
    let q = unsafe { realloc(p, new) };
    let what = format!("realloc({p:?}: {old} -> {new})");
    assert!(!q.is_null(), "{what} = null");
    let bad = unsafe { check(q, old.min(new), seed) };
    assert_eq!(
        bad, None,
        "{what} = {q:?} lost the contents at byte {bad:?}"
    );
    let usable = unsafe { usable_size(q) };
    assert!(usable >= new, "{what}: usable size {usable} < {new}");
    assert!(
        owns(q) && owns(q.wrapping_add(new - 1)),
        "{what} = {q:?} not owned"
    );
    let (want, got) = (tier_of(new), tag_of(q));
    // A block may stay where it is when it still fits without much waste.
    let kept = q == p && new <= old_usable;
    assert!(
        got == want || kept,
        "{what} = {q:?} moved to tier {} (want {})",
        tag_name(got),
        tag_name(want)
    );
    // Kept in place: either it still fits without much waste, or (page runs)
    // it was shrunk in place to whole pages.
    if kept && new <= MIB {
        assert!(
            new > usable / 4,
            "{what}: a {new}-byte block kept in a {usable}-byte one (was {old_usable})"
        );
    }
    unsafe { fill(q, new, seed) };
    q
}

/// tiny -> L2 -> L2.5 -> large (3 MiB, 40 MiB) and back down to 8 bytes, one
/// tier at a time and in single jumps, checking the common prefix each time.
#[test]
fn realloc_chain() {
    let up = [
        8,
        100,
        1000,
        1024,
        1025,
        5000,
        32 * KIB,
        32 * KIB + 1,
        100 * KIB,
        MIB,
        MIB + 1,
        3 * MIB,
        40 * MIB,
    ];
    let down = [
        3 * MIB,
        MIB + 1,
        MIB,
        200 * KIB,
        24 * KIB,
        2000,
        1000,
        64,
        8,
    ];
    let jumps = [
        40 * MIB,
        8,
        3 * MIB,
        100,
        200 * KIB,
        8,
        24 * KIB,
        3 * MIB,
        8,
    ];
    for (k, chain) in [[&up[..], &down[..]].concat(), jumps.to_vec()]
        .iter()
        .enumerate()
    {
        let seed = 0xC0FFEE + k;
        let mut size = chain[0];
        let mut p = malloc(size);
        assert!(!p.is_null());
        unsafe { fill(p, size, seed) };
        for &n in &chain[1..] {
            p = unsafe { realloc_step(p, size, n, seed) };
            size = n;
        }
        unsafe { free(p) };
    }
    // realloc(null, n) allocates; realloc(p, 0) frees and returns null.
    let p = unsafe { realloc(std::ptr::null_mut(), 3000) };
    assert!(!p.is_null() && tag_of(p) == TAG_L2, "realloc(null, 3000)");
    assert!(unsafe { realloc(p, 0) }.is_null(), "realloc(p, 0) not null");
}

/// alloc_zeroed gives zeroed memory in every tier, also when the memory was
/// just freed dirty (slab reuse, cached mappings).
#[test]
fn alloc_zeroed_after_dirty_free_every_tier() {
    for &n in &[
        24,
        1000,
        1025,
        24 * KIB,
        40 * KIB,
        200 * KIB,
        MIB,
        MIB + 1,
        3 * MIB,
        8 * MIB,
    ] {
        for align in [16, 4096] {
            for round in 0..4 {
                let ps: Vec<*mut u8> = (0..4).map(|_| alloc_aligned(n, align)).collect();
                for &p in &ps {
                    assert!(!p.is_null());
                    unsafe { std::ptr::write_bytes(p, 0xA5, usable_size(p)) };
                }
                for &p in &ps {
                    unsafe { free(p) };
                }
                let zs: Vec<*mut u8> = (0..4).map(|_| alloc_zeroed(n, align)).collect();
                for &z in &zs {
                    assert!(!z.is_null(), "alloc_zeroed({n}, {align}) null");
                    assert_eq!(z as usize % align, 0);
                    let s = unsafe { std::slice::from_raw_parts(z, n) };
                    let nz = s.iter().position(|&b| b != 0);
                    assert_eq!(
                        nz, None,
                        "alloc_zeroed({n}, {align}) = {z:?} round {round}: byte {nz:?} not zero"
                    );
                }
                for z in zs {
                    unsafe {
                        std::ptr::write_bytes(z, 0x5A, n);
                        free(z);
                    }
                }
            }
        }
    }
}

/// Per tier: (size, blocks per round).
const CROSS: &[(usize, usize)] = &[
    (64, 3000),
    (4096, 256),
    (24 * KIB, 64),
    (48 * KIB, 64),
    (200 * KIB, 40),
    (3 * MIB, 6),
];
const ROUNDS: usize = 24;

/// Thread A allocates `n` blocks of `size` per round and fills them; thread B
/// verifies and frees them; A waits for B before the next round, so from the
/// second round on A reuses memory freed remotely. Returns how many blocks of
/// rounds >= 2 landed on addresses of earlier rounds.
fn cross_thread_rounds(size: usize, n: usize) -> usize {
    let (to_b, from_a) = mpsc::channel::<Vec<usize>>();
    let (to_a, from_b) = mpsc::channel::<()>();
    let b = thread::spawn(move || {
        for batch in from_a {
            for &addr in &batch {
                let p = addr as *mut u8;
                let bad = unsafe { check(p, size, addr) };
                assert_eq!(
                    bad, None,
                    "{size}-byte block {p:?} corrupted at {bad:?} before its remote free"
                );
                unsafe { free(p) };
            }
            // A thread holds back a few remote frees per slab to push them together; a trim
            // pushes them all (so this round's frees all wait for A when it next allocates).
            hakmem::trim();
            to_a.send(()).unwrap();
        }
    });
    let a = thread::spawn(move || {
        let mut seen = HashSet::new();
        let mut reused = 0;
        for round in 0..ROUNDS {
            let mut batch = Vec::with_capacity(n);
            for _ in 0..n {
                let p = malloc(size);
                assert!(!p.is_null(), "malloc({size}) null in round {round}");
                assert_eq!(tag_of(p), tier_of(size), "malloc({size}): wrong tier");
                unsafe { fill(p, size, p as usize) };
                batch.push(p as usize);
            }
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
    reused
}

/// Every tier's blocks freed by another thread, contents checked before the
/// free and after reuse. The remote counters are checked in
/// [`cross_thread_counters_in_fresh_process`].
#[test]
fn cross_thread_frees_every_tier() {
    for &(size, n) in CROSS {
        let reused = cross_thread_rounds(size, n);
        if size <= MIB {
            assert!(
                reused >= n * (ROUNDS - 1) / 2,
                "{size}: {ROUNDS} rounds of {n} blocks freed remotely: only {reused} blocks reused remotely freed memory"
            );
        }
    }
}

/// Runs [`held_remote_frees_in_fresh_process`] alone in a child process.
#[test]
fn held_remote_frees_reach_their_owner() {
    common::run_alone("held_remote_frees_in_fresh_process");
}

/// A thread frees a few Tiny blocks of another thread (fewer than it may hold back per slab),
/// then pushes them with a trim (staying alive) or by exiting; the owner's trim then finds
/// all of them: held-back remote frees are never lost, and leave at those two points.
#[test]
#[ignore = "run in a fresh process by held_remote_frees_reach_their_owner"]
fn held_remote_frees_in_fresh_process() {
    const N: usize = 10;
    const SIZE: usize = 200;
    for via_exit in [false, true] {
        let (to_main, blocks) = mpsc::channel::<Vec<usize>>();
        let (go_a, a_go) = mpsc::channel::<()>();
        let a = thread::spawn(move || {
            let batch: Vec<usize> = (0..N).map(|_| malloc(SIZE) as usize).collect();
            assert!(batch.iter().all(|&p| tag_of(p as *const u8) == TAG_TINY));
            to_main.send(batch).unwrap();
            a_go.recv().unwrap();
            let s0 = hakmem::stats();
            hakmem::trim();
            hakmem::stats().tiny_remote - s0.tiny_remote
        });
        let batch = blocks.recv().unwrap();
        let (go_b, b_go) = mpsc::channel::<()>();
        let (b_done, freed) = mpsc::channel::<()>();
        let b = thread::spawn(move || {
            for &p in &batch {
                // SAFETY: live blocks from `malloc`, each freed once.
                unsafe { free(p as *mut u8) };
            }
            if !via_exit {
                hakmem::trim();
            }
            b_done.send(()).unwrap();
            b_go.recv().unwrap(); // alive until A has counted
        });
        freed.recv().unwrap();
        let mut b = Some(b);
        let mut finish_b = || {
            go_b.send(()).unwrap();
            b.take().unwrap().join().unwrap();
        };
        if via_exit {
            finish_b();
        }
        go_a.send(()).unwrap();
        let collected = a.join().unwrap();
        if !via_exit {
            finish_b();
        }
        assert!(
            collected >= N as u64,
            "via {}: the owner found {collected} of {N} remote frees",
            if via_exit { "exit" } else { "trim" }
        );
    }
}

/// Runs [`successor_adopts_on_first_free_in_fresh_process`] alone in a child process.
#[test]
fn successor_adopts_on_first_free_of_a_class() {
    common::run_alone("successor_adopts_on_first_free_in_fresh_process");
}

/// Larson's hand-over: thread A allocates Tiny blocks of one class and exits; thread B, set up
/// by a malloc of another class, frees them all, then allocates as many of A's class. B's
/// first free adopts A's abandoned slab, so every free is local and B's mallocs get A's
/// blocks back without a single remote free being collected. (Adopting only for classes a
/// thread already allocates from sent these frees to the slab's remote list: ~N collected.)
#[test]
#[ignore = "run in a fresh process by successor_adopts_on_first_free_of_a_class"]
fn successor_adopts_on_first_free_in_fresh_process() {
    const N: usize = 64;
    const SIZE: usize = 200;
    let blocks = thread::spawn(|| (0..N).map(|_| malloc(SIZE) as usize).collect::<Vec<_>>())
        .join()
        .unwrap();
    assert!(blocks.iter().all(|&p| tag_of(p as *const u8) == TAG_TINY));
    let (remote, again) = thread::spawn(move || {
        let other = malloc(24);
        let s0 = hakmem::stats();
        for &p in &blocks {
            // SAFETY: live blocks from `malloc`, each freed once.
            unsafe { free(p as *mut u8) };
        }
        let again: HashSet<usize> = (0..N).map(|_| malloc(SIZE) as usize).collect();
        let remote = hakmem::stats().tiny_remote - s0.tiny_remote;
        for &p in &again {
            // SAFETY: as above.
            unsafe { free(p as *mut u8) };
        }
        // SAFETY: as above.
        unsafe { free(other) };
        (remote, again == blocks.iter().copied().collect())
    })
    .join()
    .unwrap();
    assert_eq!(remote, 0, "the successor's frees went remote");
    assert!(
        again,
        "the successor's mallocs did not reuse the adopted blocks"
    );
}

/// Runs [`cross_thread_counters_in_fresh_process`] alone in a child process
/// (a fresh process: no abandoned slabs of other tests to adopt, so the
/// counters move as this test's own frees make them).
#[test]
fn cross_thread_counters() {
    common::run_alone("cross_thread_counters_in_fresh_process");
}

#[test]
#[ignore = "run in a fresh process by cross_thread_counters"]
fn cross_thread_counters_in_fresh_process() {
    for &(size, n) in CROSS {
        let s0 = hakmem::stats();
        let reused = cross_thread_rounds(size, n);
        let s1 = hakmem::stats();
        let (tiny, pool) = (
            s1.tiny_remote - s0.tiny_remote,
            s1.pool_remote - s0.pool_remote,
        );
        let (large_a, large_f) = (
            s1.large_allocs - s0.large_allocs,
            s1.large_frees - s0.large_frees,
        );
        let (run_a, run_f) = (s1.run_allocs - s0.run_allocs, s1.run_frees - s0.run_frees);
        println!(
            "size {size}: {n} x {ROUNDS} blocks, {reused} reused; tiny.remote +{tiny} pool.remote +{pool} large +{large_a}/-{large_f}"
        );
        // Each round's remote frees are collected by A when it next needs
        // blocks (the last round's at the latest when A exits).
        let want = (n * (ROUNDS - 1)) as u64;
        match tier_of(size) {
            TAG_TINY => assert!(
                tiny >= want,
                "{size}: tiny_remote grew by {tiny} (want >= {want})"
            ),
            TAG_L2 | TAG_L25 => assert!(
                pool >= want,
                "{size}: pool_remote grew by {pool} (want >= {want})"
            ),
            TAG_RUN => {
                let all = (n * ROUNDS) as u64;
                assert!(
                    run_a >= all && run_f >= all,
                    "{size}: run allocs +{run_a} frees +{run_f} (want >= {all})"
                );
            }
            _ => {
                let all = (n * ROUNDS) as u64;
                assert!(
                    large_a >= all && large_f >= all,
                    "{size}: large allocs +{large_a} frees +{large_f} (want >= {all})"
                );
            }
        }
    }
}

/// `alloc_aligned` and `alloc_zeroed` are safe for any alignment: one that is not a power of
/// two gives null with errno EINVAL in every tier's size range, never a misaligned trim.
#[test]
fn alignments_that_are_not_powers_of_two_are_refused() {
    for size in [16, 2000, 100 * KIB, 4 * MIB, 100 * MIB] {
        for align in [0, 3, 24, 3 * 4096, 3 << 22] {
            hakmem_core::os::set_errno(0);
            assert!(alloc_aligned(size, align).is_null(), "{size}, {align}");
            assert_eq!(hakmem_core::os::errno(), libc::EINVAL);
            assert!(alloc_zeroed(size, align).is_null(), "{size}, {align}");
        }
    }
}
