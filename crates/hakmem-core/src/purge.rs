//! Giving freed memory back to the OS: in batches, off the fast path, after a delay.
//!
//! Memory that no block uses any more (an empty slab in a pool's free list) is *hot* when
//! freed: kept resident so that reuse costs no page fault. [`decide`] ages it by the
//! configured [`FreePolicy`]: after the purge delay it becomes *warm* (`MADV_FREE`: the kernel
//! may take the pages back under memory pressure) and after four delays *cold*
//! (`MADV_DONTNEED`: the pages go back now, RSS falls). Purge passes run on allocator slow
//! paths — a slab taken or given back, a direct mapping made or freed — at most once per half
//! delay, and purge every registered slab pool in one batch; an idle process keeps what it has
//! until its next allocator call or an explicit trim ([`trim`], `malloc_trim`).
//!
//! When the OS refuses memory, the page source runs [`reclaim`] and retries once: every free
//! segment and cached mapping goes back (address space, which is what a `RLIMIT_AS` counts),
//! whatever the purge delay.

use crate::config::{self, FreePolicy};
use crate::os;
use crate::segment::PageSource;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// How resident a free range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Resident and dirty: reuse is free.
    Hot = 0,
    /// `MADV_FREE`d: resident until the kernel needs the pages.
    Warm = 1,
    /// `MADV_DONTNEED`d: not resident; reuse faults fresh zero pages.
    Cold = 2,
}

impl Stage {
    /// The stage stored as a byte.
    pub fn from_u8(b: u8) -> Stage {
        match b {
            0 => Stage::Hot,
            1 => Stage::Warm,
            _ => Stage::Cold,
        }
    }
}

/// What to do with a free range now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    /// Nothing yet.
    Wait,
    /// `madvise(MADV_FREE)`, then the range is [`Stage::Warm`].
    Free,
    /// `madvise(MADV_DONTNEED)`, then the range is [`Stage::Cold`].
    DontNeed,
}

/// The advice for a range in `stage` since `since` (ms), at `now` (ms). `force` (a trim) skips
/// the delay: everything not cold goes cold, unless the policy is to keep.
pub fn decide(
    policy: FreePolicy,
    delay: u64,
    stage: Stage,
    since: u64,
    now: u64,
    force: bool,
) -> Advice {
    let age = now.saturating_sub(since);
    match (policy, stage) {
        (_, Stage::Cold) | (FreePolicy::Keep, _) => Advice::Wait,
        _ if force => Advice::DontNeed,
        (FreePolicy::DontNeed, _) => Advice::DontNeed,
        (FreePolicy::Free, Stage::Hot) if age >= delay => Advice::Free,
        (FreePolicy::Free, _) => Advice::Wait,
        (FreePolicy::Adaptive, _) if age >= 4 * delay => Advice::DontNeed,
        (FreePolicy::Adaptive, Stage::Hot) if age >= delay => Advice::Free,
        (FreePolicy::Adaptive, _) => Advice::Wait,
    }
}

/// Applies `advice` to a page-aligned range of `source`'s; returns the stage it leaves the
/// range in.
///
/// # Safety
/// The range must lie in a reservation of `source` and hold no live data.
pub unsafe fn apply<S: PageSource + ?Sized>(
    source: &S,
    advice: Advice,
    p: *mut u8,
    len: usize,
    stage: Stage,
) -> Stage {
    // SAFETY: forwarded contract.
    match (advice, unsafe { source.purge(p, len, advice) }) {
        (Advice::Wait, _) | (_, false) => stage,
        (Advice::Free, true) => Stage::Warm,
        (Advice::DontNeed, true) => Stage::Cold,
    }
}

/// What a purge pass visits: a slab tier's pool of free slabs (`hakmem-slab`'s `SlabPool`),
/// registered by the pool when it first maps memory.
pub trait Purgeable: Sync {
    /// Ages the free memory at `now` (ms) by the purge policy (`force`: purges all of it now);
    /// returns the bytes not cold yet (a later pass has work). `background`: the purger
    /// thread's pass, which only tries locks (a busy lock counts one byte).
    fn purge(&self, now: u64, force: bool, background: bool) -> usize;
    /// Trims the calling thread's heap of this tier.
    fn trim_local(&self);
    /// Trims the other threads' heaps of this tier from outside (`all`: every heap, else those
    /// that idled); `background`: only try locks. False when a lock was busy.
    fn trim_others(&self, all: bool, background: bool) -> bool;
    /// In a `fork` child: forgets every heap but the calling thread's.
    fn after_fork_child(&self);
}

