//! The rectified linear unit.

use ndarray::{ArrayD, IxDyn, NdFloat, Zip};
use rayon::prelude::*;

use crate::layer::Layer;
use crate::parallel::{install, threads};

/// Elements of a part of a pass shared over the pool's threads: tens of microseconds of work,
/// far more than handing a part to a thread. Smaller arrays (a dense net's activations) stay on
/// the calling thread.
const PART: usize = 1 << 15;

/// Calls `f` on the elements of `xs` and `ms` (as long as each other) side by side, shared over
/// the pool's threads in parts of [`PART`] where there are at least two parts.
fn zip_parts<X: Send, M: Send>(xs: &mut [X], ms: &mut [M], f: impl Fn(&mut X, &mut M) + Sync) {
    if xs.len() < 2 * PART || threads() < 2 {
        return xs.iter_mut().zip(ms).for_each(|(x, m)| f(x, m));
    }
    install(|| {
        xs.par_chunks_mut(PART)
            .zip(ms.par_chunks_mut(PART))
            .for_each(|(xs, ms)| xs.iter_mut().zip(ms).for_each(|(x, m)| f(x, m)));
    });
}

/// The rectified linear unit: `out = max(x, 0)`, elementwise.
///
/// Forward remembers the mask of non-positive inputs (`x <= 0`, as the book's `self.mask`); backward
/// zeroes `dout` at those places, in place: `dx = dout` where `x > 0`, else 0. A NaN input is not
/// masked, so it stays visible downstream.
///
/// # Shapes
///
/// Any shape; output, `dout` and `dx` are shaped like `x`.
///
/// # Example
///
/// ```
/// use bp_core::{Layer, Relu};
/// use ndarray::array;
///
/// let mut relu = Relu::new();
/// let out = relu.forward(array![[1.0, -0.5], [-2.0, 3.0]].into_dyn());
/// assert_eq!(out, array![[1.0, 0.0], [0.0, 3.0]].into_dyn());
/// let dx = relu.backward(array![[10.0, 20.0], [30.0, 40.0]].into_dyn());
/// assert_eq!(dx, array![[10.0, 0.0], [0.0, 40.0]].into_dyn());
/// ```
#[derive(Clone, Debug)]
pub struct Relu {
    /// `true` where the last training input was `<= 0`; reused while shapes stay the same.
    mask: ArrayD<bool>,
}

impl Relu {
    /// A Relu layer.
    pub fn new() -> Self {
        Relu {
            mask: ArrayD::from_elem(IxDyn(&[0]), false),
        }
    }

    /// The mask of the last training forward: `true` where the input was `<= 0`.
    pub fn mask(&self) -> &ArrayD<bool> {
        &self.mask
    }
}

impl Default for Relu {
    fn default() -> Self {
        Relu::new()
    }
}

