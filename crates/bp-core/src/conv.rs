//! The convolution layer.

use ndarray::{Array1, Array2, ArrayD, ArrayViewD, IxDyn, NdFloat};
use rand::Rng;

use crate::batch::for_each_part;
use crate::gemm::{
    Kernels, SHIFTED_GROUP, ShiftedDot, ShiftedProduct, shifted_dot, shifted_product,
};
use crate::im2col::{Geometry, col2im_into, im2col_into, pad_into};
use crate::init::{Init, randn};
use crate::layer::{Layer, Param, ParamKind, load_into};
use crate::matmul::Products;

/// The samples of a batch that one part of the work takes: its images are unrolled, multiplied
/// and rolled back by one thread. A fixed number, so that the parts (and so the sums of `dW` over
/// them) are the same whatever the number of threads.
const SAMPLES_PER_PART: usize = 5;

/// The convolution layer of chapter 7: `FN` filters of `C x FH x FW` slide over images with a
/// stride and zero padding, `out[n, f, oh, ow] = b[f] + Σ_{c, kh, kw} W[f, c, kh, kw] ·
/// x[n, c, oh·S + kh - P, ow·S + kw - P]`.
///
/// As in the book, forward unrolls the images ([`im2col`](crate::im2col)) and computes the
/// output with one matrix product, `W · col` (the filters as a `FN x C·FH·FW` matrix); backward
/// computes `dW = dout · colᵀ`, `db = Σ dout` over samples and positions, and `dx` by rolling
/// `Wᵀ · dout` back into images ([`col2im`](crate::col2im), which adds where windows overlap).
/// [`backward_params`](Layer::backward_params), a first layer's backward, skips `dx`.
///
/// At stride 1 (where the padded rows are at most a quarter longer than the output's), nothing
/// is unrolled: each part copies its images into zero-padded planes, and the products read the
/// runs of those planes that `im2col` would have copied (the shifted layout, see `Shifts`), so
/// that the images are read from the caches instead of from a matrix nine times their size; `dx`
/// is the same kind of product, of the filters with shifted runs of `dout`, rather than `Wᵀ ·
/// dout` rolled back with `col2im`.
///
/// # Shapes
///
/// `W`: (FN, C, FH, FW), as the book's and PyTorch's `Conv2d`; `b`: (FN); `x`: (N, C, H, W) of any
/// `H` and `W` the padded window fits; output and `dout`: (N, FN, OH, OW) with
/// `OH = (H + 2P - FH) / S + 1` and `OW` alike; `dx`: shaped like `x`.
///
/// # Parameters
///
/// Visited in the order `"W"`, `"b"`.
///
/// # Threads and buffers
///
/// The batch is cut into parts of 5 samples, shared over bp-core's rayon pool (all on the calling
/// thread with [`set_threads(1)`](crate::set_threads)); the parts' `dW` and `db` are then summed in their
/// order, so results are the same bit for bit whatever the number of threads. Each part keeps its
/// unrolled images and product buffers from one step to the next, and the layer keeps the input's
/// storage for `dx` and `dout`'s for the next output: a steady training loop allocates nothing.
///
/// # Example
///
/// ```
/// use bp_core::{Convolution, Layer};
/// use ndarray::{Array, array};
///
/// // One 2 x 2 filter that sums its window, bias 1, over a 3 x 3 image.
/// let mut conv = Convolution::<f64>::new(Array::ones((1, 1, 2, 2)), array![1.0], 1, 0);
/// let x = Array::from_shape_vec((1, 1, 3, 3), (1..=9).map(f64::from).collect()).unwrap();
/// let out = conv.forward(x.into_dyn());
/// assert_eq!(out.shape(), [1, 1, 2, 2]);
/// assert_eq!(out.iter().copied().collect::<Vec<_>>(), [13.0, 17.0, 25.0, 29.0]);
/// // dout of ones: each pixel's gradient counts the windows it is in.
/// let dx = conv.backward(Array::ones((1, 1, 2, 2)).into_dyn());
/// assert_eq!(dx.iter().copied().collect::<Vec<_>>(), [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
/// assert_eq!(conv.db(), &array![4.0]);
/// ```
#[derive(Clone, Debug)]
pub struct Convolution<A> {
    /// The filters as a matrix, (FN, C·FH·FW).
    w: Array2<A>,
    b: Array1<A>,
    dw: Array2<A>,
    db: Array1<A>,
    /// Channels, rows and columns of a filter.
    filter: [usize; 3],
    stride: usize,
    pad: usize,
    /// The parts of the last training batch, with their buffers.
    parts: Vec<Part<A>>,
    /// The last training input's storage (its values are unrolled in `parts`), to hold `dx`.
    x: Option<ArrayD<A>>,
    /// The geometry of the last training input, and where its shifted layout reads.
    geometry: Option<Geometry>,
    shifts: Option<Shifts>,
    /// The filters as `(C, FN·FH·FW)`, for `dx` in the shifted layout.
    wt: Vec<A>,
    /// Storage recycled from the last `dout`, for the next output.
    spare: Option<ArrayD<A>>,
}

