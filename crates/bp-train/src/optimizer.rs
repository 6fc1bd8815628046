//! The book's optimizers (chapter 6): SGD, Momentum, AdaGrad and Adam.
//!
//! An optimizer only writes the update of each parameter from its gradient. Its per-parameter state
//! (velocities, squared-gradient sums, moments) is kept by the parameter's position in the network's
//! visiting order and created, zeroed, the first time that position is visited.

use bp_core::{Layer, Param};
use ndarray::{ArrayD, ArrayViewMutD, NdFloat, Zip};

use crate::network::Network;

/// The book's small constant that keeps AdaGrad's and Adam's division finite.
pub const EPSILON: f64 = 1e-7;

/// A gradient-descent update rule.
pub trait Optimizer<A: NdFloat> {
    /// The lower-case name, as on the command line (`"sgd"`, `"adam"`, ...).
    fn name(&self) -> &'static str;

    /// Called once at the start of each step, before any parameter is updated (Adam counts steps).
    fn begin_step(&mut self) {}

    /// Updates the parameter at position `index` of the visiting order with learning rate `lr`.
    ///
    /// # Panics
    ///
    /// If the parameter's shape differs from that of the state kept for `index` (the optimizer is
    /// being used with another network), or `index` skips a position never visited before.
    fn update_param(&mut self, index: usize, lr: A, param: Param<'_, A>);

    /// One step over a whole network: [`begin_step`](Optimizer::begin_step), then
    /// [`update_param`](Optimizer::update_param) for every parameter in visiting order.
    fn step(&mut self, net: &mut Network<A>, lr: A) {
        self.begin_step();
        let mut index = 0;
        net.visit_params(&mut |p| {
            self.update_param(index, lr, p);
            index += 1;
        });
    }

    /// One step over a single layer (or a `Sequential`), as [`step`](Optimizer::step).
    fn step_layer(&mut self, layer: &mut dyn Layer<A>, lr: A) {
        self.begin_step();
        let mut index = 0;
        layer.visit_params(&mut |p| {
            self.update_param(index, lr, p);
            index += 1;
        });
    }
}

/// The state kept for the parameter at `index`, created as zeros shaped like `value` on first use.
#[track_caller]
fn state<'s, A: NdFloat>(
    states: &'s mut Vec<ArrayD<A>>,
    index: usize,
    param: &Param<'_, A>,
    optimizer: &str,
) -> &'s mut ArrayD<A> {
    assert!(
        index <= states.len(),
        "{optimizer}: parameter {index} visited before parameter {}",
        states.len()
    );
    if index == states.len() {
        states.push(ArrayD::zeros(param.value.raw_dim()));
    }
    let s = &mut states[index];
    assert!(
        s.shape() == param.value.shape(),
        "{optimizer}: parameter {index} ({}) has shape {:?} but the state kept for it has shape {:?}; \
         use one optimizer per network",
        param.name,
        param.value.shape(),
        s.shape()
    );
    s
}

/// Checks that a parameter and its gradient have the same shape.
#[track_caller]
fn check_grad<A>(param: &Param<'_, A>) {
    assert!(
        param.value.shape() == param.grad.shape(),
        "parameter {} has shape {:?} but its gradient has shape {:?}",
        param.name,
        param.value.shape(),
        param.grad.shape()
    );
}

/// The fewest elements of a part of a parameter updated by a thread of its own (see
/// [`for_each_shared`]).
const SHARED_UPDATE_ELEMENTS: usize = 1 << 14;

/// Runs `update` over `zip`, which covers `len` elements: cut by `split` (in halves, again and
/// again) into as many parts as bp-core's pool has threads while each has at least
/// [`SHARED_UPDATE_ELEMENTS`], which run at once (see [`bp_core::install`]). Each element's
/// update is the same either way.
fn for_each_shared<Z: Send>(
    zip: Z,
    len: usize,
    split: impl Fn(Z) -> (Z, Z) + Sync,
    update: impl Fn(Z) + Sync,
) {
    let parts = bp_core::threads().min(len / SHARED_UPDATE_ELEMENTS).max(1);
    if parts == 1 {
        return update(zip);
    }
    bp_core::install(|| halves(zip, parts, &split, &update));
}

