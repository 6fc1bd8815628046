//! The fully connected layer.

use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Ix2, IxDyn, NdFloat};
use rand::Rng;

use crate::init::{Init, randn};
use crate::layer::{Layer, Param, ParamKind, load_into};
use crate::matmul::Products;

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
/// # Threads
///
/// The products go through [`Products::matmul_into`], which shares a large one (about a million
/// multiply-adds or more, such as `x · W` for a batch of 100 MNIST images and 50 hidden units) over
/// bp-core's thread pool (see [`set_threads`](crate::set_threads)). Each output element is
/// computed by one thread with the same operations whatever the number of threads, so results are
/// identical, bit for bit, on any number of threads.
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
    /// The last training input, flattened to (N, in); meaningful only while `has_x`.
    x: Array2<A>,
    has_x: bool,
    /// The last training input's original shape.
    x_shape: IxDyn,
    /// Storage recycled from the last `dout`, reused for the next output so training allocates
    /// nothing once shapes are steady.
    spare: Option<Array2<A>>,
    products: Products<A>,
}

/// An array of no elements, which owns no allocation.
fn empty<A>() -> Array2<A> {
    Array2::from_shape_vec((0, 0), Vec::new()).expect("0 x 0 holds 0 elements")
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
            x: empty(),
            has_x: false,
            x_shape: IxDyn(&[]),
            spare: None,
            products: Products::new(),
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

    /// Checks `dout` against the cached input, then writes `dW` and `db`, and hands `dout` back as
    /// (N, out). Afterwards `self.x` still holds the input.
    #[track_caller]
    fn param_grads(&mut self, dout: ArrayD<A>) -> Array2<A> {
        assert!(
            self.has_x,
            "Affine::backward called without a preceding forward"
        );
        self.has_x = false;
        let expected = [self.x.nrows(), self.w.ncols()];
        assert!(
            dout.shape() == expected,
            "Affine::backward: dout has shape {:?}, but the last output had shape {expected:?}",
            dout.shape()
        );
        let dout = dout
            .into_dimensionality::<Ix2>()
            .expect("the rank was checked");
        self.products
            .matmul_into(self.x.t(), dout.view(), self.dw.view_mut());
        self.db.fill(A::zero());
        for row in dout.rows() {
            self.db += &row;
        }
        dout
    }

    /// Keeps `dout`'s storage for the next forward's output.
    fn recycle(&mut self, dout: Array2<A>) {
        if dout.is_standard_layout() {
            self.spare = Some(dout);
        }
    }

    /// Takes the cached input's storage back, reshaped to the input's original shape.
    fn take_x(&mut self) -> Array2<A> {
        std::mem::replace(&mut self.x, empty())
    }
}