/// Where the products of the shifted layout read (at stride 1, see
/// [`Geometry::shifted_layout`]): a row `(c, kh, kw)` of a sample's unrolled images is the run of
/// its padded plane `c` that starts `kh·(W + 2P) + kw` in, so the products read the planes where
/// `im2col` would copy them.
///
/// A sample's output comes out in rows as long as the padded rows, `OH·(W + 2P)` columns rounded
/// up to a multiple of [`SHIFTED_GROUP`]; the columns past `OW` in each row, and those past the
/// last row, are computed and dropped. Backward puts each filter's `dout` in a region of zeros
/// laid out the same way, so that `dW` takes dot products of those regions with the planes'
/// runs (their dropped columns meet zeros), and `dx` is a product of the same kind: the padded
/// image's gradient at `q` sums `W[f, c, kh, kw] · dout[f]` at `q - kh·(W + 2P) - kw`, the runs of
/// the regions that start `kh·(W + 2P) + kw` before `q`, with zeros where a window falls outside
/// the output.
#[derive(Clone, Debug)]
struct Shifts {
    /// Output columns of a sample.
    cols: usize,
    /// Columns of a sample's `dx` in padded rows: its `H` interior rows of `W + 2P`, from the
    /// first interior row, rounded up to a multiple of [`SHIFTED_GROUP`].
    dx_cols: usize,
    /// Zeros before a filter's `dout` in its region, `(FH - 1)·(W + 2P) + FW - 1`, so that every
    /// run `dx` reads starts inside the region.
    margin: usize,
    /// Elements of a region: the margin, then room for what `dW` and `dx` read.
    region: usize,
    /// Where row `(c, kh, kw)` of a sample's unrolled images starts in its padded planes.
    x_rows: Vec<usize>,
    /// Where filter `f`'s `dout` starts in a sample's regions, `f·region + margin`.
    dout_rows: Vec<usize>,
    /// Where row `(f, kh, kw)` of the runs `dx` reads starts in a sample's regions:
    /// `f·region + margin + P·(W + 2P) - kh·(W + 2P) - kw` (column 0 of `dx` is the first
    /// interior row's).
    dx_rows: Vec<usize>,
}

impl Shifts {
    fn new(g: &Geometry, filters: usize) -> Self {
        let wp = g.padded_width();
        let round = |n: usize| n.div_ceil(SHIFTED_GROUP) * SHIFTED_GROUP;
        let (cols, dx_cols) = (round(g.oh * wp), round(g.height * wp));
        let (plane, margin) = (g.padded_plane(), (g.fh - 1) * wp + g.fw - 1);
        let region = margin + cols.max(g.pad * wp + dx_cols);
        let windows = |first: usize| {
            (0..g.fh).flat_map(move |kh| (0..g.fw).map(move |kw| first + kh * wp + kw))
        };
        let x_rows = (0..g.channels).flat_map(|c| windows(c * plane)).collect();
        let dout_rows: Vec<usize> = (0..filters).map(|f| f * region + margin).collect();
        let dx_rows = dout_rows
            .iter()
            .flat_map(|&start| windows(0).map(move |back| start + g.pad * wp - back))
            .collect();
        Shifts {
            cols,
            dx_cols,
            margin,
            region,
            x_rows,
            dout_rows,
            dx_rows,
        }
    }

    /// Elements of a part's images in padded planes: the planes, then the elements the last
    /// sample's last runs read past them (its rounded-up columns).
    fn padded_len(&self, g: &Geometry, samples: usize) -> usize {
        samples * g.channels * g.padded_plane() + self.cols - g.oh * g.padded_width()
    }
}

/// The buffers of one part of a batch.
#[derive(Clone, Debug)]
struct Part<A> {
    /// The part's samples.
    samples: usize,
    /// In the shifted layout ([`Shifts`]), its images in padded planes, whose borders (and the
    /// elements past the last plane) stay zero; empty otherwise.
    padded: Vec<A>,
    /// In the shifted layout, its `dout` in a region of zeros for each sample and filter (grown by
    /// the first backward pass).
    regions: Vec<A>,
    /// In the shifted layout, one sample's `dx` in padded rows, (C, `dx_cols`).
    dx_rows: Vec<A>,
    /// In the unrolled layout, its images unrolled, (C·FH·FW, samples·OH·OW); in backward,
    /// `Wᵀ · dout` once `dW` is done. Empty in the shifted layout.
    col: Array2<A>,
    /// Unrolled: `W · col`, (FN, samples·OH·OW), in backward the part's `dout` in that layout.
    /// Shifted: one sample's output, (FN, `cols`).
    out: Array2<A>,
    /// The part's share of `dW` and `db`.
    dw: Array2<A>,
    db: Vec<A>,
    products: Products<A>,
}

impl<A: NdFloat> Part<A> {
    fn new(samples: usize, g: &Geometry, shifts: Option<&Shifts>, filters: usize) -> Self {
        let (padded, col, out) = match shifts {
            Some(s) => (s.padded_len(g, samples), (0, 0), (filters, s.cols)),
            None => {
                let cols = samples * g.positions();
                (0, (g.rows(), cols), (filters, cols))
            }
        };
        Part {
            samples,
            padded: vec![A::zero(); padded],
            regions: Vec::new(),
            dx_rows: Vec::new(),
            col: Array2::zeros(col),
            out: Array2::zeros(out),
            dw: Array2::zeros((filters, g.rows())),
            db: vec![A::zero(); filters],
            products: Products::new(),
        }
    }
}

