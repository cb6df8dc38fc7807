//! The size tiers through the C ABI (`tests/c/tiers.c` under
//! `LD_PRELOAD=libhakmem.so`): exact class sizes from `malloc_usable_size`
//! around every class boundary, realloc chains across all tiers keeping the
//! contents, and blocks of every tier freed by another thread (the remote
//! counters must count them).

mod common;
use common::*;

const SECTIONS: &[&str] = &[
    "ok classes",
    "ok realloc across tiers",
    "ok remote frees of every tier",
];

#[test]
fn tiers_under_hakmem() {
    let out = run_c_test("tiers", &[], "tiers", 20_000);
    for s in SECTIONS {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(s)),
            "tiers: section `{s}` did not report; stdout:\n{}",
            tail(&out.stdout, 4000)
        );
    }
    // One `remote <size>: ...` line per tier.
    let remote = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("remote "))
        .count();
    assert_eq!(remote, 6, "remote lines:\n{}", tail(&out.stdout, 3000));
}

/// The program itself is valid C: it passes against glibc with
/// `--no-hakmem` (hakmem-only checks skipped), and fails without the
/// preload when not told so.
#[test]
fn tiers_program_is_valid_against_glibc() {
    let exe = compile_c("tiers");
    let mut cmd = plain(&exe);
    cmd.arg("--no-hakmem");
    let out = run(cmd);
    out.assert_success("tiers --no-hakmem against glibc");
    assert!(
        out.stdout.contains("tiers: ") && out.stdout.contains(" 0 failures"),
        "{}",
        tail(&out.stdout, 2000)
    );
    let out = run(plain(&exe));
    assert!(
        !out.status.success(),
        "tiers passed without libhakmem.so preloaded"
    );
}
