//! Network checks of bp-train's nets: they pass, they are the same in parallel, their residual is
//! the book's `1e-7` inside the logarithm, and a network with a wrong gradient fails.

use bp_check::{
    CheckedNetwork, GradReport, NETWORK_TOLERANCE, check_network, check_network_parallel,
    random_input,
};
use bp_core::{Init, Layer, Param};
use bp_loss::{Targets, softmax};
use bp_train::{Activation, MultiLayerConfig, MultiLayerNet, Network, TwoLayerNet};
use ndarray::{Array2, ArrayD, Axis};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

fn names(report: &GradReport) -> Vec<&str> {
    report.checks.iter().map(|c| c.name.as_str()).collect()
}

#[track_caller]
fn assert_passes(report: &GradReport, what: &str) {
    assert!(
        report.passed(NETWORK_TOLERANCE),
        "{what} failed:\n{report:#}"
    );
}

/// A `TwoLayerNet(12, 8, 4)` with weights of std 0.2, and a batch whose hidden pre-activations are
/// all at least 0.05 from Relu's kink (redrawn until they are).
///
/// The scores stay below about 1, so no class gets a tiny probability: the book's `1e-7` in the
/// logarithm moves the gradient by a relative `1e-7 / y` (see
/// `the_residual_is_the_books_delta_in_the_logarithm`), and `y = 1e-4` would make that `1e-3`.
fn two_layer_net(seed: u64) -> (Network<f64>, ArrayD<f64>, Vec<usize>) {
    let mut rng = rng(seed);
    let net = TwoLayerNet::<f64>::new(12, 8, 4, 0.2, &mut rng);
    let n = rng.random_range(2..=6);
    let mut draw = seed * 1000;
    let x = loop {
        let x = random_input(&[n, 12], draw);
        if net.layers().layers()[0]
            .predict(x.clone())
            .iter()
            .all(|z| z.abs() >= 0.05)
        {
            break x;
        }
        draw += 1;
    };
    let t = (0..n).map(|_| rng.random_range(0..4)).collect();
    (net, x, t)
}

#[test]
fn two_layer_net_passes_with_index_and_one_hot_targets() {
    for seed in 0..10 {
        let (mut net, x, t) = two_layer_net(seed);
        let report = check_network(&mut net, x.view(), Targets::Index(&t));
        assert_eq!(names(&report), ["W1", "b1", "W2", "b2"]);
        assert_passes(&report, &format!("TwoLayerNet, seed {seed}"));

        let mut one_hot = Array2::zeros((t.len(), 4));
        for (mut row, &k) in one_hot.axis_iter_mut(Axis(0)).zip(&t) {
            row[k] = 1.0;
        }
        let one_hot_report = check_network(&mut net, x.view(), Targets::OneHot(one_hot.view()));
        assert_eq!(
            one_hot_report, report,
            "one-hot and index targets give the same check"
        );
    }
}

/// A `MultiLayerNet(10, [8, 6], 5)` with every option (Sigmoid, Xavier, batch normalisation,
/// dropout 0.2 with frozen masks, weight decay 0.1) and a batch of 8.
fn net_with_every_option(seed: u64) -> (Network<f64>, ArrayD<f64>, Vec<usize>) {
    let mut config = MultiLayerConfig::new(10, vec![8, 6], 5);
    config.activation = Activation::Sigmoid;
    config.init = Init::Xavier;
    config.batch_norm = true;
    config.dropout = Some(0.2);
    config.weight_decay = 0.1;
    let mut rng = rng(seed);
    let mut net = MultiLayerNet::<f64>::new(config, &mut rng);
    let x = random_input(&[8, 10], seed);
    let t: Vec<usize> = (0..8).map(|_| rng.random_range(0..5)).collect();
    net.loss(x.clone(), Targets::Index(&t));
    net.set_dropout_frozen(true);
    (net, x, t)
}

#[test]
fn multi_layer_net_with_every_option_passes() {
    for seed in 0..10 {
        let (mut net, x, t) = net_with_every_option(seed);
        let report = check_network(&mut net, x.view(), Targets::Index(&t));
        assert_eq!(
            names(&report),
            [
                "W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"
            ]
        );
        assert_passes(&report, &format!("MultiLayerNet, seed {seed}"));
        // The biases before batch normalisation have gradient 0 (normalisation removes shifts);
        // the central difference gives rounding noise, which the resolution absorbs.
        for bias in ["b1", "b2"] {
            let check = report.checks.iter().find(|c| c.name == bias).unwrap();
            assert!(check.max_abs < 1e-10, "{check:#}");
        }
    }
}

#[test]
fn deep_relu_net_with_weight_decay_passes() {
    // MultiLayerNet(10, [8, 8, 6], 4), Relu, weights of std 0.3 (scores of order 1, as above),
    // weight decay 0.05; inputs redrawn until every hidden pre-activation is at least 0.01 from the
    // kink (a parameter step of h moves them by less than 1e-3).
    for seed in 0..10 {
        let mut config = MultiLayerConfig::new(10, vec![8, 8, 6], 4);
        config.init = Init::Std(0.3);
        config.weight_decay = 0.05;
        let mut net = MultiLayerNet::<f64>::new(config, &mut rng(seed));
        let mut draw = seed * 1000;
        let x = loop {
            let x = random_input(&[6, 10], draw);
            let mut h = x.clone();
            let mut clear = true;
            let affines: Vec<_> = net.layers_of::<bp_core::Affine<f64>>().collect();
            for affine in &affines[..affines.len() - 1] {
                h = affine.predict(h);
                clear &= h.iter().all(|z| z.abs() >= 0.01);
                h.mapv_inplace(|z| z.max(0.0));
            }
            if clear {
                break x;
            }
            draw += 1;
        };
        let t: Vec<usize> = (0..6).map(|i| (i + seed as usize) % 4).collect();
        let report = check_network(&mut net, x.view(), Targets::Index(&t));
        assert_eq!(
            names(&report),
            ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4"]
        );
        assert_passes(&report, &format!("Relu MultiLayerNet, seed {seed}"));
    }
}

