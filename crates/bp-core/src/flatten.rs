//! The flatten layer.

use ndarray::{ArrayD, Dimension, IxDyn, NdFloat};

use crate::layer::Layer;

/// Flattens each sample to a row: `(N, d1, d2, ...)` to `(N, d1·d2·...)`, PyTorch's `Flatten`.
/// Backward gives `dout` the input's shape back. Neither copies an input in standard layout.
///
/// A stack seldom needs one: [`Affine`](crate::Affine) reads N-d input as rows itself (the book's
/// tensor-capable Affine), so `conv 30 5x5, relu, maxpool 2, affine 100` works as it is. `flatten`
/// is there to say so explicitly, as PyTorch's `nn.Sequential` must.
///
/// # Shapes
///
/// `x`: (N, ...) of rank at least 1; output and `dout`: (N, product of the rest); `dx`: shaped like
/// `x`.
///
/// ```
/// use bp_core::{Flatten, Layer};
/// use ndarray::Array;
///
/// let mut flatten = Flatten::new();
/// let out = flatten.forward(Array::<f32, _>::zeros((2, 3, 4, 5)).into_dyn());
/// assert_eq!(out.shape(), [2, 60]);
/// let dx = flatten.backward(out);
/// assert_eq!(dx.shape(), [2, 3, 4, 5]);
/// ```
#[derive(Clone, Debug)]
pub struct Flatten {
    /// The last training input's shape.
    shape: Option<IxDyn>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Flatten { shape: None }
    }

    #[track_caller]
    fn rows<A: NdFloat>(x: ArrayD<A>) -> ArrayD<A> {
        assert!(
            x.ndim() >= 1,
            "Flatten: input of shape {:?} has no batch axis",
            x.shape()
        );
        let n = x.shape()[0];
        let rest = x.shape()[1..].iter().product::<usize>();
        x.into_shape_clone(IxDyn(&[n, rest]))
            .expect("the element count is kept")
    }
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten::new()
    }
}

impl<A: NdFloat> Layer<A> for Flatten {
    fn name(&self) -> &'static str {
        "Flatten"
    }

    #[track_caller]
    fn forward(&mut self, x: ArrayD<A>) -> ArrayD<A> {
        self.shape = Some(x.raw_dim());
        Flatten::rows(x)
    }

    #[track_caller]
    fn backward(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        let shape = self
            .shape
            .take()
            .expect("Flatten::backward called without a preceding forward");
        let rows = [shape[0], shape.slice()[1..].iter().product()];
        assert!(
            dout.shape() == rows,
            "Flatten::backward: dout has shape {:?}, but the last output had shape {rows:?}",
            dout.shape()
        );
        dout.into_shape_clone(shape)
            .expect("the element count was checked")
    }

    #[track_caller]
    fn predict(&self, x: ArrayD<A>) -> ArrayD<A> {
        Flatten::rows(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn rows_are_samples_and_dx_takes_the_input_shape_back() {
        let x = array![[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]].into_dyn();
        let mut flatten = Flatten::new();
        let out = flatten.forward(x.clone());
        assert_eq!(
            out,
            array![[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]].into_dyn()
        );
        assert_eq!(flatten.predict(x.clone()), out);
        let dx = flatten.backward(out * 2.0);
        assert_eq!(dx, x * 2.0);
        // Not in standard layout: the rows are still the samples.
        let t = array![[1.0, 3.0], [2.0, 4.0]].reversed_axes().into_dyn();
        assert_eq!(
            flatten.forward(t),
            array![[1.0, 2.0], [3.0, 4.0]].into_dyn()
        );
    }
}
