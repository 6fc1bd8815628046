//! The book's second backpropagation example: two apples at 100, three oranges at 150, 10% tax.
//!
//! Prints `price: 715`, then `dApple: 2.2`, `dApple_num: 110`, `dOrange: 3.3`, `dOrange_num: 165`,
//! `dTax: 650`.
#![allow(clippy::print_stdout)]

use bp_core::{AddLayer, MulLayer};

fn main() {
    let (apple, apple_num, orange, orange_num, tax) = (100.0, 2.0, 150.0, 3.0, 1.1);

    let mut mul_apple_layer = MulLayer::new();
    let mut mul_orange_layer = MulLayer::new();
    let mut add_apple_orange_layer = AddLayer::new();
    let mut mul_tax_layer = MulLayer::new();

    // forward
    let apple_price = mul_apple_layer.forward(apple, apple_num);
    let orange_price = mul_orange_layer.forward(orange, orange_num);
    let all_price = add_apple_orange_layer.forward(apple_price, orange_price);
    let price = mul_tax_layer.forward(all_price, tax);

    // backward
    let dprice = 1.0;
    let (dall_price, dtax) = mul_tax_layer.backward(dprice);
    let (dapple_price, dorange_price) = add_apple_orange_layer.backward(dall_price);
    let (dorange, dorange_num) = mul_orange_layer.backward(dorange_price);
    let (dapple, dapple_num) = mul_apple_layer.backward(dapple_price);

    println!("price: {}", round(price));
    println!("dApple: {}", round(dapple));
    println!("dApple_num: {}", round(dapple_num));
    println!("dOrange: {}", round(dorange));
    println!("dOrange_num: {}", round(dorange_num));
    println!("dTax: {}", round(dtax));
}

/// Rounds away the last-bit noise of binary floating point (`100 * 2 * 1.1` is 220.00000000000003).
fn round(v: f64) -> f64 {
    (v * 1e9).round() / 1e9
}
