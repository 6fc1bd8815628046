//! The max-pooling layer.

use ndarray::{ArrayD, IxDyn, NdFloat};

use crate::batch::for_each_part;
use crate::im2col::Geometry;
use crate::layer::Layer;

/// Channel planes (one sample's channel) that one part of the work takes.
const PLANES_PER_PART: usize = 64;

/// Max pooling (chapter 7): each output is the largest input of its `size x size` window, the
/// windows moving by `stride` over each channel of each image, `out[n, c, oh, ow] =
/// max_{i, j < size} x[n, c, oh·S + i - P, ow·S + j - P]`; padding takes no part in the maximum
/// (PyTorch's `MaxPool2d`, which pads with -∞). Backward routes each gradient to the input that
/// was the maximum of its window (the first, on ties), adding where windows overlap; every other
/// input gets 0.
///
/// A window that does not divide the input leaves out its last rows and columns, as PyTorch does
/// (`OH = (H + 2P - size) / S + 1`, rounded down).
///
/// # Shapes
///
/// `x`: (N, C, H, W), with `H + 2P` and `W + 2P` at least `size`; output and `dout`:
/// (N, C, OH, OW); `dx`: shaped like `x`.
///
/// # Panics
///
/// [`new`](Pooling::new) panics if the size or the stride is 0 or the padding is more than half
/// the size (a window of padding alone would have no maximum).
///
/// # Example
///
/// ```
/// use bp_core::{Layer, Pooling};
/// use ndarray::array;
///
/// let mut pool = Pooling::<f64>::new(2, 2, 0);
/// let x = array![[[[1.0, 3.0, 0.0, 1.0], [2.0, 0.0, 5.0, 4.0]]]].into_dyn();
/// assert_eq!(pool.forward(x), array![[[[3.0, 5.0]]]].into_dyn());
/// let dx = pool.backward(array![[[[10.0, 20.0]]]].into_dyn());
/// assert_eq!(dx, array![[[[0.0, 10.0, 0.0, 0.0], [0.0, 0.0, 20.0, 0.0]]]].into_dyn());
/// ```
#[derive(Clone, Debug)]
pub struct Pooling<A> {
    size: usize,
    stride: usize,
    pad: usize,
    /// For each output of the last training forward, where its maximum lies in its plane.
    argmax: Vec<u32>,
    /// The last training input's storage, to hold `dx`.
    x: Option<ArrayD<A>>,
    geometry: Option<Geometry>,
    /// Storage recycled from the last `dout`, for the next output.
    spare: Option<ArrayD<A>>,
}

/// Pools the planes `x` into `out`, writing where each maximum lies into `argmax`.
fn pool_planes<A: NdFloat>(g: &Geometry, x: &[A], out: &mut [A], argmax: &mut [u32]) {
    if (g.fh, g.fw, g.stride, g.pad) == (2, 2, 2, 0) {
        return pool_2x2(g, x, out, argmax);
    }
    let (plane, positions) = (g.height * g.width, g.positions());
    for ((x, out), argmax) in x
        .chunks_exact(plane)
        .zip(out.chunks_exact_mut(positions))
        .zip(argmax.chunks_exact_mut(positions))
    {
        for oh in 0..g.oh {
            let top = (oh * g.stride).saturating_sub(g.pad);
            let bottom = (oh * g.stride + g.fh - g.pad).min(g.height);
            for ow in 0..g.ow {
                let left = (ow * g.stride).saturating_sub(g.pad);
                let right = (ow * g.stride + g.fw - g.pad).min(g.width);
                let mut best = top * g.width + left;
                for ih in top..bottom {
                    let row = ih * g.width;
                    for i in row + left..row + right {
                        if x[i] > x[best] {
                            best = i;
                        }
                    }
                }
                let o = oh * g.ow + ow;
                out[o] = x[best];
                argmax[o] = u32::try_from(best).expect("a plane's index fits in u32");
            }
        }
    }
}

