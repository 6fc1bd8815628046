//! Comparing backprop and numerical gradients, and the report of a check.

use std::fmt;

use ndarray::{ArrayViewD, NdFloat};

use bp_core::H;

/// The floor of the relative error's denominator, so that two gradients that are both zero compare
/// equal instead of dividing zero by zero: `|a - n| / max(|a| + |n|, 1e-8)`.
///
/// ```
/// use bp_check::compare;
/// use ndarray::array;
///
/// let zero = array![0.0].into_dyn();
/// let tiny = array![1e-12].into_dyn();
/// assert_eq!(compare("b", zero.view(), zero.view()).max_rel, 0.0);
/// // 1e-12 / max(1e-12, 1e-8) = 1e-4
/// assert!((compare("b", tiny.view(), zero.view()).max_rel - 1e-4).abs() < 1e-16);
/// ```
pub const REL_FLOOR: f64 = 1e-8;

/// The rounding resolution of a central difference of a loss computed in `f64` from terms whose
/// absolute values sum to `scale`: `8 ε · scale / 2h = 4 ε · scale / h`, with `ε = 2⁻⁵²` and
/// `h =` [`H`].
///
/// Each of the two loss evaluations is rounded by a few units in the last place of the terms it adds
/// up (`ε · scale` each); their difference, divided by `2h`, is the noise of every numerical gradient
/// element. A backprop gradient that differs from the numerical one by less than that is as right as
/// the numerical gradient can tell, whatever the relative error says. This matters where the true
/// gradient is zero: the bias of an Affine layer followed by batch normalisation has gradient
/// exactly 0 (normalisation removes any shift), backprop gives about `1e-16`, the central difference
/// about `1e-12`, and the relative error `1e-12 / 1e-8 = 1e-4` would call that a failure.
///
/// ```
/// use bp_check::rounding_resolution;
///
/// // A loss of about 2.3 (ln 10): differences below 2e-11 are rounding.
/// let r = rounding_resolution(2.3);
/// assert!((r - 4.0 * f64::EPSILON * 2.3 / 1e-4).abs() < 1e-24);
/// assert!(r > 2.0e-11 && r < 2.1e-11);
/// ```
pub fn rounding_resolution(scale: f64) -> f64 {
    4.0 * f64::EPSILON * scale.abs() / H
}

/// The relative error above which a line says how much of it is beyond the resolution.
const NOTABLE_REL: f64 = 1e-6;

/// A number in the book's (NumPy's) scientific notation with two significant digits: `4.6e-10`,
/// `1.2e-08`, `0.0e+00`.
struct Sci(f64);

impl fmt::Display for Sci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_finite() {
            return write!(f, "{}", self.0);
        }
        let s = format!("{:.1e}", self.0);
        let (mantissa, exponent) = s.split_once('e').expect("`{:e}` writes an exponent");
        let exponent: i32 = exponent.parse().expect("`{:e}` writes an integer exponent");
        let sign = if exponent < 0 { '-' } else { '+' };
        write!(f, "{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

/// The comparison of one gradient computed by backprop with its numerical estimate: one line of a
/// [`GradReport`].
///
/// With `a` the backprop gradient and `n` the numerical one, element by element, in `f64`:
///
/// - `mean_abs = mean |a - n|`, the book's figure (`W1: 4.6e-10`);
/// - `max_rel = max |a - n| / max(|a| + |n|, 1e-8)`, which does not shrink with the gradient's scale
///   and so catches an error in a single element of a large array;
/// - `max_rel_resolved`, the same maximum over only the elements whose difference `|a - n|` exceeds
///   the `resolution` (see [`rounding_resolution`]); elements within it agree as far as the
///   numerical gradient can tell. With a resolution of 0 it is `max_rel`.
///
/// A NaN anywhere makes both maxima NaN, and a backprop gradient of the wrong shape makes every
/// figure NaN, so neither can pass a check.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamCheck {
    /// What was compared: `"dx"`, or a parameter's name such as `"W1"`.
    pub name: String,
    /// The shape of the numerical gradient, which is the shape of the parameter or input.
    pub shape: Vec<usize>,
    /// The shape of the gradient backprop produced; differs from `shape` only when backprop is wrong.
    pub backprop_shape: Vec<usize>,
    /// `mean |a - n|` over all elements (0 for an empty array).
    pub mean_abs: f64,
    /// `max |a - n|` over all elements (0 for an empty array).
    pub max_abs: f64,
    /// `max |a - n| / max(|a| + |n|, 1e-8)` over all elements (0 for an empty array).
    pub max_rel: f64,
    /// The absolute difference at or below which an element is taken to agree (0: none is): the
    /// [`rounding_resolution`] of the loss in layer checks; in network checks, also a share of the
    /// parameter's largest gradient (see [`NETWORK_TOLERANCE`](crate::NETWORK_TOLERANCE)).
    pub resolution: f64,
    /// `max |a - n| / max(|a| + |n|, 1e-8)` over the elements with `|a - n| > resolution` (0 if none).
    pub max_rel_resolved: f64,
    /// The multi-index of the element with the largest relative error (empty if there is none).
    pub worst_index: Vec<usize>,
    /// The backprop gradient at `worst_index`.
    pub worst_backprop: f64,
    /// The numerical gradient at `worst_index`.
    pub worst_numerical: f64,
}

