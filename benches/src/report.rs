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

/// What a workload measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub workload: &'static str,
    pub threads: usize,
    pub ops: u64,
    pub seconds: f64,
    /// What one op is, for the human-readable line.
    pub op_means: &'static str,
    pub params: Vec<(&'static str, Num)>,
}

impl Report {
    /// Ops per second.
    pub fn value(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Human-readable summary line.
    pub fn human(&self) -> String {
        format!(
            "{}: threads={} ops={} seconds={:.3} ops/s={:.1} (op = {})",
            self.workload,
            self.threads,
            self.ops,
            self.seconds,
            self.value(),
            self.op_means
        )
    }

    /// The machine-readable line: `RESULT {json}`, with the process's peak RSS when known.
    pub fn result_line(&self, peak_rss_kb: Option<u64>) -> String {
        let mut s = String::with_capacity(256);
        write!(
            s,
            "RESULT {{\"workload\":\"{}\",\"threads\":{},\"metric\":\"ops_per_sec\",\"value\":",
            self.workload, self.threads
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
}
