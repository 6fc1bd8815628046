//! Layer specs: the layer list that users type (`affine 100, relu, dropout 0.3, affine 10`) and
//! model files keep, and the one registry that turns a spec into a layer.
//!
//! A [`LayerSpec`] is plain data: what kind of layer, and the arguments a user chooses (an output
//! size, a ratio). Everything else follows from where the layer sits in a stack: [`plan_stack`]
//! walks the list with the shape of one sample, so that `affine 100` needs no input size, and
//! gives each layer its input shape, its output shape, its PyTorch module line
//! (`Linear(in_features=784, out_features=100, bias=True)`) and the sizes of what it will hold,
//! without allocating anything; [`build_stack`] then builds the layers of that plan. A list whose
//! sizes overflow (`affine 18446744073709551615`) is an error naming the layer, found before
//! anything is allocated, and the plan's sizes let a caller refuse a network that would not fit
//! in memory.
//!
//! # Adding a layer type
//!
//! A layer type is its file in this crate (the `Layer` implementation and its tests) and one
//! entry here: a variant of [`LayerSpec`], a row of [`LAYER_WORDS`] (its word, arguments and
//! parser) and its arms in [`LayerSpec::plan`] (its output shape, sizes and module line, with
//! checked arithmetic), [`LayerSpec::build`] (the layer itself) and [`fmt::Display`]. Nothing that
//! trains, saves, loads or evaluates networks names layer types.
//!
//! ```
//! use bp_core::{Init, Layer, build_stack, parse_layers};
//! use rand::SeedableRng;
//!
//! let specs = parse_layers("affine 100, relu, dropout 0.3, affine 10")?;
//! assert_eq!(specs.len(), 4);
//! assert_eq!(specs[0].to_string(), "affine 100");
//! let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
//! let stack = build_stack::<f32, _>(&specs, &[784], Init::He, &mut rng)?;
//! assert_eq!(stack.output_shape, [10]);
//! assert_eq!(stack.modules[0], "Linear(in_features=784, out_features=100, bias=True)");
//! assert_eq!(stack.layers.num_params(), 784 * 100 + 100 + 100 * 10 + 10);
//!
//! // The same sizes, before anything is allocated.
//! let plan = bp_core::plan_stack(&specs, &[784])?;
//! assert_eq!(plan.params(), 784 * 100 + 100 + 100 * 10 + 10);
//! assert_eq!(plan.layers[0].module, stack.modules[0]);
//! # Ok::<(), bp_core::LayerError>(())
//! ```

use std::fmt;

use ndarray::NdFloat;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::float::Compact;
use crate::im2col::Geometry;
use crate::init::Init;
use crate::layer::Layer;
use crate::{Affine, BatchNorm, Convolution, Dropout, Flatten, Pooling, Relu, Sequential, Sigmoid};

/// One layer of a stack, as a user writes it and a model file keeps it.
///
/// Its text form ([`Display`](fmt::Display), [`parse_layers`]) is the word and its arguments,
/// `affine 100`; its serde form is an object tagged by `layer`, `{"layer":"affine","out":100}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "layer", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// `affine N`: the fully connected layer [`Affine`] to `N` outputs (PyTorch's `Linear`).
    Affine {
        /// The number of outputs.
        out: usize,
    },
    /// `relu`: [`Relu`].
    Relu,
    /// `sigmoid`: [`Sigmoid`].
    Sigmoid,
    /// `dropout R`: [`Dropout`] of ratio `R` in `[0, 1)`.
    Dropout {
        /// The probability of dropping an element in training.
        ratio: f64,
    },
    /// `batchnorm`: [`BatchNorm`] over every feature of a sample (PyTorch's `BatchNorm1d`).
    BatchNorm,
    /// `conv FN KHxKW [stride S] [pad P]`: [`Convolution`] of `FN` filters of `KH x KW` over every
    /// channel of its input images, at stride `S` (1 if not said) with zero padding `P` (0 if not
    /// said); PyTorch's `Conv2d`.
    Conv {
        /// The number of filters, the output's channels.
        filters: usize,
        /// Rows and columns of a filter.
        size: [usize; 2],
        /// How far the filter moves.
        stride: usize,
        /// Zero padding on each side.
        pad: usize,
    },
    /// `maxpool K [stride S] [pad P]`: [`Pooling`], the maximum of each `K x K` window, at stride
    /// `S` (`K` if not said) with padding `P` (0 if not said); PyTorch's `MaxPool2d`.
    MaxPool {
        /// Rows and columns of a window.
        size: usize,
        /// How far the window moves.
        stride: usize,
        /// Padding on each side, at most `size / 2`.
        pad: usize,
    },
    /// `flatten`: [`Flatten`], each sample to a row (PyTorch's `Flatten`). Optional before
    /// `affine`, which reads images as rows itself.
    Flatten,
}

/// A word of the layer list: what it builds, its arguments, and how they are read.
#[derive(Clone, Copy, Debug)]
pub struct LayerWord {
    /// The word, as [`LayerSpec`]'s text form writes it.
    pub word: &'static str,
    /// Other words for the same layer (PyTorch's names).
    pub aliases: &'static [&'static str],
    /// The arguments, as `--help` shows them (`N`), or empty.
    pub args: &'static str,
    /// What the layer is, for `--help`.
    pub about: &'static str,
    /// Reads the arguments that follow the word.
    parse: fn(&[&str]) -> Result<LayerSpec, String>,
}

