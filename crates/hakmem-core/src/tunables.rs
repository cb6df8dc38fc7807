//! Settings a program may change while it runs (`hakmem_option_set`, `hakmem::set_option`):
//! each overrides the environment's value in every [`crate::config::get`] after the change.
//! Only settings that code reads at each use are here, so a change takes effect:
//! - the purge delay: at the next purge pass of every tier (and the BigCache's age limit, which
//!   the facade sets with it);
//! - the THP mode: for memory reserved from then on (what is mapped keeps its advice).

// Plain std atomics: a value read at each use, not a structure the loom models check.
use crate::config::{Config, Thp};
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Not set: the environment's value holds.
const UNSET: u64 = u64::MAX;
static PURGE_DELAY_MS: AtomicU64 = AtomicU64::new(UNSET);
static THP: AtomicU8 = AtomicU8::new(u8::MAX);

/// The largest purge delay, as for `HAKMEM_PURGE_DELAY_MS`.
pub const PURGE_DELAY_MAX_MS: u64 = 60_000;

/// Sets the purge delay; false (nothing changed) above [`PURGE_DELAY_MAX_MS`].
pub fn set_purge_delay_ms(ms: u64) -> bool {
    if ms > PURGE_DELAY_MAX_MS {
        return false;
    }
    PURGE_DELAY_MS.store(ms, Ordering::Relaxed);
    true
}

/// Sets the THP mode for memory reserved from now on.
pub fn set_thp(t: Thp) {
    THP.store(t as u8, Ordering::Relaxed);
}

/// Applies the settings changed so far to `c`.
pub fn apply(c: Config) -> Config {
    overlay(
        c,
        PURGE_DELAY_MS.load(Ordering::Relaxed),
        THP.load(Ordering::Relaxed),
    )
}

fn overlay(mut c: Config, ms: u64, thp: u8) -> Config {
    if ms != UNSET {
        c.purge_delay_ms = ms;
    }
    c.thp = match thp {
        x if x == Thp::Auto as u8 => Thp::Auto,
        x if x == Thp::Off as u8 => Thp::Off,
        x if x == Thp::On as u8 => Thp::On,
        _ => c.thp,
    };
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_replaces_what_was_set() {
        let d = Config::DEFAULT;
        assert_eq!(overlay(d, UNSET, u8::MAX), d, "nothing set");
        let c = overlay(d, 7, Thp::On as u8);
        assert_eq!((c.purge_delay_ms, c.thp), (7, Thp::On));
        assert_eq!(overlay(d, UNSET, Thp::Off as u8).thp, Thp::Off);
        // Out of range: refused, nothing stored.
        assert!(!set_purge_delay_ms(PURGE_DELAY_MAX_MS + 1));
        assert_eq!(PURGE_DELAY_MS.load(Ordering::Relaxed), UNSET);
    }
}
