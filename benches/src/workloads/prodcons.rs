//! `prodcons`: producers that are also consumers, with pauses.
//!
//! `--threads` (default 2, at least 2) threads form a ring: thread `i` sends to thread
//! `i + 1` (the last to the first), so with 2 threads each frees what the other allocated.
//! A *round* of a thread: `malloc` `--slots` blocks (default 1000) of random size in
//! `--min..--max` (default 8..16,000 B), stamp each ([`pattern::stamp`]) and queue them as
//! one batch to the next thread; then verify and `free` every block of every batch waiting
//! in its own queue; then sleep 1..2 ms (uniform, from the thread's seeded PRNG). So every
//! free is remote, and the allocator sees bursts separated by idle threads: per-thread
//! caches go cold, background purging and timers get their chance, and an allocator that
//! spins or keeps threads busy while idle pays for it.
//!
//! **op = one block malloc'd by one thread and freed by another.** Wall time is mostly
//! sleep, so the RESULT `value` is ops per CPU-second (metric `ops_per_cpu_sec`): the ops
//! over the CPU time, user + system, of the whole process (`getrusage(RUSAGE_SELF)`, all
//! threads, the allocator's own included) from before the threads start to after they are
//! joined. Ops per wall second are in the params (`ops_per_sec`), with `cpu_seconds`.
//!
//! Batches are `Vec`s from a pool allocated before the clock starts (4 per thread, each
//! with room for `--slots` pointers) and never grown; the queues are bounded by the pool.
//! A thread that finds the pool empty skips its allocation for that round (counted in
//! `skipped_rounds`). After the stop flag each thread finishes its round, then frees what
//! is still queued for it once its sender has stopped; those blocks count and the drain is
//! timed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::block::Block;
use crate::cli::Config;
use crate::pattern;
use crate::report::{Metric, Num, Report, Usage};
use crate::rng::Rng;
use crate::runner::run_timed;
use crate::workloads::queue::{Batch, Queue};
use crate::workloads::{base_params, salt, thread_seed, verified};

/// Batches in circulation per thread.
pub const BATCHES_PER_THREAD: usize = 4;
/// Pause between rounds: uniform in this range, microseconds (inclusive).
pub const SLEEP_US: (usize, usize) = (1000, 2000);

/// The thread that thread `i` sends to, and the one it receives from.
pub fn ring(i: usize, threads: usize) -> (usize, usize) {
    ((i + 1) % threads, (i + threads - 1) % threads)
}

pub fn run(cfg: &Config) -> Report {
    let w = cfg.workload;
    let salt = salt(cfg);
    let n = cfg.threads;
    let nbatches = BATCHES_PER_THREAD * n;
    let pool = Queue::with_capacity(nbatches);
    for _ in 0..nbatches {
        pool.push(Vec::with_capacity(cfg.slots));
    }
    let inbox: Vec<Queue> = (0..n).map(|_| Queue::with_capacity(nbatches)).collect();
    let stopped_sending: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let rounds = AtomicU64::new(0);
    let skipped = AtomicU64::new(0);

    let free_batch = |mut batch: Batch| -> u64 {
        let k = batch.len() as u64;
        for b in batch.drain(..) {
            verified(&w, pattern::check_stamp(&b, salt));
            b.free();
        }
        pool.push(batch);
        k
    };

    let before = Usage::now();
    let timed = run_timed(n, cfg.seconds, |i, ctl| {
        let (to, from) = ring(i, n);
        let mut rng = Rng::new(thread_seed(cfg, i));
        let (mut my_rounds, mut my_skipped, mut ops) = (0u64, 0u64, 0u64);
        ctl.ready();
        while !ctl.stopped() {
            match pool.pop() {
                Some(mut batch) => {
                    for _ in 0..cfg.slots {
                        let mut b = Block::alloc(rng.range(cfg.min, cfg.max));
                        pattern::stamp(&mut b, salt);
                        batch.push(b);
                    }
                    inbox[to].push(batch);
                }
                None => my_skipped += 1,
            }
            while let Some(batch) = inbox[i].pop() {
                ops += free_batch(batch);
            }
            my_rounds += 1;
            let us = rng.range(SLEEP_US.0, SLEEP_US.1);
            thread::sleep(Duration::from_micros(us as u64));
        }
        stopped_sending[i].store(true, Ordering::Release);
        loop {
            // Read the flag before popping: if the sender had stopped and the queue is
            // still empty afterwards, nothing more can arrive.
            let sender_stopped = stopped_sending[from].load(Ordering::Acquire);
            match inbox[i].pop() {
                Some(batch) => ops += free_batch(batch),
                None if sender_stopped => break,
                // The sender may be in its 1..2 ms pause: wait without burning CPU time.
                None => thread::sleep(Duration::from_micros(100)),
            }
        }
        ctl.done();
        rounds.fetch_add(my_rounds, Ordering::Relaxed);
        skipped.fetch_add(my_skipped, Ordering::Relaxed);
        ops
    });
    let usage = Usage::now().since(before);

    let mut params = base_params(cfg);
    let wall_rate = if timed.seconds > 0.0 {
        timed.ops as f64 / timed.seconds
    } else {
        0.0
    };
    params.push(("ops_per_sec", Num::F((wall_rate * 10.0).round() / 10.0)));
    params.push((
        "cpu_seconds",
        Num::F((usage.cpu_seconds * 1e6).round() / 1e6),
    ));
    params.push(("rounds", rounds.into_inner().into()));
    params.push(("skipped_rounds", skipped.into_inner().into()));
    params.push(("sleep_min_us", SLEEP_US.0.into()));
    params.push(("sleep_max_us", SLEEP_US.1.into()));
    Report {
        workload: w.name(),
        threads: n,
        ops: timed.ops,
        seconds: timed.seconds,
        metric: Metric::OpsPerCpuSec {
            cpu_seconds: usage.cpu_seconds,
        },
        op_means: "one block malloc'd by one thread and freed by the next (rounds separated by 1-2 ms sleeps)",
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::ring;

    #[test]
    fn ring_pairs_up_two_threads_and_chains_more() {
        assert_eq!(ring(0, 2), (1, 1));
        assert_eq!(ring(1, 2), (0, 0));
        assert_eq!(ring(0, 3), (1, 2));
        assert_eq!(ring(2, 3), (0, 1));
    }
}