/// The parts of a batch of `n` samples.
fn parts<A: NdFloat>(
    n: usize,
    g: &Geometry,
    shifts: Option<&Shifts>,
    filters: usize,
) -> Vec<Part<A>> {
    (0..n.div_ceil(SAMPLES_PER_PART))
        .map(|i| {
            let samples = SAMPLES_PER_PART.min(n - i * SAMPLES_PER_PART);
            Part::new(samples, g, shifts, filters)
        })
        .collect()
}

/// Writes a sample's output for one filter, `dst` (OH, OW), from `src`, its output rows
/// `row_len` apart, adding the bias.
fn add_bias_into<A: NdFloat>(dst: &mut [A], src: &[A], row_len: usize, ow: usize, bias: A) {
    for (dst, src) in dst.chunks_exact_mut(ow).zip(src.chunks(row_len)) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s + bias;
        }
    }
}

/// Computes a part's output, `W · col + b`, in NCHW.
fn forward_part<A: NdFloat>(
    (w, b): (&Array2<A>, &Array1<A>),
    g: &Geometry,
    shifts: Option<&Shifts>,
    part: &mut Part<A>,
    x: &[A],
    out: &mut [A],
) {
    let (p, fnum) = (g.positions(), w.nrows());
    let Some(s) = shifts else {
        im2col_into(x, g, part.samples, slice_mut(&mut part.col));
        part.products
            .matmul_into_alone(w.view(), part.col.view(), part.out.view_mut());
        // (FN, samples·OH·OW) to (samples, FN, OH, OW).
        for (f, (row, &bias)) in part.out.rows().into_iter().zip(b).enumerate() {
            let row = row.to_slice().expect("a row of a standard-layout array");
            for (n, src) in row.chunks_exact(p).enumerate() {
                add_bias_into(&mut out[(n * fnum + f) * p..][..p], src, g.ow, g.ow, bias);
            }
        }
        return;
    };
    let images = g.channels * g.padded_plane();
    pad_into(
        x,
        g,
        part.samples,
        &mut part.padded[..part.samples * images],
    );
    let kernels = Kernels::detect();
    for (n, out) in out.chunks_exact_mut(fnum * p).enumerate() {
        let product = ShiftedProduct {
            a: w.as_slice().expect("W is contiguous"),
            lda: w.ncols(),
            m: fnum,
            b: &part.padded[n * images..],
            offsets: &s.x_rows,
            n: s.cols,
            ldo: s.cols,
        };
        shifted_product(kernels, &product, slice_mut(&mut part.out));
        for ((row, &bias), dst) in part
            .out
            .rows()
            .into_iter()
            .zip(b)
            .zip(out.chunks_exact_mut(p))
        {
            let row = row.to_slice().expect("a row of a standard-layout array");
            add_bias_into(dst, row, g.padded_width(), g.ow, bias);
        }
    }
}

/// A part's backward pass in the shifted layout: its `dW` and `db` shares, and `dx` if `wt` (the
/// filters as `(C, FN·FH·FW)`) is given.
fn backward_shifted<A: NdFloat>(
    g: &Geometry,
    s: &Shifts,
    part: &mut Part<A>,
    dout: &[A],
    wt: Option<&[A]>,
    dx: &mut [A],
) {
    let fnum = part.db.len();
    let (p, wp) = (g.positions(), g.padded_width());
    let regions = part.samples * fnum * s.region;
    if part.regions.len() != regions {
        part.regions.clear();
        part.regions.resize(regions, A::zero());
    }
    // (samples, FN, OH, OW) into the regions, and db's share, summed over the samples in order.
    part.db.fill(A::zero());
    for (i, (dout, region)) in dout
        .chunks_exact(p)
        .zip(part.regions.chunks_exact_mut(s.region))
        .enumerate()
    {
        for (src, dst) in dout
            .chunks_exact(g.ow)
            .zip(region[s.margin..].chunks_mut(wp))
        {
            dst[..g.ow].copy_from_slice(src);
        }
        part.db[i % fnum] += sum(dout);
    }
    let kernels = Kernels::detect();
    let d = ShiftedDot {
        a: &part.regions,
        a_rows: &s.dout_rows,
        a_step: fnum * s.region,
        b: &part.padded,
        b_rows: &s.x_rows,
        b_step: g.channels * g.padded_plane(),
        segments: part.samples,
        len: s.cols,
        ldo: g.rows(),
    };
    shifted_dot(kernels, &d, slice_mut(&mut part.dw));
    let Some(wt) = wt else { return };
    part.dx_rows.resize(g.channels * s.dx_cols, A::zero());
    let plane = g.height * g.width;
    for (dx, regions) in dx
        .chunks_exact_mut(g.input_len())
        .zip(part.regions.chunks_exact(fnum * s.region))
    {
        let product = ShiftedProduct {
            a: wt,
            lda: s.dx_rows.len(),
            m: g.channels,
            b: regions,
            offsets: &s.dx_rows,
            n: s.dx_cols,
            ldo: s.dx_cols,
        };
        shifted_product(kernels, &product, &mut part.dx_rows);
        for (image, rows) in dx
            .chunks_exact_mut(plane)
            .zip(part.dx_rows.chunks_exact(s.dx_cols))
        {
            for (dst, src) in image
                .chunks_exact_mut(g.width)
                .zip(rows[g.pad..].chunks(wp))
            {
                dst.copy_from_slice(&src[..g.width]);
            }
        }
    }
}

