//! The IDX format: reading (gzip'd or raw) and writing.
//!
//! An IDX file is a 4-byte magic number `00 00 TT DD`, `DD` big-endian `u32` dimension sizes, then the
//! elements in C order (last index fastest), each big-endian:
//!
//! | `TT`   | element | bytes |
//! |--------|---------|-------|
//! | `0x08` | `u8`    | 1     |
//! | `0x09` | `i8`    | 1     |
//! | `0x0B` | `i16`   | 2     |
//! | `0x0C` | `i32`   | 4     |
//! | `0x0D` | `f32`   | 4     |
//! | `0x0E` | `f64`   | 8     |
//!
//! A file is read as gzip when its first two bytes are `1f 8b`, whatever its name; every gzip member is
//! decoded and the stream is read to its end, so each member's CRC-32 and length are checked.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};

use crate::error::DataError;
use crate::idx_type::IdxType;
use crate::open::open_data_file;

/// The first two bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Deflate cannot expand its input by more than about 1032 times, which bounds how much memory a gzip
/// file of known size can make worth reserving up front.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The most reserved up front for data of unknown length; more is grown into as it arrives.
const UNKNOWN_LENGTH_RESERVE: u64 = 1 << 20;

/// The most reserved up front for gzip'd data, whatever its header declares (enough for any MNIST file).
const GZIP_RESERVE_CAP: u64 = 64 << 20;

/// How many bytes after the declared data are counted for the error message before giving up.
const TRAILING_COUNT_CAP: u64 = 1 << 16;

/// Whether [`write_idx`] compresses what it writes. Reading needs no such choice: it looks at the bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain IDX bytes.
    #[default]
    None,
    /// A single gzip member at the default level (6).
    Gzip,
}

/// How much a file may make the reader allocate.
///
/// `max_bytes` bounds the declared data size (the product of the dimensions times the element size),
/// checked before anything is allocated for it. The default, [`Limits::DEFAULT_MAX_BYTES`] (1 GiB), is
/// twenty times all of MNIST.
///
/// ```
/// use bp_data::{DataError, Limits, read_idx_from};
///
/// // A u8 header declaring 1000 x 1000 elements, and no data.
/// let header = [0, 0, 0x08, 2, 0, 0, 0x03, 0xE8, 0, 0, 0x03, 0xE8];
/// let err = read_idx_from(&header[..], "big.idx", &Limits { max_bytes: 1000 }).unwrap_err();
/// assert!(matches!(err, DataError::TooLarge { bytes: 1_000_000, limit: 1000, .. }));
/// assert_eq!(Limits::default().max_bytes, 1 << 30);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The largest declared data size, in bytes, that will be read.
    pub max_bytes: u64,
}

impl Limits {
    /// The default `max_bytes`: 1 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: Limits::DEFAULT_MAX_BYTES,
        }
    }
}

/// An array read from an IDX file, in its element type.
///
/// Every array has rank >= 1 and standard (C) layout. Take it out as a typed array with
/// [`into_array`](IdxArray::into_array), or read a file straight into the type you need with
/// [`read_idx_as`].
///
/// ```
/// use bp_data::{IdxArray, IdxType};
/// use ndarray::array;
///
/// let idx = IdxArray::from(array![[1i16, -2, 3], [4, 5, -6]].into_dyn());
/// assert_eq!(idx.elem_type(), IdxType::I16);
/// assert_eq!(idx.shape(), &[2, 3]);
/// assert_eq!(idx.len(), 6);
/// assert_eq!(idx.as_array::<i16>().unwrap()[[1, 2]], -6);
/// assert!(idx.as_array::<u8>().is_none());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum IdxArray {
    /// Type `0x08`.
    U8(ArrayD<u8>),
    /// Type `0x09`.
    I8(ArrayD<i8>),
    /// Type `0x0B`.
    I16(ArrayD<i16>),
    /// Type `0x0C`.
    I32(ArrayD<i32>),
    /// Type `0x0D`.
    F32(ArrayD<f32>),
    /// Type `0x0E`.
    F64(ArrayD<f64>),
}

/// Runs `$body` with `$a` bound to the array inside any variant.
macro_rules! each_variant {
    ($value:expr, $a:ident => $body:expr) => {
        match $value {
            IdxArray::U8($a) => $body,
            IdxArray::I8($a) => $body,
            IdxArray::I16($a) => $body,
            IdxArray::I32($a) => $body,
            IdxArray::F32($a) => $body,
            IdxArray::F64($a) => $body,
        }
    };
}

