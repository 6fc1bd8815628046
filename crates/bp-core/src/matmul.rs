//! The one seam through which layers compute their matrix products, `C = A · B`.
//!
//! [`Products::matmul_into`] takes views of `A` and `B` (either may be a transposed view,
//! `x.t()`) and writes `C` into the caller's buffer. Behind it:
//!
//! - bp-core's own kernels (`gemm`: AVX2/FMA, AVX-512, or portable Rust on other CPUs and under
//!   `BP_NO_SIMD=1`) up to [`Kernels::max_fmas`] multiply-adds: they pack nothing and allocate
//!   nothing once the layer's scratch buffers have grown, and they win at the training step's
//!   shapes;
//! - the `gemm` crate above that, whose packed, cache-blocked kernels win once the operands
//!   outgrow the caches.
//!
//! A large product is cut into parts that run at once on the pool of [`threads`](crate::threads)
//! threads. bp-core's kernels compute each element with the same operations whatever the block,
//! so their products are cut by rows into as many parts as there are threads, as long as each
//! part has at least [`MIN_PART_FMAS`] multiply-adds. The `gemm` crate's blocking of the shared
//! dimension depends on the block's size, so its products are cut into parts fixed by the
//! product's shape alone (about [`GEMM_PART_FMAS`] multiply-adds each), whatever the number of
//! threads; each part is one call with the crate's own threads off. Either way the result is the
//! same, bit for bit, on 1 thread or 16.

use std::ops::Range;
use std::sync::{Mutex, PoisonError, TryLockError};

use ndarray::{ArrayView2, ArrayViewMut2, Axis, NdFloat, Slice};

use crate::gemm::{self, Kernels};
use crate::parallel::{install_on, threads};

/// The fewest multiply-adds in a part of a product cut for bp-core's kernels: about 5 µs of one
/// core's work, several times what rayon takes to hand a part to another thread. The book's
/// `x · W1` (3.9 million) goes to up to 7 threads, the wide net's (63 million) to all of a
/// 16-core machine's.
pub const MIN_PART_FMAS: usize = 1 << 19;

/// The fewest rows in a part of a product cut for bp-core's kernels by rows.
const MIN_PART_ROWS: usize = 8;

/// The columns of a part of a product cut for bp-core's kernels by columns: a multiple of the
/// kernels' groups of 16 columns (see `gemm`), so that no part has a tail of its own.
const PART_COLUMNS: usize = 16;

/// The multiply-adds of a part of a product the `gemm` crate computes (the parts of one product
/// are as equal as its rows or columns allow): large enough that the crate's packing pays, small
/// enough that a product of 2²⁵ multiply-adds (the wide net's gives 30) has a part for each of 16
/// threads.
pub const GEMM_PART_FMAS: usize = 1 << 21;

/// The most parts a product the `gemm` crate computes is cut into.
const MAX_GEMM_PARTS: usize = 64;

/// The fewest rows (or columns) of a part cut for the `gemm` crate.
const MIN_GEMM_PART: usize = 16;

/// Which code computes a product, for comparisons (see [`Products::matmul_into_by`]); the seam
/// itself chooses by the product's size (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// bp-core's kernels: AVX2/FMA or AVX-512 where the CPU has them (and `BP_NO_SIMD` is not
    /// `1`), else portable Rust.
    Kernels,
    /// The `gemm` crate, its own threads off.
    Gemm,
}

/// `A · Bᵀ` products (`B` stored transposed) of more multiply-adds than this, with a shared
/// dimension shorter than [`MIN_KERNEL_DOT_K`], go to the `gemm` crate even where bp-core's AVX2 or
/// AVX-512 kernels would take them: those kernels compute each element as a dot product summed
/// across a vector at the end, which costs most when the shared dimension is short, as in a
/// convolution's `dcol = dout · Wᵀ` in the book's layout (`4900 x 64 · 64 x 576`: 12.5 ms against
/// the crate's 6.2 ms; docs/performance.md, "Matrix products"). The dense nets' `dout · Wᵀ`
/// (`100 x 10 · 10 x 800`, 0.8 million) stay in the kernels, which win there.
const MAX_KERNEL_DOT_FMAS: usize = 1 << 22;

