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

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use bp_check::{
    GradReport, LAYER_TOLERANCE, NETWORK_TOLERANCE, check_layer, check_network_parallel,
    check_softmax_with_loss, random_input,
};
use bp_core::{Affine, BatchNorm, Dropout, Init, Layer, Relu, Sequential, Sigmoid};
use bp_data::{MnistOptions, load_mnist};
use bp_loss::Targets;
use bp_train::{Activation, MultiLayerConfig, MultiLayerNet, TwoLayerNet};
use ndarray::{ArrayD, Axis, Slice, array};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

const USAGE: &str = "usage: bp-check [DATA_DIR]   (default: datasets/mnist)";

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
                println!("{USAGE}");
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

/// The first `n` training images, (n, 784), and their labels.
fn first_images(dir: &Path, n: usize) -> Result<(ArrayD<f64>, Vec<usize>), String> {
    let mnist = load_mnist::<f64>(dir, &MnistOptions::default()).map_err(|e| e.to_string())?;
    let available = mnist.x_train.shape()[0];
    if available < n {
        return Err(format!(
            "{} holds {available} training images; the check needs {n}",
            dir.display()
        ));
    }
    let x = mnist
        .x_train
        .slice_axis(Axis(0), Slice::from(..n))
        .to_owned();
    let mut t = mnist.t_train.to_index();
    t.truncate(n);
    Ok((x, t))
}

/// Prints a report's lines, indented, in the alternate form (with the worst element) if it failed.
fn print_report(report: &GradReport, tolerance: f64) {
    let passed = report.passed(tolerance);
    for check in &report.checks {
        if passed {
            println!("  {check}");
        } else {
            println!("  {check:#}");
        }
    }
}

/// Runs every check; `Ok(false)` if any failed.
fn run() -> Result<bool, String> {
    let Some(dir) = data_dir()? else {
        return Ok(true);
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut all_passed = true;

    // The book's gradient_check.py.
    let (images, labels) = first_images(&dir, 10)?;
    let x = images.slice_axis(Axis(0), Slice::from(..3)).to_owned();
    let t = &labels[..3];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut net = TwoLayerNet::<f64>::new(784, 50, 10, 0.01, &mut rng);
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
    println!(
        "TwoLayerNet(784, 50, 10), seed 0, first 3 training images of {}:",
        dir.display()
    );
    for check in &report.checks {
        if passed {
            println!("{check}");
        } else {
            println!("{check:#}");
        }
    }
    println!(
        "{}; numerical gradient of {params} parameters: {seconds:.2} s on {threads} thread{}",
        verdict(passed, NETWORK_TOLERANCE),
        if threads == 1 { "" } else { "s" }
    );

    // A deeper net with every option: batch normalisation, frozen dropout, weight decay. Sigmoid
    // rather than Relu: batch normalisation puts many Relu inputs near the kink at 0, where a
    // central difference averages two slopes.
    let (x, t) = (images, labels);
    let mut config = MultiLayerConfig::new(784, vec![20, 15], 10);
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
    println!(
        "\nMultiLayerNet(784, [20, 15], 10), Sigmoid, Xavier, batch norm, dropout 0.2, \
         weight decay 0.1, first 10 training images: {}",
        verdict(passed, NETWORK_TOLERANCE)
    );
    print_report(&report, NETWORK_TOLERANCE);

    // Every layer type on random inputs.
    println!("\nLayers, on random inputs and upstream gradients:");
    for (name, report) in layer_reports() {
        let passed = report.passed(LAYER_TOLERANCE);
        all_passed &= passed;
        match (passed, report.worst()) {
            (true, Some(worst)) => println!(
                "{name}: {}, worst {worst}",
                verdict(passed, LAYER_TOLERANCE)
            ),
            _ => {
                println!("{name}: {}", verdict(passed, LAYER_TOLERANCE));
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
