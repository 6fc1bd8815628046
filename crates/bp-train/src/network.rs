//! The `Network` trait: what the training loop, the optimizers and gradient checks need of a net.

use bp_core::Param;
use bp_loss::Targets;
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, NdFloat, Slice};

/// The rows per [`predict`](Network::predict) call when [`accuracy`](Network::accuracy) walks a data
/// set: large enough for efficient matrix products, small enough to bound the memory of the
/// intermediate activations and to keep each chunk's copy in cache for the products that read it.
/// At 784-50-10 a chunk's first product (39 million multiply-adds) is also small enough for
/// bp-core's AVX-512 kernels, where 2,000 rows went to `matrixmultiply`: all 70,000 MNIST images
/// took 0.046–0.051 s on two threads against 0.063–0.067 s in chunks of 2,000 rows, and 0.066–0.069
/// s on one thread against 0.101–0.106 s (alternating, medians of 5).
pub const EVAL_CHUNK: usize = 1_000;

/// A classifier trained by backpropagation: the methods of the book's `TwoLayerNet` and
/// `MultiLayerNet`.
///
/// Implemented by [`TwoLayerNet`](crate::TwoLayerNet) and [`MultiLayerNet`](crate::MultiLayerNet)
/// for every `A: NdFloat` (`f32` and `f64`).
pub trait Network<A: NdFloat> {
    /// Class scores through the inference path (`&self`, never touches training caches).
    ///
    /// # Shapes
    ///
    /// `x`: (N, d1, ...) flattening to the input size; scores: (N, classes).
    fn predict(&self, x: ArrayD<A>) -> Array2<A>;

    /// The book's `loss(x, t)`: training-mode forward + `SoftmaxWithLoss` (+ the weight-decay term
    /// `½ λ Σ ‖W‖²` if the net has one). Returns the mean loss.
    fn loss(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> A;

    /// The book's `gradient(x, t)`: ONE forward and backward pass; overwrites every parameter
    /// gradient (consistent with [`loss`](Network::loss), weight decay included) and returns the
    /// loss, so that a training loop never runs a second forward just to log it.
    fn gradient(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> A;

    /// As [`gradient`](Network::gradient), but also hands back the storage of `x` (contents
    /// unspecified) so that the caller can gather the next batch into it instead of allocating.
    /// The default returns `None` (the storage is dropped).
    fn gradient_reusing(&mut self, x: ArrayD<A>, t: Targets<'_, A>) -> (A, Option<ArrayD<A>>) {
        (self.gradient(x, t), None)
    }

    /// The regularisation term (weight decay's `½ λ Σ ‖W‖²`) included in the loss that the last
    /// [`loss`](Network::loss) or [`gradient`](Network::gradient) returned; 0 for nets without one
    /// (the default). Subtracting it gives the data loss.
    fn penalty(&self) -> A {
        A::zero()
    }

    /// Visits every parameter with its gradient in a fixed order: layer by layer (`W`, `b` of each
    /// Affine; `gamma`, `beta` of each BatchNorm). Optimizers keep their state by position in it.
    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, A>));

    /// The fraction of samples whose largest score (through [`predict`](Network::predict)) is at
    /// their class, computed in chunks of [`EVAL_CHUNK`] rows. 0 for an empty set.
    ///
    /// # Panics
    ///
    /// If `t` does not have one label per row of `x`.
    #[track_caller]
    fn accuracy(&self, x: ArrayViewD<'_, A>, t: &[usize]) -> f64 {
        chunked_accuracy(x, t, EVAL_CHUNK, |chunk| self.predict(chunk))
    }
}

