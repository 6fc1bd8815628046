//! The one error type of the crate.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use crate::file_kind::FileKind;
use crate::idx_type::IdxType;

/// Everything that can go wrong reading, checking or writing IDX and MNIST files.
///
/// Every message names the file it is about (for readers and writers that are not files, the name the
/// caller gave). Underlying I/O and gzip errors are kept as the [`source`](std::error::Error::source)
/// and are not repeated in the message, so print the chain (`{:#}` with `anyhow`) to see them.
///
/// ```
/// use bp_data::{DataError, Limits, read_idx_from};
///
/// let err = read_idx_from(&b"<!DOCTYPE html>"[..], "mnist.gz", &Limits::default()).unwrap_err();
/// assert!(matches!(err, DataError::BadMagic { .. }));
/// assert!(err.to_string().starts_with("mnist.gz is not an IDX file"));
/// assert!(err.to_string().contains("HTML"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("cannot {action} {}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// What was being done: `"open"`, `"read"`, `"create"`, `"write"`.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The file (after gunzip, if gzip'd) holds no bytes at all.
    #[error("{} is empty: an IDX file starts with a 4-byte magic number", file.display())]
    Empty {
        /// The file.
        file: PathBuf,
    },

    /// The file ends inside the 4-byte magic number.
    #[error(
        "{} is {len} byte(s) long: too short for the 4-byte IDX magic number",
        file.display()
    )]
    ShortMagic {
        /// The file.
        file: PathBuf,
        /// How many bytes it holds (1 to 3).
        len: usize,
    },

    /// The first two bytes are not zero, so this is not an IDX file.
    #[error(
        "{} is not an IDX file: it starts with {:02x} {:02x} {:02x} {:02x}, an IDX file with 00 00{}",
        file.display(), magic[0], magic[1], magic[2], magic[3], magic_hint(magic)
    )]
    BadMagic {
        /// The file.
        file: PathBuf,
        /// Its first four bytes (after gunzip, if gzip'd).
        magic: [u8; 4],
    },

    /// The third magic byte is not one of the six IDX element types.
    #[error(
        "{} declares the unknown IDX element type 0x{code:02x} (known: 0x08 u8, 0x09 i8, 0x0b i16, \
         0x0c i32, 0x0d f32, 0x0e f64)",
        file.display()
    )]
    UnknownType {
        /// The file.
        file: PathBuf,
        /// The type byte.
        code: u8,
    },

    /// The fourth magic byte, the number of dimensions, is zero.
    #[error("{} declares 0 dimensions; an IDX array has at least one", file.display())]
    ZeroRank {
        /// The file.
        file: PathBuf,
    },

    /// The file ends inside the list of dimension sizes.
    #[error(
        "{} declares {rank} dimension(s), {} bytes of sizes, but ends after {got} of those bytes",
        file.display(), 4 * usize::from(*rank)
    )]
    DimsTruncated {
        /// The file.
        file: PathBuf,
        /// The declared number of dimensions.
        rank: u8,
        /// How many bytes of dimension sizes were present.
        got: usize,
    },

    /// The declared shape holds more bytes than this machine can address.
    #[error("{} declares a {elem} array of shape {shape:?}: too large to address", file.display())]
    SizeOverflow {
        /// The file.
        file: PathBuf,
        /// The declared shape.
        shape: Vec<u32>,
        /// The declared element type.
        elem: IdxType,
    },

    /// The declared shape holds more bytes than the [`Limits`](crate::Limits) allow.
    #[error(
        "{} declares a {elem} array of shape {shape:?}, {bytes} bytes, more than the limit of {limit} \
         bytes (raise Limits::max_bytes to read it)",
        file.display()
    )]
    TooLarge {
        /// The file.
        file: PathBuf,
        /// The declared shape.
        shape: Vec<usize>,
        /// The declared element type.
        elem: IdxType,
        /// The declared data size in bytes.
        bytes: u64,
        /// The limit in force.
        limit: u64,
    },

    /// A raw file is shorter than its header declares, found from its size before reading the data.
    #[error(
        "{} declares shape {shape:?}, {declared} bytes of data, but holds only {present} after the header",
        file.display()
    )]
    DeclaredExceedsData {
        /// The file.
        file: PathBuf,
        /// The declared shape.
        shape: Vec<usize>,
        /// The declared data size in bytes.
        declared: u64,
        /// The data bytes present after the header.
        present: u64,
    },

    /// The data ends before the declared size.
    #[error(
        "{} is truncated: shape {shape:?} declares {expected} bytes of data, but it ends after {got}",
        file.display()
    )]
    Truncated {
        /// The file.
        file: PathBuf,
        /// The declared shape.
        shape: Vec<usize>,
        /// The declared data size in bytes.
        expected: u64,
        /// The data bytes read before the end.
        got: u64,
    },

    /// Bytes follow the declared data.
    #[error(
        "{} has {}{} unexpected byte(s) after the {expected} bytes of data that shape {shape:?} declares",
        file.display(), extra, if *more { " or more" } else { "" }
    )]
    TrailingData {
        /// The file.
        file: PathBuf,
        /// The declared shape.
        shape: Vec<usize>,
        /// The declared data size in bytes.
        expected: u64,
        /// How many extra bytes were counted.
        extra: u64,
        /// Whether counting stopped before the end (there are at least `extra`).
        more: bool,
    },

    /// The file starts like gzip but its compressed data is corrupt or cut short.
    #[error("{} holds corrupt or truncated gzip data", file.display())]
    Gzip {
        /// The file.
        file: PathBuf,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },

    /// The file holds another element type than the caller needs.
    #[error("{} holds {found} elements, but {expected} were expected", file.display())]
    UnexpectedType {
        /// The file.
        file: PathBuf,
        /// The type the caller needs.
        expected: IdxType,
        /// The type in the file.
        found: IdxType,
    },

    /// The file holds an array of another rank than the caller needs.
    #[error(
        "{} holds an array of shape {shape:?} ({} dimension(s)), but {expected} dimension(s) were expected",
        file.display(), shape.len()
    )]
    UnexpectedRank {
        /// The file.
        file: PathBuf,
        /// The rank the caller needs.
        expected: usize,
        /// The shape in the file.
        shape: Vec<usize>,
    },

    /// A dimension is zero where the caller needs data.
    #[error("{} holds an array of shape {shape:?}: a dimension is 0, so it holds no data", file.display())]
    ZeroDimension {
        /// The file.
        file: PathBuf,
        /// The shape in the file.
        shape: Vec<usize>,
    },

    /// An array of rank 0 or above 255 cannot be written as IDX.
    #[error("cannot write {}: IDX holds 1 to 255 dimensions, the array has {rank}", file.display())]
    RankNotWritable {
        /// The file.
        file: PathBuf,
        /// The array's rank.
        rank: usize,
    },

    /// A dimension above `u32::MAX` cannot be written as IDX.
    #[error(
        "cannot write {}: dimension {axis} has size {size}, IDX sizes are at most 4294967295",
        file.display()
    )]
    DimNotWritable {
        /// The file.
        file: PathBuf,
        /// The axis.
        axis: usize,
        /// Its size.
        size: usize,
    },

    /// A path to read is not a regular file (or a symbolic link to one): a directory, a FIFO, a
    /// device, a socket, or a symbolic link to a file that does not exist. It is not opened (a FIFO
    /// would make the reader wait for a writer).
    ///
    /// ```
    /// use bp_data::{DataError, FileKind, read_idx};
    ///
    /// let dir = std::env::temp_dir();
    /// let err = read_idx(&dir).unwrap_err();
    /// assert!(matches!(err, DataError::NotAFile { kind: FileKind::Directory, .. }));
    /// assert_eq!(err.to_string(), format!("{} is a directory", dir.display()));
    /// ```
    #[error("{} {}", file.display(), kind.not_a_file_clause())]
    NotAFile {
        /// The path.
        file: PathBuf,
        /// What it is.
        kind: FileKind,
    },

    /// The data directory is missing or not a directory, found before any file in it is looked for.
    #[error("the data directory {} {}", dir.display(), kind.not_a_dir_clause())]
    NotADirectory {
        /// The path given as the directory.
        dir: PathBuf,
        /// What it is.
        kind: FileKind,
    },

    /// None of the file names that MNIST's files go by exists in the directory.
    #[error(
        "no MNIST {what} in {}: tried {}. The real MNIST ships in datasets/mnist/ of the bp \
         repository; point the loader at a directory holding the four files",
        dir.display(),
        tried.join(", ")
    )]
    MnistFileNotFound {
        /// The directory searched.
        dir: PathBuf,
        /// Which file: `"training images"`, `"training labels"`, `"test images"` or `"test labels"`.
        what: &'static str,
        /// The file names tried, in order.
        tried: Vec<String>,
    },

    /// The arrays a data set's headers declare would take more memory than
    /// [`MnistOptions::max_bytes`](crate::MnistOptions::max_bytes) allows, found from the headers
    /// alone, before any data is read: a small gzip'd file can declare gigabytes of zeros.
    ///
    /// The message says how to raise the limit with bp-train's `--max-data-mib` flag.
    #[error(
        "{} declares {images} images of {}x{}: as {elem} the data would take {} MiB, more than the \
         limit of {} MiB; raise the limit with --max-data-mib {}",
        file.display(), image_shape.0, image_shape.1, mib(*bytes), mib(*limit), mib_ceil(*bytes)
    )]
    DataTooLarge {
        /// The image file declaring the most data.
        file: PathBuf,
        /// The number of images it declares.
        images: usize,
        /// Their (rows, cols).
        image_shape: (usize, usize),
        /// The element type of the arrays to return: `"f32"`, `"f64"`.
        elem: &'static str,
        /// What the whole load would take: the arrays returned (images and labels of every split
        /// loaded), and the largest file's own bytes, held while they are converted.
        bytes: u64,
        /// The limit in force.
        limit: u64,
    },

    /// The image and label files of a split disagree on the number of samples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_file.display(), labels_file.display()
    )]
    CountMismatch {
        /// The image file.
        images_file: PathBuf,
        /// The label file.
        labels_file: PathBuf,
        /// The number of images.
        images: usize,
        /// The number of labels.
        labels: usize,
    },

    /// A label is not below the number of classes.
    #[error(
        "{}: label {label} at index {index} is not below the number of classes, {num_classes}",
        file.display()
    )]
    LabelOutOfRange {
        /// The label file.
        file: PathBuf,
        /// The sample index.
        index: usize,
        /// The label.
        label: usize,
        /// The number of classes.
        num_classes: usize,
    },

    /// With the class count taken from the labels (`num_classes: None`), the largest label leaves
    /// classes below it that no training or test label uses. The count would then include classes the
    /// network can never learn, and a stray or shifted label (a 12 among digits, labels counted
    /// from one) is far likelier than a data set with empty classes, so the loader refuses rather
    /// than guess. A caller who knows better passes the count (`num_classes: Some(n)`; bp-train's
    /// `--classes N`).
    ///
    /// ```
    /// use bp_data::{Compression, DataError, MnistOptions, load_mnist, write_idx};
    /// use ndarray::{Array1, Array3};
    ///
    /// let dir = std::env::temp_dir().join(format!("bp-data-doc-empty-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// // Digits 0-9 and one 12, at index 10: classes 10 and 11 have no example.
    /// let train = Array1::from(vec![0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12]);
    /// let test = Array1::from(vec![0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    /// write_idx(dir.join("train-images-idx3-ubyte"), &Array3::<u8>::zeros((11, 2, 2)), Compression::None)?;
    /// write_idx(dir.join("train-labels-idx1-ubyte"), &train, Compression::None)?;
    /// write_idx(dir.join("t10k-images-idx3-ubyte"), &Array3::<u8>::zeros((10, 2, 2)), Compression::None)?;
    /// write_idx(dir.join("t10k-labels-idx1-ubyte"), &test, Compression::None)?;
    ///
    /// let infer = MnistOptions { num_classes: None, ..MnistOptions::default() };
    /// let err = load_mnist::<f32>(&dir, &infer).unwrap_err();
    /// let DataError::EmptyClasses { label, index, empty_classes, .. } = &err else { unreachable!() };
    /// assert_eq!((*label, *index, &empty_classes[..]), (12, 10, &[10, 11][..]));
    /// assert!(err.to_string().ends_with(
    ///     "the largest label, 12 at index 10, makes 13 classes, but classes 10, 11 have no example \
    ///      in the training or test labels; if the data really has 13 classes, say so with --classes 13"
    /// ));
    ///
    /// // Told the count, the loader takes the files as they are.
    /// let thirteen = MnistOptions { num_classes: Some(13), ..MnistOptions::default() };
    /// assert_eq!(load_mnist::<f32>(&dir, &thirteen)?.num_classes, 13);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[error(
        "{}: the largest label, {label} at index {index}, makes {} classes, but {} no example in the \
         {searched}; if the data really has {} classes, say so with --classes {}",
        file.display(), label + 1, empty_clause(empty_classes), label + 1, label + 1
    )]
    EmptyClasses {
        /// The label file holding the largest label: the training labels if it occurs there, else the
        /// test labels.
        file: PathBuf,
        /// The labels searched: `"training or test labels"`, or for one split
        /// ([`load_mnist_split`](crate::load_mnist_split)) `"training labels"` or `"test labels"`.
        searched: &'static str,
        /// The position of the largest label's first occurrence in that file.
        index: usize,
        /// The largest label.
        label: usize,
        /// The classes below it that no training or test label uses, in increasing order.
        empty_classes: Vec<usize>,
    },

    /// The training and test images differ in size.
    #[error(
        "the images in {} are {}x{} but those in {} are {}x{}",
        train_file.display(), train_size.0, train_size.1, test_file.display(), test_size.0, test_size.1
    )]
    ImageSizeMismatch {
        /// The training image file.
        train_file: PathBuf,
        /// The test image file.
        test_file: PathBuf,
        /// Training image (rows, cols).
        train_size: (usize, usize),
        /// Test image (rows, cols).
        test_size: (usize, usize),
    },

    /// A file's SHA-256 differs from the one its checksum list gives.
    #[error(
        "{} has SHA-256 {actual}, but {} lists {expected}: the file is damaged or not the one listed",
        file.display(), sums.display()
    )]
    ChecksumMismatch {
        /// The checked file.
        file: PathBuf,
        /// The checksum list.
        sums: PathBuf,
        /// The checksum listed, lowercase hex.
        expected: String,
        /// The file's checksum, lowercase hex.
        actual: String,
    },

    /// A file to verify is not in the checksum list.
    #[error("{} is not listed in {}, so it cannot be verified", file.display(), sums.display())]
    ChecksumNotListed {
        /// The file.
        file: PathBuf,
        /// The checksum list.
        sums: PathBuf,
    },

    /// A checksum list is larger than any real one.
    #[error("{} is over {limit} bytes: too large for a checksum list", sums.display())]
    ChecksumListTooLarge {
        /// The checksum list.
        sums: PathBuf,
        /// The most read.
        limit: u64,
    },

    /// A line of a checksum list is not `<64 hex digits> <space> <space or *> <name>`.
    #[error("{}:{line}: not a 'SHA-256  name' line", sums.display())]
    BadChecksumLine {
        /// The checksum list.
        sums: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
}

