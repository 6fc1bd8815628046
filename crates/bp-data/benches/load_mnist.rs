//! Times loading the shipped MNIST: `cargo bench -p bp-data`.
//!
//! Prints the median, minimum and maximum wall time of several runs of each step, from gunzip alone to
//! the whole `load_mnist` into normalised `f32`.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bp_data::{MnistOptions, load_mnist, read_idx, verify_sha256sums};
use flate2::read::MultiGzDecoder;

const RUNS: usize = 11;

fn time<T>(name: &str, mut f: impl FnMut() -> T) {
    black_box(f()); // warm the page cache and the allocator
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<44} median {:8.1} ms   min {:8.1} ms   max {:8.1} ms   ({RUNS} runs)",
        ms(times[RUNS / 2]),
        ms(times[0]),
        ms(times[RUNS - 1])
    );
}

fn main() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/mnist"));
    let files: Vec<PathBuf> = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    .iter()
    .map(|name| dir.join(name))
    .collect();

    time("gunzip the 4 files (flate2 alone)", || {
        files.iter().map(|f| gunzip(f)).sum::<usize>()
    });
    time("read_idx the 4 files (u8)", || {
        files
            .iter()
            .map(|f| read_idx(f).expect("shipped MNIST reads").len())
            .sum::<usize>()
    });
    time("load_mnist::<f32> (book defaults)", || {
        load_mnist::<f32>(&dir, &MnistOptions::default()).expect("shipped MNIST loads")
    });
    time("load_mnist::<f32> one-hot, (N, 1, 28, 28)", || {
        let opts = MnistOptions {
            flatten: false,
            one_hot_label: true,
            ..MnistOptions::default()
        };
        load_mnist::<f32>(&dir, &opts).expect("shipped MNIST loads")
    });
    time("load_mnist::<f64> (book defaults)", || {
        load_mnist::<f64>(&dir, &MnistOptions::default()).expect("shipped MNIST loads")
    });
    time("verify_sha256sums of the 4 files", || {
        verify_sha256sums(dir.join("SHA256SUMS"), &files).expect("checksums match")
    });
}

fn gunzip(path: &Path) -> usize {
    let file = std::fs::File::open(path).expect("shipped file opens");
    let mut out = Vec::new();
    MultiGzDecoder::new(file)
        .read_to_end(&mut out)
        .expect("shipped file gunzips");
    out.len()
}
