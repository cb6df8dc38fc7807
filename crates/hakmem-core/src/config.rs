//! Configuration read from the environment at first use, without allocating (`getenv` only).
//!
//! A bad value produces one warning on stderr naming the variable and the value used instead;
//! the program runs on with the default. Only slow paths read the configuration (the tier
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
//! where, see [`crate::report`]), `HAKMEM_PURGE_DELAY_MS`
//! (`100`, 0..=60000), `HAKMEM_ELO_REPORT` (`0`/`1`: the learning leaderboard at exit),
//! `HAKMEM_ON_ERROR` (`abort`/`warn`: what a detected heap misuse does after its report),
//! `HAKMEM_SECURE` (`0`/`1`: the hardened mode),
//! `HAKMEM_GUARD_SAMPLE` (`0` = off; `N`: one allocation in `N` gets a guard-page block, see
//! [`crate::guard`]; the sampling is done by the slab engine's slow path).
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

/// Prints the one warning a bad value gets.
pub fn warn_bad(name: &CStr, value: &[u8], used: &str) {
    let shown = core::str::from_utf8(&value[..value.len().min(64)]).unwrap_or("<not UTF-8>");
    crate::diag::print(format_args!(
        "warning: {}={shown:?} is not a valid value; using {used}",
        name.to_str().unwrap_or("?")
    ));
}

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
/// `warn` (variable, value, the value used) and the default.
pub fn parse_with(
    lookup: impl Fn(&CStr) -> Option<&'static [u8]>,
    warn: impl Fn(&CStr, &[u8], &str),
) -> Config {
    fn read<T>(
        lookup: &impl Fn(&CStr) -> Option<&'static [u8]>,
        warn: &impl Fn(&CStr, &[u8], &str),
        name: &CStr,
        parse: fn(&[u8]) -> Option<T>,
        default: T,
        shown: &str,
    ) -> T {
        match lookup(name) {
            None => default,
            Some(v) => parse(v).unwrap_or_else(|| {
                warn(name, v, shown);
                default
            }),
        }
    }
    let (l, w) = (&lookup, &warn);
    let mode = read(l, w, c"HAKMEM_MODE", parse_mode, Mode::Balanced, "balanced");
    let d = Config::of_mode(mode);
    let flag = |name: &CStr, default: bool| read(l, w, name, parse_bool, default, on_off(default));
    Config {
        mode,
        tiny_pool: flag(c"HAKMEM_TINY_POOL", d.tiny_pool),
        pool: flag(c"HAKMEM_POOL", d.pool),
        l25: flag(c"HAKMEM_L25", d.l25),
        site_rules: flag(c"HAKMEM_SITE_RULES", d.site_rules),
        elo: flag(c"HAKMEM_ELO", d.elo),
        evo: read(l, w, c"HAKMEM_EVO", parse_evo, d.evo, evo_name(d.evo)),
        batch_madvise: flag(c"HAKMEM_BATCH_MADVISE", d.batch_madvise),
        elo_report: flag(c"HAKMEM_ELO_REPORT", d.elo_report),
        stats: read(l, w, c"HAKMEM_STATS", parse_stats, d.stats, "0"),
        verbose: flag(c"HAKMEM_VERBOSE", d.verbose),
        free_policy: read(
            l,
            w,
            c"HAKMEM_FREE_POLICY",
            parse_free_policy,
            d.free_policy,
            free_policy_name(d.free_policy),
        ),
        purge_delay_ms: read(
            l,
            w,
            c"HAKMEM_PURGE_DELAY_MS",
            parse_ms,
            d.purge_delay_ms,
            "100",
        ),
        thp: read(l, w, c"HAKMEM_THP", parse_thp, d.thp, thp_name(d.thp)),
        bigcache: flag(c"HAKMEM_BIGCACHE", d.bigcache),
        on_error: read(
            l,
            w,
            c"HAKMEM_ON_ERROR",
            parse_on_error,
            d.on_error,
            "abort",
        ),
        secure: flag(c"HAKMEM_SECURE", d.secure),
        guard_sample: read(l, w, c"HAKMEM_GUARD_SAMPLE", parse_u32, d.guard_sample, "0"),
    }
}

/// Reads the configuration from the environment (each call re-reads; see [`get`]).
pub fn from_env() -> Config {
    parse_with(getenv, warn_bad)
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
            |name, value, used| {
                warnings.borrow_mut().push(std::format!(
                    "{}={} -> {used}",
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
        let vars = [
            ("HAKMEM_MODE", "turbo", "balanced"),
            ("HAKMEM_TINY_POOL", "2", "1"),
            ("HAKMEM_POOL", "yes please", "1"),
            ("HAKMEM_L25", "", "1"),
            ("HAKMEM_BIGCACHE", "maybe", "1"),
            ("HAKMEM_SITE_RULES", "-1", "1"),
            ("HAKMEM_ELO", "onn", "1"),
            ("HAKMEM_EVO", "sometimes", "frozen"),
            ("HAKMEM_BATCH_MADVISE", "x", "1"),
            ("HAKMEM_ELO_REPORT", "10", "0"),
            ("HAKMEM_STATS", "true!", "0"),
            ("HAKMEM_VERBOSE", "loud", "0"),
            ("HAKMEM_FREE_POLICY", "lazy", "adaptive"),
            ("HAKMEM_PURGE_DELAY_MS", "1e3", "100"),
            ("HAKMEM_THP", "always", "auto"),
            ("HAKMEM_GUARD_SAMPLE", "1/100", "0"),
        ];
        for (name, bad, used) in vars {
            let (c, w) = parse_vars(&[(name, bad)]);
            assert_eq!(c, Config::DEFAULT, "{name}={bad:?} changed the config");
            assert_eq!(w, [std::format!("{name}={bad} -> {used}")], "{name}");
        }
        // All at once: one warning each.
        let all: std::vec::Vec<(&str, &str)> = vars.iter().map(|(n, b, _)| (*n, *b)).collect();
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
}