impl<A: NdFloat> Layer<A> for Relu {
    fn name(&self) -> &'static str {
        "Relu"
    }

    fn forward(&mut self, mut x: ArrayD<A>) -> ArrayD<A> {
        if self.mask.shape() != x.shape() {
            self.mask = ArrayD::from_elem(x.raw_dim(), false);
        }
        // The mask is always in standard layout; when `x` is too, one flat loop does it (and
        // vectorises); otherwise walk both in logical order.
        let step = |x: &mut A, m: &mut bool| {
            *m = *x <= A::zero();
            *x = if *m { A::zero() } else { *x };
        };
        match (x.as_slice_mut(), self.mask.as_slice_mut()) {
            (Some(xs), Some(ms)) => zip_parts(xs, ms, step),
            _ => Zip::from(&mut x).and(&mut self.mask).for_each(step),
        }
        x
    }

    #[track_caller]
    fn backward(&mut self, mut dout: ArrayD<A>) -> ArrayD<A> {
        assert!(
            dout.shape() == self.mask.shape(),
            "Relu::backward: dout has shape {:?}, but the last forward input had shape {:?}",
            dout.shape(),
            self.mask.shape()
        );
        let step = |d: &mut A, m: &mut bool| *d = if *m { A::zero() } else { *d };
        match (dout.as_slice_mut(), self.mask.as_slice_mut()) {
            (Some(ds), Some(ms)) => zip_parts(ds, ms, step),
            _ => Zip::from(&mut dout).and(&mut self.mask).for_each(step),
        }
        dout
    }

    fn predict(&self, mut x: ArrayD<A>) -> ArrayD<A> {
        x.mapv_inplace(|v| if v <= A::zero() { A::zero() } else { v });
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn masks_exactly_the_non_positive_entries() {
        let mut relu = Relu::new();
        let x = array![[1.0, -0.5], [-2.0, 3.0]].into_dyn();
        let out = relu.forward(x);
        assert_eq!(out, array![[1.0, 0.0], [0.0, 3.0]].into_dyn());
        assert_eq!(
            relu.mask(),
            &array![[false, true], [true, false]].into_dyn()
        );
        let dx = relu.backward(array![[1.0, 1.0], [1.0, 1.0]].into_dyn());
        assert_eq!(dx, array![[1.0, 0.0], [0.0, 1.0]].into_dyn());
    }

    #[test]
    fn zero_is_masked_and_nan_is_kept() {
        let mut relu = Relu::new();
        let out: ArrayD<f32> = relu.forward(array![0.0, f32::NAN, -0.0].into_dyn());
        assert_eq!(out[0], 0.0);
        assert!(out[1].is_nan());
        assert_eq!(relu.mask(), &array![true, false, true].into_dyn());
        let predicted: ArrayD<f32> = relu.predict(array![0.0, f32::NAN, -1.0].into_dyn());
        assert!(predicted[1].is_nan());
    }

    /// Arrays of several parts, shared over two threads (and a last, shorter part): every
    /// element as the definition says.
    #[test]
    fn large_arrays_shared_over_threads_match_the_definition() {
        let len = 3 * PART + 5;
        let x: ArrayD<f32> =
            ArrayD::from_shape_fn(IxDyn(&[len]), |i| ((i[0] * 37 % 101) as f32) - 50.0);
        let dout: ArrayD<f32> = ArrayD::from_shape_fn(IxDyn(&[len]), |i| i[0] as f32);
        crate::set_threads(2);
        let mut relu = Relu::new();
        let out = relu.forward(x.clone());
        let dx = relu.backward(dout.clone());
        crate::set_threads(0);
        for i in 0..len {
            let positive = x[i] > 0.0;
            assert_eq!(out[i], if positive { x[i] } else { 0.0 }, "out[{i}]");
            assert_eq!(dx[i], if positive { dout[i] } else { 0.0 }, "dx[{i}]");
        }
    }

    #[test]
    fn the_mask_follows_the_shape() {
        let mut relu = Relu::new();
        relu.forward(array![[1.0, -1.0]].into_dyn());
        let out = relu.forward(array![[-1.0], [2.0], [-3.0]].into_dyn());
        assert_eq!(out, array![[0.0], [2.0], [0.0]].into_dyn());
        let dx = relu.backward(array![[5.0], [6.0], [7.0]].into_dyn());
        assert_eq!(dx, array![[0.0], [6.0], [0.0]].into_dyn());
    }

    #[test]
    fn non_contiguous_input_takes_the_same_mask() {
        let mut relu = Relu::new();
        // Column-major view of [[1, -2], [-3, 4]].
        let x = array![[1.0, -3.0], [-2.0, 4.0]].reversed_axes().into_dyn();
        assert!(!x.is_standard_layout());
        let out = relu.forward(x);
        assert_eq!(out, array![[1.0, 0.0], [0.0, 4.0]].into_dyn());
        assert_eq!(
            relu.mask(),
            &array![[false, true], [true, false]].into_dyn()
        );
        let dout = array![[5.0, 7.0], [6.0, 8.0]].reversed_axes().into_dyn();
        assert_eq!(
            relu.backward(dout),
            array![[5.0, 0.0], [0.0, 8.0]].into_dyn()
        );
    }
}
