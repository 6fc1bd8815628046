//! Model files: a trained network in one [safetensors] file, weights and architecture together, so
//! that the file alone rebuilds the network, in bp or elsewhere.
//!
//! # The format
//!
//! The tensors are named as PyTorch names the `state_dict` of a module holding the network as an
//! `nn.Sequential` called `layers`: the modules are numbered in network order, activations and
//! dropout included, exactly as PyTorch numbers the children of the `Sequential`:
//!
//! | module (index `i`) | tensors | shape |
//! | --- | --- | --- |
//! | `Linear` | `layers.i.weight`, `layers.i.bias` | (out, in), (out) |
//! | `BatchNorm1d` | `layers.i.weight` (γ), `layers.i.bias` (β), `layers.i.running_mean`, `layers.i.running_var` | (D) each |
//! | `ReLU`, `Sigmoid`, `Dropout` | none | |
//!
//! Each hidden block is `Linear`, `BatchNorm1d` (with batch normalisation), the activation, `Dropout`
//! (with dropout), and the output layer is a last `Linear`. The book's `TwoLayerNet` 784-50-10 is
//! thus `layers.0` (Linear 784→50), `layers.1` (ReLU), `layers.2` (Linear 50→10); a net with batch
//! normalisation and dropout numbers `0` Linear, `1` BatchNorm1d, `2` ReLU, `3` Dropout, `4` Linear,
//! and so on. The Linear weight is PyTorch's (out, in): the transpose of the `W` (in, out) of
//! [`Affine`]. PyTorch's `BatchNorm1d` also has a `num_batches_tracked` counter, which inference does
//! not use and which is not stored (PyTorch's `load_state_dict` accepts its absence).
//!
//! Every tensor has the model's element type (`F32` or `F64`). The file's `__metadata__` holds the
//! architecture, every value a string ([`ModelInfo`] is its typed form):
//!
//! | key | example | meaning |
//! | --- | --- | --- |
//! | `format` | `bp-mlp` | what the file is |
//! | `format_version` | `1` | |
//! | `architecture` | `TwoLayerNet` | `TwoLayerNet` or `MultiLayerNet` |
//! | `sizes` | `[784,50,10]` | layer widths, input to output (JSON) |
//! | `activation` | `relu` | `relu` or `sigmoid` |
//! | `dtype` | `f32` | `f32` or `f64`, the tensors' type |
//! | `input_shape` | `[28,28]` | rows and columns of an input image, pixels scaled to `[0, 1]` (JSON) |
//! | `classes` | `10` | the number of classes, the last size |
//! | `batch_norm` | `false` | whether hidden blocks have batch normalisation |
//! | `batch_norm_eps` | `1e-6` | the ε of batch normalisation (PyTorch's default is 1e-5) |
//! | `dropout` | `null` | the dropout ratio (PyTorch's `p`), or `null` for no dropout layers (JSON) |
//! | `init` | `std 0.01` | how the weights were initialised: `std <σ>`, `he` or `xavier` |
//! | `weight_decay` | `0` | the weight-decay coefficient of training |
//! | `layers` | `["Linear(in_features=784, out_features=50, bias=True)","ReLU()",...]` | the `nn.Sequential`'s modules, as PyTorch prints them (JSON) |
//! | `training` | `{"epoch":17,"iter":10000,"loss":0.1,"train_acc":0.97,"test_acc":0.96}` | what training reported for this model, if known (JSON) |
//!
//! Loading ([`Model::load`], [`AnyModel::load`]) trusts nothing: a file that is not safetensors, a
//! missing or malformed metadata key, an inconsistent architecture, a missing or unexpected tensor, a
//! wrong shape or element type, or a non-finite weight is a [`ModelError`] naming the file. Metadata
//! keys it does not know are ignored.
//!
//! # Writing
//!
//! [`save_model`] writes atomically ([`write_atomic`]): into a temporary file in the same directory,
//! flushed to disk, then renamed over the target. A crash or a full disk leaves the previous file
//! as it was.
//!
//! ```
//! use bp_core::Init;
//! use bp_train::model_file::{Model, ModelInfo, save_model};
//! use bp_train::{MultiLayerConfig, Network, TwoLayerNet};
//! use ndarray::Array2;
//! use rand::SeedableRng;
//!
//! let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
//! let net = TwoLayerNet::<f32>::new(4, 3, 2, 0.5, &mut rng);
//! let config = MultiLayerConfig { init: Init::Std(0.5), ..MultiLayerConfig::new(4, vec![3], 2) };
//! let info = ModelInfo::new(config, (2, 2));
//! let dir = std::env::temp_dir().join(format!("bp-model-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("tiny.safetensors");
//! save_model(&path, (&net).into(), &info)?;
//! let model = Model::<f32>::load(&path)?;
//! let x = Array2::from_shape_fn((3, 4), |(i, j)| (i + j) as f32 / 6.0).into_dyn();
//! assert_eq!(model.net.network().predict(x.clone()), net.predict(x));
//! assert_eq!(model.info, info);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bp_core::{Affine, BatchNorm, Init};
use ndarray::{Array1, Array2, ArrayD, IxDyn, NdFloat};
use safetensors::{SafeTensorError, SafeTensors, View};
use serde_json::{Value, json};

use crate::multi_layer::{Activation, MultiLayerConfig, MultiLayerNet};
use crate::network::Network;
use crate::run::{Dtype, TrainedNet};
use crate::train::{EpochReport, Stream, rng};
use crate::two_layer::TwoLayerNet;

