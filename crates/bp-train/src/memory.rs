//! The memory a training run will hold, estimated from its layer list before anything is
//! allocated, so that a caller can refuse a run that would not fit instead of aborting in the
//! allocator.

use std::fmt;

use bp_core::StackPlan;

use crate::element::Dtype;
use crate::network::EVAL_CHUNK;
use crate::train::{SHARED_BATCH_BUFFERS, TrainConfig};

/// What a training run will hold in memory, in bytes, by part (see [`estimate_memory`]). The
/// figures saturate at `u128::MAX` rather than overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The network's learnt parameters.
    pub params: usize,
    /// The network: its parameters, their gradients, the optimizer's state for each, and what
    /// the layers keep whatever the batch (running statistics, product buffers).
    pub network: u128,
    /// The activations: what the layers and the loss keep per sample of a training batch, times
    /// the batch size, and the inputs and outputs of one chunk of evaluation.
    pub activations: u128,
    /// The batch buffers the training loop gathers samples into (8 with two threads), and the
    /// batch's indices and labels.
    pub batches: u128,
    /// The data set: every training and test sample in the element type, the labels, and the
    /// order of shuffled sampling.
    pub data: u128,
}

impl MemoryEstimate {
    /// The bytes of every part together.
    pub fn total(&self) -> u128 {
        self.network
            .saturating_add(self.activations)
            .saturating_add(self.batches)
            .saturating_add(self.data)
    }
}

/// Estimates what a run of `cfg` will hold in memory: the network of `plan` (see
/// [`bp_core::plan_stack`]) in `dtype` with its optimizer's state, the activations and batch
/// buffers of `cfg.batch_size` samples, and a data set of `train_size` and `test_size` samples of
/// the plan's input shape. It counts what the training loop allocates and what the layers say
/// they keep ([`bp_core::LayerPlan`]); allocator overheads and the program itself are not in it.
///
/// ```
/// use bp_core::{parse_layers, plan_stack};
/// use bp_train::{Dtype, OptimizerKind, TrainConfig, estimate_memory};
///
/// let plan = plan_stack(&parse_layers("affine 1000000000, relu, affine 10")?, &[784])?;
/// let cfg = TrainConfig { optimizer: OptimizerKind::Adam, ..TrainConfig::default() };
/// let estimate = estimate_memory(&plan, Dtype::F32, &cfg, 60_000, 10_000);
/// assert_eq!(estimate.params, 784_000_000_000 + 1_000_000_000 + 10_000_000_000 + 10);
/// // Weights, gradients and Adam's two moments, 4 bytes each, and more: over 12 TB.
/// assert!(estimate.total() > 4 * 4 * 795_000_000_000);
/// # Ok::<(), bp_core::LayerError>(())
/// ```
pub fn estimate_memory(
    plan: &StackPlan,
    dtype: Dtype,
    cfg: &TrainConfig,
    train_size: usize,
    test_size: usize,
) -> MemoryEstimate {
    let size = dtype.size() as u128;
    let index = size_of::<usize>() as u128;
    let features = plan
        .input_shapes
        .first()
        .map_or(0, |s| product(s.iter().copied()));
    let classes = product(plan.output_shape.iter().copied());
    let batch = cfg.batch_size as u128;
    let params = plan.params();
    let (state, per_sample, widest) = plan.layers.iter().fold((0u128, 0u128, 0u128), |acc, l| {
        (
            acc.0.saturating_add(l.state as u128),
            acc.1.saturating_add(l.per_sample as u128),
            acc.2.max(product(l.output_shape.iter().copied())),
        )
    });
    // The values, their gradients and the optimizer's copies.
    let copies = 2 + cfg.optimizer.state_copies() as u128;
    let network = (params as u128)
        .saturating_mul(copies)
        .saturating_add(state)
        .saturating_mul(size);
    // The loss keeps the probabilities and hands back dout, each (batch, classes). An evaluation
    // chunk is copied out of the data set, then goes through the layers, two outputs at a time.
    let chunk = (EVAL_CHUNK.min(train_size.max(test_size))) as u128;
    let activations = per_sample
        .saturating_add(classes.saturating_mul(2))
        .saturating_mul(batch)
        .saturating_add(chunk.saturating_mul(features.saturating_add(widest.saturating_mul(2))))
        .saturating_mul(size);
    let buffers = if bp_core::threads() > 1 {
        SHARED_BATCH_BUFFERS as u128
    } else {
        1
    };
    let batches = buffers
        .saturating_mul(batch)
        .saturating_mul(features)
        .saturating_mul(size)
        .saturating_add(batch.saturating_mul(2 * index));
    let samples = (train_size as u128).saturating_add(test_size as u128);
    let data = samples
        .saturating_mul(features)
        .saturating_mul(size)
        .saturating_add(samples.saturating_mul(index))
        .saturating_add((train_size as u128).saturating_mul(index));
    MemoryEstimate {
        params,
        network,
        activations,
        batches,
        data,
    }
}

