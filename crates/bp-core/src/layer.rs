//! The `Layer` trait.

use std::any::Any;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, NdFloat};

/// What a parameter is to its layer, which decides how regularisation treats it: weight decay
/// (the book's `½ λ Σ W²`) applies to [`Weight`](ParamKind::Weight)s only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// A weight matrix that multiplies the input (`Affine`'s `W`): decayed.
    Weight,
    /// An additive offset (`Affine`'s `b`, `BatchNorm`'s `beta`): not decayed.
    Bias,
    /// A per-feature scale (`BatchNorm`'s `gamma`): not decayed, as in the book.
    Scale,
}

impl ParamKind {
    /// Whether weight decay applies to parameters of this kind.
    ///
    /// ```
    /// use bp_core::ParamKind;
    ///
    /// assert!(ParamKind::Weight.decays());
    /// assert!(!ParamKind::Bias.decays() && !ParamKind::Scale.decays());
    /// ```
    pub fn decays(self) -> bool {
        self == ParamKind::Weight
    }
}

/// One trainable parameter of a layer, as [`Layer::visit_params`] hands it out: its name and kind
/// within the layer (`"W"`, a weight), its value, and the gradient the last backward pass wrote for
/// it.
#[derive(Debug)]
pub struct Param<'a, A> {
    /// The parameter's name within its layer, such as `"W"` or `"b"`.
    pub name: &'static str,
    /// What the parameter is to its layer.
    pub kind: ParamKind,
    /// The parameter's value; optimizers update it in place.
    pub value: ArrayViewMutD<'a, A>,
    /// The gradient of the loss with respect to `value`, overwritten by each backward pass. It is
    /// mutable so that a network can add a regularisation term (weight decay's `λ W`) in place.
    pub grad: ArrayViewMutD<'a, A>,
}

/// Cloning a boxed layer: implemented for every `Layer` that is `Clone`, so that a network of
/// `Box<dyn Layer<A>>` can be cloned (for threads that each perturb their own copy, say).
pub trait LayerClone<A> {
    /// A boxed copy of the layer.
    fn clone_box(&self) -> Box<dyn Layer<A>>;
}

impl<A: NdFloat, T: Layer<A> + Clone + 'static> LayerClone<A> for T {
    fn clone_box(&self) -> Box<dyn Layer<A>> {
        Box::new(self.clone())
    }
}

impl<A: NdFloat> Clone for Box<dyn Layer<A>> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// A layer as [`Any`], so that a network can find the layers of one type among its boxed layers
/// (its `Dropout`s, to freeze their masks). Implemented for every `'static` type.
pub trait AsAny {
    /// The layer as `&dyn Any`.
    fn as_any(&self) -> &dyn Any;
    /// The layer as `&mut dyn Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A layer of a network: a function with a forward pass and a backward pass.
///
/// The trait is object safe, so a network can be a `Vec<Box<dyn Layer<A>>>` (see
/// [`Sequential`](crate::Sequential)). A layer is `Send + Sync` (a network is shared by threads
/// that predict with it) and `Clone` (through [`LayerClone`], which every `Clone` layer has).
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
/// - [`visit_tensors`](Layer::visit_tensors) visits what a model file keeps of the layer (its
///   parameters and its state, such as running averages) under PyTorch's `state_dict` names and in
///   PyTorch's layouts, and [`load_tensor`](Layer::load_tensor) puts such a tensor back.
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
pub trait Layer<A: NdFloat>: LayerClone<A> + AsAny + Send + Sync {
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

    /// Visits every tensor a model file keeps of the layer, parameters and state (running
    /// averages) alike, under the names and in the layouts of PyTorch's equivalent module
    /// (`weight` (out, in) and `bias` for [`Affine`](crate::Affine), PyTorch's `Linear`), in a
    /// fixed order. Layers without tensors visit nothing (the default).
    fn visit_tensors(&self, _f: &mut dyn FnMut(&str, ArrayViewD<'_, A>)) {}

    /// Replaces the tensor that [`visit_tensors`](Layer::visit_tensors) names `name` with `value`,
    /// given in the same layout.
    ///
    /// # Errors
    ///
    /// Values the layer cannot hold (a negative variance, say), with the reason; the layer is then
    /// unchanged.
    ///
    /// # Panics
    ///
    /// If the layer has no tensor of that name, or `value` does not have its shape (a model file
    /// reader checks both against `visit_tensors` first).
    #[track_caller]
    fn load_tensor(&mut self, name: &str, value: ArrayViewD<'_, A>) -> Result<(), String> {
        panic!(
            "{}::load_tensor: the layer has no tensor `{name}` (given one of shape {:?})",
            self.name(),
            value.shape()
        );
    }
}

/// Assigns `value` to `target` for [`Layer::load_tensor`], checking the shape.
///
/// # Panics
///
/// If the shapes differ.
#[track_caller]
pub(crate) fn load_into<A: Copy>(
    layer: &str,
    name: &str,
    mut target: ArrayViewMutD<'_, A>,
    value: ArrayViewD<'_, A>,
) {
    assert!(
        target.shape() == value.shape(),
        "{layer}::load_tensor: `{name}` has shape {:?}, given {:?}",
        target.shape(),
        value.shape()
    );
    target.assign(&value);
}
