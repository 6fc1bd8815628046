//! The book's TwoLayerNet on the shipped MNIST, for a short run.

mod common;

use bp_data::{MnistOptions, load_mnist};
use bp_train::{Dataset, Length, Silent, Stream, TrainConfig, TwoLayerNet, rng, train};
use ndarray::Ix2;

#[test]
fn two_layer_net_reaches_90_percent_on_mnist_in_1500_iterations() {
    let mnist = load_mnist::<f32>(common::mnist_dir(), &MnistOptions::default()).unwrap();
    let x_train = mnist.x_train.into_dimensionality::<Ix2>().unwrap();
    let x_test = mnist.x_test.into_dimensionality::<Ix2>().unwrap();
    let (t_train, t_test) = (mnist.t_train.to_index(), mnist.t_test.to_index());
    let mut net = TwoLayerNet::<f32>::new(784, 50, 10, 0.01, &mut rng(0, Stream::Init));
    let cfg = TrainConfig {
        length: Length::Iters(1500),
        ..TrainConfig::default()
    };
    let summary = train(
        &mut net,
        Dataset::new(x_train.view(), &t_train),
        Dataset::new(x_test.view(), &t_test),
        &cfg,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(summary.iters, 1500);
    // 600 iterations per epoch: two full epochs and one of 300.
    assert_eq!(summary.epochs.len(), 3);
    assert_eq!(summary.epochs[2].iter, 1500);
    assert!(
        summary.test_acc >= 0.90,
        "test accuracy {}",
        summary.test_acc
    );
    assert!(
        summary.train_acc >= 0.90,
        "train accuracy {}",
        summary.train_acc
    );
    // The loss falls from epoch to epoch.
    assert!(summary.epochs[1].loss < summary.epochs[0].loss);
}
