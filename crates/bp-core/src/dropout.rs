//! Dropout.

use ndarray::{ArrayD, IxDyn, NdFloat, Zip};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::layer::Layer;

/// Dropout (inverted): in training, each input element is dropped (set to 0) with probability
/// `ratio` and kept elements are scaled by `1 / (1 - ratio)`; in inference it is the identity.
///
/// Training forward: `out = x · m` with `m = 1 / (1 - ratio)` where the element is kept, else 0;
/// backward: `dx = dout · m`, with the same mask.
///
/// This is *inverted* dropout. The book's `Dropout` instead keeps the kept elements unscaled in
/// training and multiplies by `1 - ratio` in inference; both give the same expected activation, but the
/// inverted form makes inference a no-op. For the same mask the training gradients differ from the
/// book's only by the constant factor `1 / (1 - ratio)`.
///
/// The mask is drawn from the layer's own [`Xoshiro256PlusPlus`] generator, seeded by the constructor,
/// so a network with dropout trains reproducibly. Each element is kept when a 32-bit draw is
/// `>= round(ratio · 2³²)` (two draws per `u64`), in the standard (row-major) order of the input.
///
/// [`set_frozen(true)`](Dropout::set_frozen) makes the training forward reuse the last mask instead
/// of drawing a new one, so that the training pass is a deterministic function (as a numerical
/// gradient check needs).
///
/// # Shapes
///
/// Any shape; output, `dout` and `dx` are shaped like `x`.
///
/// # Panics
///
/// [`Dropout::new`] panics if `ratio` is not in `[0, 1)`; `backward` panics if `dout` is not shaped
/// like the last training input, or if no `forward` preceded it.
///
/// # Example
///
/// ```
/// use bp_core::{Dropout, Layer};
/// use ndarray::{ArrayD, IxDyn};
///
/// let mut dropout = Dropout::<f64>::new(0.5, 7);
/// let x = ArrayD::from_elem(IxDyn(&[4, 1000]), 3.0);
/// let out = dropout.forward(x.clone());
/// // Every element is either dropped or scaled by 1 / (1 - 0.5) = 2.
/// assert!(out.iter().all(|&v| v == 0.0 || v == 6.0));
/// let kept = out.iter().filter(|&&v| v != 0.0).count();
/// assert!((1800..2200).contains(&kept), "{kept}");
/// // Backward lets the gradient through exactly where the input got through, scaled alike.
/// let dx = dropout.backward(ArrayD::from_elem(IxDyn(&[4, 1000]), 1.0));
/// assert!(dx.iter().zip(&out).all(|(&d, &o)| d == o / 3.0));
/// // Inference is the identity.
/// assert_eq!(dropout.predict(x.clone()), x);
/// ```
#[derive(Clone, Debug)]
pub struct Dropout<A> {
    ratio: f64,
    /// A 32-bit draw below this drops the element: `round(ratio · 2³²)`.
    threshold: u64,
    /// `1 / (1 - ratio)`, the multiplier of kept elements.
    scale: A,
    rng: Xoshiro256PlusPlus,
    /// The multiplier of every element in the last training forward: 0 or `scale`. Its storage is
    /// reused while shapes stay the same.
    mask: ArrayD<A>,
    /// Whether `mask` holds a mask drawn by a forward (it is empty before the first one).
    drawn: bool,
    frozen: bool,
}

impl<A: NdFloat> Dropout<A> {
    /// A dropout layer that drops each element with probability `ratio` in training, drawing its
    /// masks from a [`Xoshiro256PlusPlus`] seeded with `seed`.
    ///
    /// # Panics
    ///
    /// If `ratio` is not in `[0, 1)` (a ratio of 1 would drop everything and divide by zero).
    #[track_caller]
    pub fn new(ratio: f64, seed: u64) -> Self {
        assert!(
            (0.0..1.0).contains(&ratio),
            "Dropout::new: the ratio must be in [0, 1), got {ratio}"
        );
        // ratio < 1, so this is at most 2^32 - 1 after rounding for any ratio below 1 - 2^-33,
        // and at most 2^32 (drop everything but the rarest draw) above it.
        let threshold = (ratio * 4_294_967_296.0).round() as u64;
        Dropout {
            ratio,
            threshold,
            scale: A::from(1.0 / (1.0 - ratio)).expect("a finite f64 converts to a float type"),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            mask: ArrayD::zeros(IxDyn(&[0])),
            drawn: false,
            frozen: false,
        }
    }

