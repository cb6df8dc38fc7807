//! Free-list links, encoded and checked.
//!
//! A free block's first word links it to the next block of its list. It is stored as
//! `next ^ at ^ KEY` (`at`: the block holding the link; `KEY`: a random per-process word whose
//! top 16 bits are neither all zeros nor all ones), so:
//! - a link written over by the program (a use after free, an overflow from the block before)
//!   decodes to an address outside the slab, or off a block boundary, unless the writer knows
//!   the key: [`Slab::pop`](super::meta::Slab) checks both before it hands a block out;
//! - a live block's first word (program data, or the zero an allocation leaves there) does not
//!   look like a link: a pointer, a small integer or -1 XORed with `KEY` has its top bits set,
//!   so "decodes into this slab" ([`looks_free`]) means the block is already free — a double
//!   free is caught before the block is pushed a second time.
//!
//! A list ends with a link to the slab's own header (never a block), so the end is inside the
//! slab like every other link.

use core::sync::atomic::{AtomicUsize, Ordering};

/// The key; 0 until the first slab is formatted (no link exists before that).
static KEY: AtomicUsize = AtomicUsize::new(0);

/// The key (set: every link is written after the first slab's format).
#[inline(always)]
pub fn key() -> usize {
    KEY.load(Ordering::Relaxed)
}

/// Sets the key if it is not set yet (the slow path, before any link is written). Threads
/// racing here agree on the first value stored.
#[inline]
pub fn init_key() {
    if KEY.load(Ordering::Relaxed) == 0 {
        let _ = KEY.compare_exchange(0, fresh_key(), Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A random key from the kernel (`getrandom`), else from the process's `AT_RANDOM` bytes mixed
/// with the clock, with its top 16 bits in `1..=0xFFFE`.
#[cold]
fn fresh_key() -> usize {
    let mut k: u64 = 0;
    // SAFETY: getrandom writes at most 8 bytes into `k`; GRND_NONBLOCK never waits.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getrandom,
            &mut k as *mut u64,
            8usize,
            libc::GRND_NONBLOCK,
        )
    };
    if n != 8 {
        // SAFETY: getauxval has no preconditions; AT_RANDOM points at 16 kernel-given bytes.
        let r = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u64;
        // SAFETY: as above, read unaligned.
        let a = if r.is_null() {
            0
        } else {
            unsafe { r.read_unaligned() ^ r.add(1).read_unaligned() }
        };
        k = mix(a ^ crate::os::now_ms() ^ (&k as *const u64 as u64));
    }
    let top = (k >> 48) % 0xFFFE + 1;
    ((k & ((1 << 48) - 1)) | (top << 48)) as usize
}

/// splitmix64's finaliser: spreads every input bit over the word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stored form of a link to `next` held by the block at `at`.
#[inline(always)]
pub fn encode(next: usize, at: usize) -> usize {
    next ^ at ^ key()
}

/// The block a stored link `raw`, held by the block at `at`, points to.
#[inline(always)]
pub fn decode(raw: usize, at: usize) -> usize {
    raw ^ at ^ key()
}

/// Whether the first word `raw` of a block decodes to an address in the block's own slab of
/// `slab_size` bytes: true for every free block, and for a live block only if its data
/// happens to be such a link (its top 16 bits equal to the key's, about 1 in 2^48 for random
/// data, never for pointers, small integers or zero).
#[inline(always)]
pub fn looks_free(raw: usize, slab_size: usize) -> bool {
    // decode(raw, at) ^ at < slab_size  ⟺  same slab as `at`.
    raw ^ key() < slab_size
}

/// The divisor constant of `bs` for [`is_multiple`]: `ceil(2^64 / bs)`.
pub const fn divisor(bs: usize) -> u64 {
    (u64::MAX / bs as u64).wrapping_add(1)
}

/// Whether `off` (< 2^32) is a multiple of the `bs` whose [`divisor`] is `m` (`bs` ≥ 2):
/// `off · m mod 2^64 < m` (Lemire, Kaser and Kurz, "Faster remainder by direct computation",
/// 2019): one multiply and one compare.
#[inline(always)]
pub fn is_multiple(off: usize, m: u64) -> bool {
    (off as u64).wrapping_mul(m) < m
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn divisibility_is_exact() {
        let mut sizes: std::vec::Vec<usize> = (8..=2048).collect();
        sizes.extend([
            3000,
            4096,
            10_000,
            32 << 10,
            40 << 10,
            56 << 10,
            1 << 20,
            (1 << 22) - 1,
        ]);
        const LIMIT: usize = 1 << 22;
        for bs in sizes {
            let m = divisor(bs);
            for k in 0..(LIMIT / bs).min(4096) {
                let x = k * bs;
                assert!(is_multiple(x, m), "{x} is a multiple of {bs}");
                for off in [x + 1, x + bs / 2, x + bs - 1] {
                    assert_eq!(is_multiple(off, m), off % bs == 0, "off {off} bs {bs}");
                }
            }
            for off in LIMIT - 3 * bs.min(1000)..LIMIT {
                assert_eq!(is_multiple(off, m), off % bs == 0, "off {off} bs {bs}");
            }
        }
    }

    #[test]
    fn links_round_trip_and_data_does_not_look_free() {
        init_key();
        let k = key();
        assert!(k >> 48 != 0 && k >> 48 != 0xFFFF, "key {k:#x}");
        let slab = 0x7f00_1234_0000usize;
        let at = slab + 128 + 48;
        for next in [slab, slab + 128, slab + 0xFF80] {
            let raw = encode(next, at);
            assert_eq!(decode(raw, at), next);
            assert!(looks_free(raw, 1 << 16), "a link into the slab looks free");
        }
        // Program data: zero, pointers, small and negative integers.
        for raw in [0, at, slab, 1, 42, usize::MAX, usize::MAX - 7, 0x5555_5555] {
            assert!(
                !looks_free(raw, 1 << 22),
                "data {raw:#x} looks like a free link"
            );
        }
        // A link overwritten with a chosen address decodes outside the slab.
        let d = decode(0x5566_7788_9900, at);
        assert!(d.wrapping_sub(slab) >= 1 << 16);
    }
}
