//! The MNIST loader: the shipped data, data sets of other image sizes, and every way the four files
//! can disagree.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};

use bp_data::{
    Compression, DataError, FileKind, IdxType, Labels, MnistFiles, MnistOptions, load_mnist,
    write_idx,
};
use common::TempDir;
use ndarray::{Array1, Array3, ArrayD};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist")
}

#[test]
fn shipped_mnist_loads_with_checksums() {
    let opts = MnistOptions {
        verify_checksums: true,
        ..MnistOptions::default()
    };
    let mnist = load_mnist::<f32>(shipped(), &opts).unwrap();
    assert_eq!(mnist.x_train.shape(), &[60000, 784]);
    assert_eq!(mnist.x_test.shape(), &[10000, 784]);
    assert!(mnist.x_train.is_standard_layout() && mnist.x_test.is_standard_layout());
    assert_eq!((mnist.train_len(), mnist.test_len()), (60000, 10000));
    assert_eq!(mnist.num_classes, 10);
    assert_eq!(mnist.image_shape, (28, 28));
    assert_eq!(mnist.image_size(), 784);
    let train = mnist.t_train.as_index().unwrap();
    let test = mnist.t_test.as_index().unwrap();
    assert_eq!(&train[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&test[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    // Every digit occurs; the well-known class counts of the training set.
    let mut counts = [0usize; 10];
    for &t in train {
        counts[t] += 1;
    }
    assert_eq!(
        counts,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    // The well-known mean pixel of the training set, 0.1307, and the range [0, 1].
    let mean = mnist.x_train.iter().map(|&p| f64::from(p)).sum::<f64>() / (60000.0 * 784.0);
    assert!((mean - 0.1307).abs() < 1e-4, "mean {mean}");
    let (lo, hi) = mnist
        .x_train
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    assert_eq!((lo, hi), (0.0, 1.0));
}

#[test]
fn shipped_mnist_files_and_checksums_are_found() {
    let files = MnistFiles::find(shipped()).unwrap();
    for path in files.paths() {
        assert!(
            path.to_string_lossy().ends_with(".gz"),
            "{}",
            path.display()
        );
    }
    bp_data::verify_sha256sums(shipped().join("SHA256SUMS"), &files.paths()).unwrap();
}

/// Writes a data set in the four-file layout and returns what was written.
struct Written {
    train_x: Array3<u8>,
    train_t: Array1<u8>,
    test_x: Array3<u8>,
    test_t: Array1<u8>,
}

fn random_set(rng: &mut Xoshiro256PlusPlus, n_train: usize, n_test: usize, side: usize) -> Written {
    let images = |rng: &mut Xoshiro256PlusPlus, n: usize| {
        Array3::from_shape_simple_fn((n, side, side), || rng.random::<u8>())
    };
    let labels = |rng: &mut Xoshiro256PlusPlus, n: usize| {
        Array1::from_shape_simple_fn(n, || rng.random_range(0..10u8))
    };
    Written {
        train_x: images(rng, n_train),
        train_t: labels(rng, n_train),
        test_x: images(rng, n_test),
        test_t: labels(rng, n_test),
    }
}

/// The usual names, all gzip'd.
const GZ_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

fn write_set(dir: &Path, set: &Written, names: [&str; 4]) {
    let c = |name: &str| {
        if name.ends_with(".gz") {
            Compression::Gzip
        } else {
            Compression::None
        }
    };
    write_idx(dir.join(names[0]), &set.train_x, c(names[0])).unwrap();
    write_idx(dir.join(names[1]), &set.train_t, c(names[1])).unwrap();
    write_idx(dir.join(names[2]), &set.test_x, c(names[2])).unwrap();
    write_idx(dir.join(names[3]), &set.test_t, c(names[3])).unwrap();
}

#[test]
fn an_8x8_digit_set_loads_in_every_shape() {
    let dir = TempDir::new("digits8");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
    let set = random_set(&mut rng, 50, 20, 8);
    // Both spellings, raw and gzip'd, mixed.
    write_set(
        dir.path(),
        &set,
        [
            "train-images.idx3-ubyte",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte",
            "t10k-labels.idx1-ubyte.gz",
        ],
    );

    let flat = load_mnist::<f64>(dir.path(), &MnistOptions::default()).unwrap();
    assert_eq!(flat.x_train.shape(), &[50, 64]);
    assert_eq!(flat.x_test.shape(), &[20, 64]);
    assert_eq!(flat.image_shape, (8, 8));
    for (i, (&p, &x)) in set.train_x.iter().zip(flat.x_train.iter()).enumerate() {
        assert_eq!(x, f64::from(p) / 255.0, "pixel {i}");
    }
    let want: Vec<usize> = set.train_t.iter().map(|&t| usize::from(t)).collect();
    assert_eq!(flat.t_train.as_index().unwrap(), &want[..]);

    let opts = MnistOptions {
        normalize: false,
        flatten: false,
        one_hot_label: true,
        num_classes: Some(12),
        verify_checksums: false,
        max_bytes: MnistOptions::DEFAULT_MAX_BYTES,
    };
    let images = load_mnist::<f32>(dir.path(), &opts).unwrap();
    assert_eq!(images.x_test.shape(), &[20, 1, 8, 8]);
    assert_eq!(images.num_classes, 12);
    assert_eq!(
        images.x_test[[3, 0, 7, 2]],
        f32::from(set.test_x[[3, 7, 2]])
    );
    let Labels::OneHot(t) = &images.t_test else {
        panic!("one-hot labels were asked for");
    };
    assert_eq!(t.dim(), (20, 12));
    for (i, row) in t.rows().into_iter().enumerate() {
        let label = usize::from(set.test_t[i]);
        for (j, &v) in row.iter().enumerate() {
            assert_eq!(v, if j == label { 1.0 } else { 0.0 });
        }
    }
    assert_eq!(
        images.t_test.to_index(),
        set.test_t
            .iter()
            .map(|&t| usize::from(t))
            .collect::<Vec<_>>()
    );
}

#[test]
fn class_count_inferred_when_not_given() {
    let dir = TempDir::new("infer");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(10);
    let mut set = random_set(&mut rng, 6, 3, 5);
    set.train_t = Array1::from(vec![0, 1, 2, 0, 1, 2]);
    set.test_t = Array1::from(vec![3, 0, 1]);
    write_set(dir.path(), &set, GZ_NAMES);
    let opts = MnistOptions {
        num_classes: None,
        one_hot_label: true,
        ..MnistOptions::default()
    };
    let m = load_mnist::<f32>(dir.path(), &opts).unwrap();
    assert_eq!(m.num_classes, 4);
    assert_eq!(m.t_test.as_one_hot().unwrap().dim(), (3, 4));
    assert_eq!(m.image_shape, (5, 5));
}

fn load_err(dir: &Path) -> DataError {
    load_mnist::<f32>(dir, &MnistOptions::default()).expect_err("data set is broken")
}

#[test]
fn missing_files_say_what_was_tried_and_where_mnist_is() {
    let dir = TempDir::new("missing");
    let err = load_err(dir.path());
    let DataError::MnistFileNotFound { what, tried, .. } = &err else {
        panic!("expected MnistFileNotFound, got {err:?}");
    };
    assert_eq!(*what, "training images");
    assert_eq!(
        tried,
        &[
            "train-images-idx3-ubyte.gz",
            "train-images-idx3-ubyte",
            "train-images.idx3-ubyte.gz",
            "train-images.idx3-ubyte"
        ]
    );
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("train-images.idx3-ubyte.gz"), "{msg}");
    assert!(msg.contains("datasets/mnist/"), "{msg}");

    // Only the test labels missing.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    write_set(dir.path(), &random_set(&mut rng, 2, 2, 3), GZ_NAMES);
    std::fs::remove_file(dir.join(GZ_NAMES[3])).unwrap();
    assert!(matches!(
        load_err(dir.path()),
        DataError::MnistFileNotFound {
            what: "test labels",
            ..
        }
    ));

    // A missing directory is said to be missing, before any file is looked for.
    let gone = dir.join("no-such-dir");
    let err = load_err(&gone);
    assert!(
        matches!(&err, DataError::NotADirectory { dir, kind: FileKind::Missing } if dir == &gone),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("the data directory {} does not exist", gone.display())
    );
}

#[test]
fn counts_must_match() {
    let dir = TempDir::new("counts");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
    let mut set = random_set(&mut rng, 4, 3, 4);
    set.test_t = Array1::from(vec![1, 2]);
    write_set(dir.path(), &set, GZ_NAMES);
    let err = load_err(dir.path());
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                images: 3,
                labels: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("t10k-images-idx3-ubyte.gz holds 3 images"),
        "{msg}"
    );
    assert!(
        msg.contains("t10k-labels-idx1-ubyte.gz holds 2 labels"),
        "{msg}"
    );
}

#[test]
fn labels_must_be_below_the_class_count() {
    let dir = TempDir::new("labels");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(13);
    let mut set = random_set(&mut rng, 4, 2, 4);
    set.train_t = Array1::from(vec![0, 9, 10, 3]);
    write_set(dir.path(), &set, GZ_NAMES);
    let err = load_err(dir.path());
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                index: 2,
                label: 10,
                num_classes: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("train-labels-idx1-ubyte.gz"));
    // With 11 classes it loads; with 3 the 9 is out of range.
    let opts = |k| MnistOptions {
        num_classes: Some(k),
        ..MnistOptions::default()
    };
    assert_eq!(
        load_mnist::<f32>(dir.path(), &opts(11))
            .unwrap()
            .num_classes,
        11
    );
    assert!(matches!(
        load_mnist::<f32>(dir.path(), &opts(3)),
        Err(DataError::LabelOutOfRange {
            index: 1,
            label: 9,
            num_classes: 3,
            ..
        })
    ));
}

fn infer() -> MnistOptions {
    MnistOptions {
        num_classes: None,
        ..MnistOptions::default()
    }
}

fn count(k: usize) -> MnistOptions {
    MnistOptions {
        num_classes: Some(k),
        ..MnistOptions::default()
    }
}

/// A data set with the given labels and random 3x3 images.
fn with_labels(dir: &Path, seed: u64, train: &[u8], test: &[u8]) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut set = random_set(&mut rng, train.len(), test.len(), 3);
    set.train_t = Array1::from(train.to_vec());
    set.test_t = Array1::from(test.to_vec());
    write_set(dir, &set, GZ_NAMES);
}

