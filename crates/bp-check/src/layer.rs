//! Gradient checks for single layers and for loss nodes.

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, IxDyn, Zip};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

use bp_core::{Layer, Param};
use bp_loss::{SoftmaxWithLoss, Targets};

use crate::report::{GradReport, compare_with_resolution, rounding_resolution};
use bp_core::{numerical_gradient, numerical_param_gradients};

/// The tolerance on the maximum relative error that every layer must meet in `f64`.
///
/// The central difference with `h = 1e-4` is accurate to about `1e-8` relative on smooth functions,
/// and the wrong backprops the checker exists to catch give relative errors near 1. Where a gradient
/// element nearly cancels (a sum of terms much larger than itself), the truncation error
/// `h² · f⁽³⁾ / 6` does not cancel with it and can exceed `1e-6` of the element: about one random
/// case in a thousand for a three-layer sequence or a batch normalisation.
///
/// ```
/// use bp_check::{LAYER_TOLERANCE, check_layer, random_input};
/// use bp_core::Relu;
///
/// let report = check_layer(&mut Relu::new(), random_input(&[2, 3], 0).view(), 1);
/// assert!(report.max_rel() < LAYER_TOLERANCE);
/// assert_eq!(LAYER_TOLERANCE, 1e-6);
/// ```
pub const LAYER_TOLERANCE: f64 = 1e-6;

/// The smallest `|x|` that [`random_input`] produces: 1000 times the step `h`, so that no
/// perturbation of an input can cross Relu's kink at 0.
///
/// ```
/// use bp_check::{H, INPUT_MARGIN};
///
/// assert_eq!(INPUT_MARGIN / H, 1000.0);
/// ```
pub const INPUT_MARGIN: f64 = 0.1;

/// Standard normal values of the given shape drawn from a generator seeded with `seed`, each
/// resampled until `|x| >= 0.1` ([`INPUT_MARGIN`]).
///
/// Relu is not differentiable at 0, and a central difference across the kink averages the two
/// one-sided slopes; inputs at least `1000 h` away from 0 keep every perturbation on one side.
///
/// ```
/// use bp_check::random_input;
///
/// let x = random_input(&[4, 3], 7);
/// assert_eq!(x.shape(), [4, 3]);
/// assert!(x.iter().all(|v| v.abs() >= 0.1));
/// assert_eq!(x, random_input(&[4, 3], 7)); // reproducible
/// ```
pub fn random_input(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        loop {
            let z: f64 = StandardNormal.sample(&mut rng);
            if z.abs() >= INPUT_MARGIN {
                return z;
            }
        }
    })
}

/// Names for parameters visited in order: the names themselves if they are all different, else each
/// numbered by its occurrence, as the book names a network's parameters (`W1 b1 W2 b2`).
pub(crate) fn numbered_names(names: &[&str]) -> Vec<String> {
    let repeated = names
        .iter()
        .enumerate()
        .any(|(i, n)| names[..i].contains(n));
    if !repeated {
        return names.iter().map(|n| (*n).to_owned()).collect();
    }
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let occurrence = names[..i].iter().filter(|m| *m == n).count() + 1;
            format!("{n}{occurrence}")
        })
        .collect()
}

/// `Σ forward(x) · r`, the scalar whose gradient with respect to the layer's output is `r`.
fn weighted_sum(layer: &mut dyn Layer<f64>, x: ArrayD<f64>, r: &ArrayViewD<'_, f64>) -> f64 {
    let out = layer.forward(x);
    Zip::from(&out)
        .and(r)
        .fold(0.0, |acc, &o, &r| o.mul_add(r, acc))
}

