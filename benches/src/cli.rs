//! Command line: `hakmem-bench <workload> [--threads N] [--seconds F] [--seed N]
//! [--min BYTES] [--max BYTES] [--slots N] [--rounds N] [--quick]`.
//!
//! `--rounds` means: `larson`, `larson-orig`: steps per thread = rounds × `--slots` before
//! a successor takes over (default 1 and 100); `big-replace`: the number of replacements
//! per thread (default 2000, 200 with `--quick`); ignored by the other workloads.

use std::fmt;

/// The workloads, by their command-line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Larson,
    Slots,
    RandomMixed,
    TinyHot,
    MidMt,
    Large,
    Big,
    Xthread,
    ReallocGrow,
    Churn,
    Phased,
    BigReplace,
    Prodcons,
    LarsonOrig,
}

impl Workload {
    pub const ALL: [Workload; 14] = [
        Workload::Larson,
        Workload::Slots,
        Workload::RandomMixed,
        Workload::TinyHot,
        Workload::MidMt,
        Workload::Large,
        Workload::Big,
        Workload::Xthread,
        Workload::ReallocGrow,
        Workload::Churn,
        Workload::Phased,
        Workload::BigReplace,
        Workload::Prodcons,
        Workload::LarsonOrig,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Larson => "larson",
            Workload::Slots => "slots",
            Workload::RandomMixed => "random-mixed",
            Workload::TinyHot => "tiny-hot",
            Workload::MidMt => "mid-mt",
            Workload::Large => "large",
            Workload::Big => "big",
            Workload::Xthread => "xthread",
            Workload::ReallocGrow => "realloc-grow",
            Workload::Churn => "churn",
            Workload::Phased => "phased",
            Workload::BigReplace => "big-replace",
            Workload::Prodcons => "prodcons",
            Workload::LarsonOrig => "larson-orig",
        }
    }

    fn from_name(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }

    /// Defaults: (threads, min, max, slots). `tiny-hot` uses `min` as its only size;
    /// `phased` uses them for its phase 1 (its phase 2 is fixed, see `workloads::phased`).
    fn defaults(self) -> (usize, usize, usize, usize) {
        const K: usize = 1024;
        const M: usize = 1024 * 1024;
        match self {
            Workload::Larson | Workload::Slots => (4, 8, 1024, 10_000),
            Workload::RandomMixed => (1, 16, 1040, 8192),
            Workload::TinyHot => (1, 16, 16, 100),
            Workload::MidMt => (4, 2 * K, 32 * K, 2000),
            Workload::Large => (1, 64 * K, M, 64),
            Workload::Big => (1, 2 * M, 64 * M, 8),
            Workload::Xthread => (4, 16, 512, 64),
            Workload::ReallocGrow => (1, 16, M, 8),
            Workload::Churn => (4, 16, 2048, 1000),
            Workload::Phased => (1, 12 * M, 20 * M, 24),
            Workload::BigReplace => (1, 5 * M, 25 * M, 20),
            Workload::Prodcons => (2, 8, 16_000, 1000),
            // The original program's compiled-in size range (min_size=10, max_size=500).
            Workload::LarsonOrig => (4, 10, 500, 1000),
        }
    }

    /// `--rounds` default: `larson`, `larson-orig`: steps per thread = rounds × slots;
    /// `big-replace`: the number of replacements per thread (count-bounded, not timed).
    fn default_rounds(self, quick: bool) -> usize {
        match (self, quick) {
            (Workload::LarsonOrig, _) => 100,
            (Workload::BigReplace, false) => 2000,
            (Workload::BigReplace, true) => 200,
            _ => 1,
        }
    }

    /// Measured seconds under `--quick`: [`QUICK_SECONDS`], except for the workloads whose
    /// rate swings several-fold from run to run in 0.3 s: `big` and `phased` (a few slow ops
    /// on 2..64 MiB blocks, and 0.3 s is mostly the warm-up of the allocator's cache of
    /// freed mappings) and `prodcons` (about 200 rounds per thread in 0.3 s, and a CPU time
    /// of 0.05..0.15 s to divide by; its threads mostly sleep, so the longer run costs
    /// little CPU).
    fn quick_seconds(self) -> f64 {
        match self {
            Workload::Big | Workload::Phased | Workload::Prodcons => QUICK_SECONDS_SLOW,
            _ => QUICK_SECONDS,
        }
    }

    /// `--slots` default under `--quick` (only the workloads that touch 100s of MiB shrink).
    fn quick_slots(self) -> Option<usize> {
        match self {
            Workload::Big => Some(4),
            Workload::Phased => Some(8),
            _ => None,
        }
    }

    /// `--min`/`--max` defaults under `--quick`, where they differ from [`Self::defaults`].
    fn quick_sizes(self) -> Option<(usize, usize)> {
        const M: usize = 1024 * 1024;
        match self {
            Workload::Phased => Some((4 * M, 8 * M)),
            _ => None,
        }
    }
}

