//! Layers in a row.

use ndarray::{ArrayD, ArrayViewD, NdFloat};

use crate::layer::{Layer, Param};

/// Layers applied in order; backward runs them in reverse. It is itself a [`Layer`], so sequences
/// nest.
///
/// # Parameters
///
/// Visited layer by layer in order, each layer's parameters in that layer's own order, under the
/// layer's own names (`"W"`, `"b"`, `"W"`, `"b"`, ... for Affine layers).
///
/// # Shapes
///
/// Input: what the first layer takes; output: what the last layer returns.
///
/// # Example
///
/// ```
/// use bp_core::{Affine, Layer, Relu, Sequential};
/// use ndarray::array;
///
/// let mut net = Sequential::<f64>::new(vec![
///     Box::new(Affine::new(array![[1.0, -1.0]], array![0.0, 0.0])),
///     Box::new(Relu::new()),
///     Box::new(Affine::new(array![[2.0], [3.0]], array![1.0])),
/// ]);
/// // x = 2: hidden = relu([2, -2]) = [2, 0]; out = 2*2 + 3*0 + 1 = 5
/// assert_eq!(net.forward(array![[2.0]].into_dyn()), array![[5.0]].into_dyn());
/// // dx = dout * W2ᵀ * mask * W1ᵀ = 1 * [2, 3] * [1, 0] · [1, -1] = 2
/// assert_eq!(net.backward(array![[1.0]].into_dyn()), array![[2.0]].into_dyn());
/// let mut names = Vec::new();
/// net.visit_params(&mut |p| names.push(p.name));
/// assert_eq!(names, ["W", "b", "W", "b"]);
/// assert_eq!(net.num_params(), 2 + 2 + 2 + 1);
/// ```
pub struct Sequential<A> {
    layers: Vec<Box<dyn Layer<A>>>,
}

impl<A: NdFloat> Sequential<A> {
    /// A sequence of the given layers, applied first to last.
    pub fn new(layers: Vec<Box<dyn Layer<A>>>) -> Self {
        Sequential { layers }
    }

    /// Appends a layer at the end.
    pub fn push(&mut self, layer: Box<dyn Layer<A>>) {
        self.layers.push(layer);
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Box<dyn Layer<A>>] {
        &self.layers
    }

    /// The layers, first to last, mutably.
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer<A>>] {
        &mut self.layers
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers (the sequence is then the identity).
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl<A: NdFloat> Clone for Sequential<A> {
    fn clone(&self) -> Self {
        Sequential {
            layers: self.layers.clone(),
        }
    }
}

impl<A: NdFloat> std::fmt::Debug for Sequential<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.layers.iter().map(|l| l.name()))
            .finish()
    }
}

impl<A: NdFloat> Layer<A> for Sequential<A> {
    fn name(&self) -> &'static str {
        "Sequential"
    }

    fn forward(&mut self, x: ArrayD<A>) -> ArrayD<A> {
        self.layers.iter_mut().fold(x, |x, layer| layer.forward(x))
    }

    fn backward(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        self.layers
            .iter_mut()
            .rev()
            .fold(dout, |dout, layer| layer.backward(dout))
    }

    /// Runs `backward` through every layer but the first, and `backward_params` through the first.
    fn backward_params(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        match self.layers.split_first_mut() {
            None => dout,
            Some((first, rest)) => {
                let dout = rest
                    .iter_mut()
                    .rev()
                    .fold(dout, |dout, layer| layer.backward(dout));
                first.backward_params(dout)
            }
        }
    }

    fn predict(&self, x: ArrayD<A>) -> ArrayD<A> {
        self.layers.iter().fold(x, |x, layer| layer.predict(x))
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, A>)) {
        for layer in &mut self.layers {
            layer.visit_params(f);
        }
    }

    fn visit_params_ref(&self, f: &mut dyn FnMut(&'static str, ArrayViewD<'_, A>)) {
        for layer in &self.layers {
            layer.visit_params_ref(f);
        }
    }

    /// Each layer's tensors named `<i>.<name>`, `i` the layer's index from 0, as PyTorch names the
    /// children of an `nn.Sequential` (`0.weight`, `0.bias`, `2.weight`, ...).
    fn visit_tensors(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, A>)) {
        for (i, layer) in self.layers.iter().enumerate() {
            layer.visit_tensors(&mut |name, v| f(&format!("{i}.{name}"), v));
        }
    }

    #[track_caller]
    fn load_tensor(&mut self, name: &str, value: ArrayViewD<'_, A>) -> Result<(), String> {
        let layer = name
            .split_once('.')
            .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)))
            .and_then(|(i, rest)| Some((self.layers.get_mut(i)?, rest)));
        match layer {
            Some((layer, rest)) => layer.load_tensor(rest, value),
            None => panic!(
                "Sequential::load_tensor: `{name}` is not `<layer index>.<tensor>` for one of its {} layers",
                self.layers.len()
            ),
        }
    }
}
