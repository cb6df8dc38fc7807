//! The data the bench harness produces: raw per-run samples, the per-cell results that
//! go into the JSON record, and the pure step from one to the other (statistics and
//! run-by-run ratios).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::stats::{is_unstable, median, paired_ratio, spread, summarize};

/// One run of one workload under one allocator.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSample {
    /// The metric from the RESULT line; `None` when the run failed.
    pub value: Option<f64>,
    pub peak_rss_kb: Option<f64>,
    pub page_faults: Option<f64>,
    pub cpu_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub error: Option<String>,
    pub hakmem_stats: Option<Map<String, Value>>,
    /// For hakmem rows: `Some(true)` when the stats line proves hakmem served.
    pub served_by_hakmem: Option<bool>,
}

/// All runs of one (workload, allocator) cell, before statistics.
#[derive(Debug, Clone, Default)]
pub struct CellRaw {
    pub workload: String,
    pub allocator: String,
    /// True for `hakmem` and every `hakmem[...]` row.
    pub is_hakmem: bool,
    pub threads: u64,
    pub metric: String,
    pub higher_is_better: bool,
    pub env: BTreeMap<String, String>,
    pub args: Vec<String>,
    /// Indexed by repetition, so that run `i` of two cells ran back to back.
    pub runs: Vec<RunSample>,
}

/// One element of the record's `results` array.
#[derive(Debug, Clone, Serialize)]
pub struct CellResult {
    pub workload: String,
    pub allocator: String,
    pub threads: u64,
    pub metric: String,
    pub higher_is_better: bool,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Run-to-run spread of the metric, `max / min - 1` over the successful runs (`null`
    /// with fewer than two, or when it is infinite: a zero run next to a non-zero one).
    pub spread: Option<f64>,
    /// The spread exceeds [`crate::stats::UNSTABLE_SPREAD`] (20%): the median may not
    /// repeat, nor the ratios computed with it.
    pub unstable: bool,
    /// Median peak RSS over the runs, KiB.
    pub peak_rss_kb: Option<f64>,
    /// Median of minor + major page faults.
    pub page_faults: Option<f64>,
    /// Median user + system CPU seconds.
    pub cpu_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub rss_min_kb: Option<f64>,
    pub rss_max_kb: Option<f64>,
    pub faults_min: Option<f64>,
    pub faults_max: Option<f64>,
    /// Raw metric per repetition (`null` for a failed run).
    pub runs: Vec<Option<f64>>,
    pub rss_runs_kb: Vec<Option<f64>>,
    pub fault_runs: Vec<Option<f64>>,
    /// On hakmem rows: peer -> median of the per-run oriented ratios (> 1: hakmem better).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ratio_vs: BTreeMap<String, f64>,
    /// On hakmem rows: the stats line of the last successful run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hakmem_stats: Option<Map<String, Value>>,
    /// On hakmem rows: whether every run proved hakmem served; `null` on peer rows.
    pub served_by_hakmem: Option<bool>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl CellResult {
    /// A cell is OK when every run produced a value and, on hakmem rows, every run
    /// proved hakmem served.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
            && !self.runs.is_empty()
            && self.runs.iter().all(Option::is_some)
            && self.served_by_hakmem != Some(false)
    }
}

fn col(runs: &[RunSample], f: impl Fn(&RunSample) -> Option<f64>) -> Vec<Option<f64>> {
    runs.iter().map(f).collect()
}

fn present(v: &[Option<f64>]) -> Vec<f64> {
    v.iter().flatten().copied().collect()
}

/// Statistics of one cell without ratios.
fn summarize_cell(c: &CellRaw) -> CellResult {
    let values = col(&c.runs, |r| r.value);
    let rss = col(&c.runs, |r| r.peak_rss_kb);
    let faults = col(&c.runs, |r| r.page_faults);
    let s = summarize(&present(&values));
    let sp = spread(&present(&values));
    let rs = summarize(&present(&rss));
    let fs = summarize(&present(&faults));
    let errors = c
        .runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.error.as_ref().map(|e| format!("run {i}: {e}")))
        .collect();
    let served = c
        .is_hakmem
        .then(|| !c.runs.is_empty() && c.runs.iter().all(|r| r.served_by_hakmem == Some(true)));
    CellResult {
        workload: c.workload.clone(),
        allocator: c.allocator.clone(),
        threads: c.threads,
        metric: c.metric.clone(),
        higher_is_better: c.higher_is_better,
        median: s.map(|s| s.median),
        min: s.map(|s| s.min),
        max: s.map(|s| s.max),
        spread: sp.filter(|x| x.is_finite()),
        unstable: is_unstable(sp),
        peak_rss_kb: rs.map(|s| s.median),
        page_faults: fs.map(|s| s.median),
        cpu_s: median(&present(&col(&c.runs, |r| r.cpu_s))),
        wall_s: median(&present(&col(&c.runs, |r| r.wall_s))),
        rss_min_kb: rs.map(|s| s.min),
        rss_max_kb: rs.map(|s| s.max),
        faults_min: fs.map(|s| s.min),
        faults_max: fs.map(|s| s.max),
        runs: values,
        rss_runs_kb: rss,
        fault_runs: faults,
        ratio_vs: BTreeMap::new(),
        hakmem_stats: c.runs.iter().rev().find_map(|r| r.hakmem_stats.clone()),
        served_by_hakmem: served,
        args: c.args.clone(),
        env: c.env.clone(),
        errors,
    }
}

