//! The workloads. Each returns a [`Report`]; all of them verify block contents before
//! every free (see [`crate::pattern`]) and exit with code 3 on a mismatch.

pub mod big_replace;
pub mod churn;
pub mod larson;
pub mod larson_orig;
pub mod phased;
pub mod prodcons;
pub mod queue;
pub mod random_mixed;
pub mod realloc_grow;
pub mod slots;
pub mod tiny_hot;
pub mod xthread;

use crate::cli::{Config, Workload};
use crate::report::{Num, Report};
use crate::rng::mix64;

/// Runs the configured workload.
pub fn run(cfg: &Config) -> Report {
    match cfg.workload {
        Workload::Larson => larson::run(cfg),
        Workload::Slots | Workload::MidMt | Workload::Large | Workload::Big => slots::run(cfg),
        Workload::RandomMixed => random_mixed::run(cfg),
        Workload::TinyHot => tiny_hot::run(cfg),
        Workload::Xthread => xthread::run(cfg),
        Workload::ReallocGrow => realloc_grow::run(cfg),
        Workload::Churn => churn::run(cfg),
        Workload::Phased => phased::run(cfg),
        Workload::BigReplace => big_replace::run(cfg),
        Workload::Prodcons => prodcons::run(cfg),
        Workload::LarsonOrig => larson_orig::run(cfg),
    }
}

/// Per-run salt of the block patterns (same for all threads, so any thread can verify
/// any block).
pub fn salt(cfg: &Config) -> u64 {
    mix64(cfg.seed ^ 0x6861_6B6D_656D) // "hakmem"
}

/// Seed of worker `index`'s PRNG: `--seed` + thread index.
pub fn thread_seed(cfg: &Config, index: usize) -> u64 {
    cfg.seed.wrapping_add(index as u64)
}

/// The parameters every RESULT line carries.
pub fn base_params(cfg: &Config) -> Vec<(&'static str, Num)> {
    vec![
        ("min", cfg.min.into()),
        ("max", cfg.max.into()),
        ("slots", cfg.slots.into()),
        ("seed", cfg.seed.into()),
        ("target_seconds", cfg.seconds.into()),
    ]
}

/// Aborts with exit code 3 if a pattern check failed.
#[inline]
pub fn verified(workload: &Workload, r: Result<(), crate::pattern::Mismatch>) {
    if let Err(m) = r {
        crate::fail::verify_failed(workload.name(), &m);
    }
}
