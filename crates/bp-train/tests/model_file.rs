//! Model files: round trips, every malformed file, and atomic writes.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use bp_core::{Affine, BatchNorm, Init, parse_layers};
use bp_loss::Targets;
use bp_train::model_file::{
    AnyModel, Model, ModelElement, ModelError, ModelInfo, TrainingRecord, save_model, to_bytes,
};
use bp_train::{
    Activation, Dtype, MultiLayerConfig, MultiLayerNet, NetOptions, Network, Optimizer, Sgd,
    TwoLayerNet, write_atomic,
};
use ndarray::{Array2, ArrayD, NdFloat};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use safetensors::SafeTensors;
use serde_json::{Value, json};

/// A fresh, empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bp-model-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A batch of 12 inputs of 3 x 2 "pixels" and their classes.
fn batch() -> (ArrayD<f64>, Vec<usize>) {
    let x = Array2::from_shape_fn((12, 6), |(i, j)| ((i * 5 + j * 3) % 11) as f64 / 10.0);
    let t = (0..12).map(|i| i % 4).collect();
    (x.into_dyn(), t)
}

/// A net trained for a few steps, so that no parameter or running average is at its initial value.
fn trained<A: NdFloat>(mut net: Network<A>) -> Network<A> {
    let (x, t) = batch();
    let x = x.mapv(|v| A::from(v).unwrap());
    let mut sgd = Sgd::new();
    for _ in 0..5 {
        net.gradient(x.clone(), Targets::Index(&t));
        sgd.step(&mut net, A::from(0.5).unwrap());
    }
    net
}

fn rich_config() -> MultiLayerConfig {
    MultiLayerConfig {
        activation: Activation::Sigmoid,
        init: Init::Xavier,
        batch_norm: true,
        dropout: Some(0.25),
        weight_decay: 0.01,
        ..MultiLayerConfig::new(6, vec![5, 4], 4)
    }
}

fn two_layer_info() -> ModelInfo {
    ModelInfo {
        training: Some(TrainingRecord {
            epoch: 3,
            iter: 15,
            loss: 0.123_456_789,
            train_acc: 0.75,
            test_acc: 2.0 / 3.0,
        }),
        ..ModelInfo::new((3, 2))
    }
}

fn two_layer_net() -> Network<f32> {
    trained(TwoLayerNet::<f32>::new(
        6,
        8,
        4,
        0.5,
        &mut Xoshiro256PlusPlus::seed_from_u64(1),
    ))
}

