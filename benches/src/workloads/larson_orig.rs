//! `larson-orig`: Larson & Krishnan's server benchmark, step for step as the original
//! program (`larson.cpp`, as mimalloc-bench ships it) runs it:
//! `larson <seconds> <min> <max> <chunks> <rounds> <seed> <threads>` =
//! `hakmem-bench larson-orig --seconds S --min MIN --max MAX --slots CHUNKS --rounds R
//! --seed SEED --threads T`.
//!
//! - PRNG: Gloger's `lran2` ([`Lran2`]) seeded with `--seed` (its low 32 bits, the
//!   original's `unsigned`); sizes are `min + lran2() % (max - min)` (`max` itself never
//!   drawn; `min` when they are equal) and slots `lran2() % chunks`.
//! - Warm-up (untimed), on the main thread: malloc `threads × chunks` blocks, shuffle the
//!   array (a random permutation), then replace `4 × threads × chunks` random blocks.
//! - Then, for each thread in turn, a seed `lran2()` for its own generator and the next
//!   `chunks` slots of the array; all threads are started, and then the clock.
//! - Each thread makes `rounds × chunks` steps: free a random slot's block, malloc a new
//!   one of random size there, write its first byte, read it back, write its second byte;
//!   the stop flag is polled after every step. Then, unless stopped, it starts a successor
//!   thread, which inherits the slot array and the generator, and exits. So blocks are
//!   freed by threads that did not allocate them, most of them allocated by a thread that
//!   has since exited: what an allocator keeps for exited threads shows as peak RSS.
//! - After `--seconds` the main thread raises the stop flag and waits for every lineage's
//!   last thread; the clock stops then. **op = one free + one malloc** (the original's
//!   `cAllocs`); `value` = ops per second (its "Throughput").
//!
//! Differences, charged equally to every allocator: the two bytes written are pattern
//! bytes derived from the block's address and size (the original writes `'a'`, `'b'`), and
//! they are checked before the block is freed (they lie in the cache line the free
//! touches); the blocks left at the end are verified and freed (the original exits with
//! them live); threads are detached (the original's are joinable and never joined, so it
//! keeps every exited thread's stack mapped, which measures the thread library rather
//! than malloc); the main thread waits on a channel instead of spinning on `sched_yield`.
//!
//! Defaults: sizes 10..500 (the original's compiled-in `min_size`, `max_size`), seed 12345
//! (its compiled-in seed), 1000 chunks per thread, 100 rounds, 4 threads (the original has
//! no defaults for these). mimalloc-bench runs `larson 5 8 1000 5000 100 4141 N`:
//! `--seconds 5 --min 8 --max 1000 --slots 5000 --rounds 100 --seed 4141 --threads N`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::block::Block;
use crate::cli::{Config, Workload};
use crate::pattern;
use crate::report::{Metric, Report};
use crate::rng::Lran2;
use crate::workloads::{base_params, salt, verified};

/// Bytes written into (and checked in) each block, as the original writes two.
const WRITTEN: usize = 2;

/// What every thread of every lineage shares.
struct Shared {
    stop: AtomicBool,
    threads_started: AtomicU64,
    salt: u64,
    min: usize,
    /// `max - min`; 0 means every block is `min` bytes.
    range: usize,
    steps: usize,
    workload: Workload,
    done: mpsc::Sender<Lineage>,
}

/// One lineage's state (the original's `thread_data`), passed to each successor.
struct Lineage {
    blocks: Vec<Option<Block>>,
    rng: Lran2,
    ops: u64,
}

/// The original's size draw: `min + lran2() % (max - min)`, or `min` when they are equal.
#[inline]
fn draw_size(rng: &mut Lran2, min: usize, range: usize) -> usize {
    if range == 0 {
        min
    } else {
        min + rng.modulo(range)
    }
}

#[inline]
fn new_block(size: usize, sh: &Shared) -> Block {
    let mut b = Block::alloc(size);
    // The original: `*p = 'a'; (volatile) ch = *p; *(p + 1) = 'b';`.
    pattern::stamp_first(&mut b, sh.salt, 1);
    std::hint::black_box(b.read_u8(0));
    pattern::stamp_first(&mut b, sh.salt, WRITTEN);
    b
}

#[inline]
fn free_block(sh: &Shared, b: Block) {
    verified(&sh.workload, pattern::check_first(&b, sh.salt, WRITTEN));
    b.free();
}