/// Checks a layer's backward pass against numerical gradients, for a given upstream gradient `r`.
///
/// The scalar `L = Σ forward(x) · r` has `∂L/∂out = r`, so `backward(r)` must return `∂L/∂x` and
/// write `∂L/∂θ` for every parameter `θ`. Both are compared with central differences of `L` (see
/// [`numerical_gradient`] and [`numerical_param_gradients`]), which evaluate `L` with the layer's
/// training [`forward`](Layer::forward).
///
/// The report holds `"dx"` first, then the parameters in visiting order, named as the layer names
/// them, numbered by occurrence if a name repeats (`W1 b1 W2 b2` for a
/// [`Sequential`](bp_core::Sequential) of two Affine layers). Differences within the
/// [`rounding_resolution`](crate::rounding_resolution) of `Σ |forward(x) · r|` count as agreement.
///
/// The forward pass must be a deterministic function of `x` and the parameters (freeze a dropout
/// mask first), and the inputs of any Relu inside the layer must be farther than about `1e-3` from 0.
/// After the check the parameters are bit for bit what they were; the layer's caches hold a
/// perturbed forward.
///
/// # Panics
///
/// If `r` is not shaped like `forward(x)`.
///
/// # Example
///
/// ```
/// use bp_check::{LAYER_TOLERANCE, check_layer_with_upstream};
/// use bp_core::Affine;
/// use ndarray::array;
///
/// let mut affine = Affine::new(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], array![0.0, 1.0, 2.0]);
/// let x = array![[0.5, -1.0]].into_dyn();
/// let r = array![[1.0, -1.0, 0.5]].into_dyn();
/// let report = check_layer_with_upstream(&mut affine, x.view(), r.view());
/// let names: Vec<_> = report.checks.iter().map(|c| c.name.as_str()).collect();
/// assert_eq!(names, ["dx", "W", "b"]);
/// // An affine map is linear: the central difference is exact up to rounding.
/// assert!(report.passed(LAYER_TOLERANCE), "{report}");
/// assert!(report.max_rel() < 1e-9);
/// ```
#[track_caller]
pub fn check_layer_with_upstream(
    layer: &mut dyn Layer<f64>,
    x: ArrayViewD<'_, f64>,
    r: ArrayViewD<'_, f64>,
) -> GradReport {
    let out = layer.forward(x.to_owned());
    assert!(
        out.shape() == r.shape(),
        "check_layer: {} returns shape {:?} for input shape {:?}, but the upstream gradient has \
         shape {:?}",
        layer.name(),
        out.shape(),
        x.shape(),
        r.shape()
    );
    let scale = Zip::from(&out)
        .and(&r)
        .fold(0.0, |acc, &o, &r| acc + (o * r).abs());
    let resolution = rounding_resolution(scale);
    let dx = layer.backward(r.to_owned());
    let mut backprop: Vec<(&'static str, ArrayD<f64>)> = Vec::new();
    layer.visit_params(&mut |p: Param<'_, f64>| backprop.push((p.name, p.grad.to_owned())));

    let numerical_dx = numerical_gradient(|x| weighted_sum(layer, x.clone(), &r), x.view());
    let numerical = numerical_param_gradients(
        layer,
        |layer, f| layer.visit_params(f),
        |layer| weighted_sum(layer, x.to_owned(), &r),
    );

    let mut checks = vec![compare_with_resolution(
        "dx",
        dx.view(),
        numerical_dx.view(),
        resolution,
    )];
    let names: Vec<&str> = numerical.iter().map(|(name, _)| *name).collect();
    for ((name, (_, numerical)), (_, backprop)) in
        numbered_names(&names).iter().zip(&numerical).zip(&backprop)
    {
        checks.push(compare_with_resolution(
            name,
            backprop.view(),
            numerical.view(),
            resolution,
        ));
    }
    GradReport {
        subject: layer.name().to_owned(),
        checks,
    }
}

/// Distinguishes the upstream gradients of [`random_upstream`] from the inputs of [`random_input`]
/// drawn with the same seed.
const UPSTREAM_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;

/// The upstream gradient [`check_layer`] uses: standard normal values of the given shape, drawn from
/// a generator seeded from `seed` on a stream of its own, so that they are unrelated to
/// [`random_input`] with the same seed (an `r` that copied `x` would, for instance, lie in the
/// directions batch normalisation removes and make its `dx` vanish).
///
/// ```
/// use bp_check::{random_input, random_upstream};
///
/// let r = random_upstream(&[3, 2], 5);
/// assert_eq!(r.shape(), [3, 2]);
/// assert_eq!(r, random_upstream(&[3, 2], 5));
/// assert_ne!(r, random_input(&[3, 2], 5));
/// ```
pub fn random_upstream(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ UPSTREAM_STREAM);
    bp_core::randn(IxDyn(shape), 1.0, &mut rng)
}

/// Checks a layer's backward pass against numerical gradients with a random upstream gradient:
/// `r = random_upstream(forward(x).shape(), seed)` (see [`random_upstream`]). See
/// [`check_layer_with_upstream`] for what is compared and what the layer must satisfy.
///
/// A random `r` (rather than all ones) weights every output differently, so a backward that mixes up
/// outputs, or sums where it should not, cannot hide.
///
/// # Example: Sigmoid, whose gradient is `y (1 - y)`
///
/// ```
/// use bp_check::{LAYER_TOLERANCE, check_layer, random_input};
/// use bp_core::Sigmoid;
///
/// let x = random_input(&[3, 4], 1);
/// let report = check_layer(&mut Sigmoid::new(), x.view(), 2);
/// assert_eq!(report.subject, "Sigmoid");
/// assert!(report.passed(LAYER_TOLERANCE), "{report}");
/// ```
pub fn check_layer(layer: &mut dyn Layer<f64>, x: ArrayViewD<'_, f64>, seed: u64) -> GradReport {
    let out = layer.forward(x.to_owned());
    let r = random_upstream(out.shape(), seed);
    check_layer_with_upstream(layer, x, r.view())
}

/// A loss node: scores in, a scalar out, and a backward pass from the scalar's upstream gradient to
/// the scores (the shape of the book's `SoftmaxWithLoss`, with the targets bound inside the node):
/// `forward(x) = L(x)`, `backward(dout) = dout · ∂L/∂x`. [`check_loss`] checks one; [`SoftmaxLoss`]
/// is the book's.
///
/// ```
/// use bp_check::{LossNode, SoftmaxLoss};
/// use bp_loss::Targets;
/// use ndarray::array;
///
/// let mut node: Box<dyn LossNode> = Box::new(SoftmaxLoss::new(Targets::Index(&[0])));
/// let loss = node.forward(array![[0.0, 0.0, 0.0, 0.0]]); // uniform over 4 classes: ln 4
/// assert!((loss - 4f64.ln()).abs() < 1e-6);
/// assert_eq!(node.backward(1.0), array![[-0.75, 0.25, 0.25, 0.25]]);
/// assert_eq!(node.name(), "SoftmaxWithLoss");
/// ```
pub trait LossNode {
    /// The node's name, for reports.
    fn name(&self) -> &str {
        "loss"
    }

    /// The loss for scores `x` of shape (N, C); keeps what `backward` needs.
    fn forward(&mut self, x: Array2<f64>) -> f64;

    /// `dout · ∂loss/∂x` for the scores of the last `forward`.
    fn backward(&mut self, dout: f64) -> Array2<f64>;
}

/// [`SoftmaxWithLoss`] with its targets, as a [`LossNode`].
///
/// ```
/// use bp_check::{LossNode, SoftmaxLoss};
/// use bp_loss::Targets;
/// use ndarray::array;
///
/// let mut node = SoftmaxLoss::new(Targets::Index(&[1]));
/// let loss = node.forward(array![[0.0, 0.0]]); // uniform softmax: ln 2
/// assert!((loss - 2f64.ln()).abs() < 1e-6);
/// assert_eq!(node.backward(2.0), array![[1.0, -1.0]]); // 2 · (y - t) / 1
/// ```
#[derive(Clone, Debug)]
pub struct SoftmaxLoss<'t> {
    /// The loss node.
    pub node: SoftmaxWithLoss<f64>,
    /// The targets every `forward` is scored against.
    pub targets: Targets<'t, f64>,
}