#[test]
fn the_parallel_check_is_the_sequential_one() {
    let (mut net, x, t) = two_layer_net(3);
    let sequential = check_network(&mut net, x.view(), Targets::Index(&t));
    for threads in [0, 1, 2, 3, 7, 1000] {
        let parallel = check_network_parallel(&mut net, x.view(), Targets::Index(&t), threads);
        assert_eq!(parallel, sequential, "{threads} threads");
    }
    let (mut net, x, t) = net_with_every_option(4);
    let sequential = check_network(&mut net, x.view(), Targets::Index(&t));
    let parallel = check_network_parallel(&mut net, x.view(), Targets::Index(&t), 2);
    assert_eq!(parallel, sequential);
}

#[test]
fn the_residual_is_the_books_delta_in_the_logarithm() {
    // The loss is -(1/N) Σ ln(y_n + 1e-7), so the exact gradient of the output bias is
    // (1/N) Σ w_n (y_n - t_n) with w_n = y_n / (y_n + 1e-7) (y_n: the probability of sample n's
    // class), while backprop computes it with w_n = 1. The numerical gradient follows the former
    // to rounding; the difference from backprop is the `1e-7`, not a backprop error.
    let (mut net, x, t) = two_layer_net(5);
    let report = check_network(&mut net, x.view(), Targets::Index(&t));
    let y = softmax(net.predict(x.clone()).view());
    let n = t.len() as f64;
    let mut exact = ndarray::Array1::<f64>::zeros(4);
    let mut uncorrected = ndarray::Array1::<f64>::zeros(4);
    for (row, &k) in y.axis_iter(Axis(0)).zip(&t) {
        let w = row[k] / (row[k] + bp_loss::DELTA);
        for (j, &p) in row.iter().enumerate() {
            let g = (p - if j == k { 1.0 } else { 0.0 }) / n;
            exact[j] += w * g;
            uncorrected[j] += g;
        }
    }
    let b2 = &report.checks[3];
    assert_eq!(b2.name, "b2");
    let mut numerical = Vec::new();
    let mut backprop = Vec::new();
    net.gradient(x.clone(), Targets::Index(&t));
    net.visit_params(&mut |p: Param<'_, f64>| backprop.push(p.grad.to_owned()));
    let grads = bp_check::numerical_param_gradients(
        &mut net,
        |net, f| net.visit_params(f),
        |net| net.loss(x.clone(), Targets::Index(&t)),
    );
    numerical.extend(grads[3].1.iter().copied());
    for j in 0..4 {
        assert!((backprop[3][j] - uncorrected[j]).abs() < 1e-15);
        // The numerical gradient matches the exact one a hundred times better than backprop's.
        let to_exact = (numerical[j] - exact[j]).abs();
        let to_backprop = (numerical[j] - backprop[3][j]).abs();
        assert!(to_exact < 2e-10, "{to_exact:e}");
        assert!(
            to_backprop > 100.0 * to_exact,
            "{to_backprop:e} vs {to_exact:e}"
        );
    }
}

/// A network whose loss has weight decay, `½ λ Σ ‖W‖²`, but whose gradient forgets its `λ W`: the
/// classic mistake of adding a regulariser to the loss only.
#[derive(Clone)]
struct ForgetsDecay {
    net: Network<f64>,
    lambda: f64,
}

impl ForgetsDecay {
    fn penalty(&mut self) -> f64 {
        let mut sum = 0.0;
        self.net.visit_params(&mut |p: Param<'_, f64>| {
            if p.name == "W" {
                sum += p.value.iter().map(|w| w * w).sum::<f64>();
            }
        });
        0.5 * self.lambda * sum
    }
}

impl CheckedNetwork for ForgetsDecay {
    fn loss(&mut self, x: ArrayD<f64>, t: Targets<'_, f64>) -> f64 {
        self.net.loss(x, t) + self.penalty()
    }

    fn gradient(&mut self, x: ArrayD<f64>, t: Targets<'_, f64>) -> f64 {
        self.net.gradient(x, t) + self.penalty()
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, f64>)) {
        self.net.visit_params(f);
    }

    fn param_names(&self) -> Vec<String> {
        self.net.param_names()
    }
}

#[test]
fn a_gradient_that_forgets_weight_decay_fails_on_the_weights() {
    let (net, x, t) = two_layer_net(7);
    let mut wrong = ForgetsDecay { net, lambda: 0.1 };
    let report = check_network(&mut wrong, x.view(), Targets::Index(&t));
    let failures: Vec<_> = report
        .failures(NETWORK_TOLERANCE)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failures, ["W1", "W2"], "{report:#}");
    // Backprop misses exactly λ W: the worst element's difference is λ times its weight.
    let w1 = &report.checks[0];
    let mut weight = 0.0;
    let mut k = 0;
    wrong.net.visit_params(&mut |p: Param<'_, f64>| {
        if k == 0 {
            weight = p.value[w1.worst_index.as_slice()];
        }
        k += 1;
    });
    let missing = w1.worst_numerical - w1.worst_backprop;
    assert!(
        (missing - 0.1 * weight).abs() < 1e-8,
        "{missing} vs λ W = {}",
        0.1 * weight
    );
    assert!(format!("{report:#}").contains("W1: "), "{report:#}");
}
