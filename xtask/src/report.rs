//! The benchmark record (JSON) and its Markdown rendering.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{
    AblationRow, AppGeomean, AppVsPeer, BEST_PEER, CellResult, Pair, PeerGeomean, app_pairs,
    losses, peer_geomeans, rss_over, workload_pairs,
};
use crate::stats::{UNSTABLE_SPREAD, geomean, oriented_ratio, paired_ratio};

/// Instructions per malloc+free pair for one allocator (`--instructions`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstrRow {
    pub allocator: String,
    pub ir_n: Option<u64>,
    pub ir_zero: Option<u64>,
    pub n: u64,
    pub instructions_per_pair: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything written to `<timestamp>.json`: the configuration keys (commit, dirty,
/// command, env, mode, features, build, machine, date, allocators, ...) flattened at
/// the top level, then the results.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    #[serde(flatten)]
    pub config: Map<String, Value>,
    pub results: Vec<CellResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ablation: Vec<AblationRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ablation_absent_features: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instructions: Vec<InstrRow>,
    /// The real programs (`--apps`): one cell per (app, allocator row).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<CellResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub apps_vs_peers: Vec<AppVsPeer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub apps_geomean: Vec<AppGeomean>,
    pub skipped: Vec<String>,
}

/// Compact human number: `12.35M`, `980.1k`, `0.0123`.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        format!("{v}")
    } else if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".to_string())
}

/// A real program's figure: `12.34 s` for a wall time, `245.7k/s` for a rate.
pub fn fmt_figure(v: f64, metric: &str) -> String {
    if metric == "wall_s" {
        format!("{v:.2} s")
    } else {
        format!("{}/s", fmt_num(v))
    }
}

/// `2.34×`
pub fn fmt_ratio(r: f64) -> String {
    format!("{r:.2}×")
}

fn fmt_mib(kb: f64) -> String {
    format!("{:.1}", kb / 1024.0)
}

/// The marker of an unstable row (its runs spread by more than [`UNSTABLE_SPREAD`]).
pub const UNSTABLE_MARK: &str = "†";

/// Why a row is marked unstable, and what to do about it.
pub fn unstable_explanation() -> String {
    format!(
        "the row's runs spread by more than {:.0}% (max/min − 1), so its median, and any \
         ratio computed with it, may not repeat; rerun with more `--runs` (or without \
         `--quick`) before trusting it.",
        UNSTABLE_SPREAD * 100.0
    )
}

/// The one-line explanation printed under a table with an unstable row.
pub fn unstable_note() -> String {
    format!("{UNSTABLE_MARK} unstable: {}", unstable_explanation())
}

/// `max/min − 1` as a percentage, or `∞` (a zero run next to a non-zero one).
fn fmt_spread(r: &CellResult) -> String {
    match r.spread {
        Some(s) => format!("{:.0}%", s * 100.0),
        None => "∞".into(),
    }
}

/// The note a workload's entry in the record's `workloads` list carries, if any.
fn workload_note<'a>(rec: &'a Record, workload: &str) -> Option<&'a str> {
    rec.config
        .get("workloads")?
        .as_array()?
        .iter()
        .find(|w| w.get("name").and_then(Value::as_str) == Some(workload))?
        .get("note")?
        .as_str()
}

fn escape_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// Renders a JSON value as a nested Markdown bullet list (multi-line strings become
/// indented code blocks).
fn render_value(out: &mut String, key: &str, v: &Value, depth: usize) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(m) if m.is_empty() => {
            let _ = writeln!(out, "{pad}- **{key}**: {{}}");
        }
        Value::Object(m) => {
            let _ = writeln!(out, "{pad}- **{key}**:");
            for (k, v) in m {
                render_value(out, k, v, depth + 1);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            let items: Vec<String> = a.iter().map(|x| format!("`{}`", scalar_text(x))).collect();
            let _ = writeln!(out, "{pad}- **{key}**: {}", items.join(" "));
        }
        Value::Array(a) => {
            let _ = writeln!(out, "{pad}- **{key}**:");
            for (i, x) in a.iter().enumerate() {
                render_value(out, &i.to_string(), x, depth + 1);
            }
        }
        Value::String(s) if s.contains('\n') => {
            let _ = writeln!(out, "{pad}- **{key}**:\n");
            let _ = writeln!(out, "{pad}  ```");
            for l in s.lines() {
                let _ = writeln!(out, "{pad}  {l}");
            }
            let _ = writeln!(out, "{pad}  ```\n");
        }
        other => {
            let _ = writeln!(out, "{pad}- **{key}**: `{}`", scalar_text(other));
        }
    }
}

/// Workloads in first-seen order.
fn workloads(results: &[CellResult]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    results
        .iter()
        .filter(|r| seen.insert(r.workload.clone()))
        .map(|r| r.workload.clone())
        .collect()
}

/// Peers (columns of the summary): non-hakmem allocators in first-seen order, then
/// `hakmem` itself when variants were compared against it.
fn peers(results: &[CellResult]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut v: Vec<String> = results
        .iter()
        .filter(|r| !r.allocator.starts_with("hakmem"))
        .filter(|r| seen.insert(r.allocator.clone()))
        .map(|r| r.allocator.clone())
        .collect();
    if results.iter().any(|r| r.ratio_vs.contains_key("hakmem")) {
        v.push("hakmem".into());
    }
    v
}

/// Whether a row name is a peer of hakmem: not glibc (the baseline every chart is relative
/// to) and not a hakmem row.
pub fn is_peer(allocator: &str) -> bool {
    allocator != "glibc" && !allocator.starts_with("hakmem")
}

