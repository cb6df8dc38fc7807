//! Text reports of the lifecycle and of the site table, and a stack buffer to format them into.
//!
//! Role: [`write_report`] prints the Elo leaderboard and the lifecycle history, and
//! [`write_sites`] the site table with its derived actions, to any [`core::fmt::Write`]. Inside
//! the allocator the target is a [`FixedBuf`] on the stack, whose bytes the caller hands to
//! `write(2)`.
//!
//! Invariants:
//! - No allocation: the writers only call `write_str`/`write_fmt` on the given target, and
//!   [`FixedBuf`] never grows: it keeps the longest prefix that fits, cut at a character
//!   boundary, so its contents are always valid UTF-8.
//! - Every line ends in `\n` and starts with [`ELO_PREFIX`] (lifecycle) or [`SITES_PREFIX`]
//!   (site table), so the lines can be grepped out of a mixed stderr.

use crate::evo::Evo;
use crate::sites::{RuleParams, SiteTable};
use core::fmt::{self, Write};

/// The prefix of every line of [`write_report`].
pub const ELO_PREFIX: &str = "hakmem-elo: ";
/// The prefix of every line of [`write_sites`].
pub const SITES_PREFIX: &str = "hakmem-sites: ";

/// A fixed-capacity text buffer implementing [`fmt::Write`] that truncates instead of failing
/// or growing.
pub struct FixedBuf<const CAP: usize> {
    buf: [u8; CAP],
    len: usize,
    truncated: bool,
}

impl<const CAP: usize> Default for FixedBuf<CAP> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CAP: usize> FixedBuf<CAP> {
    /// An empty buffer.
    pub const fn new() -> Self {
        FixedBuf {
            buf: [0; CAP],
            len: 0,
            truncated: false,
        }
    }

    /// The text written so far (a prefix of it, if something was cut).
    pub fn as_str(&self) -> &str {
        // Always valid: `write_str` only copies whole characters.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The capacity, `CAP`.
    pub const fn capacity(&self) -> usize {
        CAP
    }

    /// True if some text did not fit and was dropped.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Empties the buffer (and clears the truncation flag).
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }
}

impl<const CAP: usize> Write for FixedBuf<CAP> {
    /// Appends what fits of `s` (whole characters only) and always succeeds, so that a
    /// formatter keeps going and the buffer ends up with the longest prefix that fits.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = CAP - self.len;
        let mut n = s.len();
        if n > room {
            self.truncated = true;
            n = room;
            while !s.is_char_boundary(n) {
                n -= 1;
            }
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl<const CAP: usize> fmt::Debug for FixedBuf<CAP> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBuf")
            .field("text", &self.as_str())
            .field("truncated", &self.truncated)
            .finish()
    }
}

/// Writes the state line, the leaderboard (rank, name, rating rounded to an integer, games,
/// windows run, best first) and the lifecycle history (oldest first), one item per line, each
/// line prefixed with [`ELO_PREFIX`].
pub fn write_report<const N: usize>(
    out: &mut impl Write,
    evo: &Evo<N>,
    names: &[&str; N],
) -> fmt::Result {
    let p = ELO_PREFIX;
    let r = evo.ratings();
    let w = evo.winner();
    writeln!(
        out,
        "{p}phase={} learning={} winner={} windows={} ignored={}",
        evo.phase(),
        if evo.is_learning() { "on" } else { "off" },
        names[w],
        evo.windows(),
        evo.ignored_windows(),
    )?;
    writeln!(out, "{p}rank name rating games windows")?;
    for (rank, &i) in r.ranking().iter().enumerate() {
        writeln!(
            out,
            "{p}{} {} {:.0} {} {}{}",
            rank + 1,
            names[i],
            r.rating(i),
            r.games(i),
            evo.runs(i),
            if i == w { " *" } else { "" },
        )?;
    }
    let h = evo.history();
    writeln!(
        out,
        "{p}history: {} transitions, last {} shown",
        h.total(),
        h.len()
    )?;
    for t in h.iter() {
        writeln!(
            out,
            "{p}window {}: {} -> {} ({}) {}",
            t.window,
            t.from,
            t.to,
            t.reason,
            names.get(t.candidate).copied().unwrap_or("?"),
        )?;
    }
    Ok(())
}

