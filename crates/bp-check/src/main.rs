//! `bp-check`: the book's `gradient_check.py`, then a check of every layer type.
//!
//! ```text
//! cargo run -p bp-check [-- DATA_DIR]
//! ```
//!
//! Builds the book's `TwoLayerNet(784, 50, 10)` from seed 0, compares backprop with the numerical
//! gradient on the first 3 training images of MNIST (from `DATA_DIR`, by default `datasets/mnist`),
//! and prints one line per parameter: the book's mean `|backprop - numerical|` and the maximum
//! relative error. Then it checks a multi-layer net with batch normalisation, dropout and weight
//! decay, and every layer type on random inputs. Exit status 0 only if everything passes.
//!
//! The nets are sized from the data: one input per pixel, one output per class (the largest label
//! plus one), so any data set in MNIST's layout can be checked, up to images of
//! [`MAX_PARAMS`] parameters' worth (the numerical gradient runs two forward passes per
//! parameter).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use bp_check::{
    GradReport, LAYER_TOLERANCE, NETWORK_TOLERANCE, check_layer, check_network_parallel,
    check_softmax_with_loss, random_input,
};
use bp_core::{Affine, BatchNorm, Dropout, H, Init, Layer, Relu, Sequential, Sigmoid};
use bp_data::{MnistOptions, load_mnist};
use bp_loss::Targets;
use bp_train::{Activation, MultiLayerConfig, MultiLayerNet, Network, TwoLayerNet};
use ndarray::{ArrayD, Axis, Slice, array};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

const USAGE: &str = "usage: bp-check [DATA_DIR]   (default: datasets/mnist)";

/// The most parameters the book's net may have: the numerical gradient takes two forward passes
/// for each, and MNIST's 39,760 take about a second on two cores, so this is under 10 seconds.
const MAX_PARAMS: usize = 250_000;

/// The hidden width of the book's net.
const HIDDEN: usize = 50;

/// Writes a line to stdout; a closed pipe (`bp-check | head`) is not worth a panic.
fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("bp-check: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The data directory: the argument, else `datasets/mnist` under the current directory, else the
/// workspace's shipped copy.
fn data_dir() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next()) {
        (None, _) => {}
        (Some(arg), None) => {
            if arg == "-h" || arg == "--help" {
                out(USAGE);
                return Ok(None);
            }
            if arg.to_string_lossy().starts_with('-') {
                return Err(format!("unknown option {}; {USAGE}", arg.to_string_lossy()));
            }
            return Ok(Some(PathBuf::from(arg)));
        }
        (Some(_), Some(extra)) => {
            return Err(format!(
                "unexpected argument {}; {USAGE}",
                extra.to_string_lossy()
            ));
        }
    }
    let local = Path::new("datasets/mnist");
    if local.is_dir() {
        return Ok(Some(local.to_path_buf()));
    }
    Ok(Some(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist"),
    ))
}

/// The first training images of a data set, flat, and what the nets checked on them take.
struct Images {
    /// The images, (n, rows * cols).
    x: ArrayD<f64>,
    /// Their labels.
    t: Vec<usize>,
    /// Rows and columns of each image.
    shape: (usize, usize),
    /// The number of classes: the largest label plus one.
    classes: usize,
}

impl Images {
    /// The pixels of one image: the nets' input size.
    fn inputs(&self) -> usize {
        self.shape.0 * self.shape.1
    }
}

/// The first `n` training images of the data set in `dir`, with its image shape and class count;
/// an error if there are fewer, or if the book's net for them would be too large to check.
fn first_images(dir: &Path, n: usize) -> Result<Images, String> {
    let opts = MnistOptions {
        num_classes: None,
        ..MnistOptions::default()
    };
    let mnist = load_mnist::<f64>(dir, &opts).map_err(|e| e.to_string())?;
    let available = mnist.x_train.shape()[0];
    if available < n {
        return Err(format!(
            "{} holds {available} training images; the check needs {n}",
            dir.display()
        ));
    }
    let (rows, cols) = mnist.image_shape;
    let classes = mnist.num_classes;
    let inputs = rows * cols;
    // TwoLayerNet(inputs, 50, classes): W1, b1, W2, b2.
    let params = inputs
        .saturating_mul(HIDDEN)
        .saturating_add(HIDDEN)
        .saturating_add(HIDDEN.saturating_mul(classes))
        .saturating_add(classes);
    if params > MAX_PARAMS {
        return Err(format!(
            "the images in {} are {rows}x{cols} with {classes} classes: the book's \
             TwoLayerNet({inputs}, {HIDDEN}, {classes}) would have {params} parameters, and \
             bp-check checks at most {MAX_PARAMS} (two forward passes each); use images of at \
             most about {side}x{side} pixels",
            dir.display(),
            side =
                (MAX_PARAMS.saturating_sub(HIDDEN + HIDDEN * classes + classes) / HIDDEN).isqrt()
        ));
    }
    let x = mnist
        .x_train
        .slice_axis(Axis(0), Slice::from(..n))
        .to_owned();
    let mut t = mnist.t_train.to_index();
    t.truncate(n);
    Ok(Images {
        x,
        t,
        shape: (rows, cols),
        classes,
    })
}

