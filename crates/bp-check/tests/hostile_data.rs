//! `bp-check` on data sets that are not MNIST: its nets are sized from the data (one input per
//! pixel, one output per class), and data it cannot check is one line on stderr, never a panic.
//! Every run has its address space limited and is killed if it outlasts its time.

#![cfg(unix)]
#![allow(unsafe_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bp_data::{Compression, write_idx};
use ndarray::{Array1, Array3, Axis};

/// The address space a run may use.
const MEMORY_LIMIT: u64 = 1 << 30;

/// How long a run may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `bp-check DIR` with its address space limited to [`MEMORY_LIMIT`], killed after
/// [`TIMEOUT`] (a failure of the test).
fn bp_check(dir: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bp-check"));
    command
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe, and the closure touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            let limit = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().expect("bp-check starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bp-check {} ran for more than {TIMEOUT:?}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Writes an MNIST-layout data set of `train` and `test` images of `rows` x `cols`, labels cycling
/// through `classes` classes, pixels a pattern of the label.
fn write_data(dir: &Path, (rows, cols): (usize, usize), train: usize, test: usize, classes: usize) {
    let images = |n: usize| {
        Array3::from_shape_fn((n, rows, cols), |(i, r, c)| {
            ((i % classes) * 37 + r * 11 + c * 5) as u8
        })
    };
    let labels = |n: usize| Array1::from_shape_fn(n, |i| (i % classes) as u8);
    write_idx(
        dir.join("train-images-idx3-ubyte.gz"),
        &images(train),
        Compression::Gzip,
    )
    .unwrap();
    write_idx(
        dir.join("train-labels-idx1-ubyte.gz"),
        &labels(train),
        Compression::Gzip,
    )
    .unwrap();
    write_idx(
        dir.join("t10k-images-idx3-ubyte"),
        &images(test),
        Compression::None,
    )
    .unwrap();
    write_idx(
        dir.join("t10k-labels-idx1-ubyte"),
        &labels(test),
        Compression::None,
    )
    .unwrap();
}

/// The run passed, and its nets are those of `inputs` and `classes`, the first drawn from `seed`.
#[track_caller]
fn assert_checks(
    out: &Output,
    dir: &Path,
    (inputs, classes, seed): (usize, usize, u64),
    shape: &str,
) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "TwoLayerNet({inputs}, 50, {classes}), seed {seed}, first 3 training images of {} \
             ({shape}):",
            dir.display()
        )
    );
    let params = inputs * 50 + 50 + 50 * classes + classes;
    assert!(
        lines[5].starts_with(&format!(
            "ok at tolerance 1e-4; numerical gradient of {params} parameters: "
        )),
        "{stdout}"
    );
    let deep = format!(
        "MultiLayerNet({inputs}, [20, 15], {classes}), Sigmoid, Xavier, batch norm, dropout 0.2, \
         weight decay 0.1, first 10 training images: ok at tolerance 1e-4"
    );
    assert!(lines.contains(&deep.as_str()), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
}

/// Exit status 1 and one line on stderr, `bp-check: ` and `expected`.
#[track_caller]
fn assert_refused(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("bp-check: "), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn images_of_8x8_are_checked_with_nets_of_their_size() {
    let tmp = tempfile::tempdir().unwrap();
    write_data(tmp.path(), (8, 8), 20, 10, 3);
    assert_checks(&bp_check(tmp.path()), tmp.path(), (64, 3, 0), "8x8");
}

/// Few pixels make small hidden inputs, and seed 0 puts one of them within a step of the
/// numerical gradient of Relu's kink: the check draws the net from the next seed that does not,
/// and says which (a net drawn from seed 0 fails the check on these images).
#[test]
fn images_that_are_not_square_and_twelve_classes_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    write_data(tmp.path(), (3, 5), 24, 12, 12);
    assert_checks(&bp_check(tmp.path()), tmp.path(), (15, 12, 2), "3x5");
    // One class: every probability is 1, every gradient 0, and the check still runs.
    let tmp = tempfile::tempdir().unwrap();
    write_data(tmp.path(), (4, 4), 10, 2, 1);
    assert_checks(&bp_check(tmp.path()), tmp.path(), (16, 1, 1), "4x4");
}

/// A blank image leaves every hidden input of the book's net at exactly 0, Relu's kink, whatever
/// the seed: the check cannot be made there, and says so.
#[test]
fn a_blank_first_image_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_data(tmp.path(), (8, 8), 20, 10, 3);
    let mut images = Array3::<u8>::from_elem((20, 8, 8), 90);
    images.index_axis_mut(Axis(0), 1).fill(0);
    write_idx(
        tmp.path().join("train-images-idx3-ubyte.gz"),
        &images,
        Compression::Gzip,
    )
    .unwrap();
    assert_refused(
        &bp_check(tmp.path()),
        &format!(
            "the first 3 training images of {} leave hidden units of every TwoLayerNet tried \
             (seeds 0 to 63) at Relu's kink, where the numerical gradient is not the derivative \
             (is an image blank?)",
            tmp.path().display()
        ),
    );
}

#[test]
fn images_too_large_to_check_are_refused_with_the_figures() {
    let tmp = tempfile::tempdir().unwrap();
    write_data(tmp.path(), (80, 80), 10, 2, 2);
    assert_refused(
        &bp_check(tmp.path()),
        &format!(
            "the images in {} are 80x80 with 2 classes: the book's TwoLayerNet(6400, 50, 2) would \
             have 320152 parameters, and bp-check checks at most 250000 (two forward passes \
             each); use images of at most about 70x70 pixels",
            tmp.path().display()
        ),
    );
}

#[test]
fn too_few_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_data(tmp.path(), (8, 8), 5, 5, 2);
    assert_refused(
        &bp_check(tmp.path()),
        &format!(
            "{} holds 5 training images; the check needs 10",
            tmp.path().display()
        ),
    );
}
