//! Real programs as workloads of `cargo xtask bench` (`--apps` alone, and part of a full
//! run unless `--no-apps`): python3, sqlite3, a gcc build, sort, redis-server driven by
//! redis-benchmark, and RocksDB's db_bench. Each runs under every allocator row's
//! `LD_PRELOAD` with a fixed input that the harness writes once per invocation from a fixed
//! seed, before any clock starts. A program that is not installed (and cannot be) is a
//! `skip:` line, never a failure of the bench.
//!
//! Figures per run: the wall time of the program (for redis: the requests per second that
//! redis-benchmark reports), the CPU time (user + system) and peak RSS of the measured
//! process tree, and its page faults. For every child but the server these come from the
//! `wait4` rusage of the child, which covers every descendant it waited for; for
//! redis-server from its `/proc/<pid>/stat` and `VmHWM` read just before it is stopped.

mod inputs;
mod output;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::bench::{Allocator, Row, run_child, say};
use crate::config;
use crate::model::{CellRaw, RunSample};
use crate::parse;
use crate::report;
use crate::util::{self, header, tail_lines};

/// A program an app needs: its role, the names tried on `PATH` in order, its Debian package.
#[derive(Debug)]
pub struct Need {
    pub role: &'static str,
    pub names: &'static [&'static str],
    pub package: &'static str,
}

/// What an app runs; each kind knows its input, its command and how to read its figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Python,
    Sqlite,
    Gcc,
    Sort,
    SortLocale,
    Redis,
    RocksDb,
}

/// One real-program workload.
#[derive(Debug)]
pub struct App {
    pub name: &'static str,
    pub about: &'static str,
    pub kind: Kind,
    pub needs: &'static [Need],
}

impl App {
    /// Whether a preloaded hakmem can print its exit stats line: coreutils close their
    /// stderr on exit before the library's destructor runs, so `sort` proves it by binding.
    fn stats_on_stderr(&self) -> bool {
        !matches!(self.kind, Kind::Sort | Kind::SortLocale)
    }

    fn metric(&self) -> (&'static str, bool) {
        match self.kind {
            Kind::Redis => ("requests_per_sec", true),
            _ => ("wall_s", false),
        }
    }
}

const SORT: Need = Need {
    role: "sort",
    names: &["sort"],
    package: "coreutils",
};

/// The real programs, in report order.
pub const APPS: &[App] = &[
    App {
        name: "python-json",
        about: "python3 builds nested records (dicts, lists, strings, numbers), then json and pickle dumps/loads them",
        kind: Kind::Python,
        needs: &[Need {
            role: "python3",
            names: &["python3"],
            package: "python3",
        }],
    },
    App {
        name: "sqlite",
        about: "sqlite3 CLI: inserts in one transaction, CREATE INDEX, a batch of queries, an update and a delete",
        kind: Kind::Sqlite,
        needs: &[Need {
            role: "sqlite3",
            names: &["sqlite3"],
            package: "sqlite3",
        }],
    },
    App {
        name: "gcc-build",
        about: "make -j1 of a generated multi-file C project, gcc -O2, linked into one program",
        kind: Kind::Gcc,
        needs: &[
            Need {
                role: "make",
                names: &["make"],
                package: "make",
            },
            Need {
                role: "gcc",
                names: &["gcc"],
                package: "gcc",
            },
        ],
    },
    App {
        name: "sort",
        about: "LC_ALL=C sort of random text lines, in memory (-S)",
        kind: Kind::Sort,
        needs: &[SORT],
    },
    App {
        name: "sort-locale",
        about: "the same sort in the default locale (strcoll comparisons)",
        kind: Kind::SortLocale,
        needs: &[SORT],
    },
    App {
        name: "redis",
        about: "redis-server (no persistence) under the row's preload, driven by redis-benchmark (not preloaded) with -P 16",
        kind: Kind::Redis,
        needs: &[
            Need {
                role: "redis-server",
                names: &["redis-server"],
                package: "redis-server",
            },
            Need {
                role: "redis-benchmark",
                names: &["redis-benchmark"],
                package: "redis-tools",
            },
        ],
    },
    App {
        name: "rocksdb",
        about: "RocksDB db_bench: fillrandom then readrandom with a fixed --num and --seed",
        kind: Kind::RocksDb,
        needs: &[Need {
            role: "db_bench",
            names: &["db_bench", "rocksdb_db_bench"],
            package: "rocksdb-tools",
        }],
    },
];

/// The seed of every generated input and of the programs' own generators.
pub const SEED: u64 = 20_240_917;

/// redis-benchmark's tests (`-t`).
const REDIS_TESTS: &str = "set,get,incr,lpush,rpop,sadd,hset,spop,zadd,lrange_100";

/// The sizes of the inputs, full or `--quick`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scale {
    pub python_records: u64,
    pub python_rounds: u64,
    pub sqlite_rows: u64,
    pub sqlite_lookups: u64,
    pub gcc_files: usize,
    pub gcc_functions: usize,
    pub sort_bytes: u64,
    /// The locale variant compares with strcoll, several times slower: a smaller input.
    pub sort_locale_bytes: u64,
    pub redis_requests: u64,
    pub redis_keyspace: u64,
    pub redis_value_bytes: u64,
    pub rocksdb_num: u64,
}