/// The shortest shared dimension of an `A · Bᵀ` product that bp-core's kernels take whatever its
/// size: a convolution's `dW = dout · colᵀ` sums over a part's output positions (320 to 3,920 in
/// DeepConvNet), where the kernels' dot products beat the crate, which packs both operands on each
/// call (docs/performance.md, "Convolutional networks").
const MIN_KERNEL_DOT_K: usize = 256;

/// Which code computes an `m x k · k x n` product with `kernels` available, `B` stored transposed
/// if `b_t`.
fn backend(kernels: Kernels, m: usize, k: usize, n: usize, b_t: bool) -> Backend {
    let fmas = m.saturating_mul(k).saturating_mul(n);
    let dot = b_t && kernels != Kernels::Portable;
    if fmas > kernels.max_fmas() || (dot && fmas > MAX_KERNEL_DOT_FMAS && k < MIN_KERNEL_DOT_K) {
        Backend::Gemm
    } else {
        Backend::Kernels
    }
}

/// A layer's matrix products, with the scratch buffers bp-core's kernels reuse (one for each part
/// a product is cut into, all sized on the calling thread before any part runs, so that no thread
/// of the pool allocates). Cloning gives empty buffers.
///
/// ```
/// use bp_core::Products;
/// use ndarray::{Array2, array};
///
/// let products = Products::<f64>::new();
/// let x = array![[1.0, 2.0], [3.0, 4.0]];
/// let w = array![[5.0, 6.0], [7.0, 8.0]];
/// let mut out = Array2::zeros((2, 2));
/// products.matmul_into(x.view(), w.view(), out.view_mut());
/// assert_eq!(out, array![[19.0, 22.0], [43.0, 50.0]]);
/// // xᵀ · w, with a transposed view.
/// products.matmul_into(x.t(), w.view(), out.view_mut());
/// assert_eq!(out, array![[26.0, 30.0], [38.0, 44.0]]);
/// ```
#[derive(Debug, Default)]
pub struct Products<A> {
    parts: Mutex<Vec<PartBuffers<A>>>,
}

/// What one part of a product cut for bp-core's kernels writes to besides `C`.
#[derive(Debug)]
struct PartBuffers<A> {
    /// The kernels' copies (see `gemm::reserve_scratch`).
    scratch: Vec<A>,
    /// The part's columns of `C` when it is cut by columns (they are not contiguous in `C`),
    /// copied into place once computed.
    out: Vec<A>,
}

impl<A> Default for PartBuffers<A> {
    fn default() -> Self {
        PartBuffers {
            scratch: Vec::new(),
            out: Vec::new(),
        }
    }
}

impl<A> Products<A> {
    /// Products with empty buffers, which grow with the first product of each shape.
    pub fn new() -> Self {
        Products {
            parts: Mutex::new(Vec::new()),
        }
    }
}

impl<A> Clone for Products<A> {
    fn clone(&self) -> Self {
        Products::new()
    }
}

impl<A: NdFloat> Products<A> {
    /// `c = a · b`, shared over the pool's threads if the product is large enough (see the
    /// module's documentation). `a` and `b` are any views (`x.t()` for a transposed operand);
    /// bp-core's kernels read operands stored row-major or transposed from it and write a `c`
    /// whose rows are contiguous without packing, other layouts take slower code. The result does
    /// not depend on the number of threads.
    ///
    /// # Panics
    ///
    /// If the shapes do not fit: `a` is `m x k`, `b` `k x n`, `c` `m x n`.
    #[track_caller]
    pub fn matmul_into(&self, a: ArrayView2<'_, A>, b: ArrayView2<'_, A>, c: ArrayViewMut2<'_, A>) {
        self.matmul_into_on(threads(), a, b, c);
    }

    /// `c = a · b` computed by `backend` alone, on the calling thread and uncut: for comparing the
    /// kernels at a shape (`cargo bench -p bp-core`).
    ///
    /// # Panics
    ///
    /// As [`Products::matmul_into`].
    #[track_caller]
    pub fn matmul_into_by(
        &self,
        backend: Backend,
        a: ArrayView2<'_, A>,
        b: ArrayView2<'_, A>,
        mut c: ArrayViewMut2<'_, A>,
    ) {
        check(a, b, &c);
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        if parts.is_empty() {
            parts.push(PartBuffers::default());
        }
        let scratch = &mut parts[0].scratch;
        gemm::reserve_scratch(scratch, a, b);
        let (m, n) = c.dim();
        match backend {
            Backend::Kernels => gemm::product(
                Kernels::detect(),
                a,
                b,
                0..m,
                0..n,
                c.view_mut(),
                (0, 0),
                scratch,
            ),
            Backend::Gemm => by_gemm(a, b, c),
        }
    }

