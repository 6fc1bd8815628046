//! Seeded training runs on small synthetic data: every optimizer and network option learns, and the
//! same seed gives the same numbers.

mod common;

use bp_core::Init;
use bp_train::{
    Activation, Dataset, Length, MultiLayerConfig, MultiLayerNet, OptimizerKind, Sampling,
    Schedule, Silent, Stream, TrainConfig, TrainSummary, rng, train,
};
use ndarray::{Array2, NdFloat};

struct Data<A> {
    x_train: Array2<A>,
    t_train: Vec<usize>,
    x_test: Array2<A>,
    t_test: Vec<usize>,
}

fn data<A: NdFloat>() -> Data<A> {
    let (x_train, t_train) = common::digits_f32(400, 5, 11);
    let (x_test, t_test) = common::digits_f32(200, 5, 12);
    let cast = |x: Array2<f32>| x.mapv(|v| A::from(v).unwrap());
    Data {
        x_train: cast(x_train),
        t_train,
        x_test: cast(x_test),
        t_test,
    }
}

fn run<A: NdFloat + 'static>(config: &MultiLayerConfig, cfg: &TrainConfig) -> TrainSummary {
    let d = data::<A>();
    let mut net = MultiLayerNet::<A>::new(config.clone(), &mut rng(cfg.seed, Stream::Init));
    train(
        &mut net,
        Dataset::new(d.x_train.view(), &d.t_train),
        Dataset::new(d.x_test.view(), &d.t_test),
        cfg,
        &mut Silent,
    )
    .unwrap()
}

fn base_cfg(optimizer: OptimizerKind, lr: f64) -> TrainConfig {
    TrainConfig {
        length: Length::Epochs(20),
        batch_size: 20,
        lr,
        optimizer,
        ..TrainConfig::default()
    }
}

fn net(hidden: Vec<usize>) -> MultiLayerConfig {
    MultiLayerConfig {
        init: Init::He,
        ..MultiLayerConfig::new(64, hidden, 5)
    }
}

#[track_caller]
fn assert_learns(summary: &TrainSummary, what: &str) {
    assert!(summary.test_acc >= 0.95, "{what}: {summary:#?}");
    let first = summary.epochs[0].loss;
    let last = summary.epochs.last().unwrap().loss;
    assert!(last < first / 3.0, "{what}: loss {first} -> {last}");
}

#[test]
fn every_optimizer_learns() {
    for (optimizer, lr) in [
        (OptimizerKind::Sgd, 0.1),
        (OptimizerKind::Momentum, 0.02),
        (OptimizerKind::AdaGrad, 0.05),
        (OptimizerKind::Adam, 0.003),
    ] {
        let summary = run::<f32>(&net(vec![32]), &base_cfg(optimizer, lr));
        assert_eq!(summary.iters, 20 * 20);
        assert_learns(&summary, optimizer.name());
    }
}

#[test]
fn every_network_option_learns() {
    let cfg = |lr| TrainConfig {
        sampling: Sampling::Shuffle,
        schedule: Schedule::Cosine,
        ..base_cfg(OptimizerKind::Adam, lr)
    };
    for (what, config, lr) in [
        (
            "batch norm",
            MultiLayerConfig {
                batch_norm: true,
                ..net(vec![32, 32])
            },
            0.003,
        ),
        (
            "dropout",
            MultiLayerConfig {
                dropout: Some(0.2),
                ..net(vec![64, 32])
            },
            0.003,
        ),
        (
            "weight decay",
            MultiLayerConfig {
                weight_decay: 1e-3,
                ..net(vec![32])
            },
            0.003,
        ),
        (
            "sigmoid",
            MultiLayerConfig {
                activation: Activation::Sigmoid,
                init: Init::Xavier,
                ..net(vec![32])
            },
            0.02,
        ),
        (
            "everything",
            MultiLayerConfig {
                batch_norm: true,
                dropout: Some(0.1),
                weight_decay: 1e-4,
                ..net(vec![32, 16])
            },
            0.003,
        ),
    ] {
        assert_learns(&run::<f32>(&config, &cfg(lr)), what);
    }
    let step = TrainConfig {
        schedule: Schedule::Step,
        ..base_cfg(OptimizerKind::Sgd, 0.2)
    };
    assert_learns(&run::<f64>(&net(vec![32]), &step), "step schedule, f64");
}

/// Everything but the timings.
fn numbers(s: &TrainSummary) -> Vec<(usize, usize, f64, f64, f64)> {
    s.epochs
        .iter()
        .map(|e| (e.epoch, e.iter, e.loss, e.train_acc, e.test_acc))
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_numbers() {
    let config = MultiLayerConfig {
        dropout: Some(0.3),
        batch_norm: true,
        ..net(vec![32, 16])
    };
    for sampling in [Sampling::Book, Sampling::Shuffle] {
        let cfg = TrainConfig {
            sampling,
            length: Length::Epochs(3),
            seed: 5,
            ..base_cfg(OptimizerKind::Momentum, 0.02)
        };
        let a = run::<f32>(&config, &cfg);
        let b = run::<f32>(&config, &cfg);
        assert_eq!(numbers(&a), numbers(&b));
        let c = run::<f32>(
            &config,
            &TrainConfig {
                seed: 6,
                ..cfg.clone()
            },
        );
        assert_ne!(numbers(&a), numbers(&c));
    }
}

#[test]
fn f32_and_f64_runs_agree_closely() {
    let cfg = TrainConfig {
        length: Length::Epochs(2),
        ..base_cfg(OptimizerKind::Sgd, 0.1)
    };
    let a = run::<f32>(&net(vec![16]), &cfg);
    let b = run::<f64>(&net(vec![16]), &cfg);
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert!((x.loss - y.loss).abs() < 1e-3, "{} vs {}", x.loss, y.loss);
    }
}

#[test]
fn the_training_loss_is_the_mean_of_gradient_losses() {
    // One epoch of one full batch, without shuffling effects: the reported loss is the loss that
    // `gradient` returned for that batch before the update.
    let d = data::<f64>();
    let config = net(vec![8]);
    let cfg = TrainConfig {
        length: Length::Iters(1),
        batch_size: 400,
        sampling: Sampling::Shuffle,
        ..base_cfg(OptimizerKind::Sgd, 0.1)
    };
    let mut trained = MultiLayerNet::<f64>::new(config.clone(), &mut rng(0, Stream::Init));
    let mut fresh = trained.clone();
    let summary = train(
        &mut trained,
        Dataset::new(d.x_train.view(), &d.t_train),
        Dataset::new(d.x_test.view(), &d.t_test),
        &cfg,
        &mut Silent,
    )
    .unwrap();
    // The whole set in any order has the same mean loss (up to summation order).
    let expected = fresh.loss(
        d.x_train.clone().into_dyn(),
        bp_loss::Targets::Index(&d.t_train),
    );
    assert!((summary.epochs[0].loss - expected).abs() < 1e-12);
}