impl IdxArray {
    /// The element type.
    pub fn elem_type(&self) -> IdxType {
        match self {
            IdxArray::U8(_) => IdxType::U8,
            IdxArray::I8(_) => IdxType::I8,
            IdxArray::I16(_) => IdxType::I16,
            IdxArray::I32(_) => IdxType::I32,
            IdxArray::F32(_) => IdxType::F32,
            IdxArray::F64(_) => IdxType::F64,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        each_variant!(self, a => a.shape())
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements, the product of the shape.
    pub fn len(&self) -> usize {
        each_variant!(self, a => a.len())
    }

    /// Whether the array has no elements (a dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The array, if its elements are `T`; otherwise `self` back.
    ///
    /// ```
    /// use bp_data::IdxArray;
    /// use ndarray::{ArrayD, IxDyn};
    ///
    /// let idx = IdxArray::from(ArrayD::<f32>::zeros(IxDyn(&[2, 2])));
    /// let idx = idx.into_array::<f64>().unwrap_err(); // not f64: handed back
    /// assert_eq!(idx.into_array::<f32>().unwrap().shape(), &[2, 2]);
    /// ```
    pub fn into_array<T: IdxElement>(self) -> Result<ArrayD<T>, IdxArray> {
        T::unwrap(self)
    }

    /// A reference to the array, if its elements are `T`.
    pub fn as_array<T: IdxElement>(&self) -> Option<&ArrayD<T>> {
        T::peek(self)
    }

    /// Writes the array to `path` as IDX; see [`write_idx`].
    pub fn write(&self, path: impl AsRef<Path>, compression: Compression) -> Result<(), DataError> {
        each_variant!(self, a => write_idx(path, a, compression))
    }

    /// Writes the array to `writer` as IDX; see [`write_idx_to`].
    pub fn write_to<W: Write>(
        &self,
        writer: W,
        name: impl AsRef<Path>,
        compression: Compression,
    ) -> Result<(), DataError> {
        each_variant!(self, a => write_idx_to(writer, name, a, compression))
    }
}

impl<T: IdxElement> From<ArrayD<T>> for IdxArray {
    fn from(array: ArrayD<T>) -> Self {
        T::wrap(array)
    }
}

mod sealed {
    use ndarray::ArrayD;

    use super::IdxArray;

    /// The conversions behind [`IdxElement`](super::IdxElement), kept out of the public API so that no
    /// other type can claim to be an IDX element.
    pub trait Sealed: Sized {
        /// The variant holding arrays of `Self`.
        fn wrap(array: ArrayD<Self>) -> IdxArray;
        /// The array inside the variant for `Self`, or the value back.
        fn unwrap(array: IdxArray) -> Result<ArrayD<Self>, IdxArray>;
        /// A reference to the array inside the variant for `Self`.
        fn peek(array: &IdxArray) -> Option<&ArrayD<Self>>;
        /// Appends the big-endian bytes of `self`.
        fn put_be(self, out: &mut Vec<u8>);
    }
}

/// An element type of IDX: `u8`, `i8`, `i16`, `i32`, `f32` or `f64`. Implemented for those six only.
///
/// ```
/// use bp_data::{IdxElement, IdxType};
///
/// assert_eq!(<u8 as IdxElement>::TYPE, IdxType::U8);
/// assert_eq!(<f64 as IdxElement>::TYPE.code(), 0x0E);
/// ```
pub trait IdxElement:
    sealed::Sealed + Copy + fmt::Debug + PartialEq + Send + Sync + 'static
{
    /// The IDX type of this element.
    const TYPE: IdxType;
}

macro_rules! idx_element {
    ($t:ty, $variant:ident) => {
        impl sealed::Sealed for $t {
            fn wrap(array: ArrayD<Self>) -> IdxArray {
                IdxArray::$variant(array)
            }

            fn unwrap(array: IdxArray) -> Result<ArrayD<Self>, IdxArray> {
                match array {
                    IdxArray::$variant(a) => Ok(a),
                    other => Err(other),
                }
            }

            fn peek(array: &IdxArray) -> Option<&ArrayD<Self>> {
                match array {
                    IdxArray::$variant(a) => Some(a),
                    _ => None,
                }
            }

            fn put_be(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
        }

        impl IdxElement for $t {
            const TYPE: IdxType = IdxType::$variant;
        }
    };
}

idx_element!(u8, U8);
idx_element!(i8, I8);
idx_element!(i16, I16);
idx_element!(i32, I32);
idx_element!(f32, F32);
idx_element!(f64, F64);

/// Reads an IDX file, gzip'd or raw, with the default [`Limits`].
///
/// Gzip is recognised by the first two bytes (`1f 8b`), never by the name. The file must hold exactly
/// what its header declares: anything short, long or malformed is a [`DataError`] naming the file, and
/// nothing is allocated for the data before its declared size has been checked against the limit and,
/// for a raw file, against the file's size.
///
/// ```
/// use bp_data::{Compression, read_idx, write_idx};
/// use ndarray::array;
///
/// let path = std::env::temp_dir().join(format!("bp-data-doc-read-{}.idx.gz", std::process::id()));
/// write_idx(&path, &array![[0u8, 128], [255, 7]], Compression::Gzip)?;
/// let idx = read_idx(&path)?;
/// assert_eq!(idx.shape(), &[2, 2]);
/// assert_eq!(idx.as_array::<u8>().unwrap()[[1, 0]], 255);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), bp_data::DataError>(())
/// ```
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray, DataError> {
    read_idx_with(path, &Limits::default())
}

/// Reads an IDX file, gzip'd or raw, within the given [`Limits`]; see [`read_idx`].
///
/// Only a regular file (or a symbolic link to one) is opened: a directory, a FIFO, a device or a
/// dangling link is [`DataError::NotAFile`], saying what it is, and nothing waits on a FIFO.
pub fn read_idx_with(path: impl AsRef<Path>, limits: &Limits) -> Result<IdxArray, DataError> {
    IdxFile::open(path, limits)?.read()
}

/// An IDX file opened and its header read and checked, its data not yet read: what it declares
/// can be checked (against other files, or against what the data will take once converted) before
/// any memory is spent on the data.
///
/// [`open`](IdxFile::open) makes every check that needs no data: the file is a regular file, the
/// magic number, type and dimensions are well-formed, the declared size is addressable and within
/// the [`Limits`], and a raw file holds exactly that many bytes. For a gzip'd file only the first
/// bytes are decompressed. [`read`](IdxFile::read) then reads the data, and fails as
/// [`read_idx_with`] does if it is cut short, followed by more, or corrupt.
///
/// ```
/// use bp_data::{Compression, IdxFile, IdxType, Limits, write_idx};
/// use ndarray::Array3;
///
/// let path = std::env::temp_dir().join(format!("bp-data-doc-idxfile-{}.gz", std::process::id()));
/// write_idx(&path, &Array3::<u8>::zeros((5, 3, 2)), Compression::Gzip)?;
/// let file = IdxFile::open(&path, &Limits::default())?;
/// assert_eq!((file.elem_type(), file.shape(), file.data_bytes()), (IdxType::U8, &[5, 3, 2][..], 30));
/// assert_eq!(file.read()?.shape(), &[5, 3, 2]);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), bp_data::DataError>(())
/// ```
pub struct IdxFile {
    path: PathBuf,
    header: Header,
    body: Body<File>,
    input: Input,
}

impl fmt::Debug for IdxFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdxFile")
            .field("path", &self.path)
            .field("elem_type", &self.header.elem)
            .field("shape", &self.header.shape)
            .field("gzip", &self.input.gzip)
            .finish_non_exhaustive()
    }
}

impl IdxFile {
    /// Opens `path` (a regular file only) and reads and checks its header; see [`IdxFile`].
    pub fn open(path: impl AsRef<Path>, limits: &Limits) -> Result<IdxFile, DataError> {
        let path = path.as_ref();
        let (file, meta) = open_data_file(path)?;
        // A regular file's length says how many bytes a read will give (not so for /proc files,
        // which are regular but report 0).
        let size = (meta.len() > 0).then_some(meta.len());
        let (header, body, input) = start(file, path, limits, size)?;
        Ok(IdxFile {
            path: path.to_path_buf(),
            header,
            body,
            input,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The declared element type.
    pub fn elem_type(&self) -> IdxType {
        self.header.elem
    }

    /// The declared shape.
    pub fn shape(&self) -> &[usize] {
        &self.header.shape
    }

    /// The declared size of the data in bytes: the product of the shape times the element size.
    pub fn data_bytes(&self) -> u64 {
        self.header.bytes
    }

    /// Whether the file is gzip'd.
    pub fn is_gzip(&self) -> bool {
        self.input.gzip
    }

    /// Reads the data the header declares; see [`read_idx`].
    pub fn read(mut self) -> Result<IdxArray, DataError> {
        read_body(&mut self.body, &self.path, &self.header, self.input)
    }
}

/// Reads IDX data, gzip'd or raw, from any reader; errors name it `name`.
///
/// This is what [`read_idx`] does after opening the file, except that the length of the input is not
/// known: the data is read in growing pieces, so a header declaring more than is there costs no more
/// memory than what is there (and never more than `limits.max_bytes`).
///
/// ```
/// use bp_data::{DataError, Limits, read_idx_from};
///
/// // i16, shape (3), values 1, -1, 256.
/// let bytes = [0, 0, 0x0B, 1, 0, 0, 0, 3, 0, 1, 0xFF, 0xFF, 1, 0];
/// let idx = read_idx_from(&bytes[..], "three.idx", &Limits::default())?;
/// assert_eq!(idx.as_array::<i16>().unwrap().as_slice().unwrap(), &[1, -1, 256]);
///
/// // The same header with one byte of data missing.
/// let err = read_idx_from(&bytes[..13], "three.idx", &Limits::default()).unwrap_err();
/// assert!(matches!(err, DataError::Truncated { expected: 6, got: 5, .. }));
/// assert_eq!(
///     err.to_string(),
///     "three.idx is truncated: shape [3] declares 6 bytes of data, but it ends after 5"
/// );
/// # Ok::<(), DataError>(())
/// ```
pub fn read_idx_from<R: Read>(
    reader: R,
    name: impl AsRef<Path>,
    limits: &Limits,
) -> Result<IdxArray, DataError> {
    let file = name.as_ref();
    let (header, mut body, input) = start(reader, file, limits, None)?;
    read_body(&mut body, file, &header, input)
}

/// Reads an IDX file that must hold elements of type `T` in an array of rank `rank`, with the default
/// [`Limits`].
///
/// Errors with [`DataError::UnexpectedType`] or [`DataError::UnexpectedRank`] (naming the file)
/// otherwise.
///
/// ```
/// use bp_data::{Compression, DataError, read_idx_as, write_idx};
/// use ndarray::array;
///
/// let path = std::env::temp_dir().join(format!("bp-data-doc-as-{}.idx", std::process::id()));
/// write_idx(&path, &array![1.5f32, -2.0], Compression::None)?;
/// assert_eq!(read_idx_as::<f32>(&path, 1)?, array![1.5f32, -2.0].into_dyn());
/// assert!(matches!(read_idx_as::<u8>(&path, 1), Err(DataError::UnexpectedType { .. })));
/// assert!(matches!(read_idx_as::<f32>(&path, 3), Err(DataError::UnexpectedRank { .. })));
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), DataError>(())
/// ```
pub fn read_idx_as<T: IdxElement>(
    path: impl AsRef<Path>,
    rank: usize,
) -> Result<ArrayD<T>, DataError> {
    let path = path.as_ref();
    let file = IdxFile::open(path, &Limits::default())?;
    expect_layout(path, file.elem_type(), file.shape(), T::TYPE, rank)?;
    file.read()?
        .into_array::<T>()
        .map_err(|idx| DataError::UnexpectedType {
            file: path.to_path_buf(),
            expected: T::TYPE,
            found: idx.elem_type(),
        })
}

/// [`DataError::UnexpectedType`] or [`DataError::UnexpectedRank`] unless an array of `found` elements
/// and shape `shape` is of the `expected` type and `rank`.
pub(crate) fn expect_layout(
    file: &Path,
    found: IdxType,
    shape: &[usize],
    expected: IdxType,
    rank: usize,
) -> Result<(), DataError> {
    if found != expected {
        return Err(DataError::UnexpectedType {
            file: file.to_path_buf(),
            expected,
            found,
        });
    }
    if shape.len() != rank {
        return Err(DataError::UnexpectedRank {
            file: file.to_path_buf(),
            expected: rank,
            shape: shape.to_vec(),
        });
    }
    Ok(())
}

fn io_error(file: &Path, action: &'static str) -> impl FnOnce(io::Error) -> DataError {
    move |source| DataError::Io {
        file: file.to_path_buf(),
        action,
        source,
    }
}

/// How the bytes after the gzip check are to be read.
#[derive(Clone, Copy)]
struct Input {
    /// Whether they come out of a gzip decoder (so read errors are gzip errors).
    gzip: bool,
    /// The exact number of bytes a raw input holds, when known.
    raw_len: Option<u64>,
    /// The most worth reserving up front for the data.
    reserve: u64,
}

/// What an IDX header declares, checked: well-formed, addressable and within the limits.
#[derive(Clone, Debug)]
struct Header {
    elem: IdxType,
    /// The dimensions as written, for messages about sizes that cannot be addressed.
    dims: Vec<u32>,
    shape: Vec<usize>,
    /// The data size in bytes.
    bytes: u64,
}

/// The bytes of an IDX file after its first four, which were read to tell gzip from raw and are
/// put back in front.
enum Body<R: Read> {
    Gzip(Box<MultiGzDecoder<io::Chain<Cursor<Vec<u8>>, R>>>),
    Raw(io::Chain<Cursor<Vec<u8>>, R>),
}

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Gzip(r) => r.read(buf),
            Body::Raw(r) => r.read(buf),
        }
    }
}

