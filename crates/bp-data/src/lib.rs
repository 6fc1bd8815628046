//! Reading and writing IDX files, gzip'd or raw, and the MNIST loader of *Deep Learning from Scratch*
//! (the book's `load_mnist`), for any image size.
//!
//! - [`read_idx`], [`read_idx_from`], [`read_idx_as`]: IDX of every element type (`u8`, `i8`, `i16`,
//!   `i32`, `f32`, `f64`) and any rank, gzip recognised by its first bytes, never by the file name.
//! - [`IdxFile`]: a file opened and its header checked, its data not yet read, so that what it
//!   declares can be weighed before any memory is spent on it.
//! - [`write_idx`], [`write_idx_to`]: the same format back, raw or gzip'd, so that tests and users can
//!   make their own data sets.
//! - [`load_mnist`]: the four MNIST files as normalised, optionally flattened `f32` or `f64` arrays
//!   with index or one-hot labels, optionally verified against their `SHA256SUMS`;
//!   [`load_mnist_split`] loads the training or the test set alone.
//!
//! # The key design decision: the bytes are not trusted
//!
//! This crate is the project's only contact with bytes from outside, so it is strict: nothing a file
//! declares can make it panic or allocate beyond reason. Every malformed file is a typed
//! [`DataError`] naming the file and what is wrong with it: bad magic (with a hint when it looks like
//! HTML, zip or doubly gzip'd data), an unknown type, cut-short dimensions, a size that overflows, is
//! over the [`Limits`] or is larger than the file, truncated or trailing data, a corrupt gzip stream.
//! The declared size is checked with overflow-checked arithmetic, against the limit (1 GiB by default)
//! and, for raw files, against the file's length before anything is allocated for it; gzip data is
//! read in bounded, growing pieces, and read to its end so that the CRC-32 and length of every member
//! are verified.
//!
//! Only regular files are opened: a directory, a FIFO (which would block the reader), a device or a
//! dangling symbolic link is [`DataError::NotAFile`], saying which ([`FileKind`]). The same open,
//! [`open_regular`] (an [`io::Error`](std::io::Error) saying `it is a FIFO, not a regular file`),
//! [`open_nonblocking`] and [`link_target`] serve bp-train's model files, images and outputs.
//!
//! The MNIST loader reads the headers of all its files first and checks them against each other
//! (element types, ranks, image and label counts, image sizes) and the memory the converted arrays
//! will take against [`MnistOptions::max_bytes`] before it reads any data: a megabyte of gzip'd
//! zeros declaring a gigabyte of images is refused from its header ([`DataError::DataTooLarge`]),
//! not decompressed.
//!
//! ```
//! use bp_data::{Compression, DataError, Limits, read_idx_from, write_idx_to};
//! use ndarray::array;
//!
//! let mut bytes = Vec::new();
//! write_idx_to(&mut bytes, "grid", &array![[1.0f64, 2.0], [3.0, 4.0]], Compression::Gzip)?;
//! let grid = read_idx_from(&bytes[..], "grid", &Limits::default())?;
//! assert_eq!(grid.as_array::<f64>().unwrap()[[1, 0]], 3.0);
//!
//! // A header declaring 4 GiB of u8 data, followed by nothing: an error, not an allocation.
//! let greedy = [0, 0, 0x08, 2, 0, 1, 0, 0, 0, 1, 0, 0];
//! let err = read_idx_from(&greedy[..], "greedy.idx", &Limits::default()).unwrap_err();
//! assert!(matches!(err, DataError::TooLarge { bytes: 4_294_967_296, .. }));
//! # Ok::<(), DataError>(())
//! ```

mod checksum;
mod error;
mod file_kind;
mod idx;
mod idx_type;
mod mnist;
mod open;

pub use checksum::{sha256_file, verify_sha256sums};
pub use error::DataError;
pub use file_kind::{FileKind, link_target, open_nonblocking, open_regular};
pub use idx::{
    Compression, IdxArray, IdxElement, IdxFile, Limits, read_idx, read_idx_as, read_idx_from,
    read_idx_with, write_idx, write_idx_to,
};
pub use idx_type::IdxType;
pub use mnist::{
    Labels, Mnist, MnistFiles, MnistOptions, MnistSplit, SHA256SUMS, Split, check_data_dir,
    load_mnist, load_mnist_split,
};

/// Re-exported so that users name the same `ndarray` version as the arrays returned.
pub use ndarray;