/// Turns raw cells into results: statistics per cell, and on every hakmem row the
/// run-by-run ratio against every non-hakmem row of the same workload (and, for
/// `hakmem[...]` variants, against the plain `hakmem` row as well).
pub fn finalize(cells: &[CellRaw]) -> Vec<CellResult> {
    let mut out: Vec<CellResult> = cells.iter().map(summarize_cell).collect();
    for (i, h) in cells.iter().enumerate() {
        if !h.is_hakmem {
            continue;
        }
        // A run that did not prove hakmem served measured some other malloc: no ratio.
        let hv = col(&h.runs, |r| {
            if r.served_by_hakmem == Some(false) {
                None
            } else {
                r.value
            }
        });
        for p in cells.iter().filter(|p| p.workload == h.workload) {
            let compare = !p.is_hakmem || (p.allocator == "hakmem" && h.allocator != "hakmem");
            if !compare {
                continue;
            }
            let pv = col(&p.runs, |r| r.value);
            if let Some(r) = paired_ratio(&hv, &pv, h.higher_is_better) {
                out[i].ratio_vs.insert(p.allocator.clone(), r);
            }
        }
    }
    out
}

/// One configuration of the ablation study, summarised against `minimal`.
#[derive(Debug, Clone, Serialize)]
pub struct AblationRow {
    pub workload: String,
    pub config: String,
    pub env: BTreeMap<String, String>,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub runs: Vec<Option<f64>>,
    pub metric: String,
    /// Run-by-run ratio against the minimal configuration (> 1: this config is better).
    pub ratio_vs_minimal: Option<f64>,
    /// Median peak RSS of this config over that of minimal (< 1: uses less memory).
    pub rss_vs_minimal: Option<f64>,
    pub served_by_hakmem: Option<bool>,
}

