//! Networks, optimizers and the training loop of *Deep Learning from Scratch* (chapters 5 and 6),
//! and the `bp-train` command built on them.
//!
//! - Networks implement [`Network`]: the book's [`TwoLayerNet`] (`Affine -> Relu -> Affine ->
//!   SoftmaxWithLoss`) and [`MultiLayerNet`] (any hidden sizes, Relu or Sigmoid, std/He/Xavier
//!   initialisation, optional batch normalisation, dropout and weight decay), in `f32` or `f64`.
//! - Optimizers implement [`Optimizer`]: [`Sgd`], [`Momentum`], [`AdaGrad`], [`Adam`], with the
//!   book's formulas; a [`Schedule`] varies the learning rate.
//! - [`train`] runs the loop: the book's sampling or shuffled epochs, one forward and backward pass
//!   per step (the loss it reports comes from that pass), evaluation after each epoch through the
//!   inference path, seeded so that the same seed gives the same numbers.
//! - [`run`] loads a data set with `bp-data` and does all of it; [`cli`] is the command line.
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
//! use bp_train::{Network, Optimizer, Sgd, TwoLayerNet};
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

pub mod cli;
mod error;
pub mod eval;
pub mod image;
pub mod model_file;
mod multi_layer;
mod network;
mod optimizer;
pub mod plot;
mod run;
mod schedule;
mod train;
mod two_layer;

pub use error::TrainError;
pub use multi_layer::{Activation, MultiLayerConfig, MultiLayerNet};
pub use network::{EVAL_CHUNK, Network, chunked_accuracy, count_correct, param_names};
pub use optimizer::{AdaGrad, Adam, EPSILON, Momentum, Optimizer, OptimizerKind, Sgd};
pub use run::{
    DataInfo, Dtype, NetSpec, RunConfig, RunObserver, RunOutcome, SaveConfig, SavedModel,
    TrainedNet, describe, epoch_line, final_line, run,
};
pub use schedule::Schedule;
pub use train::{
    Dataset, EpochReport, Flow, Length, Observer, Plan, SATURATED_LOSS, SATURATED_STEPS, Sampling,
    Silent, Stream, TrainConfig, TrainSummary, iters_per_epoch, rng, train, train_with,
};
pub use two_layer::TwoLayerNet;
