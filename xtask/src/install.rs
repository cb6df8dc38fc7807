//! `cargo xtask install [--prefix DIR]`: the C packaging of libhakmem, and the CI check that
//! installs it into a temporary prefix and builds C and C++ programs against it with
//! pkg-config.
//!
//! Layout under the prefix (default `/usr/local`):
//!
//! ```text
//! lib/libhakmem.so.0.1.0          stripped, SONAME libhakmem.so.0, .gnu_debuglink to the file below
//! lib/libhakmem.so.0 -> libhakmem.so.0.1.0
//! lib/libhakmem.so   -> libhakmem.so.0
//! lib/.debug/libhakmem.so.0.1.0.debug   its debug info (objcopy --only-keep-debug): gdb and
//!                                       perf look in `.debug/` beside a library by themselves
//! lib/libhakmem.a                 debug info stripped
//! lib/pkgconfig/hakmem.pc
//! include/hakmem.h
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::config::{cargo_bin, is_root, target_dir, workspace_root};
use crate::util::{self, header, run_status, tail_lines};

/// The system libraries `libhakmem.a` needs (`rustc --print native-static-libs` for the
/// `staticlib` on Linux/glibc, without the implicit `-lc`): `Libs.private` of `hakmem.pc`.
/// `crates/hakmem-ffi/tests/linking` links the archive with the same list.
pub const STATIC_DEPS: &str = "-lgcc_s -lutil -lrt -lpthread -lm -ldl";

/// Options of `cargo xtask install`.
#[derive(clap::Args, Debug, Clone)]
pub struct InstallOpts {
    /// Installation prefix (made absolute; `hakmem.pc` records it).
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Instead: install into a temporary prefix and build and run C and C++ programs against
    /// it with pkg-config (the check `cargo xtask test` runs).
    #[arg(long, conflicts_with = "prefix")]
    pub check: bool,
}

/// `cargo xtask install`.
pub fn run(opts: &InstallOpts) -> Result<()> {
    if opts.check {
        smoke()
    } else {
        install(opts).map(|_| ())
    }
}

/// The package that builds `libhakmem.so`, found by its library target (named `hakmem`, a
/// `cdylib`) rather than by package name.
#[derive(Debug, PartialEq)]
struct Package {
    name: String,
    version: String,
}

fn find_package(metadata: &serde_json::Value) -> Result<Package> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata: no packages")?;
    for p in packages {
        let cdylib = p["targets"].as_array().into_iter().flatten().any(|t| {
            t["name"] == "hakmem"
                && t["crate_types"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        });
        if cdylib {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            return Ok(Package {
                name: s("name"),
                version: s("version"),
            });
        }
    }
    bail!("no workspace package has a `hakmem` cdylib target")
}

fn package() -> Result<Package> {
    let out = Command::new(cargo_bin())
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            tail_lines(&String::from_utf8_lossy(&out.stderr), 5)
        );
    }
    find_package(&serde_json::from_slice(&out.stdout)?)
}

/// The SONAME's number: the major version (as the library's build script sets it).
fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or("0")
}

/// The text of `hakmem.pc` for an absolute `prefix`.
fn pc_text(prefix: &Path, version: &str) -> String {
    format!(
        "prefix={}\n\
         exec_prefix=${{prefix}}\n\
         libdir=${{exec_prefix}}/lib\n\
         includedir=${{prefix}}/include\n\
         \n\
         Name: hakmem\n\
         Description: hakmem, a general-purpose memory allocator (malloc family, C++ new/delete)\n\
         Version: {version}\n\
         Libs: -L${{libdir}} -lhakmem\n\
         Libs.private: {STATIC_DEPS}\n\
         Cflags: -I${{includedir}}\n",
        prefix.display()
    )
}

/// Runs a tool, with its output shown only when it fails.
fn tool(program: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let mut c = Command::new(program);
    c.args(args);
    let line = util::show(&c);
    let out = c
        .output()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            tail_lines(&String::from_utf8_lossy(&out.stderr), 5)
        );
    }
    Ok(())
}