/// The product of sizes, saturating.
fn product(sizes: impl Iterator<Item = usize>) -> u128 {
    sizes.fold(1u128, |n, d| n.saturating_mul(d as u128))
}

/// A byte count in binary units, briefly: `512 bytes`, `3.1 KiB`, `23.4 GiB`, `8.7 TiB`; beyond
/// the largest unit, in that unit (`4096 EiB`).
///
/// ```
/// use bp_train::Bytes;
///
/// assert_eq!(Bytes(273 * 1024 * 1024).to_string(), "273 MiB");
/// assert_eq!(Bytes(3_400_000_000_000).to_string(), "3.1 TiB");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u128);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return write!(f, "{} bytes", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        let text = if value < 100.0 {
            format!("{value:.1}")
        } else {
            format!("{value:.0}")
        };
        write!(
            f,
            "{} {}",
            text.strip_suffix(".0").unwrap_or(&text),
            UNITS[unit]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::OptimizerKind;
    use bp_core::{parse_layers, plan_stack};

    fn plan(list: &str, input: &[usize]) -> StackPlan {
        plan_stack(&parse_layers(list).unwrap(), input).unwrap()
    }

    /// The book's run: every part counted by hand.
    #[test]
    fn the_books_run_is_counted_part_by_part() {
        let cfg = TrainConfig::default();
        let e = estimate_memory(
            &plan("affine 50, relu, affine 10", &[784]),
            Dtype::F32,
            &cfg,
            60_000,
            10_000,
        );
        let params = 784 * 50 + 50 + 50 * 10 + 10;
        assert_eq!(e.params, params);
        // Values and gradients (SGD keeps nothing), and the product buffers of both layers.
        assert_eq!(e.network, 4 * (2 * params as u128 + 784 * 50 + 50 * 10));
        // Per sample: affine 3 x 50, relu 50, affine 3 x 10, the loss 2 x 10; an evaluation
        // chunk of 1000 rows of 784 inputs and two outputs of 50.
        assert_eq!(
            e.activations,
            4 * (100 * (150 + 50 + 30 + 20) + 1000 * (784 + 100))
        );
        let buffers = if bp_core::threads() > 1 { 8 } else { 1 };
        assert_eq!(e.batches, 4 * buffers * 100 * 784 + 16 * 100);
        assert_eq!(e.data, 4 * 70_000 * 784 + 8 * 70_000 + 8 * 60_000);
        assert_eq!(e.total(), e.network + e.activations + e.batches + e.data);
        // Adam keeps two more copies of the parameters, f64 doubles every element.
        let adam = TrainConfig {
            optimizer: OptimizerKind::Adam,
            ..cfg.clone()
        };
        let e2 = estimate_memory(
            &plan("affine 50, relu, affine 10", &[784]),
            Dtype::F32,
            &adam,
            60_000,
            10_000,
        );
        assert_eq!(e2.network - e.network, 4 * 2 * params as u128);
        let e3 = estimate_memory(
            &plan("affine 50, relu, affine 10", &[784]),
            Dtype::F64,
            &cfg,
            60_000,
            10_000,
        );
        assert_eq!(e3.network, 2 * e.network);
    }

    /// Batch sizes and widths that a run cannot hold give figures, not overflows.
    #[test]
    fn huge_sizes_saturate_instead_of_overflowing() {
        let cfg = TrainConfig {
            batch_size: usize::MAX,
            ..TrainConfig::default()
        };
        let e = estimate_memory(
            &plan("affine 1000000000, relu, affine 10", &[784]),
            Dtype::F64,
            &cfg,
            usize::MAX,
            usize::MAX,
        );
        assert!(e.activations > u128::from(u64::MAX), "{e:?}");
        assert!(e.total() >= e.batches);
        let batch = TrainConfig {
            batch_size: 1_000_000_000,
            ..TrainConfig::default()
        };
        let e = estimate_memory(
            &plan("affine 50, relu, affine 10", &[784]),
            Dtype::F32,
            &batch,
            60_000,
            10_000,
        );
        // One batch buffer of 10⁹ rows of 784 f32 is 3.1 TB.
        assert!(e.batches >= 4 * 784 * 1_000_000_000, "{e:?}");
    }

    #[test]
    fn bytes_are_written_in_binary_units() {
        let cases: &[(u128, &str)] = &[
            (0, "0 bytes"),
            (1023, "1023 bytes"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (273 << 20, "273 MiB"),
            (66 * 1024 + 10, "66 KiB"),
            (99 * 1024 + 1000, "100 KiB"),
            (23 << 30, "23 GiB"),
            ((23 << 30) + (400 << 20), "23.4 GiB"),
            (3_136_000_000_000, "2.9 TiB"),
            (1 << 60, "1 EiB"),
            (u128::MAX, "295147905179352825856 EiB"),
        ];
        for &(bytes, text) in cases {
            assert_eq!(Bytes(bytes).to_string(), text, "{bytes}");
        }
    }
}