const MIB: u64 = 1 << 20;

/// Bytes as MiB, rounded to a tenth (a tenth at least, for any bytes), without the decimal when it
/// is 0: `4096`, `29.9`, `0.1`.
fn mib(bytes: u64) -> String {
    let tenths = ((u128::from(bytes) * 10 + u128::from(MIB / 2)) / u128::from(MIB))
        .max(u128::from(bytes > 0));
    if tenths % 10 == 0 {
        (tenths / 10).to_string()
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

/// Bytes as whole MiB, rounded up: the least `--max-data-mib` that holds them.
fn mib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

/// `class 3 has` or `classes 1, 3-5, 8, 9 have`: runs of three or more classes as a range, so that
/// the clause stays short however many classes are empty.
fn empty_clause(classes: &[usize]) -> String {
    let mut list = String::new();
    let mut i = 0;
    while i < classes.len() {
        let mut j = i;
        while j + 1 < classes.len() && classes[j + 1] == classes[j] + 1 {
            j += 1;
        }
        if !list.is_empty() {
            list.push_str(", ");
        }
        match j - i {
            0 => {
                let _ = write!(list, "{}", classes[i]);
            }
            1 => {
                let _ = write!(list, "{}, {}", classes[i], classes[j]);
            }
            _ => {
                let _ = write!(list, "{}-{}", classes[i], classes[j]);
            }
        }
        i = j + 1;
    }
    if classes.len() == 1 {
        format!("class {list} has")
    } else {
        format!("classes {list} have")
    }
}

/// What the first bytes of a non-IDX file suggest it is, as a clause to append to the message.
fn magic_hint(magic: &[u8; 4]) -> String {
    let hint = match magic {
        [0x1f, 0x8b, ..] => "gzip data inside gzip: the file was compressed twice",
        [b'P', b'K', 3, 4] | [b'P', b'K', 5, 6] => "a zip archive: unzip it first",
        [b'B', b'Z', b'h', _] => "bzip2 data: decompress it first",
        [0xfd, b'7', b'z', b'X'] => "xz data: decompress it first",
        [0x28, 0xb5, 0x2f, 0xfd] => "zstd data: decompress it first",
        [b'<', ..] => "an HTML or XML page, perhaps an error page saved by a failed download",
        m if m
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) =>
        {
            "text, not binary IDX data"
        }
        _ => "",
    };
    let mut out = String::new();
    if !hint.is_empty() {
        let _ = write!(out, "; it looks like {hint}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_common_mistakes() {
        assert!(magic_hint(&[0x1f, 0x8b, 8, 0]).contains("compressed twice"));
        assert!(magic_hint(b"PK\x03\x04").contains("zip"));
        assert!(magic_hint(b"<htm").contains("HTML"));
        assert!(magic_hint(b"BZh9").contains("bzip2"));
        assert!(magic_hint(b"\xfd7zX").contains("xz"));
        assert!(magic_hint(&[0x28, 0xb5, 0x2f, 0xfd]).contains("zstd"));
        assert!(magic_hint(b"5 0 ").contains("text"));
        assert_eq!(magic_hint(&[1, 2, 3, 4]), "");
    }

    #[test]
    fn empty_classes_are_listed_compactly() {
        assert_eq!(empty_clause(&[0]), "class 0 has");
        assert_eq!(empty_clause(&[10, 11]), "classes 10, 11 have");
        assert_eq!(empty_clause(&[10, 11, 12]), "classes 10-12 have");
        assert_eq!(
            empty_clause(&[1, 3, 4, 5, 8, 9, 20]),
            "classes 1, 3-5, 8, 9, 20 have"
        );
        let all: Vec<usize> = (1..255).collect();
        assert_eq!(empty_clause(&all), "classes 1-254 have");
    }

    #[test]
    fn sizes_are_shown_in_mib_to_a_tenth() {
        assert_eq!(mib(1 << 30), "1024");
        assert_eq!(mib(4096 * MIB + MIB / 2), "4096.5");
        assert_eq!(mib(4096 * MIB + 1), "4096");
        assert_eq!(mib(4096 * MIB + MIB / 10), "4096.1");
        assert_eq!(mib(70_000 * 784 * 8), "418.7");
        assert_eq!(mib(1), "0.1");
        assert_eq!(mib(0), "0");
        assert_eq!(mib(u64::MAX), "17592186044416");
        assert_eq!(mib_ceil(4096 * MIB), 4096);
        assert_eq!(mib_ceil(4096 * MIB + 1), 4097);
    }

    #[test]
    fn paths_that_are_not_what_is_needed_say_what_they_are() {
        let err = DataError::NotAFile {
            file: "d/t10k-labels-idx1-ubyte".into(),
            kind: FileKind::Fifo,
        };
        assert_eq!(
            err.to_string(),
            "d/t10k-labels-idx1-ubyte is a FIFO, not a regular file"
        );
        let err = DataError::NotAFile {
            file: "d/x.gz".into(),
            kind: FileKind::DanglingLink {
                target: "d/y.gz".into(),
            },
        };
        assert_eq!(
            err.to_string(),
            "d/x.gz is a symbolic link to d/y.gz, which does not exist"
        );
        let dir = |kind| DataError::NotADirectory {
            dir: "data".into(),
            kind,
        };
        assert_eq!(
            dir(FileKind::Regular).to_string(),
            "the data directory data is a file, not a directory"
        );
        assert_eq!(
            dir(FileKind::Missing).to_string(),
            "the data directory data does not exist"
        );
        assert_eq!(
            dir(FileKind::Other).to_string(),
            "the data directory data is not a directory"
        );
    }

    #[test]
    fn too_much_data_says_how_to_raise_the_limit() {
        let err = DataError::DataTooLarge {
            file: "bomb/train-images-idx3-ubyte.gz".into(),
            images: 16_777_216,
            image_shape: (8, 8),
            elem: "f32",
            bytes: 4096 * MIB + 300 * 1024,
            limit: 1024 * MIB,
        };
        assert_eq!(
            err.to_string(),
            "bomb/train-images-idx3-ubyte.gz declares 16777216 images of 8x8: as f32 the data would \
             take 4096.3 MiB, more than the limit of 1024 MiB; raise the limit with \
             --max-data-mib 4097"
        );
    }

    #[test]
    fn trailing_data_says_when_it_stopped_counting() {
        let err = DataError::TrailingData {
            file: "a.idx".into(),
            shape: vec![2],
            expected: 2,
            extra: 65536,
            more: true,
        };
        assert_eq!(
            err.to_string(),
            "a.idx has 65536 or more unexpected byte(s) after the 2 bytes of data that shape [2] declares"
        );
    }
}
