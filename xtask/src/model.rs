//! The data the bench harness produces: raw per-run samples, the per-cell results that
//! go into the JSON record, and the pure step from one to the other (statistics and
//! run-by-run ratios).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::stats::{geomean, is_unstable, median, oriented_ratio, paired_ratio, summarize};

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
    /// What a real program reported beside its figure (per-test rates, output checks).
    pub detail: Option<Map<String, Value>>,
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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
    pub cpu_min_s: Option<f64>,
    pub cpu_max_s: Option<f64>,
    pub wall_min_s: Option<f64>,
    pub wall_max_s: Option<f64>,
    pub rss_min_kb: Option<f64>,
    pub rss_max_kb: Option<f64>,
    pub faults_min: Option<f64>,
    pub faults_max: Option<f64>,
    /// Raw metric per repetition (`null` for a failed run).
    pub runs: Vec<Option<f64>>,
    pub rss_runs_kb: Vec<Option<f64>>,
    pub fault_runs: Vec<Option<f64>>,
    pub cpu_runs_s: Vec<Option<f64>>,
    /// Per run, what a real program reported beside its figure; absent for the workloads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Option<Map<String, Value>>>,
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
    let cpu = col(&c.runs, |r| r.cpu_s);
    let s = summarize(&present(&values));
    let sp = crate::stats::spread(&present(&values));
    let rs = summarize(&present(&rss));
    let fs = summarize(&present(&faults));
    let cs = summarize(&present(&cpu));
    let ws = summarize(&present(&col(&c.runs, |r| r.wall_s)));
    let details: Vec<Option<Map<String, Value>>> =
        c.runs.iter().map(|r| r.detail.clone()).collect();
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
        cpu_s: cs.map(|s| s.median),
        wall_s: ws.map(|s| s.median),
        cpu_min_s: cs.map(|s| s.min),
        cpu_max_s: cs.map(|s| s.max),
        wall_min_s: ws.map(|s| s.min),
        wall_max_s: ws.map(|s| s.max),
        rss_min_kb: rs.map(|s| s.min),
        rss_max_kb: rs.map(|s| s.max),
        faults_min: fs.map(|s| s.min),
        faults_max: fs.map(|s| s.max),
        runs: values,
        rss_runs_kb: rss,
        fault_runs: faults,
        cpu_runs_s: cpu,
        details: if details.iter().any(Option::is_some) {
            details
        } else {
            Vec::new()
        },
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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

/// A median with the range and the number of runs behind it.
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn spread(
    median: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    runs: &[Option<f64>],
) -> Option<Spread> {
    Some(Spread {
        median: median?,
        min: min?,
        max: max?,
        n: runs.iter().flatten().count(),
    })
}

/// The oriented ratio of two medians (> 1: `h` better) and whether the two min–max ranges
/// are apart, which takes at least two runs on each side.
fn compare(h: Option<Spread>, p: Option<Spread>, higher_is_better: bool) -> (Option<f64>, bool) {
    let (Some(h), Some(p)) = (h, p) else {
        return (None, false);
    };
    let apart = h.n >= 2 && p.n >= 2 && (h.max < p.min || p.max < h.min);
    (oriented_ratio(h.median, p.median, higher_is_better), apart)
}

/// A hakmem row of a real program against one other row of it: ratios of the medians,
/// each oriented so that > 1 means hakmem is better, and whether the min–max ranges of
/// the runs are apart (the difference is beyond the spread).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AppVsPeer {
    pub app: String,
    pub hakmem_row: String,
    pub peer: String,
    pub metric: String,
    pub figure_ratio: Option<f64>,
    pub figure_apart: bool,
    /// Peer CPU seconds over hakmem's.
    pub cpu_ratio: Option<f64>,
    pub cpu_apart: bool,
    /// Peer peak RSS over hakmem's.
    pub rss_ratio: Option<f64>,
    pub rss_apart: bool,
}

fn cpu_spread(r: &CellResult) -> Option<Spread> {
    spread(r.cpu_s, r.cpu_min_s, r.cpu_max_s, &r.cpu_runs_s)
}