/// The value of the `format` metadata key.
pub const FORMAT: &str = "bp-mlp";

/// The value of the `format_version` metadata key this version writes and reads.
pub const FORMAT_VERSION: &str = "1";

/// The prefix of every tensor name: the `nn.Sequential`'s attribute name.
pub const PREFIX: &str = "layers";

/// What can go wrong reading or writing a model file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The file could not be read.
    #[error("cannot read the model file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The file could not be written; any previous file at the path is unchanged.
    #[error("cannot write the model file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The file is not in the safetensors format (or is cut short or corrupt).
    #[error("{} is not a valid safetensors file", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What the safetensors reader found wrong.
        #[source]
        source: SafeTensorError,
    },

    /// A metadata key the format requires is absent (a safetensors file that bp did not write has
    /// no `format` key, say).
    #[error("the model file {} has no `{key}` in its metadata{hint}", path.display())]
    MissingMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Advice, empty or starting with `; `.
        hint: &'static str,
    },

    /// A metadata value is malformed, out of range or inconsistent with the rest.
    #[error("the model file {} has a bad `{key}` in its metadata ({value:?}): {reason}", path.display())]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The value found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor the architecture needs is not in the file.
    #[error("the model file {} has no tensor `{name}`, which its architecture needs", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },

    /// The file holds a tensor the architecture has no place for.
    #[error("the model file {} holds a tensor `{name}` that its architecture has no place for", path.display())]
    ExtraTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },

    /// A tensor's shape is not what the architecture says.
    #[error("the model file {}: tensor `{name}` has shape {found:?}, but the architecture needs {expected:?}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The shape the metadata implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },

    /// A tensor's element type is not the model's `dtype`.
    #[error("the model file {}: tensor `{name}` is {found}, but the metadata's dtype is {expected}", path.display())]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The metadata's element type (`F32` or `F64`).
        expected: String,
        /// The tensor's element type, as safetensors names it.
        found: String,
    },

    /// A tensor holds NaN or an infinity.
    #[error("the model file {}: tensor `{name}` holds a NaN or infinite value", path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },

    /// The file's element type is not the one asked for ([`Model::load`]; [`AnyModel::load`]
    /// takes either).
    #[error("the model file {} holds a {} model, but a {} one was asked for", path.display(), found.name(), wanted.name())]
    WrongElementType {
        /// The file.
        path: PathBuf,
        /// The file's element type.
        found: Dtype,
        /// The element type asked for.
        wanted: Dtype,
    },
}

/// The element types a model file can hold: `f32` and `f64`.
pub trait ModelElement: NdFloat {
    /// The element type, as [`Dtype`].
    const DTYPE: Dtype;
    /// The safetensors element type.
    const SAFETENSORS: safetensors::Dtype;
    /// Appends the little-endian bytes of `self`.
    fn put_le(self, out: &mut Vec<u8>);
    /// Reads little-endian values; `bytes.len()` is a multiple of the element size.
    fn from_le_slice(bytes: &[u8]) -> Vec<Self>;
}

impl ModelElement for f32 {
    const DTYPE: Dtype = Dtype::F32;
    const SAFETENSORS: safetensors::Dtype = safetensors::Dtype::F32;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn from_le_slice(bytes: &[u8]) -> Vec<Self> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

impl ModelElement for f64 {
    const DTYPE: Dtype = Dtype::F64;
    const SAFETENSORS: safetensors::Dtype = safetensors::Dtype::F64;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn from_le_slice(bytes: &[u8]) -> Vec<Self> {
        bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect()
    }
}

/// The safetensors element type of a [`Dtype`].
fn safetensors_dtype(dtype: Dtype) -> safetensors::Dtype {
    match dtype {
        Dtype::F32 => safetensors::Dtype::F32,
        Dtype::F64 => safetensors::Dtype::F64,
    }
}

/// What training reported for a saved model: the numbers of the epoch after which it was saved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainingRecord {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Iterations done by the end of that epoch.
    pub iter: usize,
    /// The epoch's mean training loss.
    pub loss: f64,
    /// Accuracy on the training set.
    pub train_acc: f64,
    /// Accuracy on the test set.
    pub test_acc: f64,
}

impl From<&EpochReport> for TrainingRecord {
    fn from(r: &EpochReport) -> Self {
        TrainingRecord {
            epoch: r.epoch,
            iter: r.iter,
            loss: r.loss,
            train_acc: r.train_acc,
            test_acc: r.test_acc,
        }
    }
}

/// Everything a model file says besides the weights: the architecture, the input image shape and
/// what training reported. The element type is the model's type parameter (see [`AnyModel`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// The architecture: sizes (input, hidden..., classes), activation, batch normalisation,
    /// dropout, and the initialisation and weight decay it was trained with.
    pub config: MultiLayerConfig,
    /// Rows and columns of an input image; `rows * cols` is the input size.
    pub input_shape: (usize, usize),
    /// What training reported for this model, if known.
    pub training: Option<TrainingRecord>,
}

impl ModelInfo {
    /// The info of a net of the given configuration taking `rows x cols` images, with no training
    /// record.
    pub fn new(config: MultiLayerConfig, input_shape: (usize, usize)) -> Self {
        ModelInfo {
            config,
            input_shape,
            training: None,
        }
    }

    /// The number of classes (the last layer's width).
    pub fn classes(&self) -> usize {
        self.config.output_size
    }
}

