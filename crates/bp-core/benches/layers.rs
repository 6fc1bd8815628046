//! Criterion benchmarks of the layers.
fn main() {}
