//! The `bp-train` command against hostile data sets: gzip bombs that declare gigabytes in a
//! megabyte, headers that contradict each other, data files that are directories, FIFOs, devices or
//! dangling links, a `--data-dir` that is not a directory, and `eval`, which reads the test set only.
//!
//! Every run is bounded: its address space is limited to [`MEMORY_LIMIT`] (`RLIMIT_AS`), so a loader
//! that allocated for a bomb's declared size would abort instead of eating the machine, and it is
//! killed after [`TIME_LIMIT`], so a loader that waited on a FIFO fails the test instead of hanging
//! it. Each error must be one line on stderr, exit status 1.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bp_data::{Compression, write_idx};
use common::bounded::{self, Run, mkfifo};
use common::{TempDir, digits, write_digits};
use ndarray::Array1;

/// The address space of each run: the shipped MNIST trains in 256 MiB, the 8x8 sets here need far
/// less, and a bomb's 4 GiB of pixels cannot be allocated.
const MEMORY_LIMIT: u64 = 512 << 20;

/// How long a run may take before it is killed.
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// How long a refusal from the headers may take: reading a bomb's gigabyte takes seconds.
const FAST: Duration = Duration::from_secs(5);

const MIB: u64 = 1 << 20;

const GZ: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// Runs bp-train with `args`, its memory limited to [`MEMORY_LIMIT`] and killed after
/// [`TIME_LIMIT`] (which fails the test).
fn bp_train<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    bounded::run(
        bounded::command(args, MEMORY_LIMIT),
        TIME_LIMIT,
        &format!("bp-train {shown:?}"),
    )
}

/// Exit status 1, nothing on stdout, and exactly the line `expected` on stderr.
#[track_caller]
fn assert_fails<S: AsRef<std::ffi::OsStr>>(args: &[S], expected: &str) -> Run {
    let run = bp_train(args);
    assert_eq!(run.status.code(), Some(1), "{}: {}", run.status, run.stderr);
    assert_eq!(run.stderr, format!("{expected}\n"));
    assert_eq!(run.stdout, "");
    run
}

/// Exit status 0; the stdout.
#[track_caller]
fn assert_succeeds<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let run = bp_train(args);
    assert!(run.status.success(), "{}: {}", run.status, run.stderr);
    run.stdout
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// An IDX header: magic with the type code and rank, then the dimensions.
fn header(code: u8, dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, code, u8::try_from(dims.len()).unwrap()];
    for d in dims {
        h.extend(d.to_be_bytes());
    }
    h
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A complete gzip'd IDX file of `header` and `zeros` zero bytes, as concatenated gzip members of
/// 1 MiB of zeros each (about 1 KB apiece).
fn gz_bomb(header: &[u8], zeros: u64) -> Vec<u8> {
    static MEMBER: OnceLock<Vec<u8>> = OnceLock::new();
    let member = MEMBER.get_or_init(|| gzip(&vec![0; MIB as usize]));
    let mut out = gzip(header);
    for _ in 0..zeros / MIB {
        out.extend_from_slice(member);
    }
    if !zeros.is_multiple_of(MIB) {
        out.extend(gzip(&vec![0; (zeros % MIB) as usize]));
    }
    out
}

/// Replaces a split's two files by a bomb of 16,777,216 8x8 images (1 GiB of zeros, the IDX
/// reader's own limit) and as many labels: 4 GiB once converted to f32.
fn plant_bomb(dir: &Path, images: &str, labels: &str) {
    let n: u32 = 1 << 24;
    let bomb = gz_bomb(&header(0x08, &[n, 8, 8]), 64 * u64::from(n));
    assert!(bomb.len() < 2_000_000, "{} bytes", bomb.len());
    std::fs::write(dir.join(images), bomb).unwrap();
    std::fs::write(dir.join(labels), gz_bomb(&header(0x08, &[n]), u64::from(n))).unwrap();
}

