//! Modes, feature switches, site capture and learning through `libhakmem.so`
//! (`tests/c/learn.c` under `LD_PRELOAD`): each switch moves requests to the
//! tier it names (read from the `HAKMEM_STATS=1` counters), bad values warn
//! once and keep the default, `HAKMEM_VERBOSE=1` announces the features, the
//! profiled sites are the program's own call sites, and the learner runs its
//! lifecycle in `learning` mode and stays silent in `balanced`.

mod common;
use common::*;
use std::collections::BTreeMap;

/// Runs `learn <mode>` under LD_PRELOAD with `env`; returns the output and
/// the exit counters.
fn learn(mode: &str, env: &[(&str, &str)]) -> (Output, BTreeMap<String, u64>) {
    let exe = compile_c("learn");
    let mut cmd = preloaded(plain(&exe));
    cmd.arg(mode).env("HAKMEM_STATS", "1");
    for k in [
        "HAKMEM_MODE",
        "HAKMEM_TINY_POOL",
        "HAKMEM_POOL",
        "HAKMEM_L25",
        "HAKMEM_ELO",
        "HAKMEM_EVO",
        "HAKMEM_SITE_RULES",
        "HAKMEM_VERBOSE",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd);
    out.assert_success(&format!("learn {mode} {env:?}"));
    assert!(
        out.stdout.contains("learn: ") && fail_lines(&out.stdout).is_empty(),
        "learn {mode}: FAIL lines or no summary:\n{}",
        tail(&out.stdout, 3000)
    );
    let stats = parse_stats(&out.stderr)
        .unwrap_or_else(|| panic!("no hakmem-stats line:\n{}", tail(&out.stderr, 3000)));
    (out, stats)
}

/// Each tier switch sends its sizes elsewhere: Tiny off → the pools; L2 off
/// → page runs; L2.5 off → page runs.
#[test]
fn tier_switches_move_requests() {
    let (_, on) = learn("tiers", &[]);
    assert!(on["tiny.carved"] > 0 && on["pool.carved"] >= 2, "{on:?}");
    let (_, no_tiny) = learn("tiers", &[("HAKMEM_TINY_POOL", "0")]);
    assert_eq!(
        no_tiny["tiny.carved"], 0,
        "Tiny off still carved: {no_tiny:?}"
    );
    assert!(no_tiny["pool.carved"] > on["pool.carved"], "{no_tiny:?}");
    let (_, no_l2) = learn("tiers", &[("HAKMEM_POOL", "0")]);
    assert!(no_l2["run.allocs"] > on["run.allocs"], "{no_l2:?}");
    let (_, no_l25) = learn("tiers", &[("HAKMEM_L25", "0")]);
    assert!(no_l25["run.allocs"] > on["run.allocs"], "{no_l25:?}");
}

/// Bad values: one warning per variable naming it and the value used; the
/// program runs on. `HAKMEM_VERBOSE=1` prints the feature line of the mode.
#[test]
fn bad_values_warn_and_verbose_announces_features() {
    let (out, _) = learn(
        "tiers",
        &[
            ("HAKMEM_MODE", "turbo"),
            ("HAKMEM_EVO", "sometimes"),
            ("HAKMEM_VERBOSE", "1"),
        ],
    );
    let warn = |name: &str| {
        out.stderr
            .lines()
            .filter(|l| l.contains("warning") && l.contains(name))
            .count()
    };
    assert_eq!(warn("HAKMEM_MODE"), 1, "stderr:\n{}", out.stderr);
    assert_eq!(warn("HAKMEM_EVO"), 1, "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("using balanced") && out.stderr.contains("using frozen"));
    let features = out
        .stderr
        .lines()
        .find(|l| l.contains("hakmem-features:"))
        .unwrap_or_else(|| panic!("no hakmem-features line:\n{}", out.stderr));
    for f in [
        "tiny_pool=on",
        "pool=on",
        "l25=on",
        "bigcache=on",
        "site_rules=on",
        "elo=on",
        "evo=frozen",
        "batch_madvise=on",
    ] {
        assert!(features.contains(f), "`{f}` missing in `{features}`");
    }
    let (m, _) = learn(
        "tiers",
        &[("HAKMEM_MODE", "minimal"), ("HAKMEM_VERBOSE", "1")],
    );
    assert!(
        m.stderr.contains("bigcache=off") && m.stderr.contains("evo=off"),
        "{}",
        m.stderr
    );
}

/// The `hakmem-sites:` lines of the report: (site, allocs).
fn sites(stderr: &str) -> Vec<(usize, u64)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("hakmem-sites: 0x"))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let site = usize::from_str_radix(w.next()?, 16).ok()?;
            Some((site, w.next()?.parse().ok()?))
        })
        .collect()
}

/// The sites hakmem profiles are the return addresses inside the two C
/// functions that called malloc, 12 large blocks each.
#[test]
fn sites_are_the_callers_return_addresses() {
    let (out, _) = learn("sites", &[("HAKMEM_ELO_REPORT", "1")]);
    let addr = |label: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|a| usize::from_str_radix(a.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or_else(|| panic!("no `{label}` line:\n{}", out.stdout))
    };
    let got = sites(&out.stderr);
    for f in [addr("site-a "), addr("site-b ")] {
        let hit = got.iter().find(|&&(s, _)| s > f && s < f + 256);
        match hit {
            Some(&(_, n)) => assert_eq!(n, 12, "site in function {f:#x}: {n} allocs"),
            None => panic!(
                "no profiled site inside the function at {f:#x}; sites: {got:x?}\n{}",
                out.stderr
            ),
        }
    }
}

/// `learning` closes windows, freezes a winner and re-learns when the size
/// mix shifts half-way; `balanced` (EVO frozen) measures nothing.
#[test]
fn learning_mode_runs_the_lifecycle() {
    let (out, _) = learn(
        "phased",
        &[("HAKMEM_MODE", "learning"), ("HAKMEM_ELO_REPORT", "1")],
    );
    let head = out
        .stderr
        .lines()
        .find(|l| l.starts_with("hakmem-elo: phase="))
        .unwrap_or_else(|| panic!("no leaderboard:\n{}", out.stderr));
    let windows: u64 = head
        .split_whitespace()
        .find_map(|w| w.strip_prefix("windows="))
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    assert!(windows >= 20, "only {windows} windows: {head}");
    let history: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("hakmem-elo: window "))
        .collect();
    assert!(
        history.iter().any(|l| l.contains("-> FROZEN")),
        "never froze:\n{}",
        history.join("\n")
    );
    assert!(
        history.iter().any(|l| l.contains("(shift)")),
        "no re-learn on the size shift:\n{}",
        history.join("\n")
    );
    let (quiet, _) = learn("phased", &[("HAKMEM_ELO_REPORT", "1")]);
    assert!(
        quiet.stderr.contains("windows=0"),
        "balanced measured windows:\n{}",
        quiet.stderr
    );
}
