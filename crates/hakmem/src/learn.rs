//! The learning driver: site profiling and the ELO/EVO learner, run on the large path only
//! (allocations above 1 MiB, each of which costs a system call or a cache lookup anyway).
//!
//! - **Site Rules** (`HAKMEM_SITE_RULES`): every large allocation records its call site (the
//!   return address `malloc` was called from, captured at no cost on the way into the large
//!   path) and size in a lock-free [`SiteTable`]; its free records the lifetime and whether
//!   another thread freed it (the block's header keeps site, birth time and thread). At each
//!   window the rules derived from the table (a site whose blocks live long or are never freed
//!   goes `Direct`: its freed mappings bypass the BigCache) travel in the policy snapshot.
//! - **ELO/EVO** (`HAKMEM_ELO`, `HAKMEM_EVO`): the candidates are BigCache budgets
//!   ([`CANDIDATES`]). A window closes once it has seen [`WINDOW_OPS`] large allocations
//!   and lasted [`WINDOW_MIN_MS`]; the thread that closes it measures the window (large
//!   allocations per CPU-second of the process, minor page faults per allocation, RSS), hands
//!   it to the [`Evo`] lifecycle and publishes the policy of the candidate it picks. A thread
//!   that finds the learner busy goes on (try-lock): nothing ever waits for learning.
//!
//! Nothing here allocates; the measurements are system calls (`clock_gettime`, `getrusage`,
//! one read of `/proc/self/statm`) once per window.

use crate::BIGCACHE;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use hakmem_bigcache::BigCacheConfig;
use hakmem_core::config::{self, Evo as EvoMode};
use hakmem_core::os;
use hakmem_core::policy::{self, Policy};
use hakmem_core::sync::Mutex;
use hakmem_learn::{
    Evo, EvoParams, FixedBuf, RuleParams, SiteTable, Window, size_bucket, write_report, write_sites,
};

/// The BigCache budgets the learner chooses among.
pub const CANDIDATES: [usize; 3] = [64 << 20, 256 << 20, 1 << 30];
/// Their names in the leaderboard.
pub const NAMES: [&str; 3] = ["cache-64M", "cache-256M", "cache-1G"];
/// The candidate of the default policy (256 MiB: [`Policy::DEFAULT`]).
pub const DEFAULT_CANDIDATE: usize = 1;
/// Large allocations per measurement window.
pub const WINDOW_OPS: u64 = 48;
/// The shortest window, in ms.
pub const WINDOW_MIN_MS: u64 = 10;

const _: () = assert!(CANDIDATES[DEFAULT_CANDIDATE] == Policy::DEFAULT.cache_budget);

static SITES: SiteTable<64> = SiteTable::new();
static OPS: AtomicU64 = AtomicU64::new(0);
static HIST: [AtomicU32; 16] = [const { AtomicU32::new(0) }; 16];
static NEXT_MS: AtomicU64 = AtomicU64::new(0);
/// The window closes once the op count reaches this (and it has lasted [`WINDOW_MIN_MS`]).
static WINDOW_END: AtomicU64 = AtomicU64::new(WINDOW_OPS);

struct Learner {
    evo: Evo<3>,
    started: bool,
    ops: u64,
    cpu_ns: u64,
    faults: u64,
}

static LEARNER: Mutex<Learner> = Mutex::new(Learner {
    evo: Evo::frozen_at(DEFAULT_CANDIDATE),
    started: false,
    ops: 0,
    cpu_ns: 0,
    faults: 0,
});

/// The learner's lock, for `fork` handlers: held across the fork, so the child finds the
/// learner (and the policy table it writes under it) consistent.
pub fn fork_lock() -> &'static hakmem_core::sync::RawLock {
    LEARNER.raw()
}

/// Whether the learner tunes the BigCache budget (the learning modes).
pub fn active() -> bool {
    config::get().learning()
}