/// A fresh temporary directory, unique within the process (tests run in parallel).
fn temp(name: &str) -> TempDir {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    TempDir::new(&format!(
        "{name}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// An 8x8 digit set of 10 classes with gzip'd names throughout, 200 training and 50 test images.
fn digit_set(name: &str) -> TempDir {
    let dir = temp(name);
    write_digits(dir.path(), 200, 50, 10);
    for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    let (x, t) = digits(50, 10, 2);
    write_idx(dir.path().join(GZ[2]), &x, Compression::Gzip).unwrap();
    write_idx(dir.path().join(GZ[3]), &t, Compression::Gzip).unwrap();
    dir
}

/// A model trained briefly on an 8x8 digit set, saved in `dir`.
fn train_model(dir: &Path) -> PathBuf {
    let data = digit_set("hostile-model-data");
    let model = dir.join("digits.safetensors");
    assert_succeeds(&[
        "--data-dir",
        s(data.path()),
        "--iters",
        "20",
        "--save",
        s(&model),
        "-q",
    ]);
    model
}

// ---- Decompression bombs ----

#[test]
fn a_gzip_bomb_is_refused_from_its_header_with_the_flag_that_raises_the_limit() {
    let dir = digit_set("hostile-bomb-train");
    plant_bomb(dir.path(), GZ[0], GZ[1]);
    let images = dir.path().join(GZ[0]);
    // 4 GiB of f32 pixels, 128 MiB of labels, the test set's 50 images and labels, and the bomb's
    // own 1 GiB of bytes: 5248 MiB and 13200 bytes.
    let run = assert_fails(
        &["--data-dir", s(dir.path())],
        &format!(
            "error: {} declares 16777216 images of 8x8: as f32 the data would take 5248 MiB, more \
             than the limit of 1024 MiB; raise the limit with --max-data-mib 5249",
            images.display()
        ),
    );
    assert!(run.took < FAST, "took {:?}", run.took);
    assert_fails(
        &[
            "--data-dir",
            s(dir.path()),
            "--dtype",
            "f64",
            "--max-data-mib",
            "4096",
        ],
        &format!(
            "error: {} declares 16777216 images of 8x8: as f64 the data would take 9344 MiB, more \
             than the limit of 4096 MiB; raise the limit with --max-data-mib 9345",
            images.display()
        ),
    );
}

#[test]
fn eval_refuses_a_gzip_bomb_in_the_test_set() {
    let tmp = temp("hostile-bomb-eval");
    let model = train_model(tmp.path());
    let dir = digit_set("hostile-bomb-eval-data");
    plant_bomb(dir.path(), GZ[2], GZ[3]);
    let expected = |limit: u64| {
        format!(
            "error: {} declares 16777216 images of 8x8: as f32 the data would take 5248 MiB, more \
             than the limit of {limit} MiB; raise the limit with --max-data-mib 5248",
            dir.path().join(GZ[2]).display()
        )
    };
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", s(&model), "--data-dir", s(dir.path())];
        args.extend(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = assert_fails(&eval(&[]), &expected(1024));
    assert!(run.took < FAST, "took {:?}", run.took);
    assert_fails(&eval(&["--max-data-mib", "2048"]), &expected(2048));
}

#[test]
fn a_billion_labels_in_a_megabyte_are_a_count_mismatch_at_once() {
    let dir = digit_set("hostile-label-bomb");
    let labels = dir.path().join(GZ[1]);
    std::fs::write(
        &labels,
        gz_bomb(&header(0x08, &[1_000_000_000]), 1_000_000_000),
    )
    .unwrap();
    let run = assert_fails(
        &["--data-dir", s(dir.path())],
        &format!(
            "error: {} holds 200 images but {} holds 1000000000 labels",
            dir.path().join(GZ[0]).display(),
            labels.display()
        ),
    );
    assert!(run.took < FAST, "took {:?}", run.took);
}

#[test]
fn max_data_mib_lowers_and_raises_the_limit() {
    let dir = temp("hostile-limit");
    write_digits(dir.path(), 5000, 5000, 10);
    // f32 pixels and usize labels of 10000 images, and the largest file's bytes: 2.8 MiB.
    let need = 10_000 * (64 * 4 + 8) + 5000 * 64;
    assert_eq!(need, 2_960_000);
    assert_fails(
        &["--data-dir", s(dir.path()), "--max-data-mib", "2"],
        &format!(
            "error: {} declares 5000 images of 8x8: as f32 the data would take 2.8 MiB, more than \
             the limit of 2 MiB; raise the limit with --max-data-mib 3",
            dir.path().join(GZ[0]).display()
        ),
    );
    let out = assert_succeeds(&[
        "--data-dir",
        s(dir.path()),
        "--max-data-mib",
        "3",
        "--iters",
        "1",
        "-q",
    ]);
    assert!(out.starts_with("final test_acc="), "{out}");

    // eval's own flag: the test set alone, 5000 images, 1.6 MiB.
    let tmp = temp("hostile-limit-model");
    let model = train_model(tmp.path());
    let eval = |mib: &str| {
        bp_train(&[
            "eval",
            "--model",
            s(&model),
            "--data-dir",
            s(dir.path()),
            "--max-data-mib",
            mib,
        ])
    };
    let run = eval("1");
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "error: {} declares 5000 images of 8x8: as f32 the data would take 1.6 MiB, more than \
             the limit of 1 MiB; raise the limit with --max-data-mib 2\n",
            dir.path().join("t10k-images-idx3-ubyte").display()
        )
    );
    let run = eval("2");
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stdout.contains("5000 test images of 8x8, 10 classes"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_max_data_mib_values_exit_2() {
    for (args, expected) in [
        (
            &["--max-data-mib", "0"][..],
            "error: invalid value '0' for '--max-data-mib <N>': must be a positive integer",
        ),
        (
            &["--max-data-mib", "-5"][..],
            "error: invalid value '-5' for '--max-data-mib <N>': must be a positive integer",
        ),
        (
            &["--max-data-mib", "lots"][..],
            "error: invalid value 'lots' for '--max-data-mib <N>': not a positive integer",
        ),
        (
            &["--max-data-mib", "17592186044416"][..],
            "error: invalid value '17592186044416' for '--max-data-mib <N>': 17592186044416 MiB \
             is too large: at most 17592186044415",
        ),
        (
            &["eval", "--model", "m", "--max-data-mib", "0"][..],
            "error: invalid value '0' for '--max-data-mib <N>': must be a positive integer",
        ),
    ] {
        let run = bp_train(args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr, format!("{expected}\n"), "{args:?}");
    }
}

// ---- Data files that are not regular files ----

/// Each kind of non-file in place of a data file, made at `path`; what the message says it is.
fn make_special(kind: &str, path: &Path) -> String {
    match kind {
        "directory" => {
            std::fs::create_dir(path).unwrap();
            "is a directory".to_owned()
        }
        "fifo" => {
            mkfifo(path);
            "is a FIFO, not a regular file".to_owned()
        }
        "dangling link" => {
            std::os::unix::fs::symlink("gone.gz", path).unwrap();
            format!(
                "is a symbolic link to {}, which does not exist",
                path.with_file_name("gone.gz").display()
            )
        }
        "device" => {
            std::os::unix::fs::symlink("/dev/zero", path).unwrap();
            "is a character device, not a regular file".to_owned()
        }
        _ => unreachable!(),
    }
}

const SPECIAL: [&str; 4] = ["directory", "fifo", "dangling link", "device"];

#[test]
fn data_files_that_are_not_files_say_what_they_are() {
    for file in [GZ[0], GZ[3]] {
        for kind in SPECIAL {
            let dir = digit_set("hostile-special");
            let path = dir.path().join(file);
            std::fs::remove_file(&path).unwrap();
            let clause = make_special(kind, &path);
            let run = assert_fails(
                &["--data-dir", s(dir.path()), "--iters", "1"],
                &format!("error: {} {clause}", path.display()),
            );
            assert!(run.took < FAST, "{kind}: took {:?}", run.took);
        }
    }
}

#[test]
fn eval_says_what_a_test_file_is() {
    let tmp = temp("hostile-special-eval");
    let model = train_model(tmp.path());
    for kind in SPECIAL {
        let dir = digit_set("hostile-special-eval-data");
        let path = dir.path().join(GZ[3]);
        std::fs::remove_file(&path).unwrap();
        let clause = make_special(kind, &path);
        assert_fails(
            &["eval", "--model", s(&model), "--data-dir", s(dir.path())],
            &format!("error: {} {clause}", path.display()),
        );
    }
}

// ---- --data-dir that is not a directory ----

#[test]
fn a_data_dir_that_is_not_a_directory_is_said_to_be_what_it_is() {
    let tmp = temp("hostile-data-dir");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let fifo = tmp.path().join("a-fifo");
    mkfifo(&fifo);
    let link = tmp.path().join("a-link");
    std::os::unix::fs::symlink("gone", &link).unwrap();
    let cases = [
        (file, "is a file, not a directory".to_owned()),
        (tmp.path().join("missing"), "does not exist".to_owned()),
        (fifo, "is a FIFO, not a directory".to_owned()),
        (
            link,
            format!(
                "is a symbolic link to {}, which does not exist",
                tmp.path().join("gone").display()
            ),
        ),
    ];
    for (path, clause) in &cases {
        let expected = format!("error: the data directory {} {clause}", path.display());
        assert_fails(&["--data-dir", s(path)], &expected);
        // Before anything else: even before the model, which does not exist either.
        assert_fails(
            &[
                "eval",
                "--model",
                "no-such.safetensors",
                "--data-dir",
                s(path),
            ],
            &expected,
        );
    }
}

// ---- eval reads the test set only ----

#[test]
fn eval_reads_only_the_test_files() {
    let tmp = temp("hostile-eval-only");
    let model = train_model(tmp.path());
    let dir = digit_set("hostile-eval-only-data");
    let eval = || assert_succeeds(&["eval", "--model", s(&model), "--data-dir", s(dir.path())]);
    let whole = eval();
    assert!(
        whole.contains(&format!(
            "data: {}: 50 test images of 8x8, 10 classes",
            dir.path().display()
        )),
        "{whole}"
    );
    assert!(whole.contains("test_acc="), "{whole}");

    // No training files at all.
    std::fs::remove_file(dir.path().join(GZ[0])).unwrap();
    std::fs::remove_file(dir.path().join(GZ[1])).unwrap();
    assert_eq!(eval(), whole);
    // Training files that are garbage, a bomb, a FIFO, a directory: not looked at.
    std::fs::write(dir.path().join(GZ[0]), b"<html>404</html>").unwrap();
    std::fs::write(
        dir.path().join(GZ[1]),
        gz_bomb(&header(0x08, &[1_000_000_000]), 1_000_000_000),
    )
    .unwrap();
    assert_eq!(eval(), whole);
    std::fs::remove_file(dir.path().join(GZ[0])).unwrap();
    mkfifo(&dir.path().join(GZ[0]));
    std::fs::remove_file(dir.path().join(GZ[1])).unwrap();
    std::fs::create_dir(dir.path().join(GZ[1])).unwrap();
    assert_eq!(eval(), whole);
    // Training on the same directory reads them, and says what is wrong.
    assert_fails(
        &["--data-dir", s(dir.path())],
        &format!(
            "error: {} is a FIFO, not a regular file",
            dir.path().join(GZ[0]).display()
        ),
    );
}

#[test]
fn eval_checks_the_test_labels_against_the_models_classes() {
    let tmp = temp("hostile-eval-classes");
    let model = train_model(tmp.path());
    let dir = digit_set("hostile-eval-classes-data");
    std::fs::remove_file(dir.path().join(GZ[0])).unwrap();
    // Labels 0-9 and one 12, for a model of 10 classes.
    let mut labels: Vec<u8> = (0..50).map(|i| i % 10).collect();
    labels[7] = 12;
    write_idx(
        dir.path().join(GZ[3]),
        &Array1::from(labels),
        Compression::Gzip,
    )
    .unwrap();
    assert_fails(
        &["eval", "--model", s(&model), "--data-dir", s(dir.path())],
        &format!(
            "error: the test set in {} has 13 classes, but the model {} has only 10",
            dir.path().display(),
            model.display()
        ),
    );
}
