//! `im2col` and `col2im`: images unrolled into the columns of a matrix, so that a convolution is
//! one matrix product (the book's `common/util.py`, section 7.4.3), and back.
//!
//! bp lays the unrolled matrix out as Caffe does, the transpose of the book's: one **row** per
//! filter element `(c, kh, kw)` and one **column** per output position `(n, oh, ow)`. A row then
//! holds, for each sample and output row, a run of input pixels that lie next to each other in
//! the image (at stride 1), so both directions copy contiguous runs instead of gathering element
//! by element; and the product `W · col` of filters `(FN, C·FH·FW)` by the unrolled images gives
//! each sample's output as `(FN, OH·OW)`, NCHW, with no transpose.

use ndarray::{Array2, Array4, ArrayView2, ArrayView4, NdFloat};

/// Where a sliding window goes over an image: its size, stride and zero padding, and the image's
/// size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Channels of the input.
    pub(crate) channels: usize,
    /// Rows and columns of the input.
    pub(crate) height: usize,
    pub(crate) width: usize,
    /// Rows and columns of the window.
    pub(crate) fh: usize,
    pub(crate) fw: usize,
    pub(crate) stride: usize,
    pub(crate) pad: usize,
    /// Rows and columns of the output.
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Geometry {
    /// The geometry of a `fh x fw` window at `stride` over `channels x height x width` images
    /// padded by `pad`, or `None` if the window does not fit the padded image once (or the stride
    /// is 0).
    pub(crate) fn new(
        [channels, height, width]: [usize; 3],
        (fh, fw): (usize, usize),
        stride: usize,
        pad: usize,
    ) -> Option<Geometry> {
        let out = |size: usize, f: usize| {
            let padded = size.checked_add(pad.checked_mul(2)?)?;
            (stride > 0 && f > 0 && padded >= f).then(|| (padded - f) / stride + 1)
        };
        Some(Geometry {
            channels,
            height,
            width,
            fh,
            fw,
            stride,
            pad,
            oh: out(height, fh)?,
            ow: out(width, fw)?,
        })
    }

    /// Elements of one input sample, `C·H·W`.
    pub(crate) fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Output positions of one sample, `OH·OW`.
    pub(crate) fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Rows of the unrolled matrix, `C·FH·FW`.
    pub(crate) fn rows(&self) -> usize {
        self.channels * self.fh * self.fw
    }

    /// Whether a convolution reads these images from padded planes in rows as long as the padded
    /// rows instead of unrolling them (the convolution's shifted layout): at stride 1, where the
    /// padded rows are at most a quarter longer than the output rows, so that the columns
    /// computed and thrown away stay few.
    pub(crate) fn shifted_layout(&self) -> bool {
        self.stride == 1 && 4 * self.padded_width() <= 5 * self.ow
    }

    /// Columns of a padded image, `W + 2P`.
    pub(crate) fn padded_width(&self) -> usize {
        self.width + 2 * self.pad
    }

    /// Elements of a padded image plane as [`pad_into`] lays it out: `(H + 2P)·(W + 2P)`, then
    /// `FW - 1` zeros, which the last window's last row in the shifted layout reads past the
    /// plane's end.
    pub(crate) fn padded_plane(&self) -> usize {
        (self.height + 2 * self.pad) * self.padded_width() + self.fw - 1
    }

    /// The output columns `ow` whose input column `ow·S + kw - P` lies inside the image, as a
    /// range, and the input column of its first.
    fn inside(&self, kw: usize) -> (usize, usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = if p > kw { (p - kw).div_ceil(s) } else { 0 };
        let hi = if self.width + p > kw {
            ((self.width - 1 + p - kw) / s + 1).min(self.ow)
        } else {
            0
        };
        let hi = hi.max(lo).min(self.ow);
        let lo = lo.min(hi);
        (lo, hi, (lo * s + kw).saturating_sub(p))
    }

    /// The input row of output row `oh` for filter row `kh`, if it lies inside the image.
    fn input_row(&self, oh: usize, kh: usize) -> Option<usize> {
        (oh * self.stride + kh)
            .checked_sub(self.pad)
            .filter(|&ih| ih < self.height)
    }
}

