//! `bp-train` against a hostile user's flags: counts too large to count, networks and batches too
//! large for memory, divergence blamed on the flag that caused it, numbers echoed briefly, flags
//! given to the wrong command, and models whose scores are NaN. Each ends in one clear line and
//! the right exit status, never a panic or an abort.
//!
//! Every run has its address space limited ([`MEMORY_LIMIT`]) and is killed if it outlasts
//! [`TIMEOUT`], so that a regression fails the test instead of eating the machine or hanging.
//! The runs use one thread (`BP_THREADS=1`), so that the memory figures do not depend on the
//! machine's cores.

#![cfg(unix)]
#![allow(unsafe_code)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bp_core::parse_layers;
use bp_data::{Compression, write_idx};
use bp_train::model_file::{ModelInfo, save_model};
use bp_train::{NetOptions, Network};
use common::bounded::{self, Run};
use common::{TempDir, write_digits};
use ndarray::{Array1, Array3};
use rand::SeedableRng;

/// The address space a run may use: 1 GiB.
const MEMORY_LIMIT: u64 = 1 << 30;

/// How long a run may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// `bp-train` with `args`, its address space limited to [`MEMORY_LIMIT`], on one thread.
fn command(args: &[&str]) -> Command {
    let mut command = bounded::command(args, MEMORY_LIMIT);
    command.env("BP_THREADS", "1");
    command
}

/// Runs `bp-train` with `args` to its end, bounded in memory and time.
fn bp_train(args: &[&str]) -> Run {
    bounded::run(command(args), TIMEOUT, &format!("bp-train {args:?}"))
}

/// Runs `bp-train` with `args` until it prints its first epoch line, then stops it: for runs that
/// would go on for centuries. Returns the lines printed so far. Fails if the run ends first or
/// prints no epoch line within [`TIMEOUT`].
fn first_epoch(args: &[&str]) -> Vec<String> {
    let mut child = command(args).spawn().expect("bp-train starts");
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                let epoch = line.starts_with("epoch  1 |");
                seen.push(line);
                if epoch {
                    let _ = child.kill();
                    let _ = child.wait();
                    return seen;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let mut stderr = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                let status = child.wait().unwrap();
                panic!(
                    "bp-train {args:?} ended ({status}) before its first epoch: {seen:?} {stderr}"
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bp-train {args:?} printed no epoch in {TIMEOUT:?}: {seen:?}");
        }
    }
}

/// The run ended with `code`, nothing on stdout, and one line on stderr: `error: ` and `expected`.
#[track_caller]
fn assert_error(run: &Run, code: i32, expected: &str) {
    assert_eq!(run.code, Some(code), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_eq!(run.stderr.trim_end(), format!("error: {expected}"));
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// The run ended with `code`, and its one line on stderr starts with `error: ` and `expected`.
#[track_caller]
fn assert_error_starts(run: &Run, code: i32, expected: &str) {
    assert_eq!(run.code, Some(code), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!("error: {expected}")),
        "{}\nexpected: error: {expected}",
        run.stderr
    );
}

/// A data set of 8x8 digits: 200 training and 50 test images of 10 classes.
fn digits(name: &str) -> TempDir {
    let tmp = TempDir::new(&format!("hostile-flags-{name}"));
    write_digits(tmp.path(), 200, 50, 10);
    tmp
}

/// The flags of a run on `dir`, then `args`.
fn on<'a>(dir: &'a TempDir, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--data-dir", dir.path().to_str().unwrap()];
    all.extend(args);
    all
}

const MAX: &str = "18446744073709551615";

#[test]
fn runs_too_long_to_count_are_refused_in_one_line() {
    let tmp = digits("too-long");
    // 200 images in batches of 10: 20 iterations per epoch; of 100: 2.
    for (batch, epochs, per_epoch) in [("10", MAX, 20), ("100", "9223372036854775808", 2)] {
        let run = bp_train(&on(&tmp, &["--batch-size", batch, "--epochs", epochs]));
        assert_error(
            &run,
            2,
            &format!(
                "--epochs: {epochs} epochs of {per_epoch} iterations each are more iterations \
                 than this machine can count (at most {MAX})"
            ),
        );
        assert!(run.stdout.is_empty(), "{}", run.stdout);
    }
}