impl<'t> SoftmaxLoss<'t> {
    /// A softmax-with-loss node scored against `targets`.
    pub fn new(targets: Targets<'t, f64>) -> Self {
        SoftmaxLoss {
            node: SoftmaxWithLoss::new(),
            targets,
        }
    }
}

impl LossNode for SoftmaxLoss<'_> {
    fn name(&self) -> &str {
        "SoftmaxWithLoss"
    }

    fn forward(&mut self, x: Array2<f64>) -> f64 {
        self.node.forward(x, self.targets)
    }

    fn backward(&mut self, dout: f64) -> Array2<f64> {
        self.node.backward(dout)
    }
}

/// Checks a loss node's backward pass: `backward(dout)` against the numerical gradient of
/// `dout · loss(x)` with respect to the scores `x`. The report has one line, `"dx"`.
///
/// Use a `dout` other than 1, so that a backward that ignores its argument fails. Differences within
/// the [`rounding_resolution`](crate::rounding_resolution) of `|dout| · (|loss| + max |x|)` count as
/// agreement (the log-sum-exp of scores `x` is rounded in proportion to their size).
///
/// # Example: a squared error, `loss = ½ Σ x²`, whose gradient is `x`
///
/// ```
/// use bp_check::{LAYER_TOLERANCE, LossNode, check_loss};
/// use ndarray::{Array2, array};
///
/// struct HalfSquare(Array2<f64>);
/// impl LossNode for HalfSquare {
///     fn forward(&mut self, x: Array2<f64>) -> f64 {
///         let loss = 0.5 * x.iter().map(|v| v * v).sum::<f64>();
///         self.0 = x;
///         loss
///     }
///     fn backward(&mut self, dout: f64) -> Array2<f64> {
///         self.0.mapv(|v| dout * v)
///     }
/// }
///
/// let x = array![[1.0, -2.0], [0.5, 3.0]];
/// let report = check_loss(&mut HalfSquare(Array2::zeros((0, 0))), x.view(), 2.0);
/// assert!(report.passed(LAYER_TOLERANCE), "{report}");
/// ```
pub fn check_loss(node: &mut dyn LossNode, x: ArrayView2<'_, f64>, dout: f64) -> GradReport {
    let loss = node.forward(x.to_owned());
    let dx = node.backward(dout);
    let numerical = numerical_gradient(|x| dout * node.forward(x.clone()), x);
    let largest = x.fold(0.0, |m: f64, v| m.max(v.abs()));
    let resolution = rounding_resolution(dout * (loss.abs() + largest));
    GradReport {
        subject: node.name().to_owned(),
        checks: vec![compare_with_resolution(
            "dx",
            dx.into_dyn().view(),
            numerical.into_dyn().view(),
            resolution,
        )],
    }
}

