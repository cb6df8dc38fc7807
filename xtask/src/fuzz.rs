//! `cargo xtask fuzz`: the shadow-model fuzzer (`crates/hakmem-ffi/tests/c/fuzz.c`) under
//! `LD_PRELOAD=libhakmem.so` for a given time in every mode (or one), with a random seed
//! unless one is given.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::config::{cargo_bin, target_dir, workspace_root};
use crate::util::{self, header};

/// The configurations a run covers: (name, environment).
const CONFIGS: [(&str, &[(&str, &str)]); 6] = [
    ("minimal", &[("HAKMEM_MODE", "minimal")]),
    ("fast", &[("HAKMEM_MODE", "fast")]),
    ("balanced", &[("HAKMEM_MODE", "balanced")]),
    ("learning", &[("HAKMEM_MODE", "learning")]),
    ("research", &[("HAKMEM_MODE", "research")]),
    ("dontneed", &[("HAKMEM_FREE_POLICY", "dontneed")]),
];

#[derive(Args, Debug)]
pub struct FuzzOpts {
    /// Seconds of fuzzing per mode.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seed of the random sequences (default: a random one, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Only this mode: minimal, fast, balanced, learning, research, dontneed
    /// (HAKMEM_FREE_POLICY=dontneed), or glibc (no preload: checks the program itself).
    #[arg(long)]
    pub mode: Option<String>,
    /// Threads in the fuzz program.
    #[arg(long, default_value_t = 4)]
    pub threads: u32,
    /// Steer clear of the known hakmem bugs (see `--skip-known` in fuzz.c).
    #[arg(long)]
    pub skip_known: bool,
}

/// A seed from the clock and the process id (splitmix64-mixed).
fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = t ^ (u64::from(std::process::id()) << 32);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    // small enough to type back in
    (z ^ (z >> 31)) % 1_000_000_000
}

/// `cargo build --release -p hakmem-ffi`; returns the path of libhakmem.so.
fn build_library() -> Result<PathBuf> {
    let mut c = Command::new(cargo_bin());
    c.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("LD_PRELOAD")
        .args(["build", "--release", "-p", "hakmem-ffi"]);
    util::run_status(&mut c)?;
    let so = target_dir().join("release").join("libhakmem.so");
    if !so.exists() {
        bail!("build succeeded but {} is missing", so.display());
    }
    Ok(so)
}

/// Compiles fuzz.c with `cc -O2 -pthread -Wall -Wextra` into `target/fuzz/fuzz`.
fn build_program() -> Result<PathBuf> {
    let src = workspace_root().join("crates/hakmem-ffi/tests/c/fuzz.c");
    let dir = target_dir().join("fuzz");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let exe = dir.join("fuzz");
    let mut c = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    c.args(["-O2", "-g", "-pthread", "-Wall", "-Wextra", "-o"])
        .arg(&exe)
        .arg(&src)
        .env_remove("LD_PRELOAD");
    util::run_status(&mut c)?;
    Ok(exe)
}

/// What one run printed.
struct RunOutput {
    ok: bool,
    stdout: String,
    stderr: String,
    status: String,
}

