//! A checker that cannot fail proves nothing: layers with the classic backprop mistakes must fail the
//! check, and the report must say where.

use bp_check::{
    GradReport, LAYER_TOLERANCE, LossNode, check_layer, check_loss, check_softmax_with_loss,
    random_input,
};
use bp_core::{Layer, Param, ParamKind, Sigmoid, randn};
use bp_loss::{Targets, softmax};
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Axis, Ix2, IxDyn, array};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The checks of `report` that failed, by name.
fn failed(report: &GradReport) -> Vec<&str> {
    report
        .failures(LAYER_TOLERANCE)
        .map(|c| c.name.as_str())
        .collect()
}

/// Sigmoid with the sign error in the exponent: forward computes `1 / (1 + exp(x))`, backward still
/// uses `dout · (1 - y) · y`, the derivative of the real sigmoid. The true derivative of what forward
/// computes is `-(1 - y) · y`, so every element of dx has the wrong sign.
#[derive(Clone)]
struct SignErrorSigmoid {
    out: ArrayD<f64>,
}

impl Layer<f64> for SignErrorSigmoid {
    fn name(&self) -> &'static str {
        "SignErrorSigmoid"
    }

    fn forward(&mut self, x: ArrayD<f64>) -> ArrayD<f64> {
        self.out = x.mapv(|v| 1.0 / (1.0 + v.exp()));
        self.out.clone()
    }

    fn backward(&mut self, dout: ArrayD<f64>) -> ArrayD<f64> {
        dout * &self.out.mapv(|y| (1.0 - y) * y)
    }

    fn predict(&self, x: ArrayD<f64>) -> ArrayD<f64> {
        x.mapv(|v| 1.0 / (1.0 + v.exp()))
    }
}

#[test]
fn sigmoid_with_the_exp_sign_error_fails_on_dx() {
    let x = random_input(&[4, 3], 0);
    let mut layer = SignErrorSigmoid {
        out: ArrayD::zeros(IxDyn(&[0])),
    };
    let report = check_layer(&mut layer, x.view(), 1);
    assert_eq!(failed(&report), ["dx"], "{report:#}");
    let dx = &report.checks[0];
    // Backprop and the numerical gradient have opposite signs: |a - n| / (|a| + |n|) = 1.
    assert!((dx.max_rel - 1.0).abs() < 1e-6, "{dx:#}");
    assert!(dx.worst_backprop * dx.worst_numerical < 0.0, "{dx:#}");
    let text = format!("{report:#}");
    assert!(text.starts_with("dx: "), "{text}");
    assert!(text.contains("max rel 1.0e+00 at ["), "{text}");

    // The real one, on the same input and upstream gradient, passes.
    let report = check_layer(&mut Sigmoid::new(), x.view(), 1);
    assert!(report.passed(LAYER_TOLERANCE), "{report:#}");
}

/// How an affine layer with a bug stores dW.
#[derive(Clone, Copy)]
enum DwBug {
    /// No bug: `dW = xᵀ · dout`.
    None,
    /// `dW` computed as `doutᵀ · x` (out, in) and written into the (in, out) buffer in row-major
    /// order, as a `reshape` that should have been a transpose would.
    TransposedInPlace,
    /// `dW` computed as `doutᵀ · x` and kept with its (out, in) shape.
    TransposedShape,
}

/// An affine layer whose dW may be transposed.
#[derive(Clone)]
struct BuggyAffine {
    w: Array2<f64>,
    b: Array1<f64>,
    dw: ArrayD<f64>,
    db: Array1<f64>,
    x: Array2<f64>,
    bug: DwBug,
}

impl BuggyAffine {
    fn new(input: usize, output: usize, bug: DwBug, seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        BuggyAffine {
            w: randn((input, output), 1.0, &mut rng),
            b: randn(output, 1.0, &mut rng),
            dw: ArrayD::zeros(IxDyn(&[input, output])),
            db: Array1::zeros(output),
            x: Array2::zeros((0, input)),
            bug,
        }
    }
}

impl Layer<f64> for BuggyAffine {
    fn name(&self) -> &'static str {
        "BuggyAffine"
    }

    fn forward(&mut self, x: ArrayD<f64>) -> ArrayD<f64> {
        self.x = x.into_dimensionality::<Ix2>().expect("rank 2 input");
        (self.x.dot(&self.w) + &self.b).into_dyn()
    }

    fn backward(&mut self, dout: ArrayD<f64>) -> ArrayD<f64> {
        let dout = dout.into_dimensionality::<Ix2>().expect("rank 2 dout");
        let (input, output) = self.w.dim();
        self.dw = match self.bug {
            DwBug::None => self.x.t().dot(&dout).into_dyn(),
            DwBug::TransposedInPlace => {
                let wrong = dout.t().dot(&self.x);
                let flat: Vec<f64> = wrong.iter().copied().collect();
                ArrayD::from_shape_vec(IxDyn(&[input, output]), flat).expect("same element count")
            }
            DwBug::TransposedShape => dout.t().dot(&self.x).into_dyn(),
        };
        self.db = dout.sum_axis(Axis(0));
        dout.dot(&self.w.t()).into_dyn()
    }

    fn predict(&self, x: ArrayD<f64>) -> ArrayD<f64> {
        let x = x.into_dimensionality::<Ix2>().expect("rank 2 input");
        (x.dot(&self.w) + &self.b).into_dyn()
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, f64>)) {
        f(Param {
            name: "W",
            kind: ParamKind::Weight,
            value: self.w.view_mut().into_dyn(),
            grad: self.dw.view_mut(),
        });
        f(Param {
            name: "b",
            kind: ParamKind::Bias,
            value: self.b.view_mut().into_dyn(),
            grad: self.db.view_mut().into_dyn(),
        });
    }

    fn visit_params_ref(&self, f: &mut dyn FnMut(&'static str, ArrayViewD<'_, f64>)) {
        f("W", self.w.view().into_dyn());
        f("b", self.b.view().into_dyn());
    }
}

