//! The fully connected layer.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Ix2, IxDyn, NdFloat};
use rand::Rng;

use crate::init::{Init, randn};
use crate::layer::{Layer, Param};

/// The affine (fully connected) layer: `out = x · W + b`.
///
/// The input may have any rank >= 2: it is read as a batch of `N` samples, each flattened to the
/// `W.nrows()` features (the book's tensor-capable Affine, which reshapes `N x 1 x 28 x 28` images to
/// `N x 784`). `dx` comes back in the input's original shape.
///
/// Backward (for the flattened input):
/// `dx = dout · Wᵀ`, `dW = xᵀ · dout`, `db = Σ_rows dout`.
///
/// # Shapes
///
/// `W`: (in, out); `b`: (out); `x`: (N, d1, d2, ...) with `d1·d2·... = in`; output and `dout`:
/// (N, out); `dx`: shaped like `x`.
///
/// # Parameters
///
/// Visited in the order `"W"`, `"b"`.
///
/// # Example: the bias gradient sums `dout` over the batch
///
/// ```
/// use bp_core::{Affine, Layer};
/// use ndarray::{Array1, Array2, array};
///
/// let mut affine = Affine::<f64>::new(Array2::zeros((2, 3)), Array1::zeros(3));
/// affine.forward(Array2::zeros((2, 2)).into_dyn());
/// affine.backward(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
/// assert_eq!(affine.db(), &array![5.0, 7.0, 9.0]);
/// ```
#[derive(Clone, Debug)]
pub struct Affine<A> {
    w: Array2<A>,
    b: Array1<A>,
    dw: Array2<A>,
    db: Array1<A>,
    /// The last training input, flattened to (N, in); `None` until a forward, and after a backward.
    x: Option<Array2<A>>,
    /// The last training input's original shape.
    x_shape: IxDyn,
    /// Storage recycled from the last `dout`, reused for the next output so training allocates
    /// nothing once shapes are steady.
    spare: Option<Array2<A>>,
}

impl<A: NdFloat> Affine<A> {
    /// An affine layer with the given weights `W` (in, out) and bias `b` (out). Gradients start at zero.
    ///
    /// # Panics
    ///
    /// If `b.len() != W.ncols()`.
    #[track_caller]
    pub fn new(w: Array2<A>, b: Array1<A>) -> Self {
        assert_eq!(
            b.len(),
            w.ncols(),
            "Affine::new: b has shape {:?} but W has shape {:?}; b needs W.ncols() entries",
            b.shape(),
            w.shape()
        );
        Affine {
            dw: Array2::zeros(w.raw_dim()),
            db: Array1::zeros(b.raw_dim()),
            w,
            b,
            x: None,
            x_shape: IxDyn(&[]),
            spare: None,
        }
    }

    /// An affine layer from `input` to `output` features with weights drawn from `init` (normal, zero
    /// mean) using `rng`, and zero bias, as the book's `weight_init_std * np.random.randn(input, output)`.
    ///
    /// ```
    /// use bp_core::{Affine, Init};
    /// use rand::SeedableRng;
    /// use rand_xoshiro::Xoshiro256PlusPlus;
    ///
    /// let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    /// let affine = Affine::<f32>::random(784, 50, Init::Std(0.01), &mut rng);
    /// assert_eq!(affine.w().dim(), (784, 50));
    /// assert!(affine.w().iter().all(|w| w.abs() < 0.06)); // 6 standard deviations
    /// assert!(affine.b().iter().all(|&b| b == 0.0));
    /// ```
    pub fn random<R: Rng + ?Sized>(input: usize, output: usize, init: Init, rng: &mut R) -> Self {
        let w = randn((input, output), init.std_dev(input), rng);
        Affine::new(w, Array1::zeros(output))
    }

    /// The weights `W`, shape (in, out).
    pub fn w(&self) -> &Array2<A> {
        &self.w
    }

    /// The bias `b`, shape (out).
    pub fn b(&self) -> &Array1<A> {
        &self.b
    }

    /// The gradient `dW` written by the last backward pass, shape (in, out).
    pub fn dw(&self) -> &Array2<A> {
        &self.dw
    }

