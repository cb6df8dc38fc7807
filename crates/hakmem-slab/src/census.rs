//! A census of a slab tier: what its slabs hold right now, counted at the time of the call
//! (`hakmem::stats`, the `HAKMEM_STATS` report) from the slab headers, so the hot paths keep
//! no counter of their own.
//!
//! The walk takes the tier's pool lock (so no segment of the tier is unmapped meanwhile: they
//! are only given back under it, by the purge pass) and reads every slab header of the
//! chunks the owner map gives the tier, between the lowest and highest chunk ever reserved
//! ([`hakmem_core::stats::chunk_range`]). Other threads go on allocating and freeing meanwhile: the
//! counts are a moment's, each slab's own consistent to a block or so.

use crate::meta::{ABANDONED, FULL, Slab};
use crate::{Geometry, slab_size};
use core::cell::Cell;
use core::sync::atomic::Ordering;
use hakmem_core::map::{CHUNK_SHIFT, CHUNK_SIZE, MAP};

/// What the slabs of one tier hold now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Blocks allocated and not freed (a block freed by another thread and not yet pushed to
    /// its slab counts as live).
    pub blocks: u64,
    /// Their bytes, by size class.
    pub bytes: u64,
    /// Slabs formatted for a size class.
    pub slabs: u64,
}

/// How many times [`census`] tries the pool lock before it gives up (a thread stopped in the
/// allocator, e.g. a signal handler calling `exit` there, must not hang the exit report).
const LOCK_TRIES: u32 = 10_000;

/// Reads a field the slab's owner writes without synchronisation.
fn racy<T: Copy>(c: &Cell<T>) -> T {
    // SAFETY: a volatile load of an aligned word of a live slab header: the value may be stale
    // or a moment old, and no caller relies on more (every use clamps it); the owner's plain
    // stores of a `u32` or a pointer are single instructions on every target hakmem builds
    // for, so the load sees one of its values, never a mix.
    unsafe { core::ptr::read_volatile(c.as_ptr()) }
}

/// The census of tier `G`; `None` when its pool lock stayed taken (see `LOCK_TRIES`).
pub fn census<G: Geometry>() -> Option<Census> {
    let size = slab_size::<G>();
    if size > CHUNK_SIZE {
        return None; // slabs would straddle chunks: no tier is built so
    }
    let lock = G::pool().lock();
    let mut tries = 0;
    while !lock.try_lock() {
        tries += 1;
        if tries == LOCK_TRIES {
            return None;
        }
        if tries % 64 == 0 {
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
        core::hint::spin_loop();
    }
    let mut c = Census::default();
    for chunk in hakmem_core::stats::chunk_range() {
        let base = chunk << CHUNK_SHIFT;
        if MAP.tag(base) != G::TAG {
            continue;
        }
        for at in (base..base + CHUNK_SIZE).step_by(size) {
            // SAFETY: the chunk is one of the tier's segments, mapped while tagged (tagged
            // after its mapping, untagged before its unmapping, which happens only under the
            // pool lock we hold); every slab of it starts with its header, zero until formatted.
            let s = unsafe { &*(at as *const Slab) };
            let block = racy(&s.block_size) as u64;
            if block == 0 {
                continue;
            }
            c.slabs += 1;
            let mut live = racy(&s.used).saturating_sub(s.remote.count());
            let owner = s.owner.load(Ordering::Relaxed);
            // The head of an owner's available queue (no predecessor, not full) is pinned:
            // one more in `used` than it holds.
            if G::PIN_CURRENT
                && owner != 0
                && owner != ABANDONED
                && owner & FULL == 0
                && racy(&s.prev).is_null()
            {
                live = live.saturating_sub(1);
            }
            let live = live.min(racy(&s.capacity)) as u64;
            c.blocks += live;
            c.bytes += live * block;
        }
    }
    // SAFETY: taken above by this thread.
    unsafe { lock.unlock() };
    Some(c)
}