impl ParamCheck {
    /// Whether backprop agrees with the numerical gradient: the shapes match and every element is
    /// within `tolerance` relative error or within the resolution, i.e.
    /// `max_rel_resolved <= tolerance` (false if it is NaN).
    ///
    /// ```
    /// use bp_check::compare;
    /// use ndarray::array;
    ///
    /// let a = array![1.0, 2.0].into_dyn();
    /// let n = array![1.0, 2.000002].into_dyn();
    /// let check = compare("b", a.view(), n.view());
    /// // |2 - 2.000002| / (2 + 2.000002) = 5e-7
    /// assert!(check.passed(1e-6));
    /// assert!(!check.passed(1e-7));
    /// ```
    pub fn passed(&self, tolerance: f64) -> bool {
        !self.shape_mismatch() && self.max_rel_resolved <= tolerance
    }

    /// Whether the backprop gradient had the wrong shape.
    pub fn shape_mismatch(&self) -> bool {
        self.shape != self.backprop_shape
    }
}

/// Prints `W1: 4.6e-10 (max rel 1.2e-08)`: the name, the mean absolute error and the maximum relative
/// error. When that is above 1e-6 but the worst elements are within the resolution, it says what is
/// left beyond it: `b1: 1.1e-13 (max rel 5.6e-05; 0.0e+00 beyond resolution 2.0e-10)`.
///
/// The alternate form (`{:#}`) adds where the worst element is and both of its values:
/// `W: 5.0e-01 (max rel 1.0e+00 at [0, 1]: backprop 5.0e-01, numerical -5.0e-01)`. A gradient of the
/// wrong shape prints `W: wrong shape: backprop [3, 2], numerical [2, 3]`.
///
/// ```
/// use bp_check::{compare, compare_with_resolution};
/// use ndarray::array;
///
/// let a = array![[0.5, 0.5]].into_dyn();
/// let n = array![[0.5, -0.5]].into_dyn();
/// let check = compare("W", a.view(), n.view());
/// assert_eq!(check.to_string(), "W: 5.0e-01 (max rel 1.0e+00)");
/// assert_eq!(
///     format!("{check:#}"),
///     "W: 5.0e-01 (max rel 1.0e+00 at [0, 1]: backprop 5.0e-01, numerical -5.0e-01)"
/// );
///
/// let zero = array![0.0, 1e-16].into_dyn();
/// let rounding = array![4e-12, 0.0].into_dyn();
/// let check = compare_with_resolution("b1", zero.view(), rounding.view(), 2e-11);
/// assert_eq!(check.to_string(), "b1: 2.0e-12 (max rel 4.0e-04; 0.0e+00 beyond resolution 2.0e-11)");
/// ```
impl fmt::Display for ParamCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shape_mismatch() {
            return write!(
                f,
                "{}: wrong shape: backprop {:?}, numerical {:?}",
                self.name, self.backprop_shape, self.shape
            );
        }
        write!(
            f,
            "{}: {} (max rel {}",
            self.name,
            Sci(self.mean_abs),
            Sci(self.max_rel)
        )?;
        if f.alternate() && !self.worst_index.is_empty() {
            write!(
                f,
                " at {:?}: backprop {}, numerical {}",
                self.worst_index,
                Sci(self.worst_backprop),
                Sci(self.worst_numerical)
            )?;
        }
        if self.max_rel_resolved < self.max_rel && self.max_rel > NOTABLE_REL {
            write!(
                f,
                "; {} beyond resolution {}",
                Sci(self.max_rel_resolved),
                Sci(self.resolution)
            )?;
        }
        write!(f, ")")
    }
}