    /// The gradient `db` written by the last backward pass, shape (out).
    pub fn db(&self) -> &Array1<A> {
        &self.db
    }

    /// The number of input features, `W.nrows()`.
    pub fn input_size(&self) -> usize {
        self.w.nrows()
    }

    /// The number of output features, `W.ncols()`.
    pub fn output_size(&self) -> usize {
        self.w.ncols()
    }

    /// Reads `x` as (N, in), checking the feature count. Copies only if `x` is not contiguous.
    #[track_caller]
    fn flatten(&self, x: ArrayD<A>) -> Array2<A> {
        let shape = x.shape();
        assert!(
            shape.len() >= 2 && shape[1..].iter().product::<usize>() == self.w.nrows(),
            "Affine: input of shape {shape:?} does not flatten to (N, {}) for W of shape {:?}",
            self.w.nrows(),
            self.w.shape()
        );
        let n = shape[0];
        x.into_shape_clone((n, self.w.nrows()))
            .expect("the element count was checked")
    }

    /// Takes the cached input and checks `dout`, then writes `dW` and `db`.
    #[track_caller]
    fn param_grads(&mut self, dout: ArrayD<A>) -> (Array2<A>, Array2<A>) {
        let x = self
            .x
            .take()
            .expect("Affine::backward called without a preceding forward");
        let expected = [x.nrows(), self.w.ncols()];
        assert!(
            dout.shape() == expected,
            "Affine::backward: dout has shape {:?}, but the last output had shape {expected:?}",
            dout.shape()
        );
        let dout = dout
            .into_dimensionality::<Ix2>()
            .expect("the rank was checked");
        general_mat_mul(A::one(), &x.t(), &dout, A::zero(), &mut self.dw);
        self.db.fill(A::zero());
        for row in dout.rows() {
            self.db += &row;
        }
        (dout, x)
    }

    /// Keeps `dout`'s storage for the next forward's output.
    fn recycle(&mut self, dout: Array2<A>) {
        if dout.is_standard_layout() {
            self.spare = Some(dout);
        }
    }
}

impl<A: NdFloat> Layer<A> for Affine<A> {
    fn name(&self) -> &'static str {
        "Affine"
    }

    #[track_caller]
    fn forward(&mut self, x: ArrayD<A>) -> ArrayD<A> {
        self.x_shape = x.raw_dim();
        let x = self.flatten(x);
        let dim = (x.nrows(), self.w.ncols());
        let mut out = match self.spare.take() {
            Some(buf) if buf.dim() == dim => buf,
            _ => Array2::zeros(dim),
        };
        general_mat_mul(A::one(), &x, &self.w, A::zero(), &mut out);
        out += &self.b;
        self.x = Some(x);
        out.into_dyn()
    }

    #[track_caller]
    fn backward(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        let (dout, mut dx) = self.param_grads(dout);
        // The cached input is no longer needed: its storage receives dx, which has its shape.
        general_mat_mul(A::one(), &dout, &self.w.t(), A::zero(), &mut dx);
        self.recycle(dout);
        dx.into_shape_with_order(self.x_shape.clone())
            .expect("dx has the input's element count")
    }

    #[track_caller]
    fn backward_params(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        let (dout, x) = self.param_grads(dout);
        self.recycle(dout);
        x.into_shape_with_order(self.x_shape.clone())
            .expect("x has the input's element count")
    }

    #[track_caller]
    fn predict(&self, x: ArrayD<A>) -> ArrayD<A> {
        let x = self.flatten(x);
        let mut out = x.dot(&self.w);
        out += &self.b;
        out.into_dyn()
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, A>)) {
        f(Param {
            name: "W",
            value: self.w.view_mut().into_dyn(),
            grad: self.dw.view().into_dyn(),
        });
        f(Param {
            name: "b",
            value: self.b.view_mut().into_dyn(),
            grad: self.db.view().into_dyn(),
        });
    }

    fn visit_params_ref(&self, f: &mut dyn FnMut(&'static str, ArrayViewD<'_, A>)) {
        f("W", self.w.view().into_dyn());
        f("b", self.b.view().into_dyn());
    }
}
