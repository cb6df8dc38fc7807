//! `cargo xtask bench`: runs the workload binary under each allocator (LD_PRELOAD),
//! measures each child with `wait4` rusage (peak RSS from the child's own `VmHWM` when its
//! RESULT line gives it: `ru_maxrss` also counts the pre-`exec` copy of this process), and writes
//! the record, report and chart.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::apps::{self, App};
use crate::config::{self, cargo_bin, target_dir, workspace_root};
use crate::model::{self, CellRaw, RunSample};
use crate::parse;
use crate::peers;
use crate::report::{self, InstrRow, Record};
use crate::util::{self, header, tail_lines};

/// One workload of the matrix: a name for the report and the binary's arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    pub name: &'static str,
    pub args: &'static [&'static str],
}

/// The comparison matrix.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "larson-t1",
        args: &["larson", "--threads", "1"],
    },
    Workload {
        name: "larson-t2",
        args: &["larson", "--threads", "2"],
    },
    Workload {
        name: "larson-t4",
        args: &["larson", "--threads", "4"],
    },
    Workload {
        name: "larson-r100",
        args: &[
            "larson",
            "--threads",
            "2",
            "--min",
            "8",
            "--max",
            "1000",
            "--slots",
            "5000",
            "--rounds",
            "100",
        ],
    },
    Workload {
        name: "slots-t4",
        args: &["slots", "--threads", "4"],
    },
    Workload {
        name: "random-mixed",
        args: &["random-mixed"],
    },
    Workload {
        name: "tiny-hot-16",
        args: &["tiny-hot", "--min", "16"],
    },
    Workload {
        name: "tiny-hot-256",
        args: &["tiny-hot", "--min", "256"],
    },
    Workload {
        name: "mid-mt",
        args: &["mid-mt", "--threads", "4"],
    },
    Workload {
        name: "large",
        args: &["large"],
    },
    Workload {
        name: "big",
        args: &["big"],
    },
    Workload {
        name: "xthread",
        args: &["xthread", "--threads", "4"],
    },
    Workload {
        name: "realloc-grow",
        args: &["realloc-grow"],
    },
    Workload {
        name: "churn",
        args: &["churn", "--threads", "4"],
    },
    Workload {
        name: "phased",
        args: &["phased"],
    },
    Workload {
        name: "big-replace",
        args: &["big-replace"],
    },
    Workload {
        name: "prodcons",
        args: &["prodcons", "--threads", "2"],
    },
    Workload {
        name: "larson-orig-t1",
        args: &["larson-orig", "--threads", "1"],
    },
    Workload {
        name: "larson-orig-t4",
        args: &["larson-orig", "--threads", "4"],
    },
];

/// What a reader of the report should know about some rows, by the binary's workload
/// (`args[0]`): recorded in the record's `workloads` list and printed under the row's
/// heading.
pub const NOTES: &[(&str, &str)] = &[
    (
        "big-replace",
        "A fixed number of replacements (count-bounded, the same work for every allocator). \
         The cost is the zeroing and its page faults: compare the faults column and peak RSS.",
    ),
    (
        "prodcons",
        "Metric: ops per CPU-second of the whole process (user + system), since wall time is \
         mostly the 1–2 ms sleeps between rounds; ops per wall second are in the record's \
         params.",
    ),
    (
        "larson-orig",
        "Peak RSS matters for this row as much as the rate: blocks outlive the threads that \
         allocated them, so memory kept for exited threads shows here.",
    ),
];

/// The note of a matrix row, if any (see [`NOTES`]).
pub fn note(w: &Workload) -> Option<&'static str> {
    NOTES.iter().find(|(k, _)| *k == w.args[0]).map(|(_, n)| *n)
}

/// Workloads of the ablation study.
pub const ABLATION_WORKLOADS: [&str; 2] = ["larson-t1", "random-mixed"];

/// Feature switches tried one at a time on top of `HAKMEM_MODE=minimal`.
pub const FEATURES: &[(&str, &str)] = &[
    ("HAKMEM_TINY_POOL", "1"),
    ("HAKMEM_POOL", "1"),
    ("HAKMEM_L25", "1"),
    ("HAKMEM_BIGCACHE", "1"),
    ("HAKMEM_SITE_RULES", "1"),
    ("HAKMEM_ELO", "1"),
    ("HAKMEM_EVO", "learn"),
    ("HAKMEM_BATCH_MADVISE", "1"),
];

/// Modes run as separate rows under `--modes`.
pub const MODES: [&str; 5] = ["minimal", "fast", "balanced", "learning", "research"];

/// Base allocators in report order: the baseline, hakmem, the peers built from crates
/// (`crate::peers`: current mimalloc, jemalloc and snmalloc), then the Debian packages
/// (tcmalloc has no crate; Debian's mimalloc and jemalloc are older builds, kept as extra rows
/// and named for what they are).
pub const BASE_ALLOCATORS: [&str; 8] = [
    "glibc",
    "hakmem",
    "mimalloc-v3",
    "jemalloc-5.3",
    "snmalloc",
    "tcmalloc",
    "mimalloc-2.0-deb",
    "jemalloc-deb",
];

/// A peer allocator we look for on the system: row name, file-name prefix, Debian package.
struct PeerSpec {
    name: &'static str,
    prefix: &'static str,
    package: &'static str,
}

const PEERS: [PeerSpec; 3] = [
    PeerSpec {
        name: "mimalloc-2.0-deb",
        prefix: "libmimalloc.so.2",
        package: "libmimalloc2.0",
    },
    PeerSpec {
        name: "jemalloc-deb",
        prefix: "libjemalloc.so.2",
        package: "libjemalloc2",
    },
    PeerSpec {
        name: "tcmalloc",
        prefix: "libtcmalloc_minimal.so.4",
        package: "libtcmalloc-minimal4",
    },
];

const LIB_DIRS: [&str; 6] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/lib/x86_64-linux-gnu",
];

/// A row of a run matrix: the allocator, extra child env, and the row's name.
pub(crate) type Row = (Allocator, BTreeMap<String, String>, String);

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BenchOpts {
    /// Short workloads (`--quick` to each) and 2 runs unless --runs is given.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions per cell (default 5, or 2 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Only this workload (a matrix name such as `larson-t4`, a binary workload such as
    /// `larson` for all its rows, or a real program such as `redis`); repeatable.
    #[arg(long = "workload", value_name = "NAME")]
    pub workloads: Vec<String>,
    /// Only the real programs (python3, sqlite3, a gcc build, sort, redis, RocksDB
    /// db_bench), not the workload matrix.
    #[arg(long, conflicts_with = "no_apps")]
    pub apps: bool,
    /// Leave the real programs out (a full run has them).
    #[arg(long)]
    pub no_apps: bool,
    /// Only this allocator (glibc, hakmem, mimalloc-v3, jemalloc-5.3, snmalloc, tcmalloc,
    /// mimalloc-2.0-deb, jemalloc-deb, hakmem[MODE]); repeatable. Without it: all of them
    /// (the crate peers are built on first use into <target>/peers).
    #[arg(long = "allocator", value_name = "NAME")]
    pub allocators: Vec<String>,
    /// Add hakmem rows for each HAKMEM_MODE (minimal, fast, balanced, learning, research).
    #[arg(long)]
    pub modes: bool,
    /// Ablation on larson-t1 and random-mixed: minimal, minimal + each feature, all.
    #[arg(long)]
    pub ablate: bool,
    /// Instructions per malloc+free pair under callgrind (needs valgrind and cc).
    #[arg(long)]
    pub instructions: bool,
    /// Output directory (default <target>/bench).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Per-run time limit in seconds (default 600, or 120 with --quick).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Do not build first (use the existing release artefacts).
    #[arg(long)]
    pub no_build: bool,
    /// An extra hakmem row from another build of the library, `NAME=PATH` (e.g. the parent
    /// commit's, for a before/after comparison in one run); repeatable.
    #[arg(long = "hakmem-so", value_name = "NAME=PATH")]
    pub hakmem_so: Vec<String>,
    /// The cost of the heap checks: adds a `hakmem[checks-off]` row (the library built with
    /// `--features unchecked`) and a `hakmem[secure]` row (`HAKMEM_SECURE=1`), each compared
    /// with the plain `hakmem` row in the report's variants table.
    #[arg(long)]
    pub checks: bool,
}

