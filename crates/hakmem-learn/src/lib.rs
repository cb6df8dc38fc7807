//! # hakmem-learn: Site Rules, ELO ratings and the EVO lifecycle, off the hot path
//!
//! Role: the pure decision logic of hakmem's learning layer. The allocator (on a background
//! thread or amortised on slow paths) measures *windows* — operations, CPU time, page faults,
//! RSS and the size mix while one candidate policy ran — and feeds them here; this crate rates
//! the candidates with Elo, runs the LEARN → FROZEN → CANARY lifecycle, and derives
//! per-call-site rules from sampled call-site statistics. Publishing a decision as the policy
//! snapshot the hot path reads is the caller's job.
//!
//! Modules:
//! - [`window`]: one measurement [`Window`], the pairwise [`composite`] score (40% throughput,
//!   30% page faults per op, 30% RSS) and the size-mix [`shift`] (total-variation distance).
//! - [`elo`]: [`Ratings`] (standard Elo, epsilon-greedy [`Ratings::pick`]) and the [`Rng`]
//!   (xorshift64*).
//! - [`evo`]: the lifecycle state machine [`Evo`] with its [`EvoParams`], [`Phase`]s and a
//!   [`History`] of the last 32 [`Transition`]s.
//! - [`sites`]: the lock-free, fixed-capacity call-site table [`SiteTable`] and the rules
//!   (the policy's [`SiteRule`]s, [`SiteAction`]) derived from it.
//! - [`report`]: the leaderboard and lifecycle report ([`write_report`]) and [`FixedBuf`], a
//!   truncating stack buffer to format it into.
//! - [`math`]: `exp2`/`pow10` for `no_std` (Elo needs `10^x`).
//!
//! Invariants:
//! - Nothing here runs per malloc/free call: the lifecycle is fed once per window, and the site
//!   table is meant for sampled allocations only.
//! - Nothing here allocates, takes a lock, or needs `std`: every structure has a fixed size
//!   (const generics), so it can live in static or stack memory inside the allocator. The only
//!   shared structure, [`SiteTable`], is lock-free (atomics from `hakmem_core::sync`, so it
//!   builds under loom too).
//! - Work per window is bounded: `O(N)` for `N` candidates, `O(16)` per histogram.
//! - A frozen policy costs nothing: with learning off, [`Evo::on_window`] only counts.
//! - No `unsafe` code.
//!
//! ```
//! use hakmem_learn::{Evo, EvoParams, FixedBuf, Phase, Window, write_report};
//!
//! // Three candidate policies; the allocator starts with the one `current()` names.
//! static NAMES: [&str; 3] = ["small-cache", "big-cache", "no-cache"];
//! let mut evo: Evo<3> = Evo::new(EvoParams::DEFAULT);
//! let mut running = evo.current();
//! for _ in 0..20 {
//!     // ... run `running` for a window and measure it ...
//!     let ops = if running == 1 { 300_000 } else { 100_000 };
//!     let mut w = Window::new(ops, 1_000_000_000, 1_000, 64 << 20);
//!     w.record_size(3 << 20);
//!     running = evo.on_window(&w);
//! }
//! assert_eq!((evo.phase(), evo.winner()), (Phase::Frozen, 1));
//!
//! let mut buf = FixedBuf::<2048>::new();
//! write_report(&mut buf, &evo, &NAMES).unwrap();
//! assert!(buf.as_str().lines().all(|l| l.starts_with("hakmem-elo: ")));
//! ```
#![no_std]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod elo;
pub mod evo;
pub mod math;
pub mod report;
pub mod sites;
pub mod window;

pub use elo::{Ratings, Rng, expected};
pub use evo::{Evo, EvoParams, History, Phase, Reason, Transition};
pub use report::{FixedBuf, write_report, write_sites};
pub use sites::{RuleParams, SiteAction, SiteRule, SiteStats, SiteTable};
pub use window::{Window, composite, shift, size_bucket};
