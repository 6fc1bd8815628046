//! Criterion benchmarks of the matrix products behind bp-core's one seam (`Products`), one thread,
//! output buffers reused: bp-core's own kernels (`kernels`), the `gemm` crate (`gemm`) and
//! `matrixmultiply` through `ndarray`'s `general_mat_mul` (`matrixmultiply`), at the shapes of the
//! book's net (784-50-10, batch 100), the wide net (784-800-10) and the convnets' im2col products
//! (tall and thin: forward `col · W`, backward `colᵀ · dout` and `dout · Wᵀ`), in `f32`. Which
//! wins at each shape sets where the seam sends a product (docs/performance.md, "Matrix
//! products"). Under `BP_NO_SIMD=1` `kernels` times the portable code.
//!
//! Run with `cargo bench -p bp-core --bench products`.

use std::hint::black_box;
use std::time::Duration;

use bp_core::{Backend, Products, randn};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// `(name, m, k, n, a transposed, b transposed)`: `op(A)` is `m x k`, `op(B)` `k x n`.
const SHAPES: &[(&str, usize, usize, usize, bool, bool)] = &[
    ("book x·W1", 100, 784, 50, false, false),
    ("book xT·dout", 784, 100, 50, true, false),
    ("book h·W2", 100, 50, 10, false, false),
    ("book dout·W2T", 100, 10, 50, false, true),
    ("wide x·W1", 100, 784, 800, false, false),
    ("wide xT·dout", 784, 100, 800, true, false),
    ("wide dout·W2T", 100, 10, 800, false, true),
    ("wide eval x·W1", 1000, 784, 800, false, false),
    ("big x·W", 256, 2048, 2048, false, false),
    ("simple W·col", 30, 25, 2880, false, false),
    ("simple dout·colT", 30, 2880, 25, false, true),
    ("deep1 dout·colT", 16, 3920, 9, false, true),
    ("deep2 W·col", 16, 144, 3920, false, false),
    ("deep2 dout·colT", 16, 3920, 144, false, true),
    ("deep2 WT·dout", 144, 16, 3920, true, false),
    ("deep3 W·col", 32, 144, 980, false, false),
    ("deep3 dout·colT", 32, 980, 144, false, true),
    ("deep3 WT·dout", 144, 32, 980, true, false),
    ("deep4 W·col", 32, 288, 1280, false, false),
    ("deep4 dout·colT", 32, 1280, 288, false, true),
    ("deep4 WT·dout", 288, 32, 1280, true, false),
    ("deep6 W·col", 64, 576, 320, false, false),
    ("deep6 dout·colT", 64, 320, 576, false, true),
    ("deep6 WT·dout", 576, 64, 320, true, false),
];

fn op<A>(m: &Array2<A>, t: bool) -> ArrayView2<'_, A> {
    if t { m.t() } else { m.view() }
}

fn products(c: &mut Criterion) {
    bp_core::set_threads(1);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut group = c.benchmark_group("products");
    for &(name, m, k, n, a_t, b_t) in SHAPES {
        let a: Array2<f32> = randn(if a_t { (k, m) } else { (m, k) }, 1.0, &mut rng);
        let b: Array2<f32> = randn(if b_t { (n, k) } else { (k, n) }, 1.0, &mut rng);
        let (a, b) = (op(&a, a_t), op(&b, b_t));
        let mut out = Array2::<f32>::zeros((m, n));
        let products = Products::new();
        let label = format!("{name} {m}x{k}x{n}");
        group.throughput(Throughput::Elements((m * k * n) as u64));
        for (backend, id) in [(Backend::Kernels, "kernels"), (Backend::Gemm, "gemm")] {
            group.bench_function(BenchmarkId::new(id, &label), |bench| {
                bench.iter(|| products.matmul_into_by(backend, a, b, black_box(out.view_mut())))
            });
        }
        group.bench_function(BenchmarkId::new("matrixmultiply", &label), |bench| {
            bench.iter(|| general_mat_mul(1.0, &a, &b, 0.0, black_box(&mut out)))
        });
    }
    group.finish();
    bp_core::set_threads(0);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200));
    targets = products
}
criterion_main!(benches);