/// Selects workloads by exact name or by the binary's workload name (`larson` selects
/// all three larson rows). Empty filter: all.
pub fn select_workloads(filters: &[String]) -> Result<Vec<Workload>> {
    if filters.is_empty() {
        return Ok(WORKLOADS.to_vec());
    }
    for f in filters {
        if !WORKLOADS.iter().any(|w| w.name == f || w.args[0] == f) {
            let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
            bail!("unknown workload `{f}`; known: {}", names.join(", "));
        }
    }
    Ok(WORKLOADS
        .iter()
        .filter(|w| filters.iter().any(|f| w.name == f || w.args[0] == f))
        .copied()
        .collect())
}

/// Splits the `--workload` filters between the workload matrix and the real programs.
/// Without filters: every workload (none with `--apps`) and every real program (none with
/// `--no-apps`); with filters, only what they name.
pub fn select_all(
    filters: &[String],
    apps_only: bool,
    no_apps: bool,
) -> Result<(Vec<Workload>, Vec<&'static App>)> {
    if apps_only && no_apps {
        bail!("--apps and --no-apps exclude each other");
    }
    let (app_f, wl_f): (Vec<String>, Vec<String>) = filters
        .iter()
        .cloned()
        .partition(|f| apps::APPS.iter().any(|a| a.name == f));
    for f in &wl_f {
        if !WORKLOADS.iter().any(|w| w.name == f || w.args[0] == f) {
            let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
            let progs: Vec<&str> = apps::APPS.iter().map(|a| a.name).collect();
            bail!(
                "unknown workload `{f}`; known: {}; real programs: {}",
                names.join(", "),
                progs.join(", ")
            );
        }
    }
    let workloads = if apps_only {
        if let Some(f) = wl_f.first() {
            bail!("--apps runs only the real programs, and `{f}` is a workload of the matrix");
        }
        Vec::new()
    } else if filters.is_empty() {
        WORKLOADS.to_vec()
    } else if wl_f.is_empty() {
        Vec::new()
    } else {
        select_workloads(&wl_f)?
    };
    let progs = if no_apps {
        if let Some(f) = app_f.first() {
            bail!("--no-apps leaves the real programs out, and `{f}` is one");
        }
        Vec::new()
    } else if filters.is_empty() {
        apps::select(&[])
    } else {
        // Empty when only matrix workloads are named.
        apps::APPS
            .iter()
            .filter(|a| app_f.iter().any(|f| f == a.name))
            .collect()
    };
    Ok((workloads, progs))
}

/// A row of the matrix: how to run the child.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    pub name: String,
    pub preload: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub is_hakmem: bool,
    /// Exact version(s), for the configuration record.
    pub version: String,
    /// How the library was made, for peers built here (`crate::peers`).
    pub build: Option<String>,
}

impl Allocator {
    /// The environment set on the child (LD_PRELOAD included).
    pub fn child_env(&self) -> BTreeMap<String, String> {
        let mut e = self.env.clone();
        if let Some(p) = &self.preload {
            e.insert("LD_PRELOAD".into(), p.display().to_string());
        }
        e
    }
}

