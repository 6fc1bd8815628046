//! Any bytes given to `bp-train predict`'s image decoder: it may return an error but must never
//! panic or abort. Whatever decodes must prepare, both ways (`--fit scale` and `--fit mnist`), to a
//! 28 x 28 input of finite values in [0, 1].
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

// The module lives in the bp-train binary, not its library: included as it is.
#[allow(dead_code)]
#[path = "../../crates/bp-train/src/bin/bp-train/image.rs"]
mod image;

use crate::image::{Fit, decode_image, prepare_with};

fuzz_target!(|data: &[u8]| {
    let Ok(gray) = decode_image(data, Path::new("fuzz.png")) else {
        return;
    };
    for fit in [Fit::Scale, Fit::Mnist] {
        let prepared = prepare_with(&gray, (28, 28), fit);
        assert_eq!(prepared.pixels.len(), 28 * 28);
        assert!(
            prepared
                .pixels
                .iter()
                .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
            "{fit:?} gives a pixel outside [0, 1]: {:?}",
            prepared.pixels
        );
    }
});
