//! Batch normalisation.

use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Dimension, IxDyn, NdFloat, Zip};

use crate::layer::{Layer, Param, ParamKind, load_into};

/// Batch normalisation, the book's `BatchNormalization`: each feature is normalised over the batch,
/// then scaled by `gamma` and shifted by `beta`.
///
/// Training forward, per feature `j` over the `N` rows of the batch:
/// `μ = (1/N) Σ x`, `σ² = (1/N) Σ (x - μ)²`, `x̂ = (x - μ) / sqrt(σ² + ε)`, `out = γ · x̂ + β`,
/// with `ε = 1e-6` (the book's `10e-7`). It also updates the running averages used by inference:
/// `running_mean = m · running_mean + (1 - m) · μ` and likewise `running_var` with `σ²` (the biased
/// batch variance, as the book), with momentum `m = 0.9` by default. Both start at zero, as in the book.
///
/// Backward (the book's chain through `x̂`, `σ` and `μ`, simplified):
/// `dβ = Σ dout`, `dγ = Σ dout · x̂`,
/// `dx = γ / sqrt(σ² + ε) · (dout - dβ / N - x̂ · dγ / N)`.
///
/// Inference ([`predict`](Layer::predict)) uses the running averages instead of the batch's
/// statistics: `out = γ · (x - running_mean) / sqrt(running_var + ε) + β`.
///
/// # Shapes
///
/// `x`: (N, D), or any rank >= 2, which is read, like the book's layer, as (N, D) with
/// `D = d1·d2·...` (every element position of a sample is its own feature; this is not the
/// per-channel normalisation of convolutional nets). `gamma`, `beta`, the running averages and the
/// gradients `dgamma`, `dbeta`: (D). Output, `dout` and `dx` are shaped like `x`.
///
/// # Parameters
///
/// Visited in the order `"gamma"`, `"beta"`. The running averages are state, not parameters.
///
/// # Panics
///
/// [`BatchNorm::with_params`] if `gamma` and `beta` differ in length; `forward` and `predict` if the
/// input does not flatten to (N, D) or has no rows (training); `backward` if no `forward` preceded it
/// or `dout` is not shaped like the last output.
///
/// # Example
///
/// ```
/// use bp_core::{BatchNorm, Layer};
/// use ndarray::array;
///
/// let mut bn = BatchNorm::<f64>::with_params(array![2.0], array![1.0]);
/// // The column [1, 3] has mean 2 and variance 1: x̂ = [-1, 1] (up to ε), out = 2 x̂ + 1.
/// let out = bn.forward(array![[1.0], [3.0]].into_dyn());
/// assert!((out[[0, 0]] - -1.0).abs() < 1e-5 && (out[[1, 0]] - 3.0).abs() < 1e-5);
/// assert!((bn.running_mean()[0] - 0.2).abs() < 1e-12); // 0.9 · 0 + 0.1 · 2
/// // A gradient that is the same for every row only moves the mean, which normalisation removes.
/// let dx = bn.backward(array![[5.0], [5.0]].into_dyn());
/// assert!(dx.iter().all(|d| d.abs() < 1e-12));
/// assert_eq!(bn.dbeta(), &array![10.0]);
/// ```
#[derive(Clone, Debug)]
pub struct BatchNorm<A> {
    gamma: Array1<A>,
    beta: Array1<A>,
    dgamma: Array1<A>,
    dbeta: Array1<A>,
    momentum: A,
    running_mean: Array1<A>,
    running_var: Array1<A>,
    /// The batch mean, then the batch variance, of the last training forward (scratch).
    mean: Array1<A>,
    var: Array1<A>,
    /// `1 / sqrt(σ² + ε)` of the last training forward.
    inv_std: Array1<A>,
    /// `x̂` of the last training forward, (N, D), held in the storage of that forward's input. After
    /// the backward it stays here until the next forward takes its storage for the output.
    xn: Option<Array2<A>>,
    /// Whether `xn` belongs to a forward that has not yet been through a backward.
    pending: bool,
    /// The last training input's original shape.
    x_shape: IxDyn,
}

impl<A: NdFloat> BatchNorm<A> {
    /// The book's `ε`, added to the variance before the square root (`10e-7` there).
    pub const EPS: f64 = 1e-6;

