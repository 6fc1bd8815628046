//! Central-difference numerical gradients.

use ndarray::{Array, ArrayD, ArrayView, ArrayViewMutD, Dimension, IxDyn, NdFloat};

use rayon::prelude::*;

use crate::layer::Param;

/// The step of the central difference, the book's `h = 1e-4`.
///
/// Small enough that the `O(h²)` truncation error of the central difference is about `1e-8` relative,
/// large enough that the rounding error of the two loss evaluations, divided by `2h`, stays near
/// `1e-12` in `f64`.
///
/// ```
/// use bp_core::{H, numerical_gradient};
/// use ndarray::array;
///
/// // For f(x) = x³ at x = 1 the central difference is 3 + h² = 3.00000001 exactly.
/// let g = numerical_gradient(|x| x[0] * x[0] * x[0], array![1.0f64].view());
/// assert!((g[0] - (3.0 + H * H)).abs() < 1e-11);
/// ```
pub const H: f64 = 1e-4;

/// Converts an `f64` constant to the element type.
fn cast<A: NdFloat>(v: f64) -> A {
    A::from(v).expect("every f64 converts to a float type")
}

/// The numerical gradient of a scalar function `f` at `x`, by central differences (the book's
/// `numerical_gradient(f, x)`):
///
/// `∂f/∂x_i ≈ (f(x + h·e_i) - f(x - h·e_i)) / 2h`, with `h =` [`H`].
///
/// `f` is called `2 · x.len()` times, each time with a copy of `x` in which one element is moved by
/// `±h`; the copy is restored exactly (bit for bit) after each element. `x` itself is not touched.
///
/// # Shapes
///
/// The gradient has `x`'s shape, in standard (row-major) layout.
///
/// # Example: the book's `function_2` at (3, 4)
///
/// `f(x) = x₀² + x₁²` has gradient `(2x₀, 2x₁) = (6, 8)`; the central difference of a quadratic is
/// exact up to rounding.
///
/// ```
/// use bp_core::numerical_gradient;
/// use ndarray::array;
///
/// let x = array![3.0f64, 4.0];
/// let g = numerical_gradient(|x| x[0] * x[0] + x[1] * x[1], x.view());
/// assert!((g[0] - 6.0).abs() < 1e-7);
/// assert!((g[1] - 8.0).abs() < 1e-7);
/// ```
pub fn numerical_gradient<A, D, F>(mut f: F, x: ArrayView<'_, A, D>) -> Array<A, D>
where
    A: NdFloat,
    D: Dimension,
    F: FnMut(&Array<A, D>) -> A,
{
    let h = cast::<A>(H);
    let two_h = h + h;
    let mut x = x.as_standard_layout().into_owned();
    let mut grad = Array::zeros(x.raw_dim());
    let g = grad
        .as_slice_mut()
        .expect("a new array has standard layout");
    for (i, g) in g.iter_mut().enumerate() {
        let tmp = x.as_slice().expect("standard layout")[i];
        x.as_slice_mut().expect("standard layout")[i] = tmp + h;
        let fxh1 = f(&x);
        x.as_slice_mut().expect("standard layout")[i] = tmp - h;
        let fxh2 = f(&x);
        x.as_slice_mut().expect("standard layout")[i] = tmp;
        *g = (fxh1 - fxh2) / two_h;
    }
    grad
}

/// The multi-index of the `i`-th element, in row-major order, of an array of the given shape.
pub(crate) fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (k, &n) in shape.iter().enumerate().rev() {
        if n > 0 {
            index[k] = i % n;
            i /= n;
        }
    }
    index
}

/// The `i`-th element, in row-major order, of a parameter view.
fn element<'v, A>(value: &'v mut ArrayViewMutD<'_, A>, i: usize) -> &'v mut A {
    if value.is_standard_layout() {
        &mut value.as_slice_mut().expect("standard layout")[i]
    } else {
        let index = unravel(i, value.shape());
        &mut value[index.as_slice()]
    }
}