/// Default measured duration in seconds, and under `--quick`.
pub const DEFAULT_SECONDS: f64 = 2.0;
pub const QUICK_SECONDS: f64 = 0.3;
/// `--quick` duration of the workloads with few, slow ops (see `Workload::quick_seconds`).
pub const QUICK_SECONDS_SLOW: f64 = 1.5;
pub const DEFAULT_SEED: u64 = 12345;

/// Fully resolved parameters of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub workload: Workload,
    pub threads: usize,
    pub seconds: f64,
    pub seed: u64,
    pub min: usize,
    pub max: usize,
    pub slots: usize,
    /// `larson`, `larson-orig`: each thread makes `rounds × slots` steps, then a successor
    /// takes over. `big-replace`: replacements per thread (the run is count-bounded).
    pub rounds: usize,
    pub quick: bool,
}

/// Why the command line was rejected (exit code 2), or a request for help (exit 0).
#[derive(Debug, PartialEq)]
pub enum CliError {
    Help,
    Usage(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help => f.write_str("help requested"),
            CliError::Usage(m) => f.write_str(m),
        }
    }
}

pub fn usage() -> String {
    let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
    format!(
        "usage: hakmem-bench <workload> [--threads N] [--seconds F] [--seed N] \
         [--min BYTES] [--max BYTES] [--slots N] [--rounds N] [--quick]\n\
         workloads: {}\n\
         BYTES accepts a k/m/g suffix (KiB/MiB/GiB). See benches/README.md.",
        names.join(", ")
    )
}

