//! Numerical versus backprop gradient checks.
