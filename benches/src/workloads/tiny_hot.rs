//! `tiny-hot`: one size (`--min`, default 16 B). Repeatedly `malloc` a batch of `--slots`
//! blocks (default 100), then verify and free them in LIFO order. One op = one
//! malloc + free pair.

use crate::block::Block;
use crate::cli::Config;
use crate::pattern;
use crate::report::{Metric, Num, Report};
use crate::runner::run_timed;
use crate::workloads::{salt, verified};

pub fn run(cfg: &Config) -> Report {
    let w = cfg.workload;
    let salt = salt(cfg);
    let (size, batch) = (cfg.min, cfg.slots);

    let timed = run_timed(cfg.threads, cfg.seconds, |_idx, ctl| {
        let mut live: Vec<Block> = Vec::with_capacity(batch);
        ctl.ready();
        let mut ops = 0u64;
        while !ctl.stopped() {
            // A batch is >= 64 ops at the default size, so poll every batch (or every
            // few when --slots is small).
            for _ in 0..64usize.div_ceil(batch) {
                for _ in 0..batch {
                    let mut b = Block::alloc(size);
                    pattern::stamp(&mut b, salt);
                    live.push(b);
                }
                while let Some(b) = live.pop() {
                    verified(&w, pattern::check_stamp(&b, salt));
                    b.free();
                }
                ops += batch as u64;
            }
        }
        ctl.done();
        ops
    });

    Report {
        workload: w.name(),
        threads: cfg.threads,
        ops: timed.ops,
        seconds: timed.seconds,
        metric: Metric::OpsPerSec,
        op_means: "one malloc + free pair (batches of --slots mallocs, then LIFO frees)",
        params: vec![
            ("size", Num::from(size)),
            ("min", size.into()),
            ("max", size.into()),
            ("slots", batch.into()),
            ("seed", cfg.seed.into()),
            ("target_seconds", cfg.seconds.into()),
        ],
    }
}