#[test]
fn a_two_layer_net_round_trips_with_identical_predictions() {
    let dir = temp_dir("two-layer");
    let path = dir.join("net.safetensors");
    let net = two_layer_net();
    let info = two_layer_info();
    save_model(&path, &net, &info).unwrap();
    let model = Model::<f32>::load(&path).unwrap();
    assert_eq!(model.info, info);
    assert_eq!(model.net.specs(), net.specs());
    assert_eq!(model.net.options(), net.options());
    assert_eq!(
        model.net.describe(),
        "TwoLayerNet 6-8-4, relu, init std 0.5"
    );
    for (a, b) in model
        .net
        .layers_of::<Affine<f32>>()
        .zip(net.layers_of::<Affine<f32>>())
    {
        assert_eq!(a.w(), b.w());
        assert_eq!(a.b(), b.b());
    }
    let (x, _) = batch();
    let x = x.mapv(|v| v as f32);
    assert_eq!(model.net.predict(x.clone()), net.predict(x));
    // Saving again gives the same bytes.
    let again = dir.join("again.safetensors");
    model.save(&again).unwrap();
    assert_eq!(fs::read(&path).unwrap(), fs::read(&again).unwrap());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_multi_layer_net_with_batch_norm_and_dropout_round_trips_in_f64() {
    let dir = temp_dir("multi-layer");
    let path = dir.join("net.safetensors");
    let net = trained(MultiLayerNet::<f64>::new(
        rich_config(),
        &mut Xoshiro256PlusPlus::seed_from_u64(2),
    ));
    assert!(
        net.layers_of::<BatchNorm<f64>>()
            .all(|bn| bn.running_var().iter().all(|&v| v > 0.0))
    );
    let info = ModelInfo::new((2, 3));
    save_model(&path, &net, &info).unwrap();
    let AnyModel::F64(model) = AnyModel::load(&path).unwrap() else {
        panic!("an f64 model comes back as one");
    };
    assert_eq!(model.info, info);
    assert_eq!(model.net.specs(), rich_config().layers());
    assert_eq!(model.net.options().weight_decay, 0.01);
    assert_eq!(model.net.options().init, Init::Xavier);
    let back = &model.net;
    assert_eq!(back.layers_of::<BatchNorm<f64>>().count(), 2);
    for (a, b) in back
        .layers_of::<BatchNorm<f64>>()
        .zip(net.layers_of::<BatchNorm<f64>>())
    {
        assert_eq!(a.gamma(), b.gamma());
        assert_eq!(a.running_mean(), b.running_mean());
        assert_eq!(a.running_var(), b.running_var());
    }
    let (x, _) = batch();
    assert_eq!(model.net.predict(x.clone()), net.predict(x));

    // The tensors are named and shaped as PyTorch's state_dict of the same nn.Sequential.
    let bytes = fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<(String, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    names.sort();
    let expected: Vec<(String, Vec<usize>)> = [
        ("layers.0.bias", vec![5]),
        ("layers.0.weight", vec![5, 6]),
        ("layers.1.bias", vec![5]),
        ("layers.1.running_mean", vec![5]),
        ("layers.1.running_var", vec![5]),
        ("layers.1.weight", vec![5]),
        ("layers.4.bias", vec![4]),
        ("layers.4.weight", vec![4, 5]),
        ("layers.5.bias", vec![4]),
        ("layers.5.running_mean", vec![4]),
        ("layers.5.running_var", vec![4]),
        ("layers.5.weight", vec![4]),
        ("layers.8.bias", vec![4]),
        ("layers.8.weight", vec![4, 4]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_owned(), s))
    .collect();
    assert_eq!(names, expected);
    // The Linear weight is W transposed.
    let w0 = st.tensor("layers.0.weight").unwrap();
    let first = f64::from_le_bytes(w0.data()[8..16].try_into().unwrap());
    assert_eq!(
        first,
        net.layers_of::<Affine<f64>>().next().unwrap().w()[[1, 0]]
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_f32_file_is_refused_as_f64() {
    let bytes = to_bytes(&two_layer_net(), &two_layer_info());
    let err = Model::<f64>::from_bytes(&bytes, Path::new("m.safetensors")).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::WrongElementType {
                found: Dtype::F32,
                wanted: Dtype::F64,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the model file m.safetensors holds a f32 model, but a f64 one was asked for"
    );
}

/// A tensor to write into a test file.
struct RawTensor {
    name: String,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &RawTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.data[..]).into()
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// The bytes of a valid model file, changed by `edit` (metadata and tensors).
fn edited(edit: impl FnOnce(&mut HashMap<String, String>, &mut Vec<RawTensor>)) -> Vec<u8> {
    edited_bytes(to_bytes(&two_layer_net(), &two_layer_info()), edit)
}

/// The bytes of a model file, changed by `edit`.
fn edited_bytes(
    bytes: Vec<u8>,
    edit: impl FnOnce(&mut HashMap<String, String>, &mut Vec<RawTensor>),
) -> Vec<u8> {
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut tensors: Vec<RawTensor> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| RawTensor {
            name,
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            data: t.data().to_vec(),
        })
        .collect();
    edit(&mut meta, &mut tensors);
    let meta = (!meta.is_empty()).then_some(meta);
    safetensors::serialize(tensors.iter().map(|t| (t.name.as_str(), t)), meta).unwrap()
}

fn set(key: &str, value: &str) -> impl FnOnce(&mut HashMap<String, String>, &mut Vec<RawTensor>) {
    let (key, value) = (key.to_owned(), value.to_owned());
    move |m, _| {
        m.insert(key, value);
    }
}

/// Edits the `model` header's JSON.
fn header(
    edit: impl FnOnce(&mut Value),
) -> impl FnOnce(&mut HashMap<String, String>, &mut Vec<RawTensor>) {
    move |m, _| {
        let mut value: Value = serde_json::from_str(&m["model"]).unwrap();
        edit(&mut value);
        m.insert("model".to_owned(), value.to_string());
    }
}

fn load_err(bytes: &[u8]) -> ModelError {
    let err = AnyModel::from_bytes(bytes, Path::new("bad.safetensors")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("bad.safetensors"),
        "the message names the file: {msg}"
    );
    err
}

fn bad_metadata(bytes: &[u8], key: &str, reason: &str) {
    match load_err(bytes) {
        ModelError::BadMetadata {
            key: k, reason: r, ..
        } => {
            assert_eq!(k, key);
            assert!(r.contains(reason), "{key}: {r}");
        }
        other => panic!("{key}: expected BadMetadata, got {other:?}"),
    }
}

fn missing_metadata(bytes: &[u8], key: &str) {
    match load_err(bytes) {
        ModelError::MissingMetadata { key: k, .. } => assert_eq!(k, key),
        other => panic!("expected MissingMetadata {key}, got {other:?}"),
    }
}

#[test]
fn bytes_that_are_not_safetensors_are_a_format_error() {
    let good = to_bytes(&two_layer_net(), &two_layer_info());
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\x89PNG\r\n\x1a\n0000".to_vec(),
        good[..good.len() - 1].to_vec(),
        good[..100].to_vec(),
        [&good[..], b"trailing"].concat(),
        {
            let mut b = good.clone();
            b[12] = b'!'; // inside the JSON header
            b
        },
    ];
    for bytes in cases {
        let err = load_err(&bytes);
        assert!(matches!(err, ModelError::Format { .. }), "{err:?}");
        assert!(
            err.to_string()
                .ends_with("bad.safetensors is not a valid safetensors file")
        );
    }
}

#[test]
fn a_file_bp_did_not_write_says_so() {
    let bytes = edited(|m, _| m.clear());
    let err = load_err(&bytes);
    assert!(matches!(&err, ModelError::MissingMetadata { key, .. } if key == "format"));
    assert!(err.to_string().contains("bp-train did not write"), "{err}");
    bad_metadata(
        &edited(set("format", "pytorch")),
        "format",
        "not a bp model",
    );
}

#[test]
fn every_missing_metadata_key_is_named() {
    for key in ["format_version", "model"] {
        let bytes = edited(|m, _| {
            m.remove(key);
        });
        missing_metadata(&bytes, key);
    }
}

#[test]
fn files_of_another_format_version_are_refused_naming_it() {
    let v1 = edited(|m, _| {
        m.insert("format".into(), "bp-mlp".into());
        m.insert("format_version".into(), "1".into());
    });
    let err = load_err(&v1);
    assert!(
        matches!(&err, ModelError::FormatVersion { found, format, .. } if found == "1" && format == "bp-mlp"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the model file bad.safetensors is in format version 1 (`bp-mlp`), but this bp-train \
         reads version 2; train the model again with --save to write one"
    );
    let v3 = edited(set("format_version", "3"));
    assert!(matches!(load_err(&v3), ModelError::FormatVersion { found, .. } if found == "3"));
}

#[test]
fn every_bad_header_value_is_refused() {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|h| h["dtype"] = json!("f16")),
            "unknown variant `f16`",
        ),
        (
            Box::new(|h| h["image_shape"] = json!([2, 2])),
            "`image_shape` does not hold",
        ),
        (
            Box::new(|h| h["image_shape"] = json!([6])),
            "invalid length 1",
        ),
        (
            Box::new(|h| h["input_shape"] = json!([5])),
            "`image_shape` does not hold",
        ),
        (
            Box::new(|h| h["classes"] = json!(5)),
            "its `classes` is 5, but its last layer gives 4",
        ),
        (Box::new(|h| h["classes"] = json!("four")), "invalid type"),
        (
            Box::new(|h| h["layers"][1] = json!({"layer": "tanh"})),
            "unknown variant `tanh`",
        ),
        (
            Box::new(|h| h["layers"][0] = json!({"layer": "affine", "out": -8})),
            "invalid value",
        ),
        (
            Box::new(|h| h["layers"][0]["size"] = json!(8)),
            "unknown field `size`",
        ),
        (
            Box::new(|h| h["modules"][1] = json!("Tanh()")),
            "its `modules` do not match its layers",
        ),
        (
            Box::new(|h| h["init"] = json!({"std": -1.0})),
            "`init` std is not a finite number",
        ),
        (
            Box::new(|h| h["init"] = json!("uniform")),
            "unknown variant `uniform`",
        ),
        (
            Box::new(|h| h["weight_decay"] = json!(-0.1)),
            "`weight_decay` is not a finite number >= 0",
        ),
        (Box::new(|h| h["extra"] = json!(1)), "unknown field `extra`"),
        (
            Box::new(|h| {
                h.as_object_mut()
                    .unwrap()
                    .remove("layers")
                    .map(drop)
                    .unwrap()
            }),
            "missing field `layers`",
        ),
        (
            Box::new(|h| h["training"] = json!({"epoch": 1})),
            "missing field `iter`",
        ),
        (
            Box::new(|h| h["training"]["test_acc"] = json!(1.5)),
            "an accuracy outside [0, 1]",
        ),
    ];
    for (edit, reason) in cases {
        bad_metadata(&edited(header(edit)), "model", reason);
    }
    bad_metadata(
        &edited(set("model", "{not json")),
        "model",
        "key must be a string",
    );
}

