//! `phased`: big-block generations whose working set shrinks half-way through the run, so
//! the best size of an allocator's cache of freed large mappings changes mid-run (a
//! learning policy can follow it; any fixed policy is wrong for one of the two phases).
//!
//! Work is done in *generations*: malloc `G` blocks of random sizes in `[lo, hi]`, stamp
//! each ([`pattern::stamp`]) and write one byte per 4 KiB page over the whole block (as
//! `big` does), then verify every block (stamp + pages) and free them all. The run is
//! split by work: phase 1 runs for the first half of `--seconds`, phase 2 then does as many
//! ops as phase 1 did (or runs until the time is up). So the headline rate (all ops over all
//! the time) is the rate of equal work in both phases, the harmonic mean of the two phase
//! rates: the slow phase weighs in as much as the fast one.
//!
//! - Phase 1: `G = --slots` blocks of `--min..--max` (defaults 24 blocks of 12..20 MiB,
//!   about 384 MiB live at the peak: more than a 256 MiB cache of freed mappings holds).
//!   `--quick`: 8 blocks of 4..8 MiB.
//! - Phase 2: fixed, not derived from the options: 16 blocks of 2..6 MiB (about 64 MiB,
//!   which any cache holds); `--quick`: 8 blocks of 1..2 MiB.
//!
//! A generation is cut short (the blocks it has are still verified and freed, and count)
//! when the half-way mark passes in phase 1, or when time is up; so each phase's time
//! covers whole ops only. One op = one block malloc'd, written, verified and freed.
//!
//! Threads: 1 by default; `--threads N` runs N independent copies (seed `seed + i`), each
//! with its own clock for the phase switch (they start together at the barrier). Per-phase
//! numbers sum the ops of all threads and take the longest thread's phase time.
//!
//! Extra RESULT params: `phase2_blocks`, `phase2_min`, `phase2_max`, and for `phase1_` /
//! `phase2_`: `generations`, `ops`, `seconds`, `ops_per_sec`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::block::Block;
use crate::cli::Config;
use crate::pattern;
use crate::report::{Metric, Num, Report};
use crate::rng::Rng;
use crate::runner::run_timed;
use crate::workloads::{base_params, salt, thread_seed, verified};

const MIB: usize = 1024 * 1024;

/// The shape of one phase's generations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Blocks per generation (`G`).
    pub blocks: usize,
    pub min: usize,
    pub max: usize,
}

/// Phase 1 comes from `--slots`/`--min`/`--max`; phase 2 is fixed (smaller under `--quick`).
pub fn shapes(cfg: &Config) -> [Shape; 2] {
    let phase2 = if cfg.quick {
        Shape {
            blocks: 8,
            min: MIB,
            max: 2 * MIB,
        }
    } else {
        Shape {
            blocks: 16,
            min: 2 * MIB,
            max: 6 * MIB,
        }
    };
    [
        Shape {
            blocks: cfg.slots,
            min: cfg.min,
            max: cfg.max,
        },
        phase2,
    ]
}

/// What one phase did (of one thread, or summed over threads by [`merge`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PhaseStats {
    pub ops: u64,
    pub generations: u64,
    pub seconds: f64,
}

