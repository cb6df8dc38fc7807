//! Content patterns written into every block and checked before it is freed.
//!
//! One pattern function covers every byte of a block: byte `i` of a block with tag `t` is
//! byte `i % 8` (little-endian) of `word(t, i / 8) = t ^ (i / 8) * GOLDEN`. All writes
//! (head/tail words, middle byte, page bytes, realloc fills) use it, so overlapping
//! writes always agree and a reader can compute what any written byte must be.
//!
//! For `malloc` blocks the tag is derived from the block's address, size and a per-run
//! salt, so a block that aliases another live block, or holds stale data, is detected.
//! Realloc buffers use a tag that does not depend on the address, since realloc may move.

use std::fmt;

use crate::block::Block;
use crate::rng::{GOLDEN, mix64};

/// Page stride used by the page-touching workloads.
pub const PAGE: usize = 4096;

/// Stride of the sampled prefix check of `realloc-grow` (not a multiple of 64, so the
/// probe drifts through cache-line positions).
pub const SAMPLE_STRIDE: usize = 1032;

/// A pattern mismatch: the allocator returned memory whose contents changed under us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub addr: usize,
    pub size: usize,
    pub offset: usize,
    pub width: usize,
    pub expected: u64,
    pub found: u64,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "block {:#x} (size {}) offset {}: expected {:#0w$x}, found {:#0w$x}",
            self.addr,
            self.size,
            self.offset,
            self.expected,
            self.found,
            w = 2 + 2 * self.width
        )
    }
}

/// Tag of a malloc'd block: depends on its address, size and the run's salt.
#[inline]
pub fn block_tag(b: &Block, salt: u64) -> u64 {
    mix64(b.addr() as u64 ^ (b.size() as u64).rotate_left(40) ^ salt)
}

#[inline]
fn word(tag: u64, w: usize) -> u64 {
    tag ^ (w as u64).wrapping_mul(GOLDEN)
}

/// The pattern byte at offset `off`.
#[inline]
pub fn expected_u8(tag: u64, off: usize) -> u8 {
    (word(tag, off >> 3) >> ((off & 7) * 8)) as u8
}

/// The pattern's little-endian `u64` at (possibly unaligned) offset `off`.
#[inline]
pub fn expected_u64(tag: u64, off: usize) -> u64 {
    let w = off >> 3;
    let s = (off & 7) * 8;
    if s == 0 {
        word(tag, w)
    } else {
        (word(tag, w) >> s) | (word(tag, w + 1) << (64 - s))
    }
}

#[inline]
fn check_u64(b: &Block, tag: u64, off: usize) -> Result<(), Mismatch> {
    let (e, f) = (expected_u64(tag, off), b.read_u64(off));
    if e == f {
        Ok(())
    } else {
        Err(mismatch(b, off, 8, e, f))
    }
}

#[inline]
fn check_u8(b: &Block, tag: u64, off: usize) -> Result<(), Mismatch> {
    let (e, f) = (expected_u8(tag, off), b.read_u8(off));
    if e == f {
        Ok(())
    } else {
        Err(mismatch(b, off, 1, u64::from(e), u64::from(f)))
    }
}

#[cold]
fn mismatch(b: &Block, offset: usize, width: usize, expected: u64, found: u64) -> Mismatch {
    Mismatch {
        addr: b.addr(),
        size: b.size(),
        offset,
        width,
        expected,
        found,
    }
}

/// Cheap stamp: first 8 bytes, last 8 bytes and the middle byte (every byte if < 8 B).
#[inline]
pub fn stamp(b: &mut Block, salt: u64) {
    let n = b.size();
    let tag = block_tag(b, salt);
    if n >= 8 {
        b.write_u64(0, expected_u64(tag, 0));
        b.write_u64(n - 8, expected_u64(tag, n - 8));
        b.write_u8(n / 2, expected_u8(tag, n / 2));
    } else {
        for i in 0..n {
            b.write_u8(i, expected_u8(tag, i));
        }
    }
}

/// Checks what [`stamp`] wrote.
#[inline]
pub fn check_stamp(b: &Block, salt: u64) -> Result<(), Mismatch> {
    let n = b.size();
    let tag = block_tag(b, salt);
    if n >= 8 {
        check_u64(b, tag, 0)?;
        check_u64(b, tag, n - 8)?;
        check_u8(b, tag, n / 2)
    } else {
        (0..n).try_for_each(|i| check_u8(b, tag, i))
    }
}