/// Makes sure binutils' `objcopy` is there: installs `binutils` as root, else an error.
fn need_objcopy() -> Result<()> {
    if util::which("objcopy").is_none() && !(is_root() && util::apt_install(&["binutils"])) {
        bail!("objcopy (binutils) is needed to strip the libraries and is not installed");
    }
    Ok(())
}

/// Writes `to` through a temporary file in its folder and a rename, so that a program
/// running the old library keeps its mapping intact.
fn replace_with(to: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = to.file_name().context("no file name")?.to_string_lossy();
    let tmp = to.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    write(&tmp)?;
    std::fs::rename(&tmp, to).with_context(|| format!("cannot rename onto {}", to.display()))
}

fn symlink(target: &str, link: &Path) -> Result<()> {
    replace_with(link, |tmp| {
        std::os::unix::fs::symlink(target, tmp)
            .with_context(|| format!("cannot create the symlink {}", tmp.display()))
    })
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", p.display()))
}

/// What an installation put where.
#[derive(Debug)]
pub struct Installed {
    pub prefix: PathBuf,
    pub version: String,
    pub shared: PathBuf,
    pub debug: PathBuf,
    pub archive: PathBuf,
}

/// Builds and installs under `opts.prefix`.
pub fn install(opts: &InstallOpts) -> Result<Installed> {
    let prefix = std::path::absolute(&opts.prefix)
        .with_context(|| format!("bad prefix {}", opts.prefix.display()))?;
    let pkg = package()?;
    header(&format!("cargo build --release -p {}", pkg.name));
    let target = target_dir();
    run_status(
        Command::new(cargo_bin())
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "-p", &pkg.name]),
    )?;
    let so = target.join("release/libhakmem.so");
    let a = target.join("release/libhakmem.a");
    for f in [&so, &a] {
        if !f.exists() {
            bail!("the build succeeded but {} is missing", f.display());
        }
    }
    need_objcopy()?;

    header(&format!("install into {}", prefix.display()));
    let lib = prefix.join("lib");
    let debug_dir = lib.join(".debug");
    let pc_dir = lib.join("pkgconfig");
    let include = prefix.join("include");
    for d in [&lib, &debug_dir, &pc_dir, &include] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let file = format!("libhakmem.so.{}", pkg.version);
    let soname = format!("libhakmem.so.{}", major(&pkg.version));
    let shared = lib.join(&file);
    let debug = debug_dir.join(format!("{file}.debug"));

    replace_with(&debug, |tmp| {
        tool(
            "objcopy",
            &["--only-keep-debug".as_ref(), so.as_ref(), tmp.as_ref()],
        )?;
        set_mode(tmp, 0o644)
    })?;
    let link = format!("--add-gnu-debuglink={}", debug.display());
    replace_with(&shared, |tmp| {
        tool(
            "objcopy",
            &[
                "--strip-debug".as_ref(),
                "--strip-unneeded".as_ref(),
                link.as_ref(),
                so.as_ref(),
                tmp.as_ref(),
            ],
        )?;
        set_mode(tmp, 0o755)
    })?;
    symlink(&file, &lib.join(&soname))?;
    symlink(&soname, &lib.join("libhakmem.so"))?;
    let archive = lib.join("libhakmem.a");
    replace_with(&archive, |tmp| {
        tool(
            "objcopy",
            &["--strip-debug".as_ref(), a.as_ref(), tmp.as_ref()],
        )?;
        set_mode(tmp, 0o644)
    })?;
    let h = include.join("hakmem.h");
    replace_with(&h, |tmp| {
        std::fs::copy(workspace_root().join("include/hakmem.h"), tmp)
            .context("cannot copy include/hakmem.h")?;
        set_mode(tmp, 0o644)
    })?;
    let pc = pc_dir.join("hakmem.pc");
    replace_with(&pc, |tmp| {
        std::fs::write(tmp, pc_text(&prefix, &pkg.version)).context("cannot write hakmem.pc")
    })?;

    for p in [
        &shared,
        &lib.join(&soname),
        &lib.join("libhakmem.so"),
        &debug,
        &archive,
        &h,
        &pc,
    ] {
        println!("  {}", p.display());
    }
    println!(
        "\nuse: cc app.c $(pkg-config --cflags --libs hakmem)   \
         (PKG_CONFIG_PATH={} if pkg-config does not look there;\n     \
         LD_LIBRARY_PATH={} or ldconfig if the loader does not)",
        pc_dir.display(),
        lib.display()
    );
    Ok(Installed {
        prefix,
        version: pkg.version,
        shared,
        debug,
        archive,
    })
}

