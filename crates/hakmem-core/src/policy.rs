//! The policy snapshot: every tunable the allocation paths depend on (cache budget, purge
//! delay, per-site rules), in one immutable [`Policy`] published through one atomic pointer.
//!
//! Readers ([`current`]) do one Acquire load (the index of the slot in force) and copy a value
//! nobody writes again: no lock, no retry, at most once per call and only on slow paths (the Tiny and pool fast paths read no
//! policy at all). Writers ([`publish`]) are the learner, at most once per measurement window:
//! a policy equal to one already published is re-used (policies are interned), a new one is
//! written into a fresh slot of a fixed table and then published with a Release store. Slots
//! are never rewritten, so a reader holding an old pointer reads a valid, complete policy.
//! When the table is full, new policies are refused (the last one stays in force): learning
//! chooses among a handful of candidates, so in practice the table never fills.

use crate::sync::{AtomicUsize, Mutex, Ordering};
#[cfg(not(loom))]
use core::cell::UnsafeCell;
#[cfg(loom)]
use loom::cell::UnsafeCell;

/// Rules for at most this many call sites travel in a snapshot.
pub const SITE_RULES: usize = 8;

/// What a site rule does to a site's large blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum SiteAction {
    /// No rule: the policy's defaults.
    #[default]
    Default = 0,
    /// Freed mappings go back to the OS at once instead of into the BigCache (long-lived or
    /// never-reused blocks: they would only occupy the cache's budget).
    Direct = 1,
}

impl SiteAction {
    /// The action's name in reports: `default`, `direct`.
    pub const fn name(self) -> &'static str {
        match self {
            SiteAction::Default => "default",
            SiteAction::Direct => "direct",
        }
    }
}

/// A rule for the blocks allocated from one call site (the caller's return address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SiteRule {
    /// The site (0: an unused entry).
    pub site: usize,
    /// What to do.
    pub action: SiteAction,
}

/// One immutable set of tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The candidate of the learner that produced this policy (0: the default policy).
    pub candidate: u32,
    /// The most bytes the BigCache keeps (freed mappings beyond it are unmapped, oldest first).
    pub cache_budget: usize,
    /// Rules for call sites (entries with `site == 0` are unused).
    pub sites: [SiteRule; SITE_RULES],
}

impl Policy {
    /// The default policy (what `minimal`/`fast` run, and `balanced` when nothing was learned).
    pub const DEFAULT: Policy = Policy {
        candidate: 0,
        cache_budget: 256 << 20,
        sites: [SiteRule {
            site: 0,
            action: SiteAction::Default,
        }; SITE_RULES],
    };

    /// The rule for `site` (Default when there is none). A linear scan of
    /// [`SITE_RULES`] entries: slow paths only.
    pub fn site_action(&self, site: usize) -> SiteAction {
        if site == 0 {
            return SiteAction::Default;
        }
        self.sites
            .iter()
            .find(|r| r.site == site)
            .map_or(SiteAction::Default, |r| r.action)
    }
}

/// How many distinct policies a process can publish.
#[cfg(not(loom))]
pub const SLOTS: usize = 64;
/// How many distinct policies a process can publish (small under loom).
#[cfg(loom)]
pub const SLOTS: usize = 4;

/// A table of write-once policy slots and the pointer to the one in force.
pub struct Snapshots {
    slots: [UnsafeCell<Policy>; SLOTS],
    /// Slots written so far (only under `writer`).
    used: AtomicUsize,
    /// The slot in force plus one (0: [`Policy::DEFAULT`]).
    current: AtomicUsize,
    writer: Mutex<()>,
}

// SAFETY: a slot is written once, by the publisher holding `writer`, before the Release store
// of its index that makes it reachable; afterwards it is only read.
unsafe impl Sync for Snapshots {}

const DEFAULT: Policy = Policy::DEFAULT;

