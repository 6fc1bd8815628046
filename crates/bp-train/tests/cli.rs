//! The `bp-train` binary: bad input gives one line on stderr and the right exit status; an 8x8-digit
//! directory trains; the output is reproducible and machine-readable.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{TempDir, write_digits};

fn bp_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bp-train"))
        .args(args)
        .output()
        .expect("run bp-train")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit status 2 and exactly one line on stderr containing `expected`, nothing on stdout.
#[track_caller]
fn assert_usage_error(args: &[&str], expected: &str) {
    let out = bp_train(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(err.contains(expected), "{args:?}: {err}");
    assert!(stdout(&out).is_empty(), "{args:?}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn bad_flags_and_values_exit_2_with_one_line() {
    assert_usage_error(&["--no-such-flag"], "unexpected argument '--no-such-flag'");
    assert_usage_error(
        &["--batch-size", "0"],
        "'--batch-size <N>': must be a positive integer",
    );
    assert_usage_error(
        &["--batch-size", "-100"],
        "'--batch-size <N>': must be a positive integer",
    );
    assert_usage_error(
        &["--iters", "0"],
        "'--iters <N>': must be a positive integer",
    );
    assert_usage_error(
        &["--epochs", "-1"],
        "'--epochs <N>': must be a positive integer",
    );
    assert_usage_error(&["--hidden", "50,0"], "hidden sizes are positive integers");
    assert_usage_error(&["--hidden", "-50"], "hidden sizes are positive integers");
    assert_usage_error(&["--lr", "0"], "'--lr <F>': must be greater than 0");
    assert_usage_error(&["--lr", "-0.1"], "'--lr <F>': must be greater than 0");
    assert_usage_error(&["--lr", "inf"], "'--lr <F>': not a finite number");
    assert_usage_error(&["--dropout", "1.0"], "'--dropout <F>': must be in [0, 1)");
    assert_usage_error(&["--dropout", "-0.2"], "'--dropout <F>': must be in [0, 1)");
    assert_usage_error(&["--weight-decay", "-1e-4"], "must be 0 or more");
    assert_usage_error(&["--weight-init-std", "0"], "must be greater than 0");
    assert_usage_error(&["--iters", "100", "--epochs", "2"], "cannot be used with");
    assert_usage_error(
        &["--optimizer", "rmsprop"],
        "[possible values: sgd, momentum, adagrad, adam]",
    );
    assert_usage_error(&["--dtype", "f16"], "[possible values: f32, f64]");
    assert_usage_error(
        &["--init", "he", "--weight-init-std", "0.1"],
        "--weight-init-std only applies to --init std",
    );
    assert_usage_error(&["--lr"], "a value is required for '--lr <F>'");
    assert_usage_error(
        &["--lr", "--quiet"],
        "invalid value '--quiet' for '--lr <F>'",
    );
}

#[test]
fn help_and_version_succeed() {
    let out = bp_train(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for flag in [
        "--data-dir",
        "--iters",
        "--epochs",
        "--batch-size",
        "--lr",
        "--hidden",
        "--activation",
        "--optimizer",
        "--init",
        "--weight-init-std",
        "--weight-decay",
        "--dropout",
        "--batch-norm",
        "--schedule",
        "--sampling",
        "--seed",
        "--dtype",
        "--metrics",
        "--quiet",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let out = bp_train(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("bp-train "));
}

/// Exit status 1, one line on stderr naming `file`, no panic.
#[track_caller]
fn assert_data_error(dir: &Path, file: &str) {
    let out = bp_train(&["--data-dir", dir.to_str().unwrap(), "--iters", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(file), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!stdout(&out).contains("final"), "{}", stdout(&out));
}

#[test]
fn a_missing_or_malformed_data_directory_is_one_clear_line() {
    let tmp = TempDir::new("bad-data");
    let missing = tmp.path().join("nowhere");
    assert_data_error(&missing, "nowhere");

    // Three good files and a training-image file that is an HTML page.
    write_digits(tmp.path(), 20, 10, 3);
    let images = tmp.path().join("train-images-idx3-ubyte.gz");
    std::fs::write(&images, "<!DOCTYPE html><html>Not Found</html>").unwrap();
    assert_data_error(tmp.path(), "train-images-idx3-ubyte.gz");

    // A truncated test-label file.
    write_digits(tmp.path(), 20, 10, 3);
    let labels = tmp.path().join("t10k-labels-idx1-ubyte");
    let bytes = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &bytes[..bytes.len() - 3]).unwrap();
    assert_data_error(tmp.path(), "t10k-labels-idx1-ubyte");

    // Labels that do not match their images in number.
    write_digits(tmp.path(), 20, 10, 3);
    let (_, t) = common::digits(7, 3, 5);
    bp_data::write_idx(&labels, &t, bp_data::Compression::None).unwrap();
    assert_data_error(tmp.path(), "t10k-labels-idx1-ubyte");

    // A test set with no images.
    write_digits(tmp.path(), 20, 0, 3);
    assert_data_error(tmp.path(), "t10k-images-idx3-ubyte");
}

#[test]
fn a_diverging_run_stops_with_exit_status_1() {
    let tmp = TempDir::new("diverge");
    write_digits(tmp.path(), 200, 50, 4);
    let out = bp_train(&[
        "--data-dir",
        tmp.path().to_str().unwrap(),
        "--lr",
        "1000",
        "--batch-size",
        "10",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: training diverged at iteration"),
        "{err}"
    );
    assert!(err.contains("try a smaller --lr (it was 1000)"), "{err}");
    assert!(!stdout(&out).contains("final"));
}

/// The output without the seconds, which vary from run to run.
fn without_times(s: &str) -> String {
    s.lines()
        .map(|l| match (l.rfind(" | "), l.find(" train_seconds=")) {
            (_, Some(i)) => format!("{}{}", &l[..i], &l[l[i..].find(" iters=").unwrap() + i..]),
            (Some(i), None) if l.starts_with("epoch") => l[..i].to_owned(),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_8x8_digit_directory_trains_reproducibly() {
    let tmp = TempDir::new("digits");
    write_digits(tmp.path(), 600, 200, 10);
    let dir = tmp.path().to_str().unwrap();
    let metrics = tmp.path().join("metrics.csv");
    let args = [
        "--data-dir",
        dir,
        "--epochs",
        "15",
        "--batch-size",
        "20",
        "--hidden",
        "64,32",
        "--init",
        "he",
        "--optimizer",
        "adam",
        "--lr",
        "0.005",
        "--sampling",
        "shuffle",
        "--dropout",
        "0.1",
        "--batch-norm",
        "--schedule",
        "cosine",
        "--seed",
        "3",
        "--metrics",
        metrics.to_str().unwrap(),
    ];
    let first = bp_train(&args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(stderr(&first).is_empty(), "{}", stderr(&first));
    let text = stdout(&first);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("600 training and 200 test images of 8x8, 10 classes"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("net: MultiLayerNet 64-64-32-10"),
        "{text}"
    );
    let epochs: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("epoch"))
        .collect();
    assert_eq!(epochs.len(), 15, "{text}");
    assert!(epochs[0].starts_with("epoch  1 | loss "), "{text}");
    // No progress bar when stdout is not a terminal: every line is a known one.
    assert!(
        lines.iter().all(|l| l.starts_with("data: ")
            || l.starts_with("net: ")
            || l.starts_with("train: ")
            || l.starts_with("epoch ")
            || l.starts_with("final ")),
        "{text}"
    );
    assert!(!text.contains('\r'));

    let last = lines.last().unwrap();
    assert!(last.starts_with("final test_acc="), "{text}");
    assert!(last.ends_with(" iters=450"), "{text}");
    let test_acc: f64 = last["final test_acc=".len()..][..6].parse().unwrap();
    assert!(test_acc >= 0.95, "{text}");

    let csv = std::fs::read_to_string(&metrics).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "epoch,iter,loss,train_acc,test_acc,seconds");
    assert_eq!(rows.len(), 16);
    assert!(rows[15].starts_with("15,450,"), "{csv}");

    // The same seed gives the same numbers; another seed does not.
    let second = bp_train(&args);
    assert_eq!(without_times(&stdout(&second)), without_times(&text));
    let mut other = args.to_vec();
    let seed_at = other.len() - 3;
    other[seed_at] = "4";
    let third = bp_train(&other);
    assert_ne!(without_times(&stdout(&third)), without_times(&text));
}

#[test]
fn quiet_prints_only_the_final_line_and_f64_works() {
    let tmp = TempDir::new("quiet");
    write_digits(tmp.path(), 300, 100, 5);
    let out = bp_train(&[
        "--data-dir",
        tmp.path().to_str().unwrap(),
        "--iters",
        "200",
        "--batch-size",
        "30",
        "--hidden",
        "20",
        "--dtype",
        "f64",
        "--lr",
        "0.5",
        "--weight-init-std",
        "0.1",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("final test_acc=") && text.trim_end().ends_with("iters=200"),
        "{text}"
    );
}
