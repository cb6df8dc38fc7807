//! Reading what the real programs print (redis-benchmark's CSV, db_bench's report lines, the
//! check lines of the generated inputs), a server's `/proc/<pid>` counters, and `ldd` /
//! `LD_DEBUG=bindings` output. Pure functions of text.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

/// Splits one CSV line with `"`-quoted fields (`""` inside quotes is a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// `redis-benchmark --csv`: `(test, requests per second)` in output order, header skipped.
pub fn parse_redis_csv(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('"'))
        .filter_map(|l| {
            let f = csv_fields(l);
            let rps: f64 = f.get(1)?.trim().parse().ok()?;
            (rps.is_finite() && rps > 0.0).then(|| (f[0].clone(), rps))
        })
        .collect()
}

/// The combined rate of tests that each ran the same number of requests: all the requests
/// over all the time, i.e. the harmonic mean of the per-test rates.
pub fn combined_rps(tests: &[(String, f64)]) -> Option<f64> {
    if tests.is_empty() {
        return None;
    }
    let secs_per_request: f64 = tests.iter().map(|t| 1.0 / t.1).sum();
    Some(tests.len() as f64 / secs_per_request)
}

/// db_bench's report lines, `fillrandom   :  5.218 micros/op 191643 ops/sec ...`:
/// benchmark -> (micros/op, ops/sec).
pub fn parse_db_bench(text: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(" : ") else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            continue;
        }
        let toks: Vec<&str> = rest.split_whitespace().collect();
        let before = |unit: &str| -> Option<f64> {
            let i = toks.iter().position(|t| t.trim_end_matches(';') == unit)?;
            toks.get(i.checked_sub(1)?)?.parse().ok()
        };
        if let (Some(us), Some(ops)) = (before("micros/op"), before("ops/sec")) {
            out.insert(name.to_string(), (us, ops));
        }
    }
    out
}

/// The fields of `/proc/<pid>/stat` this harness reads: CPU ticks and page faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub minflt: u64,
    pub majflt: u64,
}

/// Parses `/proc/<pid>/stat` (the command name may hold spaces and parentheses: fields are
/// counted from the last `)`).
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state(3) ppid pgrp session tty tpgid flags minflt(10) cminflt
    // majflt(12) cmajflt utime(14) stime(15).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        minflt: n(10)?,
        majflt: n(12)?,
        utime_ticks: n(14)?,
        stime_ticks: n(15)?,
    })
}