/// [`pool_planes`] for the book's 2 x 2 windows at stride 2 without padding: the two input rows of
/// each output row walked in pairs, with the same comparisons in the same order (the first
/// maximum wins: top left, top right, bottom left, bottom right).
fn pool_2x2<A: NdFloat>(g: &Geometry, x: &[A], out: &mut [A], argmax: &mut [u32]) {
    let (w, plane, positions) = (g.width, g.height * g.width, g.positions());
    for ((x, out), argmax) in x
        .chunks_exact(plane)
        .zip(out.chunks_exact_mut(positions))
        .zip(argmax.chunks_exact_mut(positions))
    {
        for (oh, (out, argmax)) in out
            .chunks_exact_mut(g.ow)
            .zip(argmax.chunks_exact_mut(g.ow))
            .enumerate()
        {
            let top_start = 2 * oh * w;
            let top = &x[top_start..top_start + 2 * g.ow];
            let bottom = &x[top_start + w..top_start + w + 2 * g.ow];
            let base = u32::try_from(top_start).expect("a plane's index fits in u32");
            let w32 = u32::try_from(w).expect("a plane's index fits in u32");
            for (ow, ((o, a), (t, b))) in out
                .iter_mut()
                .zip(argmax.iter_mut())
                .zip(top.chunks_exact(2).zip(bottom.chunks_exact(2)))
                .enumerate()
            {
                let left = base + 2 * ow as u32;
                let (mut best, mut at) = (t[0], left);
                if t[1] > best {
                    (best, at) = (t[1], left + 1);
                }
                if b[0] > best {
                    (best, at) = (b[0], left + w32);
                }
                if b[1] > best {
                    (best, at) = (b[1], left + w32 + 1);
                }
                *o = best;
                *a = at;
            }
        }
    }
}

impl<A: NdFloat> Pooling<A> {
    /// Max pooling over `size x size` windows moved by `stride`, with padding `pad`.
    ///
    /// # Panics
    ///
    /// If `size` or `stride` is 0 or `pad > size / 2`.
    #[track_caller]
    pub fn new(size: usize, stride: usize, pad: usize) -> Self {
        assert!(
            size > 0 && stride > 0 && pad <= size / 2,
            "Pooling::new: size {size}, stride {stride}, pad {pad}: size and stride must be \
             positive and the padding at most half the size"
        );
        Pooling {
            size,
            stride,
            pad,
            argmax: Vec::new(),
            x: None,
            geometry: None,
            spare: None,
        }
    }

    /// The window's size, stride and padding.
    pub fn size_stride_pad(&self) -> (usize, usize, usize) {
        (self.size, self.stride, self.pad)
    }

    /// The geometry for input of `shape`, checking it.
    #[track_caller]
    fn geometry(&self, shape: &[usize]) -> Geometry {
        let g = match *shape {
            [_, c, h, w] if h * w <= u32::MAX as usize => {
                Geometry::new([c, h, w], (self.size, self.size), self.stride, self.pad)
            }
            _ => None,
        };
        g.unwrap_or_else(|| {
            panic!(
                "Pooling: input of shape {shape:?} is not (N, C, H, W) with H and W padded by {} \
                 at least {} (and a plane of at most 2^32 elements)",
                self.pad, self.size
            )
        })
    }
}