/// Every hakmem row (that proved hakmem served) of every app against every non-hakmem row.
pub fn app_vs_peers(apps: &[CellResult]) -> Vec<AppVsPeer> {
    let mut out = Vec::new();
    for h in apps
        .iter()
        .filter(|r| r.allocator.starts_with("hakmem") && r.served_by_hakmem == Some(true))
    {
        for p in apps
            .iter()
            .filter(|p| p.workload == h.workload && p.served_by_hakmem.is_none())
        {
            let (figure_ratio, figure_apart) = compare(
                spread(h.median, h.min, h.max, &h.runs),
                spread(p.median, p.min, p.max, &p.runs),
                h.higher_is_better,
            );
            let (cpu_ratio, cpu_apart) = compare(cpu_spread(h), cpu_spread(p), false);
            let (rss_ratio, rss_apart) = compare(
                spread(h.peak_rss_kb, h.rss_min_kb, h.rss_max_kb, &h.rss_runs_kb),
                spread(p.peak_rss_kb, p.rss_min_kb, p.rss_max_kb, &p.rss_runs_kb),
                false,
            );
            out.push(AppVsPeer {
                app: h.workload.clone(),
                hakmem_row: h.allocator.clone(),
                peer: p.allocator.clone(),
                metric: h.metric.clone(),
                figure_ratio,
                figure_apart,
                cpu_ratio,
                cpu_apart,
                rss_ratio,
                rss_apart,
            });
        }
    }
    out
}

/// For one app: the non-hakmem row that used the least CPU, and hakmem against it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BestPeer {
    pub app: String,
    pub peer: String,
    pub peer_cpu_s: f64,
    pub hakmem_cpu_s: f64,
    /// `peer_cpu_s / hakmem_cpu_s` (> 1: hakmem used less CPU).
    pub ratio: f64,
    pub apart: bool,
}

/// One hakmem row over the best peer of every app, CPU time, and the geometric mean.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AppGeomean {
    pub hakmem_row: String,
    pub geomean_cpu_vs_best_peer: Option<f64>,
    pub apps: Vec<BestPeer>,
}

/// Per hakmem row: each app's least-CPU peer and the geometric mean of hakmem's CPU-time
/// ratios against them.
pub fn app_geomeans(apps: &[CellResult]) -> Vec<AppGeomean> {
    let mut rows: Vec<&str> = Vec::new();
    for r in apps.iter().filter(|r| r.allocator.starts_with("hakmem")) {
        if !rows.contains(&r.allocator.as_str()) {
            rows.push(&r.allocator);
        }
    }
    rows.into_iter()
        .map(|row| {
            let mut best = Vec::new();
            for h in apps
                .iter()
                .filter(|r| r.allocator == row && r.served_by_hakmem == Some(true))
            {
                let peer = apps
                    .iter()
                    .filter(|p| p.workload == h.workload && p.served_by_hakmem.is_none())
                    .filter(|p| p.ok() && p.cpu_s.is_some_and(|c| c > 0.0))
                    .min_by(|a, b| a.cpu_s.unwrap_or(0.0).total_cmp(&b.cpu_s.unwrap_or(0.0)));
                let (Some(p), Some(hc)) = (peer, h.cpu_s.filter(|c| *c > 0.0)) else {
                    continue;
                };
                let pc = p.cpu_s.unwrap_or(0.0);
                let (_, apart) = compare(cpu_spread(h), cpu_spread(p), false);
                best.push(BestPeer {
                    app: h.workload.clone(),
                    peer: p.allocator.clone(),
                    peer_cpu_s: pc,
                    hakmem_cpu_s: hc,
                    ratio: pc / hc,
                    apart,
                });
            }
            let ratios: Vec<f64> = best.iter().map(|b| b.ratio).collect();
            AppGeomean {
                hakmem_row: row.to_string(),
                geomean_cpu_vs_best_peer: geomean(&ratios),
                apps: best,
            }
        })
        .collect()
}