/// The longest runs that can be counted start at once: nothing is reserved for their epochs,
/// and nothing overflows in their schedule.
#[test]
fn the_longest_runs_that_can_be_counted_start() {
    let tmp = digits("long");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--iters", MAX, "--batch-size", "10"],
            "18446744073709551615 iterations, 20 per epoch",
        ),
        (
            &["--iters", MAX, "--batch-size", "10", "--schedule", "step"],
            "18446744073709551615 iterations, 20 per epoch",
        ),
        (
            &["--iters", MAX, "--schedule", "cosine"],
            "18446744073709551615 iterations, 2 per epoch",
        ),
        // One iteration per epoch: 10¹⁰ epochs, whose reports alone would be 560 GB.
        (
            &["--iters", "10000000000", "--batch-size", "300"],
            "10000000000 iterations, 1 per epoch",
        ),
        (
            &["--epochs", MAX, "--batch-size", "300"],
            "18446744073709551615 iterations, 1 per epoch",
        ),
    ];
    for (args, plan) in cases {
        let lines = first_epoch(&on(&tmp, args));
        let train = lines
            .iter()
            .find(|l| l.starts_with("train: "))
            .unwrap_or_else(|| panic!("{args:?}: no train line in {lines:?}"));
        assert!(train.contains(plan), "{args:?}: {train}");
    }
}

#[test]
fn sizes_that_overflow_are_refused_naming_the_flag_and_the_layer() {
    let tmp = digits("overflow");
    let cases: &[(&[&str], String)] = &[
        (
            &["--hidden", MAX],
            format!(
                "--hidden: layer 1 `affine {MAX}`: its weights (64 x {MAX}) are more than this \
                 machine can count"
            ),
        ),
        (
            &["--hidden", &format!("50,{MAX}")],
            format!(
                "--hidden: layer 3 `affine {MAX}`: its weights (50 x {MAX}) are more than this \
                 machine can count"
            ),
        ),
        (
            &["--layers", "affine 4611686018427387904, relu, affine 10"],
            "--layers: layer 1 `affine 4611686018427387904`: its weights (64 x \
             4611686018427387904) are more than this machine can count"
                .to_owned(),
        ),
        (
            &[
                "--layers",
                "affine 100000000000, affine 100000000000, affine 10",
            ],
            "--layers: layer 2 `affine 100000000000`: its weights (100000000000 x 100000000000) \
             are more than this machine can count"
                .to_owned(),
        ),
        (
            &["--classes", MAX],
            format!(
                "--classes: layer 3 `affine {MAX}`: its weights (50 x {MAX}) are more than this \
                 machine can count"
            ),
        ),
    ];
    for (args, expected) in cases {
        let run = bp_train(&on(&tmp, args));
        assert_error(&run, 2, expected);
    }
}

/// A named net whose last layer does not fit the data is blamed on `--net`, the flag that gave it.
#[test]
fn a_named_net_that_does_not_fit_the_data_names_its_flag() {
    let tmp = TempDir::new("hostile-flags-named");
    write_digits(tmp.path(), 200, 50, 5);
    let run = bp_train(&on(&tmp, &["--net", "simple-convnet"]));
    assert_error_starts(
        &run,
        2,
        "--net: layer 6 `affine 10`: the last layer gives 10 scores, but the data in ",
    );
}

