//! # hakmem-pool: the L2 and L2.5 pools (above 1 KiB up to 1 MiB)
//!
//! Role: will serve sizes above the Tiny tier — L2, 2–32 KiB, and L2.5, 64 KiB–1 MiB, with
//! bridge classes where a 2x step would waste more than ~25% — from per-thread caches in front of
//! shared page runs, implementing `hakmem_core::tier::Tier` under its own owner-map tag. Until it
//! does, those sizes are served by `hakmem_core::run` (page runs, one lock), which the facade
//! routes to directly; this crate exports nothing yet.
//!
//! Invariants it will keep (the same as every tier): no global lock on the fast path; ownership
//! found from the address through core's owner map; frees from other threads are lock-free;
//! nothing allocates on the malloc path; `malloc_usable_size` exact for every class.
#![no_std]