/// Writes one line per site of `table` (address, allocations, bytes, live blocks, mean
/// lifetime, reuses, cross-thread frees, action under `params`), then one for the overflow
/// slot, each line prefixed with [`SITES_PREFIX`].
pub fn write_sites<const CAP: usize>(
    out: &mut impl Write,
    table: &SiteTable<CAP>,
    params: &RuleParams,
) -> fmt::Result {
    let p = SITES_PREFIX;
    writeln!(
        out,
        "{p}site allocs bytes live mean_life_ms reused cross_frees action"
    )?;
    for (site, s) in table.iter() {
        write!(out, "{p}{site:#x} {} {} {} ", s.allocs, s.bytes, s.live())?;
        match s.mean_lifetime_ms() {
            Some(ms) => write!(out, "{ms}")?,
            None => out.write_str("-")?,
        }
        writeln!(
            out,
            " {} {} {}",
            s.reused,
            s.cross_thread_frees,
            s.action(params).name()
        )?;
    }
    let o = table.overflow();
    writeln!(
        out,
        "{p}overflow allocs={} frees={} bytes={}",
        o.allocs, o.frees, o.bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evo::{EvoParams, Phase};
    use crate::window::Window;

    const NAMES: [&str; 4] = ["base", "eager", "lazy", "hybrid"];

    fn frozen_on_2() -> Evo<4> {
        let mut evo: Evo<4> = Evo::new(EvoParams::default());
        let mut c = evo.current();
        let mut i = 0u64;
        while evo.phase() == Phase::Learn {
            let tput = if c == 2 {
                200_000
            } else {
                100_000 + 1000 * c as u64
            };
            let mut w = Window::new(tput, 1_000_000_000, 500 + i % 7, 100 << 20);
            w.size_hist[3] = 100;
            c = evo.on_window(&w);
            i += 1;
        }
        evo
    }

    #[test]
    fn report_into_fixed_buf() {
        let evo = frozen_on_2();
        let mut buf = FixedBuf::<4096>::new();
        write_report(&mut buf, &evo, &NAMES).unwrap();
        assert!(!buf.is_truncated());
        let text = buf.as_str();
        std::println!("{text}");
        let lines: std::vec::Vec<&str> = text.lines().collect();
        assert!(text.ends_with('\n'));
        assert!(lines.iter().all(|l| l.starts_with(ELO_PREFIX)), "{text}");
        assert_eq!(
            lines[0],
            std::format!(
                "hakmem-elo: phase=FROZEN learning=on winner=lazy windows={} ignored=0",
                evo.windows()
            )
        );
        assert_eq!(lines[1], "hakmem-elo: rank name rating games windows");
        // Leaderboard: the winner first, marked, with its rounded rating.
        let r2 = evo.ratings().rating(2);
        let want = std::format!(
            "hakmem-elo: 1 lazy {r2:.0} {} {} *",
            evo.ratings().games(2),
            evo.runs(2)
        );
        assert_eq!(lines[2], want);
        for name in NAMES {
            assert!(lines[2..6].iter().any(|l| l.contains(name)), "{name}");
        }
        assert!(lines[5].starts_with("hakmem-elo: 4 "));
        assert_eq!(lines[6], "hakmem-elo: history: 2 transitions, last 2 shown");
        assert!(
            lines[7].ends_with("LEARN -> LEARN (warmup) lazy"),
            "{}",
            lines[7]
        );
        assert!(
            lines[8].ends_with("LEARN -> FROZEN (stable) lazy"),
            "{}",
            lines[8]
        );
        assert_eq!(lines.len(), 9);
    }

    #[test]
    fn report_of_a_fresh_and_an_off_lifecycle() {
        let mut buf = FixedBuf::<1024>::new();
        write_report(&mut buf, &Evo::<4>::default(), &NAMES).unwrap();
        assert!(
            buf.as_str().starts_with(
                "hakmem-elo: phase=LEARN learning=on winner=base windows=0 ignored=0\n"
            )
        );
        assert!(buf.as_str().contains("hakmem-elo: 1 base 1500 0 0 *\n"));
        assert!(
            buf.as_str()
                .ends_with("history: 0 transitions, last 0 shown\n")
        );
        buf.clear();
        write_report(&mut buf, &Evo::<4>::frozen_at(1), &NAMES).unwrap();
        assert!(
            buf.as_str()
                .starts_with("hakmem-elo: phase=FROZEN learning=off winner=eager")
        );
    }

    #[test]
    fn report_truncates() {
        let evo = frozen_on_2();
        let mut full = FixedBuf::<4096>::new();
        write_report(&mut full, &evo, &NAMES).unwrap();
        let mut small = FixedBuf::<100>::new();
        assert!(write_report(&mut small, &evo, &NAMES).is_ok());
        assert!(small.is_truncated());
        assert_eq!(small.len(), 100);
        assert_eq!(small.as_str(), &full.as_str()[..100]);
    }

    #[test]
    fn fixed_buf_truncates_at_char_boundaries() {
        let mut b = FixedBuf::<8>::new();
        assert!(b.is_empty());
        assert_eq!(b.capacity(), 8);
        write!(b, "abc").unwrap();
        assert_eq!((b.as_str(), b.is_truncated()), ("abc", false));
        // "é" is 2 bytes, "€" 3: "abcéé" is 7 bytes, the "€" does not fit.
        write!(b, "éé€x").unwrap();
        assert_eq!(b.as_str(), "abcéé");
        assert_eq!(b.len(), 7);
        assert!(b.is_truncated());
        write!(b, "z").unwrap();
        assert_eq!(b.as_str(), "abcééz");
        write!(b, "more").unwrap();
        assert_eq!(b.as_bytes(), "abcééz".as_bytes());
        b.clear();
        assert!(b.is_empty() && !b.is_truncated());
        let mut z = FixedBuf::<0>::new();
        write!(z, "anything").unwrap();
        assert_eq!(z.as_str(), "");
        assert!(z.is_truncated());
        assert_eq!(
            std::format!("{z:?}"),
            "FixedBuf { text: \"\", truncated: true }"
        );
    }

    #[test]
    fn sites_report() {
        let t: SiteTable<8> = SiteTable::new();
        for _ in 0..10 {
            t.record_alloc(0xabc0, 3 << 20);
            t.record_free(0xabc0, 3 << 20, 12, false);
        }
        t.record_alloc(0xdef0, 5 << 20);
        let mut buf = FixedBuf::<1024>::new();
        write_sites(&mut buf, &t, &RuleParams::default()).unwrap();
        let text = buf.as_str();
        assert!(text.lines().all(|l| l.starts_with(SITES_PREFIX)), "{text}");
        assert!(
            text.contains("hakmem-sites: 0xabc0 10 31457280 0 12 9 0 default\n"),
            "{text}"
        );
        assert!(
            text.contains("hakmem-sites: 0xdef0 1 5242880 1 - 0 0 default\n"),
            "{text}"
        );
        assert!(text.ends_with("hakmem-sites: overflow allocs=0 frees=0 bytes=0\n"));
        assert_eq!(text.lines().count(), 4);
    }
}
