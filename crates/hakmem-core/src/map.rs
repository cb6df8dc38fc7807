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

/// What owns a chunk; 0 means "not hakmem's". Core's own tiers use the values below; the
/// tiers above core define theirs (hakmem-tiny 1, hakmem-pool 4 and 5), and the facade's tier
/// table refuses two tiers with one tag. Values stay below 8 (the purge counters' index).
pub type Tag = u8;
/// Not hakmem's memory.
pub const TAG_NONE: Tag = 0;
/// A page-run segment (core's run path).
pub const TAG_RUN: Tag = 2;
/// A direct mapping (core's large path).
pub const TAG_LARGE: Tag = 3;
/// The guard-page reservation (core's sampled guarded blocks, [`crate::guard`]).
pub const TAG_GUARD: Tag = 6;
/// A big page-run segment (core's run engine with 256 KiB pages, [`crate::run::BIG_RUNS`]).
pub const TAG_BIG_RUN: Tag = 7;

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
        // An address beyond the map (non-canonical, or the kernel's half) is nobody's: it must
        // not alias a chunk by its low bits.
        match self.tags.get(addr >> CHUNK_SHIFT) {
            Some(t) => t.load(Ordering::Relaxed),
            None => TAG_NONE,
        }
    }

    /// Tags every chunk of `[base, base + len)`; `base` must be chunk-aligned. The release store
    /// publishes the tag before the memory is handed to any other thread.
    #[cfg_attr(all(loom, not(test)), allow(dead_code))]
    pub(crate) fn set(&self, base: usize, len: usize, tag: Tag) {
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
    #[cfg_attr(all(loom, not(test)), allow(dead_code))]
    pub(crate) fn clear(&self, base: usize, len: usize) {
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
        // Addresses beyond the map are nobody's: no aliasing by their low bits.
        assert_eq!(m.tag(base + 64 * CHUNK_SIZE), TAG_NONE);
        assert_eq!(m.tag(base | 1 << 63), TAG_NONE);
        m.clear(base, CHUNK_SIZE + 1);
        assert_eq!(m.tag(base), TAG_NONE);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::AtomicUsize;
    use loom::sync::Arc;
    use loom::thread;

    /// A 4-entry map under loom (the process map is 2^25 entries, `ENTRIES`, only outside
    /// loom): addresses at and above `4 * CHUNK_SIZE` alias chunks 0..4 by the index mask.
    type Map = ChunkMap<4>;

    /// Two threads update distinct chunks while a third looks up: one sets chunk 0 to Tiny and
    /// clears it again (a segment mapped, then unmapped), the other tags chunks 1 and 2 with one
    /// two-chunk `set` (a direct mapping); the reader looks every chunk up, also through an
    /// address that aliases chunk 1.
    ///
    /// Proves: a reader never sees a tag that was never set for that chunk (chunk 0 only ever
    /// reads none or Tiny, chunks 1 and 2 none or Large, chunk 3 always none), updates of
    /// distinct chunks never interfere (once both writers are joined, chunk 0 is clear and
    /// chunks 1 and 2 say Large, whatever the interleaving), and the masked index maps an
    /// aliasing address onto its chunk's tag.
    #[test]
    fn loom_map_distinct_chunks_do_not_interfere() {
        loom::model(|| {
            let map = Arc::new(Map::new());
            let m = map.clone();
            let t1 = thread::spawn(move || {
                m.set(0, CHUNK_SIZE, 1);
                m.clear(0, CHUNK_SIZE);
            });
            let m = map.clone();
            let t2 = thread::spawn(move || m.set(CHUNK_SIZE, 2 * CHUNK_SIZE, TAG_LARGE));

            let t = map.tag(CHUNK_SIZE / 2);
            assert!(t == TAG_NONE || t == 1, "chunk 0 read {t}");
            for addr in [CHUNK_SIZE, 2 * CHUNK_SIZE + 64, 5 * CHUNK_SIZE + 8] {
                let t = map.tag(addr);
                assert!(t == TAG_NONE || t == TAG_LARGE, "{addr:#x} read {t}");
            }
            assert_eq!(
                map.tag(3 * CHUNK_SIZE),
                TAG_NONE,
                "a never-set chunk has a tag"
            );

            t1.join().unwrap();
            t2.join().unwrap();
            assert_eq!(map.tag(0), TAG_NONE);
            assert_eq!(map.tag(CHUNK_SIZE), TAG_LARGE);
            assert_eq!(map.tag(2 * CHUNK_SIZE), TAG_LARGE);
            assert_eq!(map.tag(3 * CHUNK_SIZE), TAG_NONE);
        });
    }

    /// The life of one chunk passed between threads: thread 1 maps it (tags it Large) and hands
    /// the address over with a Release store; thread 2, having taken it with an Acquire load,
    /// checks the tag, unmaps it (clears the tag) and hands the address on the same way; the
    /// main thread, having taken it, maps it again for another tier (Run), as the OS may reuse
    /// the range. Meanwhile thread 1 also tags chunk 3 for L2, unpublished.
    ///
    /// Proves: a tag set before a Release handoff is seen by every thread that received the
    /// handoff with Acquire, although lookups are Relaxed loads (thread 2 sees Large, never a
    /// stale none); a clear published the same way is seen too (the main thread never sees the
    /// dead mapping's Large on a chunk it was handed back as unmapped), and the chunk ends with
    /// the new owner's tag; an unrelated tag update never shows up on the handed-over chunk.
    #[test]
    fn loom_map_set_visible_after_handoff() {
        loom::model(|| {
            let map = Arc::new(Map::new());
            let mapped = Arc::new(AtomicUsize::new(0));
            let unmapped = Arc::new(AtomicUsize::new(0));
            let base = 2 * CHUNK_SIZE;

            let (m, tx) = (map.clone(), mapped.clone());
            let t1 = thread::spawn(move || {
                m.set(base, CHUNK_SIZE, TAG_LARGE);
                tx.store(base, Ordering::Release);
                m.set(3 * CHUNK_SIZE, CHUNK_SIZE, 4);
            });
            let (m, rx, tx) = (map.clone(), mapped.clone(), unmapped.clone());
            let t2 = thread::spawn(move || {
                let p = rx.load(Ordering::Acquire);
                if p != 0 {
                    assert_eq!(m.tag(p + 100), TAG_LARGE, "a published set is not visible");
                    m.clear(p, CHUNK_SIZE);
                    tx.store(p, Ordering::Release);
                }
            });

            let p = unmapped.load(Ordering::Acquire);
            if p != 0 {
                assert_eq!(map.tag(p), TAG_NONE, "a published clear is not visible");
                map.set(p, CHUNK_SIZE, TAG_RUN);
                assert_eq!(map.tag(p + CHUNK_SIZE - 1), TAG_RUN);
            }
            let t = map.tag(base);
            assert!(
                matches!(t, TAG_NONE | TAG_LARGE | TAG_RUN),
                "chunk 2 read {t}"
            );

            t1.join().unwrap();
            t2.join().unwrap();
            assert_eq!(map.tag(3 * CHUNK_SIZE), 4);
            if p != 0 {
                assert_eq!(
                    map.tag(base),
                    TAG_RUN,
                    "the new owner's tag was overwritten"
                );
            }
        });
    }
}
