//! Memory given back while the program idles: the background purger
//! (`tests/c/idle.c` under `LD_PRELOAD=libhakmem.so`).
//!
//! * `burst`: ~1 GiB in mixed sizes (70% of 8 B-1 KiB, 25% of 2-256 KiB,
//!   5% of 1-9 MiB by count, every page touched) freed on one thread, then
//!   3 s of one malloc(64)/free every 10 ms, or of sleep: RSS <= 48 MiB at
//!   the end, and the burst's peak RSS <= 1.05x glibc's (same program, same
//!   seed). With `HAKMEM_PURGE_THREAD=0` the memory stays (the slow paths'
//!   passes never come), which shows the test measures the purger.
//! * `remote`: 4 threads each free the blocks of the next one, whose owner
//!   then idles; `malloc_trim(0)` must bring RSS to <= 64 MiB.
//! * `sleep`: after the purge, the purger uses <= 10 ms of CPU in 10 s.
//! * `forkbusy`: 40 forks while 4 threads allocate and free and the purger
//!   runs; every child allocates and exits 0.
//!
//! The runs are serialised (each peaks at ~1.1 GiB).

mod common;
use common::*;
use std::sync::Mutex;
use std::time::Duration;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `idle <args>` (preloaded unless `glibc`) with `env`; returns its stdout.
fn idle(args: &[&str], env: &[(&str, &str)], glibc: bool) -> String {
    let exe = compile_c("idle");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = if glibc {
        plain(&exe)
    } else {
        preloaded(plain(&exe))
    };
    cmd.args(args);
    if glibc {
        cmd.arg("--no-hakmem");
    }
    for v in [
        "HAKMEM_FREE_POLICY",
        "HAKMEM_PURGE_DELAY_MS",
        "HAKMEM_PURGE_THREAD",
        "HAKMEM_MODE",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    let out = run_with_timeout(cmd, Duration::from_secs(90));
    for l in out.stdout.lines().filter(|l| l.starts_with("idle-")) {
        eprintln!("{args:?} {env:?}{} {l}", if glibc { " glibc" } else { "" });
    }
    let fails = fail_lines(&out.stdout);
    assert!(
        out.status.success() && !out.timed_out && fails.is_empty(),
        "idle {args:?} {env:?} exited with {}{}\n--- FAIL lines ---\n{fails}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        if out.timed_out { " (timed out)" } else { "" },
        tail(&out.stdout, 4000),
        tail(&out.stderr, 2000)
    );
    out.stdout
}

/// The value of `key=<n>` in the line starting with `prefix`.
fn field(out: &str, prefix: &str, key: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in:\n{out}"));
    let at = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"));
    line[at + key.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("bad {key}= in {line}"))
}

#[test]
fn burst_goes_back_while_the_program_keeps_calling() {
    let out = idle(&["burst", "calls"], &[], false);
    let glibc = idle(&["burst", "calls"], &[], true);
    let (peak, peak_glibc) = (
        field(&out, "idle-burst:", "peak"),
        field(&glibc, "idle-burst:", "peak"),
    );
    assert!(
        peak * 100 <= peak_glibc * 105,
        "burst peak RSS {peak} MiB vs glibc's {peak_glibc} MiB (limit 1.05x)"
    );
}

#[test]
fn burst_goes_back_while_the_program_sleeps() {
    idle(&["burst", "sleep"], &[], false);
}

#[test]
fn without_the_purger_a_sleeping_program_keeps_its_memory() {
    let out = idle(
        &["burst", "sleep"],
        &[("HAKMEM_PURGE_THREAD", "0"), ("IDLE_MAX_MIB", "1000000")],
        false,
    );
    let after = field(&out, "idle-burst:", "after");
    assert!(after > 256, "RSS {after} MiB with HAKMEM_PURGE_THREAD=0");
}

#[test]
fn malloc_trim_takes_back_blocks_freed_to_idle_threads() {
    idle(&["remote", "4", "small"], &[], false);
}

#[test]
fn an_idle_purger_sleeps() {
    idle(&["sleep", "10"], &[], false);
}

/// `HAKMEM_FREE_POLICY=free` reaches the page runs too: their pages are given back with
/// `MADV_FREE`, which may keep their contents, so `calloc` must still clear them.
#[test]
fn lazily_purged_run_pages_read_zero_from_calloc() {
    let out = idle(
        &["lazyzero"],
        &[
            ("HAKMEM_FREE_POLICY", "free"),
            ("HAKMEM_PURGE_THREAD", "on"),
        ],
        false,
    );
    assert!(out.contains("idle-lazyzero: 4 sizes checked"), "{out}");
}

#[test]
fn fork_from_busy_threads_while_the_purger_runs() {
    idle(&["forkbusy"], &[], false);
}

/// The program is valid C: against glibc (`--no-hakmem`) it passes too.
#[test]
fn idle_program_is_valid_against_glibc() {
    idle(&["remote", "4", "small"], &[], true);
    idle(&["forkbusy"], &[], true);
}