/// hakmem against one other row of one workload (or real program): what the summary at the
/// top of the report is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The workload (or the real program).
    pub unit: String,
    pub peer: String,
    /// hakmem's ratio, oriented so that > 1 = hakmem better (faster, more done).
    pub speed: Option<f64>,
    /// The peer's CPU seconds over hakmem's (> 1 = hakmem used less); real programs only.
    pub cpu: Option<f64>,
    /// hakmem's median peak RSS over the peer's (< 1 = hakmem smaller).
    pub rss: Option<f64>,
    /// One of the two rows is unstable (its runs spread by more than 20%).
    pub unstable: bool,
}

/// hakmem's median peak RSS over the peer's; `None` unless both are known and positive.
pub fn rss_over(h: &CellResult, p: &CellResult) -> Option<f64> {
    let (a, b) = (h.peak_rss_kb?, p.peak_rss_kb?);
    (a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// The hakmem row named `row` of every workload against every non-hakmem row of it: the
/// run-by-run speed ratio of [`finalize`], and the ratio of the peak RSS medians. A row that
/// did not prove hakmem served measured some other malloc and is left out.
pub fn workload_pairs(results: &[CellResult], row: &str) -> Vec<Pair> {
    let mut out = Vec::new();
    for h in results
        .iter()
        .filter(|r| r.allocator == row && r.served_by_hakmem != Some(false))
    {
        for p in results
            .iter()
            .filter(|p| p.workload == h.workload && !p.allocator.starts_with("hakmem"))
        {
            out.push(Pair {
                unit: h.workload.clone(),
                peer: p.allocator.clone(),
                speed: h.ratio_vs.get(&p.allocator).copied(),
                cpu: None,
                rss: rss_over(h, p),
                unstable: h.unstable || p.unstable,
            });
        }
    }
    out
}

/// The hakmem row named `row` of every real program (when it proved hakmem served) against
/// every non-hakmem row: ratios of the medians of the figure (oriented), CPU time and RSS.
pub fn app_pairs(apps: &[CellResult], row: &str) -> Vec<Pair> {
    let mut out = Vec::new();
    for h in apps
        .iter()
        .filter(|r| r.allocator == row && r.served_by_hakmem == Some(true))
    {
        for p in apps
            .iter()
            .filter(|p| p.workload == h.workload && p.served_by_hakmem.is_none())
        {
            let both = |a: Option<f64>, b: Option<f64>| a.zip(b);
            out.push(Pair {
                unit: h.workload.clone(),
                peer: p.allocator.clone(),
                speed: both(h.median, p.median)
                    .and_then(|(a, b)| oriented_ratio(a, b, h.higher_is_better)),
                cpu: both(h.cpu_s, p.cpu_s).and_then(|(a, b)| oriented_ratio(a, b, false)),
                rss: rss_over(h, p),
                unstable: h.unstable || p.unstable,
            });
        }
    }
    out
}

/// Per unit (first-seen order), its best peer: among the peers (not glibc, not a hakmem row)
/// with a speed ratio, the one hakmem fares worst against, i.e. the smallest ratio (ties: the
/// first name in alphabetical order, as [`crate::report::best_peer`] picks).
pub fn best_pairs(pairs: &[Pair]) -> Vec<&Pair> {
    let mut units: Vec<&str> = Vec::new();
    for p in pairs {
        if !units.contains(&p.unit.as_str()) {
            units.push(&p.unit);
        }
    }
    units
        .into_iter()
        .filter_map(|u| {
            pairs
                .iter()
                .filter(|p| p.unit == u && crate::report::is_peer(&p.peer))
                .filter_map(|p| p.speed.map(|s| (s, p)))
                .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.peer.cmp(&b.1.peer)))
                .map(|(_, p)| p)
        })
        .collect()
}

/// The name of the summary line against each unit's best peer.
pub const BEST_PEER: &str = "best peer";

/// hakmem over one allocator (or over the best peer of every unit), geometric means.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerGeomean {
    /// An allocator, or [`BEST_PEER`].
    pub peer: String,
    /// Geomean of the speed ratios (> 1 = hakmem better), over `speed_n` units.
    pub speed: Option<f64>,
    pub speed_n: usize,
    /// Geomean of the CPU ratios (> 1 = hakmem used less), over `cpu_n` units.
    pub cpu: Option<f64>,
    pub cpu_n: usize,
    /// Geomean of hakmem's RSS over the peer's (< 1 = hakmem smaller), over `rss_n` units.
    pub rss: Option<f64>,
    pub rss_n: usize,
}

