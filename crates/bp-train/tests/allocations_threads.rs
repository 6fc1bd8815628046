//! At the book's shapes (784-50-10, batch 100) the two large matrix products of a step, the batch
//! gather and the update of `W1` are shared over bp-core's rayon pool (two threads here). A
//! steady step must still allocate nothing: the pool's threads start before the first step, the
//! scratch buffers of each part of a product are sized on the training thread in the first step
//! and reused after, and the training loop runs on a thread of the pool, so that its `rayon::join`s
//! push onto that thread's own queue (handing work to a pool from outside allocates).
//!
//! A counting global allocator counts the allocations of every thread but the harness's main
//! thread (see `counting::allocations`), the pool's included, between consecutive steps of the real
//! training loop. This file holds one test so that no other test thread allocates while it
//! counts.

mod counting;

use bp_core::{Init, parse_layers};
use bp_train::{
    Dataset, Length, NetOptions, Network, Observer, Stream, TrainConfig, TwoLayerNet, rng, train,
};
use ndarray::{Array2, Array4};

/// Records the allocation counter after every step, into storage reserved up front.
struct Counter {
    at_step: Vec<usize>,
}

impl Observer for Counter {
    fn step(&mut self, _done: usize) {
        self.at_step.push(counting::allocations());
    }
}

#[test]
fn steady_steps_shared_over_threads_allocate_nothing() {
    bp_core::set_threads(2);
    let n = 3000;
    let x = Array2::from_shape_fn((n, 784), |(i, j)| ((i * 7 + j * 13) % 17) as f32 / 17.0);
    let t: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let data = Dataset::new(x.view(), &t);
    let mut net = TwoLayerNet::<f32>::new(784, 50, 10, 0.01, &mut rng(0, Stream::Init));
    // One epoch of 30 steps: no evaluation between the steps counted.
    let cfg = TrainConfig {
        length: Length::Iters(30),
        ..TrainConfig::default()
    };
    let most = most_allocations_per_step(&mut net, &data, &cfg);
    assert!(most == 0, "{most} allocations in a steady step");

    // A SimpleConvNet on 12 x 12 images with a second, padded convolution, batch 100: the
    // convolutions' parts of the batch (unrolled as they are, and from padded planes) and the
    // pooling's planes are shared over the pool.
    let images = Array4::from_shape_fn((n, 1, 12, 12), |(i, _, y, z)| {
        ((i * 7 + y * 13 + z) % 17) as f32 / 17.0
    });
    let data = Dataset::new(images.view(), &t);
    let layers = parse_layers(
        "conv 8 5x5, relu, conv 8 3x3 pad 1, relu, maxpool 2 stride 2, affine 20, relu, affine 10",
    )
    .expect("a valid list");
    let options = NetOptions {
        init: Init::Std(0.01),
        weight_decay: 0.0,
    };
    let mut net = Network::<f32>::new(&[1, 12, 12], layers, options, &mut rng(0, Stream::Init))
        .expect("the list fits the images");
    let most = most_allocations_per_step(&mut net, &data, &cfg);
    assert!(most == 0, "{most} allocations in a steady convnet step");
}

/// The most allocations between consecutive steps of a run of `net` on `data`, the first step
/// (which sizes the buffers) left out.
fn most_allocations_per_step(
    net: &mut Network<f32>,
    data: &Dataset<'_, f32>,
    cfg: &TrainConfig,
) -> usize {
    let mut counter = Counter {
        at_step: Vec::with_capacity(100),
    };
    train(net, data.clone(), data.clone(), cfg, &mut counter).expect("the run does not diverge");
    counter.at_step[1..]
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .expect("at least three steps")
}