/// Decides gzip or raw from the first two bytes, then reads and checks the header; returns it with
/// the rest of the input, positioned at the data.
fn start<R: Read>(
    mut reader: R,
    file: &Path,
    limits: &Limits,
    size: Option<u64>,
) -> Result<(Header, Body<R>, Input), DataError> {
    let mut head = [0u8; 4];
    let n = read_full(&mut reader, &mut head).map_err(io_error(file, "read"))?;
    let reread = Cursor::new(head[..n].to_vec()).chain(reader);
    let (mut body, input) = if n >= 2 && head[..2] == GZIP_MAGIC {
        let input = Input {
            gzip: true,
            raw_len: None,
            reserve: size.map_or(UNKNOWN_LENGTH_RESERVE, |s| {
                s.saturating_mul(MAX_DEFLATE_RATIO).min(GZIP_RESERVE_CAP)
            }),
        };
        (Body::Gzip(Box::new(MultiGzDecoder::new(reread))), input)
    } else {
        let input = Input {
            gzip: false,
            raw_len: size,
            reserve: size.unwrap_or(UNKNOWN_LENGTH_RESERVE),
        };
        (Body::Raw(reread), input)
    };
    let header = parse_header(&mut body, file, limits, input)?;
    Ok((header, body, input))
}

/// The error of a failed read of the (uncompressed) bytes: a gzip error if they come out of a
/// decoder.
fn read_error(file: &Path, input: Input) -> impl Fn(io::Error) -> DataError + '_ {
    move |source: io::Error| {
        if input.gzip {
            DataError::Gzip {
                file: file.to_path_buf(),
                source,
            }
        } else {
            DataError::Io {
                file: file.to_path_buf(),
                action: "read",
                source,
            }
        }
    }
}

