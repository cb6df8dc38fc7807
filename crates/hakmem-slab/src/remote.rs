//! The remote-free list of a slab: a lock-free stack other threads push freed blocks onto
//! (one CAS per block or per chain of blocks), which the owner takes whole with one swap. Taking everything at once means
//! the pop side has no ABA problem.
//!
//! The head word packs the list's length (high 16 bits) with the pointer to its first block
//! (low 48 bits: user-space addresses on x86-64 and aarch64 fit), so the owner learns how many
//! blocks it took without walking the list: the walk would fetch every block, each last
//! written by another core, one dependent cache miss after another.

use crate::link;
use core::ptr;
use hakmem_core::sync::{AtomicU64, Ordering};

/// A free block: its first word links it into a list.
#[repr(C)]
pub struct Block {
    /// The next block of the list.
    pub next: *mut Block,
}

const PTR_BITS: u32 = 48;
const PTR_MASK: u64 = (1 << PTR_BITS) - 1;
/// The most blocks a list can count (a slab holds fewer: 64 KiB / 8 bytes).
pub const MAX_COUNT: u64 = (1 << (64 - PTR_BITS)) - 1;

#[inline(always)]
fn pack(b: *mut Block, n: u64) -> u64 {
    (b as u64 & PTR_MASK) | (n << PTR_BITS)
}

#[inline(always)]
fn unpack(w: u64) -> (*mut Block, u32) {
    (
        (w & PTR_MASK) as usize as *mut Block,
        (w >> PTR_BITS) as u32,
    )
}

/// Blocks freed by threads other than the owner, waiting to be collected.
pub struct RemoteList {
    head: AtomicU64,
}

impl RemoteList {
    /// An empty list.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RemoteList {
            head: AtomicU64::new(0),
        }
    }
    /// An empty list.
    #[cfg(loom)]
    pub fn new() -> Self {
        RemoteList {
            head: AtomicU64::new(0),
        }
    }

    /// Pushes one block. After the successful CAS the caller must not touch the block or the
    /// slab again: the owner may reuse both at once.
    ///
    /// # Safety
    /// `b` must be a dead block of the list's slab, owned by the caller, at an address below
    /// 2^48; `end` is the slab's list end (its address).
    #[inline]
    pub unsafe fn push(&self, b: *mut Block, end: *mut Block) {
        // SAFETY: a one-block chain, as the caller promises.
        unsafe { self.push_chain(b, b, 1, end) }
    }

    /// Pushes a chain of `n` blocks, `first` to `last` linked through `next` (encoded links,
    /// `crate::link`), with one CAS; `last` gets the encoded link to the old head (`end` if
    /// none). After it the caller must not touch the blocks or the slab again.
    ///
    /// # Safety
    /// The chain must hold exactly `n` dead blocks of the list's slab, owned by the caller,
    /// at addresses below 2^48; the list must then still count at most [`MAX_COUNT`].
    #[inline]
    pub unsafe fn push_chain(&self, first: *mut Block, last: *mut Block, n: u32, end: *mut Block) {
        debug_assert!(first as u64 <= PTR_MASK && n >= 1);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (old, count) = unpack(head);
            debug_assert!(count as u64 + n as u64 <= MAX_COUNT);
            let old = if old.is_null() { end } else { old };
            // SAFETY: the caller owns the chain until the CAS publishes it.
            unsafe { (*last).next = link::encode(old as usize, last as usize) as *mut Block };
            match self.head.compare_exchange_weak(
                head,
                pack(first, count as u64 + n as u64),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Whether anything waits (a hint: the answer may be stale at once).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed) == 0
    }

    /// How many blocks wait (a hint, like [`Self::is_empty`]: it can only grow until taken).
    #[inline]
    pub fn count(&self) -> u32 {
        unpack(self.head.load(Ordering::Relaxed)).1
    }

    /// Takes every waiting block (owner only), with their number: a chain of encoded links
    /// ending in the slab's list end.
    #[inline]
    pub fn take_all(&self) -> (*mut Block, u32) {
        if self.is_empty() {
            return (ptr::null_mut(), 0);
        }
        unpack(self.head.swap(0, Ordering::Acquire))
    }
}

#[cfg(not(loom))]
impl Default for RemoteList {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    extern crate std;
    use super::*;
    use loom::sync::Arc;
    use std::boxed::Box;
    use std::vec::Vec;

    /// Two remote threads push (one a single block, one a chain of two with one CAS) while the
    /// owner pushes and collects: every block is taken exactly once, and the count taken with
    /// a list is its length.
    #[test]
    fn loom_remote_list_loses_nothing() {
        loom::model(|| {
            let list = Arc::new(RemoteList::new());
            let blocks: Vec<usize> = (0..4)
                .map(|_| {
                    Box::into_raw(Box::new(Block {
                        next: ptr::null_mut(),
                    })) as usize
                })
                .collect();
            link::init_key();
            // The list end: any address that is not one of the blocks.
            let end = 8usize;
            let l = list.clone();
            let b0 = blocks[0];
            // SAFETY: each block is pushed once, by one thread.
            let single =
                loom::thread::spawn(move || unsafe { l.push(b0 as *mut Block, end as *mut Block) });
            let l = list.clone();
            let (b1, b2) = (blocks[1], blocks[2]);
            let chain = loom::thread::spawn(move || {
                let (first, last) = (b1 as *mut Block, b2 as *mut Block);
                // SAFETY: this thread owns both blocks until the push.
                unsafe {
                    (*first).next = link::encode(last as usize, first as usize) as *mut Block;
                    l.push_chain(first, last, 2, end as *mut Block);
                }
            });
            let hs = [single, chain];
            // SAFETY: the fourth block belongs to this thread.
            unsafe { list.push(blocks[3] as *mut Block, end as *mut Block) };
            let mut seen = Vec::new();
            let take = |seen: &mut Vec<usize>| {
                let (mut b, n) = list.take_all();
                let before = seen.len();
                while !b.is_null() && b as usize != end {
                    seen.push(b as usize);
                    // SAFETY: taken blocks belong to the owner.
                    b = link::decode(unsafe { (*b).next } as usize, b as usize) as *mut Block;
                }
                assert_eq!(
                    seen.len() - before,
                    n as usize,
                    "the count is the list's length"
                );
            };
            take(&mut seen);
            for h in hs {
                h.join().unwrap();
            }
            take(&mut seen);
            seen.sort();
            let mut want = blocks.clone();
            want.sort();
            assert_eq!(seen, want, "a block was lost or taken twice");
            for b in blocks {
                // SAFETY: allocated above with Box, freed once.
                drop(unsafe { Box::from_raw(b as *mut Block) });
            }
        });
    }
}