#[test]
fn classes_without_examples_below_the_largest_label_are_refused() {
    let dir = TempDir::new("empty-classes");
    // Digits 0-9 and a single 12 at index 10 (then 3 more digits): 10 and 11 never occur.
    let train = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 7, 0, 4];
    let test = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0];
    with_labels(dir.path(), 20, &train, &test);
    let train_labels = dir.join(GZ_NAMES[1]);

    let err = load_mnist::<f32>(dir.path(), &infer()).unwrap_err();
    let DataError::EmptyClasses {
        file,
        index,
        label,
        empty_classes,
        searched,
    } = &err
    else {
        panic!("expected EmptyClasses, got {err:?}");
    };
    assert_eq!(file, &train_labels);
    assert_eq!((*index, *label), (10, 12));
    assert_eq!(empty_classes, &[10, 11]);
    assert_eq!(*searched, "training or test labels");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the largest label, 12 at index 10, makes 13 classes, but classes 10, 11 have no \
             example in the training or test labels; if the data really has 13 classes, say so with \
             --classes 13",
            train_labels.display()
        )
    );

    // Told there are 13 classes, the loader takes the same files, labels and all.
    let m = load_mnist::<f32>(dir.path(), &count(13)).unwrap();
    assert_eq!(m.num_classes, 13);
    let want: Vec<usize> = train.iter().map(|&t| usize::from(t)).collect();
    assert_eq!(m.t_train.as_index().unwrap(), &want[..]);
    assert_eq!(m.t_test.as_index().unwrap()[..3], [9, 8, 7]);
    let one_hot = MnistOptions {
        one_hot_label: true,
        ..count(13)
    };
    let m = load_mnist::<f64>(dir.path(), &one_hot).unwrap();
    let t = m.t_train.as_one_hot().unwrap();
    assert_eq!(t.dim(), (14, 13));
    assert_eq!(t[[10, 12]], 1.0);
    assert_eq!(t.row(10).sum(), 1.0);
    assert_eq!(t.column(10).sum() + t.column(11).sum(), 0.0);

    // A count that leaves the 12 out is still refused, as any label at or above the count.
    assert!(matches!(
        load_mnist::<f32>(dir.path(), &count(12)),
        Err(DataError::LabelOutOfRange {
            index: 10,
            label: 12,
            num_classes: 12,
            ..
        })
    ));
}

