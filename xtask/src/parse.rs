//! Parsing of what the children print: the workload binary's `RESULT {json}` line, the
//! allocator's `hakmem-stats:` / `hakmem-features:` lines and callgrind's totals.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The record printed by `hakmem-bench` as the last line of stdout: `RESULT {json}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub workload: String,
    #[serde(default = "one")]
    pub threads: u64,
    pub metric: String,
    pub value: f64,
    pub higher_is_better: bool,
    #[serde(default)]
    pub ops: Option<f64>,
    #[serde(default)]
    pub seconds: Option<f64>,
    /// The workload process's own peak RSS (KiB, `VmHWM`), when it reports it.
    #[serde(default)]
    pub peak_rss_kb: Option<f64>,
    #[serde(default)]
    pub params: Value,
}

fn one() -> u64 {
    1
}

/// Parses the `RESULT {json}` line, which must be the last non-empty line of stdout.
pub fn parse_result(stdout: &str) -> Result<BenchResult> {
    let last = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .context("workload printed nothing on stdout (expected a final `RESULT {json}` line)")?;
    let Some(json) = last.strip_prefix("RESULT") else {
        bail!("last stdout line is not a `RESULT {{json}}` line: {last:?}");
    };
    let r: BenchResult = serde_json::from_str(json.trim())
        .with_context(|| format!("malformed RESULT json: {json:?}"))?;
    if !r.value.is_finite() {
        bail!("RESULT value is not finite: {}", r.value);
    }
    Ok(r)
}

/// Parses one `key=value` token's value: integers and floats become JSON numbers,
/// `true`/`false` booleans, anything else a string.
fn scalar(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(u) = v.parse::<u64>() {
        return Value::from(u);
    }
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        return Value::from(f);
    }
    match v {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(v.to_string()),
    }
}

/// Collects the `key=value` pairs of every line starting with `prefix` (e.g.
/// `hakmem-stats:`) into one map, later lines overriding earlier keys. Tokens without
/// `=` are kept as keys with value `true`. Returns `None` when no such line exists.
pub fn parse_kv_lines(text: &str, prefix: &str) -> Option<Map<String, Value>> {
    let mut found = false;
    let mut map = Map::new();
    for line in text.lines() {
        let line = line.trim();
        // Tolerate a prefix such as a pid or a valgrind `==123==` marker before it.
        let Some(pos) = line.find(prefix) else {
            continue;
        };
        found = true;
        for tok in line[pos + prefix.len()..].split_whitespace() {
            match tok.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    map.insert(k.to_string(), scalar(v));
                }
                Some(_) => {}
                None => {
                    map.insert(tok.to_string(), Value::Bool(true));
                }
            }
        }
    }
    found.then_some(map)
}

/// The stats printed at exit under `HAKMEM_STATS=1`.
pub fn parse_hakmem_stats(stderr: &str) -> Option<Map<String, Value>> {
    parse_kv_lines(stderr, "hakmem-stats:")
}

/// The feature list printed under `HAKMEM_VERBOSE=1`: `hakmem-features: name=on|off ...`.
pub fn parse_hakmem_features(stderr: &str) -> Option<Map<String, Value>> {
    parse_kv_lines(stderr, "hakmem-features:")
}

/// Key prefixes of the counters that prove hakmem (not the libc) served allocations.
pub const ALLOC_COUNTER_PREFIXES: [&str; 3] = ["tiny.carved", "run.allocs", "large.allocs"];

/// Sum of all allocation counters in a stats map (keys starting with one of
/// [`ALLOC_COUNTER_PREFIXES`]); non-numeric values count as zero.
pub fn alloc_counter_total(stats: &Map<String, Value>) -> f64 {
    stats
        .iter()
        .filter(|(k, _)| ALLOC_COUNTER_PREFIXES.iter().any(|p| k.starts_with(p)))
        .filter_map(|(_, v)| v.as_f64())
        .sum()
}

/// Verdict on whether a hakmem run was really served by hakmem.
pub fn served_by_hakmem(stats: Option<&Map<String, Value>>) -> Result<(), String> {
    match stats {
        None => Err(
            "no `hakmem-stats:` line on stderr (was libhakmem.so preloaded? \
                     HAKMEM_STATS=1 honoured?)"
                .to_string(),
        ),
        Some(s) if alloc_counter_total(s) > 0.0 => Ok(()),
        Some(_) => Err(format!(
            "`hakmem-stats:` allocation counters ({}) are all zero or absent",
            ALLOC_COUNTER_PREFIXES.join("*, ") + "*"
        )),
    }
}

/// Normalises a feature name for matching: lowercase, without a `hakmem_` prefix and
/// without `_`, `-`, `.` separators (`HAKMEM_TINY_POOL`, `tiny-pool`, `tiny_pool` all
/// become `tinypool`).
pub fn normalize_feature(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let stripped = lower.strip_prefix("hakmem_").unwrap_or(&lower);
    stripped
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .collect()
}

/// Whether the library announced `feature_env` (e.g. `HAKMEM_POOL`) in its
/// `hakmem-features:` line. Without such a line every feature counts as absent.
pub fn feature_known(features: Option<&Map<String, Value>>, feature_env: &str) -> bool {
    let want = normalize_feature(feature_env);
    features.is_some_and(|m| m.keys().any(|k| normalize_feature(k) == want))
}