/// Parses and checks an IDX header from uncompressed bytes.
fn parse_header<R: Read>(
    r: &mut R,
    file: &Path,
    limits: &Limits,
    input: Input,
) -> Result<Header, DataError> {
    let read_error = read_error(file, input);
    let file_buf = || file.to_path_buf();

    let mut magic = [0u8; 4];
    match read_full(r, &mut magic).map_err(&read_error)? {
        0 => return Err(DataError::Empty { file: file_buf() }),
        len @ 1..=3 => {
            return Err(DataError::ShortMagic {
                file: file_buf(),
                len,
            });
        }
        _ => {}
    }
    if magic[..2] != [0, 0] {
        return Err(DataError::BadMagic {
            file: file_buf(),
            magic,
        });
    }
    let elem = IdxType::from_code(magic[2]).ok_or(DataError::UnknownType {
        file: file_buf(),
        code: magic[2],
    })?;
    let rank = magic[3];
    if rank == 0 {
        return Err(DataError::ZeroRank { file: file_buf() });
    }

    let mut dims_buf = [0u8; 4 * 255];
    let dims_bytes = &mut dims_buf[..4 * usize::from(rank)];
    let got = read_full(r, dims_bytes).map_err(&read_error)?;
    if got < dims_bytes.len() {
        return Err(DataError::DimsTruncated {
            file: file_buf(),
            rank,
            got,
        });
    }
    let dims: Vec<u32> = dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let Some((shape, bytes)) = declared_size(&dims, elem) else {
        return Err(DataError::SizeOverflow {
            file: file_buf(),
            shape: dims,
            elem,
        });
    };
    if bytes > limits.max_bytes {
        return Err(DataError::TooLarge {
            file: file_buf(),
            shape,
            elem,
            bytes,
            limit: limits.max_bytes,
        });
    }
    if let Some(len) = input.raw_len {
        let present = len.saturating_sub(4 + 4 * u64::from(rank));
        if bytes > present {
            return Err(DataError::DeclaredExceedsData {
                file: file_buf(),
                shape,
                declared: bytes,
                present,
            });
        }
        if bytes < present {
            return Err(DataError::TrailingData {
                file: file_buf(),
                shape,
                expected: bytes,
                extra: present - bytes,
                more: false,
            });
        }
    }
    Ok(Header {
        elem,
        dims,
        shape,
        bytes,
    })
}