fn usage_err(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

fn parse_count(opt: &str, v: &str) -> Result<usize, CliError> {
    v.parse::<usize>()
        .map_err(|_| usage_err(format!("{opt}: expected a non-negative integer, got {v:?}")))
}

/// Parses a byte count with an optional k/m/g (binary) suffix.
pub fn parse_bytes(opt: &str, v: &str) -> Result<usize, CliError> {
    let lower = v.to_ascii_lowercase();
    let lower = lower
        .strip_suffix("ib")
        .or(lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, mult) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 1usize << 10),
        Some(b'm') => (&lower[..lower.len() - 1], 1 << 20),
        Some(b'g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| usage_err(format!("{opt}: expected a byte count, got {v:?}")))
}

/// Parses the arguments (without the program name).
pub fn parse<I, S>(args: I) -> Result<Config, CliError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut workload = None;
    let mut threads = None;
    let mut seconds = None;
    let mut seed = None;
    let mut min = None;
    let mut max = None;
    let mut slots = None;
    let mut rounds = None;
    let mut quick = false;

    let mut it = args.into_iter().map(|s| s.as_ref().to_owned());
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Err(CliError::Help);
        }
        if arg == "--quick" {
            quick = true;
            continue;
        }
        if let Some(opt) = arg.strip_prefix("--") {
            let (name, inline) = match opt.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (opt.to_owned(), None),
            };
            let flag = format!("--{name}");
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .ok_or_else(|| usage_err(format!("{flag} needs a value")))?,
            };
            match name.as_str() {
                "threads" => threads = Some(parse_count(&flag, &value)?),
                "seconds" => {
                    let s: f64 = value.parse().map_err(|_| {
                        usage_err(format!("{flag}: expected seconds, got {value:?}"))
                    })?;
                    seconds = Some(s);
                }
                "seed" => {
                    seed = Some(value.parse::<u64>().map_err(|_| {
                        usage_err(format!("{flag}: expected an integer, got {value:?}"))
                    })?)
                }
                "min" => min = Some(parse_bytes(&flag, &value)?),
                "max" => max = Some(parse_bytes(&flag, &value)?),
                "slots" => slots = Some(parse_count(&flag, &value)?),
                "rounds" => rounds = Some(parse_count(&flag, &value)?),
                _ => return Err(usage_err(format!("unknown option {flag}"))),
            }
            continue;
        }
        if arg.starts_with('-') {
            return Err(usage_err(format!("unknown option {arg}")));
        }
        if workload.is_some() {
            return Err(usage_err(format!("unexpected argument {arg:?}")));
        }
        workload = Some(
            Workload::from_name(&arg)
                .ok_or_else(|| usage_err(format!("unknown workload {arg:?}")))?,
        );
    }

    let workload = workload.ok_or_else(|| usage_err("missing <workload>"))?;
    let (d_threads, d_min, d_max, d_slots) = workload.defaults();
    let threads = threads.unwrap_or(d_threads);
    let seconds = seconds.unwrap_or(if quick {
        workload.quick_seconds()
    } else {
        DEFAULT_SECONDS
    });
    let (d_min, d_max) = match (quick, workload.quick_sizes()) {
        (true, Some(q)) => q,
        _ => (d_min, d_max),
    };
    let min = min.unwrap_or(d_min);
    let max = if workload == Workload::TinyHot {
        min // one size only
    } else {
        max.unwrap_or(d_max)
    };
    let slots = slots.unwrap_or(match (quick, workload.quick_slots()) {
        (true, Some(q)) => q,
        _ => d_slots,
    });

    if threads == 0 {
        return Err(usage_err("--threads must be at least 1"));
    }
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(usage_err("--seconds must be a positive number"));
    }
    if min == 0 {
        return Err(usage_err("--min must be at least 1 byte"));
    }
    if min > max {
        return Err(usage_err(format!(
            "--min ({min}) is larger than --max ({max})"
        )));
    }
    if slots == 0 {
        return Err(usage_err("--slots must be at least 1"));
    }
    let rounds = rounds.unwrap_or(workload.default_rounds(quick));
    if rounds == 0 {
        return Err(usage_err("--rounds must be at least 1"));
    }
    if workload == Workload::ReallocGrow && min >= max {
        return Err(usage_err("realloc-grow needs --min < --max"));
    }
    if workload == Workload::LarsonOrig {
        let reach = crate::rng::Lran2::MAX as usize;
        if slots > reach || max - min > reach {
            return Err(usage_err(format!(
                "larson-orig draws slots and sizes with lran2 (0..{reach}): \
                 --slots and --max - --min must be at most {reach}"
            )));
        }
    }
    if workload == Workload::Prodcons && threads < 2 {
        return Err(usage_err(
            "prodcons needs --threads of at least 2 (each frees what another allocated)",
        ));
    }
    Ok(Config {
        workload,
        threads,
        seconds,
        seed: seed.unwrap_or(DEFAULT_SEED),
        min,
        max,
        slots,
        rounds,
        quick,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = parse(["larson"]).unwrap();
        assert_eq!(
            c,
            Config {
                workload: Workload::Larson,
                threads: 4,
                seconds: 2.0,
                seed: 12345,
                min: 8,
                max: 1024,
                slots: 10_000,
                rounds: 1,
                quick: false,
            }
        );
        let q = parse(["big", "--quick"]).unwrap();
        assert_eq!((q.seconds, q.slots), (QUICK_SECONDS_SLOW, 4));
        let p = parse(["phased"]).unwrap();
        assert_eq!(
            (p.threads, p.min, p.max, p.slots),
            (1, 12 << 20, 20 << 20, 24)
        );
        let p = parse(["phased", "--quick"]).unwrap();
        assert_eq!((p.min, p.max, p.slots), (4 << 20, 8 << 20, 8));
        let p = parse(["phased", "--quick", "--max", "5m"]).unwrap();
        assert_eq!((p.min, p.max), (4 << 20, 5 << 20));
    }

    #[test]
    fn new_workload_defaults() {
        let b = parse(["big-replace"]).unwrap();
        assert_eq!(
            (b.threads, b.min, b.max, b.slots, b.rounds),
            (1, 5 << 20, 25 << 20, 20, 2000)
        );
        let b = parse(["big-replace", "--quick"]).unwrap();
        assert_eq!(
            (b.min, b.max, b.slots, b.rounds),
            (5 << 20, 25 << 20, 20, 200)
        );
        let b = parse(["big-replace", "--quick", "--rounds", "7"]).unwrap();
        assert_eq!(b.rounds, 7);

        let p = parse(["prodcons"]).unwrap();
        assert_eq!(
            (p.threads, p.min, p.max, p.slots, p.seconds),
            (2, 8, 16_000, 1000, DEFAULT_SECONDS)
        );
        assert_eq!(
            parse(["prodcons", "--quick"]).unwrap().seconds,
            QUICK_SECONDS_SLOW
        );

        let l = parse(["larson-orig"]).unwrap();
        assert_eq!(
            (l.threads, l.min, l.max, l.slots, l.rounds, l.seed),
            (4, 10, 500, 1000, 100, 12345)
        );
        // mimalloc-bench's `larson 5 8 1000 5000 100 4141 4`, spelled out.
        let m = parse([
            "larson-orig",
            "--seconds",
            "5",
            "--min",
            "8",
            "--max",
            "1000",
            "--slots",
            "5000",
            "--rounds",
            "100",
            "--seed",
            "4141",
            "--threads",
            "4",
        ])
        .unwrap();
        assert_eq!(
            (
                m.seconds, m.min, m.max, m.slots, m.rounds, m.seed, m.threads
            ),
            (5.0, 8, 1000, 5000, 100, 4141, 4)
        );
        // `larson` keeps its own defaults.
        assert_eq!(parse(["larson"]).unwrap().rounds, 1);
    }

    #[test]
    fn quick_seconds_per_workload() {
        for (w, want) in [
            ("big", QUICK_SECONDS_SLOW),
            ("phased", QUICK_SECONDS_SLOW),
            ("prodcons", QUICK_SECONDS_SLOW),
            ("big-replace", QUICK_SECONDS),
            ("larson", QUICK_SECONDS),
            ("larson-orig", QUICK_SECONDS),
            ("slots", QUICK_SECONDS),
        ] {
            assert_eq!(parse([w, "--quick"]).unwrap().seconds, want, "{w}");
            assert_eq!(parse([w]).unwrap().seconds, DEFAULT_SECONDS, "{w}");
        }
        assert_eq!(
            parse(["big", "--quick", "--seconds", "0.2"])
                .unwrap()
                .seconds,
            0.2
        );
    }

    #[test]
    fn options_both_spellings() {
        let c = parse([
            "--threads",
            "2",
            "mid-mt",
            "--seconds=0.5",
            "--seed",
            "7",
            "--min",
            "4k",
            "--max=1m",
            "--slots",
            "10",
        ])
        .unwrap();
        assert_eq!(c.workload, Workload::MidMt);
        assert_eq!((c.threads, c.seed, c.slots), (2, 7, 10));
        assert_eq!((c.min, c.max), (4096, 1 << 20));
        assert_eq!(c.seconds, 0.5);
    }

    #[test]
    fn tiny_hot_uses_min_as_size() {
        let c = parse(["tiny-hot", "--min", "256"]).unwrap();
        assert_eq!((c.min, c.max), (256, 256));
    }

    #[test]
    fn every_workload_name_parses() {
        for w in Workload::ALL {
            assert_eq!(parse([w.name(), "--quick"]).unwrap().workload, w);
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            parse::<[&str; 0], &str>([]),
            Err(CliError::Usage(_))
        ));
        assert!(parse(["nope"]).is_err());
        assert!(parse(["larson", "--threads", "0"]).is_err());
        assert!(parse(["larson", "--min", "2000"]).is_err());
        assert!(parse(["larson", "--bogus", "1"]).is_err());
        assert!(parse(["larson", "--seconds"]).is_err());
        assert!(parse(["larson", "--rounds", "0"]).is_err());
        assert!(parse(["larson", "--seconds", "-1"]).is_err());
        assert!(parse(["prodcons", "--threads", "1"]).is_err());
        assert!(parse(["prodcons", "--threads", "3"]).is_ok());
        assert!(parse(["larson-orig", "--slots", "714025"]).is_ok());
        assert!(parse(["larson-orig", "--slots", "714026"]).is_err());
        assert!(parse(["larson-orig", "--max", "1m"]).is_err());
        assert!(parse(["larson-orig", "--min", "600"]).is_err());
        assert!(parse(["big-replace", "--rounds", "0"]).is_err());
        assert_eq!(parse(["--help"]), Err(CliError::Help));
    }
}