/// Compares a backprop gradient `backprop` with its numerical estimate `numerical`, element by
/// element in row-major order, in `f64`; see [`ParamCheck`] for the figures. No difference is
/// treated as rounding (the resolution is 0): see [`compare_with_resolution`].
///
/// Arrays of different shapes are not compared: the result records both shapes, has NaN figures and
/// fails every tolerance.
///
/// # Example
///
/// ```
/// use bp_check::compare;
/// use ndarray::array;
///
/// let a = array![1.0, -2.0, 0.0].into_dyn();
/// let n = array![1.0, -2.0001, 0.0].into_dyn();
/// let check = compare("b", a.view(), n.view());
/// // mean |a - n| = 1e-4 / 3; max rel = 1e-4 / 4.0001 at index 1; 0 vs 0 counts as equal.
/// assert!((check.mean_abs - 1e-4 / 3.0).abs() < 1e-12);
/// assert!((check.max_rel - 1e-4 / 4.0001).abs() < 1e-12);
/// assert_eq!(check.worst_index, [1]);
///
/// let wrong = compare("W", array![[1.0, 2.0]].into_dyn().view(), array![[1.0], [2.0]].into_dyn().view());
/// assert!(wrong.shape_mismatch() && !wrong.passed(1.0));
/// ```
pub fn compare<A: NdFloat>(
    name: &str,
    backprop: ArrayViewD<'_, A>,
    numerical: ArrayViewD<'_, A>,
) -> ParamCheck {
    compare_with_resolution(name, backprop, numerical, 0.0)
}

/// As [`compare`], taking elements whose absolute difference is at most `resolution` to agree: they
/// count in `mean_abs`, `max_abs` and `max_rel`, but not in `max_rel_resolved`, which decides
/// [`ParamCheck::passed`]. The checks in this crate pass the [`rounding_resolution`] of their loss.
///
/// # Example: the bias before a batch normalisation
///
/// ```
/// use bp_check::compare_with_resolution;
/// use ndarray::array;
///
/// // The true gradient is 0; backprop and the central difference are both at rounding level.
/// let a = array![2.8e-17, -1.4e-16].into_dyn();
/// let n = array![5.6e-13, 0.0].into_dyn();
/// let check = compare_with_resolution("b1", a.view(), n.view(), 2e-11);
/// assert!(check.max_rel > 1e-5); // 5.6e-13 / 1e-8
/// assert_eq!(check.max_rel_resolved, 0.0);
/// assert!(check.passed(1e-6));
/// ```
pub fn compare_with_resolution<A: NdFloat>(
    name: &str,
    backprop: ArrayViewD<'_, A>,
    numerical: ArrayViewD<'_, A>,
    resolution: f64,
) -> ParamCheck {
    let mut check = ParamCheck {
        name: name.to_owned(),
        shape: numerical.shape().to_vec(),
        backprop_shape: backprop.shape().to_vec(),
        mean_abs: 0.0,
        max_abs: 0.0,
        max_rel: 0.0,
        resolution,
        max_rel_resolved: 0.0,
        worst_index: Vec::new(),
        worst_backprop: 0.0,
        worst_numerical: 0.0,
    };
    if check.shape_mismatch() {
        check.mean_abs = f64::NAN;
        check.max_abs = f64::NAN;
        check.max_rel = f64::NAN;
        check.max_rel_resolved = f64::NAN;
        return check;
    }
    // The larger of two figures where NaN is larger than anything.
    let nan_max = |m: f64, v: f64| {
        if m.is_nan() || v.is_nan() {
            f64::NAN
        } else {
            m.max(v)
        }
    };
    let to_f64 = |v: A| v.to_f64().unwrap_or(f64::NAN);
    let mut sum_abs = 0.0;
    let mut worst: Option<(usize, f64, f64, f64)> = None;
    for (i, (&a, &n)) in backprop.iter().zip(numerical.iter()).enumerate() {
        let (a, n) = (to_f64(a), to_f64(n));
        let abs = (a - n).abs();
        sum_abs += abs;
        check.max_abs = nan_max(check.max_abs, abs);
        let rel = abs / (a.abs() + n.abs()).max(REL_FLOOR);
        // NaN differences are never within the resolution.
        if abs.is_nan() || abs > resolution {
            check.max_rel_resolved = nan_max(check.max_rel_resolved, rel);
        }
        // A NaN relative error is the worst there is and stays the worst.
        let is_worse = match worst {
            None => true,
            Some((_, w, _, _)) => !w.is_nan() && (rel.is_nan() || rel > w),
        };
        if is_worse {
            worst = Some((i, rel, a, n));
        }
    }
    if let Some((i, rel, a, n)) = worst {
        check.mean_abs = sum_abs / numerical.len() as f64;
        check.max_rel = rel;
        check.worst_index = ndarray::indices(ndarray::IxDyn(&check.shape))
            .into_iter()
            .nth(i)
            .map_or_else(Vec::new, |index| ndarray::Dimension::slice(&index).to_vec());
        check.worst_backprop = a;
        check.worst_numerical = n;
    }
    check
}

