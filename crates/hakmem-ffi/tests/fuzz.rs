//! Fuzzing of libhakmem.so against a shadow model (`tests/c/fuzz.c`): a few
//! seconds of random malloc-family sequences in 4 threads with cross-thread
//! frees, in every mode and with `HAKMEM_FREE_POLICY=dontneed`, each with a
//! fixed seed; the program itself is checked first against the C library's
//! allocator, and its checks are shown to fire on planted faults.
//! `cargo xtask fuzz` runs the same program for longer, with a random seed.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Seconds each fuzz run lasts (the whole file stays well under 40 s).
const SECONDS: &str = "4";

/// A run ends after its budget; this only catches a hang.
const TIMEOUT: Duration = Duration::from_secs(60);

/// `tests/c/fuzz.c` compiled with `cc -O2 -pthread -Wall -Wextra`, which
/// must print no warning.
fn fuzz_exe() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/fuzz.c");
        let exe = tmp_dir().join(format!("fuzz-O2-{}", std::process::id()));
        let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
        cmd.args(["-O2", "-g", "-pthread", "-Wall", "-Wextra", "-o"])
            .arg(&exe)
            .arg(&src)
            .env_remove("LD_PRELOAD");
        let out = run_with_timeout(cmd, Duration::from_secs(120));
        assert!(
            out.status.success() && out.stderr.trim().is_empty(),
            "compiling {} ({}) failed or warned:\n{}",
            src.display(),
            out.status,
            out.stderr
        );
        exe
    })
    .clone()
}

/// The fuzz program with `args`, no `LD_PRELOAD` and no `HAKMEM_*` variable
/// inherited.
fn fuzz_cmd(args: &[&str]) -> Command {
    let mut cmd = plain(fuzz_exe());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HAKMEM_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args);
    cmd
}

/// Asserts a clean run: exit 0, no `FAIL` line, no heap-misuse report from
/// hakmem on stderr, and an `ok fuzz` line with at least `min_ops`
/// operations; returns that line.
fn assert_clean(what: &str, out: &Output, min_ops: u64) -> String {
    let fails = fail_lines(&out.stdout);
    assert!(
        out.status.success() && !out.timed_out && fails.is_empty(),
        "{what}: exited with {}{}\n--- FAIL lines ---\n{fails}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        out.status,
        if out.timed_out {
            " (killed: timed out)"
        } else {
            ""
        },
        tail(&out.stdout, 4000),
        tail(&out.stderr, 4000),
    );
    let reports: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| {
            l.contains("not allocated by hakmem")
                || l.contains("double free")
                || l.contains("invalid free")
                || l.contains("corruption")
                || l.contains("panic")
        })
        .take(20)
        .collect();
    assert!(
        reports.is_empty(),
        "{what}: hakmem reported misuse:\n{}",
        reports.join("\n")
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("ok fuzz "))
        .unwrap_or_else(|| panic!("{what}: no `ok fuzz` line in:\n{}", tail(&out.stdout, 3000)))
        .to_string();
    let ops: u64 = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("ops="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no ops= in `{line}`"));
    assert!(
        ops >= min_ops,
        "{what}: only {ops} operations ran: `{line}`"
    );
    // every kind of operation ran at least once
    for tok in line.split_whitespace().skip(5) {
        let (name, n) = tok.split_once('=').unwrap_or((tok, "?"));
        assert!(
            n.parse::<u64>().is_ok_and(|n| n > 0),
            "{what}: no {name} ran: `{line}`"
        );
    }
    eprintln!("{what}: {line}");
    line
}

/// Runs the fuzzer under `LD_PRELOAD` with `env`, seed `seed`.
fn fuzz_hakmem(what: &str, env: &[(&str, &str)], seed: &str) {
    let mut cmd = preloaded(fuzz_cmd(&[
        "--seed",
        seed,
        "--seconds",
        SECONDS,
        "--threads",
        "4",
    ]));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_with_timeout(cmd, TIMEOUT);
    assert_clean(what, &out, 10_000);
}

/// The program is sound: against the C library's allocator it finishes
/// clean, including the size-0 requests with huge alignments.
#[test]
fn fuzz_glibc_without_preload() {
    let out = run_with_timeout(
        fuzz_cmd(&["--seed", "1", "--seconds", "2", "--threads", "4"]),
        TIMEOUT,
    );
    assert_clean("fuzz under glibc", &out, 10_000);
}

/// Each planted fault makes the run fail with a `FAIL` line and status 1.
#[test]
fn fuzz_checks_fire_on_planted_faults() {
    for (kind, expect) in [
        ("dup", "twice"),
        ("corrupt", "before"),
        ("calloc", "not zero"),
        ("realloc", "realloc"),
    ] {
        let out = run_with_timeout(
            fuzz_cmd(&["--seed", "2", "--seconds", "10", "--inject", kind]),
            TIMEOUT,
        );
        let fails = fail_lines(&out.stdout);
        assert!(
            out.status.code() == Some(1) && fails.lines().count() == 1 && fails.contains(expect),
            "--inject {kind}: want one FAIL line containing `{expect}` and status 1, got {}:\n{}",
            out.status,
            tail(&out.stdout, 3000)
        );
    }
}

#[test]
fn fuzz_mode_minimal() {
    fuzz_hakmem("HAKMEM_MODE=minimal", &[("HAKMEM_MODE", "minimal")], "101");
}

#[test]
fn fuzz_mode_fast() {
    fuzz_hakmem("HAKMEM_MODE=fast", &[("HAKMEM_MODE", "fast")], "202");
}

#[test]
fn fuzz_mode_balanced() {
    fuzz_hakmem(
        "HAKMEM_MODE=balanced",
        &[("HAKMEM_MODE", "balanced")],
        "303",
    );
}

#[test]
fn fuzz_mode_learning() {
    fuzz_hakmem(
        "HAKMEM_MODE=learning",
        &[("HAKMEM_MODE", "learning")],
        "404",
    );
}

#[test]
fn fuzz_mode_research() {
    fuzz_hakmem(
        "HAKMEM_MODE=research",
        &[("HAKMEM_MODE", "research")],
        "505",
    );
}

#[test]
fn fuzz_free_policy_dontneed() {
    fuzz_hakmem(
        "HAKMEM_FREE_POLICY=dontneed",
        &[("HAKMEM_FREE_POLICY", "dontneed")],
        "606",
    );
}
