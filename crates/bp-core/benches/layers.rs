//! Criterion benchmarks of the layers at the book's shapes (batch 100, 784 -> 50 -> 10) and the wide
//! net's first layer (784 -> 800), in f32 and f64. The affine layers run with one thread (`1t`) and
//! with the default (every CPU: large products shared over bp-core's pool).
//!
//! `matrixmultiply_x_w` and `matrixmultiply_xt_dout` time the affine layer's two large products by
//! `matrixmultiply` (one thread, output buffers reused), beside `affine_forward` and
//! `affine_backward_params`, which compute them through bp-core's product seam. The products alone,
//! by each backend at more shapes, are in `benches/products.rs`.
//!
//! Each measurement times only the pass named: inputs and `dout`s are cloned outside the timed region,
//! and the layers are in the steady state of training (their buffers recycled), as in a training loop.
//!
//! Run with `cargo bench -p bp-core`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bp_core::{Affine, Init, Layer, Relu, Sigmoid, randn};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, Ix2, IxDyn, NdFloat};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

const BATCH: usize = 100;

/// Times `iters` calls of `timed` on `layer`, each on an input that `setup` prepares outside the
/// clock; `after` gets the output, also outside the clock.
fn timed_loop<L: ?Sized, I, O>(
    iters: u64,
    layer: &mut L,
    mut setup: impl FnMut(&mut L) -> I,
    mut timed: impl FnMut(&mut L, I) -> O,
    mut after: impl FnMut(&mut L, O),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = setup(layer);
        let start = Instant::now();
        let out = black_box(timed(layer, black_box(input)));
        total += start.elapsed();
        after(layer, out);
    }
    total
}

/// A backward pass of the affine layer: `Layer::backward` or `Layer::backward_params`.
type Backward<A> = fn(&mut Affine<A>, ArrayD<A>) -> ArrayD<A>;

fn bench_dtype<A: NdFloat>(c: &mut Criterion, dtype: &str) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut group = c.benchmark_group(format!("layers/{dtype}"));

    for ((input, output), threads) in [(784, 50), (50, 10), (784, 800)]
        .into_iter()
        // The small layer's products never leave the calling thread: one run of it is enough.
        .flat_map(|shape| {
            let threads: &[usize] = if shape == (50, 10) { &[0] } else { &[1, 0] };
            threads.iter().map(move |&t| (shape, t))
        })
    {
        bp_core::set_threads(threads);
        let x: ArrayD<A> = randn(IxDyn(&[BATCH, input]), 1.0, &mut rng);
        let dout: ArrayD<A> = randn(IxDyn(&[BATCH, output]), 1.0, &mut rng);
        let shape = if (input, output) == (50, 10) {
            format!("{BATCH}x{input}->{output}")
        } else {
            format!("{BATCH}x{input}->{output}/{}t", bp_core::threads())
        };
        let mut affine = Affine::<A>::random(input, output, Init::Std(0.01), &mut rng);
        // One full step so that the output buffer is recycled from then on.
        affine.forward(x.clone());
        affine.backward(dout.clone());

        group.bench_function(BenchmarkId::new("affine_forward", &shape), |b| {
            b.iter_custom(|iters| {
                timed_loop(
                    iters,
                    &mut affine,
                    |_| x.clone(),
                    |a, x| a.forward(x),
                    |a, _| {
                        a.backward_params(dout.clone());
                    },
                )
            })
        });
        if threads == 1 {
            // The same products by `matrixmultiply` (which bp-core used for larger products),
            // into buffers allocated outside the clock: `x·W` against `affine_forward`,
            // `xᵀ·dout` against `affine_backward_params`.
            let x2 = x.clone().into_dimensionality::<Ix2>().expect("rank 2");
            let dout2 = dout.clone().into_dimensionality::<Ix2>().expect("rank 2");
            let w = affine.w().clone();
            let mut out = Array2::<A>::zeros((BATCH, output));
            let mut dw = Array2::<A>::zeros((input, output));
            group.bench_function(BenchmarkId::new("matrixmultiply_x_w", &shape), |b| {
                b.iter(|| general_mat_mul(A::one(), &x2, &w, A::zero(), &mut out))
            });
            group.bench_function(BenchmarkId::new("matrixmultiply_xt_dout", &shape), |b| {
                b.iter(|| general_mat_mul(A::one(), &x2.t(), &dout2, A::zero(), &mut dw))
            });
        }
        let backwards: [(&str, Backward<A>); 2] = [
            ("affine_backward", Layer::backward),
            ("affine_backward_params", Layer::backward_params),
        ];
        for (name, backward) in backwards {
            group.bench_function(BenchmarkId::new(name, &shape), |b| {
                b.iter_custom(|iters| {
                    timed_loop(
                        iters,
                        &mut affine,
                        |a| {
                            a.forward(x.clone());
                            dout.clone()
                        },
                        backward,
                        |_, dx| drop(dx),
                    )
                })
            });
        }
    }

    bp_core::set_threads(0);
    let x: ArrayD<A> = randn(IxDyn(&[BATCH, 50]), 1.0, &mut rng);
    let dout: ArrayD<A> = randn(IxDyn(&[BATCH, 50]), 1.0, &mut rng);
    let activations: [Box<dyn Layer<A>>; 2] = [Box::new(Relu::new()), Box::new(Sigmoid::new())];
    for mut layer in activations {
        let name = layer.name().to_lowercase();
        layer.forward(x.clone());
        group.bench_function(BenchmarkId::new(format!("{name}_forward"), "100x50"), |b| {
            b.iter_custom(|iters| {
                timed_loop(
                    iters,
                    &mut *layer,
                    |_| x.clone(),
                    |l, x| l.forward(x),
                    |_, o| drop(o),
                )
            })
        });
        group.bench_function(
            BenchmarkId::new(format!("{name}_backward"), "100x50"),
            |b| {
                b.iter_custom(|iters| {
                    timed_loop(
                        iters,
                        &mut *layer,
                        |_| dout.clone(),
                        |l, d| l.backward(d),
                        |_, o| drop(o),
                    )
                })
            },
        );
    }
    group.finish();
}

fn layers(c: &mut Criterion) {
    bench_dtype::<f32>(c, "f32");
    bench_dtype::<f64>(c, "f64");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = layers
}
criterion_main!(benches);