/// One module of the network's PyTorch `nn.Sequential` equivalent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Module {
    /// `nn.Linear(in_features, out_features)`: an [`Affine`] layer.
    Linear {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
    },
    /// `nn.BatchNorm1d(num_features)`: a [`BatchNorm`] layer.
    BatchNorm1d {
        /// Features.
        num_features: usize,
    },
    /// `nn.ReLU()` or `nn.Sigmoid()`.
    Activation(Activation),
    /// `nn.Dropout(p)`.
    Dropout {
        /// The dropout ratio.
        p: f64,
    },
}

impl Module {
    /// The module as PyTorch prints it, such as `Linear(in_features=784, out_features=50,
    /// bias=True)` or `ReLU()`.
    pub fn torch_repr(&self) -> String {
        match *self {
            Module::Linear {
                in_features,
                out_features,
            } => {
                format!("Linear(in_features={in_features}, out_features={out_features}, bias=True)")
            }
            Module::BatchNorm1d { num_features } => format!(
                "BatchNorm1d({num_features}, eps=1e-06, momentum=0.1, affine=True, track_running_stats=True)"
            ),
            Module::Activation(Activation::Relu) => "ReLU()".to_owned(),
            Module::Activation(Activation::Sigmoid) => "Sigmoid()".to_owned(),
            Module::Dropout { p } => format!("Dropout(p={}, inplace=False)", python_float(p)),
        }
    }

    /// The module's tensors: their names within the module and their shapes.
    pub fn tensors(&self) -> Vec<(&'static str, Vec<usize>)> {
        match *self {
            Module::Linear {
                in_features,
                out_features,
            } => vec![
                ("weight", vec![out_features, in_features]),
                ("bias", vec![out_features]),
            ],
            Module::BatchNorm1d { num_features: d } => vec![
                ("weight", vec![d]),
                ("bias", vec![d]),
                ("running_mean", vec![d]),
                ("running_var", vec![d]),
            ],
            Module::Activation(_) | Module::Dropout { .. } => Vec::new(),
        }
    }
}

/// A float as Python's `repr` writes it: `0.5`, `1.0`, `1e-06`.
fn python_float(v: f64) -> String {
    let s = format!("{v:?}");
    if s.contains(['.', 'e', 'E', 'n', 'N']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// The modules of a network of this configuration, in order (their index is the number in the
/// tensor names): for each hidden layer `Linear`, [`BatchNorm1d`], activation, [`Dropout`]; then the
/// output `Linear`.
///
/// [`BatchNorm1d`]: Module::BatchNorm1d
/// [`Dropout`]: Module::Dropout
///
/// ```
/// use bp_train::MultiLayerConfig;
/// use bp_train::model_file::{Module, modules};
///
/// let config = MultiLayerConfig { batch_norm: true, dropout: Some(0.5), ..MultiLayerConfig::new(4, vec![3], 2) };
/// let reprs: Vec<String> = modules(&config).iter().map(Module::torch_repr).collect();
/// assert_eq!(reprs, [
///     "Linear(in_features=4, out_features=3, bias=True)",
///     "BatchNorm1d(3, eps=1e-06, momentum=0.1, affine=True, track_running_stats=True)",
///     "ReLU()",
///     "Dropout(p=0.5, inplace=False)",
///     "Linear(in_features=3, out_features=2, bias=True)",
/// ]);
/// ```
pub fn modules(config: &MultiLayerConfig) -> Vec<Module> {
    let sizes = config.sizes();
    let mut modules = Vec::new();
    for (k, io) in sizes.windows(2).enumerate() {
        modules.push(Module::Linear {
            in_features: io[0],
            out_features: io[1],
        });
        if k + 2 == sizes.len() {
            break;
        }
        if config.batch_norm {
            modules.push(Module::BatchNorm1d {
                num_features: io[1],
            });
        }
        modules.push(Module::Activation(config.activation));
        if let Some(p) = config.dropout {
            modules.push(Module::Dropout { p });
        }
    }
    modules
}

/// The names and shapes of every tensor of a network of this configuration, in network order.
///
/// ```
/// use bp_train::MultiLayerConfig;
/// use bp_train::model_file::tensor_specs;
///
/// let names: Vec<String> = tensor_specs(&MultiLayerConfig::new(784, vec![50], 10))
///     .into_iter()
///     .map(|(name, _)| name)
///     .collect();
/// assert_eq!(names, ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]);
/// ```
pub fn tensor_specs(config: &MultiLayerConfig) -> Vec<(String, Vec<usize>)> {
    modules(config)
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            m.tensors()
                .into_iter()
                .map(move |(name, shape)| (format!("{PREFIX}.{i}.{name}"), shape))
        })
        .collect()
}

/// A network to save: either kind, borrowed.
#[derive(Debug)]
pub enum NetRef<'a, A> {
    /// The book's two-layer net.
    TwoLayer(&'a TwoLayerNet<A>),
    /// A multi-layer net.
    MultiLayer(&'a MultiLayerNet<A>),
}

impl<A> Clone for NetRef<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for NetRef<'_, A> {}

impl<'a, A> From<&'a TwoLayerNet<A>> for NetRef<'a, A> {
    fn from(net: &'a TwoLayerNet<A>) -> Self {
        NetRef::TwoLayer(net)
    }
}

impl<'a, A> From<&'a MultiLayerNet<A>> for NetRef<'a, A> {
    fn from(net: &'a MultiLayerNet<A>) -> Self {
        NetRef::MultiLayer(net)
    }
}

