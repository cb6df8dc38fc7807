//! Slot replacement (after Larson, without its thread hand-over): `slots`, `mid-mt`, `large`, `big`.
//!
//! Each thread owns a table of `--slots` blocks with random sizes in `[min, max]`,
//! pre-filled before the clock starts. One op = pick a random slot, verify and `free` its
//! block, `malloc` a new block of random size there and write its pattern
//! (one free + one malloc = 1 op). What is written per block depends on the workload:
//! `slots`/`mid-mt` stamp head, tail and middle; `large` also writes one byte every
//! 4 KiB over the first half; `big` one byte every 4 KiB over the whole block.

use crate::block::Block;
use crate::cli::{Config, Workload};
use crate::pattern;
use crate::report::{Metric, Report};
use crate::rng::Rng;
use crate::runner::run_timed;
use crate::workloads::{base_params, salt, thread_seed, verified};

/// How much of each block is written (and verified before free).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    /// First/last 8 bytes and the middle byte.
    Ends,
    /// Ends + one byte per 4 KiB over the first half.
    HalfPages,
    /// Ends + one byte per 4 KiB over the whole block.
    AllPages,
}

impl Touch {
    fn limit(self, size: usize) -> usize {
        match self {
            Touch::Ends => 0,
            Touch::HalfPages => size / 2,
            Touch::AllPages => size,
        }
    }
}

fn params(w: Workload) -> (Touch, usize) {
    // (touch, ops between stop-flag checks: keeps the overshoot small for slow ops)
    match w {
        Workload::Large => (Touch::HalfPages, 8),
        Workload::Big => (Touch::AllPages, 1),
        _ => (Touch::Ends, 64),
    }
}

#[inline]
fn new_block(rng: &mut Rng, min: usize, max: usize, salt: u64, touch: Touch) -> Block {
    let mut b = Block::alloc(rng.range(min, max));
    pattern::stamp(&mut b, salt);
    if touch != Touch::Ends {
        let limit = touch.limit(b.size());
        pattern::touch_pages(&mut b, salt, limit);
    }
    b
}

#[inline]
fn free_block(w: &Workload, b: Block, salt: u64, touch: Touch) {
    verified(w, pattern::check_stamp(&b, salt));
    if touch != Touch::Ends {
        verified(w, pattern::check_pages(&b, salt, touch.limit(b.size())));
    }
    b.free();
}

pub fn run(cfg: &Config) -> Report {
    let w = cfg.workload;
    let (touch, check_every) = params(w);
    let salt = salt(cfg);
    let (min, max, nslots) = (cfg.min, cfg.max, cfg.slots);

    let timed = run_timed(cfg.threads, cfg.seconds, |idx, ctl| {
        let mut rng = Rng::new(thread_seed(cfg, idx));
        let mut table: Vec<Option<Block>> = Vec::with_capacity(nslots);
        for _ in 0..nslots {
            table.push(Some(new_block(&mut rng, min, max, salt, touch)));
        }
        ctl.ready();
        let mut ops = 0u64;
        while !ctl.stopped() {
            for _ in 0..check_every {
                let slot = &mut table[rng.below(nslots)];
                if let Some(old) = slot.take() {
                    free_block(&w, old, salt, touch);
                }
                *slot = Some(new_block(&mut rng, min, max, salt, touch));
            }
            ops += check_every as u64;
        }
        ctl.done();
        for b in table.into_iter().flatten() {
            free_block(&w, b, salt, touch);
        }
        ops
    });

    Report {
        workload: w.name(),
        threads: cfg.threads,
        ops: timed.ops,
        seconds: timed.seconds,
        metric: Metric::OpsPerSec,
        op_means: "one free of a random slot + one malloc of a random size into it",
        params: base_params(cfg),
    }
}
