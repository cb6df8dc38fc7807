//! The SVG chart: hakmem over the best peer of every workload, one bar per workload, in two
//! panels (speed, peak RSS), each on a log axis centred at 1 where a bar above 1 means hakmem
//! is better. The best peer is the one of the report's summary: per workload, the peer hakmem
//! fares worst against on speed (glibc, the baseline, is not a peer); the RSS panel is against
//! that same peer.

use anyhow::{Result, anyhow};
use plotters::coord::CoordTranslate;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::model::{CellResult, best_pairs, workload_pairs};

/// One workload's bar pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub workload: String,
    pub peer: String,
    /// hakmem's speed ratio over the peer (> 1 = hakmem better).
    pub speed: f64,
    /// The peer's median peak RSS over hakmem's (> 1 = hakmem smaller), so that above 1 is
    /// better in both panels.
    pub rss: Option<f64>,
    pub unstable: bool,
}

/// The bars, workloads in first-seen order; a workload without a peer is left out.
pub fn bars(results: &[CellResult]) -> Vec<Bar> {
    let row = if results.iter().any(|r| r.allocator == "hakmem") {
        "hakmem"
    } else {
        match results.iter().find(|r| r.allocator.starts_with("hakmem")) {
            Some(r) => r.allocator.as_str(),
            None => return Vec::new(),
        }
    };
    let pairs = workload_pairs(results, row);
    best_pairs(&pairs)
        .into_iter()
        .filter_map(|p| {
            Some(Bar {
                workload: p.unit.clone(),
                peer: p.peer.clone(),
                speed: p.speed.filter(|s| *s > 0.0 && s.is_finite())?,
                rss: p.rss.filter(|r| *r > 0.0).map(|r| 1.0 / r),
                unstable: p.unstable,
            })
        })
        .collect()
}

/// Half the height of the log2 axis: at least 2 (0.25 to 4), enough for every ratio.
pub fn half_range(values: impl Iterator<Item = f64>) -> i32 {
    values
        .filter(|v| *v > 0.0 && v.is_finite())
        .map(|v| v.log2().abs().ceil() as i32)
        .fold(2, i32::max)
}