impl<'a, A> From<&'a TrainedNet<A>> for NetRef<'a, A> {
    fn from(net: &'a TrainedNet<A>) -> Self {
        match net {
            TrainedNet::TwoLayer(n) => NetRef::TwoLayer(n),
            TrainedNet::MultiLayer(n) => NetRef::MultiLayer(n),
        }
    }
}

impl<A> NetRef<'_, A> {
    /// The `architecture` metadata value.
    fn architecture(&self) -> &'static str {
        match self {
            NetRef::TwoLayer(_) => "TwoLayerNet",
            NetRef::MultiLayer(_) => "MultiLayerNet",
        }
    }
}

/// A tensor to serialise.
struct OwnedTensor {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &OwnedTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// A tensor from any array, in its logical (row-major) order.
fn tensor_of<'a, A: ModelElement>(
    values: impl IntoIterator<Item = &'a A>,
    shape: &[usize],
) -> OwnedTensor {
    let mut data = Vec::with_capacity(shape.iter().product::<usize>() * size_of::<A>());
    for &v in values {
        v.put_le(&mut data);
    }
    OwnedTensor {
        dtype: A::SAFETENSORS,
        shape: shape.to_vec(),
        data,
    }
}

/// The metadata of a model file.
fn metadata(info: &ModelInfo, architecture: &str, dtype: Dtype) -> HashMap<String, String> {
    let c = &info.config;
    let layers: Vec<String> = modules(c).iter().map(Module::torch_repr).collect();
    let init = match c.init {
        Init::Std(std) => format!("std {std}"),
        Init::He => "he".to_owned(),
        Init::Xavier => "xavier".to_owned(),
    };
    let mut m: HashMap<String, String> = [
        ("format", FORMAT.to_owned()),
        ("format_version", FORMAT_VERSION.to_owned()),
        ("architecture", architecture.to_owned()),
        ("sizes", json!(c.sizes()).to_string()),
        ("activation", c.activation.name().to_owned()),
        ("dtype", dtype.name().to_owned()),
        (
            "input_shape",
            json!([info.input_shape.0, info.input_shape.1]).to_string(),
        ),
        ("classes", c.output_size.to_string()),
        ("batch_norm", c.batch_norm.to_string()),
        ("batch_norm_eps", format!("{:e}", BatchNorm::<f64>::EPS)),
        ("dropout", json!(c.dropout).to_string()),
        ("init", init),
        ("weight_decay", c.weight_decay.to_string()),
        ("layers", json!(layers).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(t) = &info.training {
        let record = json!({
            "epoch": t.epoch,
            "iter": t.iter,
            "loss": t.loss,
            "train_acc": t.train_acc,
            "test_acc": t.test_acc,
        });
        m.insert("training".to_owned(), record.to_string());
    }
    m
}

/// The safetensors bytes of a network and its info.
///
/// # Panics
///
/// If the network's layer shapes are not those of `info.config` (for a [`MultiLayerNet`], if its
/// own configuration differs from `info.config` in anything but the weight initialisation), or if
/// `info.input_shape` does not multiply to the input size.
#[track_caller]
pub fn to_bytes<A: ModelElement>(net: NetRef<'_, A>, info: &ModelInfo) -> Vec<u8> {
    let config = &info.config;
    assert_eq!(
        info.input_shape.0 * info.input_shape.1,
        config.input_size,
        "model_file::to_bytes: the input shape {:?} does not match the input size {}",
        info.input_shape,
        config.input_size
    );
    let (affines, batch_norms): (Vec<&Affine<A>>, Vec<&BatchNorm<A>>) = match net {
        NetRef::TwoLayer(n) => {
            assert!(
                config.is_two_layer_net(),
                "model_file::to_bytes: a TwoLayerNet with a configuration that is not a two-layer net: {config:?}"
            );
            (vec![n.affine1(), n.affine2()], Vec::new())
        }
        NetRef::MultiLayer(n) => {
            let own = n.config();
            assert!(
                own.sizes() == config.sizes()
                    && own.activation == config.activation
                    && own.batch_norm == config.batch_norm
                    && own.dropout == config.dropout,
                "model_file::to_bytes: the net's configuration {own:?} is not the info's {config:?}"
            );
            (n.affines().collect(), n.batch_norms().collect())
        }
    };
    let mut affines = affines.into_iter();
    let mut batch_norms = batch_norms.into_iter();
    let mut tensors: Vec<(String, OwnedTensor)> = Vec::new();
    for (i, module) in modules(config).iter().enumerate() {
        let name = |t: &str| format!("{PREFIX}.{i}.{t}");
        match *module {
            Module::Linear {
                in_features,
                out_features,
            } => {
                let a = affines.next().expect("one affine layer per Linear module");
                assert_eq!(
                    a.w().dim(),
                    (in_features, out_features),
                    "model_file::to_bytes: layer {i} does not match the configuration"
                );
                tensors.push((
                    name("weight"),
                    tensor_of(a.w().t().iter(), &[out_features, in_features]),
                ));
                tensors.push((name("bias"), tensor_of(a.b().iter(), &[out_features])));
            }
            Module::BatchNorm1d { num_features: d } => {
                let bn = batch_norms
                    .next()
                    .expect("one BatchNorm per BatchNorm1d module");
                assert_eq!(
                    bn.size(),
                    d,
                    "model_file::to_bytes: layer {i} does not match the configuration"
                );
                tensors.push((name("weight"), tensor_of(bn.gamma().iter(), &[d])));
                tensors.push((name("bias"), tensor_of(bn.beta().iter(), &[d])));
                tensors.push((
                    name("running_mean"),
                    tensor_of(bn.running_mean().iter(), &[d]),
                ));
                tensors.push((
                    name("running_var"),
                    tensor_of(bn.running_var().iter(), &[d]),
                ));
            }
            Module::Activation(_) | Module::Dropout { .. } => {}
        }
    }
    assert!(
        affines.next().is_none() && batch_norms.next().is_none(),
        "model_file::to_bytes: the net has more layers than its configuration"
    );
    let meta = metadata(info, net.architecture(), A::DTYPE);
    let mut bytes =
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
            .expect("a model's header is far below the safetensors limits");
    canonicalize_header(&mut bytes);
    bytes
}

/// Rewrites the JSON header of serialised safetensors bytes with its keys sorted, so that the same
/// model always gives the same bytes (the safetensors crate writes the metadata in hash order). The
/// header keeps its length: only the order of its entries changes.
fn canonicalize_header(bytes: &mut [u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let n = usize::try_from(n).expect("the header was just written");
    let header = &bytes[8..8 + n];
    let value: Value = serde_json::from_slice(header).expect("the header was just written as JSON");
    let mut canonical = String::with_capacity(n);
    write_canonical(&value, &mut canonical);
    assert!(
        canonical.len() <= n,
        "the sorted header is no longer than the original"
    );
    let padded = format!("{canonical:<n$}");
    bytes[8..8 + n].copy_from_slice(padded.as_bytes());
}

/// Compact JSON with every object's keys in sorted order.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Saves a network and its info to `path` atomically (see [`write_atomic`]).
///
/// # Errors
///
/// [`ModelError::Write`] if the file cannot be written; the previous file at `path`, if any, is
/// then unchanged.
///
/// # Panics
///
/// As [`to_bytes`].
#[track_caller]
pub fn save_model<A: ModelElement>(
    path: impl AsRef<Path>,
    net: NetRef<'_, A>,
    info: &ModelInfo,
) -> Result<(), ModelError> {
    let path = path.as_ref();
    let bytes = to_bytes(net, info);
    write_atomic(path, |w| w.write_all(&bytes)).map_err(|source| ModelError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Distinguishes the temporary files of concurrent writes within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a file atomically: `write` fills a new temporary file in the same directory as `path`
/// (named `.<file name>.<process id>.<n>.tmp`), which is flushed and synced to disk and then
/// renamed over `path`; the directory is synced too where the system allows. If anything fails —
/// `write` included — the temporary file is removed and `path` is left as it was: a reader sees the
/// old file or the new one, never a part of either. (A process killed mid-write leaves its
/// temporary file behind, and still never a damaged `path`.)
///
/// # Errors
///
/// The first error of creating, writing, syncing or renaming, or `write`'s own.
///
/// ```
/// use std::io::Write;
///
/// let dir = std::env::temp_dir().join(format!("bp-atomic-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("out.txt");
/// bp_train::model_file::write_atomic(&path, |w| w.write_all(b"old"))?;
/// let err = bp_train::model_file::write_atomic(&path, |w| {
///     w.write_all(b"half of the new")?;
///     Err(std::io::Error::other("disk full"))
/// });
/// assert!(err.is_err());
/// assert_eq!(std::fs::read(&path)?, b"old");
/// assert_eq!(std::fs::read_dir(&dir)?.count(), 1); // no temporary file left
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.{n}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    let result = fill_and_sync(file, write).and_then(|()| fs::rename(&temp, path));
    match result {
        Ok(()) => {
            sync_dir(dir);
            Ok(())
        }
        Err(err) => {
            let _ = fs::remove_file(&temp);
            Err(err)
        }
    }
}

/// Runs `write` into the file through a buffer, then flushes and syncs it.
fn fill_and_sync(
    file: File,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()
}

/// Makes a rename in `dir` durable where the system supports syncing a directory; elsewhere (or if
/// it fails) the rename is still atomic, only perhaps not yet on disk.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// A trained network read from a model file, with the file's info.
#[derive(Clone, Debug)]
pub struct Model<A> {
    /// The network.
    pub net: TrainedNet<A>,
    /// The architecture, input shape and training record.
    pub info: ModelInfo,
}

impl<A: ModelElement> Model<A> {
    /// Reads a model of element type `A` from a file.
    ///
    /// # Errors
    ///
    /// [`ModelError::WrongElementType`] if the file holds the other element type, and every error
    /// of [`Model::from_bytes`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let bytes = read(path)?;
        Model::from_bytes(&bytes, path)
    }

    /// Reads a model of element type `A` from the bytes of a file; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// [`ModelError::Format`] for bytes that are not safetensors, [`ModelError::MissingMetadata`]
    /// and [`ModelError::BadMetadata`] for metadata that does not describe a network,
    /// [`ModelError::WrongElementType`] for the other element type, and
    /// [`ModelError::MissingTensor`], [`ModelError::ExtraTensor`], [`ModelError::Shape`],
    /// [`ModelError::Dtype`] and [`ModelError::NonFinite`] for tensors that do not fit the
    /// architecture.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ModelError> {
        let file = parse(bytes, path)?;
        if file.dtype != A::DTYPE {
            return Err(ModelError::WrongElementType {
                path: path.to_path_buf(),
                found: file.dtype,
                wanted: A::DTYPE,
            });
        }
        file.build()
    }

    /// Saves the model to `path` atomically; see [`save_model`].
    ///
    /// # Errors
    ///
    /// As [`save_model`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        save_model(path, (&self.net).into(), &self.info)
    }
}

/// A model of either element type, as the file says.
#[derive(Clone, Debug)]
pub enum AnyModel {
    /// An `f32` model.
    F32(Model<f32>),
    /// An `f64` model.
    F64(Model<f64>),
}

impl AnyModel {
    /// Reads a model file of either element type.
    ///
    /// # Errors
    ///
    /// [`ModelError::Read`] if the file cannot be read, and the errors of [`Model::from_bytes`]
    /// (but for [`ModelError::WrongElementType`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let bytes = read(path)?;
        AnyModel::from_bytes(&bytes, path)
    }

    /// Reads a model of either element type from the bytes of a file; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`AnyModel::load`].
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ModelError> {
        let file = parse(bytes, path)?;
        Ok(match file.dtype {
            Dtype::F32 => AnyModel::F32(file.build()?),
            Dtype::F64 => AnyModel::F64(file.build()?),
        })
    }

    /// The file's info.
    pub fn info(&self) -> &ModelInfo {
        match self {
            AnyModel::F32(m) => &m.info,
            AnyModel::F64(m) => &m.info,
        }
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            AnyModel::F32(_) => Dtype::F32,
            AnyModel::F64(_) => Dtype::F64,
        }
    }
}

