//! `hakmem-bench`: allocator workloads for benchmarking whichever malloc is loaded
//! (run it under `LD_PRELOAD=<malloc>.so`). See `benches/README.md`.
//!
//! Output: human-readable lines, then exactly one final stdout line
//! `RESULT {json}`. Exit codes: 0 ok, 2 usage error, 3 content/alignment verification
//! failure, 4 malloc returned NULL.

mod block;
mod cli;
mod fail;
mod pattern;
mod report;
mod rng;
mod runner;
mod workloads;

use std::io::Write;

fn main() {
    let cfg = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(cli::CliError::Help) => {
            println!("{}", cli::usage());
            return;
        }
        Err(cli::CliError::Usage(msg)) => {
            eprintln!("hakmem-bench: {msg}\n{}", cli::usage());
            std::process::exit(2);
        }
    };
    println!(
        "hakmem-bench {}: threads={} seconds={} seed={} min={} max={} slots={}{}",
        cfg.workload.name(),
        cfg.threads,
        cfg.seconds,
        cfg.seed,
        cfg.min,
        cfg.max,
        cfg.slots,
        if cfg.quick { " (quick)" } else { "" }
    );
    let report = workloads::run(&cfg);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report.human()).unwrap();
    writeln!(out, "{}", report.result_line(report::peak_rss_kb())).unwrap();
    out.flush().unwrap();
}
