//! Edge cases of the C ABI (`tests/c/edge.c` under `LD_PRELOAD`, one mode per test): size 0
//! with big alignments, `posix_memalign`'s errno.

mod common;
use common::*;

/// Runs `edge <mode>` under the preload: every check passes and nothing is reported on stderr.
fn edge(mode: &str, min_checks: u64) -> Output {
    let out = run_c_test("edge", &[mode], "edge", min_checks);
    assert!(
        out.stdout.lines().any(|l| l == format!("ok {mode}")),
        "edge {mode}: no `ok {mode}` line:\n{}",
        tail(&out.stdout, 3000)
    );
    out
}

/// Size 0 with alignments from 16 bytes to 64 MiB, from `posix_memalign`, `memalign` and
/// `aligned_alloc`: each a real block (owned, usable, reallocable, freed without a complaint),
/// never a pointer past the end of its own mapping.
#[test]
fn size_zero_with_big_alignments() {
    let out = edge("memalign0", 1000);
    assert!(
        !out.stderr.contains("hakmem:"),
        "diagnostics for valid blocks:\n{}",
        tail(&out.stderr, 3000)
    );
}

/// `posix_memalign` failing with ENOMEM leaves errno = ENOMEM (as glibc does); success and
/// EINVAL leave it alone.
#[test]
fn posix_memalign_errno() {
    edge("errno", 60);
}