/// The label of a point of the log2 axis: `0.25`, `0.5`, `1`, `2`, `4`.
pub fn axis_label(log2: f64) -> String {
    let v = 2f64.powf(log2.round());
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Short label of a ratio: `0.006`, `0.83`, `12.4`.
pub fn value_label(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.095 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

const BETTER: RGBColor = RGBColor(44, 160, 44);
const WORSE: RGBColor = RGBColor(214, 39, 40);

fn bar_style(v: f64, unstable: bool) -> ShapeStyle {
    let c = if v >= 1.0 { BETTER } else { WORSE };
    if unstable {
        c.mix(0.4).filled()
    } else {
        c.filled()
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// One panel: a bar per workload from 1 to its ratio, the value at the bar's end, the
/// workload and its best peer under the axis.
fn panel(
    area: &Area,
    caption: &str,
    bars: &[Bar],
    value: impl Fn(&Bar) -> Option<f64>,
) -> Result<()> {
    let e = |x: &dyn std::fmt::Debug| anyhow!("chart: {x:?}");
    let n = bars.len().max(1);
    let k = half_range(bars.iter().filter_map(&value));
    let step = if k > 6 { 2 } else { 1 };
    let ticks: Vec<f64> = (-k..=k).filter(|i| i % step == 0).map(f64::from).collect();
    let pad = 0.35;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, -(k as f64) - pad..k as f64 + pad)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(0)
        .y_desc("ratio (log scale)")
        .draw()
        .map_err(|x| e(&x))?;
    // The coordinates map to the document's pixels, `area.draw` in the panel's.
    let (bx, by) = area.get_base_pixel();
    let coord = chart.as_coord_spec().clone();
    let at = |x: f64, y: f64| {
        let (px, py) = coord.translate(&(x, y));
        (px - bx, py - by)
    };
    // The ticks by hand, at the powers of two: 0.25, 0.5, 1, 2, 4, ...
    let grid = RGBColor(220, 220, 220);
    for t in &ticks {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, *t), (n as f64, *t)],
                grid.stroke_width(1),
            )))
            .map_err(|x| e(&x))?;
        let (px, py) = at(0.0, *t);
        let st = TextStyle::from(("sans-serif", 12).into_font())
            .pos(Pos::new(HPos::Right, VPos::Center));
        area.draw(&Text::new(axis_label(*t), (px - 6, py), st))
            .map_err(|x| e(&x))?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (n as f64, 0.0)],
            BLACK.stroke_width(1),
        )))
        .map_err(|x| e(&x))?;
    let below = |v: f64| if v >= 1.0 { VPos::Bottom } else { VPos::Top };
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64;
        let Some(v) = value(b) else {
            let (px, py) = at(x + 0.5, 0.0);
            let st = TextStyle::from(("sans-serif", 11).into_font())
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            area.draw(&Text::new("n/a", (px, py - 2), st))
                .map_err(|x| e(&x))?;
            continue;
        };
        let y = v.log2();
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, y)],
                bar_style(v, b.unstable),
            )))
            .map_err(|x| e(&x))?;
        let (px, py) = at(x + 0.5, y);
        let st =
            TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Center, below(v)));
        let dy = if v >= 1.0 { -2 } else { 2 };
        let mark = if b.unstable { " †" } else { "" };
        area.draw(&Text::new(
            format!("{}×{mark}", value_label(v)),
            (px, py + dy),
            st,
        ))
        .map_err(|x| e(&x))?;
    }
    let bottom = -(k as f64) - pad;
    for (i, b) in bars.iter().enumerate() {
        let (px, py) = at(i as f64 + 0.5, bottom);
        let top = Pos::new(HPos::Center, VPos::Top);
        area.draw(&Text::new(
            b.workload.clone(),
            (px, py + 6),
            TextStyle::from(("sans-serif", 12).into_font()).pos(top),
        ))
        .map_err(|x| e(&x))?;
        area.draw(&Text::new(
            format!("vs {}", b.peer),
            (px, py + 22),
            TextStyle::from(("sans-serif", 10).into_font())
                .color(&RGBColor(90, 90, 90))
                .pos(top),
        ))
        .map_err(|x| e(&x))?;
    }
    Ok(())
}

/// The legend, in its own strip above the panels (never over the bars).
fn legend(area: &Area) -> Result<()> {
    let e = |x: &dyn std::fmt::Debug| anyhow!("chart: {x:?}");
    let items = [
        (bar_style(2.0, false), "hakmem better (above 1)"),
        (bar_style(0.5, false), "hakmem worse (below 1)"),
        (bar_style(2.0, true), "unstable row (†, runs spread > 20%)"),
    ];
    let mut x = 70;
    let y = 14;
    let st =
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (style, text) in items {
        area.draw(&Rectangle::new([(x, y - 6), (x + 14, y + 6)], style))
            .map_err(|x| e(&x))?;
        area.draw(&Text::new(text, (x + 20, y), st.clone()))
            .map_err(|x| e(&x))?;
        x += 20 + 7 * text.len() as i32 + 24;
    }
    area.draw(&Text::new(
        "under each bar: the workload and its best peer (the peer hakmem fares worst against on \
         speed; glibc is not a peer); both panels against that peer",
        (70, y + 20),
        st,
    ))
    .map_err(|x| e(&x))?;
    Ok(())
}