/// The limit is detected (Linux): at most the 1 GiB the test allows the process.
///
/// The figures of a run of the digits (64 inputs, 10 classes, 250 images) on one thread:
/// `--batch-size 1000000000` holds 10⁹ x 64 f32 in its batch buffer and 10⁹ x (3 x 50 + 50 +
/// 3 x 10 + 2 x 10) f32 of activations; `--hidden 1000000000` 75 x 10⁹ parameters with their
/// gradients and W's product buffers ((2 x 75 + 74) x 10⁹ x 4 bytes, 834 GiB), and activations of
/// 100 x (4 x 10⁹ + 50) for a batch and 200 x (64 + 2 x 10⁹) for the evaluation of the 200
/// training images (2.9 TiB).
#[cfg(target_os = "linux")]
#[test]
fn networks_and_batches_too_large_for_memory_are_refused_with_the_figures() {
    let tmp = digits("memory");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--batch-size", "1000000000"],
            "the network and its buffers need about 1.2 TiB of memory: the network 43.8 KiB \
             (3,760 f32 parameters with gradients), activations 931 GiB (batches of \
             1,000,000,000), batch buffers 253 GiB, data 66 KiB; ",
        ),
        (
            &["--hidden", "1000000000"],
            "the network and its buffers need about 3.7 TiB of memory: the network 834 GiB \
             (75,000,000,010 f32 parameters with gradients), activations 2.9 TiB (batches of \
             100), batch buffers 26.6 KiB, data 66 KiB; ",
        ),
        (
            &["--layers", "affine 1000000000, relu, affine 10"],
            "the network and its buffers need about 3.7 TiB of memory: the network 834 GiB \
             (75,000,000,010 f32 parameters with gradients), activations 2.9 TiB (batches of \
             100), batch buffers 26.6 KiB, data 66 KiB; ",
        ),
        (
            &[
                "--hidden",
                "1000000000",
                "--dtype",
                "f64",
                "--optimizer",
                "adam",
                "--batch-size",
                "10",
            ],
            "the network and its buffers need about 5.9 TiB of memory: the network 2.7 TiB \
             (75,000,000,010 f64 parameters with gradients and adam's 2 copies), activations \
             3.2 TiB (batches of 10), batch buffers 5.2 KiB, data 129 KiB; ",
        ),
        (
            &["--hidden", "2000000", "--optimizer", "momentum"],
            "the network and its buffers need about 8.2 GiB of memory: the network 2.2 GiB \
             (150,000,010 f32 parameters with gradients and momentum's copy), activations 6 GiB \
             (batches of 100), batch buffers 26.6 KiB, data 66 KiB; ",
        ),
    ];
    for (args, needs) in cases {
        let run = bp_train(&on(&tmp, args));
        assert_error_starts(&run, 2, needs);
        // The limit: the 1 GiB this test allows, or less (the machine's, or a control group's).
        assert!(
            run.stderr
                .trim_end()
                .ends_with(" (--max-memory-mib sets the limit)"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{}", run.stdout);
    }
}

#[test]
fn max_memory_mib_sets_the_limit() {
    let tmp = digits("max-memory");
    let run = bp_train(&on(&tmp, &["--hidden", "1000", "--max-memory-mib", "1"]));
    assert_error(
        &run,
        2,
        "the network and its buffers need about 4.1 MiB of memory: the network 875 KiB (75,010 \
         f32 parameters with gradients), activations 3.1 MiB (batches of 100), batch buffers \
         26.6 KiB, data 66 KiB; --max-memory-mib allows 1 MiB",
    );
    // The same run within a limit it fits.
    let run = bp_train(&on(
        &tmp,
        &[
            "--hidden",
            "1000",
            "--max-memory-mib",
            "100",
            "--iters",
            "20",
            "-q",
        ],
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.starts_with("final test_acc="), "{}", run.stdout);
    // No limit lets through what no process can address.
    let run = bp_train(&on(&tmp, &["--batch-size", MAX, "--max-memory-mib", MAX]));
    assert_error_starts(&run, 2, "the network and its buffers need about 20352 EiB");
    assert!(
        run.stderr
            .trim_end()
            .ends_with("data 66 KiB, more than a process can address"),
        "{}",
        run.stderr
    );
    for (value, reason) in [
        ("0", "must be a positive integer"),
        ("x", "not a positive integer"),
    ] {
        let run = bp_train(&["--max-memory-mib", value]);
        assert_error(
            &run,
            2,
            &format!("invalid value '{value}' for '--max-memory-mib <MIB>': {reason}"),
        );
    }
}

#[test]
fn divergence_blames_the_flag_that_caused_it() {
    let tmp = digits("diverge");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--weight-decay", "1e30"],
            "training diverged at iteration 2 (epoch 1): the loss is NaN: the weight-decay term \
             is infinite: --weight-decay 1e30 is too large",
        ),
        (
            &["--weight-decay", "1e38", "--weight-init-std", "1"],
            "training diverged at iteration 1 (epoch 1): the loss is NaN: the weight-decay term \
             is infinite: --weight-decay 1e38 is too large",
        ),
        (
            &["--weight-init-std", "1e30"],
            "training diverged at iteration 1 (epoch 1): the loss is NaN at the first step, \
             before any update: the initial weights are too large (--weight-init-std 1e30)",
        ),
        (
            &["--weight-init-std", "1e30", "--weight-decay", "1e-4"],
            "training diverged at iteration 1 (epoch 1): the loss is NaN at the first step, \
             before any update: the initial weights are too large (--weight-init-std 1e30)",
        ),
        (
            &["--lr", "1e300"],
            "training diverged at iteration 2 (epoch 1): the loss is NaN; try a smaller --lr \
             (it was 1e300)",
        ),
    ];
    for (args, expected) in cases {
        let mut args = args.to_vec();
        args.extend(["--batch-size", "10"]);
        let run = bp_train(&on(&tmp, &args));
        assert_error(&run, 1, expected);
        assert!(!run.stdout.contains("final"), "{}", run.stdout);
    }
}

