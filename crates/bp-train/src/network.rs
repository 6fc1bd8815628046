//! The network: a stack of layers and a loss.

use bp_core::{
    Dropout, Init, Layer, LayerError, LayerSpec, Param, Sequential, build_stack,
    numerical_param_gradients,
};
use bp_loss::{SoftmaxWithLoss, Targets};
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, Ix2, IxDyn, NdFloat, Slice};
use rand::Rng;

/// The rows per [`predict`](Network::predict) call when [`accuracy`](Network::accuracy) walks a
/// data set: large enough for efficient matrix products, small enough to bound the memory of the
/// activations and to keep each chunk in cache for the products that read it (at 784-50-10 it
/// keeps the first product within bp-core's own kernels; see docs/performance.md).
pub const EVAL_CHUNK: usize = 1_000;

/// How a network's weights are drawn and regularised: what is not a layer's own argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetOptions {
    /// How every weight matrix is drawn.
    pub init: Init,
    /// The weight-decay coefficient λ: the loss gains `½ λ Σ ‖W‖²` over every parameter whose
    /// [`ParamKind`](bp_core::ParamKind) decays (the weights, not the biases, gammas or betas), and
    /// each such gradient gains `λ W`.
    pub weight_decay: f64,
}

impl Default for NetOptions {
    /// The book's `weight_init_std = 0.01`, no weight decay.
    fn default() -> Self {
        NetOptions {
            init: Init::Std(0.01),
            weight_decay: 0.0,
        }
    }
}

/// A classifier trained by backpropagation: a [`Sequential`] of layers with [`SoftmaxWithLoss`] on
/// top, as the book's networks keep their layers in an `OrderedDict` and the loss apart. Every
/// network is one of these, built from a list of [`LayerSpec`]s; the book's [`TwoLayerNet`] and
/// [`MultiLayerNet`] are named constructors of such lists.
///
/// [`TwoLayerNet`]: crate::TwoLayerNet
/// [`MultiLayerNet`]: crate::MultiLayerNet
///
/// The forward pass runs the layers in order and the loss; the backward pass runs the loss's
/// backward and the layers in reverse, the first with
/// [`backward_params`](Layer::backward_params), which skips the input gradient nobody reads and
/// hands the input's storage back (see [`gradient_reusing`](Network::gradient_reusing)).
///
/// # Shapes
///
/// `x`: (N, ...) with each sample of [`input_shape`](Network::input_shape)'s element count (a flat
/// row (N, 784) and images (N, 1, 28, 28) both fit an input shape of `[784]`); scores: (N,
/// [`classes`](Network::classes)).
///
/// # Parameters
///
/// Visited layer by layer, each layer's in its own order (`W1 b1 W2 b2` for the book's net; see
/// [`param_names`](Network::param_names)).
///
/// # Example
///
/// ```
/// use bp_core::parse_layers;
/// use bp_loss::Targets;
/// use bp_train::{NetOptions, Network};
/// use ndarray::array;
/// use rand::SeedableRng;
///
/// let specs = parse_layers("affine 8, relu, affine 2")?;
/// let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
/// let mut net = Network::<f64>::new(&[2], specs, NetOptions::default(), &mut rng)?;
/// let x = array![[1.0, 0.0], [0.0, 1.0]].into_dyn();
/// // Weights of 0.01 · N(0, 1) give two nearly equal scores: a loss close to ln 2.
/// let loss = net.gradient(x.clone(), Targets::Index(&[0, 1]));
/// assert!((loss - 2f64.ln()).abs() < 1e-3);
/// assert_eq!(net.param_names(), ["W1", "b1", "W2", "b2"]);
/// assert_eq!(net.predict(x).dim(), (2, 2));
/// # Ok::<(), bp_core::LayerError>(())
/// ```
pub struct Network<A> {
    specs: Vec<LayerSpec>,
    input_shape: Vec<usize>,
    classes: usize,
    modules: Vec<String>,
    options: NetOptions,
    layers: Sequential<A>,
    last_layer: SoftmaxWithLoss<A>,
    /// λ in the element type.
    lambda: A,
    /// The weight-decay term of the last loss.
    penalty: A,
}

