//! The numerical gradient itself and the error figures.

use bp_check::{GradReport, H, compare, numerical_gradient, numerical_param_gradients};
use bp_core::{Affine, Layer, Sequential, Sigmoid};
use ndarray::{ArrayD, array};

#[test]
fn central_difference_of_the_books_function_2() {
    // f(x) = x0² + x1²: the book's numerical_gradient gives (6, 8) at (3, 4), (0, 4) at (0, 2) and
    // (6, 0) at (3, 0).
    for (x, expected) in [
        (array![3.0, 4.0], [6.0, 8.0]),
        (array![0.0, 2.0], [0.0, 4.0]),
        (array![3.0, 0.0], [6.0, 0.0]),
    ] {
        let g = numerical_gradient(|x| x.iter().map(|v| v * v).sum::<f64>(), x.view());
        for (g, e) in g.iter().zip(expected) {
            assert!((g - e).abs() < 1e-7, "{g} vs {e}");
        }
    }
}

#[test]
fn central_difference_error_is_of_order_h_squared() {
    // For exp, (e^(x+h) - e^(x-h)) / 2h = e^x (1 + h²/6 + ...).
    let x = array![0.0f64, 1.0, -2.0].into_dyn();
    let g = numerical_gradient(|x| x.iter().map(|v| v.exp()).sum::<f64>(), x.view());
    for (&g, &x) in g.iter().zip(x.iter()) {
        let rel = (g - x.exp()) / x.exp();
        assert!(
            (rel - H * H / 6.0).abs() < 1e-10,
            "rel error {rel} at x = {x}"
        );
    }
}

#[test]
fn the_input_is_untouched_and_any_layout_works() {
    // f(X) = Σ_ij c_ij X_ij with c_ij = 10 i + j: the gradient is c in X's logical layout.
    let c = array![[0.0f64, 1.0, 2.0], [10.0, 11.0, 12.0]];
    let x = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]].reversed_axes();
    assert!(!x.is_standard_layout());
    let before = x.clone();
    let g = numerical_gradient(|x| (x * &c).sum(), x.view());
    assert_eq!(x, before);
    for (g, c) in g.iter().zip(c.iter()) {
        assert!((g - c).abs() < 1e-9, "{g} vs {c}");
    }
}

#[test]
fn parameter_gradients_are_numbered_in_visiting_order_and_parameters_are_restored() {
    let mut net = Sequential::<f64>::new(vec![
        Box::new(Affine::new(
            array![[0.3, -0.2, 0.1]],
            array![0.05, -0.05, 0.0],
        )),
        Box::new(Sigmoid::new()),
        Box::new(Affine::new(array![[1.0], [2.0], [3.0]], array![0.5])),
    ]);
    let mut before = Vec::new();
    net.visit_params_ref(&mut |_, v| before.push(v.to_owned()));
    let x = array![[0.7], [-1.3]].into_dyn();
    let grads = numerical_param_gradients(
        &mut net,
        |net, f| net.visit_params(f),
        |net| net.forward(x.clone()).sum(),
    );
    let names: Vec<_> = grads.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["W", "b", "W", "b"]);
    let mut after = Vec::new();
    net.visit_params_ref(&mut |_, v| after.push(v.to_owned()));
    assert_eq!(after, before, "parameters must be restored bit for bit");
    for ((_, g), p) in grads.iter().zip(&before) {
        assert_eq!(g.shape(), p.shape());
    }
    // d/db2 Σ out = N = 2 exactly (linear in b2).
    assert!((grads[3].1[[0]] - 2.0).abs() < 1e-9);
    // d/dW2_j = Σ_n sigmoid(x_n W1_j + b1_j), checked against the closed form.
    let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    let w1 = [0.3, -0.2, 0.1];
    let b1 = [0.05, -0.05, 0.0];
    for j in 0..3 {
        let expected: f64 = [0.7, -1.3].iter().map(|x| sigmoid(x * w1[j] + b1[j])).sum();
        assert!((grads[2].1[[j, 0]] - expected).abs() < 1e-9);
    }
}

#[test]
fn each_element_costs_two_loss_evaluations() {
    let mut affine = Affine::<f64>::new(ndarray::Array2::zeros((4, 3)), ndarray::Array1::zeros(3));
    let x = ArrayD::ones(vec![2, 4]);
    let mut evaluations = 0;
    let mut visits = 0;
    numerical_param_gradients(
        &mut affine,
        |layer, f| {
            visits += 1;
            layer.visit_params(f);
        },
        |layer| {
            evaluations += 1;
            layer.forward(x.clone()).sum()
        },
    );
    assert_eq!(evaluations, 2 * (12 + 3));
    assert_eq!(visits, 1 + 3 * (12 + 3));
}

#[test]
fn relative_error_uses_the_floor_and_nan_fails() {
    // Both zero: no error. A gradient of 1e-12 against 0: |a - n| / 1e-8 = 1e-4.
    let zero = array![0.0].into_dyn();
    let tiny = array![1e-12].into_dyn();
    assert_eq!(compare("b", zero.view(), zero.view()).max_rel, 0.0);
    let floored = compare("b", tiny.view(), zero.view());
    assert!((floored.max_rel - 1e-4).abs() < 1e-16);

    let nan = array![1.0, f64::NAN, 0.5].into_dyn();
    let good = array![1.0, 2.0, 0.5].into_dyn();
    let check = compare("W", nan.view(), good.view());
    assert!(check.max_rel.is_nan());
    assert_eq!(check.worst_index, [1]);
    assert!(!check.passed(f64::INFINITY));
    let report = GradReport {
        subject: "nan".to_owned(),
        checks: vec![compare("b", good.view(), good.view()), check],
    };
    assert!(report.max_rel().is_nan());
    assert_eq!(report.worst().map(|c| c.name.as_str()), Some("W"));
    assert!(!report.passed(1.0));
}

#[test]
fn report_prints_the_books_figure_and_the_relative_error() {
    let a = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
    let n = array![[1.0, 2.0], [3.0, 4.0 + 4e-9]].into_dyn();
    let report = GradReport {
        subject: "net".to_owned(),
        checks: vec![compare("W1", a.view(), n.view())],
    };
    // mean |a - n| = 1e-9; max rel = 4e-9 / 8 = 5e-10.
    assert_eq!(report.to_string(), "W1: 1.0e-09 (max rel 5.0e-10)\n");
    assert_eq!(
        format!("{report:#}"),
        "W1: 1.0e-09 (max rel 5.0e-10 at [1, 1]: backprop 4.0e+00, numerical 4.0e+00)\n"
    );
    let wrong = compare("W", array![[1.0, 2.0]].into_dyn().view(), a.view());
    assert_eq!(
        wrong.to_string(),
        "W: wrong shape: backprop [1, 2], numerical [2, 2]"
    );
}
