//! Learning curves as an SVG picture: the training loss, and the training and test accuracy, per
//! epoch, drawn with plotters' SVG backend.
//!
//! No font file is read: the SVG backend writes text as SVG `<text>` elements in the generic
//! `sans-serif` family, which the viewer renders with its own fonts, and plotters is built without
//! its font-loading features (`ttf`, `ab_glyph`), laying out labels from an estimate of their width.
//!
//! [`learning_curves_svg`] draws the picture; [`write_learning_curves`] writes it atomically.

use std::io;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use bp_train::EpochReport;
use bp_train::write_atomic;

/// The picture's width and height in pixels.
pub const SIZE: (u32, u32) = (1000, 420);

/// What can go wrong drawing learning curves.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// There is nothing to draw.
    #[error("no epoch to plot: learning curves need at least one epoch")]
    NoEpochs,

    /// Plotters failed to lay out or draw the picture.
    #[error("cannot draw the learning curves: {0}")]
    Draw(String),

    /// The SVG file could not be written; a previous file at the path is unchanged.
    #[error("cannot write the plot file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// The colour of the loss and training-accuracy curves.
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
/// The colour of the test-accuracy curve.
const TEST_COLOR: RGBColor = RGBColor(214, 39, 40);
/// The font family: a generic family that every SVG viewer resolves.
const FONT: &str = "sans-serif";

/// The learning curves of a run as an SVG document: on the left the mean training loss of each
/// epoch, on the right the training and test accuracy after it, with the best test accuracy in the
/// legend, under `title`.
///
/// # Errors
///
/// [`PlotError::NoEpochs`] for an empty slice, [`PlotError::Draw`] if plotters fails.
pub fn learning_curves_svg(epochs: &[EpochReport], title: &str) -> Result<String, PlotError> {
    if epochs.is_empty() {
        return Err(PlotError::NoEpochs);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, epochs, title).map_err(|e| PlotError::Draw(e.to_string()))?;
    }
    Ok(svg)
}

/// Writes [`learning_curves_svg`] to `path`, atomically (see [`write_atomic`]).
///
/// # Errors
///
/// As [`learning_curves_svg`], and [`PlotError::Write`].
pub fn write_learning_curves(
    path: impl AsRef<Path>,
    epochs: &[EpochReport],
    title: &str,
) -> Result<(), PlotError> {
    let path = path.as_ref();
    let svg = learning_curves_svg(epochs, title)?;
    write_atomic(path, |w| w.write_all(svg.as_bytes())).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

type DrawResult = Result<(), DrawingAreaErrorKind<io::Error>>;

/// The x range: the epochs, or a unit around a single one.
fn epoch_range(epochs: &[EpochReport]) -> std::ops::Range<f64> {
    let first = epochs.first().map_or(1, |r| r.epoch) as f64;
    let last = epochs.last().map_or(1, |r| r.epoch) as f64;
    if last > first {
        let pad = (last - first) * 0.03;
        first - pad..last + pad
    } else {
        first - 0.5..first + 0.5
    }
}

/// Labels whole epochs only.
fn epoch_label(x: &f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    epochs: &[EpochReport],
    title: &str,
) -> DrawResult {
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 26))?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let xs = epoch_range(epochs);
    let x_labels = epochs.len().clamp(2, 10);

    let loss_max = epochs.iter().map(|r| r.loss).fold(0.0, f64::max);
    let loss_top = if loss_max > 0.0 { loss_max * 1.08 } else { 1.0 };
    let mut chart = ChartBuilder::on(&left)
        .caption("training loss", (FONT, 20))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(60)
        .build_cartesian_2d(xs.clone(), 0.0..loss_top)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .x_labels(x_labels)
        .x_label_formatter(&epoch_label)
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style((FONT, 15))
        .max_light_lines(4)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    chart.draw_series(
        LineSeries::new(
            epochs.iter().map(|r| (r.epoch as f64, r.loss)),
            TRAIN_COLOR.stroke_width(2),
        )
        .point_size(3),
    )?;

    let acc_min = epochs
        .iter()
        .flat_map(|r| [r.train_acc, r.test_acc])
        .fold(1.0, f64::min);
    // From a round value below the lowest accuracy up to 1.
    let acc_bottom = ((acc_min - 0.01) * 50.0).floor().max(0.0) / 50.0;
    let acc_bottom = if acc_bottom >= 1.0 { 0.98 } else { acc_bottom };
    let best = epochs.iter().fold(
        &epochs[0],
        |b, r| if r.test_acc > b.test_acc { r } else { b },
    );
    let mut chart = ChartBuilder::on(&right)
        .caption("accuracy", (FONT, 20))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(60)
        .build_cartesian_2d(xs, acc_bottom..1.0)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy")
        .x_labels(x_labels)
        .x_label_formatter(&epoch_label)
        .y_label_formatter(&|y| format!("{y:.3}"))
        .label_style((FONT, 15))
        .max_light_lines(4)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    chart
        .draw_series(
            LineSeries::new(
                epochs.iter().map(|r| (r.epoch as f64, r.train_acc)),
                TRAIN_COLOR.stroke_width(2),
            )
            .point_size(3),
        )?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TRAIN_COLOR.stroke_width(2)));
    chart
        .draw_series(
            LineSeries::new(
                epochs.iter().map(|r| (r.epoch as f64, r.test_acc)),
                TEST_COLOR.stroke_width(2),
            )
            .point_size(3),
        )?
        .label(format!(
            "test (best {:.4}, epoch {})",
            best.test_acc, best.epoch
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TEST_COLOR.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(epoch: usize, loss: f64, train_acc: f64, test_acc: f64) -> EpochReport {
        EpochReport {
            epoch,
            iter: epoch * 600,
            loss,
            train_acc,
            test_acc,
            seconds: 0.5,
            train_seconds: 0.5 * epoch as f64,
        }
    }

    /// The contents of the SVG's `<text>` elements, trimmed.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .and_then(|(_, rest)| rest.split_once("</text>"))
            })
            .map(|(text, _)| text.trim())
            .collect()
    }

    #[test]
    fn the_svg_has_both_panels_the_legend_and_no_font_files() {
        let epochs = [
            report(1, 0.35, 0.90, 0.91),
            report(2, 0.15, 0.95, 0.955),
            report(3, 0.10, 0.97, 0.962),
        ];
        let svg = learning_curves_svg(&epochs, "a run").unwrap();
        std::fs::write("/tmp/plot-test.svg", &svg).unwrap();
        let texts = texts(&svg);
        for text in [
            "a run",
            "training loss",
            "accuracy",
            "epoch",
            "loss",
            "train",
            "test (best 0.9620, epoch 3)",
        ] {
            assert!(texts.contains(&text), "{text} missing from {texts:?}");
        }
        // Three curves of three points each, and a legend line per accuracy curve.
        assert!(svg.matches("<polyline").count() >= 3);
        assert_eq!(svg.matches("<circle").count(), 9);
        assert!(svg.contains("font-family=\"sans-serif\""));
        assert!(!svg.contains("@font-face") && !svg.contains("url("));
    }

    #[test]
    fn a_single_epoch_and_constant_values_still_draw() {
        let svg = learning_curves_svg(&[report(1, 0.0, 1.0, 1.0)], "one").unwrap();
        assert!(texts(&svg).contains(&"one"));
        assert!(matches!(
            learning_curves_svg(&[], "none"),
            Err(PlotError::NoEpochs)
        ));
    }
}