/// The seeds [`away_from_kinks`] tries.
const SEEDS: u64 = 64;

/// The book's net for `x`, drawn from the first seed from 0 that puts no hidden unit's input within
/// [`H`] of Relu's kink at 0 for any row of `x`. A central difference of step `H` across the kink
/// averages two slopes, and reads as a wrong gradient; with inputs in [0, 1], a step of `H` in a
/// first-layer parameter moves a hidden input by at most `H`. MNIST's first images are clear of
/// the kink with seed 0, the book's; images with few pixels may need another. `None` if no seed
/// of [`SEEDS`] does (a blank image leaves every hidden input at exactly 0).
fn away_from_kinks(x: &ArrayD<f64>, inputs: usize, classes: usize) -> Option<(u64, Network<f64>)> {
    (0..SEEDS).find_map(|seed| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let net = TwoLayerNet::<f64>::new(inputs, HIDDEN, classes, 0.01, &mut rng);
        let hidden = net.layers().layers()[0].predict(x.clone());
        hidden.iter().all(|z| z.abs() > H).then_some((seed, net))
    })
}

/// Prints a report's lines, indented, in the alternate form (with the worst element) if it failed.
fn print_report(report: &GradReport, tolerance: f64) {
    let passed = report.passed(tolerance);
    for check in &report.checks {
        if passed {
            out(&format!("  {check}"));
        } else {
            out(&format!("  {check:#}"));
        }
    }
}

/// Runs every check; `Ok(false)` if any failed.
fn run() -> Result<bool, String> {
    let Some(dir) = data_dir()? else {
        return Ok(true);
    };
    let threads = bp_core::threads();
    let mut all_passed = true;

    // The book's gradient_check.py, sized from the data.
    let images = first_images(&dir, 10)?;
    let (inputs, classes) = (images.inputs(), images.classes);
    let x = images.x.slice_axis(Axis(0), Slice::from(..3)).to_owned();
    let t = &images.t[..3];
    let (seed, mut net) = away_from_kinks(&x, inputs, classes).ok_or_else(|| {
        format!(
            "the first 3 training images of {} leave hidden units of every TwoLayerNet tried \
             (seeds 0 to {}) at Relu's kink, where the numerical gradient is not the derivative \
             (is an image blank?)",
            dir.display(),
            SEEDS - 1
        )
    })?;
    let start = Instant::now();
    let report = check_network_parallel(&mut net, x.view(), Targets::Index(t), threads);
    let seconds = start.elapsed().as_secs_f64();
    let params: usize = report
        .checks
        .iter()
        .map(|c| c.shape.iter().product::<usize>())
        .sum();
    let passed = report.passed(NETWORK_TOLERANCE);
    all_passed &= passed;
    let (rows, cols) = images.shape;
    out(&format!(
        "TwoLayerNet({inputs}, {HIDDEN}, {classes}), seed {seed}, first 3 training images of {} \
         ({rows}x{cols}):",
        dir.display()
    ));
    for check in &report.checks {
        if passed {
            out(&format!("{check}"));
        } else {
            out(&format!("{check:#}"));
        }
    }
    out(&format!(
        "{}; numerical gradient of {params} parameters: {seconds:.2} s on {threads} thread{}",
        verdict(passed, NETWORK_TOLERANCE),
        if threads == 1 { "" } else { "s" }
    ));

    // A deeper net with every option: batch normalisation, frozen dropout, weight decay. Sigmoid
    // rather than Relu: batch normalisation puts many Relu inputs near the kink at 0, where a
    // central difference averages two slopes.
    let (x, t) = (images.x, images.t);
    let mut config = MultiLayerConfig::new(inputs, vec![20, 15], classes);
    config.activation = Activation::Sigmoid;
    config.init = Init::Xavier;
    config.batch_norm = true;
    config.dropout = Some(0.2);
    config.weight_decay = 0.1;
    let mut deep = MultiLayerNet::<f64>::new(config, &mut Xoshiro256PlusPlus::seed_from_u64(0));
    deep.loss(x.clone(), Targets::Index(&t));
    deep.set_dropout_frozen(true);
    let report = check_network_parallel(&mut deep, x.view(), Targets::Index(&t), threads);
    let passed = report.passed(NETWORK_TOLERANCE);
    all_passed &= passed;
    out(&format!(
        "\nMultiLayerNet({inputs}, [20, 15], {classes}), Sigmoid, Xavier, batch norm, dropout 0.2, \
         weight decay 0.1, first 10 training images: {}",
        verdict(passed, NETWORK_TOLERANCE)
    ));
    print_report(&report, NETWORK_TOLERANCE);

    // Every layer type on random inputs.
    out("\nLayers, on random inputs and upstream gradients:");
    for (name, report) in layer_reports() {
        let passed = report.passed(LAYER_TOLERANCE);
        all_passed &= passed;
        match (passed, report.worst()) {
            (true, Some(worst)) => out(&format!(
                "{name}: {}, worst {worst}",
                verdict(passed, LAYER_TOLERANCE)
            )),
            _ => {
                out(&format!("{name}: {}", verdict(passed, LAYER_TOLERANCE)));
                print_report(&report, LAYER_TOLERANCE);
            }
        }
    }
    Ok(all_passed)
}

