//! Model files: round trips, every malformed file, and atomic writes.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use bp_core::Init;
use bp_loss::Targets;
use bp_train::model_file::{
    AnyModel, Model, ModelError, ModelInfo, NetRef, TrainingRecord, save_model, to_bytes,
    write_atomic,
};
use bp_train::{
    Activation, Dtype, MultiLayerConfig, MultiLayerNet, Network, Optimizer, Sgd, TrainedNet,
    TwoLayerNet,
};
use ndarray::{Array2, ArrayD, NdFloat};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use safetensors::SafeTensors;

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
fn trained<A, N>(mut net: N) -> N
where
    A: NdFloat,
    N: Network<A>,
{
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
        ..ModelInfo::new(
            MultiLayerConfig {
                init: Init::Std(0.5),
                ..MultiLayerConfig::new(6, vec![8], 4)
            },
            (3, 2),
        )
    }
}

fn two_layer_net() -> TwoLayerNet<f32> {
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
    save_model(&path, (&net).into(), &info).unwrap();
    let model = Model::<f32>::load(&path).unwrap();
    assert_eq!(model.info, info);
    let TrainedNet::TwoLayer(back) = &model.net else {
        panic!("a TwoLayerNet comes back as one");
    };
    assert_eq!(back.affine1().w(), net.affine1().w());
    assert_eq!(back.affine2().b(), net.affine2().b());
    let (x, _) = batch();
    let x = x.mapv(|v| v as f32);
    assert_eq!(model.net.network().predict(x.clone()), net.predict(x));
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
        net.batch_norms()
            .all(|bn| bn.running_var().iter().all(|&v| v > 0.0))
    );
    let info = ModelInfo::new(rich_config(), (2, 3));
    save_model(&path, (&net).into(), &info).unwrap();
    let AnyModel::F64(model) = AnyModel::load(&path).unwrap() else {
        panic!("an f64 model comes back as one");
    };
    assert_eq!(model.info, info);
    let TrainedNet::MultiLayer(back) = &model.net else {
        panic!("a MultiLayerNet comes back as one");
    };
    for (a, b) in back.batch_norms().zip(net.batch_norms()) {
        assert_eq!(a.gamma(), b.gamma());
        assert_eq!(a.running_mean(), b.running_mean());
        assert_eq!(a.running_var(), b.running_var());
    }
    let (x, _) = batch();
    assert_eq!(model.net.network().predict(x.clone()), net.predict(x));

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
    assert_eq!(first, net.affines().next().unwrap().w()[[1, 0]]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_f32_file_is_refused_as_f64() {
    let bytes = to_bytes((&two_layer_net()).into(), &two_layer_info());
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
    let bytes = to_bytes((&two_layer_net()).into(), &two_layer_info());
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
    let good = to_bytes((&two_layer_net()).into(), &two_layer_info());
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
    for key in [
        "format_version",
        "architecture",
        "sizes",
        "activation",
        "dtype",
        "input_shape",
        "classes",
        "batch_norm",
        "batch_norm_eps",
        "dropout",
        "init",
        "weight_decay",
        "layers",
    ] {
        let bytes = edited(|m, _| {
            m.remove(key);
        });
        missing_metadata(&bytes, key);
    }
}

#[test]
fn every_bad_metadata_value_is_refused() {
    let cases: &[(&str, &str, &str)] = &[
        ("format_version", "2", "reads version 1"),
        ("dtype", "f16", "not `f32` or `f64`"),
        ("sizes", "784,50,10", "not JSON"),
        ("sizes", "[6,0,4]", "positive integers"),
        ("sizes", "[6]", "at least 2"),
        ("sizes", "[6,-8,4]", "positive integers"),
        ("sizes", "{\"a\":1}", "positive integers"),
        ("activation", "tanh", "not `relu` or `sigmoid`"),
        ("input_shape", "[2,2]", "do not make the input size 6"),
        ("input_shape", "[6]", "a JSON list of 2 positive integers"),
        ("classes", "5", "the last of the sizes is 4"),
        ("classes", "four", "not a non-negative integer"),
        ("batch_norm", "yes", "not `true` or `false`"),
        ("batch_norm_eps", "1e-5", "ε = 1e-6"),
        ("dropout", "1.5", "[0, 1)"),
        ("dropout", "\"half\"", "not a number or null"),
        ("init", "uniform", "`std <positive number>`"),
        ("init", "std -1", "`std <positive number>`"),
        ("weight_decay", "-0.1", "negative"),
        ("weight_decay", "NaN", "not a finite number"),
        (
            "architecture",
            "ResNet",
            "not `TwoLayerNet` or `MultiLayerNet`",
        ),
        ("layers", "[\"Linear()\"]", "the other keys describe"),
        (
            "training",
            "{\"epoch\":1}",
            "`iter` is not a non-negative integer",
        ),
        (
            "training",
            "{\"epoch\":1,\"iter\":1,\"loss\":0.5,\"train_acc\":0.5,\"test_acc\":1.5}",
            "`test_acc` is not a number in [0, 1]",
        ),
    ];
    for (key, value, reason) in cases {
        bad_metadata(&edited(set(key, value)), key, reason);
    }
    // A TwoLayerNet cannot have batch normalisation (checked before the tensors).
    bad_metadata(
        &edited(set("batch_norm", "true")),
        "architecture",
        "a TwoLayerNet has",
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
    assert!(err.to_string().contains("has no place for"), "{err}");

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
    // A metadata dtype that disagrees with every tensor.
    assert!(matches!(
        load_err(&edited(set("dtype", "f64"))),
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

    // Changing the sizes without the tensors: the layer description no longer matches either.
    bad_metadata(
        &edited(set("sizes", "[6,9,4]")),
        "layers",
        "the other keys describe",
    );
    let resized = edited(|m, _| {
        m.insert("sizes".into(), "[6,9,4]".into());
        m.insert(
            "layers".into(),
            r#"["Linear(in_features=6, out_features=9, bias=True)","ReLU()","Linear(in_features=9, out_features=4, bias=True)"]"#.into(),
        );
    });
    assert!(matches!(load_err(&resized), ModelError::Shape { .. }));
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
    save_model(&path, (&old_net).into(), &two_layer_info()).unwrap();
    let old_bytes = fs::read(&path).unwrap();

    // A new model whose write dies after half its bytes, as a full disk or a killed run would.
    let new_net = trained(TwoLayerNet::<f32>::new(
        6,
        8,
        4,
        0.5,
        &mut Xoshiro256PlusPlus::seed_from_u64(9),
    ));
    let new_bytes = to_bytes((&new_net).into(), &two_layer_info());
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
    assert_eq!(model.net.network().predict(x.clone()), old_net.predict(x));

    // A save that cannot even be renamed into place (the target is a directory) fails cleanly too.
    let blocked = dir.join("blocked.safetensors");
    fs::create_dir(&blocked).unwrap();
    let err = save_model(&blocked, (&new_net).into(), &two_layer_info()).unwrap_err();
    assert!(matches!(err, ModelError::Write { .. }));
    assert!(err.to_string().contains("blocked.safetensors"));
    assert_eq!(listing(&dir), ["blocked.safetensors", "model.safetensors"]);

    // And a successful save replaces the file whole.
    save_model(&path, NetRef::TwoLayer(&new_net), &two_layer_info()).unwrap();
    assert_eq!(fs::read(&path).unwrap(), new_bytes);
    assert_eq!(listing(&dir), ["blocked.safetensors", "model.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_save_into_a_missing_directory_is_a_write_error() {
    let err = save_model(
        "no/such/dir/model.safetensors",
        (&two_layer_net()).into(),
        &two_layer_info(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Write { .. }));
    assert_eq!(
        err.to_string(),
        "cannot write the model file no/such/dir/model.safetensors"
    );
}
