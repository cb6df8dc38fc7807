//! Where each thread finds its heap.
//!
//! On x86-64 the heap is a TLS symbol defined in assembly and read with the initial-exec model:
//! the thread pointer plus a link-time offset, two instructions and no call. Rust's
//! `thread_local!` in a shared library uses the general-dynamic model instead, a call to
//! `__tls_get_addr` costing ~11 instructions per access, measured with callgrind on a
//! malloc/free loop. The cost of initial-exec: the library takes static TLS space, which is
//! always available when it is loaded by `LD_PRELOAD` or linked into an executable; a late
//! `dlopen` of `libhakmem.so` may be refused by the loader. Elsewhere, `thread_local!`.
//!
//! The heap's initial image: every direct entry points at [`EMPTY`], every other byte is zero
//! (checked against [`Heap::new`] by a test).

use crate::TinyHeap as Heap;
#[cfg(target_arch = "x86_64")]
use hakmem_core::class::TINY_WSIZES;
#[cfg(target_arch = "x86_64")]
use hakmem_core::slab::heap::EMPTY;

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .tdata,\"awT\",@progbits",
    ".p2align 6",
    ".globl hakmem_tiny_tls_heap",
    ".hidden hakmem_tiny_tls_heap",
    ".type hakmem_tiny_tls_heap,@object",
    ".size hakmem_tiny_tls_heap, {size}",
    "hakmem_tiny_tls_heap:",
    ".rept {wsizes}",
    ".quad {empty}",
    ".endr",
    ".zero {size} - {wsizes} * 8",
    ".popsection",
    size = const core::mem::size_of::<Heap>(),
    wsizes = const TINY_WSIZES,
    empty = sym EMPTY,
);

/// This thread's heap.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn heap() -> &'static Heap {
    let p: *const Heap;
    // SAFETY: initial-exec TLS access: %fs:0 is the thread pointer, the GOT slot holds the
    // symbol's offset from it. The heap lives as long as the thread and never leaves it.
    unsafe {
        core::arch::asm!(
            "mov {p}, qword ptr fs:[0]",
            "add {p}, qword ptr [rip + hakmem_tiny_tls_heap@GOTTPOFF]",
            p = out(reg) p,
            options(nostack, readonly, preserves_flags, pure),
        );
        &*p
    }
}

#[cfg(not(target_arch = "x86_64"))]
std::thread_local! {
    static HEAP: Heap = const { Heap::new() };
}

/// This thread's heap.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn heap() -> &'static Heap {
    // SAFETY: the heap lives as long as the thread, and the reference never leaves it.
    HEAP.with(|h| unsafe { &*(h as *const Heap) })
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use hakmem_core::class::TINY_WSIZES;

    /// A brand-new thread's heap must be exactly the state `Heap::new()` describes: every direct
    /// entry on EMPTY, every other byte zero.
    #[test]
    fn tls_image_is_a_fresh_heap() {
        assert!(Heap::new().is_fresh());
        let bytes = std::thread::spawn(|| {
            let h = heap();
            assert!(h.is_fresh());
            let p = h as *const Heap as *const u8;
            // SAFETY: reading the bytes of this thread's live heap.
            unsafe { core::slice::from_raw_parts(p, core::mem::size_of::<Heap>()).to_vec() }
        })
        .join()
        .unwrap();
        let empty = (&EMPTY as *const hakmem_core::slab::meta::Slab as usize).to_ne_bytes();
        for (i, chunk) in bytes[..TINY_WSIZES * 8].chunks(8).enumerate() {
            assert_eq!(chunk, empty, "direct[{i}]");
        }
        assert!(bytes[TINY_WSIZES * 8..].iter().all(|&b| b == 0));
    }
}
