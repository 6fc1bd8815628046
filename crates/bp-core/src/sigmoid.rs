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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// sigmoid(ln 3) = 1 / (1 + 1/3) = 0.75 and sigmoid(-ln 3) = 0.25; the derivative at both is
    /// 0.75 · 0.25 = 0.1875. With the `exp(x)` sign error the first would come out 0.25.
    fn hand_derived<A: NdFloat>(tol: f64) {
        let ln3 = 3f64.ln();
        let x = array![[ln3, -ln3]].mapv(crate::init::cast::<A>).into_dyn();
        let mut sigmoid = Sigmoid::new();
        let out = sigmoid.forward(x.clone());
        assert_eq!(sigmoid.predict(x), out);
        let expected = [0.75, 0.25];
        for (o, e) in out.iter().zip(expected) {
            assert!((o.to_f64().unwrap() - e).abs() < tol, "{o} vs {e}");
        }
        let dout = array![[1.0, 2.0]].mapv(crate::init::cast::<A>).into_dyn();
        let dx = sigmoid.backward(dout);
        for (d, e) in dx.iter().zip([0.1875, 0.375]) {
            assert!((d.to_f64().unwrap() - e).abs() < tol, "{d} vs {e}");
        }
    }

    #[test]
    fn hand_derived_f32() {
        hand_derived::<f32>(1e-6);
    }

    #[test]
    fn hand_derived_f64() {
        hand_derived::<f64>(1e-15);
    }

    #[test]
    fn saturates_without_overflow() {
        let mut sigmoid = Sigmoid::<f32>::new();
        let out = sigmoid.forward(array![-1000.0, 1000.0].into_dyn());
        assert_eq!(out, array![0.0, 1.0].into_dyn());
        let dx = sigmoid.backward(array![1.0, 1.0].into_dyn());
        assert_eq!(dx, array![0.0, 0.0].into_dyn());
    }
}
