//! Run-time options: read and changed while the program runs, as jemalloc's `mallctl` or
//! mimalloc's `mi_option_get/set` (C: `hakmem_option_get`, `hakmem_option_set`). Only settings
//! whose change takes effect are offered:
//!
//! | option (C name) | values | takes effect |
//! |---|---|---|
//! | [`Tunable::PurgeDelayMs`] (`purge_delay_ms`) | 0..=60000 ms | at the next purge pass of every tier; the BigCache's age limit (ten delays, unless `HAKMEM_FREE_POLICY=keep`) at once |
//! | [`Tunable::BigCacheBudget`] (`bigcache_budget`) | 0..=2^62 bytes | at once: a lower budget evicts down to it (the value is kept, and unused, while the BigCache is off: `HAKMEM_BIGCACHE=0`, `HAKMEM_MODE=minimal`, `HAKMEM_FREE_POLICY=dontneed`) |
//! | [`Tunable::Thp`] (`thp`) | 0 off, 1 auto, 2 on | for memory reserved from then on; what is mapped keeps its advice |
//!
//! Each starts from its environment variable (`HAKMEM_PURGE_DELAY_MS`, the BigCache's default
//! budget of 256 MiB, `HAKMEM_THP`).

use crate::{BIGCACHE, BIGCACHE_SET};
use hakmem_bigcache::BigCacheConfig;
use hakmem_core::config::{self, FreePolicy, Thp};
use hakmem_core::sync::Ordering;
use hakmem_core::tunables;

/// A run-time option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tunable {
    /// How long freed memory stays resident before the purge policy gives it back, in ms.
    PurgeDelayMs,
    /// The most bytes of freed direct mappings the BigCache keeps.
    BigCacheBudget,
    /// Transparent huge pages: 0 off, 1 auto (the dense tiers only), 2 on.
    Thp,
}

/// A value outside the option's range (C: `EINVAL`); nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

impl core::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("value out of the option's range")
    }
}

/// The largest BigCache budget accepted.
const BUDGET_MAX: i64 = 1 << 62;

impl Tunable {
    /// Every option.
    pub const ALL: [Tunable; 3] = [Tunable::PurgeDelayMs, Tunable::BigCacheBudget, Tunable::Thp];

    /// The option's C name.
    pub const fn name(self) -> &'static str {
        match self {
            Tunable::PurgeDelayMs => "purge_delay_ms",
            Tunable::BigCacheBudget => "bigcache_budget",
            Tunable::Thp => "thp",
        }
    }

    /// The option of a C name.
    pub fn from_name(name: &[u8]) -> Option<Tunable> {
        Tunable::ALL
            .into_iter()
            .find(|t| t.name().as_bytes() == name)
    }
}

/// The option's current value.
pub fn get_option(t: Tunable) -> i64 {
    match t {
        Tunable::PurgeDelayMs => config::get().purge_delay_ms as i64,
        Tunable::BigCacheBudget => BIGCACHE.config().budget_bytes as i64,
        Tunable::Thp => match config::get().thp {
            Thp::Off => 0,
            Thp::Auto => 1,
            Thp::On => 2,
        },
    }
}

/// Sets an option (see the module docs for when each takes effect).
pub fn set_option(t: Tunable, value: i64) -> Result<(), OutOfRange> {
    match t {
        Tunable::PurgeDelayMs => {
            let ms = u64::try_from(value).map_err(|_| OutOfRange)?;
            if !tunables::set_purge_delay_ms(ms) {
                return Err(OutOfRange);
            }
            // The BigCache's age limit follows the delay, as set up at its first use (which,
            // if still to come, reads the new delay).
            if BIGCACHE_SET.load(Ordering::Acquire) != 0
                && config::get().free_policy != FreePolicy::Keep
            {
                BIGCACHE.set_config(BigCacheConfig {
                    max_age_ms: ms.saturating_mul(10).max(1),
                    ..BIGCACHE.config()
                });
            }
        }
        Tunable::BigCacheBudget => {
            if !(0..=BUDGET_MAX).contains(&value) {
                return Err(OutOfRange);
            }
            BIGCACHE.set_config(BigCacheConfig {
                budget_bytes: value as usize,
                ..BIGCACHE.config()
            });
        }
        Tunable::Thp => tunables::set_thp(match value {
            0 => Thp::Off,
            1 => Thp::Auto,
            2 => Thp::On,
            _ => return Err(OutOfRange),
        }),
    }
    Ok(())
}