/// The allocator names requested: base names and `hakmem[mode]` rows, validated.
pub fn requested_allocators(filters: &[String], modes: bool) -> Result<Vec<String>> {
    let mut names: Vec<String> = if filters.is_empty() {
        BASE_ALLOCATORS.iter().map(|s| s.to_string()).collect()
    } else {
        let mut v = Vec::new();
        for f in filters {
            let ok = BASE_ALLOCATORS.contains(&f.as_str())
                || f.strip_prefix("hakmem[")
                    .and_then(|m| m.strip_suffix(']'))
                    .is_some_and(|m| !m.is_empty());
            if !ok {
                let near: Vec<&str> = BASE_ALLOCATORS
                    .iter()
                    .copied()
                    .filter(|b| b.starts_with(f.as_str()))
                    .collect();
                let hint = if near.is_empty() {
                    String::new()
                } else {
                    format!(" (did you mean {}?)", near.join(" or "))
                };
                bail!(
                    "unknown allocator `{f}`{hint}; known: {}, hakmem[<mode>]",
                    BASE_ALLOCATORS.join(", ")
                );
            }
            if !v.contains(f) {
                v.push(f.clone());
            }
        }
        v
    };
    if modes {
        for m in MODES {
            let n = format!("hakmem[{m}]");
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    Ok(names)
}

/// Finds a peer's shared object: the shortest matching file name in the usual dirs.
fn find_peer_so(prefix: &str) -> Option<PathBuf> {
    for dir in LIB_DIRS {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut hits: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect();
        hits.sort_by_key(|p| (p.as_os_str().len(), p.clone()));
        if let Some(h) = hits.into_iter().next() {
            return Some(h);
        }
    }
    None
}

/// The Debian package and version of a peer found on the system:
/// `libmimalloc2.0 2.0.9+ds-2 (Debian package)`.
fn dpkg_version(pkg: &str, path: Option<&Path>) -> String {
    if let Some(v) = config::command_stdout("dpkg-query", &["-W", "-f=${Version}", pkg], None)
        .filter(|v| !v.is_empty())
    {
        return debian_version(pkg, &v);
    }
    // The package may have another name on this system: ask dpkg who owns the file.
    if let Some(p) = path {
        let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        for q in [real.as_path(), p] {
            if let Some(owner) =
                config::command_stdout("dpkg", &["-S", &q.display().to_string()], None)
                && let Some(name) = owner.split(':').next()
                && let Some(v) =
                    config::command_stdout("dpkg-query", &["-W", "-f=${Version}", name], None)
            {
                return debian_version(name, &v);
            }
        }
    }
    "unknown (not from a Debian package dpkg knows)".into()
}

fn debian_version(pkg: &str, version: &str) -> String {
    format!("{pkg} {version} (Debian package)")
}

/// The rows of `--hakmem-so NAME=PATH`: hakmem built elsewhere, with its counters on.
fn extra_hakmem_rows(specs: &[String]) -> Result<Vec<Allocator>> {
    specs
        .iter()
        .map(|spec| {
            let Some((name, path)) = spec.split_once('=') else {
                bail!("--hakmem-so wants NAME=PATH, got `{spec}`");
            };
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("--hakmem-so {name}: no library at {path}"))?;
            Ok(Allocator {
                name: name.to_string(),
                version: format!("{}", path.display()),
                preload: Some(path),
                env: [("HAKMEM_STATS".to_string(), "1".to_string())].into(),
                is_hakmem: true,
                build: None,
            })
        })
        .collect()
}

/// Resolves the requested allocators into rows; missing peers become `skip:` lines.
fn resolve_allocators(
    names: &[String],
    hakmem_so: &Path,
    skipped: &mut Vec<String>,
) -> Vec<Allocator> {
    let wanted_peers: Vec<&PeerSpec> = PEERS
        .iter()
        .filter(|p| names.iter().any(|n| n == p.name))
        .collect();
    let missing: Vec<&PeerSpec> = wanted_peers
        .iter()
        .copied()
        .filter(|p| find_peer_so(p.prefix).is_none())
        .collect();
    if !missing.is_empty() && config::is_root() {
        header("installing missing peer allocators");
        let pkgs: Vec<&str> = PEERS.iter().map(|p| p.package).collect();
        if !util::apt_install(&pkgs) {
            eprintln!(
                "warning: apt-get could not install all of {}",
                pkgs.join(" ")
            );
        }
    }
    let wanted_crate: Vec<&peers::CratePeer> = peers::CRATE_PEERS
        .iter()
        .filter(|p| names.iter().any(|n| n == p.row))
        .collect();
    let built = peers::ensure(&wanted_crate, skipped);
    let hakmem_version = format!(
        "{} (workspace {})",
        env!("CARGO_PKG_VERSION"),
        config::git_state(&workspace_root()).0
    );
    let mut out = Vec::new();
    for n in names {
        if n == "glibc" {
            let v = config::command_stdout("ldd", &["--version"], None)
                .and_then(|s| s.lines().next().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            out.push(Allocator {
                name: n.clone(),
                preload: None,
                version: v,
                ..Default::default()
            });
        } else if n == "hakmem" || n.starts_with("hakmem[") {
            let mut env = BTreeMap::new();
            env.insert("HAKMEM_STATS".into(), "1".into());
            if let Some(m) = n.strip_prefix("hakmem[").and_then(|m| m.strip_suffix(']')) {
                env.insert("HAKMEM_MODE".into(), m.to_string());
            }
            out.push(Allocator {
                name: n.clone(),
                preload: Some(hakmem_so.to_path_buf()),
                env,
                is_hakmem: true,
                version: hakmem_version.clone(),
                build: None,
            });
        } else if let Some(b) = built.get(n) {
            out.push(Allocator {
                name: n.clone(),
                preload: Some(b.so.clone()),
                version: b.version.clone(),
                build: Some(b.build.clone()),
                ..Default::default()
            });
        } else if peers::crate_peer(n).is_some() {
            // Not built: `peers::ensure` printed and recorded its `skip:` line.
        } else if let Some(spec) = PEERS.iter().find(|p| p.name == n) {
            match find_peer_so(spec.prefix) {
                Some(path) => out.push(Allocator {
                    name: n.clone(),
                    version: dpkg_version(spec.package, Some(&path)),
                    preload: Some(path),
                    ..Default::default()
                }),
                None => {
                    let why = if config::is_root() {
                        format!("apt-get install {} did not provide it", spec.package)
                    } else {
                        format!("not root; install {} to include it", spec.package)
                    };
                    let line = format!(
                        "skip: {n} not installed (no {}* in {}; {why})",
                        spec.prefix, LIB_DIRS[0]
                    );
                    println!("{line}");
                    skipped.push(line);
                }
            }
        }
    }
    out
}

/// What one child did.
#[derive(Debug, Clone, Default)]
pub struct ChildOutcome {
    pub stdout: String,
    pub stderr: String,
    /// `Ok(code)` on a normal exit, `Err(signal)` when killed by a signal.
    pub exit: Option<std::result::Result<i32, i32>>,
    pub timed_out: bool,
    pub wall_s: f64,
    pub maxrss_kb: f64,
    pub faults: f64,
    pub cpu_s: f64,
}

impl ChildOutcome {
    pub fn success(&self) -> bool {
        !self.timed_out && self.exit == Some(Ok(0))
    }

    pub fn describe_failure(&self) -> String {
        let what = if self.timed_out {
            "timed out (killed)".to_string()
        } else {
            match self.exit {
                Some(Ok(c)) => format!("exit status {c}"),
                Some(Err(s)) => format!("killed by signal {s}"),
                None => "unknown exit".to_string(),
            }
        };
        format!("{what}; stderr: {}", tail_lines(&self.stderr, 4))
    }
}

fn read_all(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `program args` with `env` (and without any inherited `LD_PRELOAD`), waits with
/// `wait4` for its rusage, kills it after `timeout`.
pub fn run_child(
    program: &Path,
    args: &[String],
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<ChildOutcome> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("LD_PRELOAD")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let pid = child.id() as libc::pid_t;
    let out_t = read_all(child.stdout.take());
    let err_t = read_all(child.stderr.take());

    let (tx, rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
            // The child is not reaped before this thread is joined, so `pid` is still ours.
            // SAFETY: plain syscall on a pid we own.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            true
        } else {
            false
        }
    });
    // Wait for the exit without reaping (WNOWAIT) so the watchdog cannot hit a reused pid.
    loop {
        // SAFETY: siginfo_t is plain data; waitid writes it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a local siginfo_t.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            let _ = tx.send(());
            let _ = watchdog.join();
            return Err(e).context("waitid");
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let _ = tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);

    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals; pid is our (zombie) child.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    drop(child); // already reaped: std will not wait on drop
    let exit = if libc::WIFEXITED(status) {
        Some(Ok(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(Err(libc::WTERMSIG(status)))
    } else {
        None
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(ChildOutcome {
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        exit,
        timed_out,
        wall_s: wall,
        maxrss_kb: ru.ru_maxrss as f64,
        faults: (ru.ru_minflt + ru.ru_majflt) as f64,
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
    })
}

/// What the RESULT line told us about a cell (filled from the first good run).
#[derive(Debug, Clone, Default)]
struct CellMeta {
    threads: Option<u64>,
    metric: Option<String>,
    higher_is_better: Option<bool>,
}

/// Runs one repetition of one cell and turns it into a sample.
fn one_run(
    bin: &Path,
    args: &[String],
    alloc: &Allocator,
    extra_env: &BTreeMap<String, String>,
    timeout: Duration,
    meta: &mut CellMeta,
) -> RunSample {
    let mut env = alloc.child_env();
    env.extend(extra_env.clone());
    let mut s = RunSample::default();
    let out = match run_child(bin, args, &env, timeout) {
        Ok(o) => o,
        Err(e) => {
            s.error = Some(format!("{e:#}"));
            return s;
        }
    };
    s.peak_rss_kb = Some(out.maxrss_kb);
    s.page_faults = Some(out.faults);
    s.cpu_s = Some(out.cpu_s);
    s.wall_s = Some(out.wall_s);
    if alloc.is_hakmem {
        s.hakmem_stats = parse::parse_hakmem_stats(&out.stderr);
        match parse::served_by_hakmem(s.hakmem_stats.as_ref()) {
            Ok(()) => s.served_by_hakmem = Some(true),
            Err(why) => {
                s.served_by_hakmem = Some(false);
                s.error = Some(format!("NOT SERVED BY HAKMEM: {why}"));
            }
        }
    }
    if !out.success() {
        let why = out.describe_failure();
        s.error = Some(match s.error.take() {
            Some(prev) => format!("{why}; {prev}"),
            None => why,
        });
        return s;
    }
    match parse::parse_result(&out.stdout) {
        Ok(r) => {
            meta.threads.get_or_insert(r.threads);
            meta.metric.get_or_insert(r.metric.clone());
            meta.higher_is_better.get_or_insert(r.higher_is_better);
            s.value = Some(r.value);
            // The child's own high-water mark when it reports one: `ru_maxrss` also counts the
            // pre-`exec` copy of this (bigger) process, a floor under every small workload.
            if let Some(kb) = r.peak_rss_kb {
                s.peak_rss_kb = Some(kb);
            }
        }
        Err(e) => {
            let why = format!("{e:#}");
            s.error = Some(match s.error.take() {
                Some(prev) => format!("{why}; {prev}"),
                None => why,
            });
        }
    }
    s
}

fn progress(total: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs  {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

pub(crate) fn say(pb: &ProgressBar, msg: impl AsRef<str>) {
    if pb.is_hidden() {
        eprintln!("{}", msg.as_ref());
    } else {
        pb.println(msg.as_ref());
    }
}

/// Runs a set of rows over a set of workloads. Each repetition sweeps every workload and,
/// within it, every row (rep 1: W1 A B C, W2 A B C, ...; rep 2: the same again), so a slow
/// drift of the machine spreads over all cells alike, and run `i` of two cells (two
/// allocators, or one allocator at 1 and 2 threads) ran close in time: ratios are taken run
/// by run. `rows` are `(allocator, extra env, name override)`.
fn run_matrix(
    bin: &Path,
    workloads: &[Workload],
    rows: &[Row],
    runs: usize,
    quick: bool,
    timeout: Duration,
    pb: &ProgressBar,
) -> Vec<CellRaw> {
    let args_of = |w: &Workload| {
        let mut args: Vec<String> = w.args.iter().map(|s| s.to_string()).collect();
        if quick {
            args.push("--quick".into());
        }
        args
    };
    let mut metas = vec![vec![CellMeta::default(); rows.len()]; workloads.len()];
    let mut samples: Vec<Vec<Vec<RunSample>>> = vec![vec![Vec::new(); rows.len()]; workloads.len()];
    for rep in 0..runs {
        for (wi, w) in workloads.iter().enumerate() {
            let args = args_of(w);
            // The first row after a pause pays for the machine's cold state (a run that needs
            // much fresh memory right after an idle spell is slower): the order rotates with
            // the repetition, so no row always goes first.
            for k in 0..rows.len() {
                let ri = (k + rep) % rows.len();
                let (alloc, extra, name) = &rows[ri];
                pb.set_message(format!("run {}/{} · {} · {name}", rep + 1, runs, w.name));
                let s = one_run(bin, &args, alloc, extra, timeout, &mut metas[wi][ri]);
                if let Some(e) = &s.error {
                    say(pb, format!("!! {} / {name} run {}: {e}", w.name, rep + 1));
                }
                samples[wi][ri].push(s);
                pb.inc(1);
            }
        }
    }
    let mut cells = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        let args = args_of(w);
        let mut line = format!("[{}/{}] {:<14}", wi + 1, workloads.len(), w.name);
        for (ri, (alloc, extra, name)) in rows.iter().enumerate() {
            let m = &metas[wi][ri];
            let mut env = alloc.child_env();
            env.extend(extra.clone());
            let cell = CellRaw {
                workload: w.name.to_string(),
                allocator: name.clone(),
                is_hakmem: alloc.is_hakmem,
                threads: m.threads.unwrap_or_else(|| thread_arg(w.args)),
                metric: m.metric.clone().unwrap_or_else(|| "unknown".into()),
                higher_is_better: m.higher_is_better.unwrap_or(true),
                env,
                args: args.clone(),
                runs: std::mem::take(&mut samples[wi][ri]),
            };
            let vals: Vec<f64> = cell.runs.iter().filter_map(|r| r.value).collect();
            let med = crate::stats::median(&vals)
                .map(report::fmt_num)
                .unwrap_or_else(|| "FAILED".into());
            line.push_str(&format!("  {name}={med}"));
            cells.push(cell);
        }
        say(pb, line);
    }
    cells
}

fn thread_arg(args: &[&str]) -> u64 {
    args.windows(2)
        .find(|w| w[0] == "--threads")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(1)
}

/// Runs the hakmem library once with `HAKMEM_VERBOSE=1` and returns its
/// `hakmem-features:` map, if it prints one.
fn detect_features(
    bin: &Path,
    hakmem: &Allocator,
    timeout: Duration,
) -> (Option<Map<String, Value>>, String) {
    let mut env = hakmem.child_env();
    env.insert("HAKMEM_VERBOSE".into(), "1".into());
    let args: Vec<String> = ["tiny-hot", "--min", "16", "--quick"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match run_child(bin, &args, &env, timeout) {
        Ok(o) => {
            let lines = o
                .stderr
                .lines()
                .filter(|l| l.trim_start().starts_with("hakmem"))
                .collect::<Vec<_>>()
                .join("\n");
            (parse::parse_hakmem_features(&o.stderr), lines)
        }
        Err(e) => (None, format!("{e:#}")),
    }
}

/// `cargo build --release -p hakmem-ffi -p hakmem-bench`; returns (libhakmem.so, bench bin).
pub fn build_release() -> Result<(PathBuf, PathBuf)> {
    let target = target_dir();
    let mut c = Command::new(cargo_bin());
    c.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "-p",
            "hakmem-ffi",
            "-p",
            "hakmem-bench",
        ]);
    util::run_status(&mut c)?;
    Ok(artifacts())
}

/// `cargo build --release -p hakmem-ffi --features unchecked` into its own target folder;
/// returns that library.
pub fn build_unchecked() -> Result<PathBuf> {
    let target = target_dir().join("unchecked");
    let mut c = Command::new(cargo_bin());
    c.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "-p",
            "hakmem-ffi",
            "--features",
            "hakmem-ffi/unchecked",
        ]);
    util::run_status(&mut c)?;
    Ok(target.join("release").join("libhakmem.so"))
}

/// The rows of `--checks`: the library without its checks, and hakmem in its hardened mode.
fn check_rows(unchecked_so: &Path, hakmem_so: &Path) -> Vec<Allocator> {
    let stats = || -> BTreeMap<String, String> { [("HAKMEM_STATS".into(), "1".into())].into() };
    let mut secure = stats();
    secure.insert("HAKMEM_SECURE".into(), "1".into());
    vec![
        Allocator {
            name: "hakmem[checks-off]".into(),
            version: format!("--features unchecked: {}", unchecked_so.display()),
            preload: Some(unchecked_so.to_path_buf()),
            env: stats(),
            is_hakmem: true,
            build: Some(
                "cargo build --release -p hakmem-ffi --features hakmem-ffi/unchecked".into(),
            ),
        },
        Allocator {
            name: "hakmem[secure]".into(),
            version: "HAKMEM_SECURE=1".into(),
            preload: Some(hakmem_so.to_path_buf()),
            env: secure,
            is_hakmem: true,
            build: None,
        },
    ]
}

/// Paths of the release artefacts.
pub fn artifacts() -> (PathBuf, PathBuf) {
    let rel = target_dir().join("release");
    (rel.join("libhakmem.so"), rel.join("hakmem-bench"))
}

fn ablation_rows_spec(
    hakmem: &Allocator,
    features: Option<&Map<String, Value>>,
) -> (Vec<Row>, Vec<String>) {
    let base_env = |extra: &[(&str, &str)]| {
        let mut e = BTreeMap::new();
        e.insert("HAKMEM_MODE".to_string(), "minimal".to_string());
        for (k, v) in extra {
            e.insert(k.to_string(), v.to_string());
        }
        e
    };
    let mut rows = vec![(hakmem.clone(), base_env(&[]), "minimal".to_string())];
    let mut absent = Vec::new();
    let mut present: Vec<(&str, &str)> = Vec::new();
    for (k, v) in FEATURES {
        if parse::feature_known(features, k) {
            present.push((k, v));
            rows.push((
                hakmem.clone(),
                base_env(&[(k, v)]),
                format!("minimal+{k}={v}"),
            ));
        } else {
            absent.push(k.to_string());
        }
    }
    if !present.is_empty() {
        rows.push((
            hakmem.clone(),
            base_env(&present),
            "minimal+all".to_string(),
        ));
    }
    (rows, absent)
}

/// Compiles `xtask/assets/hotloop.c` and measures instructions per malloc+free pair
/// under callgrind for each allocator.
fn instructions(allocs: &[Allocator], skipped: &mut Vec<String>) -> Vec<InstrRow> {
    const N: u64 = 1_000_000;
    if util::which("valgrind").is_none() {
        let l = "skip: --instructions needs valgrind (not installed)".to_string();
        println!("{l}");
        skipped.push(l);
        return Vec::new();
    }
    let Some(cc) = util::which("cc").or_else(|| util::which("gcc")) else {
        let l = "skip: --instructions needs a C compiler (cc)".to_string();
        println!("{l}");
        skipped.push(l);
        return Vec::new();
    };
    let src = workspace_root().join("xtask/assets/hotloop.c");
    let exe = target_dir().join("xtask").join("hotloop");
    let _ = std::fs::create_dir_all(exe.parent().unwrap_or(Path::new(".")));
    let mut c = Command::new(cc);
    c.args(["-O2", "-o"]).arg(&exe).arg(&src);
    if let Err(e) = util::run_status(&mut c) {
        let l = format!("skip: --instructions: cannot compile hotloop.c: {e:#}");
        println!("{l}");
        skipped.push(l);
        return Vec::new();
    }
    header("instructions per malloc+free (callgrind)");
    let valgrind = PathBuf::from("valgrind");
    let mut rows = Vec::new();
    for a in allocs {
        let ir = |n: u64| -> Result<u64> {
            let args: Vec<String> = [
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                &exe.display().to_string(),
                &n.to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let o = run_child(&valgrind, &args, &a.child_env(), Duration::from_secs(600))?;
            if !o.success() {
                bail!("{}", o.describe_failure());
            }
            // The N = 0 run allocates nothing on purpose: only the measured run must prove
            // hakmem served it.
            if a.is_hakmem
                && n > 0
                && let Err(why) =
                    parse::served_by_hakmem(parse::parse_hakmem_stats(&o.stderr).as_ref())
            {
                bail!("NOT SERVED BY HAKMEM under valgrind: {why}");
            }
            parse::parse_callgrind_ir(&o.stderr)
                .with_context(|| format!("no Ir total in: {}", tail_lines(&o.stderr, 3)))
        };
        let (a_n, a_0) = (ir(N), ir(0));
        let row = match (a_n, a_0) {
            (Ok(x), Ok(z)) => InstrRow {
                allocator: a.name.clone(),
                ir_n: Some(x),
                ir_zero: Some(z),
                n: N,
                instructions_per_pair: model::instructions_per_pair(x, z, N),
                error: None,
            },
            (x, z) => InstrRow {
                allocator: a.name.clone(),
                ir_n: x.as_ref().ok().copied(),
                ir_zero: z.as_ref().ok().copied(),
                n: N,
                instructions_per_pair: None,
                error: Some(
                    [x.err(), z.err()]
                        .into_iter()
                        .flatten()
                        .map(|e| format!("{e:#}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            },
        };
        println!(
            "  {:<18} {}",
            row.allocator,
            row.instructions_per_pair
                .map(|x| format!("{x:.1} instructions / pair"))
                .unwrap_or_else(|| format!("failed: {}", row.error.clone().unwrap_or_default()))
        );
        rows.push(row);
    }
    rows
}

/// The bench command. Returns the path of the JSON record; an error (after writing
/// the report) when any cell failed or a hakmem row was not served by hakmem.
pub fn bench(opts: &BenchOpts) -> Result<PathBuf> {
    let started = config::now_secs();
    let (workloads, app_list) = select_all(&opts.workloads, opts.apps, opts.no_apps)?;
    let names = requested_allocators(&opts.allocators, opts.modes)?;
    let runs = opts.runs.unwrap_or(if opts.quick { 2 } else { 5 }).max(1);
    let timeout = Duration::from_secs(opts.timeout.unwrap_or(if opts.quick { 120 } else { 600 }));

    let (hakmem_so, bin) = if opts.no_build {
        artifacts()
    } else {
        header("cargo build --release -p hakmem-ffi -p hakmem-bench");
        build_release()?
    };
    if !bin.exists() {
        bail!(
            "workload binary {} not found (did the build succeed?)",
            bin.display()
        );
    }
    let needs_hakmem = names.iter().any(|n| n.starts_with("hakmem")) || opts.ablate;
    if needs_hakmem && !hakmem_so.exists() {
        bail!("{} not found (did the build succeed?)", hakmem_so.display());
    }

    let mut skipped = Vec::new();
    let mut allocs = resolve_allocators(&names, &hakmem_so, &mut skipped);
    allocs.extend(extra_hakmem_rows(&opts.hakmem_so)?);
    if opts.checks {
        let unchecked = target_dir()
            .join("unchecked")
            .join("release")
            .join("libhakmem.so");
        let unchecked = if opts.no_build && unchecked.exists() {
            unchecked
        } else {
            header("cargo build --release -p hakmem-ffi --features unchecked");
            build_unchecked()?
        };
        allocs.extend(check_rows(&unchecked, &hakmem_so));
    }
    let plain_hakmem = Allocator {
        name: "hakmem".into(),
        preload: Some(hakmem_so.clone()),
        env: [("HAKMEM_STATS".to_string(), "1".to_string())].into(),
        is_hakmem: true,
        ..Default::default()
    };

    let (features, verbose) = if needs_hakmem {
        detect_features(&bin, &plain_hakmem, timeout)
    } else {
        (None, String::new())
    };

    let rows: Vec<_> = allocs
        .iter()
        .map(|a| (a.clone(), BTreeMap::new(), a.name.clone()))
        .collect();
    let (abl_rows, absent) = if opts.ablate {
        ablation_rows_spec(&plain_hakmem, features.as_ref())
    } else {
        (Vec::new(), Vec::new())
    };
    let abl_workloads: Vec<Workload> = WORKLOADS
        .iter()
        .filter(|w| ABLATION_WORKLOADS.contains(&w.name))
        .copied()
        .collect();

    let plan = if app_list.is_empty() {
        None
    } else {
        Some(apps::prepare(&app_list, opts.quick, &mut skipped)?)
    };
    let n_apps = plan.as_ref().map_or(0, |p| p.apps.len());

    let total =
        (workloads.len() * rows.len() + abl_workloads.len() * abl_rows.len() + n_apps * rows.len())
            * runs;
    header(&format!(
        "bench: {} workloads{} × {} allocators × {runs} runs{}{}",
        workloads.len(),
        if n_apps > 0 {
            format!(" + {n_apps} real programs")
        } else {
            String::new()
        },
        rows.len(),
        if opts.quick { " (quick)" } else { "" },
        if opts.ablate {
            format!(" + ablation ({} configs × 2 workloads)", abl_rows.len())
        } else {
            String::new()
        }
    ));
    if !abl_rows.is_empty() && !absent.is_empty() {
        println!(
            "ablation: absent features (not announced by `hakmem-features:`): {}",
            absent.join(", ")
        );
    }
    let pb = progress(total as u64);
    let cells = run_matrix(&bin, &workloads, &rows, runs, opts.quick, timeout, &pb);
    let abl_cells = if abl_rows.is_empty() {
        Vec::new()
    } else {
        say(&pb, "ablation:");
        run_matrix(
            &bin,
            &abl_workloads,
            &abl_rows,
            runs,
            opts.quick,
            timeout,
            &pb,
        )
    };
    let app_cells = match &plan {
        Some(p) if !p.apps.is_empty() => {
            say(&pb, "real programs:");
            apps::run(p, &rows, runs, timeout, &pb)
        }
        _ => Vec::new(),
    };
    pb.finish_and_clear();

    let results = model::finalize(&cells);
    let app_results = model::finalize(&app_cells);
    let ablation = model::ablation_rows(&abl_cells, "minimal");
    if opts.ablate {
        header("ablation (cost relative to HAKMEM_MODE=minimal; > 1 = faster than minimal)");
        for f in &absent {
            println!("  {f:<22} absent (library does not announce it)");
        }
        for a in &ablation {
            println!(
                "  {:<14} {:<34} {:>10}  vs minimal {}  rss {}",
                a.workload,
                a.config,
                a.median
                    .map(report::fmt_num)
                    .unwrap_or_else(|| "FAILED".into()),
                a.ratio_vs_minimal
                    .map(report::fmt_ratio)
                    .unwrap_or_else(|| "–".into()),
                a.rss_vs_minimal
                    .map(report::fmt_ratio)
                    .unwrap_or_else(|| "–".into()),
            );
        }
    }
    let instr = if opts.instructions {
        instructions(&allocs, &mut skipped)
    } else {
        Vec::new()
    };

    // ---- the configuration record ----
    let root = workspace_root();
    let (commit, dirty) = config::git_state(&root);
    let mut cfg = Map::new();
    cfg.insert("commit".into(), json!(commit));
    cfg.insert("dirty".into(), json!(dirty));
    cfg.insert(
        "command".into(),
        json!(std::env::args().collect::<Vec<_>>()),
    );
    let mut row_env = Map::new();
    for (a, extra, name) in rows.iter().chain(abl_rows.iter()) {
        let mut e = a.child_env();
        e.extend(extra.clone());
        row_env.insert(name.clone(), json!(e));
    }
    cfg.insert(
        "env".into(),
        json!({
            "xtask": config::recorded_env(std::env::vars()),
            "rows": row_env,
            "child_notes": "children inherit the xtask environment minus LD_PRELOAD, plus the row's env",
        }),
    );
    cfg.insert(
        "mode".into(),
        json!(config::mode_label(
            std::env::var("HAKMEM_MODE").ok().as_deref()
        )),
    );
    cfg.insert(
        "features".into(),
        Value::Object(features.clone().unwrap_or_default()),
    );
    cfg.insert("hakmem_verbose".into(), json!(verbose));
    cfg.insert("build".into(), config::build_info(&root));
    cfg.insert("machine".into(), config::machine());
    cfg.insert("date".into(), json!(config::rfc3339_utc(started)));
    let mut amap = Map::new();
    for a in &allocs {
        let mut entry = json!({
            "path": a.preload.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none: system libc malloc)".into()),
            "version": a.version,
        });
        if let Some(b) = &a.build {
            entry["build"] = json!(b);
        }
        amap.insert(a.name.clone(), entry);
    }
    cfg.insert("allocators".into(), Value::Object(amap));
    cfg.insert("quick".into(), json!(opts.quick));
    cfg.insert("runs".into(), json!(runs));
    cfg.insert("timeout_s".into(), json!(timeout.as_secs()));
    cfg.insert("bench_binary".into(), json!(bin.display().to_string()));
    if let Some(p) = &plan {
        cfg.insert("real_programs".into(), apps::describe(p));
    }
    cfg.insert(
        "workloads".into(),
        json!(
            workloads
                .iter()
                .map(|w| match note(w) {
                    Some(n) => json!({"name": w.name, "args": w.args, "note": n}),
                    None => json!({"name": w.name, "args": w.args}),
                })
                .collect::<Vec<_>>()
        ),
    );

    let record = Record {
        config: cfg,
        results,
        ablation,
        ablation_absent_features: if opts.ablate { absent } else { Vec::new() },
        instructions: instr,
        apps_vs_peers: model::app_vs_peers(&app_results),
        apps_geomean: model::app_geomeans(&app_results),
        apps: app_results,
        skipped,
    };
    drop(plan);

    // ---- write ----
    let out_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| target_dir().join("bench"));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let stamp = config::file_timestamp(started);
    let json_text = serde_json::to_string_pretty(&record)?;
    let md = report::render_markdown(&record);
    let title = report::chart_title(opts.quick);
    let svg = crate::chart::render_svg(&record.results, &title)?;
    let json_path = out_dir.join(format!("{stamp}.json"));
    for (ext, body) in [("json", &json_text), ("md", &md), ("svg", &svg)] {
        let p = out_dir.join(format!("{stamp}.{ext}"));
        std::fs::write(&p, body).with_context(|| format!("cannot write {}", p.display()))?;
        std::fs::copy(&p, out_dir.join(format!("latest.{ext}")))?;
    }

    print_summary(&record);
    print!("{}", report::console_summary(&record));
    println!("\nrecord: {}", json_path.display());
    println!("report: {}", out_dir.join(format!("{stamp}.md")).display());
    println!("chart:  {}", out_dir.join(format!("{stamp}.svg")).display());
    println!(
        "(also latest.json / latest.md / latest.svg in {})",
        out_dir.display()
    );

    let bad: Vec<String> = record
        .results
        .iter()
        .chain(record.apps.iter())
        .filter(|r| !r.ok())
        .map(|r| format!("{}/{}", r.workload, r.allocator))
        .chain(
            record
                .ablation
                .iter()
                .filter(|a| a.served_by_hakmem != Some(true) || a.median.is_none())
                .map(|a| format!("ablation {}/{}", a.workload, a.config)),
        )
        .collect();
    let unserved: Vec<String> = record
        .results
        .iter()
        .chain(record.apps.iter())
        .filter(|r| r.served_by_hakmem == Some(false))
        .map(|r| format!("{}/{}", r.workload, r.allocator))
        .collect();
    if !unserved.is_empty() {
        eprintln!(
            "\n!!!!!!!! NOT SERVED BY HAKMEM: {} — these rows measured some other malloc !!!!!!!!",
            unserved.join(", ")
        );
    }
    if !bad.is_empty() {
        bail!("{} cell(s) failed: {}", bad.len(), bad.join(", "));
    }
    Ok(json_path)
}

fn print_summary(rec: &Record) {
    if !rec.results.is_empty() {
        header(
            "summary (median; hakmem ratio vs peer, > 1 = hakmem better; best = the strongest \
             peer of the run, glibc aside)",
        );
    }
    for r in &rec.results {
        let mut ratios: Vec<String> = r
            .ratio_vs
            .iter()
            .map(|(p, x)| format!("{p} {}", report::fmt_ratio(*x)))
            .collect();
        if let Some((p, x)) = report::best_peer(&r.ratio_vs) {
            ratios.push(format!("best {p} {}", report::fmt_ratio(x)));
        }
        println!(
            "  {:<15} {:<18} {:>10} {:<15} rss {:>8} KiB{}{}{}",
            r.workload,
            r.allocator,
            r.median
                .map(report::fmt_num)
                .unwrap_or_else(|| "FAILED".into()),
            r.metric,
            r.peak_rss_kb
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "–".into()),
            if ratios.is_empty() {
                String::new()
            } else {
                format!("  [{}]", ratios.join(", "))
            },
            if r.unstable {
                format!(
                    "  UNSTABLE (runs spread {})",
                    r.spread
                        .map(|s| format!("{:.0}%", s * 100.0))
                        .unwrap_or_else(|| "∞".into())
                )
            } else {
                String::new()
            },
            match r.served_by_hakmem {
                Some(false) => "  NOT SERVED BY HAKMEM",
                _ => "",
            }
        );
    }
    if rec.results.iter().any(|r| r.unstable) {
        println!("  UNSTABLE: {}", report::unstable_explanation());
    }
    if rec.apps.is_empty() {
        return;
    }
    header(
        "real programs (median [min–max]; CPU s; hakmem vs peer: figure / CPU, ✱ = ranges apart)",
    );
    for r in &rec.apps {
        let f = |v: f64| report::fmt_figure(v, &r.metric);
        let vs: Vec<String> = rec
            .apps_vs_peers
            .iter()
            .filter(|v| v.app == r.workload && v.hakmem_row == r.allocator)
            .map(|v| {
                let x = |r: Option<f64>, apart: bool| {
                    r.map(|r| format!("{}{}", report::fmt_ratio(r), if apart { "✱" } else { "" }))
                        .unwrap_or_else(|| "–".into())
                };
                format!(
                    "{} {} / {}",
                    v.peer,
                    x(v.figure_ratio, v.figure_apart),
                    x(v.cpu_ratio, v.cpu_apart)
                )
            })
            .collect();
        println!(
            "  {:<12} {:<18} {:>10} [{}–{}]  cpu {:>7}  rss {:>8} KiB{}{}",
            r.workload,
            r.allocator,
            r.median.map(f).unwrap_or_else(|| "FAILED".into()),
            r.min.map(f).unwrap_or_default(),
            r.max.map(f).unwrap_or_default(),
            r.cpu_s
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "–".into()),
            r.peak_rss_kb
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "–".into()),
            if vs.is_empty() {
                String::new()
            } else {
                format!("  [{}]", vs.join(", "))
            },
            match r.served_by_hakmem {
                Some(false) => "  NOT SERVED BY HAKMEM",
                _ => "",
            }
        );
    }
    for g in &rec.apps_geomean {
        let parts: Vec<String> = g
            .apps
            .iter()
            .map(|b| format!("{} vs {} {}", b.app, b.peer, report::fmt_ratio(b.ratio)))
            .collect();
        println!(
            "  {} over the best peer per app, CPU time: geomean {} ({})",
            g.hakmem_row,
            g.geomean_cpu_vs_best_peer
                .map(report::fmt_ratio)
                .unwrap_or_else(|| "–".into()),
            parts.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_selection() {
        assert_eq!(select_workloads(&[]).unwrap().len(), 19);
        let l = select_workloads(&["larson".into()]).unwrap();
        assert_eq!(
            l.iter().map(|w| w.name).collect::<Vec<_>>(),
            ["larson-t1", "larson-t2", "larson-t4", "larson-r100"]
        );
        let o = select_workloads(&["larson-orig".into()]).unwrap();
        assert_eq!(
            o.iter().map(|w| w.name).collect::<Vec<_>>(),
            ["larson-orig-t1", "larson-orig-t4"]
        );
        let one = select_workloads(&["larson-r100".into(), "big".into()]).unwrap();
        assert_eq!(one.len(), 2);
        assert!(select_workloads(&["nope".into()]).is_err());
        let names: std::collections::BTreeSet<_> = WORKLOADS.iter().map(|w| w.name).collect();
        assert_eq!(names.len(), WORKLOADS.len(), "workload names are unique");
    }

    #[test]
    fn notes_name_rows_of_the_matrix() {
        for (k, _) in NOTES {
            assert!(WORKLOADS.iter().any(|w| w.args[0] == *k), "no row runs {k}");
        }
        let row = |n: &str| WORKLOADS.iter().find(|w| w.name == n).unwrap();
        assert!(note(row("larson-orig-t4")).unwrap().contains("RSS"));
        assert!(note(row("prodcons")).unwrap().contains("CPU-second"));
        assert_eq!(note(row("larson-t1")), None);
        assert_eq!(thread_arg(row("prodcons").args), 2);
    }

    #[test]
    fn workloads_and_apps_selection() {
        let n_apps = apps::APPS.len();
        let (w, a) = select_all(&[], false, false).unwrap();
        assert_eq!(
            (w.len(), a.len()),
            (WORKLOADS.len(), n_apps),
            "a full run has both"
        );
        let (w, a) = select_all(&[], true, false).unwrap();
        assert_eq!((w.len(), a.len()), (0, n_apps));
        let (w, a) = select_all(&[], false, true).unwrap();
        assert_eq!((w.len(), a.len()), (WORKLOADS.len(), 0));
        // Filters naming only matrix workloads leave the apps out, and the other way round.
        let (w, a) = select_all(&["larson".into()], false, false).unwrap();
        assert_eq!((w.len(), a.len()), (4, 0));
        let (w, a) = select_all(&["redis".into(), "sqlite".into()], false, false).unwrap();
        assert_eq!(w.len(), 0);
        assert_eq!(
            a.iter().map(|a| a.name).collect::<Vec<_>>(),
            ["sqlite", "redis"]
        );
        let (w, a) = select_all(&["big".into(), "sort".into()], false, false).unwrap();
        assert_eq!((w.len(), a.len()), (1, 1));
        let (w, a) = select_all(&["sort".into()], true, false).unwrap();
        assert_eq!((w.len(), a.len()), (0, 1));
        assert!(select_all(&["big".into()], true, false).is_err());
        assert!(select_all(&["redis".into()], false, true).is_err());
        assert!(select_all(&[], true, true).is_err());
        let e = select_all(&["nope".into()], false, false).unwrap_err();
        assert!(format!("{e}").contains("real programs: python-json"), "{e}");
    }

    #[test]
    fn allocator_selection() {
        assert_eq!(requested_allocators(&[], false).unwrap(), BASE_ALLOCATORS);
        let v = requested_allocators(&["hakmem".into(), "glibc".into()], true).unwrap();
        assert_eq!(v[..2], ["hakmem", "glibc"]);
        assert_eq!(v.len(), 7);
        assert!(v.contains(&"hakmem[research]".to_string()));
        assert!(requested_allocators(&["hakmem[fast]".into()], false).is_ok());
        assert!(requested_allocators(&["hakmem[]".into()], false).is_err());
        assert!(requested_allocators(&["ptmalloc".into()], false).is_err());
        let e = requested_allocators(&["mimalloc".into()], false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("did you mean mimalloc-v3 or mimalloc-2.0-deb?"),
            "{e}"
        );
        assert!(!e.contains("did you mean jemalloc"), "{e}");
    }

    /// The default run has every peer, crate-built and Debian's, each named once; the CI
    /// smoke's `--allocator glibc --allocator hakmem` asks for no crate peer, so it builds none.
    #[test]
    fn peer_rows() {
        for p in &peers::CRATE_PEERS {
            assert!(
                BASE_ALLOCATORS.contains(&p.row),
                "{} not in the default run",
                p.row
            );
        }
        for p in &PEERS {
            assert!(BASE_ALLOCATORS.contains(&p.name), "{}", p.name);
            assert!(
                peers::crate_peer(p.name).is_none(),
                "{} named twice",
                p.name
            );
        }
        let names: std::collections::BTreeSet<_> = BASE_ALLOCATORS.iter().collect();
        assert_eq!(names.len(), BASE_ALLOCATORS.len());
        assert_eq!(
            BASE_ALLOCATORS.len(),
            2 + peers::CRATE_PEERS.len() + PEERS.len()
        );
        let smoke = requested_allocators(&["glibc".into(), "hakmem".into()], false).unwrap();
        assert!(smoke.iter().all(|n| peers::crate_peer(n).is_none()));
        let mut skipped = Vec::new();
        assert!(peers::ensure(&[], &mut skipped).is_empty());
        assert!(skipped.is_empty());
    }

    #[test]
    fn thread_args() {
        assert_eq!(thread_arg(&["larson", "--threads", "4"]), 4);
        assert_eq!(thread_arg(&["big"]), 1);
    }

    #[test]
    fn ablation_lists_absent_without_feature_line() {
        let h = Allocator {
            name: "hakmem".into(),
            is_hakmem: true,
            ..Default::default()
        };
        let (rows, absent) = ablation_rows_spec(&h, None);
        assert_eq!(rows.len(), 1, "only minimal when nothing is known");
        assert_eq!(absent.len(), FEATURES.len());
        let f = parse::parse_hakmem_features("hakmem-features: pool=off evo=on").unwrap();
        let (rows, absent) = ablation_rows_spec(&h, Some(&f));
        let names: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
        assert_eq!(
            names,
            [
                "minimal",
                "minimal+HAKMEM_POOL=1",
                "minimal+HAKMEM_EVO=learn",
                "minimal+all"
            ]
        );
        assert_eq!(rows[3].1["HAKMEM_EVO"], "learn");
        assert_eq!(rows[3].1["HAKMEM_MODE"], "minimal");
        assert_eq!(absent.len(), FEATURES.len() - 2);
    }

    /// The child runner against real processes: exit codes, signals, rusage, timeout.
    #[test]
    fn child_runner() {
        let sh = Path::new("/bin/sh");
        let env = BTreeMap::from([("XT_VAR".to_string(), "hello".to_string())]);
        let o = run_child(
            sh,
            &[
                "-c".into(),
                "echo $XT_VAR; echo err >&2; echo \"P=$LD_PRELOAD\"".into(),
            ],
            &env,
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(o.success());
        assert_eq!(o.stdout, "hello\nP=\n");
        assert_eq!(o.stderr, "err\n");
        assert!(o.maxrss_kb > 0.0);
        assert!(o.faults > 0.0);

        let o = run_child(
            sh,
            &["-c".into(), "exit 3".into()],
            &env,
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(o.exit, Some(Ok(3)));
        assert!(!o.success());

        let o = run_child(
            sh,
            &["-c".into(), "kill -SEGV $$".into()],
            &env,
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(o.exit, Some(Err(libc::SIGSEGV)));

        let t = Instant::now();
        let o = run_child(
            sh,
            &["-c".into(), "exec sleep 30".into()],
            &env,
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(o.timed_out);
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(o.describe_failure().contains("timed out"));
    }

    /// A busy child reports CPU time through wait4's rusage.
    #[test]
    fn child_cpu_time() {
        let o = run_child(
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done".into(),
            ],
            &BTreeMap::new(),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(o.success());
        assert!(o.cpu_s > 0.0, "cpu {}", o.cpu_s);
        assert!(o.wall_s > 0.0);
    }

    #[test]
    fn one_run_flags_unserved_hakmem() {
        // A fake "workload" that prints a RESULT line but no hakmem-stats line.
        let h = Allocator {
            name: "hakmem".into(),
            is_hakmem: true,
            ..Default::default()
        };
        let script = r#"echo 'RESULT {"workload":"x","threads":1,"metric":"ops","value":5,"higher_is_better":true,"ops":5,"seconds":1,"params":{}}'"#;
        let mut meta = CellMeta::default();
        let s = one_run(
            Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            &h,
            &BTreeMap::new(),
            Duration::from_secs(20),
            &mut meta,
        );
        assert_eq!(s.value, Some(5.0));
        assert_eq!(s.served_by_hakmem, Some(false));
        assert!(s.error.unwrap().contains("NOT SERVED"));

        let script2 = format!("{script}; echo 'hakmem-stats: tiny.carved=7 run.allocs=0' >&2");
        let s = one_run(
            Path::new("/bin/sh"),
            &["-c".into(), script2],
            &h,
            &BTreeMap::new(),
            Duration::from_secs(20),
            &mut meta,
        );
        assert_eq!(s.served_by_hakmem, Some(true));
        assert!(s.error.is_none());
        assert_eq!(meta.metric.as_deref(), Some("ops"));
    }
}
