//! The MNIST loader: the book's `load_mnist`, for any image size.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, IxDyn, NdFloat};

use crate::checksum::verify_sha256sums;
use crate::error::DataError;
use crate::idx::read_idx_as;

/// The name of the checksum list [`load_mnist`] verifies against.
pub const SHA256SUMS: &str = "SHA256SUMS";

/// How [`load_mnist`] shapes what it loads. The default is the book's `load_mnist()`: normalised,
/// flattened, class-index labels, 10 classes; checksums are not verified.
///
/// ```
/// use bp_data::MnistOptions;
///
/// let opts = MnistOptions::default();
/// assert!(opts.normalize && opts.flatten && !opts.one_hot_label);
/// assert_eq!(opts.num_classes, Some(10));
/// let book_ch5 = MnistOptions { one_hot_label: true, ..MnistOptions::default() };
/// assert!(book_ch5.one_hot_label);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MnistOptions {
    /// Scale pixels from 0..=255 to `[0, 1]` (`x / 255`); otherwise keep 0.0 to 255.0.
    pub normalize: bool,
    /// Images as rows of `rows * cols` pixels, shape (N, rows * cols); otherwise (N, 1, rows, cols).
    pub flatten: bool,
    /// Labels as one-hot rows, shape (N, num_classes); otherwise class indices.
    pub one_hot_label: bool,
    /// The number of classes: every label must be below it. `None` takes the largest label plus one,
    /// and refuses ([`DataError::EmptyClasses`]) labels that leave a class below the largest without
    /// an example in the training or test set; `Some(n)` accepts such gaps.
    pub num_classes: Option<usize>,
    /// Check the four files against the `SHA256SUMS` list in the same directory before loading.
    pub verify_checksums: bool,
}

impl Default for MnistOptions {
    fn default() -> Self {
        MnistOptions {
            normalize: true,
            flatten: true,
            one_hot_label: false,
            num_classes: Some(10),
            verify_checksums: false,
        }
    }
}

/// Class labels: indices, or one-hot rows.
///
/// ```
/// use bp_data::Labels;
/// use ndarray::array;
///
/// let index = Labels::<f32>::Index(vec![2, 0]);
/// assert_eq!(index.len(), 2);
/// assert_eq!(index.as_index(), Some(&[2, 0][..]));
///
/// let one_hot = Labels::OneHot(array![[0.0f32, 0.0, 1.0], [1.0, 0.0, 0.0]]);
/// assert_eq!(one_hot.len(), 2);
/// assert_eq!(one_hot.as_index(), None);
/// assert_eq!(one_hot.to_index(), vec![2, 0]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Labels<A> {
    /// One class index per sample.
    Index(Vec<usize>),
    /// One row per sample, shape (N, num_classes), with 1 at the class and 0 elsewhere.
    OneHot(Array2<A>),
}