#[test]
fn classes_with_examples_only_in_the_test_labels_are_not_empty() {
    let dir = TempDir::new("test-only-classes");
    // 10 occurs only in the test labels, and so does the largest label, 12, first at index 2.
    with_labels(
        dir.path(),
        21,
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        &[1, 10, 12, 12],
    );
    let err = load_mnist::<f32>(dir.path(), &infer()).unwrap_err();
    assert!(
        matches!(
            &err,
            DataError::EmptyClasses { file, index: 2, label: 12, empty_classes, .. }
                if file == &dir.join(GZ_NAMES[3]) && empty_classes == &[11]
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("makes 13 classes, but class 11 has no example"),
        "{msg}"
    );

    // With 11 in the training labels every class has an example: 13 classes, inferred.
    with_labels(
        dir.path(),
        21,
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11],
        &[1, 10, 12, 12],
    );
    assert_eq!(
        load_mnist::<f32>(dir.path(), &infer()).unwrap().num_classes,
        13
    );
}

#[test]
fn labels_counted_from_one_or_far_apart_are_refused() {
    let dir = TempDir::new("sparse-classes");
    // Labels 1 to 10, as if counted from 1: class 0 is empty.
    let from_one = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    with_labels(dir.path(), 22, &from_one, &from_one);
    let err = load_mnist::<f32>(dir.path(), &infer()).unwrap_err();
    assert!(
        matches!(
            &err,
            DataError::EmptyClasses { index: 9, label: 10, empty_classes, .. }
                if empty_classes == &[0]
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("makes 11 classes, but class 0 has no example")
    );
    assert_eq!(
        load_mnist::<f32>(dir.path(), &count(11))
            .unwrap()
            .num_classes,
        11
    );

    // Long runs of empty classes are ranges in the message, and listed in full in the field.
    with_labels(dir.path(), 23, &[0, 2, 6, 255, 7], &[0, 2]);
    let err = load_mnist::<f32>(dir.path(), &infer()).unwrap_err();
    let DataError::EmptyClasses {
        index: 3,
        label: 255,
        empty_classes,
        ..
    } = &err
    else {
        panic!("expected EmptyClasses at index 3, got {err:?}");
    };
    let want: Vec<usize> = [1, 3, 4, 5].into_iter().chain(8..255).collect();
    assert_eq!(empty_classes, &want);
    assert!(
        err.to_string()
            .contains("makes 256 classes, but classes 1, 3-5, 8-254 have no example"),
        "{err}"
    );
    assert_eq!(
        load_mnist::<f32>(dir.path(), &count(256))
            .unwrap()
            .num_classes,
        256
    );
}

#[test]
fn shipped_mnist_infers_ten_classes() {
    let m = load_mnist::<f32>(shipped(), &infer()).unwrap();
    assert_eq!(m.num_classes, 10);
    assert_eq!((m.train_len(), m.test_len()), (60000, 10000));
}

#[test]
fn train_and_test_images_must_be_the_same_size() {
    let dir = TempDir::new("sizes");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(14);
    let mut set = random_set(&mut rng, 3, 2, 4);
    set.test_x = Array3::zeros((2, 4, 5));
    write_set(dir.path(), &set, GZ_NAMES);
    let err = load_err(dir.path());
    assert!(matches!(
        err,
        DataError::ImageSizeMismatch {
            train_size: (4, 4),
            test_size: (4, 5),
            ..
        }
    ));
    assert!(err.to_string().contains("are 4x4 but those in"));
}

#[test]
fn images_must_be_u8_of_rank_3_with_data() {
    let dir = TempDir::new("image-types");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(15);
    let set = random_set(&mut rng, 3, 2, 4);
    write_set(dir.path(), &set, GZ_NAMES);
    let images = dir.join(GZ_NAMES[0]);

    write_idx(&images, &set.train_x.mapv(i16::from), Compression::Gzip).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(
        err,
        DataError::UnexpectedType {
            expected: IdxType::U8,
            found: IdxType::I16,
            ..
        }
    ));
    assert!(err.to_string().contains(GZ_NAMES[0]));

    let flat = set.train_x.clone().into_shape_with_order((3, 16)).unwrap();
    write_idx(&images, &flat, Compression::Gzip).unwrap();
    assert!(matches!(
        load_err(dir.path()),
        DataError::UnexpectedRank { expected: 3, .. }
    ));

    write_idx(&images, &Array3::<u8>::zeros((3, 0, 4)), Compression::Gzip).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(&err, DataError::ZeroDimension { shape, .. } if shape == &[3, 0, 4]));
    assert!(err.to_string().contains("a dimension is 0"));

    // No training samples at all.
    write_idx(&images, &Array3::<u8>::zeros((0, 4, 4)), Compression::Gzip).unwrap();
    write_idx(
        dir.join(GZ_NAMES[1]),
        &Array1::<u8>::zeros(0),
        Compression::Gzip,
    )
    .unwrap();
    assert!(matches!(
        load_err(dir.path()),
        DataError::ZeroDimension { .. }
    ));
}

