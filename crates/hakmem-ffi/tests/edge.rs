//! Edge cases of the C ABI (`tests/c/edge.c` under `LD_PRELOAD`, one mode per test): size 0
//! with big alignments, `posix_memalign`'s errno, bad frees of page runs and direct mappings.

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

/// The blocks the bad-free tests use: page runs (above 64 KiB, and small sizes with a page
/// alignment) and direct mappings (above 1 MiB, also with an alignment beyond a chunk), as
/// (size, alignment; 0: `malloc`).
const BAD_FREE_BLOCKS: &[(usize, usize)] = &[
    (128 << 10, 0),
    (1 << 20, 0),
    (10_000, 4096),
    (1536 << 10, 0),
    (8 << 20, 0),
    (5 << 20, 8 << 20),
];

/// Runs `edge badfree SIZE ALIGN HOW`, by default (abort) or with `HAKMEM_ON_ERROR=warn`;
/// returns the output and the pointer that was freed wrongly.
fn badfree(size: usize, align: usize, how: &str, warn: bool) -> (Output, String) {
    let exe = compile_c("edge");
    let mut cmd = preloaded(plain(&exe));
    cmd.args(["badfree", &size.to_string(), &align.to_string(), how]);
    cmd.env_remove("HAKMEM_ON_ERROR").env_remove("HAKMEM_MODE");
    if warn {
        // The 1000 blocks allocated after the bad free: without huge pages, each header page
        // faults in 4 KiB, not 2 MiB.
        cmd.env("HAKMEM_ON_ERROR", "warn").env("HAKMEM_THP", "off");
    }
    let out = run(cmd);
    let q = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("bad p="))
        .and_then(|l| l.split_once(" q="))
        .map(|(_, q)| q.to_string())
        .unwrap_or_else(|| panic!("badfree {size} {align} {how}: no `bad` line:\n{out:?}"));
    (out, q)
}

/// Checks one bad free of every kind of block, aborting and warning: the report names the
/// fault and the pointer; by default the process dies of SIGABRT right after it, with
/// `HAKMEM_ON_ERROR=warn` it goes on and nothing is corrupted (the C program checks).
fn check_bad_free(how: &str, fault: &str, reports: usize) {
    use std::os::unix::process::ExitStatusExt;
    for &(size, align) in BAD_FREE_BLOCKS {
        let what = format!("badfree {size} {align} {how}");
        let (out, q) = badfree(size, align, how, false);
        let want = format!("hakmem: {fault}: free({q})");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{what}: not killed by SIGABRT ({}):\n{}",
            out.status,
            tail(&out.stderr, 2000)
        );
        let line = out.stderr.lines().find(|l| l.starts_with("hakmem:"));
        assert!(
            line.is_some_and(|l| l.starts_with(&want)
                && l.ends_with("aborting (HAKMEM_ON_ERROR=warn to continue)")),
            "{what}: want `{want}...; aborting ...`, got:\n{}",
            tail(&out.stderr, 2000)
        );
        assert!(
            !out.stdout.contains("ok badfree"),
            "{what}: went on after the report"
        );

        let (out, q) = badfree(size, align, how, true);
        out.assert_success(&format!("{what} (warn)"));
        assert!(
            out.stdout.contains("ok badfree") && fail_lines(&out.stdout).is_empty(),
            "{what} (warn): {}",
            tail(&out.stdout, 2000)
        );
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("hakmem:"))
            .collect();
        let want = format!("hakmem: {fault}: free({q})");
        assert!(
            lines.len() == reports
                && lines
                    .iter()
                    .all(|l| l.starts_with(&format!("hakmem: {fault}: free(")))
                && lines[0].starts_with(&want)
                && lines.iter().all(|l| l.ends_with("; block left alone")),
            "{what} (warn): want {reports} report(s) `{want}...; block left alone`, got:\n{}",
            tail(&out.stderr, 2000)
        );
    }
}

/// A second free of a page run or of a direct mapping (whose mapping the BigCache keeps) is a
/// double free, never a second insertion into a free list or the cache.
#[test]
fn double_free_of_runs_and_mappings() {
    check_bad_free("double", "double free", 1);
}

/// Freeing p + 16 and p + 4096 of a live run or mapping is an invalid free (interior pointer);
/// the block stays intact.
#[test]
fn interior_free_of_runs_and_mappings() {
    check_bad_free("interior", "invalid free: interior pointer", 2);
}

/// Freeing p + 4096 after p was freed is an invalid free (not a block): it never started one.
#[test]
fn free_inside_freed_runs_and_mappings() {
    check_bad_free("freed", "invalid free: not a block", 1);
}

/// Under an address-space limit, memory hakmem holds free (Tiny, L2 and L2.5 slabs, page-run
/// segments, mappings in the BigCache) is given back when the OS refuses a request, which is
/// then retried: after filling the space with one size and freeing everything, another size
/// succeeds at once, without `malloc_trim`.
#[test]
fn out_of_address_space_recovers_after_free() {
    let out = edge("oom", 10);
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("oom: "))
            .count(),
        6,
        "{}",
        tail(&out.stdout, 3000)
    );
}

/// With 6 MiB of address space left, a 4 MiB-aligned reservation of 4 MiB (a direct mapping, a
/// page-run segment) still fits: the page source does not over-reserve twice the size first.
#[test]
fn aligned_reservation_fits_tight_address_space() {
    edge("tight", 5);
}