/// Head stamp: the first 8 bytes only (every byte if < 8 B). One cache line, like the
/// two bytes the original Larson program writes into each new block.
#[inline]
pub fn stamp_head(b: &mut Block, salt: u64) {
    let tag = block_tag(b, salt);
    if b.size() >= 8 {
        b.write_u64(0, expected_u64(tag, 0));
    } else {
        for i in 0..b.size() {
            b.write_u8(i, expected_u8(tag, i));
        }
    }
}

/// Checks what [`stamp_head`] wrote.
#[inline]
pub fn check_head(b: &Block, salt: u64) -> Result<(), Mismatch> {
    let tag = block_tag(b, salt);
    if b.size() >= 8 {
        check_u64(b, tag, 0)
    } else {
        (0..b.size()).try_for_each(|i| check_u8(b, tag, i))
    }
}

/// Writes the first `n` pattern bytes (fewer if the block is smaller): `larson-orig` writes
/// its blocks' first two bytes, as the original program does.
#[inline]
pub fn stamp_first(b: &mut Block, salt: u64, n: usize) {
    let tag = block_tag(b, salt);
    for i in 0..n.min(b.size()) {
        b.write_u8(i, expected_u8(tag, i));
    }
}

/// Checks what [`stamp_first`] wrote.
#[inline]
pub fn check_first(b: &Block, salt: u64, n: usize) -> Result<(), Mismatch> {
    let tag = block_tag(b, salt);
    (0..n.min(b.size())).try_for_each(|i| check_u8(b, tag, i))
}

/// Checks that the `u64` at `off` is zero (what `memset(0)` left there).
#[inline]
pub fn check_zero_u64(b: &Block, off: usize) -> Result<(), Mismatch> {
    let f = b.read_u64(off);
    if f == 0 {
        Ok(())
    } else {
        Err(mismatch(b, off, 8, 0, f))
    }
}

/// Writes one pattern byte every [`PAGE`] bytes in `PAGE..limit` (offset 0 is covered by
/// the stamp). Call after [`stamp`]; both use the same pattern, so they never conflict.
#[inline]
pub fn touch_pages(b: &mut Block, salt: u64, limit: usize) {
    let tag = block_tag(b, salt);
    let limit = limit.min(b.size());
    for off in (PAGE..limit).step_by(PAGE) {
        b.write_u8(off, expected_u8(tag, off));
    }
}

/// Checks what [`touch_pages`] wrote.
#[inline]
pub fn check_pages(b: &Block, salt: u64, limit: usize) -> Result<(), Mismatch> {
    let tag = block_tag(b, salt);
    let limit = limit.min(b.size());
    (PAGE..limit)
        .step_by(PAGE)
        .try_for_each(|off| check_u8(b, tag, off))
}

/// Fills bytes `from..to` completely with the pattern of `tag` (used by `realloc-grow`;
/// `tag` is per buffer, not per address).
pub fn fill_range(b: &mut Block, tag: u64, from: usize, to: usize) {
    assert!(from <= to && to <= b.size());
    let mut i = from;
    while i < to && i & 7 != 0 {
        b.write_u8(i, expected_u8(tag, i));
        i += 1;
    }
    while to - i >= 8 {
        b.write_u64(i, word(tag, i >> 3));
        i += 8;
    }
    while i < to {
        b.write_u8(i, expected_u8(tag, i));
        i += 1;
    }
}

/// Sampled check of the filled prefix `0..len`: every byte if `len < 8`, else the first
/// and last 8 bytes and one `u64` every [`SAMPLE_STRIDE`] bytes.
pub fn check_prefix_sampled(b: &Block, tag: u64, len: usize) -> Result<(), Mismatch> {
    if len < 8 {
        return (0..len).try_for_each(|i| check_u8(b, tag, i));
    }
    (0..len - 8)
        .step_by(SAMPLE_STRIDE)
        .try_for_each(|off| check_u64(b, tag, off))?;
    check_u64(b, tag, len - 8)
}

