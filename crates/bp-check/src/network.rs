//! Gradient checks for whole networks: the book's `gradient_check.py`.

use ndarray::{ArrayD, ArrayViewD};

use bp_core::Param;
use bp_loss::Targets;
use bp_train::Network;

use crate::report::{GradReport, compare_with_resolution, rounding_resolution};
use bp_core::{numerical_param_gradients, numerical_param_gradients_parallel};

/// The tolerance of a network check in `f64`: an element passes if its relative error
/// `|a - n| / max(|a| + |n|, 1e-8)` is at most `1e-4`, or if `|a - n|` is at most `1e-4` times the
/// largest backprop gradient element of its parameter (or within the rounding resolution).
///
/// A network check cannot be held to the [`LAYER_TOLERANCE`](crate::LAYER_TOLERANCE) of single
/// layers, because the book's loss is not exactly the function whose gradient backprop computes: the
/// cross-entropy takes `ln(y + 1e-7)`, while `SoftmaxWithLoss`'s backward is the gradient without the
/// `1e-7`. Sample `n`'s share of every gradient is therefore scaled by `y_n / (y_n + 1e-7)`, where
/// `y_n` is the probability of its class: `1 - 1e-6` for an untrained ten-class net (`y ≈ 0.1`),
/// `1 - 1e-4` once a class falls to `y = 1e-3`. Where the samples' shares cancel, that difference
/// is large relative to the gradient element but stays small relative to the parameter's gradients
/// as a whole, which the second condition measures. A wrong backprop is off by a relative error of
/// order 1 on whole parameters.
///
/// ```
/// use bp_check::{NETWORK_TOLERANCE, compare_with_resolution};
/// use ndarray::array;
///
/// // A gradient whose second element nearly cancels: off by 1e-9, a relative 5e-4 of itself but
/// // 1e-8 of the parameter's largest gradient, 0.1.
/// let a = array![0.1, 1e-6].into_dyn();
/// let n = array![0.1, 1e-6 + 1e-9].into_dyn();
/// let resolution = NETWORK_TOLERANCE * 0.1;
/// let check = compare_with_resolution("b2", a.view(), n.view(), resolution);
/// assert!(check.max_rel > NETWORK_TOLERANCE);
/// assert!(check.passed(NETWORK_TOLERANCE));
/// ```
pub const NETWORK_TOLERANCE: f64 = 1e-4;

/// What a network check needs of a model: the book's `loss` and `gradient`, and its parameters.
/// bp-train's [`Network`] has it; a model of one's own (a deliberately wrong one, in a test of the
/// check) can have it too.
pub trait CheckedNetwork {
    /// The loss of a training forward pass, as [`Network::loss`].
    fn loss(&mut self, x: ArrayD<f64>, t: Targets<'_, f64>) -> f64;
    /// One forward and backward pass that overwrites every gradient, as [`Network::gradient`].
    fn gradient(&mut self, x: ArrayD<f64>, t: Targets<'_, f64>) -> f64;
    /// Every parameter with its gradient, in a fixed order, as [`Network::visit_params`].
    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, f64>));
    /// The parameters' names in visiting order, as [`Network::param_names`].
    fn param_names(&self) -> Vec<String>;
}

impl CheckedNetwork for Network<f64> {
    fn loss(&mut self, x: ArrayD<f64>, t: Targets<'_, f64>) -> f64 {
        Network::loss(self, x, t)
    }
    fn gradient(&mut self, x: ArrayD<f64>, t: Targets<'_, f64>) -> f64 {
        Network::gradient(self, x, t)
    }
    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, f64>)) {
        Network::visit_params(self, f);
    }
    fn param_names(&self) -> Vec<String> {
        Network::param_names(self)
    }
}