/// Applies `change` to element `i` of parameter `k` (in visiting order) and returns the element's
/// previous value. Only parameter `k` is touched; the others are passed over.
#[track_caller]
fn perturb<M, A, V>(
    model: &mut M,
    visit: &mut V,
    k: usize,
    i: usize,
    expected: &IxDyn,
    change: impl Fn(A) -> A,
) -> A
where
    M: ?Sized,
    A: NdFloat,
    V: FnMut(&mut M, &mut dyn FnMut(Param<'_, A>)),
{
    let mut position = 0;
    let mut old = None;
    visit(model, &mut |mut p: Param<'_, A>| {
        if position == k {
            assert!(
                p.value.raw_dim() == *expected,
                "parameter {k} (\"{}\") changed shape from {:?} to {:?} while its numerical gradient \
                 was computed",
                p.name,
                expected.slice(),
                p.value.shape()
            );
            let v = element(&mut p.value, i);
            old = Some(*v);
            *v = change(*v);
        }
        position += 1;
    });
    old.unwrap_or_else(|| {
        panic!("parameter {k} disappeared while its numerical gradient was computed")
    })
}

/// The numerical gradient of a model's loss with respect to each of its parameters, reached through
/// a parameter visitor: for every element `θ_i` of every parameter,
///
/// `∂L/∂θ_i ≈ (L(θ + h·e_i) - L(θ - h·e_i)) / 2h`, with `h =` [`H`].
///
/// `visit(model, f)` must call `f` once for each parameter, in a fixed order (as
/// [`Layer::visit_params`](crate::Layer::visit_params) does); `loss(model)` evaluates the loss at
/// the parameters' current values. Each element is moved by `+h`, then `-h`, then restored bit for
/// bit, each time through a visit that changes only the parameter that owns it, so every element
/// costs two loss evaluations and three visits, independent of the model's size.
///
/// `loss` must be a deterministic function of the parameters (freeze dropout masks first).
///
/// Returns `(name, gradient)` per parameter, in visiting order, each gradient shaped like its
/// parameter.
///
/// # Panics
///
/// If a visit changes the number or the shapes of the parameters.
///
/// # Example
///
/// `L = Σ (x·W + b)` for `x = [[1, 2]]` has `∂L/∂W = xᵀ·1 = [[1], [2]]` and `∂L/∂b = [1]`.
///
/// ```
/// use bp_core::numerical_param_gradients;
/// use bp_core::{Affine, Layer};
/// use ndarray::array;
///
/// let mut affine = Affine::<f64>::new(array![[0.5], [-0.5]], array![0.1]);
/// let x = array![[1.0f64, 2.0]].into_dyn();
/// let grads = numerical_param_gradients(
///     &mut affine,
///     |layer, f| layer.visit_params(f),
///     |layer| layer.forward(x.clone()).sum(),
/// );
/// assert_eq!(grads[0].0, "W");
/// assert!((grads[0].1[[0, 0]] - 1.0).abs() < 1e-9);
/// assert!((grads[0].1[[1, 0]] - 2.0).abs() < 1e-9);
/// assert_eq!(grads[1].0, "b");
/// assert!((grads[1].1[[0]] - 1.0).abs() < 1e-9);
/// // The parameters are exactly as they were.
/// assert_eq!(affine.w(), &array![[0.5], [-0.5]]);
/// ```
pub fn numerical_param_gradients<M, A, V, L>(
    model: &mut M,
    mut visit: V,
    mut loss: L,
) -> Vec<(&'static str, ArrayD<A>)>
where
    M: ?Sized,
    A: NdFloat,
    V: FnMut(&mut M, &mut dyn FnMut(Param<'_, A>)),
    L: FnMut(&mut M) -> A,
{
    let shapes = param_shapes(model, &mut visit);
    let total = shapes.iter().map(|(_, shape)| shape.size()).sum();
    let mut flat = vec![A::zero(); total];
    fill(model, &mut visit, &mut loss, &shapes, 0, &mut flat);
    assemble(shapes, flat)
}

/// As [`numerical_param_gradients`], with the elements cut into `threads` parts (0 counts as 1),
/// each worked on with its own clone of `model`, on bp-core's rayon pool of `threads` threads (see
/// [`install`](crate::install)). The result is the same, bit for
/// bit, as the sequential function's: each element's two loss evaluations are the same computations
/// on an identical clone.
///
/// The elements are numbered across all parameters in visiting order and each part is one
/// contiguous range, so the loss evaluations split evenly whatever the parameters' sizes. `model`
/// itself is only cloned, never changed.
///
/// # Panics
///
/// If a visit changes the number or the shapes of the parameters, or if a thread panics (the panic is
/// passed on).
///
/// # Example
///
/// ```
/// use bp_core::{numerical_param_gradients, numerical_param_gradients_parallel};
/// use bp_core::{Affine, Layer};
/// use ndarray::array;
///
/// let affine = Affine::<f64>::new(array![[0.5, 1.0], [-0.5, 2.0]], array![0.1, 0.2]);
/// let x = array![[1.0, 2.0], [3.0, -1.0]].into_dyn();
/// let loss = |layer: &mut Affine<f64>| layer.forward(x.clone()).mapv(f64::tanh).sum();
/// let parallel = numerical_param_gradients_parallel(
///     &affine,
///     2,
///     |layer, f| layer.visit_params(f),
///     loss,
/// );
/// let sequential =
///     numerical_param_gradients(&mut affine.clone(), |layer, f| layer.visit_params(f), loss);
/// assert_eq!(parallel, sequential);
/// ```
pub fn numerical_param_gradients_parallel<M, A, V, L>(
    model: &M,
    threads: usize,
    visit: V,
    loss: L,
) -> Vec<(&'static str, ArrayD<A>)>
where
    M: Clone + Send,
    A: NdFloat,
    V: Fn(&mut M, &mut dyn FnMut(Param<'_, A>)) + Sync,
    L: Fn(&mut M) -> A + Sync,
{
    let shapes = param_shapes(&mut model.clone(), &mut &visit);
    let total: usize = shapes.iter().map(|(_, shape)| shape.size()).sum();
    let mut flat = vec![A::zero(); total];
    let per_part = total.div_ceil(threads.max(1)).max(1);
    let models: Vec<M> = (0..total.div_ceil(per_part))
        .map(|_| model.clone())
        .collect();
    crate::parallel::install_on(threads, || {
        flat.par_chunks_mut(per_part)
            .zip(models)
            .enumerate()
            .for_each(|(part, (out, mut model))| {
                fill(
                    &mut model,
                    &mut &visit,
                    &mut &loss,
                    &shapes,
                    part * per_part,
                    out,
                );
            });
    });
    assemble(shapes, flat)
}

/// The names and shapes of a model's parameters, in visiting order.
fn param_shapes<M, A, V>(model: &mut M, visit: &mut V) -> Vec<(&'static str, IxDyn)>
where
    M: ?Sized,
    A: NdFloat,
    V: FnMut(&mut M, &mut dyn FnMut(Param<'_, A>)),
{
    let mut shapes = Vec::new();
    visit(model, &mut |p: Param<'_, A>| {
        shapes.push((p.name, p.value.raw_dim()));
    });
    shapes
}

/// Writes into `out` the central differences of the elements `first .. first + out.len()`, numbered
/// across all parameters in visiting order (row-major within each parameter).
fn fill<M, A, V, L>(
    model: &mut M,
    visit: &mut V,
    loss: &mut L,
    shapes: &[(&'static str, IxDyn)],
    first: usize,
    out: &mut [A],
) where
    M: ?Sized,
    A: NdFloat,
    V: FnMut(&mut M, &mut dyn FnMut(Param<'_, A>)),
    L: FnMut(&mut M) -> A,
{
    let h = cast::<A>(H);
    let two_h = h + h;
    // The parameter `k` and the element `i` within it of the flat element `first`.
    let (mut k, mut i) = (0, first);
    while k < shapes.len() && i >= shapes[k].1.size() {
        i -= shapes[k].1.size();
        k += 1;
    }
    for g in out {
        while i >= shapes[k].1.size() {
            i = 0;
            k += 1;
        }
        let shape = &shapes[k].1;
        let tmp = perturb(model, visit, k, i, shape, |v| v + h);
        let fxh1 = loss(model);
        perturb(model, visit, k, i, shape, |_| tmp - h);
        let fxh2 = loss(model);
        perturb(model, visit, k, i, shape, |_| tmp);
        *g = (fxh1 - fxh2) / two_h;
        i += 1;
    }
}

/// Splits the flat gradient into one array per parameter.
fn assemble<A: NdFloat>(
    shapes: Vec<(&'static str, IxDyn)>,
    flat: Vec<A>,
) -> Vec<(&'static str, ArrayD<A>)> {
    let mut rest = flat.into_iter();
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let values: Vec<A> = rest.by_ref().take(shape.size()).collect();
            let grad = ArrayD::from_shape_vec(shape, values)
                .expect("the flat gradient has one element per parameter element");
            (name, grad)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unravel_is_row_major() {
        assert_eq!(unravel(0, &[2, 3]), [0, 0]);
        assert_eq!(unravel(4, &[2, 3]), [1, 1]);
        assert_eq!(unravel(23, &[2, 3, 4]), [1, 2, 3]);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
    }
}
