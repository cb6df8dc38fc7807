//! One size class's slots: a fixed array of atomic words, each empty, reserved or holding one
//! cached mapping. Every transition is a single compare-and-swap on the slot's word, so two
//! threads can never both take the same mapping, and no lock is held anywhere.
//!
//! A slot word packs the mapping's chunk index (its base >> [`CHUNK_SHIFT`], 25 bits, never 0)
//! with the low [`SEQ_BITS`] bits of the put's sequence number:
//!
//! ```text
//!  63            39 38                         0
//! [ base >> 22    |  put sequence (mod 2^39)   ]     0 = empty, BUSY = being filled
//! ```
//!
//! The sequence gives the LRU order (the oldest put has the smallest sequence) and makes every
//! word unique, so a scanner that picked a victim by its word and then swaps that exact word
//! out can never remove a different put of the same mapping (no ABA).
//!
//! States of a slot and who moves it:
//! - `0 → BUSY` (CAS, by a putter), then the putter writes `put_ms` and publishes the word with
//!   a release store: `BUSY → word`.
//! - `word → 0` (CAS, by a taker, an evictor or the trimmer): whoever wins owns the mapping.
//!
//! The structure does no system call and reads no clock: callers pass the time, and the loom
//! model (`loom_tests`) drives it directly.
// Under loom only the models use this module (the cache itself is not compiled).
#![cfg_attr(loom, allow(dead_code))]

use hakmem_core::map::{ADDRESS_BITS, CHUNK_SHIFT, CHUNK_SIZE};
use hakmem_core::sync::{AtomicU64, Ordering};

/// Bits of the put sequence kept in a slot word.
pub(crate) const SEQ_BITS: u32 = (64 - (ADDRESS_BITS - CHUNK_SHIFT)) as u32;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// A slot reserved by a putter that is still writing its metadata (chunk index 0: never a
/// live word, since no mapping starts at address 0).
const BUSY: u64 = 1;
const EMPTY: u64 = 0;

/// True when `base` can be stored in a slot word: non-null, chunk-aligned, below 2^47.
#[inline]
pub(crate) fn packable(base: usize) -> bool {
    base != 0 && base.is_multiple_of(CHUNK_SIZE) && base >> ADDRESS_BITS == 0
}

#[inline]
fn pack(base: usize, seq: u64) -> u64 {
    debug_assert!(packable(base));
    (((base >> CHUNK_SHIFT) as u64) << SEQ_BITS) | (seq & SEQ_MASK)
}

#[inline]
fn base_of(w: u64) -> usize {
    ((w >> SEQ_BITS) as usize) << CHUNK_SHIFT
}

#[inline]
fn is_live(w: u64) -> bool {
    w >> SEQ_BITS != 0
}

/// True when the put with sequence `a` came before the put with sequence `b` (both taken
/// modulo 2^39: correct while the live entries span fewer than 2^38 puts, i.e. always, since
/// entries age out within seconds).
#[inline]
pub(crate) fn older(a: u64, b: u64) -> bool {
    let d = b.wrapping_sub(a) & SEQ_MASK;
    d != 0 && d < 1 << (SEQ_BITS - 1)
}

/// The sequence number of a live slot word.
#[inline]
pub(crate) fn seq_of(w: u64) -> u64 {
    w & SEQ_MASK
}

/// The slots of one size class.
#[repr(align(64))]
pub(crate) struct Shard<const N: usize> {
    words: [AtomicU64; N],
    /// When each slot's entry was put (ms), written before its word is published.
    put_ms: [AtomicU64; N],
}

