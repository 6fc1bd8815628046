//! Numerical versus backprop gradient checks: how a user of bp trusts backpropagation.
//!
//! Chapter 5 of *Deep Learning from Scratch* ends with `gradient_check.py`: the gradients that
//! backprop computes are compared with central-difference numerical gradients, and the mean absolute
//! difference per parameter (`W1: 4.6e-10`) shows that they agree. This crate does that for any
//! layer, any loss node and any network, and reports, next to the book's figure, the maximum relative
//! error `|a - n| / max(|a| + |n|, 1e-8)`, which does not shrink with a gradient's scale and so
//! catches a wrong element in a large array.
//!
//! - [`numerical_gradient`]: central differences of a scalar function of an array.
//! - [`numerical_param_gradients`]: central differences of a loss with respect to every parameter of
//!   a model, reached through its parameter visitor.
//! - [`check_layer`] / [`check_layer_with_upstream`]: any [`Layer`](bp_core::Layer), with the scalar
//!   `L = Σ forward(x) · r` for a random upstream gradient `r`, comparing `dx` and every parameter's
//!   gradient. [`check_loss`] / [`check_softmax_with_loss`] do the same for loss nodes.
//! - [`check_network`] / [`check_network_parallel`]: any [`Network`](bp_train::Network) of bp-train
//!   (or any [`CheckedNetwork`]),
//!   the book's `gradient_check.py`: `gradient(x, t)` against central differences of `loss(x, t)`,
//!   one line per parameter (`W1: 4.6e-10 (max rel 1.2e-08)`).
//! - [`compare`] and [`GradReport`]: the error figures, per gradient, and the verdict.
//!
//! # The key design decision: perturb parameters through the visitor, one element at a time
//!
//! The book perturbs a parameter through an alias of the network's own array. Layers here own their
//! parameters and lend them out only through [`Layer::visit_params`](bp_core::Layer::visit_params),
//! so the numerical gradient moves an element through a visit: one visit learns the parameters'
//! names and shapes, then each element is set to `θ + h`, `θ - h` and back to `θ` by visits that
//! change only the parameter that owns it. No aliasing and no `unsafe`; each element costs two loss
//! evaluations and three visits (a handful of view constructions), whatever the model's size, and is
//! restored bit for bit. The check is therefore as fast as the model's forward pass allows, and
//! since the elements are independent, [`numerical_param_gradients_parallel`] shares them among
//! threads, each with its own clone of the model, with a bit-for-bit identical result.
//!
//! # What a check can tell
//!
//! A central difference is exact only up to its truncation error `h² · f⁽³⁾ / 6` and the rounding of
//! the loss divided by `2h`, so the verdict allows for both:
//!
//! - Differences within the [`rounding_resolution`] of the loss count as agreement: the bias of an
//!   Affine layer followed by batch normalisation has gradient exactly 0, which backprop gives as
//!   `1e-16` and the central difference as `1e-12`, a relative error of `1e-4` against the floor.
//! - Layers are held to [`LAYER_TOLERANCE`] (`1e-6`); where a gradient element nearly cancels, the
//!   truncation error does not, and about one random case in a thousand exceeds it.
//! - Networks are held to [`NETWORK_TOLERANCE`] (`1e-4`, relative to the element or to its
//!   parameter's largest gradient): the book's cross-entropy takes `ln(y + 1e-7)`, and backprop's
//!   gradient leaves the `1e-7` out.
//! - Relu is not differentiable at 0: inputs (and hidden pre-activations) must keep farther from 0
//!   than a step of `h` can move them, or the central difference averages two slopes.
//!
//! # Example
//!
//! ```
//! use bp_check::{LAYER_TOLERANCE, check_layer, random_input};
//! use bp_core::{Affine, Init, Relu, Sequential};
//! use rand::SeedableRng;
//! use rand_xoshiro::Xoshiro256PlusPlus;
//!
//! let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
//! let mut net = Sequential::<f64>::new(vec![
//!     Box::new(Affine::random(4, 3, Init::He, &mut rng)),
//!     Box::new(Relu::new()),
//!     Box::new(Affine::random(3, 2, Init::He, &mut rng)),
//! ]);
//! let x = random_input(&[5, 4], 1);
//! let report = check_layer(&mut net, x.view(), 2);
//! // `report` prints one line per gradient, such as `W1: 3.4e-12 (max rel 1.1e-11)`.
//! let names: Vec<_> = report.checks.iter().map(|c| c.name.as_str()).collect();
//! assert_eq!(names, ["dx", "W1", "b1", "W2", "b2"]);
//! assert!(report.passed(LAYER_TOLERANCE), "{report}");
//! ```

mod layer;
mod network;
mod report;

/// The central differences live in bp-core, beside the layers (the networks of bp-train use them
/// too); they are re-exported here, where gradient checks are.
pub use bp_core::{
    H, numerical_gradient, numerical_param_gradients, numerical_param_gradients_parallel,
};
pub use layer::{
    INPUT_MARGIN, LAYER_TOLERANCE, LossNode, SoftmaxLoss, check_layer, check_layer_with_upstream,
    check_loss, check_softmax_with_loss, random_input, random_upstream,
};
pub use network::{CheckedNetwork, NETWORK_TOLERANCE, check_network, check_network_parallel};
pub use report::{
    GradReport, ParamCheck, REL_FLOOR, compare, compare_with_resolution, rounding_resolution,
};