/// Ablation summary: each config of a workload against that workload's `minimal` row.
pub fn ablation_rows(cells: &[CellRaw], minimal_name: &str) -> Vec<AblationRow> {
    cells
        .iter()
        .map(|c| {
            let s = summarize_cell(c);
            let base = cells
                .iter()
                .find(|b| b.workload == c.workload && b.allocator == minimal_name);
            let ratio = base.and_then(|b| {
                paired_ratio(
                    &col(&c.runs, |r| r.value),
                    &col(&b.runs, |r| r.value),
                    c.higher_is_better,
                )
            });
            let rss = base.and_then(|b| {
                let mine = median(&present(&col(&c.runs, |r| r.peak_rss_kb)))?;
                let theirs = median(&present(&col(&b.runs, |r| r.peak_rss_kb)))?;
                (theirs > 0.0).then(|| mine / theirs)
            });
            AblationRow {
                workload: c.workload.clone(),
                config: c.allocator.clone(),
                env: c.env.clone(),
                median: s.median,
                min: s.min,
                max: s.max,
                runs: s.runs.clone(),
                metric: c.metric.clone(),
                ratio_vs_minimal: ratio,
                rss_vs_minimal: rss,
                served_by_hakmem: s.served_by_hakmem,
            }
        })
        .collect()
}

