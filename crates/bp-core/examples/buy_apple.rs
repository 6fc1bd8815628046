//! The book's first backpropagation example: two apples at 100 each, with 10% tax.
//!
//! Prints `price: 220`, then `dApple: 2.2`, `dApple_num: 110`, `dTax: 200`.
#![allow(clippy::print_stdout)]

use bp_core::MulLayer;

fn main() {
    let (apple, apple_num, tax) = (100.0, 2.0, 1.1);
    let mut mul_apple_layer = MulLayer::new();
    let mut mul_tax_layer = MulLayer::new();

    // forward
    let apple_price = mul_apple_layer.forward(apple, apple_num);
    let price = mul_tax_layer.forward(apple_price, tax);

    // backward
    let dprice = 1.0;
    let (dapple_price, dtax) = mul_tax_layer.backward(dprice);
    let (dapple, dapple_num) = mul_apple_layer.backward(dapple_price);

    println!("price: {}", round(price));
    println!("dApple: {}", round(dapple));
    println!("dApple_num: {}", round(dapple_num));
    println!("dTax: {}", round(dtax));
}

/// Rounds away the last-bit noise of `100 * 2 * 1.1` (220.00000000000003 in binary floating point).
fn round(v: f64) -> f64 {
    (v * 1e9).round() / 1e9
}
