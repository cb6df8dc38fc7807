//! Multi-threaded stress of libhakmem.so through `tests/c/stress.c`.

mod common;
use common::*;

/// Parses `key=N` from the `stress-<mode>:` report line.
fn report_value(stdout: &str, prefix: &str, key: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix) && l.contains('='))
        .unwrap_or_else(|| panic!("no `{prefix}` report line in:\n{}", tail(stdout, 3000)));
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in `{line}`"))
}

/// 8 threads, random sizes 1 B..4 MiB (malloc/calloc/aligned_alloc),
/// patterns verified before every free, a third of the blocks freed by
/// another thread, reallocs checked for content preservation.
#[test]
fn stress_mix_8_threads_cross_thread_free() {
    let out = run_c_test("stress", &["mix", "--threads", "8"], "stress-mix", 60_000);
    for key in ["transfers", "reallocs", "verified"] {
        let v = report_value(&out.stdout, "stress-mix:", key);
        assert!(v > 1000, "stress-mix: only {v} {key}");
    }
}

/// 200 short-lived threads (4 at a time) that free blocks of the main
/// thread and leave blocks for it; then detached threads exiting while the
/// main thread allocates.
#[test]
fn stress_thread_churn() {
    let out = run_c_test(
        "stress",
        &["churn", "--threads", "200"],
        "stress-churn",
        10_000,
    );
    let left = report_value(&out.stdout, "stress-churn:", "blocks-left-for-main");
    assert_eq!(left, 200 * 32, "blocks left by threads and freed by main");
}
