//! `random-mixed`: a working set of `--slots` slots (all filled before the clock starts),
//! sizes uniform in `[min, max]` (default 16..1040). Each step picks a random slot: an
//! empty slot gets a `malloc`; a full one is verified and freed, and with probability
//! 1/2 immediately refilled with a new block of a new size. Steady-state occupancy is
//! about 2/3. One op = one `malloc` or one `free` call.

use crate::block::Block;
use crate::cli::Config;
use crate::pattern;
use crate::report::{Metric, Report};
use crate::rng::Rng;
use crate::runner::run_timed;
use crate::workloads::{base_params, salt, thread_seed, verified};

const CHECK_EVERY: usize = 64;

#[inline]
fn new_block(rng: &mut Rng, cfg: &Config, salt: u64) -> Block {
    let mut b = Block::alloc(rng.range(cfg.min, cfg.max));
    pattern::stamp(&mut b, salt);
    b
}

pub fn run(cfg: &Config) -> Report {
    let w = cfg.workload;
    let salt = salt(cfg);
    let nslots = cfg.slots;

    let timed = run_timed(cfg.threads, cfg.seconds, |idx, ctl| {
        let mut rng = Rng::new(thread_seed(cfg, idx));
        let mut table: Vec<Option<Block>> = Vec::with_capacity(nslots);
        for _ in 0..nslots {
            table.push(Some(new_block(&mut rng, cfg, salt)));
        }
        ctl.ready();
        let mut ops = 0u64;
        while !ctl.stopped() {
            for _ in 0..CHECK_EVERY {
                let r = rng.next_u64();
                let slot = &mut table[((u128::from(r) * nslots as u128) >> 64) as usize];
                match slot.take() {
                    None => {
                        *slot = Some(new_block(&mut rng, cfg, salt));
                        ops += 1;
                    }
                    Some(old) => {
                        verified(&w, pattern::check_stamp(&old, salt));
                        old.free();
                        ops += 1;
                        // The low bit of `r` is independent of the slot choice (high bits).
                        if r & 1 == 1 {
                            *slot = Some(new_block(&mut rng, cfg, salt));
                            ops += 1;
                        }
                    }
                }
            }
        }
        ctl.done();
        for b in table.into_iter().flatten() {
            verified(&w, pattern::check_stamp(&b, salt));
            b.free();
        }
        ops
    });

    Report {
        workload: w.name(),
        threads: cfg.threads,
        ops: timed.ops,
        seconds: timed.seconds,
        metric: Metric::OpsPerSec,
        op_means: "one malloc or one free call (random slot: empty -> malloc; full -> free, \
                   then with p=1/2 malloc again)",
        params: base_params(cfg),
    }
}
