//! Model files: a trained network in one [safetensors] file, weights and layers together, so that
//! the file alone rebuilds the network, in bp or elsewhere.
//!
//! # The format
//!
//! The tensors are named as PyTorch names the `state_dict` of a module holding the network as an
//! `nn.Sequential` called `layers`: the layers are numbered in order from 0, those without tensors
//! (activations, dropout) included, and each layer names its own tensors in PyTorch's layout
//! ([`Layer::visit_tensors`](bp_core::Layer::visit_tensors)):
//!
//! | layer (index `i`) | PyTorch module | tensors | shape |
//! | --- | --- | --- | --- |
//! | `affine` | `Linear` | `layers.i.weight`, `layers.i.bias` | (out, in), (out) |
//! | `batchnorm` | `BatchNorm1d` | `layers.i.weight` (γ), `layers.i.bias` (β), `layers.i.running_mean`, `layers.i.running_var` | (D) each |
//! | `relu`, `sigmoid`, `dropout` | `ReLU`, `Sigmoid`, `Dropout` | none | |
//!
//! The book's `TwoLayerNet` 784-50-10 is thus `layers.0` (Linear 784→50), `layers.1` (ReLU),
//! `layers.2` (Linear 50→10). The Linear weight is PyTorch's (out, in): the transpose of the `W`
//! (in, out) of [`Affine`](bp_core::Affine). PyTorch's `BatchNorm1d` also has a
//! `num_batches_tracked` counter, which inference does not use and which is not stored (PyTorch's
//! `load_state_dict` accepts its absence). Every tensor has the model's element type (`F32` or
//! `F64`).
//!
//! The file's `__metadata__` holds three strings: `format` (`bp-model`), `format_version` (`2`)
//! and `model`, the JSON of a [`ModelHeader`]:
//!
//! ```text
//! {"dtype":"f32","image_shape":[28,28],"input_shape":[784],"classes":10,
//!  "layers":[{"layer":"affine","out":50},{"layer":"relu"},{"layer":"affine","out":10}],
//!  "modules":["Linear(in_features=784, out_features=50, bias=True)","ReLU()",
//!             "Linear(in_features=50, out_features=10, bias=True)"],
//!  "init":{"std":0.01},"weight_decay":0.0,
//!  "training":{"epoch":17,"iter":10000,"loss":0.0726081019686535,"train_acc":0.9784666666666667,
//!              "test_acc":0.9699}}
//! ```
//!
//! (the book's run, on one line in the file; the other layers are `{"layer":"sigmoid"}`,
//! `{"layer":"dropout","ratio":0.3}` and `{"layer":"batch_norm"}`.)
//!
//! `layers` is the layer list ([`LayerSpec`]), from which loading rebuilds the network through
//! bp-core's one registry ([`bp_core::build_stack`]); `modules` is the same list as PyTorch prints
//! it, for other readers. Files of format version 1 (`bp-mlp`, which kept an MLP's sizes key by
//! key) are refused with [`ModelError::FormatVersion`].
//!
//! Loading ([`Model::load`], [`AnyModel::load`]) trusts nothing. Only a regular file is opened (a
//! FIFO, a device such as `/dev/zero` or a directory is refused without waiting or reading), and
//! one larger than [`MAX_MODEL_BYTES`] is refused before it is read. Then a file that is not
//! safetensors, missing or malformed metadata, a layer list that cannot be built or that
//! contradicts the rest of the header, a missing or unexpected tensor, a wrong shape or element
//! type, or a non-finite value is a [`ModelError`] naming the file.
//!
//! # Writing
//!
//! [`save_model`] writes atomically ([`write_atomic`]): into a temporary file in the same directory,
//! synced to disk, then renamed over the target. A crash or a full disk leaves the previous file
//! as it was. A symbolic link is written through to the file it names; a directory, a FIFO or a
//! device at the path, or a file the user may not write, is refused; a replaced file keeps its
//! permissions. A header of any length is written (a network of thousands of layers included).
//!
//! ```
//! use bp_train::model_file::{Model, ModelInfo, save_model};
//! use bp_train::TwoLayerNet;
//! use ndarray::Array2;
//! use rand::SeedableRng;
//!
//! let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
//! let net = TwoLayerNet::<f32>::new(4, 3, 2, 0.5, &mut rng);
//! let info = ModelInfo::new((2, 2));
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("tiny.safetensors");
//! save_model(&path, &net, &info)?;
//! let model = Model::<f32>::load(&path)?;
//! let x = Array2::from_shape_fn((3, 4), |(i, j)| (i + j) as f32 / 6.0).into_dyn();
//! assert_eq!(model.net.predict(x.clone()), net.predict(x));
//! assert_eq!(model.net.specs(), net.specs());
//! assert_eq!(model.info, info);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use bp_core::{Init, Layer, LayerError, LayerSpec, plan_stack};
use ndarray::{ArrayD, IxDyn, NdFloat};
use safetensors::{SafeTensorError, SafeTensors, View};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::atomic::write_atomic;
use crate::element::Dtype;
use crate::files;
use crate::memory::Bytes;
use crate::network::{NetOptions, Network};
use crate::train::{EpochReport, Stream, rng};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "bp-model";

