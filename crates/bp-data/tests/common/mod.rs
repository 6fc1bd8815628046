//! Helpers shared by the integration tests.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bp_data::{Compression, IdxArray, IdxType};
use flate2::write::GzEncoder;
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, RngExt};

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("bp-data-test-{}-{label}-{n}", std::process::id()));
        // A leftover from an earlier run with the same process id would make the test see old files.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir can be created");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A reader that gives at most one byte per call, and `Interrupted` before every other byte.
pub struct Trickle<R> {
    inner: R,
    interrupt: bool,
}

impl<R> Trickle<R> {
    pub fn new(inner: R) -> Trickle<R> {
        Trickle {
            inner,
            interrupt: false,
        }
    }
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let n = buf.len().min(1);
        self.inner.read(&mut buf[..n])
    }
}

/// `bytes` as one gzip member, made by flate2 directly (not by the crate's writer).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

/// The array as IDX bytes, by the crate's writer.
pub fn encode(idx: &IdxArray, compression: Compression) -> Vec<u8> {
    let mut bytes = Vec::new();
    idx.write_to(&mut bytes, "memory", compression)
        .expect("a rank 1 to 4 array with small dims can be written");
    bytes
}

/// A random array: random type, rank 1 to `max_rank`, each dim 1 to `max_dim`, elements from random
/// bits (so floats include NaNs, infinities and subnormals).
pub fn random_idx<R: Rng>(rng: &mut R, max_rank: usize, max_dim: usize) -> IdxArray {
    let elem = IdxType::ALL[rng.random_range(0..IdxType::ALL.len())];
    let rank = rng.random_range(1..=max_rank);
    let shape: Vec<usize> = (0..rank).map(|_| rng.random_range(1..=max_dim)).collect();
    random_of(rng, elem, &shape)
}

/// A random array of the given type and shape.
pub fn random_of<R: Rng>(rng: &mut R, elem: IdxType, shape: &[usize]) -> IdxArray {
    let n: usize = shape.iter().product();
    let shape = IxDyn(shape);
    fn make<T>(shape: IxDyn, v: Vec<T>) -> ArrayD<T> {
        ArrayD::from_shape_vec(shape, v).expect("the element count is the shape's product")
    }
    match elem {
        IdxType::U8 => make(shape, (0..n).map(|_| rng.random::<u8>()).collect()).into(),
        IdxType::I8 => make(shape, (0..n).map(|_| rng.random::<i8>()).collect()).into(),
        IdxType::I16 => make(shape, (0..n).map(|_| rng.random::<i16>()).collect()).into(),
        IdxType::I32 => make(shape, (0..n).map(|_| rng.random::<i32>()).collect()).into(),
        IdxType::F32 => make(
            shape,
            (0..n)
                .map(|_| f32::from_bits(rng.random::<u32>()))
                .collect(),
        )
        .into(),
        IdxType::F64 => make(
            shape,
            (0..n)
                .map(|_| f64::from_bits(rng.random::<u64>()))
                .collect(),
        )
        .into(),
    }
}

/// Bit-exact equality (floats compared by their bits, so NaN equals itself).
pub fn same_bits(a: &IdxArray, b: &IdxArray) -> bool {
    a.elem_type() == b.elem_type()
        && a.shape() == b.shape()
        && encode(a, Compression::None) == encode(b, Compression::None)
}
