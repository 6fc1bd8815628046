//! Floats written briefly, for messages and descriptions that echo a user's number.

use std::fmt;

/// A float written briefly: as `{}` writes it (the shortest digits that read back as the same
/// value) when that is short, in scientific notation otherwise. Rust's `{}` never uses an exponent,
/// so `1e300` would print as a 301-digit integer and `1e-300` as 300 zeros and a one.
///
/// What it writes reads back as the same value with [`str::parse`].
///
/// ```
/// use bp_core::Compact;
///
/// assert_eq!(Compact(0.1).to_string(), "0.1");
/// assert_eq!(Compact(1000.0).to_string(), "1000");
/// assert_eq!(Compact(1e300).to_string(), "1e300");
/// assert_eq!(Compact(-2.5e-10).to_string(), "-2.5e-10");
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Compact(pub f64);

impl Compact {
    /// Magnitudes written without an exponent: from 1e-4 (`0.0001`) up to, not including, 1e16
    /// (16 digits at most before the point).
    const PLAIN: std::ops::Range<f64> = 1e-4..1e16;
}

impl fmt::Display for Compact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v == 0.0 || !v.is_finite() || Self::PLAIN.contains(&v.abs()) {
            write!(f, "{v}")
        } else {
            write!(f, "{v:e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_read_back_as_the_same_value() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.0, "1"),
            (0.1, "0.1"),
            (0.001, "0.001"),
            (1e-4, "0.0001"),
            (9.9e-5, "9.9e-5"),
            (1e-300, "1e-300"),
            (5e-324, "5e-324"),
            (1e15, "1000000000000000"),
            (1e16, "1e16"),
            (1e30, "1e30"),
            (1e300, "1e300"),
            (f64::MAX, "1.7976931348623157e308"),
            (-1e300, "-1e300"),
            (-0.25, "-0.25"),
            (123.456, "123.456"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "NaN"),
        ];
        for &(v, text) in cases {
            assert_eq!(Compact(v).to_string(), text, "{v:e}");
        }
        // Every form reads back exactly, and none is longer than 24 characters.
        let mut v = 1.234_567_890_123_456_7e-300_f64;
        while v.is_finite() {
            let text = Compact(v).to_string();
            assert_eq!(text.parse::<f64>().unwrap(), v, "{text}");
            assert!(text.len() <= 24, "{text}");
            v *= 7.77;
        }
    }
}
