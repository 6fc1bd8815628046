//! The logistic sigmoid.

use ndarray::{ArrayD, IxDyn, NdFloat, Zip};

use crate::layer::Layer;

/// The logistic sigmoid: `out = 1 / (1 + exp(-x))`, elementwise.
///
/// Backward uses the output it kept: `dx = dout · (1 - out) · out`.
///
/// # Shapes
///
/// Any shape; output, `dout` and `dx` are shaped like `x`.
///
/// # Example
///
/// ```
/// use bp_core::{Layer, Sigmoid};
/// use ndarray::array;
///
/// let mut sigmoid = Sigmoid::<f64>::new();
/// let out = sigmoid.forward(array![[0.0, 2.0]].into_dyn());
/// assert_eq!(out[[0, 0]], 0.5);
/// assert!((out[[0, 1]] - 0.8807970779778823).abs() < 1e-15);
/// // d/dx sigmoid(0) = 0.5 * 0.5
/// let dx = sigmoid.backward(array![[1.0, 0.0]].into_dyn());
/// assert_eq!(dx[[0, 0]], 0.25);
/// ```
#[derive(Clone, Debug)]
pub struct Sigmoid<A> {
    /// The last training output; reused while shapes stay the same.
    out: ArrayD<A>,
}

impl<A: NdFloat> Sigmoid<A> {
    /// A sigmoid layer.
    pub fn new() -> Self {
        Sigmoid {
            out: ArrayD::zeros(IxDyn(&[0])),
        }
    }
}

impl<A: NdFloat> Default for Sigmoid<A> {
    fn default() -> Self {
        Sigmoid::new()
    }
}

/// `1 / (1 + exp(-x))`; saturates to 0 or 1 without overflow for large `|x|`.
fn sigmoid<A: NdFloat>(x: A) -> A {
    A::one() / (A::one() + (-x).exp())
}

impl<A: NdFloat> Layer<A> for Sigmoid<A> {
    fn name(&self) -> &'static str {
        "Sigmoid"
    }

    fn forward(&mut self, mut x: ArrayD<A>) -> ArrayD<A> {
        x.mapv_inplace(sigmoid);
        if self.out.shape() == x.shape() {
            self.out.assign(&x);
        } else {
            self.out = x.clone();
        }
        x
    }

    #[track_caller]
    fn backward(&mut self, mut dout: ArrayD<A>) -> ArrayD<A> {
        assert!(
            dout.shape() == self.out.shape(),
            "Sigmoid::backward: dout has shape {:?}, but the last output had shape {:?}",
            dout.shape(),
            self.out.shape()
        );
        Zip::from(&mut dout)
            .and(&self.out)
            .for_each(|d, &y| *d = *d * (A::one() - y) * y);
        dout
    }

    fn predict(&self, mut x: ArrayD<A>) -> ArrayD<A> {
        x.mapv_inplace(sigmoid);
        x
    }
}
