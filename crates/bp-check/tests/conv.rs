//! Gradient checks of the convolution and pooling layers in f64: strides 1 to 3, padding 0 to 2,
//! non-square images and filters, several channels, batches that do not fill the layers' parts,
//! pooling windows that overlap and windows that do not divide the image; and a convolution whose
//! `col2im` overwrites overlapping gradients instead of adding them must fail.

use bp_check::{GradReport, LAYER_TOLERANCE, check_layer, random_input};
use bp_core::{Convolution, Flatten, Layer, Pooling, Sequential, col2im, im2col, randn};
use ndarray::{Array1, Array2, Array4, ArrayD, Axis, Ix4, IxDyn};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;

#[track_caller]
fn assert_passes(report: &GradReport, what: &str) {
    assert!(
        report.passed(LAYER_TOLERANCE),
        "{} failed for {what}:\n{report:#}",
        report.subject
    );
}

/// (N, C, H, W, FN, FH, FW, stride, pad)
const CONV_CASES: &[[usize; 9]] = &[
    [2, 1, 6, 6, 3, 3, 3, 1, 0],
    [3, 2, 7, 5, 4, 3, 3, 2, 1],
    [2, 3, 5, 6, 2, 3, 2, 1, 2],
    [7, 2, 6, 4, 3, 2, 3, 2, 2],
    [1, 4, 4, 7, 5, 5, 3, 3, 1],
    [6, 3, 3, 3, 2, 1, 1, 1, 0],
];

#[test]
fn convolution_passes_for_strides_paddings_and_shapes() {
    let mut worst: f64 = 0.0;
    for (seed, &[n, c, h, w, fnum, fh, fw, stride, pad]) in (0u64..).zip(CONV_CASES) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut conv = Convolution::new(
            randn((fnum, c, fh, fw), 1.0, &mut rng),
            randn(fnum, 1.0, &mut rng),
            stride,
            pad,
        );
        let x = random_input(&[n, c, h, w], seed);
        let report = check_layer(&mut conv, x.view(), seed + 100);
        let names: Vec<_> = report.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["dx", "W", "b"]);
        assert_passes(
            &report,
            &format!(
                "x {:?}, W {:?}, stride {stride}, pad {pad}",
                x.shape(),
                conv.w_shape()
            ),
        );
        assert_eq!(report.max_rel_resolved(), 0.0, "{report:#}");
        worst = worst.max(report.max_rel());
    }
    // A convolution is linear in x, W and b: only rounding separates the two gradients (every
    // difference is within the loss's rounding resolution, above). Relative to elements that
    // nearly cancel, it reaches 1.1e-7 here (docs/performance.md lists the figures).
    assert!(worst < 1e-6, "worst relative error {worst}");
}

/// Inputs whose values are all at least 0.01 apart (a shuffled ramp), so that no perturbation of
/// the gradient check (1e-4) changes which input is a window's maximum.
fn distinct_input(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let len = shape.iter().product::<usize>();
    let mut values: Vec<f64> = (0..len)
        .map(|i| i as f64 * 0.01 - len as f64 * 0.005)
        .collect();
    values.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
    ArrayD::from_shape_vec(IxDyn(shape), values).unwrap()
}

#[test]
fn pooling_passes_for_overlapping_and_ragged_windows() {
    let mut worst: f64 = 0.0;
    // (N, C, H, W, size, stride, pad)
    for (seed, &[n, c, h, w, size, stride, pad]) in (0u64..).zip(&[
        [2, 3, 4, 4, 2, 2, 0],
        [3, 2, 5, 7, 2, 2, 0],
        [2, 2, 7, 5, 3, 2, 1],
        [1, 70, 3, 4, 2, 1, 1],
        [2, 1, 6, 9, 3, 1, 1],
        [4, 2, 8, 5, 4, 3, 2],
    ]) {
        let mut pool = Pooling::new(size, stride, pad);
        let x = distinct_input(&[n, c, h, w], seed);
        let report = check_layer(&mut pool, x.view(), seed + 7);
        assert_passes(
            &report,
            &format!("x {:?}, size {size}, stride {stride}, pad {pad}", x.shape()),
        );
        assert_eq!(report.max_rel_resolved(), 0.0, "{report:#}");
        worst = worst.max(report.max_rel());
    }
    // Max pooling is piecewise linear: away from ties, only rounding separates the gradients.
    assert!(worst < 1e-7, "worst relative error {worst}");
}

#[test]
fn a_small_convnet_passes_end_to_end() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let mut net = Sequential::<f64>::new(vec![
        Box::new(Convolution::new(
            randn((4, 2, 3, 3), 0.5, &mut rng),
            randn(4, 0.1, &mut rng),
            1,
            1,
        )),
        Box::new(Pooling::new(2, 2, 0)),
        Box::new(Convolution::new(
            randn((3, 4, 2, 2), 0.5, &mut rng),
            randn(3, 0.1, &mut rng),
            2,
            1,
        )),
        Box::new(Flatten::new()),
    ]);
    let x = distinct_input(&[3, 2, 6, 5], 3);
    let report = check_layer(&mut net, x.view(), 4);
    let names: Vec<_> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["dx", "W1", "b1", "W2", "b2"]);
    assert_passes(&report, "conv, pool, conv, flatten");
}

