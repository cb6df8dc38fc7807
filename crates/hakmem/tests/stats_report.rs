//! `hakmem::HakMem` as this test binary's global allocator: `hakmem::stats` sees what the
//! program holds, the options round-trip, and `HAKMEM_STATS` prints its report at exit of a
//! Rust program (this binary, run again as a child).

use std::process::Command;

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

const MIB: u64 = 1 << 20;

/// The child's work: holds a few MiB, then exits (the report runs at exit).
#[test]
fn child_holds_memory() {
    if std::env::var_os("HAKMEM_TEST_CHILD").is_none() {
        return;
    }
    let v: Vec<Vec<u8>> = (0..20_000).map(|i| vec![1u8; 64 + i % 512]).collect();
    std::hint::black_box(&v);
    std::mem::forget(v); // still held at exit
}

fn child(stats: &str) -> std::process::Output {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_memory",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HAKMEM_TEST_CHILD", "1")
        .env("HAKMEM_STATS", stats)
        .env_remove("HAKMEM_STATS_FILE")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {out:?}");
    out
}

#[test]
fn rust_program_prints_the_report_at_exit() {
    let out = child("1");
    let err = String::from_utf8_lossy(&out.stderr);
    let t = &err[err
        .find("hakmem: stats of pid ")
        .unwrap_or_else(|| panic!("no table on stderr:\n{err}"))..];
    for row in [
        "  in use ",
        "  tiny ",
        "  L2 ",
        "  L2.5 ",
        "  large ",
        "hakmem-stats: ",
    ] {
        assert!(t.contains(row), "no `{row}` in:\n{t}");
    }
    // 20,000 blocks of 64..575 bytes: about 6 MiB in Tiny.
    let tiny = t.lines().find(|l| l.starts_with("  tiny ")).unwrap();
    assert!(tiny.contains("MiB"), "{tiny}");
    let blocks: u64 = tiny.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(blocks >= 20_000, "{tiny}");

    let out = child("json");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("JSON");
    assert!(
        line.ends_with('}') && line.contains("\"in_use\":"),
        "{line}"
    );

    let quiet = child("0");
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("hakmem: stats"));
}

#[test]
fn stats_see_what_the_program_holds() {
    let before = hakmem::stats();
    let small: Vec<Box<[u8; 100]>> = (0..50_000).map(|_| Box::new([7u8; 100])).collect();
    let mid: Vec<Vec<u8>> = (0..200).map(|_| vec![1u8; 20_000]).collect();
    let big = vec![2u8; 8 << 20];
    let s = hakmem::stats();
    let held = 50_000 * 100 + 200 * 20_000 + (8 << 20);
    assert!(s.in_use >= held, "held {held}, in_use {}", s.in_use);
    assert!(s.tiny.blocks >= before.tiny.blocks + 49_000, "{:?}", s.tiny);
    assert!(
        s.tiny.bytes >= 5_000_000 && s.l2.bytes >= 4_000_000,
        "{s:?}"
    );
    // An 8 MiB block is a big page run: counted with the runs.
    assert!(s.run_bytes + s.large_bytes >= 8 * MIB, "{s:?}");
    assert_eq!(
        s.in_use,
        s.tiny.bytes + s.l2.bytes + s.l25.bytes + s.run_bytes + s.large_bytes
    );
    assert!(
        s.resident >= held / 2,
        "resident {} for {held} written",
        s.resident
    );
    assert_eq!(s.pid, std::process::id() as u64);
    drop((small, mid, big));
    let after = hakmem::stats();
    assert!(
        after.in_use + 10 * MIB <= s.in_use,
        "freed ~17 MiB: {} -> {}",
        s.in_use,
        after.in_use
    );
}

#[test]
fn options_round_trip_and_refuse_bad_values() {
    use hakmem::{OutOfRange, Tunable, get_option, set_option};
    for t in Tunable::ALL {
        assert_eq!(Tunable::from_name(t.name().as_bytes()), Some(t));
    }
    assert_eq!(Tunable::from_name(b"purge_delay"), None);
    let cases = [
        (Tunable::PurgeDelayMs, 1234, [-1, 60_001]),
        (Tunable::BigCacheBudget, 32 << 20, [-1, i64::MAX]),
        (Tunable::Thp, 2, [-1, 3]),
    ];
    for (t, v, bad) in cases {
        let old = get_option(t);
        set_option(t, v).unwrap();
        assert_eq!(get_option(t), v, "{t:?}");
        for b in bad {
            assert_eq!(set_option(t, b), Err(OutOfRange), "{t:?} = {b}");
            assert_eq!(get_option(t), v, "{t:?} changed by a refused value");
        }
        set_option(t, old).unwrap();
        assert_eq!(get_option(t), old);
    }
    hakmem::purge();
}