/// The registry of layer words, in the order `--help` lists them.
pub const LAYER_WORDS: &[LayerWord] = &[
    LayerWord {
        word: "affine",
        aliases: &["linear"],
        args: "N",
        about: "fully connected layer to N outputs, x·W + b (the book's Affine, PyTorch's Linear)",
        parse: |args| match args {
            [n] => Ok(LayerSpec::Affine {
                out: positive(n, "N, the number of outputs,")?,
            }),
            _ => Err("takes one argument, N, the number of outputs (affine 100)".to_owned()),
        },
    },
    LayerWord {
        word: "relu",
        aliases: &[],
        args: "",
        about: "rectified linear unit, max(x, 0)",
        parse: |args| no_args(args, LayerSpec::Relu),
    },
    LayerWord {
        word: "sigmoid",
        aliases: &[],
        args: "",
        about: "logistic sigmoid, 1 / (1 + exp(-x))",
        parse: |args| no_args(args, LayerSpec::Sigmoid),
    },
    LayerWord {
        word: "dropout",
        aliases: &[],
        args: "R",
        about: "drops each element with probability R in [0, 1) in training (inverted dropout)",
        parse: |args| match args {
            [r] => Ok(LayerSpec::Dropout { ratio: ratio(r)? }),
            _ => Err("takes one argument, R, the ratio in [0, 1) (dropout 0.5)".to_owned()),
        },
    },
    LayerWord {
        word: "batchnorm",
        aliases: &["batch_norm", "batchnorm1d"],
        args: "",
        about: "batch normalisation of every feature, with a learnt scale and shift",
        parse: |args| no_args(args, LayerSpec::BatchNorm),
    },
    LayerWord {
        word: "conv",
        aliases: &["conv2d", "convolution"],
        args: "FN KxK [stride S] [pad P]",
        about: "convolution of FN filters of K x K (or KHxKW) at stride S (1) with zero padding P \
                (0) (the book's Convolution, PyTorch's Conv2d); takes images",
        parse: |args| match args {
            [filters, size, options @ ..] => {
                let filters = positive(filters, "FN, the number of filters,")?;
                let size = kernel_size(size)?;
                let [stride, pad] = window_options(options, "conv 30 5x5 stride 1 pad 0")?;
                Ok(LayerSpec::Conv {
                    filters,
                    size,
                    stride: stride.unwrap_or(1),
                    pad: pad.unwrap_or(0),
                })
            }
            _ => {
                Err("takes FN and KxK, then optionally stride S and pad P (conv 30 5x5)".to_owned())
            }
        },
    },
    LayerWord {
        word: "maxpool",
        aliases: &["max_pool", "maxpool2d", "pooling"],
        args: "K [stride S] [pad P]",
        about: "max pooling over K x K windows at stride S (K) with padding P (0) (the book's \
                Pooling, PyTorch's MaxPool2d); takes images",
        parse: |args| match args {
            [size, options @ ..] => {
                let size = positive(size, "K, the window's size,")?;
                let [stride, pad] = window_options(options, "maxpool 2 stride 2 pad 0")?;
                Ok(LayerSpec::MaxPool {
                    size,
                    stride: stride.unwrap_or(size),
                    pad: pad.unwrap_or(0),
                })
            }
            _ => Err("takes K, then optionally stride S and pad P (maxpool 2)".to_owned()),
        },
    },
    LayerWord {
        word: "flatten",
        aliases: &[],
        args: "",
        about: "each sample to a row (optional before affine, which does it itself)",
        parse: |args| no_args(args, LayerSpec::Flatten),
    },
];

/// `K` or `KHxKW`, a filter's size.
fn kernel_size(text: &str) -> Result<[usize; 2], String> {
    let bad = || format!("KxK, the filter's size, must be like 5x5 or 3x2, not `{text}`");
    let (h, w) = text.split_once(['x', 'X']).unwrap_or((text, text));
    match (h.parse::<usize>(), w.parse::<usize>()) {
        (Ok(h), Ok(w)) if h > 0 && w > 0 => Ok([h, w]),
        _ => Err(bad()),
    }
}

/// `stride S` and `pad P`, in any order, each at most once.
fn window_options(args: &[&str], example: &str) -> Result<[Option<usize>; 2], String> {
    let mut found = [None, None];
    let mut rest = args;
    while let [name, tail @ ..] = rest {
        let (slot, what) = match name.to_ascii_lowercase().as_str() {
            "stride" => (0, "the stride S"),
            "pad" | "padding" => (1, "the padding P"),
            _ => {
                return Err(format!(
                    "expects `stride S` or `pad P` after its size, not `{name}` ({example})"
                ));
            }
        };
        let Some((value, tail)) = tail.split_first() else {
            return Err(format!("`{name}` needs a number ({example})"));
        };
        if found[slot].is_some() {
            return Err(format!("gives `{name}` twice"));
        }
        found[slot] = Some(match value.parse::<usize>() {
            Ok(v) if slot == 1 || v > 0 => v,
            _ if slot == 0 => {
                return Err(format!("{what} must be a positive integer, not `{value}`"));
            }
            _ => return Err(format!("{what} must be an integer >= 0, not `{value}`")),
        });
        rest = tail;
    }
    Ok(found)
}

fn no_args(args: &[&str], spec: LayerSpec) -> Result<LayerSpec, String> {
    if args.is_empty() {
        Ok(spec)
    } else {
        Err(format!("takes no arguments, given `{}`", args.join(" ")))
    }
}

fn positive(text: &str, what: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{what} must be a positive integer, not `{text}`")),
    }
}

fn ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..1.0).contains(&r) => Ok(r),
        _ => Err(format!("R must be a number in [0, 1), not `{text}`")),
    }
}

/// A layer list or a layer of it that cannot be read or built: the layer's position (from 1; 0
/// for the list as a whole), its text, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct LayerError {
    /// The layer's position in the list, from 1; 0 when the error is about the whole list.
    pub position: usize,
    /// The layer as written (or its text form).
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

impl LayerError {
    fn message(&self) -> String {
        if self.position == 0 {
            format!("the layer list {}", self.reason)
        } else {
            format!("layer {} `{}`: {}", self.position, self.text, self.reason)
        }
    }
}