/// Runs `cmd` with captured output; killed after `limit`.
fn run_captured(mut cmd: Command, limit: Duration) -> Result<RunOutput> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = util::show(&cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out_h = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err_h = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let (status, timed_out) = loop {
        if let Some(st) = child.try_wait()? {
            break (st, false);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break (child.wait()?, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_h.join().unwrap_or_default();
    let stderr = err_h.join().unwrap_or_default();
    Ok(RunOutput {
        ok: status.success() && !timed_out,
        status: if timed_out {
            format!("{status} (killed after {}s: hung?)", limit.as_secs())
        } else {
            status.to_string()
        },
        stdout,
        stderr,
    })
}

/// The `ops=` count of an `ok fuzz` line.
pub fn ok_ops(stdout: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| l.starts_with("ok fuzz "))?;
    line.split_whitespace()
        .find_map(|t| t.strip_prefix("ops="))
        .and_then(|v| v.parse().ok())
}

/// Lines of hakmem's stderr that report a misuse or a pointer it does not know.
fn misuse_reports(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains("not allocated by hakmem")
                || l.contains("double free")
                || l.contains("invalid free")
                || l.contains("corruption")
                || l.contains("panic")
        })
        .collect()
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `cargo xtask fuzz`.
pub fn fuzz(opts: &FuzzOpts) -> Result<()> {
    let configs: Vec<(&str, &[(&str, &str)])> = match opts.mode.as_deref() {
        None => CONFIGS.to_vec(),
        Some("glibc") => vec![("glibc", &[])],
        Some(m) => match CONFIGS.iter().find(|(n, _)| *n == m) {
            Some(c) => vec![*c],
            None => bail!(
                "unknown mode `{m}` (one of {}, glibc)",
                CONFIGS.map(|c| c.0).join(", ")
            ),
        },
    };
    let seed = opts.seed.unwrap_or_else(random_seed);
    header("cargo build --release -p hakmem-ffi");
    let so = build_library()?;
    header("cc -O2 -pthread -Wall -Wextra crates/hakmem-ffi/tests/c/fuzz.c");
    let exe = build_program()?;
    println!(
        "\nfuzz: seed {seed}, {} s per mode, {} threads{}",
        opts.seconds,
        opts.threads,
        if opts.skip_known {
            ", skipping the known bugs"
        } else {
            ""
        }
    );
    let mut total = 0u64;
    let mut failed = Vec::new();
    for (name, env) in &configs {
        header(&format!("fuzz: {name}"));
        let out = run_one(&exe, &so, name, env, seed, opts)?;
        let reports = misuse_reports(&out.stderr);
        match ok_ops(&out.stdout) {
            Some(ops) if out.ok && reports.is_empty() => {
                total += ops;
                println!("{}", out.stdout.lines().last().unwrap_or_default());
            }
            _ => {
                println!("{name}: FAILED ({})", out.status);
                println!("{}", last_lines(&out.stdout, 20));
                if !reports.is_empty() {
                    println!(
                        "hakmem reported:\n{}",
                        reports[..reports.len().min(10)].join("\n")
                    );
                }
                println!("stderr (tail):\n{}", last_lines(&out.stderr, 10));
                println!(
                    "reproduce: cargo xtask fuzz --seconds {} --seed {seed} --mode {name} --threads {}{}",
                    opts.seconds,
                    opts.threads,
                    if opts.skip_known { " --skip-known" } else { "" }
                );
                failed.push(*name);
            }
        }
    }
    println!(
        "\nfuzz: {total} operations without a failure in {} of {} modes (seed {seed})",
        configs.len() - failed.len(),
        configs.len()
    );
    if !failed.is_empty() {
        bail!("fuzz failed in {} (seed {seed})", failed.join(", "));
    }
    Ok(())
}

fn run_one(
    exe: &Path,
    so: &Path,
    name: &str,
    env: &[(&str, &str)],
    seed: u64,
    opts: &FuzzOpts,
) -> Result<RunOutput> {
    let mut c = Command::new(exe);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HAKMEM_") {
            c.env_remove(k);
        }
    }
    c.env_remove("LD_PRELOAD");
    if name != "glibc" {
        c.env("LD_PRELOAD", so);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(["--seed", &seed.to_string()])
        .args(["--seconds", &opts.seconds.to_string()])
        .args(["--threads", &opts.threads.to_string()]);
    if opts.skip_known {
        c.arg("--skip-known");
    }
    println!("$ {}", util::show(&c));
    run_captured(c, Duration::from_secs(opts.seconds + 120))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_line_and_reports() {
        let out = "fuzz: seed=1\nok fuzz ops=1234 seed=1 threads=4 malloc=3\n";
        assert_eq!(ok_ops(out), Some(1234));
        assert_eq!(ok_ops("FAIL x\n"), None);
        let err = "hakmem: hakmem-config: mode=research\nhakmem: free(0x1): pointer not allocated by hakmem; ignored\n";
        assert_eq!(misuse_reports(err).len(), 1);
    }
}
