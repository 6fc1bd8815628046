//! The book's multi-layer net (chapter 6), with its optional batch normalisation, dropout and weight
//! decay (the book's `MultiLayerNetExtend`): a named constructor of a layer list.

use std::marker::PhantomData;

use bp_core::{Init, LayerSpec};
use ndarray::NdFloat;
use rand::Rng;

use crate::network::{NetOptions, Network};

/// The activation function of the hidden layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// The rectified linear unit, `max(x, 0)`.
    #[default]
    Relu,
    /// The logistic sigmoid, `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Activation {
    /// Every activation, in the order the command line lists them.
    pub const ALL: [Activation; 2] = [Activation::Relu, Activation::Sigmoid];

    /// The lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
        }
    }

    /// The activation's layer.
    pub fn spec(self) -> LayerSpec {
        match self {
            Activation::Relu => LayerSpec::Relu,
            Activation::Sigmoid => LayerSpec::Sigmoid,
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

    /// The layer list: for each hidden layer `affine`, [`batchnorm`], the activation,
    /// [`dropout`]; then the output `affine`.
    ///
    /// [`batchnorm`]: LayerSpec::BatchNorm
    /// [`dropout`]: LayerSpec::Dropout
    ///
    /// ```
    /// use bp_train::MultiLayerConfig;
    ///
    /// let config = MultiLayerConfig { batch_norm: true, dropout: Some(0.5), ..MultiLayerConfig::new(4, vec![3], 2) };
    /// let list: Vec<String> = config.layers().iter().map(ToString::to_string).collect();
    /// assert_eq!(list, ["affine 3", "batchnorm", "relu", "dropout 0.5", "affine 2"]);
    /// ```
    pub fn layers(&self) -> Vec<LayerSpec> {
        let mut layers = Vec::new();
        for &width in &self.hidden_sizes {
            layers.push(LayerSpec::Affine { out: width });
            if self.batch_norm {
                layers.push(LayerSpec::BatchNorm);
            }
            layers.push(self.activation.spec());
            if let Some(ratio) = self.dropout {
                layers.push(LayerSpec::Dropout { ratio });
            }
        }
        layers.push(LayerSpec::Affine {
            out: self.output_size,
        });
        layers
    }

    /// The configuration whose [`layers`](MultiLayerConfig::layers) are `specs`, if there is one
    /// (with the book's init and no weight decay, which a layer list does not say).
    pub fn from_specs(input_size: usize, specs: &[LayerSpec]) -> Option<Self> {
        let (last, hidden) = specs.split_last()?;
        let &LayerSpec::Affine { out: output_size } = last else {
            return None;
        };
        let mut config = MultiLayerConfig::new(input_size, Vec::new(), output_size);
        let first_block = hidden
            .iter()
            .position(|s| matches!(s, LayerSpec::Relu | LayerSpec::Sigmoid));
        if let Some(k) = first_block {
            config.batch_norm = hidden.get(1) == Some(&LayerSpec::BatchNorm);
            config.activation = if hidden[k] == LayerSpec::Sigmoid {
                Activation::Sigmoid
            } else {
                Activation::Relu
            };
            if let Some(&LayerSpec::Dropout { ratio }) = hidden.get(k + 1) {
                config.dropout = Some(ratio);
            }
            for spec in hidden {
                if let &LayerSpec::Affine { out } = spec {
                    config.hidden_sizes.push(out);
                }
            }
        }
        (config.layers() == specs).then_some(config)
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

/// The book's `MultiLayerNet` / `MultiLayerNetExtend`: a named constructor of the [`Network`] of any
/// number of hidden blocks `Affine -> [BatchNorm] -> Relu|Sigmoid -> [Dropout]`, then `Affine ->
/// SoftmaxWithLoss` (the layers of [`MultiLayerConfig::layers`]).
///
/// Weight decay adds `½ λ Σ ‖W‖²` to the loss and `λ W` to each weight gradient; the gradients the
/// net hands out through [`visit_params`](Network::visit_params) include it.
///
/// With dropout, each training forward draws new masks, so two calls of [`loss`](Network::loss) on
/// the same batch differ; [`set_dropout_frozen`](Network::set_dropout_frozen) makes every
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
/// use bp_train::{Activation, MultiLayerConfig, MultiLayerNet};
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
///     net.param_names(),
///     ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
/// );
/// let loss = net.gradient(array![[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]].into_dyn(), Targets::Index(&[0, 1]));
/// assert!(loss.is_finite());
/// ```
#[derive(Debug)]
pub struct MultiLayerNet<A>(PhantomData<A>);

impl<A: NdFloat> MultiLayerNet<A> {
    /// The network of the given configuration. The weights of each affine layer are drawn from
    /// `rng` in network order (so a one-hidden-layer Relu net with a fixed std draws exactly as
    /// [`TwoLayerNet::new`](crate::TwoLayerNet::new)); then one `u64` per dropout layer seeds its
    /// mask generator. Biases and betas start at 0, gammas at 1.
    ///
    /// # Panics
    ///
    /// If a size is 0, the dropout ratio is not in `[0, 1)`, or the weight decay is negative or not
    /// finite.
    #[track_caller]
    #[allow(clippy::new_ret_no_self)]
    pub fn new<R: Rng + ?Sized>(config: MultiLayerConfig, rng: &mut R) -> Network<A> {
        let options = NetOptions {
            init: config.init,
            weight_decay: config.weight_decay,
        };
        Network::new(&[config.input_size], config.layers(), options, rng)
            .unwrap_or_else(|err| panic!("MultiLayerNet::new: {err} (sizes {:?})", config.sizes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TwoLayerNet;
    use bp_core::{Affine, BatchNorm};
    use bp_loss::Targets;
    use ndarray::{Array2, ArrayD};
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn batch() -> (ArrayD<f64>, [usize; 6]) {
        let x = Array2::from_shape_fn((6, 4), |(i, j)| ((i * 3 + j * 5) % 7) as f64 * 0.3 - 0.9);
        (x.into_dyn(), [0, 1, 2, 0, 1, 2])
    }

    fn grads(net: &mut Network<f64>) -> Vec<ArrayD<f64>> {
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
        assert_eq!(multi.specs(), two.specs());
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
            .layers_of::<Affine<f64>>()
            .map(|l| l.w().iter().map(|w| w * w).sum::<f64>())
            .sum();
        let la = a.gradient(x.clone(), Targets::Index(&t));
        let lb = b.gradient(x, Targets::Index(&t));
        assert!((lb - la - 0.125 * sum_sq).abs() < 1e-12);
        let (ga, gb) = (grads(&mut a), grads(&mut b));
        let ws: Vec<_> = a
            .layers_of::<Affine<f64>>()
            .map(|l| l.w().clone().into_dyn())
            .collect();
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
    }

    #[test]
    fn from_specs_recognises_every_configuration_and_nothing_else() {
        for config in [
            MultiLayerConfig::new(4, vec![], 2),
            MultiLayerConfig::new(4, vec![5], 2),
            MultiLayerConfig {
                batch_norm: true,
                dropout: Some(0.5),
                activation: Activation::Sigmoid,
                ..MultiLayerConfig::new(4, vec![5, 6, 7], 2)
            },
        ] {
            assert_eq!(
                MultiLayerConfig::from_specs(4, &config.layers()),
                Some(config)
            );
        }
        for list in [
            "relu, affine 2",
            "affine 5, relu",
            "affine 5, affine 2",
            "affine 5, relu, affine 5, sigmoid, affine 2",
            "affine 5, relu, dropout 0.5, affine 5, relu, affine 2",
            "affine 5, relu, batchnorm, affine 2",
        ] {
            let specs = bp_core::parse_layers(list).unwrap();
            assert_eq!(MultiLayerConfig::from_specs(4, &specs), None, "{list}");
        }
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
        let bn = net.layers_of::<BatchNorm<f64>>().next().unwrap();
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