/// `VmHWM:` of `/proc/<pid>/status`, KiB.
pub fn parse_vmhwm_kb(status: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A peer malloc a binary links itself, from its `ldd` output: `(library, libc path)` when
/// it links jemalloc, tcmalloc or mimalloc (so that its "no preload" row is not glibc's
/// malloc unless libc is preloaded in front of it).
pub fn own_malloc(ldd: &str) -> Option<(String, String)> {
    let lib_of = |l: &str| -> Option<(String, String)> {
        let (name, rest) = l.trim().split_once(" => ")?;
        let path = rest.split_whitespace().next()?;
        Some((name.trim().to_string(), path.to_string()))
    };
    let libs: Vec<(String, String)> = ldd.lines().filter_map(lib_of).collect();
    let malloc = libs.iter().find(|(n, _)| {
        ["libjemalloc", "libtcmalloc", "libmimalloc"]
            .iter()
            .any(|p| n.starts_with(p))
    })?;
    let libc = libs.iter().find(|(n, _)| n.starts_with("libc.so"))?;
    Some((malloc.0.clone(), libc.1.clone()))
}

/// From `LD_DEBUG=bindings` output: the object that `program`'s own `malloc` bound to.
pub fn malloc_binding(ld_debug: &str, program: &str) -> Option<String> {
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    ld_debug.lines().find_map(|l| {
        if !l.contains("normal symbol `malloc'") {
            return None;
        }
        let rest = &l[l.find("binding file ")? + "binding file ".len()..];
        let (file, rest) = rest.split_once(" [")?;
        let to = &rest[rest.find("] to ")? + "] to ".len()..];
        let (target, _) = to.split_once(" [")?;
        (file == program || base(file) == base(program)).then(|| target.to_string())
    })
}

/// The last line starting with `tag` split on whitespace or `sep`, without the tag.
pub fn check_line(stdout: &str, tag: &str, sep: char) -> Result<Vec<String>> {
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with(tag))
        .with_context(|| {
            format!(
                "no `{tag}` line in the output (last: {:?})",
                crate::util::tail_lines(stdout, 2)
            )
        })?;
    let fields: Vec<String> = line[tag.len()..]
        .split(|c: char| c == sep || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if fields.is_empty() {
        bail!("`{tag}` line without values: {line:?}");
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS_CSV: &str = r#""test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","279329.59","2.674","0.392","2.199","6.415","9.031","10.343"
"GET","245700.25","2.961","0.320","2.015","8.023","9.815","11.615"
"LPUSH (needed to benchmark LRANGE)","353356.91","2.012","0.368","1.871","3.303","4.087","6.879"
"LRANGE_100 (first 100 elements)","28296.55","14.481","0.552","13.903","22.607","32.463","53.823"
"#;

    #[test]
    fn redis_benchmark_csv() {
        let t = parse_redis_csv(REDIS_CSV);
        assert_eq!(t.len(), 4);
        assert_eq!(t[0], ("SET".to_string(), 279329.59));
        assert_eq!(t[3].0, "LRANGE_100 (first 100 elements)");
        assert_eq!(t[3].1, 28296.55);
        // Two tests of equal size at 100 and 300 req/s: 2 requests in 1/100 + 1/300 s.
        let c = combined_rps(&[("a".into(), 100.0), ("b".into(), 300.0)]).unwrap();
        assert!((c - 150.0).abs() < 1e-9);
        assert_eq!(combined_rps(&[]), None);
        // Progress lines (carriage-return updates) and garbage are ignored.
        assert!(parse_redis_csv("SET: rps=1234.0 (overall: 1200.0) avg_msec=0.3\r\n").is_empty());
        assert_eq!(csv_fields(r#""a ""b""",1"#), ["a \"b\"", "1"]);
    }

    #[test]
    fn db_bench_report() {
        let out = "Initializing RocksDB Options from command-line flags\n\
                   DB path: [/tmp/x/db]\n\
                   fillrandom   :       5.218 micros/op 191643 ops/sec 0.522 seconds 100000 operations;   21.2 MB/s\n\
                   DB path: [/tmp/x/db]\n\
                   readrandom   :       2.338 micros/op 427664 ops/sec 0.234 seconds 100000 operations;   29.9 MB/s (63148 of 100000 found)\n\
                   Keys:       16 bytes each (+ 0 bytes user-defined timestamp)\n";
        let m = parse_db_bench(out);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m["fillrandom"], (5.218, 191643.0));
        assert_eq!(m["readrandom"], (2.338, 427664.0));
        // An older format with `ops/sec;` still parses.
        let m = parse_db_bench("readrandom :  3.000 micros/op 333333 ops/sec;  1.0 MB/s\n");
        assert_eq!(m["readrandom"].1, 333333.0);
    }

    #[test]
    fn proc_files() {
        let stat = "4242 (redis-server (x)) S 1 4242 4242 0 -1 4194560 1500 0 7 0 250 120 0 0 20 0 4 0 100 1000 100";
        assert_eq!(
            parse_proc_stat(stat),
            Some(ProcStat {
                utime_ticks: 250,
                stime_ticks: 120,
                minflt: 1500,
                majflt: 7
            })
        );
        assert_eq!(parse_proc_stat("garbage"), None);
        let status =
            "Name:\tredis-server\nVmPeak:\t  100 kB\nVmHWM:\t   20736 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vmhwm_kb(status), Some(20736.0));
        assert_eq!(parse_vmhwm_kb("Name: x\n"), None);
    }

    #[test]
    fn ldd_and_bindings() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibjemalloc.so.2 => /lib/x86_64-linux-gnu/libjemalloc.so.2 (0x00007f80)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f81)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f82)\n";
        assert_eq!(
            own_malloc(ldd),
            Some((
                "libjemalloc.so.2".to_string(),
                "/lib/x86_64-linux-gnu/libc.so.6".to_string()
            ))
        );
        let plain = "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f81)\n";
        assert_eq!(own_malloc(plain), None);

        let dbg = "      6294:\tbinding file /lib/x86_64-linux-gnu/libc.so.6 [0] to /x/libhakmem.so [0]: normal symbol `malloc' [GLIBC_2.2.5]\n\
                   \x20     6294:\tbinding file /usr/bin/sort [0] to /x/libhakmem.so [0]: normal symbol `free' [GLIBC_2.2.5]\n\
                   \x20     6294:\tbinding file /usr/bin/sort [0] to /x/libhakmem.so [0]: normal symbol `malloc' [GLIBC_2.2.5]\n";
        assert_eq!(
            malloc_binding(dbg, "/usr/bin/sort").as_deref(),
            Some("/x/libhakmem.so")
        );
        assert_eq!(
            malloc_binding(&dbg.replace("/usr/bin/sort", "sort"), "/usr/bin/sort").as_deref(),
            Some("/x/libhakmem.so")
        );
        assert_eq!(malloc_binding(dbg, "/usr/bin/gcc"), None);
    }

    #[test]
    fn check_lines() {
        let out = "noise\npython-ok 100 97 123456 65432 0123abcd\n";
        assert_eq!(
            check_line(out, "python-ok", ' ').unwrap(),
            ["100", "97", "123456", "65432", "0123abcd"]
        );
        assert_eq!(
            check_line("1|2\nsqlite-ok|900|1234.5\n", "sqlite-ok", '|').unwrap(),
            ["900", "1234.5"]
        );
        assert!(check_line("nothing\n", "gcc-ok", ' ').is_err());
        assert!(check_line("gcc-ok\n", "gcc-ok", ' ').is_err());
    }
}
