//! The address → owner map: one byte per 4 MiB chunk of the 47-bit user address space saying
//! which tier owns the chunk (0: not hakmem's). Every mapping hakmem makes starts on a chunk
//! boundary, so a chunk belongs to at most one mapping and `free(p)` finds its tier with one
//! load, with no search and no hashing. The table is 32 MiB of zero-initialised `.bss`: only the
//! pages covering addresses hakmem actually uses are ever touched.

use crate::sync::{AtomicU8, Ordering};

/// log2 of the chunk size (4 MiB): the unit of ownership in the map.
pub const CHUNK_SHIFT: usize = 22;
/// The chunk size; every segment and direct mapping is aligned to it.
pub const CHUNK_SIZE: usize = 1 << CHUNK_SHIFT;
/// User space addresses are below 2^47 on x86-64 and aarch64 (48-bit VA) Linux.
pub const ADDRESS_BITS: usize = 47;
#[cfg(not(loom))]
const ENTRIES: usize = 1 << (ADDRESS_BITS - CHUNK_SHIFT);

/// What owns a chunk. The tiers register their own values; 0 means "not hakmem's".
pub type Tag = u8;
/// Not hakmem's memory.
pub const TAG_NONE: Tag = 0;
/// A Tiny segment (hakmem-tiny).
pub const TAG_TINY: Tag = 1;
/// A page-run segment (core's run path).
pub const TAG_RUN: Tag = 2;
/// A direct mapping (core's large path).
pub const TAG_LARGE: Tag = 3;
/// An L2 pool segment (hakmem-pool, above 1 KiB up to 32 KiB).
pub const TAG_L2: Tag = 4;
/// An L2.5 pool segment (hakmem-pool, above 32 KiB up to 1 MiB).
pub const TAG_L25: Tag = 5;

/// A chunk map of `N` entries; the process uses one global instance, [`MAP`].
pub struct ChunkMap<const N: usize> {
    tags: [AtomicU8; N],
}

impl<const N: usize> ChunkMap<N> {
    /// An empty map.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        ChunkMap {
            tags: [const { AtomicU8::new(TAG_NONE) }; N],
        }
    }
    /// An empty map.
    #[cfg(loom)]
    pub fn new() -> Self {
        ChunkMap {
            tags: core::array::from_fn(|_| AtomicU8::new(TAG_NONE)),
        }
    }

    /// The tag of the chunk holding `addr`.
    ///
    /// The index is masked, not bounds-checked (three instructions fewer on every `free`): an
    /// address at or above 2^47 aliases a lower chunk. hakmem never maps there (Linux hands such
    /// addresses only to `mmap` calls that ask for them with a hint, and hakmem gives none), and
    /// a foreign pointer up there that aliases a hakmem chunk still meets the tier's own checks
    /// (the slab owner test, block bounds, header magic) before anything is written.
    #[inline(always)]
    pub fn tag(&self, addr: usize) -> Tag {
        const { assert!(N.is_power_of_two()) };
        // SAFETY: the index is masked into range.
        unsafe { self.tags.get_unchecked((addr >> CHUNK_SHIFT) & (N - 1)) }.load(Ordering::Relaxed)
    }

    /// Tags every chunk of `[base, base + len)`; `base` must be chunk-aligned. The release store
    /// publishes the tag before the memory is handed to any other thread.
    pub fn set(&self, base: usize, len: usize, tag: Tag) {
        debug_assert_eq!(base & (CHUNK_SIZE - 1), 0);
        let first = base >> CHUNK_SHIFT;
        let last = (base + len.max(1) - 1) >> CHUNK_SHIFT;
        for i in first..=last {
            if let Some(t) = self.tags.get(i) {
                t.store(tag, Ordering::Release);
            }
        }
    }

    /// Forgets the chunks of `[base, base + len)` (before they are unmapped).
    pub fn clear(&self, base: usize, len: usize) {
        self.set(base, len, TAG_NONE);
    }
}

#[cfg(not(loom))]
impl<const N: usize> Default for ChunkMap<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The process-wide map.
#[cfg(not(loom))]
pub static MAP: ChunkMap<ENTRIES> = ChunkMap::new();

/// The tag of the chunk holding `p`.
#[cfg(not(loom))]
#[inline(always)]
pub fn tag_of(p: *const u8) -> Tag {
    MAP.tag(p as usize)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn set_tag_clear() {
        let m: ChunkMap<64> = ChunkMap::new();
        let base = 3 * CHUNK_SIZE;
        m.set(base, CHUNK_SIZE + 1, TAG_LARGE);
        assert_eq!(m.tag(base), TAG_LARGE);
        assert_eq!(m.tag(base + CHUNK_SIZE + 5), TAG_LARGE);
        assert_eq!(m.tag(base + 2 * CHUNK_SIZE), TAG_NONE);
        assert_eq!(m.tag(base - 1), TAG_NONE);
        // Addresses beyond the map alias masked chunks (see `tag`).
        assert_eq!(m.tag(base + 64 * CHUNK_SIZE), TAG_LARGE);
        m.clear(base, CHUNK_SIZE + 1);
        assert_eq!(m.tag(base), TAG_NONE);
    }
}
