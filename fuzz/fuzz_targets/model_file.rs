//! Any bytes given to the model-file reader: it may return an error but must never panic, abort or
//! allocate without bound. Whatever loads must also save to bytes that load again to the same
//! network (same header, layer list and tensors), the header must be the one the file holds, and
//! the network must run.
#![no_main]

use std::path::Path;

use bp_train::model_file::{AnyModel, HEADER_KEY, Model, ModelElement, ModelHeader, to_bytes};
use libfuzzer_sys::fuzz_target;
use ndarray::{ArrayD, IxDyn};
use safetensors::SafeTensors;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    let Ok(model) = AnyModel::from_bytes(data, path) else {
        return;
    };
    // The header the file holds (it parsed, or the model would not have loaded).
    let (_, metadata) = SafeTensors::read_metadata(data).expect("a loaded file's metadata reads");
    let text = &metadata
        .metadata()
        .as_ref()
        .expect("a loaded file has metadata")[HEADER_KEY];
    let header: ModelHeader = serde_json::from_str(text).expect("a loaded file's header parses");
    match model {
        AnyModel::F32(m) => check(&m, &header, path),
        AnyModel::F64(m) => check(&m, &header, path),
    }
});

fn check<A: ModelElement>(m: &Model<A>, header: &ModelHeader, path: &Path) {
    // Loading keeps everything the header says.
    assert_eq!(
        &ModelHeader::new(&m.net, &m.info),
        header,
        "the loaded model's header"
    );
    // Saving and reading back gives the same network, and the same bytes again.
    let bytes = to_bytes(&m.net, &m.info);
    let again = Model::<A>::from_bytes(&bytes, path).expect("a saved model loads");
    assert_eq!(again.net.specs(), m.net.specs());
    assert_eq!(again.info, m.info);
    assert_eq!(
        ModelHeader::new(&again.net, &again.info),
        ModelHeader::new(&m.net, &m.info)
    );
    assert!(
        to_bytes(&again.net, &again.info) == bytes,
        "saving a reloaded model changes its bytes"
    );
    // The network runs on a sample.
    let mut shape = vec![1];
    shape.extend(m.net.input_shape());
    let scores = m
        .net
        .predict(ArrayD::from_elem(IxDyn(&shape), A::from(0.5).unwrap()));
    assert_eq!(scores.dim(), (1, m.net.classes()));
}