/// Every layer word with its arguments, comma-separated: `affine N, relu, sigmoid, ...`.
pub fn layer_words_summary() -> String {
    LAYER_WORDS
        .iter()
        .map(|w| {
            if w.args.is_empty() {
                w.word.to_owned()
            } else {
                format!("{} {}", w.word, w.args)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a layer list: layers separated by commas, each a word and its arguments separated by
/// blanks (`affine 100, relu, dropout 0.3, affine 10`). Words are case-insensitive; PyTorch's
/// names are accepted too (`linear 100`).
///
/// # Errors
///
/// A [`LayerError`] naming the first layer that is empty, has an unknown word or wrong
/// arguments, or position 0 for an empty list.
///
/// ```
/// use bp_core::{LayerSpec, parse_layers};
///
/// assert_eq!(
///     parse_layers("Linear 50, relu, affine 10")?,
///     [LayerSpec::Affine { out: 50 }, LayerSpec::Relu, LayerSpec::Affine { out: 10 }]
/// );
/// let err = parse_layers("affine 100, rleu, affine 10").unwrap_err();
/// assert_eq!(err.position, 2);
/// assert!(err.to_string().starts_with("layer 2 `rleu`: unknown layer"), "{err}");
/// # Ok::<(), bp_core::LayerError>(())
/// ```
pub fn parse_layers(list: &str) -> Result<Vec<LayerSpec>, LayerError> {
    if list.trim().is_empty() {
        return Err(LayerError {
            position: 0,
            text: list.to_owned(),
            reason: format!(
                "is empty; it lists layers such as {}",
                layer_words_summary()
            ),
        });
    }
    list.split(',')
        .enumerate()
        .map(|(i, item)| {
            let text = item.trim();
            let error = |reason: String| LayerError {
                position: i + 1,
                text: text.to_owned(),
                reason,
            };
            let mut tokens = text.split_whitespace();
            let Some(word) = tokens.next() else {
                return Err(error(
                    "is empty (two commas in a row, or a comma at an end?)".to_owned(),
                ));
            };
            let args: Vec<&str> = tokens.collect();
            let word = word.to_ascii_lowercase();
            let entry = LAYER_WORDS
                .iter()
                .find(|w| w.word == word || w.aliases.contains(&word.as_str()))
                .ok_or_else(|| {
                    error(format!(
                        "unknown layer `{word}`; the layers are {}",
                        layer_words_summary()
                    ))
                })?;
            (entry.parse)(&args).map_err(|reason| error(format!("{} {reason}", entry.word)))
        })
        .collect()
}

impl fmt::Display for LayerSpec {
    /// The text form, as [`parse_layers`] reads it: `affine 100`, `relu`, `dropout 0.3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerSpec::Affine { out } => write!(f, "affine {out}"),
            LayerSpec::Relu => f.write_str("relu"),
            LayerSpec::Sigmoid => f.write_str("sigmoid"),
            LayerSpec::Dropout { ratio } => write!(f, "dropout {}", Compact(*ratio)),
            LayerSpec::BatchNorm => f.write_str("batchnorm"),
            LayerSpec::Conv {
                filters,
                size: [h, w],
                stride,
                pad,
            } => {
                write!(f, "conv {filters} {h}x{w}")?;
                if *stride != 1 {
                    write!(f, " stride {stride}")?;
                }
                if *pad != 0 {
                    write!(f, " pad {pad}")?;
                }
                Ok(())
            }
            LayerSpec::MaxPool { size, stride, pad } => {
                write!(f, "maxpool {size}")?;
                if stride != size {
                    write!(f, " stride {stride}")?;
                }
                if *pad != 0 {
                    write!(f, " pad {pad}")?;
                }
                Ok(())
            }
            LayerSpec::Flatten => f.write_str("flatten"),
        }
    }
}

/// What a layer will be for a given input, worked out from its spec without allocating: its
/// output shape, its PyTorch module line, and the number of elements it will hold (see
/// [`LayerSpec::plan`]). The sizes are for estimating memory; they are counts of elements of the
/// network's element type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerPlan {
    /// The shape of one sample of its output.
    pub output_shape: Vec<usize>,
    /// The layer as PyTorch prints its equivalent module.
    pub module: String,
    /// Its learnt parameters (each also has a gradient of the same size, and an optimizer may
    /// keep state of that size too).
    pub params: usize,
    /// Other elements it keeps whatever the batch size: running statistics, the buffers of its
    /// matrix products.
    pub state: usize,
    /// Elements it keeps per sample of a training batch: its output and what its backward pass
    /// needs (a mask, a normalised input, a spare output buffer).
    pub per_sample: usize,
}

/// A layer built from its spec.
pub struct BuiltLayer<A> {
    /// The layer.
    pub layer: Box<dyn Layer<A>>,
    /// The shape of one sample of its output.
    pub output_shape: Vec<usize>,
    /// The layer as PyTorch prints its equivalent module.
    pub module: String,
}

/// `a * b`, or the reason it cannot be counted, naming `what`.
fn times(a: usize, b: usize, what: &str) -> Result<usize, String> {
    a.checked_mul(b)
        .ok_or_else(|| format!("{what} ({a} x {b}) are more than this machine can count"))
}

impl LayerSpec {
    /// Whether the layer draws a seed for a random generator of its own (dropout's masks):
    /// [`build_stack`] builds such layers after every other, so that the weights are drawn first.
    pub fn draws_seed(&self) -> bool {
        matches!(self, LayerSpec::Dropout { .. })
    }

    /// Whether the layer wants a sample as an image, (channels, rows, columns), rather than a
    /// flat row of features; a network that starts with such a layer is fed images.
    pub fn wants_images(&self) -> bool {
        matches!(self, LayerSpec::Conv { .. } | LayerSpec::MaxPool { .. })
    }

    /// What the layer will be for samples of shape `input` (without the batch axis): its output
    /// shape, module line and sizes, computed with checked arithmetic and without allocating.
    /// [`build`](LayerSpec::build) builds what this plans.
    ///
    /// # Errors
    ///
    /// The reason, if the spec's arguments are out of range (a spec read from a file is checked
    /// here), the layer cannot take that input, or one of its sizes overflows `usize`.
    ///
    /// ```
    /// use bp_core::LayerSpec;
    ///
    /// let plan = LayerSpec::Affine { out: 100 }.plan(&[1, 28, 28])?;
    /// assert_eq!(plan.output_shape, [100]);
    /// assert_eq!(plan.params, 784 * 100 + 100);
    /// let err = LayerSpec::Affine { out: usize::MAX }.plan(&[784]).unwrap_err();
    /// assert!(err.contains("more than this machine can count"), "{err}");
    /// # Ok::<(), String>(())
    /// ```
    pub fn plan(&self, input: &[usize]) -> Result<LayerPlan, String> {
        let features = input
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| {
                format!("samples of shape {input:?} have more elements than this machine can count")
            })?;
        if input.is_empty() || features == 0 {
            return Err(format!("cannot take samples of shape {input:?}"));
        }
        // A layer whose output is its input's shape.
        let same = |module: String, params: usize, state: usize, per_sample: usize| LayerPlan {
            output_shape: input.to_vec(),
            module,
            params,
            state,
            per_sample,
        };
        Ok(match *self {
            LayerSpec::Affine { out } => {
                if out == 0 {
                    return Err("the number of outputs must be positive".to_owned());
                }
                let weights = times(features, out, "its weights")?;
                LayerPlan {
                    output_shape: vec![out],
                    module: format!(
                        "Linear(in_features={features}, out_features={out}, bias=True)"
                    ),
                    params: weights.checked_add(out).ok_or_else(|| {
                        format!("its weights and biases ({weights} + {out}) are more than this machine can count")
                    })?,
                    // The products' scratch buffers: a copy of W for `dout · Wᵀ` with few outputs
                    // (one per part of a cut product; W's size bounds the copies of two).
                    state: weights,
                    // The output, the spare output buffer kept from `dout`, and the columns the
                    // kernels copy out of `dout` (fewer than 16 a row per part).
                    per_sample: times(3, out, "its outputs")?,
                }
            }
            // The mask.
            LayerSpec::Relu => same("ReLU()".to_owned(), 0, 0, features),
            // The output, kept for the backward pass.
            LayerSpec::Sigmoid => same("Sigmoid()".to_owned(), 0, 0, features),
            LayerSpec::Dropout { ratio } => {
                if !(0.0..1.0).contains(&ratio) {
                    return Err(format!(
                        "the ratio must be in [0, 1), not {}",
                        Compact(ratio)
                    ));
                }
                // The mask.
                same(
                    format!("Dropout(p={}, inplace=False)", python_float(ratio)),
                    0,
                    0,
                    features,
                )
            }
            LayerSpec::BatchNorm => same(
                format!(
                    "BatchNorm1d({features}, eps={}, momentum=0.1, affine=True, track_running_stats=True)",
                    python_float(BatchNorm::<f64>::EPS)
                ),
                // γ and β.
                times(2, features, "its scales and shifts")?,
                // The running mean and variance, the batch's mean, variance and 1 / std.
                times(5, features, "its statistics")?,
                // The normalised input and the output.
                times(2, features, "its outputs")?,
            ),
            LayerSpec::Conv {
                filters,
                size,
                stride,
                pad,
            } => {
                if filters == 0 || size.contains(&0) || stride == 0 {
                    return Err(
                        "the number of filters, their size and the stride must be positive"
                            .to_owned(),
                    );
                }
                let g = window(input, (size[0], size[1]), stride, pad)?;
                let rows = times(g.channels, size[0] * size[1], "its filters' elements")?;
                let weights = times(filters, rows, "its weights")?;
                let positions = times(g.oh, g.ow, "its output positions")?;
                let outputs = times(filters, positions, "its outputs")?;
                let col = times(rows, positions, "its unrolled images")?;
                let padding = if pad == 0 {
                    String::new()
                } else {
                    format!(", padding=({pad}, {pad})")
                };
                LayerPlan {
                    output_shape: vec![filters, g.oh, g.ow],
                    module: format!(
                        "Conv2d({}, {filters}, kernel_size=({}, {}), stride=({stride}, {stride}){padding})",
                        g.channels, size[0], size[1]
                    ),
                    params: weights.checked_add(filters).ok_or_else(|| {
                        format!("its weights and biases ({weights} + {filters}) are more than this machine can count")
                    })?,
                    state: 0,
                    // The unrolled images, the product's output, the output and the spare
                    // output kept from `dout`, and a share of a part's dW and db (a part is 5
                    // samples).
                    per_sample: col
                        .checked_add(times(3, outputs, "its outputs")?)
                        .and_then(|n| n.checked_add(weights.div_ceil(5) + filters))
                        .ok_or_else(|| "its buffers are more than this machine can count".to_owned())?,
                }
            }
            LayerSpec::MaxPool { size, stride, pad } => {
                if size == 0 || stride == 0 || pad > size / 2 {
                    return Err(format!(
                        "the size and stride must be positive and the padding at most half the \
                         size, not size {size}, stride {stride}, pad {pad}"
                    ));
                }
                let g = window(input, (size, size), stride, pad)?;
                if g.height
                    .checked_mul(g.width)
                    .is_none_or(|n| n > u32::MAX as usize)
                {
                    return Err(format!(
                        "images of {} x {} are more than it can index",
                        g.height, g.width
                    ));
                }
                let outputs = times(
                    g.channels,
                    times(g.oh, g.ow, "its output positions")?,
                    "its outputs",
                )?;
                LayerPlan {
                    output_shape: vec![g.channels, g.oh, g.ow],
                    module: format!(
                        "MaxPool2d(kernel_size={size}, stride={stride}, padding={pad}, dilation=1, ceil_mode=False)"
                    ),
                    params: 0,
                    state: 0,
                    // The output, the spare output kept from `dout` and where each maximum is.
                    per_sample: times(3, outputs, "its outputs")?,
                }
            }
            LayerSpec::Flatten => LayerPlan {
                output_shape: vec![features],
                module: "Flatten(start_dim=1, end_dim=-1)".to_owned(),
                params: 0,
                state: 0,
                per_sample: 0,
            },
        })
    }

    /// Builds the layer for samples of shape `input` (without the batch axis): weights drawn from
    /// `rng` as `init` says, a dropout seed drawn from `rng`.
    ///
    /// # Errors
    ///
    /// As [`plan`](LayerSpec::plan), which is checked first: nothing is allocated for a spec
    /// that cannot be built.
    pub fn build<A: NdFloat, R: Rng + ?Sized>(
        &self,
        input: &[usize],
        init: Init,
        rng: &mut R,
    ) -> Result<BuiltLayer<A>, String> {
        let plan = self.plan(input)?;
        // The plan has checked that this product does not overflow.
        let features = input.iter().product::<usize>();
        let layer: Box<dyn Layer<A>> = match *self {
            LayerSpec::Affine { out } => Box::new(Affine::random(features, out, init, rng)),
            LayerSpec::Relu => Box::<Relu>::default(),
            LayerSpec::Sigmoid => Box::<Sigmoid<A>>::default(),
            LayerSpec::Dropout { ratio } => Box::new(Dropout::new(ratio, rng.next_u64())),
            LayerSpec::BatchNorm => Box::new(BatchNorm::new(features)),
            LayerSpec::Conv {
                filters,
                size,
                stride,
                pad,
            } => Box::new(Convolution::random(
                filters,
                input[0],
                (size[0], size[1]),
                stride,
                pad,
                init,
                rng,
            )),
            LayerSpec::MaxPool { size, stride, pad } => Box::new(Pooling::new(size, stride, pad)),
            LayerSpec::Flatten => Box::<Flatten>::default(),
        };
        Ok(BuiltLayer {
            layer,
            output_shape: plan.output_shape,
            module: plan.module,
        })
    }
}