/// Numbers far from 1 are written with an exponent wherever a flag's value is echoed: the header,
/// the net's description, the plot's title, the divergence message.
#[test]
fn extreme_values_are_echoed_briefly() {
    let tmp = digits("brief");
    let plot = tmp.path().join("curves.svg");
    let run = bp_train(&on(
        &tmp,
        &[
            "--lr",
            "1e-300",
            "--weight-init-std",
            "1e-300",
            "--dropout",
            "1e-300",
            "--weight-decay",
            "1e-300",
            "--iters",
            "3",
            "--plot",
            plot.to_str().unwrap(),
        ],
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[1],
        "net: MultiLayerNet 64-50-10, relu, init std 1e-300, dropout 1e-300, weight decay 1e-300"
    );
    assert!(
        lines[2].starts_with("train: sgd lr 1e-300 (constant schedule), batch 100"),
        "{}",
        lines[2]
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("sgd lr 1e-300, batch 100"), "{svg}");
    for text in [&run.stdout, &svg] {
        assert!(!text.contains("0000000000"), "{text}");
    }
    let run = bp_train(&on(&tmp, &["--lr", "1e300", "--batch-size", "10"]));
    assert!(
        run.stdout
            .contains("train: sgd lr 1e300 (constant schedule), batch 10"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("0000000000"), "{}", run.stdout);
    assert!(!run.stderr.contains("0000000000"), "{}", run.stderr);
    let run = bp_train(&on(
        &tmp,
        &["--layers", "dropout 1e-300, affine 10", "--iters", "1"],
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("net: Sequential 64 -> dropout 1e-300, affine 10, init std 0.01"),
        "{}",
        run.stdout
    );
}

/// A flag given to a command it does not belong to is named, with the command it belongs to.
#[test]
fn flags_given_to_the_wrong_command_are_named() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["eval", "--model", "m", "--epochs", "3"],
            "--epochs is a training flag (bp-train without a subcommand); `bp-train eval` does \
             not take it",
        ),
        (
            &["eval", "--model", "m", "--lr=0.5"],
            "--lr is a training flag (bp-train without a subcommand); `bp-train eval` does not \
             take it",
        ),
        (
            &["--epochs", "3", "eval", "--model", "m"],
            "--epochs is a training flag (bp-train without a subcommand); `bp-train eval` does \
             not take it",
        ),
        (
            &["--lr", "1", "predict", "--model", "m", "x.png"],
            "--lr is a training flag (bp-train without a subcommand); `bp-train predict` does \
             not take it",
        ),
        (
            &["-q", "predict", "--model", "m", "x.png"],
            "--quiet is a training flag (bp-train without a subcommand); `bp-train predict` \
             does not take it",
        ),
        (
            &["predict", "--model", "m", "--hidden", "50", "x.png"],
            "--hidden is a training flag (bp-train without a subcommand); `bp-train predict` \
             does not take it",
        ),
        (
            &["--data-dir", "d", "eval", "--model", "m"],
            "--data-dir before `eval` is a training flag; to give it to `bp-train eval`, put it \
             after `eval`",
        ),
        (
            &["--model", "m.safetensors"],
            "--model belongs to `bp-train eval`, `bp-train predict` and `bp-train serve`; training \
             does not take it",
        ),
        (
            &["--predictions", "p.csv"],
            "--predictions belongs to `bp-train eval`; training does not take it",
        ),
        (
            &["predict", "--model", "m", "--predictions", "p.csv", "x.png"],
            "--predictions belongs to `bp-train eval`; `bp-train predict` does not take it",
        ),
        (
            &["eval", "--model", "m", "--top", "3"],
            "--top belongs to `bp-train predict`; `bp-train eval` does not take it",
        ),
        // Flags no command has keep clap's message.
        (
            &["eval", "--model", "m", "--epoch", "3"],
            "unexpected argument '--epoch' found",
        ),
    ];
    for (args, expected) in cases {
        let run = bp_train(args);
        assert_error(&run, 2, expected);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
}

/// A model of 64 inputs and 2 classes whose scores overflow f32 for every image with a lit first
/// pixel: that pixel times 3e38 is a hidden value, and 10¹⁰ times it an infinite score, against
/// minus infinity for the other class, so its probabilities are NaN. Images whose first pixel is
/// dark score 0 for both classes.
fn overflowing_model(path: &Path) {
    let specs = parse_layers("affine 2, relu, affine 2").unwrap();
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
    let mut net = Network::<f32>::new(&[64], specs, NetOptions::default(), &mut rng).unwrap();
    let mut index = 0;
    net.visit_params(&mut |mut p| {
        p.value.fill(0.0);
        match index {
            0 => p.value[[0, 0]] = 3e38,
            2 => {
                p.value[[0, 0]] = 1e10;
                p.value[[0, 1]] = -1e10;
            }
            _ => {}
        }
        index += 1;
    });
    save_model(path, &net, &ModelInfo::new((8, 8))).unwrap();
}

/// An 8x8 PGM image, dark, with a lit 4x4 square in its middle and, if `corner`, a lit first pixel.
fn pgm(path: &Path, corner: bool) {
    let mut bytes = b"P5\n8 8\n255\n".to_vec();
    for r in 0..8 {
        for c in 0..8 {
            let lit = (2..6).contains(&r) && (2..6).contains(&c) || corner && r == 0 && c == 0;
            bytes.push(if lit { 255 } else { 0 });
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_model_whose_scores_are_nan_gives_no_class() {
    let tmp = TempDir::new("hostile-flags-nan");
    let model = tmp.path().join("nan.safetensors");
    overflowing_model(&model);
    let (dark, lit) = (tmp.path().join("dark.pgm"), tmp.path().join("lit.pgm"));
    pgm(&dark, false);
    pgm(&lit, true);
    let model_arg = model.to_str().unwrap();
    let run = bp_train(&[
        "predict",
        "--model",
        model_arg,
        lit.to_str().unwrap(),
        dark.to_str().unwrap(),
    ]);
    assert_error(
        &run,
        1,
        &format!(
            "{}: the model {model_arg} gives NaN scores for this image: its weights are too \
             large for f32",
            lit.display()
        ),
    );
    // The other image is still classified, its probabilities those of two scores of 0.
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[1].starts_with(&format!("{}: 0  top: 0 0.5000, 1 0.5000", dark.display())),
        "{}",
        run.stdout
    );

    // A test set of 6 images, every other one with a lit first pixel.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let images = Array3::from_shape_fn((6, 8, 8), |(i, r, c)| {
        if r == 0 && c == 0 {
            (i % 2) as u8 * 200
        } else {
            50
        }
    });
    let labels = Array1::from_shape_fn(6, |i| (i % 2) as u8);
    for (images_file, labels_file) in [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ] {
        write_idx(data.join(images_file), &images, Compression::None).unwrap();
        write_idx(data.join(labels_file), &labels, Compression::None).unwrap();
    }
    let csv = tmp.path().join("p.csv");
    let run = bp_train(&[
        "eval",
        "--model",
        model_arg,
        "--data-dir",
        data.to_str().unwrap(),
        "--predictions",
        csv.to_str().unwrap(),
    ]);
    assert_error(
        &run,
        1,
        &format!(
            "the model {model_arg} gives NaN scores for 3 of the 6 test images in {} (the first \
             is image 1): its weights are too large for f32, so it has no accuracy",
            data.display()
        ),
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(!csv.exists(), "no predictions are written");
}

#[test]
fn augmentations_that_cannot_work_are_refused_in_one_line() {
    let tmp = digits("augment");
    // The digits are 8x8: a shift of 8 moves every image out of its frame.
    let run = bp_train(&on(&tmp, &["--augment", "shift:8"]));
    assert_error(
        &run,
        2,
        "--augment shift:8: shifts of up to 8 pixels would move whole 8x8 images out of the frame",
    );
    for bad in ["shift:0", "rotate:2", "shift:-1"] {
        let run = bp_train(&on(&tmp, &["--augment", bad]));
        assert_error_starts(
            &run,
            2,
            &format!("invalid value '{bad}' for '--augment <SPEC>': `{bad}`"),
        );
    }
    // One pixel less runs, and says so.
    let run = bp_train(&on(&tmp, &["--augment", "shift:7", "--iters", "20"]));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("(book sampling, augment shift:7)"),
        "{}",
        run.stdout
    );
}