impl Scale {
    pub fn new(quick: bool) -> Self {
        if quick {
            Scale {
                python_records: 8_000,
                python_rounds: 2,
                sqlite_rows: 30_000,
                sqlite_lookups: 300,
                gcc_files: 8,
                gcc_functions: 10,
                sort_bytes: 24 << 20,
                sort_locale_bytes: 8 << 20,
                redis_requests: 20_000,
                redis_keyspace: 100_000,
                redis_value_bytes: 100,
                rocksdb_num: 50_000,
            }
        } else {
            Scale {
                python_records: 40_000,
                python_rounds: 3,
                sqlite_rows: 300_000,
                sqlite_lookups: 3_000,
                gcc_files: 40,
                gcc_functions: 10,
                sort_bytes: 200 << 20,
                sort_locale_bytes: 48 << 20,
                redis_requests: 100_000,
                redis_keyspace: 100_000,
                redis_value_bytes: 100,
                rocksdb_num: 300_000,
            }
        }
    }

    /// The size of the sort input of `kind`.
    fn sort_input_bytes(&self, kind: Kind) -> u64 {
        if kind == Kind::SortLocale {
            self.sort_locale_bytes
        } else {
            self.sort_bytes
        }
    }
}

/// `sort -S` for an input of `bytes`: room for the text and its line table several times
/// over, so that it sorts in memory and never spills to temporary files.
fn sort_buffer_mib(bytes: u64) -> u64 {
    ((bytes * 6) >> 20).max(256)
}

/// Apps whose name is one of `filters` (all of them without filters).
pub fn select(filters: &[String]) -> Vec<&'static App> {
    APPS.iter()
        .filter(|a| filters.is_empty() || filters.iter().any(|f| f == a.name))
        .collect()
}

/// The scratch folder of one invocation, removed when the bench ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An app whose programs are present and whose input is written.
pub struct Ready {
    pub app: &'static App,
    progs: BTreeMap<&'static str, PathBuf>,
    dir: PathBuf,
    /// The input file shared with other apps (the sort lines), if any.
    shared_input: Option<PathBuf>,
    pub input: String,
    pub input_bytes: u64,
    pub version: String,
    /// The main program links a malloc of its own: (that library, the libc that the glibc
    /// row preloads in front of it).
    own_malloc: Option<(String, PathBuf)>,
    /// `sort-locale`: the locale it runs in.
    locale: Option<String>,
}

/// Everything the app runs need: the ready apps, their scale, and the scratch folder.
pub struct Plan {
    _scratch: Scratch,
    root: PathBuf,
    pub apps: Vec<Ready>,
    pub scale: Scale,
    /// `ru_maxrss` of `/bin/true` spawned by this process: the floor under every child's
    /// peak RSS (the pre-`exec` image counts).
    pub rss_floor_kb: Option<f64>,
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|n| util::which(n))
}

fn skip(skipped: &mut Vec<String>, line: String) {
    println!("{line}");
    skipped.push(line);
}

