//! The model commands end to end: `--save`, `--save-best`, `--patience`, `--plot`, `eval` and
//! `predict`, on the shipped MNIST and on small 8x8 digit sets.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use bp_data::read_idx_as;
use bp_train::model_file::AnyModel;
use common::{TempDir, mnist_dir, write_digits};
use ndarray::{ArrayD, Axis};

fn bp_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bp-train"))
        .args(args)
        .output()
        .expect("run bp-train")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn success(args: &[&str]) -> String {
    let out = bp_train(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The value of `key=` in the `final ...` line.
fn final_value(out: &str, key: &str) -> String {
    let line = out.lines().last().expect("a final line");
    assert!(line.starts_with("final "), "{out}");
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .to_owned()
}

/// A model trained on MNIST for three epochs, shared by the tests: its directory, its path and what
/// the training run printed.
struct Trained {
    dir: TempDir,
    model: PathBuf,
    output: String,
}

fn mnist_model() -> &'static Trained {
    static MODEL: OnceLock<Trained> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = TempDir::new("model-cli-mnist");
        let model = dir.path().join("mnist.safetensors");
        let output = success(&[
            "--epochs",
            "3",
            "--optimizer",
            "adam",
            "--sampling",
            "shuffle",
            "--quiet",
            "--save",
            model.to_str().unwrap(),
        ]);
        Trained { dir, model, output }
    })
}

#[test]
fn eval_prints_the_accuracy_training_reported() {
    let trained = mnist_model();
    let reported = final_value(&trained.output, "test_acc");
    let out = success(&["eval", "--model", trained.model.to_str().unwrap()]);
    assert!(
        out.contains(&format!("test_acc={reported} (")),
        "training reported {reported}:\n{out}"
    );
    assert!(out.contains("as training reported"), "{out}");
    assert!(
        out.contains("TwoLayerNet 784-50-10, relu, init std 0.01, f32"),
        "{out}"
    );

    // The per-class table: a header, ten classes and the total, aligned.
    let lines: Vec<&str> = out.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim_start().starts_with("class"))
        .unwrap();
    let table = &lines[header..header + 12];
    assert!(table.iter().all(|l| l.len() == table[0].len()), "{out}");
    assert!(table[11].trim_start().starts_with("all"));
    assert!(table[11].contains("10000"));
    // The confusion matrix: ten rows of ten counts, summing to the test set.
    let m = lines
        .iter()
        .position(|l| l.starts_with("confusion matrix"))
        .unwrap();
    let rows = &lines[m + 2..m + 12];
    assert!(rows.iter().all(|l| l.len() == rows[0].len()), "{out}");
    let counts: Vec<Vec<usize>> = rows
        .iter()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map(|n| n.parse().unwrap())
                .collect()
        })
        .collect();
    assert!(counts.iter().all(|r| r.len() == 10));
    assert_eq!(counts.iter().flatten().sum::<usize>(), 10_000);
    let correct: usize = (0..10).map(|c| counts[c][c]).sum();
    assert_eq!(format!("{:.4}", correct as f64 / 10_000.0), reported);
}

/// Writes a grayscale or RGB PNG.
fn write_png(path: &Path, width: usize, height: usize, color: image::ColorType, data: &[u8]) {
    fs::write(path, common::png(width, height, color, data)).unwrap();
}

/// The predicted class of each image in `predict`'s output, in order.
fn predicted_classes(out: &str) -> Vec<(String, usize)> {
    out.lines()
        .filter(|l| !l.starts_with("model:"))
        .map(|l| {
            let mut fields = l.split_whitespace();
            let name = fields.next().unwrap().trim_end_matches(':').to_owned();
            (name, fields.next().unwrap().parse().unwrap())
        })
        .collect()
}

