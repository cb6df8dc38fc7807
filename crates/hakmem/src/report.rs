//! The report `HAKMEM_STATS` prints at exit, and the formats of [`Stats`] it shares with the
//! query functions (`hakmem_stats_json`, `hakmem::stats`): a table in human units
//! ([`Table`]), one JSON object ([`Json`]), and the `hakmem-stats:` counters line (`Stats`'s
//! `Display`). Everything is formatted into stack buffers and written with `write(2)`: no
//! allocation, no lock, no `std` I/O, so the report can run in any exit path.
//!
//! Where it goes: the file named by `HAKMEM_STATS_FILE` (opened `O_APPEND | O_CREAT`, so
//! several processes can share one), else standard error. A program that closes its standard
//! error before it exits (GNU `sort`, `cat` and the other coreutils do, at `atexit`) still gets
//! its report: [`init`], run when the library loads, keeps a duplicate of fd 2 on a high
//! descriptor (close-on-exec), and the report goes there when fd 2 is closed, provided it
//! still is the same open file.
//!
//! The table (every byte figure in B/KiB/MiB/GiB/TiB):
//!
//! ```text
//! hakmem: stats of pid 4242
//!   in use       10.2 MiB   resident     13.9 MiB
//!   mapped       28.0 MiB   peak mapped  28.0 MiB   purged        0 B
//!   tier           in use     blocks    slabs  remote frees     purged
//!   tiny          1.2 MiB      40000       25            12        0 B
//!   L2            8.0 MiB       1024        8             0        0 B
//!   L2.5          1.0 MiB         10        1             0        0 B
//!   runs        128.0 KiB          2        -             -        0 B
//!   large         4.0 MiB          1        -             -        0 B
//!   BigCache      8.0 MiB cached, 1 hits, 2 misses
//!   faults 0, reclaims 0, guarded 0
//! hakmem-stats: tiny.carved=... (the counters line, for scripts)
//! ```
//!
//! `in use` is what the program holds (blocks allocated and not freed, by their size class;
//! for runs and large mappings their pages); `blocks` the blocks in use (for runs and large,
//! allocations minus frees); `slabs` the slabs formatted now; `remote frees` the frees by
//! another thread than the owner, collected so far; `purged` the bytes given back to the OS
//! while staying mapped, so far.
//!
//! The JSON object (`HAKMEM_STATS=json`, `hakmem_stats_json`): byte counts in bytes.
//!
//! | key | meaning |
//! |---|---|
//! | `pid` | process id |
//! | `in_use` | bytes allocated and not freed, all tiers |
//! | `resident` | resident set of the process (`/proc/self/statm`), 0 if unreadable |
//! | `mapped`, `peak_mapped` | bytes mapped from the OS now, and at most |
//! | `segments` | reservations mapped now |
//! | `purged` | bytes purged so far, all tiers |
//! | `tiny`, `l2`, `l25` | objects: `in_use`, `blocks`, `slabs` (now), `remote_frees`, `purged`, `carved`, `slabs_taken` (so far; `carved` and `slabs_taken` of `l2` and `l25` are the two pools' together) |
//! | `runs` | `in_use`, `allocs`, `frees`, `purged` |
//! | `large` | `in_use`, `allocs`, `frees`, `purged`, `cached` (BigCache bytes), `cache_hits`, `cache_misses` |
//! | `faults`, `reclaims`, `guarded` | heap misuses detected, reclaims on OS refusal, guard-page blocks handed out |

use core::ffi::CStr;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use hakmem_core::config::{self, StatsReport};
use hakmem_core::diag::{self, StackBuf};
use hakmem_core::os;

/// The state of one slab tier now: what its slabs hold (a census at the time of the call) and
/// its cumulative counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Blocks allocated and not freed.
    pub blocks: u64,
    /// Bytes of those blocks (by their size class).
    pub bytes: u64,
    /// Slabs formatted for a size class now (held by threads, cached, or abandoned).
    pub slabs: u64,
    /// Blocks freed by another thread than the owner, as collected so far (cumulative).
    pub remote_frees: u64,
    /// Bytes of the tier's memory given back to the OS so far (cumulative).
    pub purged: u64,
}