/// `update` over `zip` in `parts` parts (see [`for_each_shared`]).
fn halves<Z: Send>(
    zip: Z,
    parts: usize,
    split: &(impl Fn(Z) -> (Z, Z) + Sync),
    update: &(impl Fn(Z) + Sync),
) {
    if parts <= 1 {
        return update(zip);
    }
    let (first, second) = split(zip);
    rayon::join(
        || halves(first, parts / 2, split, update),
        || halves(second, parts - parts / 2, split, update),
    );
}

fn cast<A: NdFloat>(v: f64) -> A {
    A::from(v).expect("every f64 converts to a float type")
}

/// Stochastic gradient descent, the book's `SGD`: `W ← W - lr · ∂L/∂W`.
///
/// ```
/// use bp_core::{Affine, Layer};
/// use bp_train::{Optimizer, Sgd};
/// use ndarray::array;
///
/// let mut affine = Affine::<f64>::new(array![[1.0, 2.0]], array![0.0, 0.0]);
/// affine.forward(array![[2.0]].into_dyn());
/// affine.backward(array![[1.0, -1.0]].into_dyn()); // dW = [[2, -2]], db = [1, -1]
/// Sgd::new().step_layer(&mut affine, 0.1);
/// assert_eq!(affine.w(), &array![[0.8, 2.2]]);
/// assert_eq!(affine.b(), &array![-0.1, 0.1]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Sgd;

impl Sgd {
    /// Plain SGD (it has no state).
    pub fn new() -> Self {
        Sgd
    }
}

impl<A: NdFloat> Optimizer<A> for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }

    #[track_caller]
    fn update_param(&mut self, _index: usize, lr: A, param: Param<'_, A>) {
        check_grad(&param);
        let Param {
            mut value, grad, ..
        } = param;
        let len = value.len();
        for_each_shared(
            Zip::from(&mut value).and(&grad),
            len,
            |zip| zip.split(),
            |zip| {
                zip.for_each(|w, &g| *w -= lr * g);
            },
        );
    }
}

/// Momentum SGD, the book's `Momentum`: `v ← α v - lr · ∂L/∂W`, `W ← W + v`, `v` starting at 0
/// (`α = 0.9` by default).
///
/// ```
/// use bp_core::{Affine, Layer};
/// use bp_train::{Momentum, Optimizer};
/// use ndarray::array;
///
/// let mut affine = Affine::<f64>::new(array![[1.0]], array![0.0]);
/// affine.forward(array![[1.0]].into_dyn());
/// affine.backward(array![[1.0]].into_dyn()); // dW = 1, db = 1
/// let mut momentum = Momentum::new(0.9);
/// momentum.step_layer(&mut affine, 0.1); // v = -0.1
/// momentum.step_layer(&mut affine, 0.1); // v = 0.9 · -0.1 - 0.1 = -0.19
/// assert!((affine.w()[[0, 0]] - (1.0 - 0.1 - 0.19)).abs() < 1e-15);
/// ```
#[derive(Clone, Debug)]
pub struct Momentum<A> {
    momentum: f64,
    v: Vec<ArrayD<A>>,
}

impl<A: NdFloat> Momentum<A> {
    /// Momentum SGD with momentum `α` (the book uses 0.9).
    pub fn new(momentum: f64) -> Self {
        Momentum {
            momentum,
            v: Vec::new(),
        }
    }
}

impl<A: NdFloat> Optimizer<A> for Momentum<A> {
    fn name(&self) -> &'static str {
        "momentum"
    }

    #[track_caller]
    fn update_param(&mut self, index: usize, lr: A, param: Param<'_, A>) {
        check_grad(&param);
        let alpha: A = cast(self.momentum);
        let v = state(&mut self.v, index, &param, "Momentum");
        let Param {
            mut value, grad, ..
        } = param;
        let len = value.len();
        let zip = Zip::from(&mut value).and(v).and(&grad);
        for_each_shared(
            zip,
            len,
            |zip| zip.split(),
            |zip| {
                zip.for_each(|w, v, &g| {
                    *v = alpha * *v - lr * g;
                    *w += *v;
                });
            },
        );
    }
}

