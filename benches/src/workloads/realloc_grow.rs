//! `realloc-grow`: `--slots` buffers (default 8) per thread, interleaved. Each step picks
//! a random buffer and grows it with `realloc` by a random 1/8..1/2 of its length
//! (capped at `--max`, default 1 MiB), verifies the old prefix (sampled: first and last
//! 8 bytes and one word every ~1 KiB) and fills the new bytes completely. A buffer starts
//! as `malloc(--min)` (default 16) and, once it has reached `--max`, is verified and
//! freed; the next step on it starts over. One op = one `realloc` call.

use crate::block::Block;
use crate::cli::Config;
use crate::pattern;
use crate::report::{Metric, Report};
use crate::rng::Rng;
use crate::runner::run_timed;
use crate::workloads::{base_params, thread_seed, verified};

const CHECK_EVERY: usize = 16;

struct Buf {
    block: Option<Block>,
    tag: u64,
}

/// Next length: grows by a random 1/8..1/2 (at least 1 byte), capped at `max`.
pub fn next_len(rng: &mut Rng, len: usize, max: usize) -> usize {
    let lo = (len / 8).max(1);
    let hi = (len / 2).max(lo);
    (len + rng.range(lo, hi)).min(max)
}

pub fn run(cfg: &Config) -> Report {
    let w = cfg.workload;
    let (min, max, nbufs) = (cfg.min, cfg.max, cfg.slots);

    let timed = run_timed(cfg.threads, cfg.seconds, |idx, ctl| {
        let mut rng = Rng::new(thread_seed(cfg, idx));
        let mut bufs: Vec<Buf> = Vec::with_capacity(nbufs);
        for _ in 0..nbufs {
            bufs.push(Buf {
                block: None,
                tag: 0,
            });
        }
        ctl.ready();
        let mut ops = 0u64;
        while !ctl.stopped() {
            let mut done = 0;
            while done < CHECK_EVERY {
                let buf = &mut bufs[rng.below(nbufs)];
                match buf.block.take() {
                    None => {
                        let mut b = Block::alloc(min);
                        buf.tag = rng.next_u64();
                        pattern::fill_range(&mut b, buf.tag, 0, min);
                        buf.block = Some(b);
                    }
                    Some(b) if b.size() >= max => {
                        verified(&w, pattern::check_prefix_sampled(&b, buf.tag, b.size()));
                        b.free();
                    }
                    Some(b) => {
                        let old = b.size();
                        let new = next_len(&mut rng, old, max);
                        let mut b = b.realloc(new);
                        verified(&w, pattern::check_prefix_sampled(&b, buf.tag, old));
                        pattern::fill_range(&mut b, buf.tag, old, new);
                        buf.block = Some(b);
                        done += 1;
                    }
                }
            }
            ops += CHECK_EVERY as u64;
        }
        ctl.done();
        for buf in bufs {
            if let Some(b) = buf.block {
                verified(&w, pattern::check_prefix_sampled(&b, buf.tag, b.size()));
                b.free();
            }
        }
        ops
    });

    Report {
        workload: w.name(),
        threads: cfg.threads,
        ops: timed.ops,
        seconds: timed.seconds,
        metric: Metric::OpsPerSec,
        op_means: "one realloc growing a buffer by 1/8..1/2 (mallocs/frees of whole \
                   buffers are not counted)",
        params: base_params(cfg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_bounded_and_progresses() {
        let mut rng = Rng::new(1);
        let mut len = 16;
        let mut steps = 0;
        while len < 1 << 20 {
            let n = next_len(&mut rng, len, 1 << 20);
            assert!(n > len && n <= 1 << 20);
            assert!(n <= len + len / 2 + 1);
            len = n;
            steps += 1;
        }
        assert!((20..200).contains(&steps), "{steps}");
        assert_eq!(next_len(&mut rng, 1, 1 << 20), 2);
    }
}