/// Reads the data a checked header declares, and checks that nothing follows it.
fn read_body<R: Read>(
    r: &mut R,
    file: &Path,
    header: &Header,
    input: Input,
) -> Result<IdxArray, DataError> {
    let read_error = read_error(file, input);
    let file_buf = || file.to_path_buf();
    let bytes = header.bytes;
    // `bytes` is within the limit, and the reserve is what the input can plausibly hold.
    let reserve = usize::try_from(bytes.min(input.reserve)).unwrap_or(0);
    let mut data = Vec::with_capacity(reserve);
    r.take(bytes).read_to_end(&mut data).map_err(&read_error)?;
    let got = data.len() as u64;
    if got < bytes {
        return Err(DataError::Truncated {
            file: file_buf(),
            shape: header.shape.clone(),
            expected: bytes,
            got,
        });
    }
    // Read to the end: this also makes the gzip decoder check the last member's CRC and length.
    let (extra, more) = count_rest(r).map_err(&read_error)?;
    if extra > 0 {
        return Err(DataError::TrailingData {
            file: file_buf(),
            shape: header.shape.clone(),
            expected: bytes,
            extra,
            more,
        });
    }
    from_be_bytes(header.elem, &header.shape, data).ok_or_else(|| DataError::SizeOverflow {
        file: file_buf(),
        shape: header.dims.clone(),
        elem: header.elem,
    })
}