/// The fraction of rows of `x` whose scores (from `predict`, called on chunks of at most `chunk`
/// rows) have their maximum at the label in `t`. Ties go to the lowest class, like NumPy's `argmax`.
///
/// # Panics
///
/// If `t.len()` differs from the number of rows of `x`, or `chunk` is 0.
#[track_caller]
pub fn chunked_accuracy<A: NdFloat>(
    x: ArrayViewD<'_, A>,
    t: &[usize],
    chunk: usize,
    mut predict: impl FnMut(ArrayD<A>) -> Array2<A>,
) -> f64 {
    let n = x.shape().first().copied().unwrap_or(0);
    assert!(
        t.len() == n,
        "accuracy: x has shape {:?} but there are {} labels",
        x.shape(),
        t.len()
    );
    assert!(chunk > 0, "accuracy: the chunk size must be positive");
    if n == 0 {
        return 0.0;
    }
    let mut correct = 0usize;
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let rows = x.slice_axis(Axis(0), Slice::from(start..end)).to_owned();
        let scores = predict(rows);
        correct += count_correct(&scores, &t[start..end]);
        start = end;
    }
    correct as f64 / n as f64
}

/// The number of rows of `scores` whose argmax (first maximum) equals the label.
///
/// # Panics
///
/// If `scores` does not have one row per label.
#[track_caller]
pub fn count_correct<A: NdFloat>(scores: &Array2<A>, t: &[usize]) -> usize {
    assert!(
        scores.nrows() == t.len(),
        "scores of shape {:?} for {} labels",
        scores.shape(),
        t.len()
    );
    scores
        .rows()
        .into_iter()
        .zip(t)
        .filter(|(row, label)| argmax(row.iter().copied()) == Some(**label))
        .count()
}

/// The index of the first maximum (NaN never wins), or `None` for an empty or all-NaN row.
fn argmax<A: NdFloat>(values: impl Iterator<Item = A>) -> Option<usize> {
    let mut best: Option<(usize, A)> = None;
    for (i, v) in values.enumerate() {
        if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// The book's parameter names, in visiting order: each parameter's name within its layer followed by
/// its occurrence count, `W1 b1 W2 b2` (and `gamma1 beta1 ...` for batch-normalised nets).
///
/// ```
/// use bp_train::{TwoLayerNet, param_names};
/// use rand::SeedableRng;
/// use rand_xoshiro::Xoshiro256PlusPlus;
///
/// let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
/// let mut net = TwoLayerNet::<f64>::new(4, 3, 2, 0.01, &mut rng);
/// assert_eq!(param_names(&mut net), ["W1", "b1", "W2", "b2"]);
/// ```
pub fn param_names<A: NdFloat>(net: &mut dyn Network<A>) -> Vec<String> {
    let mut seen: Vec<(&'static str, usize)> = Vec::new();
    let mut names = Vec::new();
    net.visit_params(&mut |p| {
        let count = match seen.iter_mut().find(|(name, _)| *name == p.name) {
            Some((_, count)) => {
                *count += 1;
                *count
            }
            None => {
                seen.push((p.name, 1));
                1
            }
        };
        names.push(format!("{}{count}", p.name));
    });
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn argmax_takes_the_first_maximum_and_skips_nan() {
        assert_eq!(argmax([1.0, 3.0, 3.0, 2.0].into_iter()), Some(1));
        assert_eq!(argmax([f64::NAN, 1.0, 0.5].into_iter()), Some(1));
        assert_eq!(argmax([f64::NAN].into_iter()), None);
        assert_eq!(argmax(std::iter::empty::<f32>()), None);
    }

    #[test]
    fn chunked_accuracy_is_the_same_for_every_chunk_size() {
        let x = array![[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [5.0, 4.0], [0.0, 0.0]].into_dyn();
        let t = [1, 0, 0, 0, 0];
        // The scores are the inputs themselves: correct are rows 0, 1, 3 and 4 (a tie goes to 0).
        for chunk in 1..=6 {
            let acc = chunked_accuracy(x.view(), &t, chunk, |rows| {
                rows.into_dimensionality().unwrap()
            });
            assert_eq!(acc, 0.8, "chunk {chunk}");
        }
        let empty = Array2::<f64>::zeros((0, 2)).into_dyn();
        assert_eq!(
            chunked_accuracy(empty.view(), &[], 3, |r| r.into_dimensionality().unwrap()),
            0.0
        );
    }
}