    /// The probability of dropping an element in training.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// When `frozen` is true, the training forward reuses the last mask (if one of the input's shape
    /// was drawn) instead of drawing a new one. When false (the default), every forward draws.
    pub fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    /// Whether the mask is frozen; see [`set_frozen`](Dropout::set_frozen).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// The multipliers of the last training forward, shaped like its input: `1 / (1 - ratio)` where
    /// the element was kept, 0 where it was dropped. Empty before the first forward.
    pub fn mask(&self) -> &ArrayD<A> {
        &self.mask
    }

    /// Draws a new mask of the given shape into `self.mask`.
    fn draw(&mut self, shape: &[usize]) {
        if self.mask.shape() != shape {
            self.mask = ArrayD::zeros(IxDyn(shape));
        }
        let (threshold, scale) = (self.threshold, self.scale);
        let keep = |bits: u64| {
            if bits >= threshold { scale } else { A::zero() }
        };
        let mask = self
            .mask
            .as_slice_mut()
            .expect("the mask is created in standard layout");
        let mut pairs = mask.chunks_exact_mut(2);
        for pair in &mut pairs {
            let r = self.rng.next_u64();
            pair[0] = keep(r & 0xffff_ffff);
            pair[1] = keep(r >> 32);
        }
        if let [last] = pairs.into_remainder() {
            *last = keep(self.rng.next_u64() & 0xffff_ffff);
        }
        self.drawn = true;
    }
}

