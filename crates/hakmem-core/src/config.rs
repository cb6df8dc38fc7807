//! Configuration read from the environment at first use, without allocating (`getenv` only).
//!
//! A bad value produces one warning on stderr naming the variable and the value used instead;
//! the program runs on with the default.

// Plain std atomics: read-once configuration is not a structure the loom models check.
use core::ffi::CStr;
use core::sync::atomic::{AtomicU8, Ordering};

/// The effective configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `HAKMEM_STATS=1`: print the counters line on stderr at exit.
    pub stats: bool,
    /// `HAKMEM_VERBOSE=1`: print the effective configuration at start.
    pub verbose: bool,
}

impl Config {
    /// The defaults: the fast mode, silent.
    pub const DEFAULT: Config = Config {
        stats: false,
        verbose: false,
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

fn env_bool(name: &CStr, default: bool) -> bool {
    match getenv(name) {
        None => default,
        Some(v) => match parse_bool(v) {
            Some(b) => b,
            None => {
                warn_bad(name, v, if default { "1" } else { "0" });
                default
            }
        },
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
    Config {
        stats: env_bool(c"HAKMEM_STATS", false),
        verbose: env_bool(c"HAKMEM_VERBOSE", false),
    }
}

const UNREAD: u8 = 0;
const READING: u8 = 1;
const READ: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNREAD);
static FLAGS: AtomicU8 = AtomicU8::new(0);

/// The process configuration, read once (the first caller parses; a concurrent caller sees the
/// defaults until the parse is published, which only affects reporting switches).
pub fn get() -> Config {
    let mut state = STATE.load(Ordering::Acquire);
    if state == UNREAD
        && STATE
            .compare_exchange(UNREAD, READING, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
    {
        let c = from_env();
        FLAGS.store(c.stats as u8 | (c.verbose as u8) << 1, Ordering::Relaxed);
        STATE.store(READ, Ordering::Release);
        if c.verbose {
            crate::diag::print(format_args!(
                "config: stats={} verbose={}",
                c.stats, c.verbose
            ));
        }
        state = READ;
    }
    if state != READ {
        return Config::DEFAULT;
    }
    let f = FLAGS.load(Ordering::Relaxed);
    Config {
        stats: f & 1 != 0,
        verbose: f & 2 != 0,
    }
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
}
