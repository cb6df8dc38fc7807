//! `big-replace`: a cache of big zero-filled buffers, replaced one at a time.
//!
//! Each thread keeps a table of `--slots` buffers (default 20), empty at the start. It makes
//! `--rounds` replacements (default 2000; 200 with `--quick`): pick a random slot; if it
//! holds a buffer, verify and free it; `malloc` a buffer of random size in `--min..--max`
//! (default 5..25 MiB) there and zero all of it with `memset`, as C++'s
//! `std::make_unique<char[]>(n)` does (malloc then memset 0 of all `n` bytes; never
//! `calloc`, so an allocator cannot skip the zeroing of fresh pages); then stamp it
//! ([`pattern::stamp`]: head, tail, middle). Before a buffer is freed its stamp is checked,
//! and two words the stamp does not cover (at a quarter and three quarters of the buffer)
//! must still be zero. Up to `--slots` buffers are live at once (about 300 MiB at the
//! defaults).
//!
//! The run is count-bounded, not timed: every allocator does the same replacements (the
//! sizes and slots come from the seeded PRNG), and `seconds` is the time they took (from
//! the start barrier to the last thread's last replacement; the final frees are not timed).
//! `--seconds` is ignored. **op = one replacement.** `value` is replacements per second.
//!
//! The cost is dominated by the zeroing and by the page faults it takes on memory the
//! allocator returned to the kernel (or never reused): the RESULT params add the process's
//! page faults over the run (`getrusage`: `page_faults` = `minor_faults` + `major_faults`;
//! thread start and the final frees add a few dozen). `--threads N` runs N independent
//! copies.

use crate::block::Block;
use crate::cli::Config;
use crate::pattern;
use crate::report::{Metric, Report, Usage};
use crate::rng::Rng;
use crate::runner::run_counted;
use crate::workloads::{base_params, salt, thread_seed, verified};

/// Offsets of the two words that must still read zero when a buffer is freed: outside the
/// stamp (first/last 8 bytes, middle byte) for every size of at least 64 bytes.
pub fn zero_probes(size: usize) -> [usize; 2] {
    [(size / 4) & !7, (size / 4 * 3) & !7]
}

fn new_buffer(rng: &mut Rng, cfg: &Config, salt: u64) -> Block {
    let mut b = Block::alloc_zero_filled(rng.range(cfg.min, cfg.max));
    pattern::stamp(&mut b, salt);
    b
}

fn free_buffer(cfg: &Config, b: Block, salt: u64) {
    verified(&cfg.workload, pattern::check_stamp(&b, salt));
    if b.size() >= 64 {
        for off in zero_probes(b.size()) {
            verified(&cfg.workload, pattern::check_zero_u64(&b, off));
        }
    }
    b.free();
}

pub fn run(cfg: &Config) -> Report {
    let salt = salt(cfg);
    let before = Usage::now();
    let timed = run_counted(cfg.threads, |idx, ctl| {
        let mut rng = Rng::new(thread_seed(cfg, idx));
        let mut table: Vec<Option<Block>> = (0..cfg.slots).map(|_| None).collect();
        ctl.ready();
        for _ in 0..cfg.rounds {
            let slot = &mut table[rng.below(cfg.slots)];
            if let Some(old) = slot.take() {
                free_buffer(cfg, old, salt);
            }
            *slot = Some(new_buffer(&mut rng, cfg, salt));
        }
        ctl.done();
        for b in table.into_iter().flatten() {
            free_buffer(cfg, b, salt);
        }
        cfg.rounds as u64
    });
    // Around the whole run: thread start, the table and the final frees add a few dozen
    // faults to the millions of the replacements.
    let usage = Usage::now().since(before);
    println!(
        "big-replace: page_faults={} (minor={} major={}) cpu_seconds={:.3}",
        usage.minor_faults + usage.major_faults,
        usage.minor_faults,
        usage.major_faults,
        usage.cpu_seconds
    );

    let mut params = base_params(cfg);
    params.push(("rounds", cfg.rounds.into()));
    params.push((
        "page_faults",
        (usage.minor_faults + usage.major_faults).into(),
    ));
    params.push(("minor_faults", usage.minor_faults.into()));
    params.push(("major_faults", usage.major_faults.into()));
    Report {
        workload: cfg.workload.name(),
        threads: cfg.threads,
        ops: timed.ops,
        seconds: timed.seconds,
        metric: Metric::OpsPerSec,
        op_means: "one replacement: verify and free a random slot's buffer (if any), malloc a new one and memset all of it to 0",
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_probes_miss_the_stamp() {
        for size in [64usize, 65, 100, 4096, 5 << 20, (25 << 20) - 3] {
            for off in zero_probes(size) {
                assert!(off >= 8 && off + 8 <= size - 8, "size {size} off {off}");
                assert!(
                    !(off..off + 8).contains(&(size / 2)),
                    "size {size} off {off}"
                );
            }
        }
    }
}