/// Unrolls `samples` images `x` (NCHW, contiguous) into `col`, `(C·FH·FW, samples·OH·OW)`
/// row-major: `col[(c, kh, kw), (n, oh, ow)] = x[n, c, oh·S + kh - P, ow·S + kw - P]`, 0 in the
/// padding.
///
/// # Panics
///
/// If the slices do not have those sizes.
#[track_caller]
pub(crate) fn im2col_into<A: NdFloat>(x: &[A], g: &Geometry, samples: usize, col: &mut [A]) {
    let cols = samples * g.positions();
    assert!(
        x.len() == samples * g.input_len() && col.len() == g.rows() * cols,
        "im2col: {} input elements and {} unrolled for {samples} samples of {g:?}",
        x.len(),
        col.len()
    );
    if cols == 0 {
        return;
    }
    let plane = g.height * g.width;
    for (r, row) in col.chunks_exact_mut(cols).enumerate() {
        let (c, kh, kw) = (r / (g.fh * g.fw), r / g.fw % g.fh, r % g.fw);
        let (lo, hi, first) = g.inside(kw);
        for (n, sample) in row.chunks_exact_mut(g.positions()).enumerate() {
            let image = &x[(n * g.channels + c) * plane..][..plane];
            for (oh, dst) in sample.chunks_exact_mut(g.ow).enumerate() {
                let Some(ih) = g.input_row(oh, kh) else {
                    dst.fill(A::zero());
                    continue;
                };
                let src = &image[ih * g.width..][..g.width];
                dst[..lo].fill(A::zero());
                dst[hi..].fill(A::zero());
                if lo == hi {
                    continue;
                }
                if g.stride == 1 {
                    dst[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                } else {
                    for (d, &v) in dst[lo..hi]
                        .iter_mut()
                        .zip(src[first..].iter().step_by(g.stride))
                    {
                        *d = v;
                    }
                }
            }
        }
    }
}

/// The reverse of [`im2col_into`] for gradients: `dx[n, c, ih, iw]` is the sum of every element of
/// `col` that `im2col_into` took from `x[n, c, ih, iw]` (where windows overlap, several),
/// overwriting `dx`.
///
/// # Panics
///
/// If the slices do not have those sizes.
#[track_caller]
pub(crate) fn col2im_into<A: NdFloat>(col: &[A], g: &Geometry, samples: usize, dx: &mut [A]) {
    let cols = samples * g.positions();
    assert!(
        dx.len() == samples * g.input_len() && col.len() == g.rows() * cols,
        "col2im: {} input elements and {} unrolled for {samples} samples of {g:?}",
        dx.len(),
        col.len()
    );
    dx.fill(A::zero());
    if cols == 0 {
        return;
    }
    let plane = g.height * g.width;
    for (r, row) in col.chunks_exact(cols).enumerate() {
        let (c, kh, kw) = (r / (g.fh * g.fw), r / g.fw % g.fh, r % g.fw);
        let (lo, hi, first) = g.inside(kw);
        for (n, sample) in row.chunks_exact(g.positions()).enumerate() {
            let image = &mut dx[(n * g.channels + c) * plane..][..plane];
            for (oh, src) in sample.chunks_exact(g.ow).enumerate() {
                let Some(ih) = g.input_row(oh, kh) else {
                    continue;
                };
                let dst = &mut image[ih * g.width..][..g.width];
                if lo == hi {
                    continue;
                }
                if g.stride == 1 {
                    for (d, &v) in dst[first..first + hi - lo].iter_mut().zip(&src[lo..hi]) {
                        *d += v;
                    }
                } else {
                    for (d, &v) in dst[first..].iter_mut().step_by(g.stride).zip(&src[lo..hi]) {
                        *d += v;
                    }
                }
            }
        }
    }
}

/// Copies `samples` images `x` (NCHW, contiguous) into the interiors of their padded planes in
/// `padded` (`samples·C` planes of [`Geometry::padded_plane`] elements), whose borders the caller
/// keeps at zero.
///
/// # Panics
///
/// If the slices do not have those sizes.
#[track_caller]
pub(crate) fn pad_into<A: NdFloat>(x: &[A], g: &Geometry, samples: usize, padded: &mut [A]) {
    assert!(
        x.len() == samples * g.input_len()
            && padded.len() == samples * g.channels * g.padded_plane(),
        "pad: {} input elements and {} padded for {samples} samples of {g:?}",
        x.len(),
        padded.len()
    );
    let (w, wp, p) = (g.width, g.padded_width(), g.pad);
    for (image, plane) in x
        .chunks_exact(g.height * w)
        .zip(padded.chunks_exact_mut(g.padded_plane()))
    {
        for (src, dst) in image
            .chunks_exact(w)
            .zip(plane[p * wp + p..].chunks_mut(wp))
        {
            dst[..w].copy_from_slice(src);
        }
    }
}

/// The geometry of a `filter` window over `x`, or a panic naming the shapes.
#[track_caller]
fn geometry(shape: [usize; 4], filter: (usize, usize), stride: usize, pad: usize) -> Geometry {
    Geometry::new([shape[1], shape[2], shape[3]], filter, stride, pad).unwrap_or_else(|| {
        panic!(
            "a {filter:?} window at stride {stride}, padding {pad}, does not fit images of \
             shape {shape:?}"
        )
    })
}

/// The book's `im2col`, transposed: images `x` (N, C, H, W) unrolled for a `filter` window
/// `(FH, FW)` at `stride` with zero padding `pad`, one row per filter element `(c, kh, kw)` and one
/// column per output position `(n, oh, ow)`:
/// `col[(c·FH + kh)·FW + kw, (n·OH + oh)·OW + ow] = x[n, c, oh·S + kh - P, ow·S + kw - P]`, with
/// `OH = (H + 2P - FH) / S + 1` (and `OW` alike) and 0 in the padding.
///
/// [`Convolution`](crate::Convolution) unrolls into buffers it keeps; this allocates its result.
///
/// # Shapes
///
/// `x`: (N, C, H, W); result: (C·FH·FW, N·OH·OW).
///
/// # Panics
///
/// If the window does not fit the padded images, or the stride is 0.
///
/// ```
/// use bp_core::im2col;
/// use ndarray::{Array, array};
///
/// // One 3 x 3 image, 2 x 2 windows at stride 1: four positions.
/// let x = Array::from_shape_vec((1, 1, 3, 3), (1..=9).map(f64::from).collect()).unwrap();
/// let col = im2col(x.view(), (2, 2), 1, 0);
/// assert_eq!(
///     col,
///     array![
///         [1.0, 2.0, 4.0, 5.0], // the windows' top-left elements
///         [2.0, 3.0, 5.0, 6.0],
///         [4.0, 5.0, 7.0, 8.0],
///         [5.0, 6.0, 8.0, 9.0], // bottom-right
///     ]
/// );
/// ```
#[track_caller]
pub fn im2col<A: NdFloat>(
    x: ArrayView4<'_, A>,
    filter: (usize, usize),
    stride: usize,
    pad: usize,
) -> Array2<A> {
    let shape = x.dim();
    let shape = [shape.0, shape.1, shape.2, shape.3];
    let g = geometry(shape, filter, stride, pad);
    let x = x.as_standard_layout();
    let mut col = Array2::zeros((g.rows(), shape[0] * g.positions()));
    im2col_into(
        x.as_slice().expect("standard layout"),
        &g,
        shape[0],
        col.as_slice_mut().expect("a new array is contiguous"),
    );
    col
}

/// The book's `col2im`, for [`im2col`]'s layout: the gradient with respect to images of shape
/// `input` given the gradient `col` with respect to their unrolled matrix. Each image element gets
/// the sum of the elements of `col` that were copied from it: where windows overlap, the
/// gradients **add**.
///
/// # Shapes
///
/// `col`: (C·FH·FW, N·OH·OW); result: `input`, (N, C, H, W).
///
/// # Panics
///
/// If the window does not fit the padded images, or `col` does not have the unrolled shape.
///
/// ```
/// use bp_core::col2im;
/// use ndarray::{Array2, array};
///
/// // 2 x 2 windows at stride 1 over a 3 x 3 image: the centre is in all four windows, the
/// // corners in one.
/// let ones = Array2::<f64>::ones((4, 4));
/// let dx = col2im(ones.view(), [1, 1, 3, 3], (2, 2), 1, 0);
/// assert_eq!(
///     dx.into_shape_with_order((3, 3)).unwrap(),
///     array![[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
/// );
/// ```
#[track_caller]
pub fn col2im<A: NdFloat>(
    col: ArrayView2<'_, A>,
    input: [usize; 4],
    filter: (usize, usize),
    stride: usize,
    pad: usize,
) -> Array4<A> {
    let g = geometry(input, filter, stride, pad);
    let expected = (g.rows(), input[0] * g.positions());
    assert!(
        col.dim() == expected,
        "col2im: col has shape {:?}, but images of shape {input:?} unroll to {expected:?}",
        col.shape()
    );
    let col = col.as_standard_layout();
    let mut dx = Array4::zeros((input[0], input[1], input[2], input[3]));
    col2im_into(
        col.as_slice().expect("standard layout"),
        &g,
        input[0],
        dx.as_slice_mut().expect("a new array is contiguous"),
    );
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, Array4, Axis, array};

    /// `im2col` by its definition, element by element.
    fn by_definition(x: &Array4<f64>, g: &Geometry) -> Array2<f64> {
        let n = x.shape()[0];
        let mut col = Array2::zeros((g.rows(), n * g.positions()));
        for ((r, j), v) in col.indexed_iter_mut() {
            let (c, kh, kw) = (r / (g.fh * g.fw), r / g.fw % g.fh, r % g.fw);
            let (s, oh, ow) = (j / g.positions(), j / g.ow % g.oh, j % g.ow);
            let ih = (oh * g.stride + kh) as isize - g.pad as isize;
            let iw = (ow * g.stride + kw) as isize - g.pad as isize;
            if (0..g.height as isize).contains(&ih) && (0..g.width as isize).contains(&iw) {
                *v = x[[s, c, ih as usize, iw as usize]];
            }
        }
        col
    }

    #[test]
    fn unrolling_matches_the_definition_for_every_stride_and_padding() {
        for (shape, filter, stride, pad) in [
            ([2, 3, 5, 7], (3, 3), 1, 0),
            ([2, 3, 5, 7], (3, 2), 1, 1),
            ([1, 2, 6, 5], (3, 3), 2, 1),
            ([3, 1, 7, 4], (2, 3), 2, 2),
            ([1, 2, 4, 4], (5, 5), 1, 2),
            ([2, 1, 3, 8], (1, 1), 3, 0),
            ([1, 1, 2, 2], (4, 4), 3, 2),
        ] {
            let x = Array::from_shape_fn(shape, |(n, c, h, w)| {
                (1000 * n + 100 * c + 10 * h + w) as f64
            });
            let g = geometry(shape, filter, stride, pad);
            let col = im2col(x.view(), filter, stride, pad);
            assert_eq!(
                col,
                by_definition(&x, &g),
                "{shape:?} {filter:?} {stride} {pad}"
            );
            // col2im is im2col's adjoint: <im2col(x), y> = <x, col2im(y)>.
            let y = Array2::from_shape_fn(col.raw_dim(), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
            let dx = col2im(y.view(), shape, filter, stride, pad);
            let left: f64 = (&col * &y).sum();
            let right: f64 = (&x * &dx).sum();
            assert_eq!(left, right, "{shape:?} {filter:?} {stride} {pad}");
        }
    }

    #[test]
    fn overlaps_add_and_padding_drops_out() {
        // 3 x 3 windows at stride 1 with padding 1 over a 2 x 2 image: four positions, each
        // window holding all four pixels, so each pixel receives four gradients.
        let ones = Array2::<f64>::ones((9, 4));
        let dx = col2im(ones.view(), [1, 1, 2, 2], (3, 3), 1, 1);
        assert_eq!(
            dx.index_axis(Axis(0), 0).index_axis(Axis(0), 0),
            array![[4.0, 4.0], [4.0, 4.0]]
        );
        // Stride 2, no overlap: each pixel of a 4 x 4 image is in exactly one 2 x 2 window.
        let ones = Array2::<f64>::ones((4, 4));
        let dx = col2im(ones.view(), [1, 1, 4, 4], (2, 2), 2, 0);
        assert!(dx.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn windows_that_do_not_fit_are_refused() {
        assert_eq!(Geometry::new([1, 2, 2], (3, 3), 1, 0), None);
        assert_eq!(Geometry::new([1, 2, 2], (1, 1), 0, 0), None);
        let g = Geometry::new([1, 2, 2], (3, 3), 1, 1).unwrap();
        assert_eq!((g.oh, g.ow), (2, 2));
        // A window that does not divide the image: the last column is left out.
        let g = Geometry::new([1, 5, 5], (2, 2), 2, 0).unwrap();
        assert_eq!((g.oh, g.ow), (2, 2));
    }
}
