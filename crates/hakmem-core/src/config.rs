//! Configuration read from the environment at first use, without allocating (`getenv` only).
//!
//! A bad value produces one warning on stderr naming the variable, the valid values or range and
//! the value used instead; the program runs on with the default. A `HAKMEM_*` variable that is
//! not one of [`VARIABLES`] (a misspelling) gets one warning naming the closest valid name. Only slow paths read the configuration (the tier
//! switches reach them as one byte, [`routes`]).
//!
//! `HAKMEM_MODE` picks the defaults of every feature; each `HAKMEM_<FEATURE>` variable overrides
//! its mode's value:
//!
//! | feature | minimal | fast | balanced (default) | learning | research |
//! |---|---|---|---|---|---|
//! | `HAKMEM_TINY_POOL`, `HAKMEM_POOL`, `HAKMEM_L25` | on | on | on | on | on |
//! | `HAKMEM_BIGCACHE` | off | on | on | on | on |
//! | `HAKMEM_BATCH_MADVISE` | off | on | on | on | on |
//! | `HAKMEM_FREE_POLICY` | (at once) | adaptive | adaptive | adaptive | adaptive |
//! | `HAKMEM_THP` | off | auto | auto | auto | on |
//! | `HAKMEM_SITE_RULES` | off | off | on | on | on |
//! | `HAKMEM_ELO` | off | off | on | on | on |
//! | `HAKMEM_EVO` | off | off | frozen | auto | auto |
//! | `HAKMEM_VERBOSE` | 0 | 0 | 0 | 0 | 1 |
//!
//! Other variables: `HAKMEM_STATS` (`0`/`1`/`json`: the report at exit; `HAKMEM_STATS_FILE`:
//! where, see the facade's `hakmem::report`), `HAKMEM_PURGE_DELAY_MS`
//! (`100`, 0..=60000), `HAKMEM_ELO_REPORT` (`0`/`1`: the learning leaderboard at exit),
//! `HAKMEM_ON_ERROR` (`abort`/`warn`: what a detected heap misuse does after its report),
//! `HAKMEM_SECURE` (`0`/`1`: the hardened mode),
//! `HAKMEM_GUARD_SAMPLE` (`0` = off; `N`: one allocation in `N` gets a guard-page block, see
//! [`crate::guard`]; the sampling is done by the slab engine's slow path),
//! `HAKMEM_PURGE_THREAD` (`auto`/`off`/`on`: the background purger, [`crate::purger`]).
//! `docs/CONFIGURATION.md` describes each.

// Plain std atomics: read-once configuration is not a structure the loom models check.
use core::cell::UnsafeCell;
use core::ffi::CStr;
use core::sync::atomic::{AtomicU8, Ordering};

/// What becomes of memory no block uses any more (empty slabs, cached mappings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreePolicy {
    /// Kept resident for reuse for the purge delay ("hot"); then `MADV_FREE` ("warm": the
    /// kernel takes the pages back under memory pressure, reuse costs nothing otherwise); after
    /// four delays `MADV_DONTNEED` ("cold": the pages go back now and RSS falls).
    Adaptive,
    /// Never given back while the process lives (fastest reuse, highest RSS).
    Keep,
    /// `MADV_FREE` after the purge delay.
    Free,
    /// `MADV_DONTNEED` at once, no delay (lowest RSS, most page faults).
    DontNeed,
}

/// Transparent huge pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thp {
    /// Ask for huge pages (`MADV_HUGEPAGE`) only for 2 MiB-aligned regions likely to stay dense:
    /// direct mappings and L2.5 slabs.
    Auto,
    /// Forbid huge pages (`MADV_NOHUGEPAGE`) on all of hakmem's memory.
    Off,
    /// Ask for huge pages on all of hakmem's memory.
    On,
}

/// `HAKMEM_PURGE_THREAD`: when the background purger ([`crate::purger`]) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurgeThread {
    /// In a multi-threaded process from its first purgeable memory; in a single-threaded one
    /// only after a burst of frees (a thread would cost it glibc's single-threaded
    /// behaviour: `fork` from a signal handler, lock-free stdio and `shared_ptr` counts).
    Auto,
    /// Never: purges run on allocator slow paths and trims only.
    Off,
    /// From the first purgeable memory, in any process.
    On,
}

/// `HAKMEM_ON_ERROR`: what a detected heap misuse (double free, invalid free, free-list
/// corruption) does after its one-line report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Abort the process (`SIGABRT`), as glibc does.
    Abort,
    /// Leave the block alone and continue.
    Warn,
}

/// `HAKMEM_STATS`: the report at exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsReport {
    /// None (`0`, the default).
    Off,
    /// A table in human units, then the `hakmem-stats:` counters line (`1`).
    Table,
    /// One JSON object (`json`).
    Json,
}

/// Parses an `HAKMEM_STATS` value: a boolean switch, or `json`.
pub fn parse_stats(value: &[u8]) -> Option<StatsReport> {
    if value.eq_ignore_ascii_case(b"json") {
        return Some(StatsReport::Json);
    }
    parse_bool(value).map(|on| {
        if on {
            StatsReport::Table
        } else {
            StatsReport::Off
        }
    })
}