/// Renders the chart as an SVG document.
pub fn render_svg(results: &[CellResult], title: &str) -> Result<String> {
    let bars = bars(results);
    let n = bars.len().max(1) as u32;
    let width = (110 * n + 160).max(900);
    let height = 820u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let e = |x: &dyn std::fmt::Debug| anyhow!("chart: {x:?}");
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(|x| e(&x))?;
        let (top, rest) = root.split_vertically(44);
        legend(&top)?;
        let panels = rest.split_evenly((2, 1));
        panel(
            &panels[0],
            "speed: hakmem's ratio over the best peer (> 1 = hakmem faster)",
            &bars,
            |b| Some(b.speed),
        )?;
        panel(
            &panels[1],
            "peak RSS: the best peer's over hakmem's (> 1 = hakmem smaller)",
            &bars,
            |b| b.rss,
        )?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CellRaw, RunSample, finalize};

    fn results() -> Vec<CellResult> {
        let mk = |w: &str, a: &str, v: f64, rss: f64, hib: bool| CellRaw {
            workload: w.into(),
            allocator: a.into(),
            is_hakmem: a == "hakmem",
            metric: "m".into(),
            higher_is_better: hib,
            runs: vec![RunSample {
                value: Some(v),
                peak_rss_kb: Some(rss),
                served_by_hakmem: (a == "hakmem").then_some(true),
                ..Default::default()
            }],
            ..Default::default()
        };
        finalize(&[
            mk("w1", "glibc", 100.0, 1000.0, true),
            mk("w1", "hakmem", 250.0, 1000.0, true),
            mk("w1", "tcmalloc", 500.0, 2000.0, true),
            mk("w1", "snmalloc", 50.0, 100.0, true),
            mk("w2", "glibc", 2.0, 1.0, false),
            mk("w2", "hakmem", 1.0, 400.0, false),
            mk("w2", "snmalloc", 4.0, 100.0, false),
            mk("w3", "hakmem", 1.0, 1.0, true),
            mk("w3", "glibc", 1.0, 1.0, true),
        ])
    }

    #[test]
    fn one_bar_per_workload_against_the_best_peer() {
        let b = bars(&results());
        assert_eq!(b.len(), 2, "w3 has glibc only: no peer");
        assert_eq!(
            (b[0].workload.as_str(), b[0].peer.as_str()),
            ("w1", "tcmalloc")
        );
        assert_eq!(b[0].speed, 0.5);
        assert_eq!(b[0].rss, Some(2.0), "tcmalloc's RSS over hakmem's");
        // Lower is better: a quarter of the time is four times as good.
        assert_eq!((b[1].peer.as_str(), b[1].speed), ("snmalloc", 4.0));
        assert_eq!(b[1].rss, Some(0.25));
    }

    #[test]
    fn log_axis_is_centred_at_one() {
        assert_eq!(half_range([1.0, 0.5, 3.0].into_iter()), 2);
        assert_eq!(half_range([0.1, 2.0].into_iter()), 4, "0.1 needs 1/16");
        assert_eq!(half_range([40.0].into_iter()), 6);
        let labels: Vec<String> = (-2..=2).map(|y| axis_label(f64::from(y))).collect();
        assert_eq!(labels, ["0.25", "0.5", "1", "2", "4"]);
    }

    #[test]
    fn labels() {
        assert_eq!(value_label(12.44), "12.4");
        assert_eq!(value_label(0.8312), "0.83");
        assert_eq!(value_label(0.0061), "0.006");
    }

    #[test]
    fn svg_renders() {
        let svg = render_svg(&results(), "test chart").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.contains("test chart"));
        assert!(svg.contains("\nw1\n") && svg.contains("\nw2\n"));
        assert!(svg.contains("vs tcmalloc") && svg.contains("vs snmalloc"));
        for l in ["0.25", "0.5", "\n1\n", "\n2\n", "\n4\n"] {
            assert!(svg.contains(l), "axis label {l:?}");
        }
        assert!(svg.contains("hakmem better (above 1)"));
        assert!(svg.contains("<rect"));
        assert!(render_svg(&[], "empty").unwrap().starts_with("<svg"));
    }
}
