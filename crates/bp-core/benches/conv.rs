//! Criterion benchmarks of the convolution, pooling and relu layers at the shapes of the book's
//! convnets, batch 100, f32: SimpleConvNet's `conv 30 5x5` on 1 x 28 x 28 and its pool, and
//! DeepConvNet's convolutions (16 3x3 on 16 x 28 x 28, 64 3x3 on 64 x 4 x 4 after its pools).
//! Forward, backward and `backward_params` (a first layer's backward) are timed separately, each
//! in the steady state of training (buffers recycled), with the default threads.
//!
//! Run with `cargo bench -p bp-core --bench conv`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bp_core::{Convolution, Init, Layer, Pooling, Relu, randn};
use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

const BATCH: usize = 100;

/// Times `iters` forward passes, or forward-and-backward pairs of which only the backward is timed.
fn time_layer(
    layer: &mut dyn Layer<f32>,
    x: &ArrayD<f32>,
    dout: &ArrayD<f32>,
    iters: u64,
    which: &str,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = x.clone();
        let start = Instant::now();
        let out = black_box(layer.forward(black_box(input)));
        if which == "forward" {
            total += start.elapsed();
        }
        drop(out);
        let d = dout.clone();
        let start = Instant::now();
        let dx = if which == "backward" {
            black_box(layer.backward(black_box(d)))
        } else {
            black_box(layer.backward_params(black_box(d)))
        };
        if which != "forward" {
            total += start.elapsed();
        }
        drop(dx);
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut group = c.benchmark_group("conv/f32");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    // (name, input C x H x W, FN, K, pad)
    for (name, [c_in, h, w], fnum, k, pad) in [
        ("simple_conv30_5x5", [1, 28, 28], 30, 5, 0),
        ("deep_conv16_3x3_on16x28", [16, 28, 28], 16, 3, 1),
        ("deep_conv32_3x3_pad2_on32x14", [32, 14, 14], 32, 3, 2),
        ("deep_conv64_3x3_on64x7", [64, 7, 7], 64, 3, 1),
    ] {
        let mut conv = Convolution::<f32>::random(fnum, c_in, (k, k), 1, pad, Init::He, &mut rng);
        let x = randn(IxDyn(&[BATCH, c_in, h, w]), 1.0, &mut rng);
        let out = conv.forward(x.clone());
        let dout = randn(out.raw_dim(), 1.0, &mut rng);
        for which in ["forward", "backward", "backward_params"] {
            group.bench_function(format!("{name}/{which}"), |b| {
                b.iter_custom(|iters| time_layer(&mut conv, &x, &dout, iters, which));
            });
        }
    }
    for (name, [ch, h, w]) in [
        ("simple_pool2_30x24", [30, 24, 24]),
        ("deep_pool2_16x28", [16, 28, 28]),
    ] {
        let mut pool = Pooling::<f32>::new(2, 2, 0);
        let x = randn(IxDyn(&[BATCH, ch, h, w]), 1.0, &mut rng);
        let out = pool.forward(x.clone());
        let dout = randn(out.raw_dim(), 1.0, &mut rng);
        for which in ["forward", "backward"] {
            group.bench_function(format!("{name}/{which}"), |b| {
                b.iter_custom(|iters| time_layer(&mut pool, &x, &dout, iters, which));
            });
        }
        let mut relu = Relu::new();
        let dx = randn(x.raw_dim(), 1.0, &mut rng);
        for which in ["forward", "backward"] {
            group.bench_function(format!("relu_{}x{h}x{w}/{which}", ch), |b| {
                b.iter_custom(|iters| time_layer(&mut relu, &x, &dx, iters, which));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