    /// A batch normalisation layer for `d` features, with `gamma = 1` and `beta = 0` (as the book's
    /// `MultiLayerNetExtend` starts them) and momentum 0.9.
    pub fn new(d: usize) -> Self {
        BatchNorm::with_params(Array1::ones(d), Array1::zeros(d))
    }

    /// A batch normalisation layer with the given `gamma` and `beta` (D) and momentum 0.9.
    ///
    /// # Panics
    ///
    /// If `gamma` and `beta` differ in length.
    #[track_caller]
    pub fn with_params(gamma: Array1<A>, beta: Array1<A>) -> Self {
        assert_eq!(
            gamma.len(),
            beta.len(),
            "BatchNorm::with_params: gamma has shape {:?} but beta has shape {:?}",
            gamma.shape(),
            beta.shape()
        );
        let d = gamma.len();
        BatchNorm {
            dgamma: Array1::zeros(d),
            dbeta: Array1::zeros(d),
            momentum: A::from(0.9).expect("0.9 is a float"),
            running_mean: Array1::zeros(d),
            running_var: Array1::zeros(d),
            mean: Array1::zeros(d),
            var: Array1::zeros(d),
            inv_std: Array1::zeros(d),
            xn: None,
            pending: false,
            x_shape: IxDyn(&[]),
            gamma,
            beta,
        }
    }

    /// Sets the momentum `m` of the running averages (the book's default is 0.9).
    #[must_use]
    pub fn with_momentum(mut self, momentum: A) -> Self {
        self.momentum = momentum;
        self
    }

    /// The number of features `D`.
    pub fn size(&self) -> usize {
        self.gamma.len()
    }

    /// The scale `gamma`, shape (D).
    pub fn gamma(&self) -> &Array1<A> {
        &self.gamma
    }

    /// The shift `beta`, shape (D).
    pub fn beta(&self) -> &Array1<A> {
        &self.beta
    }

    /// The gradient `dgamma` written by the last backward pass, shape (D).
    pub fn dgamma(&self) -> &Array1<A> {
        &self.dgamma
    }

    /// The gradient `dbeta` written by the last backward pass, shape (D).
    pub fn dbeta(&self) -> &Array1<A> {
        &self.dbeta
    }

    /// The running average of the batch means, used by inference.
    pub fn running_mean(&self) -> &Array1<A> {
        &self.running_mean
    }

    /// The running average of the batch variances, used by inference.
    pub fn running_var(&self) -> &Array1<A> {
        &self.running_var
    }

    /// The momentum of the running averages.
    pub fn momentum(&self) -> A {
        self.momentum
    }

    /// Replaces the running averages (for a model read back from a file, say).
    ///
    /// # Panics
    ///
    /// If either is not of length D.
    #[track_caller]
    pub fn set_running(&mut self, mean: Array1<A>, var: Array1<A>) {
        assert!(
            mean.len() == self.size() && var.len() == self.size(),
            "BatchNorm::set_running: mean {:?} and var {:?} must both have shape [{}]",
            mean.shape(),
            var.shape(),
            self.size()
        );
        self.running_mean = mean;
        self.running_var = var;
    }

    /// Reads `x` as (N, D), checking the feature count. Copies only if `x` is not contiguous.
    #[track_caller]
    fn flatten(&self, x: ArrayD<A>, pass: &str) -> Array2<A> {
        let shape = x.shape();
        assert!(
            shape.len() >= 2 && shape[1..].iter().product::<usize>() == self.size(),
            "BatchNorm::{pass}: input of shape {shape:?} does not flatten to (N, {}) for gamma of shape {:?}",
            self.size(),
            self.gamma.shape()
        );
        let n = shape[0];
        x.into_shape_clone((n, self.size()))
            .expect("the element count was checked")
    }
}

