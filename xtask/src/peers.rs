//! The peer allocators built from crates. `benches/peers` is a package of its own (outside
//! the workspace, so `cargo test --workspace` never builds it) that depends on
//! `libmimalloc-sys`, `tikv-jemalloc-sys` and `snmalloc-sys` at exact versions, its
//! `Cargo.lock` committed. This module builds it into `<target>/peers`, turns each allocator
//! into an `LD_PRELOAD`-able shared object in `<target>/peers/lib`, checks that a program run
//! with it really resolves the malloc family into it (`xtask/assets/peercheck.c`), and names
//! the exact versions. The objects are cached (`peers.json` beside them) until
//! `benches/peers` or the recipe here changes. A peer that cannot be had (no network, no
//! compiler, a failed build or check) becomes a `skip:` line, never an error.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};

use crate::bench::run_child;
use crate::config::{cargo_bin, command_stdout, target_dir, workspace_root};
use crate::util::{self, header, show, tail_lines};

/// How a peer becomes a shared object.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Recipe {
    /// The crate's static library (its build script's `cargo:rustc-link-lib=static=NAME`),
    /// linked whole into a `.so` with these extra libraries.
    StaticLib { libs: &'static [&'static str] },
    /// snmalloc's own LD_PRELOAD shim (`override/malloc.cc` + `override/new.cc`, its CMake
    /// target `snmallocshim`) compiled from the sources the crate vendors.
    SnmallocShim,
}

/// A peer allocator built from a crate of `benches/peers/Cargo.toml`.
#[derive(Debug, Clone, Copy)]
pub struct CratePeer {
    /// The row's name in the matrix.
    pub row: &'static str,
    /// The crate, as in `benches/peers/Cargo.toml`.
    pub krate: &'static str,
    /// The allocator's own name, for the version string.
    pub upstream: &'static str,
    /// What the row's name promises of the upstream version (`3.` for `mimalloc-v3`).
    pub series: &'static str,
    recipe: Recipe,
}

/// The crate peers, in report order.
pub const CRATE_PEERS: [CratePeer; 3] = [
    CratePeer {
        row: "mimalloc-v3",
        krate: "libmimalloc-sys",
        upstream: "mimalloc",
        series: "3.",
        recipe: Recipe::StaticLib {
            libs: &["-lpthread"],
        },
    },
    CratePeer {
        row: "jemalloc-5.3",
        krate: "tikv-jemalloc-sys",
        upstream: "jemalloc",
        series: "5.3.",
        recipe: Recipe::StaticLib {
            libs: &["-lpthread", "-ldl", "-lm"],
        },
    },
    CratePeer {
        row: "snmalloc",
        krate: "snmalloc-sys",
        upstream: "snmalloc",
        series: "0.7.",
        recipe: Recipe::SnmallocShim,
    },
];

/// The functions that a peer must export and that a program under `LD_PRELOAD` must resolve
/// into it (the names `peercheck.c` prints).
pub const MALLOC_FAMILY: [&str; 7] = [
    "malloc",
    "free",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "malloc_usable_size",
];

/// The crate peer of a row name.
pub fn crate_peer(row: &str) -> Option<&'static CratePeer> {
    CRATE_PEERS.iter().find(|p| p.row == row)
}

/// Compiler flags of the snmalloc shim: those of its CMake `compile()` function for a
/// Release `snmallocshim` on Linux (hidden visibility, `SNMALLOC_EXPORT` default, static TLS,
/// `-static-libstdc++`), with the defines its configure checks set on glibc.
pub fn snmalloc_flags() -> Vec<&'static str> {
    let mut f = vec![
        "-std=c++20",
        "-O3",
        "-DNDEBUG",
        "-fPIC",
        "-shared",
        "-pthread",
        "-fvisibility=hidden",
        "-fomit-frame-pointer",
        "-ffunction-sections",
        "-ftls-model=initial-exec",
        "-DSNMALLOC_USE_CXX11_THREAD_ATEXIT_DIRECT",
        "-DSNMALLOC_EXPORT=__attribute__((visibility(\"default\")))",
        "-DSNMALLOC_CHECK_LOADS=false",
        "-DSNMALLOC_PAGEID=false",
        "-DSNMALLOC_USE_WAIT_ON_ADDRESS=1",
        "-DSNMALLOC_HAS_LINUX_RANDOM_H",
        "-DSNMALLOC_HAS_LINUX_FUTEX_H",
        "-DSNMALLOC_PLATFORM_HAS_GETENTROPY",
        "-DSNMALLOC_PTHREAD_ATFORK_WORKS",
    ];
    if cfg!(target_arch = "x86_64") {
        f.extend(["-mcx16", "-mprfchw"]);
    }
    f
}