/// The environment's locale for collation; `C.UTF-8` when it is C/POSIX or unset.
fn default_locale() -> String {
    let from_env = ["LC_ALL", "LC_COLLATE", "LANG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.is_empty());
    match from_env {
        Some(l) if l != "C" && l != "POSIX" => l,
        _ => "C.UTF-8".to_string(),
    }
}

/// `C.UTF-8` and `c.utf8` name the same locale.
fn locale_key(l: &str) -> String {
    l.to_ascii_lowercase().replace(['-', '_'], "")
}

fn first_line(program: &Path, arg: &str) -> Option<String> {
    let out = Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Finds the programs (installing their packages when root), writes every input, and
/// returns the plan; apps that cannot run become `skip:` lines.
pub fn prepare(apps: &[&'static App], quick: bool, skipped: &mut Vec<String>) -> Result<Plan> {
    let scale = Scale::new(quick);
    let missing: BTreeSet<&str> = apps
        .iter()
        .flat_map(|a| a.needs)
        .filter(|n| find_program(n.names).is_none())
        .map(|n| n.package)
        .collect();
    if !missing.is_empty() && config::is_root() {
        header("installing the real programs");
        let pkgs: Vec<&str> = missing.iter().copied().collect();
        if !util::apt_install(&pkgs) {
            eprintln!(
                "warning: apt-get could not install all of {}",
                pkgs.join(" ")
            );
        }
    }

    let root = std::env::temp_dir().join(format!("hakmem-bench-apps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let scratch = Scratch(root.clone());

    let locales = config::command_stdout("locale", &["-a"], None).unwrap_or_default();
    header(&format!(
        "real programs: writing the inputs (seed {SEED}{}; not timed) to {}",
        if quick { ", quick" } else { "" },
        root.display()
    ));
    let mut ready = Vec::new();
    // Sort inputs by size: the two sort apps share one when their sizes are equal.
    let mut sort_inputs: BTreeMap<u64, (PathBuf, u64, u64)> = BTreeMap::new();
    for &app in apps {
        let mut progs = BTreeMap::new();
        let mut absent = Vec::new();
        for n in app.needs {
            match find_program(n.names) {
                Some(p) => {
                    progs.insert(n.role, p);
                }
                None => absent.push(n),
            }
        }
        if !absent.is_empty() {
            let what: Vec<String> = absent
                .iter()
                .map(|n| format!("{} (Debian package {})", n.names.join(" or "), n.package))
                .collect();
            let why = if config::is_root() {
                "apt-get install did not provide it"
            } else {
                "not root, so not installed"
            };
            skip(
                skipped,
                format!(
                    "skip: app {}: {} not found; {why}",
                    app.name,
                    what.join(", ")
                ),
            );
            continue;
        }
        // Run the interpreter itself, not a launcher script in front of it.
        if app.kind == Kind::Python
            && let Some(exe) = config::command_stdout(
                &progs["python3"].display().to_string(),
                &["-c", "import sys; print(sys.executable)"],
                None,
            )
            .map(PathBuf::from)
            .filter(|p| p.is_file())
        {
            progs.insert("python3", exe);
        }
        let locale = if app.kind == Kind::SortLocale {
            let l = default_locale();
            if !locales
                .lines()
                .any(|x| locale_key(x.trim()) == locale_key(&l))
            {
                skip(
                    skipped,
                    format!(
                        "skip: app {}: locale {l} is not installed (`locale -a`)",
                        app.name
                    ),
                );
                continue;
            }
            Some(l)
        } else {
            None
        };
        let dir = root.join(app.name);
        std::fs::create_dir_all(&dir)?;
        let main = main_role(app.kind);
        let own_malloc = config::command_stdout("ldd", &[&progs[main].display().to_string()], None)
            .and_then(|t| output::own_malloc(&t))
            .map(|(lib, libc)| (lib, PathBuf::from(libc)));
        let mut r = Ready {
            app,
            progs,
            dir,
            shared_input: None,
            input: String::new(),
            input_bytes: 0,
            version: String::new(),
            own_malloc,
            locale,
        };
        r.version = version_of(&r);
        let t = Instant::now();
        match app.kind {
            Kind::Sort | Kind::SortLocale => {
                let want = scale.sort_input_bytes(app.kind);
                let (path, bytes, lines) = match sort_inputs.get(&want) {
                    Some(s) => s.clone(),
                    None => {
                        let path = root.join(format!("sort-input-{}m.txt", want >> 20));
                        let mut w = BufWriter::new(File::create(&path)?);
                        let lines = inputs::sort_lines(SEED, want, &mut w)?;
                        w.flush()?;
                        let bytes = std::fs::metadata(&path)?.len();
                        sort_inputs.insert(want, (path.clone(), bytes, lines));
                        (path, bytes, lines)
                    }
                };
                r.shared_input = Some(path);
                r.input_bytes = bytes;
                r.input = format!(
                    "{lines} random lines, {:.1} MiB (1–6 mixed-case words, half with a number); -S {}M",
                    bytes as f64 / 1048576.0,
                    sort_buffer_mib(bytes)
                );
            }
            _ => write_input(&mut r, &scale)?,
        }
        println!(
            "  {:<12} {} ({:.1} s)",
            app.name,
            r.input,
            t.elapsed().as_secs_f64()
        );
        ready.push(r);
    }
    let rss_floor_kb = run_child(
        Path::new("/bin/true"),
        &[],
        &BTreeMap::new(),
        Duration::from_secs(10),
    )
    .ok()
    .map(|o| o.maxrss_kb);
    Ok(Plan {
        _scratch: scratch,
        root,
        apps: ready,
        scale,
        rss_floor_kb,
    })
}

fn version_of(r: &Ready) -> String {
    let v = |role: &str, arg: &str| -> String {
        first_line(&r.progs[role], arg).unwrap_or_else(|| "unknown".into())
    };
    match r.app.kind {
        Kind::Python => v("python3", "--version"),
        Kind::Sqlite => v("sqlite3", "--version"),
        Kind::Gcc => format!("{}; {}", v("gcc", "--version"), v("make", "--version")),
        Kind::Sort | Kind::SortLocale => v("sort", "--version"),
        Kind::Redis => v("redis-server", "--version"),
        Kind::RocksDb => config::command_stdout(
            "dpkg-query",
            &["-W", "-f=${Version}", "rocksdb-tools"],
            None,
        )
        .map(|v| format!("rocksdb-tools {v}"))
        .unwrap_or_else(|| "unknown".into()),
    }
}

/// Writes the app's input into its folder and describes it.
fn write_input(r: &mut Ready, s: &Scale) -> Result<()> {
    match r.app.kind {
        Kind::Python => {
            let p = r.dir.join("records.py");
            std::fs::write(&p, inputs::PYTHON_SCRIPT)?;
            r.input_bytes = inputs::PYTHON_SCRIPT.len() as u64;
            r.input = format!(
                "records.py: {} records, {} rounds of json + pickle dumps/loads (random.Random({SEED}))",
                s.python_records, s.python_rounds
            );
        }
        Kind::Sqlite => {
            let p = r.dir.join("script.sql");
            let mut w = BufWriter::new(File::create(&p)?);
            inputs::sqlite_script(SEED, s.sqlite_rows, s.sqlite_lookups, &mut w)?;
            w.flush()?;
            r.input_bytes = std::fs::metadata(&p)?.len();
            r.input = format!(
                "script.sql, {:.1} MiB: {} INSERTs in one transaction, 2 indexes, {} point + {} range and prefix queries",
                r.input_bytes as f64 / 1048576.0,
                s.sqlite_rows,
                s.sqlite_lookups,
                2 * (s.sqlite_lookups / 10).max(1)
            );
        }
        Kind::Gcc => {
            let mut bytes = 0;
            for (name, body) in inputs::c_project(SEED, s.gcc_files, s.gcc_functions) {
                bytes += body.len() as u64;
                std::fs::write(r.dir.join(name), body)?;
            }
            r.input_bytes = bytes;
            r.input = format!(
                "{} generated .c files of {} functions + main.c, {:.0} KiB of C; make -j1, gcc -O2",
                s.gcc_files,
                s.gcc_functions,
                bytes as f64 / 1024.0
            );
        }
        Kind::Redis => {
            r.input = format!(
                "redis-benchmark -t {REDIS_TESTS} -n {} -r {} -d {} -P 16 -c 50",
                s.redis_requests, s.redis_keyspace, s.redis_value_bytes
            );
        }
        Kind::RocksDb => {
            r.input = format!(
                "db_bench fillrandom,readrandom --num={} --seed={SEED}, 16 B keys, 100 B values",
                s.rocksdb_num
            );
        }
        Kind::Sort | Kind::SortLocale => unreachable!("the sort input is shared"),
    }
    Ok(())
}

/// The app's own environment (on top of the row's).
fn app_env(r: &Ready) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    match r.app.kind {
        Kind::Python => {
            e.insert("PYTHONHASHSEED".into(), "0".into());
            e.insert("PYTHONMALLOC".into(), "pymalloc".into());
        }
        Kind::Sort => {
            e.insert("LC_ALL".into(), "C".into());
        }
        Kind::SortLocale => {
            e.insert("LC_ALL".into(), r.locale.clone().unwrap_or_default());
        }
        Kind::Gcc => {
            e.insert("LC_ALL".into(), "C".into());
        }
        _ => {}
    }
    if matches!(r.app.kind, Kind::Sort | Kind::SortLocale) {
        e.insert("TMPDIR".into(), r.dir.display().to_string());
    }
    e
}

/// The environment of one row's child: the row's, the libc in front of a program's own
/// malloc on the no-preload row, then the app's.
fn row_env(
    r: &Ready,
    alloc: &Allocator,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut e = alloc.child_env();
    e.extend(extra.clone());
    if !e.contains_key("LD_PRELOAD")
        && let Some((_, libc)) = &r.own_malloc
    {
        e.insert("LD_PRELOAD".into(), libc.display().to_string());
    }
    e.extend(app_env(r));
    e
}

/// Program and arguments of the measured child (redis: of the server).
fn command(r: &Ready, s: &Scale, port: u16) -> (PathBuf, Vec<String>) {
    let d = |name: &str| r.dir.join(name).display().to_string();
    let args: Vec<String> = match r.app.kind {
        Kind::Python => vec![
            d("records.py"),
            s.python_records.to_string(),
            SEED.to_string(),
            s.python_rounds.to_string(),
        ],
        Kind::Sqlite => vec![
            "-batch".into(),
            "-bail".into(),
            d("db.sqlite"),
            format!(".read {}", d("script.sql")),
        ],
        Kind::Gcc => vec![
            "-s".into(),
            "-j1".into(),
            "-C".into(),
            r.dir.display().to_string(),
            format!("CC={}", r.progs["gcc"].display()),
        ],
        Kind::Sort | Kind::SortLocale => vec![
            "-S".into(),
            format!("{}M", sort_buffer_mib(r.input_bytes)),
            "-o".into(),
            d("sorted.txt"),
            r.shared_input
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ],
        Kind::Redis => vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
            "--loglevel".into(),
            "warning".into(),
            "--dir".into(),
            r.dir.display().to_string(),
        ],
        Kind::RocksDb => vec![
            "--benchmarks=fillrandom,readrandom".into(),
            format!("--num={}", s.rocksdb_num),
            format!("--seed={SEED}"),
            format!("--db={}", d("db")),
            "--threads=1".into(),
            "--key_size=16".into(),
            "--value_size=100".into(),
            "--progress_reports=false".into(),
            "--histogram=false".into(),
        ],
    };
    (r.progs[main_role(r.app.kind)].clone(), args)
}

/// The role of the measured program (redis: the server).
fn main_role(kind: Kind) -> &'static str {
    match kind {
        Kind::Python => "python3",
        Kind::Sqlite => "sqlite3",
        Kind::Gcc => "make",
        Kind::Sort | Kind::SortLocale => "sort",
        Kind::Redis => "redis-server",
        Kind::RocksDb => "db_bench",
    }
}

fn redis_client_args(s: &Scale, port: u16) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        REDIS_TESTS,
        "-n",
        &s.redis_requests.to_string(),
        "-r",
        &s.redis_keyspace.to_string(),
        "-d",
        &s.redis_value_bytes.to_string(),
        "-P",
        "16",
        "-c",
        "50",
        "--csv",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

/// Resets what a previous run left (database, objects, output), not timed.
fn before_run(r: &Ready) -> Result<()> {
    let rm = |name: &str| {
        let p = r.dir.join(name);
        if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else if p.exists() {
            std::fs::remove_file(&p)
        } else {
            Ok(())
        }
    };
    match r.app.kind {
        Kind::Sqlite => {
            rm("db.sqlite")?;
            rm("db.sqlite-journal")?;
        }
        Kind::Gcc => {
            rm("prog")?;
            for e in std::fs::read_dir(&r.dir)?.flatten() {
                if e.path().extension().is_some_and(|x| x == "o") {
                    std::fs::remove_file(e.path())?;
                }
            }
        }
        Kind::Sort | Kind::SortLocale => rm("sorted.txt")?,
        Kind::RocksDb => rm("db")?,
        Kind::Python | Kind::Redis => {}
    }
    Ok(())
}

/// Checks what the run produced and reads its details (not timed).
fn after_run(r: &Ready, stdout: &str, s: &Scale) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    match r.app.kind {
        Kind::Python => {
            let f = output::check_line(stdout, "python-ok", ' ')?;
            if f.len() != 5 || f[0] != s.python_records.to_string() {
                bail!("unexpected python-ok line: {f:?}");
            }
            m.insert("distinct_names".into(), json!(f[1].parse::<u64>().ok()));
            m.insert("json_bytes".into(), json!(f[2].parse::<u64>().ok()));
            m.insert("pickle_bytes".into(), json!(f[3].parse::<u64>().ok()));
            m.insert("digest".into(), json!(f[4]));
        }
        Kind::Sqlite => {
            let f = output::check_line(stdout, "sqlite-ok", '|')?;
            m.insert("rows_left".into(), json!(f[0].parse::<u64>().ok()));
            m.insert("total_v".into(), json!(f.get(1)));
            m.insert("output_lines".into(), json!(stdout.lines().count()));
        }
        Kind::Gcc => {
            let prog = r.dir.join("prog");
            let out = Command::new(&prog)
                .env_remove("LD_PRELOAD")
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("the build left no runnable {}", prog.display()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let f = output::check_line(&text, "gcc-ok", ' ')?;
            m.insert("program_output".into(), json!(f[0]));
        }
        Kind::Sort | Kind::SortLocale => {
            let out = r.dir.join("sorted.txt");
            let len = std::fs::metadata(&out)
                .with_context(|| format!("sort wrote no {}", out.display()))?
                .len();
            if len != r.input_bytes {
                bail!("sorted output has {len} bytes, the input {}", r.input_bytes);
            }
            m.insert("output_bytes".into(), json!(len));
            let _ = std::fs::remove_file(&out);
        }
        Kind::RocksDb => {
            let b = output::parse_db_bench(stdout);
            for name in ["fillrandom", "readrandom"] {
                let Some((us, ops)) = b.get(name) else {
                    bail!(
                        "no `{name} :` line in db_bench's output: {}",
                        tail_lines(stdout, 3)
                    );
                };
                m.insert(format!("{name}_ops_per_sec"), json!(ops));
                m.insert(format!("{name}_micros_per_op"), json!(us));
            }
        }
        Kind::Redis => unreachable!("the server run reads its own figures"),
    }
    Ok(m)
}

fn add_error(s: &mut RunSample, why: String) {
    s.error = Some(match s.error.take() {
        Some(prev) => format!("{why}; {prev}"),
        None => why,
    });
}

/// Sets the served verdict of a hakmem row from the stderr stats line, or (programs that
/// close their stderr first) from the binding probe.
fn served(
    s: &mut RunSample,
    r: &Ready,
    alloc: &Allocator,
    stderr: &str,
    probe: Option<&Result<(), String>>,
) {
    if !alloc.is_hakmem {
        return;
    }
    let verdict = if r.app.stats_on_stderr() {
        s.hakmem_stats = parse::parse_hakmem_stats(stderr);
        parse::served_by_hakmem(s.hakmem_stats.as_ref())
    } else {
        probe
            .cloned()
            .unwrap_or_else(|| Err("no binding probe was run".into()))
    };
    match verdict {
        Ok(()) => s.served_by_hakmem = Some(true),
        Err(why) => {
            s.served_by_hakmem = Some(false);
            add_error(s, format!("NOT SERVED BY HAKMEM: {why}"));
        }
    }
}

/// Whether `program`'s own `malloc` binds to `preload` (`LD_DEBUG=bindings`, eager binding,
/// `program --version`).
fn binding_probe(
    program: &Path,
    env: &BTreeMap<String, String>,
    preload: &Path,
) -> Result<(), String> {
    let mut env = env.clone();
    env.insert("LD_DEBUG".into(), "bindings".into());
    env.insert("LD_BIND_NOW".into(), "1".into());
    let out = run_child(
        program,
        &["--version".into()],
        &env,
        Duration::from_secs(60),
    )
    .map_err(|e| format!("binding probe: {e:#}"))?;
    let target =
        output::malloc_binding(&out.stderr, &program.display().to_string()).ok_or_else(|| {
            "binding probe: no `malloc` binding of the program in LD_DEBUG output".to_string()
        })?;
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canon(Path::new(&target)) == canon(preload) {
        Ok(())
    } else {
        Err(format!(
            "binding probe: {}'s malloc binds to {target}, not {}",
            program.display(),
            preload.display()
        ))
    }
}

/// One run of a program that is its own measured child.
fn run_program(
    r: &Ready,
    s: &Scale,
    alloc: &Allocator,
    env: &BTreeMap<String, String>,
    timeout: Duration,
    probe: Option<&Result<(), String>>,
) -> RunSample {
    let mut sample = RunSample::default();
    if let Err(e) = before_run(r) {
        sample.error = Some(format!("cannot reset before the run: {e:#}"));
        return sample;
    }
    let (prog, args) = command(r, s, 0);
    let out = match run_child(&prog, &args, env, timeout) {
        Ok(o) => o,
        Err(e) => {
            sample.error = Some(format!("{e:#}"));
            return sample;
        }
    };
    sample.peak_rss_kb = Some(out.maxrss_kb);
    sample.page_faults = Some(out.faults);
    sample.cpu_s = Some(out.cpu_s);
    sample.wall_s = Some(out.wall_s);
    served(&mut sample, r, alloc, &out.stderr, probe);
    if !out.success() {
        add_error(&mut sample, out.describe_failure());
        return sample;
    }
    match after_run(r, &out.stdout, s) {
        Ok(d) => {
            sample.value = Some(out.wall_s);
            sample.detail = Some(d);
        }
        Err(e) => add_error(&mut sample, format!("{e:#}")),
    }
    sample
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Waits until the server answers `PING` with `+PONG`.
fn wait_for_pong(port: u16, child: &mut Child, limit: Duration) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(st) = child.try_wait()? {
            bail!("redis-server exited at start ({st})");
        }
        if let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 16];
            if c.write_all(b"PING\r\n").is_ok()
                && let Ok(n) = c.read(&mut buf)
                && buf[..n].starts_with(b"+PONG")
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("redis-server did not answer PING on port {port} within {limit:?}")
}

/// SIGTERM, then SIGKILL after `grace`; returns the exit status.
fn stop(child: &mut Child, grace: Duration) -> Result<std::process::ExitStatus> {
    if let Some(st) = child.try_wait()? {
        bail!("redis-server had already exited ({st})");
    }
    // SAFETY: plain syscall on our own child, not yet reaped (try_wait said it runs).
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let st = child.wait()?;
    bail!("redis-server did not stop on SIGTERM within {grace:?} (killed: {st})")
}

/// One redis run: the server under the row's preload, redis-benchmark against it.
fn run_redis(
    r: &Ready,
    s: &Scale,
    alloc: &Allocator,
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> RunSample {
    let mut sample = RunSample::default();
    let res = (|| -> Result<()> {
        let port = free_port()?;
        let (server, args) = command(r, s, port);
        let log = r.dir.join("server.log");
        let err = r.dir.join("server.err");
        let mut child = Command::new(&server)
            .args(&args)
            .env_remove("LD_PRELOAD")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::create(&err)?)
            .spawn()
            .with_context(|| format!("cannot start {}", server.display()))?;
        let pid = child.id();
        let read_err = || std::fs::read_to_string(&err).unwrap_or_default();
        if let Err(e) = wait_for_pong(port, &mut child, Duration::from_secs(30)) {
            let _ = child.kill();
            let _ = child.wait();
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "{e:#}; log: {}; stderr: {}",
                tail_lines(&log_text, 3),
                tail_lines(&read_err(), 3)
            );
        }
        let client = run_child(
            &r.progs["redis-benchmark"],
            &redis_client_args(s, port),
            &BTreeMap::new(),
            timeout,
        );
        // The server's own counters, while it still runs.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| output::parse_proc_stat(&t));
        let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|t| output::parse_vmhwm_kb(&t));
        let stopped = stop(&mut child, Duration::from_secs(30));
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        if let Some(st) = stat {
            sample.cpu_s = Some((st.utime_ticks + st.stime_ticks) as f64 / ticks);
            sample.page_faults = Some((st.minflt + st.majflt) as f64);
        }
        sample.peak_rss_kb = hwm;
        served(&mut sample, r, alloc, &read_err(), None);
        let st = stopped?;
        let client = client?;
        sample.wall_s = Some(client.wall_s);
        if !client.success() {
            bail!("redis-benchmark: {}", client.describe_failure());
        }
        if !st.success() {
            bail!(
                "redis-server exited with {st}; stderr: {}",
                tail_lines(&read_err(), 3)
            );
        }
        let tests = output::parse_redis_csv(&client.stdout);
        let expected = REDIS_TESTS.split(',').count();
        if tests.len() < expected {
            bail!(
                "redis-benchmark reported {} tests, expected {expected}: {}",
                tests.len(),
                tail_lines(&client.stdout, 3)
            );
        }
        let mut d = Map::new();
        for (name, rps) in &tests {
            d.insert(format!("{name} rps"), json!(rps));
        }
        d.insert("client_cpu_s".into(), json!(client.cpu_s));
        sample.detail = Some(d);
        sample.value = output::combined_rps(&tests);
        Ok(())
    })();
    if let Err(e) = res {
        add_error(&mut sample, format!("{e:#}"));
    }
    sample
}