#[test]
fn labels_must_be_u8_of_rank_1() {
    let dir = TempDir::new("label-types");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(16);
    let set = random_set(&mut rng, 3, 2, 4);
    write_set(dir.path(), &set, GZ_NAMES);
    let labels = dir.join(GZ_NAMES[3]);
    let two_d: ArrayD<u8> = ArrayD::zeros(ndarray::IxDyn(&[2, 1]));
    write_idx(&labels, &two_d, Compression::None).unwrap();
    assert!(matches!(
        load_err(dir.path()),
        DataError::UnexpectedRank { expected: 1, .. }
    ));
    write_idx(&labels, &set.test_t.mapv(f32::from), Compression::None).unwrap();
    assert!(matches!(
        load_err(dir.path()),
        DataError::UnexpectedType {
            found: IdxType::F32,
            ..
        }
    ));
}

#[test]
fn a_damaged_file_is_named() {
    let dir = TempDir::new("damaged");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(17);
    write_set(dir.path(), &random_set(&mut rng, 3, 2, 4), GZ_NAMES);
    let path = dir.join(GZ_NAMES[2]);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
}

fn verify(dir: &Path) -> Result<bp_data::Mnist<f32>, DataError> {
    let opts = MnistOptions {
        verify_checksums: true,
        ..MnistOptions::default()
    };
    load_mnist::<f32>(dir, &opts)
}

