//! The book's multi-layer net (chapter 6), with its optional batch normalisation, dropout and weight
//! decay (the book's `MultiLayerNetExtend`).

use bp_core::{Affine, BatchNorm, Dropout, Init, Layer, Param, Relu, Sigmoid};
use bp_loss::{SoftmaxWithLoss, Targets};
use ndarray::{Array2, ArrayD, ArrayViewD, Ix2, NdFloat, Zip};
use rand::Rng;

use crate::network::Network;

/// The activation function of the hidden layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Activation {
    /// The rectified linear unit, `max(x, 0)`.
    #[default]
    Relu,
    /// The logistic sigmoid, `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Activation {
    /// The lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
        }
    }
}

/// The architecture and regularisation of a [`MultiLayerNet`].
#[derive(Clone, Debug, PartialEq)]
pub struct MultiLayerConfig {
    /// The number of input features (784 for MNIST).
    pub input_size: usize,
    /// The width of each hidden layer, first to last; may be empty (softmax regression).
    pub hidden_sizes: Vec<usize>,
    /// The number of classes.
    pub output_size: usize,
    /// The hidden layers' activation.
    pub activation: Activation,
    /// How the weights are drawn: the book's `weight_init_std` (a number, `'relu'`/`'he'` or
    /// `'sigmoid'`/`'xavier'`).
    pub init: Init,
    /// Dropout after each hidden activation with this ratio, if any.
    pub dropout: Option<f64>,
    /// Batch normalisation between each hidden affine layer and its activation.
    pub batch_norm: bool,
    /// The weight-decay coefficient λ: the loss gains `½ λ Σ ‖W‖²` over every weight matrix (not
    /// the biases, gammas or betas) and each `dW` gains `λ W`.
    pub weight_decay: f64,
}

impl MultiLayerConfig {
    /// A plain net: Relu, the book's `weight_init_std = 0.01`, no dropout, no batch normalisation,
    /// no weight decay.
    pub fn new(input_size: usize, hidden_sizes: Vec<usize>, output_size: usize) -> Self {
        MultiLayerConfig {
            input_size,
            hidden_sizes,
            output_size,
            activation: Activation::Relu,
            init: Init::Std(0.01),
            dropout: None,
            batch_norm: false,
            weight_decay: 0.0,
        }
    }

    /// The layer sizes from input to output, such as `[784, 100, 10]`.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = Vec::with_capacity(self.hidden_sizes.len() + 2);
        sizes.push(self.input_size);
        sizes.extend(&self.hidden_sizes);
        sizes.push(self.output_size);
        sizes
    }

    /// Whether this is exactly the book's [`TwoLayerNet`](crate::TwoLayerNet): one Relu hidden layer,
    /// a fixed init std, no dropout, batch normalisation or weight decay.
    pub fn is_two_layer_net(&self) -> bool {
        self.hidden_sizes.len() == 1
            && self.activation == Activation::Relu
            && matches!(self.init, Init::Std(_))
            && self.dropout.is_none()
            && !self.batch_norm
            && self.weight_decay == 0.0
    }
}

/// A hidden activation layer.
#[derive(Clone, Debug)]
enum Act<A> {
    Relu(Relu),
    Sigmoid(Sigmoid<A>),
}

impl<A: NdFloat> Act<A> {
    fn layer(&self) -> &dyn Layer<A> {
        match self {
            Act::Relu(l) => l,
            Act::Sigmoid(l) => l,
        }
    }

    fn layer_mut(&mut self) -> &mut dyn Layer<A> {
        match self {
            Act::Relu(l) => l,
            Act::Sigmoid(l) => l,
        }
    }
}

/// One hidden block: `Affine -> [BatchNorm] -> activation -> [Dropout]`.
#[derive(Clone, Debug)]
struct Hidden<A> {
    affine: Affine<A>,
    batch_norm: Option<BatchNorm<A>>,
    act: Act<A>,
    dropout: Option<Dropout<A>>,
}