/// A copy of every counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tiny blocks carved (see [`TierCounters`](hakmem_core::stats::TierCounters)).
    pub tiny_carved: u64,
    /// Tiny slabs taken.
    pub tiny_slabs: u64,
    /// Tiny remote frees collected.
    pub tiny_remote: u64,
    /// Pool blocks carved.
    pub pool_carved: u64,
    /// Pool slabs taken.
    pub pool_slabs: u64,
    /// Pool remote frees collected.
    pub pool_remote: u64,
    /// See [`RUN_ALLOCS`](hakmem_core::stats::RUN_ALLOCS).
    pub run_allocs: u64,
    /// See [`RUN_FREES`](hakmem_core::stats::RUN_FREES).
    pub run_frees: u64,
    /// See [`LARGE_ALLOCS`](hakmem_core::stats::LARGE_ALLOCS).
    pub large_allocs: u64,
    /// See [`LARGE_FREES`](hakmem_core::stats::LARGE_FREES).
    pub large_frees: u64,
    /// See [`OS_MAPPED`](hakmem_core::stats::OS_MAPPED).
    pub os_mapped: u64,
    /// See [`OS_SEGMENTS`](hakmem_core::stats::OS_SEGMENTS).
    pub os_segments: u64,
    /// See [`OS_PEAK`](hakmem_core::stats::OS_PEAK).
    pub os_peak: u64,
    /// See [`OS_PURGED`](hakmem_core::stats::OS_PURGED).
    pub os_purged: u64,
    /// See [`CACHE_HITS`](hakmem_core::stats::CACHE_HITS).
    pub cache_hits: u64,
    /// See [`CACHE_MISSES`](hakmem_core::stats::CACHE_MISSES).
    pub cache_misses: u64,
    /// See [`FAULTS`](hakmem_core::stats::FAULTS).
    pub faults: u64,
    /// See [`RECLAIMS`](hakmem_core::stats::RECLAIMS).
    pub reclaims: u64,
    /// See [`GUARD_ALLOCS`](hakmem_core::stats::GUARD_ALLOCS).
    pub guard_allocs: u64,
    /// The process id.
    pub pid: u64,
    /// Bytes allocated and not freed, all tiers: what the program holds (block sizes by
    /// class, so at least what it asked for).
    pub in_use: u64,
    /// The process's resident set (`/proc/self/statm`), bytes; 0 when unreadable.
    pub resident: u64,
    /// The Tiny tier (≤ 1 KiB).
    pub tiny: TierStats,
    /// The L2 pool (up to 32 KiB).
    pub l2: TierStats,
    /// The L2.5 pool (up to 1 MiB).
    pub l25: TierStats,
    /// Bytes of page runs in use.
    pub run_bytes: u64,
    /// Bytes of page-run memory given back to the OS so far.
    pub run_purged: u64,
    /// Bytes of direct mappings in use ([`LARGE_BYTES`](hakmem_core::stats::LARGE_BYTES)).
    pub large_bytes: u64,
    /// Bytes of direct-mapping memory given back to the OS while mapped so far.
    pub large_purged: u64,
    /// Bytes of freed direct mappings the BigCache holds for reuse.
    pub cache_bytes: u64,
}

/// Reads every counter: the cumulative ones and the tiers' remote-free and purge counts; the
/// figures of a census (blocks, bytes and slabs in use, resident, cached) are left 0, for
/// [`crate::stats`] to fill in.
pub(crate) fn counters() -> Stats {
    use hakmem_core::map::{TAG_LARGE, TAG_RUN};
    use hakmem_core::stats::*;
    let (tiny, l2, l25) = (
        &hakmem_tiny::COUNTERS,
        &hakmem_pool::L2_COUNTERS,
        &hakmem_pool::L25_COUNTERS,
    );
    let tier = |c: &TierCounters, tag| TierStats {
        remote_frees: c.remote.get(),
        purged: purged(tag),
        ..TierStats::default()
    };
    Stats {
        tiny_carved: tiny.carved.get(),
        tiny_slabs: tiny.slabs.get(),
        tiny_remote: tiny.remote.get(),
        pool_carved: l2.carved.get() + l25.carved.get(),
        pool_slabs: l2.slabs.get() + l25.slabs.get(),
        pool_remote: l2.remote.get() + l25.remote.get(),
        run_allocs: RUN_ALLOCS.get(),
        run_frees: RUN_FREES.get(),
        large_allocs: LARGE_ALLOCS.get(),
        large_frees: LARGE_FREES.get(),
        os_mapped: OS_MAPPED.get(),
        os_segments: OS_SEGMENTS.get(),
        os_peak: OS_PEAK.get(),
        os_purged: OS_PURGED.get(),
        cache_hits: CACHE_HITS.get(),
        cache_misses: CACHE_MISSES.get(),
        faults: FAULTS.get(),
        reclaims: RECLAIMS.get(),
        guard_allocs: GUARD_ALLOCS.get(),
        pid: 0,
        in_use: 0,
        resident: 0,
        tiny: tier(tiny, hakmem_tiny::TAG),
        l2: tier(l2, hakmem_pool::L2_TAG),
        l25: tier(l25, hakmem_pool::L25_TAG),
        run_bytes: 0,
        run_purged: purged(TAG_RUN),
        large_bytes: LARGE_BYTES.get(),
        large_purged: purged(TAG_LARGE),
        cache_bytes: 0,
    }
}

