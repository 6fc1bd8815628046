//! Loss functions for classification: [`softmax`], [`cross_entropy_error`] and the
//! [`SoftmaxWithLoss`] node that joins them, as in chapters 3 to 5 of *Deep Learning from Scratch*.
//!
//! # The key design decision: a loss is its own type, not a `Layer`
//!
//! A loss takes two inputs (scores and targets) and returns a scalar, so it does not fit
//! `bp_core::Layer`'s array-in, array-out shape. [`SoftmaxWithLoss`] keeps the book's
//! `forward(x, t) -> loss` / `backward(dout) -> dx` interface and takes the scores by value, so the
//! softmax is computed in place and then turned into the gradient in place: no allocation once shapes
//! are steady.
//!
//! Targets come in the book's two forms, class indices or one-hot rows ([`Targets`]).
//!
//! ```
//! use bp_loss::{SoftmaxWithLoss, Targets};
//! use ndarray::array;
//!
//! let mut loss = SoftmaxWithLoss::<f64>::new();
//! // Equal scores: softmax is uniform, loss = ln 2.
//! let l = loss.forward(array![[0.0, 0.0]], Targets::Index(&[1]));
//! assert!((l - 2f64.ln()).abs() < 1e-6);
//! assert_eq!(loss.backward(1.0), array![[0.5, -0.5]]);
//! ```

use ndarray::{
    Array, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Dimension, Ix2, NdFloat, Zip,
};

