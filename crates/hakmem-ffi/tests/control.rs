//! The statistics and control functions of `libhakmem.so`, and the `HAKMEM_STATS` report:
//! `hakmem_stats_json` sees 10 MiB held by a C program, the report goes to
//! `HAKMEM_STATS_FILE`, `HAKMEM_STATS=json` prints an object that parses, the report reaches
//! the original stderr of a program that closed fd 2 (as `sort` does), and the options' round
//! trips and error codes hold (checked in `tests/c/control.c`).

mod common;
use common::*;
use std::collections::BTreeMap;

/// A JSON value of the shapes hakmem prints: numbers and objects.
#[derive(Debug, PartialEq)]
enum Json {
    Num(u64),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn get(&self, path: &str) -> u64 {
        let mut v = self;
        for k in path.split('.') {
            match v {
                Json::Obj(m) => v = m.get(k).unwrap_or_else(|| panic!("no key {path}")),
                Json::Num(_) => panic!("{path}: not an object"),
            }
        }
        match v {
            Json::Num(n) => *n,
            Json::Obj(_) => panic!("{path}: an object"),
        }
    }
}

/// Parses one JSON object (numbers and nested objects only), the whole of `s` but blanks.
fn parse_json(s: &str) -> Result<Json, String> {
    fn value(b: &[u8], i: &mut usize) -> Result<Json, String> {
        skip(b, i);
        match b.get(*i) {
            Some(b'{') => {
                *i += 1;
                let mut m = BTreeMap::new();
                skip(b, i);
                if b.get(*i) == Some(&b'}') {
                    *i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    skip(b, i);
                    if b.get(*i) != Some(&b'"') {
                        return Err(format!("key expected at {i}"));
                    }
                    let start = *i + 1;
                    let end = start
                        + b[start..]
                            .iter()
                            .position(|&c| c == b'"')
                            .ok_or("unterminated key")?;
                    let key =
                        String::from_utf8(b[start..end].to_vec()).map_err(|e| e.to_string())?;
                    *i = end + 1;
                    skip(b, i);
                    if b.get(*i) != Some(&b':') {
                        return Err(format!("':' expected at {i}"));
                    }
                    *i += 1;
                    let v = value(b, i)?;
                    if m.insert(key.clone(), v).is_some() {
                        return Err(format!("duplicate key {key}"));
                    }
                    skip(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("',' or '}}' expected at {i}")),
                    }
                }
            }
            Some(c) if c.is_ascii_digit() => {
                let start = *i;
                while b.get(*i).is_some_and(u8::is_ascii_digit) {
                    *i += 1;
                }
                let t = std::str::from_utf8(&b[start..*i]).unwrap();
                t.parse().map(Json::Num).map_err(|e| format!("{t}: {e}"))
            }
            _ => Err(format!("value expected at {i}")),
        }
    }
    fn skip(b: &[u8], i: &mut usize) {
        while b.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
    }
    let (b, mut i) = (s.as_bytes(), 0);
    let v = value(b, &mut i)?;
    skip(b, &mut i);
    if i != b.len() {
        return Err(format!("trailing text at {i}"));
    }
    match v {
        Json::Obj(_) => Ok(v),
        Json::Num(_) => Err("not an object".into()),
    }
}

/// The keys every statistics object carries.
const JSON_KEYS: &[&str] = &[
    "pid",
    "in_use",
    "resident",
    "mapped",
    "peak_mapped",
    "segments",
    "purged",
    "tiny.in_use",
    "tiny.blocks",
    "tiny.slabs",
    "tiny.remote_frees",
    "tiny.purged",
    "l2.in_use",
    "l25.blocks",
    "runs.in_use",
    "runs.allocs",
    "large.in_use",
    "large.cached",
    "large.cache_hits",
    "faults",
];

fn line_after<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{}", tail(text, 3000)))
}

#[test]
fn stats_json_sees_ten_mib_in_use_and_options_round_trip() {
    let out = run_c_test("control", &[], "control", 30);
    let live: u64 = line_after(&out.stdout, "live-bytes: ").parse().unwrap();
    assert!(live >= 10 << 20);
    let j = parse_json(line_after(&out.stdout, "json-live: ")).expect("json-live parses");
    for k in JSON_KEYS {
        j.get(k);
    }
    let in_use = j.get("in_use");
    assert!(
        in_use >= live,
        "{live} bytes live but in_use = {in_use}: {j:?}"
    );
    // Blocks count by their size class (24 bytes take 32), a 3 MiB mapping by its chunk.
    assert!(in_use < live + live / 2, "in_use {in_use} far above {live}");
    let sum: u64 = ["tiny", "l2", "l25", "runs", "large"]
        .iter()
        .map(|t| j.get(&format!("{t}.in_use")))
        .sum();
    assert_eq!(sum, in_use, "the tiers add up to in_use");
    // Each of the seven sizes holds ~1.4 MiB: every tier carries some (the 3 MiB block is a
    // big page run, counted with the runs).
    for t in ["tiny", "l2", "l25", "runs"] {
        assert!(j.get(&format!("{t}.in_use")) > 1 << 20, "{t}: {j:?}");
    }
    assert!(
        j.get("runs.in_use") + j.get("large.in_use") > 2 << 20,
        "{j:?}"
    );
    assert!(j.get("tiny.blocks") >= 2 * (10 << 20) / 7 / 1000);
    assert!(
        j.get("resident") >= live,
        "resident below what the program wrote"
    );
    assert!(j.get("mapped") >= in_use && j.get("peak_mapped") >= j.get("mapped"));
    assert_eq!(j.get("pid"), j.get("pid").max(1));

    let freed = parse_json(line_after(&out.stdout, "json-freed: ")).expect("json-freed parses");
    assert!(
        freed.get("in_use") < 1 << 20,
        "after the frees in_use = {}",
        freed.get("in_use")
    );
}

