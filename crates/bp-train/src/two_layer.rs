//! The book's two-layer net (chapter 5): a named constructor of a layer list.

use std::marker::PhantomData;

use bp_core::{Affine, Init, LayerSpec};
use ndarray::NdFloat;
use rand::Rng;

use crate::network::{NetOptions, Network};

/// The book's `TwoLayerNet`: a named constructor of the [`Network`] `Affine1 -> Relu1 -> Affine2 ->
/// SoftmaxWithLoss`, the layer list `affine H, relu, affine O`. The network it builds has the
/// book's API: [`predict`](Network::predict), [`loss`](Network::loss),
/// [`accuracy`](Network::accuracy), [`gradient`](Network::gradient) and
/// [`numerical_gradient`](Network::numerical_gradient).
///
/// # Shapes
///
/// Input (N, input_size) (or any (N, ...) flattening to it); scores (N, output_size).
///
/// # Parameters
///
/// Visited `W1, b1, W2, b2` (named `"W"`, `"b"`, `"W"`, `"b"`; see
/// [`param_names`](Network::param_names)).
///
/// # Example
///
/// ```
/// use bp_loss::Targets;
/// use bp_train::TwoLayerNet;
/// use ndarray::array;
/// use rand::SeedableRng;
/// use rand_xoshiro::Xoshiro256PlusPlus;
///
/// let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
/// let mut net = TwoLayerNet::<f64>::new(2, 4, 3, 0.01, &mut rng);
/// let x = array![[1.0, 0.5], [-0.5, 2.0]].into_dyn();
/// // Tiny weights give nearly equal scores: the loss is close to ln 3.
/// let loss = net.gradient(x.clone(), Targets::Index(&[0, 2]));
/// assert!((loss - 3f64.ln()).abs() < 1e-3);
/// assert_eq!(net.predict(x).dim(), (2, 3));
/// ```
#[derive(Debug)]
pub struct TwoLayerNet<A>(PhantomData<A>);

impl<A: NdFloat> TwoLayerNet<A> {
    /// The book's `TwoLayerNet(input_size, hidden_size, output_size, weight_init_std)`:
    /// `W1 = weight_init_std · randn(input_size, hidden_size)`, then
    /// `W2 = weight_init_std · randn(hidden_size, output_size)`, both drawn from `rng` in that order;
    /// zero biases.
    ///
    /// # Panics
    ///
    /// If a size is 0.
    #[track_caller]
    #[allow(clippy::new_ret_no_self)]
    pub fn new<R: Rng + ?Sized>(
        input_size: usize,
        hidden_size: usize,
        output_size: usize,
        weight_init_std: f64,
        rng: &mut R,
    ) -> Network<A> {
        assert!(
            input_size > 0 && hidden_size > 0 && output_size > 0,
            "TwoLayerNet::new: sizes must be positive, got {input_size}-{hidden_size}-{output_size}"
        );
        let options = NetOptions {
            init: Init::Std(weight_init_std),
            weight_decay: 0.0,
        };
        Network::new(
            &[input_size],
            layers(hidden_size, output_size),
            options,
            rng,
        )
        .expect("positive sizes make a two-layer net")
    }

    /// The network with the given first and second affine layers.
    ///
    /// # Panics
    ///
    /// If the first layer's output size is not the second layer's input size.
    #[track_caller]
    pub fn from_layers(affine1: Affine<A>, affine2: Affine<A>) -> Network<A> {
        assert!(
            affine1.output_size() == affine2.input_size(),
            "TwoLayerNet::from_layers: W1 has shape {:?} but W2 has shape {:?}",
            affine1.w().shape(),
            affine2.w().shape()
        );
        let mut net = TwoLayerNet::new(
            affine1.input_size(),
            affine1.output_size(),
            affine2.output_size(),
            0.0,
            &mut <rand_xoshiro::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(0),
        );
        let layers = net.layers_mut().layers_mut();
        layers[0] = Box::new(affine1);
        layers[2] = Box::new(affine2);
        net
    }
}