impl<A: NdFloat> Layer<A> for Affine<A> {
    fn name(&self) -> &'static str {
        "Affine"
    }

    #[track_caller]
    fn forward(&mut self, x: ArrayD<A>) -> ArrayD<A> {
        let x_shape = x.raw_dim();
        let x = self.flatten(x);
        self.x_shape = x_shape;
        let dim = (x.nrows(), self.w.ncols());
        let mut out = match self.spare.take() {
            Some(buf) if buf.dim() == dim => buf,
            _ => Array2::zeros(dim),
        };
        self.x = x;
        self.has_x = true;
        self.products
            .matmul_into(self.x.view(), self.w.view(), out.view_mut());
        out += &self.b;
        out.into_dyn()
    }

    #[track_caller]
    fn backward(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        let dout = self.param_grads(dout);
        // The cached input is no longer needed: its storage receives dx, which has its shape.
        let mut dx = self.take_x();
        self.products
            .matmul_into(dout.view(), self.w.t(), dx.view_mut());
        self.recycle(dout);
        dx.into_shape_with_order(self.x_shape.clone())
            .expect("dx has the input's element count")
    }

    #[track_caller]
    fn backward_params(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        let dout = self.param_grads(dout);
        self.recycle(dout);
        self.take_x()
            .into_shape_with_order(self.x_shape.clone())
            .expect("x has the input's element count")
    }

    #[track_caller]
    fn predict(&self, x: ArrayD<A>) -> ArrayD<A> {
        let x = self.flatten(x);
        let mut out = Array2::zeros((x.nrows(), self.w.ncols()));
        self.products
            .matmul_into(x.view(), self.w.view(), out.view_mut());
        out += &self.b;
        out.into_dyn()
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, A>)) {
        f(Param {
            name: "W",
            kind: ParamKind::Weight,
            value: self.w.view_mut().into_dyn(),
            grad: self.dw.view_mut().into_dyn(),
        });
        f(Param {
            name: "b",
            kind: ParamKind::Bias,
            value: self.b.view_mut().into_dyn(),
            grad: self.db.view_mut().into_dyn(),
        });
    }

    fn visit_params_ref(&self, f: &mut dyn FnMut(&'static str, ArrayViewD<'_, A>)) {
        f("W", self.w.view().into_dyn());
        f("b", self.b.view().into_dyn());
    }

    /// PyTorch's `Linear`: `weight`, shape (out, in), the transpose of `W`; `bias`, shape (out).
    fn visit_tensors(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, A>)) {
        f("weight", self.w.t().into_dyn());
        f("bias", self.b.view().into_dyn());
    }

    #[track_caller]
    fn load_tensor(&mut self, name: &str, value: ArrayViewD<'_, A>) -> Result<(), String> {
        match name {
            "weight" => load_into(
                "Affine",
                name,
                self.w.view_mut().reversed_axes().into_dyn(),
                value,
            ),
            "bias" => load_into("Affine", name, self.b.view_mut().into_dyn(), value),
            _ => panic!("Affine::load_tensor: no tensor `{name}`; Affine has `weight` and `bias`"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, Dimension, array};

    fn cast<A: NdFloat, D: Dimension>(a: Array<f64, D>) -> Array<A, D> {
        a.mapv(crate::init::cast)
    }

    #[test]
    fn bias_gradient_sums_dout_over_the_batch() {
        let mut affine = Affine::<f64>::new(Array2::zeros((4, 3)), Array1::zeros(3));
        affine.forward(Array2::ones((2, 4)).into_dyn());
        affine.backward(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
        assert_eq!(affine.db(), &array![5.0, 7.0, 9.0]);
        affine.forward(Array2::ones((2, 4)).into_dyn());
        affine.backward(array![[1.0, 2.0, 3.0], [11.0, 12.0, 13.0]].into_dyn());
        assert_eq!(affine.db(), &array![12.0, 14.0, 16.0]);
    }

    /// x = [[1, 2], [3, 4]], W = [[1, 0, -1], [2, 1, 0]], b = [0.5, -0.5, 1], worked by hand:
    /// out = [[5.5, 1.5, 0], [11.5, 3.5, -2]]; for dout = [[1, 0, 2], [0, 1, -1]]:
    /// dW = xᵀ·dout = [[1, 3, -1], [2, 4, 0]], db = [1, 1, 1], dx = dout·Wᵀ = [[-1, 2], [1, 1]].
    fn hand_derived<A: NdFloat>() {
        let w = cast::<A, _>(array![[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]]);
        let b = cast::<A, _>(array![0.5, -0.5, 1.0]);
        let x = cast::<A, _>(array![[1.0, 2.0], [3.0, 4.0]]);
        let dout = cast::<A, _>(array![[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]);
        let mut affine = Affine::new(w, b);

        let expected_out = cast::<A, _>(array![[5.5, 1.5, 0.0], [11.5, 3.5, -2.0]]).into_dyn();
        assert_eq!(affine.predict(x.clone().into_dyn()), expected_out);
        assert_eq!(affine.forward(x.into_dyn()), expected_out);
        let dx = affine.backward(dout.into_dyn());
        assert_eq!(dx, cast::<A, _>(array![[-1.0, 2.0], [1.0, 1.0]]).into_dyn());
        assert_eq!(
            affine.dw(),
            cast::<A, _>(array![[1.0, 3.0, -1.0], [2.0, 4.0, 0.0]])
        );
        assert_eq!(affine.db(), cast::<A, _>(array![1.0, 1.0, 1.0]));
    }

    #[test]
    fn hand_derived_f32() {
        hand_derived::<f32>();
    }

    #[test]
    fn hand_derived_f64() {
        hand_derived::<f64>();
    }

    #[test]
    fn tensor_input_is_flattened_and_dx_keeps_its_shape() {
        let w = array![[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]];
        let mut affine = Affine::new(w, array![0.5, -0.5, 1.0]);
        let x = array![[1.0, 2.0], [3.0, 4.0]]
            .into_shape_with_order((2, 1, 1, 2))
            .unwrap()
            .into_dyn();
        let out = affine.forward(x);
        assert_eq!(out, array![[5.5, 1.5, 0.0], [11.5, 3.5, -2.0]].into_dyn());
        let dx = affine.backward(array![[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]].into_dyn());
        assert_eq!(dx.shape(), [2, 1, 1, 2]);
        assert_eq!(
            dx.iter().copied().collect::<Vec<_>>(),
            [-1.0, 2.0, 1.0, 1.0]
        );
    }

    #[test]
    fn non_contiguous_input_gives_the_same_result() {
        let w = array![[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]];
        let mut affine = Affine::new(w, array![0.5, -0.5, 1.0]);
        // The transpose of [[1, 3], [2, 4]] is [[1, 2], [3, 4]] in column-major layout.
        let x = array![[1.0, 3.0], [2.0, 4.0]].reversed_axes().into_dyn();
        assert!(!x.is_standard_layout());
        let out = affine.forward(x);
        assert_eq!(out, array![[5.5, 1.5, 0.0], [11.5, 3.5, -2.0]].into_dyn());
    }

    #[test]
    fn recycled_buffers_do_not_leak_into_the_next_step() {
        let mut affine = Affine::new(array![[1.0, 2.0], [3.0, 4.0]], array![1.0, -1.0]);
        for step in 0..3 {
            let s = f64::from(step);
            let out = affine.forward(array![[s, 1.0]].into_dyn());
            assert_eq!(out, array![[s + 3.0 + 1.0, 2.0 * s + 4.0 - 1.0]].into_dyn());
            // A large dout: its storage becomes the next output buffer.
            let dx = affine.backward(array![[100.0, 1000.0]].into_dyn());
            assert_eq!(dx, array![[2100.0, 4300.0]].into_dyn());
            assert_eq!(
                affine.dw(),
                array![[100.0 * s, 1000.0 * s], [100.0, 1000.0]]
            );
        }
    }

    #[test]
    fn backward_params_writes_the_same_gradients_and_returns_the_input_shape() {
        let w = array![[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]];
        let x = array![[1.0, 2.0], [3.0, 4.0]];
        let dout = array![[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]];
        let mut full = Affine::new(w.clone(), array![0.0, 0.0, 0.0]);
        let mut lean = full.clone();
        full.forward(x.clone().into_dyn());
        full.backward(dout.clone().into_dyn());
        lean.forward(x.into_dyn());
        let buf = lean.backward_params(dout.into_dyn());
        assert_eq!(buf.shape(), [2, 2]);
        assert_eq!(lean.dw(), full.dw());
        assert_eq!(lean.db(), full.db());
    }

    #[test]
    fn params_are_visited_w_then_b() {
        let mut affine = Affine::new(array![[1.0, 2.0]], array![3.0, 4.0]);
        let mut seen = Vec::new();
        affine.visit_params(&mut |p| seen.push((p.name, p.value.shape().to_vec())));
        assert_eq!(seen, [("W", vec![1, 2]), ("b", vec![2])]);
        let mut seen_ref = Vec::new();
        affine.visit_params_ref(&mut |name, v| seen_ref.push((name, v.shape().to_vec())));
        assert_eq!(seen_ref, seen);
        assert_eq!(Layer::<f64>::num_params(&affine), 4);
        let mut kinds = Vec::new();
        affine.visit_params(&mut |p| kinds.push(p.kind));
        assert_eq!(kinds, [ParamKind::Weight, ParamKind::Bias]);
    }

    #[test]
    fn tensors_are_pytorch_linear_and_load_back() {
        let affine = Affine::new(
            array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
            array![7.0, 8.0, 9.0],
        );
        let mut seen = Vec::new();
        affine.visit_tensors(&mut |name, v| seen.push((name.to_owned(), v.to_owned())));
        assert_eq!(seen[0].0, "weight");
        assert_eq!(
            seen[0].1,
            array![[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]].into_dyn()
        );
        assert_eq!(
            seen[1],
            ("bias".to_owned(), array![7.0, 8.0, 9.0].into_dyn())
        );
        let mut copy = Affine::<f64>::new(Array2::zeros((2, 3)), Array1::zeros(3));
        for (name, v) in &seen {
            copy.load_tensor(name, v.view()).unwrap();
        }
        assert_eq!(copy.w(), affine.w());
        assert_eq!(copy.b(), affine.b());
    }
}
