//! `cargo xtask`: project automation for hakmem.
//!
//! - `cargo xtask build`: release build of `libhakmem.so` and the workload binary.
//! - `cargo xtask test`: the CI sequence (tools, fmt, clippy, build, tests, bench smoke).
//! - `cargo xtask loom`: the loom models under `--cfg loom`.
//! - `cargo xtask bench`: hakmem against glibc, mimalloc, jemalloc and tcmalloc.

mod bench;
mod chart;
mod ci;
mod config;
mod model;
mod parse;
mod report;
mod stats;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "hakmem project automation"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Release build of hakmem-ffi (libhakmem.so) and hakmem-bench; prints the .so path.
    Build,
    /// The CI command: tools, fmt, clippy, release build, tests, bench smoke.
    Test {
        /// Skip `cargo fmt --check` and `cargo clippy`.
        #[arg(long)]
        no_lint: bool,
    },
    /// Loom model tests (`--cfg loom`, LOOM_MAX_PREEMPTIONS=3 unless set, target/loom).
    Loom {
        /// Extra arguments passed on to `cargo test` (e.g. `-- --nocapture`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    /// Compare hakmem with glibc and the peer allocators on the workload matrix.
    Bench {
        /// Short workloads (`--quick` to each) and 2 runs unless --runs is given.
        #[arg(long)]
        quick: bool,
        /// Repetitions per cell (default 5, or 2 with --quick).
        #[arg(long)]
        runs: Option<usize>,
        /// Only this workload (a matrix name such as `larson-t4`, or a binary
        /// workload such as `larson` for all its rows); repeatable.
        #[arg(long = "workload", value_name = "NAME")]
        workloads: Vec<String>,
        /// Only this allocator (glibc, hakmem, mimalloc, jemalloc, tcmalloc,
        /// hakmem[MODE]); repeatable.
        #[arg(long = "allocator", value_name = "NAME")]
        allocators: Vec<String>,
        /// Add hakmem rows for each HAKMEM_MODE (minimal, fast, balanced, learning, research).
        #[arg(long)]
        modes: bool,
        /// Ablation on larson-t1 and random-mixed: minimal, minimal + each feature, all.
        #[arg(long)]
        ablate: bool,
        /// Instructions per malloc+free pair under callgrind (needs valgrind and cc).
        #[arg(long)]
        instructions: bool,
        /// Output directory (default <target>/bench).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Per-run time limit in seconds (default 600, or 120 with --quick).
        #[arg(long)]
        timeout: Option<u64>,
        /// Do not build first (use the existing release artefacts).
        #[arg(long)]
        no_build: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Build => ci::build(),
        Cmd::Test { no_lint } => ci::test(no_lint),
        Cmd::Loom { extra } => ci::loom(&extra),
        Cmd::Bench {
            quick,
            runs,
            workloads,
            allocators,
            modes,
            ablate,
            instructions,
            out,
            timeout,
            no_build,
        } => bench::bench(&bench::BenchOpts {
            quick,
            runs,
            workloads,
            allocators,
            modes,
            ablate,
            instructions,
            out,
            timeout,
            no_build,
        })
        .map(|_| ()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