/// A `col2im`: the gradient, the images' shape, the filter's size, the stride and the padding.
type Col2im = fn(&Array2<f64>, [usize; 4], (usize, usize), usize, usize) -> Array4<f64>;

/// A convolution built from [`im2col`] and a `col2im` given to it: the book's, or one that
/// overwrites where windows overlap.
#[derive(Clone)]
struct UnrolledConv {
    w: Array2<f64>,
    b: Array1<f64>,
    stride: usize,
    pad: usize,
    filter: (usize, usize),
    col: Array2<f64>,
    x_shape: [usize; 4],
    col2im: Col2im,
}

/// The book's mistake: each pixel keeps the last gradient written to it.
fn overwriting_col2im(
    col: &Array2<f64>,
    shape: [usize; 4],
    filter: (usize, usize),
    stride: usize,
    pad: usize,
) -> Array4<f64> {
    let [n, c, h, w] = shape;
    let oh = (h + 2 * pad - filter.0) / stride + 1;
    let ow = (w + 2 * pad - filter.1) / stride + 1;
    let mut dx = Array4::zeros((n, c, h, w));
    for ((r, j), &v) in col.indexed_iter() {
        let (ci, kh, kw) = (
            r / (filter.0 * filter.1),
            r / filter.1 % filter.0,
            r % filter.1,
        );
        let (s, y, z) = (j / (oh * ow), j / ow % oh, j % ow);
        let (ih, iw) = (
            (y * stride + kh) as isize - pad as isize,
            (z * stride + kw) as isize - pad as isize,
        );
        if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < w {
            dx[[s, ci, ih as usize, iw as usize]] = v;
        }
    }
    dx
}

fn adding_col2im(
    col: &Array2<f64>,
    shape: [usize; 4],
    filter: (usize, usize),
    stride: usize,
    pad: usize,
) -> Array4<f64> {
    col2im(col.view(), shape, filter, stride, pad)
}

impl Layer<f64> for UnrolledConv {
    fn name(&self) -> &'static str {
        "UnrolledConv"
    }

    fn forward(&mut self, x: ArrayD<f64>) -> ArrayD<f64> {
        let x = x.into_dimensionality::<Ix4>().unwrap();
        let (n, _, h, w) = x.dim();
        self.x_shape = [n, x.shape()[1], h, w];
        self.col = im2col(x.view(), self.filter, self.stride, self.pad);
        let out = self.w.dot(&self.col) + self.b.view().insert_axis(Axis(1));
        let (oh, ow) = (
            (h + 2 * self.pad - self.filter.0) / self.stride + 1,
            (w + 2 * self.pad - self.filter.1) / self.stride + 1,
        );
        // (FN, N·OH·OW) to (N, FN, OH, OW).
        out.into_shape_with_order((self.w.nrows(), n, oh, ow))
            .unwrap()
            .permuted_axes([1, 0, 2, 3])
            .as_standard_layout()
            .into_owned()
            .into_dyn()
    }

    fn backward(&mut self, dout: ArrayD<f64>) -> ArrayD<f64> {
        let dout = dout.into_dimensionality::<Ix4>().unwrap();
        let (n, fnum, oh, ow) = dout.dim();
        let dout = dout
            .permuted_axes([1, 0, 2, 3])
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((fnum, n * oh * ow))
            .unwrap();
        let dcol = self.w.t().dot(&dout);
        (self.col2im)(&dcol, self.x_shape, self.filter, self.stride, self.pad).into_dyn()
    }

    fn predict(&self, x: ArrayD<f64>) -> ArrayD<f64> {
        self.clone().forward(x)
    }
}

#[test]
fn a_col2im_that_overwrites_overlaps_fails_on_dx() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let w: Array2<f64> = randn((3, 2 * 9), 1.0, &mut rng);
    let b: Array1<f64> = randn(3, 1.0, &mut rng);
    let layer = |stride, col2im| UnrolledConv {
        w: w.clone(),
        b: b.clone(),
        stride,
        pad: 1,
        filter: (3, 3),
        col: Array2::zeros((0, 0)),
        x_shape: [0; 4],
        col2im,
    };
    let x = random_input(&[2, 2, 6, 5], 1);
    let ours = Convolution::new(
        w.clone().into_shape_with_order((3, 2, 3, 3)).unwrap(),
        b.clone(),
        1,
        1,
    );
    // The layer built from im2col and the book's col2im passes, and agrees with Convolution.
    let mut right = layer(1, adding_col2im);
    assert_passes(&check_layer(&mut right, x.view(), 2), "im2col and col2im");
    assert!(
        right
            .forward(x.clone())
            .iter()
            .zip(ours.predict(x.clone()).iter())
            .all(|(a, b)| (a - b).abs() < 1e-12)
    );
    // Overwriting: 3 x 3 windows at stride 1 overlap, and dx is wrong.
    let report = check_layer(&mut layer(1, overwriting_col2im), x.view(), 2);
    let failed: Vec<_> = report
        .failures(LAYER_TOLERANCE)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["dx"], "{report:#}");
    assert!(report.checks[0].max_rel > 0.1, "{report:#}");
    // At stride 3 the 3 x 3 windows do not overlap: overwriting and adding are the same.
    assert_passes(
        &check_layer(&mut layer(3, overwriting_col2im), x.view(), 2),
        "no overlaps",
    );
}