impl<A> Labels<A> {
    /// The number of samples.
    pub fn len(&self) -> usize {
        match self {
            Labels::Index(t) => t.len(),
            Labels::OneHot(t) => t.nrows(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class indices, if the labels are indices.
    pub fn as_index(&self) -> Option<&[usize]> {
        match self {
            Labels::Index(t) => Some(t),
            Labels::OneHot(_) => None,
        }
    }

    /// The one-hot rows, if the labels are one-hot.
    pub fn as_one_hot(&self) -> Option<&Array2<A>> {
        match self {
            Labels::Index(_) => None,
            Labels::OneHot(t) => Some(t),
        }
    }
}

impl<A: NdFloat> Labels<A> {
    /// The class indices, read from one-hot rows as the position of each row's largest entry (the
    /// first if tied, as NumPy's `argmax`).
    pub fn to_index(&self) -> Vec<usize> {
        match self {
            Labels::Index(t) => t.clone(),
            Labels::OneHot(t) => t
                .rows()
                .into_iter()
                .map(|row| {
                    let mut best = 0;
                    for (j, &v) in row.iter().enumerate() {
                        if v > row[best] {
                            best = j;
                        }
                    }
                    best
                })
                .collect(),
        }
    }
}

/// MNIST, or any data set in its four-file layout, as arrays.
///
/// `x_train` and `x_test` are (N, rows * cols) when flattened, else (N, 1, rows, cols), in standard
/// (C) layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Mnist<A> {
    /// The training images.
    pub x_train: ArrayD<A>,
    /// The training labels.
    pub t_train: Labels<A>,
    /// The test images.
    pub x_test: ArrayD<A>,
    /// The test labels.
    pub t_test: Labels<A>,
    /// The number of classes: the one asked for, or the largest label plus one.
    pub num_classes: usize,
    /// The size of one image, (rows, cols).
    pub image_shape: (usize, usize),
}

impl<A> Mnist<A> {
    /// The number of training samples.
    pub fn train_len(&self) -> usize {
        self.t_train.len()
    }

    /// The number of test samples.
    pub fn test_len(&self) -> usize {
        self.t_test.len()
    }

    /// The number of pixels in one image, `rows * cols`.
    pub fn image_size(&self) -> usize {
        self.image_shape.0 * self.image_shape.1
    }
}

/// The four files of an MNIST-layout data set.
///
/// ```
/// use bp_data::MnistFiles;
///
/// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/mnist");
/// let files = MnistFiles::find(dir)?;
/// assert!(files.train_images.ends_with("train-images-idx3-ubyte.gz"));
/// assert!(files.test_labels.ends_with("t10k-labels-idx1-ubyte.gz"));
/// # Ok::<(), bp_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MnistFiles {
    /// The training images, `train-images-idx3-ubyte`.
    pub train_images: PathBuf,
    /// The training labels, `train-labels-idx1-ubyte`.
    pub train_labels: PathBuf,
    /// The test images, `t10k-images-idx3-ubyte`.
    pub test_images: PathBuf,
    /// The test labels, `t10k-labels-idx1-ubyte`.
    pub test_labels: PathBuf,
}

impl MnistFiles {
    /// Finds the four files in `dir`. Each may be spelt `train-images-idx3-ubyte` (as distributed) or
    /// `train-images.idx3-ubyte` (as some mirrors unpack it), gzip'd with `.gz` or raw; the first of
    /// `<name>.gz`, `<name>`, `<dotted>.gz`, `<dotted>` that exists is taken.
    ///
    /// Errors with [`DataError::MnistFileNotFound`], listing the names tried, if one is missing.
    pub fn find(dir: impl AsRef<Path>) -> Result<MnistFiles, DataError> {
        let dir = dir.as_ref();
        Ok(MnistFiles {
            train_images: find_one(dir, "train-images", "idx3", "training images")?,
            train_labels: find_one(dir, "train-labels", "idx1", "training labels")?,
            test_images: find_one(dir, "t10k-images", "idx3", "test images")?,
            test_labels: find_one(dir, "t10k-labels", "idx1", "test labels")?,
        })
    }

    /// The four paths: training images, training labels, test images, test labels.
    pub fn paths(&self) -> [&Path; 4] {
        [
            &self.train_images,
            &self.train_labels,
            &self.test_images,
            &self.test_labels,
        ]
    }
}

/// The names a file of the four-file layout may go by, in the order they are tried.
fn candidate_names(stem: &str, idx: &str) -> [String; 4] {
    [
        format!("{stem}-{idx}-ubyte.gz"),
        format!("{stem}-{idx}-ubyte"),
        format!("{stem}.{idx}-ubyte.gz"),
        format!("{stem}.{idx}-ubyte"),
    ]
}

fn find_one(dir: &Path, stem: &str, idx: &str, what: &'static str) -> Result<PathBuf, DataError> {
    let names = candidate_names(stem, idx);
    names
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| DataError::MnistFileNotFound {
            dir: dir.to_path_buf(),
            what,
            tried: names.to_vec(),
            dir_exists: dir.is_dir(),
        })
}

