//! The SVG chart: grouped bars, one group per workload, one bar per allocator, each
//! bar the allocator's median throughput normalised to glibc = 1.0 (for lower-is-better
//! metrics the ratio is inverted so that a taller bar is always better).

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::model::CellResult;

/// Per workload: `(workload, [(allocator, normalised value)])`. Workloads without a
/// glibc median are left out (nothing to normalise to).
pub type Groups = Vec<(String, Vec<(String, Option<f64>)>)>;

/// Normalised values for the chart, allocators in first-seen order.
pub fn normalized(results: &[CellResult]) -> (Vec<String>, Groups) {
    let mut allocs: Vec<String> = Vec::new();
    let mut order: Vec<String> = Vec::new();
    for r in results {
        if !allocs.contains(&r.allocator) {
            allocs.push(r.allocator.clone());
        }
        if !order.contains(&r.workload) {
            order.push(r.workload.clone());
        }
    }
    let mut groups = Vec::new();
    for w in order {
        let base = results
            .iter()
            .find(|r| r.workload == w && r.allocator == "glibc")
            .and_then(|r| r.median)
            .filter(|b| *b > 0.0);
        let Some(base) = base else { continue };
        let bars = allocs
            .iter()
            .map(|a| {
                let v = results
                    .iter()
                    .find(|r| r.workload == w && &r.allocator == a)
                    .and_then(|r| {
                        let m = r.median?;
                        if r.higher_is_better {
                            Some(m / base)
                        } else {
                            (m > 0.0).then(|| base / m)
                        }
                    });
                (a.clone(), v)
            })
            .collect();
        groups.push((w, bars));
    }
    (allocs, groups)
}

/// Short label for a normalised value: `0.006`, `0.83`, `12.4`.
pub fn value_label(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.095 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn color_for(name: &str, i: usize) -> RGBColor {
    match name {
        "glibc" => RGBColor(140, 140, 140),
        "hakmem" => RGBColor(214, 39, 40),
        "mimalloc-v3" => RGBColor(31, 119, 180),
        "jemalloc-5.3" => RGBColor(44, 160, 44),
        "snmalloc" => RGBColor(148, 103, 189),
        "tcmalloc" => RGBColor(255, 127, 14),
        "mimalloc-2.0-deb" => RGBColor(158, 202, 225),
        "jemalloc-deb" => RGBColor(161, 217, 155),
        _ => {
            const EXTRA: [RGBColor; 6] = [
                RGBColor(23, 190, 207),
                RGBColor(140, 86, 75),
                RGBColor(227, 119, 194),
                RGBColor(188, 189, 34),
                RGBColor(255, 187, 120),
                RGBColor(255, 152, 150),
            ];
            EXTRA[i % EXTRA.len()]
        }
    }
}

/// Renders the chart as an SVG document.
pub fn render_svg(results: &[CellResult], title: &str) -> Result<String> {
    let (allocs, groups) = normalized(results);
    let n = groups.len().max(1);
    let width = (140 * n as u32 + 200).max(800);
    let height = 600u32;
    let ymax = groups
        .iter()
        .flat_map(|(_, b)| b.iter().filter_map(|(_, v)| *v))
        .fold(1.0f64, f64::max)
        * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let e = |e: &dyn std::fmt::Debug| anyhow!("chart: {e:?}");
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(70)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..ymax)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .y_desc("throughput relative to glibc (higher is better)")
            .draw()
            .map_err(|x| e(&x))?;

        let slots = allocs.len().max(1) as f64;
        let group_w = 0.8;
        let bar_w = group_w / slots;
        for (ai, a) in allocs.iter().enumerate() {
            let color = color_for(a, ai);
            let bars: Vec<Rectangle<(f64, f64)>> = groups
                .iter()
                .enumerate()
                .filter_map(|(gi, (_, b))| {
                    let v = b.get(ai)?.1?;
                    let x0 = gi as f64 + 0.1 + ai as f64 * bar_w;
                    Some(Rectangle::new(
                        [(x0, 0.0), (x0 + bar_w * 0.92, v)],
                        color.filled(),
                    ))
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(|x| e(&x))?
                .label(a.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        // Value labels above every bar, so that very short bars stay readable.
        let label_style = TextStyle::from(("sans-serif", 10).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Bottom,
            ),
        );
        for (gi, (_, b)) in groups.iter().enumerate() {
            for (ai, (_, v)) in b.iter().enumerate() {
                let Some(v) = *v else { continue };
                let x = gi as f64 + 0.1 + (ai as f64 + 0.46) * bar_w;
                let (px, py) = chart.backend_coord(&(x, v));
                root.draw(&Text::new(
                    value_label(v),
                    (px, py - 2),
                    label_style.clone(),
                ))
                .map_err(|x| e(&x))?;
            }
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 1.0), (n as f64, 1.0)],
                BLACK.stroke_width(1),
            )))
            .map_err(|x| e(&x))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;

        let style = TextStyle::from(("sans-serif", 13).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ),
        );
        for (gi, (w, _)) in groups.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(gi as f64 + 0.5, 0.0));
            root.draw(&Text::new(w.clone(), (px, py + 8), style.clone()))
                .map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CellRaw, RunSample, finalize};

    fn results() -> Vec<CellResult> {
        let mk = |w: &str, a: &str, v: f64, hib: bool| CellRaw {
            workload: w.into(),
            allocator: a.into(),
            is_hakmem: a == "hakmem",
            metric: "m".into(),
            higher_is_better: hib,
            runs: vec![RunSample {
                value: Some(v),
                served_by_hakmem: (a == "hakmem").then_some(true),
                ..Default::default()
            }],
            ..Default::default()
        };
        finalize(&[
            mk("w1", "glibc", 100.0, true),
            mk("w1", "hakmem", 250.0, true),
            mk("w2", "glibc", 2.0, false),
            mk("w2", "hakmem", 1.0, false),
            mk("w3", "hakmem", 1.0, true),
        ])
    }

    #[test]
    fn normalisation() {
        let (allocs, g) = normalized(&results());
        assert_eq!(allocs, ["glibc", "hakmem"]);
        assert_eq!(g.len(), 2, "w3 has no glibc baseline");
        assert_eq!(g[0].1[0].1, Some(1.0));
        assert_eq!(g[0].1[1].1, Some(2.5));
        // Lower is better: half the time is twice as good.
        assert_eq!(g[1].1[1].1, Some(2.0));
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
        assert!(svg.contains("hakmem"));
        assert!(svg.contains("<rect"));
    }
}