/// `HAKMEM_MODE`: the defaults of every feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The tiers alone: no BigCache, no batching (freed memory goes back at once), no THP, no
    /// learning.
    Minimal,
    /// The tiers, the BigCache, batched purging, THP where dense; the policy fixed.
    Fast,
    /// `fast` plus site profiling and the learned policy, frozen (the default).
    Balanced,
    /// `balanced` with the EVO lifecycle learning (LEARN → FROZEN → CANARY).
    Learning,
    /// `learning` with THP everywhere and the effective configuration printed at start.
    Research,
}

/// `HAKMEM_EVO`: the learning lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evo {
    /// LEARN, then FROZEN once a winner is stable, CANARY now and then, re-learn on a shift.
    Auto,
    /// Always LEARN (never freeze).
    Learn,
    /// The default policy, fixed: ratings are not updated, nothing is explored.
    Frozen,
    /// No lifecycle at all: the learner does not run.
    Off,
}

/// The effective configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `HAKMEM_MODE`.
    pub mode: Mode,
    /// `HAKMEM_TINY_POOL`: the Tiny tier serves sizes up to 1 KiB (else the pools do).
    pub tiny_pool: bool,
    /// `HAKMEM_POOL`: the L2 pool serves 1–32 KiB (else page runs do).
    pub pool: bool,
    /// `HAKMEM_L25`: the L2.5 pool serves 32–64 KiB (else page runs do).
    pub l25: bool,
    /// `HAKMEM_SITE_RULES`: profile call sites of large blocks and apply derived rules.
    pub site_rules: bool,
    /// `HAKMEM_ELO`: rate candidate policies from windowed measurements.
    pub elo: bool,
    /// `HAKMEM_EVO`.
    pub evo: Evo,
    /// `HAKMEM_BATCH_MADVISE`: purge freed memory in delayed batches (off: at once).
    pub batch_madvise: bool,
    /// `HAKMEM_ELO_REPORT`: print the learning leaderboard and lifecycle at exit.
    pub elo_report: bool,
    /// `HAKMEM_STATS`: the report at exit (`crate::report`).
    pub stats: StatsReport,
    /// `HAKMEM_VERBOSE=1`: print the effective configuration at start.
    pub verbose: bool,
    /// `HAKMEM_FREE_POLICY`.
    pub free_policy: FreePolicy,
    /// `HAKMEM_PURGE_DELAY_MS`.
    pub purge_delay_ms: u64,
    /// `HAKMEM_THP`.
    pub thp: Thp,
    /// `HAKMEM_BIGCACHE`.
    pub bigcache: bool,
    /// `HAKMEM_ON_ERROR`.
    pub on_error: OnError,
    /// `HAKMEM_SECURE=1`: every allocation and free takes the checked slow path, which zeroes
    /// freed blocks, holds them in a small quarantine before reuse, and carves fresh blocks
    /// in a random order.
    pub secure: bool,
    /// `HAKMEM_GUARD_SAMPLE`: one allocation in this many is served by the guard-page
    /// allocator ([`crate::guard`]); 0 (the default): none. The slab engine's slow path
    /// samples; this is only the rate.
    pub guard_sample: u32,
    /// `HAKMEM_PURGE_THREAD`: when a background thread runs the purge passes
    /// ([`crate::purger`]).
    pub purge_thread: PurgeThread,
}

impl Config {
    /// The defaults: the `balanced` mode, silent.
    pub const DEFAULT: Config = Config::of_mode(Mode::Balanced);

    /// The defaults of `mode`.
    pub const fn of_mode(mode: Mode) -> Config {
        let m = mode as u8;
        let (full, sites) = (m >= Mode::Fast as u8, m >= Mode::Balanced as u8);
        Config {
            mode,
            tiny_pool: true,
            pool: true,
            l25: true,
            site_rules: sites,
            elo: sites,
            evo: match mode {
                Mode::Minimal | Mode::Fast => Evo::Off,
                Mode::Balanced => Evo::Frozen,
                Mode::Learning | Mode::Research => Evo::Auto,
            },
            batch_madvise: full,
            elo_report: false,
            stats: StatsReport::Off,
            verbose: matches!(mode, Mode::Research),
            free_policy: FreePolicy::Adaptive,
            purge_delay_ms: 100,
            thp: match mode {
                Mode::Minimal => Thp::Off,
                Mode::Research => Thp::On,
                _ => Thp::Auto,
            },
            bigcache: full,
            on_error: OnError::Abort,
            secure: false,
            guard_sample: 0,
            purge_thread: PurgeThread::Auto,
        }
    }

    /// One allocation in how many the slab tiers serve from guard pages: `HAKMEM_GUARD_SAMPLE`,
    /// or 1000 under `HAKMEM_SECURE=1` when it is not set; 0: none.
    pub fn guard_rate(&self) -> u32 {
        match (self.guard_sample, self.secure) {
            (0, true) => 1000,
            (n, _) => n,
        }
    }

    /// Freed memory goes back to the OS as it is freed, not in delayed batches.
    pub fn eager_purge(&self) -> bool {
        self.free_policy == FreePolicy::DontNeed || !self.batch_madvise
    }

