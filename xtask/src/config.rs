//! Capture of the configuration record: where things are, what machine this is,
//! how the code was built and which commit it is. Pure helpers are unit-tested;
//! the thin wrappers around files and commands degrade to "unknown" on failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The workspace root: the parent of this package's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the current
/// directory if relative), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().map(|c| c.join(&p)).unwrap_or(p)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Civil date (year, month, day) from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn utc_parts(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `2026-11-24T14:00:28Z` for a number of seconds since the Unix epoch.
pub fn rfc3339_utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20261124T140028Z`: a file-name-safe timestamp.
pub fn file_timestamp(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// CPU model from `/proc/cpuinfo` text (`model name` on x86, else `Model`/`Hardware`/
/// `CPU part` lines) and the number of `processor` entries.
pub fn parse_cpuinfo(text: &str) -> (Option<String>, usize) {
    let mut model = None;
    let mut count = 0;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "processor" => count += 1,
            "model name" | "Model" | "Hardware" | "cpu model" if model.is_none() => {
                model = Some(v.to_string())
            }
            _ => {}
        }
    }
    (model, count)
}

/// `MemTotal` in KiB from `/proc/meminfo` text.
pub fn parse_meminfo_total_kb(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn toml_scalar(v: &str) -> Value {
    let v = v.trim();
    // Drop a trailing comment outside a string.
    let v = if v.starts_with('"') || v.starts_with('\'') {
        v
    } else {
        v.split('#').next().unwrap_or(v).trim()
    };
    if let Some(s) = v
        .strip_prefix('"')
        .and_then(|s| s.split('"').next())
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.split('\'').next()))
    {
        return Value::String(s.to_string());
    }
    match v {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        return Value::from(f);
    }
    Value::String(v.to_string())
}

/// The `key = value` pairs of one `[section]` of a TOML file (a deliberately small
/// reader for flat sections such as `[profile.release]`; nested tables are skipped).
pub fn toml_section(text: &str, section: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_start_matches('[').split(']').next().unwrap_or("");
            inside = name.trim() == section;
            continue;
        }
        if !inside || t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = t.split_once('=') {
            out.insert(k.trim().trim_matches('"').to_string(), toml_scalar(v));
        }
    }
    out
}

/// Whether an environment variable belongs in the record: hakmem's own knobs and
/// anything that changes which malloc runs or how it behaves.
pub fn is_recorded_env(key: &str) -> bool {
    key.starts_with("HAKMEM_")
        || key.starts_with("LD_")
        || key.starts_with("MALLOC_")
        || key.starts_with("MIMALLOC_")
        || key.starts_with("TCMALLOC_")
        || key.starts_with("JEMALLOC_")
        || key.starts_with("SNMALLOC_")
        || matches!(
            key,
            "GLIBC_TUNABLES" | "MALLOC_CONF" | "_RJEM_MALLOC_CONF" | "LOOM_MAX_PREEMPTIONS"
        )
}

/// The recorded subset of `vars`.
pub fn recorded_env(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(k, _)| is_recorded_env(k))
        .collect()
}

/// The mode the default `hakmem` row runs in.
pub fn mode_label(hakmem_mode: Option<&str>) -> String {
    match hakmem_mode {
        Some(m) if !m.trim().is_empty() => m.trim().to_string(),
        _ => "balanced (default)".to_string(),
    }
}

/// Stdout of a command, trimmed; `None` when it cannot run or fails.
pub fn command_stdout(program: &str, args: &[&str], dir: Option<&Path>) -> Option<String> {
    let mut c = Command::new(program);
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out = c.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `(commit, dirty)` of the workspace.
pub fn git_state(root: &Path) -> (String, Option<bool>) {
    let commit = command_stdout("git", &["rev-parse", "HEAD"], Some(root))
        .unwrap_or_else(|| "unknown (no commit or not a git checkout)".to_string());
    let dirty =
        command_stdout("git", &["status", "--porcelain"], Some(root)).map(|s| !s.is_empty());
    (commit, dirty)
}

/// The `machine` object of the record.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let (model, procs) = parse_cpuinfo(&cpuinfo);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available = std::thread::available_parallelism().map(|n| n.get()).ok();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| command_stdout("hostname", &[], None));
    json!({
        "cpu_model": model.unwrap_or_else(|| "unknown".into()),
        "cores": procs,
        "cores_available": available,
        "kernel": command_stdout("uname", &["-r"], None).unwrap_or_else(|| "unknown".into()),
        "mem_total_kb": parse_meminfo_total_kb(&meminfo),
        "hostname": hostname.unwrap_or_else(|| "unknown".into()),
    })
}

/// The `build` object of the record.
pub fn build_info(root: &Path) -> Value {
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    json!({
        "profile": "release",
        "RUSTFLAGS": std::env::var("RUSTFLAGS").ok(),
        "CARGO_ENCODED_RUSTFLAGS": std::env::var("CARGO_ENCODED_RUSTFLAGS").ok(),
        "rustc": command_stdout(&rustc, &["-vV"], Some(root)).unwrap_or_else(|| "unknown".into()),
        "cargo": command_stdout(&cargo_bin(), &["-V"], Some(root)).unwrap_or_else(|| "unknown".into()),
        "profile_release": toml_section(&cargo_toml, "profile.release"),
        "profile_env_overrides": std::env::vars()
            .filter(|(k, _)| k.starts_with("CARGO_PROFILE_") || k.starts_with("CARGO_BUILD_"))
            .collect::<BTreeMap<_, _>>(),
    })
}

/// The cargo executable running us (`CARGO`), or `cargo` from `PATH`.
pub fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Whether we run as root (may install system packages).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(file_timestamp(1_700_000_000), "20231114T221320Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn cpuinfo_and_meminfo() {
        let c = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) X\n\n\
                 processor\t: 1\nmodel name\t: Intel(R) Xeon(R) X\n";
        assert_eq!(parse_cpuinfo(c), (Some("Intel(R) Xeon(R) X".into()), 2));
        assert_eq!(parse_cpuinfo(""), (None, 0));
        let m = "MemTotal:       24641232 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_meminfo_total_kb(m), Some(24_641_232));
        assert_eq!(parse_meminfo_total_kb("x"), None);
    }

    #[test]
    fn profile_section() {
        let t = "[workspace]\nmembers = [\"a\"]\n\n[profile.release]\npanic = \"abort\"\n\
                 codegen-units = 1 # one\nlto = \"fat\"\ndebug = 1\nincremental = false\n\n\
                 [profile.dev]\nopt-level = 0\n";
        let m = toml_section(t, "profile.release");
        assert_eq!(m.len(), 5);
        assert_eq!(m["panic"], "abort");
        assert_eq!(m["codegen-units"], 1);
        assert_eq!(m["lto"], "fat");
        assert_eq!(m["incremental"], false);
        assert!(!m.contains_key("opt-level"));
        assert!(toml_section(t, "profile.bench").is_empty());
    }

    #[test]
    fn env_filter_and_mode() {
        let vars = vec![
            ("HAKMEM_MODE".to_string(), "fast".to_string()),
            ("LD_PRELOAD".to_string(), "/x.so".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
            ("HOME".to_string(), "/root".to_string()),
            ("GLIBC_TUNABLES".to_string(), "a=b".to_string()),
        ];
        let e = recorded_env(vars);
        assert_eq!(
            e.keys().collect::<Vec<_>>(),
            ["GLIBC_TUNABLES", "HAKMEM_MODE", "LD_PRELOAD"]
        );
        assert_eq!(mode_label(None), "balanced (default)");
        assert_eq!(mode_label(Some("")), "balanced (default)");
        assert_eq!(mode_label(Some("fast")), "fast");
    }

    #[test]
    fn roots() {
        let root = workspace_root();
        assert!(root.join("Cargo.toml").exists());
        assert!(root.join("xtask").is_dir());
    }
}
