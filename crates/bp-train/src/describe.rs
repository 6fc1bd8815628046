//! The one-line description of a network, in the book's words where the book names it.

use std::fmt::Write as _;

use bp_core::{Compact, Init};
use ndarray::NdFloat;

use crate::multi_layer::MultiLayerConfig;
use crate::network::Network;

impl<A: NdFloat> Network<A> {
    /// A one-line description: the book's class and sizes for the lists its constructors build
    /// ([`MultiLayerConfig::layers`]), `TwoLayerNet 784-50-10, relu, init std 0.01`, else the
    /// layer list, `Sequential 784 -> affine 100, relu, batchnorm, affine 10, init he`.
    pub fn describe(&self) -> String {
        let init = match self.options().init {
            Init::Std(std) => format!("init std {}", Compact(std)),
            Init::He => "init he".to_owned(),
            Init::Xavier => "init xavier".to_owned(),
        };
        let mut s = match MultiLayerConfig::from_specs(self.input_size(), self.specs()) {
            Some(config) => {
                let config = MultiLayerConfig {
                    init: self.options().init,
                    weight_decay: self.options().weight_decay,
                    ..config
                };
                let sizes: Vec<String> = config.sizes().iter().map(usize::to_string).collect();
                let class = if config.is_two_layer_net() {
                    "TwoLayerNet"
                } else {
                    "MultiLayerNet"
                };
                // Softmax regression (no hidden layer) has no activation to name.
                let activation = if config.hidden_sizes.is_empty() {
                    String::new()
                } else {
                    format!(", {}", config.activation.name())
                };
                let mut s = format!("{class} {}{activation}, {init}", sizes.join("-"));
                if config.batch_norm {
                    s.push_str(", batch norm");
                }
                if let Some(ratio) = config.dropout {
                    write!(s, ", dropout {}", Compact(ratio))
                        .expect("writing to a String cannot fail");
                }
                s
            }
            None => {
                let shape: Vec<String> = self.input_shape().iter().map(usize::to_string).collect();
                let layers: Vec<String> = self.specs().iter().map(ToString::to_string).collect();
                format!(
                    "Sequential {} -> {}, {init}",
                    shape.join("x"),
                    layers.join(", ")
                )
            }
        };
        if self.options().weight_decay > 0.0 {
            write!(s, ", weight decay {}", Compact(self.options().weight_decay))
                .expect("writing to a String cannot fail");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::network::{NetOptions, Network};
    use bp_core::{Init, parse_layers};
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn net(list: &str, options: NetOptions) -> Network<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        Network::new(&[784], parse_layers(list).unwrap(), options, &mut rng).unwrap()
    }

    #[test]
    fn descriptions_name_the_books_nets_and_list_the_others() {
        let two = net("affine 50, relu, affine 10", NetOptions::default());
        assert_eq!(two.describe(), "TwoLayerNet 784-50-10, relu, init std 0.01");
        let multi = net(
            "affine 100, batchnorm, sigmoid, dropout 0.2, affine 10",
            NetOptions {
                init: Init::Xavier,
                weight_decay: 0.0,
            },
        );
        assert_eq!(
            multi.describe(),
            "MultiLayerNet 784-100-10, sigmoid, init xavier, batch norm, dropout 0.2"
        );
        let other = net(
            "affine 100, relu, dropout 0.3, batchnorm, affine 10",
            NetOptions {
                init: Init::He,
                weight_decay: 0.5,
            },
        );
        assert_eq!(
            other.describe(),
            "Sequential 784 -> affine 100, relu, dropout 0.3, batchnorm, affine 10, init he, weight decay 0.5"
        );
        let regression = net("affine 10", NetOptions::default());
        assert_eq!(regression.describe(), "MultiLayerNet 784-10, init std 0.01");
    }

    /// Numbers far from 1 are written with an exponent, not hundreds of digits.
    #[test]
    fn extreme_numbers_are_written_briefly() {
        let tiny = net(
            "affine 50, relu, dropout 1e-300, affine 10",
            NetOptions {
                init: Init::Std(1e300),
                weight_decay: 1e300,
            },
        );
        assert_eq!(
            tiny.describe(),
            "MultiLayerNet 784-50-10, relu, init std 1e300, dropout 1e-300, weight decay 1e300"
        );
        let other = net(
            "dropout 1e-300, affine 10",
            NetOptions {
                init: Init::Std(2.5e-20),
                weight_decay: 0.0,
            },
        );
        assert_eq!(
            other.describe(),
            "Sequential 784 -> dropout 1e-300, affine 10, init std 2.5e-20"
        );
    }
}