/// Loads MNIST, or any data set in its four-file layout, from `dir`: the book's `load_mnist`.
///
/// The files are found as [`MnistFiles::find`] says and read as IDX (gzip'd or raw). The images must be
/// `u8` of shape (N, rows, cols), any size but the same for training and test; the labels `u8` of
/// shape (N) with the same N as their images, each below `opts.num_classes`. When `opts.num_classes`
/// is `None`, the count is the largest label plus one, and every class below the largest must occur
/// in the training or test labels ([`DataError::EmptyClasses`] otherwise). Every check failure is a
/// [`DataError`] naming the file.
///
/// Pixels become `A` as `p / 255` when `opts.normalize` (exactly as NumPy's
/// `x.astype(float32) / 255.0` for `f32`), else as `p`.
///
/// # Shapes
///
/// `x_train`, `x_test`: (N, rows * cols) when `opts.flatten`, else (N, 1, rows, cols). One-hot
/// labels: (N, num_classes).
///
/// # Panics
///
/// Only on a nonsensical option, never on file contents: if `opts.one_hot_label` and
/// `N * opts.num_classes` overflows `isize`.
///
/// ```
/// use bp_data::{Labels, MnistOptions, load_mnist};
///
/// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/mnist");
/// let opts = MnistOptions { flatten: false, one_hot_label: true, ..MnistOptions::default() };
/// let mnist = load_mnist::<f32>(dir, &opts)?;
/// assert_eq!(mnist.x_train.shape(), &[60000, 1, 28, 28]);
/// assert_eq!(mnist.x_test.shape(), &[10000, 1, 28, 28]);
/// assert_eq!(mnist.image_shape, (28, 28));
/// // The first training image is a 5: its one-hot row has the 1 in column 5.
/// let Labels::OneHot(t) = &mnist.t_train else { unreachable!() };
/// assert_eq!(t.row(0).to_vec(), [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
/// assert!(mnist.x_train.iter().all(|&p| (0.0..=1.0).contains(&p)));
/// # Ok::<(), bp_data::DataError>(())
/// ```
pub fn load_mnist<A: NdFloat>(
    dir: impl AsRef<Path>,
    opts: &MnistOptions,
) -> Result<Mnist<A>, DataError> {
    let dir = dir.as_ref();
    let files = MnistFiles::find(dir)?;
    if opts.verify_checksums {
        verify_sha256sums(dir.join(SHA256SUMS), &files.paths())?;
    }

    let train_images = read_images(&files.train_images)?;
    let train_labels = read_labels(&files.train_labels)?;
    let test_images = read_images(&files.test_images)?;
    let test_labels = read_labels(&files.test_labels)?;
    check_count(
        &files.train_images,
        &train_images,
        &files.train_labels,
        &train_labels,
    )?;
    check_count(
        &files.test_images,
        &test_images,
        &files.test_labels,
        &test_labels,
    )?;
    let image_shape = (train_images.shape()[1], train_images.shape()[2]);
    let test_shape = (test_images.shape()[1], test_images.shape()[2]);
    if image_shape != test_shape {
        return Err(DataError::ImageSizeMismatch {
            train_file: files.train_images,
            test_file: files.test_images,
            train_size: image_shape,
            test_size: test_shape,
        });
    }

    let num_classes = match opts.num_classes {
        Some(k) => k,
        None => infer_num_classes(
            &files.train_labels,
            &train_labels,
            &files.test_labels,
            &test_labels,
        )?,
    };
    check_labels(&files.train_labels, &train_labels, num_classes)?;
    check_labels(&files.test_labels, &test_labels, num_classes)?;

    let lut = pixel_table::<A>(opts.normalize);
    Ok(Mnist {
        x_train: to_float(&train_images, &lut, opts.flatten),
        t_train: to_labels(&train_labels, num_classes, opts.one_hot_label),
        x_test: to_float(&test_images, &lut, opts.flatten),
        t_test: to_labels(&test_labels, num_classes, opts.one_hot_label),
        num_classes,
        image_shape,
    })
}

fn read_images(path: &Path) -> Result<ArrayD<u8>, DataError> {
    let images = read_idx_as::<u8>(path, 3)?;
    require_data(path, images)
}

fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let labels = require_data(path, read_idx_as::<u8>(path, 1)?)?;
    Ok(labels.iter().copied().collect())
}

fn require_data(path: &Path, array: ArrayD<u8>) -> Result<ArrayD<u8>, DataError> {
    if array.is_empty() {
        return Err(DataError::ZeroDimension {
            file: path.to_path_buf(),
            shape: array.shape().to_vec(),
        });
    }
    Ok(array)
}

fn check_count(
    images_file: &Path,
    images: &ArrayD<u8>,
    labels_file: &Path,
    labels: &[u8],
) -> Result<(), DataError> {
    let n = images.shape()[0];
    if n != labels.len() {
        return Err(DataError::CountMismatch {
            images_file: images_file.to_path_buf(),
            labels_file: labels_file.to_path_buf(),
            images: n,
            labels: labels.len(),
        });
    }
    Ok(())
}

/// The largest label plus one, if every class below the largest occurs in the training or the test
/// labels; [`DataError::EmptyClasses`] naming the file that holds the largest label otherwise.
fn infer_num_classes(
    train_file: &Path,
    train: &[u8],
    test_file: &Path,
    test: &[u8],
) -> Result<usize, DataError> {
    let mut seen = [false; 256];
    for &t in train.iter().chain(test) {
        seen[usize::from(t)] = true;
    }
    let Some(largest) = seen.iter().rposition(|&s| s) else {
        return Ok(0);
    };
    let empty_classes: Vec<usize> = (0..largest).filter(|&c| !seen[c]).collect();
    if empty_classes.is_empty() {
        return Ok(largest + 1);
    }
    let first = |labels: &[u8]| labels.iter().position(|&t| usize::from(t) == largest);
    let (file, index) = match first(train) {
        Some(index) => (train_file, index),
        None => (test_file, first(test).unwrap_or_default()),
    };
    Err(DataError::EmptyClasses {
        file: file.to_path_buf(),
        index,
        label: largest,
        empty_classes,
    })
}