/// The value of the `format_version` metadata key this version writes and reads.
pub const FORMAT_VERSION: &str = "2";

/// The metadata key of the [`ModelHeader`]'s JSON.
pub const HEADER_KEY: &str = "model";

/// The prefix of every tensor name: the `nn.Sequential`'s attribute name.
pub const PREFIX: &str = "layers";

/// The largest header a model file may have: safetensors' own limit, 100,000,000 bytes (a layer
/// list of hundreds of thousands of layers).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The most tensor data a model file may hold: 16 GiB, four billion `f32` weights (a network that
/// needs four times as much memory again to be trained).
pub const MAX_TENSOR_BYTES: u64 = 16 << 30;

/// The largest model file that is read: the header's 8-byte length, the largest header and the
/// most tensor data. A larger file is refused before any of it is read.
pub const MAX_MODEL_BYTES: u64 = 8 + MAX_HEADER_BYTES + MAX_TENSOR_BYTES;

/// What can go wrong reading or writing a model file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The file could not be read: it is missing, it is not a regular file (a FIFO, a device, a
    /// directory, a dangling symbolic link), it is larger than [`MAX_MODEL_BYTES`], or reading
    /// failed. The source says which.
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

    /// The file is a bp model in a format version this bp does not read.
    #[error(
        "the model file {} is in format version {found} (`{format}`), but this bp-train reads \
         version {FORMAT_VERSION}; train the model again with --save to write one",
        path.display()
    )]
    FormatVersion {
        /// The file.
        path: PathBuf,
        /// The file's `format` value.
        format: String,
        /// The file's `format_version` value.
        found: String,
    },

    /// The header's layer list cannot be built for its input shape.
    #[error("the model file {} has a layer list that cannot be built: {error}", path.display())]
    Layers {
        /// The file.
        path: PathBuf,
        /// The layer, and what is wrong with it (in the message, so not a `source` as well).
        error: LayerError,
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

    /// A tensor the layers need is not in the file.
    #[error("the model file {} has no tensor `{name}`, which its layers need", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },

    /// The file holds a tensor no layer has a place for.
    #[error("the model file {} holds a tensor `{name}` that its layers have no place for", path.display())]
    ExtraTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },

    /// A tensor's shape is not its layer's.
    #[error("the model file {}: tensor `{name}` has shape {found:?}, but its layer needs {expected:?}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The shape the layer has.
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

    /// A tensor holds a value its layer cannot take (a negative variance).
    #[error("the model file {}: tensor `{name}` {reason}", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// What is wrong with its values.
        reason: String,
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

/// What training reported for a saved model: the numbers of the epoch after which it was saved.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// What a model file says besides the network itself: the images it takes and what training
/// reported.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// Rows and columns of an input image; `rows * cols` is the network's input size.
    pub image_shape: (usize, usize),
    /// What training reported for this model, if known.
    pub training: Option<TrainingRecord>,
}

impl ModelInfo {
    /// The info of a model taking `rows x cols` images, with no training record.
    pub fn new(image_shape: (usize, usize)) -> Self {
        ModelInfo {
            image_shape,
            training: None,
        }
    }
}

/// The `model` metadata of a file: everything needed to rebuild the network before its tensors
/// are read. See the [module documentation](self) for an example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelHeader {
    /// The tensors' element type.
    pub dtype: Dtype,
    /// Rows and columns of an input image, pixels scaled to `[0, 1]`.
    pub image_shape: [usize; 2],
    /// The shape of one input sample of the network (`[784]` for flat rows).
    pub input_shape: Vec<usize>,
    /// The number of classes, the last layer's width.
    pub classes: usize,
    /// The layer list.
    pub layers: Vec<LayerSpec>,
    /// The layers as PyTorch prints its modules.
    pub modules: Vec<String>,
    /// How the weights were initialised.
    pub init: Init,
    /// The weight-decay coefficient of training.
    pub weight_decay: f64,
    /// What training reported for this model, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingRecord>,
}