impl fmt::Display for Stats {
    /// `hakmem-stats: key=value ...`, the line `HAKMEM_STATS=1` prints and benchmarks parse.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hakmem-stats: tiny.carved={} tiny.slabs={} tiny.remote={} pool.carved={} pool.slabs={} \
             pool.remote={} run.allocs={} run.frees={} large.allocs={} large.frees={} \
             large.cache_hits={} large.cache_misses={} os.mapped={} os.segments={} os.peak={} \
             os.purged={} os.reclaims={} faults={} guarded={}",
            self.tiny_carved,
            self.tiny_slabs,
            self.tiny_remote,
            self.pool_carved,
            self.pool_slabs,
            self.pool_remote,
            self.run_allocs,
            self.run_frees,
            self.large_allocs,
            self.large_frees,
            self.cache_hits,
            self.cache_misses,
            self.os_mapped,
            self.os_segments,
            self.os_peak,
            self.os_purged,
            self.reclaims,
            self.faults,
            self.guard_allocs
        )
    }
}

/// A byte count in human units (one decimal from KiB up); honours width and alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut b = StackBuf::<24>::new();
        let (mut unit, mut scale) = (0, 1u128);
        while unit + 1 < UNITS.len() && self.0 as u128 >= scale * 1024 {
            unit += 1;
            scale *= 1024;
        }
        if unit == 0 {
            write!(b, "{} B", self.0)?;
        } else {
            let tenths = (self.0 as u128 * 10 + scale / 2) / scale;
            write!(b, "{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])?;
        }
        f.pad(core::str::from_utf8(b.as_bytes()).unwrap_or("?"))
    }
}

/// [`Stats`] as the exit report's table (see the module docs).
pub struct Table<'a>(pub &'a Stats);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        writeln!(f, "hakmem: stats of pid {}", s.pid)?;
        writeln!(
            f,
            "  in use     {:>10}   resident    {:>10}",
            Bytes(s.in_use),
            Bytes(s.resident)
        )?;
        writeln!(
            f,
            "  mapped     {:>10}   peak mapped {:>10}   purged {:>10}",
            Bytes(s.os_mapped),
            Bytes(s.os_peak),
            Bytes(s.os_purged)
        )?;
        writeln!(
            f,
            "  {:<8} {:>11} {:>10} {:>8} {:>13} {:>10}",
            "tier", "in use", "blocks", "slabs", "remote frees", "purged"
        )?;
        let tier = |f: &mut fmt::Formatter<'_>, name: &str, t: &TierStats| {
            writeln!(
                f,
                "  {:<8} {:>11} {:>10} {:>8} {:>13} {:>10}",
                name,
                Bytes(t.bytes),
                t.blocks,
                t.slabs,
                t.remote_frees,
                Bytes(t.purged)
            )
        };
        tier(f, "tiny", &s.tiny)?;
        tier(f, "L2", &s.l2)?;
        tier(f, "L2.5", &s.l25)?;
        let other = |f: &mut fmt::Formatter<'_>, name: &str, bytes, live: u64, purged| {
            writeln!(
                f,
                "  {:<8} {:>11} {:>10} {:>8} {:>13} {:>10}",
                name,
                Bytes(bytes),
                live,
                "-",
                "-",
                Bytes(purged)
            )
        };
        other(
            f,
            "runs",
            s.run_bytes,
            s.run_allocs.saturating_sub(s.run_frees),
            s.run_purged,
        )?;
        other(
            f,
            "large",
            s.large_bytes,
            s.large_allocs.saturating_sub(s.large_frees),
            s.large_purged,
        )?;
        writeln!(
            f,
            "  BigCache {:>11} cached, {} hits, {} misses",
            Bytes(s.cache_bytes),
            s.cache_hits,
            s.cache_misses
        )?;
        writeln!(
            f,
            "  faults {}, reclaims {}, guarded {}",
            s.faults, s.reclaims, s.guard_allocs
        )
    }
}

