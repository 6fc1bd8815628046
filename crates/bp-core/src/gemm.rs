//! Matrix products for the layers, `C = op(A) · op(B)`, written into the caller's buffer without
//! packing either operand: once the caller's scratch buffer has grown, nothing is allocated.
//!
//! The products of a training step each have an operand whose rows run along the direction the
//! kernel walks, so neither operand needs packing:
//!
//! - `x · W` and `xᵀ · dout` (`B` as stored, the *broadcast* kernel): a tile of `C`, a few rows by
//!   a few vectors of columns, stays in registers while the shared index `p` runs; at each `p` one
//!   element of `A` per row is broadcast and multiplied into the row `B[p, j..]`.
//! - `dout · Wᵀ` (`B` transposed, the *dot* kernel): `A[i, ..]` and `Bᵀ[j, ..]` are both contiguous
//!   rows, and each element of `C` is their dot product, summed in 16 `f32` (8 `f64`) lanes and then
//!   across.
//!
//! Every element of `C` is computed by the same operations in the same order wherever its tile
//! lies, so a product cut into blocks (rows or columns, for several threads) equals the uncut product
//! bit for bit.
//!
//! The last columns of `x · W` that do not fill a group of 16 (`f64`: 8) columns (the 2 of the
//! book's 50) are copied out as rows and computed as dot products; those of `xᵀ · dout`, as the
//! transposed product, vectorised down the rows. A short `dout · Wᵀ` (the 10 classes) copies `Wᵀ`
//! out and takes the broadcast kernel. The copies go to a scratch buffer the caller keeps: one that
//! [`reserve_scratch`] has sized for the product is never grown, so a caller that reserves before
//! handing a product to another thread knows that thread will not allocate.
//!
//! A convolution at stride 1 does not unroll its images: its products read the padded images
//! themselves. [`ShiftedProduct`] is `A · B` whose row `p` of `B` starts at `offsets[p]` in one
//! slice (the rows overlap: they are runs of the same planes, shifted by one filter element), and
//! [`ShiftedDot`] is `A · Bᵀ` of runs at given starts, each cut into segments a step apart (one per
//! sample). They take the broadcast and dot kernels' tiles and sums, with columns and segments in
//! whole groups of 16, so that no tail is copied.
//!
//! The kernels use AVX2 and FMA intrinsics, on x86-64 CPUs that have them (checked at run time).
//! On CPUs that also have AVX-512 (F and VL), the broadcast kernel takes 512-bit vectors and 32
//! registers: tiles of 9 rows by three vectors (48 `f32` columns, 27 accumulators) instead of 4
//! rows by two 256-bit vectors, so that each row of `B` loaded serves 9 rows of `A`, and each
//! element of `A` broadcast, 48 columns; the dot kernel sums in one 512-bit vector what AVX2 sums in
//! two 256-bit ones, in tiles of 4 x 4 dot products instead of 2 x 2. The tail kernels are the same
//! 256-bit code in both. Both compute each element with the same operations in the same order:
//! every CPU with AVX2 and FMA gets the same bits from these kernels.
//!
//! Where the CPU lacks AVX2 and FMA (or the environment variable `BP_NO_SIMD` is `1`), the
//! portable kernel computes the products in plain Rust: no packing and no allocation either, each
//! element summed in order of the shared index. Which products come here at all, and which go to
//! the `gemm` crate instead, is decided by the seam (`matmul`).
//!
//! Most of the library crates' `unsafe` code is here: the calls into the kernels once the CPU has
//! been checked, the vector loads and stores into bounds-checked slices, and the operands and the
//! output seen as slices of the element type they hold (`cast_slice`, `cast_slice_mut`).

use std::any::{Any, TypeId};
use std::ops::Range;

use ndarray::{ArrayView2, ArrayViewMut2, Axis, NdFloat, Slice};

/// Products of more multiply-adds than this go to the `gemm` crate on CPUs with AVX2 but not
/// AVX-512, whose 4-row tiles lose to its packed, cache-blocked kernels at the wide net's
/// `100 x 784 · 784 x 800` (63 million multiply-adds; the limit is 8.4 million). Below it, the
/// book's `100 x 784 · 784 x 50` (3.9 million) and the gradient check's `3 x 784 · 784 x 50` stay
/// in these kernels, which allocate nothing. The measurements behind the limits are in
/// docs/performance.md ("Matrix products").
pub(crate) const MAX_KERNEL_FMAS: usize = 1 << 23;
/// [`MAX_KERNEL_FMAS`] on CPUs with AVX-512, whose kernels (tiles of 9 rows by 48 columns) beat
/// the `gemm` crate at every product measured that is not `A · Bᵀ`: the wide net's (63 million
/// multiply-adds), its evaluation in chunks of 1,000 rows (627 million), the convolutions' im2col
/// products (11 to 181 million) and `256 x 2048 · 2048 x 2048` (2³⁰; docs/performance.md,
/// "Which code computes which product"). Larger ones, not measured, go to the crate.
pub(crate) const MAX_AVX512_KERNEL_FMAS: usize = 1 << 30;

/// The columns of `B` go to the broadcast kernel in groups of 16 `f32` (two vectors of 8), the
/// rest to the tail kernels; the dot kernel takes shared dimensions of 32 `f32` (four vectors of
/// 8) or more. Those of the `f64` kernels are smaller. They bound the copies a product makes (see
/// [`reserve_scratch`]).
const MAX_GROUP: usize = 16;
const MAX_SHORT_DOT: usize = 32;

/// Makes `scratch` hold at least what [`product`] copies into it for `a · b`, whatever the
/// block: the last `n mod 16` columns of `B` for `A · B`, and with a shared dimension `k` shorter
/// than 32, all of `B` for `A · Bᵀ` (as stored). Allocates only if `scratch` is too small.
pub(crate) fn reserve_scratch<A>(scratch: &mut Vec<A>, a: ArrayView2<'_, A>, b: ArrayView2<'_, A>) {
    let (k, n) = b.dim();
    let (a_t, b_t) = (
        stored(a).is_some_and(|s| s.1),
        stored(b).is_some_and(|s| s.1),
    );
    let tail = n.min(MAX_GROUP - 1) * k;
    let len = match (a_t, b_t) {
        (false, false) => tail,
        (false, true) if k < MAX_SHORT_DOT => k * n + tail,
        _ => 0,
    };
    scratch.clear();
    scratch.reserve(len);
}

/// A matrix as the kernels read it: its elements in memory order, whether they hold its
/// transpose in row-major order, and the distance between stored rows. `None` unless the matrix
/// or its transpose is in standard layout.
fn stored<'a, A>(m: ArrayView2<'a, A>) -> Option<(&'a [A], bool, usize)> {
    if m.is_standard_layout() {
        let ld = m.ncols();
        return Some((m.to_slice()?, false, ld));
    }
    let t = m.reversed_axes();
    let ld = t.ncols();
    Some((t.to_slice()?, true, ld))
}

/// Which of bp-core's code computes the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernels {
    /// Plain Rust for any CPU and layout ([`portable`]): no packing, no allocation, each
    /// element summed in order of the shared index.
    Portable,
    /// bp-core's kernels for AVX2 and FMA, tiles of 4 rows.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The kernels compiled for AVX-512 (F and VL): the broadcast kernel takes 512-bit vectors,
    /// in tiles of 9 rows by three vectors (48 `f32` or 24 `f64` columns), and the dot kernel
    /// one 512-bit vector where [`Kernels::Avx2`] takes two 256-bit ones; the tail kernels are
    /// the same 256-bit code as AVX2's.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernels {
    /// The fastest this CPU runs (checked once), or [`Kernels::Portable`] where the environment
    /// variable `BP_NO_SIMD` is set to `1` when first asked: the path of a CPU without AVX2, on
    /// any machine, for tests.
    pub(crate) fn detect() -> Self {
        static NO_SIMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *NO_SIMD.get_or_init(|| std::env::var("BP_NO_SIMD").is_ok_and(|v| v.trim() == "1")) {
            return Kernels::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        if x86::avx512() {
            return Kernels::Avx512;
        } else if x86::avx2() {
            return Kernels::Avx2;
        }
        Kernels::Portable
    }

    /// Every kind this CPU runs.
    #[cfg(test)]
    pub(crate) fn all_here() -> Vec<Self> {
        let all = [
            Kernels::Portable,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512,
        ];
        all.into_iter().filter(|k| k.runs_here()).collect()
    }

    /// The largest product (in multiply-adds) the seam gives them; larger ones go to the `gemm`
    /// crate. The portable code takes those up to [`MAX_KERNEL_FMAS`], so that a training step
    /// at the book's sizes allocates nothing on any CPU.
    pub(crate) fn max_fmas(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => MAX_AVX512_KERNEL_FMAS,
            _ => MAX_KERNEL_FMAS,
        }
    }

    /// Whether this CPU runs them.
    fn runs_here(self) -> bool {
        match self {
            Kernels::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => x86::avx2(),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => x86::avx512(),
        }
    }
}

