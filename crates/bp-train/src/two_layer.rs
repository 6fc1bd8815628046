//! The book's two-layer net (chapter 5).

use bp_core::{Affine, Init, Layer, Param, Relu};
use bp_loss::{SoftmaxWithLoss, Targets};
use ndarray::{Array2, ArrayD, ArrayViewD, Ix2, NdFloat};
use rand::Rng;

use crate::network::Network;

/// The book's `TwoLayerNet`: `Affine1 -> Relu1 -> Affine2 -> SoftmaxWithLoss`, the layers kept in
/// that order (the book's `OrderedDict`).
///
/// # Shapes
///
/// Input (N, input_size) (or any (N, ...) flattening to it); scores (N, output_size).
///
/// # Parameters
///
/// Visited `W1, b1, W2, b2` (named `"W"`, `"b"`, `"W"`, `"b"`; see [`param_names`](crate::param_names)).
///
/// # Example
///
/// ```
/// use bp_loss::Targets;
/// use bp_train::{Network, TwoLayerNet};
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
#[derive(Clone, Debug)]
pub struct TwoLayerNet<A> {
    affine1: Affine<A>,
    relu1: Relu,
    affine2: Affine<A>,
    last_layer: SoftmaxWithLoss<A>,
}

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
    pub fn new<R: Rng + ?Sized>(
        input_size: usize,
        hidden_size: usize,
        output_size: usize,
        weight_init_std: f64,
        rng: &mut R,
    ) -> Self {
        assert!(
            input_size > 0 && hidden_size > 0 && output_size > 0,
            "TwoLayerNet::new: sizes must be positive, got {input_size}-{hidden_size}-{output_size}"
        );
        let init = Init::Std(weight_init_std);
        let affine1 = Affine::random(input_size, hidden_size, init, rng);
        let affine2 = Affine::random(hidden_size, output_size, init, rng);
        TwoLayerNet::from_layers(affine1, affine2)
    }

    /// A net with the given first and second affine layers.
    ///
    /// # Panics
    ///
    /// If the first layer's output size is not the second layer's input size.
    #[track_caller]
    pub fn from_layers(affine1: Affine<A>, affine2: Affine<A>) -> Self {
        assert!(
            affine1.output_size() == affine2.input_size(),
            "TwoLayerNet::from_layers: W1 has shape {:?} but W2 has shape {:?}",
            affine1.w().shape(),
            affine2.w().shape()
        );
        TwoLayerNet {
            affine1,
            relu1: Relu::new(),
            affine2,
            last_layer: SoftmaxWithLoss::new(),
        }
    }

    /// The layer names in order, as the book's `OrderedDict` keys.
    pub fn layer_names(&self) -> [&'static str; 3] {
        ["Affine1", "Relu1", "Affine2"]
    }

    /// The first affine layer.
    pub fn affine1(&self) -> &Affine<A> {
        &self.affine1
    }

    /// The second affine layer.
    pub fn affine2(&self) -> &Affine<A> {
        &self.affine2
    }

    /// The sizes `[input, hidden, output]`.
    pub fn sizes(&self) -> [usize; 3] {
        [
            self.affine1.input_size(),
            self.affine1.output_size(),
            self.affine2.output_size(),
        ]
    }

    /// Visits every parameter's name and value read-only, in the order of
    /// [`visit_params`](Network::visit_params).
    pub fn visit_params_ref(&self, f: &mut dyn FnMut(&'static str, ArrayViewD<'_, A>)) {
        self.affine1.visit_params_ref(f);
        self.affine2.visit_params_ref(f);
    }

    /// Training forward through the layers, before the loss.
    fn forward(&mut self, x: ArrayD<A>) -> ArrayD<A> {
        let h = self.affine1.forward(x);
        let h = self.relu1.forward(h);
        self.affine2.forward(h)
    }
}

impl<A: NdFloat> Network<A> for TwoLayerNet<A> {
    #[track_caller]
    fn predict(&self, x: ArrayD<A>) -> Array2<A> {
        let h = self.affine1.predict(x);
        let h = self.relu1.predict(h);
        self.affine2
            .predict(h)
            .into_dimensionality::<Ix2>()
            .expect("Affine returns (N, out)")
    }

    #[track_caller]
    fn loss(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> A {
        let scores = self.forward(x);
        self.last_layer.forward(scores, t)
    }

    #[track_caller]
    fn gradient(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> A {
        self.gradient_reusing(x, t).0
    }

    #[track_caller]
    fn gradient_reusing(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> (A, Option<ArrayD<A>>) {
        let loss = self.loss(x, t);
        let dout = self.last_layer.backward(A::one());
        let dh = self.affine2.backward(dout.into_dyn());
        let dh = self.relu1.backward(dh);
        let x = self.affine1.backward_params(dh);
        (loss, Some(x))
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, A>)) {
        self.affine1.visit_params(f);
        self.affine2.visit_params(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

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
}