const SLOTS: usize = 8;

/// One registered target: written once, before `ready` is set.
struct Slot {
    ready: AtomicBool,
    target: UnsafeCell<Option<&'static dyn Purgeable>>,
}

// SAFETY: `target` is written once, by the one thread that reserved the slot, before `ready`
// is set (Release); it is read only after `ready` is seen set (Acquire).
unsafe impl Sync for Slot {}

/// The targets a purge pass visits.
static POOLS: [Slot; SLOTS] = [const {
    Slot {
        ready: AtomicBool::new(false),
        target: UnsafeCell::new(None),
    }
}; SLOTS];
static REGISTERED: AtomicUsize = AtomicUsize::new(0);
static LAST_PASS: AtomicU64 = AtomicU64::new(0);

/// Registers a target, once (the caller guards with its own flag). A target beyond the eighth
/// is not visited by passes (its memory still goes back under the `dontneed` policy). Takes
/// no lock, so a `fork` in the middle leaves the child consistent.
pub fn register(target: &'static dyn Purgeable) {
    let i = REGISTERED.fetch_add(1, Ordering::AcqRel);
    if let Some(slot) = POOLS.get(i) {
        // SAFETY: slot `i` is ours alone (the counter gave it out once) and not read before
        // `ready` is set.
        unsafe { *slot.target.get() = Some(target) };
        slot.ready.store(true, Ordering::Release);
    }
}

fn each(mut f: impl FnMut(&'static dyn Purgeable)) {
    for slot in &POOLS {
        if slot.ready.load(Ordering::Acquire) {
            // SAFETY: written before `ready` was set, never again (see `Slot`).
            if let Some(p) = unsafe { *slot.target.get() } {
                f(p);
            }
        }
    }
}

/// A purge pass over every pool, if the last one was at least half a delay ago. Called from
/// slow paths; cheap when it is not time (a clock read and a load). `local`: the caller is
/// outside every heap operation, so the pass also trims the calling thread's heaps first.
/// While the background purger serves, it runs the passes and this only trims.
pub fn tick(local: bool) {
    let cfg = config::get();
    if cfg.free_policy == FreePolicy::Keep || (!local && crate::purger::running()) {
        return;
    }
    let now = os::now_ms();
    let last = LAST_PASS.load(Ordering::Relaxed);
    if now.saturating_sub(last) < (cfg.purge_delay_ms / 2).max(1) {
        return;
    }
    if LAST_PASS
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        if local {
            each(|p| p.trim_local());
        }
        if !crate::purger::running() {
            pass(now, false);
            crate::purger::pass_ran();
        }
    }
}

/// A pass at `now` over the pools, the page runs and what the layers above keep (the age
/// hook); returns the bytes still waiting for a later pass. `background`: the purger thread's,
/// which only tries locks.
fn pass(now: u64, background: bool) -> usize {
    let mut waiting = 0;
    each(|p| waiting += p.purge(now, false, background));
    waiting += crate::run::purge(now, false, background);
    let f = AGE_HOOK.load(Ordering::Acquire);
    if f != 0 {
        // SAFETY: the word was stored from a `fn(u64) -> usize` by `set_age_hook`.
        let f: fn(u64) -> usize = unsafe { core::mem::transmute::<usize, fn(u64) -> usize>(f) };
        waiting += f(now);
    }
    waiting
}

/// The background purger's pass ([`crate::purger`]): the bytes still waiting. Every
/// `outside`-th call also trims the threads' heaps from outside (what they hold unused while
/// they idle: see `SlabPool::trim_others`).
pub(crate) fn background_pass(now: u64, outside: bool) -> usize {
    let mut waiting = 0;
    if outside {
        each(|p| waiting += !p.trim_others(false, true) as usize);
    }
    pass(now, true) + waiting
}

/// A pass now, whatever the clock, for the purger's decision to start (see
/// `purger::notify`): the bytes still waiting.
pub(crate) fn measure_pass() -> usize {
    let now = os::now_ms();
    LAST_PASS.store(now, Ordering::Relaxed);
    pass(now, false)
}

/// `fn(now) -> usize` aging what the layers above core keep (the facade installs the
/// BigCache's trim; 0: none); returns the bytes still kept.
static AGE_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Installs `f` as the part of every purge pass that ages what the layers above core keep.
/// The same rules as [`set_reclaim_hook`]'s.
pub fn set_age_hook(f: fn(u64) -> usize) {
    AGE_HOOK.store(f as usize, Ordering::Release);
}

