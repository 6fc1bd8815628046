//! The element types a network trains in and a model file holds.

use serde::{Deserialize, Serialize};

/// The element type to train in: `f32` for speed, `f64` for checks and parity with the book's
/// NumPy float64. Its serde form is `"f32"` or `"f64"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// `f32`: faster, and accurate enough for training.
    #[default]
    F32,
    /// `f64`: the book's NumPy float64.
    F64,
}

impl Dtype {
    /// Both element types, in the order the command line lists them.
    pub const ALL: [Dtype; 2] = [Dtype::F32, Dtype::F64];

    /// The lower-case name, as on the command line.
    ///
    /// ```
    /// assert_eq!(bp_train::Dtype::F64.name(), "f64");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }

    /// The bytes of one element.
    ///
    /// ```
    /// assert_eq!(bp_train::Dtype::F32.size(), 4);
    /// ```
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => size_of::<f32>(),
            Dtype::F64 => size_of::<f64>(),
        }
    }
}
