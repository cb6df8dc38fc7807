//! Building programs *linked* against libhakmem (not preloaded), for `header.rs` and `cxx.rs`:
//! a folder holding `libhakmem.so.0` (the SONAME) and `libhakmem.so` as symlinks to the built
//! `target/release/libhakmem.so`, the static `libhakmem.a` beside it, and `include/`.
#![allow(dead_code)]

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The SONAME the build script gives the library.
pub const SONAME: &str = "libhakmem.so.0";

/// The system libraries `libhakmem.a` needs: the `Libs.private` that `cargo xtask install`
/// writes into `hakmem.pc` (xtask/src/install.rs, `STATIC_DEPS`).
pub const STATIC_DEPS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl"];

/// The repository's `include/`.
pub fn include_dir() -> PathBuf {
    workspace_root().join("include")
}

/// A folder with `libhakmem.so.0` and `libhakmem.so` linking to the built library: for
/// `-L` at link time and `LD_LIBRARY_PATH` at run time.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch_dir("lib");
        for name in [SONAME, "libhakmem.so"] {
            std::os::unix::fs::symlink(libhakmem(), d.join(name)).expect("symlink libhakmem");
        }
        d
    })
}

/// `libhakmem.a`, built beside `libhakmem.so`.
pub fn staticlib() -> PathBuf {
    let a = libhakmem().with_file_name("libhakmem.a");
    assert!(a.exists(), "{} was not built", a.display());
    a
}

/// Compiles `tests/c/<src>` with `compiler` and `args` (before the source) and `libs` (after
/// it) into a scratch executable named `out`; panics with the compiler's output on failure.
pub fn build(compiler: &Path, src: &str, out: &str, args: &[&str], libs: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(src);
    let exe = tmp_dir().join(format!("{out}-{}", std::process::id()));
    let mut cmd = plain(compiler);
    cmd.args(args).arg(&src).args(libs).arg("-o").arg(&exe);
    let shown = format!("{cmd:?}");
    let res = run_with_timeout(cmd, Duration::from_secs(180));
    assert!(
        res.status.success() && res.stderr.trim().is_empty(),
        "{shown} failed or warned:\n{}",
        res.stderr
    );
    exe
}

/// Runs a linked program with `LD_LIBRARY_PATH` at [`lib_dir`] and no preload; asserts exit
/// status 0, no `FAIL` line and a closing `<prog>: N checks, 0 failures` with N >= `min`.
pub fn run_linked(exe: &Path, prog: &str, min: u64) -> Output {
    let mut cmd = plain(exe);
    cmd.env("LD_LIBRARY_PATH", lib_dir());
    let out = run(cmd);
    out.assert_success(&exe.display().to_string());
    let fails = fail_lines(&out.stdout);
    assert!(fails.is_empty(), "{}: FAIL lines:\n{fails}", exe.display());
    check_summary(&out.stdout, prog, min);
    out
}

/// Asserts the closing `<prog>: N checks, 0 failures` line with N >= `min`.
pub fn check_summary(stdout: &str, prog: &str, min: u64) {
    let last = stdout.lines().last().unwrap_or_default();
    let n: u64 = last
        .strip_prefix(&format!("{prog}: "))
        .and_then(|r| r.strip_suffix(" checks, 0 failures"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{prog}: bad closing line `{last}`:\n{}", tail(stdout, 3000)));
    assert!(n >= min, "{prog}: only {n} checks (want >= {min})");
}

/// The `NEEDED` entries of an ELF file (`readelf -d`), or `None` without readelf.
pub fn needed(file: &Path) -> Option<Vec<String>> {
    dynamic_entries(file, "(NEEDED)")
}

/// The values of one kind of dynamic entry (`(NEEDED)`, `(SONAME)`), from `readelf -d`.
pub fn dynamic_entries(file: &Path, kind: &str) -> Option<Vec<String>> {
    let readelf = require_program("readelf", "dynamic section")?;
    let mut cmd = Command::new(readelf);
    cmd.arg("-d").arg(file);
    let out = run(cmd);
    out.assert_success("readelf -d");
    Some(
        out.stdout
            .lines()
            .filter(|l| l.contains(kind))
            .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
            .collect(),
    )
}