/// Reads a whole file.
fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    fs::read(path).map_err(|source| ModelError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Which network class a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Architecture {
    TwoLayer,
    MultiLayer,
}

/// A checked model file, before the network is built.
struct ParsedFile<'a> {
    path: &'a Path,
    tensors: SafeTensors<'a>,
    info: ModelInfo,
    architecture: Architecture,
    dtype: Dtype,
}

/// The metadata map, with errors naming the file.
struct Meta<'a> {
    path: &'a Path,
    map: &'a HashMap<String, String>,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&str, ModelError> {
        self.map
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| ModelError::MissingMetadata {
                path: self.path.to_path_buf(),
                key: key.to_owned(),
                hint: "",
            })
    }

    fn bad(&self, key: &str, reason: impl Into<String>) -> ModelError {
        ModelError::BadMetadata {
            path: self.path.to_path_buf(),
            key: key.to_owned(),
            value: self.map.get(key).cloned().unwrap_or_default(),
            reason: reason.into(),
        }
    }

    fn json(&self, key: &str) -> Result<Value, ModelError> {
        serde_json::from_str(self.get(key)?).map_err(|e| self.bad(key, format!("not JSON: {e}")))
    }

    fn usize(&self, key: &str) -> Result<usize, ModelError> {
        self.get(key)?
            .parse()
            .map_err(|_| self.bad(key, "not a non-negative integer"))
    }

    fn finite(&self, key: &str, value: &str) -> Result<f64, ModelError> {
        match value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(self.bad(key, "not a finite number")),
        }
    }

    fn bool(&self, key: &str) -> Result<bool, ModelError> {
        match self.get(key)? {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.bad(key, "not `true` or `false`")),
        }
    }

    /// A JSON list of positive integers of the given length (any length >= `min` if `len` is None).
    fn sizes(&self, key: &str, len: Option<usize>, min: usize) -> Result<Vec<usize>, ModelError> {
        let what = match len {
            Some(n) => format!("a JSON list of {n} positive integers"),
            None => format!("a JSON list of at least {min} positive integers"),
        };
        let list = match self.json(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|&n| n > 0)
                })
                .collect::<Option<Vec<usize>>>(),
            _ => None,
        };
        match list {
            Some(l) if len.is_none_or(|n| l.len() == n) && l.len() >= min => Ok(l),
            _ => Err(self.bad(key, format!("not {what}"))),
        }
    }
}

