//! `larson`: the Larson–Krishnan server workload, in the shape of the original `larson`
//! program (`larson <sleep> <min> <max> <chunks> <rounds> <seed> <threads>`); `larson-orig`
//! ([`super::larson_orig`]) follows the original step for step, this is its variant.
//!
//! Setup (untimed): the main thread mallocs `threads × chunks` blocks of random size in
//! `[min, max)` and replaces `4 × threads × chunks` random ones (the original's warm-up),
//! then hands each of `threads` lineages its `chunks` blocks. Timed: each lineage runs one
//! thread at a time; a thread makes `rounds × chunks` steps — free a random block of its
//! array, malloc a new one of random size there, write its head — then starts its
//! successor, which inherits the array, and exits. So most frees hit blocks that a thread
//! which has since exited allocated: this is what makes Larson a test of remote frees and
//! thread exit, not only of the thread cache. **op = one free + one malloc.**
//!
//! Differences from the original, all charged equally to every allocator: each new block
//! gets an 8-byte address-derived tag at its head (the original writes two bytes) and the
//! tag is checked before the block is freed (same cache line that the free touches); the
//! stop flag is polled every step (as in the original).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::block::Block;
use crate::cli::Config;
use crate::pattern;
use crate::report::{Metric, Report};
use crate::rng::Rng;
use crate::workloads::{base_params, salt, verified};

/// What every thread of every lineage shares.
struct Shared {
    stop: AtomicBool,
    threads_started: AtomicU64,
    salt: u64,
    min: usize,
    max_excl: usize,
    steps: usize,
    cfg_workload: crate::cli::Workload,
    done: mpsc::Sender<Lineage>,
}

/// One lineage's state, passed from each thread to its successor.
struct Lineage {
    blocks: Vec<Option<Block>>,
    rng: Rng,
    ops: u64,
    end: Option<Instant>,
}

#[inline]
fn new_block(rng: &mut Rng, sh: &Shared) -> Block {
    let mut b = Block::alloc(rng.range(sh.min, sh.max_excl - 1));
    pattern::stamp_head(&mut b, sh.salt);
    b
}

#[inline]
fn free_block(sh: &Shared, b: Block) {
    verified(&sh.cfg_workload, pattern::check_head(&b, sh.salt));
    b.free();
}

/// One thread's life: `steps` replacements (or until stop), then a successor or the end.
fn generation(mut l: Lineage, sh: Arc<Shared>) {
    let n = l.blocks.len();
    let mut steps = 0;
    while steps < sh.steps && !sh.stop.load(Ordering::Relaxed) {
        let slot = &mut l.blocks[l.rng.below(n)];
        if let Some(old) = slot.take() {
            free_block(&sh, old);
        }
        *slot = Some(new_block(&mut l.rng, &sh));
        steps += 1;
    }
    l.ops += steps as u64;
    if sh.stop.load(Ordering::Relaxed) {
        l.end = Some(Instant::now());
        let _ = sh.done.send(l);
    } else {
        spawn(l, sh);
    }
}

fn spawn(l: Lineage, sh: Arc<Shared>) {
    sh.threads_started.fetch_add(1, Ordering::Relaxed);
    thread::Builder::new()
        .spawn(move || generation(l, sh))
        .expect("failed to spawn a larson thread");
}

pub fn run(cfg: &Config) -> Report {
    let salt = salt(cfg);
    let chunks = cfg.slots;
    // The original draws sizes as `min + rand % (max - min)`: max itself is excluded.
    let max_excl = cfg.max.max(cfg.min + 1);
    let (tx, rx) = mpsc::channel();
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        threads_started: AtomicU64::new(0),
        salt,
        min: cfg.min,
        max_excl,
        steps: cfg.rounds * chunks,
        cfg_workload: cfg.workload,
        done: tx,
    });

    // Warm-up on the main thread (untimed), as the original does.
    let mut rng = Rng::new(cfg.seed);
    let total = cfg.threads * chunks;
    let mut all: Vec<Option<Block>> = (0..total).map(|_| Some(new_block(&mut rng, &sh))).collect();
    for _ in 0..4 * total {
        let slot = &mut all[rng.below(total)];
        if let Some(old) = slot.take() {
            free_block(&sh, old);
        }
        *slot = Some(new_block(&mut rng, &sh));
    }
    let mut lineages = Vec::with_capacity(cfg.threads);
    for i in (0..cfg.threads).rev() {
        lineages.push(Lineage {
            blocks: all.split_off(i * chunks),
            rng: Rng::new(rng.next_u64()),
            ops: 0,
            end: None,
        });
    }

    let start = Instant::now();
    for l in lineages {
        spawn(l, Arc::clone(&sh));
    }
    thread::sleep(Duration::from_secs_f64(cfg.seconds));
    sh.stop.store(true, Ordering::Relaxed);
    let mut ops = 0;
    let mut end = start;
    let mut finished = Vec::with_capacity(cfg.threads);
    for _ in 0..cfg.threads {
        let l = rx.recv().expect("a larson lineage ended without reporting");
        ops += l.ops;
        end = end.max(l.end.unwrap_or(end));
        finished.push(l);
    }
    for b in finished.into_iter().flat_map(|l| l.blocks).flatten() {
        free_block(&sh, b);
    }
    let threads_started = sh.threads_started.load(Ordering::Relaxed);

    let mut params = base_params(cfg);
    params.push(("rounds", cfg.rounds.into()));
    params.push(("threads_started", threads_started.into()));
    Report {
        workload: cfg.workload.name(),
        threads: cfg.threads,
        ops,
        seconds: (end - start).as_secs_f64(),
        metric: Metric::OpsPerSec,
        op_means: "one free of a random block + one malloc of a random size (threads respawn every rounds x chunks ops)",
        params,
    }
}