    /// `c = a · b` on the calling thread, uncut: for work already shared over the threads in
    /// parts of its own (a convolution's parts of the batch), where cutting each part's product
    /// again would only copy the columns of its output into place.
    ///
    /// # Panics
    ///
    /// As [`Products::matmul_into`].
    #[track_caller]
    pub(crate) fn matmul_into_alone(
        &self,
        a: ArrayView2<'_, A>,
        b: ArrayView2<'_, A>,
        c: ArrayViewMut2<'_, A>,
    ) {
        self.matmul_into_on(1, a, b, c);
    }

    /// [`Products::matmul_into`] shared over `threads` threads.
    #[track_caller]
    pub(crate) fn matmul_into_on(
        &self,
        threads: usize,
        a: ArrayView2<'_, A>,
        b: ArrayView2<'_, A>,
        c: ArrayViewMut2<'_, A>,
    ) {
        check(a, b, &c);
        let (m, k) = a.dim();
        let n = b.ncols();
        let b_t = b.strides()[0] == 1 && b.nrows() > 1 && b.ncols() > 1;
        let plan = Plan::new(Kernels::detect(), threads, (m, k, n), b_t);
        let mut guard = match self.parts.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another thread is in one of this layer's products (concurrent `predict`s): compute
            // with scratch buffers of its own.
            Err(TryLockError::WouldBlock) => {
                let mut own = Vec::new();
                return plan.run_all(threads, a, b, c, &mut own);
            }
        };
        plan.run_all(threads, a, b, c, &mut guard);
    }
}

/// Panics unless `a · b` fits `c`.
#[track_caller]
fn check<A>(a: ArrayView2<'_, A>, b: ArrayView2<'_, A>, c: &ArrayViewMut2<'_, A>) {
    assert!(
        a.ncols() == b.nrows() && c.dim() == (a.nrows(), b.ncols()),
        "matrix product of {:?} and {:?} into an output of shape {:?}",
        a.shape(),
        b.shape(),
        c.shape()
    );
}

/// How a product is computed and cut.
#[derive(Clone, Copy, Debug)]
struct Plan {
    backend: Backend,
    kernels: Kernels,
    /// Cut along the rows (0) or the columns (1) of `C`, which are `len` long.
    axis: Axis,
    len: usize,
    parts: usize,
}

impl Plan {
    /// How `kernels` and the `gemm` crate compute an `m x k · k x n` product on `threads` threads
    /// (`B` stored transposed if `b_t`).
    fn new(kernels: Kernels, threads: usize, (m, k, n): (usize, usize, usize), b_t: bool) -> Self {
        let fmas = m.saturating_mul(k).saturating_mul(n);
        match backend(kernels, m, k, n, b_t) {
            // By rows unless `C` is more than twice as wide as tall: a cut by rows copies
            // nothing, but each thread then reads all of `B`. The wide net's `dW1` (784 x 800) is
            // cut by rows, its `x · W1` (100 x 800) by columns.
            Backend::Kernels => {
                let (axis, len, least) = if n > 2 * m {
                    (Axis(1), n, PART_COLUMNS)
                } else {
                    (Axis(0), m, MIN_PART_ROWS)
                };
                Plan {
                    backend: Backend::Kernels,
                    kernels,
                    axis,
                    len,
                    parts: threads.min(fmas / MIN_PART_FMAS).min(len / least).max(1),
                }
            }
            Backend::Gemm => {
                let (axis, len) = if m >= n { (Axis(0), m) } else { (Axis(1), n) };
                Plan {
                    backend: Backend::Gemm,
                    kernels,
                    axis,
                    len,
                    parts: (fmas / GEMM_PART_FMAS)
                        .min(MAX_GEMM_PARTS)
                        .min(len / MIN_GEMM_PART)
                        .max(1),
                }
            }
        }
    }

