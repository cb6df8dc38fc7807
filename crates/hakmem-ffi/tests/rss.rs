//! Memory return (`tests/c/rss.c` under `LD_PRELOAD=libhakmem.so`): a
//! program allocates ~1 GiB in mixed sizes on two threads (every page
//! touched), frees it all in random order from both threads, and its
//! resident set must come back to at most 2 x its starting RSS + 16 MiB:
//!
//! * after the purge delay (`HAKMEM_PURGE_DELAY_MS=50`, then 1.5 s of sleep
//!   and one allocator call reaching a slow path, since purges run on
//!   allocator activity), then again after a second round ended by
//!   `malloc_trim(0)`;
//! * by `malloc_trim(0)` alone, with a purge delay (60 s) that never
//!   expires during the run;
//! * after the purge delay when the last frees land in slabs abandoned by an
//!   exited thread *after* a purge pass has run (`late`): those slabs became
//!   free long before the sleep ends, so the pass after it must return them.
//!
//! The runs are serialised (each peaks at ~1.2 GiB).
//!
//! The program prints `rss-<phase>: start=.. before=.. peak=.. freed=..
//! after=.. MiB`; those lines are echoed on stderr (see them with
//! `--nocapture`).

mod common;
use common::*;
use std::sync::Mutex;
use std::time::Duration;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `rss <phases>` with the given purge delay; asserts a clean pass.
fn rss_run(phases: &[&str], delay_ms: &str) {
    let exe = compile_c("rss");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = preloaded(plain(&exe));
    cmd.args(phases).env("HAKMEM_PURGE_DELAY_MS", delay_ms);
    for v in [
        "HAKMEM_FREE_POLICY",
        "HAKMEM_THP",
        "HAKMEM_BIGCACHE",
        "HAKMEM_VERBOSE",
    ] {
        cmd.env_remove(v);
    }
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    for l in out.stdout.lines().filter(|l| l.starts_with("rss-")) {
        eprintln!("HAKMEM_PURGE_DELAY_MS={delay_ms} {l}");
    }
    let fails = fail_lines(&out.stdout);
    assert!(
        out.status.success() && !out.timed_out && fails.is_empty(),
        "rss {phases:?} (HAKMEM_PURGE_DELAY_MS={delay_ms}) exited with {}{}\n--- FAIL lines ---\n{fails}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        out.status,
        if out.timed_out { " (timed out)" } else { "" },
        tail(&out.stdout, 4000),
        tail(&out.stderr, 2000)
    );
    for p in phases {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("rss-{p}: "))),
            "no rss-{p} line:\n{}",
            tail(&out.stdout, 2000)
        );
    }
    assert!(
        out.stdout.contains("rss: ") && out.stdout.contains(" 0 failures"),
        "no clean closing line:\n{}",
        tail(&out.stdout, 2000)
    );
}

#[test]
fn rss_returns_after_purge_delay_then_trim() {
    rss_run(&["delay", "trim"], "50");
}

#[test]
fn rss_returns_after_malloc_trim_alone() {
    rss_run(&["trim"], "60000");
}

#[test]
fn rss_returns_after_late_frees_into_abandoned_slabs() {
    rss_run(&["late"], "50");
}

/// The program is valid C: against glibc (`--no-hakmem`) it passes too.
#[test]
fn rss_program_is_valid_against_glibc() {
    let exe = compile_c("rss");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = plain(&exe);
    cmd.args(["delay", "trim", "late", "--no-hakmem"]);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    out.assert_success("rss trim --no-hakmem against glibc");
}