#[test]
fn predict_classifies_test_digits_rendered_to_png_and_pgm() {
    let trained = mnist_model();
    let dir = trained.dir.path();
    // The first test images the model gets right from the data set itself.
    let csv = dir.join("predictions.csv");
    success(&[
        "eval",
        "--model",
        trained.model.to_str().unwrap(),
        "--predictions",
        csv.to_str().unwrap(),
    ]);
    let right: Vec<(usize, usize)> = fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<usize> = l.split(',').take(3).map(|v| v.parse().unwrap()).collect();
            (f[0], f[1], f[2])
        })
        .filter(|&(_, label, predicted)| label == predicted)
        .map(|(i, label, _)| (i, label))
        .take(6)
        .collect();
    assert_eq!(right.len(), 6);

    let images: ArrayD<u8> = read_idx_as(mnist_dir().join("t10k-images-idx3-ubyte.gz"), 3).unwrap();
    let mut paths = Vec::new();
    let mut expected = Vec::new();
    for (k, &(i, label)) in right.iter().enumerate() {
        let img = images.index_axis(Axis(0), i);
        let pixels: Vec<u8> = img.iter().copied().collect();
        let path = match k % 3 {
            // As MNIST stores it: a white digit on black, 28x28 gray.
            0 => {
                let p = dir.join(format!("test{i}.png"));
                write_png(&p, 28, 28, image::ColorType::L8, &pixels);
                p
            }
            // As a person would draw it: black ink on white, 84x84, in colour.
            1 => {
                let p = dir.join(format!("test{i}-ink.png"));
                let mut rgb = Vec::with_capacity(84 * 84 * 3);
                for y in 0..84 {
                    for x in 0..84 {
                        let v = 255 - pixels[(y / 3) * 28 + x / 3];
                        rgb.extend([v, v, v]);
                    }
                }
                write_png(&p, 84, 84, image::ColorType::Rgb8, &rgb);
                p
            }
            // As a binary PGM.
            _ => {
                let p = dir.join(format!("test{i}.pgm"));
                let mut bytes = b"P5\n# an MNIST test digit\n28 28\n255\n".to_vec();
                bytes.extend(&pixels);
                fs::write(&p, bytes).unwrap();
                p
            }
        };
        paths.push(path.to_str().unwrap().to_owned());
        expected.push(label);
    }
    let mut args = vec!["predict", "--model", trained.model.to_str().unwrap()];
    args.extend(paths.iter().map(String::as_str));
    let out = success(&args);
    let got = predicted_classes(&out);
    assert_eq!(got.len(), paths.len(), "{out}");
    for ((name, class), (path, label)) in got.iter().zip(paths.iter().zip(&expected)) {
        assert_eq!(name, path);
        assert_eq!(class, label, "{path}:\n{out}");
    }
    assert!(
        out.contains("inverted"),
        "the dark-on-light images are inverted:\n{out}"
    );
}