/// The sum of `v` in 16 running sums (independent adds, which pipeline and vectorise; one running
/// sum waits for each add), then of those and the elements left over, in order.
fn sum<A: NdFloat>(v: &[A]) -> A {
    let mut lanes = [A::zero(); 16];
    let groups = v.chunks_exact(16);
    let rest = groups.remainder();
    for group in groups {
        for (lane, &x) in lanes.iter_mut().zip(group) {
            *lane += x;
        }
    }
    lanes.iter().chain(rest).fold(A::zero(), |s, &x| s + x)
}

fn slice_mut<A>(a: &mut Array2<A>) -> &mut [A] {
    a.as_slice_mut()
        .expect("the layer's buffers are contiguous")
}

impl<A: NdFloat> Convolution<A> {
    /// A convolution with filters `w` (FN, C, FH, FW), bias `b` (FN), `stride` and zero padding
    /// `pad`. Gradients start at zero.
    ///
    /// # Panics
    ///
    /// If `w` is not 4-dimensional or has an axis of length 0, `b` does not have `FN` elements,
    /// or the stride is 0.
    #[track_caller]
    pub fn new(w: ndarray::Array4<A>, b: Array1<A>, stride: usize, pad: usize) -> Self {
        let (fnum, c, fh, fw) = w.dim();
        assert!(
            fnum * c * fh * fw > 0 && b.len() == fnum && stride > 0,
            "Convolution::new: W of shape {:?}, b of shape {:?} and stride {stride}: W needs \
             positive axes, b one element per filter and the stride must be positive",
            w.shape(),
            b.shape()
        );
        let w = w
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((fnum, c * fh * fw))
            .expect("the element count is kept");
        Convolution {
            dw: Array2::zeros(w.raw_dim()),
            db: Array1::zeros(fnum),
            w,
            b,
            filter: [c, fh, fw],
            stride,
            pad,
            parts: Vec::new(),
            x: None,
            geometry: None,
            shifts: None,
            wt: Vec::new(),
            spare: None,
        }
    }

    /// `filters` filters of `channels x size.0 x size.1` with weights drawn from `init` (its
    /// `fan_in` is `channels·size.0·size.1`) using `rng`, and zero bias, as the book's
    /// `weight_init_std * np.random.randn(FN, C, FH, FW)`.
    ///
    /// ```
    /// use bp_core::{Convolution, Init};
    /// use rand::SeedableRng;
    ///
    /// let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
    /// let conv = Convolution::<f32>::random(30, 1, (5, 5), 1, 0, Init::Std(0.01), &mut rng);
    /// assert_eq!(conv.w_shape(), [30, 1, 5, 5]);
    /// assert!(conv.b().iter().all(|&b| b == 0.0));
    /// ```
    pub fn random<R: Rng + ?Sized>(
        filters: usize,
        channels: usize,
        size: (usize, usize),
        stride: usize,
        pad: usize,
        init: Init,
        rng: &mut R,
    ) -> Self {
        let fan_in = channels * size.0 * size.1;
        let w = randn(
            (filters, channels, size.0, size.1),
            init.std_dev(fan_in),
            rng,
        );
        Convolution::new(w, Array1::zeros(filters), stride, pad)
    }

    /// The shape of `W`, (FN, C, FH, FW).
    pub fn w_shape(&self) -> [usize; 4] {
        let [c, fh, fw] = self.filter;
        [self.w.nrows(), c, fh, fw]
    }