impl<const N: usize> Shard<N> {
    /// All slots empty.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Shard {
            words: [const { AtomicU64::new(EMPTY) }; N],
            put_ms: [const { AtomicU64::new(0) }; N],
        }
    }
    /// All slots empty.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Shard {
            words: core::array::from_fn(|_| AtomicU64::new(EMPTY)),
            put_ms: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Stores `base` (which must be [`packable`]) in an empty slot, stamped with the put's
    /// sequence number and time. False when every slot is occupied (or being filled).
    pub(crate) fn insert(&self, base: usize, seq: u64, now_ms: u64) -> bool {
        let word = pack(base, seq);
        for (w, t) in self.words.iter().zip(&self.put_ms) {
            if w.load(Ordering::Relaxed) == EMPTY
                && w.compare_exchange(EMPTY, BUSY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // The slot is ours until the word is published: nobody else writes `t`.
                t.store(now_ms, Ordering::Release);
                w.store(word, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// Takes the most recently put entry whose base is a multiple of `align` (a power of two).
    /// The caller owns the returned base.
    pub(crate) fn take_newest(&self, align: usize) -> Option<usize> {
        loop {
            let mut best: Option<(usize, u64)> = None;
            for (i, w) in self.words.iter().enumerate() {
                let v = w.load(Ordering::Relaxed);
                if is_live(v)
                    && base_of(v) & (align - 1) == 0
                    && best.is_none_or(|(_, b)| older(seq_of(b), seq_of(v)))
                {
                    best = Some((i, v));
                }
            }
            let (i, v) = best?;
            if self.remove(i, v) {
                return Some(base_of(v));
            }
            // Another thread changed that slot first: look again.
        }
    }

    /// The oldest live entry, as `(slot, word)` for [`Shard::remove`].
    pub(crate) fn oldest(&self) -> Option<(usize, u64)> {
        let mut best: Option<(usize, u64)> = None;
        for (i, w) in self.words.iter().enumerate() {
            let v = w.load(Ordering::Relaxed);
            if is_live(v) && best.is_none_or(|(_, b)| older(seq_of(v), seq_of(b))) {
                best = Some((i, v));
            }
        }
        best
    }

    /// Takes the entry of slot `i` if its word is still `word`. True: the caller owns
    /// `base_of(word)`.
    pub(crate) fn remove(&self, i: usize, word: u64) -> bool {
        is_live(word)
            && self.words[i]
                .compare_exchange(word, EMPTY, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Takes the first entry for which `pred(put_ms)` holds (the time is read consistently with
    /// the entry: if a newer put refilled the slot meanwhile, the swap fails).
    pub(crate) fn take_where(&self, pred: impl Fn(u64) -> bool) -> Option<usize> {
        for (i, (w, t)) in self.words.iter().zip(&self.put_ms).enumerate() {
            let v = w.load(Ordering::Acquire);
            if is_live(v) && pred(t.load(Ordering::Acquire)) && self.remove(i, v) {
                return Some(base_of(v));
            }
        }
        None
    }

    /// The number of live entries (a snapshot).
    pub(crate) fn count(&self) -> usize {
        self.words
            .iter()
            .filter(|w| is_live(w.load(Ordering::Relaxed)))
            .count()
    }
}

/// The base of a live slot word (for the cache's LRU scan).
#[inline]
pub(crate) fn word_base(w: u64) -> usize {
    base_of(w)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const C: usize = CHUNK_SIZE;

    #[test]
    fn packing_round_trips() {
        for base in [C, 7 * C, (1 << ADDRESS_BITS) - C] {
            for seq in [0, 1, SEQ_MASK, SEQ_MASK + 5] {
                let w = pack(base, seq);
                assert!(is_live(w));
                assert_ne!(w, BUSY);
                assert_eq!(base_of(w), base);
                assert_eq!(seq_of(w), seq & SEQ_MASK);
            }
        }
        assert!(!packable(0));
        assert!(!packable(C + 4096));
        assert!(!packable(1 << ADDRESS_BITS));
        assert!(!is_live(BUSY) && !is_live(EMPTY));
    }

    #[test]
    fn sequence_order_wraps() {
        assert!(older(1, 2));
        assert!(!older(2, 1));
        assert!(!older(5, 5));
        assert!(older(SEQ_MASK, 0), "order survives the wrap");
        assert!(older(SEQ_MASK - 3, 10));
        assert!(!older(10, SEQ_MASK - 3));
    }

    #[test]
    fn slots_fill_take_and_order() {
        let s = Shard::<3>::new();
        assert!(s.insert(C, 10, 0));
        assert!(s.insert(2 * C, 11, 0));
        assert!(s.insert(4 * C, 12, 0));
        assert!(!s.insert(8 * C, 13, 0), "full");
        assert_eq!(s.count(), 3);
        let (i, w) = s.oldest().unwrap();
        assert_eq!(word_base(w), C);
        // Alignment: only 4C and 8C-aligned bases fit align 4C; the newest such is 4C.
        assert_eq!(s.take_newest(4 * C), Some(4 * C));
        assert_eq!(s.take_newest(4 * C), None);
        assert!(s.remove(i, w));
        assert!(!s.remove(i, w), "a word is removed once");
        assert_eq!(s.take_newest(C), Some(2 * C));
        assert_eq!(s.take_newest(C), None);
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn take_where_reads_put_time() {
        let s = Shard::<4>::new();
        assert!(s.insert(C, 1, 100));
        assert!(s.insert(2 * C, 2, 300));
        assert_eq!(s.take_where(|t| t < 200), Some(C));
        assert_eq!(s.take_where(|t| t < 200), None);
        assert_eq!(s.take_where(|_| true), Some(2 * C));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;
    use std::vec::Vec;

    const A: usize = CHUNK_SIZE;
    const B: usize = 2 * CHUNK_SIZE;

    /// Everything left in the shard plus everything the threads took must be exactly the
    /// mappings put, each once.
    fn check_conserved(s: &Shard<2>, mut got: Vec<usize>, put: &[usize]) {
        while let Some(b) = s.take_where(|_| true) {
            got.push(b);
        }
        got.sort_unstable();
        let mut want = put.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "a mapping was lost or handed out twice");
    }

    #[test]
    fn loom_two_puts_two_takes() {
        loom::model(|| {
            let s = Arc::new(Shard::<2>::new());
            let s1 = s.clone();
            let t1 = thread::spawn(move || {
                assert!(s1.insert(A, 1, 0));
                s1.take_newest(CHUNK_SIZE)
            });
            let s2 = s.clone();
            let t2 = thread::spawn(move || {
                assert!(s2.insert(B, 2, 0));
                s2.take_newest(CHUNK_SIZE)
            });
            let mut got = Vec::new();
            got.extend(t1.join().unwrap());
            got.extend(t2.join().unwrap());
            check_conserved(&s, got, &[A, B]);
        });
    }

    #[test]
    fn loom_take_races_evict_and_put() {
        loom::model(|| {
            let s = Arc::new(Shard::<2>::new());
            assert!(s.insert(A, 1, 0));
            // A taker.
            let s1 = s.clone();
            let t1 = thread::spawn(move || s1.take_newest(CHUNK_SIZE));
            // An evictor: picks the oldest entry, then swaps that exact word out.
            let s2 = s.clone();
            let t2 = thread::spawn(move || {
                let (i, w) = s2.oldest()?;
                s2.remove(i, w).then(|| word_base(w))
            });
            // And a putter, meanwhile.
            assert!(s.insert(B, 2, 0));
            let mut got = Vec::new();
            got.extend(t1.join().unwrap());
            got.extend(t2.join().unwrap());
            check_conserved(&s, got, &[A, B]);
        });
    }

    /// The trimmer reads an entry's put time consistently with the entry: it never releases a
    /// newer put that refilled the slot (the ABA the sequence stamps rule out).
    #[test]
    fn loom_trim_never_takes_a_newer_put() {
        loom::model(|| {
            let s = Arc::new(Shard::<2>::new());
            assert!(s.insert(A, 1, 0));
            // Takes A (old), puts B (new), possibly into the same slot.
            let s1 = s.clone();
            let t1 = thread::spawn(move || {
                let got = s1.take_newest(CHUNK_SIZE);
                assert!(s1.insert(B, 2, 5));
                got
            });
            // Releases whatever was put before time 5.
            let trimmed = s.take_where(|t| t < 5);
            assert!(trimmed.is_none_or(|b| b == A), "a new entry was trimmed");
            let mut got = Vec::new();
            got.extend(t1.join().unwrap());
            got.extend(trimmed);
            check_conserved(&s, got, &[A, B]);
        });
    }
}
