//! Thread life cycles under `LD_PRELOAD=libhakmem.so`, through
//! `tests/c/threads.c` (its header describes each mode in detail):
//!
//! * `churn`: 10,000 short-lived threads (8 alive at once) whose blocks are
//!   freed by their owner, by a live neighbour, by threads started after
//!   the owner exited, and by the main thread; contents verified at every
//!   free; the resident set must not grow with the number of threads;
//! * `fork`: 20 forks while 4 threads allocate and free (2+ MiB blocks
//!   included); every child allocates 100 MB and must exit cleanly within
//!   its deadline (a deadlock fails the test instead of hanging it);
//! * `pc`: producer/consumer cross-thread frees with 4 x nproc (at least
//!   16) threads, more than there are cores, through lock-free and mutex
//!   inboxes.
//!
//! The programs' report lines are echoed on stderr (see them with
//! `--nocapture`).

mod common;
use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Runs `threads <args>` under `LD_PRELOAD` with `HAKMEM_STATS=1` and the
/// given extra environment, within `timeout`. Asserts exit status 0, no
/// `FAIL` line and the closing `threads-<mode>: N checks, 0 failures` line
/// (N >= `min_checks`); echoes the report lines. Returns the output and
/// the exit stats line.
fn run_threads(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
    min_checks: u64,
) -> (Output, BTreeMap<String, u64>) {
    let exe = compile_c("threads");
    let mut cmd = preloaded(plain(&exe));
    cmd.args(args).env("HAKMEM_STATS", "1");
    for v in [
        "HAKMEM_FREE_POLICY",
        "HAKMEM_PURGE_DELAY_MS",
        "HAKMEM_THP",
        "HAKMEM_BIGCACHE",
        "HAKMEM_VERBOSE",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let out = run_with_timeout(cmd, timeout);
    let secs = t0.elapsed().as_secs_f64();
    let what = format!("threads {args:?} (env {env:?}) under LD_PRELOAD");
    for l in out.stdout.lines().filter(|l| {
        ["churn-", "fork-", "pc-", "threads-", "  hung"]
            .iter()
            .any(|p| l.starts_with(p))
    }) {
        eprintln!("{l}");
    }
    eprintln!("{what}: {secs:.1} s wall");
    let fails = fail_lines(&out.stdout);
    assert!(
        out.status.success() && !out.timed_out && fails.is_empty(),
        "{what} exited with {}{} after {secs:.1} s\n--- FAIL lines ---\n{fails}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        out.status,
        if out.timed_out {
            " (killed: timed out, deadlock?)"
        } else {
            ""
        },
        tail(&out.stdout, 6000),
        tail(&out.stderr, 3000),
    );
    let prog = format!("threads-{}: ", args[0]);
    let summary = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(prog.as_str()))
        .unwrap_or_else(|| {
            panic!(
                "{what}: no closing `{prog}...` line in:\n{}",
                tail(&out.stdout, 4000)
            )
        });
    let words: Vec<&str> = summary.split_whitespace().collect();
    let checks: u64 = words.first().and_then(|w| w.parse().ok()).unwrap_or(0);
    assert!(
        words.len() == 4 && words[1] == "checks," && words[2] == "0" && words[3] == "failures",
        "{what}: bad closing line `{prog}{summary}`"
    );
    assert!(
        checks >= min_checks,
        "{what}: only {checks} checks ran (expected >= {min_checks})\n{}",
        tail(&out.stdout, 3000)
    );
    let stats = parse_stats(&out.stderr).unwrap_or_else(|| {
        panic!(
            "{what}: HAKMEM_STATS=1 printed no parsable `hakmem-stats:` line on stderr:\n{}",
            tail(&out.stderr, 3000)
        )
    });
    eprintln!(
        "{what}: exit {}",
        out.stderr
            .lines()
            .rev()
            .find(|l| l.contains("hakmem-stats:"))
            .unwrap_or("")
    );
    (out, stats)
}

/// The integer `key=N` from the report line starting with `prefix`.
fn report_value(stdout: &str, prefix: &str, key: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix) && l.contains(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no `{prefix}` line with {key}= in:\n{}", tail(stdout, 3000)));
    // The first integer `key=N` (`churn-rss:` has `warmup=12.9 ... MiB`
    // before `(warmup=13492224 ... bytes)`).
    line.split(|c: char| c.is_whitespace() || c == '(')
        .find_map(|t| t.strip_prefix(&format!("{key}="))?.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key}= in `{line}`"))
}