impl PhaseStats {
    pub fn ops_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Combines the threads' stats: ops and generations add up, the time is the longest.
pub fn merge(per_thread: &[[PhaseStats; 2]]) -> [PhaseStats; 2] {
    let mut out = [PhaseStats::default(); 2];
    for t in per_thread {
        for (o, s) in out.iter_mut().zip(t) {
            o.ops += s.ops;
            o.generations += s.generations;
            o.seconds = o.seconds.max(s.seconds);
        }
    }
    out
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub fn run(cfg: &Config) -> Report {
    let w = cfg.workload;
    let salt = salt(cfg);
    let shapes = shapes(cfg);
    let half = Duration::from_secs_f64(cfg.seconds / 2.0);
    let results: Mutex<Vec<[PhaseStats; 2]>> = Mutex::new(Vec::with_capacity(cfg.threads));

    let timed = run_timed(cfg.threads, cfg.seconds, |idx, ctl| {
        let mut rng = Rng::new(thread_seed(cfg, idx));
        let cap = shapes[0].blocks.max(shapes[1].blocks);
        let mut live: Vec<Block> = Vec::with_capacity(cap);
        let mut stats = [PhaseStats::default(); 2];
        ctl.ready();
        let start = Instant::now();
        let switch_at = start + half;
        let mut phase = 0;
        let mut phase_start = start;
        while !ctl.stopped() {
            if phase == 0 {
                let now = Instant::now();
                if now >= switch_at {
                    stats[0].seconds = (now - phase_start).as_secs_f64();
                    phase_start = now;
                    phase = 1;
                }
            }
            let shape = shapes[phase];
            for i in 0..shape.blocks {
                if i > 0 && (ctl.stopped() || (phase == 0 && Instant::now() >= switch_at)) {
                    break; // cut short: what was allocated is still verified and freed
                }
                let mut b = Block::alloc(rng.range(shape.min, shape.max));
                pattern::stamp(&mut b, salt);
                let size = b.size();
                pattern::touch_pages(&mut b, salt, size);
                live.push(b);
            }
            for b in &live {
                verified(&w, pattern::check_stamp(b, salt));
                verified(&w, pattern::check_pages(b, salt, b.size()));
            }
            stats[phase].ops += live.len() as u64;
            stats[phase].generations += 1;
            for b in live.drain(..) {
                b.free();
            }
            if phase == 1 && stats[1].ops >= stats[0].ops {
                break; // equal work done in both phases
            }
        }
        ctl.done();
        stats[phase].seconds = phase_start.elapsed().as_secs_f64();
        let ops = stats[0].ops + stats[1].ops;
        results.lock().unwrap().push(stats);
        ops
    });

    let [p1, p2] = merge(&results.into_inner().unwrap());
    println!(
        "phased: phase1 {} x {}..{} B: generations={} ops={} seconds={:.3} ops/s={:.1}; \
         phase2 {} x {}..{} B: generations={} ops={} seconds={:.3} ops/s={:.1}",
        shapes[0].blocks,
        shapes[0].min,
        shapes[0].max,
        p1.generations,
        p1.ops,
        p1.seconds,
        p1.ops_per_sec(),
        shapes[1].blocks,
        shapes[1].min,
        shapes[1].max,
        p2.generations,
        p2.ops,
        p2.seconds,
        p2.ops_per_sec(),
    );

    let mut params = base_params(cfg);
    params.push(("phase2_blocks", shapes[1].blocks.into()));
    params.push(("phase2_min", shapes[1].min.into()));
    params.push(("phase2_max", shapes[1].max.into()));
    params.push(("phase1_generations", p1.generations.into()));
    params.push(("phase1_ops", p1.ops.into()));
    params.push(("phase1_seconds", Num::F((p1.seconds * 1e6).round() / 1e6)));
    params.push(("phase1_ops_per_sec", Num::F(round1(p1.ops_per_sec()))));
    params.push(("phase2_generations", p2.generations.into()));
    params.push(("phase2_ops", p2.ops.into()));
    params.push(("phase2_seconds", Num::F((p2.seconds * 1e6).round() / 1e6)));
    params.push(("phase2_ops_per_sec", Num::F(round1(p2.ops_per_sec()))));
    Report {
        workload: w.name(),
        threads: cfg.threads,
        ops: timed.ops,
        seconds: timed.seconds,
        metric: Metric::OpsPerSec,
        op_means: "one block malloc'd, page-touched, verified and freed (in generations)",
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse;

    #[test]
    fn default_and_quick_shapes() {
        let d = shapes(&parse(["phased"]).unwrap());
        assert_eq!(
            d,
            [
                Shape {
                    blocks: 24,
                    min: 12 * MIB,
                    max: 20 * MIB
                },
                Shape {
                    blocks: 16,
                    min: 2 * MIB,
                    max: 6 * MIB
                },
            ]
        );
        // Phase 1 peaks above a 256 MiB cache even at the smallest sizes; phase 2 stays
        // well under it even at the largest.
        assert!(d[0].blocks * d[0].min > 256 * MIB);
        assert!(d[1].blocks * d[1].max < 128 * MIB);

        let q = shapes(&parse(["phased", "--quick"]).unwrap());
        assert_eq!(
            q,
            [
                Shape {
                    blocks: 8,
                    min: 4 * MIB,
                    max: 8 * MIB
                },
                Shape {
                    blocks: 8,
                    min: MIB,
                    max: 2 * MIB
                },
            ]
        );
    }

    #[test]
    fn options_override_phase1_only() {
        let c = parse(["phased", "--slots", "40", "--min", "1m", "--max", "3m"]).unwrap();
        let s = shapes(&c);
        assert_eq!(
            s[0],
            Shape {
                blocks: 40,
                min: MIB,
                max: 3 * MIB
            }
        );
        assert_eq!(s[1], shapes(&parse(["phased"]).unwrap())[1]);
    }

    #[test]
    fn merge_adds_ops_and_takes_longest_time() {
        let a = [
            PhaseStats {
                ops: 10,
                generations: 2,
                seconds: 1.0,
            },
            PhaseStats {
                ops: 30,
                generations: 3,
                seconds: 0.9,
            },
        ];
        let b = [
            PhaseStats {
                ops: 6,
                generations: 1,
                seconds: 1.25,
            },
            PhaseStats {
                ops: 10,
                generations: 1,
                seconds: 1.0,
            },
        ];
        let [p1, p2] = merge(&[a, b]);
        assert_eq!((p1.ops, p1.generations, p1.seconds), (16, 3, 1.25));
        assert_eq!((p2.ops, p2.generations, p2.seconds), (40, 4, 1.0));
        assert_eq!(p1.ops_per_sec(), 12.8);
        assert_eq!(PhaseStats::default().ops_per_sec(), 0.0);
    }
}
