//! End-to-end benchmarks of bp: what `cargo bench -p bp-bench` measures, as a library so that the
//! counting is tested.
//!
//! The bench itself (`benches/end_to_end.rs`) trains on the shipped MNIST and reports train seconds,
//! seconds per epoch, samples per second, evaluation seconds and the achieved GFLOP/s against the
//! matrix-product FLOPs counted here.

/// The floating-point operations of the matrix products of one lean training step of a multi-layer
/// perceptron with the given layer sizes (input first) and batch size: per affine layer `in x out`,
/// `2·batch·in·out` for the forward product and as much for `dW = xᵀ·dout`, and as much again for
/// `dx = dout·Wᵀ` for every layer but the first (whose input gradient nobody reads).
///
/// ```
/// // The book's TwoLayerNet 784-50-10, batch 100: ~16 MFLOP per step.
/// assert_eq!(bp_bench::step_flops(&[784, 50, 10], 100), 15_980_000);
/// ```
pub fn step_flops(sizes: &[usize], batch: usize) -> u64 {
    sizes
        .windows(2)
        .enumerate()
        .map(|(i, io)| {
            let products = if i == 0 { 2 } else { 3 };
            products * 2 * (batch * io[0] * io[1]) as u64
        })
        .sum()
}

/// The floating-point operations of the matrix products of inference on `n` samples.
///
/// ```
/// assert_eq!(bp_bench::predict_flops(&[784, 50, 10], 70_000), 5_558_000_000);
/// ```
pub fn predict_flops(sizes: &[usize], n: usize) -> u64 {
    sizes
        .windows(2)
        .map(|io| 2 * (n * io[0] * io[1]) as u64)
        .sum()
}

/// The floating-point operations of the matrix products of one lean training step of a network
/// given as a layer list for samples of shape `input`: for each convolution, `2·batch·FN·C·KH·KW·
/// OH·OW` for `W · col`, as much for `dW` and again for `dx` unless it is the first layer; for each
/// affine layer, as [`step_flops`] counts. Pooling, relu and dropout are not counted.
///
/// ```
/// let specs = bp_core::parse_layers("conv 30 5x5, relu, maxpool 2, affine 100, relu, affine 10")?;
/// // SimpleConvNet, batch 100: conv 2·2·100·30·25·576, affine 4320-100 and 100-10 with dx.
/// let conv = 2 * 2 * 100 * 30 * 25 * 576;
/// let affine = 3 * 2 * 100 * 4320 * 100 + 3 * 2 * 100 * 100 * 10;
/// assert_eq!(bp_bench::stack_step_flops(&specs, &[1, 28, 28], 100)?, (conv + affine) as u64);
/// # Ok::<(), bp_core::LayerError>(())
/// ```
///
/// # Errors
///
/// The list's error if it cannot be planned for `input`.
pub fn stack_step_flops(
    specs: &[bp_core::LayerSpec],
    input: &[usize],
    batch: usize,
) -> Result<u64, bp_core::LayerError> {
    let plan = bp_core::plan_stack(specs, input)?;
    let mut total = 0u64;
    let mut first = true;
    for ((spec, shape), layer) in specs.iter().zip(&plan.input_shapes).zip(&plan.layers) {
        let features: usize = shape.iter().product();
        let outputs: usize = layer.output_shape.iter().product();
        let fmas = match *spec {
            bp_core::LayerSpec::Conv { size, .. } => shape[0] * size[0] * size[1] * outputs,
            bp_core::LayerSpec::Affine { out } => features * out,
            _ => continue,
        };
        let products = if first { 2 } else { 3 };
        first = false;
        total += products * 2 * (batch * fmas) as u64;
    }
    Ok(total)
}

/// The median of some measurements (the mean of the middle two for an even count); `NaN` for none.
///
/// ```
/// assert_eq!(bp_bench::median(&[3.0, 1.0, 2.0]), 2.0);
/// assert_eq!(bp_bench::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
/// assert!(bp_bench::median(&[]).is_nan());
/// ```
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