/// The shape as `usize`s and the data size in bytes, or `None` if the array could not be addressed:
/// ndarray needs the product of the non-zero dimensions to fit `isize`, even when another is 0.
fn declared_size(dims: &[u32], elem: IdxType) -> Option<(Vec<usize>, u64)> {
    let mut nonzero: u64 = 1;
    for &d in dims.iter().filter(|&&d| d != 0) {
        nonzero = nonzero.checked_mul(u64::from(d))?;
    }
    let nonzero_bytes = nonzero.checked_mul(elem.size() as u64)?;
    if nonzero_bytes > u64::try_from(isize::MAX).unwrap_or(u64::MAX) {
        return None;
    }
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()?;
    let bytes = if dims.contains(&0) { 0 } else { nonzero_bytes };
    Some((shape, bytes))
}

/// Decodes big-endian data of a checked size into an array.
fn from_be_bytes(elem: IdxType, shape: &[usize], data: Vec<u8>) -> Option<IdxArray> {
    fn decode<T, const N: usize>(data: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
        data.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    let shape = IxDyn(shape);
    Some(match elem {
        IdxType::U8 => IdxArray::U8(ArrayD::from_shape_vec(shape, data).ok()?),
        IdxType::I8 => {
            IdxArray::I8(ArrayD::from_shape_vec(shape, decode(&data, i8::from_be_bytes)).ok()?)
        }
        IdxType::I16 => {
            IdxArray::I16(ArrayD::from_shape_vec(shape, decode(&data, i16::from_be_bytes)).ok()?)
        }
        IdxType::I32 => {
            IdxArray::I32(ArrayD::from_shape_vec(shape, decode(&data, i32::from_be_bytes)).ok()?)
        }
        IdxType::F32 => {
            IdxArray::F32(ArrayD::from_shape_vec(shape, decode(&data, f32::from_be_bytes)).ok()?)
        }
        IdxType::F64 => {
            IdxArray::F64(ArrayD::from_shape_vec(shape, decode(&data, f64::from_be_bytes)).ok()?)
        }
    })
}

/// Fills `buf` as far as the input goes; returns how many bytes were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n.min(buf.len() - filled),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Counts the bytes left, up to [`TRAILING_COUNT_CAP`]; also says whether it stopped at the cap.
fn count_rest<R: Read>(r: &mut R) -> io::Result<(u64, bool)> {
    let mut buf = [0u8; 4096];
    let mut count = 0u64;
    while count < TRAILING_COUNT_CAP {
        match r.read(&mut buf) {
            Ok(0) => return Ok((count, false)),
            Ok(n) => count += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((count, true))
}

/// Writes `array` to a new file at `path` as IDX, replacing any file there.
///
/// The header declares `T`'s type and the array's shape; the elements follow in C order whatever the
/// array's memory layout. Errors if the rank is 0 or above 255 or a dimension exceeds `u32::MAX` (both
/// checked before the file is created), or on I/O failure.
///
/// ```
/// use bp_data::{Compression, read_idx, write_idx};
/// use ndarray::array;
///
/// let path = std::env::temp_dir().join(format!("bp-data-doc-write-{}.idx", std::process::id()));
/// // Transposed: written in logical order, [[1, 3], [2, 4]].
/// write_idx(&path, &array![[1i32, 2], [3, 4]].t(), Compression::None)?;
/// let bytes = std::fs::read(&path)?;
/// assert_eq!(&bytes[..4], &[0, 0, 0x0C, 2]);
/// assert_eq!(bytes.len(), 4 + 2 * 4 + 4 * 4);
/// assert_eq!(read_idx(&path)?.as_array::<i32>().unwrap(), &array![[1, 3], [2, 4]].into_dyn());
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_idx<T, S, D>(
    path: impl AsRef<Path>,
    array: &ArrayBase<S, D>,
    compression: Compression,
) -> Result<(), DataError>
where
    T: IdxElement,
    S: Data<Elem = T>,
    D: Dimension,
{
    let path = path.as_ref();
    let header = header(array.shape(), T::TYPE, path)?;
    let file = File::create(path).map_err(io_error(path, "create"))?;
    write_body(
        BufWriter::with_capacity(1 << 16, file),
        &header,
        array,
        compression,
    )
    .map_err(io_error(path, "write"))
}

/// Writes `array` as IDX to any writer; errors name it `name`. See [`write_idx`].
///
/// ```
/// use bp_data::{Compression, write_idx_to};
/// use ndarray::array;
///
/// let mut bytes = Vec::new();
/// write_idx_to(&mut bytes, "memory", &array![7u8, 8, 9], Compression::None)?;
/// assert_eq!(bytes, [0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9]);
///
/// let mut gz = Vec::new();
/// write_idx_to(&mut gz, "memory", &array![7u8, 8, 9], Compression::Gzip)?;
/// assert_eq!(&gz[..2], &[0x1f, 0x8b]);
/// # Ok::<(), bp_data::DataError>(())
/// ```
pub fn write_idx_to<W, T, S, D>(
    writer: W,
    name: impl AsRef<Path>,
    array: &ArrayBase<S, D>,
    compression: Compression,
) -> Result<(), DataError>
where
    W: Write,
    T: IdxElement,
    S: Data<Elem = T>,
    D: Dimension,
{
    let name = name.as_ref();
    let header = header(array.shape(), T::TYPE, name)?;
    write_body(writer, &header, array, compression).map_err(io_error(name, "write"))
}

/// The magic number and dimensions, or an error if the shape cannot be written.
fn header(shape: &[usize], elem: IdxType, file: &Path) -> Result<Vec<u8>, DataError> {
    let rank = match u8::try_from(shape.len()) {
        Ok(rank) if rank > 0 => rank,
        _ => {
            return Err(DataError::RankNotWritable {
                file: file.to_path_buf(),
                rank: shape.len(),
            });
        }
    };
    let mut header = vec![0, 0, elem.code(), rank];
    for (axis, &size) in shape.iter().enumerate() {
        let dim = u32::try_from(size).map_err(|_| DataError::DimNotWritable {
            file: file.to_path_buf(),
            axis,
            size,
        })?;
        header.extend_from_slice(&dim.to_be_bytes());
    }
    Ok(header)
}

fn write_body<W, T, S, D>(
    mut writer: W,
    header: &[u8],
    array: &ArrayBase<S, D>,
    compression: Compression,
) -> io::Result<()>
where
    W: Write,
    T: IdxElement,
    S: Data<Elem = T>,
    D: Dimension,
{
    match compression {
        Compression::None => {
            write_plain(&mut writer, header, array)?;
            writer.flush()
        }
        Compression::Gzip => {
            let mut gz = GzEncoder::new(writer, flate2::Compression::default());
            write_plain(&mut gz, header, array)?;
            gz.finish()?.flush()
        }
    }
}

fn write_plain<W, T, S, D>(w: &mut W, header: &[u8], array: &ArrayBase<S, D>) -> io::Result<()>
where
    W: Write,
    T: IdxElement,
    S: Data<Elem = T>,
    D: Dimension,
{
    const CHUNK: usize = 1 << 16;
    w.write_all(header)?;
    let mut buf = Vec::with_capacity(CHUNK + 8);
    for &x in array {
        x.put_be(&mut buf);
        if buf.len() >= CHUNK {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_bytes(bytes: &[u8]) -> Result<IdxArray, DataError> {
        read_idx_from(bytes, "t.idx", &Limits::default())
    }

    #[test]
    fn every_type_decodes_big_endian() {
        let cases: [(u8, Vec<u8>, IdxArray); 6] = [
            (
                0x08,
                vec![0xFF, 0x01],
                IdxArray::from(ArrayD::from_shape_vec(IxDyn(&[2]), vec![255u8, 1]).unwrap()),
            ),
            (
                0x09,
                vec![0xFF, 0x80],
                IdxArray::from(ArrayD::from_shape_vec(IxDyn(&[2]), vec![-1i8, -128]).unwrap()),
            ),
            (
                0x0B,
                vec![0x01, 0x02, 0x80, 0x00],
                IdxArray::from(
                    ArrayD::from_shape_vec(IxDyn(&[2]), vec![0x0102i16, i16::MIN]).unwrap(),
                ),
            ),
            (
                0x0C,
                vec![0x01, 0x02, 0x03, 0x04, 0xFF, 0xFF, 0xFF, 0xFE],
                IdxArray::from(
                    ArrayD::from_shape_vec(IxDyn(&[2]), vec![0x0102_0304i32, -2]).unwrap(),
                ),
            ),
            (
                0x0D,
                vec![0x3F, 0x80, 0, 0, 0xC0, 0x20, 0, 0],
                IdxArray::from(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0f32, -2.5]).unwrap()),
            ),
            (
                0x0E,
                vec![
                    0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18,
                ],
                IdxArray::from(
                    ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0f64, std::f64::consts::PI])
                        .unwrap(),
                ),
            ),
        ];
        for (code, data, expected) in cases {
            let mut bytes = vec![0, 0, code, 1, 0, 0, 0, 2];
            bytes.extend(data);
            assert_eq!(parse_bytes(&bytes).unwrap(), expected, "type 0x{code:02x}");
        }
    }

    #[test]
    fn c_order_across_ranks() {
        // u8, shape (2, 1, 3): element [i, 0, k] = 10 i + k.
        let bytes = [
            0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 0, 1, 2, 10, 11, 12,
        ];
        let a = parse_bytes(&bytes).unwrap().into_array::<u8>().unwrap();
        assert_eq!(a.shape(), &[2, 1, 3]);
        assert_eq!(a[[1, 0, 2]], 12);
        assert_eq!(a[[0, 0, 1]], 1);
        assert!(a.is_standard_layout());
    }

    #[test]
    fn declared_size_checks_overflow() {
        assert_eq!(declared_size(&[2, 3], IdxType::F64), Some((vec![2, 3], 48)));
        assert_eq!(declared_size(&[0, 7], IdxType::I32), Some((vec![0, 7], 0)));
        assert_eq!(
            declared_size(&[u32::MAX, u32::MAX, u32::MAX], IdxType::U8),
            None
        );
        // Empty, but ndarray could not address the other dimensions.
        assert_eq!(
            declared_size(&[0, u32::MAX, u32::MAX, u32::MAX], IdxType::U8),
            None
        );
        assert_eq!(
            declared_size(&[u32::MAX], IdxType::F64),
            Some((vec![u32::MAX as usize], 8 * u64::from(u32::MAX)))
        );
    }

    #[test]
    fn empty_dimension_is_a_valid_file() {
        let idx = parse_bytes(&[0, 0, 0x0D, 2, 0, 0, 0, 0, 0, 0, 0, 5]).unwrap();
        assert_eq!(idx.shape(), &[0, 5]);
        assert!(idx.is_empty());
        assert_eq!(idx.elem_type(), IdxType::F32);
    }

    #[test]
    fn header_rejects_unwritable_shapes() {
        let f = Path::new("x.idx");
        assert_eq!(
            header(&[3], IdxType::U8, f).unwrap(),
            [0, 0, 8, 1, 0, 0, 0, 3]
        );
        assert!(matches!(
            header(&[], IdxType::U8, f),
            Err(DataError::RankNotWritable { rank: 0, .. })
        ));
        assert!(matches!(
            header(&[1; 256], IdxType::U8, f),
            Err(DataError::RankNotWritable { rank: 256, .. })
        ));
        #[cfg(target_pointer_width = "64")]
        assert!(matches!(
            header(&[1, 1 << 32], IdxType::U8, f),
            Err(DataError::DimNotWritable {
                axis: 1,
                size: 4_294_967_296,
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes_are_counted_up_to_a_cap() {
        let mut bytes = vec![0, 0, 8, 1, 0, 0, 0, 1, 42];
        bytes.extend([0; 3]);
        assert!(matches!(
            parse_bytes(&bytes),
            Err(DataError::TrailingData {
                expected: 1,
                extra: 3,
                more: false,
                ..
            })
        ));
        bytes.resize(9 + 100_000, 0);
        assert!(matches!(
            parse_bytes(&bytes),
            Err(DataError::TrailingData {
                extra: 65_536,
                more: true,
                ..
            })
        ));
    }
}
