//! `cargo xtask`: project automation for hakmem.
//!
//! - `cargo xtask build`: release build of `libhakmem.so` and the workload binary.
//! - `cargo xtask test`: the CI sequence (tools, fmt, clippy, build, tests, loom, bench smoke).
//! - `cargo xtask loom`: the loom models under `--cfg loom`.
//! - `cargo xtask bench`: hakmem against glibc and the peers (mimalloc v3, jemalloc 5.3 and
//!   snmalloc built from their crates in `benches/peers`, tcmalloc and Debian's older mimalloc
//!   and jemalloc), on the workload matrix and on real programs (`--apps` for those alone).
//! - `cargo xtask report <record.json> [--out DIR]`: the report and chart of a saved record,
//!   rendered again.
//! - `cargo xtask fuzz`: the shadow-model fuzzer under `LD_PRELOAD` in every mode.
//! - `cargo xtask install [--prefix DIR | --check]`: libhakmem.so/.a, `hakmem.h` and `hakmem.pc` for C
//!   and C++ programs.

// The `///` comments on the command-line options are clap's help text, written for a terminal
// (`hakmem[MODE]`, `<target>/bench`), not rustdoc markup.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod apps;
mod bench;
mod chart;
mod ci;
mod config;
mod fuzz;
mod install;
mod model;
mod parse;
mod peers;
mod report;
mod stats;
mod util;

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
    /// The CI command: tools, fmt, clippy, release build, tests, loom models, bench smoke.
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
    Bench(bench::BenchOpts),
    /// Render the report (Markdown and chart) of a saved bench record again.
    Report {
        /// The JSON record (`<target>/bench/<timestamp>.json`).
        record: std::path::PathBuf,
        /// Where `<stem>.md` and `<stem>.svg` go (default: the record's folder).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Fuzz libhakmem.so against a shadow model for N seconds in every mode (or one).
    Fuzz(fuzz::FuzzOpts),
    /// Release build, then install libhakmem.so.0.1.0 (+ symlinks, split debug info),
    /// libhakmem.a, include/hakmem.h and lib/pkgconfig/hakmem.pc under a prefix.
    Install(install::InstallOpts),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Build => ci::build(),
        Cmd::Test { no_lint } => ci::test(no_lint),
        Cmd::Loom { extra } => ci::loom(&extra),
        Cmd::Bench(opts) => bench::bench(&opts).map(|_| ()),
        Cmd::Report { record, out } => report::rerender(&record, out.as_deref()),
        Cmd::Fuzz(opts) => fuzz::fuzz(&opts),
        Cmd::Install(opts) => install::run(&opts),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
