//! The MNIST loader: the book's `load_mnist`, for any image size.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, IxDyn, NdFloat};

use crate::checksum::verify_sha256sums;
use crate::error::DataError;
use crate::file_kind::FileKind;
use crate::idx::{IdxFile, Limits, expect_layout};
use crate::idx_type::IdxType;

/// The name of the checksum list [`load_mnist`] verifies against.
pub const SHA256SUMS: &str = "SHA256SUMS";

/// How [`load_mnist`] shapes what it loads. The default is the book's `load_mnist()`: normalised,
/// flattened, class-index labels, 10 classes; checksums are not verified; at most 1 GiB of memory.
///
/// ```
/// use bp_data::MnistOptions;
///
/// let opts = MnistOptions::default();
/// assert!(opts.normalize && opts.flatten && !opts.one_hot_label);
/// assert_eq!(opts.num_classes, Some(10));
/// assert_eq!(opts.max_bytes, 1 << 30);
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
    /// The most memory the load may take, in bytes: the arrays returned (images in `A`, labels as
    /// `usize` indices or one-hot rows of `A`) plus the bytes of the largest file, held while they
    /// are converted. It is worked out from the files' headers alone, before any data is read, so
    /// that a small gzip'd file declaring millions of images is refused with
    /// [`DataError::DataTooLarge`] rather than read. With `num_classes: None` and one-hot labels,
    /// the rows are counted at the most classes `u8` labels allow, 256.
    ///
    /// The default, [`MnistOptions::DEFAULT_MAX_BYTES`] (1 GiB), holds MNIST 2.2 times over in
    /// `f64` (464 MiB: 419 of arrays, 45 of the training images' bytes) and 4 times in `f32`
    /// (255 MiB).
    pub max_bytes: u64,
}

impl MnistOptions {
    /// The default [`max_bytes`](MnistOptions::max_bytes): 1 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
}

impl Default for MnistOptions {
    fn default() -> Self {
        MnistOptions {
            normalize: true,
            flatten: true,
            one_hot_label: false,
            num_classes: Some(10),
            verify_checksums: false,
            max_bytes: MnistOptions::DEFAULT_MAX_BYTES,
        }
    }
}

/// One of the two parts of a data set in the four-file layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training set: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`.
    Train,
    /// The test set: `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`.
    Test,
}