#[test]
fn a_layer_list_that_cannot_be_built_names_the_layer() {
    let zero = edited(header(|h| {
        h["layers"][2] = json!({"layer": "affine", "out": 0})
    }));
    let err = load_err(&zero);
    assert!(
        matches!(&err, ModelError::Layers { error, .. } if error.position == 3),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("layer 3 `affine 0`: the number of outputs must be positive"),
        "{err}"
    );
    // The layer's error is in the message once, not repeated as a cause.
    assert!(std::error::Error::source(&err).is_none());
    let no_scores = edited(header(|h| {
        h["layers"].as_array_mut().unwrap().pop();
    }));
    bad_metadata(
        &no_scores,
        "model",
        "its `classes` is 4, but its last layer gives 8",
    );
    let ratio = edited(header(|h| {
        h["layers"][1] = json!({"layer": "dropout", "ratio": 2.0})
    }));
    assert!(matches!(load_err(&ratio), ModelError::Layers { .. }));
}

/// A header that declares layers far larger than its tensors is refused before they are
/// allocated: 11 x 10¹² parameters of 4 bytes would abort the test if they were.
#[test]
fn a_layer_list_larger_than_the_file_is_refused_before_allocating() {
    let huge = edited(header(|h| {
        h["layers"][0] = json!({"layer": "affine", "out": 1_000_000_000_000u64})
    }));
    let err = load_err(&huge);
    let ModelError::BadMetadata { key, reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(key, "model");
    assert_eq!(
        reason,
        &format!(
            "its layers have 11000000000004 parameters (40 TiB), more than the whole file ({}) \
             holds",
            bp_train::Bytes(huge.len() as u128)
        )
    );
    let overflow = edited(header(|h| {
        h["layers"][0] = json!({"layer": "affine", "out": u64::MAX})
    }));
    let err = load_err(&overflow);
    assert!(
        err.to_string().ends_with(&format!(
            "layer 1 `affine {}`: its weights (6 x {}) are more than this machine can count",
            u64::MAX,
            u64::MAX
        )),
        "{err}"
    );
}

#[test]
fn missing_extra_misshapen_mistyped_and_non_finite_tensors_are_refused() {
    let missing = edited(|_, t| t.retain(|t| t.name != "layers.2.bias"));
    assert!(matches!(
        load_err(&missing),
        ModelError::MissingTensor { name, .. } if name == "layers.2.bias"
    ));

    let extra = edited(|_, t| {
        t.push(RawTensor {
            name: "layers.1.weight".to_owned(),
            dtype: safetensors::Dtype::F32,
            shape: vec![1],
            data: vec![0; 4],
        });
    });
    let err = load_err(&extra);
    assert!(matches!(&err, ModelError::ExtraTensor { name, .. } if name == "layers.1.weight"));
    assert!(
        err.to_string().contains("its layers have no place for"),
        "{err}"
    );

    // The weight in our (in, out) layout instead of PyTorch's (out, in).
    let untransposed = edited(|_, t| {
        let w = t.iter_mut().find(|t| t.name == "layers.0.weight").unwrap();
        w.shape = vec![6, 8];
    });
    let err = load_err(&untransposed);
    assert!(
        matches!(&err, ModelError::Shape { name, expected, found, .. }
            if name == "layers.0.weight" && expected == &[8, 6] && found == &[6, 8]),
        "{err:?}"
    );

    let mistyped = edited(|_, t| {
        let b = t.iter_mut().find(|t| t.name == "layers.0.bias").unwrap();
        let values: Vec<f32> = b
            .data
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        b.dtype = safetensors::Dtype::F64;
        b.data = values
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect();
    });
    let err = load_err(&mistyped);
    assert!(
        matches!(&err, ModelError::Dtype { name, expected, found, .. }
            if name == "layers.0.bias" && expected == "F32" && found == "F64"),
        "{err:?}"
    );
    // A header dtype that disagrees with every tensor.
    assert!(matches!(
        load_err(&edited(header(|h| h["dtype"] = json!("f64")))),
        ModelError::Dtype { .. }
    ));

    let nan = edited(|_, t| {
        let w = t.iter_mut().find(|t| t.name == "layers.2.weight").unwrap();
        w.data[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert!(matches!(
        load_err(&nan),
        ModelError::NonFinite { name, .. } if name == "layers.2.weight"
    ));

    // Changing the layers without the tensors.
    let resized = edited(header(|h| {
        h["layers"][0]["out"] = json!(9);
        h["modules"] = json!([
            "Linear(in_features=6, out_features=9, bias=True)",
            "ReLU()",
            "Linear(in_features=9, out_features=4, bias=True)"
        ]);
    }));
    assert!(matches!(load_err(&resized), ModelError::Shape { .. }));
}

/// A network built from a `--layers` list, trained a few steps, saved and loaded, predicts the same
/// bits, in both element types.
#[test]
fn a_network_from_a_layer_list_round_trips_bit_for_bit() {
    fn round_trip<A: ModelElement>() {
        let specs =
            parse_layers("linear 12, batchnorm, relu, dropout 0.25, affine 7, sigmoid, affine 4")
                .unwrap();
        let options = NetOptions {
            init: Init::He,
            weight_decay: 0.001,
        };
        let net = Network::<A>::new(
            &[6],
            specs.clone(),
            options,
            &mut Xoshiro256PlusPlus::seed_from_u64(4),
        )
        .unwrap();
        let net = trained(net);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.safetensors");
        save_model(&path, &net, &ModelInfo::new((2, 3))).unwrap();
        let model = Model::<A>::load(&path).unwrap();
        assert_eq!(model.net.specs(), specs);
        assert_eq!(model.net.modules(), net.modules());
        let (x, _) = batch();
        let x = x.mapv(|v| A::from(v).unwrap());
        let (a, b) = (model.net.predict(x.clone()), net.predict(x));
        let bytes = |m: &Array2<A>| {
            let mut out = Vec::new();
            m.iter().for_each(|v| v.put_le(&mut out));
            out
        };
        assert_eq!(bytes(&a), bytes(&b));
        assert_eq!(model.net.describe(), net.describe());
        assert!(
            net.describe()
                .starts_with("Sequential 6 -> affine 12, batchnorm, relu, dropout 0.25")
        );
    }
    round_trip::<f32>();
    round_trip::<f64>();
}

#[test]
fn a_negative_running_variance_is_refused() {
    let net = trained(MultiLayerNet::<f64>::new(
        rich_config(),
        &mut Xoshiro256PlusPlus::seed_from_u64(2),
    ));
    let bytes = to_bytes(&net, &ModelInfo::new((2, 3)));
    assert!(AnyModel::from_bytes(&bytes, Path::new("ok.safetensors")).is_ok());
    let negative = edited_bytes(bytes, |_, t| {
        let v = t
            .iter_mut()
            .find(|t| t.name == "layers.5.running_var")
            .unwrap();
        v.data[8..16].copy_from_slice(&(-0.5f64).to_le_bytes());
    });
    let err = load_err(&negative);
    assert!(
        matches!(&err, ModelError::BadValue { name, .. } if name == "layers.5.running_var"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the model file bad.safetensors: tensor `layers.5.running_var` holds a negative variance, -0.5"
    );
}

#[test]
fn an_unreadable_file_is_a_read_error_naming_it() {
    let err = AnyModel::load("no/such/model.safetensors").unwrap_err();
    assert!(matches!(err, ModelError::Read { .. }));
    assert_eq!(
        err.to_string(),
        "cannot read the model file no/such/model.safetensors"
    );
}

/// Every file name in a directory.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_save_that_fails_midway_leaves_the_previous_model_intact() {
    let dir = temp_dir("atomic");
    let path = dir.join("model.safetensors");
    let old_net = two_layer_net();
    save_model(&path, &old_net, &two_layer_info()).unwrap();
    let old_bytes = fs::read(&path).unwrap();

    // A new model whose write dies after half its bytes, as a full disk or a killed run would.
    let new_net = trained(TwoLayerNet::<f32>::new(
        6,
        8,
        4,
        0.5,
        &mut Xoshiro256PlusPlus::seed_from_u64(9),
    ));
    let new_bytes = to_bytes(&new_net, &two_layer_info());
    assert_ne!(new_bytes, old_bytes);
    let err = write_atomic(&path, |w| {
        w.write_all(&new_bytes[..new_bytes.len() / 2])?;
        w.flush()?;
        Err(std::io::Error::other("no space left on device"))
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "no space left on device");
    assert_eq!(fs::read(&path).unwrap(), old_bytes);
    assert_eq!(
        listing(&dir),
        ["model.safetensors"],
        "no temporary file is left"
    );
    let model = Model::<f32>::load(&path).unwrap();
    let (x, _) = batch();
    let x = x.mapv(|v| v as f32);
    assert_eq!(model.net.predict(x.clone()), old_net.predict(x));

    // A save that cannot even be renamed into place (the target is a directory) fails cleanly too.
    let blocked = dir.join("blocked.safetensors");
    fs::create_dir(&blocked).unwrap();
    let err = save_model(&blocked, &new_net, &two_layer_info()).unwrap_err();
    assert!(matches!(err, ModelError::Write { .. }));
    assert!(err.to_string().contains("blocked.safetensors"));
    assert_eq!(listing(&dir), ["blocked.safetensors", "model.safetensors"]);

    // And a successful save replaces the file whole.
    save_model(&path, &new_net, &two_layer_info()).unwrap();
    assert_eq!(fs::read(&path).unwrap(), new_bytes);
    assert_eq!(listing(&dir), ["blocked.safetensors", "model.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_save_into_a_missing_directory_is_a_write_error() {
    let err = save_model(
        "no/such/dir/model.safetensors",
        &two_layer_net(),
        &two_layer_info(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Write { .. }));
    assert_eq!(
        err.to_string(),
        "cannot write the model file no/such/dir/model.safetensors"
    );
}

/// A convnet trained for a few steps on 6 x 5 images, saved and loaded: the same
/// layers and tensors (`Conv2d` weights as (out, in, kh, kw)), and the same predictions bit for bit.
#[test]
fn a_convnet_round_trips_with_identical_predictions() {
    let dir = temp_dir("convnet");
    let path = dir.join("convnet.safetensors");
    let layers = parse_layers(
        "conv 4 3x2 pad 1, relu, maxpool 2 stride 1, conv 3 2x2 stride 2, relu, flatten, \
         dropout 0.1, affine 4",
    )
    .unwrap();
    let mut net = Network::<f32>::new(
        &[1, 6, 5],
        layers,
        NetOptions {
            init: Init::He,
            weight_decay: 0.0,
        },
        &mut Xoshiro256PlusPlus::seed_from_u64(4),
    )
    .unwrap();
    let x = ndarray::Array4::from_shape_fn((12, 1, 6, 5), |(i, c, y, z)| {
        ((i * 5 + c * 7 + y * 3 + z) % 11) as f32 / 10.0
    })
    .into_dyn();
    let t: Vec<usize> = (0..12).map(|i| i % 4).collect();
    let mut sgd = Sgd::new();
    for _ in 0..5 {
        net.gradient(x.clone(), Targets::Index(&t));
        sgd.step(&mut net, 0.1);
    }
    save_model(&path, &net, &ModelInfo::new((6, 5))).unwrap();
    let model = Model::<f32>::load(&path).unwrap();
    assert_eq!(model.net.specs(), net.specs());
    assert_eq!(model.net.input_shape(), [1, 6, 5]);
    assert_eq!(model.net.predict(x.clone()), net.predict(x));

    let bytes = fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let shapes: HashMap<String, Vec<usize>> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    assert_eq!(shapes["layers.0.weight"], [4, 1, 3, 2]);
    assert_eq!(shapes["layers.0.bias"], [4]);
    assert_eq!(shapes["layers.3.weight"], [3, 4, 2, 2]);
    // 6 x 5 padded: 4 x 6 x 6; pooled at stride 1: 4 x 5 x 5; conv 3 2x2 stride 2: 3 x 2 x 2.
    assert_eq!(shapes["layers.7.weight"], [4, 12]);
    assert_eq!(shapes.len(), 6);
    fs::remove_dir_all(&dir).unwrap();
}