/// The classification targets of a batch, in either of the book's two label forms.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a, A> {
    /// One class index per sample (`one_hot_label=False` in the book's `load_mnist`).
    Index(&'a [usize]),
    /// One row per sample with 1 at the class and 0 elsewhere (`one_hot_label=True`).
    OneHot(ArrayView2<'a, A>),
}

impl<A> Targets<'_, A> {
    /// The number of samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Index(t) => t.len(),
            Targets::OneHot(t) => t.nrows(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks that targets fit scores of shape (N, C).
#[track_caller]
fn check_targets<A>(scores: &[usize], t: &Targets<'_, A>) {
    let (n, c) = (scores[0], scores[1]);
    match t {
        Targets::Index(t) => {
            assert!(
                t.len() == n,
                "{n} score rows (shape {scores:?}) but {} class indices",
                t.len()
            );
            if let Some(&bad) = t.iter().find(|&&k| k >= c) {
                panic!("class index {bad} out of range for {c} classes (shape {scores:?})");
            }
        }
        Targets::OneHot(t) => assert!(
            t.shape() == scores,
            "one-hot targets of shape {:?} do not match scores of shape {scores:?}",
            t.shape()
        ),
    }
}

/// Row-wise softmax in place: `y_ij = exp(x_ij - max_j x_ij) / Σ_k exp(x_ik - max_j x_ij)`.
///
/// Subtracting the row maximum keeps `exp` from overflowing (scores of 1000 are fine).
///
/// # Shapes
///
/// (N, C), one row per sample.
///
/// ```
/// use bp_loss::softmax_inplace;
/// use ndarray::array;
///
/// let mut x = array![[1010.0f64, 1000.0, 990.0]];
/// softmax_inplace(x.view_mut());
/// assert!((x[[0, 0]] - 0.999954600070331).abs() < 1e-12);
/// assert!((x.sum() - 1.0).abs() < 1e-12);
/// ```
pub fn softmax_inplace<A: NdFloat>(mut x: ArrayViewMut2<'_, A>) {
    for row in x.rows_mut() {
        softmax_row(row);
    }
}

/// Softmax of one row, in place.
fn softmax_row<A: NdFloat>(mut row: ArrayViewMut1<'_, A>) {
    let max = row.fold(A::neg_infinity(), |m, &v| m.max(v));
    let mut sum = A::zero();
    row.mapv_inplace(|v| {
        let e = (v - max).exp();
        sum += e;
        e
    });
    row.mapv_inplace(|e| e / sum);
}

/// Row-wise softmax into a new array; see [`softmax_inplace`].
///
/// # Shapes
///
/// (N, C) in, (N, C) out.
///
/// ```
/// use bp_loss::softmax;
/// use ndarray::array;
///
/// // The book's example: softmax([0.3, 2.9, 4.0])
/// let y = softmax(array![[0.3f64, 2.9, 4.0]].view());
/// let expected = [0.01821127, 0.24519181, 0.73659691];
/// for (y, e) in y.iter().zip(expected) {
///     assert!((y - e).abs() < 1e-8);
/// }
/// ```
pub fn softmax<A: NdFloat>(x: ArrayView2<'_, A>) -> Array2<A> {
    let mut y = x.to_owned();
    softmax_inplace(y.view_mut());
    y
}

/// The book's `delta`: added inside the logarithm so that a probability of 0 gives a large finite
/// loss rather than infinity.
pub const DELTA: f64 = 1e-7;

/// Mean cross-entropy error of a batch: `E = -(1/N) Σ_n Σ_k t_nk · ln(y_nk + 1e-7)`.
///
/// With class indices this is `-(1/N) Σ_n ln(y_n,t_n + 1e-7)`.
///
/// # Shapes
///
/// `y`: (N, C) probabilities; `t`: N class indices or (N, C) one-hot rows.
///
/// # Panics
///
/// If `t` does not have N samples, a class index is `>= C`, or one-hot targets are not (N, C).
///
/// ```
/// use bp_loss::{Targets, cross_entropy_error};
/// use ndarray::array;
///
/// // The book's example: the correct class "2" gets probability 0.6.
/// let y = array![[0.1f64, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]];
/// let e = cross_entropy_error(y.view(), Targets::Index(&[2]));
/// assert!((e - 0.510825457099338).abs() < 1e-9);
/// let t = array![[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]];
/// assert_eq!(cross_entropy_error(y.view(), Targets::OneHot(t.view())), e);
/// ```
#[track_caller]
pub fn cross_entropy_error<A: NdFloat>(y: ArrayView2<'_, A>, t: Targets<'_, A>) -> A {
    check_targets(y.shape(), &t);
    let delta = A::from(DELTA).expect("1e-7 is a float");
    let n = A::from(y.nrows()).expect("a batch size is a float");
    let total = match t {
        Targets::Index(t) => y
            .rows()
            .into_iter()
            .zip(t)
            .fold(A::zero(), |acc, (row, &k)| acc + (row[k] + delta).ln()),
        Targets::OneHot(t) => Zip::from(&y)
            .and(&t)
            .fold(A::zero(), |acc, &y, &t| acc + t * (y + delta).ln()),
    };
    -total / n
}

/// Owned copy of the targets, reused from batch to batch.
#[derive(Clone, Debug)]
enum TargetBuf<A> {
    Index(Vec<usize>),
    OneHot(Array2<A>),
}

/// Softmax followed by cross-entropy error, the output node of a classifier.
///
/// Forward: `y = softmax(x)`, `loss = cross_entropy_error(y, t)`.
/// Backward: `dx = dout · (y - t) / N`: the simple gradient that makes softmax and cross-entropy
/// belong together.
///
/// # Shapes
///
/// `x`: (N, C) scores (any `ndarray` dimension type of rank 2); `t`: N indices or (N, C) one-hot;
/// `dx`: (N, C).
///
/// # Example: the book's five samples
///
/// ```
/// use bp_loss::{SoftmaxWithLoss, Targets};
/// use ndarray::array;
///
/// let x = array![[1.7968638, 0.0, 0.0], [0.79365722, 0.0, 0.0],
///                [0.68992279, 0.11283528, 0.9215842], [0.0, 0.0, 0.37175357],
///                [0.4940006, 0.0, 1.18968491]];
/// let mut swl = SoftmaxWithLoss::<f64>::new();
/// let loss = swl.forward(x, Targets::Index(&[0, 0, 2, 2, 0]));
/// assert!((loss - 0.7776580427782468).abs() < 1e-6);
/// let dx = swl.backward(1.0);
/// assert!((dx[[0, 0]] * 5.0 - -0.24904416).abs() < 1e-6);
/// ```
#[derive(Clone, Debug)]
pub struct SoftmaxWithLoss<A> {
    /// The softmax output of the last forward; `None` before it and after the backward that consumed it.
    y: Option<Array2<A>>,
    /// The targets of the last forward.
    t: TargetBuf<A>,
}

impl<A: NdFloat> Default for SoftmaxWithLoss<A> {
    fn default() -> Self {
        SoftmaxWithLoss::new()
    }
}

impl<A: NdFloat> SoftmaxWithLoss<A> {
    /// A softmax-with-loss node.
    pub fn new() -> Self {
        SoftmaxWithLoss {
            y: None,
            t: TargetBuf::Index(Vec::new()),
        }
    }

    /// The softmax output of the last forward, if it has not been consumed by a backward.
    pub fn y(&self) -> Option<&Array2<A>> {
        self.y.as_ref()
    }

    /// Computes `softmax(x)` in place in `x`, keeps it and a copy of `t`, and returns the mean
    /// cross-entropy loss.
    ///
    /// # Panics
    ///
    /// If `x` is not of rank 2, or `t` does not fit it (see [`cross_entropy_error`]).
    #[track_caller]
    pub fn forward<D: Dimension>(&mut self, x: Array<A, D>, t: Targets<'_, A>) -> A {
        assert!(
            x.ndim() == 2,
            "SoftmaxWithLoss::forward: scores must be (N, C), got shape {:?}",
            x.shape()
        );
        let mut y = x
            .into_dimensionality::<Ix2>()
            .expect("the rank was checked");
        check_targets(y.shape(), &t);
        let loss = match t {
            // One pass over the rows: softmax and the loss term of each row together.
            Targets::Index(classes) => {
                let delta = A::from(DELTA).expect("1e-7 is a float");
                let n = A::from(y.nrows()).expect("a batch size is a float");
                let mut total = A::zero();
                for (mut row, &k) in y.rows_mut().into_iter().zip(classes) {
                    softmax_row(row.view_mut());
                    total += (row[k] + delta).ln();
                }
                -total / n
            }
            Targets::OneHot(_) => {
                softmax_inplace(y.view_mut());
                cross_entropy_error(y.view(), t)
            }
        };
        match (&mut self.t, t) {
            (TargetBuf::Index(buf), Targets::Index(t)) => {
                buf.clear();
                buf.extend_from_slice(t);
            }
            (TargetBuf::OneHot(buf), Targets::OneHot(t)) if buf.dim() == t.dim() => buf.assign(&t),
            (buf, Targets::Index(t)) => *buf = TargetBuf::Index(t.to_vec()),
            (buf, Targets::OneHot(t)) => *buf = TargetBuf::OneHot(t.to_owned()),
        }
        self.y = Some(y);
        loss
    }

    /// Returns `dx = dout · (y - t) / N`, computed in place in the kept softmax output.
    ///
    /// # Panics
    ///
    /// If no `forward` preceded it since the last backward.
    #[track_caller]
    pub fn backward(&mut self, dout: A) -> Array2<A> {
        let mut dx = self
            .y
            .take()
            .expect("SoftmaxWithLoss::backward called without a preceding forward");
        let scale = dout / A::from(dx.nrows()).expect("a batch size is a float");
        match &self.t {
            // One pass: (y - t) · scale, with t one-hot at each row's class.
            TargetBuf::Index(t) => {
                for (mut row, &k) in dx.axis_iter_mut(Axis(0)).zip(t) {
                    for (j, v) in row.iter_mut().enumerate() {
                        let target = if j == k { A::one() } else { A::zero() };
                        *v = (*v - target) * scale;
                    }
                }
            }
            TargetBuf::OneHot(t) => Zip::from(&mut dx)
                .and(t)
                .for_each(|v, &t| *v = (*v - t) * scale),
        }
        dx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    fn book_logits() -> Array2<f64> {
        array![
            [1.7968638, 0.0, 0.0],
            [0.79365722, 0.0, 0.0],
            [0.68992279, 0.11283528, 0.9215842],
            [0.0, 0.0, 0.37175357],
            [0.4940006, 0.0, 1.18968491]
        ]
    }

    const BOOK_CLASSES: [usize; 5] = [0, 0, 2, 2, 0];

    fn book_one_hot() -> Array2<f64> {
        Array2::from_shape_fn((5, 3), |(i, j)| f64::from(u8::from(BOOK_CLASSES[i] == j)))
    }

    /// y - t for the book's five samples.
    fn book_y_minus_t() -> Array2<f64> {
        array![
            [-0.24904416, 0.12452208, 0.12452208],
            [-0.47489362, 0.23744681, 0.23744681],
            [0.35433046, 0.19896769, -0.55329815],
            [0.28983192, 0.28983192, -0.57966385],
            [-0.72339481, 0.16877907, 0.55461573]
        ]
    }

    fn assert_close(a: &Array2<f64>, b: &Array2<f64>, tol: f64) {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < tol, "{a}\nvs\n{b}");
        }
    }

    #[test]
    fn softmax_with_loss_reproduces_the_book_table_for_both_label_forms() {
        let one_hot = book_one_hot();
        for t in [
            Targets::Index(&BOOK_CLASSES),
            Targets::OneHot(one_hot.view()),
        ] {
            let mut swl = SoftmaxWithLoss::new();
            let loss = swl.forward(book_logits(), t);
            assert!((loss - 0.7776580427782468).abs() < 1e-6, "{loss}");
            let y_minus_t = swl.y().unwrap() - &one_hot;
            assert_close(&y_minus_t, &book_y_minus_t(), 1e-6);
            let dx = swl.backward(1.0);
            assert_close(&dx, &(book_y_minus_t() / 5.0), 1e-7);
        }
    }

    #[test]
    fn backward_scales_by_dout_and_works_in_f32() {
        let mut swl = SoftmaxWithLoss::<f32>::new();
        let loss = swl.forward(
            book_logits().mapv(|v| v as f32),
            Targets::Index(&BOOK_CLASSES),
        );
        assert!((f64::from(loss) - 0.7776580427782468).abs() < 1e-6);
        let dx = swl.backward(2.0);
        assert_close(&dx.mapv(f64::from), &(book_y_minus_t() * 2.0 / 5.0), 1e-6);
    }

    #[test]
    fn reused_node_follows_changing_batches_and_label_forms() {
        let mut swl = SoftmaxWithLoss::<f64>::new();
        swl.forward(book_logits(), Targets::Index(&BOOK_CLASSES));
        swl.backward(1.0);
        // One sample, one-hot: equal scores over 4 classes give ln 4 and y - t = 0.25 - t.
        let t = array![[0.0, 1.0, 0.0, 0.0]];
        let loss = swl.forward(Array2::zeros((1, 4)), Targets::OneHot(t.view()));
        assert!((loss - 4f64.ln()).abs() < 1e-6);
        assert_eq!(swl.backward(1.0), array![[0.25, -0.75, 0.25, 0.25]]);
        let loss = swl.forward(Array2::zeros((2, 2)).into_dyn(), Targets::Index(&[0, 1]));
        assert!((loss - 2f64.ln()).abs() < 1e-6);
        assert_eq!(swl.backward(1.0), array![[-0.25, 0.25], [0.25, -0.25]]);
    }

    #[test]
    fn softmax_does_not_overflow_and_rows_sum_to_one() {
        let y = softmax(array![[1000.0, 1000.0], [1000.0, 0.0], [-1000.0, 0.0]].view());
        assert_eq!(y.row(0), array![0.5, 0.5]);
        assert_eq!(y.row(1), array![1.0, 0.0]);
        assert_eq!(y.row(2), array![0.0, 1.0]);
        let y32 = softmax(array![[1000.0f32, 999.0]].view());
        assert!(y32.iter().all(|v| v.is_finite()));
        assert!((y32.sum() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_of_a_zero_probability_is_finite() {
        // -ln(1e-7) = 16.11809565095832
        let e: f64 = cross_entropy_error(array![[1.0, 0.0]].view(), Targets::Index(&[1]));
        assert!((e - 16.11809565095832).abs() < 1e-6, "{e}");
        // The batch mean: (ln-loss of 0.5 + the zero case) / 2
        let e = cross_entropy_error(
            array![[0.5, 0.5], [1.0, 0.0]].view(),
            Targets::Index(&[0, 1]),
        );
        assert!((e - (-(0.5f64 + 1e-7).ln() + 16.11809565095832) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn targets_report_their_length() {
        assert_eq!(Targets::<f64>::Index(&[1, 2, 3]).len(), 3);
        let t = Array2::<f64>::zeros((0, 3));
        assert!(Targets::OneHot(t.view()).is_empty());
    }
}