fn geomean_of<'a>(peer: &str, pairs: impl Iterator<Item = &'a Pair> + Clone) -> PeerGeomean {
    let take = |f: fn(&Pair) -> Option<f64>| -> Vec<f64> { pairs.clone().filter_map(f).collect() };
    let (s, c, r) = (take(|p| p.speed), take(|p| p.cpu), take(|p| p.rss));
    PeerGeomean {
        peer: peer.to_string(),
        speed: geomean(&s),
        speed_n: s.len(),
        cpu: geomean(&c),
        cpu_n: c.len(),
        rss: geomean(&r),
        rss_n: r.len(),
    }
}

/// One line per allocator hakmem was compared with (first-seen order), then, when any unit
/// has a peer, the [`BEST_PEER`] line: speed, CPU and RSS against each unit's best peer.
pub fn peer_geomeans(pairs: &[Pair]) -> Vec<PeerGeomean> {
    let mut peers: Vec<&str> = Vec::new();
    for p in pairs {
        if !peers.contains(&p.peer.as_str()) {
            peers.push(&p.peer);
        }
    }
    let mut out: Vec<PeerGeomean> = peers
        .into_iter()
        .map(|name| geomean_of(name, pairs.iter().filter(|p| p.peer == name)))
        .collect();
    let best = best_pairs(pairs);
    if !best.is_empty() {
        out.push(geomean_of(BEST_PEER, best.into_iter()));
    }
    out
}

