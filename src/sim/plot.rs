//! SVG plots of a simulator run (with `plotters`): the completion-time CDF per class, piece
//! availability over time, and bytes uploaded per peer of each class over time.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::engine::Outcome;
use super::report::completion_times;
use super::scenario::Scenario;

/// Colours for series, in order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One named line.
pub type Series = (String, Vec<(f64, f64)>);

/// Draws `series` as lines into an SVG at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_max) = (0.0f64, 0.0f64);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    let (x_max, y_max) = (x_max.max(1e-9) * 1.02, y_max.max(1e-9) * 1.05);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot draw {}", path.display()))
}

/// Writes completion_cdf.svg, availability.svg and upload_by_class.svg into `dir`.
pub fn write_all(dir: &Path, sc: &Scenario, o: &Outcome) -> anyhow::Result<()> {
    let mut cdf = Vec::new();
    for (i, c) in sc.classes.iter().enumerate() {
        let times = completion_times(o, i as u16);
        let downloaders = o
            .peers
            .iter()
            .filter(|p| p.class == i as u16 && !p.seed)
            .count();
        if downloaders == 0 {
            continue;
        }
        let mut pts = vec![(0.0, 0.0)];
        for (k, t) in times.iter().enumerate() {
            pts.push((t / 60.0, (k + 1) as f64 / downloaders as f64));
        }
        cdf.push((c.name.clone(), pts));
    }
    line_chart(
        &dir.join("completion_cdf.svg"),
        &format!("{}: completion time CDF", sc.name),
        "minutes from joining",
        "fraction of the class complete",
        &cdf,
    )?;
    let minutes = |t: f64| t / 60.0;
    let min: Vec<_> = o
        .samples
        .iter()
        .map(|s| (minutes(s.t), f64::from(s.min_availability)))
        .collect();
    let mean: Vec<_> = o
        .samples
        .iter()
        .map(|s| (minutes(s.t), s.mean_availability))
        .collect();
    line_chart(
        &dir.join("availability.svg"),
        &format!(
            "{}: piece availability (online peers holding a piece)",
            sc.name
        ),
        "minutes",
        "peers",
        &[("min over pieces".into(), min), ("mean".into(), mean)],
    )?;
    let mut up = Vec::new();
    for (i, c) in sc.classes.iter().enumerate() {
        let n = o
            .peers
            .iter()
            .filter(|p| p.class == i as u16)
            .count()
            .max(1) as f64;
        let pts = o
            .samples
            .iter()
            .map(|s| (minutes(s.t), s.uploaded_by_class[i] / n / 1e9))
            .collect();
        up.push((c.name.clone(), pts));
    }
    line_chart(
        &dir.join("upload_by_class.svg"),
        &format!("{}: uploaded per peer, by class", sc.name),
        "minutes",
        "GB uploaded per peer",
        &up,
    )
}
