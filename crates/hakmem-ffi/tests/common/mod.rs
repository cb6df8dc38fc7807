//! Shared helpers for the C-ABI integration tests of `libhakmem.so`.
//!
//! * [`libhakmem`] builds the release library once per test binary
//!   (`cargo build --release -p hakmem-ffi`) and returns its absolute path.
//! * [`compile_c`] compiles one of the C programs in `tests/c/` into
//!   `CARGO_TARGET_TMPDIR`.
//! * [`run`] runs a command with a wall-clock limit, capturing its output.
//! * [`preloaded`] adds `LD_PRELOAD=<libhakmem.so>` to a command.
//! * [`parse_stats`] finds and parses a `hakmem-stats:` line.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Default wall-clock limit for one child process. Generous: it only exists
/// so that a deadlocked allocator fails the test instead of hanging it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(240);

/// The workspace root (`crates/hakmem-ffi/../..`).
pub fn workspace_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// The cargo target directory: `$CARGO_TARGET_DIR` if set (a relative value
/// is taken relative to the workspace root, where the build is run), else
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string())
}

/// Extracts the path of `libhakmem.so` from cargo's JSON messages, if any.
fn so_path_from_json(stdout: &str) -> Option<PathBuf> {
    for line in stdout.lines() {
        if !line.contains("\"reason\":\"compiler-artifact\"") {
            continue;
        }
        let Some(start) = line.find("\"filenames\":[") else {
            continue;
        };
        let rest = &line[start + "\"filenames\":[".len()..];
        let list = &rest[..rest.find(']').unwrap_or(rest.len())];
        for item in list.split(',') {
            let item = item.trim().trim_matches('"');
            if item.ends_with("/libhakmem.so") {
                return Some(PathBuf::from(item));
            }
        }
    }
    None
}

/// Builds `libhakmem.so` in release mode (once per test binary) and returns
/// its absolute path. Panics (fails the test) if the build fails.
pub fn libhakmem() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let root = workspace_root();
        let mut cmd = Command::new(cargo_bin());
        cmd.current_dir(&root)
            .args([
                "build",
                "--release",
                "-p",
                "hakmem-ffi",
                "--message-format=json-render-diagnostics",
            ])
            .stdin(Stdio::null());
        // Do not let a preload meant for a child leak into the build.
        cmd.env_remove("LD_PRELOAD");
        if let Some(d) = std::env::var_os("CARGO_TARGET_DIR")
            && !d.is_empty()
        {
            cmd.env("CARGO_TARGET_DIR", target_dir());
        }
        let t0 = Instant::now();
        let out = run_with_timeout(cmd, Duration::from_secs(1800));
        eprintln!(
            "built libhakmem.so (cargo build --release -p hakmem-ffi) in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        assert!(
            out.status.success(),
            "`cargo build --release -p hakmem-ffi` failed ({}):\n{}",
            out.status,
            out.stderr
        );
        let expected = target_dir().join("release").join("libhakmem.so");
        let path = if expected.exists() {
            expected
        } else {
            so_path_from_json(&out.stdout).unwrap_or_else(|| {
                panic!(
                    "libhakmem.so not found at {} and cargo reported no such artifact",
                    expected.display()
                )
            })
        };
        assert!(path.exists(), "{} does not exist", path.display());
        path.canonicalize().expect("canonicalize libhakmem.so")
    })
}

/// Directory for compiled C programs and other scratch files.
pub fn tmp_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hakmem-ffi-tests");
    std::fs::create_dir_all(&d).expect("create tmp dir");
    d
}

/// A fresh, empty scratch directory named after `name` (unique per call).
pub fn scratch_dir(name: &str) -> PathBuf {
    static N: Mutex<u32> = Mutex::new(0);
    let n = {
        let mut g = N.lock().unwrap();
        *g += 1;
        *g
    };
    let d = tmp_dir().join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Compiles `tests/c/<name>.c` with `cc -O1 -pthread -Wall` and returns the
/// executable's path. Each program is compiled once per test binary.
pub fn compile_c(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let map = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(name) {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.c"));
    assert!(src.exists(), "missing C source {}", src.display());
    let exe = tmp_dir().join(format!("{name}-{}", std::process::id()));
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-O1", "-g", "-pthread", "-Wall", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-ldl")
        .env_remove("LD_PRELOAD");
    let out = run_with_timeout(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "compiling {} failed:\n{}",
        src.display(),
        out.stderr
    );
    if !out.stderr.trim().is_empty() {
        eprintln!("warnings compiling {}:\n{}", src.display(), out.stderr);
    }
    map.insert(name.to_string(), exe.clone());
    exe
}

/// Captured result of a child process.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Output {
    /// Panics with the full output unless the process exited with status 0.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success() && !self.timed_out,
            "{what}: exited with {}{}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.status,
            if self.timed_out {
                " (killed: timed out)"
            } else {
                ""
            },
            tail(&self.stdout, 8000),
            tail(&self.stderr, 8000),
        );
    }
}

