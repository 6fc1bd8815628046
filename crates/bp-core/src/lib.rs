//! Layers with a forward and a backward pass: the building blocks of backpropagation, as in chapter 5 of
//! *Deep Learning from Scratch*.
//!
//! Every layer implements [`Layer`]: a training [`forward`](Layer::forward) that keeps what the backward
//! pass needs, a [`backward`](Layer::backward) that turns the upstream gradient `dout` into the layer's
//! parameter gradients and the input gradient `dx`, and an inference [`predict`](Layer::predict) that
//! never touches training state. The scalar nodes of the book's computational-graph examples,
//! [`MulLayer`] and [`AddLayer`], live here too; they take two inputs and so are their own types.
//!
//! # The key design decision: arrays move through the network by value
//!
//! `forward` and `backward` take their array by value and return one. A layer can therefore keep its
//! input for the backward pass without copying it, and can overwrite `dout` in place (the book's
//! `dout[self.mask] = 0`, made safe by ownership). Each layer owns its parameters and their gradient
//! buffers; optimizers and gradient checks reach them through [`Layer::visit_params`], which visits
//! them in a fixed, documented order. Gradients are overwritten by every backward pass, never
//! accumulated.
//!
//! The element type is any [`ndarray::NdFloat`]: `f32` for training speed, `f64` for gradient checks
//! and parity with the book's NumPy code.
//!
//! ```
//! use bp_core::{Affine, Layer, Relu, Sequential};
//! use ndarray::array;
//!
//! let mut net = Sequential::<f64>::new(vec![
//!     Box::new(Affine::new(array![[1.0, -1.0], [2.0, 0.5]], array![0.0, 1.0])),
//!     Box::new(Relu::new()),
//! ]);
//! let y = net.forward(array![[1.0, 1.0]].into_dyn());
//! assert_eq!(y, array![[3.0, 0.5]].into_dyn());
//! let dx = net.backward(array![[1.0, 1.0]].into_dyn());
//! assert_eq!(dx, array![[0.0, 2.5]].into_dyn());
//! ```

mod affine;
mod batch;
mod batch_norm;
mod conv;
mod dropout;
mod flatten;
mod float;
mod gemm;
mod graph;
mod im2col;
mod init;
mod layer;
mod matmul;
mod numerical;
mod parallel;
mod pooling;
mod relu;
mod sequential;
mod sigmoid;
mod spec;

pub use affine::Affine;
pub use batch_norm::BatchNorm;
pub use conv::Convolution;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use float::Compact;
pub use graph::{AddLayer, MulLayer};
pub use im2col::{col2im, im2col};
pub use init::{Init, randn};
pub use layer::{AsAny, Layer, LayerClone, Param, ParamKind};
pub use matmul::{Backend, GEMM_PART_FMAS, MIN_PART_FMAS, Products};
pub use numerical::{
    H, numerical_gradient, numerical_param_gradients, numerical_param_gradients_parallel,
};
pub use parallel::{install, set_threads, threads};
pub use pooling::Pooling;
pub use relu::Relu;
pub use sequential::Sequential;
pub use sigmoid::Sigmoid;
pub use spec::{
    BuiltLayer, LAYER_WORDS, LayerError, LayerPlan, LayerSpec, LayerWord, Stack, StackPlan,
    build_stack, layer_words_summary, parse_layers, plan_stack,
};

/// Re-exported so that users name the same `ndarray` version as the layers.
pub use ndarray;
