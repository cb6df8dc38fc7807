//! # hakmem-learn: Site Rules, ELO ratings and the EVO lifecycle, off the hot path
//!
//! Role: will profile call sites by sampling, rate candidate policies (thresholds, cache caps,
//! purge delay) with Elo from windowed measurements, and run the LEARN → FROZEN → CANARY
//! lifecycle — on a background thread or amortised on slow paths — publishing its decisions as
//! an immutable policy snapshot the hot path reads at most once per call. This crate exports
//! nothing yet; hakmem runs with its fixed default policy.
//!
//! Invariants it will keep: nothing here runs per malloc/free call; nothing here is reachable
//! from inside malloc's own allocation path; a frozen policy costs nothing.
#![no_std]