    /// Whether the learner explores and rates candidates (`HAKMEM_ELO` on and `HAKMEM_EVO`
    /// `auto` or `learn`); `frozen` runs the default policy with nothing measured.
    pub fn learning(&self) -> bool {
        self.elo && matches!(self.evo, Evo::Auto | Evo::Learn)
    }
}

/// Parses a mode name.
pub fn parse_mode(value: &[u8]) -> Option<Mode> {
    [
        (&b"minimal"[..], Mode::Minimal),
        (b"fast", Mode::Fast),
        (b"balanced", Mode::Balanced),
        (b"learning", Mode::Learning),
        (b"research", Mode::Research),
    ]
    .into_iter()
    .find(|(w, _)| value.eq_ignore_ascii_case(w))
    .map(|(_, m)| m)
}

/// Parses an EVO setting.
pub fn parse_evo(value: &[u8]) -> Option<Evo> {
    [
        (&b"auto"[..], Evo::Auto),
        (b"learn", Evo::Learn),
        (b"frozen", Evo::Frozen),
        (b"off", Evo::Off),
    ]
    .into_iter()
    .find(|(w, _)| value.eq_ignore_ascii_case(w))
    .map(|(_, e)| e)
}

/// Parses a boolean switch value: `1/on/true/yes` or `0/off/false/no` (case-insensitive).
pub fn parse_bool(value: &[u8]) -> Option<bool> {
    const ON: [&[u8]; 4] = [b"1", b"on", b"true", b"yes"];
    const OFF: [&[u8]; 4] = [b"0", b"off", b"false", b"no"];
    if ON.iter().any(|w| value.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if OFF.iter().any(|w| value.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

/// Parses a free policy name.
pub fn parse_free_policy(value: &[u8]) -> Option<FreePolicy> {
    [
        (&b"adaptive"[..], FreePolicy::Adaptive),
        (b"keep", FreePolicy::Keep),
        (b"free", FreePolicy::Free),
        (b"dontneed", FreePolicy::DontNeed),
    ]
    .into_iter()
    .find(|(w, _)| value.eq_ignore_ascii_case(w))
    .map(|(_, p)| p)
}

/// Parses an `HAKMEM_ON_ERROR` value.
pub fn parse_on_error(value: &[u8]) -> Option<OnError> {
    match value {
        b"abort" => Some(OnError::Abort),
        b"warn" => Some(OnError::Warn),
        _ => None,
    }
}

/// Parses an `HAKMEM_PURGE_THREAD` value.
pub fn parse_purge_thread(value: &[u8]) -> Option<PurgeThread> {
    [
        (&b"auto"[..], PurgeThread::Auto),
        (b"off", PurgeThread::Off),
        (b"0", PurgeThread::Off),
        (b"on", PurgeThread::On),
        (b"1", PurgeThread::On),
    ]
    .into_iter()
    .find(|(w, _)| value.eq_ignore_ascii_case(w))
    .map(|(_, t)| t)
}

/// Parses a THP setting.
pub fn parse_thp(value: &[u8]) -> Option<Thp> {
    [
        (&b"auto"[..], Thp::Auto),
        (b"off", Thp::Off),
        (b"on", Thp::On),
    ]
    .into_iter()
    .find(|(w, _)| value.eq_ignore_ascii_case(w))
    .map(|(_, t)| t)
}

/// Parses a decimal number of milliseconds up to 60,000.
pub fn parse_ms(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 5 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value.iter().fold(0u64, |n, d| n * 10 + (d - b'0') as u64);
    (n <= 60_000).then_some(n)
}

/// Parses a decimal `u32` (digits only, no sign, no blanks).
pub fn parse_u32(value: &[u8]) -> Option<u32> {
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value.iter().fold(0u64, |n, d| n * 10 + (d - b'0') as u64);
    u32::try_from(n).ok()
}

/// Every variable hakmem reads. A name in the environment that starts with `HAKMEM_` and is not
/// here gets one warning ([`warn_unknown`]), so a variable read anywhere must be listed.
pub const VARIABLES: [&str; 20] = [
    "HAKMEM_MODE",
    "HAKMEM_TINY_POOL",
    "HAKMEM_POOL",
    "HAKMEM_L25",
    "HAKMEM_SITE_RULES",
    "HAKMEM_ELO",
    "HAKMEM_EVO",
    "HAKMEM_BATCH_MADVISE",
    "HAKMEM_ELO_REPORT",
    "HAKMEM_STATS",
    "HAKMEM_VERBOSE",
    "HAKMEM_FREE_POLICY",
    "HAKMEM_PURGE_DELAY_MS",
    "HAKMEM_THP",
    "HAKMEM_BIGCACHE",
    "HAKMEM_ON_ERROR",
    "HAKMEM_SECURE",
    "HAKMEM_GUARD_SAMPLE",
    "HAKMEM_PURGE_THREAD",
    // Read by the exit report (`crate::report`), not by the parser.
    "HAKMEM_STATS_FILE",
];

/// The variables of [`VARIABLES`] that are read outside [`parse_with`].
#[cfg(test)]
const READ_ELSEWHERE: [&str; 1] = ["HAKMEM_STATS_FILE"];

/// The prefix of hakmem's variables.
const PREFIX: &[u8] = b"HAKMEM_";

/// The longest name [`edit_distance`] compares; longer names are compared on their first
/// `MAX_NAME` bytes.
const MAX_NAME: usize = 64;

/// The Levenshtein distance between `a` and `b` (ASCII case ignored), on two rows of a fixed
/// size on the stack: no allocation. Only the first 64 bytes (`MAX_NAME`) of each count.
pub fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let (a, b) = (&a[..a.len().min(MAX_NAME)], &b[..b.len().min(MAX_NAME)]);
    let mut prev = [0u8; MAX_NAME + 1];
    let mut cur = [0u8; MAX_NAME + 1];
    for (j, d) in prev.iter_mut().enumerate().take(b.len() + 1) {
        *d = j as u8;
    }
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i as u8 + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + u8::from(!ca.eq_ignore_ascii_case(&cb));
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        core::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()] as usize
}

/// The valid variable closest to `name` by [`edit_distance`] (the first of a tie).
pub fn closest_variable(name: &[u8]) -> &'static str {
    let mut best = (usize::MAX, VARIABLES[0]);
    for v in VARIABLES {
        let d = edit_distance(name, v.as_bytes());
        if d < best.0 {
            best = (d, v);
        }
    }
    best.1
}