impl ModelHeader {
    /// The header of a network and its info.
    ///
    /// # Panics
    ///
    /// If the image shape does not hold the network's input size.
    #[track_caller]
    pub fn new<A: ModelElement>(net: &Network<A>, info: &ModelInfo) -> Self {
        let (rows, cols) = info.image_shape;
        assert_eq!(
            rows.checked_mul(cols),
            Some(net.input_size()),
            "ModelHeader::new: images of {rows}x{cols} do not fit a network of input shape {:?}",
            net.input_shape()
        );
        let options = net.options();
        ModelHeader {
            dtype: A::DTYPE,
            image_shape: [rows, cols],
            input_shape: net.input_shape().to_vec(),
            classes: net.classes(),
            layers: net.specs().to_vec(),
            modules: net.modules().to_vec(),
            init: options.init,
            weight_decay: options.weight_decay,
            training: info.training,
        }
    }
}

/// The safetensors bytes of a network and its info.
///
/// # Panics
///
/// If `info.image_shape` does not hold the network's input size.
#[track_caller]
pub fn to_bytes<A: ModelElement>(net: &Network<A>, info: &ModelInfo) -> Vec<u8> {
    let header = ModelHeader::new(net, info);
    let mut tensors: Vec<(String, OwnedTensor)> = Vec::new();
    net.layers().visit_tensors(&mut |name, view| {
        tensors.push((
            format!("{PREFIX}.{name}"),
            tensor_of(view.iter(), view.shape()),
        ));
    });
    let meta: HashMap<String, String> = [
        ("format", FORMAT.to_owned()),
        ("format_version", FORMAT_VERSION.to_owned()),
        (
            HEADER_KEY,
            serde_json::to_string(&header).expect("a header serialises"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut bytes =
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
            .expect("a model's header is far below the safetensors limits");
    canonicalize_header(&mut bytes);
    bytes
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
    // Padded with spaces by hand: a formatting width (`{:<n$}`) stops at 65,535, and the header
    // of a network of a few hundred layers is longer.
    let mut padded = canonical.into_bytes();
    padded.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&padded);
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
    net: &Network<A>,
    info: &ModelInfo,
) -> Result<(), ModelError> {
    let path = path.as_ref();
    let bytes = to_bytes(net, info);
    write_atomic(path, |w| w.write_all(&bytes)).map_err(|source| ModelError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A trained network read from a model file, with the file's info.
pub struct Model<A> {
    /// The network.
    pub net: Network<A>,
    /// The input image shape and training record.
    pub info: ModelInfo,
}

impl<A: NdFloat> Clone for Model<A> {
    fn clone(&self) -> Self {
        Model {
            net: self.net.clone(),
            info: self.info.clone(),
        }
    }
}

impl<A: NdFloat> std::fmt::Debug for Model<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("net", &self.net)
            .field("info", &self.info)
            .finish()
    }
}

impl<A: ModelElement> Model<A> {
    /// Reads a model of element type `A` from a file.
    ///
    /// # Errors
    ///
    /// [`ModelError::Read`] if the file cannot be read, and every error of
    /// [`Model::from_bytes`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let bytes = read(path)?;
        Model::from_bytes(&bytes, path)
    }

    /// Reads a model of element type `A` from the bytes of a file; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// [`ModelError::Format`] for bytes that are not safetensors, [`ModelError::MissingMetadata`],
    /// [`ModelError::FormatVersion`], [`ModelError::BadMetadata`] and [`ModelError::Layers`] for
    /// metadata that does not describe a network, [`ModelError::WrongElementType`] for the other
    /// element type, and [`ModelError::MissingTensor`], [`ModelError::ExtraTensor`],
    /// [`ModelError::Shape`], [`ModelError::Dtype`] and [`ModelError::NonFinite`] for tensors that
    /// do not fit the layers.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ModelError> {
        let file = parse(bytes, path)?;
        if file.header.dtype != A::DTYPE {
            return Err(ModelError::WrongElementType {
                path: path.to_path_buf(),
                found: file.header.dtype,
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
        save_model(path, &self.net, &self.info)
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
        Ok(match file.header.dtype {
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

    /// A one-line description of the network and its element type, such as `TwoLayerNet
    /// 784-50-10, relu, init std 0.01, f32`.
    pub fn describe(&self) -> String {
        let net = match self {
            AnyModel::F32(m) => m.net.describe(),
            AnyModel::F64(m) => m.net.describe(),
        };
        format!("{net}, {}", self.dtype().name())
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        match self {
            AnyModel::F32(m) => m.net.classes(),
            AnyModel::F64(m) => m.net.classes(),
        }
    }
}

/// Reads a whole model file, if it is a regular file of at most [`MAX_MODEL_BYTES`].
fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    files::read_regular(path, MAX_MODEL_BYTES).map_err(|source| ModelError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A model file whose header was read and checked, before the network is built.
struct ParsedFile<'a> {
    path: &'a Path,
    /// The file's length in bytes.
    len: usize,
    tensors: SafeTensors<'a>,
    header: ModelHeader,
}

/// Reads a file's metadata into its header and checks the header's numbers.
fn parse<'a>(bytes: &'a [u8], path: &'a Path) -> Result<ParsedFile<'a>, ModelError> {
    let format_error = |source| ModelError::Format {
        path: path.to_path_buf(),
        source,
    };
    let tensors = SafeTensors::deserialize(bytes).map_err(format_error)?;
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(format_error)?;
    let empty = HashMap::new();
    let map = metadata.metadata().as_ref().unwrap_or(&empty);
    let missing = |key: &str, hint: &'static str| ModelError::MissingMetadata {
        path: path.to_path_buf(),
        key: key.to_owned(),
        hint,
    };
    let bad = |key: &str, reason: String| ModelError::BadMetadata {
        path: path.to_path_buf(),
        key: key.to_owned(),
        value: map.get(key).cloned().unwrap_or_default(),
        reason,
    };
    let format = map.get("format").ok_or_else(|| {
        missing(
            "format",
            "; a safetensors file that bp-train did not write (it writes `format: bp-model`)",
        )
    })?;
    if format != FORMAT && format != "bp-mlp" {
        return Err(bad(
            "format",
            format!("not `{FORMAT}`: this is not a bp model"),
        ));
    }
    let version = map
        .get("format_version")
        .ok_or_else(|| missing("format_version", ""))?;
    if format != FORMAT || version != FORMAT_VERSION {
        return Err(ModelError::FormatVersion {
            path: path.to_path_buf(),
            format: format.clone(),
            found: version.clone(),
        });
    }
    let text = map.get(HEADER_KEY).ok_or_else(|| missing(HEADER_KEY, ""))?;
    let header: ModelHeader =
        serde_json::from_str(text).map_err(|e| bad(HEADER_KEY, format!("{e}")))?;
    let check = |ok: bool, reason: &str| {
        if ok {
            Ok(())
        } else {
            Err(bad(HEADER_KEY, reason.to_owned()))
        }
    };
    let [rows, cols] = header.image_shape;
    check(
        rows > 0
            && cols > 0
            && rows.checked_mul(cols)
                == header
                    .input_shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d)),
        "its `image_shape` does not hold its `input_shape`",
    )?;
    check(
        header.weight_decay.is_finite() && header.weight_decay >= 0.0,
        "its `weight_decay` is not a finite number >= 0",
    )?;
    check(
        match header.init {
            Init::Std(std) => std.is_finite() && std >= 0.0,
            Init::He | Init::Xavier => true,
        },
        "its `init` std is not a finite number >= 0",
    )?;
    if let Some(t) = header.training {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        check(
            t.loss.is_finite() && unit(t.train_acc) && unit(t.test_acc),
            "its `training` record holds a loss that is not finite or an accuracy outside [0, 1]",
        )?;
    }
    Ok(ParsedFile {
        path,
        len: bytes.len(),
        tensors,
        header,
    })
}

impl ParsedFile<'_> {
    fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    fn bad(&self, reason: String) -> ModelError {
        ModelError::BadMetadata {
            path: self.path(),
            key: HEADER_KEY.to_owned(),
            value: serde_json::to_string(&self.header).expect("a header serialises"),
            reason,
        }
    }

    /// The network the header describes, with every tensor checked and loaded.
    fn build<A: ModelElement>(self) -> Result<Model<A>, ModelError> {
        debug_assert_eq!(self.header.dtype, A::DTYPE);
        let h = &self.header;
        let options = NetOptions {
            init: h.init,
            weight_decay: h.weight_decay,
        };
        // Every parameter is in the file: a layer list whose parameters need more bytes than the
        // whole file has is refused before anything is allocated for it.
        let plan = plan_stack(&h.layers, &h.input_shape).map_err(|error| ModelError::Layers {
            path: self.path(),
            error,
        })?;
        let needed = (plan.params() as u128).saturating_mul(size_of::<A>() as u128);
        if needed > self.len as u128 {
            return Err(self.bad(format!(
                "its layers have {} parameters ({}), more than the whole file ({}) holds",
                plan.params(),
                Bytes(needed),
                Bytes(self.len as u128)
            )));
        }
        let mut net = Network::<A>::new(
            &h.input_shape,
            h.layers.clone(),
            options,
            &mut rng(0, Stream::Init),
        )
        .map_err(|error| ModelError::Layers {
            path: self.path(),
            error,
        })?;
        if net.classes() != h.classes {
            return Err(self.bad(format!(
                "its `classes` is {}, but its last layer gives {}",
                h.classes,
                net.classes()
            )));
        }
        if net.modules() != h.modules {
            return Err(self.bad(format!(
                "its `modules` do not match its layers, which are {:?}",
                net.modules()
            )));
        }
        // Every tensor the layers have, by name and shape, in order.
        let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
        net.layers().visit_tensors(&mut |name, view| {
            expected.push((name.to_owned(), view.shape().to_vec()));
        });
        for (name, shape) in &expected {
            let full = format!("{PREFIX}.{name}");
            let value = self.tensor::<A>(&full, shape)?;
            net.layers_mut()
                .load_tensor(name, value.view())
                .map_err(|reason| ModelError::BadValue {
                    path: self.path(),
                    name: full,
                    reason,
                })?;
        }
        let mut extra: Vec<&str> = self
            .tensors
            .names()
            .into_iter()
            .filter(|n| {
                n.strip_prefix(PREFIX)
                    .and_then(|n| n.strip_prefix('.'))
                    .is_none_or(|n| !expected.iter().any(|(e, _)| e == n))
            })
            .collect();
        extra.sort_unstable();
        if let Some(name) = extra.first() {
            return Err(ModelError::ExtraTensor {
                path: self.path(),
                name: (*name).to_owned(),
            });
        }
        let [rows, cols] = h.image_shape;
        Ok(Model {
            net,
            info: ModelInfo {
                image_shape: (rows, cols),
                training: h.training,
            },
        })
    }

    /// The tensor `name`, checked to be of the model's element type, of `shape`, and finite.
    fn tensor<A: ModelElement>(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<ArrayD<A>, ModelError> {
        let t = self
            .tensors
            .tensor(name)
            .map_err(|_| ModelError::MissingTensor {
                path: self.path(),
                name: name.to_owned(),
            })?;
        if t.dtype() != A::SAFETENSORS {
            return Err(ModelError::Dtype {
                path: self.path(),
                name: name.to_owned(),
                expected: format!("{:?}", A::SAFETENSORS),
                found: format!("{:?}", t.dtype()),
            });
        }
        if t.shape() != shape {
            return Err(ModelError::Shape {
                path: self.path(),
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: t.shape().to_vec(),
            });
        }
        let values = A::from_le_slice(t.data());
        if !values.iter().all(|v| v.is_finite()) {
            return Err(ModelError::NonFinite {
                path: self.path(),
                name: name.to_owned(),
            });
        }
        Ok(ArrayD::from_shape_vec(IxDyn(shape), values)
            .expect("the shape was checked against the data length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TwoLayerNet;
    use rand::SeedableRng;

    #[test]
    fn the_metadata_holds_the_header() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
        let net = TwoLayerNet::<f32>::new(784, 50, 10, 0.01, &mut rng);
        let bytes = to_bytes(&net, &ModelInfo::new((28, 28)));
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let map = meta.metadata().as_ref().unwrap();
        assert_eq!(map["format"], "bp-model");
        assert_eq!(map["format_version"], "2");
        assert_eq!(
            map["model"],
            r#"{"dtype":"f32","image_shape":[28,28],"input_shape":[784],"classes":10,"layers":[{"layer":"affine","out":50},{"layer":"relu"},{"layer":"affine","out":10}],"modules":["Linear(in_features=784, out_features=50, bias=True)","ReLU()","Linear(in_features=50, out_features=10, bias=True)"],"init":{"std":0.01},"weight_decay":0.0}"#
        );
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = tensors.names();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "layers.0.bias",
                "layers.0.weight",
                "layers.2.bias",
                "layers.2.weight"
            ]
        );
        assert_eq!(
            tensors.tensor("layers.0.weight").unwrap().shape(),
            [50, 784]
        );
        // The same model gives the same bytes.
        assert_eq!(to_bytes(&net, &ModelInfo::new((28, 28))), bytes);
    }
}