/// 10,000 threads in waves of 8, each allocating tiny, L2 and (every 4th
/// thread) L2.5 blocks filled with a pattern derived from (thread, block):
/// a quarter freed by the next thread of the wave while the owner runs, a
/// quarter by a thread of a later wave (after the owner exited), a quarter
/// by the main thread after the join, a quarter by the owner; every block
/// verified when freed. `HAKMEM_PURGE_DELAY_MS=50`.
#[test]
fn thread_churn_10000_threads_memory_does_not_grow() {
    let (out, stats) = run_threads(
        &[
            "churn",
            "--threads",
            "10000",
            "--alive",
            "8",
            "--warmup",
            "200",
        ],
        &[("HAKMEM_PURGE_DELAY_MS", "50")],
        Duration::from_secs(120),
        800_000,
    );
    let s = &out.stdout;
    assert_eq!(report_value(s, "churn-report:", "allocs"), 805_000);
    assert_eq!(report_value(s, "churn-report:", "verified"), 805_000);
    for key in ["live-handoffs", "late-frees", "main-frees"] {
        let v = report_value(s, "churn-report:", key);
        assert!(v >= 100_000, "churn: only {v} {key}:\n{}", tail(s, 3000));
    }
    let warm = report_value(s, "churn-rss:", "warmup");
    let fin = report_value(s, "churn-rss:", "final");
    // Memory must not grow with the number of threads: slabs a thread
    // leaves behind when it exits (abandoned, some still holding blocks
    // that others free later) are adopted and reused by later threads, and
    // empty ones are purged. After the first 200 threads every size class
    // has been through that cycle, so the remaining 9,800 threads must fit
    // in about the same memory. The bound allows for per-thread and global
    // slab caches and for memory freed within the last purge delay, which
    // is still resident.
    let bound = 2 * warm + 32 * MIB;
    assert!(
        fin <= bound,
        "churn: RSS after 10,000 threads is {:.1} MiB > 2 x warm-up RSS ({:.1} MiB, after 200 threads) + 32 MiB: \
         memory grows with the number of threads (abandoned slabs not reused?)\n{}",
        fin as f64 / MIB as f64,
        warm as f64 / MIB as f64,
        tail(s, 3000)
    );
    // Remote frees happened and were collected (by live owners, or by the
    // threads that adopted abandoned slabs).
    assert!(
        stats["tiny.remote"] > 0 && stats["pool.remote"] > 0,
        "churn: no remote frees counted: {stats:?}"
    );
}

/// 4 threads allocate and free continuously (tiny to 6 MiB) while the main
/// thread forks 20 times; each child frees blocks inherited from the
/// parent's threads, allocates 100 MB (odd children on two threads) and
/// must `_exit(0)` within 20 s (the parent polls `waitpid` with a
/// deadline and kills a hung child). The whole run has a wall-clock limit
/// too, so a deadlocked parent fails the test as well.
#[test]
fn fork_while_threads_allocate() {
    let (out, _stats) = run_threads(
        &["fork", "--forks", "20"],
        &[],
        Duration::from_secs(150),
        10_000,
    );
    assert_eq!(report_value(&out.stdout, "fork-report:", "ok"), 20);
    assert!(report_value(&out.stdout, "fork-report:", "large") > 0);
}

/// 4 x nproc threads (at least 16, at most 64), half producers, half
/// consumers: every block crosses threads (some twice, through a second
/// consumer; some realloc'ed by a consumer) and is verified on receipt.
#[test]
fn producer_consumer_more_threads_than_cores() {
    let nproc = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = (4 * nproc).clamp(16, 64);
    let producers = (threads / 2) as u64;
    // The same total work whatever the thread count.
    let items = (240_000 / producers).max(2_000);
    let (t, i) = (threads.to_string(), items.to_string());
    let (out, stats) = run_threads(
        &["pc", "--threads", &t, "--items", &i],
        &[],
        Duration::from_secs(120),
        producers * items,
    );
    let s = &out.stdout;
    assert_eq!(report_value(s, "pc-report:", "sent"), producers * items);
    assert_eq!(report_value(s, "pc-report:", "freed"), producers * items);
    assert!(report_value(s, "pc-report:", "forwarded") > 0);
    assert!(
        stats["tiny.remote"] > 0 && stats["pool.remote"] > 0,
        "pc: no remote frees counted: {stats:?}"
    );
}

/// The program is valid C: against glibc (`--no-hakmem`, smaller runs) it
/// passes too.
#[test]
fn threads_program_is_valid_against_glibc() {
    let exe = compile_c("threads");
    for args in [
        &["churn", "--threads", "800", "--no-hakmem"][..],
        &["fork", "--forks", "3", "--no-hakmem"],
        &["pc", "--threads", "8", "--items", "5000", "--no-hakmem"],
    ] {
        let mut cmd = plain(&exe);
        cmd.args(args);
        let out = run_with_timeout(cmd, Duration::from_secs(60));
        out.assert_success(&format!("threads {args:?} against glibc"));
        let fails = fail_lines(&out.stdout);
        assert!(fails.is_empty(), "threads {args:?} against glibc:\n{fails}");
    }
}