/// Link flags of the snmalloc shim (the static C++ runtime's symbols stay hidden).
const SNMALLOC_LINK: [&str; 3] = [
    "-static-libstdc++",
    "-Wl,--gc-sections",
    "-Wl,--exclude-libs,ALL",
];

/// Bumped when the way the objects are made changes in a way the flags above do not show.
const RECIPE_REVISION: u32 = 1;

/// A peer ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub so: PathBuf,
    /// Exact versions: `mimalloc 3.3.2 (libmimalloc-sys 0.1.49)`.
    pub version: String,
    /// How the object was made (crate, commands, compiler).
    pub build: String,
}

/// The `skip:` line of a crate peer that could not be had.
pub fn skip_line(p: &CratePeer, why: &str) -> String {
    format!(
        "skip: {} not built from crate {} ({why}); the run goes on without it",
        p.row, p.krate
    )
}

/// The version string of a row: the allocator's version, then the crate's.
pub fn version_string(p: &CratePeer, upstream: &str, crate_version: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "{} {upstream} ({} {crate_version}{extra})",
        p.upstream, p.krate
    )
}

/// Whether the upstream version is the one the row's name promises.
pub fn check_series(p: &CratePeer, upstream: &str) -> Result<()> {
    if upstream.starts_with(p.series) {
        Ok(())
    } else {
        bail!(
            "the crate gave {} {upstream}, not the {}x its row name `{}` says: rename the row",
            p.upstream,
            p.series,
            p.row
        )
    }
}

/// `3.3.2` from mimalloc.h's `#define MI_MALLOC_VERSION 30302` (major, 2 digits minor,
/// 2 digits patch).
pub fn parse_mimalloc_version(header: &str) -> Option<String> {
    let v: u64 = define_value(header, "MI_MALLOC_VERSION")?.parse().ok()?;
    Some(format!("{}.{}.{}", v / 10_000, v / 100 % 100, v % 100))
}

/// The value of `#define NAME value` (quotes stripped), the first one in `text`.
pub fn define_value(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix('#')?.trim_start();
        let rest = rest.strip_prefix("define")?;
        let mut it = rest.split_whitespace();
        if it.next()? != name {
            return None;
        }
        let v = it.next()?;
        Some(v.trim_matches('"').to_string())
    })
}

/// The jemalloc version a `tikv-jemalloc-sys` version carries as build metadata
/// (`0.7.1+5.3.1-0-g81034ce…` → `5.3.1-0-g81034ce…`).
pub fn jemalloc_from_crate_version(v: &str) -> Option<&str> {
    v.split_once('+').map(|(_, m)| m).filter(|m| !m.is_empty())
}