/// Instructions per malloc+free pair from the two callgrind totals.
pub fn instructions_per_pair(ir_n: u64, ir_zero: u64, n: u64) -> Option<f64> {
    (n > 0 && ir_n >= ir_zero).then(|| (ir_n - ir_zero) as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: f64, rss: f64) -> RunSample {
        RunSample {
            value: Some(v),
            peak_rss_kb: Some(rss),
            page_faults: Some(rss / 4.0),
            cpu_s: Some(1.0),
            wall_s: Some(1.0),
            ..Default::default()
        }
    }

    fn hrun(v: f64, rss: f64, served: bool) -> RunSample {
        RunSample {
            served_by_hakmem: Some(served),
            ..run(v, rss)
        }
    }

    fn cell(w: &str, a: &str, runs: Vec<RunSample>) -> CellRaw {
        CellRaw {
            workload: w.into(),
            allocator: a.into(),
            is_hakmem: a.starts_with("hakmem"),
            threads: 1,
            metric: "ops_per_sec".into(),
            higher_is_better: true,
            runs,
            ..Default::default()
        }
    }

    #[test]
    fn finalize_stats_and_ratios() {
        let cells = vec![
            cell("w", "glibc", vec![run(100.0, 1000.0), run(50.0, 3000.0)]),
            cell(
                "w",
                "hakmem",
                vec![hrun(300.0, 800.0, true), hrun(100.0, 1200.0, true)],
            ),
            cell("w", "mimalloc", vec![run(300.0, 900.0), run(200.0, 900.0)]),
            cell("other", "glibc", vec![run(1.0, 1.0), run(1.0, 1.0)]),
        ];
        let r = finalize(&cells);
        assert_eq!(r.len(), 4);
        let g = &r[0];
        assert_eq!(g.median, Some(75.0));
        assert_eq!(g.min, Some(50.0));
        assert_eq!(g.max, Some(100.0));
        assert_eq!(g.peak_rss_kb, Some(2000.0));
        assert_eq!(g.served_by_hakmem, None);
        assert!(g.ratio_vs.is_empty());
        let h = &r[1];
        // vs glibc: 3.0 and 2.0 -> 2.5 ; vs mimalloc: 1.0 and 0.5 -> 0.75
        assert_eq!(h.ratio_vs["glibc"], 2.5);
        assert_eq!(h.ratio_vs["mimalloc"], 0.75);
        assert_eq!(h.ratio_vs.len(), 2, "no ratio against other workloads");
        assert_eq!(h.served_by_hakmem, Some(true));
        assert!(h.ok());
    }

    #[test]
    fn wide_spread_marks_a_cell_unstable() {
        let cells = vec![
            cell("w", "glibc", vec![run(100.0, 1.0), run(115.0, 1.0)]),
            cell(
                "w",
                "hakmem",
                vec![
                    hrun(14.0, 1.0, true),
                    hrun(60.0, 1.0, true),
                    hrun(30.0, 1.0, true),
                ],
            ),
            cell("w", "mimalloc", vec![run(0.0, 1.0), run(5.0, 1.0)]),
            cell("w", "jemalloc", vec![run(5.0, 1.0)]),
        ];
        let r = finalize(&cells);
        assert!(!r[0].unstable);
        assert!((r[0].spread.unwrap() - 0.15).abs() < 1e-12);
        assert!(r[1].unstable);
        assert!((r[1].spread.unwrap() - (60.0 / 14.0 - 1.0)).abs() < 1e-12);
        assert!(r[2].unstable, "a zero run next to a non-zero one");
        assert_eq!(
            r[2].spread, None,
            "infinite spread is not written as a number"
        );
        assert!(!r[3].unstable && r[3].spread.is_none(), "one run");
        // An unstable cell is still OK: it is marked, not failed.
        assert!(r[1].ok());
    }

    #[test]
    fn unserved_run_fails_the_cell() {
        let cells = vec![cell(
            "w",
            "hakmem",
            vec![hrun(1.0, 1.0, true), hrun(1.0, 1.0, false)],
        )];
        let r = finalize(&cells);
        assert_eq!(r[0].served_by_hakmem, Some(false));
        assert!(!r[0].ok());
    }

    #[test]
    fn unserved_runs_are_left_out_of_ratios() {
        let cells = vec![
            cell("w", "glibc", vec![run(100.0, 1.0), run(100.0, 1.0)]),
            cell(
                "w",
                "hakmem",
                vec![hrun(200.0, 1.0, true), hrun(900.0, 1.0, false)],
            ),
        ];
        let r = finalize(&cells);
        assert_eq!(r[1].ratio_vs["glibc"], 2.0);
        let cells = vec![
            cell("w", "glibc", vec![run(100.0, 1.0)]),
            cell("w", "hakmem", vec![hrun(900.0, 1.0, false)]),
        ];
        assert!(finalize(&cells)[1].ratio_vs.is_empty());
    }

    #[test]
    fn failed_run_is_recorded() {
        let mut bad = RunSample {
            error: Some("exit status 1".into()),
            ..Default::default()
        };
        bad.value = None;
        let cells = vec![cell("w", "glibc", vec![run(2.0, 1.0), bad])];
        let r = finalize(&cells);
        assert_eq!(r[0].runs, vec![Some(2.0), None]);
        assert_eq!(r[0].median, Some(2.0));
        assert_eq!(r[0].errors, vec!["run 1: exit status 1".to_string()]);
        assert!(!r[0].ok());
    }

    #[test]
    fn mode_rows_compare_to_plain_hakmem_too() {
        let cells = vec![
            cell("w", "glibc", vec![run(100.0, 1.0)]),
            cell("w", "hakmem", vec![hrun(200.0, 1.0, true)]),
            cell("w", "hakmem[fast]", vec![hrun(400.0, 1.0, true)]),
        ];
        let r = finalize(&cells);
        assert_eq!(r[1].ratio_vs.keys().collect::<Vec<_>>(), ["glibc"]);
        assert_eq!(r[2].ratio_vs["glibc"], 4.0);
        assert_eq!(r[2].ratio_vs["hakmem"], 2.0);
    }

    #[test]
    fn ablation_against_minimal() {
        let cells = vec![
            cell("w", "minimal", vec![hrun(100.0, 1000.0, true)]),
            cell("w", "+pool", vec![hrun(150.0, 500.0, true)]),
        ];
        let rows = ablation_rows(&cells, "minimal");
        assert_eq!(rows[0].ratio_vs_minimal, Some(1.0));
        assert_eq!(rows[1].ratio_vs_minimal, Some(1.5));
        assert_eq!(rows[1].rss_vs_minimal, Some(0.5));
    }

    #[test]
    fn instructions() {
        assert_eq!(
            instructions_per_pair(101_000_000, 1_000_000, 1_000_000),
            Some(100.0)
        );
        assert_eq!(instructions_per_pair(1, 2, 1_000_000), None);
        assert_eq!(instructions_per_pair(1, 0, 0), None);
    }
}