impl Snapshots {
    /// An empty table; [`Snapshots::current`] gives [`Policy::DEFAULT`] until a publication.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Snapshots {
            slots: [const { UnsafeCell::new(Policy::DEFAULT) }; SLOTS],
            used: AtomicUsize::new(0),
            current: AtomicUsize::new(0),
            writer: Mutex::new(()),
        }
    }

    /// An empty table (loom's atomics are not const).
    #[cfg(loom)]
    pub fn new() -> Self {
        Snapshots {
            slots: core::array::from_fn(|_| UnsafeCell::new(Policy::DEFAULT)),
            used: AtomicUsize::new(0),
            current: AtomicUsize::new(0),
            writer: Mutex::new(()),
        }
    }

    /// The policy in force: one Acquire load of the slot index, one read of the slot.
    #[inline]
    pub fn current(&self) -> Policy {
        match self.current.load(Ordering::Acquire) {
            0 => DEFAULT,
            i => self.read_slot(i - 1),
        }
    }

    fn read_slot(&self, i: usize) -> Policy {
        #[cfg(not(loom))]
        // SAFETY: slot `i` was written before the Release store that published it (or, for
        // the writer, before `used` counted it) and is never written again.
        return unsafe { *self.slots[i].get() };
        #[cfg(loom)]
        // SAFETY: as above.
        return self.slots[i].with(|q| unsafe { *q });
    }

    /// # Safety
    /// Slot `i` has never been published and the caller holds `writer`.
    unsafe fn write_slot(&self, i: usize, p: &Policy) {
        #[cfg(not(loom))]
        // SAFETY: forwarded contract.
        unsafe {
            *self.slots[i].get() = *p
        };
        #[cfg(loom)]
        // SAFETY: forwarded contract.
        self.slots[i].with_mut(|q| unsafe { *q = *p });
    }

    /// Puts `p` in force. Returns false (nothing changes) when the table is full and `p` is
    /// not in it already.
    pub fn publish(&self, p: &Policy) -> bool {
        let _w = self.writer.lock();
        let used = self.used.load(Ordering::Relaxed);
        let slot = match (0..used).find(|&i| self.read_slot(i) == *p) {
            Some(i) => i,
            None if used < SLOTS => {
                // SAFETY: slot `used` has never been published; only the writer (us, under
                // the lock) touches it until the Release store below.
                unsafe { self.write_slot(used, p) };
                self.used.store(used + 1, Ordering::Relaxed);
                used
            }
            None => return false,
        };
        self.current.store(slot + 1, Ordering::Release);
        true
    }

    /// Distinct policies published so far.
    pub fn published(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(not(loom))]
impl Default for Snapshots {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(loom))]
static SNAPSHOTS: Snapshots = Snapshots::new();

/// The process's policy in force.
#[cfg(not(loom))]
#[inline]
pub fn current() -> Policy {
    SNAPSHOTS.current()
}

/// Puts `p` in force for the process (see [`Snapshots::publish`]).
#[cfg(not(loom))]
pub fn publish(p: &Policy) -> bool {
    SNAPSHOTS.publish(p)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn default_until_published_and_interned() {
        let t = Snapshots::new();
        assert_eq!(t.current(), Policy::DEFAULT);
        let a = Policy {
            candidate: 2,
            cache_budget: 1 << 30,
            ..Policy::DEFAULT
        };
        assert!(t.publish(&a));
        assert_eq!(t.current(), a);
        assert!(t.publish(&Policy::DEFAULT));
        assert_eq!(t.current(), Policy::DEFAULT);
        assert!(t.publish(&a));
        assert_eq!(t.current(), a);
        assert_eq!(t.published(), 2);
    }

    #[test]
    fn a_full_table_refuses_new_policies_and_keeps_the_last() {
        let t = Snapshots::new();
        for i in 0..SLOTS {
            let p = Policy {
                candidate: i as u32,
                ..Policy::DEFAULT
            };
            assert!(t.publish(&p));
        }
        let last = t.current();
        let extra = Policy {
            candidate: 999,
            ..Policy::DEFAULT
        };
        assert!(!t.publish(&extra));
        assert_eq!(t.current(), last);
        assert!(
            t.publish(&Policy::DEFAULT),
            "a known policy still goes in force"
        );
    }

    #[test]
    fn site_rules_are_looked_up_by_site() {
        let mut p = Policy::DEFAULT;
        p.sites[3] = SiteRule {
            site: 0x4000,
            action: SiteAction::Direct,
        };
        assert_eq!(p.site_action(0x4000), SiteAction::Direct);
        assert_eq!(p.site_action(0x4001), SiteAction::Default);
        assert_eq!(p.site_action(0), SiteAction::Default);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Publication of a snapshot: a reader racing two publishers sees the default or one of the
    /// two policies, whole (never a torn or half-written one), and after both publishers are
    /// joined it sees the last one published; a re-published policy re-uses its slot.
    #[test]
    fn loom_snapshot_publication() {
        loom::model(|| {
            let t = Arc::new(Snapshots::new());
            let a = Policy {
                candidate: 1,
                cache_budget: 1 << 20,
                ..Policy::DEFAULT
            };
            let b = Policy {
                candidate: 2,
                cache_budget: 2 << 20,
                ..Policy::DEFAULT
            };
            let (t1, t2) = (t.clone(), t.clone());
            let h1 = thread::spawn(move || assert!(t1.publish(&a)));
            let h2 = thread::spawn(move || assert!(t2.publish(&b)));
            let seen = t.current();
            assert!(
                seen == Policy::DEFAULT || seen == a || seen == b,
                "torn policy {seen:?}"
            );
            h1.join().unwrap();
            h2.join().unwrap();
            let last = t.current();
            assert!(last == a || last == b);
            assert_eq!(t.published(), 2);
            assert!(t.publish(&a));
            assert_eq!(t.current(), a);
            assert_eq!(t.published(), 2, "interned");
        });
    }
}