/// The commit a crate was packaged from (`.cargo_vcs_info.json`).
fn vcs_commit(crate_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(crate_dir.join(".cargo_vcs_info.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["git"]["sha1"].as_str().map(str::to_string)
}

/// What a build script told cargo: its `OUT_DIR` and the static libraries it links, as
/// candidate paths (`linked_paths` × `static=NAME` of `linked_libs`), from the JSON messages
/// of `cargo build --message-format=json`. The last message of `krate` wins.
pub fn build_script_output(json_lines: &str, krate: &str) -> Option<(PathBuf, Vec<PathBuf>)> {
    let mut found = None;
    for line in json_lines.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["reason"] != "build-script-executed" {
            continue;
        }
        let id = v["package_id"].as_str().unwrap_or_default();
        if package_name_of_id(id) != Some(krate) {
            continue;
        }
        let Some(out_dir) = v["out_dir"].as_str() else {
            continue;
        };
        let strings = |k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let dirs: Vec<PathBuf> = strings("linked_paths")
            .iter()
            .map(|p| {
                PathBuf::from(
                    p.split_once('=')
                        .map(|(_, d)| d.to_string())
                        .unwrap_or_else(|| p.clone()),
                )
            })
            .collect();
        let mut libs = Vec::new();
        for l in strings("linked_libs") {
            // `static=NAME`, `static:+whole-archive=NAME`, ...
            if let Some((kind, name)) = l.split_once('=')
                && kind.starts_with("static")
            {
                for d in &dirs {
                    libs.push(d.join(format!("lib{name}.a")));
                }
            }
        }
        found = Some((PathBuf::from(out_dir), libs));
    }
    found
}

/// The package name in a cargo package id, old (`name 1.0.0 (registry+…)`) or new
/// (`registry+https://…#name@1.0.0`) form.
pub fn package_name_of_id(id: &str) -> Option<&str> {
    if let Some((_, frag)) = id.rsplit_once('#') {
        return Some(frag.split_once('@').map(|(n, _)| n).unwrap_or(frag));
    }
    id.split_whitespace().next()
}

/// Problems with the `NAME PATH` lines `peercheck` printed under `LD_PRELOAD=so`: each
/// function of the family must resolve into `so` itself.
pub fn resolution_problems(stdout: &str, so: &Path) -> Vec<String> {
    let same = |p: &str| {
        let p = Path::new(p);
        p == so
            || matches!(
                (std::fs::canonicalize(p), std::fs::canonicalize(so)),
                (Ok(a), Ok(b)) if a == b
            )
    };
    MALLOC_FAMILY
        .iter()
        .filter_map(|name| {
            let hit = stdout
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '));
            match hit {
                Some(p) if same(p) => None,
                Some(p) => Some(format!("{name} resolves into {p}")),
                None => Some(format!("{name}: not reported")),
            }
        })
        .collect()
}

/// FNV-1a, 64 bits: the cache stamp.
pub fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The cache stamp: `benches/peers` (manifest, lock file, source) and the recipe.
fn stamp(peers_dir: &Path) -> String {
    let mut h = FNV_OFFSET;
    for f in ["Cargo.toml", "Cargo.lock", "src/lib.rs"] {
        h = fnv1a(f.as_bytes(), h);
        h = fnv1a(&std::fs::read(peers_dir.join(f)).unwrap_or_default(), h);
    }
    let recipe = format!(
        "{RECIPE_REVISION} {CRATE_PEERS:?} {:?} {SNMALLOC_LINK:?}",
        snmalloc_flags()
    );
    format!("{:016x}", fnv1a(recipe.as_bytes(), h))
}

/// The cached peers of `manifest` (the text of `peers.json`) when its stamp is `stamp`.
pub fn cached(manifest: &str, stamp: &str) -> BTreeMap<String, Built> {
    let Ok(v) = serde_json::from_str::<Value>(manifest) else {
        return BTreeMap::new();
    };
    if v["stamp"] != stamp {
        return BTreeMap::new();
    }
    let Some(peers) = v["peers"].as_object() else {
        return BTreeMap::new();
    };
    peers
        .iter()
        .filter_map(|(row, e)| {
            Some((
                row.clone(),
                Built {
                    so: PathBuf::from(e["so"].as_str()?),
                    version: e["version"].as_str()?.to_string(),
                    build: e["build"].as_str().unwrap_or_default().to_string(),
                },
            ))
        })
        .collect()
}

fn manifest_text(stamp: &str, peers: &BTreeMap<String, Built>) -> String {
    let mut m = Map::new();
    for (row, b) in peers {
        m.insert(
            row.clone(),
            json!({"so": b.so.display().to_string(), "version": b.version, "build": b.build}),
        );
    }
    serde_json::to_string_pretty(&json!({"stamp": stamp, "peers": m})).unwrap_or_default()
}

/// Runs `cmd` with its stdout captured and its stderr passed through (cargo's progress)
/// and kept; an error with the end of stderr when it fails.
fn run_capturing(cmd: &mut Command) -> Result<String> {
    let line = show(cmd);
    println!("$ {line}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let mut stdout = child.stdout.take();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let mut err = String::new();
    if let Some(e) = child.stderr.take() {
        for l in BufReader::new(e).lines().map_while(Result::ok) {
            eprintln!("{l}");
            err.push_str(&l);
            err.push('\n');
        }
    }
    let status = child.wait().context("wait")?;
    let out = out_t.join().unwrap_or_default();
    if !status.success() {
        let what: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args().take(1))
            .map(|a| {
                Path::new(a)
                    .file_name()
                    .unwrap_or(a)
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        bail!(
            "{} failed ({status}): {}",
            what.join(" "),
            error_summary(&err)
        );
    }
    Ok(out)
}

/// The gist of a failed command's stderr: its first `error` line and the one after it,
/// else its last lines.
pub fn error_summary(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines
        .iter()
        .position(|l| l.trim_start().starts_with("error"))
    {
        Some(i) => lines[i..lines.len().min(i + 2)].join(" | "),
        None => tail_lines(stderr, 3),
    }
}

/// A package of `benches/peers`' graph: its version and source directory.
#[derive(Debug, Clone)]
struct Package {
    version: String,
    dir: PathBuf,
}

/// `cargo metadata` of `benches/peers` (downloads the crates when they are not cached).
fn metadata(peers_dir: &Path) -> Result<BTreeMap<String, Package>> {
    let mut c = Command::new(cargo_bin());
    c.current_dir(peers_dir)
        .args(["metadata", "--locked", "--format-version", "1"])
        .arg("--manifest-path")
        .arg(peers_dir.join("Cargo.toml"));
    let text = run_capturing(&mut c)?;
    let v: Value = serde_json::from_str(&text).context("cargo metadata: not JSON")?;
    let mut out = BTreeMap::new();
    for p in v["packages"].as_array().into_iter().flatten() {
        if let (Some(n), Some(ver), Some(m)) = (
            p["name"].as_str(),
            p["version"].as_str(),
            p["manifest_path"].as_str(),
        ) {
            let dir = Path::new(m).parent().unwrap_or(Path::new(m)).to_path_buf();
            out.insert(
                n.to_string(),
                Package {
                    version: ver.to_string(),
                    dir,
                },
            );
        }
    }
    Ok(out)
}

fn first_line_of(program: &Path, arg: &str) -> String {
    command_stdout(&program.display().to_string(), &[arg], None)
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn c_compiler() -> Option<PathBuf> {
    ["cc", "gcc", "clang"].iter().find_map(|c| util::which(c))
}

fn cxx_compiler() -> Option<PathBuf> {
    if let Some(cxx) = std::env::var_os("CXX").filter(|c| !c.is_empty()) {
        let p = PathBuf::from(&cxx);
        if p.is_absolute() {
            return p.exists().then_some(p);
        }
        return util::which(&cxx.to_string_lossy());
    }
    ["c++", "g++", "clang++"]
        .iter()
        .find_map(|c| util::which(c))
}

/// Where everything goes: `<target>/peers` (cargo's target dir) and its `lib/`.
pub fn out_dir() -> PathBuf {
    target_dir().join("peers")
}

/// The shared object of a row.
pub fn so_path(lib_dir: &Path, row: &str) -> PathBuf {
    lib_dir.join(format!("lib{row}.so"))
}

/// Everything one build needs.
struct Ctx {
    peers_dir: PathBuf,
    out: PathBuf,
    lib: PathBuf,
    cc: PathBuf,
    meta: Option<Result<BTreeMap<String, Package>, String>>,
}

impl Ctx {
    fn package(&mut self, krate: &str) -> Result<Package> {
        let dir = self.peers_dir.clone();
        let meta = self
            .meta
            .get_or_insert_with(|| metadata(&dir).map_err(|e| format!("{e:#}")));
        let meta = meta.as_ref().map_err(|e| anyhow!("{e}"))?;
        meta.get(krate)
            .cloned()
            .with_context(|| format!("{krate} is not in benches/peers' dependency graph"))
    }

    /// Makes the shared object of `p`.
    fn build(&mut self, p: &CratePeer) -> Result<Built> {
        let pkg = self.package(p.krate)?;
        let so = so_path(&self.lib, p.row);
        let tmp = so.with_extension("so.tmp");
        std::fs::create_dir_all(&self.lib)
            .with_context(|| format!("cannot create {}", self.lib.display()))?;
        let (upstream, extra, build) = match p.recipe {
            Recipe::StaticLib { libs } => {
                let mut c = Command::new(cargo_bin());
                c.current_dir(&self.peers_dir)
                    .args(["build", "--release", "--locked", "--message-format=json"])
                    .arg("--manifest-path")
                    .arg(self.peers_dir.join("Cargo.toml"))
                    .arg("--target-dir")
                    .arg(&self.out)
                    .args(["-p", p.krate]);
                let msgs = run_capturing(&mut c)?;
                let (out_dir, candidates) =
                    build_script_output(&msgs, p.krate).with_context(|| {
                        format!("cargo reported no build script run of {}", p.krate)
                    })?;
                let archive = candidates
                    .iter()
                    .find(|a| a.is_file())
                    .with_context(|| {
                        format!("no static library of {} in {}", p.krate, out_dir.display())
                    })?
                    .clone();
                let mut c = Command::new(&self.cc);
                c.arg("-shared")
                    .arg("-o")
                    .arg(&tmp)
                    .arg("-Wl,--whole-archive")
                    .arg(&archive)
                    .arg("-Wl,--no-whole-archive")
                    .args(libs);
                util::run_status(&mut c)?;
                let upstream = match p.krate {
                    // The crate's default sources (no `v2` feature): c_src/mimalloc/v3.
                    "libmimalloc-sys" => {
                        let h = pkg.dir.join("c_src/mimalloc/v3/include/mimalloc.h");
                        std::fs::read_to_string(&h)
                            .ok()
                            .and_then(|t| parse_mimalloc_version(&t))
                            .with_context(|| format!("no MI_MALLOC_VERSION in {}", h.display()))?
                    }
                    "tikv-jemalloc-sys" => {
                        std::fs::read_to_string(out_dir.join("include/jemalloc/jemalloc.h"))
                            .ok()
                            .and_then(|t| define_value(&t, "JEMALLOC_VERSION"))
                            .or_else(|| {
                                jemalloc_from_crate_version(&pkg.version).map(str::to_string)
                            })
                            .context("no JEMALLOC_VERSION in the built jemalloc.h")?
                    }
                    other => bail!("no version rule for {other}"),
                };
                let build = format!(
                    "cargo build --release -p {} of benches/peers (features as pinned there), \
                     then {} ({})",
                    p.krate,
                    show(&c).replace(&tmp.display().to_string(), &so.display().to_string()),
                    first_line_of(&self.cc, "--version")
                );
                (upstream, String::new(), build)
            }
            Recipe::SnmallocShim => {
                let cxx = cxx_compiler()
                    .context("no C++ compiler (CXX, or c++, g++, clang++ on PATH)")?;
                let src = pkg.dir.join("upstream/src");
                let mut c = Command::new(&cxx);
                c.args(snmalloc_flags())
                    .arg("-I")
                    .arg(&src)
                    .arg(src.join("snmalloc/override/malloc.cc"))
                    .arg(src.join("snmalloc/override/new.cc"))
                    .arg("-o")
                    .arg(&tmp)
                    .args(SNMALLOC_LINK);
                util::run_status(&mut c)?;
                // snmalloc-sys is released from snmalloc's own repository with snmalloc's
                // release number; its sources carry no version of their own.
                let extra = vcs_commit(&pkg.dir)
                    .map(|c| format!("sources of snmalloc commit {}", &c[..c.len().min(12)]))
                    .unwrap_or_default();
                let build = format!(
                    "{} ({})",
                    show(&c).replace(&tmp.display().to_string(), &so.display().to_string()),
                    first_line_of(&cxx, "--version")
                );
                (pkg.version.clone(), extra, build)
            }
        };
        check_series(p, &upstream)?;
        std::fs::rename(&tmp, &so)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), so.display()))?;
        Ok(Built {
            so,
            version: version_string(p, &upstream, &pkg.version, &extra),
            build,
        })
    }
}

/// Compiles `xtask/assets/peercheck.c` into `<out>/peercheck`.
fn compile_checker(cc: &Path, out: &Path) -> Result<PathBuf> {
    let src = workspace_root().join("xtask/assets/peercheck.c");
    let exe = out.join("peercheck");
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut c = Command::new(cc);
    c.args(["-O2", "-o"]).arg(&exe).arg(&src).arg("-ldl");
    util::run_status(&mut c)?;
    Ok(exe)
}

/// Runs the checker under `LD_PRELOAD=so`: it must succeed and resolve the whole malloc
/// family into `so`.
fn verify(checker: &Path, so: &Path) -> Result<()> {
    let env = BTreeMap::from([("LD_PRELOAD".to_string(), so.display().to_string())]);
    let o = run_child(checker, &[], &env, Duration::from_secs(60))?;
    if !o.success() {
        bail!(
            "peercheck under LD_PRELOAD failed: {}",
            o.describe_failure()
        );
    }
    let problems = resolution_problems(&o.stdout, so);
    if !problems.is_empty() {
        bail!(
            "a program under LD_PRELOAD does not use it: {}",
            problems.join("; ")
        );
    }
    Ok(())
}

/// Builds, or takes from the cache, the shared object of each peer in `wanted`, and checks
/// each under `LD_PRELOAD`. Each one that cannot be had is a `skip:` line (printed and added
/// to `skipped`) and is absent from the result, keyed by row name.
pub fn ensure(wanted: &[&CratePeer], skipped: &mut Vec<String>) -> BTreeMap<String, Built> {
    let mut ready = BTreeMap::new();
    if wanted.is_empty() {
        return ready;
    }
    header("peer allocators from crates (benches/peers)");
    let mut skip = |p: &CratePeer, why: String| {
        let l = skip_line(p, &why);
        println!("{l}");
        skipped.push(l);
    };
    let Some(cc) = c_compiler() else {
        for p in wanted {
            skip(p, "no C compiler (cc, gcc or clang) on PATH".into());
        }
        return ready;
    };
    let peers_dir = workspace_root().join("benches/peers");
    let out = out_dir();
    let lib = out.join("lib");
    let manifest = lib.join("peers.json");
    let stamp = stamp(&peers_dir);
    let mut cache = cached(
        &std::fs::read_to_string(&manifest).unwrap_or_default(),
        &stamp,
    );
    let checker = match compile_checker(&cc, &out) {
        Ok(c) => c,
        Err(e) => {
            for p in wanted {
                skip(p, format!("cannot compile peercheck.c: {e:#}"));
            }
            return ready;
        }
    };
    let mut ctx = Ctx {
        peers_dir,
        out,
        lib,
        cc,
        meta: None,
    };
    for p in wanted {
        let here = so_path(&ctx.lib, p.row);
        let got = match cache
            .remove(p.row)
            .filter(|b| b.so == here && b.so.is_file())
        {
            Some(b) => {
                println!("{}: cached {}", p.row, b.so.display());
                Ok(b)
            }
            None => ctx.build(p),
        };
        match got.and_then(|b| verify(&checker, &b.so).map(|()| b)) {
            Ok(b) => {
                println!("{}: {} ({})", p.row, b.version, b.so.display());
                ready.insert(p.row.to_string(), b);
            }
            Err(e) => skip(p, format!("{e:#}")),
        }
    }
    // Keep what was cached and not asked for this time.
    let mut keep = cache;
    keep.extend(ready.clone());
    if let Err(e) = std::fs::write(&manifest, manifest_text(&stamp, &keep)) {
        eprintln!("warning: cannot write {}: {e}", manifest.display());
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_versions() {
        let m = crate_peer("mimalloc-v3").unwrap();
        assert_eq!(m.krate, "libmimalloc-sys");
        assert!(crate_peer("mimalloc").is_none());
        let names: std::collections::BTreeSet<_> = CRATE_PEERS.iter().map(|p| p.row).collect();
        assert_eq!(names.len(), CRATE_PEERS.len());
        assert_eq!(
            version_string(m, "3.3.2", "0.1.49", ""),
            "mimalloc 3.3.2 (libmimalloc-sys 0.1.49)"
        );
        let s = crate_peer("snmalloc").unwrap();
        assert_eq!(
            version_string(
                s,
                "0.7.6",
                "0.7.6",
                "sources of snmalloc commit f126f1c94d62"
            ),
            "snmalloc 0.7.6 (snmalloc-sys 0.7.6, sources of snmalloc commit f126f1c94d62)"
        );
        assert!(check_series(m, "3.3.2").is_ok());
        let j = crate_peer("jemalloc-5.3").unwrap();
        assert!(check_series(j, "5.3.1-0-g81034ce").is_ok());
        let e = check_series(j, "5.4.0-0-gabc").unwrap_err().to_string();
        assert!(e.contains("jemalloc-5.3") && e.contains("5.4.0"), "{e}");
        assert!(check_series(m, "2.0.9").is_err());
        let l = skip_line(j, "no network");
        assert!(l.starts_with("skip: jemalloc-5.3 not built from crate tikv-jemalloc-sys"));
        assert!(l.contains("no network"));
        assert_eq!(
            so_path(Path::new("/t/lib"), "snmalloc"),
            Path::new("/t/lib/libsnmalloc.so")
        );
    }

    /// Every crate of `CRATE_PEERS` is pinned exactly in benches/peers/Cargo.toml and in
    /// its lock file, and the lock file's versions agree with the row names.
    #[test]
    fn peers_manifest_pins_every_crate() {
        let dir = workspace_root().join("benches/peers");
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let lock = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap();
        assert!(
            toml.contains("\n[workspace]\n"),
            "must stay out of the workspace"
        );
        for p in CRATE_PEERS {
            let line = toml
                .lines()
                .find(|l| l.starts_with(&format!("{} = ", p.krate)))
                .unwrap_or_else(|| panic!("{} not in benches/peers/Cargo.toml", p.krate));
            assert!(line.contains("version = \"="), "not pinned: {line}");
            assert!(
                lock.contains(&format!("name = \"{}\"", p.krate)),
                "{} not in Cargo.lock",
                p.krate
            );
        }
        let jem = lock
            .split("[[package]]")
            .find(|b| b.contains("name = \"tikv-jemalloc-sys\""))
            .and_then(|b| define_like_toml(b, "version"))
            .unwrap();
        assert!(
            jemalloc_from_crate_version(&jem)
                .unwrap()
                .starts_with("5.3."),
            "{jem}"
        );
    }

    fn define_like_toml(block: &str, key: &str) -> Option<String> {
        block.lines().find_map(|l| {
            let v = l.strip_prefix(key)?.trim_start().strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_string())
        })
    }

    #[test]
    fn version_parsing() {
        let h = "#pragma once\n#define MI_MALLOC_VERSION 30302   // major + 2 digits minor\n";
        assert_eq!(parse_mimalloc_version(h).as_deref(), Some("3.3.2"));
        assert_eq!(
            parse_mimalloc_version("#define MI_MALLOC_VERSION 20210").as_deref(),
            Some("2.2.10")
        );
        assert_eq!(parse_mimalloc_version("#define OTHER 1"), None);
        let j =
            "#define JEMALLOC_VERSION_MAJOR 5\n#  define JEMALLOC_VERSION \"5.3.1-0-g81034ce1\"\n";
        assert_eq!(
            define_value(j, "JEMALLOC_VERSION").as_deref(),
            Some("5.3.1-0-g81034ce1")
        );
        assert_eq!(
            define_value(j, "JEMALLOC_VERSION_MAJOR").as_deref(),
            Some("5")
        );
        assert_eq!(
            jemalloc_from_crate_version("0.7.1+5.3.1-0-g81034ce1f1373e37dc865038e1bc8eeecf559ce8"),
            Some("5.3.1-0-g81034ce1f1373e37dc865038e1bc8eeecf559ce8")
        );
        assert_eq!(jemalloc_from_crate_version("0.7.1"), None);
    }

    #[test]
    fn package_ids() {
        assert_eq!(
            package_name_of_id(
                "registry+https://github.com/rust-lang/crates.io-index#tikv-jemalloc-sys@0.7.1+5.3.1-0-g81"
            ),
            Some("tikv-jemalloc-sys")
        );
        assert_eq!(
            package_name_of_id(
                "libc 0.2.1 (registry+https://github.com/rust-lang/crates.io-index)"
            ),
            Some("libc")
        );
        assert_eq!(
            package_name_of_id("path+file:///w/benches/peers#hakmem-peers@0.0.0"),
            Some("hakmem-peers")
        );
    }

    #[test]
    fn build_script_messages() {
        let msgs = r#"{"reason":"compiler-artifact","package_id":"x"}
not json
{"reason":"build-script-executed","package_id":"registry+https://github.com/rust-lang/crates.io-index#libc@0.2.191","linked_libs":[],"linked_paths":[],"out_dir":"/t/libc/out"}
{"reason":"build-script-executed","package_id":"registry+https://github.com/rust-lang/crates.io-index#tikv-jemalloc-sys@0.7.1+5.3.1","linked_libs":["static=jemalloc_pic"],"linked_paths":["native=/t/jem/out/lib"],"out_dir":"/t/jem/out"}
{"reason":"build-script-executed","package_id":"registry+https://github.com/rust-lang/crates.io-index#libmimalloc-sys@0.1.49","linked_libs":["static=mimalloc","dylib=pthread"],"linked_paths":["native=/t/mi/out","/t/other"],"out_dir":"/t/mi/out"}"#;
        let (out, libs) = build_script_output(msgs, "tikv-jemalloc-sys").unwrap();
        assert_eq!(out, Path::new("/t/jem/out"));
        assert_eq!(libs, [PathBuf::from("/t/jem/out/lib/libjemalloc_pic.a")]);
        let (_, libs) = build_script_output(msgs, "libmimalloc-sys").unwrap();
        assert_eq!(
            libs,
            [
                PathBuf::from("/t/mi/out/libmimalloc.a"),
                PathBuf::from("/t/other/libmimalloc.a")
            ]
        );
        assert!(build_script_output(msgs, "snmalloc-sys").is_none());
    }

    #[test]
    fn resolution_check() {
        let so = Path::new("/t/lib/libmimalloc-v3.so");
        let good: String = MALLOC_FAMILY
            .iter()
            .map(|n| format!("{n} /t/lib/libmimalloc-v3.so\n"))
            .chain(["ok\n".to_string()])
            .collect();
        assert!(resolution_problems(&good, so).is_empty());
        let bad = good.replace(
            "posix_memalign /t/lib/libmimalloc-v3.so",
            "posix_memalign /lib/x86_64-linux-gnu/libc.so.6",
        );
        assert_eq!(
            resolution_problems(&bad, so),
            ["posix_memalign resolves into /lib/x86_64-linux-gnu/libc.so.6"]
        );
        let missing = good.replace(
            "aligned_alloc /t/lib/libmimalloc-v3.so\n",
            "aligned_alloc ?\n",
        );
        assert_eq!(
            resolution_problems(&missing, so),
            ["aligned_alloc resolves into ?"]
        );
        assert_eq!(resolution_problems("", so).len(), MALLOC_FAMILY.len());
    }

    #[test]
    fn error_gist() {
        let e = "    Updating crates.io index\nerror: no matching package named `snmalloc-sys` found\n\
                 location searched: crates.io index\nAs a reminder, you're using offline mode\n";
        assert_eq!(
            error_summary(e),
            "error: no matching package named `snmalloc-sys` found | location searched: crates.io index"
        );
        assert_eq!(error_summary("a\nb\nc\nd\n"), "b | c | d");
    }

    #[test]
    fn cache_manifest_round_trip() {
        let b = Built {
            so: "/t/lib/libsnmalloc.so".into(),
            version: "snmalloc 0.7.6 (snmalloc-sys 0.7.6)".into(),
            build: "c++ ...".into(),
        };
        let peers = BTreeMap::from([("snmalloc".to_string(), b.clone())]);
        let text = manifest_text("00ff", &peers);
        assert_eq!(cached(&text, "00ff"), peers);
        assert!(cached(&text, "0100").is_empty(), "another stamp: rebuild");
        assert!(cached("", "00ff").is_empty());
        assert_eq!(fnv1a(b"", FNV_OFFSET), FNV_OFFSET);
        assert_eq!(fnv1a(b"a", FNV_OFFSET), 0xaf63_dc4c_8601_ec8c);
        let d = workspace_root().join("benches/peers");
        assert_eq!(stamp(&d), stamp(&d));
        assert_eq!(stamp(&d).len(), 16);
    }
}