/// Section names of an ELF file (`readelf -S -W`).
fn sections(file: &Path) -> Result<String> {
    let out = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(file)
        .output()
        .context("cannot run readelf")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `NEEDED` entries of an ELF file (`readelf -d`).
fn needed(file: &Path) -> Result<Vec<String>> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(file)
        .output()
        .context("cannot run readelf")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect())
}

/// The whitespace-split output of `pkg-config ARGS hakmem` with the prefix's `.pc`.
fn pkg_config(pc_dir: &Path, args: &[&str]) -> Result<Vec<String>> {
    let mut c = Command::new("pkg-config");
    c.env("PKG_CONFIG_PATH", pc_dir).args(args).arg("hakmem");
    let line = util::show(&c);
    let out = c.output().with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed: {}",
            tail_lines(&String::from_utf8_lossy(&out.stderr), 3)
        );
    }
    println!(
        "$ {line}\n  {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect())
}

/// Compiles `src` with `compiler`, then runs it (with `LD_LIBRARY_PATH=lib`) and checks that
/// its last line is `<prog>: N checks, 0 failures`.
fn build_and_run(
    compiler: &str,
    flags: &[&str],
    src: &Path,
    libs: &[String],
    exe: &Path,
    lib: &Path,
    prog: &str,
) -> Result<()> {
    let mut c = Command::new(compiler);
    c.args(flags).arg(src).args(libs).arg("-o").arg(exe);
    let line = util::show(&c);
    println!("$ {line}");
    let out = c.output().with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        bail!("`{line}` failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = Command::new(exe)
        .env("LD_LIBRARY_PATH", lib)
        .env_remove("LD_PRELOAD")
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let ok = out.status.success()
        && last.starts_with(&format!("{prog}: "))
        && last.ends_with(" checks, 0 failures");
    if !ok {
        bail!(
            "{} ({}): {}\n{}",
            exe.display(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("  {last}");
    Ok(())
}

/// The CI check: installs into a temporary prefix, checks the files, then builds
/// `tests/c/header.c` (C) and `tests/c/cxx.cpp` (C++) with `pkg-config --cflags --libs hakmem`
/// and `header.c` statically against `libhakmem.a`, and runs them from the prefix. Without
/// pkg-config (not root, so not installed) or a C++ compiler, that part is skipped with a line.
pub fn smoke() -> Result<()> {
    let prefix = std::env::temp_dir().join(format!("hakmem-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    let inst = install(&InstallOpts {
        prefix: prefix.clone(),
        check: false,
    })?;
    header("check the installed files");
    let lib = inst.prefix.join("lib");
    let file = inst
        .shared
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let soname = format!("libhakmem.so.{}", major(&inst.version));
    let link = |name: &str| std::fs::read_link(lib.join(name)).ok();
    if link(&soname) != Some(PathBuf::from(&file))
        || link("libhakmem.so") != Some(PathBuf::from(&soname))
    {
        bail!(
            "symlinks: {soname} -> {:?}, libhakmem.so -> {:?}",
            link(&soname),
            link("libhakmem.so")
        );
    }
    let so = sections(&inst.shared)?;
    let dbg = sections(&inst.debug)?;
    let ar = sections(&inst.archive)?;
    if so.contains(".debug_info") || !so.contains(".gnu_debuglink") {
        bail!(
            "{} is not stripped with a debug link",
            inst.shared.display()
        );
    }
    if !dbg.contains(".debug_info") {
        bail!("{} has no debug info", inst.debug.display());
    }
    if ar.contains(".debug_info") {
        bail!("{} is not stripped", inst.archive.display());
    }
    println!("ok: symlinks, stripped libraries, split debug info");

    if util::which("pkg-config").is_none() && is_root() {
        util::apt_install(&["pkg-config"]);
    }
    if util::which("pkg-config").is_none() {
        println!(
            "skip: pkg-config is not installed (and not root to install it): no pkg-config build"
        );
        return Ok(());
    }
    header("build and run programs with pkg-config --cflags --libs hakmem");
    let pc_dir = lib.join("pkgconfig");
    let version = pkg_config(&pc_dir, &["--modversion"])?;
    if version != [inst.version.clone()] {
        bail!(
            "pkg-config --modversion hakmem: {version:?}, want {}",
            inst.version
        );
    }
    let flags = pkg_config(&pc_dir, &["--cflags", "--libs"])?;
    let tests = workspace_root().join("crates/hakmem-ffi/tests/c");
    let work = prefix.join("work");
    std::fs::create_dir_all(&work)?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let strict = ["-O1", "-Wall", "-Wextra", "-Werror"];
    let exe = work.join("header");
    build_and_run(
        &cc,
        &strict,
        &tests.join("header.c"),
        &flags,
        &exe,
        &lib,
        "header",
    )?;
    let deps = needed(&exe)?;
    if !deps.contains(&soname) {
        bail!("{} does not need {soname}: {deps:?}", exe.display());
    }
    println!("  NEEDED {soname}");

    // Statically: the archive by path, and the system libraries it needs from the .pc.
    let mut static_libs = pkg_config(&pc_dir, &["--cflags"])?;
    static_libs.push(inst.archive.display().to_string());
    static_libs.extend(
        pkg_config(&pc_dir, &["--static", "--libs-only-l"])?
            .into_iter()
            .filter(|l| l != "-lhakmem"),
    );
    let exe = work.join("header-static");
    build_and_run(
        &cc,
        &strict,
        &tests.join("header.c"),
        &static_libs,
        &exe,
        &lib,
        "header",
    )?;
    if needed(&exe)?.iter().any(|d| d.starts_with("libhakmem")) {
        bail!("{} links libhakmem dynamically", exe.display());
    }

    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    if util::which(&cxx).is_none() {
        println!("skip: no C++ compiler ({cxx}): no C++ build");
    } else {
        let mut libs = flags.clone();
        libs.push("-ldl".into());
        let cxx_flags = [
            "-std=c++17",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-DHAKMEM_LINKED",
        ];
        build_and_run(
            &cxx,
            &cxx_flags,
            &tests.join("cxx.cpp"),
            &libs,
            &work.join("cxx"),
            &lib,
            "cxx",
        )?;
    }
    let _ = std::fs::remove_dir_all(&prefix);
    println!("\ninstall smoke OK");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_file() {
        let t = pc_text(Path::new("/opt/hk"), "0.1.0");
        assert!(t.starts_with("prefix=/opt/hk\n"));
        assert!(t.contains("\nlibdir=${exec_prefix}/lib\n"));
        assert!(t.contains("\nVersion: 0.1.0\n"));
        assert!(t.contains("\nLibs: -L${libdir} -lhakmem\n"));
        assert!(t.contains("\nLibs.private: -lgcc_s -lutil -lrt -lpthread -lm -ldl\n"));
        assert!(t.contains("\nCflags: -I${includedir}\n"));
        assert!(t.contains("\nName: hakmem\nDescription: hakmem, a general-purpose"));
        assert!(pc_text(Path::new("/p q"), "1.2.3").starts_with("prefix=/p q\n"));
    }

    #[test]
    fn finds_the_cdylib_package() {
        let m: serde_json::Value = serde_json::from_str(
            r#"{"packages":[
              {"name":"hakmem","version":"0.1.0","description":"facade",
               "targets":[{"name":"hakmem","crate_types":["lib"]}]},
              {"name":"hakmem-ffi","version":"0.1.0","description":"C ABI",
               "targets":[{"name":"hakmem","crate_types":["cdylib","staticlib"]}]}]}"#,
        )
        .unwrap();
        let p = find_package(&m).unwrap();
        assert_eq!(p.name, "hakmem-ffi");
        let none: serde_json::Value = serde_json::from_str(r#"{"packages":[]}"#).unwrap();
        assert!(find_package(&none).is_err());
    }

    #[test]
    fn soname_major() {
        assert_eq!(major("0.1.0"), "0");
        assert_eq!(major("2.0.1"), "2");
    }
}
