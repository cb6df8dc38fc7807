//! # hakmem-bigcache: reuse of freed large mappings (≥ 2 MiB)
//!
//! Role: will keep freed direct mappings for reuse, keyed by size class (and later by call
//! site), bounded by a byte budget and evicted by age, so that a reallocation of a big block
//! avoids both the `mmap` and the page faults of touching fresh memory. Until it does, large
//! blocks are mapped and unmapped by `hakmem_core::large` on every malloc and free; this crate
//! exports nothing yet.
//!
//! Invariants it will keep: a cached mapping is handed out at most once; the hit path takes no
//! global lock; cached bytes never exceed the budget; memory returned to callers of `calloc` is
//! zeroed (a cached mapping is not fresh, unlike a new one).
#![no_std]