    /// Where part `i` starts along the cut axis (`bound(parts)` is its end): at a multiple of
    /// [`PART_COLUMNS`] in a cut of the kernels' by columns.
    fn bound(&self, i: usize) -> usize {
        let at = i * self.len / self.parts;
        if i == self.parts || self.backend == Backend::Gemm || self.axis == Axis(0) {
            at
        } else {
            at / PART_COLUMNS * PART_COLUMNS
        }
    }

    /// Computes every part, sharing them over `threads` threads, with a scratch buffer for each
    /// (grown here, on the calling thread, if `scratch` has too few or too small ones).
    fn run_all<A: NdFloat>(
        &self,
        threads: usize,
        a: ArrayView2<'_, A>,
        b: ArrayView2<'_, A>,
        c: ArrayViewMut2<'_, A>,
        scratch: &mut Vec<PartBuffers<A>>,
    ) {
        let buffers = if self.backend == Backend::Kernels {
            self.parts
        } else {
            0
        };
        if scratch.len() < buffers {
            scratch.resize_with(buffers, PartBuffers::default);
        }
        let widest = (0..self.parts)
            .map(|i| self.bound(i + 1) - self.bound(i))
            .max()
            .unwrap_or(0);
        for part in &mut scratch[..buffers] {
            gemm::reserve_scratch(&mut part.scratch, a, b);
            if self.axis == Axis(1) && self.parts > 1 {
                part.out.reserve(a.nrows() * widest);
            }
        }
        let scratch = &mut scratch[..buffers];
        if self.parts == 1 || threads <= 1 {
            return self.run(1, a, b, c, 0..self.parts, scratch);
        }
        install_on(threads, || {
            self.run(threads, a, b, c, 0..self.parts, scratch)
        });
    }

    /// Computes parts `parts` into `c` (which holds them), halving the range and running the
    /// halves with `rayon::join` if `threads` is more than 1.
    fn run<A: NdFloat>(
        &self,
        threads: usize,
        a: ArrayView2<'_, A>,
        b: ArrayView2<'_, A>,
        c: ArrayViewMut2<'_, A>,
        parts: Range<usize>,
        scratch: &mut [PartBuffers<A>],
    ) {
        if parts.len() == 1 {
            let i = parts.start;
            return self.part(
                a,
                b,
                c,
                self.bound(i)..self.bound(i + 1),
                scratch.first_mut(),
            );
        }
        let mid = parts.start + parts.len() / 2;
        let (first, second) = c.split_at(self.axis, self.bound(mid) - self.bound(parts.start));
        let (s1, s2) = scratch.split_at_mut((mid - parts.start).min(scratch.len()));
        if threads > 1 {
            rayon::join(
                || self.run(threads, a, b, first, parts.start..mid, s1),
                || self.run(threads, a, b, second, mid..parts.end, s2),
            );
        } else {
            self.run(threads, a, b, first, parts.start..mid, s1);
            self.run(threads, a, b, second, mid..parts.end, s2);
        }
    }

    /// Computes the part `range` (of the rows or columns of `C`) into `c`, which is that part.
    fn part<A: NdFloat>(
        &self,
        a: ArrayView2<'_, A>,
        b: ArrayView2<'_, A>,
        c: ArrayViewMut2<'_, A>,
        range: Range<usize>,
        buffers: Option<&mut PartBuffers<A>>,
    ) {
        match (self.backend, buffers) {
            (Backend::Kernels, Some(part)) if self.axis == Axis(0) || self.parts == 1 => {
                let (rows, cols) = if self.axis == Axis(0) {
                    (range, 0..b.ncols())
                } else {
                    (0..a.nrows(), range)
                };
                gemm::product(self.kernels, a, b, rows, cols, c, (0, 0), &mut part.scratch);
            }
            (Backend::Kernels, Some(part)) => {
                // Columns of `C`, through the part's own buffer, which `run_all` has reserved.
                let dim = (a.nrows(), range.len());
                part.out.clear();
                part.out.resize(dim.0 * dim.1, A::zero());
                let out = ArrayViewMut2::from_shape(dim, &mut part.out[..])
                    .expect("the buffer holds the part");
                gemm::product(
                    self.kernels,
                    a,
                    b,
                    0..dim.0,
                    range,
                    out,
                    (0, 0),
                    &mut part.scratch,
                );
                let out =
                    ArrayView2::from_shape(dim, &part.out[..]).expect("the buffer holds the part");
                let mut c = c;
                c.assign(&out);
            }
            (Backend::Kernels, None) => unreachable!("every part of the kernels has a scratch"),
            (Backend::Gemm, _) => {
                if self.axis == Axis(0) {
                    by_gemm(a.slice_axis(Axis(0), Slice::from(range)), b, c);
                } else {
                    by_gemm(a, b.slice_axis(Axis(1), Slice::from(range)), c);
                }
            }
        }
    }
}