/// The best peer of a hakmem row: among all the peers it was compared with in the run (the
/// crate-built ones, tcmalloc, the Debian builds, ...), the one hakmem fares worst against,
/// i.e. its smallest ratio; `None` without peers.
pub fn best_peer(ratio_vs: &std::collections::BTreeMap<String, f64>) -> Option<(&str, f64)> {
    ratio_vs
        .iter()
        .filter(|(p, _)| is_peer(p))
        .map(|(p, x)| (p.as_str(), *x))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

fn ratio_text(r: &CellResult) -> String {
    r.ratio_vs
        .iter()
        .map(|(p, x)| format!("{} vs {p}", fmt_ratio(*x)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row's arguments with the value of `--threads` blanked: rows with the same key differ
/// only in their thread count.
fn family_key(args: &[String]) -> Vec<String> {
    let mut k = args.to_vec();
    if let Some(i) = k.iter().position(|a| a == "--threads")
        && let Some(v) = k.get_mut(i + 1)
    {
        *v = "*".into();
    }
    k
}

/// One multi-threaded row against its 1-thread row, same allocator (> 1 = more done with
/// more threads).
pub struct Scaled {
    pub threads: u64,
    pub workload: String,
    /// The median of the run-by-run ratios (run i with run i).
    pub run_by_run: Option<f64>,
    /// The ratio of the two rows' medians.
    pub of_medians: Option<f64>,
}

/// One line of the scaling table: a workload family, an allocator, and its multi-threaded
/// rows against its 1-thread row, by thread count.
pub struct ScalingLine {
    pub family: String,
    pub allocator: String,
    pub rows: Vec<Scaled>,
}

/// For every workload run at 1 thread and at more (same arguments otherwise), each
/// allocator's N-thread result over its 1-thread result.
pub fn scaling(results: &[CellResult]) -> Vec<ScalingLine> {
    let mut out = Vec::new();
    for one in results.iter().filter(|r| r.threads == 1) {
        let key = family_key(&one.args);
        let hib = one.higher_is_better;
        let mut rows: Vec<Scaled> = results
            .iter()
            .filter(|r| {
                r.allocator == one.allocator
                    && r.threads > 1
                    && r.metric == one.metric
                    && family_key(&r.args) == key
            })
            .map(|r| Scaled {
                threads: r.threads,
                workload: r.workload.clone(),
                run_by_run: paired_ratio(&r.runs, &one.runs, hib),
                of_medians: r
                    .median
                    .zip(one.median)
                    .and_then(|(n, o)| oriented_ratio(n, o, hib)),
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        rows.sort_by_key(|r| r.threads);
        out.push(ScalingLine {
            family: one.workload.clone(),
            allocator: one.allocator.clone(),
            rows,
        });
    }
    out
}

/// A table row: a workload, an allocator (escaped), and the rest already joined.
fn row3(out: &mut String, workload: &str, allocator: &str, rest: &str) {
    let _ = writeln!(out, "| {workload} | {} | {rest} |", escape_cell(allocator));
}

/// `1.23×`, with `✱` when the runs' min–max ranges are apart.
fn flagged(r: Option<f64>, apart: bool) -> String {
    match r {
        Some(x) if apart => format!("{} ✱", fmt_ratio(x)),
        Some(x) => fmt_ratio(x),
        None => "–".into(),
    }
}

fn range(min: Option<f64>, max: Option<f64>, f: impl Fn(f64) -> String) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("{}–{}", f(a), f(b)),
        _ => "–".into(),
    }
}

/// The "Real programs" section: what each app ran, its figures per allocator, hakmem
/// against every peer, and the geomean of hakmem over the best peer per app (CPU time).
fn apps_section(out: &mut String, rec: &Record) {
    if rec.apps.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Real programs\n\n\
         Each program ran under the row's `LD_PRELOAD` (glibc: none) with an input the harness \
         generated once, from a fixed seed, before any run. Runs alternate: run i of every \
         program and every allocator before run i+1. Figure: the wall time of the program \
         (redis: requests per second of redis-benchmark, which is not preloaded, over all its \
         tests). CPU time is user + system of the measured process tree (`wait4` of the child \
         and every descendant it waited for; redis: the server's `/proc/<pid>/stat`), peak RSS \
         its `ru_maxrss` (redis: the server's `VmHWM`), faults minor + major. Medians, with \
         min–max over the runs.\n"
    );
    if let Some(Value::Object(progs)) = rec
        .config
        .get("real_programs")
        .and_then(|a| a.get("programs"))
    {
        let _ = writeln!(out, "| app | what it runs | input | program |");
        let _ = writeln!(out, "|---|---|---|---|");
        for (name, p) in progs {
            let mut what = p["about"].as_str().unwrap_or("").to_string();
            if let Some(n) = p["own_malloc"].as_str() {
                what.push_str(&format!(" ({n})"));
            }
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} |",
                escape_cell(&what),
                escape_cell(p["input"].as_str().unwrap_or("")),
                escape_cell(p["version"].as_str().unwrap_or("")),
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "| app | allocator | figure | min–max | CPU s | CPU min–max | peak RSS MiB | faults | served |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---|");
    for r in &rec.apps {
        let f = |v: f64| fmt_figure(v, &r.metric);
        let mut name = escape_cell(&r.allocator);
        if !r.ok() {
            name.push_str(" ⚠");
        }
        let _ = writeln!(
            out,
            "| {} | {name} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            opt(r.median, f),
            range(r.min, r.max, f),
            opt(r.cpu_s, |x| format!("{x:.2}")),
            range(r.cpu_min_s, r.cpu_max_s, |x| format!("{x:.2}")),
            opt(r.peak_rss_kb, fmt_mib),
            opt(r.page_faults, fmt_num),
            match r.served_by_hakmem {
                Some(true) => "yes",
                Some(false) => "**NO**",
                None => "",
            }
        );
    }
    for r in &rec.apps {
        for e in &r.errors {
            let _ = writeln!(
                out,
                "\n- ⚠ {} / {}: {}",
                r.workload,
                r.allocator,
                escape_cell(e)
            );
        }
    }
    let _ = writeln!(out);

    if !rec.apps_vs_peers.is_empty() {
        let _ = writeln!(
            out,
            "### hakmem against each peer (ratio of medians, > 1 = hakmem better)\n\n\
             figure: the peer's time over hakmem's (redis: hakmem's rate over the peer's); CPU \
             and RSS: the peer's over hakmem's. ✱: the min–max ranges of the runs do not \
             overlap (the difference is beyond the spread; needs 2 runs or more).\n"
        );
        let _ = writeln!(out, "| app | hakmem row | peer | figure | CPU | peak RSS |");
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
        for v in &rec.apps_vs_peers {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                v.app,
                escape_cell(&v.hakmem_row),
                escape_cell(&v.peer),
                flagged(v.figure_ratio, v.figure_apart),
                flagged(v.cpu_ratio, v.cpu_apart),
                flagged(v.rss_ratio, v.rss_apart),
            );
        }
        let _ = writeln!(out);
    }

    for g in &rec.apps_geomean {
        let _ = writeln!(
            out,
            "### {} over the best peer per app (CPU time, > 1 = hakmem used less)\n",
            escape_cell(&g.hakmem_row)
        );
        let _ = writeln!(
            out,
            "| app | best peer (least CPU) | its CPU s | hakmem CPU s | ratio | its peak RSS MiB | hakmem peak RSS MiB | RSS hakmem / peer |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
        let cell_of = |app: &str, a: &str| {
            rec.apps
                .iter()
                .find(|r| r.workload == app && r.allocator == a)
        };
        let mut rss = Vec::new();
        for b in &g.apps {
            let (p, h) = (cell_of(&b.app, &b.peer), cell_of(&b.app, &g.hakmem_row));
            let x = p.zip(h).and_then(|(p, h)| rss_over(h, p));
            rss.extend(x);
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} | {:.2} | {} | {} | {} | {} |",
                b.app,
                escape_cell(&b.peer),
                b.peer_cpu_s,
                b.hakmem_cpu_s,
                flagged(Some(b.ratio), b.apart),
                opt(p.and_then(|p| p.peak_rss_kb), fmt_mib),
                opt(h.and_then(|h| h.peak_rss_kb), fmt_mib),
                opt(x, fmt_ratio),
            );
        }
        let _ = writeln!(
            out,
            "| **geomean** | | | | {} | | | {} |\n",
            opt(g.geomean_cpu_vs_best_peer, fmt_ratio),
            opt(geomean(&rss), fmt_ratio)
        );
    }
}

/// The Markdown report: configuration record first, then one table per workload, a
/// summary of hakmem's ratios, and the optional ablation / instruction sections.
/// Every hakmem variant row (`hakmem[...]`, `--hakmem-so`) against the plain `hakmem` row:
/// the geomean of the per-workload ratios and the worst one.
fn variants_table(out: &mut String, results: &[CellResult]) {
    let mut by: BTreeMap<&str, Vec<(f64, &str)>> = BTreeMap::new();
    let mut rss: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in results {
        if let Some(x) = r.ratio_vs.get("hakmem") {
            by.entry(&r.allocator).or_default().push((*x, &r.workload));
            let plain = results
                .iter()
                .find(|q| q.workload == r.workload && q.allocator == "hakmem");
            if let Some(x) = plain.and_then(|q| rss_over(r, q)) {
                rss.entry(&r.allocator).or_default().push(x);
            }
        }
    }
    if by.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Variants against plain hakmem (> 1 = the variant is better)\n\n\
         The inverse of a variant's ratio is what plain hakmem costs against it: for \
         `hakmem[checks-off]` the cost of the heap checks.\n"
    );
    let _ = writeln!(
        out,
        "| variant | rows | geomean | highest | its row | lowest | its row | peak RSS geomean (variant / hakmem) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---:|---|---:|");
    for (name, v) in by {
        let xs: Vec<f64> = v.iter().map(|p| p.0).collect();
        let (mut lo, mut hi) = (v[0], v[0]);
        for p in &v {
            if p.0 < lo.0 {
                lo = *p;
            }
            if p.0 > hi.0 {
                hi = *p;
            }
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            escape_cell(name),
            v.len(),
            opt(geomean(&xs), fmt_ratio),
            fmt_ratio(hi.0),
            hi.1,
            fmt_ratio(lo.0),
            lo.1,
            opt(rss.get(name).and_then(|v| geomean(v)), fmt_ratio),
        );
    }
    let _ = writeln!(out);
}

