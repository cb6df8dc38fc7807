//! Configuration read from the environment at first use, without allocating (`getenv` only).
//!
//! A bad value produces one warning on stderr naming the variable and the value used instead;
//! the program runs on with the default. Only slow paths read the configuration.
//!
//! | variable | values (default first) | effect |
//! |---|---|---|
//! | `HAKMEM_STATS` | `0`, `1` | print the counters line on stderr at exit |
//! | `HAKMEM_VERBOSE` | `0`, `1` | print the effective configuration at start |
//! | `HAKMEM_FREE_POLICY` | `adaptive`, `keep`, `free`, `dontneed` | what happens to freed memory (see [`FreePolicy`]) |
//! | `HAKMEM_PURGE_DELAY_MS` | `100`, 0..=60000 | how long freed memory stays resident for reuse |
//! | `HAKMEM_THP` | `auto`, `off`, `on` | transparent huge pages (see [`Thp`]) |
//! | `HAKMEM_BIGCACHE` | `1`, `0` | keep freed mappings ≥ 2 MiB for reuse |

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

/// The effective configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `HAKMEM_STATS=1`: print the counters line on stderr at exit.
    pub stats: bool,
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
}

impl Config {
    /// The defaults: the fast mode, silent.
    pub const DEFAULT: Config = Config {
        stats: false,
        verbose: false,
        free_policy: FreePolicy::Adaptive,
        purge_delay_ms: 100,
        thp: Thp::Auto,
        bigcache: true,
    };
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

/// Reads `name` with `parse`; on a bad value warns once (naming `shown`, the default as the
/// user would write it) and returns `default`.
fn env<T>(name: &CStr, parse: fn(&[u8]) -> Option<T>, default: T, shown: &str) -> T {
    match getenv(name) {
        None => default,
        Some(v) => parse(v).unwrap_or_else(|| {
            warn_bad(name, v, shown);
            default
        }),
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

/// Reads the configuration from the environment (each call re-reads; see [`get`]).
pub fn from_env() -> Config {
    let d = Config::DEFAULT;
    Config {
        stats: env(c"HAKMEM_STATS", parse_bool, d.stats, "0"),
        verbose: env(c"HAKMEM_VERBOSE", parse_bool, d.verbose, "0"),
        free_policy: env(
            c"HAKMEM_FREE_POLICY",
            parse_free_policy,
            d.free_policy,
            "adaptive",
        ),
        purge_delay_ms: env(c"HAKMEM_PURGE_DELAY_MS", parse_ms, d.purge_delay_ms, "100"),
        thp: env(c"HAKMEM_THP", parse_thp, d.thp, "auto"),
        bigcache: env(c"HAKMEM_BIGCACHE", parse_bool, d.bigcache, "1"),
    }
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
        if c.verbose {
            crate::diag::print(format_args!(
                "config: stats={} verbose={} free_policy={:?} purge_delay_ms={} thp={:?} bigcache={}",
                c.stats, c.verbose, c.free_policy, c.purge_delay_ms, c.thp, c.bigcache
            ));
        }
        state = READ;
    }
    if state != READ {
        return Config::DEFAULT;
    }
    // SAFETY: READ was published with Release after the single write (see `Slot`).
    unsafe { *CONFIG.0.get() }
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

    #[test]
    fn policies_thp_and_delays() {
        assert_eq!(parse_free_policy(b"Adaptive"), Some(FreePolicy::Adaptive));
        assert_eq!(parse_free_policy(b"dontneed"), Some(FreePolicy::DontNeed));
        assert_eq!(parse_free_policy(b"lazy"), None);
        assert_eq!(parse_thp(b"ON"), Some(Thp::On));
        assert_eq!(parse_thp(b"always"), None);
        assert_eq!(parse_ms(b"0"), Some(0));
        assert_eq!(parse_ms(b"60000"), Some(60_000));
        for bad in [&b""[..], b"60001", b"-1", b"1e3", b"100ms", b"999999"] {
            assert_eq!(parse_ms(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }
}
