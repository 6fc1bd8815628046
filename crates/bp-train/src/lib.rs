//! Networks, optimizers, the training loop and model files of *Deep Learning from Scratch*
//! (chapters 5 and 6). The `bp-train` command is built on this library (with the `cli` feature,
//! on by default); the library itself has no command line, plotting or image decoding in it.
//!
//! - A [`Network`] is a stack of layers and a loss: a [`Sequential`](bp_core::Sequential) of
//!   bp-core's layers, built from a layer list ([`LayerSpec`](bp_core::LayerSpec)s, such as
//!   `affine 100, relu, dropout 0.3, affine 10`), with `SoftmaxWithLoss` on top. Its forward,
//!   backward, inference, parameter visiting and accuracy are written once. The book's
//!   [`TwoLayerNet`] (`Affine -> Relu -> Affine`) and [`MultiLayerNet`] (any hidden sizes, Relu or
//!   Sigmoid, std/He/Xavier initialisation, optional batch normalisation, dropout and weight decay)
//!   are named constructors of such lists, in `f32` or `f64`, and the convnets of chapters 7 and 8
//!   are [`NAMED_NETS`].
//! - Optimizers implement [`Optimizer`]: [`Sgd`], [`Momentum`], [`AdaGrad`], [`Adam`], with the
//!   book's formulas; a [`Schedule`] varies the learning rate.
//! - [`train`] runs the loop: the book's sampling or shuffled epochs, one forward and backward pass
//!   per step (the loss it reports comes from that pass), evaluation after each epoch through the
//!   inference path, seeded so that the same seed gives the same numbers.
//! - [`model_file`] keeps a network in one safetensors file (the layer list and the tensors, named
//!   as PyTorch's `nn.Sequential`) and rebuilds it through bp-core's one layer registry.
//! - [`files`] opens inputs only when they are regular files, reads them up to a bound, and checks
//!   outputs by one rule before any work; [`write_atomic`] replaces a file whole or not at all.
//!
//! # The key design decision: a training step allocates nothing
//!
//! The batch is gathered into one buffer that travels through the step and comes back: the first
//! affine layer keeps it as its input, skips the input gradient nobody reads
//! ([`Layer::backward_params`](bp_core::Layer::backward_params)) and hands the storage back through
//! [`Network::gradient_reusing`]. Every other array of the step is recycled by the layers, and the
//! optimizers update parameters in place with state sized on first use.
//!
//! ```
//! use bp_loss::Targets;
//! use bp_train::{Optimizer, Sgd, TwoLayerNet};
//! use ndarray::array;
//! use rand::SeedableRng;
//! use rand_xoshiro::Xoshiro256PlusPlus;
//!
//! let mut net = TwoLayerNet::<f64>::new(2, 8, 2, 0.5, &mut Xoshiro256PlusPlus::seed_from_u64(1));
//! let x = array![[1.0, 0.0], [0.0, 1.0]];
//! let t = [0, 1];
//! let mut sgd = Sgd::new();
//! let first = net.gradient(x.clone().into_dyn(), Targets::Index(&t));
//! for _ in 0..100 {
//!     net.gradient(x.clone().into_dyn(), Targets::Index(&t));
//!     sgd.step(&mut net, 0.5);
//! }
//! assert!(net.loss(x.clone().into_dyn(), Targets::Index(&t)) < first / 10.0);
//! assert_eq!(net.accuracy(x.view().into_dyn(), &t), 1.0);
//! ```

mod atomic;
mod augment;
mod describe;
mod element;
pub mod files;
mod memory;
pub mod model_file;
mod multi_layer;
mod named;
mod network;
mod optimizer;
mod schedule;
mod train;
mod two_layer;

pub use atomic::write_atomic;
pub use augment::Augment;
pub use element::Dtype;
pub use memory::{Bytes, MemoryEstimate, estimate_memory};
pub use multi_layer::{Activation, MultiLayerConfig, MultiLayerNet};
pub use named::{NAMED_NETS, NamedNet};
pub use network::{EVAL_CHUNK, NetOptions, Network, argmax, chunked_accuracy, count_correct};
pub use optimizer::{AdaGrad, Adam, EPSILON, Momentum, Optimizer, OptimizerKind, Sgd};
pub use schedule::Schedule;
pub use train::{
    Dataset, Divergence, EpochReport, Flow, Length, Observer, Plan, SATURATED_LOSS,
    SATURATED_STEPS, Sampling, SettingNames, Silent, Stream, TrainConfig, TrainError, TrainSummary,
    iters_per_epoch, rng, train, train_with,
};
pub use two_layer::TwoLayerNet;