/// The row the summary speaks for: plain `hakmem` when the run has it, else the first
/// hakmem row.
fn summary_row(rec: &Record) -> Option<&str> {
    let mut rows = rec
        .results
        .iter()
        .chain(&rec.apps)
        .map(|r| r.allocator.as_str())
        .filter(|a| a.starts_with("hakmem"));
    let first = rows.clone().next()?;
    Some(if rows.any(|a| a == "hakmem") {
        "hakmem"
    } else {
        first
    })
}

/// `1.23×`, with [`UNSTABLE_MARK`] when one of the two rows is unstable.
fn ratio_marked(x: Option<f64>, unstable: bool) -> String {
    match x {
        Some(x) if unstable => format!("{} {UNSTABLE_MARK}", fmt_ratio(x)),
        Some(x) => fmt_ratio(x),
        None => "–".into(),
    }
}

/// `5`, or `5 (RSS 4)` when fewer units had an RSS ratio than a speed ratio.
fn counts(g: &PeerGeomean) -> String {
    if g.rss_n == g.speed_n {
        g.speed_n.to_string()
    } else {
        format!("{} (RSS {})", g.speed_n, g.rss_n)
    }
}

fn peer_label(p: &str) -> String {
    if p == BEST_PEER {
        "**best peer**".into()
    } else {
        escape_cell(p)
    }
}

/// The top of the report: hakmem's geomean over each allocator (speed and peak RSS), on the
/// workload matrix and on the real programs, then where hakmem loses to the best peer.
fn summary_section(out: &mut String, rec: &Record) {
    let _ = writeln!(out, "## Summary\n");
    let Some(row) = summary_row(rec) else {
        let _ = writeln!(out, "No hakmem row in this run: nothing to summarise.\n");
        return;
    };
    let w = workload_pairs(&rec.results, row);
    let a = app_pairs(&rec.apps, row);
    let _ = writeln!(
        out,
        "`{}` over each allocator, geometric mean over the rows. **Speed**: > 1 = hakmem \
         better (workloads: the run-by-run ratio of the row's table; real programs: the ratio \
         of the medians of the figure). **Peak RSS**: hakmem's median peak RSS over the \
         allocator's, < 1 = hakmem smaller. The **best peer** is, per row, the peer hakmem \
         fares worst against on speed (glibc, the baseline, is not a peer); its RSS is against \
         that same peer. {UNSTABLE_MARK}: one of the two rows is unstable.\n",
        escape_cell(row)
    );
    if w.is_empty() {
        let _ = writeln!(out, "Workload matrix: no comparison.\n");
    } else {
        let g = peer_geomeans(&w);
        let n = workloads(&rec.results).len();
        let _ = writeln!(out, "### Workload matrix ({n} workloads)\n");
        let _ = writeln!(
            out,
            "| {} over | speed (> 1 = hakmem better) | peak RSS (< 1 = hakmem smaller) | workloads |",
            escape_cell(row)
        );
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for x in &g {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                peer_label(&x.peer),
                opt(x.speed, fmt_ratio),
                opt(x.rss, fmt_ratio),
                counts(x)
            );
        }
        let _ = writeln!(out);
    }
    if !a.is_empty() {
        let g = peer_geomeans(&a);
        let n = workloads(&rec.apps).len();
        let _ = writeln!(out, "### Real programs ({n} programs)\n");
        let _ = writeln!(
            out,
            "| {} over | figure (> 1 = hakmem better) | CPU time (> 1 = hakmem less) | peak RSS (< 1 = hakmem smaller) | programs |",
            escape_cell(row)
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for x in &g {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                peer_label(&x.peer),
                opt(x.speed, fmt_ratio),
                opt(x.cpu, fmt_ratio),
                opt(x.rss, fmt_ratio),
                counts(x)
            );
        }
        let _ = writeln!(out);
    }
    let mut lost: Vec<(Pair, &str)> = losses(&w).into_iter().map(|p| (p, "")).collect();
    lost.extend(losses(&a).into_iter().map(|p| (p, " (real program)")));
    let _ = writeln!(out, "### Where hakmem loses to the best peer\n");
    if lost.is_empty() {
        let _ = writeln!(
            out,
            "Nowhere: on every row hakmem is at least as fast as its best peer.\n"
        );
    } else {
        let _ = writeln!(
            out,
            "Worst first; speed > 1 = hakmem better, peak RSS hakmem's over the peer's.\n"
        );
        let _ = writeln!(out, "| row | best peer | speed | peak RSS |");
        let _ = writeln!(out, "|---|---|---:|---:|");
        for (p, kind) in &lost {
            let _ = writeln!(
                out,
                "| {}{kind} | {} | {} | {} |",
                escape_cell(&p.unit),
                escape_cell(&p.peer),
                ratio_marked(p.speed, p.unstable),
                opt(p.rss, fmt_ratio),
            );
        }
        let _ = writeln!(out);
    }
    if !rec.skipped.is_empty() {
        let _ = writeln!(out, "**Skipped:**\n");
        for s in &rec.skipped {
            let _ = writeln!(out, "- {s}");
        }
        let _ = writeln!(out);
    }
}

