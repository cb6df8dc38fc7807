//! `churn`: threads created and destroyed continually.
//!
//! A pool of `--threads` (default 4) short-lived threads runs at any time. Each one
//! `malloc`s `--slots` blocks (default 1000, sizes `[min, max]`, default 16..2048) and
//! stamps them, takes the half-batch left by an earlier thread from a global list and
//! verifies and frees it (those frees are remote: the allocating thread has exited),
//! verifies and frees the second half of its own blocks, hands the first half to the
//! global list, and exits. The main thread joins the oldest thread and spawns a
//! replacement until `--seconds` have elapsed, then joins the rest. One op = one
//! malloc + free pair (`--slots` per thread; thread creation/exit cost is included in
//! the time, as it is the point). The number of threads created is printed and reported
//! as `params.threads_created`.
//!
//! Block vectors are recycled through the main thread, so apart from the measured
//! mallocs the only allocations in the loop are the ones `std::thread::spawn` makes.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::block::Block;
use crate::cli::Config;
use crate::pattern;
use crate::report::{Metric, Num, Report};
use crate::rng::Rng;
use crate::workloads::{base_params, salt, thread_seed, verified};

/// Stack size of the churn threads (small: they do little, and mapping/unmapping stacks
/// is part of the churn either way).
const STACK: usize = 256 * 1024;

struct Shared {
    /// Half-batches waiting to be freed by a later thread.
    pending: Mutex<Vec<Vec<Block>>>,
    salt: u64,
    min: usize,
    max: usize,
    per_thread: usize,
    workload: crate::cli::Workload,
}

/// Body of one short-lived thread. `mine` is an empty vector with capacity for
/// `per_thread` blocks; returns the vector it emptied (the inherited one), for reuse.
fn life(sh: &Shared, seed: u64, mut mine: Vec<Block>) -> Vec<Block> {
    let mut rng = Rng::new(seed);
    for _ in 0..sh.per_thread {
        let mut b = Block::alloc(rng.range(sh.min, sh.max));
        pattern::stamp(&mut b, sh.salt);
        mine.push(b);
    }
    let inherited = sh.pending.lock().unwrap().pop();
    let emptied = match inherited {
        Some(mut v) => {
            for b in v.drain(..) {
                verified(&sh.workload, pattern::check_stamp(&b, sh.salt));
                b.free();
            }
            v
        }
        None => Vec::new(), // does not allocate
    };
    let keep = sh.per_thread / 2;
    while mine.len() > keep {
        let b = mine.pop().expect("len > keep");
        verified(&sh.workload, pattern::check_stamp(&b, sh.salt));
        b.free();
    }
    sh.pending.lock().unwrap().push(mine);
    emptied
}

pub fn run(cfg: &Config) -> Report {
    let pool = cfg.threads;
    let sh = Shared {
        pending: Mutex::new(Vec::with_capacity(4 * pool + 4)),
        salt: salt(cfg),
        min: cfg.min,
        max: cfg.max,
        per_thread: cfg.slots,
        workload: cfg.workload,
    };
    // Spare block vectors (capacity `slots`), recycled between threads.
    let mut spare: Vec<Vec<Block>> = (0..4 * pool + 4)
        .map(|_| Vec::with_capacity(cfg.slots))
        .collect();
    let deadline = Duration::from_secs_f64(cfg.seconds);

    let mut created = 0u64;
    let (elapsed, completed) = thread::scope(|s| {
        let mut running = VecDeque::with_capacity(pool);
        let spawn = |spare: &mut Vec<Vec<Block>>, serial: u64| {
            let v = spare.pop().unwrap_or_else(|| Vec::with_capacity(cfg.slots));
            let seed = thread_seed(cfg, serial as usize);
            let sh = &sh;
            thread::Builder::new()
                .stack_size(STACK)
                .spawn_scoped(s, move || life(sh, seed, v))
                .expect("failed to spawn a churn thread")
        };
        let start = Instant::now();
        for _ in 0..pool {
            running.push_back(spawn(&mut spare, created));
            created += 1;
        }
        let mut completed = 0u64;
        while let Some(h) = running.pop_front() {
            let v = h.join().expect("churn thread panicked");
            if v.capacity() >= cfg.slots {
                spare.push(v);
            }
            completed += 1;
            if start.elapsed() < deadline {
                running.push_back(spawn(&mut spare, created));
                created += 1;
            }
        }
        (start.elapsed().as_secs_f64(), completed)
    });

    // Teardown (untimed): free the half-batches still waiting.
    for v in sh.pending.into_inner().unwrap() {
        for b in v {
            verified(&cfg.workload, pattern::check_stamp(&b, sh.salt));
            b.free();
        }
    }
    println!("churn: threads_created={created}");

    let mut params = base_params(cfg);
    params.push(("threads_created", Num::from(created)));
    Report {
        workload: cfg.workload.name(),
        threads: pool,
        ops: completed * cfg.slots as u64,
        seconds: elapsed,
        metric: Metric::OpsPerSec,
        op_means: "one malloc + free pair (--slots per short-lived thread)",
        params,
    }
}