#[test]
fn predict_names_each_bad_image_and_still_classifies_the_others() {
    let trained = mnist_model();
    let dir = TempDir::new("model-cli-bad-images");
    let good = dir.path().join("blank.pgm");
    fs::write(&good, b"P2 2 2 255\n0 0 0 0\n").unwrap();
    let text = dir.path().join("notes.png");
    fs::write(&text, "not an image").unwrap();
    let cut = dir.path().join("cut.pgm");
    fs::write(&cut, b"P5 28 28 255\n\x00\x00").unwrap();
    let missing = dir.path().join("missing.png");
    let out = bp_train(&[
        "predict",
        "--model",
        trained.model.to_str().unwrap(),
        text.to_str().unwrap(),
        good.to_str().unwrap(),
        cut.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 3, "{err}");
    assert!(
        err.contains(&format!("{} is not an image format", text.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{} is not a valid PGM image: the file is cut short",
            cut.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("cannot read the image {}", missing.display())),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    assert_eq!(predicted_classes(&stdout(&out)).len(), 1);
}

#[test]
fn eval_and_predict_refuse_bad_models_in_one_line() {
    let dir = TempDir::new("model-cli-bad-models");
    let junk = dir.path().join("junk.safetensors");
    fs::write(&junk, b"definitely not a model").unwrap();
    for args in [
        vec!["eval", "--model", junk.to_str().unwrap()],
        vec!["predict", "--model", junk.to_str().unwrap(), "x.png"],
    ] {
        let out = bp_train(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!(
                "error: {} is not a valid safetensors file",
                junk.display()
            )),
            "{err}"
        );
    }
    let out = bp_train(&["eval", "--model", "no-such.safetensors"]);
    assert!(stderr(&out).starts_with("error: cannot read the model file no-such.safetensors: "));

    // A 28x28 model on 8x8 images.
    let digits = TempDir::new("model-cli-8x8-eval");
    write_digits(digits.path(), 50, 20, 4);
    let out = bp_train(&[
        "eval",
        "--model",
        mnist_model().model.to_str().unwrap(),
        "--data-dir",
        digits.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("takes 28x28 images, but the images in"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn model_flags_are_checked() {
    for (args, expected) in [
        (vec!["--save-best"], "--save <FILE.safetensors>"),
        (
            vec!["--patience", "3", "--save", "m.safetensors"],
            "--save-best",
        ),
        (
            vec!["--patience", "0", "--save-best", "--save", "m"],
            "must be a positive integer",
        ),
        (vec!["eval"], "--model <FILE.safetensors>"),
        (vec!["predict", "--model", "m.safetensors"], "<IMAGE>..."),
        (
            vec!["--epochs", "2", "eval", "--model", "m"],
            "--epochs is a training flag (bp-train without a subcommand); `bp-train eval` does \
             not take it",
        ),
    ] {
        let out = bp_train(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

/// The `epoch,...,test_acc,...` rows of a metrics file.
fn metrics(path: &Path) -> Vec<(usize, f64)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect()
}

#[test]
fn save_best_keeps_the_best_epoch_and_patience_stops_the_run() {
    let dir = TempDir::new("model-cli-save-best");
    write_digits(dir.path(), 200, 100, 4);
    let data = dir.path().to_str().unwrap();
    let model = dir.path().join("best.safetensors");
    let csv = dir.path().join("metrics.csv");
    let svg = dir.path().join("curves.svg");
    let out = success(&[
        "--data-dir",
        data,
        "--epochs",
        "40",
        "--batch-size",
        "10",
        "--lr",
        "0.1",
        "--hidden",
        "16",
        "--save",
        model.to_str().unwrap(),
        "--save-best",
        "--patience",
        "3",
        "--metrics",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let rows = metrics(&csv);
    // The run stopped once three epochs in a row brought no better test accuracy.
    let (best_epoch, best_acc) = rows
        .iter()
        .copied()
        .fold((0, -1.0), |b, (e, a)| if a > b.1 { (e, a) } else { b });
    assert!(rows.len() < 40, "{out}");
    assert_eq!(rows.len(), best_epoch + 3, "{out}");
    assert!(out.contains("stopped early"), "{out}");
    assert!(
        out.contains(&format!(
            "saved {} (epoch {best_epoch}, test_acc {best_acc:.4})",
            model.display()
        )),
        "{out}"
    );
    let saved = AnyModel::load(&model).unwrap();
    let record = saved.info().training.unwrap();
    assert_eq!(record.epoch, best_epoch);
    assert_eq!(record.test_acc, best_acc);
    let eval = success(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    assert!(
        eval.contains(&format!("test_acc={best_acc:.4} (")),
        "{eval}"
    );
    assert!(eval.contains("as training reported"), "{eval}");

    let picture = fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg"));
    assert!(picture.contains("accuracy") && picture.contains(&format!("epoch {best_epoch})")));
    assert!(out.contains(&format!("plot: {}", svg.display())), "{out}");
}

#[test]
fn save_without_best_keeps_the_last_epoch_in_f64() {
    let dir = TempDir::new("model-cli-save-last");
    write_digits(dir.path(), 100, 40, 3);
    let data = dir.path().to_str().unwrap();
    let model = dir.path().join("last.safetensors");
    let out = success(&[
        "--data-dir",
        data,
        "--epochs",
        "3",
        "--batch-size",
        "10",
        "--hidden",
        "8,8",
        "--batch-norm",
        "--dropout",
        "0.1",
        "--dtype",
        "f64",
        "--quiet",
        "--save",
        model.to_str().unwrap(),
    ]);
    let AnyModel::F64(saved) = AnyModel::load(&model).unwrap() else {
        panic!("an f64 run saves an f64 model");
    };
    let record = saved.info.training.unwrap();
    assert_eq!(record.epoch, 3);
    assert_eq!(
        format!("{:.4}", record.test_acc),
        final_value(&out, "test_acc")
    );
    assert_eq!(saved.info.image_shape, (8, 8));
    let eval = success(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    assert!(
        eval.contains(&format!("test_acc={} (", final_value(&out, "test_acc"))),
        "{eval}"
    );
    assert!(
        eval.contains("MultiLayerNet 64-8-8-3, relu, init std 0.01, batch norm, dropout 0.1, f64"),
        "{eval}"
    );
}

/// The temporary files of atomic writes in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_run_killed_while_saving_leaves_the_previous_model_intact() {
    let dir = TempDir::new("model-cli-killed");
    write_digits(dir.path(), 100, 20, 3);
    let data = dir.path().to_str().unwrap();
    let model = dir.path().join("model.safetensors");
    let path = model.to_str().unwrap();
    // The previous model: a small one.
    success(&[
        "--data-dir",
        data,
        "--epochs",
        "1",
        "--hidden",
        "4",
        "--quiet",
        "--save",
        path,
    ]);
    let old = fs::read(&model).unwrap();
    // A run whose model (64 x 100000 weights, 26 MB) takes a while to write and sync, killed as
    // soon as its temporary file appears.
    let args = [
        "--data-dir",
        data,
        "--epochs",
        "1",
        "--hidden",
        "100000",
        "--quiet",
        "--save",
        path,
    ];
    let mut caught = 0;
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bp-train"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let killed = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            if !temp_files(dir.path()).is_empty() {
                child.kill().unwrap();
                break true;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        };
        child.wait().unwrap();
        let now = fs::read(&model).unwrap();
        if killed && now == old {
            caught += 1;
            // Killed mid-save: the old model is whole and loads; only the temporary file is left.
            AnyModel::load(&model).unwrap();
            assert_eq!(temp_files(dir.path()).len(), 1);
        } else {
            // Finished (or killed just after the rename): the new model is whole.
            let saved = AnyModel::load(&model).unwrap();
            let AnyModel::F32(saved) = saved else {
                panic!("an f32 model")
            };
            assert_eq!(
                saved.net.specs()[0],
                bp_core::LayerSpec::Affine { out: 100_000 }
            );
            fs::write(&model, &old).unwrap();
        }
        for name in temp_files(dir.path()) {
            fs::remove_file(dir.path().join(name)).unwrap();
        }
        if caught == 2 {
            break;
        }
    }
    assert!(
        caught > 0,
        "no kill landed while the model was being written"
    );
}

#[test]
fn help_lists_the_model_flags_and_commands() {
    let help = success(&["--help"]);
    for text in [
        "--save",
        "--save-best",
        "--patience",
        "--plot",
        "eval",
        "predict",
    ] {
        assert!(help.contains(text), "{text} missing from --help");
    }
    let help = success(&["eval", "--help"]);
    assert!(help.contains("--model") && help.contains("--predictions"));
    let help = success(&["predict", "--help"]);
    assert!(help.contains("--top") && help.contains("<IMAGE>..."));
}

#[test]
fn fit_mnist_classifies_digits_that_fill_their_picture() {
    let trained = mnist_model();
    let dir = TempDir::new("model-cli-fit");
    let images: ArrayD<u8> = read_idx_as(mnist_dir().join("t10k-images-idx3-ubyte.gz"), 3).unwrap();
    let labels: ArrayD<u8> = read_idx_as(mnist_dir().join("t10k-labels-idx1-ubyte.gz"), 1).unwrap();
    // The first 20 test digits cropped to their bounding box, padded square and drawn 5x larger,
    // black on white: digits that fill their picture, unlike MNIST's 20x20 box in 28x28.
    let mut paths = Vec::new();
    for i in 0..20 {
        let img = images.index_axis(Axis(0), i);
        let ink: Vec<(usize, usize)> = (0..28)
            .flat_map(|y| (0..28).map(move |x| (y, x)))
            .filter(|&(y, x)| img[[y, x]] > 0)
            .collect();
        let (y0, y1) = (
            ink.iter().map(|p| p.0).min().unwrap(),
            ink.iter().map(|p| p.0).max().unwrap() + 1,
        );
        let (x0, x1) = (
            ink.iter().map(|p| p.1).min().unwrap(),
            ink.iter().map(|p| p.1).max().unwrap() + 1,
        );
        let side = (y1 - y0).max(x1 - x0);
        let (oy, ox) = ((side - (y1 - y0)) / 2, (side - (x1 - x0)) / 2);
        let n = side * 5;
        let mut pixels = vec![255u8; n * n];
        for y in 0..n {
            for x in 0..n {
                let (sy, sx) = (y / 5, x / 5);
                if (oy..oy + y1 - y0).contains(&sy) && (ox..ox + x1 - x0).contains(&sx) {
                    pixels[y * n + x] = 255 - img[[y0 + sy - oy, x0 + sx - ox]];
                }
            }
        }
        let path = dir.path().join(format!("filled{i}.png"));
        write_png(&path, n, n, image::ColorType::L8, &pixels);
        paths.push(path.to_str().unwrap().to_owned());
    }
    let correct = |fit: &str| {
        let mut args = vec![
            "predict",
            "--fit",
            fit,
            "--model",
            trained.model.to_str().unwrap(),
        ];
        args.extend(paths.iter().map(String::as_str));
        let out = success(&args);
        let got = predicted_classes(&out);
        assert_eq!(got.len(), 20, "{out}");
        got.iter()
            .enumerate()
            .filter(|(i, (_, class))| usize::from(labels[[*i]]) == *class)
            .count()
    };
    let (scaled, fitted) = (correct("scale"), correct("mnist"));
    assert!(fitted >= 16, "--fit mnist: {fitted} of 20 correct");
    assert!(
        fitted > scaled,
        "--fit mnist {fitted} against --fit scale {scaled}"
    );
}

/// A small convnet on 8 x 8 digits, end to end: trained with --save-best, --patience, --metrics
/// and --plot, then `eval` and `predict` read the model it kept.
#[test]
fn a_convnet_trains_saves_evaluates_and_predicts() {
    let dir = TempDir::new("model-cli-convnet");
    write_digits(dir.path(), 100, 40, 3);
    let data = dir.path().to_str().unwrap();
    let model = dir.path().join("convnet.safetensors");
    let csv = dir.path().join("metrics.csv");
    let svg = dir.path().join("curves.svg");
    let out = success(&[
        "--data-dir",
        data,
        "--layers",
        "conv 4 3x3 pad 1, relu, maxpool 2, conv 6 3x3, relu, affine 3",
        "--optimizer",
        "adam",
        "--init",
        "he",
        "--epochs",
        "4",
        "--batch-size",
        "10",
        "--save",
        model.to_str().unwrap(),
        "--save-best",
        "--patience",
        "3",
        "--metrics",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.contains("conv 4 3x3 pad 1"), "{out}");
    let epochs = metrics(&csv);
    assert!(!epochs.is_empty() && epochs.len() <= 4, "{epochs:?}");
    assert!(fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let AnyModel::F32(saved) = AnyModel::load(&model).unwrap() else {
        panic!("an f32 run saves an f32 model");
    };
    assert_eq!(saved.net.input_shape(), [1, 8, 8]);
    let best = epochs.iter().map(|&(_, acc)| acc).fold(0.0, f64::max);
    let record = saved.info.training.unwrap();
    assert_eq!(format!("{:.4}", record.test_acc), format!("{best:.4}"));

    let eval = success(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    assert!(
        eval.contains(&format!("test_acc={:.4} (", record.test_acc)),
        "{eval}"
    );
    // Predict a test digit rendered to PNG: the class that the loaded network gives its pixels.
    let (images, _) = common::digits(40, 3, 2);
    let pixels: Vec<u8> = images.iter().take(64).copied().collect();
    let png = dir.path().join("digit.png");
    write_png(&png, 8, 8, image::ColorType::L8, &pixels);
    let predicted = predicted_classes(&success(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        png.to_str().unwrap(),
    ]));
    let x = ndarray::Array4::from_shape_fn((1, 1, 8, 8), |(_, _, y, z)| {
        f32::from(pixels[y * 8 + z]) / 255.0
    });
    let scores = saved.net.predict(x.into_dyn());
    let expected = bp_train::argmax(scores.iter().copied()).unwrap();
    assert_eq!(predicted.len(), 1);
    assert_eq!(predicted[0].1, expected);
}