/// The gradients backprop computed, copied in visiting order.
fn backprop_grads<N: CheckedNetwork + ?Sized>(net: &mut N) -> Vec<ArrayD<f64>> {
    let mut grads = Vec::new();
    net.visit_params(&mut |p: Param<'_, f64>| grads.push(p.grad.to_owned()));
    grads
}

/// The report of a network check from backprop and numerical gradients.
fn network_report(
    names: Vec<String>,
    backprop: &[ArrayD<f64>],
    numerical: &[(&'static str, ArrayD<f64>)],
    loss: f64,
) -> GradReport {
    // The cross-entropy is computed from scores of order 1 and averaged: its rounding is a few
    // units in the last place of max(|L|, 1). The 1e-7 inside its logarithm moves each gradient
    // element by up to NETWORK_TOLERANCE of the parameter's gradients (see there).
    let rounding = rounding_resolution(loss.abs().max(1.0));
    let checks = names
        .iter()
        .zip(backprop)
        .zip(numerical)
        .map(|((name, a), (_, n))| {
            let largest = a.fold(0.0, |m: f64, v| m.max(v.abs()));
            let resolution = rounding.max(NETWORK_TOLERANCE * largest);
            compare_with_resolution(name, a.view(), n.view(), resolution)
        })
        .collect();
    GradReport {
        subject: "network".to_owned(),
        checks,
    }
}

/// Checks a network's backprop against numerical gradients, as the book's `gradient_check.py`:
/// `gradient(x, t)` (one forward and backward pass) against the central differences of
/// `loss(x, t)` with respect to every parameter (see [`numerical_param_gradients`]).
///
/// The report has one line per parameter in visiting order, named as the book names them
/// ([`Network::param_names`]: `W1 b1 W2 b2`), each with the book's figure, the mean `|backprop - numerical|`,
/// and the maximum relative error. The resolution of each parameter's comparison (see
/// [`compare_with_resolution`](crate::compare_with_resolution)) is the larger of the
/// [`rounding_resolution`](crate::rounding_resolution) of `max(|loss|, 1)` and
/// [`NETWORK_TOLERANCE`] times the parameter's largest backprop gradient element. The report's
/// subject is `"network"`; rename it at will.
///
/// The loss must be a deterministic function of the parameters: freeze dropout first
/// ([`Network::set_dropout_frozen`], after a training forward has drawn the masks). After the
/// check the parameters are bit for bit what they were.
///
/// Every parameter element costs two training forward passes; [`check_network_parallel`] shares them
/// among threads.
///
/// # Panics
///
/// If `x` and `t` do not fit the network (as [`Network::gradient`]).
///
/// # Example: the book's check on a small net
///
/// ```
/// use bp_check::{NETWORK_TOLERANCE, check_network};
/// use bp_loss::Targets;
/// use bp_train::TwoLayerNet;
/// use ndarray::array;
/// use rand::SeedableRng;
/// use rand_xoshiro::Xoshiro256PlusPlus;
///
/// let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
/// let mut net = TwoLayerNet::<f64>::new(4, 5, 3, 0.5, &mut rng);
/// let x = array![[0.1, 0.9, 0.3, 0.5], [0.8, 0.2, 0.7, 0.4]].into_dyn();
/// let report = check_network(&mut net, x.view(), Targets::Index(&[2, 0]));
/// let names: Vec<_> = report.checks.iter().map(|c| c.name.as_str()).collect();
/// assert_eq!(names, ["W1", "b1", "W2", "b2"]);
/// assert!(report.passed(NETWORK_TOLERANCE), "{report}");
/// ```
pub fn check_network<N: CheckedNetwork + ?Sized>(
    net: &mut N,
    x: ArrayViewD<'_, f64>,
    t: Targets<'_, f64>,
) -> GradReport {
    let loss = net.gradient(x.to_owned(), t);
    let backprop = backprop_grads(net);
    let names = net.param_names();
    let numerical = numerical_param_gradients(
        net,
        |net, f| net.visit_params(f),
        |net| net.loss(x.to_owned(), t),
    );
    network_report(names, &backprop, &numerical, loss)
}

/// As [`check_network`], with the numerical gradient computed by `threads` threads, each on its own
/// clone of the network (see [`numerical_param_gradients_parallel`]); the report is the same, bit for
/// bit. `net` itself runs the backprop pass.
///
/// # Panics
///
/// As [`check_network`].
///
/// # Example
///
/// ```
/// use bp_check::{check_network, check_network_parallel};
/// use bp_loss::Targets;
/// use bp_train::{MultiLayerConfig, MultiLayerNet};
/// use ndarray::array;
/// use rand::SeedableRng;
/// use rand_xoshiro::Xoshiro256PlusPlus;
///
/// let config = MultiLayerConfig::new(3, vec![4, 4], 2);
/// let mut net = MultiLayerNet::<f64>::new(config, &mut Xoshiro256PlusPlus::seed_from_u64(1));
/// let x = array![[0.5, -1.0, 2.0], [1.5, 0.5, -0.5]].into_dyn();
/// let t = Targets::Index(&[1, 0]);
/// let parallel = check_network_parallel(&mut net, x.view(), t, 2);
/// assert_eq!(parallel, check_network(&mut net, x.view(), t));
/// ```
pub fn check_network_parallel<N: CheckedNetwork + Clone + Send>(
    net: &mut N,
    x: ArrayViewD<'_, f64>,
    t: Targets<'_, f64>,
    threads: usize,
) -> GradReport {
    let loss = net.gradient(x.to_owned(), t);
    let backprop = backprop_grads(net);
    let names = net.param_names();
    let numerical = numerical_param_gradients_parallel(
        &*net,
        threads,
        |net, f| net.visit_params(f),
        |net| net.loss(x.to_owned(), t),
    );
    network_report(names, &backprop, &numerical, loss)
}