/// Checks [`SoftmaxWithLoss`]: `backward(2)` against the numerical gradient of `2 · loss(x, t)` (see
/// [`check_loss`]). Its backward is `dout · (y - t) / N`.
///
/// The book's loss is `-Σ t ln(y + 1e-7) / N`, and the `1e-7` makes its exact gradient differ from
/// `(y - t) / N` by a relative `1e-7 / y_t`, where `y_t` is the probability of the sample's class:
/// below `1e-6` (the [`LAYER_TOLERANCE`]) only while every `y_t` is above about 0.05. Scores that give
/// a class a probability near 0 show that difference, which is the loss's, not backprop's.
///
/// # Panics
///
/// If `x` is not (N, C) with targets that fit it, as [`SoftmaxWithLoss::forward`].
///
/// # Example: the book's five samples
///
/// ```
/// use bp_check::{LAYER_TOLERANCE, check_softmax_with_loss};
/// use bp_loss::Targets;
/// use ndarray::array;
///
/// let x = array![[1.7968638, 0.0, 0.0], [0.79365722, 0.0, 0.0],
///                [0.68992279, 0.11283528, 0.9215842], [0.0, 0.0, 0.37175357],
///                [0.4940006, 0.0, 1.18968491]];
/// let report = check_softmax_with_loss(x.view(), Targets::Index(&[0, 0, 2, 2, 0]));
/// assert!(report.passed(LAYER_TOLERANCE), "{report}");
/// ```
pub fn check_softmax_with_loss(x: ArrayView2<'_, f64>, t: Targets<'_, f64>) -> GradReport {
    check_loss(&mut SoftmaxLoss::new(t), x, 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_numbered_only_when_they_repeat() {
        assert_eq!(numbered_names(&["W", "b"]), ["W", "b"]);
        assert_eq!(
            numbered_names(&["W", "b", "W", "b"]),
            ["W1", "b1", "W2", "b2"]
        );
        assert_eq!(
            numbered_names(&["W", "b", "gamma", "beta", "W", "b"]),
            ["W1", "b1", "gamma1", "beta1", "W2", "b2"]
        );
        assert!(numbered_names(&[]).is_empty());
    }
}