/// AdaGrad, the book's `AdaGrad`: `h ← h + (∂L/∂W)²`, `W ← W - lr · ∂L/∂W / (sqrt(h) + 1e-7)`,
/// `h` starting at 0.
///
/// ```
/// use bp_core::{Affine, Layer};
/// use bp_train::{AdaGrad, Optimizer};
/// use ndarray::array;
///
/// let mut affine = Affine::<f64>::new(array![[1.0]], array![0.0]);
/// affine.forward(array![[3.0]].into_dyn());
/// affine.backward(array![[1.0]].into_dyn()); // dW = 3: h = 9, step = lr · 3 / (3 + 1e-7)
/// AdaGrad::new().step_layer(&mut affine, 0.5);
/// assert!((affine.w()[[0, 0]] - (1.0 - 0.5 * 3.0 / (3.0 + 1e-7))).abs() < 1e-15);
/// ```
#[derive(Clone, Debug, Default)]
pub struct AdaGrad<A> {
    h: Vec<ArrayD<A>>,
}

impl<A: NdFloat> AdaGrad<A> {
    /// AdaGrad with empty state.
    pub fn new() -> Self {
        AdaGrad { h: Vec::new() }
    }
}

impl<A: NdFloat> Optimizer<A> for AdaGrad<A> {
    fn name(&self) -> &'static str {
        "adagrad"
    }

    #[track_caller]
    fn update_param(&mut self, index: usize, lr: A, param: Param<'_, A>) {
        check_grad(&param);
        let eps: A = cast(EPSILON);
        let h = state(&mut self.h, index, &param, "AdaGrad");
        let Param {
            mut value, grad, ..
        } = param;
        let len = value.len();
        let zip = Zip::from(&mut value).and(h).and(&grad);
        for_each_shared(
            zip,
            len,
            |zip| zip.split(),
            |zip| {
                zip.for_each(|w, h, &g| {
                    *h += g * g;
                    *w -= lr * g / (h.sqrt() + eps);
                });
            },
        );
    }
}

/// Adam, as the book's `Adam` writes it: at step `t` (from 1),
/// `lr_t = lr · sqrt(1 - β₂ᵗ) / (1 - β₁ᵗ)`, `m ← m + (1 - β₁)(g - m)`, `v ← v + (1 - β₂)(g² - v)`,
/// `W ← W - lr_t · m / (sqrt(v) + 1e-7)`; `m` and `v` start at 0 (`β₁ = 0.9`, `β₂ = 0.999` by default).
///
/// ```
/// use bp_core::{Affine, Layer};
/// use bp_train::{Adam, Optimizer};
/// use ndarray::array;
///
/// let mut affine = Affine::<f64>::new(array![[1.0]], array![0.0]);
/// affine.forward(array![[2.0]].into_dyn());
/// affine.backward(array![[1.0]].into_dyn()); // dW = 2
/// Adam::new(0.9, 0.999).step_layer(&mut affine, 0.001);
/// // m = 0.2, v = 0.004, lr_t = 0.001 · sqrt(0.001) / 0.1: the first step is about lr · sign(g).
/// let lr_t = 0.001 * 0.001f64.sqrt() / 0.1;
/// let expected = 1.0 - lr_t * 0.2 / (0.004f64.sqrt() + 1e-7);
/// assert!((affine.w()[[0, 0]] - expected).abs() < 1e-15);
/// ```
#[derive(Clone, Debug)]
pub struct Adam<A> {
    beta1: f64,
    beta2: f64,
    /// Completed `begin_step` calls: the book's `self.iter`.
    t: i32,
    /// `lr_t / lr` for the current step.
    correction: f64,
    m: Vec<ArrayD<A>>,
    v: Vec<ArrayD<A>>,
}

impl<A: NdFloat> Adam<A> {
    /// Adam with decay rates `β₁` and `β₂` (the book uses 0.9 and 0.999).
    pub fn new(beta1: f64, beta2: f64) -> Self {
        Adam {
            beta1,
            beta2,
            t: 0,
            correction: 1.0,
            m: Vec::new(),
            v: Vec::new(),
        }
    }

    /// The number of steps begun so far.
    pub fn steps(&self) -> i32 {
        self.t
    }
}

impl<A: NdFloat> Optimizer<A> for Adam<A> {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn begin_step(&mut self) {
        self.t = self.t.saturating_add(1);
        self.correction = (1.0 - self.beta2.powi(self.t)).sqrt() / (1.0 - self.beta1.powi(self.t));
    }