/// The lifecycle parameters for `mode`.
fn params(mode: EvoMode) -> EvoParams {
    let mut p = EvoParams::DEFAULT;
    if mode == EvoMode::Learn {
        // Learn for ever: never stable enough, no budget.
        p.stable_windows = u32::MAX;
        p.learn_budget = u32::MAX;
    }
    p
}

/// Records a large allocation from `site` and closes the window when it is due.
pub fn on_large_alloc(size: usize, site: usize) {
    let cfg = config::get();
    if cfg.site_rules && site != 0 {
        SITES.record_alloc(site, size);
    }
    if !cfg.learning() && !cfg.site_rules {
        return;
    }
    let ops = OPS.fetch_add(1, Ordering::Relaxed) + 1;
    HIST[size_bucket(size)].fetch_add(1, Ordering::Relaxed);
    if ops < WINDOW_END.load(Ordering::Relaxed) {
        return;
    }
    let now = os::now_ms();
    if now < NEXT_MS.load(Ordering::Relaxed) {
        return;
    }
    if let Some(mut l) = LEARNER.try_lock() {
        NEXT_MS.store(now + WINDOW_MIN_MS, Ordering::Relaxed);
        WINDOW_END.store(ops + WINDOW_OPS, Ordering::Relaxed);
        close_window(&mut l, ops, &cfg);
    }
}

/// Records the free of a large block allocated from `site` at `born_ms` by thread `tid`.
pub fn on_large_free(site: usize, size: usize, born_ms: u64, tid: usize) {
    if site != 0 && config::get().site_rules {
        let lifetime = os::now_ms().saturating_sub(born_ms);
        SITES.record_free(site, size, lifetime, tid != os::thread_id());
    }
}

fn close_window(l: &mut Learner, ops: u64, cfg: &config::Config) {
    let (cpu_ns, faults) = (process_cpu_ns(), minor_faults());
    let mut w = Window::new(
        ops - l.ops,
        cpu_ns.saturating_sub(l.cpu_ns),
        faults.saturating_sub(l.faults),
        os::resident_bytes(),
    );
    for (b, h) in w.size_hist.iter_mut().zip(&HIST) {
        *b = h.swap(0, Ordering::Relaxed);
    }
    let first = !l.started;
    (l.ops, l.cpu_ns, l.faults, l.started) = (ops, cpu_ns, faults, true);
    if first && cfg.learning() {
        l.evo = Evo::new(params(cfg.evo));
    }
    let candidate = if cfg.learning() && !first {
        l.evo.on_window(&w)
    } else if cfg.learning() {
        l.evo.current()
    } else {
        DEFAULT_CANDIDATE
    };
    let mut p = Policy {
        candidate: candidate as u32,
        cache_budget: CANDIDATES[candidate],
        ..Policy::DEFAULT
    };
    if cfg.site_rules {
        SITES.derive_rules(&RuleParams::default(), &mut p.sites);
    }
    if policy::publish(&p) && BIGCACHE.config().budget_bytes != p.cache_budget {
        BIGCACHE.set_config(BigCacheConfig {
            budget_bytes: p.cache_budget,
            ..BIGCACHE.config()
        });
    }
}

fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writing into a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn minor_faults() -> u64 {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: writing into a local rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt as u64
}

/// Prints the leaderboard, the lifecycle history and the profiled sites (`HAKMEM_ELO_REPORT=1`),
/// with `write(2)` from a stack buffer.
pub fn report() {
    let mut buf = FixedBuf::<8192>::new();
    if let Some(l) = LEARNER.try_lock() {
        let _ = write_report(&mut buf, &l.evo, &NAMES);
    }
    let _ = write_sites(&mut buf, &SITES, &RuleParams::default());
    let b = buf.as_bytes();
    // SAFETY: writing our own buffer to stderr.
    unsafe { libc::write(2, b.as_ptr().cast(), b.len()) };
}
