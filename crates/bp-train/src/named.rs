//! Networks known by name (`bp-train --net`): the book's convnets of chapters 7 and 8, each a layer
//! list with the settings it is trained with.

use bp_core::{Init, LayerSpec, parse_layers};

use crate::optimizer::OptimizerKind;

/// A network known by name: its layer list and the training settings that go with it (each a
/// default that the command line's own flags override).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NamedNet {
    /// The name, as `--net` takes it.
    pub name: &'static str,
    /// What it is, for `--help`.
    pub about: &'static str,
    /// The layer list, for 28 x 28 images of 10 classes.
    pub layers: &'static str,
    /// The weight initialisation.
    pub init: Init,
    /// The update rule and its learning rate.
    pub optimizer: OptimizerKind,
    /// The learning rate.
    pub lr: f64,
    /// Samples per batch.
    pub batch_size: usize,
    /// Epochs of training.
    pub epochs: usize,
}

/// The named networks.
///
/// ```
/// use bp_train::{NAMED_NETS, NamedNet};
///
/// let simple = NamedNet::find("simple-convnet").unwrap();
/// assert_eq!(simple.layers().len(), 6);
/// assert!(NAMED_NETS.iter().all(|n| !n.layers().is_empty()));
/// ```
pub const NAMED_NETS: &[NamedNet] = &[
    NamedNet {
        name: "simple-convnet",
        about: "the book's SimpleConvNet (chapter 7): conv 30 5x5, pool, affine 100, affine 10",
        layers: "conv 30 5x5, relu, maxpool 2 stride 2, affine 100, relu, affine 10",
        init: Init::Std(0.01),
        optimizer: OptimizerKind::Adam,
        lr: 0.001,
        batch_size: 100,
        epochs: 20,
    },
    NamedNet {
        name: "deep-convnet",
        about: "the book's DeepConvNet (chapter 8): six 3x3 convs of 16 to 64, three pools, \
                affine 50 and 10 with dropout",
        layers: "conv 16 3x3 pad 1, relu, conv 16 3x3 pad 1, relu, maxpool 2 stride 2, \
                 conv 32 3x3 pad 1, relu, conv 32 3x3 pad 2, relu, maxpool 2 stride 2, \
                 conv 64 3x3 pad 1, relu, conv 64 3x3 pad 1, relu, maxpool 2 stride 2, \
                 affine 50, relu, dropout 0.5, affine 10, dropout 0.5",
        init: Init::He,
        optimizer: OptimizerKind::Adam,
        lr: 0.001,
        batch_size: 100,
        epochs: 20,
    },
];

impl NamedNet {
    /// The network called `name`, if there is one.
    pub fn find(name: &str) -> Option<&'static NamedNet> {
        NAMED_NETS.iter().find(|n| n.name == name)
    }

    /// The layer list.
    ///
    /// # Panics
    ///
    /// Never for the lists of [`NAMED_NETS`], which the tests read.
    pub fn layers(&self) -> Vec<LayerSpec> {
        parse_layers(self.layers).expect("a named net's list is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bp_core::plan_stack;

    #[test]
    fn the_books_convnets_have_the_books_shapes_and_sizes() {
        let simple = NamedNet::find("simple-convnet").unwrap().layers();
        let plan = plan_stack(&simple, &[1, 28, 28]).unwrap();
        assert_eq!(plan.input_shapes[3], [30, 12, 12]);
        assert_eq!(plan.output_shape, [10]);
        // The book's SimpleConvNet: W1 30x1x5x5, W2 4320x100, W3 100x10, and their biases.
        assert_eq!(plan.params(), 750 + 30 + 432_000 + 100 + 1000 + 10);

        let deep = NamedNet::find("deep-convnet").unwrap().layers();
        let plan = plan_stack(&deep, &[1, 28, 28]).unwrap();
        let shapes: Vec<&[usize]> = plan.input_shapes.iter().map(Vec::as_slice).collect();
        // After each pool: 16 x 14 x 14, 32 x 8 x 8 (the second 32 pads by 2), 64 x 4 x 4.
        assert_eq!(shapes[5], [16, 14, 14]);
        assert_eq!(shapes[10], [32, 8, 8]);
        assert_eq!(shapes[15], [64, 4, 4]);
        assert_eq!(plan.output_shape, [10]);
        // The book's pre_node_nums: 1·9, 16·9, 16·9, 32·9, 32·9, 64·9, 64·4·4, 50.
        let weights =
            9 * 16 + 144 * 16 + 144 * 32 + 288 * 32 + 288 * 64 + 576 * 64 + 1024 * 50 + 500;
        let biases = 16 + 16 + 32 + 32 + 64 + 64 + 50 + 10;
        assert_eq!(plan.params(), weights + biases);
        assert_eq!(NamedNet::find("deep-convnet").unwrap().init, Init::He);
        assert_eq!(NamedNet::find("wide"), None);
    }
}