    #[track_caller]
    fn update_param(&mut self, index: usize, lr: A, param: Param<'_, A>) {
        check_grad(&param);
        if self.t == 0 {
            // Used without begin_step: behave as the first step.
            self.begin_step();
        }
        let lr_t = lr * cast::<A>(self.correction);
        let (one_m_b1, one_m_b2): (A, A) = (cast(1.0 - self.beta1), cast(1.0 - self.beta2));
        let eps: A = cast(EPSILON);
        state(&mut self.m, index, &param, "Adam");
        state(&mut self.v, index, &param, "Adam");
        let (m, v) = (&mut self.m[index], &mut self.v[index]);
        let Param {
            mut value, grad, ..
        } = param;
        update_adam(&mut value, m, v, &grad, lr_t, one_m_b1, one_m_b2, eps);
    }
}

#[allow(clippy::too_many_arguments)]
fn update_adam<A: NdFloat>(
    value: &mut ArrayViewMutD<'_, A>,
    m: &mut ArrayD<A>,
    v: &mut ArrayD<A>,
    grad: &ArrayViewMutD<'_, A>,
    lr_t: A,
    one_m_b1: A,
    one_m_b2: A,
    eps: A,
) {
    let len = value.len();
    let zip = Zip::from(value).and(m).and(v).and(grad);
    for_each_shared(
        zip,
        len,
        |zip| zip.split(),
        |zip| {
            zip.for_each(|w, m, v, &g| {
                *m = *m + one_m_b1 * (g - *m);
                *v = *v + one_m_b2 * (g * g - *v);
                *w -= lr_t * *m / (v.sqrt() + eps);
            });
        },
    );
}

/// The optimizer to train with, as chosen on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OptimizerKind {
    /// [`Sgd`].
    #[default]
    Sgd,
    /// [`Momentum`] with momentum 0.9.
    Momentum,
    /// [`AdaGrad`].
    AdaGrad,
    /// [`Adam`] with β₁ = 0.9, β₂ = 0.999.
    Adam,
}

impl OptimizerKind {
    /// Every optimizer, in the order the command line lists them.
    pub const ALL: [OptimizerKind; 4] = [
        OptimizerKind::Sgd,
        OptimizerKind::Momentum,
        OptimizerKind::AdaGrad,
        OptimizerKind::Adam,
    ];

