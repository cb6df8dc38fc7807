//! Size classes of the Tiny tier (1..=1024 bytes).
//!
//! Classes are 8, then multiples of 16 (so every block of 16 bytes or more is 16-byte aligned,
//! as `max_align_t` requires), with four classes per doubling above 64. For every size above 64
//! the class wastes less than 25% of the request; at or below 64 the 16-byte quantum bounds the
//! waste to 15 bytes.

/// The largest size the Tiny tier serves.
pub const TINY_MAX: usize = 1024;

/// Block sizes of the Tiny classes, ascending.
pub const TINY_CLASSES: [u32; 21] = [
    8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896,
    1024,
];

/// Number of Tiny classes.
pub const TINY_CLASS_COUNT: usize = TINY_CLASSES.len();

/// Number of "word sizes" (`(size + 7) / 8`) for sizes `0..=TINY_MAX`.
pub const TINY_WSIZES: usize = TINY_MAX / 8 + 1;

/// Word size of a request: the index of the direct table.
#[inline(always)]
pub const fn wsize(size: usize) -> usize {
    (size + 7) >> 3
}

const fn build_wsize_table() -> [u8; TINY_WSIZES] {
    let mut t = [0u8; TINY_WSIZES];
    let mut w = 0;
    while w < TINY_WSIZES {
        let size = w * 8;
        let mut c = 0;
        while (TINY_CLASSES[c] as usize) < size {
            c += 1;
        }
        t[w] = c as u8;
        w += 1;
    }
    t
}

/// Class index by word size.
pub static CLASS_BY_WSIZE: [u8; TINY_WSIZES] = build_wsize_table();

/// The class index serving `size` (`size <= TINY_MAX`).
#[inline(always)]
pub fn tiny_class(size: usize) -> usize {
    CLASS_BY_WSIZE[wsize(size)] as usize
}

/// The smallest class that serves `size` with blocks aligned to `align` (a power of two), given
/// that slabs start on a 64 KiB boundary: the class size must be a multiple of `align`.
pub fn tiny_class_aligned(size: usize, align: usize) -> Option<usize> {
    let need = size.max(align);
    (tiny_class(need.min(TINY_MAX))..TINY_CLASS_COUNT).find(|&c| {
        TINY_CLASSES[c] as usize >= need && (TINY_CLASSES[c] as usize).is_multiple_of(align)
    })
}

/// The first and last word sizes mapping to class `c`.
pub fn wsize_range(c: usize) -> (usize, usize) {
    let first = if c == 0 {
        0
    } else {
        wsize(TINY_CLASSES[c - 1] as usize + 1)
    };
    (first, wsize(TINY_CLASSES[c] as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_fits_with_bounded_waste() {
        for size in 0..=TINY_MAX {
            let c = tiny_class(size);
            let bs = TINY_CLASSES[c] as usize;
            assert!(bs >= size, "size {size} class {bs}");
            if c > 0 {
                assert!(
                    (TINY_CLASSES[c - 1] as usize) < size,
                    "size {size} not in smallest class"
                );
            }
            if size > 64 {
                assert!(
                    (bs - size) * 4 < size,
                    "size {size} wastes {} in class {bs}",
                    bs - size
                );
            } else {
                assert!(bs - size <= 15 || size == 0, "size {size} class {bs}");
            }
            if size > 8 {
                assert_eq!(bs % 16, 0, "class {bs} breaks 16-byte alignment");
            }
        }
    }

    #[test]
    fn aligned_classes() {
        for align in [8usize, 16, 32, 64, 128, 256, 512, 1024] {
            for size in [1usize, 8, 17, 100, 300, 513, 1000, 1024] {
                let c = tiny_class_aligned(size, align).expect("a class exists");
                let bs = TINY_CLASSES[c] as usize;
                assert!(
                    bs >= size && bs.is_multiple_of(align),
                    "size {size} align {align} -> {bs}"
                );
            }
        }
    }

    #[test]
    fn wsize_ranges_cover_table() {
        for c in 0..TINY_CLASS_COUNT {
            let (a, b) = wsize_range(c);
            assert!(
                CLASS_BY_WSIZE[a..=b].iter().all(|&k| k as usize == c),
                "class {c}"
            );
        }
    }
}