/// The book's `MultiLayerNet` / `MultiLayerNetExtend`: any number of hidden blocks
/// `Affine -> [BatchNorm] -> Relu|Sigmoid -> [Dropout]`, then `Affine -> SoftmaxWithLoss`.
///
/// Weight decay adds `½ λ Σ ‖W‖²` to the loss and `λ W` to each weight gradient; the gradients the
/// net hands out through [`visit_params`](Network::visit_params) include it.
///
/// With dropout, each training forward draws new masks, so two calls of [`loss`](Network::loss) on
/// the same batch differ; [`set_dropout_frozen`](MultiLayerNet::set_dropout_frozen) makes every
/// training forward reuse the last masks (for gradient checks).
///
/// # Parameters
///
/// Visited layer by layer: `W, b` of each Affine and `gamma, beta` of each BatchNorm, in network order
/// (`W1 b1 gamma1 beta1 W2 b2 gamma2 beta2 ... W_last b_last`).
///
/// # Example
///
/// ```
/// use bp_core::Init;
/// use bp_loss::Targets;
/// use bp_train::{Activation, MultiLayerConfig, MultiLayerNet, Network, param_names};
/// use ndarray::array;
/// use rand::SeedableRng;
/// use rand_xoshiro::Xoshiro256PlusPlus;
///
/// let config = MultiLayerConfig {
///     activation: Activation::Relu,
///     init: Init::He,
///     batch_norm: true,
///     dropout: Some(0.2),
///     weight_decay: 0.01,
///     ..MultiLayerConfig::new(3, vec![8, 8], 2)
/// };
/// let mut net = MultiLayerNet::<f64>::new(config, &mut Xoshiro256PlusPlus::seed_from_u64(0));
/// assert_eq!(
///     param_names(&mut net),
///     ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
/// );
/// let loss = net.gradient(array![[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]].into_dyn(), Targets::Index(&[0, 1]));
/// assert!(loss.is_finite());
/// ```
#[derive(Clone, Debug)]
pub struct MultiLayerNet<A> {
    config: MultiLayerConfig,
    hidden: Vec<Hidden<A>>,
    output: Affine<A>,
    last_layer: SoftmaxWithLoss<A>,
    weight_decay: A,
    /// `dW + λ W` for each affine layer (hidden ones, then the output), when λ > 0.
    decayed_grads: Vec<Array2<A>>,
    /// The weight-decay term of the last loss.
    penalty: A,
}

impl<A: NdFloat> MultiLayerNet<A> {
    /// A net of the given configuration. The weights of each affine layer are drawn from `rng` in
    /// network order (so a one-hidden-layer Relu net with a fixed std draws exactly as
    /// [`TwoLayerNet::new`](crate::TwoLayerNet::new)); then one `u64` per dropout layer seeds its mask
    /// generator. Biases and betas start at 0, gammas at 1.
    ///
    /// # Panics
    ///
    /// If a size is 0, the dropout ratio is not in `[0, 1)`, or the weight decay is negative or not
    /// finite.
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(config: MultiLayerConfig, rng: &mut R) -> Self {
        let sizes = config.sizes();
        assert!(
            sizes.iter().all(|&s| s > 0),
            "MultiLayerNet::new: layer sizes must be positive, got {sizes:?}"
        );
        assert!(
            config.weight_decay >= 0.0 && config.weight_decay.is_finite(),
            "MultiLayerNet::new: the weight decay must be finite and >= 0, got {}",
            config.weight_decay
        );
        if let Some(ratio) = config.dropout {
            assert!(
                (0.0..1.0).contains(&ratio),
                "MultiLayerNet::new: the dropout ratio must be in [0, 1), got {ratio}"
            );
        }
        let mut affines: Vec<Affine<A>> = sizes
            .windows(2)
            .map(|io| Affine::random(io[0], io[1], config.init, rng))
            .collect();
        let output = affines.pop().expect("there are at least two sizes");
        let hidden = affines
            .into_iter()
            .map(|affine| {
                let width = affine.output_size();
                Hidden {
                    affine,
                    batch_norm: config.batch_norm.then(|| BatchNorm::new(width)),
                    act: match config.activation {
                        Activation::Relu => Act::Relu(Relu::new()),
                        Activation::Sigmoid => Act::Sigmoid(Sigmoid::new()),
                    },
                    dropout: None,
                }
            })
            .collect::<Vec<_>>();
        let mut net = MultiLayerNet {
            weight_decay: A::from(config.weight_decay).expect("a finite f64 converts"),
            decayed_grads: Vec::new(),
            penalty: A::zero(),
            config,
            hidden,
            output,
            last_layer: SoftmaxWithLoss::new(),
        };
        if let Some(ratio) = net.config.dropout {
            for block in &mut net.hidden {
                block.dropout = Some(Dropout::new(ratio, rng.next_u64()));
            }
        }
        if net.config.weight_decay > 0.0 {
            net.decayed_grads = net
                .affines()
                .map(|a| Array2::zeros(a.w().raw_dim()))
                .collect();
        }
        net
    }

    /// The configuration the net was built from.
    pub fn config(&self) -> &MultiLayerConfig {
        &self.config
    }

