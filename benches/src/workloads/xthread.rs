//! `xthread`: producer/consumer with remote frees.
//!
//! `threads / 2` producers (at least 1) and the remaining threads (at least 1) as
//! consumers. A fixed pool of `--slots` batch buffers (default 64, each holding 64 block
//! pointers; allocated before the clock starts and never grown) circulates through two
//! mutex-protected queues: producers take an empty batch, `malloc` 64 blocks of random
//! size in `[min, max]` (default 16..512) and stamp them, and push the batch to the full
//! queue; consumers pop it, verify and `free` every block (so every free is remote) and
//! return the empty batch. One op = one block allocated by a producer and freed by a
//! consumer. After the stop flag, producers finish their current batch and consumers
//! drain the queue; those blocks count and the drain is timed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crate::block::Block;
use crate::cli::Config;
use crate::pattern;
use crate::report::{Metric, Num, Report};
use crate::rng::Rng;
use crate::runner::run_timed;
use crate::workloads::queue::Queue;
use crate::workloads::{base_params, salt, thread_seed, verified};

/// Blocks per message.
pub const BATCH: usize = 64;

/// (producers, consumers) for `threads`.
pub fn roles(threads: usize) -> (usize, usize) {
    let producers = (threads / 2).max(1);
    let consumers = threads.saturating_sub(producers).max(1);
    (producers, consumers)
}

pub fn run(cfg: &Config) -> Report {
    let w = cfg.workload;
    let salt = salt(cfg);
    let (producers, consumers) = roles(cfg.threads);
    let nbatches = cfg.slots;

    let empty = Queue::with_capacity(nbatches);
    let full = Queue::with_capacity(nbatches);
    for _ in 0..nbatches {
        empty.push(Vec::with_capacity(BATCH));
    }
    let producers_done = AtomicUsize::new(0);

    let timed = run_timed(producers + consumers, cfg.seconds, |idx, ctl| {
        if idx < producers {
            let mut rng = Rng::new(thread_seed(cfg, idx));
            ctl.ready();
            while !ctl.stopped() {
                let Some(mut batch) = empty.pop() else {
                    thread::yield_now();
                    continue;
                };
                for _ in 0..BATCH {
                    let mut b = Block::alloc(rng.range(cfg.min, cfg.max));
                    pattern::stamp(&mut b, salt);
                    batch.push(b);
                }
                full.push(batch);
            }
            ctl.done();
            producers_done.fetch_add(1, Ordering::Release);
            0
        } else {
            ctl.ready();
            let mut ops = 0u64;
            loop {
                // Read the counter before popping: if all producers were done and the
                // queue is still empty afterwards, nothing more can arrive.
                let all_done = producers_done.load(Ordering::Acquire) == producers;
                match full.pop() {
                    Some(mut batch) => {
                        for b in batch.drain(..) {
                            verified(&w, pattern::check_stamp(&b, salt));
                            b.free();
                        }
                        ops += BATCH as u64;
                        empty.push(batch);
                    }
                    None if all_done => break,
                    None => thread::yield_now(),
                }
            }
            ctl.done();
            ops
        }
    });

    let mut params = base_params(cfg);
    params.push(("batch", Num::from(BATCH)));
    params.push(("producers", producers.into()));
    params.push(("consumers", consumers.into()));
    Report {
        workload: w.name(),
        threads: producers + consumers,
        ops: timed.ops,
        seconds: timed.seconds,
        metric: Metric::OpsPerSec,
        op_means: "one block malloc'd by a producer and freed (remotely) by a consumer",
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::roles;

    #[test]
    fn role_split() {
        assert_eq!(roles(1), (1, 1));
        assert_eq!(roles(2), (1, 1));
        assert_eq!(roles(4), (2, 2));
        assert_eq!(roles(5), (2, 3));
    }
}