/// [`Stats`] as one JSON object, no newline (keys in the module docs).
pub struct Json<'a>(pub &'a Stats);

impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let tier = |f: &mut fmt::Formatter<'_>, name: &str, t: &TierStats, carved, taken| {
            write!(
                f,
                "\"{name}\":{{\"in_use\":{},\"blocks\":{},\"slabs\":{},\"remote_frees\":{},\
                 \"purged\":{},\"carved\":{carved},\"slabs_taken\":{taken}}},",
                t.bytes, t.blocks, t.slabs, t.remote_frees, t.purged
            )
        };
        write!(
            f,
            "{{\"pid\":{},\"in_use\":{},\"resident\":{},\"mapped\":{},\"peak_mapped\":{},\
             \"segments\":{},\"purged\":{},",
            s.pid, s.in_use, s.resident, s.os_mapped, s.os_peak, s.os_segments, s.os_purged
        )?;
        tier(f, "tiny", &s.tiny, s.tiny_carved, s.tiny_slabs)?;
        tier(f, "l2", &s.l2, s.pool_carved, s.pool_slabs)?;
        tier(f, "l25", &s.l25, s.pool_carved, s.pool_slabs)?;
        write!(
            f,
            "\"runs\":{{\"in_use\":{},\"allocs\":{},\"frees\":{},\"purged\":{}}},\
             \"large\":{{\"in_use\":{},\"allocs\":{},\"frees\":{},\"purged\":{},\"cached\":{},\
             \"cache_hits\":{},\"cache_misses\":{}}},\
             \"faults\":{},\"reclaims\":{},\"guarded\":{}}}",
            s.run_bytes,
            s.run_allocs,
            s.run_frees,
            s.run_purged,
            s.large_bytes,
            s.large_allocs,
            s.large_frees,
            s.large_purged,
            s.cache_bytes,
            s.cache_hits,
            s.cache_misses,
            s.faults,
            s.reclaims,
            s.guard_allocs
        )
    }
}

/// Room for any report: the table and the counters line take under 2 KiB.
pub const REPORT_MAX: usize = 4096;

/// Formats `s` as `how` says, ending in a newline (nothing for `Off`).
pub fn format(s: &Stats, how: StatsReport) -> StackBuf<REPORT_MAX> {
    let mut b = StackBuf::new();
    let _ = match how {
        StatsReport::Off => Ok(()),
        StatsReport::Table => writeln!(b, "{}{}", Table(s), s),
        StatsReport::Json => writeln!(b, "{}", Json(s)),
    };
    b
}

/// The duplicate of fd 2 kept by [`init`] (-1: none), and the identity of its open file.
static SAVED_FD: AtomicI32 = AtomicI32::new(-1);
static SAVED_DEV: AtomicU64 = AtomicU64::new(0);
static SAVED_INO: AtomicU64 = AtomicU64::new(0);

/// The device and inode of what `fd` refers to.
fn identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: `st` is plain data that fstat fills in.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: as above; a bad descriptor only makes it fail.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev as u64, st.st_ino as u64))
}

/// When the library loads: under `HAKMEM_STATS`, keeps a duplicate of fd 2 on a descriptor
/// at 512 or above where it can (close-on-exec), for a program that closes fd 2 before the
/// report. Nothing otherwise.
pub fn init() {
    if config::get().stats == StatsReport::Off || SAVED_FD.load(Ordering::Relaxed) >= 0 {
        return;
    }
    os::keep_errno(|| {
        for low in [512, 64, 3] {
            // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor; fd 2 may be closed (-1).
            let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, low) };
            if fd >= 0 {
                let (dev, ino) = identity(fd).unwrap_or((0, 0));
                SAVED_DEV.store(dev, Ordering::Relaxed);
                SAVED_INO.store(ino, Ordering::Relaxed);
                SAVED_FD.store(fd, Ordering::Relaxed);
                return;
            }
        }
    });
}

