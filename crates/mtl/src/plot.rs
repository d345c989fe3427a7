//! Training curves as SVG: loss and accuracy per task over optimiser steps, training (thin
//! lines) and validation (thick lines with points), and in joint mode with a multi-task
//! method the tasks' loss and gradient weights.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use mtl_train::Record;

/// `(step, value)` series by label.
type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// Writes `loss.svg` and `accuracy.svg` into `dir` from the records of a run, and
/// `weights.svg` when the run logged loss or gradient weights (`--loss-weighting`,
/// `--grad-aggregation`).
pub fn write_plots(records: &[Record], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let (mut loss, mut accuracy, mut weights) = (Series::new(), Series::new(), Series::new());
    for record in records {
        match record {
            Record::Train {
                step,
                task,
                loss: l,
                accuracy: a,
                loss_weight,
                grad_weight,
                ..
            } => {
                for (kind, weight) in [("loss", loss_weight), ("gradient", grad_weight)] {
                    if let Some(w) = weight {
                        weights
                            .entry(format!("{task} {kind} weight"))
                            .or_default()
                            .push((*step as f64, *w));
                    }
                }
                loss.entry(format!("{task} train"))
                    .or_default()
                    .push((*step as f64, *l));
                accuracy
                    .entry(format!("{task} train"))
                    .or_default()
                    .push((*step as f64, *a));
            }
            Record::Eval {
                step,
                split,
                task,
                loss: l,
                accuracy: a,
                ..
            } if split == "valid" => {
                loss.entry(format!("{task} valid"))
                    .or_default()
                    .push((*step as f64, *l));
                accuracy
                    .entry(format!("{task} valid"))
                    .or_default()
                    .push((*step as f64, *a));
            }
            Record::Eval { .. } => {}
        }
    }
    chart(&dir.join("loss.svg"), "loss (cross-entropy)", &loss)?;
    chart(&dir.join("accuracy.svg"), "accuracy", &accuracy)?;
    if !weights.is_empty() {
        chart(&dir.join("weights.svg"), "task weights", &weights)?;
    }
    Ok(())
}

fn chart(path: &Path, title: &str, series: &Series) -> Result<()> {
    let points = series.values().flatten();
    let max_step = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let (low, high) = points.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (low, high) = if low.is_finite() {
        (low.min(0.0), high.max(low + 1e-3))
    } else {
        (0.0, 1.0)
    };
    let mut svg = String::new();
    let mut draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..max_step, low..high * 1.05)?;
        chart.configure_mesh().x_desc("optimiser step").draw()?;
        let tasks: Vec<String> = series
            .keys()
            .map(|k| k.rsplit_once(' ').map_or(k.as_str(), |(t, _)| t).to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for (label, values) in series {
            let task = label.rsplit_once(' ').map_or(label.as_str(), |(t, _)| t);
            let color =
                Palette99::pick(tasks.iter().position(|t| t == task).unwrap_or(0)).to_rgba();
            let valid = label.ends_with(" valid");
            let style = ShapeStyle::from(color).stroke_width(if valid { 3 } else { 1 });
            chart
                .draw_series(LineSeries::new(values.iter().copied(), style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            if valid {
                chart.draw_series(values.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    mtl_fs::write_file(path, svg.as_bytes()).map_err(|e| anyhow!("writing {}: {e}", path.display()))
}