    /// The lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Momentum => "momentum",
            OptimizerKind::AdaGrad => "adagrad",
            OptimizerKind::Adam => "adam",
        }
    }

    /// The book's learning rate for this optimizer: 0.1 for SGD (chapter 5's `TwoLayerNet`
    /// training), 0.01 for Momentum and AdaGrad and 0.001 for Adam (chapter 6's comparison on MNIST).
    pub fn default_lr(self) -> f64 {
        match self {
            OptimizerKind::Sgd => 0.1,
            OptimizerKind::Momentum | OptimizerKind::AdaGrad => 0.01,
            OptimizerKind::Adam => 0.001,
        }
    }

    /// How many arrays the size of each parameter the optimizer keeps: 0 for SGD, 1 for Momentum
    /// (the velocity) and AdaGrad (the squared-gradient sum), 2 for Adam (the two moments).
    ///
    /// ```
    /// assert_eq!(bp_train::OptimizerKind::Adam.state_copies(), 2);
    /// ```
    pub fn state_copies(self) -> usize {
        match self {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Momentum | OptimizerKind::AdaGrad => 1,
            OptimizerKind::Adam => 2,
        }
    }

    /// A fresh optimizer of this kind with the book's hyperparameters.
    pub fn build<A: NdFloat + 'static>(self) -> Box<dyn Optimizer<A>> {
        match self {
            OptimizerKind::Sgd => Box::new(Sgd::new()),
            OptimizerKind::Momentum => Box::new(Momentum::new(0.9)),
            OptimizerKind::AdaGrad => Box::new(AdaGrad::new()),
            OptimizerKind::Adam => Box::new(Adam::new(0.9, 0.999)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bp_core::Affine;
    use ndarray::{Array1, Array2, array};

    /// An affine layer whose W = [[1, -2]] and b = [0.5, 0] have the gradients dW = [[0.5, -1]] and
    /// db = [0.5, -1] (x = [[1]], dout = [[0.5, -1]]).
    fn layer<A: NdFloat>() -> Affine<A> {
        let mut affine = Affine::new(
            array![[1.0, -2.0]].mapv(cast::<A>),
            array![0.5, 0.0].mapv(cast::<A>),
        );
        affine.forward(array![[1.0]].mapv(cast::<A>).into_dyn());
        affine.backward(array![[0.5, -1.0]].mapv(cast::<A>).into_dyn());
        affine
    }

    /// What `state_copies` says is what each optimizer keeps after a step: one array per
    /// parameter per copy, each of the parameter's size.
    #[test]
    fn state_copies_are_the_arrays_kept() {
        let count = |arrays: &[&Vec<ArrayD<f64>>]| -> usize {
            arrays.iter().flat_map(|a| a.iter()).map(ArrayD::len).sum()
        };
        let params = layer::<f64>().num_params();
        let mut momentum = Momentum::new(0.9);
        momentum.step_layer(&mut layer(), 0.1);
        let mut adagrad = AdaGrad::new();
        adagrad.step_layer(&mut layer(), 0.1);
        let mut adam = Adam::new(0.9, 0.999);
        adam.step_layer(&mut layer(), 0.1);
        assert_eq!(OptimizerKind::Sgd.state_copies(), 0);
        assert_eq!(
            count(&[&momentum.v]),
            OptimizerKind::Momentum.state_copies() * params
        );
        assert_eq!(
            count(&[&adagrad.h]),
            OptimizerKind::AdaGrad.state_copies() * params
        );
        assert_eq!(
            count(&[&adam.m, &adam.v]),
            OptimizerKind::Adam.state_copies() * params
        );
    }

    fn close<A: NdFloat>(got: &Array2<A>, expected: [f64; 2], tol: f64) {
        for (g, e) in got.iter().zip(expected) {
            assert!(
                (g.to_f64().unwrap() - e).abs() < tol,
                "{got} vs {expected:?}"
            );
        }
    }

    fn close1<A: NdFloat>(got: &Array1<A>, expected: [f64; 2], tol: f64) {
        for (g, e) in got.iter().zip(expected) {
            assert!(
                (g.to_f64().unwrap() - e).abs() < tol,
                "{got} vs {expected:?}"
            );
        }
    }

    /// A large parameter's update, shared over threads, reaches every element exactly once.
    #[test]
    fn shared_updates_cover_every_element_once() {
        for (rows, cols) in [(300, 200), (8, 5000), (1, 40_000), (3, 7)] {
            let mut a = Array2::<u32>::zeros((rows, cols));
            let b = Array2::<u32>::from_elem((rows, cols), 3);
            let len = a.len();
            for_each_shared(
                Zip::from(&mut a).and(&b),
                len,
                |zip| zip.split(),
                |zip| zip.for_each(|a, &b| *a += b),
            );
            assert!(a.iter().all(|&v| v == 3), "{rows} x {cols}");
        }
    }

    /// SGD on a parameter large enough to be shared is `W - lr · dW`, bit for bit.
    #[test]
    fn sgd_on_a_large_parameter_is_exact() {
        let (input, output) = (256, 160);
        let w = Array2::from_shape_fn((input, output), |(i, j)| {
            ((i * 31 + j * 7) % 97) as f32 / 97.0
        });
        let mut affine = Affine::new(w.clone(), Array1::zeros(output));
        let x = Array2::from_shape_fn((3, input), |(i, j)| ((i + j) % 5) as f32 - 2.0);
        let dout = Array2::from_shape_fn((3, output), |(i, j)| ((i * j) % 7) as f32 / 7.0);
        affine.forward(x.into_dyn());
        affine.backward(dout.into_dyn());
        assert!(affine.w().len() >= SHARED_UPDATE_ELEMENTS);
        let expected = &w - &(affine.dw() * 0.1);
        Sgd::new().step_layer(&mut affine, 0.1);
        assert_eq!(affine.w(), &expected);
    }

    fn first_updates<A: NdFloat + 'static>(tol: f64) {
        let lr = cast::<A>(0.1);
        // SGD: W - 0.1 dW = [[1 - 0.05, -2 + 0.1]].
        let mut l = layer::<A>();
        Sgd::new().step_layer(&mut l, lr);
        close(l.w(), [0.95, -1.9], tol);
        close1(l.b(), [0.45, 0.1], tol);

        // Momentum, twice with the same gradient: v1 = -0.1 g, v2 = 0.9 v1 - 0.1 g = -0.19 g.
        let mut l = layer::<A>();
        let mut opt = Momentum::new(0.9);
        opt.step_layer(&mut l, lr);
        close(l.w(), [0.95, -1.9], tol);
        opt.step_layer(&mut l, lr);
        close(l.w(), [1.0 - 0.29 * 0.5, -2.0 + 0.29], tol);

        // AdaGrad: h = g², step = 0.1 · g / (|g| + 1e-7) ≈ 0.1 · sign(g); then h = 2 g²,
        // step = 0.1 · g / (sqrt(2) |g| + 1e-7).
        let mut l = layer::<A>();
        let mut opt = AdaGrad::new();
        opt.step_layer(&mut l, lr);
        let s1 = [0.1 * 0.5 / (0.5 + 1e-7), 0.1 * 1.0 / (1.0 + 1e-7)];
        close(l.w(), [1.0 - s1[0], -2.0 + s1[1]], tol);
        opt.step_layer(&mut l, lr);
        let s2 = [
            0.1 * 0.5 / (2f64.sqrt() * 0.5 + 1e-7),
            0.1 * 1.0 / (2f64.sqrt() * 1.0 + 1e-7),
        ];
        close(l.w(), [1.0 - s1[0] - s2[0], -2.0 + s1[1] + s2[1]], tol);

        // Adam, first step: m = 0.1 g, v = 0.001 g², lr_t = 0.1 · sqrt(0.001) / 0.1 = sqrt(0.001);
        // step = lr_t · 0.1 g / (sqrt(0.001) |g| + 1e-7) ≈ 0.1 · sign(g).
        let mut l = layer::<A>();
        let mut opt = Adam::new(0.9, 0.999);
        opt.step_layer(&mut l, lr);
        let lr_t = 0.001f64.sqrt();
        let step = |g: f64| lr_t * 0.1 * g / ((0.001 * g * g).sqrt() + 1e-7);
        close(l.w(), [1.0 - step(0.5), -2.0 - step(-1.0)], tol);
        close1(l.b(), [0.5 - step(0.5), 0.0 - step(-1.0)], tol);
        // Second step with the same gradient: m = 0.19 g, v = 0.001999 g²,
        // lr_t = 0.1 · sqrt(1 - 0.999²) / (1 - 0.9²).
        opt.step_layer(&mut l, lr);
        let lr_t2 = 0.1 * (1.0 - 0.999f64.powi(2)).sqrt() / (1.0 - 0.81);
        let step2 = |g: f64| lr_t2 * 0.19 * g / ((0.001999 * g * g).sqrt() + 1e-7);
        close(
            l.w(),
            [
                1.0 - step(0.5) - step2(0.5),
                -2.0 - step(-1.0) - step2(-1.0),
            ],
            tol,
        );
        assert_eq!(opt.steps(), 2);
    }

    #[test]
    fn first_updates_match_hand_computed_values_f64() {
        first_updates::<f64>(1e-12);
    }

    #[test]
    fn first_updates_match_hand_computed_values_f32() {
        first_updates::<f32>(1e-6);
    }

    #[test]
    fn kinds_build_the_named_optimizer_with_the_books_rates() {
        for kind in [
            OptimizerKind::Sgd,
            OptimizerKind::Momentum,
            OptimizerKind::AdaGrad,
            OptimizerKind::Adam,
        ] {
            assert_eq!(kind.build::<f32>().name(), kind.name());
        }
        assert_eq!(OptimizerKind::default().default_lr(), 0.1);
        assert_eq!(OptimizerKind::Adam.default_lr(), 0.001);
    }

    #[test]
    fn state_of_another_shape_is_refused() {
        let result = std::panic::catch_unwind(|| {
            let mut opt = Momentum::<f64>::new(0.9);
            let mut a = layer::<f64>();
            opt.step_layer(&mut a, 0.1);
            let mut b = Affine::<f64>::new(Array2::zeros((3, 2)), Array1::zeros(2));
            opt.step_layer(&mut b, 0.1);
        });
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.contains("[3, 2]") && message.contains("[1, 2]"),
            "{message}"
        );
    }
}