/// `out[at + (i - rows.start, j - cols.start)] = (a · b)[i, j]` for `i` in `rows` and `j` in
/// `cols`, computed by `kernels` (the portable code if the CPU lacks them, or if neither `a` nor
/// `b` is stored row-major, or `out`'s rows are not contiguous). The rest of `out` is untouched.
/// Parts of `b` may be copied into `scratch`, which grows only if [`reserve_scratch`] was not
/// called for the product.
///
/// # Panics
///
/// If the inner dimensions differ, or the block reaches outside the product or outside `out`.
#[track_caller]
#[allow(clippy::too_many_arguments)]
// A `Vec`, not a slice: the kernels size the scratch to each product.
#[allow(clippy::ptr_arg)]
pub(crate) fn product<A: NdFloat>(
    kernels: Kernels,
    av: ArrayView2<'_, A>,
    bv: ArrayView2<'_, A>,
    rows: Range<usize>,
    cols: Range<usize>,
    mut out: ArrayViewMut2<'_, A>,
    at: (usize, usize),
    scratch: &mut Vec<A>,
) {
    assert_eq!(
        av.ncols(),
        bv.nrows(),
        "matrix product of {:?} and {:?}: inner dimensions differ",
        av.shape(),
        bv.shape()
    );
    assert!(
        rows.start <= rows.end
            && rows.end <= av.nrows()
            && cols.start <= cols.end
            && cols.end <= bv.ncols(),
        "block {rows:?} x {cols:?} outside the {} x {} product",
        av.nrows(),
        bv.ncols()
    );
    assert!(
        at.0 + rows.len() <= out.nrows() && at.1 + cols.len() <= out.ncols(),
        "a {} x {} block at {at:?} does not fit an output of shape {:?}",
        rows.len(),
        cols.len(),
        out.shape()
    );
    if rows.is_empty() || cols.is_empty() {
        return;
    }
    if av.ncols() == 0 {
        let (m, n) = (rows.len(), cols.len());
        out.slice_mut(ndarray::s![at.0..at.0 + m, at.1..at.1 + n])
            .fill(A::zero());
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernels;
    #[cfg(target_arch = "x86_64")]
    if kernels != Kernels::Portable && kernels.runs_here() {
        let ldo = out.ncols();
        macro_rules! kernels_for {
            ($t:ident, $avx2:ident, $avx512:ident) => {
                if let (Some(block), Some(out), Some(scratch)) = (
                    Block::<$t>::new(av, bv, &rows, &cols, at, ldo),
                    out.as_slice_mut().and_then(cast_slice_mut::<A, $t>),
                    (scratch as &mut dyn Any).downcast_mut::<Vec<$t>>(),
                ) {
                    #[allow(unsafe_code)]
                    // SAFETY: `runs_here` checked that the CPU has the kernels' features.
                    unsafe {
                        if kernels == Kernels::Avx512 {
                            x86::$avx512::product(&block, out, scratch);
                        } else {
                            x86::$avx2::product(&block, out, scratch);
                        }
                    }
                    return;
                }
            };
        }
        kernels_for!(f32, avx2_f32, avx512_f32);
        kernels_for!(f64, avx2_f64, avx512_f64);
    }
    portable(av, bv, rows, cols, out, at);
}

/// [`product`] in plain Rust, for any layout, element type and CPU. Each element is summed in
/// order of the shared index `p`, so any block gives the same bits: `A · B` adds `a[i, p] · B[p, ..]`
/// to a row of the output at a time (vectorised by the compiler where rows are contiguous), and
/// `A · Bᵀ` (`B`'s columns contiguous) takes dot products of rows.
fn portable<A: NdFloat>(
    a: ArrayView2<'_, A>,
    b: ArrayView2<'_, A>,
    rows: Range<usize>,
    cols: Range<usize>,
    out: ArrayViewMut2<'_, A>,
    at: (usize, usize),
) {
    let (m, n) = (rows.len(), cols.len());
    let a = a.slice_axis(Axis(0), Slice::from(rows));
    let b = b.slice_axis(Axis(1), Slice::from(cols));
    let mut c = out
        .slice_axis_move(Axis(0), Slice::from(at.0..at.0 + m))
        .slice_axis_move(Axis(1), Slice::from(at.1..at.1 + n));
    let columns_contiguous = b.strides()[0] == 1 && b.nrows() > 1;
    for (a_row, mut c_row) in a.rows().into_iter().zip(c.rows_mut()) {
        if columns_contiguous {
            for (c, b_col) in c_row.iter_mut().zip(b.columns()) {
                let mut sum = A::zero();
                for (&x, &y) in a_row.iter().zip(b_col) {
                    sum += x * y;
                }
                *c = sum;
            }
            continue;
        }
        c_row.fill(A::zero());
        for (&x, b_row) in a_row.iter().zip(b.rows()) {
            match (c_row.as_slice_mut(), b_row.as_slice()) {
                (Some(c), Some(b)) => {
                    for (c, &y) in c.iter_mut().zip(b) {
                        *c += x * y;
                    }
                }
                _ => c_row.zip_mut_with(&b_row, |c, &y| *c += x * y),
            }
        }
    }
}

/// `s` as a `T` slice, if its elements are `T`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn cast_slice<A: 'static, T: 'static>(s: &[A]) -> Option<&[T]> {
    if TypeId::of::<A>() != TypeId::of::<T>() {
        return None;
    }
    #[allow(unsafe_code)]
    // SAFETY: `A` and `T` are the same type.
    Some(unsafe { &*(std::ptr::from_ref(s) as *const [T]) })
}

/// `s` as a `T` slice, if its elements are `T`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn cast_slice_mut<A: 'static, T: 'static>(s: &mut [A]) -> Option<&mut [T]> {
    if TypeId::of::<A>() != TypeId::of::<T>() {
        return None;
    }
    #[allow(unsafe_code)]
    // SAFETY: `A` and `T` are the same type.
    Some(unsafe { &mut *(std::ptr::from_mut(s) as *mut [T]) })
}

/// One product as the kernels read it: both operands as row-major slices of `T`.
#[derive(Clone, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Block<'a, T> {
    /// `A` as stored: `m x k`, or `k x m` if `a_t`; rows `lda` apart.
    a: &'a [T],
    a_t: bool,
    lda: usize,
    /// `B` as stored: `k x n`, or `n x k` if `b_t`; rows `ldb` apart.
    b: &'a [T],
    b_t: bool,
    ldb: usize,
    /// The shared dimension.
    k: usize,
    /// The block of `C` to compute.
    rows: Range<usize>,
    cols: Range<usize>,
    /// Where the block's first element goes in the output, and the distance between output rows.
    at: (usize, usize),
    ldo: usize,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl<'a, T: 'static> Block<'a, T> {
    /// The block of `a · b`, if both operands hold `T`, each in standard layout or transposed
    /// from it, and not both transposed.
    fn new<A: 'static>(
        a: ArrayView2<'a, A>,
        b: ArrayView2<'a, A>,
        rows: &Range<usize>,
        cols: &Range<usize>,
        at: (usize, usize),
        ldo: usize,
    ) -> Option<Self> {
        let k = a.ncols();
        let (a, a_t, lda) = stored(a)?;
        let (b, b_t, ldb) = stored(b)?;
        if a_t && b_t {
            return None;
        }
        Some(Block {
            a: cast_slice(a)?,
            a_t,
            lda,
            b: cast_slice(b)?,
            b_t,
            ldb,
            k,
            rows: rows.clone(),
            cols: cols.clone(),
            at,
            ldo,
        })
    }
}

/// Columns of a [`ShiftedProduct`] come in multiples of this (every kernel set's group of
/// columns divides it), and a [`ShiftedDot`]'s segments are as long: no tails.
pub(crate) const SHIFTED_GROUP: usize = MAX_GROUP;

/// `out[i·ldo + j] = Σ_p a[i·lda + p] · b[offsets[p] + j]` for `i < m`, `j < n`: `A · B` with
/// row `p` of `B` starting at `offsets[p]` in `b`. The rows may overlap: a convolution's unrolled
/// images are shifted runs of the padded planes, so the product reads the planes themselves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShiftedProduct<'a, T> {
    /// `A`, `m x offsets.len()`, rows `lda` apart.
    pub(crate) a: &'a [T],
    pub(crate) lda: usize,
    pub(crate) m: usize,
    pub(crate) b: &'a [T],
    pub(crate) offsets: &'a [usize],
    /// Columns, a multiple of [`SHIFTED_GROUP`].
    pub(crate) n: usize,
    /// The distance between the output's rows.
    pub(crate) ldo: usize,
}

