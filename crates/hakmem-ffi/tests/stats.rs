//! Proof that hakmem serves the allocations: its own counters
//! (`hakmem_stats_format`, and the `HAKMEM_STATS=1` exit report) grow as
//! a preloaded program allocates.

mod common;
use common::*;

/// tiny.carved grows by >= 90,000 for 100,000 live malloc(32); pool.* for
/// 4 KiB..1 MiB; run.* for alignments beyond 128 (aligned_alloc(4096,
/// 8192)); large.* and os.mapped for 2 MiB+ (checked in the C program, and
/// the tiny and pool deltas re-checked here from its printed lines).
#[test]
fn stats_counters_grow() {
    let out = run_c_test("stats", &[], "stats", 50);
    let line = |label: &str| {
        let l = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{label}: ")))
            .unwrap_or_else(|| panic!("no `{label}:` line in:\n{}", tail(&out.stdout, 3000)));
        parse_stats(l).unwrap_or_else(|| panic!("unparsable stats line `{l}`"))
    };
    let (before, after) = (line("before-tiny"), line("after-tiny"));
    let grew = after["tiny.carved"] - before["tiny.carved"];
    assert!(grew >= 90_000, "tiny.carved grew by {grew}");
    // Every `after-pool:` line shows pool.carved at least 8 above the
    // `before-pool:` line printed just before it.
    let mut pairs = 0;
    let mut last_before = None;
    for l in out.stdout.lines() {
        if l.starts_with("before-pool: ") {
            last_before = parse_stats(l);
        } else if l.starts_with("after-pool: ") {
            let a = parse_stats(l).expect("parsable after-pool line");
            let b = last_before
                .take()
                .expect("before-pool line before after-pool");
            let grew = a["pool.carved"] - b["pool.carved"];
            assert!(
                grew >= 8,
                "8 live pool blocks grew pool.carved by {grew}: {l}"
            );
            pairs += 1;
        }
    }
    assert_eq!(pairs, 6, "expected 6 pool sizes checked");
}

fn hello_output(stats_env: Option<&str>) -> Output {
    let exe = compile_c("hello");
    let mut cmd = preloaded(plain(&exe));
    if let Some(v) = stats_env {
        cmd.env("HAKMEM_STATS", v);
    }
    let out = run(cmd);
    out.assert_success("hello under LD_PRELOAD");
    out
}

/// `HAKMEM_STATS=1` prints the stats line on stderr at exit, and only then;
/// stdout is unchanged.
#[test]
fn hakmem_stats_env_reports_at_exit() {
    let baseline = run(plain(compile_c("hello")));
    baseline.assert_success("hello without preload");

    let out = hello_output(Some("1"));
    assert_eq!(out.stdout, baseline.stdout, "stdout differs under hakmem");
    let stats = parse_stats(&out.stderr).unwrap_or_else(|| {
        panic!(
            "HAKMEM_STATS=1: no parsable `hakmem-stats:` line on stderr:\n{}",
            tail(&out.stderr, 3000)
        )
    });
    for k in STATS_KEYS {
        assert!(stats.contains_key(*k), "exit report lacks {k}: {stats:?}");
    }
    assert!(
        stats["tiny.carved"] >= 5000,
        "program kept 5000 small blocks live but tiny.carved = {}",
        stats["tiny.carved"]
    );
    assert!(
        !out.stdout.contains("hakmem-stats:"),
        "stats went to stdout"
    );

    let quiet = hello_output(None);
    assert!(
        !quiet.stderr.contains("hakmem-stats:"),
        "stats printed without HAKMEM_STATS: {}",
        quiet.stderr
    );
}

/// An ordinary system program (`/bin/true`, or `true` from PATH) reports too.
#[test]
fn hakmem_stats_env_system_program() {
    let Some(t) = require_program("true", "hakmem_stats_env_system_program") else {
        return;
    };
    let mut cmd = preloaded(plain(&t));
    cmd.env("HAKMEM_STATS", "1");
    let out = run(cmd);
    out.assert_success("true under LD_PRELOAD with HAKMEM_STATS=1");
    let stats = parse_stats(&out.stderr)
        .unwrap_or_else(|| panic!("no hakmem-stats line from `true`: {}", out.stderr));
    for k in STATS_KEYS {
        assert!(stats.contains_key(*k), "exit report lacks {k}: {stats:?}");
    }
}

#[test]
fn parse_stats_helper() {
    let m = parse_stats("x\nhakmem-stats: tiny.carved=5 os.mapped=4096 new.key=7\n").unwrap();
    assert_eq!(m["tiny.carved"], 5);
    assert_eq!(m["os.mapped"], 4096);
    assert_eq!(m["new.key"], 7);
    assert!(parse_stats("nothing here").is_none());
    assert!(parse_stats("hakmem-stats: a=x").is_none());
}
