//! Small data sets for the tests: 8x8 "digits" written as IDX files into a temporary directory.

#![allow(dead_code)]

#[cfg(unix)]
pub mod bounded;
#[cfg(unix)]
pub mod server;

use std::path::{Path, PathBuf};

use bp_data::{Compression, write_idx};
use ndarray::{Array1, Array2, Array3};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A fresh, empty temporary directory, unique to this process and `name`; removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("bp-train-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` noisy 8x8 images of `classes` classes: each class is a fixed random stroke pattern, each image
/// that pattern shifted by up to one pixel with noise added; labels cycle through the classes.
pub fn digits(n: usize, classes: usize, seed: u64) -> (Array3<u8>, Array1<u8>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1234);
    let templates: Vec<Array2<f64>> = (0..classes)
        .map(|_| Array2::from_shape_fn((8, 8), |_| if rng.random_bool(0.35) { 1.0 } else { 0.0 }))
        .collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut images = Array3::zeros((n, 8, 8));
    let labels = Array1::from_shape_fn(n, |i| (i % classes) as u8);
    for i in 0..n {
        let template = &templates[i % classes];
        let (dy, dx) = (
            rng.random_range(0..3) as isize - 1,
            rng.random_range(0..3) as isize - 1,
        );
        for r in 0..8 {
            for c in 0..8 {
                let (sr, sc) = (r as isize - dy, c as isize - dx);
                let on = (0..8).contains(&sr)
                    && (0..8).contains(&sc)
                    && template[[sr as usize, sc as usize]] > 0.5;
                let v = if on { 200.0 } else { 20.0 } + rng.random_range(-20.0..20.0);
                images[[i, r, c]] = v as u8;
            }
        }
    }
    (images, labels)
}

/// Writes an MNIST-layout directory of 8x8 digits (gzip'd training files, raw test files).
pub fn write_digits(dir: &Path, train: usize, test: usize, classes: usize) {
    let (x, t) = digits(train, classes, 1);
    write_idx(
        dir.join("train-images-idx3-ubyte.gz"),
        &x,
        Compression::Gzip,
    )
    .unwrap();
    write_idx(
        dir.join("train-labels-idx1-ubyte.gz"),
        &t,
        Compression::Gzip,
    )
    .unwrap();
    let (x, t) = digits(test, classes, 2);
    write_idx(dir.join("t10k-images-idx3-ubyte"), &x, Compression::None).unwrap();
    write_idx(dir.join("t10k-labels-idx1-ubyte"), &t, Compression::None).unwrap();
}

/// The digits as (N, 64) inputs in [0, 1] and labels, for library tests.
pub fn digits_f32(n: usize, classes: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let (x, t) = digits(n, classes, seed);
    let x = x
        .into_shape_with_order((n, 64))
        .unwrap()
        .mapv(|p| f32::from(p) / 255.0);
    (x, t.iter().map(|&c| usize::from(c)).collect())
}

/// The bytes of a PNG file of `width` x `height` pixels of the given colour type.
pub fn png(width: usize, height: usize, color: image::ColorType, data: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::write_buffer_with_format(
        &mut std::io::Cursor::new(&mut bytes),
        data,
        width as u32,
        height as u32,
        color,
        image::ImageFormat::Png,
    )
    .expect("a PNG is written to memory");
    bytes
}

/// The shipped MNIST.
pub fn mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist")
}