    /// The affine layers, first to last (the output layer last).
    pub fn affines(&self) -> impl Iterator<Item = &Affine<A>> {
        self.hidden
            .iter()
            .map(|h| &h.affine)
            .chain(std::iter::once(&self.output))
    }

    /// The batch normalisation layers, first to last (empty without batch normalisation).
    pub fn batch_norms(&self) -> impl Iterator<Item = &BatchNorm<A>> {
        self.hidden.iter().filter_map(|h| h.batch_norm.as_ref())
    }

    /// The batch normalisation layers, first to last, mutably (to restore their running averages
    /// from a model file, say).
    pub fn batch_norms_mut(&mut self) -> impl Iterator<Item = &mut BatchNorm<A>> {
        self.hidden.iter_mut().filter_map(|h| h.batch_norm.as_mut())
    }

    /// The layer names in network order, as the book's `OrderedDict` keys: `Affine1`,
    /// `BatchNorm1`, `Activation_function1`, `Dropout1`, ..., `Affine<last>`.
    pub fn layer_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (i, block) in self.hidden.iter().enumerate() {
            let k = i + 1;
            names.push(format!("Affine{k}"));
            if block.batch_norm.is_some() {
                names.push(format!("BatchNorm{k}"));
            }
            names.push(format!("Activation_function{k}"));
            if block.dropout.is_some() {
                names.push(format!("Dropout{k}"));
            }
        }
        names.push(format!("Affine{}", self.hidden.len() + 1));
        names
    }

    /// Makes every dropout layer reuse its last mask in training forwards (`true`) or draw a new
    /// one each time (`false`, the default). See [`Dropout::set_frozen`].
    pub fn set_dropout_frozen(&mut self, frozen: bool) {
        for block in &mut self.hidden {
            if let Some(d) = &mut block.dropout {
                d.set_frozen(frozen);
            }
        }
    }

    /// Visits every parameter's name and value read-only, in the order of
    /// [`visit_params`](Network::visit_params).
    pub fn visit_params_ref(&self, f: &mut dyn FnMut(&'static str, ArrayViewD<'_, A>)) {
        for block in &self.hidden {
            block.affine.visit_params_ref(f);
            if let Some(bn) = &block.batch_norm {
                bn.visit_params_ref(f);
            }
        }
        self.output.visit_params_ref(f);
    }

    /// Training forward through every layer before the loss.
    fn forward(&mut self, x: ArrayD<A>) -> ArrayD<A> {
        let mut h = x;
        for block in &mut self.hidden {
            h = block.affine.forward(h);
            if let Some(bn) = &mut block.batch_norm {
                h = bn.forward(h);
            }
            h = block.act.layer_mut().forward(h);
            if let Some(d) = &mut block.dropout {
                h = d.forward(h);
            }
        }
        self.output.forward(h)
    }

    /// `½ λ Σ ‖W‖²`.
    fn decay_loss(&self) -> A {
        if self.config.weight_decay == 0.0 {
            return A::zero();
        }
        let half = A::from(0.5).expect("0.5 is a float");
        let sum = self.affines().fold(A::zero(), |acc, a| {
            acc + a.w().fold(A::zero(), |s, &w| s + w * w)
        });
        half * self.weight_decay * sum
    }

    /// Writes `dW + λ W` into `decayed_grads` and returns `½ λ Σ ‖W‖²` from the same pass.
    fn apply_decay(&mut self) -> A {
        if self.config.weight_decay == 0.0 {
            return A::zero();
        }
        let lambda = self.weight_decay;
        let affines = self
            .hidden
            .iter()
            .map(|h| &h.affine)
            .chain(std::iter::once(&self.output));
        let mut sum = A::zero();
        for (grad, affine) in self.decayed_grads.iter_mut().zip(affines) {
            Zip::from(grad)
                .and(affine.dw())
                .and(affine.w())
                .for_each(|g, &dw, &w| {
                    *g = dw + lambda * w;
                    sum += w * w;
                });
        }
        A::from(0.5).expect("0.5 is a float") * lambda * sum
    }
}