/// The last `n` bytes of `s` (on a char boundary).
pub fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn read_all<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut v);
        }
        v
    })
}

/// Runs `cmd` (stdin closed, stdout/stderr captured), killing it after
/// `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to spawn {cmd:?}: {e}"));
    let out_h = read_all(child.stdout.take());
    let err_h = read_all(child.stderr.take());
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&out_h.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err_h.join().unwrap()).into_owned();
    Output {
        status,
        stdout,
        stderr,
        timed_out,
    }
}

/// [`run_with_timeout`] with [`DEFAULT_TIMEOUT`].
pub fn run(cmd: Command) -> Output {
    run_with_timeout(cmd, DEFAULT_TIMEOUT)
}

/// Adds `LD_PRELOAD=<abs path of libhakmem.so>` to `cmd`.
pub fn preloaded(mut cmd: Command) -> Command {
    cmd.env("LD_PRELOAD", libhakmem());
    cmd
}

/// A command with any inherited `LD_PRELOAD` / `HAKMEM_STATS` removed.
pub fn plain(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("LD_PRELOAD").env_remove("HAKMEM_STATS");
    cmd
}

/// Parses the last `hakmem-stats:` line in `text` into key -> value.
pub fn parse_stats(text: &str) -> Option<BTreeMap<String, u64>> {
    let line = text.lines().rev().find(|l| l.contains("hakmem-stats:"))?;
    let body = &line[line.find("hakmem-stats:").unwrap() + "hakmem-stats:".len()..];
    let mut map = BTreeMap::new();
    for tok in body.split_whitespace() {
        let (k, v) = tok.split_once('=')?;
        map.insert(k.to_string(), v.parse().ok()?);
    }
    Some(map)
}

/// The keys every `hakmem-stats:` line must contain.
pub const STATS_KEYS: &[&str] = &[
    "tiny.carved",
    "tiny.slabs",
    "tiny.remote",
    "pool.carved",
    "pool.slabs",
    "pool.remote",
    "run.allocs",
    "run.frees",
    "large.allocs",
    "large.frees",
    "os.mapped",
    "os.segments",
];

/// The `FAIL ...` lines of a C test program's output (at most 60).
pub fn fail_lines(stdout: &str) -> String {
    let v: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .take(60)
        .collect();
    v.join("\n")
}

/// Runs a compiled C test program (with `args`) under `LD_PRELOAD`, asserts
/// exit status 0 and a closing `<prog>: N checks, 0 failures` line with
/// N >= `min_checks`, and no `SKIP` line. Returns the output.
pub fn run_c_test(name: &str, args: &[&str], prog: &str, min_checks: u64) -> Output {
    let exe = compile_c(name);
    let mut cmd = preloaded(plain(&exe));
    cmd.args(args);
    let out = run(cmd);
    let fails = fail_lines(&out.stdout);
    assert!(
        out.status.success() && !out.timed_out,
        "{name} {args:?} under LD_PRELOAD={} exited with {}{}\n--- FAIL lines ---\n{fails}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        libhakmem().display(),
        out.status,
        if out.timed_out {
            " (killed: timed out)"
        } else {
            ""
        },
        tail(&out.stdout, 6000),
        tail(&out.stderr, 6000),
    );
    assert!(fails.is_empty(), "{name}: exit 0 but FAIL lines:\n{fails}");
    let skips: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("SKIP"))
        .collect();
    assert!(
        skips.is_empty(),
        "{name}: checks were skipped under hakmem:\n{}",
        skips.join("\n")
    );
    let summary = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{prog}: ")))
        .unwrap_or_else(|| {
            panic!(
                "{name}: no closing `{prog}: ...` line in:\n{}",
                tail(&out.stdout, 4000)
            )
        });
    let words: Vec<&str> = summary.split_whitespace().collect();
    let checks: u64 = words.first().and_then(|w| w.parse().ok()).unwrap_or(0);
    assert!(
        words.len() == 4 && words[1] == "checks," && words[2] == "0" && words[3] == "failures",
        "{name}: bad closing line `{prog}: {summary}`"
    );
    assert!(
        checks >= min_checks,
        "{name}: only {checks} checks ran (expected >= {min_checks})"
    );
    out
}

/// Looks `name` up in `$PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `Some(path)` if `name` is installed, else prints a skip line and `None`.
pub fn require_program(name: &str, test: &str) -> Option<PathBuf> {
    let p = find_program(name);
    if p.is_none() {
        eprintln!("SKIP {test}: `{name}` is not installed");
    }
    p
}
