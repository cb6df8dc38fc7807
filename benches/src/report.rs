//! The final `RESULT {json}` line (hand-written JSON: every field is a number or a
//! fixed ASCII name, so no serializer is needed).

use std::fmt::Write;

/// A numeric JSON value.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    U(u64),
    F(f64),
}

impl From<usize> for Num {
    fn from(v: usize) -> Self {
        Num::U(v as u64)
    }
}

impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num::U(v)
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::F(v)
    }
}

fn write_num(out: &mut String, n: Num) {
    match n {
        Num::U(u) => write!(out, "{u}").unwrap(),
        // JSON has no NaN/inf; a zero-length run cannot produce them, but stay valid.
        Num::F(f) if !f.is_finite() => out.push('0'),
        Num::F(f) => write!(out, "{f}").unwrap(),
    }
}

/// What the RESULT line's `value` is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// `ops_per_sec`: ops over the measured (wall-clock) seconds.
    OpsPerSec,
    /// `ops_per_cpu_sec`: ops over the CPU time (user + system, all threads) the process
    /// spent in the measured period; for workloads whose wall time is mostly sleep.
    OpsPerCpuSec { cpu_seconds: f64 },
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::OpsPerSec => "ops_per_sec",
            Metric::OpsPerCpuSec { .. } => "ops_per_cpu_sec",
        }
    }
}

fn rate(ops: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        ops as f64 / seconds
    } else {
        0.0
    }
}

/// What a workload measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub workload: &'static str,
    pub threads: usize,
    pub ops: u64,
    pub seconds: f64,
    pub metric: Metric,
    /// What one op is, for the human-readable line.
    pub op_means: &'static str,
    pub params: Vec<(&'static str, Num)>,
}

impl Report {
    /// Ops per (wall-clock) second.
    pub fn ops_per_sec(&self) -> f64 {
        rate(self.ops, self.seconds)
    }

    /// The RESULT line's `value`, per [`Self::metric`].
    pub fn value(&self) -> f64 {
        match self.metric {
            Metric::OpsPerSec => self.ops_per_sec(),
            Metric::OpsPerCpuSec { cpu_seconds } => rate(self.ops, cpu_seconds),
        }
    }

    /// Human-readable summary line.
    pub fn human(&self) -> String {
        let cpu = match self.metric {
            Metric::OpsPerSec => String::new(),
            Metric::OpsPerCpuSec { cpu_seconds } => {
                format!(
                    " cpu_seconds={cpu_seconds:.4} ops/cpu-s={:.1}",
                    self.value()
                )
            }
        };
        format!(
            "{}: threads={} ops={} seconds={:.3} ops/s={:.1}{cpu} (op = {})",
            self.workload,
            self.threads,
            self.ops,
            self.seconds,
            self.ops_per_sec(),
            self.op_means
        )
    }

    /// The machine-readable line: `RESULT {json}`, with the process's peak RSS when known.
    pub fn result_line(&self, peak_rss_kb: Option<u64>) -> String {
        let mut s = String::with_capacity(256);
        write!(
            s,
            "RESULT {{\"workload\":\"{}\",\"threads\":{},\"metric\":\"{}\",\"value\":",
            self.workload,
            self.threads,
            self.metric.name()
        )
        .unwrap();
        write_num(&mut s, Num::F((self.value() * 10.0).round() / 10.0));
        write!(
            s,
            ",\"higher_is_better\":true,\"ops\":{},\"seconds\":",
            self.ops
        )
        .unwrap();
        write_num(&mut s, Num::F((self.seconds * 1e6).round() / 1e6));
        if let Some(kb) = peak_rss_kb {
            write!(s, ",\"peak_rss_kb\":{kb}").unwrap();
        }
        s.push_str(",\"params\":{");
        for (i, (k, v)) in self.params.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            write!(s, "\"{k}\":").unwrap();
            write_num(&mut s, *v);
        }
        s.push_str("}}");
        s
    }
}

/// This process's peak resident set (`VmHWM` in `/proc/self/status`, KiB): the high-water mark of
/// this program's own memory since its `exec`. (A parent's `wait4` reports `ru_maxrss`, which
/// also counts the image the child had before its `exec` — a copy of the parent — so a small
/// workload run by a bigger parent reads as the parent's size.)
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's resource usage so far (`getrusage(RUSAGE_SELF)`: all its threads, the
/// live ones and those already joined or exited).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    pub minor_faults: u64,
    pub major_faults: u64,
}

impl Usage {
    pub fn now() -> Usage {
        // SAFETY: rusage is plain data; getrusage only writes it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a local; RUSAGE_SELF cannot fail.
        let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        assert_eq!(r, 0, "getrusage(RUSAGE_SELF) failed");
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Usage {
            cpu_seconds: tv(ru.ru_utime) + tv(ru.ru_stime),
            minor_faults: ru.ru_minflt as u64,
            major_faults: ru.ru_majflt as u64,
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Usage) -> Usage {
        Usage {
            cpu_seconds: (self.cpu_seconds - earlier.cpu_seconds).max(0.0),
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
            major_faults: self.major_faults.saturating_sub(earlier.major_faults),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_format() {
        let r = Report {
            workload: "larson",
            threads: 4,
            ops: 1000,
            seconds: 0.5,
            metric: Metric::OpsPerSec,
            op_means: "x",
            params: vec![("min", 8usize.into()), ("target_seconds", 0.3.into())],
        };
        assert_eq!(
            r.result_line(None),
            "RESULT {\"workload\":\"larson\",\"threads\":4,\"metric\":\"ops_per_sec\",\
             \"value\":2000,\"higher_is_better\":true,\"ops\":1000,\"seconds\":0.5,\
             \"params\":{\"min\":8,\"target_seconds\":0.3}}"
        );
        assert!(
            r.result_line(Some(5120))
                .contains(",\"seconds\":0.5,\"peak_rss_kb\":5120,\"params\":")
        );
    }

    #[test]
    fn cpu_metric_divides_by_cpu_time() {
        let r = Report {
            workload: "prodcons",
            threads: 2,
            ops: 1000,
            seconds: 2.0,
            metric: Metric::OpsPerCpuSec { cpu_seconds: 0.25 },
            op_means: "x",
            params: vec![],
        };
        assert_eq!(r.ops_per_sec(), 500.0);
        assert_eq!(r.value(), 4000.0);
        assert!(
            r.result_line(None).starts_with(
                "RESULT {\"workload\":\"prodcons\",\"threads\":2,\
                 \"metric\":\"ops_per_cpu_sec\",\"value\":4000,"
            ),
            "{}",
            r.result_line(None)
        );
        assert!(
            r.human()
                .contains("ops/s=500.0 cpu_seconds=0.2500 ops/cpu-s=4000.0")
        );
        let zero = Report {
            metric: Metric::OpsPerCpuSec { cpu_seconds: 0.0 },
            ..r
        };
        assert_eq!(zero.value(), 0.0);
    }

    #[test]
    fn usage_grows_with_work() {
        let a = Usage::now();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        // Burn CPU until getrusage shows 20 ms more (or give up after 10 s of wall time).
        while Usage::now().since(a).cpu_seconds < 0.02 && t.elapsed().as_secs() < 10 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(Usage::now().since(a).cpu_seconds >= 0.02);
        assert_eq!(Usage::default().since(Usage::now()), Usage::default());
    }
}