/// The summary as plain text for the end of `cargo xtask bench` (and `cargo xtask report`).
pub fn console_summary(rec: &Record) -> String {
    let mut out = String::new();
    let Some(row) = summary_row(rec) else {
        return out;
    };
    let w = workload_pairs(&rec.results, row);
    let a = app_pairs(&rec.apps, row);
    let _ = writeln!(
        out,
        "\n== {row} over each allocator, geomean (speed > 1 = hakmem better; RSS = hakmem's \
         over the peer's, < 1 = hakmem smaller) =="
    );
    for (title, pairs, what) in [
        ("workload matrix", &w, "workloads"),
        ("real programs", &a, "programs"),
    ] {
        if pairs.is_empty() {
            continue;
        }
        let apps = std::ptr::eq(pairs, &a);
        let _ = writeln!(
            out,
            "  {title:<18} {:>8} {}{:>8}  {what}",
            if apps { "figure" } else { "speed" },
            if apps {
                format!("{:>8} ", "CPU")
            } else {
                String::new()
            },
            "RSS"
        );
        for g in peer_geomeans(pairs) {
            let f = |x: Option<f64>| x.map(fmt_ratio).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                out,
                "  {:<18} {:>8} {}{:>8}  {}",
                g.peer,
                f(g.speed),
                if apps {
                    format!("{:>8} ", f(g.cpu))
                } else {
                    String::new()
                },
                f(g.rss),
                counts(&g)
            );
        }
    }
    let lost: Vec<String> = losses(&w)
        .iter()
        .chain(losses(&a).iter())
        .map(|p| {
            format!(
                "{} vs {} {}{} (RSS {})",
                p.unit,
                p.peer,
                p.speed.map(fmt_ratio).unwrap_or_default(),
                if p.unstable { UNSTABLE_MARK } else { "" },
                p.rss.map(fmt_ratio).unwrap_or_else(|| "–".into())
            )
        })
        .collect();
    if lost.is_empty() {
        let _ = writeln!(out, "  loses to the best peer: nowhere");
    } else {
        let _ = writeln!(out, "  loses to the best peer: {}", lost.join(", "));
    }
    out
}

/// Per hakmem row, its median peak RSS over that of each allocator of the workload, and over
/// that of the best peer (on speed) of the row; geomeans over the plain `hakmem` rows.
fn rss_matrix(
    out: &mut String,
    results: &[CellResult],
    hak_rows: &[&CellResult],
    peers: &[String],
) {
    let _ = writeln!(
        out,
        "## Per workload: hakmem's peak RSS over each allocator's (< 1 = hakmem smaller)\n\n\
         Ratio of the medians of the peak RSS; the best peer is the one of the speed table \
         above (the peer hakmem fares worst against on speed).\n"
    );
    let _ = writeln!(
        out,
        "| workload | hakmem row | {} | vs best peer |",
        peers.join(" | ")
    );
    let _ = writeln!(out, "|---|---|{}---:|", "---:|".repeat(peers.len()));
    let cell_of = |w: &str, a: &str| results.iter().find(|q| q.workload == w && q.allocator == a);
    let mut per_peer: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    let mut vs_best = Vec::new();
    for r in hak_rows {
        let plain = r.allocator == "hakmem" && r.served_by_hakmem != Some(false);
        let mut cells: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let x = cell_of(&r.workload, p)
                    .filter(|q| q.allocator != r.allocator)
                    .and_then(|q| rss_over(r, q));
                if let (Some(x), true) = (x, plain) {
                    per_peer[i].push(x);
                }
                opt(x, fmt_ratio)
            })
            .collect();
        let best = best_peer(&r.ratio_vs)
            .and_then(|(p, _)| Some((p, rss_over(r, cell_of(&r.workload, p)?)?)));
        cells.push(match best {
            Some((p, x)) => {
                if plain {
                    vs_best.push(x);
                }
                format!("{} {}", fmt_ratio(x), escape_cell(p))
            }
            None => "–".into(),
        });
        row3(out, &r.workload, &r.allocator, &cells.join(" | "));
    }
    let mut g: Vec<String> = per_peer
        .iter()
        .map(|v| opt(geomean(v), fmt_ratio))
        .collect();
    g.push(opt(geomean(&vs_best), fmt_ratio));
    let _ = writeln!(out, "| **geomean** | hakmem | {} |\n", g.join(" | "));
}