/// In a `fork` child: every pool's list of set-up heaps keeps only the calling thread's.
pub(crate) fn after_fork_child() {
    each(|p| p.after_fork_child());
}

/// `fn()` releasing what the layers above core keep (the facade installs the BigCache's
/// release; 0: none).
static RECLAIM_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Installs `f` as the part of [`reclaim`] that releases what the layers above core keep
/// (cached mappings). `f` must not allocate, and must not reserve memory or take a lock that a
/// thread may hold while it reserves memory.
pub fn set_reclaim_hook(f: fn()) {
    RECLAIM_HOOK.store(f as usize, Ordering::Release);
}

/// Gives every free segment and cached mapping back to the OS now, whatever the delay: what
/// the page source runs when the OS refused memory, before its one retry. Unlike [`trim`] it
/// leaves the calling thread's heaps alone (the caller may be in the middle of a heap
/// operation), and the caller must hold no hakmem lock (the passes take them all in turn).
pub fn reclaim() {
    let now = os::now_ms();
    LAST_PASS.store(now, Ordering::Relaxed);
    each(|p| {
        p.purge(now, true, false);
    });
    let _ = crate::run::purge(now, true, false);
    let f = RECLAIM_HOOK.load(Ordering::Acquire);
    if f != 0 {
        // SAFETY: the word was stored from a `fn()` by `set_reclaim_hook`.
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
        f();
    }
    crate::stats::RECLAIMS.add(1);
}

/// Trims the calling thread's heaps, takes from the other threads' heaps what they hold
/// unused (full slabs whose blocks were all freed, empty slabs), and purges every pool now,
/// whatever the delay (`malloc_trim`).
pub fn trim() {
    let now = os::now_ms();
    LAST_PASS.store(now, Ordering::Relaxed);
    each(|p| p.trim_local());
    each(|p| {
        p.trim_others(true, false);
    });
    each(|p| {
        p.purge(now, true, false);
    });
    let _ = crate::run::purge(now, true, false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use FreePolicy::*;

    #[test]
    fn aging_follows_the_policy() {
        let d = 100;
        // (policy, stage, since, now, force) -> advice
        let cases = [
            (Adaptive, Stage::Hot, 1000, 1050, false, Advice::Wait),
            (Adaptive, Stage::Hot, 1000, 1100, false, Advice::Free),
            (Adaptive, Stage::Warm, 1000, 1399, false, Advice::Wait),
            (Adaptive, Stage::Warm, 1000, 1400, false, Advice::DontNeed),
            (Adaptive, Stage::Hot, 1000, 1400, false, Advice::DontNeed),
            (Adaptive, Stage::Cold, 0, 99_999, true, Advice::Wait),
            (Keep, Stage::Hot, 0, 99_999, true, Advice::Wait),
            (Free, Stage::Hot, 1000, 1100, false, Advice::Free),
            (Free, Stage::Warm, 1000, 99_999, false, Advice::Wait),
            (DontNeed, Stage::Hot, 1000, 1000, false, Advice::DontNeed),
            (Adaptive, Stage::Hot, 1000, 1000, true, Advice::DontNeed),
            // A clock that went backwards never ages anything.
            (Adaptive, Stage::Hot, 2000, 1000, false, Advice::Wait),
        ];
        for (policy, stage, since, now, force, want) in cases {
            assert_eq!(
                decide(policy, d, stage, since, now, force),
                want,
                "{policy:?} {stage:?} since {since} now {now} force {force}"
            );
        }
    }

    #[test]
    fn dontneed_zeroes_and_reports_cold() {
        let len = 4 * crate::os::PAGE;
        let p = crate::os::map(len);
        assert!(!p.is_null());
        // SAFETY: a fresh private mapping of `len` bytes, unmapped at the end.
        unsafe {
            p.write_bytes(0xAB, len);
            assert_eq!(
                apply(
                    &crate::segment::OS_PAGES,
                    Advice::DontNeed,
                    p,
                    len,
                    Stage::Hot
                ),
                Stage::Cold
            );
            assert_eq!(*p.add(len - 1), 0);
            assert_eq!(
                apply(&crate::segment::OS_PAGES, Advice::Free, p, len, Stage::Hot),
                Stage::Warm
            );
            crate::os::unmap(p, len);
        }
    }
}
