//! Scalar nodes of a computational graph: the book's `MulLayer` and `AddLayer`.
//!
//! They take two inputs and return two gradients, so they are not [`Layer`](crate::Layer)s.
//!
//! # The book's shopping example
//!
//! Two apples at 100 each, and 10% tax:
//!
//! ```
//! use bp_core::MulLayer;
//!
//! let (apple, apple_num, tax) = (100.0, 2.0, 1.1);
//! let mut mul_apple = MulLayer::new();
//! let mut mul_tax = MulLayer::new();
//!
//! let apple_price = mul_apple.forward(apple, apple_num);
//! let price = mul_tax.forward(apple_price, tax);
//! assert!((price - 220.0).abs() < 1e-9);
//!
//! let (dapple_price, dtax) = mul_tax.backward(1.0);
//! let (dapple, dapple_num) = mul_apple.backward(dapple_price);
//! assert!((dapple - 2.2).abs() < 1e-9);
//! assert!((dapple_num - 110.0).abs() < 1e-9);
//! assert!((dtax - 200.0).abs() < 1e-9);
//! ```
//!
//! Two apples at 100 and three oranges at 150, and 10% tax:
//!
//! ```
//! use bp_core::{AddLayer, MulLayer};
//!
//! let (apple, apple_num, orange, orange_num, tax) = (100.0, 2.0, 150.0, 3.0, 1.1);
//! let mut mul_apple = MulLayer::new();
//! let mut mul_orange = MulLayer::new();
//! let mut add_apple_orange = AddLayer::new();
//! let mut mul_tax = MulLayer::new();
//!
//! let apple_price = mul_apple.forward(apple, apple_num);
//! let orange_price = mul_orange.forward(orange, orange_num);
//! let all_price = add_apple_orange.forward(apple_price, orange_price);
//! let price = mul_tax.forward(all_price, tax);
//! assert!((price - 715.0).abs() < 1e-9);
//!
//! let (dall_price, dtax) = mul_tax.backward(1.0);
//! let (dapple_price, dorange_price) = add_apple_orange.backward(dall_price);
//! let (dorange, dorange_num) = mul_orange.backward(dorange_price);
//! let (dapple, dapple_num) = mul_apple.backward(dapple_price);
//! assert!((dapple_num - 110.0).abs() < 1e-9);
//! assert!((dapple - 2.2).abs() < 1e-9);
//! assert!((dorange_num - 165.0).abs() < 1e-9);
//! assert!((dorange - 3.3).abs() < 1e-9);
//! assert!((dtax - 650.0).abs() < 1e-9);
//! ```

/// Multiplication node: `out = x · y`; backward: `dx = dout · y`, `dy = dout · x`.
///
/// ```
/// use bp_core::MulLayer;
///
/// let mut mul = MulLayer::new();
/// assert_eq!(mul.forward(3.0, 4.0), 12.0);
/// assert_eq!(mul.backward(2.0), (8.0, 6.0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MulLayer {
    x: f64,
    y: f64,
}

impl MulLayer {
    /// A multiplication node.
    pub fn new() -> Self {
        MulLayer::default()
    }

    /// `x · y`, remembering both inputs for the backward pass.
    pub fn forward(&mut self, x: f64, y: f64) -> f64 {
        self.x = x;
        self.y = y;
        x * y
    }

    /// `(dout · y, dout · x)`: the input gradients of the last forward.
    pub fn backward(&self, dout: f64) -> (f64, f64) {
        (dout * self.y, dout * self.x)
    }
}

/// Addition node: `out = x + y`; backward passes `dout` to both inputs unchanged.
///
/// ```
/// use bp_core::AddLayer;
///
/// let mut add = AddLayer::new();
/// assert_eq!(add.forward(3.0, 4.0), 7.0);
/// assert_eq!(add.backward(2.0), (2.0, 2.0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AddLayer;

impl AddLayer {
    /// An addition node.
    pub fn new() -> Self {
        AddLayer
    }

    /// `x + y`.
    pub fn forward(&mut self, x: f64, y: f64) -> f64 {
        x + y
    }

    /// `(dout, dout)`: addition passes the gradient through to both inputs.
    pub fn backward(&self, dout: f64) -> (f64, f64) {
        (dout, dout)
    }
}