/// `c = a · b` by the `gemm` crate, on the calling thread.
fn by_gemm<A: NdFloat>(a: ArrayView2<'_, A>, b: ArrayView2<'_, A>, mut c: ArrayViewMut2<'_, A>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    debug_assert!(b.nrows() == k && c.dim() == (m, n));
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(A::zero());
        return;
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    let dst = c.as_mut_ptr();
    #[allow(unsafe_code)]
    // SAFETY: the pointers and strides are those of views of `m x k`, `k x n` and `m x n`
    // elements (checked above), so every element the crate reads or writes is in them; `c` is
    // borrowed mutably, so nothing else reads what it writes; `read_dst` is false, so `c`'s
    // old values are never read. `A` is `f32` or `f64` (`NdFloat`), which the crate computes.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst,
            c_cs,
            c_rs,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            A::zero(),
            A::one(),
            false,
            false,
            false,
            ::gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::randn;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// `m`, or its transpose.
    fn op<A>(m: &Array2<A>, t: bool) -> ArrayView2<'_, A> {
        if t { m.t() } else { m.view() }
    }

    /// Products through the seam give the same bits on 1, 2, 3 and 4 threads, in bp-core's
    /// kernels (the book's and odd shapes, both cut) and in the `gemm` crate (the wide net's and
    /// larger, cut by rows and by columns), with transposed operands, again and again with the
    /// same buffers; and each is close to the definition.
    fn same_bits_on_any_threads<A: NdFloat>(tolerance: f64) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let products = Products::<A>::new();
        // (m, k, n, a transposed, b transposed)
        for (m, k, n, a_t, b_t) in [
            (100, 784, 50, false, false),
            (784, 100, 50, true, false),
            (100, 50, 784, false, true),
            (37, 2000, 130, false, true),
            (300, 64, 50, true, false),
            (4, 5, 6, false, false),
            (100, 784, 800, false, false),
            (784, 100, 800, true, false),
            (1000, 300, 300, false, false),
            (60, 700, 1700, false, true),
            (4900, 288, 64, false, false),
        ] {
            let a = randn::<A, _, _>(if a_t { (k, m) } else { (m, k) }, 1.0, &mut rng);
            let b = randn::<A, _, _>(if b_t { (n, k) } else { (k, n) }, 1.0, &mut rng);
            let (a, b) = (op(&a, a_t), op(&b, b_t));
            let mut expected = Array2::from_elem((m, n), A::nan());
            products.matmul_into_on(1, a, b, expected.view_mut());
            for _ in 0..2 {
                for threads in [2, 3, 4] {
                    let mut c = Array2::from_elem((m, n), A::nan());
                    products.matmul_into_on(threads, a, b, c.view_mut());
                    assert!(c == expected, "{m}x{k}x{n} on {threads} threads");
                }
            }
            for i in [0, m / 2, m - 1] {
                for j in [0, n / 3, n - 1] {
                    let e: f64 = (0..k)
                        .map(|p| a[[i, p]].to_f64().unwrap() * b[[p, j]].to_f64().unwrap())
                        .sum();
                    let v = expected[[i, j]].to_f64().unwrap();
                    assert!(
                        (v - e).abs() <= tolerance * (1.0 + e.abs()),
                        "{m}x{k}x{n} at ({i}, {j}): {v} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn products_have_the_same_bits_on_any_threads_f32() {
        same_bits_on_any_threads::<f32>(1e-4);
    }

    #[test]
    fn products_have_the_same_bits_on_any_threads_f64() {
        same_bits_on_any_threads::<f64>(1e-12);
    }

    /// Hand-computed, by both backends, with every layout of the operands and a strided output.
    /// `A · Bᵀ` goes to the crate only when it is large and its shared dimension short: a
    /// convolution's `dW` (shared dimension 980) stays in the kernels, the book layout's
    /// `dout · Wᵀ` (64) does not; both are above 2²² multiply-adds.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn long_dot_products_stay_in_the_kernels() {
        for kernels in [Kernels::Avx2, Kernels::Avx512] {
            assert_eq!(backend(kernels, 32, 980, 144, true), Backend::Kernels);
            assert_eq!(backend(kernels, 4900, 64, 576, true), Backend::Gemm);
            assert_eq!(backend(kernels, 100, 10, 800, true), Backend::Kernels);
        }
    }

    #[test]
    fn a_two_by_two_product_by_each_backend() {
        let a = ndarray::array![[1.0, 2.0], [3.0, 4.0]];
        let b = ndarray::array![[5.0, 6.0], [7.0, 8.0]];
        let (at, bt) = (a.t().to_owned(), b.t().to_owned());
        let expected = ndarray::array![[19.0, 22.0], [43.0, 50.0]];
        let products = Products::<f64>::new();
        for backend in [Backend::Kernels, Backend::Gemm] {
            for (x, y) in [
                (a.view(), b.view()),
                (at.t(), b.view()),
                (a.view(), bt.t()),
                (at.t(), bt.t()),
            ] {
                let mut out = Array2::zeros((2, 2));
                products.matmul_into_by(backend, x, y, out.view_mut());
                assert_eq!(out, expected, "{backend:?}");
                let mut wide = Array2::from_elem((2, 4), 9.0);
                products.matmul_into_by(backend, x, y, wide.slice_mut(ndarray::s![.., ..;2]));
                assert_eq!(
                    wide,
                    ndarray::array![[19.0, 9.0, 22.0, 9.0], [43.0, 9.0, 50.0, 9.0]]
                );
            }
        }
    }

    /// The cuts: for the kernels, one part per thread while each has its share of work (none
    /// below two parts' worth); for `gemm`, by shape alone.
    #[test]
    fn products_are_cut_by_size() {
        let parts = |threads, shape| {
            let plan = Plan::new(Kernels::Portable, threads, shape, false);
            (plan.backend, plan.axis.index(), plan.parts)
        };
        let book = (100, 784, 50);
        assert_eq!(parts(1, book), (Backend::Kernels, 0, 1));
        assert_eq!(parts(2, book), (Backend::Kernels, 0, 2));
        assert_eq!(parts(16, book), (Backend::Kernels, 0, 7));
        assert_eq!(parts(16, (100, 50, 10)), (Backend::Kernels, 0, 1));
        // The wide net's `x · W1`: 63 million multiply-adds, 30 columns of parts.
        let wide = (100, 784, 800);
        assert_eq!(parts(1, wide), (Backend::Gemm, 1, 29));
        assert_eq!(parts(16, wide), parts(1, wide));
        assert_eq!(
            parts(4, (4900, 576, 64)),
            (Backend::Gemm, 0, MAX_GEMM_PARTS)
        );
        // A convolution's `dout · Wᵀ` goes to `gemm` where the vector kernels would take it.
        #[cfg(target_arch = "x86_64")]
        for kernels in [Kernels::Avx2, Kernels::Avx512] {
            let plan = Plan::new(kernels, 2, (4900, 64, 576), true);
            assert_eq!((plan.backend, plan.parts), (Backend::Gemm, MAX_GEMM_PARTS));
            let plan = Plan::new(kernels, 2, (100, 10, 800), true);
            assert_eq!((plan.backend, plan.parts), (Backend::Kernels, 1));
            // The book's `x · W1` by rows, a product more than twice as wide as tall by columns.
            let plan = Plan::new(kernels, 2, (100, 784, 50), false);
            assert_eq!((plan.axis.index(), plan.parts), (0, 2));
            let plan = Plan::new(kernels, 4, (40, 784, 200), false);
            assert_eq!((plan.axis.index(), plan.parts, plan.bound(1)), (1, 4, 48));
        }
    }
}