#[test]
fn the_reference_affine_passes() {
    // The test layer without its bug passes, so the failures below are the bugs'.
    let x = random_input(&[4, 3], 2);
    let report = check_layer(&mut BuggyAffine::new(3, 5, DwBug::None, 3), x.view(), 4);
    assert!(report.passed(LAYER_TOLERANCE), "{report:#}");
}

#[test]
fn a_transposed_dw_written_in_place_fails_on_w_only() {
    // W is (3, 5): doutᵀ · x is (5, 3), and laid into the (3, 5) buffer its values land on the wrong
    // elements.
    let x = random_input(&[4, 3], 2);
    let mut layer = BuggyAffine::new(3, 5, DwBug::TransposedInPlace, 3);
    let report = check_layer(&mut layer, x.view(), 4);
    assert_eq!(failed(&report), ["W"], "{report:#}");
    let w = &report.checks[1];
    assert!(w.max_rel > 0.1, "{w:#}");
    assert_eq!(w.shape, [3, 5]);
    assert!(format!("{report:#}").contains("\nW: "));
}

#[test]
fn a_transposed_dw_with_its_own_shape_fails_with_a_shape_report() {
    let x = random_input(&[4, 3], 2);
    let mut layer = BuggyAffine::new(3, 5, DwBug::TransposedShape, 3);
    let report = check_layer(&mut layer, x.view(), 4);
    assert_eq!(failed(&report), ["W"], "{report:#}");
    assert!(report.checks[1].shape_mismatch());
    assert!(
        report
            .to_string()
            .contains("W: wrong shape: backprop [5, 3], numerical [3, 5]"),
        "{report}"
    );
}

#[test]
fn a_transposed_square_dw_fails_too() {
    // With a square W the shape cannot give the bug away; the values do.
    let x = random_input(&[4, 3], 5);
    let mut layer = BuggyAffine::new(3, 3, DwBug::TransposedInPlace, 6);
    let report = check_layer(&mut layer, x.view(), 7);
    assert_eq!(failed(&report), ["W"], "{report:#}");
    assert!(!report.checks[1].shape_mismatch());
}

/// Softmax with cross-entropy whose backward forgets to divide by the batch size:
/// `dx = dout · (y - t)` instead of `dout · (y - t) / N`.
struct NoBatchMean<'t> {
    t: &'t [usize],
    y: Array2<f64>,
}

impl LossNode for NoBatchMean<'_> {
    fn name(&self) -> &str {
        "NoBatchMean"
    }

    fn forward(&mut self, x: Array2<f64>) -> f64 {
        self.y = softmax(x.view());
        let n = self.t.len() as f64;
        -self
            .y
            .axis_iter(Axis(0))
            .zip(self.t)
            .map(|(row, &k)| (row[k] + 1e-7).ln())
            .sum::<f64>()
            / n
    }

    fn backward(&mut self, dout: f64) -> Array2<f64> {
        let mut dx = self.y.clone();
        for (mut row, &k) in dx.axis_iter_mut(Axis(0)).zip(self.t) {
            row[k] -= 1.0;
        }
        dx * dout
    }
}

#[test]
fn softmax_with_loss_without_the_batch_mean_fails() {
    let x = array![
        [0.5, 1.0, -0.5],
        [0.2, 0.1, 0.0],
        [1.0, 0.0, 0.3],
        [0.0, 0.4, 0.2]
    ];
    let t = [1, 0, 0, 2];
    let mut node = NoBatchMean {
        t: &t,
        y: Array2::zeros((0, 0)),
    };
    let report = check_loss(&mut node, x.view(), 2.0);
    assert_eq!(failed(&report), ["dx"], "{report:#}");
    // Backprop is N = 4 times the true gradient everywhere: |4n - n| / (4n + n) = 3/5.
    assert!((report.max_rel() - 0.6).abs() < 1e-6, "{report:#}");

    // The real SoftmaxWithLoss passes on the same batch.
    let report = check_softmax_with_loss(x.view(), Targets::Index(&t));
    assert!(report.passed(LAYER_TOLERANCE), "{report:#}");

    // With a batch of one the missing division is a division by 1: such a check proves nothing
    // about it, which is why the batches above have several samples.
    let mut single = NoBatchMean {
        t: &t[..1],
        y: Array2::zeros((0, 0)),
    };
    let report = check_loss(&mut single, x.slice(ndarray::s![..1, ..]), 2.0);
    assert!(report.passed(LAYER_TOLERANCE), "{report:#}");
}

/// A loss node whose backward ignores its upstream gradient.
struct IgnoresDout(bp_check::SoftmaxLoss<'static>);

impl LossNode for IgnoresDout {
    fn forward(&mut self, x: Array2<f64>) -> f64 {
        self.0.forward(x)
    }

    fn backward(&mut self, _dout: f64) -> Array2<f64> {
        self.0.backward(1.0)
    }
}

#[test]
fn a_loss_backward_that_ignores_dout_fails() {
    static T: [usize; 2] = [0, 1];
    let x = array![[0.3, -0.1], [0.2, 0.4]];
    let mut node = IgnoresDout(bp_check::SoftmaxLoss::new(Targets::Index(&T)));
    let report = check_loss(&mut node, x.view(), 2.0);
    // Backprop is half the gradient of 2 · loss: |n/2 - n| / (n/2 + n) = 1/3.
    assert!((report.max_rel() - 1.0 / 3.0).abs() < 1e-6, "{report:#}");
    assert_eq!(report.subject, "loss");
}