fn check_labels(file: &Path, labels: &[u8], num_classes: usize) -> Result<(), DataError> {
    match labels.iter().position(|&t| usize::from(t) >= num_classes) {
        Some(index) => Err(DataError::LabelOutOfRange {
            file: file.to_path_buf(),
            index,
            label: usize::from(labels[index]),
            num_classes,
        }),
        None => Ok(()),
    }
}

/// The value of each of the 256 pixel values: `p / 255` or `p`, with `p` made exactly by counting.
fn pixel_table<A: NdFloat>(normalize: bool) -> [A; 256] {
    let mut table = [A::zero(); 256];
    for i in 1..256 {
        table[i] = table[i - 1] + A::one();
    }
    if normalize {
        let max = table[255];
        for v in &mut table {
            *v /= max;
        }
    }
    table
}

fn to_float<A: NdFloat>(images: &ArrayD<u8>, lut: &[A; 256], flatten: bool) -> ArrayD<A> {
    let (n, rows, cols) = (images.shape()[0], images.shape()[1], images.shape()[2]);
    let pixels: Vec<A> = match images.as_slice() {
        Some(s) => s.iter().map(|&p| lut[usize::from(p)]).collect(),
        None => images.iter().map(|&p| lut[usize::from(p)]).collect(),
    };
    let shape = if flatten {
        IxDyn(&[n, rows * cols])
    } else {
        IxDyn(&[n, 1, rows, cols])
    };
    ArrayD::from_shape_vec(shape, pixels).expect("same element count as the checked image array")
}

fn to_labels<A: NdFloat>(labels: &[u8], num_classes: usize, one_hot: bool) -> Labels<A> {
    if one_hot {
        let mut t = Array2::zeros((labels.len(), num_classes));
        for (i, &label) in labels.iter().enumerate() {
            t[[i, usize::from(label)]] = A::one();
        }
        Labels::OneHot(t)
    } else {
        Labels::Index(labels.iter().map(|&t| usize::from(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_table_matches_division_by_255() {
        let t = pixel_table::<f32>(true);
        for (p, &v) in t.iter().enumerate() {
            assert_eq!(v, p as f32 / 255.0);
        }
        assert_eq!(t[0], 0.0);
        assert_eq!(t[255], 1.0);
        let raw = pixel_table::<f64>(false);
        assert_eq!(raw[200], 200.0);
    }

    #[test]
    fn one_hot_rows_have_a_single_one() {
        let t = to_labels::<f64>(&[1, 0, 2], 3, true);
        assert_eq!(
            t.as_one_hot().unwrap(),
            &ndarray::array![[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
        );
        assert_eq!(t.to_index(), vec![1, 0, 2]);
        assert_eq!(
            to_labels::<f64>(&[1, 0], 3, false).as_index(),
            Some(&[1, 0][..])
        );
    }

    #[test]
    fn names_tried_cover_both_spellings() {
        assert_eq!(
            candidate_names("train-images", "idx3"),
            [
                "train-images-idx3-ubyte.gz",
                "train-images-idx3-ubyte",
                "train-images.idx3-ubyte.gz",
                "train-images.idx3-ubyte"
            ]
        );
    }

    #[test]
    fn class_count_inferred_only_without_gaps() {
        let (train, test) = (Path::new("train"), Path::new("test"));
        assert_eq!(infer_num_classes(train, &[2, 0], test, &[1]).unwrap(), 3);
        assert_eq!(infer_num_classes(train, &[], test, &[]).unwrap(), 0);
        // 3 is only in the test labels, the largest, 5, in both: the training file is named.
        let err = infer_num_classes(train, &[0, 1, 2, 5, 5], test, &[5, 3]).unwrap_err();
        assert!(matches!(
            &err,
            DataError::EmptyClasses { file, index: 3, label: 5, empty_classes }
                if file == train && empty_classes == &[4]
        ));
        // Labels counted from 1, the largest only in the test labels.
        let err = infer_num_classes(train, &[1, 2], test, &[2, 3, 3]).unwrap_err();
        assert!(matches!(
            &err,
            DataError::EmptyClasses { file, index: 1, label: 3, empty_classes }
                if file == test && empty_classes == &[0]
        ));
    }

    #[test]
    fn labels_at_or_above_the_class_count_are_rejected() {
        let f = Path::new("labels");
        assert!(check_labels(f, &[0, 9, 3], 10).is_ok());
        let err = check_labels(f, &[0, 9, 10, 11], 10).unwrap_err();
        assert!(matches!(
            err,
            DataError::LabelOutOfRange {
                index: 2,
                label: 10,
                num_classes: 10,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "labels: label 10 at index 2 is not below the number of classes, 10"
        );
    }
}