/// `out[i·ldo + j] = Σ_s Σ_q a[a_rows[i] + s·a_step + q] · b[b_rows[j] + s·b_step + q]` over
/// `segments` segments `s` of `len` elements `q`: `A · Bᵀ` whose rows are runs in `a` and `b` at
/// the given starts, each cut into segments a step apart (a convolution's `dW`: a segment per
/// sample of the part, summed in the dot kernel's lanes across samples).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShiftedDot<'a, T> {
    pub(crate) a: &'a [T],
    pub(crate) a_rows: &'a [usize],
    pub(crate) a_step: usize,
    pub(crate) b: &'a [T],
    pub(crate) b_rows: &'a [usize],
    pub(crate) b_step: usize,
    pub(crate) segments: usize,
    /// Elements of a segment, a multiple of [`SHIFTED_GROUP`].
    pub(crate) len: usize,
    pub(crate) ldo: usize,
}

impl<'a, A: 'static> ShiftedProduct<'a, A> {
    /// Panics unless every element read lies in `a` and `b`, and `out` holds the output.
    #[track_caller]
    fn check(&self, out: &[A]) {
        let k = self.offsets.len();
        let last = self.offsets.iter().max().map_or(0, |&o| o + self.n);
        assert!(
            self.n.is_multiple_of(SHIFTED_GROUP)
                && self.lda >= k
                && self.ldo >= self.n
                && (self.m == 0 || self.a.len() >= (self.m - 1) * self.lda + k)
                && last <= self.b.len()
                && (self.m == 0 || out.len() >= (self.m - 1) * self.ldo + self.n),
            "shifted product of {} x {k} (rows {} apart, {} elements) and {k} rows of {} at offsets \
             up to {last} of {} into {} elements with rows {} apart",
            self.m,
            self.lda,
            self.a.len(),
            self.n,
            self.b.len(),
            out.len(),
            self.ldo
        );
    }

    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn cast<T: 'static>(&self) -> Option<ShiftedProduct<'a, T>> {
        Some(ShiftedProduct {
            a: cast_slice(self.a)?,
            b: cast_slice(self.b)?,
            lda: self.lda,
            m: self.m,
            offsets: self.offsets,
            n: self.n,
            ldo: self.ldo,
        })
    }
}

impl<'a, A: 'static> ShiftedDot<'a, A> {
    /// Panics unless every element read lies in `a` and `b`, and `out` holds the output.
    #[track_caller]
    fn check(&self, out: &[A]) {
        let reach = |rows: &[usize], step: usize| {
            rows.iter().max().map_or(0, |&r| {
                r + self.segments.saturating_sub(1) * step + self.len
            })
        };
        let (a_end, b_end) = (
            reach(self.a_rows, self.a_step),
            reach(self.b_rows, self.b_step),
        );
        let (m, n) = (self.a_rows.len(), self.b_rows.len());
        assert!(
            self.len.is_multiple_of(SHIFTED_GROUP)
                && a_end <= self.a.len()
                && b_end <= self.b.len()
                && self.ldo >= n
                && (m == 0 || out.len() >= (m - 1) * self.ldo + n),
            "shifted dot products of {m} x {n} runs of {} segments of {} reach {a_end} of {} and \
             {b_end} of {}; the output has {} elements with rows {} apart",
            self.segments,
            self.len,
            self.a.len(),
            self.b.len(),
            out.len(),
            self.ldo
        );
    }

    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn cast<T: 'static>(&self) -> Option<ShiftedDot<'a, T>> {
        Some(ShiftedDot {
            a: cast_slice(self.a)?,
            b: cast_slice(self.b)?,
            a_rows: self.a_rows,
            a_step: self.a_step,
            b_rows: self.b_rows,
            b_step: self.b_step,
            segments: self.segments,
            len: self.len,
            ldo: self.ldo,
        })
    }
}

/// Computes shifted product `$p` into `$out` with `x86::<kernels>_<element>::$kernel` and returns
/// from the caller, if the CPU has `$kernels` and the elements are `f32` or `f64`.
#[cfg(target_arch = "x86_64")]
macro_rules! shifted_on_x86 {
    ($kernels:expr, $p:expr, $out:expr, $kernel:ident) => {
        if $kernels != Kernels::Portable && $kernels.runs_here() {
            shifted_on_x86!(@one $kernels, $p, $out, $kernel, f32, avx2_f32, avx512_f32);
            shifted_on_x86!(@one $kernels, $p, $out, $kernel, f64, avx2_f64, avx512_f64);
        }
    };
    (@one $kernels:expr, $p:expr, $out:expr, $kernel:ident, $t:ident, $avx2:ident, $avx512:ident) => {
        if let (Some(p), Some(out)) = ($p.cast::<$t>(), cast_slice_mut::<_, $t>($out)) {
            #[allow(unsafe_code)]
            // SAFETY: `runs_here` checked that the CPU has the kernels' features.
            unsafe {
                if $kernels == Kernels::Avx512 {
                    x86::$avx512::$kernel(&p, out);
                } else {
                    x86::$avx2::$kernel(&p, out);
                }
            }
            return;
        }
    };
}