/// `ok` or `FAILED`, with the tolerance.
fn verdict(passed: bool, tolerance: f64) -> String {
    let word = if passed { "ok" } else { "FAILED" };
    format!("{word} at tolerance {tolerance:.0e}")
}

/// The layer checks: one report per layer type.
fn layer_reports() -> Vec<(&'static str, GradReport)> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut reports = Vec::new();

    let mut affine = Affine::<f64>::random(6, 4, Init::Std(1.0), &mut rng);
    reports.push((
        "Affine",
        check_layer(&mut affine, random_input(&[5, 6], 2).view(), 3),
    ));
    let mut image_affine = Affine::<f64>::random(12, 3, Init::Std(1.0), &mut rng);
    reports.push((
        "Affine (N, 1, 3, 4)",
        check_layer(&mut image_affine, random_input(&[2, 1, 3, 4], 4).view(), 5),
    ));
    reports.push((
        "Relu",
        check_layer(&mut Relu::new(), random_input(&[4, 7], 6).view(), 7),
    ));
    reports.push((
        "Sigmoid",
        check_layer(
            &mut Sigmoid::new(),
            (random_input(&[4, 7], 8) * 3.0).view(),
            9,
        ),
    ));
    let mut bn = BatchNorm::with_params(array![1.5, -0.5, 2.0], array![0.1, 0.2, -0.3]);
    reports.push((
        "BatchNorm",
        check_layer(&mut bn, random_input(&[6, 3], 10).view(), 11),
    ));
    let x = random_input(&[5, 8], 12);
    let mut dropout = Dropout::new(0.4, 13);
    dropout.forward(x.clone());
    dropout.set_frozen(true);
    reports.push((
        "Dropout (frozen mask)",
        check_layer(&mut dropout, x.view(), 14),
    ));
    let mut sequential = Sequential::<f64>::new(vec![
        Box::new(Affine::new(
            array![[0.6, -0.4, 0.3], [0.2, 0.5, -0.7]],
            array![0.1, -0.2, 0.3],
        )),
        Box::new(Sigmoid::new()),
        Box::new(Affine::random(3, 2, Init::Xavier, &mut rng)),
    ]);
    reports.push((
        "Sequential (Affine, Sigmoid, Affine)",
        check_layer(&mut sequential, random_input(&[4, 2], 15).view(), 16),
    ));
    let scores = array![
        [1.2, -0.3, 0.5],
        [0.1, 0.9, -0.6],
        [-0.4, 0.2, 1.1],
        [0.7, 0.0, 0.3]
    ];
    reports.push((
        "SoftmaxWithLoss",
        check_softmax_with_loss(scores.view(), Targets::Index(&[0, 1, 2, 0])),
    ));
    reports
}