pub fn render_markdown(rec: &Record) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# hakmem allocator comparison\n");
    let text = |k: &str| rec.config.get(k).map(scalar_text);
    let commit = text("commit").map(|c| c.chars().take(12).collect::<String>());
    let _ = writeln!(
        out,
        "Run of {} at commit `{}`{}{}. The configuration of every figure (command, environment, \
         build flags, machine, versions) is recorded at the end, under \
         [Configuration record](#configuration-record).\n",
        text("date").unwrap_or_else(|| "an unknown date".into()),
        commit.unwrap_or_else(|| "?".into()),
        if rec.config.get("dirty") == Some(&Value::Bool(true)) {
            " (dirty)"
        } else {
            ""
        },
        if rec.config.get("quick") == Some(&Value::Bool(true)) {
            ", `--quick`"
        } else {
            ""
        },
    );
    summary_section(&mut out, rec);

    let _ = writeln!(out, "## Results\n");
    let _ = writeln!(
        out,
        "Median of the runs; min–max in the next column. Peak RSS is the median \
         of the peak each run reports (its `VmHWM`; `ru_maxrss` when it reports none), faults the median minor+major page faults. Ratios are hakmem \
         against each peer, computed run by run (run i with run i) and then the median, \
         oriented so that > 1 means hakmem is better. A {UNSTABLE_MARK} after min–max marks \
         an unstable row: its runs spread by more than {:.0}% (max/min − 1; the spread follows \
         the mark).\n",
        UNSTABLE_SPREAD * 100.0
    );
    for w in workloads(&rec.results) {
        let rows: Vec<&CellResult> = rec.results.iter().filter(|r| r.workload == w).collect();
        let first = rows[0];
        let _ = writeln!(
            out,
            "### {w}\n\nmetric `{}` ({}), threads {}, args `{}`\n",
            first.metric,
            if first.higher_is_better {
                "higher is better"
            } else {
                "lower is better"
            },
            first.threads,
            first.args.join(" ")
        );
        if let Some(note) = workload_note(rec, &w) {
            let _ = writeln!(out, "{note}\n");
        }
        let _ = writeln!(
            out,
            "| allocator | median | min–max | peak RSS MiB | faults | CPU s | ratio | served |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|---|");
        for r in rows {
            let served = match r.served_by_hakmem {
                Some(true) => "yes",
                Some(false) => "**NO**",
                None => "",
            };
            let mut minmax = match (r.min, r.max) {
                (Some(a), Some(b)) => format!("{}–{}", fmt_num(a), fmt_num(b)),
                _ => "–".into(),
            };
            if r.unstable {
                let _ = write!(minmax, " {UNSTABLE_MARK} {}", fmt_spread(r));
            }
            let mut name = escape_cell(&r.allocator);
            if !r.ok() {
                name.push_str(" ⚠");
            }
            let _ = writeln!(
                out,
                "| {name} | {} | {minmax} | {} | {} | {} | {} | {served} |",
                opt(r.median, fmt_num),
                opt(r.peak_rss_kb, fmt_mib),
                opt(r.page_faults, fmt_num),
                opt(r.cpu_s, |x| format!("{x:.2}")),
                ratio_text(r),
            );
        }
        if rec.results.iter().any(|r| r.workload == w && r.unstable) {
            let _ = writeln!(out, "\n{}", unstable_note());
        }
        for r in rec.results.iter().filter(|r| r.workload == w) {
            for e in &r.errors {
                let _ = writeln!(out, "\n- ⚠ {}: {}", r.allocator, escape_cell(e));
            }
        }
        let _ = writeln!(out);
    }

    let peers = peers(&rec.results);
    let hak_rows: Vec<&CellResult> = rec
        .results
        .iter()
        .filter(|r| r.allocator.starts_with("hakmem"))
        .collect();
    if !hak_rows.is_empty() && !peers.is_empty() {
        let _ = writeln!(
            out,
            "## Per workload: hakmem's speed over each allocator (> 1 = hakmem better)\n\n\
             The best peer is, per row, the peer of this run that hakmem fares worst against \
             (its smallest ratio) among all the peers in the run; glibc, the baseline, is not a \
             peer. Geomeans are over the plain `hakmem` rows. The peak RSS of the same rows \
             follows in the next table.\n"
        );
        let _ = writeln!(
            out,
            "| workload | hakmem row | {} | vs best peer |",
            peers.join(" | ")
        );
        let _ = writeln!(out, "|---|---|{}---:|", "---:|".repeat(peers.len()));
        let mut per_peer: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
        let mut vs_best = Vec::new();
        let mut any_unstable = false;
        for r in &hak_rows {
            let mut cells: Vec<String> = peers
                .iter()
                .enumerate()
                .map(|(i, p)| match r.ratio_vs.get(p) {
                    Some(x) => {
                        if r.allocator == "hakmem" {
                            per_peer[i].push(*x);
                        }
                        let peer_unstable = rec
                            .results
                            .iter()
                            .any(|q| q.workload == r.workload && &q.allocator == p && q.unstable);
                        if r.unstable || peer_unstable {
                            any_unstable = true;
                            format!("{} {UNSTABLE_MARK}", fmt_ratio(*x))
                        } else {
                            fmt_ratio(*x)
                        }
                    }
                    None => "–".into(),
                })
                .collect();
            cells.push(match best_peer(&r.ratio_vs) {
                Some((p, x)) => {
                    if r.allocator == "hakmem" {
                        vs_best.push(x);
                    }
                    format!("{} {}", fmt_ratio(x), escape_cell(p))
                }
                None => "–".into(),
            });
            row3(&mut out, &r.workload, &r.allocator, &cells.join(" | "));
        }
        let mut g: Vec<String> = per_peer
            .iter()
            .map(|v| opt(geomean(v), fmt_ratio))
            .collect();
        g.push(opt(geomean(&vs_best), fmt_ratio));
        let _ = writeln!(out, "| **geomean** | hakmem | {} |\n", g.join(" | "));
        if any_unstable {
            let _ = writeln!(
                out,
                "{UNSTABLE_MARK} one of the two rows of this ratio is unstable (see its \
                 workload's table).\n"
            );
        }
        rss_matrix(&mut out, &rec.results, &hak_rows, &peers);
    }
    variants_table(&mut out, &rec.results);

    let lines = scaling(&rec.results);
    if !lines.is_empty() {
        let _ = writeln!(
            out,
            "## Scaling: N threads over 1 thread, same allocator (> 1 = more done)\n\n\
             Each cell: the thread count, the median of the run-by-run ratios / the ratio of \
             the medians, and the row.\n"
        );
        let _ = writeln!(out, "| 1-thread row | allocator | N threads |");
        let _ = writeln!(out, "|---|---|---|");
        for l in &lines {
            let cells: Vec<String> = l
                .rows
                .iter()
                .map(|r| {
                    format!(
                        "{}: {} / {} ({})",
                        r.threads,
                        opt(r.run_by_run, fmt_ratio),
                        opt(r.of_medians, fmt_ratio),
                        r.workload
                    )
                })
                .collect();
            row3(&mut out, &l.family, &l.allocator, &cells.join(", "));
        }
        let _ = writeln!(out);
    }

    apps_section(&mut out, rec);

    if !rec.ablation.is_empty() || !rec.ablation_absent_features.is_empty() {
        let _ = writeln!(
            out,
            "## Ablation (hakmem, HAKMEM_MODE=minimal + one feature)\n"
        );
        if !rec.ablation_absent_features.is_empty() {
            let _ = writeln!(
                out,
                "absent (the library does not announce them in `hakmem-features:`): {}\n",
                rec.ablation_absent_features.join(", ")
            );
        }
        if !rec.ablation.is_empty() {
            let _ = writeln!(
                out,
                "| workload | config | median | vs minimal (> 1 better) | RSS vs minimal | served |"
            );
            let _ = writeln!(out, "|---|---|---:|---:|---:|---|");
            for a in &rec.ablation {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    a.workload,
                    escape_cell(&a.config),
                    opt(a.median, fmt_num),
                    opt(a.ratio_vs_minimal, fmt_ratio),
                    opt(a.rss_vs_minimal, fmt_ratio),
                    match a.served_by_hakmem {
                        Some(true) => "yes",
                        Some(false) => "**NO**",
                        None => "",
                    }
                );
            }
            let _ = writeln!(out);
        }
    }

    if !rec.instructions.is_empty() {
        let _ = writeln!(
            out,
            "## Instructions per malloc(32)+free pair (callgrind, (Ir(N) − Ir(0)) / N)\n"
        );
        let _ = writeln!(out, "| allocator | instructions/pair | Ir(N) | Ir(0) | N |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for i in &rec.instructions {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                i.allocator,
                opt(i.instructions_per_pair, |x| format!("{x:.1}")),
                i.ir_n.map(|x| x.to_string()).unwrap_or_else(|| "–".into()),
                i.ir_zero
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "–".into()),
                i.n,
            );
            if let Some(e) = &i.error {
                let _ = writeln!(out, "\n- ⚠ {}: {}\n", i.allocator, escape_cell(e));
            }
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "## Configuration record\n");
    for (k, v) in &rec.config {
        render_value(&mut out, k, v, 0);
    }
    out
}