impl Split {
    /// `"training"` or `"test"`.
    pub const fn name(self) -> &'static str {
        match self {
            Split::Train => "training",
            Split::Test => "test",
        }
    }

    /// The file name stems of the images and the labels.
    const fn stems(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images", "train-labels"),
            Split::Test => ("t10k-images", "t10k-labels"),
        }
    }

    /// What the images and labels are called in messages.
    const fn whats(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("training images", "training labels"),
            Split::Test => ("test images", "test labels"),
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

/// One split of a data set in MNIST's layout, as [`load_mnist_split`] loads it.
#[derive(Clone, Debug, PartialEq)]
pub struct MnistSplit<A> {
    /// The images: (N, rows * cols) when flattened, else (N, 1, rows, cols).
    pub x: ArrayD<A>,
    /// The labels.
    pub t: Labels<A>,
    /// The number of classes: the one asked for, or the largest label of this split plus one.
    pub num_classes: usize,
    /// The size of one image, (rows, cols).
    pub image_shape: (usize, usize),
}

impl<A> MnistSplit<A> {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// Whether there are no samples (never so for a split [`load_mnist_split`] returns).
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
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
    /// `<name>.gz`, `<name>`, `<dotted>.gz`, `<dotted>` that is a regular file (or a link to one) is
    /// taken.
    ///
    /// Errors with [`DataError::NotADirectory`] if `dir` is missing or not a directory, checked
    /// first; [`DataError::NotAFile`] if no name of a file is a regular file but one is something else
    /// (a directory, a FIFO, a dangling link, ...), saying what; [`DataError::MnistFileNotFound`],
    /// listing the names tried, if none of them exists.
    pub fn find(dir: impl AsRef<Path>) -> Result<MnistFiles, DataError> {
        let dir = dir.as_ref();
        check_dir(dir)?;
        let (train_images, train_labels) = find_split(dir, Split::Train)?;
        let (test_images, test_labels) = find_split(dir, Split::Test)?;
        Ok(MnistFiles {
            train_images,
            train_labels,
            test_images,
            test_labels,
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

/// Checks that `dir`, a data set's directory, is a directory (or a link to one), as [`load_mnist`]
/// does first: [`DataError::NotADirectory`] otherwise, saying what it is. A path whose kind cannot
/// be found out (no permission to look) is let through, for the file lookups to report.
///
/// ```
/// use bp_data::{DataError, FileKind, check_data_dir};
///
/// check_data_dir(std::env::temp_dir())?;
/// let file = std::env::temp_dir().join(format!("bp-data-doc-dir-{}", std::process::id()));
/// std::fs::write(&file, b"")?;
/// let err = check_data_dir(&file).unwrap_err();
/// assert!(matches!(err, DataError::NotADirectory { kind: FileKind::Regular, .. }));
/// assert!(err.to_string().ends_with("is a file, not a directory"));
/// # std::fs::remove_file(&file)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_data_dir(dir: impl AsRef<Path>) -> Result<(), DataError> {
    check_dir(dir.as_ref())
}

fn check_dir(dir: &Path) -> Result<(), DataError> {
    match FileKind::of(dir) {
        FileKind::Directory | FileKind::Other => Ok(()),
        kind => Err(DataError::NotADirectory {
            dir: dir.to_path_buf(),
            kind,
        }),
    }
}

/// The images and labels files of a split in `dir`, a directory.
fn find_split(dir: &Path, split: Split) -> Result<(PathBuf, PathBuf), DataError> {
    let (images, labels) = split.stems();
    let (images_what, labels_what) = split.whats();
    Ok((
        find_one(dir, images, "idx3", images_what)?,
        find_one(dir, labels, "idx1", labels_what)?,
    ))
}

fn find_one(dir: &Path, stem: &str, idx: &str, what: &'static str) -> Result<PathBuf, DataError> {
    let names = candidate_names(stem, idx);
    let mut not_a_file = None;
    for path in names.iter().map(|name| dir.join(name)) {
        match FileKind::of(&path) {
            // A path that cannot be looked at is taken, for opening it to say why.
            FileKind::Regular | FileKind::Other => return Ok(path),
            FileKind::Missing => {}
            kind => {
                not_a_file.get_or_insert(DataError::NotAFile { file: path, kind });
            }
        }
    }
    Err(not_a_file.unwrap_or_else(|| DataError::MnistFileNotFound {
        dir: dir.to_path_buf(),
        what,
        tried: names.to_vec(),
    }))
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
/// Nothing a file declares is read before all four headers have been read and checked against each
/// other (element types, ranks, image and label counts, image sizes) and the memory the arrays will
/// take against `opts.max_bytes` ([`DataError::DataTooLarge`]): a small gzip'd file declaring
/// millions of images, or a label file declaring more labels than its images, is refused at once.
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
/// `N * opts.num_classes` overflows `isize` while `opts.max_bytes` is so large as to let it through.
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
    let [train, test] = load_splits::<A, 2>(
        dir,
        [
            (files.train_images, files.train_labels),
            (files.test_images, files.test_labels),
        ],
        "training or test labels",
        opts,
    )?;
    Ok(Mnist {
        num_classes: train.num_classes,
        image_shape: train.image_shape,
        x_train: train.x,
        t_train: train.t,
        x_test: test.x,
        t_test: test.t,
    })
}

/// Loads one split of a data set in MNIST's layout: only its two files are looked for, checked and
/// read, so that evaluating on the test set needs neither the training files nor their soundness.
///
/// Everything else is as [`load_mnist`] does, for those two files: with `opts.num_classes: None`
/// the class count comes from this split's labels alone, and with `opts.verify_checksums` only its
/// two files are verified.
///
/// ```
/// use bp_data::{MnistOptions, Split, load_mnist_split};
///
/// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/mnist");
/// let test = load_mnist_split::<f64>(dir, Split::Test, &MnistOptions::default())?;
/// assert_eq!(test.x.shape(), &[10000, 784]);
/// assert_eq!((test.len(), test.num_classes, test.image_shape), (10000, 10, (28, 28)));
/// assert_eq!(&test.t.as_index().unwrap()[..3], &[7, 2, 1]);
/// # Ok::<(), bp_data::DataError>(())
/// ```
pub fn load_mnist_split<A: NdFloat>(
    dir: impl AsRef<Path>,
    split: Split,
    opts: &MnistOptions,
) -> Result<MnistSplit<A>, DataError> {
    let dir = dir.as_ref();
    check_dir(dir)?;
    let files = find_split(dir, split)?;
    let searched = split.whats().1;
    let [loaded] = load_splits::<A, 1>(dir, [files], searched, opts)?;
    Ok(loaded)
}

/// A split's two files, opened and their headers checked.
struct Opened {
    images: IdxFile,
    labels: IdxFile,
    /// The number of images (and labels).
    n: usize,
    image_shape: (usize, usize),
}

/// Loads the splits whose (images, labels) files are given, in order; `searched` names their labels
/// for [`DataError::EmptyClasses`].
fn load_splits<A: NdFloat, const S: usize>(
    dir: &Path,
    files: [(PathBuf, PathBuf); S],
    searched: &'static str,
    opts: &MnistOptions,
) -> Result<[MnistSplit<A>; S], DataError> {
    if opts.verify_checksums {
        let paths: Vec<&Path> = files
            .iter()
            .flat_map(|(x, t)| [x.as_path(), t.as_path()])
            .collect();
        verify_sha256sums(dir.join(SHA256SUMS), &paths)?;
    }

    // The headers, all of them before any data: what the files declare must agree, and fit.
    let mut opened = Vec::with_capacity(S);
    for (images, labels) in &files {
        opened.push(open_split(images, labels)?);
    }
    if let [first, rest @ ..] = &opened[..] {
        for other in rest {
            if other.image_shape != first.image_shape {
                return Err(DataError::ImageSizeMismatch {
                    train_file: first.images.path().to_path_buf(),
                    test_file: other.images.path().to_path_buf(),
                    train_size: first.image_shape,
                    test_size: other.image_shape,
                });
            }
        }
    }
    check_memory::<A>(&opened, opts)?;

    // The labels, small, before the images: a label out of range is found before any image is read.
    let mut splits = Vec::with_capacity(S);
    for o in opened {
        let labels = read_u8(o.labels)?.into_iter().collect::<Vec<u8>>();
        splits.push((o.images, o.image_shape, labels));
    }
    let num_classes = match opts.num_classes {
        Some(k) => k,
        None => {
            let sets: Vec<(&Path, &[u8])> = splits
                .iter()
                .zip(&files)
                .map(|((_, _, t), (_, path))| (path.as_path(), &t[..]))
                .collect();
            infer_num_classes(&sets, searched)?
        }
    };
    for ((_, _, labels), (_, path)) in splits.iter().zip(&files) {
        check_labels(path, labels, num_classes)?;
    }

    // The images, converted one file at a time so that only one file's bytes are held beside the
    // arrays.
    let lut = pixel_table::<A>(opts.normalize);
    let mut loaded = Vec::with_capacity(S);
    for (images, image_shape, labels) in splits {
        let x = to_float(&read_u8(images)?, &lut, opts.flatten);
        loaded.push(MnistSplit {
            x,
            t: to_labels(&labels, num_classes, opts.one_hot_label),
            num_classes,
            image_shape,
        });
    }
    Ok(loaded
        .try_into()
        .unwrap_or_else(|_| unreachable!("one split loaded per pair of files")))
}

/// Opens a split's two files and checks their headers: `u8` images of rank 3 and labels of rank 1,
/// neither empty, as many labels as images.
fn open_split(images_path: &Path, labels_path: &Path) -> Result<Opened, DataError> {
    // The size is checked against the caller's limit for the whole load, which bounds every file's
    // bytes too, so no file limit applies here.
    let unlimited = Limits {
        max_bytes: u64::MAX,
    };
    let images = IdxFile::open(images_path, &unlimited)?;
    expect_layout(
        images_path,
        images.elem_type(),
        images.shape(),
        IdxType::U8,
        3,
    )?;
    require_data(&images)?;
    let labels = IdxFile::open(labels_path, &unlimited)?;
    expect_layout(
        labels_path,
        labels.elem_type(),
        labels.shape(),
        IdxType::U8,
        1,
    )?;
    require_data(&labels)?;
    let (n, rows, cols) = (images.shape()[0], images.shape()[1], images.shape()[2]);
    if n != labels.shape()[0] {
        return Err(DataError::CountMismatch {
            images_file: images_path.to_path_buf(),
            labels_file: labels_path.to_path_buf(),
            images: n,
            labels: labels.shape()[0],
        });
    }
    Ok(Opened {
        images,
        labels,
        n,
        image_shape: (rows, cols),
    })
}

fn require_data(file: &IdxFile) -> Result<(), DataError> {
    if file.shape().contains(&0) {
        return Err(DataError::ZeroDimension {
            file: file.path().to_path_buf(),
            shape: file.shape().to_vec(),
        });
    }
    Ok(())
}

/// [`DataError::DataTooLarge`] if the arrays the headers declare, with the largest file's bytes,
/// would take more than `opts.max_bytes`.
fn check_memory<A>(opened: &[Opened], opts: &MnistOptions) -> Result<(), DataError> {
    let elem = size_of::<A>() as u64;
    // At most 256 classes fit u8 labels.
    let classes = opts.num_classes.unwrap_or(256) as u64;
    let label_bytes = if opts.one_hot_label {
        classes.saturating_mul(elem)
    } else {
        size_of::<usize>() as u64
    };
    let split_bytes = |o: &Opened| {
        let n = o.n as u64;
        let pixels = n
            .saturating_mul(o.image_shape.0 as u64)
            .saturating_mul(o.image_shape.1 as u64);
        pixels
            .saturating_mul(elem)
            .saturating_add(n.saturating_mul(label_bytes))
    };
    let arrays = opened
        .iter()
        .fold(0u64, |sum, o| sum.saturating_add(split_bytes(o)));
    let largest_file = opened
        .iter()
        .flat_map(|o| [o.images.data_bytes(), o.labels.data_bytes()])
        .max()
        .unwrap_or(0);
    let bytes = arrays.saturating_add(largest_file);
    if bytes <= opts.max_bytes {
        return Ok(());
    }
    // The split declaring the most; the first of equals (`max_by_key` takes the last).
    let Some(culprit) = opened.iter().rev().max_by_key(|o| split_bytes(o)) else {
        return Ok(());
    };
    Err(DataError::DataTooLarge {
        file: culprit.images.path().to_path_buf(),
        images: culprit.n,
        image_shape: culprit.image_shape,
        elem: float_name::<A>(),
        bytes,
        limit: opts.max_bytes,
    })
}

/// `"f32"` or `"f64"`, by size.
fn float_name<A>() -> &'static str {
    match size_of::<A>() {
        4 => "f32",
        8 => "f64",
        _ => "floats",
    }
}

/// Reads a file whose header said `u8`.
fn read_u8(file: IdxFile) -> Result<ArrayD<u8>, DataError> {
    let path = file.path().to_path_buf();
    file.read()?
        .into_array::<u8>()
        .map_err(|idx| DataError::UnexpectedType {
            file: path,
            expected: IdxType::U8,
            found: idx.elem_type(),
        })
}

/// The largest label plus one, if every class below the largest occurs in one of the label `sets`
/// (file, labels); [`DataError::EmptyClasses`] naming the first file that holds the largest label
/// otherwise.
fn infer_num_classes(sets: &[(&Path, &[u8])], searched: &'static str) -> Result<usize, DataError> {
    let mut seen = [false; 256];
    for &t in sets.iter().flat_map(|(_, labels)| labels.iter()) {
        seen[usize::from(t)] = true;
    }
    let Some(largest) = seen.iter().rposition(|&s| s) else {
        return Ok(0);
    };
    let empty_classes: Vec<usize> = (0..largest).filter(|&c| !seen[c]).collect();
    if empty_classes.is_empty() {
        return Ok(largest + 1);
    }
    let (file, index) = sets
        .iter()
        .find_map(|(file, labels)| {
            let index = labels.iter().position(|&t| usize::from(t) == largest)?;
            Some((*file, index))
        })
        .expect("the largest label occurs in some set");
    Err(DataError::EmptyClasses {
        file: file.to_path_buf(),
        searched,
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
        let both = "training or test labels";
        let infer = |a: &[u8], b: &[u8]| infer_num_classes(&[(train, a), (test, b)], both);
        assert_eq!(infer(&[2, 0], &[1]).unwrap(), 3);
        assert_eq!(infer(&[], &[]).unwrap(), 0);
        // 3 is only in the test labels, the largest, 5, in both: the training file is named.
        let err = infer(&[0, 1, 2, 5, 5], &[5, 3]).unwrap_err();
        assert!(matches!(
            &err,
            DataError::EmptyClasses { file, index: 3, label: 5, empty_classes, searched }
                if file == train && empty_classes == &[4] && *searched == both
        ));
        // Labels counted from 1, the largest only in the test labels.
        let err = infer(&[1, 2], &[2, 3, 3]).unwrap_err();
        assert!(matches!(
            &err,
            DataError::EmptyClasses { file, index: 1, label: 3, empty_classes, .. }
                if file == test && empty_classes == &[0]
        ));
        // One split alone: its own labels decide, and the message says which were searched.
        let err = infer_num_classes(&[(test, &[0, 2])], "test labels").unwrap_err();
        assert!(
            err.to_string()
                .contains("class 1 has no example in the test labels;"),
            "{err}"
        );
        assert_eq!(
            infer_num_classes(&[(test, &[0, 1])], "test labels").unwrap(),
            2
        );
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