impl<A: NdFloat> Clone for Network<A> {
    fn clone(&self) -> Self {
        Network {
            specs: self.specs.clone(),
            input_shape: self.input_shape.clone(),
            classes: self.classes,
            modules: self.modules.clone(),
            options: self.options,
            layers: self.layers.clone(),
            last_layer: self.last_layer.clone(),
            lambda: self.lambda,
            penalty: self.penalty,
        }
    }
}

impl<A: NdFloat> std::fmt::Debug for Network<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("input_shape", &self.input_shape)
            .field("specs", &self.specs)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<A: NdFloat> Network<A> {
    /// The network of the given layers for samples of shape `input_shape` (without the batch
    /// axis), weights drawn from `rng` (see [`build_stack`] for the order).
    ///
    /// # Errors
    ///
    /// A [`LayerError`] naming the first layer that cannot take what the one before gives, or
    /// position 0 if the list is empty or does not end in one score per class (a sample shape of
    /// one axis).
    ///
    /// # Panics
    ///
    /// If the weight decay is negative or not finite.
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(
        input_shape: &[usize],
        specs: Vec<LayerSpec>,
        options: NetOptions,
        rng: &mut R,
    ) -> Result<Self, LayerError> {
        assert!(
            options.weight_decay >= 0.0 && options.weight_decay.is_finite(),
            "Network::new: the weight decay must be finite and >= 0, got {}",
            options.weight_decay
        );
        let stack = build_stack(&specs, input_shape, options.init, rng)?;
        let [classes] = stack.output_shape[..] else {
            return Err(LayerError {
                position: 0,
                text: String::new(),
                reason: format!(
                    "ends in samples of shape {:?}, not one score per class",
                    stack.output_shape
                ),
            });
        };
        Ok(Network {
            specs,
            input_shape: input_shape.to_vec(),
            classes,
            modules: stack.modules,
            options,
            layers: stack.layers,
            last_layer: SoftmaxWithLoss::new(),
            lambda: A::from(options.weight_decay).expect("a finite f64 converts"),
            penalty: A::zero(),
        })
    }

    /// The layer list the network was built from.
    pub fn specs(&self) -> &[LayerSpec] {
        &self.specs
    }

    /// The shape of one input sample, without the batch axis (`[784]` for flat MNIST rows).
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The number of input features, the product of [`input_shape`](Network::input_shape).
    pub fn input_size(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// The number of classes: the last layer's width.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Each layer as PyTorch prints its equivalent module (`Linear(in_features=784,
    /// out_features=50, bias=True)`, `ReLU()`, ...).
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// The initialisation and weight decay.
    pub fn options(&self) -> NetOptions {
        self.options
    }

    /// The layers.
    pub fn layers(&self) -> &Sequential<A> {
        &self.layers
    }

    /// The layers, mutably (to load their tensors from a file, say). Replacing a layer by one of
    /// another shape breaks the network's [`specs`](Network::specs).
    pub fn layers_mut(&mut self) -> &mut Sequential<A> {
        &mut self.layers
    }

    /// The layers of type `T`, first to last: `net.layers_of::<Affine<f32>>()`.
    pub fn layers_of<T: 'static>(&self) -> impl Iterator<Item = &T> {
        self.layers
            .layers()
            .iter()
            .filter_map(|l| l.as_any().downcast_ref::<T>())
    }

    /// Makes every dropout layer reuse its last mask in training forwards (`true`) or draw a new
    /// one each time (`false`, the default), so that the loss is a function of the parameters for
    /// a gradient check. See [`Dropout::set_frozen`].
    pub fn set_dropout_frozen(&mut self, frozen: bool) {
        for layer in self.layers.layers_mut() {
            if let Some(d) = layer.as_any_mut().downcast_mut::<Dropout<A>>() {
                d.set_frozen(frozen);
            }
        }
    }

    /// Reads `x` as (N, input_shape...).
    #[track_caller]
    fn shaped(&self, x: ArrayD<A>) -> ArrayD<A> {
        if x.ndim() == self.input_shape.len() + 1 && x.shape()[1..] == self.input_shape[..] {
            return x;
        }
        let n = x.shape().first().copied().unwrap_or(0);
        assert!(
            x.ndim() >= 2 && x.shape()[1..].iter().product::<usize>() == self.input_size(),
            "Network: input of shape {:?} does not hold samples of shape {:?}",
            x.shape(),
            self.input_shape
        );
        let mut shape = Vec::with_capacity(self.input_shape.len() + 1);
        shape.push(n);
        shape.extend(&self.input_shape);
        x.into_shape_clone(IxDyn(&shape))
            .expect("the element count was checked")
    }

    /// Class scores through the inference path (`&self`: it never touches training caches, so
    /// threads may share a network to predict with).
    ///
    /// # Shapes
    ///
    /// `x`: (N, ...) holding N samples of [`input_shape`](Network::input_shape)'s size; scores:
    /// (N, classes).
    #[track_caller]
    pub fn predict(&self, x: ArrayD<A>) -> Array2<A> {
        self.layers
            .predict(self.shaped(x))
            .into_dimensionality::<Ix2>()
            .expect("the last layer gives (N, classes)")
    }

    /// The book's `loss(x, t)`: the training forward, `SoftmaxWithLoss`, and the weight-decay term
    /// `½ λ Σ ‖W‖²` if the network has one. Returns the mean loss.
    #[track_caller]
    pub fn loss(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> A {
        let scores = self.layers.forward(self.shaped(x));
        let loss = self.last_layer.forward(scores, t);
        self.penalty = self.decay(false);
        loss + self.penalty
    }

    /// The book's `gradient(x, t)`: ONE forward and backward pass; overwrites every parameter
    /// gradient (weight decay's `λ W` included) and returns the loss, so that a training loop never
    /// runs a second forward just to log it.
    #[track_caller]
    pub fn gradient(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> A {
        self.gradient_reusing(x, t).0
    }

    /// As [`gradient`](Network::gradient), and hands back the storage of `x` (contents
    /// unspecified, shape (N, input_shape...)) so that the caller can gather the next batch into
    /// it instead of allocating: the first layer keeps its input for its weight gradient and
    /// returns it from [`backward_params`](Layer::backward_params).
    #[track_caller]
    pub fn gradient_reusing(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> (A, ArrayD<A>) {
        let scores = self.layers.forward(self.shaped(x));
        let loss = self.last_layer.forward(scores, t);
        let dout = self.last_layer.backward(A::one());
        let x = self.layers.backward_params(dout.into_dyn());
        self.penalty = self.decay(true);
        (loss + self.penalty, x)
    }

    /// `½ λ Σ ‖W‖²` over the decaying parameters, summed in visiting order; with `apply`, also adds
    /// `λ W` to each one's gradient in the same pass.
    fn decay(&mut self, apply: bool) -> A {
        if self.options.weight_decay == 0.0 {
            return A::zero();
        }
        let lambda = self.lambda;
        let mut sum = A::zero();
        self.layers.visit_params(&mut |p| {
            if !p.kind.decays() {
                return;
            }
            if apply {
                ndarray::Zip::from(p.grad).and(&p.value).for_each(|g, &w| {
                    *g += lambda * w;
                    sum += w * w;
                });
            } else {
                p.value.for_each(|&w| sum += w * w);
            }
        });
        A::from(0.5).expect("0.5 is a float") * lambda * sum
    }

    /// The regularisation term (weight decay's `½ λ Σ ‖W‖²`) in the loss that the last
    /// [`loss`](Network::loss) or [`gradient`](Network::gradient) returned; 0 without weight
    /// decay. Subtracting it gives the data loss.
    pub fn penalty(&self) -> A {
        self.penalty
    }

    /// Visits every parameter with its gradient, layer by layer. Optimizers keep their state by
    /// position in this order.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, A>)) {
        self.layers.visit_params(f);
    }

    /// The book's parameter names, in visiting order: each parameter's name within its layer and
    /// its occurrence count, `W1 b1 W2 b2` (`gamma1 beta1 ...` for batch normalisation).
    pub fn param_names(&self) -> Vec<String> {
        let mut seen: Vec<(&'static str, usize)> = Vec::new();
        let mut names = Vec::new();
        self.layers.visit_params_ref(&mut |name, _| {
            let count = match seen.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => {
                    *count += 1;
                    *count
                }
                None => {
                    seen.push((name, 1));
                    1
                }
            };
            names.push(format!("{name}{count}"));
        });
        names
    }

    /// The book's `numerical_gradient(x, t)`: the central differences of [`loss`](Network::loss)
    /// with respect to every parameter element (see [`numerical_param_gradients`]), in visiting
    /// order. Slow (two forward passes per element): it is what checks
    /// [`gradient`](Network::gradient). Freeze dropout first
    /// ([`set_dropout_frozen`](Network::set_dropout_frozen)). The parameters are left bit for bit
    /// as they were.
    pub fn numerical_gradient(
        &mut self,
        x: ArrayViewD<'_, A>,
        t: Targets<'_, A>,
    ) -> Vec<ArrayD<A>> {
        numerical_param_gradients(
            self,
            |net, f| net.visit_params(f),
            |net| net.loss(x.to_owned(), t),
        )
        .into_iter()
        .map(|(_, grad)| grad)
        .collect()
    }

    /// The fraction of samples whose largest score (through [`predict`](Network::predict)) is at
    /// their class, computed in chunks of [`EVAL_CHUNK`] samples. 0 for an empty set.
    ///
    /// # Panics
    ///
    /// If `t` does not have one label per sample of `x`.
    #[track_caller]
    pub fn accuracy(&self, x: ArrayViewD<'_, A>, t: &[usize]) -> f64 {
        chunked_accuracy(x, t, EVAL_CHUNK, |chunk| self.predict(chunk))
    }
}

/// The fraction of samples of `x` whose scores (from `predict`, called on chunks of at most
/// `chunk` samples) have their maximum at the label in `t`. Ties go to the lowest class, like
/// NumPy's `argmax`.
///
/// # Panics
///
/// If `t.len()` differs from the number of samples of `x`, or `chunk` is 0.
#[track_caller]
pub fn chunked_accuracy<A: NdFloat>(
    x: ArrayViewD<'_, A>,
    t: &[usize],
    chunk: usize,
    mut predict: impl FnMut(ArrayD<A>) -> Array2<A>,
) -> f64 {
    let n = x.shape().first().copied().unwrap_or(0);
    assert!(
        t.len() == n,
        "accuracy: x has shape {:?} but there are {} labels",
        x.shape(),
        t.len()
    );
    assert!(chunk > 0, "accuracy: the chunk size must be positive");
    if n == 0 {
        return 0.0;
    }
    let mut correct = 0usize;
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let rows = x.slice_axis(Axis(0), Slice::from(start..end)).to_owned();
        let scores = predict(rows);
        correct += count_correct(&scores, &t[start..end]);
        start = end;
    }
    correct as f64 / n as f64
}

/// The number of rows of `scores` whose argmax (first maximum) equals the label.
///
/// # Panics
///
/// If `scores` does not have one row per label.
#[track_caller]
pub fn count_correct<A: NdFloat>(scores: &Array2<A>, t: &[usize]) -> usize {
    assert!(
        scores.nrows() == t.len(),
        "scores of shape {:?} for {} labels",
        scores.shape(),
        t.len()
    );
    scores
        .rows()
        .into_iter()
        .zip(t)
        .filter(|(row, label)| argmax(row.iter().copied()) == Some(**label))
        .count()
}

/// The index of the first maximum (NaN never wins), or `None` for an empty or all-NaN row.
pub fn argmax<A: NdFloat>(values: impl Iterator<Item = A>) -> Option<usize> {
    let mut best: Option<(usize, A)> = None;
    for (i, v) in values.enumerate() {
        if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bp_core::{Affine, BatchNorm, parse_layers};
    use ndarray::{Array2, array};
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn argmax_takes_the_first_maximum_and_skips_nan() {
        assert_eq!(argmax([1.0, 3.0, 3.0, 2.0].into_iter()), Some(1));
        assert_eq!(argmax([f64::NAN, 1.0, 0.5].into_iter()), Some(1));
        assert_eq!(argmax([f64::NAN].into_iter()), None);
        assert_eq!(argmax(std::iter::empty::<f32>()), None);
    }

    #[test]
    fn chunked_accuracy_is_the_same_for_every_chunk_size() {
        let x = array![[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [5.0, 4.0], [0.0, 0.0]].into_dyn();
        let t = [1, 0, 0, 0, 0];
        // The scores are the inputs themselves: correct are rows 0, 1, 3 and 4 (a tie goes to 0).
        for chunk in 1..=6 {
            let acc = chunked_accuracy(x.view(), &t, chunk, |rows| {
                rows.into_dimensionality().unwrap()
            });
            assert_eq!(acc, 0.8, "chunk {chunk}");
        }
        let empty = Array2::<f64>::zeros((0, 2)).into_dyn();
        assert_eq!(
            chunked_accuracy(empty.view(), &[], 3, |r| r.into_dimensionality().unwrap()),
            0.0
        );
    }

    fn net(list: &str, input: &[usize], options: NetOptions) -> Result<Network<f64>, LayerError> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        Network::new(input, parse_layers(list).unwrap(), options, &mut rng)
    }

    #[test]
    fn a_list_that_does_not_end_in_class_scores_is_refused() {
        let err = net("affine 3, relu", &[4], NetOptions::default()).unwrap();
        assert_eq!(err.classes(), 3);
        let err = net("relu", &[2, 3], NetOptions::default()).unwrap_err();
        assert_eq!(err.position, 0);
        assert_eq!(
            err.to_string(),
            "the layer list ends in samples of shape [2, 3], not one score per class"
        );
    }

    #[test]
    fn images_and_flat_rows_of_the_same_size_give_the_same_scores() {
        let n = net("affine 3, relu, affine 2", &[4], NetOptions::default()).unwrap();
        let flat = Array2::from_shape_fn((2, 4), |(i, j)| (i * 4 + j) as f64 * 0.1);
        let images = flat.clone().into_shape_with_order((2, 1, 2, 2)).unwrap();
        assert_eq!(n.predict(flat.into_dyn()), n.predict(images.into_dyn()));
    }

    #[test]
    fn decay_applies_to_weights_only_and_loss_agrees_with_gradient() {
        let options = NetOptions {
            init: Init::Std(0.3),
            weight_decay: 0.25,
        };
        let mut a = net(
            "affine 3, batchnorm, relu, affine 2",
            &[4],
            NetOptions {
                weight_decay: 0.0,
                ..options
            },
        )
        .unwrap();
        let mut b = net("affine 3, batchnorm, relu, affine 2", &[4], options).unwrap();
        let x = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 3 + j * 5) % 7) as f64 * 0.3 - 0.9);
        let t = [0, 1, 0, 1, 1];
        let sum_sq: f64 = a
            .layers_of::<Affine<f64>>()
            .map(|l| l.w().iter().map(|w| w * w).sum::<f64>())
            .sum();
        assert_eq!(a.layers_of::<BatchNorm<f64>>().count(), 1);
        let la = a.gradient(x.clone().into_dyn(), Targets::Index(&t));
        let lb = b.gradient(x.clone().into_dyn(), Targets::Index(&t));
        assert!((lb - la - 0.125 * sum_sq).abs() < 1e-12);
        assert_eq!(lb, b.loss(x.into_dyn(), Targets::Index(&t)));
        let grads = |n: &mut Network<f64>| {
            let mut g = Vec::new();
            n.visit_params(&mut |p| g.push((p.kind, p.grad.to_owned(), p.value.to_owned())));
            g
        };
        for ((kind, ga, w), (_, gb, _)) in grads(&mut a).into_iter().zip(grads(&mut b)) {
            let expected = if kind.decays() {
                &ga + &(&w * 0.25)
            } else {
                ga
            };
            for (x, y) in gb.iter().zip(&expected) {
                assert!((x - y).abs() < 1e-15, "{kind:?}");
            }
        }
    }

    #[test]
    fn the_numerical_gradient_agrees_with_backprop() {
        let mut n = net(
            "affine 5, batchnorm, sigmoid, dropout 0.3, affine 3",
            &[4],
            NetOptions {
                init: Init::He,
                weight_decay: 0.1,
            },
        )
        .unwrap();
        let x = Array2::from_shape_fn((6, 4), |(i, j)| ((i * 3 + j * 5) % 7) as f64 * 0.3 - 0.9);
        let t = [0, 1, 2, 0, 1, 2];
        n.gradient(x.clone().into_dyn(), Targets::Index(&t));
        n.set_dropout_frozen(true);
        n.gradient(x.clone().into_dyn(), Targets::Index(&t));
        let mut backprop = Vec::new();
        n.visit_params(&mut |p| backprop.push(p.grad.to_owned()));
        let numerical = n.numerical_gradient(x.view().into_dyn(), Targets::Index(&t));
        assert_eq!(numerical.len(), 6);
        for (a, b) in backprop.iter().zip(&numerical) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-6 * (1.0 + x.abs()), "{x} vs {y}");
            }
        }
    }
}
