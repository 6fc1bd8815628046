//! The element types of IDX files: shared by the reader and its errors, so it lives below both.

use std::fmt;

/// The element type of an IDX file, the third byte of its magic number.
///
/// ```
/// use bp_data::IdxType;
///
/// assert_eq!(IdxType::from_code(0x08), Some(IdxType::U8));
/// assert_eq!(IdxType::F64.code(), 0x0E);
/// assert_eq!(IdxType::I16.size(), 2);
/// assert_eq!(IdxType::from_code(0x0A), None);
/// assert_eq!(IdxType::F32.to_string(), "f32");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdxType {
    /// Unsigned byte, `0x08`.
    U8,
    /// Signed byte, `0x09`.
    I8,
    /// Big-endian 16-bit signed integer, `0x0B`.
    I16,
    /// Big-endian 32-bit signed integer, `0x0C`.
    I32,
    /// Big-endian IEEE 754 single precision, `0x0D`.
    F32,
    /// Big-endian IEEE 754 double precision, `0x0E`.
    F64,
}

impl IdxType {
    /// All six types, in the order of their codes.
    pub const ALL: [IdxType; 6] = [
        IdxType::U8,
        IdxType::I8,
        IdxType::I16,
        IdxType::I32,
        IdxType::F32,
        IdxType::F64,
    ];

    /// The type with the given magic-number byte, if any.
    pub const fn from_code(code: u8) -> Option<IdxType> {
        match code {
            0x08 => Some(IdxType::U8),
            0x09 => Some(IdxType::I8),
            0x0B => Some(IdxType::I16),
            0x0C => Some(IdxType::I32),
            0x0D => Some(IdxType::F32),
            0x0E => Some(IdxType::F64),
            _ => None,
        }
    }

    /// The magic-number byte.
    pub const fn code(self) -> u8 {
        match self {
            IdxType::U8 => 0x08,
            IdxType::I8 => 0x09,
            IdxType::I16 => 0x0B,
            IdxType::I32 => 0x0C,
            IdxType::F32 => 0x0D,
            IdxType::F64 => 0x0E,
        }
    }

    /// The size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            IdxType::U8 | IdxType::I8 => 1,
            IdxType::I16 => 2,
            IdxType::I32 | IdxType::F32 => 4,
            IdxType::F64 => 8,
        }
    }

    /// The Rust name of the element type: `"u8"`, `"i8"`, `"i16"`, `"i32"`, `"f32"` or `"f64"`.
    pub const fn name(self) -> &'static str {
        match self {
            IdxType::U8 => "u8",
            IdxType::I8 => "i8",
            IdxType::I16 => "i16",
            IdxType::I32 => "i32",
            IdxType::F32 => "f32",
            IdxType::F64 => "f64",
        }
    }
}

impl fmt::Display for IdxType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
