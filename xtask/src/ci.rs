//! `cargo xtask build`, `cargo xtask test` (the CI command) and `cargo xtask loom`.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{self, BenchOpts};
use crate::config::{cargo_bin, is_root, target_dir, workspace_root};
use crate::util::{self, header, run_status};

/// A cargo command in the workspace root with the shared target dir.
fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(cargo_bin());
    c.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir())
        .args(args);
    c
}

/// `cargo xtask build`.
pub fn build() -> Result<()> {
    header("cargo build --release -p hakmem-ffi -p hakmem-bench");
    let (so, bin) = bench::build_release()?;
    if !so.exists() {
        bail!("build succeeded but {} is missing", so.display());
    }
    println!("workload binary: {}", bin.display());
    println!("{}", so.display());
    Ok(())
}

/// System tools the tests use, as (program, Debian package).
const SYSTEM_TOOLS: [(&str, &str); 5] = [
    ("valgrind", "valgrind"),
    ("g++", "g++"),
    ("pkg-config", "pkg-config"),
    ("objcopy", "binutils"),
    ("readelf", "binutils"),
];

/// `cargo xtask test`: the CI sequence; stops at the first failing step.
pub fn test(no_lint: bool) -> Result<()> {
    let total = if no_lint { 9 } else { 11 };
    let mut n = 0;
    let mut step = |name: &str| {
        n += 1;
        header(&format!("[{n}/{total}] {name}"));
    };

    step("system tools");
    let missing: Vec<(&str, &str)> = SYSTEM_TOOLS
        .iter()
        .copied()
        .filter(|(p, _)| util::which(p).is_none())
        .collect();
    if missing.is_empty() {
        println!("all present: {}", SYSTEM_TOOLS.map(|t| t.0).join(", "));
    } else if is_root() {
        let pkgs: Vec<&str> = missing.iter().map(|t| t.1).collect();
        if !util::apt_install(&pkgs) {
            eprintln!("warning: could not install {}", pkgs.join(" "));
        }
    } else {
        println!(
            "not root: not installing {}; tests needing them may skip",
            missing.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
        );
    }

    if !no_lint {
        step("cargo fmt --all -- --check");
        run_status(&mut cargo(&["fmt", "--all", "--", "--check"]))?;
        step(
            "cargo clippy --workspace --all-targets -- -D warnings (and the facade without `learn`)",
        );
        run_status(&mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        // The facade without its default `learn` feature must build and stay clean too.
        run_status(&mut cargo(&[
            "clippy",
            "-p",
            "hakmem-alloc",
            "--no-default-features",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }

    step("cargo doc --no-deps --workspace (RUSTDOCFLAGS=\"-D warnings\")");
    run_status(cargo(DOC).env("RUSTDOCFLAGS", "-D warnings"))?;

    step("cargo publish --dry-run --workspace (packaging check, uploads nothing)");
    // A fresh target directory too: cargo reuses a built registry crate of the same version
    // without looking at its sources, so a sibling would be checked against a stale build.
    forget_packaged_sources();
    let dry = target_dir().join("publish-dry-run");
    let _ = std::fs::remove_dir_all(&dry);
    run_status(cargo(&PUBLISH_DRY_RUN).env("CARGO_TARGET_DIR", &dry))?;

    step("cargo build --release -p hakmem-ffi -p hakmem-bench");
    bench::build_release()?;

    step("cargo test --workspace --release");
    run_status(&mut cargo(&["test", "--workspace", "--release"]))?;

    step(&format!(
        "cargo test {} (debug build: the slab engine's invariant checks)",
        DEBUG_TEST_CRATES[1..].join(" ")
    ));
    run_status(&mut cargo(&DEBUG_TEST_CRATES))?;

    step("install into a temporary prefix; C and C++ programs built with pkg-config");
    crate::install::smoke().context("install smoke failed")?;

    step("loom models (cargo xtask loom)");
    loom(&[])?;

    step("bench smoke (--quick, glibc + hakmem, 1 run)");
    let out = std::env::temp_dir().join(format!("hakmem-bench-smoke-{}", std::process::id()));
    let opts = BenchOpts {
        quick: true,
        runs: Some(1),
        allocators: vec!["glibc".into(), "hakmem".into()],
        out: Some(out.clone()),
        no_build: true,
        // The real programs take minutes and need packages: not part of the CI smoke.
        no_apps: true,
        ..Default::default()
    };
    let record = bench::bench(&opts).context("bench smoke failed")?;
    verify_smoke(&std::fs::read_to_string(&record)?)?;
    println!("\nbench smoke OK (report in {})", out.display());
    println!("\nxtask test: all {total} steps passed");
    Ok(())
}

/// The test suites that exercise the slab engine, run once more in a debug build, where
/// `Slab::check` and `Heap::check` run at the heap's quiescent points (compiled out in
/// release). The other crates' tests add little to the engine's and much to the time (the C
/// ABI's suites need the release library).
const DEBUG_TEST_CRATES: [&str; 11] = [
    "test",
    "-p",
    "hakmem-core",
    "-p",
    "hakmem-slab",
    "-p",
    "hakmem-tiny",
    "-p",
    "hakmem-pool",
    "-p",
    "hakmem-alloc",
];

/// The documentation build: every crate's docs, no rustdoc warning allowed (`RUSTDOCFLAGS`).
const DOC: &[&str] = &["doc", "--no-deps", "--workspace"];

/// Packages every published crate and builds each package on its own, siblings resolved from
/// the packages just made (cargo's workspace publishing), without uploading: `--dry-run` stops
/// before the upload. `--allow-dirty`: a local run checks the working tree as it is. Needs the
/// crates.io index for the external dependencies.
const PUBLISH_DRY_RUN: [&str; 4] = ["publish", "--dry-run", "--workspace", "--allow-dirty"];

/// Removes the sources cargo extracted from an earlier dry run's local registry: the version
/// does not change between runs, so cargo would verify a crate against its siblings' stale
/// sources (`$CARGO_HOME/registry/src/-<hash>/hakmem-*`; crates.io's own directory is left
/// alone).
fn forget_packaged_sources() {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return;
    };
    for reg in registries.flatten() {
        if !reg.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for krate in std::fs::read_dir(reg.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if krate.file_name().to_string_lossy().starts_with("hakmem-") {
                let _ = std::fs::remove_dir_all(krate.path());
            }
        }
    }
}

/// Checks the smoke record: every workload has a glibc and a hakmem row with a value,
/// and every hakmem row proved hakmem served.
pub fn verify_smoke(record_json: &str) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(record_json)?;
    let results = v["results"].as_array().context("record has no results")?;
    if results.is_empty() {
        bail!("smoke record has no results");
    }
    let mut problems = Vec::new();
    for r in results {
        let name = format!("{}/{}", r["workload"], r["allocator"]);
        if r["median"].as_f64().is_none() {
            problems.push(format!("{name}: no value"));
        }
        if r["allocator"]
            .as_str()
            .is_some_and(|a| a.starts_with("hakmem"))
            && r["served_by_hakmem"] != serde_json::Value::Bool(true)
        {
            problems.push(format!("{name}: not served by hakmem"));
        }
    }
    if !results.iter().any(|r| r["allocator"] == "hakmem") {
        problems.push("no hakmem row at all".into());
    }
    if !problems.is_empty() {
        bail!("bench smoke: {}", problems.join("; "));
    }
    Ok(())
}

/// `cargo xtask loom`: loom models (`#[cfg(loom)]`, test names containing `loom`) in
/// their own target dir so the normal build is not invalidated.
pub fn loom(extra: &[String]) -> Result<()> {
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.split_whitespace().any(|f| f == "loom") {
        if !rustflags.is_empty() {
            rustflags.push(' ');
        }
        rustflags.push_str("--cfg loom");
    }
    // The crates that hold lock-free structures and their models; the facade and the C ABI
    // are built on them and have no models of their own.
    const LOOM_CRATES: [&str; 4] = [
        "hakmem-core",
        "hakmem-slab",
        "hakmem-tiny",
        "hakmem-bigcache",
    ];
    let preemptions = std::env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "3".into());
    let mut c = Command::new(cargo_bin());
    // Loom models need optimised code but not fat LTO: relink-heavy settings only cost
    // build time in this separate target dir (each overridable from the environment).
    for (k, v) in [
        ("CARGO_PROFILE_RELEASE_LTO", "off"),
        ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
        ("CARGO_PROFILE_RELEASE_DEBUG", "0"),
    ] {
        if std::env::var_os(k).is_none() {
            c.env(k, v);
        }
    }
    c.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir().join("loom"))
        .env("RUSTFLAGS", &rustflags)
        .env("LOOM_MAX_PREEMPTIONS", &preemptions)
        .args(["test", "--release", "--lib"])
        .args(LOOM_CRATES.iter().flat_map(|c| ["-p", c]))
        .arg("loom")
        .args(extra);
    header(&format!(
        "loom models (RUSTFLAGS=\"{rustflags}\", LOOM_MAX_PREEMPTIONS={preemptions})"
    ));
    run_status(&mut c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_step_never_uploads() {
        assert_eq!(PUBLISH_DRY_RUN[0], "publish");
        assert!(PUBLISH_DRY_RUN.contains(&"--dry-run"));
        assert!(DOC.contains(&"--workspace") && DOC.contains(&"--no-deps"));
        assert_eq!(DEBUG_TEST_CRATES[0], "test");
        assert!(
            !DEBUG_TEST_CRATES.contains(&"--release"),
            "the debug step is a debug build"
        );
    }

    #[test]
    fn smoke_verification() {
        let ok = r#"{"results":[
            {"workload":"w","allocator":"glibc","median":1.0,"served_by_hakmem":null},
            {"workload":"w","allocator":"hakmem","median":2.0,"served_by_hakmem":true}]}"#;
        assert!(verify_smoke(ok).is_ok());
        let unserved = ok.replace("\"served_by_hakmem\":true", "\"served_by_hakmem\":false");
        assert!(verify_smoke(&unserved).is_err());
        let failed = ok.replace("\"median\":2.0", "\"median\":null");
        assert!(verify_smoke(&failed).is_err());
        let no_hakmem = r#"{"results":[{"workload":"w","allocator":"glibc","median":1.0}]}"#;
        assert!(verify_smoke(no_hakmem).is_err());
        assert!(verify_smoke(r#"{"results":[]}"#).is_err());
    }
}
