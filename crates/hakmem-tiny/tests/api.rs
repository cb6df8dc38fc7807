//! hakmem-tiny's public API on its own, without the facade.

use hakmem_core::map::tag_of;
use hakmem_tiny::TAG as TAG_TINY;

/// `alloc` is safe for every size: Tiny's sizes give blocks of the tier, larger ones null.
#[test]
fn alloc_serves_tiny_sizes_and_refuses_the_rest() {
    for size in [0, 1, 8, 24, 100, 1000, 1024] {
        let p = hakmem_tiny::alloc(size);
        assert!(!p.is_null() && tag_of(p) == TAG_TINY, "alloc({size})");
        // SAFETY: a live Tiny block, freed once.
        unsafe {
            assert!(hakmem_tiny::usable_size(p) >= size.max(1));
            hakmem_tiny::free(p);
        }
    }
    for size in [1025, 4096, 1 << 20, usize::MAX] {
        assert!(hakmem_tiny::alloc(size).is_null(), "alloc({size})");
    }
}

/// `alloc_aligned` serves power-of-two alignments up to `MAX_ALIGN` and refuses the rest.
#[test]
fn alloc_aligned_refuses_what_tiny_cannot_align() {
    for (size, align) in [(16, 16), (100, 64), (1, 128), (1024, 128)] {
        let p = hakmem_tiny::alloc_aligned(size, align);
        assert!(
            !p.is_null() && (p as usize).is_multiple_of(align),
            "{size}, {align}"
        );
        // SAFETY: a live Tiny block, freed once.
        unsafe { hakmem_tiny::free(p) };
    }
    for (size, align) in [
        (16, 0),
        (16, 3),
        (48, 24),
        (16, 256),
        (1025, 16),
        (usize::MAX, 8),
    ] {
        assert!(
            hakmem_tiny::alloc_aligned(size, align).is_null(),
            "{size}, {align}"
        );
    }
}