    /// The filters `W`, (FN, C, FH, FW).
    pub fn w(&self) -> ArrayViewD<'_, A> {
        self.w
            .view()
            .into_shape_with_order(IxDyn(&self.w_shape()))
            .expect("W holds FN·C·FH·FW elements")
    }

    /// The bias `b`, (FN).
    pub fn b(&self) -> &Array1<A> {
        &self.b
    }

    /// The gradient `dW` written by the last backward pass, (FN, C, FH, FW).
    pub fn dw(&self) -> ArrayViewD<'_, A> {
        self.dw
            .view()
            .into_shape_with_order(IxDyn(&self.w_shape()))
            .expect("dW holds FN·C·FH·FW elements")
    }

    /// The gradient `db` written by the last backward pass, (FN).
    pub fn db(&self) -> &Array1<A> {
        &self.db
    }

    /// The stride and the padding.
    pub fn stride_pad(&self) -> (usize, usize) {
        (self.stride, self.pad)
    }

    /// The geometry for input `x`, checking its shape.
    #[track_caller]
    fn geometry(&self, shape: &[usize]) -> Geometry {
        let [c, fh, fw] = self.filter;
        let g = match *shape {
            [_, xc, h, w] if xc == c => Geometry::new([c, h, w], (fh, fw), self.stride, self.pad),
            _ => None,
        };
        g.unwrap_or_else(|| {
            panic!(
                "Convolution: input of shape {shape:?} is not (N, {c}, H, W) with H and W padded \
                 by {} at least {fh} x {fw}, for W of shape {:?}",
                self.pad,
                self.w_shape()
            )
        })
    }

    /// The output shape for `n` samples.
    fn out_shape(&self, n: usize, g: &Geometry) -> [usize; 4] {
        [n, self.w.nrows(), g.oh, g.ow]
    }

    /// Checks `dout`, then writes `dW` and `db`, and `dx` into the input's storage if `want_dx`.
    #[track_caller]
    fn backward_into(&mut self, dout: ArrayD<A>, want_dx: bool) -> ArrayD<A> {
        let (Some(mut dx), Some(g)) = (self.x.take(), self.geometry) else {
            panic!("Convolution::backward called without a preceding forward");
        };
        let expected = self.out_shape(dx.shape()[0], &g);
        assert!(
            dout.shape() == expected,
            "Convolution::backward: dout has shape {:?}, but the last output had shape {expected:?}",
            dout.shape()
        );
        let dout = if dout.is_standard_layout() {
            dout
        } else {
            dout.as_standard_layout().into_owned()
        };
        let w = &self.w;
        let (p, fnum) = (g.positions(), w.nrows());
        let shifts = self.shifts.as_ref();
        if want_dx && shifts.is_some() {
            // wt[c, (f, kh, kw)] = W[f, (c, kh, kw)].
            let window = g.fh * g.fw;
            self.wt.resize(w.len(), A::zero());
            for (f, row) in w.rows().into_iter().enumerate() {
                for (c, src) in row
                    .as_slice()
                    .expect("W is contiguous")
                    .chunks_exact(window)
                    .enumerate()
                {
                    self.wt[(c * fnum + f) * window..][..window].copy_from_slice(src);
                }
            }
        }
        let wt = (want_dx && shifts.is_some()).then_some(&self.wt[..]);
        for_each_part(
            (&mut self.parts, 1),
            (
                dout.as_slice().expect("standard layout"),
                SAMPLES_PER_PART * fnum * p,
            ),
            (
                dx.as_slice_mut().expect("the kept input is contiguous"),
                SAMPLES_PER_PART * g.input_len(),
            ),
            |part, dout, dx| {
                let part = &mut part[0];
                if let Some(s) = shifts {
                    return backward_shifted(&g, s, part, dout, wt, dx);
                }
                // (samples, FN, OH, OW) to (FN, samples·OH·OW), and db's share.
                for (f, (mut row, db)) in part
                    .out
                    .rows_mut()
                    .into_iter()
                    .zip(&mut part.db)
                    .enumerate()
                {
                    let row = row
                        .as_slice_mut()
                        .expect("a row of a standard-layout array");
                    for (n, dst) in row.chunks_exact_mut(p).enumerate() {
                        dst.copy_from_slice(&dout[(n * fnum + f) * p..][..p]);
                    }
                    *db = sum(row);
                }
                part.products
                    .matmul_into_alone(part.out.view(), part.col.t(), part.dw.view_mut());
                if want_dx {
                    part.products
                        .matmul_into_alone(w.t(), part.out.view(), part.col.view_mut());
                    let dcol = part.col.as_slice().expect("contiguous");
                    col2im_into(dcol, &g, part.samples, dx);
                }
            },
        );
        // The parts' shares, summed in their order.
        let (first, rest) = self.parts.split_first().expect("a batch has a sample");
        self.dw.assign(&first.dw);
        self.db.iter_mut().zip(&first.db).for_each(|(d, &s)| *d = s);
        for part in rest {
            self.dw += &part.dw;
            self.db.iter_mut().zip(&part.db).for_each(|(d, &s)| *d += s);
        }
        self.spare = Some(dout);
        dx
    }
}

