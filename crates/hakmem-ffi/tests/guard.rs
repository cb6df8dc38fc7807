//! Guard-page blocks under `LD_PRELOAD=libhakmem.so` (`tests/c/guard.c`, one mode per
//! process, blocks made with `hakmem_guarded_malloc`): an overflow one byte past a block and a
//! write into a freed block die by `SIGABRT` with the one report line the program predicts;
//! double and interior frees of guarded blocks are reported like any other; ordinary use
//! (placement, usable size, realloc, all 256 slots, 300 rounds through the quarantine) passes;
//! a fault elsewhere reaches the action that was there before hakmem's handler.

mod common;
use common::*;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

fn probe(mode: &str, warn: bool) -> Output {
    probe_with(mode, warn, &[])
}

fn probe_with(mode: &str, warn: bool, env: &[(&str, &str)]) -> Output {
    let mut cmd = preloaded(plain(compile_c("guard")));
    cmd.arg(mode).envs(env.iter().copied());
    if warn {
        cmd.env("HAKMEM_ON_ERROR", "warn");
    }
    run_with_timeout(cmd, Duration::from_secs(60))
}

/// Runs a faulting mode and checks the abort and the predicted report line.
fn dies_with_report(mode: &str, warn: bool) {
    dies_with_report_in(mode, warn, &[]);
}

fn dies_with_report_in(mode: &str, warn: bool, env: &[(&str, &str)]) {
    let out = probe_with(mode, warn, env);
    let what = format!("guard {mode} (warn: {warn}, {env:?})");
    let expect = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("expect: "))
        .unwrap_or_else(|| panic!("{what}: no expect line:\n{}", tail(&out.stdout, 2000)));
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{what}: expected SIGABRT, got {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        tail(&out.stdout, 2000),
        tail(&out.stderr, 2000)
    );
    let reports: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("hakmem:"))
        .collect();
    assert_eq!(
        reports,
        [expect],
        "{what}: stderr:\n{}",
        tail(&out.stderr, 2000)
    );
}

#[test]
fn overflow_past_a_guarded_block_aborts_with_a_report() {
    dies_with_report("overflow", false);
    // A fault cannot be resumed: warn does not apply.
    dies_with_report("overflow", true);
}

#[test]
fn use_after_free_of_a_guarded_block_aborts_with_a_report() {
    dies_with_report("uaf", false);
    dies_with_report("uaf", true);
}

#[test]
fn double_and_interior_frees_of_guarded_blocks_are_reported() {
    for (mode, fault) in [
        ("double", "hakmem: double free: free(0x"),
        (
            "interior",
            "hakmem: invalid free: interior pointer: free(0x",
        ),
    ] {
        let out = probe(mode, false);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "guard {mode}: {}\n{}",
            out.status,
            tail(&out.stderr, 2000)
        );
        assert!(
            out.stderr.contains(fault),
            "guard {mode}: {}",
            tail(&out.stderr, 2000)
        );
        let out = probe(mode, true);
        out.assert_success(&format!("guard {mode} with HAKMEM_ON_ERROR=warn"));
        assert!(out.stdout.contains(&format!("ok {mode}")));
        assert!(out.stderr.contains(fault) && out.stderr.contains("left alone"));
    }
}

/// Faults that are not the guard pages' go on to the action that was there before.
#[test]
fn foreign_faults_go_to_the_previous_action() {
    for mode in ["foreign", "raise"] {
        let out = probe(mode, false);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSEGV),
            "guard {mode}: {}\n{}",
            out.status,
            tail(&out.stderr, 2000)
        );
        assert!(
            !out.stderr.contains("hakmem:"),
            "guard {mode}: {}",
            out.stderr
        );
    }
    let out = probe("chain", false);
    assert_eq!(
        out.status.code(),
        Some(3),
        "guard chain: {}\n{}",
        out.status,
        out.stderr
    );
    assert!(out.stdout.contains("own handler"));
    assert!(
        !out.stderr.contains("hakmem:"),
        "guard chain: {}",
        out.stderr
    );
}

#[test]
fn guarded_blocks_work_and_slots_are_reused() {
    run_c_test("guard", &["ok"], "guard", 60);
}

/// The slab tiers' sampling: with `HAKMEM_GUARD_SAMPLE=1`, alone or in the hardened mode, a
/// plain `malloc(100)` is a guarded block, and its overflow or use after free is caught the
/// same way.
#[test]
fn sampled_mallocs_are_guarded() {
    let sampled = [("GUARD_VIA_MALLOC", "1"), ("HAKMEM_GUARD_SAMPLE", "1")];
    let secure = [sampled[0], sampled[1], ("HAKMEM_SECURE", "1")];
    for env in [&sampled[..], &secure[..]] {
        dies_with_report_in("overflow", false, env);
        dies_with_report_in("uaf", false, env);
    }
}

/// The hardened mode ends every slab in a guard page: an overflow that runs from the last
/// block of a slab to the slab's end stops there with a report (Tiny 64 KiB and L2 1 MiB
/// slabs), instead of writing into the next slab's header.
#[test]
fn secure_slabs_end_in_a_guard_page() {
    for (size, slab) in [(24, 64 << 10), (1000, 64 << 10), (5000, 1 << 20)] {
        let mut cmd = preloaded(plain(compile_c("slabguard")));
        cmd.args([size.to_string(), slab.to_string()])
            .env("HAKMEM_SECURE", "1");
        let out = run_with_timeout(cmd, Duration::from_secs(60));
        let what = format!("slabguard {size} {slab}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{what}: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            tail(&out.stdout, 2000),
            tail(&out.stderr, 2000)
        );
        assert!(
            out.stderr.contains("hakmem: heap-buffer-overflow:")
                && out.stderr.contains("in the slab's guard page"),
            "{what}: no report:\n{}",
            tail(&out.stderr, 2000)
        );
        assert!(!out.stdout.contains("no fault"), "{what}");
    }
}