/// Full check of `0..len` (used by the tests).
#[cfg(test)]
pub fn check_prefix_full(b: &Block, tag: u64, len: usize) -> Result<(), Mismatch> {
    (0..len).try_for_each(|i| check_u8(b, tag, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u64 = 0x1234_5678;

    #[test]
    fn unaligned_u64_agrees_with_bytes() {
        let tag = 0xDEAD_BEEF_0123_4567;
        for off in 0..64 {
            let bytes: [u8; 8] = std::array::from_fn(|k| expected_u8(tag, off + k));
            assert_eq!(
                expected_u64(tag, off),
                u64::from_le_bytes(bytes),
                "off {off}"
            );
        }
    }

    #[test]
    fn stamp_then_check_ok_for_all_small_sizes() {
        for size in 1..300 {
            let mut b = Block::alloc(size);
            stamp(&mut b, SALT);
            assert_eq!(check_stamp(&b, SALT), Ok(()), "size {size}");
            b.free();
        }
    }

    #[test]
    fn corruption_is_detected() {
        for size in [1usize, 7, 8, 9, 16, 17, 24, 100, 1024] {
            let positions = [0, size / 2, size - 1];
            for &pos in &positions {
                let mut b = Block::alloc(size);
                stamp(&mut b, SALT);
                let v = b.read_u8(pos);
                b.write_u8(pos, v ^ 0x5A);
                let err = check_stamp(&b, SALT).expect_err("corruption not detected");
                assert!(err.offset <= pos && pos < err.offset + err.width, "{err}");
                b.free();
            }
        }
    }

    #[test]
    fn head_stamp_roundtrip_and_detect() {
        for size in [1usize, 5, 8, 9, 1000] {
            let mut b = Block::alloc(size);
            stamp_head(&mut b, SALT);
            assert_eq!(check_head(&b, SALT), Ok(()), "size {size}");
            let pos = size.min(8) - 1;
            let v = b.read_u8(pos);
            b.write_u8(pos, v ^ 0x81);
            let err = check_head(&b, SALT).expect_err("corruption not detected");
            assert!(err.offset <= pos && pos < err.offset + err.width, "{err}");
            b.free();
        }
    }

    #[test]
    fn first_bytes_roundtrip_and_detect() {
        for size in [1usize, 2, 3, 500] {
            let mut b = Block::alloc(size);
            stamp_first(&mut b, SALT, 2);
            assert_eq!(check_first(&b, SALT, 2), Ok(()), "size {size}");
            let pos = size.min(2) - 1;
            let v = b.read_u8(pos);
            b.write_u8(pos, v ^ 0x10);
            let err = check_first(&b, SALT, 2).expect_err("corruption not detected");
            assert_eq!(err.offset, pos);
            b.free();
        }
    }

    #[test]
    fn zero_word_check() {
        let mut b = Block::alloc_zero_filled(64);
        assert_eq!(check_zero_u64(&b, 24), Ok(()));
        b.write_u8(27, 1);
        assert_eq!(check_zero_u64(&b, 24).unwrap_err().found, 1 << 24);
        b.free();
    }

    #[test]
    fn wrong_salt_or_other_block_is_detected() {
        let mut a = Block::alloc(64);
        stamp(&mut a, SALT);
        assert!(check_stamp(&a, SALT ^ 1).is_err());
        a.free();
    }

    #[test]
    fn pages_roundtrip_and_detect() {
        let size = 10 * PAGE + 123;
        let mut b = Block::alloc(size);
        stamp(&mut b, SALT);
        touch_pages(&mut b, SALT, size);
        assert_eq!(check_pages(&b, SALT, size), Ok(()));
        assert_eq!(check_stamp(&b, SALT), Ok(()));
        let v = b.read_u8(7 * PAGE);
        b.write_u8(7 * PAGE, !v);
        let err = check_pages(&b, SALT, size).unwrap_err();
        assert_eq!(err.offset, 7 * PAGE);
        b.free();
    }

    #[test]
    fn fill_range_matches_pattern_and_survives_realloc() {
        let tag = 0xABCD;
        let mut b = Block::alloc(13);
        fill_range(&mut b, tag, 0, 13);
        assert_eq!(check_prefix_full(&b, tag, 13), Ok(()));
        let mut len = 13;
        for new in [29usize, 100, 1001, 5000, 70_000] {
            b = b.realloc(new);
            assert_eq!(check_prefix_full(&b, tag, len), Ok(()));
            fill_range(&mut b, tag, len, new);
            len = new;
            assert_eq!(check_prefix_full(&b, tag, len), Ok(()));
            assert_eq!(check_prefix_sampled(&b, tag, len), Ok(()));
        }
        b.write_u8(len - 1, !expected_u8(tag, len - 1));
        assert!(check_prefix_sampled(&b, tag, len).is_err());
        b.free();
    }
}