impl<A: NdFloat> Layer<A> for Convolution<A> {
    fn name(&self) -> &'static str {
        "Convolution"
    }

    #[track_caller]
    fn forward(&mut self, x: ArrayD<A>) -> ArrayD<A> {
        let g = self.geometry(x.shape());
        let n = x.shape()[0];
        assert!(n > 0, "Convolution: a batch of 0 samples");
        let x = if x.is_standard_layout() {
            x
        } else {
            x.as_standard_layout().into_owned()
        };
        let shape = self.out_shape(n, &g);
        let mut out = match self.spare.take() {
            Some(buf) if buf.shape() == shape => buf,
            _ => ArrayD::zeros(IxDyn(&shape)),
        };
        let fnum = self.w.nrows();
        let sizes_match = self.geometry == Some(g)
            && self.parts.iter().map(|p| p.samples).sum::<usize>() == n
            && self.parts.first().is_some_and(|p| p.dw.nrows() == fnum);
        if !sizes_match {
            self.shifts = g.shifted_layout().then(|| Shifts::new(&g, fnum));
            self.parts = parts(n, &g, self.shifts.as_ref(), fnum);
        }
        let (wb, shifts) = ((&self.w, &self.b), self.shifts.as_ref());
        for_each_part(
            (&mut self.parts, 1),
            (
                x.as_slice().expect("standard layout"),
                SAMPLES_PER_PART * g.input_len(),
            ),
            (
                out.as_slice_mut().expect("the output is contiguous"),
                SAMPLES_PER_PART * fnum * g.positions(),
            ),
            |part, x, out| forward_part(wb, &g, shifts, &mut part[0], x, out),
        );
        self.x = Some(x);
        self.geometry = Some(g);
        out
    }

    #[track_caller]
    fn backward(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        self.backward_into(dout, true)
    }

    #[track_caller]
    fn backward_params(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        self.backward_into(dout, false)
    }

    #[track_caller]
    fn predict(&self, x: ArrayD<A>) -> ArrayD<A> {
        let g = self.geometry(x.shape());
        let n = x.shape()[0];
        let x = x.as_standard_layout();
        let fnum = self.w.nrows();
        let mut out = ArrayD::zeros(IxDyn(&self.out_shape(n, &g)));
        if n == 0 {
            return out;
        }
        let shifts = g.shifted_layout().then(|| Shifts::new(&g, fnum));
        let mut parts = parts(n, &g, shifts.as_ref(), fnum);
        for_each_part(
            (&mut parts, 1),
            (
                x.as_slice().expect("standard layout"),
                SAMPLES_PER_PART * g.input_len(),
            ),
            (
                out.as_slice_mut().expect("a new array is contiguous"),
                SAMPLES_PER_PART * fnum * g.positions(),
            ),
            |part, x, out| {
                forward_part(
                    (&self.w, &self.b),
                    &g,
                    shifts.as_ref(),
                    &mut part[0],
                    x,
                    out,
                )
            },
        );
        out
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(Param<'_, A>)) {
        let shape = IxDyn(&self.w_shape());
        f(Param {
            name: "W",
            kind: ParamKind::Weight,
            value: self
                .w
                .view_mut()
                .into_shape_with_order(shape.clone())
                .expect("W holds FN·C·FH·FW elements"),
            grad: self
                .dw
                .view_mut()
                .into_shape_with_order(shape)
                .expect("dW holds FN·C·FH·FW elements"),
        });
        f(Param {
            name: "b",
            kind: ParamKind::Bias,
            value: self.b.view_mut().into_dyn(),
            grad: self.db.view_mut().into_dyn(),
        });
    }

    fn visit_params_ref(&self, f: &mut dyn FnMut(&'static str, ArrayViewD<'_, A>)) {
        f("W", self.w());
        f("b", self.b.view().into_dyn());
    }

    /// PyTorch's `Conv2d`: `weight`, (out, in, kh, kw), which is `W` as it is; `bias`, (out).
    fn visit_tensors(&self, f: &mut dyn FnMut(&str, ArrayViewD<'_, A>)) {
        f("weight", self.w());
        f("bias", self.b.view().into_dyn());
    }

    #[track_caller]
    fn load_tensor(&mut self, name: &str, value: ArrayViewD<'_, A>) -> Result<(), String> {
        let shape = IxDyn(&self.w_shape());
        match name {
            "weight" => load_into(
                "Convolution",
                name,
                self.w
                    .view_mut()
                    .into_shape_with_order(shape)
                    .expect("W holds FN·C·FH·FW elements"),
                value,
            ),
            "bias" => load_into("Convolution", name, self.b.view_mut().into_dyn(), value),
            _ => panic!(
                "Convolution::load_tensor: no tensor `{name}`; Convolution has `weight` and `bias`"
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::cast;
    use ndarray::{Array, Array4, Axis, array};
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn cast4<A: NdFloat>(a: Array4<f64>) -> ArrayD<A> {
        a.mapv(cast::<A>).into_dyn()
    }

    /// The convolution by its definition, four nested sums.
    fn by_definition(
        x: &Array4<f64>,
        w: &Array4<f64>,
        b: &Array1<f64>,
        s: usize,
        p: usize,
    ) -> Array4<f64> {
        let (n, c, h, wd) = x.dim();
        let (fnum, _, fh, fw) = w.dim();
        let (oh, ow) = ((h + 2 * p - fh) / s + 1, (wd + 2 * p - fw) / s + 1);
        Array4::from_shape_fn((n, fnum, oh, ow), |(i, f, y, z)| {
            let mut sum = b[f];
            for ci in 0..c {
                for kh in 0..fh {
                    for kw in 0..fw {
                        let (ih, iw) = (
                            (y * s + kh) as isize - p as isize,
                            (z * s + kw) as isize - p as isize,
                        );
                        if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < wd {
                            sum += w[[f, ci, kh, kw]] * x[[i, ci, ih as usize, iw as usize]];
                        }
                    }
                }
            }
            sum
        })
    }

    /// Worked by hand: x = [[1, 2, 0], [0, 1, 3], [2, 1, 1]] (one sample, one channel), two 2 x 2
    /// filters [[1, 0], [0, 1]] (the diagonal) and [[0, 1], [-1, 0]], biases 0 and 1, stride 1:
    /// out[0] = [[1+1, 2+3], [0+1, 1+1]] = [[2, 5], [1, 2]],
    /// out[1] = 1 + [[2-0, 0-1], [1-2, 3-1]] = [[3, 0], [0, 3]].
    /// For dout[0] = [[1, 0], [0, 0]] and dout[1] = [[0, 0], [0, 1]]:
    /// dW[0] = the top-left window [[1, 2], [0, 1]], dW[1] = the bottom-right [[1, 3], [1, 1]],
    /// db = [1, 1], dx = W[0] at the top left plus W[1] at the bottom right
    /// = [[1, 0, 0], [0, 1, 1], [0, -1, 0]].
    fn hand_derived<A: NdFloat>() {
        let w = array![[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 1.0], [-1.0, 0.0]]]];
        let x = array![[[[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 1.0, 1.0]]]];
        let mut conv = Convolution::<A>::new(w.mapv(cast), array![0.0, 1.0].mapv(cast), 1, 0);
        let expected = cast4::<A>(array![[[[2.0, 5.0], [1.0, 2.0]], [[3.0, 0.0], [0.0, 3.0]]]]);
        assert_eq!(conv.predict(cast4(x.clone())), expected);
        assert_eq!(conv.forward(cast4(x)), expected);
        let dout = array![[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]];
        let dx = conv.backward(cast4(dout));
        assert_eq!(
            dx,
            cast4::<A>(array![[[
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 1.0],
                [0.0, -1.0, 0.0]
            ]]])
        );
        assert_eq!(
            conv.dw(),
            cast4::<A>(array![
                [[[1.0, 2.0], [0.0, 1.0]]],
                [[[1.0, 3.0], [1.0, 1.0]]]
            ])
        );
        assert_eq!(conv.db(), array![1.0, 1.0].mapv(cast::<A>));
    }

    #[test]
    fn hand_derived_f32() {
        hand_derived::<f32>();
    }

    #[test]
    fn hand_derived_f64() {
        hand_derived::<f64>();
    }

    /// Stride 2 and padding 1 by hand: a 1 x 1 x 2 x 2 image [[1, 2], [3, 4]] and one 3 x 3 filter
    /// of ones: the padded image is 4 x 4, and the one window, at (-1, -1), holds all four pixels
    /// under the filter's bottom-right 2 x 2, where dW gets them times dout.
    #[test]
    fn stride_and_padding_by_hand() {
        let mut conv = Convolution::<f64>::new(Array4::ones((1, 1, 3, 3)), array![0.5], 2, 1);
        let out = conv.forward(array![[[[1.0, 2.0], [3.0, 4.0]]]].into_dyn());
        assert_eq!(out, array![[[[10.5]]]].into_dyn());
        let dx = conv.backward(array![[[[2.0]]]].into_dyn());
        assert_eq!(dx, array![[[[2.0, 2.0], [2.0, 2.0]]]].into_dyn());
        assert_eq!(
            conv.dw(),
            (array![[[[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 3.0, 4.0]]]] * 2.0)
                .into_dyn()
                .view()
        );
    }

    /// Forward equals the definition, and gradients equal those of the definition's adjoints, for
    /// many shapes: several channels and filters, strides 1 to 3, padding 0 to 2, non-square
    /// images and filters, batches that fill parts and batches that do not, both layouts of the
    /// unrolled images.
    #[test]
    fn shapes_and_values_match_the_definition() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        for (n, c, h, wd, fnum, fh, fw, s, p) in [
            (1, 1, 4, 4, 1, 3, 3, 1, 0),
            (3, 2, 5, 7, 4, 3, 2, 1, 1),
            (7, 3, 6, 5, 2, 3, 3, 2, 1),
            (11, 1, 9, 4, 3, 2, 3, 2, 2),
            (2, 4, 3, 3, 5, 1, 1, 3, 0),
            (6, 2, 2, 2, 3, 3, 3, 1, 2),
            // DeepConvNet's kinds, in the shifted layout: pad 1, pad 2, and 5 x 5 unpadded.
            (7, 3, 8, 8, 4, 3, 3, 1, 1),
            (2, 2, 10, 9, 3, 3, 3, 1, 2),
            (3, 1, 20, 20, 2, 5, 5, 1, 0),
            // Stride 1 with rows too short for it.
            (2, 2, 9, 6, 3, 5, 5, 1, 0),
        ] {
            let x = randn::<f64, _, _>((n, c, h, wd), 1.0, &mut rng);
            let w = randn::<f64, _, _>((fnum, c, fh, fw), 1.0, &mut rng);
            let b = randn::<f64, _, _>(fnum, 1.0, &mut rng);
            let mut conv = Convolution::new(w.clone(), b.clone(), s, p);
            let expected = by_definition(&x, &w, &b, s, p);
            let out = conv.forward(x.clone().into_dyn());
            let what = format!("x {:?}, W {:?}, stride {s}, pad {p}", x.shape(), w.shape());
            assert_eq!(out.shape(), expected.shape(), "{what}");
            assert!(
                out.iter()
                    .zip(&expected)
                    .all(|(a, e)| (a - e).abs() < 1e-12),
                "{what}"
            );
            assert_eq!(conv.predict(x.clone().into_dyn()), out, "{what}");
            // L = Σ out · dout: dW, db and dx are the derivatives of the definition, which is
            // linear, so the definition applied to unit perturbations gives them exactly.
            let dout = randn::<f64, _, _>(expected.raw_dim(), 1.0, &mut rng);
            let dx = conv.backward(dout.clone().into_dyn());
            let loss = |x: &Array4<f64>, w: &Array4<f64>, b: &Array1<f64>| {
                (by_definition(x, w, b, s, p) * &dout).sum()
            };
            let base = loss(&x, &w, &b);
            let mut x1 = x.clone();
            for (i, &g) in dx.iter().enumerate() {
                let e = &mut x1.as_slice_mut().unwrap()[i];
                *e += 1.0;
                let numeric = loss(&x1, &w, &b) - base;
                x1.as_slice_mut().unwrap()[i] -= 1.0;
                assert!(
                    (numeric - g).abs() < 1e-9,
                    "{what}: dx[{i}] {g} vs {numeric}"
                );
            }
            let mut w1 = w.clone();
            for (i, &g) in conv.dw().iter().enumerate() {
                w1.as_slice_mut().unwrap()[i] += 1.0;
                let numeric = loss(&x, &w1, &b) - base;
                w1.as_slice_mut().unwrap()[i] -= 1.0;
                assert!(
                    (numeric - g).abs() < 1e-9,
                    "{what}: dW[{i}] {g} vs {numeric}"
                );
            }
            let db: Array1<f64> = dout.sum_axis(Axis(3)).sum_axis(Axis(2)).sum_axis(Axis(0));
            assert!(
                conv.db()
                    .iter()
                    .zip(&db)
                    .all(|(a, e)| (a - e).abs() < 1e-12),
                "{what}"
            );
        }
    }

    #[test]
    fn backward_params_writes_the_same_gradients() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let x = randn::<f32, _, _>((12, 2, 6, 6), 1.0, &mut rng).into_dyn();
        let dout = randn::<f32, _, _>((12, 3, 3, 3), 1.0, &mut rng).into_dyn();
        let mut full = Convolution::<f32>::random(3, 2, (3, 3), 2, 1, Init::He, &mut rng);
        let mut lean = full.clone();
        full.forward(x.clone());
        let dx = full.backward(dout.clone());
        lean.forward(x);
        let buf = lean.backward_params(dout);
        assert_eq!(buf.shape(), dx.shape());
        assert_eq!(lean.dw(), full.dw());
        assert_eq!(lean.db(), full.db());
    }

    /// One thread or two, the same bits; and a second step with recycled buffers gives what a
    /// fresh layer gives.
    #[test]
    fn results_do_not_depend_on_threads_or_recycled_buffers() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let x = randn::<f32, _, _>((23, 3, 9, 8), 1.0, &mut rng).into_dyn();
        let dout = randn::<f32, _, _>((23, 4, 9, 8), 1.0, &mut rng).into_dyn();
        let conv = Convolution::<f32>::random(4, 3, (3, 3), 1, 1, Init::He, &mut rng);
        let run = |threads: usize| {
            crate::set_threads(threads);
            let mut layer = conv.clone();
            let mut seen = Vec::new();
            for _ in 0..2 {
                let out = layer.forward(x.clone());
                let dx = layer.backward(dout.clone());
                seen.push((out, dx, layer.dw().to_owned(), layer.db().clone()));
            }
            crate::set_threads(0);
            seen
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one, two);
        assert_eq!(one[0], one[1]);
    }

    #[test]
    fn tensors_are_pytorch_conv2d_and_load_back() {
        let w = Array::from_shape_fn((2, 3, 2, 1), |(f, c, h, w)| {
            (f * 100 + c * 10 + h + w) as f64
        });
        let conv = Convolution::new(w.clone(), array![7.0, 8.0], 1, 0);
        let mut seen = Vec::new();
        conv.visit_tensors(&mut |name, v| seen.push((name.to_owned(), v.to_owned())));
        assert_eq!(seen[0], ("weight".to_owned(), w.clone().into_dyn()));
        assert_eq!(seen[1], ("bias".to_owned(), array![7.0, 8.0].into_dyn()));
        let mut copy = Convolution::new(Array4::zeros((2, 3, 2, 1)), Array1::zeros(2), 1, 0);
        for (name, v) in &seen {
            copy.load_tensor(name, v.view()).unwrap();
        }
        assert_eq!(copy.w(), conv.w());
        assert_eq!(copy.b(), conv.b());
        let mut names = Vec::new();
        copy.visit_params(&mut |p| names.push((p.name, p.kind, p.value.shape().to_vec())));
        assert_eq!(
            names,
            [
                ("W", ParamKind::Weight, vec![2, 3, 2, 1]),
                ("b", ParamKind::Bias, vec![2])
            ]
        );
    }
}
