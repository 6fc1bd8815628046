//! Weight initialisation.

use ndarray::{Array, Dimension, NdFloat, ShapeBuilder};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// How to draw the initial weights of a layer with `fan_in` inputs: zero-mean normal with the
/// standard deviation given by [`Init::std_dev`].
///
/// ```
/// use bp_core::Init;
///
/// assert_eq!(Init::Std(0.01).std_dev(784), 0.01); // the book's `0.01 * randn`
/// assert_eq!(Init::He.std_dev(50), 0.2);          // sqrt(2 / 50)
/// assert_eq!(Init::Xavier.std_dev(100), 0.1);     // sqrt(1 / 100)
/// ```
///
/// Its serde form is `{"std":0.01}`, `"he"` or `"xavier"`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// A fixed standard deviation, the book's `weight_init_std` (0.01 by default there).
    Std(f64),
    /// He initialisation, for Relu: `sqrt(2 / fan_in)`.
    He,
    /// Xavier initialisation, for Sigmoid: `sqrt(1 / fan_in)`.
    Xavier,
}

impl Init {
    /// The standard deviation for a layer with `fan_in` inputs.
    pub fn std_dev(self, fan_in: usize) -> f64 {
        match self {
            Init::Std(s) => s,
            Init::He => (2.0 / fan_in as f64).sqrt(),
            Init::Xavier => (1.0 / fan_in as f64).sqrt(),
        }
    }
}

/// An array of the given shape filled with `std * N(0, 1)` samples drawn from `rng` (NumPy's
/// `std * np.random.randn(*shape)`). Samples are drawn in `f64` and rounded to `A`, so `f32` and `f64`
/// arrays from the same seed agree to `f32` precision.
///
/// ```
/// use bp_core::randn;
/// use rand::SeedableRng;
/// use rand_xoshiro::Xoshiro256PlusPlus;
///
/// let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
/// let w = randn::<f64, _, _>((1000, 100), 0.5, &mut rng);
/// let mean = w.mean().unwrap();
/// let std = w.std(0.0);
/// assert!(mean.abs() < 0.01, "{mean}");
/// assert!((std - 0.5).abs() < 0.01, "{std}");
/// ```
pub fn randn<A, Sh, R>(shape: Sh, std: f64, rng: &mut R) -> Array<A, Sh::Dim>
where
    A: NdFloat,
    Sh: ShapeBuilder,
    Sh::Dim: Dimension,
    R: Rng + ?Sized,
{
    Array::from_shape_simple_fn(shape, || {
        let z: f64 = StandardNormal.sample(rng);
        cast(std * z)
    })
}

/// Converts an `f64` constant to the element type.
pub(crate) fn cast<A: NdFloat>(v: f64) -> A {
    A::from(v).expect("every f64 converts to a float type")
}
