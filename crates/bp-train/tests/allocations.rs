//! A steady training step allocates nothing.
//!
//! A counting global allocator counts every allocation between two steps of the real training loop
//! (seen through the `Observer::step` hook). The layers, the loss, the batch gathering and the
//! optimizers recycle their buffers, and bp-core's matrix kernels write into them without packing:
//! the AVX2 and AVX-512 ones, and the portable ones of other CPUs (`.ci/run` runs this test again
//! with `BP_NO_SIMD=1`, which forces them). This file holds one test so that no other test thread
//! allocates while it counts.

mod common;
mod counting;

use bp_core::{Init, parse_layers};
use bp_train::{
    Augment, Dataset, Length, MultiLayerConfig, MultiLayerNet, NetOptions, Network, Observer,
    OptimizerKind, Sampling, Stream, TrainConfig, TwoLayerNet, rng, train,
};

/// Records the allocation counter at every step, into storage reserved up front.
struct Counter {
    at_step: Vec<usize>,
}

impl Observer for Counter {
    fn epoch_start(&mut self, _epoch: usize, _steps: usize) {
        self.at_step.clear();
    }

    fn step(&mut self, _done: usize) {
        self.at_step.push(counting::allocations());
    }
}

/// The most allocations between two consecutive steps after the first two, within one epoch.
fn max_allocations_per_step(
    net: &mut dyn FnMut(&TrainConfig, &mut Counter) -> bp_train::TrainSummary,
    cfg: &TrainConfig,
) -> usize {
    let mut counter = Counter {
        at_step: Vec::with_capacity(1000),
    };
    net(cfg, &mut counter);
    counter.at_step[2..]
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .expect("at least four steps")
}

#[test]
fn steady_training_steps_allocate_nothing() {
    let (x, t) = common::digits_f32(300, 5, 1);
    let data = Dataset::new(x.view(), &t);
    // The same digits as 8x8 images, which `--augment shift:2` moves in the batch buffer.
    let images = x.view().into_shape_with_order((300, 1, 8, 8)).unwrap();
    let image_data = Dataset::new(images, &t);
    for optimizer in [OptimizerKind::Sgd, OptimizerKind::Adam] {
        for sampling in [Sampling::Book, Sampling::Shuffle] {
            let cfg = TrainConfig {
                length: Length::Epochs(1),
                batch_size: 20,
                optimizer,
                sampling,
                lr: 0.01,
                ..TrainConfig::default()
            };
            // TwoLayerNet: forward x·W1, h·W2; backward dW2, dx2, dW1 (no dx for the first layer).
            let mut two = |cfg: &TrainConfig, counter: &mut Counter| {
                let mut net = TwoLayerNet::<f32>::new(64, 32, 5, 0.1, &mut rng(0, Stream::Init));
                train(&mut net, data.clone(), data.clone(), cfg, counter).unwrap()
            };
            let n = max_allocations_per_step(&mut two, &cfg);
            assert!(
                n == 0,
                "{optimizer:?} {sampling:?}: {n} allocations per step"
            );

            // Three affine layers with batch norm, dropout and weight decay: 3 + 5 products; the
            // images shifted at random.
            let cfg = TrainConfig {
                augment: Augment::Shift(2),
                ..cfg
            };
            let mut multi = |cfg: &TrainConfig, counter: &mut Counter| {
                let config = MultiLayerConfig {
                    init: Init::He,
                    batch_norm: true,
                    dropout: Some(0.2),
                    weight_decay: 1e-3,
                    ..MultiLayerConfig::new(64, vec![32, 16], 5)
                };
                let mut net = MultiLayerNet::<f32>::new(config, &mut rng(0, Stream::Init));
                train(&mut net, image_data.clone(), data.clone(), cfg, counter).unwrap()
            };
            let n = max_allocations_per_step(&mut multi, &cfg);
            assert!(
                n == 0,
                "{optimizer:?} {sampling:?}: {n} allocations per step"
            );

            // A convnet on 8 x 8 images, shifted at random: two convolutions (padded, strided),
            // pooling, flatten, dropout.
            let mut convnet = |cfg: &TrainConfig, counter: &mut Counter| {
                let layers = parse_layers(
                    "conv 6 3x3 pad 1, relu, maxpool 2, conv 8 3x3 stride 2 pad 1, relu, \
                     dropout 0.2, flatten, affine 5",
                )
                .unwrap();
                let options = NetOptions {
                    init: Init::He,
                    weight_decay: 1e-3,
                };
                let mut net =
                    Network::<f32>::new(&[1, 8, 8], layers, options, &mut rng(0, Stream::Init))
                        .unwrap();
                train(
                    &mut net,
                    image_data.clone(),
                    image_data.clone(),
                    cfg,
                    counter,
                )
                .unwrap()
            };
            let n = max_allocations_per_step(&mut convnet, &cfg);
            assert!(
                n == 0,
                "convnet {optimizer:?} {sampling:?}: {n} allocations per step"
            );
        }
    }
}