/// Runs every ready app under every row, `runs` times. Repetition `i` of every app and
/// every row runs before repetition `i + 1`, so slow drift of the machine spreads over all
/// cells alike.
pub fn run(
    plan: &Plan,
    rows: &[Row],
    runs: usize,
    timeout: Duration,
    pb: &ProgressBar,
) -> Vec<CellRaw> {
    let s = &plan.scale;
    // Programs that close their stderr before hakmem's exit report: one binding probe per
    // hakmem row, before the runs.
    let mut probes: BTreeMap<(usize, usize), Result<(), String>> = BTreeMap::new();
    for (ai, r) in plan.apps.iter().enumerate() {
        if r.app.stats_on_stderr() {
            continue;
        }
        for (ri, (alloc, extra, _)) in rows.iter().enumerate() {
            if let (true, Some(pre)) = (alloc.is_hakmem, &alloc.preload) {
                let (prog, _) = command(r, s, 0);
                probes.insert(
                    (ai, ri),
                    binding_probe(&prog, &row_env(r, alloc, extra), pre),
                );
            }
        }
    }
    let mut samples = vec![vec![Vec::new(); rows.len()]; plan.apps.len()];
    for rep in 0..runs {
        for (ai, r) in plan.apps.iter().enumerate() {
            for (ri, (alloc, extra, name)) in rows.iter().enumerate() {
                pb.set_message(format!("run {}/{runs} · {} · {name}", rep + 1, r.app.name));
                let env = row_env(r, alloc, extra);
                let sample = if r.app.kind == Kind::Redis {
                    run_redis(r, s, alloc, &env, timeout)
                } else {
                    run_program(r, s, alloc, &env, timeout, probes.get(&(ai, ri)))
                };
                if let Some(e) = &sample.error {
                    say(
                        pb,
                        format!("!! {} / {name} run {}: {e}", r.app.name, rep + 1),
                    );
                }
                samples[ai][ri].push(sample);
                pb.inc(1);
            }
        }
    }
    let mut cells = Vec::new();
    for (ai, r) in plan.apps.iter().enumerate() {
        let (metric, higher) = r.app.metric();
        let mut line = format!("[app {}/{}] {:<12}", ai + 1, plan.apps.len(), r.app.name);
        for (ri, (alloc, extra, name)) in rows.iter().enumerate() {
            let (prog, args) = command(r, s, 0);
            let mut argv = vec![prog.display().to_string()];
            argv.extend(args);
            if r.app.kind == Kind::Redis {
                argv.push("|".into());
                argv.push(r.progs["redis-benchmark"].display().to_string());
                argv.extend(redis_client_args(s, 0));
            }
            let cell = CellRaw {
                workload: r.app.name.to_string(),
                allocator: name.clone(),
                is_hakmem: alloc.is_hakmem,
                threads: 1,
                metric: metric.to_string(),
                higher_is_better: higher,
                env: row_env(r, alloc, extra),
                args: argv,
                runs: std::mem::take(&mut samples[ai][ri]),
            };
            let vals: Vec<f64> = cell.runs.iter().filter_map(|x| x.value).collect();
            let cpu: Vec<f64> = cell.runs.iter().filter_map(|x| x.cpu_s).collect();
            let med = crate::stats::median(&vals)
                .map(|v| report::fmt_figure(v, metric))
                .unwrap_or_else(|| "FAILED".into());
            let cpu = crate::stats::median(&cpu)
                .map(|c| format!(" (cpu {c:.2} s)"))
                .unwrap_or_default();
            line.push_str(&format!("  {name}={med}{cpu}"));
            cells.push(cell);
        }
        say(pb, line);
    }
    cells
}