/// The result of a gradient check: one [`ParamCheck`] per compared gradient, in order.
///
/// # Example
///
/// ```
/// use bp_check::{GradReport, compare};
/// use ndarray::array;
///
/// let a = array![0.25, -0.5].into_dyn();
/// let report = GradReport {
///     subject: "example".to_owned(),
///     checks: vec![compare("b1", a.view(), a.view())],
/// };
/// assert!(report.passed(1e-6));
/// assert_eq!(report.max_rel(), 0.0);
/// assert_eq!(report.to_string(), "b1: 0.0e+00 (max rel 0.0e+00)\n");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GradReport {
    /// What was checked, such as `"Affine"` or `"TwoLayerNet"`.
    pub subject: String,
    /// One comparison per gradient: `"dx"` first for layers, then the parameters in visiting order.
    pub checks: Vec<ParamCheck>,
}

impl GradReport {
    /// Whether every gradient passed ([`ParamCheck::passed`]).
    pub fn passed(&self, tolerance: f64) -> bool {
        self.checks.iter().all(|c| c.passed(tolerance))
    }

    /// The checks that did not pass at `tolerance`.
    ///
    /// ```
    /// use bp_check::{GradReport, compare};
    /// use ndarray::array;
    ///
    /// let good = array![1.0].into_dyn();
    /// let bad = array![-1.0].into_dyn();
    /// let report = GradReport {
    ///     subject: "example".to_owned(),
    ///     checks: vec![compare("W", good.view(), good.view()), compare("b", bad.view(), good.view())],
    /// };
    /// let failures: Vec<_> = report.failures(1e-6).map(|c| c.name.as_str()).collect();
    /// assert_eq!(failures, ["b"]);
    /// ```
    pub fn failures(&self, tolerance: f64) -> impl Iterator<Item = &ParamCheck> {
        self.checks.iter().filter(move |c| !c.passed(tolerance))
    }

    /// The largest `max_rel` over all checks (NaN if any is NaN, 0 if there are none).
    ///
    /// ```
    /// use bp_check::{GradReport, compare, compare_with_resolution};
    /// use ndarray::array;
    ///
    /// let a = array![1.0, 1e-12].into_dyn();
    /// let n = array![1.000002, 0.0].into_dyn();
    /// let report = GradReport {
    ///     subject: "example".to_owned(),
    ///     checks: vec![
    ///         compare("W", a.view(), n.view()),
    ///         compare_with_resolution("b", a.view(), n.view(), 1e-10),
    ///     ],
    /// };
    /// // W: max(2e-6 / 2.000002, 1e-12 / 1e-8) = 1e-4 (the tiny element); b: the same, but the
    /// // tiny element's difference is within the resolution, leaving 2e-6 / 2.000002.
    /// assert!((report.max_rel() - 1e-4).abs() < 1e-12);
    /// assert_eq!(report.worst().map(|c| c.name.as_str()), Some("W"));
    /// assert!((report.checks[1].max_rel_resolved - 2e-6 / 2.000002).abs() < 1e-12);
    /// assert!((report.max_rel_resolved() - 1e-4).abs() < 1e-12);
    /// assert!(!report.passed(1e-5));
    /// assert!(report.checks[1].passed(1e-5));
    /// ```
    pub fn max_rel(&self) -> f64 {
        self.checks.iter().fold(0.0, |m: f64, c| {
            if m.is_nan() || c.max_rel.is_nan() {
                f64::NAN
            } else {
                m.max(c.max_rel)
            }
        })
    }

    /// The largest `max_rel_resolved` over all checks, the figure [`passed`](GradReport::passed)
    /// compares with the tolerance (NaN if any is NaN, 0 if there are none).
    pub fn max_rel_resolved(&self) -> f64 {
        self.checks.iter().fold(0.0, |m: f64, c| {
            if m.is_nan() || c.max_rel_resolved.is_nan() {
                f64::NAN
            } else {
                m.max(c.max_rel_resolved)
            }
        })
    }

    /// The check with the largest relative error (NaN counts as largest), if there are any.
    pub fn worst(&self) -> Option<&ParamCheck> {
        self.checks.iter().reduce(|w, c| {
            if !w.max_rel.is_nan() && (c.max_rel.is_nan() || c.max_rel > w.max_rel) {
                c
            } else {
                w
            }
        })
    }
}

/// One line per check, as [`ParamCheck`] prints it (`W1: 4.6e-10 (max rel 1.2e-08)`), each ending in a
/// newline; the alternate form (`{:#}`) prints each line in its alternate form.
impl fmt::Display for GradReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            if f.alternate() {
                writeln!(f, "{check:#}")?;
            } else {
                writeln!(f, "{check}")?;
            }
        }
        Ok(())
    }
}