/// The geometry of a window over samples of shape `input`, which must be images.
fn window(
    input: &[usize],
    size: (usize, usize),
    stride: usize,
    pad: usize,
) -> Result<Geometry, String> {
    let &[c, h, w] = input else {
        return Err(format!(
            "takes images (channels, rows, columns), not samples of shape {input:?}: put it \
             first, or after another layer that gives images"
        ));
    };
    Geometry::new([c, h, w], size, stride, pad).ok_or_else(|| {
        format!(
            "a {} x {} window at stride {stride} with padding {pad} does not fit images of {h} x {w}",
            size.0, size.1
        )
    })
}

/// A float as Python's `repr` writes it: `0.5`, `1.0`, `1e-06`.
fn python_float(v: f64) -> String {
    let s = format!("{v:?}");
    if let Some((mantissa, exp)) = s.split_once('e') {
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    if s.contains(['.', 'n', 'N']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// The plan of a stack of layers (see [`plan_stack`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackPlan {
    /// Each layer's plan, first to last.
    pub layers: Vec<LayerPlan>,
    /// The shape of one sample of each layer's input, first to last.
    pub input_shapes: Vec<Vec<usize>>,
    /// The shape of one sample of the last layer's output.
    pub output_shape: Vec<usize>,
}

impl StackPlan {
    /// The learnt parameters of every layer. The sum is checked: it is at most `usize::MAX`,
    /// saturating there (a stack that large cannot be built anyway).
    pub fn params(&self) -> usize {
        self.layers
            .iter()
            .fold(0usize, |n, l| n.saturating_add(l.params))
    }
}

/// Plans the layers of `specs` for samples of shape `input` (without the batch axis), each
/// taking the shape the one before gives, without allocating any of them (see
/// [`LayerSpec::plan`]).
///
/// # Errors
///
/// A [`LayerError`] naming the first layer that cannot be built, or position 0 for an empty list.
pub fn plan_stack(specs: &[LayerSpec], input: &[usize]) -> Result<StackPlan, LayerError> {
    if specs.is_empty() {
        return Err(LayerError {
            position: 0,
            text: String::new(),
            reason: "is empty".to_owned(),
        });
    }
    let mut shape = input.to_vec();
    let mut input_shapes = Vec::with_capacity(specs.len());
    let mut layers = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let plan = spec.plan(&shape).map_err(|reason| LayerError {
            position: i + 1,
            text: spec.to_string(),
            reason,
        })?;
        input_shapes.push(std::mem::replace(&mut shape, plan.output_shape.clone()));
        layers.push(plan);
    }
    Ok(StackPlan {
        layers,
        input_shapes,
        output_shape: shape,
    })
}

/// A stack of layers built from a list of specs (see [`build_stack`]).
pub struct Stack<A> {
    /// The layers, first to last.
    pub layers: Sequential<A>,
    /// The shape of one sample of each layer's input, first to last.
    pub input_shapes: Vec<Vec<usize>>,
    /// The shape of one sample of the last layer's output.
    pub output_shape: Vec<usize>,
    /// Each layer as PyTorch prints its equivalent module, first to last.
    pub modules: Vec<String>,
}

/// Builds the layers of `specs` for samples of shape `input` (without the batch axis), each
/// taking the shape the one before gives. The whole list is planned first ([`plan_stack`]), so a
/// list that cannot be built allocates nothing.
///
/// Weights are drawn from `rng` layer by layer in order (so `affine 50, relu, affine 10` draws
/// `W1` then `W2`, as the book's `TwoLayerNet`), then each dropout layer draws its seed, in order.
///
/// # Errors
///
/// A [`LayerError`] naming the first layer that cannot be built (see [`LayerSpec::plan`]), or
/// position 0 for an empty list.
pub fn build_stack<A: NdFloat, R: Rng + ?Sized>(
    specs: &[LayerSpec],
    input: &[usize],
    init: Init,
    rng: &mut R,
) -> Result<Stack<A>, LayerError> {
    let plan = plan_stack(specs, input)?;
    let build = |i: usize, spec: &LayerSpec, rng: &mut R| {
        spec.build(&plan.input_shapes[i], init, rng)
            .map_err(|reason| LayerError {
                position: i + 1,
                text: spec.to_string(),
                reason,
            })
    };
    // First every layer but those that draw a seed, in order, then those.
    let mut built: Vec<Option<BuiltLayer<A>>> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        built.push(if spec.draws_seed() {
            None
        } else {
            Some(build(i, spec, rng)?)
        });
    }
    let mut layers = Vec::with_capacity(specs.len());
    let mut modules = Vec::with_capacity(specs.len());
    for ((i, spec), slot) in specs.iter().enumerate().zip(built) {
        let layer = match slot {
            Some(layer) => layer,
            None => build(i, spec, rng)?,
        };
        layers.push(layer.layer);
        modules.push(layer.module);
    }
    Ok(Stack {
        layers: Sequential::new(layers),
        input_shapes: plan.input_shapes,
        output_shape: plan.output_shape,
        modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn every_word_reads_back_from_its_text_form() {
        let specs = [
            LayerSpec::Affine { out: 7 },
            LayerSpec::Relu,
            LayerSpec::Sigmoid,
            LayerSpec::Dropout { ratio: 0.25 },
            LayerSpec::BatchNorm,
            LayerSpec::Conv {
                filters: 16,
                size: [3, 2],
                stride: 2,
                pad: 1,
            },
            LayerSpec::MaxPool {
                size: 3,
                stride: 2,
                pad: 1,
            },
            LayerSpec::Flatten,
        ];
        let text: Vec<String> = specs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text[5..],
            [
                "conv 16 3x2 stride 2 pad 1",
                "maxpool 3 stride 2 pad 1",
                "flatten"
            ]
        );
        assert_eq!(parse_layers(&text.join(", ")).unwrap(), specs);
        // Every registry word appears among the specs' text forms.
        for word in LAYER_WORDS {
            assert!(text.iter().any(|t| t.split(' ').next() == Some(word.word)));
        }
        let json = serde_json::to_string(&specs).unwrap();
        assert_eq!(
            json,
            r#"[{"layer":"affine","out":7},{"layer":"relu"},{"layer":"sigmoid"},{"layer":"dropout","ratio":0.25},{"layer":"batch_norm"},{"layer":"conv","filters":16,"size":[3,2],"stride":2,"pad":1},{"layer":"max_pool","size":3,"stride":2,"pad":1},{"layer":"flatten"}]"#
        );
        assert_eq!(
            serde_json::from_str::<Vec<LayerSpec>>(&json).unwrap(),
            specs
        );
        assert!(serde_json::from_str::<LayerSpec>(r#"{"layer":"affine","out":7,"x":1}"#).is_err());
        assert!(serde_json::from_str::<LayerSpec>(r#"{"layer":"conv"}"#).is_err());
    }

    #[test]
    fn malformed_lists_name_the_layer_and_the_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "the layer list is empty"),
            ("affine 10,", 2, "layer 2 ``: is empty"),
            ("affine 10,, relu", 2, "is empty"),
            ("affine", 1, "affine takes one argument, N"),
            (
                "affine 0",
                1,
                "N, the number of outputs, must be a positive integer, not `0`",
            ),
            ("affine -3", 1, "not `-3`"),
            ("affine 10 20", 1, "takes one argument"),
            ("relu 3", 1, "relu takes no arguments, given `3`"),
            ("dropout 1", 1, "R must be a number in [0, 1), not `1`"),
            ("dropout", 1, "dropout takes one argument, R"),
            (
                "affine 10, convolve 3",
                2,
                "unknown layer `convolve`; the layers are affine N, relu",
            ),
        ];
        for &(list, position, expected) in cases {
            let err = parse_layers(list).unwrap_err();
            assert_eq!(err.position, position, "{list}: {err}");
            assert!(err.to_string().contains(expected), "{list}: {err}");
        }
    }

    #[test]
    fn convnets_read_plan_and_build_as_the_book_and_pytorch_say() {
        let specs =
            parse_layers("conv 30 5x5, relu, maxpool 2 stride 2, affine 100, relu, affine 10")
                .unwrap();
        assert_eq!(
            specs[0],
            LayerSpec::Conv {
                filters: 30,
                size: [5, 5],
                stride: 1,
                pad: 0
            }
        );
        assert_eq!(specs[2].to_string(), "maxpool 2");
        assert!(specs[0].wants_images() && specs[2].wants_images() && !specs[3].wants_images());
        let plan = plan_stack(&specs, &[1, 28, 28]).unwrap();
        assert_eq!(
            plan.input_shapes,
            [
                vec![1, 28, 28],
                vec![30, 24, 24],
                vec![30, 24, 24],
                vec![30, 12, 12],
                vec![100],
                vec![100]
            ]
        );
        // The book's SimpleConvNet: 30·25 + 30 + 4320·100 + 100 + 100·10 + 10.
        assert_eq!(plan.params(), 780 + 432_100 + 1010);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let stack = build_stack::<f32, _>(&specs, &[1, 28, 28], Init::Std(0.01), &mut rng).unwrap();
        assert_eq!(
            stack.modules,
            plan.layers
                .iter()
                .map(|l| l.module.clone())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            stack.modules[0],
            "Conv2d(1, 30, kernel_size=(5, 5), stride=(1, 1))"
        );
        assert_eq!(
            stack.modules[2],
            "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
        );
        assert_eq!(stack.layers.num_params(), plan.params());
        let names: Vec<&str> = stack.layers.layers().iter().map(|l| l.name()).collect();
        assert_eq!(
            names,
            ["Convolution", "Relu", "Pooling", "Affine", "Relu", "Affine"]
        );
        let out = stack
            .layers
            .predict(ndarray::ArrayD::zeros(ndarray::IxDyn(&[2, 1, 28, 28])));
        assert_eq!(out.shape(), [2, 10]);

        let specs = parse_layers(
            "Conv2d 16 3x3 pad 1, conv 32 3 stride 2 padding 2, MaxPool2d 3 pad 1 stride 1, flatten",
        )
        .unwrap();
        let plan = plan_stack(&specs, &[3, 7, 5]).unwrap();
        // 7 x 5 padded by 1: 7 x 5; padded by 2 at stride 2: (11 - 3) / 2 + 1 = 5 by (9 - 3) / 2
        // + 1 = 4; the pool keeps 5 x 4.
        assert_eq!(
            plan.input_shapes[1..],
            [vec![16, 7, 5], vec![32, 5, 4], vec![32, 5, 4]]
        );
        assert_eq!(plan.output_shape, [640]);
        assert_eq!(
            plan.layers[0].module,
            "Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
        );
        assert_eq!(plan.layers[3].module, "Flatten(start_dim=1, end_dim=-1)");
        assert_eq!(plan.params(), 16 * 27 + 16 + 32 * 144 + 32);
    }

    #[test]
    fn convnets_that_cannot_be_built_are_refused_naming_the_layer() {
        let parse_cases: &[(&str, &str)] = &[
            ("conv 30", "conv takes FN and KxK"),
            (
                "conv 0 5x5",
                "FN, the number of filters, must be a positive integer, not `0`",
            ),
            (
                "conv 30 5y5",
                "KxK, the filter's size, must be like 5x5 or 3x2, not `5y5`",
            ),
            ("conv 30 0x5", "not `0x5`"),
            ("conv 30 5x5 stride", "`stride` needs a number"),
            (
                "conv 30 5x5 stride 0",
                "the stride S must be a positive integer, not `0`",
            ),
            (
                "conv 30 5x5 pad -1",
                "the padding P must be an integer >= 0, not `-1`",
            ),
            ("conv 30 5x5 pad 1 pad 2", "gives `pad` twice"),
            (
                "conv 30 5x5 dilation 2",
                "expects `stride S` or `pad P` after its size, not `dilation`",
            ),
            ("maxpool", "maxpool takes K"),
            (
                "maxpool 2x2",
                "K, the window's size, must be a positive integer",
            ),
            ("flatten 2", "flatten takes no arguments"),
        ];
        for &(list, expected) in parse_cases {
            let err = parse_layers(list).unwrap_err();
            assert!(err.to_string().contains(expected), "{list}: {err}");
        }
        let plan_cases: &[(&str, &[usize], &str)] = &[
            (
                "conv 8 3x3",
                &[784],
                "layer 1 `conv 8 3x3`: takes images (channels, rows, columns), not samples of shape [784]",
            ),
            (
                "conv 8 5x5",
                &[1, 4, 4],
                "a 5 x 5 window at stride 1 with padding 0 does not fit images of 4 x 4",
            ),
            (
                "affine 10, maxpool 2",
                &[1, 4, 4],
                "layer 2 `maxpool 2`: takes images",
            ),
            (
                "maxpool 2 pad 2",
                &[1, 4, 4],
                "the padding at most half the size, not size 2, stride 2, pad 2",
            ),
        ];
        for &(list, input, expected) in plan_cases {
            let err = plan_stack(&parse_layers(list).unwrap(), input).unwrap_err();
            assert!(err.to_string().contains(expected), "{list}: {err}");
        }
        let huge = LayerSpec::Conv {
            filters: usize::MAX,
            size: [3, 3],
            stride: 1,
            pad: 0,
        };
        let err = huge.plan(&[2, 8, 8]).unwrap_err();
        assert!(err.contains("more than this machine can count"), "{err}");
    }

    #[test]
    fn shapes_flow_through_the_stack_and_modules_read_as_pytorch() {
        let specs = parse_layers("affine 5, batchnorm, sigmoid, dropout 0.5, affine 3").unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let stack = build_stack::<f64, _>(&specs, &[2, 3], Init::Xavier, &mut rng).unwrap();
        assert_eq!(
            stack.input_shapes,
            [vec![2, 3], vec![5], vec![5], vec![5], vec![5]]
        );
        assert_eq!(stack.output_shape, [3]);
        assert_eq!(
            stack.modules,
            [
                "Linear(in_features=6, out_features=5, bias=True)",
                "BatchNorm1d(5, eps=1e-06, momentum=0.1, affine=True, track_running_stats=True)",
                "Sigmoid()",
                "Dropout(p=0.5, inplace=False)",
                "Linear(in_features=5, out_features=3, bias=True)",
            ]
        );
        let names: Vec<&str> = stack.layers.layers().iter().map(|l| l.name()).collect();
        assert_eq!(
            names,
            ["Affine", "BatchNorm", "Sigmoid", "Dropout", "Affine"]
        );
    }

    #[test]
    fn weights_are_drawn_before_dropout_seeds() {
        let specs = parse_layers("affine 4, relu, dropout 0.5, affine 2").unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let stack = build_stack::<f64, _>(&specs, &[3], Init::He, &mut rng).unwrap();
        let mut by_hand = Xoshiro256PlusPlus::seed_from_u64(3);
        let a1 = Affine::<f64>::random(3, 4, Init::He, &mut by_hand);
        let a2 = Affine::<f64>::random(4, 2, Init::He, &mut by_hand);
        let dropout = Dropout::<f64>::new(0.5, by_hand.next_u64());
        let mut built = Vec::new();
        stack
            .layers
            .visit_params_ref(&mut |_, v| built.push(v.to_owned()));
        assert_eq!(built[0], a1.w().clone().into_dyn());
        assert_eq!(built[2], a2.w().clone().into_dyn());
        let mut dropped = stack.layers.layers()[2].clone();
        let mut reference: Box<dyn Layer<f64>> = Box::new(dropout);
        let x = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[8, 4]), 1.0);
        assert_eq!(dropped.forward(x.clone()), reference.forward(x));
    }

    #[test]
    fn a_layer_that_cannot_take_its_input_is_named() {
        let specs = vec![LayerSpec::Dropout { ratio: 1.5 }];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let err = build_stack::<f32, _>(&specs, &[4], Init::He, &mut rng)
            .err()
            .expect("the list cannot be built");
        assert_eq!(err.position, 1);
        assert!(
            err.to_string()
                .contains("the ratio must be in [0, 1), not 1.5"),
            "{err}"
        );
        let err = build_stack::<f32, _>(&[], &[4], Init::He, &mut rng)
            .err()
            .expect("the list cannot be built");
        assert_eq!(err.to_string(), "the layer list is empty");
    }

    #[test]
    fn plans_are_what_is_built() {
        let specs =
            parse_layers("affine 5, batchnorm, sigmoid, dropout 0.5, affine 3, relu").unwrap();
        let plan = plan_stack(&specs, &[2, 3]).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let stack = build_stack::<f64, _>(&specs, &[2, 3], Init::He, &mut rng).unwrap();
        assert_eq!(plan.input_shapes, stack.input_shapes);
        assert_eq!(plan.output_shape, stack.output_shape);
        let modules: Vec<&str> = plan.layers.iter().map(|l| l.module.as_str()).collect();
        assert_eq!(modules, stack.modules);
        for (layer, built) in plan.layers.iter().zip(stack.layers.layers()) {
            assert_eq!(layer.params, built.num_params(), "{}", layer.module);
        }
        assert_eq!(plan.params(), stack.layers.num_params());
        assert_eq!(plan.params(), 6 * 5 + 5 + 2 * 5 + 5 * 3 + 3);
        let sizes: Vec<(usize, usize)> = plan
            .layers
            .iter()
            .map(|l| (l.state, l.per_sample))
            .collect();
        assert_eq!(sizes, [(30, 15), (25, 10), (0, 5), (0, 5), (15, 9), (0, 3)]);
    }

    #[test]
    fn sizes_that_overflow_are_refused_naming_the_layer() {
        let max = usize::MAX;
        let cases: &[(&[LayerSpec], &[usize], usize, String)] = &[
            (
                &[LayerSpec::Affine { out: max }],
                &[784],
                1,
                format!(
                    "layer 1 `affine {max}`: its weights (784 x {max}) are more than this machine can count"
                ),
            ),
            (
                &[LayerSpec::Relu, LayerSpec::Affine { out: max / 784 }],
                &[784],
                2,
                format!(
                    "layer 2 `affine {}`: its weights and biases ({} + {}) are more than this machine can count",
                    max / 784,
                    max / 784 * 784,
                    max / 784
                ),
            ),
            (
                &[LayerSpec::Affine { out: 10 }],
                &[max, 2],
                1,
                format!(
                    "layer 1 `affine 10`: samples of shape [{max}, 2] have more elements than this machine can count"
                ),
            ),
            (
                &[LayerSpec::BatchNorm],
                &[max / 2 + 1],
                1,
                format!(
                    "layer 1 `batchnorm`: its scales and shifts (2 x {}) are more than this machine can count",
                    max / 2 + 1
                ),
            ),
            (
                &[LayerSpec::Affine { out: max / 2 }],
                &[1],
                1,
                format!(
                    "layer 1 `affine {}`: its outputs (3 x {}) are more than this machine can count",
                    max / 2,
                    max / 2
                ),
            ),
        ];
        for (specs, input, position, message) in cases {
            let err = plan_stack(specs, input).unwrap_err();
            assert_eq!(err.position, *position, "{err}");
            assert_eq!(&err.to_string(), message);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
            let built = build_stack::<f32, _>(specs, input, Init::He, &mut rng);
            assert_eq!(built.err().map(|e| e.to_string()).as_ref(), Some(message));
        }
    }

    /// The whole list is planned before any layer is built: a list whose second layer is wrong
    /// allocates nothing for its first, here 784 x 10^12 weights (3 PB), which would abort the
    /// test if they were allocated.
    #[test]
    fn a_list_that_cannot_be_built_allocates_nothing() {
        let specs = [
            LayerSpec::Affine {
                out: 1_000_000_000_000,
            },
            LayerSpec::Dropout { ratio: 2.0 },
        ];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let err = build_stack::<f32, _>(&specs, &[784], Init::He, &mut rng)
            .err()
            .expect("the list cannot be built");
        assert_eq!(
            err.to_string(),
            "layer 2 `dropout 2`: the ratio must be in [0, 1), not 2"
        );
        let plan = plan_stack(&specs[..1], &[784]).unwrap();
        assert_eq!(plan.params(), 785_000_000_000_000);
    }

    #[test]
    fn tiny_and_huge_ratios_are_written_briefly() {
        let spec = LayerSpec::Dropout { ratio: 1e-300 };
        assert_eq!(spec.to_string(), "dropout 1e-300");
        assert_eq!(parse_layers("dropout 1e-300").unwrap(), [spec]);
        let err = LayerSpec::Dropout { ratio: 1e300 }.plan(&[3]).unwrap_err();
        assert_eq!(err, "the ratio must be in [0, 1), not 1e300");
    }

    #[test]
    fn python_floats_are_written_as_python_writes_them() {
        assert_eq!(python_float(0.5), "0.5");
        assert_eq!(python_float(0.0), "0.0");
        assert_eq!(python_float(1e-6), "1e-06");
        assert_eq!(python_float(2.5e-10), "2.5e-10");
    }
}
