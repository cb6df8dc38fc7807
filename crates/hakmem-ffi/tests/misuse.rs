//! Heap misuse under `LD_PRELOAD=libhakmem.so` (`tests/c/misuse.c`, one probe per process):
//! writes into freed blocks, overflows into a free neighbour, double frees on the owning and
//! on another thread, interior frees, in every slab tier. Each is reported in one line naming
//! the fault; by default the process then aborts, and with `HAKMEM_ON_ERROR=warn` it goes on
//! with no foreign, duplicate or overlapping block among the next 1,000 of that size.

mod common;
use common::*;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

/// Sizes of every slab tier: Tiny (24, 100, 1000), L2 (4000, 16000), L2.5 (48000).
const SLAB_SIZES: [usize; 6] = [24, 100, 1000, 4000, 16_000, 48_000];

fn probe(name: &str, size: usize, warn: bool) -> Output {
    let mut cmd = preloaded(plain(compile_c("misuse")));
    cmd.args([name, &size.to_string()]);
    if warn {
        cmd.env("HAKMEM_ON_ERROR", "warn");
    }
    run_with_timeout(cmd, Duration::from_secs(60))
}

/// Runs `name` at `size` both ways and checks the report (`fault` in its stderr line).
fn caught(name: &str, size: usize, fault: &str) {
    let what = format!("{name} {size}");
    let out = probe(name, size, false);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{what}: expected an abort by default, got {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        tail(&out.stdout, 2000),
        tail(&out.stderr, 2000)
    );
    assert!(
        out.stderr.contains(&format!("hakmem: {fault}")),
        "{what}: no `{fault}` report:\n{}",
        tail(&out.stderr, 2000)
    );
    let out = probe(name, size, true);
    out.assert_success(&format!("{what} with HAKMEM_ON_ERROR=warn"));
    assert!(
        out.stdout.contains(&format!("ok {name} {size}")),
        "{what}: did not finish:\n{}",
        tail(&out.stdout, 2000)
    );
    assert!(
        out.stderr.contains(&format!("hakmem: {fault}")) && out.stderr.contains("left alone"),
        "{what}: no `{fault}` report under warn:\n{}",
        tail(&out.stderr, 2000)
    );
}

#[test]
fn writes_into_freed_blocks_are_caught() {
    for size in SLAB_SIZES {
        caught("uaf", size, "free-list corruption");
    }
}

#[test]
fn overflows_into_a_free_neighbour_are_caught() {
    for size in SLAB_SIZES {
        caught("overflow8", size, "free-list corruption");
        caught("overflow16", size, "free-list corruption");
    }
}

#[test]
fn double_frees_are_caught() {
    for size in SLAB_SIZES {
        caught("double", size, "double free");
        caught("remote", size, "double free");
    }
}

#[test]
fn interior_frees_are_caught() {
    for size in SLAB_SIZES {
        caught("interior", size, "invalid free: interior pointer");
    }
}

#[test]
fn non_canonical_frees_are_caught() {
    for size in SLAB_SIZES {
        caught(
            "noncanonical",
            size,
            "invalid free: not allocated by hakmem",
        );
    }
}

/// A report names the caller: the return address of the first frame outside the allocator,
/// with its object and the offset in it (here the probe's own `main`).
#[test]
fn reports_name_the_caller() {
    let out = probe("double", 24, true);
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("hakmem: double free"))
        .unwrap_or_else(|| panic!("no report:\n{}", tail(&out.stderr, 2000)))
        .to_string();
    let caller = line
        .split(", caller ")
        .nth(1)
        .unwrap_or_else(|| panic!("no caller in `{line}`"));
    assert!(caller.starts_with("0x"), "{line}");
    assert!(
        caller.contains(" (misuse") && caller.contains("+0x"),
        "the caller is not in the probe: {line}"
    );
}

/// The probes are real: against glibc, the same misuse hands out the chosen address or
/// aborts — either way the program does not report `ok`.
#[test]
fn probes_fail_without_protection() {
    let exe = compile_c("misuse");
    let mut cmd = preloaded(plain(&exe));
    cmd.args(["uaf", "24"]).env("HAKMEM_ON_ERROR", "warn");
    let ok = run(cmd);
    assert!(
        ok.stdout.contains("ok uaf 24"),
        "{}",
        tail(&ok.stdout, 2000)
    );
    // glibc detects its own tcache misuse; the probe must at least not pass silently there.
    let mut cmd = plain(&exe);
    cmd.args(["double", "24"]);
    let out = run(cmd);
    assert!(
        !out.stdout.contains("ok double 24") || !out.status.success(),
        "a double free went unnoticed under glibc too: the probe checks nothing"
    );
}
