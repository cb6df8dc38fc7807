//! This thread's Tiny heap: initial-exec TLS on x86-64 (two instructions, no call), see
//! `hakmem_slab::tls`.

use crate::TinyHeap;
use crate::class::TINY_WSIZES;

hakmem_slab::thread_heap!(pub fn heap() -> TinyHeap, "hakmem_tiny_tls_heap", TINY_WSIZES);

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use hakmem_slab::heap::EMPTY;

    /// A brand-new thread's heap must be exactly the state `Heap::new()` describes: every direct
    /// entry on EMPTY, every other byte zero.
    #[test]
    fn tls_image_is_a_fresh_heap() {
        // SAFETY: the heap is only inspected, never allocated from (nothing registers it).
        assert!(unsafe { TinyHeap::new() }.is_fresh());
        let bytes = std::thread::spawn(|| {
            let h = heap();
            assert!(h.is_fresh());
            let p = h as *const TinyHeap as *const u8;
            // SAFETY: reading the bytes of this thread's live heap.
            unsafe { core::slice::from_raw_parts(p, core::mem::size_of::<TinyHeap>()).to_vec() }
        })
        .join()
        .unwrap();
        let empty = (&EMPTY as *const hakmem_slab::meta::Slab as usize).to_ne_bytes();
        for (i, chunk) in bytes[..TINY_WSIZES * 8].chunks(8).enumerate() {
            assert_eq!(chunk, empty, "direct[{i}]");
        }
        assert!(bytes[TINY_WSIZES * 8..].iter().all(|&b| b == 0));
    }
}