/// `affine hidden, relu, affine output`.
fn layers(hidden: usize, output: usize) -> Vec<LayerSpec> {
    vec![
        LayerSpec::Affine { out: hidden },
        LayerSpec::Relu,
        LayerSpec::Affine { out: output },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bp_core::Layer;
    use bp_loss::Targets;
    use ndarray::{Array2, array};

    /// A 2-2-2 net worked by hand.
    ///
    /// W1 = [[1, -1], [0, 2]], b1 = [0, 0.5]; W2 = [[1, 0], [-1, 1]], b2 = [0, 0]; x = [[1, 1]],
    /// class 0. h = relu([1, 1.5]) = [1, 1.5]; s = [1 - 1.5, 1.5] = [-0.5, 1.5];
    /// softmax = [1/(1+e²), e²/(1+e²)] = [0.1192029, 0.8807971]; loss = -ln(0.1192029 + 1e-7).
    /// dout = y - t = [-0.8807971, 0.8807971]; dW2 = hᵀ dout; db2 = dout; dh = dout W2ᵀ =
    /// [-0.8807971, 1.7615942] (both h > 0); dW1 = xᵀ dh; db1 = dh.
    #[test]
    fn hand_derived_gradient() {
        let affine1 = Affine::new(array![[1.0, -1.0], [0.0, 2.0]], array![0.0, 0.5]);
        let affine2 = Affine::new(array![[1.0, 0.0], [-1.0, 1.0]], array![0.0, 0.0]);
        let mut net = TwoLayerNet::<f64>::from_layers(affine1, affine2);
        let x = array![[1.0, 1.0]].into_dyn();
        let p = 1.0 / (1.0 + 2f64.exp());
        let loss = net.gradient(x.clone(), Targets::Index(&[0]));
        assert!((loss - -(p + 1e-7).ln()).abs() < 1e-12);
        let d = 1.0 - p;
        let mut grads = Vec::new();
        net.visit_params(&mut |param| grads.push(param.grad.to_owned()));
        let expected = [
            array![[-d, 2.0 * d], [-d, 2.0 * d]].into_dyn(),
            array![-d, 2.0 * d].into_dyn(),
            array![[-d, d], [-1.5 * d, 1.5 * d]].into_dyn(),
            array![-d, d].into_dyn(),
        ];
        for (g, e) in grads.iter().zip(&expected) {
            for (a, b) in g.iter().zip(e) {
                assert!((a - b).abs() < 1e-12, "{g} vs {e}");
            }
        }
        let scores = net.predict(x);
        assert!((scores[[0, 0]] - -0.5).abs() < 1e-12 && (scores[[0, 1]] - 1.5).abs() < 1e-12);
    }

    #[test]
    fn loss_equals_the_loss_gradient_returns() {
        let mut rng = <rand_xoshiro::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(3);
        let mut net = TwoLayerNet::<f32>::new(5, 4, 3, 0.5, &mut rng);
        let x = Array2::from_shape_fn((6, 5), |(i, j)| (i as f32 - j as f32) * 0.3).into_dyn();
        let t = [0, 1, 2, 0, 1, 2];
        let a = net.loss(x.clone(), Targets::Index(&t));
        let b = net.gradient(x, Targets::Index(&t));
        assert_eq!(a, b);
    }

    #[test]
    fn the_book_net_is_a_stack_of_three_layers() {
        let mut rng = <rand_xoshiro::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(0);
        let net = TwoLayerNet::<f32>::new(784, 50, 10, 0.01, &mut rng);
        let list: Vec<String> = net.specs().iter().map(ToString::to_string).collect();
        assert_eq!(list, ["affine 50", "relu", "affine 10"]);
        assert_eq!(net.param_names(), ["W1", "b1", "W2", "b2"]);
        assert_eq!(net.layers().num_params(), 784 * 50 + 50 + 50 * 10 + 10);
    }
}