impl<A: NdFloat> Layer<A> for BatchNorm<A> {
    fn name(&self) -> &'static str {
        "BatchNorm"
    }

    #[track_caller]
    fn forward(&mut self, x: ArrayD<A>) -> ArrayD<A> {
        let x_shape = x.raw_dim();
        let mut x = self.flatten(x, "forward");
        let n = x.nrows();
        assert!(
            n > 0,
            "BatchNorm::forward: the batch {x_shape:?} has no rows"
        );
        let inv_n = A::one() / A::from(n).expect("a batch size is a float");
        let eps = A::from(Self::EPS).expect("1e-6 is a float");

        // Batch mean and (biased) variance, two passes for accuracy.
        self.mean.fill(A::zero());
        for row in x.rows() {
            self.mean += &row;
        }
        self.mean *= inv_n;
        self.var.fill(A::zero());
        for row in x.rows() {
            Zip::from(&mut self.var)
                .and(&row)
                .and(&self.mean)
                .for_each(|v, &x, &m| *v += (x - m) * (x - m));
        }
        self.var *= inv_n;
        Zip::from(&mut self.inv_std)
            .and(&self.var)
            .for_each(|s, &v| *s = A::one() / (v + eps).sqrt());

        // x̂ in place of x.
        for mut row in x.rows_mut() {
            Zip::from(&mut row)
                .and(&self.mean)
                .and(&self.inv_std)
                .for_each(|x, &m, &s| *x = (*x - m) * s);
        }

        let m = self.momentum;
        let one_minus_m = A::one() - m;
        Zip::from(&mut self.running_mean)
            .and(&mut self.running_var)
            .and(&self.mean)
            .and(&self.var)
            .for_each(|rm, rv, &mu, &var| {
                *rm = m * *rm + one_minus_m * mu;
                *rv = m * *rv + one_minus_m * var;
            });

        // The previous x̂'s storage receives the output.
        let mut out = match self.xn.take() {
            Some(buf) if buf.dim() == x.dim() => buf,
            _ => Array2::zeros(x.dim()),
        };
        Zip::from(&mut out)
            .and(&x)
            .and_broadcast(&self.gamma)
            .and_broadcast(&self.beta)
            .for_each(|o, &xn, &g, &b| *o = g * xn + b);
        self.xn = Some(x);
        self.pending = true;
        self.x_shape = x_shape.clone();
        out.into_shape_with_order(x_shape)
            .expect("the output has the input's element count")
    }

    #[track_caller]
    fn backward(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        assert!(
            self.pending,
            "BatchNorm::backward called without a preceding forward"
        );
        let xn = self.xn.as_ref().expect("a pending forward keeps x̂");
        assert!(
            dout.shape() == self.x_shape.slice(),
            "BatchNorm::backward: dout has shape {:?}, but the last output had shape {:?}",
            dout.shape(),
            self.x_shape.slice()
        );
        let mut dout = dout
            .into_shape_clone((xn.nrows(), xn.ncols()))
            .expect("the element count was checked");
        self.dbeta.fill(A::zero());
        self.dgamma.fill(A::zero());
        for (drow, xrow) in dout.rows().into_iter().zip(xn.rows()) {
            Zip::from(&mut self.dbeta)
                .and(&mut self.dgamma)
                .and(&drow)
                .and(&xrow)
                .for_each(|db, dg, &d, &x| {
                    *db += d;
                    *dg += d * x;
                });
        }
        let inv_n = A::one() / A::from(xn.nrows()).expect("a batch size is a float");
        Zip::from(&mut dout)
            .and(xn)
            .and_broadcast(&self.gamma)
            .and_broadcast(&self.inv_std)
            .and_broadcast(&self.dbeta)
            .and_broadcast(&self.dgamma)
            .for_each(|d, &x, &g, &s, &db, &dg| {
                *d = g * s * (*d - db * inv_n - x * dg * inv_n);
            });
        self.pending = false;
        dout.into_shape_with_order(self.x_shape.clone())
            .expect("dx has the input's element count")
    }

    #[track_caller]
    fn predict(&self, x: ArrayD<A>) -> ArrayD<A> {
        let x_shape = x.raw_dim();
        let mut x = self.flatten(x, "predict");
        let eps = A::from(Self::EPS).expect("1e-6 is a float");
        for mut row in x.rows_mut() {
            Zip::from(&mut row)
                .and(&self.running_mean)
                .and(&self.running_var)
                .and(&self.gamma)
                .and(&self.beta)
                .for_each(|x, &m, &v, &g, &b| *x = g * (*x - m) / (v + eps).sqrt() + b);
        }
        x.into_shape_with_order(x_shape)
            .expect("the output has the input's element count")
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, A>)) {
        f(Param {
            name: "gamma",
            kind: ParamKind::Scale,
            value: self.gamma.view_mut().into_dyn(),
            grad: self.dgamma.view_mut().into_dyn(),
        });
        f(Param {
            name: "beta",
            kind: ParamKind::Bias,
            value: self.beta.view_mut().into_dyn(),
            grad: self.dbeta.view_mut().into_dyn(),
        });
    }

    fn visit_params_ref(&self, f: &mut dyn FnMut(&'static str, ArrayViewD<'_, A>)) {
        f("gamma", self.gamma.view().into_dyn());
        f("beta", self.beta.view().into_dyn());
    }

    /// PyTorch's `BatchNorm1d`: `weight` (γ), `bias` (β), `running_mean`, `running_var`, each (D).
    /// (PyTorch's `num_batches_tracked` counter is not kept: inference does not use it.)
    fn visit_tensors(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, A>)) {
        f("weight", self.gamma.view().into_dyn());
        f("bias", self.beta.view().into_dyn());
        f("running_mean", self.running_mean.view().into_dyn());
        f("running_var", self.running_var.view().into_dyn());
    }

    /// A `running_var` with a negative element is refused: inference divides by its square root.
    #[track_caller]
    fn load_tensor(&mut self, name: &str, value: ArrayViewD<'_, A>) -> Result<(), String> {
        if name == "running_var"
            && let Some(v) = value.iter().find(|&&v| v < A::zero())
        {
            return Err(format!("holds a negative variance, {v}"));
        }
        let target = match name {
            "weight" => &mut self.gamma,
            "bias" => &mut self.beta,
            "running_mean" => &mut self.running_mean,
            "running_var" => &mut self.running_var,
            _ => panic!(
                "BatchNorm::load_tensor: no tensor `{name}`; BatchNorm has `weight`, `bias`, \
                 `running_mean` and `running_var`"
            ),
        };
        load_into("BatchNorm", name, target.view_mut().into_dyn(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_load_back_and_a_negative_variance_is_refused() {
        let mut bn = BatchNorm::<f64>::with_params(array![2.0, 3.0], array![0.5, -0.5]);
        bn.load_tensor("running_mean", array![1.0, 2.0].into_dyn().view())
            .unwrap();
        bn.load_tensor("running_var", array![4.0, 0.0].into_dyn().view())
            .unwrap();
        assert_eq!(bn.running_var(), &array![4.0, 0.0]);
        let err = bn
            .load_tensor("running_var", array![1.0, -0.25].into_dyn().view())
            .unwrap_err();
        assert_eq!(err, "holds a negative variance, -0.25");
        assert_eq!(
            bn.running_var(),
            &array![4.0, 0.0],
            "a refused load changes nothing"
        );
        let mut seen = Vec::new();
        bn.visit_tensors(&mut |name, v| seen.push((name.to_owned(), v.to_owned())));
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["weight", "bias", "running_mean", "running_var"]);
        assert_eq!(seen[0].1, array![2.0, 3.0].into_dyn());
        assert_eq!(seen[2].1, array![1.0, 2.0].into_dyn());
    }
    use ndarray::{Array, Ix2, array};

    fn two_d<A: NdFloat>(a: ArrayD<A>) -> Array2<A> {
        a.into_dimensionality::<Ix2>().expect("a 2-d array")
    }

    fn cast<A: NdFloat, D: Dimension>(a: Array<f64, D>) -> Array<A, D> {
        a.mapv(crate::init::cast)
    }

    fn assert_close<A: NdFloat>(got: &ArrayD<A>, expected: &ArrayD<f64>, tol: f64) {
        assert_eq!(got.shape(), expected.shape());
        for (g, e) in got.iter().zip(expected) {
            let g = g.to_f64().unwrap();
            assert!((g - e).abs() < tol, "{got}\nvs\n{expected}");
        }
    }

    /// Two features over three rows, worked by hand.
    ///
    /// x = [[1, 10], [2, 10], [3, 16]]: column 0 has mean 2, variance 2/3; column 1 mean 12,
    /// variance 8. With ε = 1e-6: inv_std0 = 1/sqrt(2/3 + 1e-6), inv_std1 = 1/sqrt(8 + 1e-6).
    /// x̂0 = [-1, 0, 1] · inv_std0 ≈ [-1.2247440, 0, 1.2247440]; x̂1 = [-2, -2, 4] · inv_std1 ≈
    /// [-0.7071067, -0.7071067, 1.4142135]. With γ = [2, -1], β = [0.5, 1]: out = γ x̂ + β.
    /// For dout = [[1, 0], [0, 0], [0, 2]]: dβ = [1, 2]; dγ = [x̂0[0], 2 x̂1[2]] ≈ [-1.2247440,
    /// 2.8284271]; dx0 = 2 inv_std0 (dout0 - 1/3 - x̂0 · dγ0 / 3) and dx1 = -inv_std1 (dout1 - 2/3 -
    /// x̂1 · dγ1 / 3), evaluated below from the closed forms.
    fn hand_derived<A: NdFloat>(tol: f64) {
        let mut bn = BatchNorm::with_params(
            cast::<A, _>(array![2.0, -1.0]),
            cast::<A, _>(array![0.5, 1.0]),
        );
        let x = cast::<A, _>(array![[1.0, 10.0], [2.0, 10.0], [3.0, 16.0]]).into_dyn();
        let s0 = 1.0 / (2.0f64 / 3.0 + 1e-6).sqrt();
        let s1 = 1.0 / (8.0f64 + 1e-6).sqrt();
        let xn0 = [-s0, 0.0, s0];
        let xn1 = [-2.0 * s1, -2.0 * s1, 4.0 * s1];
        let out = bn.forward(x);
        let expected = Array2::from_shape_fn((3, 2), |(i, j)| {
            if j == 0 {
                2.0 * xn0[i] + 0.5
            } else {
                -xn1[i] + 1.0
            }
        });
        assert_close(&out, &expected.into_dyn(), tol);
        assert_close(
            &bn.running_mean().clone().into_dyn(),
            &array![0.2, 1.2].into_dyn(),
            tol,
        );
        assert_close(
            &bn.running_var().clone().into_dyn(),
            &array![0.2 / 3.0, 0.8].into_dyn(),
            tol,
        );

        let dout = cast::<A, _>(array![[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]]).into_dyn();
        let dx = bn.backward(dout);
        let dg = [xn0[0], 2.0 * xn1[2]];
        assert_close(
            &bn.dbeta().clone().into_dyn(),
            &array![1.0, 2.0].into_dyn(),
            tol,
        );
        assert_close(
            &bn.dgamma().clone().into_dyn(),
            &array![dg[0], dg[1]].into_dyn(),
            tol,
        );
        let d = [[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]];
        let expected_dx = Array2::from_shape_fn((3, 2), |(i, j)| {
            if j == 0 {
                2.0 * s0 * (d[i][0] - 1.0 / 3.0 - xn0[i] * dg[0] / 3.0)
            } else {
                -s1 * (d[i][1] - 2.0 / 3.0 - xn1[i] * dg[1] / 3.0)
            }
        });
        assert_close(&dx, &expected_dx.into_dyn(), tol);
    }

    #[test]
    fn hand_derived_f64() {
        hand_derived::<f64>(1e-9);
    }

    #[test]
    fn hand_derived_f32() {
        hand_derived::<f32>(1e-5);
    }

    /// The book's backward, step by step, for comparison with the simplified formula.
    fn book_backward(
        gamma: &Array1<f64>,
        x: &Array2<f64>,
        dout: &Array2<f64>,
    ) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
        let n = x.nrows() as f64;
        let mu = x.mean_axis(ndarray::Axis(0)).unwrap();
        let xc = x - &mu;
        let var = (&xc * &xc).mean_axis(ndarray::Axis(0)).unwrap();
        let std = var.mapv(|v| (v + 1e-6).sqrt());
        let xn = &xc / &std;
        let dbeta = dout.sum_axis(ndarray::Axis(0));
        let dgamma = (&xn * dout).sum_axis(ndarray::Axis(0));
        let dxn = dout * gamma;
        let mut dxc = &dxn / &std;
        let dstd = -((&dxn * &xc) / (&std * &std)).sum_axis(ndarray::Axis(0));
        let dvar = 0.5 * dstd / &std;
        dxc = dxc + (2.0 / n) * &xc * &dvar;
        let dmu = dxc.sum_axis(ndarray::Axis(0));
        let dx = dxc - dmu / n;
        (dx, dgamma, dbeta)
    }

    fn sample_input() -> Array2<f64> {
        Array2::from_shape_fn((5, 3), |(i, j)| {
            ((i * 7 + j * 3) % 5) as f64 * 0.7 - 1.0 + 0.1 * j as f64
        })
    }

    #[test]
    fn simplified_backward_equals_the_books_chain() {
        let gamma = array![1.5, -0.5, 2.0];
        let x = sample_input();
        let dout = Array2::from_shape_fn((5, 3), |(i, j)| (i as f64 - 2.0) * 0.3 + j as f64 * 0.1);
        let mut bn = BatchNorm::with_params(gamma.clone(), array![0.1, 0.2, 0.3]);
        bn.forward(x.clone().into_dyn());
        let dx = two_d(bn.backward(dout.clone().into_dyn()));
        let (book_dx, book_dgamma, book_dbeta) = book_backward(&gamma, &x, &dout);
        for (a, b) in dx.iter().zip(&book_dx) {
            assert!((a - b).abs() < 1e-10, "{dx}\nvs\n{book_dx}");
        }
        for (a, b) in bn.dgamma().iter().zip(&book_dgamma) {
            assert!((a - b).abs() < 1e-12);
        }
        assert_eq!(bn.dbeta(), &book_dbeta);
    }

    /// Central differences of `L = Σ c · forward(x)` with respect to x, gamma and beta.
    #[test]
    fn central_difference_matches_backward() {
        let x = sample_input();
        let c = Array2::from_shape_fn((5, 3), |(i, j)| 1.0 + ((i * 3 + j) % 4) as f64 * 0.25);
        let mut bn = BatchNorm::with_params(array![1.5, -0.5, 2.0], array![0.1, 0.2, 0.3]);
        bn.forward(x.clone().into_dyn());
        let dx = two_d(bn.backward(c.clone().into_dyn()));
        let (dgamma, dbeta) = (bn.dgamma().clone(), bn.dbeta().clone());
        let h = 1e-5;
        let loss = |bn: &mut BatchNorm<f64>, x: &Array2<f64>| {
            (two_d(bn.forward(x.clone().into_dyn())) * &c).sum()
        };
        for i in 0..5 {
            for j in 0..3 {
                let (mut plus, mut minus) = (x.clone(), x.clone());
                plus[[i, j]] += h;
                minus[[i, j]] -= h;
                let numerical = (loss(&mut bn, &plus) - loss(&mut bn, &minus)) / (2.0 * h);
                assert!(
                    (numerical - dx[[i, j]]).abs() < 1e-6,
                    "x[{i}, {j}]: {numerical} vs {}",
                    dx[[i, j]]
                );
            }
        }
        for (k, (name, analytic)) in [("gamma", &dgamma), ("beta", &dbeta)]
            .into_iter()
            .enumerate()
        {
            for j in 0..3 {
                let nudge = |delta: f64| {
                    let mut p = bn.clone();
                    let mut index = 0;
                    p.visit_params(&mut |mut param| {
                        if index == k {
                            param.value[[j]] += delta;
                        }
                        index += 1;
                    });
                    loss(&mut p, &x)
                };
                let numerical = (nudge(h) - nudge(-h)) / (2.0 * h);
                assert!(
                    (numerical - analytic[j]).abs() < 1e-6,
                    "{name}[{j}]: {numerical} vs {}",
                    analytic[j]
                );
            }
        }
    }

    #[test]
    fn predict_uses_the_running_averages_and_leaves_them_alone() {
        let mut bn = BatchNorm::<f64>::with_params(array![2.0], array![1.0]).with_momentum(0.5);
        bn.forward(array![[0.0], [4.0]].into_dyn()); // mean 2, var 4
        assert_eq!(bn.running_mean(), &array![1.0]);
        assert_eq!(bn.running_var(), &array![2.0]);
        bn.forward(array![[2.0], [2.0]].into_dyn()); // mean 2, var 0
        assert_eq!(bn.running_mean(), &array![1.5]);
        assert_eq!(bn.running_var(), &array![1.0]);
        let out = bn.predict(array![[1.5], [2.5]].into_dyn());
        let s = 1.0 / (1.0f64 + 1e-6).sqrt();
        assert_close(&out, &array![[1.0], [1.0 + 2.0 * s]].into_dyn(), 1e-12);
        assert_eq!(bn.running_mean(), &array![1.5]);
    }

    #[test]
    fn higher_rank_input_normalises_every_position_and_keeps_its_shape() {
        let x = Array::from_shape_fn((3, 2, 2), |(i, j, k)| {
            (i * 4 + j * 2 + k) as f64 * (1.0 + j as f64)
        });
        let flat = x.clone().into_shape_with_order((3, 4)).unwrap();
        let mut rank3 = BatchNorm::<f64>::new(4);
        let mut rank2 = BatchNorm::<f64>::new(4);
        let out3 = rank3.forward(x.into_dyn());
        let out2 = rank2.forward(flat.into_dyn());
        assert_eq!(out3.shape(), [3, 2, 2]);
        assert_eq!(
            out3.iter().collect::<Vec<_>>(),
            out2.iter().collect::<Vec<_>>()
        );
        let dout = Array::from_shape_fn((3, 2, 2), |(i, j, k)| (i + j * k) as f64).into_dyn();
        let dx3 = rank3.backward(dout.clone());
        let dx2 = rank2.backward(dout.into_shape_with_order(IxDyn(&[3, 4])).unwrap());
        assert_eq!(dx3.shape(), [3, 2, 2]);
        assert_eq!(
            dx3.iter().collect::<Vec<_>>(),
            dx2.iter().collect::<Vec<_>>()
        );
        assert_eq!(
            rank3.predict(ArrayD::zeros(IxDyn(&[1, 2, 2]))).shape(),
            [1, 2, 2]
        );
    }

    #[test]
    fn repeated_steps_reuse_buffers_without_leaking_values() {
        let mut bn = BatchNorm::<f64>::new(2);
        let mut fresh_outputs = Vec::new();
        for step in 0..3 {
            let s = f64::from(step);
            let x = array![[s, 1.0], [s + 2.0, 5.0]];
            let out = bn.forward(x.clone().into_dyn());
            let mut fresh = BatchNorm::<f64>::new(2);
            fresh_outputs.push(fresh.forward(x.into_dyn()));
            assert_eq!(out, fresh_outputs[step as usize]);
            let dx = bn.backward(array![[1.0, 2.0], [3.0, 5.0]].into_dyn());
            let fresh_dx = fresh.backward(array![[1.0, 2.0], [3.0, 5.0]].into_dyn());
            assert_eq!(dx, fresh_dx);
        }
    }

    #[test]
    fn params_are_visited_gamma_then_beta() {
        let mut bn = BatchNorm::<f32>::new(3);
        let mut seen = Vec::new();
        bn.visit_params(&mut |p| seen.push((p.name, p.value.shape().to_vec())));
        assert_eq!(seen, [("gamma", vec![3]), ("beta", vec![3])]);
        let mut seen_ref = Vec::new();
        bn.visit_params_ref(&mut |name, v| seen_ref.push((name, v.shape().to_vec())));
        assert_eq!(seen_ref, seen);
        assert_eq!(bn.num_params(), 6);
        assert_eq!(bn.gamma(), &array![1.0, 1.0, 1.0]);
        assert_eq!(bn.beta(), &array![0.0, 0.0, 0.0]);
    }

    #[test]
    fn shape_mismatches_panic_with_the_shapes() {
        let result = std::panic::catch_unwind(|| {
            BatchNorm::<f64>::new(3).forward(ArrayD::zeros(IxDyn(&[2, 4])));
        });
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.contains("[2, 4]") && message.contains("[3]"),
            "{message}"
        );

        let result = std::panic::catch_unwind(|| {
            let mut bn = BatchNorm::<f64>::new(3);
            bn.forward(ArrayD::zeros(IxDyn(&[2, 3])));
            bn.backward(ArrayD::zeros(IxDyn(&[3, 3])));
        });
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.contains("[3, 3]") && message.contains("[2, 3]"),
            "{message}"
        );

        let result = std::panic::catch_unwind(|| {
            BatchNorm::<f64>::new(3).backward(ArrayD::zeros(IxDyn(&[2, 3])));
        });
        let message = *result.unwrap_err().downcast::<&str>().unwrap();
        assert!(message.contains("without a preceding forward"), "{message}");
    }
}