#[test]
fn checksum_failures() {
    let dir = TempDir::new("checksums");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(18);
    write_set(dir.path(), &random_set(&mut rng, 3, 2, 4), GZ_NAMES);

    // No list.
    let err = verify(dir.path()).unwrap_err();
    assert!(
        matches!(err, DataError::Io { action: "open", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("SHA256SUMS"));

    // A correct list.
    let sums: String = GZ_NAMES
        .iter()
        .map(|name| {
            format!(
                "{}  {name}\n",
                bp_data::sha256_file(dir.join(name)).unwrap()
            )
        })
        .collect();
    std::fs::write(dir.join("SHA256SUMS"), &sums).unwrap();
    assert!(verify(dir.path()).is_ok());

    // One file changed after listing.
    let labels = dir.join(GZ_NAMES[1]);
    write_idx(&labels, &Array1::from(vec![1u8, 1, 1]), Compression::Gzip).unwrap();
    let err = verify(dir.path()).unwrap_err();
    assert!(matches!(&err, DataError::ChecksumMismatch { file, .. } if file == &labels));
    assert!(
        err.to_string()
            .contains("the file is damaged or not the one listed")
    );
    // Without verification the changed file still loads.
    assert!(load_mnist::<f32>(dir.path(), &MnistOptions::default()).is_ok());

    // A file the list does not name: the raw spelling is preferred to nothing, but not listed.
    std::fs::remove_file(&labels).unwrap();
    write_idx(
        dir.join("train-labels-idx1-ubyte"),
        &Array1::from(vec![1u8, 1, 1]),
        Compression::None,
    )
    .unwrap();
    assert!(matches!(
        verify(dir.path()),
        Err(DataError::ChecksumNotListed { .. })
    ));

    // A malformed list.
    std::fs::write(
        dir.join("SHA256SUMS"),
        format!("{sums}not a checksum line\n"),
    )
    .unwrap();
    let err = verify(dir.path()).unwrap_err();
    assert!(
        matches!(err, DataError::BadChecksumLine { line: 5, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("SHA256SUMS:5"));

    // An absurdly large list is not read.
    std::fs::write(dir.join("SHA256SUMS"), vec![b'#'; (1 << 20) + 1]).unwrap();
    assert!(matches!(
        verify(dir.path()),
        Err(DataError::ChecksumListTooLarge { .. })
    ));
}