/// Visits an affine layer's parameters, substituting the decayed weight gradient if there is one.
fn visit_affine<A: NdFloat>(
    affine: &mut Affine<A>,
    decayed: Option<&Array2<A>>,
    f: &mut dyn FnMut(Param<'_, A>),
) {
    match decayed {
        None => affine.visit_params(f),
        Some(grad) => affine.visit_params(&mut |p| {
            if p.name == "W" {
                f(Param {
                    name: p.name,
                    value: p.value,
                    grad: grad.view().into_dyn(),
                });
            } else {
                f(p);
            }
        }),
    }
}

impl<A: NdFloat> Network<A> for MultiLayerNet<A> {
    #[track_caller]
    fn predict(&self, x: ArrayD<A>) -> Array2<A> {
        let mut h = x;
        for block in &self.hidden {
            h = block.affine.predict(h);
            if let Some(bn) = &block.batch_norm {
                h = bn.predict(h);
            }
            h = block.act.layer().predict(h);
            if let Some(d) = &block.dropout {
                h = d.predict(h);
            }
        }
        self.output
            .predict(h)
            .into_dimensionality::<Ix2>()
            .expect("Affine returns (N, out)")
    }

    #[track_caller]
    fn loss(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> A {
        let scores = self.forward(x);
        self.penalty = self.decay_loss();
        self.last_layer.forward(scores, t) + self.penalty
    }

    #[track_caller]
    fn gradient(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> A {
        self.gradient_reusing(x, t).0
    }

    #[track_caller]
    fn gradient_reusing(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> (A, Option<ArrayD<A>>) {
        let scores = self.forward(x);
        let loss = self.last_layer.forward(scores, t);
        let dout = self.last_layer.backward(A::one()).into_dyn();
        let x = if self.hidden.is_empty() {
            self.output.backward_params(dout)
        } else {
            let mut d = self.output.backward(dout);
            for (i, block) in self.hidden.iter_mut().enumerate().rev() {
                if let Some(dropout) = &mut block.dropout {
                    d = dropout.backward(d);
                }
                d = block.act.layer_mut().backward(d);
                if let Some(bn) = &mut block.batch_norm {
                    d = bn.backward(d);
                }
                d = if i == 0 {
                    block.affine.backward_params(d)
                } else {
                    block.affine.backward(d)
                };
            }
            d
        };
        self.penalty = self.apply_decay();
        (loss + self.penalty, Some(x))
    }

    fn penalty(&self) -> A {
        self.penalty
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, A>)) {
        let mut decayed = self.decayed_grads.iter();
        for block in &mut self.hidden {
            visit_affine(&mut block.affine, decayed.next(), f);
            if let Some(bn) = &mut block.batch_norm {
                bn.visit_params(f);
            }
        }
        visit_affine(&mut self.output, decayed.next(), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TwoLayerNet;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn batch() -> (ArrayD<f64>, [usize; 6]) {
        let x = Array2::from_shape_fn((6, 4), |(i, j)| ((i * 3 + j * 5) % 7) as f64 * 0.3 - 0.9);
        (x.into_dyn(), [0, 1, 2, 0, 1, 2])
    }

    fn grads(net: &mut dyn Network<f64>) -> Vec<ArrayD<f64>> {
        let mut g = Vec::new();
        net.visit_params(&mut |p| g.push(p.grad.to_owned()));
        g
    }

    #[test]
    fn one_relu_hidden_layer_is_the_two_layer_net() {
        let config = MultiLayerConfig::new(4, vec![5], 3);
        assert!(config.is_two_layer_net());
        let mut multi =
            MultiLayerNet::<f64>::new(config, &mut Xoshiro256PlusPlus::seed_from_u64(9));
        let mut two =
            TwoLayerNet::<f64>::new(4, 5, 3, 0.01, &mut Xoshiro256PlusPlus::seed_from_u64(9));
        let (x, t) = batch();
        assert_eq!(
            multi.gradient(x.clone(), Targets::Index(&t)),
            two.gradient(x.clone(), Targets::Index(&t))
        );
        assert_eq!(grads(&mut multi), grads(&mut two));
        assert_eq!(multi.predict(x.clone()), two.predict(x));
        assert_eq!(
            multi.layer_names(),
            ["Affine1", "Activation_function1", "Affine2"]
        );
    }

    /// Central differences of `loss` against `gradient` for every parameter, with every option on.
    fn check_numerically(config: MultiLayerConfig) {
        let mut net = MultiLayerNet::<f64>::new(config, &mut Xoshiro256PlusPlus::seed_from_u64(1));
        net.set_dropout_frozen(true);
        let (x, t) = batch();
        let loss = net.gradient(x.clone(), Targets::Index(&t));
        assert_eq!(loss, net.loss(x.clone(), Targets::Index(&t)));
        let analytic = grads(&mut net);
        let h = 1e-5;
        for (k, grad) in analytic.iter().enumerate() {
            for (idx, &a) in grad.as_slice().unwrap().iter().enumerate() {
                let at = |delta: f64| {
                    let mut n = net.clone();
                    let mut i = 0;
                    n.visit_params(&mut |mut p| {
                        if i == k {
                            let v = p.value.as_slice_mut().unwrap();
                            v[idx] += delta;
                        }
                        i += 1;
                    });
                    n.loss(x.clone(), Targets::Index(&t))
                };
                let numerical = (at(h) - at(-h)) / (2.0 * h);
                assert!(
                    (numerical - a).abs() < 1e-6 * (1.0 + a.abs()),
                    "param {k} [{idx}]: numerical {numerical} vs backprop {a}"
                );
            }
        }
    }

    #[test]
    fn gradients_match_central_differences_with_batch_norm_dropout_and_decay() {
        check_numerically(MultiLayerConfig {
            init: Init::He,
            dropout: Some(0.3),
            batch_norm: true,
            weight_decay: 0.1,
            ..MultiLayerConfig::new(4, vec![5, 4], 3)
        });
    }

    #[test]
    fn gradients_match_central_differences_with_sigmoid_and_no_hidden_layer() {
        check_numerically(MultiLayerConfig {
            activation: Activation::Sigmoid,
            init: Init::Xavier,
            ..MultiLayerConfig::new(4, vec![3], 3)
        });
        check_numerically(MultiLayerConfig {
            weight_decay: 0.5,
            init: Init::Std(0.5),
            ..MultiLayerConfig::new(4, vec![], 3)
        });
    }

    #[test]
    fn weight_decay_adds_half_lambda_w_squared_to_the_loss() {
        let plain = MultiLayerConfig {
            init: Init::Std(0.3),
            ..MultiLayerConfig::new(4, vec![3], 3)
        };
        let decayed = MultiLayerConfig {
            weight_decay: 0.25,
            ..plain.clone()
        };
        let mut a = MultiLayerNet::<f64>::new(plain, &mut Xoshiro256PlusPlus::seed_from_u64(2));
        let mut b = MultiLayerNet::<f64>::new(decayed, &mut Xoshiro256PlusPlus::seed_from_u64(2));
        let (x, t) = batch();
        let sum_sq: f64 = a
            .affines()
            .map(|l| l.w().iter().map(|w| w * w).sum::<f64>())
            .sum();
        let la = a.gradient(x.clone(), Targets::Index(&t));
        let lb = b.gradient(x, Targets::Index(&t));
        assert!((lb - la - 0.125 * sum_sq).abs() < 1e-12);
        let (ga, gb) = (grads(&mut a), grads(&mut b));
        let ws: Vec<_> = a.affines().map(|l| l.w().clone().into_dyn()).collect();
        // W1, b1, W2, b2: weights gain 0.25 W, biases are unchanged.
        assert_eq!(gb[1], ga[1]);
        assert_eq!(gb[3], ga[3]);
        for (k, w) in [(0, &ws[0]), (2, &ws[1])] {
            let expected = &ga[k] + &(w * 0.25);
            for (x, y) in gb[k].iter().zip(&expected) {
                assert!((x - y).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn dropout_masks_differ_between_steps_unless_frozen_and_predict_is_deterministic() {
        let config = MultiLayerConfig {
            dropout: Some(0.5),
            init: Init::He,
            ..MultiLayerConfig::new(4, vec![16], 3)
        };
        let mut net = MultiLayerNet::<f64>::new(config, &mut Xoshiro256PlusPlus::seed_from_u64(4));
        let (x, t) = batch();
        let l1 = net.loss(x.clone(), Targets::Index(&t));
        let l2 = net.loss(x.clone(), Targets::Index(&t));
        assert_ne!(l1, l2);
        net.set_dropout_frozen(true);
        let l3 = net.loss(x.clone(), Targets::Index(&t));
        assert_eq!(l3, net.loss(x.clone(), Targets::Index(&t)));
        assert_eq!(net.predict(x.clone()), net.predict(x));
        assert_eq!(
            net.layer_names(),
            ["Affine1", "Activation_function1", "Dropout1", "Affine2"]
        );
    }

    #[test]
    fn batch_norm_predict_uses_running_statistics() {
        let config = MultiLayerConfig {
            batch_norm: true,
            ..MultiLayerConfig::new(4, vec![3], 3)
        };
        let mut net = MultiLayerNet::<f64>::new(config, &mut Xoshiro256PlusPlus::seed_from_u64(5));
        let (x, t) = batch();
        net.gradient(x.clone(), Targets::Index(&t));
        let bn = net.batch_norms().next().unwrap();
        assert!(bn.running_var().iter().all(|&v| v > 0.0));
        // A single row through predict: batch statistics would make it all zeros before gamma/beta.
        let one = x.slice(ndarray::s![0..1, ..]).to_owned().into_dyn();
        let scores = net.predict(one.clone());
        let all = net.predict(x);
        for (a, b) in scores.row(0).iter().zip(all.row(0)) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