/// The configuration record's `real_programs` entry: seed, scale, and per app its programs,
/// versions, input, command and environment.
pub fn describe(plan: &Plan) -> Value {
    let mut apps = Map::new();
    for r in &plan.apps {
        let (prog, args) = command(r, &plan.scale, 0);
        let mut cmd = vec![prog.display().to_string()];
        cmd.extend(args);
        let programs: Map<String, Value> = r
            .progs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.display().to_string())))
            .collect();
        let (metric, higher) = r.app.metric();
        apps.insert(
            r.app.name.to_string(),
            json!({
                "about": r.app.about,
                "programs": programs,
                "version": r.version,
                "input": r.input,
                "input_bytes": r.input_bytes,
                "command": cmd,
                "env": app_env(r),
                "metric": metric,
                "higher_is_better": higher,
                "own_malloc": r.own_malloc.as_ref().map(|(lib, libc)| format!(
                    "links {lib}: the no-preload (glibc) row preloads {} in front of it", libc.display())),
                "served_proof": if r.app.stats_on_stderr() {
                    "hakmem-stats line on stderr at exit"
                } else {
                    "it closes stderr before exit: LD_DEBUG=bindings probe that its malloc binds to the preload"
                },
            }),
        );
    }
    json!({
        "seed": SEED,
        "scale": plan.scale,
        "scratch": plan.root.display().to_string(),
        "rss_floor_kb": plan.rss_floor_kb,
        "programs": apps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_table() {
        let names: BTreeSet<&str> = APPS.iter().map(|a| a.name).collect();
        assert_eq!(names.len(), APPS.len(), "app names are unique");
        for w in crate::bench::WORKLOADS {
            assert!(
                !names.contains(w.name) && !names.contains(w.args[0]),
                "{} is both a workload and an app",
                w.name
            );
        }
        assert_eq!(select(&[]).len(), APPS.len());
        let one = select(&["redis".into(), "larson".into()]);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].kind, Kind::Redis);
        assert_eq!(
            APPS.iter()
                .find(|a| a.kind == Kind::Redis)
                .unwrap()
                .metric(),
            ("requests_per_sec", true)
        );
        assert_eq!(APPS[0].metric(), ("wall_s", false));
        assert!(
            !APPS
                .iter()
                .find(|a| a.kind == Kind::Sort)
                .unwrap()
                .stats_on_stderr()
        );
    }

    #[test]
    fn scales() {
        let (q, f) = (Scale::new(true), Scale::new(false));
        assert!(q.sort_bytes < f.sort_bytes && q.python_records < f.python_records);
        assert!((40..=100).contains(&f.gcc_files));
        assert!((200 << 20..=500 << 20).contains(&f.sort_bytes));
        assert_eq!(f.sort_input_bytes(Kind::Sort), f.sort_bytes);
        assert!(f.sort_input_bytes(Kind::SortLocale) < f.sort_bytes);
        // The sort buffer holds the input and its line table: no temporary files.
        assert!(sort_buffer_mib(f.sort_bytes) << 20 >= 4 * f.sort_bytes);
        assert_eq!(sort_buffer_mib(q.sort_bytes), 256);
    }

    #[test]
    fn locale_names() {
        assert_eq!(locale_key("C.UTF-8"), locale_key("C.utf8"));
        assert_ne!(locale_key("C.UTF-8"), locale_key("C"));
    }

    fn ready(kind: Kind, own: Option<&str>) -> Ready {
        Ready {
            app: APPS.iter().find(|a| a.kind == kind).unwrap(),
            progs: BTreeMap::new(),
            dir: PathBuf::from("/tmp/x"),
            shared_input: None,
            input: String::new(),
            input_bytes: 0,
            version: String::new(),
            own_malloc: own.map(|l| ("libjemalloc.so.2".into(), PathBuf::from(l))),
            locale: None,
        }
    }

    #[test]
    fn no_preload_row_puts_libc_in_front_of_an_own_malloc() {
        let glibc = Allocator {
            name: "glibc".into(),
            preload: None,
            env: BTreeMap::new(),
            is_hakmem: false,
            version: String::new(),
            build: None,
        };
        let hakmem = Allocator {
            name: "hakmem".into(),
            preload: Some(PathBuf::from("/l/libhakmem.so")),
            ..glibc.clone()
        };
        let r = ready(Kind::Redis, Some("/lib/libc.so.6"));
        let none = BTreeMap::new();
        assert_eq!(row_env(&r, &glibc, &none)["LD_PRELOAD"], "/lib/libc.so.6");
        assert_eq!(row_env(&r, &hakmem, &none)["LD_PRELOAD"], "/l/libhakmem.so");
        let plain = ready(Kind::Sort, None);
        let e = row_env(&plain, &glibc, &none);
        assert!(!e.contains_key("LD_PRELOAD"));
        assert_eq!(e["LC_ALL"], "C");
    }

    #[test]
    fn redis_client_is_pipelined_on_a_fixed_key_space() {
        let a = redis_client_args(&Scale::new(true), 7001);
        let joined = a.join(" ");
        assert!(joined.contains("-p 7001"), "{joined}");
        assert!(
            joined.contains("-P 16") && joined.contains("-r 100000") && joined.contains("--csv")
        );
        let r = ready(Kind::Redis, None);
        let mut r = r;
        r.progs
            .insert("redis-server", PathBuf::from("/usr/bin/redis-server"));
        let (_, args) = command(&r, &Scale::new(true), 7001);
        let i = args.iter().position(|x| x == "--save").unwrap();
        assert_eq!(args[i + 1], "", "no snapshots");
        assert!(args.windows(2).any(|w| w == ["--appendonly", "no"]));
    }

    /// The python program runs to its check line on a small input (needs python3).
    #[test]
    fn python_script_runs() {
        let Some(py) = util::which("python3") else {
            eprintln!("SKIP python_script_runs: no python3");
            return;
        };
        let dir = std::env::temp_dir().join(format!("hakmem-apps-py-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("records.py");
        std::fs::write(&script, inputs::PYTHON_SCRIPT).unwrap();
        let run = || {
            Command::new(&py)
                .arg(&script)
                .args(["300", &SEED.to_string(), "2"])
                .env("PYTHONHASHSEED", "0")
                .output()
                .unwrap()
        };
        let (a, b) = (run(), run());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
        let out = String::from_utf8_lossy(&a.stdout).to_string();
        let f = output::check_line(&out, "python-ok", ' ').unwrap();
        assert_eq!(f[0], "300");
        assert_eq!(a.stdout, b.stdout, "same seed, same output");
    }

    /// The SQL script runs to its check line on a small input (needs sqlite3).
    #[test]
    fn sqlite_script_runs() {
        let Some(sq) = util::which("sqlite3") else {
            eprintln!("SKIP sqlite_script_runs: no sqlite3");
            return;
        };
        let mut sql = Vec::new();
        inputs::sqlite_script(SEED, 2000, 20, &mut sql).unwrap();
        let mut child = Command::new(sq)
            .args(["-batch", "-bail", ":memory:"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&sql).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let f = output::check_line(&text, "sqlite-ok", '|').unwrap();
        let left: u64 = f[0].parse().unwrap();
        assert!(left > 1500 && left < 2000, "some rows deleted: {left}");
    }
}