/// The units where hakmem loses to its best peer on speed (ratio < 1), worst first.
pub fn losses(pairs: &[Pair]) -> Vec<Pair> {
    let mut v: Vec<Pair> = best_pairs(pairs)
        .into_iter()
        .filter(|p| p.speed.is_some_and(|s| s < 1.0))
        .cloned()
        .collect();
    v.sort_by(|a, b| {
        a.speed
            .unwrap_or(1.0)
            .total_cmp(&b.speed.unwrap_or(1.0))
            .then_with(|| a.unit.cmp(&b.unit))
    });
    v
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

    fn app_cell(a: &str, cpu: &[f64], wall: &[f64]) -> CellRaw {
        CellRaw {
            workload: "app".into(),
            allocator: a.into(),
            is_hakmem: a.starts_with("hakmem"),
            threads: 1,
            metric: "wall_s".into(),
            higher_is_better: false,
            runs: cpu
                .iter()
                .zip(wall)
                .map(|(c, w)| RunSample {
                    value: Some(*w),
                    wall_s: Some(*w),
                    cpu_s: Some(*c),
                    peak_rss_kb: Some(1000.0),
                    served_by_hakmem: a.starts_with("hakmem").then_some(true),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn apps_against_peers_and_best_peer() {
        let r = finalize(&[
            app_cell("glibc", &[10.0, 11.0, 12.0], &[10.0, 11.0, 12.0]),
            app_cell("hakmem", &[8.0, 8.5, 9.0], &[11.0, 12.0, 13.0]),
            app_cell("jemalloc", &[8.8, 9.0, 9.5], &[9.0, 9.0, 9.0]),
        ]);
        assert_eq!(r[1].cpu_min_s, Some(8.0));
        assert_eq!(r[1].cpu_max_s, Some(9.0));
        assert_eq!(r[1].cpu_runs_s.len(), 3);
        let v = app_vs_peers(&r);
        assert_eq!(v.len(), 2);
        let g = &v[0];
        assert_eq!((g.peer.as_str(), g.metric.as_str()), ("glibc", "wall_s"));
        // Wall: 11 vs 12 -> glibc better, ranges overlap; CPU: 11 / 8.5, apart.
        assert!((g.figure_ratio.unwrap() - 11.0 / 12.0).abs() < 1e-12);
        assert!(!g.figure_apart);
        assert!((g.cpu_ratio.unwrap() - 11.0 / 8.5).abs() < 1e-12);
        assert!(g.cpu_apart);
        assert_eq!(g.rss_ratio, Some(1.0));
        assert!(!g.rss_apart, "equal ranges overlap");
        let j = &v[1];
        assert!(!j.cpu_apart, "8..9 and 8.8..9.5 overlap");
        assert!(j.figure_apart, "11..13 s against 9 s");

        let gm = app_geomeans(&r);
        assert_eq!(gm.len(), 1);
        assert_eq!(gm[0].hakmem_row, "hakmem");
        assert_eq!(gm[0].apps.len(), 1);
        let b = &gm[0].apps[0];
        assert_eq!(b.peer, "jemalloc", "the peer with the least CPU");
        assert!((b.ratio - 9.0 / 8.5).abs() < 1e-12);
        assert_eq!(gm[0].geomean_cpu_vs_best_peer, Some(b.ratio));
    }

    #[test]
    fn one_run_is_never_beyond_the_spread() {
        let r = finalize(&[
            app_cell("glibc", &[10.0], &[10.0]),
            app_cell("hakmem", &[5.0], &[5.0]),
        ]);
        let v = app_vs_peers(&r);
        assert_eq!(v[0].cpu_ratio, Some(2.0));
        assert!(!v[0].cpu_apart && !v[0].figure_apart);
    }

    #[test]
    fn unserved_hakmem_app_row_is_not_compared() {
        let mut h = app_cell("hakmem", &[5.0, 5.0], &[5.0, 5.0]);
        h.runs[1].served_by_hakmem = Some(false);
        let r = finalize(&[app_cell("glibc", &[10.0, 10.0], &[10.0, 10.0]), h]);
        assert!(app_vs_peers(&r).is_empty());
        assert!(app_geomeans(&r)[0].apps.is_empty());
        assert_eq!(app_geomeans(&r)[0].geomean_cpu_vs_best_peer, None);
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

    fn rss_cell(w: &str, a: &str, v: &[f64], rss: f64) -> CellRaw {
        cell(
            w,
            a,
            v.iter()
                .map(|x| {
                    if a.starts_with("hakmem") {
                        hrun(*x, rss, true)
                    } else {
                        run(*x, rss)
                    }
                })
                .collect(),
        )
    }

    fn close(x: Option<f64>, want: f64) -> bool {
        x.is_some_and(|x| (x - want).abs() < 1e-9)
    }

    #[test]
    fn summary_geomeans_over_each_peer_and_the_best_peer() {
        let r = finalize(&[
            // w1: hakmem 2x glibc, 0.5x mimalloc; RSS 1000 vs 2000 and 500.
            rss_cell("w1", "glibc", &[100.0], 2000.0),
            rss_cell("w1", "hakmem", &[200.0], 1000.0),
            rss_cell("w1", "mimalloc", &[400.0], 500.0),
            rss_cell("w1", "tcmalloc", &[100.0], 4000.0),
            // w2: hakmem 8x glibc, 2x mimalloc, 4x tcmalloc; RSS 1000 vs 250, 1000, 1000.
            rss_cell("w2", "glibc", &[10.0], 250.0),
            rss_cell("w2", "hakmem", &[80.0], 1000.0),
            rss_cell("w2", "mimalloc", &[40.0], 1000.0),
            rss_cell("w2", "tcmalloc", &[20.0], 1000.0),
        ]);
        let pairs = workload_pairs(&r, "hakmem");
        assert_eq!(pairs.len(), 6);
        assert!(close(pairs[0].rss, 0.5), "hakmem's RSS over glibc's");
        let g = peer_geomeans(&pairs);
        let names: Vec<&str> = g.iter().map(|x| x.peer.as_str()).collect();
        assert_eq!(names, ["glibc", "mimalloc", "tcmalloc", BEST_PEER]);
        // glibc: speed sqrt(2 * 8) = 4; RSS sqrt(0.5 * 4) = sqrt 2.
        assert!(close(g[0].speed, 4.0) && close(g[0].rss, 2f64.sqrt()));
        assert_eq!((g[0].speed_n, g[0].rss_n, g[0].cpu_n), (2, 2, 0));
        assert_eq!(g[0].cpu, None);
        // mimalloc: sqrt(0.5 * 2) = 1; RSS sqrt(2 * 1).
        assert!(close(g[1].speed, 1.0) && close(g[1].rss, 2f64.sqrt()));
        // Best peer: mimalloc on w1 (0.5), mimalloc on w2 (2 < 4): the same line here.
        assert_eq!(
            g[3],
            PeerGeomean {
                peer: BEST_PEER.into(),
                ..g[1].clone()
            }
        );
        let best: Vec<&str> = best_pairs(&pairs).iter().map(|p| p.peer.as_str()).collect();
        assert_eq!(
            best,
            ["mimalloc", "mimalloc"],
            "glibc is never the best peer"
        );
    }

    #[test]
    fn losing_rows_are_those_below_the_best_peer_worst_first() {
        let r = finalize(&[
            rss_cell("a", "glibc", &[100.0], 1.0),
            rss_cell("a", "hakmem", &[90.0], 3.0),
            rss_cell("a", "snmalloc", &[95.0], 2.0),
            rss_cell("b", "hakmem", &[50.0], 1.0),
            rss_cell("b", "snmalloc", &[100.0], 4.0),
            rss_cell("b", "tcmalloc", &[60.0], 1.0),
            rss_cell("c", "hakmem", &[100.0], 1.0),
            rss_cell("c", "snmalloc", &[100.0], 1.0),
            // Loses to glibc only: glibc is the baseline, not a peer.
            rss_cell("d", "glibc", &[100.0], 1.0),
            rss_cell("d", "hakmem", &[50.0], 1.0),
            rss_cell("d", "tcmalloc", &[10.0], 1.0),
        ]);
        let l = losses(&workload_pairs(&r, "hakmem"));
        let got: Vec<(&str, &str)> = l
            .iter()
            .map(|p| (p.unit.as_str(), p.peer.as_str()))
            .collect();
        assert_eq!(
            got,
            [("b", "snmalloc"), ("a", "snmalloc")],
            "c ties: no loss"
        );
        assert!(close(l[0].speed, 0.5) && close(l[0].rss, 0.25));
        assert!(close(l[1].speed, 90.0 / 95.0) && close(l[1].rss, 1.5));
    }

    #[test]
    fn summary_leaves_out_unserved_rows_and_missing_rss() {
        let mut h = rss_cell("w", "hakmem", &[300.0], 100.0);
        h.runs[0].served_by_hakmem = Some(false);
        let mut p = rss_cell("v", "glibc", &[1.0], 0.0);
        p.runs[0].peak_rss_kb = None;
        let r = finalize(&[
            rss_cell("w", "glibc", &[100.0], 100.0),
            h,
            p,
            rss_cell("v", "hakmem", &[2.0], 50.0),
        ]);
        let pairs = workload_pairs(&r, "hakmem");
        assert_eq!(pairs.len(), 1, "the unserved row of w is left out");
        assert_eq!((pairs[0].speed, pairs[0].rss), (Some(2.0), None));
        let g = peer_geomeans(&pairs);
        assert_eq!(g.len(), 1, "glibc only: no best-peer line");
        assert_eq!((g[0].speed_n, g[0].rss_n, g[0].rss), (1, 0, None));
        assert!(losses(&pairs).is_empty());
    }

    #[test]
    fn app_pairs_orient_the_figure_and_cpu() {
        let r = finalize(&[
            app_cell("glibc", &[10.0], &[12.0]),
            app_cell("hakmem", &[5.0], &[6.0]),
            app_cell("jemalloc", &[4.0], &[3.0]),
        ]);
        let pairs = app_pairs(&r, "hakmem");
        assert_eq!(pairs.len(), 2);
        // Lower wall time is better: glibc 12 s over hakmem's 6 s.
        assert!(close(pairs[0].speed, 2.0) && close(pairs[0].cpu, 2.0));
        assert!(close(pairs[1].speed, 0.5) && close(pairs[1].cpu, 0.8));
        assert!(close(pairs[1].rss, 1.0));
        let l = losses(&pairs);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].peer, "jemalloc");
        let g = peer_geomeans(&pairs);
        assert!(close(g[2].cpu, 0.8) && g[2].cpu_n == 1);
    }
}