/// Checks a file's header, metadata and tensors against each other.
fn parse<'a>(bytes: &'a [u8], path: &'a Path) -> Result<ParsedFile<'a>, ModelError> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|source| ModelError::Format {
        path: path.to_path_buf(),
        source,
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|source| ModelError::Format {
        path: path.to_path_buf(),
        source,
    })?;
    let empty = HashMap::new();
    let map = header.metadata().as_ref().unwrap_or(&empty);
    let meta = Meta { path, map };

    match map.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(_) => {
            return Err(meta.bad("format", format!("not `{FORMAT}`: this is not a bp model")));
        }
        None => {
            return Err(ModelError::MissingMetadata {
                path: path.to_path_buf(),
                key: "format".to_owned(),
                hint: "; a safetensors file that bp-train did not write (it writes `format: bp-mlp`)",
            });
        }
    }
    if meta.get("format_version")? != FORMAT_VERSION {
        return Err(meta.bad(
            "format_version",
            format!("this bp reads version {FORMAT_VERSION}"),
        ));
    }
    let dtype = match meta.get("dtype")? {
        "f32" => Dtype::F32,
        "f64" => Dtype::F64,
        _ => return Err(meta.bad("dtype", "not `f32` or `f64`")),
    };
    let sizes = meta.sizes("sizes", None, 2)?;
    let activation = match meta.get("activation")? {
        "relu" => Activation::Relu,
        "sigmoid" => Activation::Sigmoid,
        _ => return Err(meta.bad("activation", "not `relu` or `sigmoid`")),
    };
    let input_shape = meta.sizes("input_shape", Some(2), 2)?;
    if input_shape[0].checked_mul(input_shape[1]) != Some(sizes[0]) {
        return Err(meta.bad(
            "input_shape",
            format!(
                "{} x {} pixels do not make the input size {}",
                input_shape[0], input_shape[1], sizes[0]
            ),
        ));
    }
    let classes = meta.usize("classes")?;
    let last = sizes[sizes.len() - 1];
    if classes != last {
        return Err(meta.bad("classes", format!("the last of the sizes is {last}")));
    }
    let batch_norm = meta.bool("batch_norm")?;
    let eps = meta.finite("batch_norm_eps", meta.get("batch_norm_eps")?)?;
    if eps != BatchNorm::<f64>::EPS {
        return Err(meta.bad(
            "batch_norm_eps",
            format!(
                "bp's batch normalisation uses ε = {:e}",
                BatchNorm::<f64>::EPS
            ),
        ));
    }
    let dropout = match meta.json("dropout")? {
        Value::Null => None,
        Value::Number(n) => match n.as_f64() {
            Some(p) if (0.0..1.0).contains(&p) => Some(p),
            _ => return Err(meta.bad("dropout", "a dropout ratio is in [0, 1)")),
        },
        _ => return Err(meta.bad("dropout", "not a number or null")),
    };
    let init_text = meta.get("init")?;
    let init = match init_text {
        "he" => Init::He,
        "xavier" => Init::Xavier,
        other => match other.strip_prefix("std ").map(|s| meta.finite("init", s)) {
            Some(Ok(std)) if std > 0.0 => Init::Std(std),
            _ => return Err(meta.bad("init", "not `std <positive number>`, `he` or `xavier`")),
        },
    };
    let weight_decay = meta.finite("weight_decay", meta.get("weight_decay")?)?;
    if weight_decay < 0.0 {
        return Err(meta.bad("weight_decay", "negative"));
    }
    let config = MultiLayerConfig {
        input_size: sizes[0],
        hidden_sizes: sizes[1..sizes.len() - 1].to_vec(),
        output_size: last,
        activation,
        init,
        dropout,
        batch_norm,
        weight_decay,
    };
    let architecture = match meta.get("architecture")? {
        "TwoLayerNet" if config.is_two_layer_net() => Architecture::TwoLayer,
        "TwoLayerNet" => {
            return Err(meta.bad(
                "architecture",
                "a TwoLayerNet has one Relu hidden layer, a std init and no batch norm, dropout or weight decay",
            ));
        }
        "MultiLayerNet" => Architecture::MultiLayer,
        _ => return Err(meta.bad("architecture", "not `TwoLayerNet` or `MultiLayerNet`")),
    };
    let expected_layers: Vec<String> = modules(&config).iter().map(Module::torch_repr).collect();
    if meta.json("layers")? != json!(expected_layers) {
        return Err(meta.bad(
            "layers",
            format!("the other keys describe {}", json!(expected_layers)),
        ));
    }
    let training = match map.get("training") {
        None => None,
        Some(_) => Some(training_record(&meta)?),
    };

    let file = ParsedFile {
        path,
        tensors,
        info: ModelInfo {
            config,
            input_shape: (input_shape[0], input_shape[1]),
            training,
        },
        architecture,
        dtype,
    };
    file.check_tensors()?;
    Ok(file)
}

