//! Free-list links, encoded and checked.
//!
//! A free block's first word links it to the next block of its list. It is stored as
//! `next ^ at ^ KEY` (`at`: the block holding the link; `KEY`: a random per-process word whose
//! top 16 bits are neither all zeros nor all ones), so:
//! - a link written over by the program (a use after free, an overflow from the block before)
//!   decodes to an address outside the slab, or off a block boundary, unless the writer knows
//!   the key: [`Slab::pop`](crate::meta::Slab) checks both before it hands a block out;
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
        k = mix(a ^ hakmem_core::os::now_ms() ^ (&k as *const u64 as u64));
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

/// Whether links are encoded and checked: always, but in a build with the `unchecked` feature
/// (made only to measure what the checks cost).
pub const CHECKED: bool = !cfg!(feature = "unchecked");

/// The stored form of a link to `next` held by the block at `at`.
#[inline(always)]
pub fn encode(next: usize, at: usize) -> usize {
    if CHECKED { next ^ (at ^ key()) } else { next }
}

/// The block a stored link `raw`, held by the block at `at`, points to. (`at ^ key` first:
/// it does not wait for the load of `raw`.)
#[inline(always)]
pub fn decode(raw: usize, at: usize) -> usize {
    if CHECKED { raw ^ (at ^ key()) } else { raw }
}

/// Whether the first word `raw` of a block decodes to an address in the block's own slab of
/// `slab_size` bytes (`key`: [`key`]): true for every free block, and for a live block only if its data
/// happens to be such a link (its top 16 bits equal to the key's, about 1 in 2^48 for random
/// data, never for pointers, small integers or zero).
#[inline(always)]
pub fn looks_free(raw: usize, key: usize, slab_size: usize) -> bool {
    // decode(raw, at) ^ at < slab_size  ⟺  same slab as `at`.
    raw ^ key < slab_size
}

/// The divisor constant of `bs` (2 ≤ `bs` ≤ 2^20) for [`is_multiple`] and [`index_below`]:
/// `m = floor(2^64 / bs) + 1`. Then `bs · m = 2^64 + δ` with `1 ≤ δ ≤ bs` ([`excess`]), so
/// for `off = k·bs + r` (`r < bs`, `off` < 2^24) the product `off · m mod 2^64` is `k·δ`
/// when `r = 0` and at least `m` (≥ 2^44) otherwise (Lemire, Kaser and Kurz, "Faster
/// remainder by direct computation", 2019).
pub const fn divisor(bs: usize) -> u64 {
    // floor(2^64 / bs) is floor((2^64 - 1) / bs), plus one where bs divides 2^64.
    u64::MAX / bs as u64 + 1 + bs.is_power_of_two() as u64
}

/// `δ = bs · m − 2^64` for the [`divisor`] `m` of `bs`: what each whole block adds to the
/// product.
pub const fn excess(bs: usize) -> u64 {
    (bs as u64).wrapping_mul(divisor(bs))
}

/// Whether `off` (< 2^24) is a multiple of the `bs` whose [`divisor`] is `m`: one multiply
/// and one compare.
#[inline(always)]
pub fn is_multiple(off: usize, m: u64) -> bool {
    (off as u64).wrapping_mul(m) < m
}

/// Whether `off` is `k·bs` with `k < n`, for `m` the [`divisor`] of `bs` and `bound` =
/// `n ·` [`excess`]`(bs)`: the bounds check and the block-boundary check in one multiply and
/// one compare. Exact for `-2^16 < off < 2^24` (offsets inside a slab, or a link with its low
/// bytes written over); a wild `off` passes with odds of about `bound / 2^64` (< 2^-40).
#[inline(always)]
pub fn index_below(off: usize, m: u64, bound: u32) -> bool {
    (off as u64).wrapping_mul(m) < bound as u64
}

#[cfg(all(test, not(loom), not(feature = "unchecked")))]
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
    fn index_bounds_are_exact() {
        let mut sizes: std::vec::Vec<usize> = (16..=1100).step_by(16).collect();
        sizes.extend([
            24,
            40,
            48,
            80,
            96,
            112,
            3000,
            4096,
            10_000,
            32 << 10,
            56 << 10,
            1 << 20,
        ]);
        const LIMIT: isize = 1 << 23;
        for bs in sizes {
            let (m, d) = (divisor(bs), excess(bs));
            assert!((1..=bs as u64).contains(&d), "excess of {bs}");
            for n in [0usize, 1, 7, (LIMIT as usize >> 1) / bs] {
                let bound = (n as u64 * d) as u32;
                // Around every block start below and beyond n, and just before the slab.
                let mut offs: std::vec::Vec<isize> = (-(1 << 16)..0).step_by(61).collect();
                offs.extend(-300..300);
                for k in [0usize, 1, 2, n.saturating_sub(1), n, n + 1, 2 * n + 3] {
                    let x = (k * bs) as isize;
                    offs.extend([x - 1, x, x + 1, x + bs as isize / 2, x + bs as isize - 1]);
                }
                offs.extend((LIMIT - 2000)..LIMIT);
                for off in offs {
                    let want =
                        off >= 0 && (off as usize).is_multiple_of(bs) && (off as usize / bs) < n;
                    assert_eq!(
                        index_below(off as usize, m, bound),
                        want,
                        "off {off} bs {bs} n {n}"
                    );
                }
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
            assert!(
                looks_free(raw, k, 1 << 16),
                "a link into the slab looks free"
            );
        }
        // Program data: zero, pointers, small and negative integers.
        for raw in [0, at, slab, 1, 42, usize::MAX, usize::MAX - 7, 0x5555_5555] {
            assert!(
                !looks_free(raw, k, 1 << 22),
                "data {raw:#x} looks like a free link"
            );
        }
        // A link overwritten with a chosen address decodes outside the slab.
        let d = decode(0x5566_7788_9900, at);
        assert!(d.wrapping_sub(slab) >= 1 << 16);
    }
}