/// Warns once for each distinct `HAKMEM_*` name in `names` that is not one of [`VARIABLES`],
/// through `warn` (the name, the closest valid one). `names` yields the environment's entries
/// (`NAME=value` or a bare name); it is walked again for each entry, so nothing is stored.
pub fn warn_unknown<'a, I>(names: impl Fn() -> I, warn: impl Fn(&[u8], &str))
where
    I: Iterator<Item = &'a [u8]>,
{
    let name_of = |entry: &'a [u8]| -> &'a [u8] {
        let end = entry.iter().position(|&c| c == b'=').unwrap_or(entry.len());
        &entry[..end]
    };
    for (i, entry) in names().enumerate() {
        let name = name_of(entry);
        if !name.starts_with(PREFIX) || VARIABLES.iter().any(|v| v.as_bytes() == name) {
            continue;
        }
        // The same name twice in the environment: only its first occurrence warns.
        if names().take(i).any(|e| name_of(e) == name) {
            continue;
        }
        warn(name, closest_variable(name));
    }
}

/// The entries of `environ` (`NAME=value`), read in place: no allocation.
fn environ_entries() -> impl Iterator<Item = &'static [u8]> {
    unsafe extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: `environ` is the C library's array of NUL-terminated strings ending in a null
    // pointer (or null itself); as with `getenv`, hakmem never changes it.
    let mut p = unsafe { environ };
    core::iter::from_fn(move || {
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` points into the null-terminated array (see above).
        let s = unsafe { *p };
        if s.is_null() {
            p = core::ptr::null();
            return None;
        }
        // SAFETY: the next slot exists: this one was not the terminating null.
        p = unsafe { p.add(1) };
        // SAFETY: each entry is a NUL-terminated string living in the environment.
        Some(unsafe { CStr::from_ptr(s) }.to_bytes())
    })
}

/// Prints the one warning an unknown `HAKMEM_*` variable gets.
pub fn warn_unknown_print(name: &[u8], closest: &str) {
    let shown = core::str::from_utf8(&name[..name.len().min(MAX_NAME)]).unwrap_or("<not UTF-8>");
    crate::diag::print(format_args!(
        "unknown variable {shown} (did you mean {closest}?)"
    ));
}

/// Reads an environment variable without allocating.
fn getenv(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv reads `environ` and returns a pointer into it (or null); it does not
    // allocate. hakmem never calls setenv, and the bytes are copied out immediately by callers.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: getenv returns a NUL-terminated string that lives in `environ`.
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

/// Prints the one warning a bad value gets: the variable, the value, the valid values or range
/// (`valid`) and the value used instead.
pub fn warn_bad(name: &CStr, value: &[u8], valid: &str, used: &str) {
    let shown = core::str::from_utf8(&value[..value.len().min(64)]).unwrap_or("<not UTF-8>");
    crate::diag::print(format_args!(
        "warning: {}={shown:?} is not a valid value (valid: {valid}); using {used}",
        name.to_str().unwrap_or("?")
    ));
}

/// The valid values of a boolean switch, as warnings show them.
const VALID_BOOL: &str = "1/on/true/yes or 0/off/false/no";

fn on_off(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

fn free_policy_name(p: FreePolicy) -> &'static str {
    match p {
        FreePolicy::Adaptive => "adaptive",
        FreePolicy::Keep => "keep",
        FreePolicy::Free => "free",
        FreePolicy::DontNeed => "dontneed",
    }
}

fn thp_name(t: Thp) -> &'static str {
    match t {
        Thp::Auto => "auto",
        Thp::Off => "off",
        Thp::On => "on",
    }
}

fn evo_name(e: Evo) -> &'static str {
    match e {
        Evo::Auto => "auto",
        Evo::Learn => "learn",
        Evo::Frozen => "frozen",
        Evo::Off => "off",
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Minimal => "minimal",
        Mode::Fast => "fast",
        Mode::Balanced => "balanced",
        Mode::Learning => "learning",
        Mode::Research => "research",
    }
}

/// Reads the configuration from `lookup` (a variable name → its value): the mode first, then
/// each override, with the mode's value as the default. A bad value gets one warning through
/// `warn` (variable, value, the valid values or range, the value used) and the default.
pub fn parse_with(
    lookup: impl Fn(&CStr) -> Option<&'static [u8]>,
    warn: impl Fn(&CStr, &[u8], &str, &str),
) -> Config {
    /// One variable: its name, parser and valid values (as the warning shows them).
    struct Var<T> {
        name: &'static CStr,
        parse: fn(&[u8]) -> Option<T>,
        valid: &'static str,
    }
    fn read<T>(
        lookup: &impl Fn(&CStr) -> Option<&'static [u8]>,
        warn: &impl Fn(&CStr, &[u8], &str, &str),
        var: Var<T>,
        default: T,
        shown: &str,
    ) -> T {
        match lookup(var.name) {
            None => default,
            Some(v) => (var.parse)(v).unwrap_or_else(|| {
                warn(var.name, v, var.valid, shown);
                default
            }),
        }
    }
    let (l, w) = (&lookup, &warn);
    let mode = read(
        l,
        w,
        Var {
            name: c"HAKMEM_MODE",
            parse: parse_mode,
            valid: "minimal, fast, balanced, learning, research",
        },
        Mode::Balanced,
        "balanced",
    );
    let d = Config::of_mode(mode);
    let flag = |name: &'static CStr, default: bool| {
        let var = Var {
            name,
            parse: parse_bool,
            valid: VALID_BOOL,
        };
        read(l, w, var, default, on_off(default))
    };
    Config {
        mode,
        tiny_pool: flag(c"HAKMEM_TINY_POOL", d.tiny_pool),
        pool: flag(c"HAKMEM_POOL", d.pool),
        l25: flag(c"HAKMEM_L25", d.l25),
        site_rules: flag(c"HAKMEM_SITE_RULES", d.site_rules),
        elo: flag(c"HAKMEM_ELO", d.elo),
        evo: read(
            l,
            w,
            Var {
                name: c"HAKMEM_EVO",
                parse: parse_evo,
                valid: "auto, learn, frozen, off",
            },
            d.evo,
            evo_name(d.evo),
        ),
        batch_madvise: flag(c"HAKMEM_BATCH_MADVISE", d.batch_madvise),
        elo_report: flag(c"HAKMEM_ELO_REPORT", d.elo_report),
        stats: read(
            l,
            w,
            Var {
                name: c"HAKMEM_STATS",
                parse: parse_stats,
                valid: "1/on/true/yes (a table), json, or 0/off/false/no",
            },
            d.stats,
            "0",
        ),
        verbose: flag(c"HAKMEM_VERBOSE", d.verbose),
        free_policy: read(
            l,
            w,
            Var {
                name: c"HAKMEM_FREE_POLICY",
                parse: parse_free_policy,
                valid: "adaptive, keep, free, dontneed",
            },
            d.free_policy,
            free_policy_name(d.free_policy),
        ),
        purge_delay_ms: read(
            l,
            w,
            Var {
                name: c"HAKMEM_PURGE_DELAY_MS",
                parse: parse_ms,
                valid: "a whole number of milliseconds, 0 to 60000",
            },
            d.purge_delay_ms,
            "100",
        ),
        thp: read(
            l,
            w,
            Var {
                name: c"HAKMEM_THP",
                parse: parse_thp,
                valid: "auto, off, on",
            },
            d.thp,
            thp_name(d.thp),
        ),
        bigcache: flag(c"HAKMEM_BIGCACHE", d.bigcache),
        on_error: read(
            l,
            w,
            Var {
                name: c"HAKMEM_ON_ERROR",
                parse: parse_on_error,
                valid: "abort, warn",
            },
            d.on_error,
            "abort",
        ),
        secure: flag(c"HAKMEM_SECURE", d.secure),
        guard_sample: read(
            l,
            w,
            Var {
                name: c"HAKMEM_GUARD_SAMPLE",
                parse: parse_u32,
                valid: "0 (off) or a whole number 1 to 4294967295",
            },
            d.guard_sample,
            "0",
        ),
        purge_thread: read(
            l,
            w,
            Var {
                name: c"HAKMEM_PURGE_THREAD",
                parse: parse_purge_thread,
                valid: "auto, off (0), on (1)",
            },
            d.purge_thread,
            "auto",
        ),
    }
}

/// Reads the configuration from the environment (each call re-reads and warns again; see
/// [`get`]), warning also for each unknown `HAKMEM_*` variable.
pub fn from_env() -> Config {
    let c = parse_with(getenv, warn_bad);
    warn_unknown(environ_entries, warn_unknown_print);
    c
}

/// Prints the effective configuration (`HAKMEM_VERBOSE=1`): a `hakmem-config:` line and the
/// `hakmem-features:` line (`name=on|off` for each feature; `cargo xtask bench --ablate` reads
/// it to know which features this build has).
pub fn print(c: &Config) {
    let oo = |b: bool| if b { "on" } else { "off" };
    crate::diag::print(format_args!(
        "hakmem-config: mode={} free_policy={} purge_delay_ms={} thp={} evo={} stats={} elo_report={} on_error={} secure={} guard_sample={}",
        mode_name(c.mode),
        free_policy_name(c.free_policy),
        c.purge_delay_ms,
        thp_name(c.thp),
        evo_name(c.evo),
        match c.stats {
            StatsReport::Off => "0",
            StatsReport::Table => "1",
            StatsReport::Json => "json",
        },
        on_off(c.elo_report),
        if c.on_error == OnError::Abort {
            "abort"
        } else {
            "warn"
        },
        on_off(c.secure),
        c.guard_sample,
    ));
    crate::diag::print(format_args!(
        "hakmem-features: tiny_pool={} pool={} l25={} bigcache={} site_rules={} elo={} evo={} batch_madvise={}",
        oo(c.tiny_pool),
        oo(c.pool),
        oo(c.l25),
        oo(c.bigcache),
        oo(c.site_rules),
        oo(c.elo),
        if c.evo == Evo::Off {
            "off"
        } else {
            evo_name(c.evo)
        },
        oo(c.batch_madvise),
    ));
}

/// Router bit: the Tiny tier is on.
pub const ROUTE_TINY: u8 = 1;
/// Router bit: the L2 pool is on.
pub const ROUTE_L2: u8 = 2;
/// Router bit: the L2.5 pool is on.
pub const ROUTE_L25: u8 = 4;
static ROUTES: AtomicU8 = AtomicU8::new(ROUTE_TINY | ROUTE_L2 | ROUTE_L25);

fn routes_of(c: &Config) -> u8 {
    (if c.tiny_pool { ROUTE_TINY } else { 0 })
        | (if c.pool { ROUTE_L2 } else { 0 })
        | (if c.l25 { ROUTE_L25 } else { 0 })
}

/// The tier switches as router bits (`ROUTE_*`): one Relaxed byte load, all on until the
/// configuration has been read.
#[inline(always)]
pub fn routes() -> u8 {
    ROUTES.load(Ordering::Relaxed)
}

const UNREAD: u8 = 0;
const READING: u8 = 1;
const READ: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNREAD);

struct Slot(UnsafeCell<Config>);
// SAFETY: written once by the thread that wins UNREAD → READING, before the Release store of
// READ; read only after an Acquire load sees READ.
unsafe impl Sync for Slot {}
static CONFIG: Slot = Slot(UnsafeCell::new(Config::DEFAULT));

/// The process configuration, read once (the first caller parses; a caller racing with it sees
/// the defaults until the parse is published).
pub fn get() -> Config {
    let mut state = STATE.load(Ordering::Acquire);
    if state == UNREAD
        && STATE
            .compare_exchange(UNREAD, READING, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
    {
        let c = from_env();
        // SAFETY: this thread alone writes, before publishing READ (see `Slot`).
        unsafe { *CONFIG.0.get() = c };
        STATE.store(READ, Ordering::Release);
        ROUTES.store(routes_of(&c), Ordering::Relaxed);
        if c.verbose {
            print(&c);
        }
        state = READ;
    }
    if state != READ {
        return crate::tunables::apply(Config::DEFAULT);
    }
    // SAFETY: READ was published with Release after the single write (see `Slot`).
    crate::tunables::apply(unsafe { *CONFIG.0.get() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for v in ["1", "on", "ON", "true", "Yes"] {
            assert_eq!(parse_bool(v.as_bytes()), Some(true), "{v}");
        }
        for v in ["0", "off", "False", "no"] {
            assert_eq!(parse_bool(v.as_bytes()), Some(false), "{v}");
        }
        for v in ["", "2", "maybe", "1 ", "onn"] {
            assert_eq!(parse_bool(v.as_bytes()), None, "{v}");
        }
    }

    /// Parses `vars` as the environment; returns the config and the warnings.
    fn parse_vars(vars: &[(&str, &str)]) -> (Config, std::vec::Vec<std::string::String>) {
        use std::string::ToString;
        let owned: std::vec::Vec<(std::string::String, &'static [u8])> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), &*std::boxed::Box::leak(v.as_bytes().into())))
            .collect();
        let warnings = core::cell::RefCell::new(std::vec::Vec::new());
        let c = parse_with(
            |name| {
                let name = name.to_str().unwrap();
                owned.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
            },
            |name, value, valid, used| {
                warnings.borrow_mut().push(std::format!(
                    "{}={} ({valid}) -> {used}",
                    name.to_str().unwrap(),
                    core::str::from_utf8(value).unwrap()
                ))
            },
        );
        (c, warnings.into_inner())
    }

    #[test]
    fn modes_set_the_feature_defaults() {
        let (c, w) = parse_vars(&[]);
        assert!(w.is_empty());
        assert_eq!(c, Config::DEFAULT);
        assert_eq!(c.mode, Mode::Balanced);
        assert!(c.bigcache && c.batch_madvise && c.site_rules && c.elo);
        assert_eq!(c.evo, Evo::Frozen);
        let (m, _) = parse_vars(&[("HAKMEM_MODE", "minimal")]);
        assert!(!m.bigcache && !m.batch_madvise && !m.site_rules && !m.elo);
        assert!(m.tiny_pool && m.pool && m.l25);
        assert_eq!((m.thp, m.evo), (Thp::Off, Evo::Off));
        assert!(m.eager_purge() && !m.learning());
        let (f, _) = parse_vars(&[("HAKMEM_MODE", "FAST")]);
        assert!(f.bigcache && f.batch_madvise && !f.elo && !f.eager_purge());
        let (l, _) = parse_vars(&[("HAKMEM_MODE", "learning")]);
        assert_eq!(l.evo, Evo::Auto);
        assert!(l.learning());
        let (r, _) = parse_vars(&[("HAKMEM_MODE", "research")]);
        assert_eq!(r.thp, Thp::On);
        assert!(r.verbose);
    }

    #[test]
    fn overrides_win_over_the_mode() {
        let (c, w) = parse_vars(&[
            ("HAKMEM_MODE", "minimal"),
            ("HAKMEM_BIGCACHE", "1"),
            ("HAKMEM_EVO", "learn"),
            ("HAKMEM_ELO", "on"),
            ("HAKMEM_TINY_POOL", "0"),
            ("HAKMEM_THP", "auto"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert!(c.bigcache && c.elo && !c.tiny_pool);
        assert_eq!((c.evo, c.thp), (Evo::Learn, Thp::Auto));
        assert_eq!(routes_of(&c), ROUTE_L2 | ROUTE_L25);
    }

    #[test]
    fn every_bad_value_warns_once_and_keeps_the_default() {
        const B: &str = VALID_BOOL;
        let vars = [
            (
                "HAKMEM_MODE",
                "turbo",
                "minimal, fast, balanced, learning, research",
                "balanced",
            ),
            ("HAKMEM_TINY_POOL", "2", B, "1"),
            ("HAKMEM_POOL", "yes please", B, "1"),
            ("HAKMEM_L25", "", B, "1"),
            ("HAKMEM_BIGCACHE", "maybe", B, "1"),
            ("HAKMEM_SITE_RULES", "-1", B, "1"),
            ("HAKMEM_ELO", "onn", B, "1"),
            (
                "HAKMEM_EVO",
                "sometimes",
                "auto, learn, frozen, off",
                "frozen",
            ),
            ("HAKMEM_BATCH_MADVISE", "x", B, "1"),
            ("HAKMEM_ELO_REPORT", "10", B, "0"),
            (
                "HAKMEM_STATS",
                "true!",
                "1/on/true/yes (a table), json, or 0/off/false/no",
                "0",
            ),
            ("HAKMEM_VERBOSE", "loud", B, "0"),
            (
                "HAKMEM_FREE_POLICY",
                "lazy",
                "adaptive, keep, free, dontneed",
                "adaptive",
            ),
            (
                "HAKMEM_PURGE_DELAY_MS",
                "60001",
                "a whole number of milliseconds, 0 to 60000",
                "100",
            ),
            ("HAKMEM_THP", "always", "auto, off, on", "auto"),
            ("HAKMEM_ON_ERROR", "ignore", "abort, warn", "abort"),
            ("HAKMEM_SECURE", "2", B, "0"),
            (
                "HAKMEM_GUARD_SAMPLE",
                "4294967296",
                "0 (off) or a whole number 1 to 4294967295",
                "0",
            ),
            (
                "HAKMEM_PURGE_THREAD",
                "maybe",
                "auto, off (0), on (1)",
                "auto",
            ),
        ];
        // Every variable the parser reads is covered.
        assert_eq!(vars.len(), VARIABLES.len() - READ_ELSEWHERE.len());
        for (name, bad, valid, used) in vars {
            let (c, w) = parse_vars(&[(name, bad)]);
            assert_eq!(c, Config::DEFAULT, "{name}={bad:?} changed the config");
            assert_eq!(
                w,
                [std::format!("{name}={bad} ({valid}) -> {used}")],
                "{name}"
            );
        }
        // All at once: one warning each.
        let all: std::vec::Vec<(&str, &str)> = vars.iter().map(|(n, b, ..)| (*n, *b)).collect();
        let (c, w) = parse_vars(&all);
        assert_eq!(c, Config::DEFAULT);
        assert_eq!(w.len(), vars.len());
    }

    #[test]
    fn policies_thp_and_delays() {
        assert_eq!(parse_free_policy(b"Adaptive"), Some(FreePolicy::Adaptive));
        assert_eq!(parse_free_policy(b"dontneed"), Some(FreePolicy::DontNeed));
        assert_eq!(parse_free_policy(b"lazy"), None);
        assert_eq!(parse_thp(b"ON"), Some(Thp::On));
        assert_eq!(parse_stats(b"JSON"), Some(StatsReport::Json));
        assert_eq!(parse_stats(b"1"), Some(StatsReport::Table));
        assert_eq!(parse_stats(b"off"), Some(StatsReport::Off));
        assert_eq!(parse_stats(b"yaml"), None);
        assert_eq!(parse_thp(b"always"), None);
        assert_eq!(parse_ms(b"0"), Some(0));
        assert_eq!(parse_ms(b"60000"), Some(60_000));
        for bad in [&b""[..], b"60001", b"-1", b"1e3", b"100ms", b"999999"] {
            assert_eq!(parse_ms(bad), None, "{:?}", core::str::from_utf8(bad));
        }
        assert_eq!(parse_u32(b"0"), Some(0));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        for bad in [&b""[..], b"4294967296", b"-1", b" 5", b"1k", b"99999999999"] {
            assert_eq!(parse_u32(bad), None, "{:?}", core::str::from_utf8(bad));
        }
        let (c, w) = parse_vars(&[("HAKMEM_GUARD_SAMPLE", "1000")]);
        assert!(w.is_empty());
        assert_eq!(c.guard_sample, 1000);
    }

    #[test]
    fn variables_are_the_names_parse_reads() {
        let asked = core::cell::RefCell::new(std::vec::Vec::new());
        parse_with(
            |name| {
                asked
                    .borrow_mut()
                    .push(std::string::String::from(name.to_str().unwrap()));
                None
            },
            |_, _, _, _| panic!("no value, no warning"),
        );
        let mut asked = asked.into_inner();
        let mut known: std::vec::Vec<_> = VARIABLES
            .iter()
            .filter(|v| !READ_ELSEWHERE.contains(v))
            .map(|v| std::string::String::from(*v))
            .collect();
        asked.sort();
        known.sort();
        assert_eq!(asked, known);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance(b"", b""), 0);
        assert_eq!(edit_distance(b"abc", b""), 3);
        assert_eq!(edit_distance(b"", b"abcd"), 4);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
        assert_eq!(edit_distance(b"HAKMEM_STAT", b"HAKMEM_STATS"), 1);
        assert_eq!(edit_distance(b"hakmem_stats", b"HAKMEM_STATS"), 0);
        assert_eq!(edit_distance(b"HAKMEM_TPH", b"HAKMEM_THP"), 2);
        // Longer than MAX_NAME: the first MAX_NAME bytes count, nothing overflows.
        let long = [b'A'; 300];
        assert_eq!(edit_distance(&long, b"B"), MAX_NAME);
        assert_eq!(edit_distance(&long, &long[..100]), 0);
    }

    #[test]
    fn closest_names() {
        for (typo, want) in [
            ("HAKMEM_STAT", "HAKMEM_STATS"),
            ("HAKMEM_STATSS", "HAKMEM_STATS"),
            ("HAKMEM_stats", "HAKMEM_STATS"),
            ("HAKMEM_MOD", "HAKMEM_MODE"),
            ("HAKMEM_PURGE_DELAY", "HAKMEM_PURGE_DELAY_MS"),
            ("HAKMEM_BIG_CACHE", "HAKMEM_BIGCACHE"),
            ("HAKMEM_GUARD_SAMPLES", "HAKMEM_GUARD_SAMPLE"),
            ("HAKMEM_ONERROR", "HAKMEM_ON_ERROR"),
            ("HAKMEM_SECURITY", "HAKMEM_SECURE"),
            ("HAKMEM_TINYPOOL", "HAKMEM_TINY_POOL"),
            ("HAKMEM_ELO_REPROT", "HAKMEM_ELO_REPORT"),
        ] {
            assert_eq!(closest_variable(typo.as_bytes()), want, "{typo}");
        }
    }

    /// Runs [`warn_unknown`] on `env` (entries `NAME=value`); returns the warnings.
    fn unknown(env: &[&'static str]) -> std::vec::Vec<std::string::String> {
        let warnings = core::cell::RefCell::new(std::vec::Vec::new());
        warn_unknown(
            || env.iter().map(|e| e.as_bytes()),
            |name, closest| {
                warnings.borrow_mut().push(std::format!(
                    "{} -> {closest}",
                    core::str::from_utf8(name).unwrap()
                ))
            },
        );
        warnings.into_inner()
    }

    #[test]
    fn unknown_variables_warn_once_with_the_closest_name() {
        // Known names, other programs' variables and names merely containing HAKMEM: silent.
        let quiet: std::vec::Vec<&'static str> = VARIABLES
            .iter()
            .map(|v| &*std::boxed::Box::leak(std::format!("{v}=1").into_boxed_str()))
            .chain([
                "PATH=/bin",
                "MY_HAKMEM_STATS=1",
                "HAKMEM=1",
                "hakmem_stats=1",
                "LD_PRELOAD=x",
            ])
            .collect();
        assert!(unknown(&quiet).is_empty(), "{:?}", unknown(&quiet));
        assert_eq!(
            unknown(&[
                "PATH=/bin",
                "HAKMEM_STAT=1",
                "HAKMEM_STATS=1",
                "HAKMEM_MOD=fast"
            ]),
            ["HAKMEM_STAT -> HAKMEM_STATS", "HAKMEM_MOD -> HAKMEM_MODE"]
        );
        // A name twice in the environment, with or without a value: one warning.
        assert_eq!(
            unknown(&["HAKMEM_TPH=on", "HAKMEM_TPH=off", "HAKMEM_TPH", "HAKMEM_="]),
            ["HAKMEM_TPH -> HAKMEM_THP", "HAKMEM_ -> HAKMEM_L25"]
        );
    }
}
