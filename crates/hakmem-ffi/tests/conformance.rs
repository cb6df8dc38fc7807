//! Runs `tests/c/conformance.c` under `LD_PRELOAD=libhakmem.so`: every
//! exported malloc-family function and every C/POSIX rule of the contract
//! (see the comments in the C file for the full list).

mod common;
use common::*;

/// Sections the C program reports as `ok <section>`; each must be present,
/// so a program that silently skips a part fails.
const SECTIONS: &[&str] = &[
    "ok malloc(0)",
    "ok free(NULL), errno preserved by free",
    "ok malloc alignment/usable size/no overlap",
    "ok calloc alignment/usable size/no overlap",
    "ok malloc_usable_size",
    "ok huge sizes -> NULL + ENOMEM",
    "ok calloc/reallocarray multiplication overflow",
    "ok bad alignments -> EINVAL",
    "ok aligned allocation grid",
    "ok valloc/pvalloc",
    "ok calloc zeroes (also after reuse)",
    "ok realloc",
    "ok reallocarray",
    "ok free_sized/free_aligned_sized",
    "ok free releases memory",
    "ok __libc_* aliases and dlsym",
    "ok hakmem_owns",
    "ok hakmem_stats_format: hakmem-stats: ",
    "ok fork while threads allocate",
];

#[test]
fn conformance_under_hakmem() {
    let out = run_c_test("conformance", &[], "conformance", 50_000);
    for s in SECTIONS {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(s)),
            "conformance: section `{s}` did not report; stdout:\n{}",
            tail(&out.stdout, 4000)
        );
    }
    // The stats line the program printed has every documented key.
    let stats = parse_stats(&out.stdout).expect("a hakmem-stats line in the output");
    for k in STATS_KEYS {
        assert!(stats.contains_key(*k), "stats line lacks {k}: {stats:?}");
    }
}

/// Without the preload (and without `--no-hakmem`) the program must fail:
/// shows that its hakmem checks are live and cannot pass against glibc.
#[test]
fn conformance_fails_without_hakmem() {
    let exe = compile_c("conformance");
    let out = run(plain(&exe));
    assert!(
        !out.status.success(),
        "conformance passed without libhakmem.so preloaded:\n{}",
        tail(&out.stdout, 2000)
    );
    assert!(
        out.stdout
            .contains("hakmem_owns/hakmem_stats_format not found: is libhakmem.so preloaded?"),
        "unexpected output:\n{}",
        tail(&out.stdout, 2000)
    );
}