/// One thread's life (`exercise_heap`): its steps, then a successor or the end.
fn generation(mut l: Lineage, sh: Arc<Shared>) {
    let n = l.blocks.len();
    if !sh.stop.load(Ordering::Relaxed) {
        for _ in 0..sh.steps {
            let victim = l.rng.modulo(n);
            if let Some(old) = l.blocks[victim].take() {
                free_block(&sh, old);
            }
            let size = draw_size(&mut l.rng, sh.min, sh.range);
            l.blocks[victim] = Some(new_block(size, &sh));
            l.ops += 1;
            if sh.stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    if sh.stop.load(Ordering::Relaxed) {
        let _ = sh.done.send(l);
    } else {
        spawn(l, sh);
    }
}

fn spawn(l: Lineage, sh: Arc<Shared>) {
    sh.threads_started.fetch_add(1, Ordering::Relaxed);
    thread::Builder::new()
        .spawn(move || generation(l, sh))
        .expect("failed to spawn a larson-orig thread");
}

/// The original's warm-up: `count` blocks, a random permutation, `4 × count` replacements.
fn warmup(rng: &mut Lran2, count: usize, sh: &Shared) -> Vec<Option<Block>> {
    let mut all: Vec<Option<Block>> = (0..count)
        .map(|_| Some(new_block(draw_size(rng, sh.min, sh.range), sh)))
        .collect();
    for c in (1..=count).rev() {
        let victim = rng.modulo(c);
        all.swap(victim, c - 1);
    }
    for _ in 0..4 * count {
        let victim = rng.modulo(count);
        if let Some(old) = all[victim].take() {
            free_block(sh, old);
        }
        all[victim] = Some(new_block(draw_size(rng, sh.min, sh.range), sh));
    }
    all
}

pub fn run(cfg: &Config) -> Report {
    let chunks = cfg.slots;
    let (tx, rx) = mpsc::channel();
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        threads_started: AtomicU64::new(0),
        salt: salt(cfg),
        min: cfg.min,
        range: cfg.max - cfg.min,
        steps: cfg.rounds * chunks,
        workload: cfg.workload,
        done: tx,
    });

    let mut rng = Lran2::new(i64::from(cfg.seed as u32));
    let mut all = warmup(&mut rng, cfg.threads * chunks, &sh);
    // Thread i gets slots i*chunks.., and its seed is drawn in thread order.
    let mut lineages: Vec<Lineage> = Vec::with_capacity(cfg.threads);
    for _ in 0..cfg.threads {
        let rest = all.split_off(chunks);
        lineages.push(Lineage {
            blocks: std::mem::replace(&mut all, rest),
            rng: Lran2::new(rng.next()),
            ops: 0,
        });
    }
    for l in lineages {
        spawn(l, Arc::clone(&sh));
    }
    let start = Instant::now();
    thread::sleep(Duration::from_secs_f64(cfg.seconds));
    sh.stop.store(true, Ordering::Relaxed);
    let finished: Vec<Lineage> = (0..cfg.threads)
        .map(|_| {
            rx.recv()
                .expect("a larson-orig lineage ended without reporting")
        })
        .collect();
    let seconds = start.elapsed().as_secs_f64();
    let ops = finished.iter().map(|l| l.ops).sum();
    for b in finished.into_iter().flat_map(|l| l.blocks).flatten() {
        free_block(&sh, b);
    }
    let threads_started = sh.threads_started.load(Ordering::Relaxed);
    // Peak RSS is this workload's second figure (memory kept for exited threads): print it
    // with the thread count, as well as in the RESULT line.
    println!(
        "larson-orig: threads_started={threads_started} peak_rss_kb={}",
        crate::report::peak_rss_kb().map_or_else(|| "unknown".into(), |k| k.to_string())
    );

    let mut params = base_params(cfg);
    params.push(("rounds", cfg.rounds.into()));
    params.push(("threads_started", threads_started.into()));
    Report {
        workload: cfg.workload.name(),
        threads: cfg.threads,
        ops,
        seconds,
        metric: Metric::OpsPerSec,
        op_means: "one free of a random slot + one malloc of a random size into it (the original's cAllocs; threads respawn every rounds x chunks ops)",
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_original_draw() {
        let mut a = Lran2::new(4141);
        let mut b = Lran2::new(4141);
        for _ in 0..1000 {
            let s = draw_size(&mut a, 8, 992);
            assert_eq!(s, 8 + (b.next() as usize) % 992);
            assert!((8..1000).contains(&s));
        }
        assert_eq!(draw_size(&mut a, 64, 0), 64);
    }
}