impl<A: NdFloat> Layer<A> for Dropout<A> {
    fn name(&self) -> &'static str {
        "Dropout"
    }

    fn forward(&mut self, mut x: ArrayD<A>) -> ArrayD<A> {
        if !(self.frozen && self.drawn && self.mask.shape() == x.shape()) {
            self.draw(x.shape());
        }
        Zip::from(&mut x).and(&self.mask).for_each(|x, &m| *x *= m);
        x
    }

    #[track_caller]
    fn backward(&mut self, mut dout: ArrayD<A>) -> ArrayD<A> {
        assert!(
            self.drawn,
            "Dropout::backward called without a preceding forward"
        );
        assert!(
            dout.shape() == self.mask.shape(),
            "Dropout::backward: dout has shape {:?}, but the last forward input had shape {:?}",
            dout.shape(),
            self.mask.shape()
        );
        Zip::from(&mut dout)
            .and(&self.mask)
            .for_each(|d, &m| *d *= m);
        dout
    }

    /// The identity: inverted dropout needs no scaling at inference.
    fn predict(&self, x: ArrayD<A>) -> ArrayD<A> {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn mask_is_zero_or_the_inverse_keep_rate_and_backward_uses_it() {
        let mut dropout = Dropout::<f32>::new(0.2, 1);
        let x = Array2::from_shape_fn((3, 5), |(i, j)| (i * 5 + j) as f32 + 1.0).into_dyn();
        let out = dropout.forward(x.clone());
        for ((&o, &x), &m) in out.iter().zip(&x).zip(dropout.mask()) {
            assert!(m == 0.0 || m == 1.25, "{m}");
            assert_eq!(o, x * m);
        }
        let dout = ArrayD::from_elem(IxDyn(&[3, 5]), 2.0f32);
        let dx = dropout.backward(dout);
        for (&d, &m) in dx.iter().zip(dropout.mask()) {
            assert_eq!(d, 2.0 * m);
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_masks_and_another_seed_does_not() {
        let x = ArrayD::from_elem(IxDyn(&[10, 30]), 1.0f64);
        let mut a = Dropout::<f64>::new(0.5, 3);
        let mut b = Dropout::<f64>::new(0.5, 3);
        let mut c = Dropout::<f64>::new(0.5, 4);
        for _ in 0..3 {
            let (ya, yb, yc) = (
                a.forward(x.clone()),
                b.forward(x.clone()),
                c.forward(x.clone()),
            );
            assert_eq!(ya, yb);
            assert_ne!(ya, yc);
        }
    }

    #[test]
    fn successive_masks_differ_unless_frozen() {
        let x = ArrayD::from_elem(IxDyn(&[8, 16]), 1.0f64);
        let mut dropout = Dropout::<f64>::new(0.5, 11);
        let first = dropout.forward(x.clone());
        let second = dropout.forward(x.clone());
        assert_ne!(first, second);
        dropout.set_frozen(true);
        assert!(dropout.is_frozen());
        let third = dropout.forward(x.clone());
        assert_eq!(third, second);
        assert_eq!(dropout.forward(x.clone()), second);
        // A new shape cannot reuse the mask: a fresh one is drawn and then kept.
        let other = dropout.forward(ArrayD::from_elem(IxDyn(&[2, 3]), 1.0));
        assert_eq!(
            dropout.forward(ArrayD::from_elem(IxDyn(&[2, 3]), 1.0)),
            other
        );
        dropout.set_frozen(false);
        let x = ArrayD::from_elem(IxDyn(&[8, 16]), 1.0f64);
        assert_ne!(dropout.forward(x.clone()), dropout.forward(x));
    }

    #[test]
    fn keep_rate_matches_the_ratio() {
        for ratio in [0.1, 0.3, 0.5, 0.9] {
            let mut dropout = Dropout::<f64>::new(ratio, 5);
            // An odd element count exercises the last single draw.
            let out = dropout.forward(ArrayD::from_elem(IxDyn(&[101, 99]), 1.0));
            let n = out.len() as f64;
            let dropped = out.iter().filter(|&&v| v == 0.0).count() as f64 / n;
            // 5 standard deviations of a binomial proportion over 9999 draws.
            let tol = 5.0 * (ratio * (1.0 - ratio) / n).sqrt();
            assert!(
                (dropped - ratio).abs() < tol,
                "ratio {ratio}: dropped {dropped}"
            );
            // The mean is preserved in expectation.
            assert!((out.mean().unwrap() - 1.0).abs() < 5.0 * (ratio / (1.0 - ratio) / n).sqrt());
        }
    }

    #[test]
    fn ratio_zero_keeps_everything() {
        let mut dropout = Dropout::<f64>::new(0.0, 0);
        let x = array![[1.0, -2.0, 3.0]].into_dyn();
        assert_eq!(dropout.forward(x.clone()), x);
        assert_eq!(dropout.predict(x.clone()), x);
    }

    /// Numerical versus backprop gradient of `L = Σ c · forward(x)` with a frozen mask.
    #[test]
    fn central_difference_matches_backward_with_a_frozen_mask() {
        let x = Array2::from_shape_fn((3, 4), |(i, j)| 0.3 * i as f64 - 0.2 * j as f64 + 0.1)
            .into_dyn();
        let c = Array2::from_shape_fn((3, 4), |(i, j)| 1.0 + (i + 2 * j) as f64 * 0.5).into_dyn();
        let mut dropout = Dropout::<f64>::new(0.4, 9);
        dropout.set_frozen(true);
        dropout.forward(x.clone());
        let dx = dropout.backward(c.clone());
        let h = 1e-5;
        for idx in 0..x.len() {
            let mut plus = x.clone();
            let mut minus = x.clone();
            plus.as_slice_mut().unwrap()[idx] += h;
            minus.as_slice_mut().unwrap()[idx] -= h;
            let lp = (dropout.forward(plus) * &c).sum();
            let lm = (dropout.forward(minus) * &c).sum();
            let numerical = (lp - lm) / (2.0 * h);
            let analytic = dx.as_slice().unwrap()[idx];
            assert!(
                (numerical - analytic).abs() < 1e-8,
                "{idx}: {numerical} vs {analytic}"
            );
        }
    }

    #[test]
    fn backward_checks_the_shape() {
        let mut dropout = Dropout::<f64>::new(0.5, 0);
        dropout.forward(ArrayD::zeros(IxDyn(&[2, 3])));
        let result = std::panic::catch_unwind(move || {
            dropout.backward(ArrayD::zeros(IxDyn(&[3, 2])));
        });
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.contains("[3, 2]") && message.contains("[2, 3]"),
            "{message}"
        );
    }

    #[test]
    fn new_rejects_ratios_outside_zero_to_one() {
        for ratio in [1.0, -0.1, f64::NAN] {
            let result = std::panic::catch_unwind(|| Dropout::<f64>::new(ratio, 0));
            let message = *result.unwrap_err().downcast::<String>().unwrap();
            assert!(message.contains("[0, 1)"), "{message}");
        }
    }
}