/// The `training` key: a JSON object of the epoch's numbers.
fn training_record(meta: &Meta<'_>) -> Result<TrainingRecord, ModelError> {
    let key = "training";
    let value = meta.json(key)?;
    let count = |field: &str| {
        value
            .get(field)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| meta.bad(key, format!("`{field}` is not a non-negative integer")))
    };
    let number = |field: &str, unit: bool| {
        value
            .get(field)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite() && (!unit || (0.0..=1.0).contains(v)))
            .ok_or_else(|| {
                let what = if unit {
                    "a number in [0, 1]"
                } else {
                    "a finite number"
                };
                meta.bad(key, format!("`{field}` is not {what}"))
            })
    };
    Ok(TrainingRecord {
        epoch: count("epoch")?,
        iter: count("iter")?,
        loss: number("loss", false)?,
        train_acc: number("train_acc", true)?,
        test_acc: number("test_acc", true)?,
    })
}

impl ParsedFile<'_> {
    fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    /// Every tensor the architecture needs is there with its shape and the model's element type,
    /// finite, and there is no other.
    fn check_tensors(&self) -> Result<(), ModelError> {
        let specs = tensor_specs(&self.info.config);
        let want = safetensors_dtype(self.dtype);
        for (name, shape) in &specs {
            let t = self
                .tensors
                .tensor(name)
                .map_err(|_| ModelError::MissingTensor {
                    path: self.path(),
                    name: name.clone(),
                })?;
            if t.dtype() != want {
                return Err(ModelError::Dtype {
                    path: self.path(),
                    name: name.clone(),
                    expected: format!("{want:?}"),
                    found: format!("{:?}", t.dtype()),
                });
            }
            if t.shape() != shape.as_slice() {
                return Err(ModelError::Shape {
                    path: self.path(),
                    name: name.clone(),
                    expected: shape.clone(),
                    found: t.shape().to_vec(),
                });
            }
            let finite = match self.dtype {
                Dtype::F32 => f32::from_le_slice(t.data()).iter().all(|v| v.is_finite()),
                Dtype::F64 => f64::from_le_slice(t.data()).iter().all(|v| v.is_finite()),
            };
            if !finite {
                return Err(ModelError::NonFinite {
                    path: self.path(),
                    name: name.clone(),
                });
            }
        }
        let mut extra: Vec<&str> = self
            .tensors
            .names()
            .into_iter()
            .filter(|n| !specs.iter().any(|(s, _)| s == n))
            .collect();
        extra.sort_unstable();
        match extra.first() {
            Some(name) => Err(ModelError::ExtraTensor {
                path: self.path(),
                name: (*name).to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// A checked tensor as an array.
    fn array<A: ModelElement>(&self, name: &str) -> ArrayD<A> {
        let t = self.tensors.tensor(name).expect("the tensors were checked");
        ArrayD::from_shape_vec(IxDyn(t.shape()), A::from_le_slice(t.data()))
            .expect("the shape was checked against the data length")
    }

    fn vector<A: ModelElement>(&self, name: &str) -> Array1<A> {
        self.array(name)
            .into_dimensionality()
            .expect("the shape was checked")
    }

    /// The network, from checked tensors of element type `A`.
    fn build<A: ModelElement>(self) -> Result<Model<A>, ModelError> {
        debug_assert_eq!(self.dtype, A::DTYPE);
        let config = &self.info.config;
        let mut affines: Vec<Affine<A>> = Vec::new();
        let mut running: Vec<(Array1<A>, Array1<A>)> = Vec::new();
        // Parameters in the order `Network::visit_params` visits them: W, b, gamma, beta, ...
        let mut params: Vec<ArrayD<A>> = Vec::new();
        for (i, module) in modules(config).iter().enumerate() {
            let name = |t: &str| format!("{PREFIX}.{i}.{t}");
            match module {
                Module::Linear { .. } => {
                    let weight: Array2<A> = self
                        .array(&name("weight"))
                        .into_dimensionality()
                        .expect("the shape was checked");
                    let w = weight.t().as_standard_layout().into_owned();
                    let b = self.vector(&name("bias"));
                    params.push(w.clone().into_dyn());
                    params.push(b.clone().into_dyn());
                    affines.push(Affine::new(w, b));
                }
                Module::BatchNorm1d { .. } => {
                    params.push(self.array(&name("weight")));
                    params.push(self.array(&name("bias")));
                    running.push((
                        self.vector(&name("running_mean")),
                        self.vector(&name("running_var")),
                    ));
                }
                Module::Activation(_) | Module::Dropout { .. } => {}
            }
        }
        let net = match self.architecture {
            Architecture::TwoLayer => {
                let mut affines = affines.into_iter();
                let (Some(a1), Some(a2), None) = (affines.next(), affines.next(), affines.next())
                else {
                    unreachable!("a checked TwoLayerNet configuration has two affine layers")
                };
                TrainedNet::TwoLayer(Box::new(TwoLayerNet::from_layers(a1, a2)))
            }
            Architecture::MultiLayer => {
                let mut net = MultiLayerNet::new(config.clone(), &mut rng(0, Stream::Init));
                let mut values = params.into_iter();
                net.visit_params(&mut |mut p| {
                    let v = values.next().expect("one value per parameter");
                    assert_eq!(p.value.shape(), v.shape(), "parameter `{}`", p.name);
                    p.value.assign(&v);
                });
                for (bn, (mean, var)) in net.batch_norms_mut().zip(running) {
                    bn.set_running(mean, var);
                }
                TrainedNet::MultiLayer(Box::new(net))
            }
        };
        Ok(Model {
            net,
            info: self.info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_floats_are_written_as_python_writes_them() {
        assert_eq!(python_float(0.5), "0.5");
        assert_eq!(python_float(0.0), "0.0");
        assert_eq!(python_float(0.25), "0.25");
    }

    #[test]
    fn modules_number_like_a_pytorch_sequential() {
        let config = MultiLayerConfig {
            batch_norm: true,
            dropout: Some(0.1),
            activation: Activation::Sigmoid,
            ..MultiLayerConfig::new(6, vec![5, 4], 3)
        };
        let names: Vec<String> = tensor_specs(&config).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "layers.0.weight",
                "layers.0.bias",
                "layers.1.weight",
                "layers.1.bias",
                "layers.1.running_mean",
                "layers.1.running_var",
                "layers.4.weight",
                "layers.4.bias",
                "layers.5.weight",
                "layers.5.bias",
                "layers.5.running_mean",
                "layers.5.running_var",
                "layers.8.weight",
                "layers.8.bias",
            ]
        );
        let specs = tensor_specs(&config);
        assert_eq!(specs[0].1, [5, 6]);
        assert_eq!(specs[12].1, [3, 4]);
        // No hidden layer: softmax regression is one Linear.
        let flat = tensor_specs(&MultiLayerConfig::new(4, vec![], 2));
        assert_eq!(
            flat,
            [
                ("layers.0.weight".to_owned(), vec![2, 4]),
                ("layers.0.bias".to_owned(), vec![2])
            ]
        );
    }

    #[test]
    fn the_metadata_holds_the_architecture() {
        let config = MultiLayerConfig::new(784, vec![50], 10);
        let m = metadata(&ModelInfo::new(config, (28, 28)), "TwoLayerNet", Dtype::F32);
        assert_eq!(m["sizes"], "[784,50,10]");
        assert_eq!(m["input_shape"], "[28,28]");
        assert_eq!(m["classes"], "10");
        assert_eq!(m["dtype"], "f32");
        assert_eq!(m["dropout"], "null");
        assert_eq!(m["init"], "std 0.01");
        assert_eq!(m["batch_norm_eps"], "1e-6");
        assert!(!m.contains_key("training"));
        assert_eq!(
            m["layers"],
            r#"["Linear(in_features=784, out_features=50, bias=True)","ReLU()","Linear(in_features=50, out_features=10, bias=True)"]"#
        );
    }
}