impl<A: NdFloat> Layer<A> for Pooling<A> {
    fn name(&self) -> &'static str {
        "Pooling"
    }

    #[track_caller]
    fn forward(&mut self, x: ArrayD<A>) -> ArrayD<A> {
        let g = self.geometry(x.shape());
        let shape = [x.shape()[0], g.channels, g.oh, g.ow];
        let x = if x.is_standard_layout() {
            x
        } else {
            x.as_standard_layout().into_owned()
        };
        let mut out = match self.spare.take() {
            Some(buf) if buf.shape() == shape => buf,
            _ => ArrayD::zeros(IxDyn(&shape)),
        };
        let len = out.len();
        if self.argmax.len() != len {
            self.argmax = vec![0; len];
        }
        if len > 0 {
            for_each_part(
                (&mut self.argmax, PLANES_PER_PART * g.positions()),
                (
                    x.as_slice().expect("standard layout"),
                    PLANES_PER_PART * g.height * g.width,
                ),
                (
                    out.as_slice_mut().expect("the output is contiguous"),
                    PLANES_PER_PART * g.positions(),
                ),
                |argmax, x, out| pool_planes(&g, x, out, argmax),
            );
        }
        self.x = Some(x);
        self.geometry = Some(g);
        out
    }

    #[track_caller]
    fn backward(&mut self, dout: ArrayD<A>) -> ArrayD<A> {
        let (Some(mut dx), Some(g)) = (self.x.take(), self.geometry) else {
            panic!("Pooling::backward called without a preceding forward");
        };
        let expected = [dx.shape()[0], g.channels, g.oh, g.ow];
        assert!(
            dout.shape() == expected,
            "Pooling::backward: dout has shape {:?}, but the last output had shape {expected:?}",
            dout.shape()
        );
        let mut dout = if dout.is_standard_layout() {
            dout
        } else {
            dout.as_standard_layout().into_owned()
        };
        let (plane, positions) = (g.height * g.width, g.positions());
        if !dout.is_empty() {
            // `dx` in the parts' outputs, the argmax (read only) in their states.
            for_each_part(
                (
                    dout.as_slice_mut().expect("standard layout"),
                    PLANES_PER_PART * positions,
                ),
                (&self.argmax, PLANES_PER_PART * positions),
                (
                    dx.as_slice_mut().expect("the kept input is contiguous"),
                    PLANES_PER_PART * plane,
                ),
                |dout, argmax, dx| {
                    dx.fill(A::zero());
                    for ((dx, dout), argmax) in dx
                        .chunks_exact_mut(plane)
                        .zip(dout.chunks_exact(positions))
                        .zip(argmax.chunks_exact(positions))
                    {
                        for (&d, &i) in dout.iter().zip(argmax) {
                            dx[i as usize] += d;
                        }
                    }
                },
            );
        }
        self.spare = Some(dout);
        dx
    }

    #[track_caller]
    fn predict(&self, x: ArrayD<A>) -> ArrayD<A> {
        let g = self.geometry(x.shape());
        let x = x.as_standard_layout();
        let mut out = ArrayD::zeros(IxDyn(&[x.shape()[0], g.channels, g.oh, g.ow]));
        let mut argmax = vec![0; out.len()];
        if !out.is_empty() {
            for_each_part(
                (&mut argmax, PLANES_PER_PART * g.positions()),
                (
                    x.as_slice().expect("standard layout"),
                    PLANES_PER_PART * g.height * g.width,
                ),
                (
                    out.as_slice_mut().expect("a new array is contiguous"),
                    PLANES_PER_PART * g.positions(),
                ),
                |argmax, x, out| pool_planes(&g, x, out, argmax),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{cast, randn};
    use ndarray::{Array4, array};
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Max pooling by its definition.
    fn by_definition(x: &Array4<f64>, k: usize, s: usize, p: usize) -> Array4<f64> {
        let (n, c, h, w) = x.dim();
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        Array4::from_shape_fn((n, c, oh, ow), |(i, ch, y, z)| {
            let mut m = f64::NEG_INFINITY;
            for a in 0..k {
                for b in 0..k {
                    let (ih, iw) = (
                        (y * s + a) as isize - p as isize,
                        (z * s + b) as isize - p as isize,
                    );
                    if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < w {
                        m = m.max(x[[i, ch, ih as usize, iw as usize]]);
                    }
                }
            }
            m
        })
    }

    /// A 3 x 5 plane, 2 x 2 windows at stride 2 (which do not divide it: the last row and column
    /// are left out), worked by hand; then windows of 3 at stride 1 with padding 1, which overlap,
    /// so one input collects several gradients.
    fn hand_derived<A: NdFloat>() {
        let x = array![[[
            [1.0, 5.0, 2.0, 0.0, 9.0],
            [3.0, 4.0, 6.0, 6.0, 9.0],
            [9.0, 9.0, 9.0, 9.0, 9.0]
        ]]];
        let x = x.mapv(cast::<A>).into_dyn();
        let mut pool = Pooling::<A>::new(2, 2, 0);
        assert_eq!(
            pool.predict(x.clone()),
            array![[[[5.0, 6.0]]]].mapv(cast::<A>).into_dyn()
        );
        assert_eq!(
            pool.forward(x.clone()),
            array![[[[5.0, 6.0]]]].mapv(cast::<A>).into_dyn()
        );
        // The tie in the second window (6, 6) goes to the first.
        let dx = pool.backward(array![[[[1.0, 2.0]]]].mapv(cast::<A>).into_dyn());
        let expected: Array4<f64> = array![[[
            [0.0, 1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0]
        ]]];
        assert_eq!(dx, expected.mapv(cast::<A>).into_dyn());

        let x = array![[[[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]]]
            .mapv(cast::<A>)
            .into_dyn();
        let mut pool = Pooling::<A>::new(3, 1, 1);
        let out = pool.forward(x);
        assert_eq!(
            out,
            array![[[[1.0, 2.0, 2.0], [1.0, 2.0, 2.0]]]]
                .mapv(cast::<A>)
                .into_dyn()
        );
        let dx = pool.backward(
            array![[[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]]]
                .mapv(cast::<A>)
                .into_dyn(),
        );
        assert_eq!(
            dx,
            array![[[[2.0, 0.0, 4.0], [0.0, 0.0, 0.0]]]]
                .mapv(cast::<A>)
                .into_dyn()
        );
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
    fn shapes_and_values_match_the_definition() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        for (n, c, h, w, k, s, p) in [
            (2, 3, 4, 4, 2, 2, 0),
            (3, 2, 5, 7, 2, 2, 1),
            (1, 4, 7, 5, 3, 2, 1),
            (5, 1, 6, 6, 3, 3, 0),
            (2, 70, 3, 2, 1, 1, 0),
            (4, 2, 9, 4, 4, 1, 2),
        ] {
            let x = randn::<f64, _, _>((n, c, h, w), 1.0, &mut rng);
            let expected = by_definition(&x, k, s, p);
            let mut pool = Pooling::new(k, s, p);
            let out = pool.forward(x.clone().into_dyn());
            assert_eq!(
                out,
                expected.clone().into_dyn(),
                "{:?} {k} {s} {p}",
                x.shape()
            );
            assert_eq!(pool.predict(x.clone().into_dyn()), out);
            // dx sums dout over the outputs whose maximum each input is: Σ dx = Σ dout, and dx is
            // 0 wherever an input is no window's maximum.
            let dout = randn::<f64, _, _>(expected.raw_dim(), 1.0, &mut rng);
            let dx = pool.backward(dout.clone().into_dyn());
            assert_eq!(dx.shape(), x.shape());
            assert!((dx.sum() - dout.sum()).abs() < 1e-9);
            for ((i, ch, y, z), &d) in dx
                .view()
                .into_dimensionality::<ndarray::Ix4>()
                .unwrap()
                .indexed_iter()
            {
                if d != 0.0 {
                    assert!(
                        expected
                            .index_axis(ndarray::Axis(0), i)
                            .index_axis(ndarray::Axis(0), ch)
                            .iter()
                            .any(|&m| m == x[[i, ch, y, z]])
                    );
                }
            }
        }
    }

    /// The 2 x 2, stride 2 path gives what the general one gives, ties and ragged edges included.
    #[test]
    fn the_2x2_path_equals_the_general_one() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
        for (h, w) in [(24, 24), (5, 7), (2, 2), (9, 4)] {
            // Values rounded to a few levels, so that windows have ties.
            let x = randn::<f64, _, _>((3, 2, h, w), 1.0, &mut rng).mapv(|v| (v * 2.0).round());
            let g = Geometry::new([2, h, w], (2, 2), 2, 0).unwrap();
            let n = 6 * g.positions();
            let (mut out, mut at) = (vec![0.0; n], vec![0; n]);
            pool_planes(&g, x.as_slice().unwrap(), &mut out, &mut at);
            let (mut out2, mut at2) = (vec![0.0; n], vec![0; n]);
            general_planes(&g, x.as_slice().unwrap(), &mut out2, &mut at2);
            assert_eq!((out, at), (out2, at2), "{h} x {w}");
        }
    }

    /// 2 x 2 windows at stride 2 by the general order of comparisons, one output at a time.
    fn general_planes(g: &Geometry, x: &[f64], out: &mut [f64], argmax: &mut [u32]) {
        let (plane, positions) = (g.height * g.width, g.positions());
        for ((x, out), argmax) in x
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(positions))
            .zip(argmax.chunks_exact_mut(positions))
        {
            for o in 0..positions {
                let (top, left) = (o / g.ow * 2, o % g.ow * 2);
                let mut best = top * g.width + left;
                for i in [best + 1, best + g.width, best + g.width + 1] {
                    if x[i] > x[best] {
                        best = i;
                    }
                }
                out[o] = x[best];
                argmax[o] = best as u32;
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_threads() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let x = randn::<f32, _, _>((9, 30, 12, 12), 1.0, &mut rng).into_dyn();
        let dout = randn::<f32, _, _>((9, 30, 6, 6), 1.0, &mut rng).into_dyn();
        let run = |threads| {
            crate::set_threads(threads);
            let mut pool = Pooling::<f32>::new(3, 2, 1);
            let out = pool.forward(x.clone());
            let dx = pool.backward(dout.clone());
            crate::set_threads(0);
            (out, dx)
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn a_window_of_padding_alone_is_refused() {
        let err = std::panic::catch_unwind(|| Pooling::<f32>::new(2, 2, 2)).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("the padding at most half the size"), "{msg}");
    }
}