/// Total instruction count (`Ir`) from callgrind's stderr: the `Collected : N` line, or
/// else the `I   refs: N,NNN` summary.
pub fn parse_callgrind_ir(stderr: &str) -> Option<u64> {
    let digits = |s: &str| -> Option<u64> {
        let d: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
        d.parse().ok()
    };
    for line in stderr.lines() {
        if let Some(pos) = line.find("Collected :") {
            let rest = &line[pos + "Collected :".len()..];
            if let Some(n) = rest.split_whitespace().next().and_then(digits) {
                return Some(n);
            }
        }
    }
    for line in stderr.lines() {
        if let Some(pos) = line.find("I   refs:") {
            return digits(&line[pos + "I   refs:".len()..]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"warming up
RESULT {"workload":"larson","threads":4,"metric":"ops_per_sec","value":12345.5,"higher_is_better":true,"ops":1000,"seconds":0.081,"params":{"min":8,"max":1000}}
"#;

    #[test]
    fn result_line_parses() {
        let r = parse_result(GOOD).unwrap();
        assert_eq!(r.workload, "larson");
        assert_eq!(r.threads, 4);
        assert_eq!(r.metric, "ops_per_sec");
        assert_eq!(r.value, 12345.5);
        assert!(r.higher_is_better);
        assert_eq!(r.ops, Some(1000.0));
        assert_eq!(r.params["max"], 1000);
        assert_eq!(r.peak_rss_kb, None);
        let with_rss = GOOD.replace(
            "\"seconds\":0.081,",
            "\"seconds\":0.081,\"peak_rss_kb\":5120,",
        );
        assert_eq!(parse_result(&with_rss).unwrap().peak_rss_kb, Some(5120.0));
    }

    #[test]
    fn result_line_must_be_last() {
        let s = format!("{GOOD}trailing noise\n");
        assert!(parse_result(&s).is_err());
        assert!(parse_result("").is_err());
        assert!(parse_result("RESULT {not json}").is_err());
        // Missing a required key.
        assert!(parse_result(r#"RESULT {"workload":"x","metric":"m","value":1}"#).is_err());
        // Trailing blank lines are fine.
        assert!(parse_result(&format!("{GOOD}\n\n")).is_ok());
    }

    #[test]
    fn stats_line_parses_generically() {
        let err = "some noise\nhakmem-stats: tiny.carved=10 run.allocs=0 large.allocs=3 \
                   mode=balanced rss.ratio=0.5 flag\n";
        let m = parse_hakmem_stats(err).unwrap();
        assert_eq!(m["tiny.carved"], 10);
        assert_eq!(m["mode"], "balanced");
        assert_eq!(m["rss.ratio"], 0.5);
        assert_eq!(m["flag"], true);
        assert_eq!(alloc_counter_total(&m), 13.0);
        assert!(served_by_hakmem(Some(&m)).is_ok());
    }

    #[test]
    fn stats_line_missing_or_zero_fails_served() {
        assert!(parse_hakmem_stats("nothing here\n").is_none());
        assert!(served_by_hakmem(None).is_err());
        let m = parse_hakmem_stats("hakmem-stats: tiny.carved=0 run.allocs=0 frees=99").unwrap();
        assert!(served_by_hakmem(Some(&m)).is_err());
        // Keys merely containing the name but not starting with it do not count.
        let m = parse_hakmem_stats("hakmem-stats: x.tiny.carved=5").unwrap();
        assert!(served_by_hakmem(Some(&m)).is_err());
        // Per-class keys with the prefix do count.
        let m = parse_hakmem_stats("hakmem-stats: tiny.carved.c3=1").unwrap();
        assert!(served_by_hakmem(Some(&m)).is_ok());
    }

    #[test]
    fn features_absent_until_line_exists() {
        // Verbose output that mentions "pool" in prose is not a feature declaration.
        let prose = "hakmem: init, pool ready, bigcache on\n";
        let f = parse_hakmem_features(prose);
        assert!(f.is_none());
        assert!(!feature_known(f.as_ref(), "HAKMEM_POOL"));

        let line = "hakmem-features: tiny_pool=on pool=off l25=on BIGCACHE=on site-rules=off\n";
        let f = parse_hakmem_features(line);
        assert!(feature_known(f.as_ref(), "HAKMEM_TINY_POOL"));
        assert!(feature_known(f.as_ref(), "HAKMEM_POOL"));
        assert!(feature_known(f.as_ref(), "HAKMEM_L25"));
        assert!(feature_known(f.as_ref(), "HAKMEM_BIGCACHE"));
        assert!(feature_known(f.as_ref(), "HAKMEM_SITE_RULES"));
        assert!(!feature_known(f.as_ref(), "HAKMEM_ELO"));
        assert_eq!(f.unwrap()["pool"], "off");
    }

    #[test]
    fn normalize() {
        assert_eq!(normalize_feature("HAKMEM_BATCH_MADVISE"), "batchmadvise");
        assert_eq!(normalize_feature("batch-madvise"), "batchmadvise");
        assert_eq!(normalize_feature("L25"), "l25");
    }

    #[test]
    fn callgrind_ir() {
        let err = "==12== Callgrind, a call-graph generating cache profiler\n\
                   ==12== Events    : Ir\n==12== Collected : 8123456\n==12==\n\
                   ==12== I   refs:      8,123,456\n";
        assert_eq!(parse_callgrind_ir(err), Some(8_123_456));
        assert_eq!(
            parse_callgrind_ir("==1== I   refs:      1,234\n"),
            Some(1234)
        );
        assert_eq!(parse_callgrind_ir("nothing"), None);
    }
}
