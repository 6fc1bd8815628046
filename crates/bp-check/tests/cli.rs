//! The `bp-check` command: the book's check on the shipped MNIST, exit statuses and errors.

use std::process::Command;

fn bp_check() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bp-check"))
}

#[test]
fn checks_the_shipped_mnist_and_every_layer() {
    // Run from the crate's directory, where `datasets/mnist` does not exist: the command finds the
    // workspace's shipped copy.
    let output = bp_check()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bp-check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.is_empty(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("TwoLayerNet(784, 50, 10), seed 0, first 3 training images"));
    // One line per parameter in the book's order and format: `W1: 4.3e-10 (max rel 5.4e-06 ...`.
    // The book's NumPy code prints W1 4.6e-10, b1 2.8e-09, W2 6.1e-09, b2 1.4e-07 (seed 0 of
    // NumPy's generator); the figures depend on the weights drawn, so they must be of that order.
    let book = [
        ("W1", 4.6e-10),
        ("b1", 2.8e-9),
        ("W2", 6.1e-9),
        ("b2", 1.4e-7),
    ];
    for (line, (name, book)) in lines[1..5].iter().zip(book) {
        let rest = line
            .strip_prefix(&format!("{name}: "))
            .unwrap_or_else(|| panic!("{line:?} is not the line of {name}"));
        let (figure, rest) = rest
            .split_once(' ')
            .expect("a figure, then the relative error");
        let figure: f64 = figure.parse().expect("the book's figure is a number");
        assert!(
            figure > 0.0 && figure < 3.0 * book,
            "{line} vs the book's {book:e}"
        );
        assert!(rest.starts_with("(max rel "), "{line}");
    }
    assert!(lines[5].starts_with("ok at tolerance 1e-4; numerical gradient of 39760 parameters: "));
    for layer in [
        "Affine",
        "Relu",
        "Sigmoid",
        "BatchNorm",
        "Dropout (frozen mask)",
        "Sequential (Affine, Sigmoid, Affine)",
        "SoftmaxWithLoss",
    ] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{layer}: ")))
            .unwrap_or_else(|| panic!("no line for {layer} in\n{stdout}"));
        assert!(line.contains(": ok at tolerance 1e-6, worst "), "{line}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
}

#[test]
fn a_missing_data_directory_is_one_line_on_stderr_and_status_1() {
    let output = bp_check()
        .arg("/nonexistent/mnist")
        .output()
        .expect("bp-check runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("bp-check: "), "{stderr}");
    assert!(stderr.contains("/nonexistent/mnist"), "{stderr}");
}

#[test]
fn bad_arguments_are_refused_with_the_usage() {
    for args in [&["--verbose"][..], &["a", "b"][..]] {
        let output = bp_check().args(args).output().expect("bp-check runs");
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("usage: bp-check [DATA_DIR]"), "{stderr}");
    }
    let output = bp_check().arg("--help").output().expect("bp-check runs");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("usage: bp-check"));
}
