//! Where each thread finds its heap of a slab tier: [`thread_heap!`](crate::thread_heap).
//!
//! On x86-64 the heap is a TLS symbol defined in assembly and read with the initial-exec model:
//! the thread pointer plus a link-time offset, two instructions and no call. Rust's
//! `thread_local!` in a shared library uses the general-dynamic model instead, a call to
//! `__tls_get_addr` on every access (its cost: docs/BENCHMARKS.md, "Figures behind design
//! choices"). The cost of initial-exec: the library takes static TLS space, which is
//! always available when it is loaded by `LD_PRELOAD` or linked into an executable; a late
//! `dlopen` of `libhakmem.so` may be refused by the loader. Elsewhere, `thread_local!`.
//!
//! The heap's initial image: every direct entry points at
//! [`EMPTY`](crate::heap::EMPTY), every other byte is zero — exactly
//! [`Heap::new`](crate::heap::Heap::new) (each tier checks it with
//! [`Heap::is_fresh`](crate::heap::Heap::is_fresh) in a test).

/// Defines `fn $name() -> &'static $heap`, this thread's heap of type `$heap` (a
/// `Heap<G, D, C>` with `$direct` = D direct entries), stored in TLS under the assembly symbol
/// `$sym` (which must be unique in the program).
#[macro_export]
macro_rules! thread_heap {
    ($vis:vis fn $name:ident() -> $heap:ty, $sym:literal, $direct:expr) => {
        #[cfg(target_arch = "x86_64")]
        ::core::arch::global_asm!(
            ".pushsection .tdata,\"awT\",@progbits",
            ".p2align 6",
            concat!(".globl ", $sym),
            concat!(".hidden ", $sym),
            concat!(".type ", $sym, ",@object"),
            concat!(".size ", $sym, ", {size}"),
            concat!($sym, ":"),
            ".rept {direct}",
            ".quad {empty}",
            ".endr",
            ".zero {size} - {direct} * 8",
            ".popsection",
            size = const ::core::mem::size_of::<$heap>(),
            direct = const $direct,
            empty = sym $crate::heap::EMPTY,
        );

        /// This thread's heap.
        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        $vis fn $name() -> &'static $heap {
            let p: *const $heap;
            // SAFETY: initial-exec TLS access: %fs:0 is the thread pointer, the GOT slot holds
            // the symbol's offset from it. The heap lives as long as the thread.
            unsafe {
                ::core::arch::asm!(
                    "mov {p}, qword ptr fs:[0]",
                    concat!("add {p}, qword ptr [rip + ", $sym, "@GOTTPOFF]"),
                    p = out(reg) p,
                    options(nostack, readonly, preserves_flags, pure),
                );
                &*p
            }
        }

        /// This thread's heap.
        #[cfg(not(target_arch = "x86_64"))]
        #[inline(always)]
        $vis fn $name() -> &'static $heap {
            ::std::thread_local! {
                // SAFETY: a thread-local: the thread's own, living as long as the thread.
                static HEAP: $heap = const { unsafe { <$heap>::new() } };
            }
            // SAFETY: the heap lives as long as the thread, and the reference never leaves it.
            HEAP.with(|h| unsafe { &*(h as *const $heap) })
        }
    };
}