/// Computes `p` into `out` with `kernels` (the portable code where the CPU lacks them).
///
/// # Panics
///
/// If an element read or written lies outside the slices.
#[track_caller]
pub(crate) fn shifted_product<A: NdFloat>(
    kernels: Kernels,
    p: &ShiftedProduct<'_, A>,
    out: &mut [A],
) {
    p.check(out);
    if p.m == 0 || p.n == 0 {
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernels;
    #[cfg(target_arch = "x86_64")]
    shifted_on_x86!(kernels, p, out, shifted);
    let k = p.offsets.len();
    for (i, row) in out.chunks_mut(p.ldo).take(p.m).enumerate() {
        let row = &mut row[..p.n];
        row.fill(A::zero());
        for (&x, &offset) in p.a[i * p.lda..][..k].iter().zip(p.offsets) {
            for (c, &y) in row.iter_mut().zip(&p.b[offset..][..p.n]) {
                *c += x * y;
            }
        }
    }
}

/// Computes `d` into `out` with `kernels` (the portable code where the CPU lacks them).
///
/// # Panics
///
/// If an element read or written lies outside the slices.
#[track_caller]
pub(crate) fn shifted_dot<A: NdFloat>(kernels: Kernels, d: &ShiftedDot<'_, A>, out: &mut [A]) {
    d.check(out);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernels;
    #[cfg(target_arch = "x86_64")]
    shifted_on_x86!(kernels, d, out, shifted_dot);
    for (i, &a_row) in d.a_rows.iter().enumerate() {
        for (j, &b_row) in d.b_rows.iter().enumerate() {
            let mut sum = A::zero();
            for s in 0..d.segments {
                let x = &d.a[a_row + s * d.a_step..][..d.len];
                let y = &d.b[b_row + s * d.b_step..][..d.len];
                for (&x, &y) in x.iter().zip(y) {
                    sum += x * y;
                }
            }
            out[i * d.ldo + j] = sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The kernels, for `f32` (vectors of 8) and `f64` (vectors of 4), each compiled for AVX2 and
    //! FMA and again for AVX-512, from one macro. Every function is compiled for its features and
    //! only calls functions compiled for the same or fewer, so that intrinsics need no `unsafe`;
    //! loads and stores go through checked slices.

    use std::arch::x86_64::{
        __m128, __m128d, __m256, __m256d, __m512, __m512d, _mm_cvtsd_f64, _mm_cvtss_f32,
        _mm_shuffle_ps, _mm_unpackhi_pd, _mm256_broadcast_sd, _mm256_broadcast_ss,
        _mm256_castpd256_pd128, _mm256_castps256_ps128, _mm256_extractf128_pd,
        _mm256_extractf128_ps, _mm256_fmadd_pd, _mm256_fmadd_ps, _mm256_setr_pd, _mm256_setr_ps,
        _mm256_setzero_pd, _mm256_setzero_ps, _mm512_fmadd_pd, _mm512_fmadd_ps, _mm512_set1_pd,
        _mm512_set1_ps, _mm512_setzero_pd, _mm512_setzero_ps,
    };

    /// Whether the CPU has AVX2 and FMA (the answer is cached by the standard library).
    pub(super) fn avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// Whether the CPU also has AVX-512 F and VL (32 vector registers for 256-bit vectors).
    pub(super) fn avx512() -> bool {
        avx2()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn load_f32(s: &[f32; 8]) -> __m256 {
        // Eight neighbouring elements: compiled to one unaligned vector load.
        _mm256_setr_ps(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn lanes_f32(v: __m256) -> [f32; 8] {
        let quad = |h: __m128| -> [f32; 4] {
            [
                _mm_cvtss_f32(h),
                _mm_cvtss_f32(_mm_shuffle_ps::<1>(h, h)),
                _mm_cvtss_f32(_mm_shuffle_ps::<2>(h, h)),
                _mm_cvtss_f32(_mm_shuffle_ps::<3>(h, h)),
            ]
        };
        let (lo, hi) = (
            quad(_mm256_castps256_ps128(v)),
            quad(_mm256_extractf128_ps::<1>(v)),
        );
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(unsafe_code)]
    fn store_f32(dst: &mut [f32; 8], v: __m256) {
        // SAFETY: `dst` holds the 8 elements written.
        unsafe { std::arch::x86_64::_mm256_storeu_ps(dst.as_mut_ptr(), v) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(unsafe_code)]
    fn store_f64(dst: &mut [f64; 4], v: __m256d) {
        // SAFETY: `dst` holds the 4 elements written.
        unsafe { std::arch::x86_64::_mm256_storeu_pd(dst.as_mut_ptr(), v) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn load_f64(s: &[f64; 4]) -> __m256d {
        _mm256_setr_pd(s[0], s[1], s[2], s[3])
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn lanes_f64(v: __m256d) -> [f64; 4] {
        let pair =
            |h: __m128d| -> [f64; 2] { [_mm_cvtsd_f64(h), _mm_cvtsd_f64(_mm_unpackhi_pd(h, h))] };
        let (lo, hi) = (
            pair(_mm256_castpd256_pd128(v)),
            pair(_mm256_extractf128_pd::<1>(v)),
        );
        [lo[0], lo[1], hi[0], hi[1]]
    }

    /// 512-bit vectors for the AVX-512 broadcast kernel: `f32 x 16` and `f64 x 8`.
    macro_rules! zmm {
        ($t:ty, $v:ty, $lanes:literal, $load:ident, $store:ident, $to_lanes:ident, $splat:ident,
         $set1:ident, $loadu:ident, $storeu:ident) => {
            #[target_feature(enable = "avx512f")]
            #[inline]
            #[allow(unsafe_code)]
            fn $load(s: &[$t; $lanes]) -> $v {
                // SAFETY: `s` holds the elements read.
                unsafe { std::arch::x86_64::$loadu(s.as_ptr()) }
            }

            #[target_feature(enable = "avx512f")]
            #[inline]
            #[allow(unsafe_code)]
            fn $store(dst: &mut [$t; $lanes], v: $v) {
                // SAFETY: `dst` holds the elements written.
                unsafe { std::arch::x86_64::$storeu(dst.as_mut_ptr(), v) }
            }

            #[target_feature(enable = "avx512f")]
            #[inline]
            fn $to_lanes(v: $v) -> [$t; $lanes] {
                let mut lanes = [0.0; $lanes];
                $store(&mut lanes, v);
                lanes
            }

            #[target_feature(enable = "avx512f")]
            #[inline]
            fn $splat(x: &$t) -> $v {
                $set1(*x)
            }
        };
    }

    zmm!(
        f32,
        __m512,
        16,
        load_f32x16,
        store_f32x16,
        lanes_f32x16,
        splat_f32x16,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps
    );
    zmm!(
        f64,
        __m512d,
        8,
        load_f64x8,
        store_f64x8,
        lanes_f64x8,
        splat_f64x8,
        _mm512_set1_pd,
        _mm512_loadu_pd,
        _mm512_storeu_pd
    );

    /// Tiles of `R` rows by `$vt` wide vectors down the block's rows, then one tile of the rows
    /// left (`$left`: every possible count, each a tile height of its own).
    macro_rules! sweep {
        ($block:ident, $j:ident, $lo:ident, $hi:ident, $out:ident, $at:ident, $vt:expr;
         $($left:literal)*) => {{
            let end = $block.rows.end;
            let mut i = $block.rows.start;
            while i + R <= end {
                tile::<R, { $vt }, $at>($block, i, $j, $lo, $hi, $out);
                i += R;
            }
            match end - i {
                0 => {}
                $($left => tile::<$left, { $vt }, $at>($block, i, $j, $lo, $hi, $out),)*
                _ => unreachable!("fewer than R rows are left"),
            }
        }};
    }

    macro_rules! kernels {
        ($name:ident, $t:ty, $v:ty, $lanes:literal,
         $zero:ident, $splat:ident, $fmadd:ident, $load:ident, $to_lanes:ident,
         $wv:ty, $wlanes:literal, $wzero:ident, $wsplat:ident, $wfmadd:ident, $wload:ident,
         $wstore:ident, $wto_lanes:ident,
         $features:literal, $vectors:literal, $rows:literal, [$($left:literal)*]) => {
            pub(super) mod $name {
                use super::super::{Block, MAX_GROUP, MAX_SHORT_DOT, ShiftedDot, ShiftedProduct};
                use super::{$fmadd, $load, $splat, $to_lanes, $zero};
                use super::{
                    $wfmadd as wfmadd, $wload as wload, $wsplat as wsplat, $wstore as wstore,
                    $wto_lanes as wto_lanes, $wzero as wzero,
                };

                /// Elements per vector of the dot and tail kernels.
                const L: usize = $lanes;
                /// Columns of `B` go to the broadcast kernel in groups of two such vectors; the
                /// columns after the last whole group (the tail) go to the tail kernels. Every
                /// kernel set groups them alike, so that all give the same bits.
                const W: usize = 2 * L;
                /// Elements per vector of the broadcast kernel (a divisor of `W`).
                const WL: usize = $wlanes;
                /// Vectors of a broadcast panel, and its columns.
                const V: usize = $vectors;
                const PW: usize = V * WL;
                /// Rows of a broadcast tile, `R x V` vector accumulators: as many as the
                /// registers hold beside a row of `B` and a broadcast element.
                const R: usize = $rows;
                /// A dot product is summed in `W` lanes (lane `l` takes the elements `p` with
                /// `p mod W = l`, in order), held in `DC` vectors: one 512-bit vector with
                /// AVX-512, two 256-bit ones with AVX2, so that both give the same bits.
                const DC: usize = W / WL;
                /// Rows of `A` and of `Bᵀ` in a dot tile: 16 accumulators with AVX-512, 8 with
                /// AVX2 (4 dot products of two vectors each), beside the loaded rows.
                const RI: usize = if DC == 1 { 4 } else { 2 };
                const RJ: usize = if DC == 1 { 4 } else { 2 };
                /// `A · Bᵀ` with a shorter shared dimension copies `Bᵀ` to `B` and takes the
                /// broadcast kernel: dot products this short are mostly the sum across lanes.
                const MIN_DOT_K: usize = 4 * L;

                // `reserve_scratch` sizes the copies for the widest kernels.
                const _: () = assert!(W <= MAX_GROUP && MIN_DOT_K <= MAX_SHORT_DOT);
                // Whole vectors cover the groups of `W` columns, so that a panel never reads past
                // the last group.
                const _: () = assert!(W % WL == 0);

                /// Computes `block` into `out`, with the copies it makes in `scratch`.
                #[target_feature(enable = $features)]
                pub(crate) fn product(block: &Block<'_, $t>, out: &mut [$t], scratch: &mut Vec<$t>) {
                    let k = block.k;
                    let n = if block.b_t { block.b.len() / block.ldb } else { block.ldb };
                    let tail = (n - n / W * W) * k;
                    let copy = match (block.a_t, block.b_t) {
                        (false, false) => tail,
                        (false, true) if k < MIN_DOT_K => k * n + tail,
                        _ => 0,
                    };
                    scratch.clear();
                    scratch.resize(copy, 0.0);
                    match (block.a_t, block.b_t) {
                        (false, false) => broadcast::<false>(block, out, scratch),
                        (true, false) => broadcast::<true>(block, out, &mut []),
                        (false, true) if k >= MIN_DOT_K => dot(block, out),
                        (false, true) => via_transposed(block, out, scratch),
                        (true, true) => unreachable!("Block::new refuses Aᵀ · Bᵀ"),
                    }
                }

                /// `A · Bᵀ` as `A · B`, with all of `B` copied out of `Bᵀ` into `scratch` (so
                /// that the same columns go to the tail whatever the block).
                #[target_feature(enable = $features)]
                fn via_transposed(block: &Block<'_, $t>, out: &mut [$t], scratch: &mut [$t]) {
                    let (k, n) = (block.k, block.b.len() / block.ldb);
                    let (b, tail) = scratch.split_at_mut(k * n);
                    for (j, bt_row) in block.b.chunks_exact(block.ldb).enumerate() {
                        for (p, &value) in bt_row[..k].iter().enumerate() {
                            b[p * n + j] = value;
                        }
                    }
                    let copied = Block { b, b_t: false, ldb: n, ..block.clone() };
                    broadcast::<false>(&copied, out, tail);
                }

                /// Panels of up to `V` vectors from the block's first column on, each swept by
                /// tiles of `R` rows, over the columns before the tail; then the tail, which
                /// [`nn_tail`] copies into `tail`, or [`at_tail`]. An element's multiply-adds do
                /// not depend on the panel it falls in, so the panels may start anywhere. `AT`:
                /// `A` is transposed.
                #[target_feature(enable = $features)]
                fn broadcast<const AT: bool>(
                    block: &Block<'_, $t>,
                    out: &mut [$t],
                    tail: &mut [$t],
                ) {
                    let whole = block.ldb / W * W;
                    let (start, end) = (block.cols.start, block.cols.end);
                    let mut j = start;
                    while j < end.min(whole) {
                        let vectors = (end.min(whole) - j).div_ceil(WL).min(V);
                        // A panel reads `B` no further than `whole` (a multiple of `WL`): a last
                        // ragged one starts early and stores only its last columns.
                        let first = j.min(whole - vectors * WL);
                        let (lo, hi) = (j - first, (first + vectors * WL).min(end) - first);
                        match vectors {
                            1 => sweep!(block, first, lo, hi, out, AT, 1; $($left)*),
                            2 => sweep!(block, first, lo, hi, out, AT, 2; $($left)*),
                            _ => sweep!(block, first, lo, hi, out, AT, V; $($left)*),
                        }
                        j = first + hi;
                    }
                    if end > whole {
                        let first = start.max(whole);
                        if AT {
                            at_tail(block, first, end, out);
                        } else {
                            nn_tail(block, first, end, out, tail);
                        }
                    }
                }

                /// One tile of `RT` rows by `VT` vectors at rows `i..`, columns `j..`, of whose
                /// columns `lo..hi` are stored.
                #[target_feature(enable = $features)]
                fn tile<const RT: usize, const VT: usize, const AT: bool>(
                    block: &Block<'_, $t>,
                    i: usize,
                    j: usize,
                    lo: usize,
                    hi: usize,
                    out: &mut [$t],
                ) {
                    let (k, lda, ldb) = (block.k, block.lda, block.ldb);
                    let mut acc = [[wzero(); VT]; RT];
                    if AT {
                        // A[i + r, p] = a[p, i + r]: a step's elements are neighbours.
                        for p in 0..k {
                            let x = &block.a[p * lda + i..][..RT];
                            let mut xs = [&x[0]; RT];
                            for (xs, x) in xs.iter_mut().zip(x) {
                                *xs = x;
                            }
                            step(&mut acc, xs, &block.b[p * ldb + j..][..VT * WL]);
                        }
                    } else {
                        let arows = rows::<RT>(block.a, i, lda, k);
                        for p in 0..k {
                            let mut xs = [&arows[0][p]; RT];
                            for (xs, arow) in xs.iter_mut().zip(&arows) {
                                *xs = &arow[p];
                            }
                            step(&mut acc, xs, &block.b[p * ldb + j..][..VT * WL]);
                        }
                    }
                    // The tile's column `lo` is the block's column `j + lo - cols.start >= 0`.
                    let row0 = block.at.0 + i - block.rows.start;
                    let col_lo = block.at.1 + j + lo - block.cols.start;
                    for (r, acc) in acc.iter().enumerate() {
                        let dst = &mut out[(row0 + r) * block.ldo + col_lo..][..hi - lo];
                        if (lo, hi) == (0, VT * WL) {
                            for (dst, &acc) in dst.chunks_exact_mut(WL).zip(acc) {
                                wstore(dst.try_into().expect("WL elements"), acc);
                            }
                        } else {
                            let mut lanes = [0.0; PW];
                            for (lanes, &acc) in lanes.chunks_exact_mut(WL).zip(acc) {
                                lanes.copy_from_slice(&wto_lanes(acc));
                            }
                            dst.copy_from_slice(&lanes[lo..hi]);
                        }
                    }
                }

                /// One step of the shared dimension: `acc[r] += x[r] * y`.
                #[target_feature(enable = $features)]
                #[inline]
                fn step<const RT: usize, const VT: usize>(
                    acc: &mut [[$wv; VT]; RT],
                    x: [&$t; RT],
                    y: &[$t],
                ) {
                    let mut ys = [wzero(); VT];
                    for (ys, y) in ys.iter_mut().zip(y.chunks_exact(WL)) {
                        *ys = wload(y.try_into().expect("WL elements"));
                    }
                    for (acc, x) in acc.iter_mut().zip(x) {
                        // From memory straight into all lanes: one load, no shuffle.
                        let x = wsplat(x);
                        for (acc, &y) in acc.iter_mut().zip(&ys) {
                            *acc = wfmadd(x, y, *acc);
                        }
                    }
                }

                /// Rows `i .. i + N` of a matrix stored with rows `ld` apart, `k` elements each.
                /// (A loop, not `std::array::from_fn`, so that the compiler sees every length is
                /// `k` and drops the bounds checks of the kernels' loops over `p < k`.)
                #[target_feature(enable = $features)]
                #[inline]
                fn rows<const N: usize>(m: &[$t], i: usize, ld: usize, k: usize) -> [&[$t]; N] {
                    let mut rows = [&m[..0]; N];
                    for (r, row) in rows.iter_mut().enumerate() {
                        *row = &m[(i + r) * ld..][..k];
                    }
                    rows
                }

                /// The tail of `A · B`, columns `first..end`: the columns copied as rows into
                /// `tail`, then dot products with the rows of `A`.
                #[target_feature(enable = $features)]
                fn nn_tail(
                    block: &Block<'_, $t>,
                    first: usize,
                    end: usize,
                    out: &mut [$t],
                    tail: &mut [$t],
                ) {
                    let (k, width) = (block.k, end - first);
                    let tail = &mut tail[..width * k];
                    for (p, b_row) in block.b.chunks_exact(block.ldb).enumerate() {
                        for (c, &value) in b_row[first..end].iter().enumerate() {
                            tail[c * k + p] = value;
                        }
                    }
                    let rows = Block {
                        b: tail,
                        b_t: true,
                        ldb: k,
                        cols: 0..width,
                        at: (block.at.0, block.at.1 + first - block.cols.start),
                        ..block.clone()
                    };
                    dot(&rows, out);
                }

                /// The tail of `Aᵀ · B`, columns `first..end`, as `(Bᵀ · A)ᵀ`: one or two columns
                /// at a time, each step an element of `B` broadcast and multiplied into a row of
                /// the stored `A` (the same multiply-adds, in the same order, as a tile's).
                #[target_feature(enable = $features)]
                fn at_tail(block: &Block<'_, $t>, first: usize, end: usize, out: &mut [$t]) {
                    let mut j = first;
                    while j < end {
                        let pair = j + 2 <= end;
                        let mut i = block.rows.start;
                        while i < block.rows.end {
                            let left = block.rows.end - i;
                            let done = match (pair, left) {
                                (true, left) if left >= 4 * L => column_tile::<2, 4>(block, i, j, out),
                                (false, left) if left >= 4 * L => column_tile::<1, 4>(block, i, j, out),
                                (true, left) if left >= L => column_tile::<2, 1>(block, i, j, out),
                                (false, left) if left >= L => column_tile::<1, 1>(block, i, j, out),
                                (true, _) => column_scalar::<2>(block, i, j, out),
                                (false, _) => column_scalar::<1>(block, i, j, out),
                            };
                            i += done;
                        }
                        j += if pair { 2 } else { 1 };
                    }
                }

                /// `NV` vectors of rows `i..` of `TJ` columns `j..` of `Aᵀ · B`; returns the rows
                /// done.
                #[target_feature(enable = $features)]
                fn column_tile<const TJ: usize, const NV: usize>(
                    block: &Block<'_, $t>,
                    i: usize,
                    j: usize,
                    out: &mut [$t],
                ) -> usize {
                    let (k, lda, ldb) = (block.k, block.lda, block.ldb);
                    let mut acc = [[$zero(); NV]; TJ];
                    for p in 0..k {
                        let a = &block.a[p * lda + i..][..NV * L];
                        let mut x = [$zero(); NV];
                        for (x, a) in x.iter_mut().zip(a.chunks_exact(L)) {
                            *x = $load(a.try_into().expect("L elements"));
                        }
                        let b = &block.b[p * ldb + j..][..TJ];
                        for (acc, b) in acc.iter_mut().zip(b) {
                            let y = $splat(b);
                            for (acc, &x) in acc.iter_mut().zip(&x) {
                                *acc = $fmadd(x, y, *acc);
                            }
                        }
                    }
                    let row0 = block.at.0 + i - block.rows.start;
                    let col0 = block.at.1 + j - block.cols.start;
                    for (c, acc) in acc.iter().enumerate() {
                        for (v, &acc) in acc.iter().enumerate() {
                            for (l, &value) in $to_lanes(acc).iter().enumerate() {
                                out[(row0 + v * L + l) * block.ldo + col0 + c] = value;
                            }
                        }
                    }
                    NV * L
                }

                /// The rows `i..` left (fewer than a vector) of `TJ` columns `j..` of `Aᵀ · B`,
                /// one element at a time; returns the rows done.
                #[target_feature(enable = $features)]
                fn column_scalar<const TJ: usize>(
                    block: &Block<'_, $t>,
                    i: usize,
                    j: usize,
                    out: &mut [$t],
                ) -> usize {
                    let (k, lda, ldb) = (block.k, block.lda, block.ldb);
                    for i in i..block.rows.end {
                        for c in j..j + TJ {
                            let mut sum: $t = 0.0;
                            for p in 0..k {
                                sum = block.a[p * lda + i].mul_add(block.b[p * ldb + c], sum);
                            }
                            let row = block.at.0 + i - block.rows.start;
                            out[row * block.ldo + block.at.1 + c - block.cols.start] = sum;
                        }
                    }
                    block.rows.end - i
                }

                /// Tiles of `RI` rows of `A` by `RJ` rows of `Bᵀ`, then the edges one row or
                /// column at a time.
                #[target_feature(enable = $features)]
                fn dot(block: &Block<'_, $t>, out: &mut [$t]) {
                    let (rows, cols) = (block.rows.clone(), block.cols.clone());
                    let mut j = cols.start;
                    while j < cols.end {
                        let wide = j + RJ <= cols.end;
                        let mut i = rows.start;
                        while i < rows.end {
                            let tall = i + RI <= rows.end;
                            match (tall, wide) {
                                (true, true) => dot_tile::<RI, RJ>(block, i, j, out),
                                (true, false) => dot_tile::<RI, 1>(block, i, j, out),
                                (false, true) => dot_tile::<1, RJ>(block, i, j, out),
                                (false, false) => dot_tile::<1, 1>(block, i, j, out),
                            }
                            i += if tall { RI } else { 1 };
                        }
                        j += if wide { RJ } else { 1 };
                    }
                }

                /// One `TI x TJ` tile of dot products at rows `i..`, columns `j..`: partial sums
                /// in `W` lanes over the shared dimension, then across the lanes in a fixed order
                /// (halves added pairwise), then the elements left over.
                #[target_feature(enable = $features)]
                fn dot_tile<const TI: usize, const TJ: usize>(
                    block: &Block<'_, $t>,
                    i: usize,
                    j: usize,
                    out: &mut [$t],
                ) {
                    let k = block.k;
                    let arows = rows::<TI>(block.a, i, block.lda, k);
                    let brows = rows::<TJ>(block.b, j, block.ldb, k);
                    let mut acc = [[[wzero(); DC]; TJ]; TI];
                    let whole = k / W * W;
                    dot_groups(&mut acc, &arows, &brows, whole);
                    let row0 = block.at.0 + i - block.rows.start;
                    let col0 = block.at.1 + j - block.cols.start;
                    for (r, acc) in acc.iter().enumerate() {
                        for (c, acc) in acc.iter().enumerate() {
                            let mut sum = across(acc);
                            for p in whole..k {
                                sum = arows[r][p].mul_add(brows[c][p], sum);
                            }
                            out[(row0 + r) * block.ldo + col0 + c] = sum;
                        }
                    }
                }

                /// Adds the products of the first `whole` elements (a multiple of `W`) of each
                /// row pair into the pair's `W` lanes.
                #[target_feature(enable = $features)]
                #[inline]
                fn dot_groups<const TI: usize, const TJ: usize>(
                    acc: &mut [[[$wv; DC]; TJ]; TI],
                    arows: &[&[$t]; TI],
                    brows: &[&[$t]; TJ],
                    whole: usize,
                ) {
                    for p in (0..whole).step_by(W) {
                        let mut bv = [[wzero(); DC]; TJ];
                        for (bv, brow) in bv.iter_mut().zip(brows) {
                            let group = &brow[p..p + W];
                            for (bv, y) in bv.iter_mut().zip(group.chunks_exact(WL)) {
                                *bv = wload(y.try_into().expect("WL elements"));
                            }
                        }
                        for (acc, arow) in acc.iter_mut().zip(arows) {
                            let group = &arow[p..p + W];
                            for (d, x) in group.chunks_exact(WL).enumerate() {
                                let av = wload(x.try_into().expect("WL elements"));
                                for (acc, bv) in acc.iter_mut().zip(&bv) {
                                    acc[d] = wfmadd(av, bv[d], acc[d]);
                                }
                            }
                        }
                    }
                }

                /// The sum of a dot product's `W` lanes: halves added pairwise.
                #[target_feature(enable = $features)]
                #[inline]
                fn across(acc: &[$wv; DC]) -> $t {
                    let mut lanes = [0.0; W];
                    for (lanes, &v) in lanes.chunks_exact_mut(WL).zip(acc) {
                        lanes.copy_from_slice(&wto_lanes(v));
                    }
                    let mut width = W;
                    while width > 1 {
                        width /= 2;
                        for q in 0..width {
                            lanes[q] += lanes[q + width];
                        }
                    }
                    lanes[0]
                }

                /// A [`ShiftedProduct`]: panels of up to `V` vectors, each swept by tiles of `R`
                /// rows; each element takes the broadcast kernel's multiply-adds, in order of `p`.
                #[target_feature(enable = $features)]
                pub(crate) fn shifted(s: &ShiftedProduct<'_, $t>, out: &mut [$t]) {
                    let mut j = 0;
                    while j < s.n {
                        let vectors = ((s.n - j) / WL).min(V);
                        match vectors {
                            1 => shifted_panel::<1>(s, j, out),
                            2 => shifted_panel::<2>(s, j, out),
                            _ => shifted_panel::<V>(s, j, out),
                        }
                        j += vectors * WL;
                    }
                }

                /// The columns `j .. j + VT·WL` of a [`ShiftedProduct`], in as few tiles as `R`
                /// rows allow, of heights that differ by one at most (30 rows as 8, 8, 7 and 7,
                /// not 9, 9, 9 and a 3 that loads `B` as often for a third of the work).
                #[target_feature(enable = $features)]
                fn shifted_panel<const VT: usize>(
                    s: &ShiftedProduct<'_, $t>,
                    j: usize,
                    out: &mut [$t],
                ) {
                    let tiles = s.m.div_ceil(R);
                    let mut i = 0;
                    for t in 0..tiles {
                        let height = (s.m - i).div_ceil(tiles - t);
                        match height {
                            R => shifted_tile::<R, VT>(s, i, j, out),
                            $($left => shifted_tile::<$left, VT>(s, i, j, out),)*
                            _ => unreachable!("tiles are at most R rows high"),
                        }
                        i += height;
                    }
                }

                /// One tile of `RT` rows by `VT` vectors of a [`ShiftedProduct`].
                #[target_feature(enable = $features)]
                fn shifted_tile<const RT: usize, const VT: usize>(
                    s: &ShiftedProduct<'_, $t>,
                    i: usize,
                    j: usize,
                    out: &mut [$t],
                ) {
                    let arows = rows::<RT>(s.a, i, s.lda, s.offsets.len());
                    let mut acc = [[wzero(); VT]; RT];
                    for (p, &offset) in s.offsets.iter().enumerate() {
                        let mut xs = [&arows[0][p]; RT];
                        for (xs, arow) in xs.iter_mut().zip(&arows) {
                            *xs = &arow[p];
                        }
                        step(&mut acc, xs, &s.b[offset + j..][..VT * WL]);
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        let dst = &mut out[(i + r) * s.ldo + j..][..VT * WL];
                        for (dst, &acc) in dst.chunks_exact_mut(WL).zip(acc) {
                            wstore(dst.try_into().expect("WL elements"), acc);
                        }
                    }
                }

                /// A [`ShiftedDot`], in tiles of `RI x RJ` dot products, each summed in `W` lanes
                /// across all segments and then across the lanes. Where the rows (or columns) do
                /// not fill the tiles, the last tile overlaps the one before it and computes some
                /// dot products again (to the same bits); only fewer rows than a tile take
                /// narrower tiles.
                #[target_feature(enable = $features)]
                pub(crate) fn shifted_dot(d: &ShiftedDot<'_, $t>, out: &mut [$t]) {
                    let (m, n) = (d.a_rows.len(), d.b_rows.len());
                    let (tall, wide) = (m >= RI, n >= RJ);
                    let starts = |len: usize, tile: usize| {
                        let whole = (0..len / tile).map(move |t| t * tile);
                        let last = (len >= tile && len % tile != 0).then(|| len - tile);
                        whole.chain(last)
                    };
                    for j in starts(n, if wide { RJ } else { 1 }) {
                        for i in starts(m, if tall { RI } else { 1 }) {
                            match (tall, wide) {
                                (true, true) => shifted_dot_tile::<RI, RJ>(d, i, j, out),
                                (true, false) => shifted_dot_tile::<RI, 1>(d, i, j, out),
                                (false, true) => shifted_dot_tile::<1, RJ>(d, i, j, out),
                                (false, false) => shifted_dot_tile::<1, 1>(d, i, j, out),
                            }
                        }
                    }
                }

                /// One `TI x TJ` tile of a [`ShiftedDot`] at rows `i..`, columns `j..`.
                #[target_feature(enable = $features)]
                fn shifted_dot_tile<const TI: usize, const TJ: usize>(
                    d: &ShiftedDot<'_, $t>,
                    i: usize,
                    j: usize,
                    out: &mut [$t],
                ) {
                    let mut acc = [[[wzero(); DC]; TJ]; TI];
                    for s in 0..d.segments {
                        let mut arows = [&d.a[..0]; TI];
                        for (r, row) in arows.iter_mut().enumerate() {
                            *row = &d.a[d.a_rows[i + r] + s * d.a_step..][..d.len];
                        }
                        let mut brows = [&d.b[..0]; TJ];
                        for (c, row) in brows.iter_mut().enumerate() {
                            *row = &d.b[d.b_rows[j + c] + s * d.b_step..][..d.len];
                        }
                        dot_groups(&mut acc, &arows, &brows, d.len);
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        for (c, acc) in acc.iter().enumerate() {
                            out[(i + r) * d.ldo + j + c] = across(acc);
                        }
                    }
                }
            }
        };
    }

    /// The kernels of both element types for one set of CPU features: the broadcast kernel's
    /// vectors (type, lanes, zero, broadcast, multiply-add, load, store, lanes out) for `f32` and
    /// for `f64`, its panel width in vectors and its tile height.
    macro_rules! kernels_for_features {
        ($f32:ident, $f64:ident, $features:literal,
         f32: ($($w32:tt)*), f64: ($($w64:tt)*), $vectors:literal, $rows:literal,
         [$($left:literal)*]) => {
            kernels!(
                $f32,
                f32,
                std::arch::x86_64::__m256,
                8,
                _mm256_setzero_ps,
                _mm256_broadcast_ss,
                _mm256_fmadd_ps,
                load_f32,
                lanes_f32,
                $($w32)*,
                $features,
                $vectors,
                $rows,
                [$($left)*]
            );
            kernels!(
                $f64,
                f64,
                std::arch::x86_64::__m256d,
                4,
                _mm256_setzero_pd,
                _mm256_broadcast_sd,
                _mm256_fmadd_pd,
                load_f64,
                lanes_f64,
                $($w64)*,
                $features,
                $vectors,
                $rows,
                [$($left)*]
            );
        };
    }

    // 16 registers: tiles of 4 rows by two 256-bit vectors.
    kernels_for_features!(
        avx2_f32,
        avx2_f64,
        "avx2,fma",
        f32: (
            std::arch::x86_64::__m256, 8, _mm256_setzero_ps, _mm256_broadcast_ss, _mm256_fmadd_ps,
            load_f32, store_f32, lanes_f32
        ),
        f64: (
            std::arch::x86_64::__m256d, 4, _mm256_setzero_pd, _mm256_broadcast_sd, _mm256_fmadd_pd,
            load_f64, store_f64, lanes_f64
        ),
        2,
        4,
        [1 2 3]
    );
    // 32 registers: tiles of 9 rows by three 512-bit vectors (27 accumulators).
    kernels_for_features!(
        avx512_f32,
        avx512_f64,
        "avx2,fma,avx512f,avx512vl",
        f32: (
            std::arch::x86_64::__m512, 16, _mm512_setzero_ps, splat_f32x16, _mm512_fmadd_ps,
            load_f32x16, store_f32x16, lanes_f32x16
        ),
        f64: (
            std::arch::x86_64::__m512d, 8, _mm512_setzero_pd, splat_f64x8, _mm512_fmadd_pd,
            load_f64x8, store_f64x8, lanes_f64x8
        ),
        3,
        9,
        [1 2 3 4 5 6 7 8]
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::randn;
    use ndarray::Array2;
    use rand::{RngExt, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// `m`, or its transpose.
    fn op<A>(m: &Array2<A>, t: bool) -> ArrayView2<'_, A> {
        if t { m.t() } else { m.view() }
    }

    /// `op(a) · op(b)` by the definition, summed in `f64`.
    fn naive<A: NdFloat>(a: ArrayView2<'_, A>, b: ArrayView2<'_, A>) -> Array2<f64> {
        let f = |v: A| v.to_f64().expect("finite");
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|p| f(a[[i, p]]) * f(b[[p, j]])).sum()
        })
    }

    /// Every layout, random shapes (edges of every size around the tiles, and in one case of 9 a
    /// shared dimension as long as a convolution's), random blocks written at random
    /// places of a larger output, whose other elements must stay untouched; a scratch buffer
    /// sized by `reserve_scratch` never grows.
    fn matches_naive<A: NdFloat>(tolerance: f64) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for case in 0..400 {
            let long = case % 9 == 2;
            let m = rng.random_range(1..40);
            let k = if long {
                rng.random_range(200..1400)
            } else {
                rng.random_range(0..70)
            };
            let n = rng.random_range(1..if long { 30 } else { 120 });
            let (a_t, b_t) = [(false, false), (true, false), (false, true), (true, true)][case % 4];
            let a: Array2<A> = randn(if a_t { (k, m) } else { (m, k) }, 1.0, &mut rng);
            let b: Array2<A> = randn(if b_t { (n, k) } else { (k, n) }, 1.0, &mut rng);
            let expected = naive(
                if a_t { a.t() } else { a.view() },
                if b_t { b.t() } else { b.view() },
            );
            let r0 = rng.random_range(0..m);
            let r1 = rng.random_range(r0 + 1..=m);
            let c0 = rng.random_range(0..n);
            let c1 = rng.random_range(c0 + 1..=n);
            let at = (rng.random_range(0..3), rng.random_range(0..3));
            let shape = (at.0 + r1 - r0 + 1, at.1 + c1 - c0 + 2);
            let sentinel = A::from(12345.0).unwrap();
            for kernels in Kernels::all_here() {
                let mut out = Array2::from_elem(shape, sentinel);
                let mut scratch = Vec::new();
                reserve_scratch(&mut scratch, op(&a, a_t), op(&b, b_t));
                let room = scratch.capacity();
                let (rows, cols) = (r0..r1, c0..c1);
                product(
                    kernels,
                    op(&a, a_t),
                    op(&b, b_t),
                    rows,
                    cols,
                    out.view_mut(),
                    at,
                    &mut scratch,
                );
                assert_eq!(scratch.capacity(), room, "case {case}: the scratch grew");
                let case = format!("case {case}, {kernels:?}");
                for ((i, j), &v) in out.indexed_iter() {
                    let inside =
                        (at.0..at.0 + r1 - r0).contains(&i) && (at.1..at.1 + c1 - c0).contains(&j);
                    if !inside {
                        assert_eq!(
                            v, sentinel,
                            "case {case}: ({i}, {j}) outside the block written"
                        );
                        continue;
                    }
                    let e = expected[[r0 + i - at.0, c0 + j - at.1]];
                    let v = v.to_f64().unwrap();
                    // Rounding grows with the square root of the terms summed.
                    let terms = (k as f64 / 64.0).max(1.0).sqrt();
                    assert!(
                        (v - e).abs() <= tolerance * terms * (1.0 + e.abs()),
                        "case {case}: {m}x{k}x{n} (a_t {a_t}, b_t {b_t}) at ({i}, {j}): {v} vs {e}"
                    );
                }
            }
        }
    }

    /// Shifted products and dot products at random shapes and offsets (rows that overlap, as a
    /// convolution's do, rows of every count around the tiles, shared dimensions up to a
    /// convolution's 576), written into a larger output whose other elements must stay
    /// untouched, against their definitions summed in `f64`; the vector kernels give the same
    /// bits whatever the CPU's features.
    fn shifted_match_the_definition<A: NdFloat>(tolerance: f64) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
        let f = |v: A| v.to_f64().expect("finite");
        let close = |v: A, e: f64, terms: usize| {
            let terms = (terms as f64 / 64.0).max(1.0).sqrt();
            (f(v) - e).abs() <= tolerance * terms * (1.0 + e.abs())
        };
        let sentinel = A::from(12345.0).unwrap();
        let simd = |k: &Kernels| *k != Kernels::Portable;
        for case in 0..60 {
            // A · B with B's rows at offsets.
            let (m, k) = (rng.random_range(1..30), rng.random_range(1..600));
            let n = SHIFTED_GROUP * rng.random_range(1..8);
            let (lda, ldo) = (k + rng.random_range(0..3), n + rng.random_range(0..3));
            let b: Vec<A> = randn(3 * n + 40, 1.0, &mut rng).to_vec();
            let offsets: Vec<usize> = (0..k).map(|_| rng.random_range(0..=2 * n + 40)).collect();
            let a: Vec<A> = randn(m * lda, 1.0, &mut rng).to_vec();
            let p = ShiftedProduct {
                a: &a,
                lda,
                m,
                b: &b,
                offsets: &offsets,
                n,
                ldo,
            };
            let mut seen: Option<Vec<A>> = None;
            for kernels in Kernels::all_here() {
                let mut out = vec![sentinel; m * ldo + 1];
                shifted_product(kernels, &p, &mut out);
                for (e, &v) in out.iter().enumerate() {
                    let (i, j) = (e / ldo, e % ldo);
                    if i >= m || j >= n {
                        assert_eq!(v, sentinel, "case {case}, {kernels:?}: {e} written");
                        continue;
                    }
                    let sum: f64 = (0..k)
                        .map(|q| f(a[i * lda + q]) * f(b[offsets[q] + j]))
                        .sum();
                    assert!(
                        close(v, sum, k),
                        "case {case}, {kernels:?}: ({i}, {j}) {v} vs {sum}"
                    );
                }
                if simd(&kernels) {
                    if let Some(seen) = &seen {
                        assert_eq!(seen, &out, "case {case}: {kernels:?} differs");
                    }
                    seen = Some(out);
                }
            }
            // A · Bᵀ of runs cut into segments.
            let (m, n) = (rng.random_range(1..20), rng.random_range(1..40));
            let (segments, len) = (
                rng.random_range(1..6),
                SHIFTED_GROUP * rng.random_range(1..5),
            );
            let (a_step, b_step) = (len + rng.random_range(0..50), rng.random_range(0..len + 50));
            let a: Vec<A> = randn(segments * a_step + len + 60, 1.0, &mut rng).to_vec();
            let b: Vec<A> = randn(segments * b_step + len + 60, 1.0, &mut rng).to_vec();
            let a_rows: Vec<usize> = (0..m).map(|_| rng.random_range(0..=60)).collect();
            let b_rows: Vec<usize> = (0..n).map(|_| rng.random_range(0..=60)).collect();
            let ldo = n + 1;
            let d = ShiftedDot {
                a: &a,
                a_rows: &a_rows,
                a_step,
                b: &b,
                b_rows: &b_rows,
                b_step,
                segments,
                len,
                ldo,
            };
            let mut seen: Option<Vec<A>> = None;
            for kernels in Kernels::all_here() {
                let mut out = vec![sentinel; m * ldo];
                shifted_dot(kernels, &d, &mut out);
                for (e, &v) in out.iter().enumerate() {
                    let (i, j) = (e / ldo, e % ldo);
                    if j >= n {
                        assert_eq!(v, sentinel, "case {case}, {kernels:?}: {e} written");
                        continue;
                    }
                    let sum: f64 = (0..segments)
                        .flat_map(|s| (0..len).map(move |q| (s, q)))
                        .map(|(s, q)| {
                            f(a[a_rows[i] + s * a_step + q]) * f(b[b_rows[j] + s * b_step + q])
                        })
                        .sum();
                    assert!(
                        close(v, sum, segments * len),
                        "case {case}, {kernels:?}: dot ({i}, {j}) {v} vs {sum}"
                    );
                }
                if simd(&kernels) {
                    if let Some(seen) = &seen {
                        assert_eq!(seen, &out, "case {case}: {kernels:?} differs");
                    }
                    seen = Some(out);
                }
            }
        }
    }

    #[test]
    fn shifted_products_match_the_definition_f32() {
        shifted_match_the_definition::<f32>(1e-5);
    }

    #[test]
    fn shifted_products_match_the_definition_f64() {
        shifted_match_the_definition::<f64>(1e-13);
    }

    /// A shifted product's bounds are checked before any kernel reads: a row that starts too
    /// late for its `n` columns is refused, naming the sizes.
    #[test]
    fn shifted_products_refuse_rows_past_the_end() {
        let (a, b) = (vec![1.0f32; 2], vec![0.0f32; 40]);
        let p = ShiftedProduct {
            a: &a,
            lda: 2,
            m: 1,
            b: &b,
            offsets: &[0, 25],
            n: 16,
            ldo: 16,
        };
        let mut out = vec![0.0; 16];
        let err =
            std::panic::catch_unwind(move || shifted_product(Kernels::detect(), &p, &mut out))
                .expect_err("row 1 reaches element 41 of 40");
        let message = err.downcast_ref::<String>().expect("a formatted message");
        assert!(message.contains("offsets up to 41 of 40"), "{message}");
    }

    #[test]
    fn products_match_the_definition_f32() {
        matches_naive::<f32>(1e-5);
    }

    #[test]
    fn products_match_the_definition_f64() {
        matches_naive::<f64>(1e-13);
    }

    /// Hand-computed: [[1, 2], [3, 4]] · [[5, 6], [7, 8]] = [[19, 22], [43, 50]], with each operand
    /// stored as is or transposed, by every kind of kernel.
    #[test]
    fn a_two_by_two_product() {
        let a = ndarray::array![[1.0, 2.0], [3.0, 4.0]];
        let b = ndarray::array![[5.0, 6.0], [7.0, 8.0]];
        let (at, bt) = (a.t().to_owned(), b.t().to_owned());
        let expected = ndarray::array![[19.0, 22.0], [43.0, 50.0]];
        for (x, x_t, y, y_t) in [
            (&a, false, &b, false),
            (&at, true, &b, false),
            (&a, false, &bt, true),
            (&at, true, &bt, true),
        ] {
            for kernels in Kernels::all_here() {
                let mut out = Array2::zeros((2, 2));
                let scratch = &mut Vec::new();
                product(
                    kernels,
                    op(x, x_t),
                    op(y, y_t),
                    0..2,
                    0..2,
                    out.view_mut(),
                    (0, 0),
                    scratch,
                );
                assert_eq!(out, expected, "{kernels:?}");
            }
        }
    }

    /// A shared dimension of 0 sums nothing: the block is zeros, the rest of the output untouched.
    #[test]
    fn an_empty_shared_dimension_gives_zeros() {
        for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = Array2::<f32>::zeros(if a_t { (0, 3) } else { (3, 0) });
            let b = Array2::<f32>::zeros(if b_t { (9, 0) } else { (0, 9) });
            let mut out = Array2::from_elem((4, 9), 7.0);
            product(
                Kernels::detect(),
                op(&a, a_t),
                op(&b, b_t),
                0..3,
                2..9,
                out.view_mut(),
                (1, 0),
                &mut Vec::new(),
            );
            let zeros = out.indexed_iter().filter(|&(_, &v)| v == 0.0).count();
            assert_eq!(zeros, 3 * 7, "{a_t} {b_t}");
            assert!(out.row(0).iter().all(|&v| v == 7.0));
            assert!(out.slice(ndarray::s![1.., 7..]).iter().all(|&v| v == 7.0));
        }
    }

    /// A block computed alone equals the same block of the whole product, bit for bit, at the
    /// shapes of a training step and at odd ones; and bp-core's vector kernels give the same bits
    /// whatever the CPU's features.
    #[test]
    fn blocks_equal_the_whole_product_bit_for_bit() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        // The widest kernels here (the portable ones too under `BP_NO_SIMD=1`).
        let best = *Kernels::all_here()
            .last()
            .expect("the portable kernels run anywhere");
        for (m, k, n) in [(100, 784, 50), (37, 101, 53), (9, 13, 7)] {
            for (a_t, b_t) in [(false, false), (true, false), (false, true)] {
                let a: Array2<f32> = randn(if a_t { (k, m) } else { (m, k) }, 1.0, &mut rng);
                let b: Array2<f32> = randn(if b_t { (n, k) } else { (k, n) }, 1.0, &mut rng);
                let mut whole = Array2::zeros((m, n));
                let mut scratch = Vec::new();
                product(
                    best,
                    op(&a, a_t),
                    op(&b, b_t),
                    0..m,
                    0..n,
                    whole.view_mut(),
                    (0, 0),
                    &mut scratch,
                );
                for kernels in Kernels::all_here() {
                    if kernels == Kernels::Portable {
                        continue;
                    }
                    let mut again = Array2::zeros((m, n));
                    let (rows, cols) = (0..m, 0..n);
                    product(
                        kernels,
                        op(&a, a_t),
                        op(&b, b_t),
                        rows,
                        cols,
                        again.view_mut(),
                        (0, 0),
                        &mut scratch,
                    );
                    assert_eq!(again, whole, "{m}x{k}x{n} {a_t} {b_t} {kernels:?}");
                }
                let (hm, hn) = (m / 2, n / 2);
                for (rows, cols) in [(0..hm, 0..n), (hm..m, 0..n), (0..m, 0..hn), (0..m, hn..n)] {
                    let mut part = Array2::zeros((rows.len(), cols.len()));
                    product(
                        best,
                        op(&a, a_t),
                        op(&b, b_t),
                        rows.clone(),
                        cols.clone(),
                        part.view_mut(),
                        (0, 0),
                        &mut scratch,
                    );
                    let expected = whole.slice(ndarray::s![rows.clone(), cols.clone()]);
                    assert_eq!(part, expected, "{m}x{k}x{n} {a_t} {b_t} {rows:?} {cols:?}");
                }
            }
        }
    }
}
