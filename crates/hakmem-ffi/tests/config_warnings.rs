//! Configuration warnings through `libhakmem.so` (`tests/c/hello.c` under `LD_PRELOAD`): an
//! unknown `HAKMEM_*` variable gets exactly one warning naming the closest valid one, a bad
//! value's warning names the valid values or range, and a clean environment gets no warning.

mod common;
use common::*;

/// Runs `hello` under LD_PRELOAD with no inherited `HAKMEM_*` variable, then `env`.
fn hello(env: &[(&str, &str)]) -> Output {
    let exe = compile_c("hello");
    let mut cmd = preloaded(plain(&exe));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HAKMEM_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd);
    out.assert_success(&format!("hello {env:?}"));
    assert!(out.stdout.starts_with("hello "), "stdout: {}", out.stdout);
    out
}

/// The stderr lines that contain `needle`.
fn lines_with<'a>(out: &'a Output, needle: &str) -> Vec<&'a str> {
    out.stderr.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn unknown_variable_gets_one_warning_with_the_closest_name() {
    let out = hello(&[("HAKMEM_STAT", "1"), ("HAKMEM_PURGE_DELAY", "50")]);
    // In the environment's order, which the test does not fix: sorted.
    let mut unknown = lines_with(&out, "unknown variable");
    unknown.sort();
    assert_eq!(
        unknown,
        [
            "hakmem: unknown variable HAKMEM_PURGE_DELAY (did you mean HAKMEM_PURGE_DELAY_MS?)",
            "hakmem: unknown variable HAKMEM_STAT (did you mean HAKMEM_STATS?)",
        ],
        "stderr:\n{}",
        out.stderr
    );
    // The misspelt variable did not act as the real one.
    assert!(
        !out.stderr.contains("hakmem-stats:"),
        "HAKMEM_STAT turned the counters on:\n{}",
        out.stderr
    );
}

#[test]
fn bad_values_name_the_valid_values() {
    let out = hello(&[
        ("HAKMEM_THP", "always"),
        ("HAKMEM_PURGE_DELAY_MS", "99999"),
        ("HAKMEM_STATS", "2"),
    ]);
    let one = |name: &str| {
        let l = lines_with(&out, name);
        assert_eq!(l.len(), 1, "{name}: stderr:\n{}", out.stderr);
        l[0]
    };
    assert_eq!(
        one("HAKMEM_THP"),
        "hakmem: warning: HAKMEM_THP=\"always\" is not a valid value (valid: auto, off, on); \
         using auto"
    );
    assert_eq!(
        one("HAKMEM_PURGE_DELAY_MS"),
        "hakmem: warning: HAKMEM_PURGE_DELAY_MS=\"99999\" is not a valid value (valid: a whole \
         number of milliseconds, 0 to 60000); using 100"
    );
    assert_eq!(
        one("HAKMEM_STATS"),
        "hakmem: warning: HAKMEM_STATS=\"2\" is not a valid value (valid: 1/on/true/yes (a \
         table), json, or 0/off/false/no); using 0"
    );
    assert!(
        lines_with(&out, "unknown variable").is_empty(),
        "{}",
        out.stderr
    );
}

#[test]
fn valid_variables_are_silent() {
    let out = hello(&[
        ("HAKMEM_STATS", "1"),
        ("HAKMEM_MODE", "fast"),
        ("HAKMEM_PURGE_DELAY_MS", "60000"),
        ("HAKMEM_GUARD_SAMPLE", "0"),
        ("MY_HAKMEM_THING", "1"),
    ]);
    let noise: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("hakmem:") && !l.starts_with("hakmem: stats of pid"))
        .collect();
    assert!(noise.is_empty(), "unexpected warnings:\n{}", out.stderr);
    assert!(out.stderr.contains("hakmem-stats:"), "{}", out.stderr);
}
