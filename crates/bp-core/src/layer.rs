//! The `Layer` trait.

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, NdFloat};

/// One trainable parameter of a layer, as [`Layer::visit_params`] hands it out: its name within the
/// layer (`"W"`, `"b"`, ...), its value, and the gradient the last backward pass wrote for it.
#[derive(Debug)]
pub struct Param<'a, A> {
    /// The parameter's name within its layer, such as `"W"` or `"b"`.
    pub name: &'static str,
    /// The parameter's value; optimizers update it in place.
    pub value: ArrayViewMutD<'a, A>,
    /// The gradient of the loss with respect to `value`, overwritten by each backward pass.
    pub grad: ArrayViewD<'a, A>,
}

/// A layer of a network: a function with a forward pass and a backward pass.
///
/// The trait is object safe, so a network can be a `Vec<Box<dyn Layer<A>>>` (see
/// [`Sequential`](crate::Sequential)).
///
/// # Contract
///
/// - [`forward`](Layer::forward) is the training pass. It may keep its input (or anything derived
///   from it) for the next [`backward`](Layer::backward).
/// - `backward(dout)` takes the gradient of the loss with respect to this layer's output, **overwrites**
///   (never accumulates) the gradients of the layer's parameters, and returns `dx`, the gradient with
///   respect to the input of the last `forward`. It has the input's shape.
/// - [`predict`](Layer::predict) is the inference pass. It takes `&self`, so it cannot touch the
///   training caches; for layers that behave differently in training (dropout, batch normalisation)
///   it is the inference behaviour.
/// - [`visit_params`](Layer::visit_params) visits every parameter in a fixed order that each layer
///   documents. Optimizers keep their per-parameter state by position in that order.
///
/// # Example
///
/// ```
/// use bp_core::{Affine, Layer, Relu, Sigmoid};
/// use ndarray::array;
///
/// let layers: Vec<Box<dyn Layer<f32>>> = vec![
///     Box::new(Affine::new(array![[2.0], [3.0]], array![-1.0])),
///     Box::new(Relu::new()),
///     Box::new(Sigmoid::new()),
/// ];
/// let mut x = array![[1.0, 1.0], [-1.0, 0.0]].into_dyn();
/// for layer in &layers {
///     x = layer.predict(x);
/// }
/// // 2 + 3 - 1 = 4 -> relu 4 -> sigmoid(4); -2 + 0 - 1 = -3 -> relu 0 -> sigmoid(0) = 0.5
/// assert!((x[[0, 0]] - 1.0 / (1.0 + (-4.0f32).exp())).abs() < 1e-6);
/// assert_eq!(x[[1, 0]], 0.5);
/// ```
pub trait Layer<A: NdFloat> {
    /// The layer's type name, such as `"Affine"`, for reports and error messages.
    fn name(&self) -> &'static str;

    /// Training forward pass: computes the output and keeps what [`backward`](Layer::backward) needs.
    fn forward(&mut self, x: ArrayD<A>) -> ArrayD<A>;

    /// Backward pass: overwrites the parameter gradients and returns `dx`, shaped like the input of the
    /// last [`forward`](Layer::forward).
    ///
    /// # Panics
    ///
    /// If no `forward` preceded it, or if `dout` is not shaped like the last output.
    fn backward(&mut self, dout: ArrayD<A>) -> ArrayD<A>;

    /// Backward pass for the first layer of a network, whose input gradient nobody reads: overwrites
    /// the parameter gradients exactly as [`backward`](Layer::backward) does, but need not compute `dx`.
    ///
    /// Returns an array shaped like the input of the last `forward` whose **contents are
    /// unspecified**; it is handed back only so that the caller can reuse its storage (the
    /// [`Affine`](crate::Affine) layer returns the input it kept). The default computes `dx`.
    ///
    /// # Panics
    ///
    /// As [`backward`](Layer::backward).
    fn backward_params(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        self.backward(dout)
    }

    /// Inference forward pass. Never reads or writes training caches.
    fn predict(&self, x: ArrayD<A>) -> ArrayD<A>;

    /// Visits every parameter with its gradient, in the layer's documented order. Layers without
    /// parameters visit nothing (the default).
    fn visit_params(&mut self, _f: &mut dyn FnMut(Param<'_, A>)) {}

    /// Visits every parameter's name and value read-only, in the same order as
    /// [`visit_params`](Layer::visit_params). Layers without parameters visit nothing (the default).
    fn visit_params_ref(&self, _f: &mut dyn FnMut(&'static str, ArrayViewD<'_, A>)) {}

    /// The number of scalar parameters, summed over [`visit_params_ref`](Layer::visit_params_ref).
    fn num_params(&self) -> usize {
        let mut n = 0;
        self.visit_params_ref(&mut |_, v| n += v.len());
        n
    }
}