fn hello(env: &[(&str, &str)]) -> Output {
    let mut cmd = preloaded(plain(compile_c("hello")));
    cmd.env_remove("HAKMEM_STATS_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd);
    out.assert_success("hello under LD_PRELOAD");
    out
}

/// The table's shape: the title with a pid, the summary and one row per tier, then the line.
fn assert_table(text: &str) {
    let start = text
        .find("hakmem: stats of pid ")
        .unwrap_or_else(|| panic!("no table in:\n{}", tail(text, 3000)));
    let t = &text[start..];
    let pid: u64 = t["hakmem: stats of pid ".len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .expect("a pid");
    assert!(pid > 0);
    for row in [
        "  in use ",
        "  mapped ",
        "  tiny ",
        "  L2 ",
        "  L2.5 ",
        "  runs ",
        "  large ",
        "  BigCache ",
    ] {
        assert!(t.contains(row), "no `{row}` row in:\n{t}");
    }
    assert!(
        t.lines().nth(1).unwrap().contains("iB") || t.lines().nth(1).unwrap().contains(" B"),
        "human units: {t}"
    );
    let stats = parse_stats(t).expect("the counters line follows the table");
    assert!(stats["tiny.carved"] > 0);
}

#[test]
fn stats_file_gets_the_table_appended() {
    let dir = scratch_dir("stats-file");
    let file = dir.join("report.txt");
    let _ = std::fs::remove_file(&file);
    let f = file.to_str().unwrap();
    let out = hello(&[("HAKMEM_STATS", "1"), ("HAKMEM_STATS_FILE", f)]);
    assert!(
        !out.stderr.contains("hakmem: stats"),
        "the report went to stderr too"
    );
    let text = std::fs::read_to_string(&file).expect("the report file exists");
    assert_table(&text);
    hello(&[("HAKMEM_STATS", "1"), ("HAKMEM_STATS_FILE", f)]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text.matches("hakmem: stats of pid").count(),
        2,
        "appended:\n{text}"
    );
    // JSON into the file: one object per line.
    let _ = std::fs::remove_file(&file);
    hello(&[("HAKMEM_STATS", "json"), ("HAKMEM_STATS_FILE", f)]);
    let text = std::fs::read_to_string(&file).unwrap();
    parse_json(text.trim_end()).expect("the file's JSON parses");
}

#[test]
fn stats_json_at_exit_parses() {
    let out = hello(&[("HAKMEM_STATS", "json")]);
    let line = out
        .stderr
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON on stderr:\n{}", tail(&out.stderr, 3000)));
    let j = parse_json(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    for k in JSON_KEYS {
        j.get(k);
    }
    assert!(
        j.get("tiny.blocks") > 0 || j.get("tiny.slabs") > 0,
        "{line}"
    );
    assert!(!out.stderr.contains("hakmem-stats:"), "json only");
    if let Some(py) = find_program("python3") {
        let mut cmd = plain(py);
        cmd.args(["-c", "import json,sys; json.loads(sys.argv[1])", line]);
        run(cmd).assert_success("python3's json.loads of the exit report");
    }
}

#[test]
fn stats_reach_stderr_after_the_program_closed_it() {
    let mut cmd = preloaded(plain(compile_c("control")));
    cmd.arg("close-stderr").env("HAKMEM_STATS", "1");
    let out = run(cmd);
    out.assert_success("control close-stderr");
    assert_table(&out.stderr);
}

#[test]
fn stats_printed_by_sort() {
    let Some(sort) = require_program("sort", "stats_printed_by_sort") else {
        return;
    };
    let dir = scratch_dir("stats-sort");
    let input = dir.join("lines.txt");
    let text: String = (0..20_000).rev().map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let mut cmd = preloaded(plain(sort));
    cmd.arg(&input).env("HAKMEM_STATS", "1");
    let out = run(cmd);
    out.assert_success("sort under LD_PRELOAD with HAKMEM_STATS=1");
    assert_table(&out.stderr);
}

#[test]
fn json_parser_rejects_what_it_should() {
    assert!(parse_json(r#"{"a":1,"b":{"c":2}}"#).is_ok());
    for bad in [
        r#"{"a":1,}"#,
        r#"{"a":1"#,
        r#"{"a" 1}"#,
        r#"{"a":1}x"#,
        "7",
        r#"{"a":1,"a":2}"#,
    ] {
        assert!(parse_json(bad).is_err(), "{bad}");
    }
}
