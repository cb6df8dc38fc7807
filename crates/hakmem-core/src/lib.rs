//! # hakmem-core: the page source and everything the tiers share
//!
//! Role: what every layer needs. Obtains memory from the OS in chunk-aligned segments
//! ([`segment`], [`os`]) through a [`segment::PageSource`], records which tier owns each 4 MiB
//! chunk in the address → owner map ([`map`]), reads the configuration ([`config`], changed at
//! run time through [`tunables`]), keeps the counters ([`stats`]), gives freed memory back by one policy ([`purge`], run in the background by
//! [`purger`]), and serves what the slab tiers do not: page runs ([`run`]) for the sizes and
//! alignments up to 1 MiB the facade does not give the pools and for big blocks up to 64 MiB,
//! and direct mappings for the rest ([`large`], with an optional [`large::MappingCache`] in
//! front); sampled blocks go to guard pages that catch overflows and uses after free
//! ([`guard`]). The slab engine (`hakmem-slab`) and the tiers built on it sit above this crate,
//! which names none of them: they plug in as [`tier::Tier`] entries of the facade's tag table,
//! [`purge::Purgeable`] targets of the purge passes, and [`segment::PageSource`] users.
//!
//! Invariants:
//! - Every mapping hakmem makes starts on a chunk boundary and its chunks carry one owner tag,
//!   so `free(p)` finds the owner of `p` with one load from the map, for any `p`.
//! - Nothing here allocates through a global allocator, takes a lock libc might hold, or does
//!   `std` I/O: this code runs inside `malloc`. Diagnostics go through [`diag`] (stack buffers,
//!   `write(2)`).
//! - All state is `const`-initialised: the first call may come before `main` or TLS set-up.
//! - Concurrency primitives come from [`sync`] (std normally, loom under `cfg(loom)`).
#![no_std]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod config;
pub mod diag;
#[cfg(not(loom))]
pub mod guard;
#[cfg(not(loom))]
pub mod large;
pub mod map;
pub mod os;
pub mod policy;
#[cfg(not(loom))]
pub mod purge;
#[cfg(not(loom))]
pub mod purger;
#[cfg(not(loom))]
pub mod run;
#[cfg(not(loom))]
pub mod segment;
pub mod stats;
pub mod sync;
#[cfg(not(loom))]
pub mod tier;
pub mod tunables;