/// `cargo xtask report <record.json> [--out DIR]`: renders the Markdown report and the chart
/// of a saved record again (`<stem>.md`, `<stem>.svg` in DIR, by default the record's
/// folder), and prints the summary.
pub fn rerender(record: &std::path::Path, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(record)
        .with_context(|| format!("cannot read {}", record.display()))?;
    let rec: Record = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a bench record", record.display()))?;
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => record
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stem = record
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("record");
    let quick = rec.config.get("quick") == Some(&Value::Bool(true));
    let svg = crate::chart::render_svg(&rec.results, &chart_title(quick))?;
    for (ext, body) in [("md", render_markdown(&rec)), ("svg", svg)] {
        let p = dir.join(format!("{stem}.{ext}"));
        std::fs::write(&p, body).with_context(|| format!("cannot write {}", p.display()))?;
        println!(
            "{}: {}",
            if ext == "md" { "report" } else { "chart " },
            p.display()
        );
    }
    print!("{}", console_summary(&rec));
    Ok(())
}

/// The chart's title.
pub fn chart_title(quick: bool) -> String {
    format!(
        "hakmem over the best peer per workload{}",
        if quick { " (quick)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CellRaw, RunSample, finalize};
    use serde_json::json;

    fn sample_record() -> Record {
        let mk = |a: &str, vals: &[f64]| CellRaw {
            workload: "larson-t1".into(),
            allocator: a.into(),
            is_hakmem: a.starts_with("hakmem"),
            threads: 1,
            metric: "ops_per_sec".into(),
            higher_is_better: true,
            args: vec!["larson".into(), "--threads".into(), "1".into()],
            runs: vals
                .iter()
                .map(|v| RunSample {
                    value: Some(*v),
                    peak_rss_kb: Some(2048.0),
                    page_faults: Some(10.0),
                    cpu_s: Some(0.5),
                    served_by_hakmem: a.starts_with("hakmem").then_some(true),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let results = finalize(&[
            mk("glibc", &[1e6, 2e6]),
            mk("hakmem", &[3e6, 4e6]),
            mk("mimalloc", &[3e6, 2e6]),
        ]);
        let mut config = Map::new();
        config.insert("commit".into(), json!("abc123"));
        config.insert("dirty".into(), json!(true));
        config.insert(
            "build".into(),
            json!({"rustc": "rustc 1.95.0\nhost: x86_64"}),
        );
        Record {
            config,
            results,
            ablation: vec![],
            ablation_absent_features: vec!["HAKMEM_ELO".into()],
            instructions: vec![],
            skipped: vec!["skip: tcmalloc not installed".into()],
            ..Default::default()
        }
    }

    #[test]
    fn markdown_opens_with_the_summary_and_ends_with_the_config() {
        let md = render_markdown(&sample_record());
        let summary = md.find("## Summary").unwrap();
        let geo = md.find("| mimalloc | 1.50× | 1.00× | 1 |").unwrap();
        let losses = md.find("### Where hakmem loses to the best peer").unwrap();
        let table = md.find("### larson-t1").unwrap();
        let per = md.find("## Per workload: hakmem's speed").unwrap();
        let rss = md.find("## Per workload: hakmem's peak RSS").unwrap();
        let cfg = md.find("## Configuration record").unwrap();
        let commit = md.find("**commit**: `abc123`").unwrap();
        assert!(
            summary < geo && geo < losses && losses < table && table < per && per < rss,
            "{md}"
        );
        assert!(rss < cfg && cfg < commit, "{md}");
        assert!(md.contains("at commit `abc123` (dirty)"), "{md}");
        assert!(md.contains("| glibc | 2.50× | 1.00× | 1 |"), "{md}");
        assert!(md.contains("| **best peer** | 1.50× | 1.00× | 1 |"), "{md}");
        assert!(md.contains("Nowhere: on every row"), "{md}");
        assert!(
            md.contains("| larson-t1 | hakmem | 1.00× | 1.00× | 1.00× mimalloc |"),
            "{md}"
        );
        // Per-workload table row for hakmem with its ratios (3/1, 4/2 -> 2.5; 1, 2 -> 1.5).
        assert!(md.contains("2.50× vs glibc"), "{md}");
        assert!(md.contains("1.50× vs mimalloc"), "{md}");
        assert!(
            md.contains("| larson-t1 | hakmem | 2.50× † | 1.50× † | 1.50× mimalloc |"),
            "{md}"
        );
        assert!(
            md.contains("| **geomean** | hakmem | 2.50× | 1.50× | 1.50× |"),
            "{md}"
        );
        assert!(md.contains("skip: tcmalloc not installed"));
        assert!(
            md.contains("    ```\n    rustc 1.95.0\n    host: x86_64\n    ```"),
            "{md}"
        );
        assert!(md.contains("HAKMEM_ELO"));
        assert!(md.contains("| 2.0 |"), "RSS in MiB: {md}");
    }

    #[test]
    fn unstable_rows_are_marked_and_explained() {
        let rec = sample_record();
        let md = render_markdown(&rec);
        // Every row of the sample spreads too much: glibc 1M..2M (100%), hakmem 3M..4M (33%),
        // mimalloc 2M..3M (50%).
        assert!(
            md.contains("| hakmem | 3.50M | 3.00M–4.00M † 33% |"),
            "{md}"
        );
        assert!(
            md.contains("| glibc | 1.50M | 1.00M–2.00M † 100% |"),
            "{md}"
        );
        assert!(
            md.contains("| mimalloc | 2.50M | 2.00M–3.00M † 50% |"),
            "{md}"
        );
        assert!(md.contains(&unstable_note()), "{md}");
        assert_eq!(
            md.matches(&unstable_note()).count(),
            1,
            "one note per table"
        );
        assert!(md.contains("one of the two rows of this ratio is unstable"));

        let steady = |a: &str, v: f64| CellRaw {
            workload: "tiny-hot-16".into(),
            allocator: a.into(),
            is_hakmem: a == "hakmem",
            threads: 1,
            metric: "ops_per_sec".into(),
            higher_is_better: true,
            runs: [v, v * 1.1, v * 1.05]
                .iter()
                .map(|x| RunSample {
                    value: Some(*x),
                    served_by_hakmem: (a == "hakmem").then_some(true),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let md = render_markdown(&Record {
            config: Map::new(),
            results: finalize(&[steady("glibc", 10.0), steady("hakmem", 20.0)]),
            ablation: vec![],
            ablation_absent_features: vec![],
            instructions: vec![],
            skipped: vec![],
            apps: vec![],
            apps_vs_peers: vec![],
            apps_geomean: vec![],
        });
        assert!(!md.contains(&unstable_note()), "{md}");
        assert!(md.contains("| tiny-hot-16 | hakmem | 2.00× |"), "{md}");
    }

    #[test]
    fn notes_are_printed_under_their_heading() {
        let mut rec = sample_record();
        rec.config.insert(
            "workloads".into(),
            json!([
                {"name": "larson-t1", "args": ["larson"], "note": "RSS matters here."},
                {"name": "other", "args": ["x"], "note": "Not this one."},
            ]),
        );
        let md = render_markdown(&rec);
        assert!(
            md.contains("args `larson --threads 1`\n\nRSS matters here.\n\n| allocator |"),
            "{md}"
        );
        // Only in the configuration record, not under a heading.
        assert!(!md.contains("\nNot this one.\n"), "{md}");
        assert_eq!(workload_note(&sample_record(), "larson-t1"), None);
    }

    #[test]
    fn json_record_has_required_top_level_keys() {
        let v = serde_json::to_value(sample_record()).unwrap();
        assert_eq!(v["commit"], "abc123");
        let r = &v["results"][1];
        for k in [
            "workload",
            "allocator",
            "threads",
            "metric",
            "median",
            "min",
            "max",
            "peak_rss_kb",
            "page_faults",
            "cpu_s",
            "runs",
            "ratio_vs",
            "served_by_hakmem",
            "spread",
            "unstable",
        ] {
            assert!(r.get(k).is_some(), "missing {k} in {r}");
        }
        assert_eq!(r["ratio_vs"]["glibc"], 2.5);
        assert_eq!(v["results"][0]["served_by_hakmem"], Value::Null);
    }

    #[test]
    fn scaling_pairs_runs_of_one_allocator_across_thread_counts() {
        let mk = |w: &str, a: &str, t: u64, vals: &[f64]| CellRaw {
            workload: w.into(),
            allocator: a.into(),
            is_hakmem: a == "hakmem",
            threads: t,
            metric: "ops_per_sec".into(),
            higher_is_better: true,
            args: vec!["larson".into(), "--threads".into(), t.to_string()],
            runs: vals
                .iter()
                .map(|v| RunSample {
                    value: Some(*v),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut other = mk("xthread", "hakmem", 4, &[9.0, 9.0, 9.0]);
        other.args = vec!["xthread".into(), "--threads".into(), "4".into()];
        let results = finalize(&[
            mk("larson-t1", "hakmem", 1, &[10.0, 20.0, 10.0]),
            mk("larson-t2", "hakmem", 2, &[19.0, 36.0, 21.0]),
            mk("larson-t4", "hakmem", 4, &[30.0, 30.0, 30.0]),
            mk("larson-t1", "glibc", 1, &[10.0, 10.0, 10.0]),
            mk("larson-t2", "glibc", 2, &[15.0, 15.0, 15.0]),
            other,
        ]);
        let lines = scaling(&results);
        assert_eq!(lines.len(), 2, "xthread has no 1-thread row");
        let h = &lines[0];
        assert_eq!(
            (h.family.as_str(), h.allocator.as_str()),
            ("larson-t1", "hakmem")
        );
        // Run by run: 1.9, 1.8, 2.1 -> median 1.9; the medians: 21 / 10 = 2.1.
        let close = |x: Option<f64>, want: f64| (x.unwrap() - want).abs() < 1e-9;
        assert_eq!((h.rows[0].threads, h.rows[1].threads), (2, 4));
        assert!(close(h.rows[0].run_by_run, 1.9));
        assert!(close(h.rows[0].of_medians, 2.1));
        assert!(close(h.rows[1].run_by_run, 3.0) && close(h.rows[1].of_medians, 3.0));
        assert_eq!(lines[1].allocator, "glibc");
        assert!(close(lines[1].rows[0].run_by_run, 1.5));
        let md = render_markdown(&Record {
            config: Map::new(),
            results,
            ablation: vec![],
            ablation_absent_features: vec![],
            instructions: vec![],
            skipped: vec![],
            ..Default::default()
        });
        assert!(
            md.contains(
                "| larson-t1 | hakmem | 2: 1.90× / 2.10× (larson-t2), 4: 3.00× / 3.00× (larson-t4) |"
            ),
            "{md}"
        );
    }

    /// The best peer is the strongest of every peer in the run, never glibc nor a hakmem row.
    #[test]
    fn best_peer_is_the_smallest_ratio_over_all_peers() {
        let r: std::collections::BTreeMap<String, f64> = [
            ("glibc", 0.5),
            ("hakmem", 0.9),
            ("mimalloc-2.0-deb", 1.8),
            ("mimalloc-v3", 1.1),
            ("snmalloc", 0.95),
            ("tcmalloc", 1.3),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(best_peer(&r), Some(("snmalloc", 0.95)));
        let only_glibc = [("glibc".to_string(), 2.0)].into_iter().collect();
        assert_eq!(best_peer(&only_glibc), None);
        assert!(is_peer("jemalloc-5.3") && !is_peer("glibc") && !is_peer("hakmem[fast]"));
    }

    #[test]
    fn real_programs_section() {
        use crate::model::{app_geomeans, app_vs_peers};
        let mk = |a: &str, cpu: &[f64]| CellRaw {
            workload: "redis".into(),
            allocator: a.into(),
            is_hakmem: a.starts_with("hakmem"),
            threads: 1,
            metric: "requests_per_sec".into(),
            higher_is_better: true,
            runs: cpu
                .iter()
                .map(|c| RunSample {
                    value: Some(1000.0 / c),
                    cpu_s: Some(*c),
                    wall_s: Some(1.0),
                    peak_rss_kb: Some(20480.0),
                    page_faults: Some(100.0),
                    served_by_hakmem: a.starts_with("hakmem").then_some(true),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let apps = finalize(&[
            mk("glibc", &[2.0, 2.2]),
            mk("hakmem", &[1.0, 1.1]),
            mk("tcmalloc", &[1.05, 1.2]),
        ]);
        let mut config = Map::new();
        config.insert(
            "real_programs".into(),
            json!({"programs": {"redis": {"about": "redis-server", "input": "-P 16", "version": "v=7",
                "own_malloc": "links libjemalloc.so.2"}}}),
        );
        let rec = Record {
            config,
            apps_vs_peers: app_vs_peers(&apps),
            apps_geomean: app_geomeans(&apps),
            apps,
            ..Default::default()
        };
        let md = render_markdown(&rec);
        assert!(md.contains("## Real programs"), "{md}");
        assert!(
            md.contains("| redis | redis-server (links libjemalloc.so.2) | -P 16 | v=7 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| redis | hakmem | 955/s | 909/s–1000/s | 1.05 | 1.00–1.10 | 20.0 | 100 | yes |"
            ),
            "{md}"
        );
        // CPU 2.1 vs 1.05: apart; tcmalloc 1.125 vs 1.05: overlapping.
        assert!(
            md.contains("| redis | hakmem | glibc | 2.00× ✱ | 2.00× ✱ | 1.00× |"),
            "{md}"
        );
        assert!(
            md.contains("| redis | tcmalloc | 1.12 | 1.05 | 1.07× |"),
            "{md}"
        );
        assert!(md.contains("| **geomean** | | | | 1.07× |"), "{md}");
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["apps"][1]["cpu_min_s"], 1.0);
        assert_eq!(v["real_programs"]["programs"]["redis"]["version"], "v=7");
        assert_eq!(v["apps_geomean"][0]["apps"][0]["peer"], "tcmalloc");
        assert!(v.get("ablation").is_none());
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(12_345_678.0), "12.35M");
        assert_eq!(fmt_num(45_600.0), "45.6k");
        assert_eq!(fmt_num(4_560.0), "4560");
        assert_eq!(fmt_num(1.5), "1.50");
        assert_eq!(fmt_num(0.01234), "0.0123");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_ratio(1.0), "1.00×");
    }

    #[test]
    fn summary_lists_losses_and_real_programs_and_round_trips() {
        let mk = |w: &str, a: &str, v: f64, rss: f64| CellRaw {
            workload: w.into(),
            allocator: a.into(),
            is_hakmem: a.starts_with("hakmem"),
            threads: 1,
            metric: "ops_per_sec".into(),
            higher_is_better: true,
            runs: vec![RunSample {
                value: Some(v),
                peak_rss_kb: Some(rss),
                cpu_s: Some(1.0),
                served_by_hakmem: a.starts_with("hakmem").then_some(true),
                ..Default::default()
            }],
            ..Default::default()
        };
        let results = finalize(&[
            mk("w", "glibc", 100.0, 1024.0),
            mk("w", "hakmem", 100.0, 2048.0),
            mk("w", "tcmalloc", 400.0, 1024.0),
        ]);
        let apps = finalize(&[
            mk("redis", "hakmem", 50.0, 100.0),
            mk("redis", "snmalloc", 100.0, 400.0),
        ]);
        let rec = Record {
            results,
            apps,
            ..Default::default()
        };
        let md = render_markdown(&rec);
        assert!(md.contains("| tcmalloc | 0.25× | 2.00× | 1 |"), "{md}");
        assert!(md.contains("### Real programs (1 programs)"), "{md}");
        assert!(
            md.contains("| snmalloc | 0.50× | 1.00× | 0.25× | 1 |"),
            "{md}"
        );
        assert!(md.contains("| w | tcmalloc | 0.25× | 2.00× |"), "{md}");
        assert!(
            md.contains("| redis (real program) | snmalloc | 0.50× | 0.25× |"),
            "{md}"
        );
        assert!(
            md.contains("| w | hakmem | 2.00× | 2.00× | 2.00× tcmalloc |"),
            "the RSS table: {md}"
        );
        let c = console_summary(&rec);
        assert!(
            c.contains("tcmalloc") && c.contains("0.25×    2.00×"),
            "{c}"
        );
        assert!(
            c.contains("loses to the best peer: w vs tcmalloc 0.25× (RSS 2.00×)"),
            "{c}"
        );
        // A saved record renders the same report again.
        let back: Record = serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
        assert_eq!(render_markdown(&back), md);
        let old = serde_json::to_string(&sample_record()).unwrap();
        let back: Record = serde_json::from_str(&old).unwrap();
        assert_eq!(render_markdown(&back), render_markdown(&sample_record()));
    }
}
