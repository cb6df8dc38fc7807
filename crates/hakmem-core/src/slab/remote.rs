//! The remote-free list of a slab: a lock-free stack other threads push freed blocks onto
//! (one CAS each), which the owner takes whole with one swap. Taking everything at once means
//! the pop side has no ABA problem.

use crate::sync::{AtomicPtr, Ordering};
use core::ptr;

/// A free block: its first word links it into a list.
#[repr(C)]
pub struct Block {
    /// The next block of the list.
    pub next: *mut Block,
}

/// Blocks freed by threads other than the owner, waiting to be collected.
pub struct RemoteList {
    head: AtomicPtr<Block>,
}

impl RemoteList {
    /// An empty list.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RemoteList {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }
    /// An empty list.
    #[cfg(loom)]
    pub fn new() -> Self {
        RemoteList {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes one block. After the successful CAS the caller must not touch the block or the
    /// slab again: the owner may reuse both at once.
    ///
    /// # Safety
    /// `b` must be a dead block of the list's slab, owned by the caller.
    #[inline]
    pub unsafe fn push(&self, b: *mut Block) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller owns `b` until the CAS publishes it.
            unsafe { (*b).next = head };
            match self
                .head
                .compare_exchange_weak(head, b, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Whether anything waits (a hint: the answer may be stale at once).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// Takes every waiting block (owner only).
    #[inline]
    pub fn take_all(&self) -> *mut Block {
        if self.is_empty() {
            return ptr::null_mut();
        }
        self.head.swap(ptr::null_mut(), Ordering::Acquire)
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

    /// Two remote threads push while the owner collects: every block is taken exactly once.
    #[test]
    fn loom_remote_list_loses_nothing() {
        loom::model(|| {
            let list = Arc::new(RemoteList::new());
            let blocks: Vec<usize> = (0..3)
                .map(|_| {
                    Box::into_raw(Box::new(Block {
                        next: ptr::null_mut(),
                    })) as usize
                })
                .collect();
            let hs: Vec<_> = blocks[..2]
                .iter()
                .map(|&b| {
                    let l = list.clone();
                    // SAFETY: each block is pushed once, by one thread.
                    loom::thread::spawn(move || unsafe { l.push(b as *mut Block) })
                })
                .collect();
            // SAFETY: the third block belongs to this thread.
            unsafe { list.push(blocks[2] as *mut Block) };
            let mut seen = Vec::new();
            let take = |seen: &mut Vec<usize>| {
                let mut b = list.take_all();
                while !b.is_null() {
                    seen.push(b as usize);
                    // SAFETY: taken blocks belong to the owner.
                    b = unsafe { (*b).next };
                }
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
