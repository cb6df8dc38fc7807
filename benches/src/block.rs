//! `Block`: the one place that calls `libc::malloc` / `free` / `realloc`.
//!
//! A `Block` owns one allocation returned by whichever malloc is loaded (the binary is
//! run under `LD_PRELOAD`). It is neither `Copy` nor `Clone` and `free`/`realloc` consume
//! it, so each allocation is released exactly once. It has no `Drop`: dropping a `Block`
//! leaks it, which the workloads never do. All raw memory access is bounds-checked here.

use std::ptr::NonNull;

use crate::fail;

/// An owned `malloc` allocation of `size` bytes.
#[derive(Debug)]
pub struct Block {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: a `Block` is the unique owner of a malloc'd region; C malloc memory may be
// read, written and freed from any thread (that is exactly what `xthread`/`churn` test).
unsafe impl Send for Block {}

/// Alignment malloc must honour for a request of `size` bytes: 16 (max_align_t on
/// x86_64/aarch64), relaxed to the largest power of two dividing `size`, since no C type
/// of that size can need more (this is what C17 DR 445 allows; e.g. mimalloc's 24 B bin).
#[inline]
pub fn required_align(size: usize) -> usize {
    if size == 0 {
        return 1;
    }
    (1usize << size.trailing_zeros()).min(16)
}

impl Block {
    /// `malloc(size)`; exits with code 4 on NULL and 3 on a misaligned pointer.
    #[inline]
    pub fn alloc(size: usize) -> Block {
        // SAFETY: malloc has no preconditions; NULL is handled by `from_raw`.
        let p = unsafe { libc::malloc(size) }.cast::<u8>();
        Self::from_raw(p, size, "malloc")
    }

    /// `malloc(size)`, then `memset` of all `size` bytes to 0: what C++'s
    /// `std::make_unique<char[]>(size)` does. Never `calloc`: the pointer passes through
    /// `black_box` between the two calls, so the compiler cannot fuse them into one.
    #[inline]
    pub fn alloc_zero_filled(size: usize) -> Block {
        let b = Block::alloc(size);
        let p = std::hint::black_box(b.ptr.as_ptr());
        // SAFETY: `p` is the start of the live `size`-byte allocation just returned.
        unsafe { std::ptr::write_bytes(p, 0, size) };
        std::hint::black_box(p);
        b
    }

    #[inline]
    fn from_raw(p: *mut u8, size: usize, what: &str) -> Block {
        let Some(ptr) = NonNull::new(p) else {
            fail::out_of_memory(what, size)
        };
        if (p as usize) & (required_align(size) - 1) != 0 {
            fail::misaligned(what, p as usize, size, required_align(size));
        }
        Block { ptr, size }
    }

    /// `free(ptr)`.
    #[inline]
    pub fn free(self) {
        // SAFETY: `ptr` came from malloc/realloc and has not been freed: `Block` is not
        // Copy/Clone and this call consumes it.
        unsafe { libc::free(self.ptr.as_ptr().cast()) }
    }

    /// `realloc(ptr, new_size)`; the old block is consumed (it may have moved).
    #[inline]
    pub fn realloc(self, new_size: usize) -> Block {
        assert!(new_size > 0, "realloc to 0 bytes is not used");
        // SAFETY: `ptr` is a live malloc allocation owned by `self`, which is consumed;
        // on failure (NULL) the process exits, so the old pointer is never used again.
        let p = unsafe { libc::realloc(self.ptr.as_ptr().cast(), new_size) }.cast::<u8>();
        Self::from_raw(p, new_size, "realloc")
    }

    /// Requested size in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The block's address (used to derive its pattern).
    #[inline]
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Writes `v` little-endian at byte offset `off` (unaligned).
    #[inline]
    pub fn write_u64(&mut self, off: usize, v: u64) {
        assert!(off <= self.size && self.size - off >= 8);
        // SAFETY: `off..off + 8` lies inside the live allocation (checked above);
        // `write_unaligned` has no alignment requirement.
        unsafe {
            self.ptr
                .as_ptr()
                .add(off)
                .cast::<u64>()
                .write_unaligned(v.to_le())
        }
    }

    /// Reads a little-endian `u64` at byte offset `off` (unaligned). Only offsets that were
    /// written earlier are read, so the bytes are initialised.
    #[inline]
    pub fn read_u64(&self, off: usize) -> u64 {
        assert!(off <= self.size && self.size - off >= 8);
        // SAFETY: in bounds (checked above); the workloads only read bytes they wrote.
        u64::from_le(unsafe { self.ptr.as_ptr().add(off).cast::<u64>().read_unaligned() })
    }

    /// Writes one byte at `off`.
    #[inline]
    pub fn write_u8(&mut self, off: usize, v: u8) {
        assert!(off < self.size);
        // SAFETY: `off` is inside the live allocation (checked above).
        unsafe { self.ptr.as_ptr().add(off).write(v) }
    }

    /// Reads one byte at `off` (previously written).
    #[inline]
    pub fn read_u8(&self, off: usize) -> u8 {
        assert!(off < self.size);
        // SAFETY: in bounds (checked above); the workloads only read bytes they wrote.
        unsafe { self.ptr.as_ptr().add(off).read() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rule() {
        assert_eq!(required_align(1), 1);
        assert_eq!(required_align(8), 8);
        assert_eq!(required_align(24), 8);
        assert_eq!(required_align(48), 16);
        assert_eq!(required_align(4096), 16);
    }

    #[test]
    fn read_write_roundtrip_and_realloc_keeps_prefix() {
        let mut b = Block::alloc(32);
        b.write_u64(3, 0x0102_0304_0506_0708);
        b.write_u8(31, 0xAB);
        assert_eq!(b.read_u64(3), 0x0102_0304_0506_0708);
        assert_eq!(b.read_u8(3), 0x08);
        let b = b.realloc(4096);
        assert_eq!(b.read_u64(3), 0x0102_0304_0506_0708);
        assert_eq!(b.read_u8(31), 0xAB);
        b.free();
    }

    #[test]
    fn zero_filled_is_all_zero() {
        // Dirty a block first so that a reused one would show stale bytes.
        let mut d = Block::alloc(4096);
        for off in (0..4096).step_by(8) {
            d.write_u64(off, u64::MAX);
        }
        d.free();
        let b = Block::alloc_zero_filled(4096);
        assert!((0..4096).step_by(8).all(|off| b.read_u64(off) == 0));
        b.free();
    }
}