/// Writes all of `bytes` to `fd`; false when a write fails.
fn write_all(fd: i32, bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: writing an initialised slice.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 && os::errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return false;
        }
        rest = &rest[n as usize..];
    }
    true
}

/// Writes a report to its destination (see the module docs), keeping `errno`.
pub fn write(bytes: &[u8]) {
    os::keep_errno(|| {
        // SAFETY: getenv does not allocate; its string lives in `environ`.
        let path = unsafe { libc::getenv(c"HAKMEM_STATS_FILE".as_ptr()) };
        // SAFETY: getenv's result is null or NUL-terminated.
        if !path.is_null() && !unsafe { CStr::from_ptr(path) }.is_empty() {
            let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC;
            // SAFETY: a NUL-terminated path; the descriptor is closed below.
            let fd = unsafe { libc::open(path, flags, 0o644 as libc::c_uint) };
            if fd >= 0 {
                write_all(fd, bytes);
                // SAFETY: our descriptor.
                unsafe { libc::close(fd) };
                return;
            }
            diag::print(format_args!(
                "warning: cannot open HAKMEM_STATS_FILE (errno {}); the report goes to stderr",
                os::errno()
            ));
        }
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0 {
            write_all(2, bytes);
            return;
        }
        let fd = SAVED_FD.load(Ordering::Relaxed);
        let saved = (
            SAVED_DEV.load(Ordering::Relaxed),
            SAVED_INO.load(Ordering::Relaxed),
        );
        // The descriptor may have been closed and its number reused by the program since.
        if fd >= 0 && identity(fd) == Some(saved) {
            write_all(fd, bytes);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn shown(b: u64) -> String {
        let mut s = StackBuf::<32>::new();
        write!(s, "[{:>9}]", Bytes(b)).unwrap();
        String::from_utf8(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn human_units() {
        assert_eq!(shown(0), "[      0 B]");
        assert_eq!(shown(1023), "[   1023 B]");
        assert_eq!(shown(1024), "[  1.0 KiB]");
        assert_eq!(shown(1536), "[  1.5 KiB]");
        assert_eq!(shown(10 << 20), "[ 10.0 MiB]");
        assert_eq!(shown((3 << 30) + (1 << 29)), "[  3.5 GiB]");
        assert_eq!(shown(u64::MAX), "[16777216.0 TiB]");
    }

    #[test]
    fn table_and_json_carry_the_numbers() {
        let s = Stats {
            pid: 42,
            in_use: 10 << 20,
            tiny: TierStats {
                blocks: 7,
                bytes: 224,
                ..TierStats::default()
            },
            cache_bytes: 3 << 20,
            ..Stats::default()
        };
        let t = format(&s, StatsReport::Table);
        let t = core::str::from_utf8(t.as_bytes()).unwrap();
        assert!(t.starts_with("hakmem: stats of pid 42\n"), "{t}");
        assert!(t.contains("in use       10.0 MiB"), "{t}");
        assert!(t.contains("3.0 MiB cached"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("  tiny") && l.contains(" 224 B"))
        );
        assert!(
            t.lines().last().unwrap().starts_with("hakmem-stats: "),
            "{t}"
        );
        let j = format(&s, StatsReport::Json);
        let j = core::str::from_utf8(j.as_bytes()).unwrap();
        assert!(j.starts_with("{\"pid\":42,\"in_use\":10485760,"), "{j}");
        assert!(j.contains("\"tiny\":{\"in_use\":224,\"blocks\":7,"), "{j}");
        assert!(j.ends_with("}\n"));
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(format(&s, StatsReport::Off).as_bytes(), b"");
    }

    #[test]
    fn resident_is_read() {
        assert!(os::resident_bytes() > 0);
    }

    #[test]
    fn line_format_is_parseable() {
        let s = Stats {
            tiny_carved: 7,
            os_segments: 2,
            ..Stats::default()
        };
        let mut b = StackBuf::<512>::new();
        write!(b, "{s}").unwrap();
        let line = core::str::from_utf8(b.as_bytes()).unwrap();
        assert!(line.starts_with("hakmem-stats: "));
        let kv: Vec<(&str, u64)> = line["hakmem-stats: ".len()..]
            .split(' ')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        assert_eq!(kv.len(), 19);
        assert!(kv.contains(&("tiny.carved", 7)));
        assert!(kv.contains(&("os.segments", 2)));
    }
}
