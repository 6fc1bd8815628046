//! Property-style checks over random shapes and seeds: the layers agree with naive loops, inference
//! agrees with training forward, and everything works through `Box<dyn Layer>`.

use bp_core::{Affine, Init, Layer, Relu, Sequential, Sigmoid, randn};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const CASES: u64 = 200;

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + y.abs()))
}

/// Naive triple loops for out = x·W + b, dx = dout·Wᵀ, dW = xᵀ·dout, db = Σ dout.
fn naive_affine(
    x: &Array2<f64>,
    w: &Array2<f64>,
    b: &Array1<f64>,
    dout: &Array2<f64>,
) -> (Array2<f64>, Array2<f64>, Array2<f64>, Array1<f64>) {
    let (n, d) = x.dim();
    let m = w.ncols();
    let out = Array2::from_shape_fn((n, m), |(i, j)| {
        b[j] + (0..d).map(|k| x[[i, k]] * w[[k, j]]).sum::<f64>()
    });
    let dx = Array2::from_shape_fn((n, d), |(i, k)| {
        (0..m).map(|j| dout[[i, j]] * w[[k, j]]).sum()
    });
    let dw = Array2::from_shape_fn((d, m), |(k, j)| {
        (0..n).map(|i| x[[i, k]] * dout[[i, j]]).sum()
    });
    let db = Array1::from_shape_fn(m, |j| (0..n).map(|i| dout[[i, j]]).sum());
    (out, dx, dw, db)
}

#[test]
fn affine_matches_naive_loops_for_random_shapes_and_ranks() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    for _ in 0..CASES {
        let n = rng.random_range(1..6);
        // Split the features over one to three trailing axes.
        let dims: Vec<usize> = (0..rng.random_range(1..4))
            .map(|_| rng.random_range(1..4))
            .collect();
        let d: usize = dims.iter().product();
        let m = rng.random_range(1..7);
        let mut shape = vec![n];
        shape.extend(&dims);

        let w: Array2<f64> = randn((d, m), 1.0, &mut rng);
        let b: Array1<f64> = randn(m, 1.0, &mut rng);
        let x: ArrayD<f64> = randn(IxDyn(&shape), 1.0, &mut rng);
        let dout: Array2<f64> = randn((n, m), 1.0, &mut rng);
        let x2 = x.clone().into_shape_with_order((n, d)).unwrap();
        let (out, dx, dw, db) = naive_affine(&x2, &w, &b, &dout);

        let mut layer: Box<dyn Layer<f64>> = Box::new(Affine::new(w, b));
        assert!(close(&layer.predict(x.clone()), &out.clone().into_dyn()));
        assert!(close(&layer.forward(x), &out.into_dyn()));
        let got_dx = layer.backward(dout.into_dyn());
        assert_eq!(got_dx.shape(), shape.as_slice());
        assert!(close(
            &got_dx,
            &dx.into_shape_with_order(IxDyn(&shape)).unwrap()
        ));
        let mut grads = Vec::new();
        layer.visit_params(&mut |p| grads.push(p.grad.to_owned()));
        assert!(close(&grads[0], &dw.into_dyn()));
        assert!(close(&grads[1], &db.into_dyn()));
    }
}

#[test]
fn activations_keep_shapes_and_predict_equals_forward() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    for _ in 0..CASES {
        let shape: Vec<usize> = (0..rng.random_range(1..5))
            .map(|_| rng.random_range(1..5))
            .collect();
        let x: ArrayD<f64> = randn(IxDyn(&shape), 2.0, &mut rng);
        let dout: ArrayD<f64> = randn(IxDyn(&shape), 1.0, &mut rng);
        let layers: [Box<dyn Layer<f64>>; 2] = [Box::new(Relu::new()), Box::new(Sigmoid::new())];
        for mut layer in layers {
            let predicted = layer.predict(x.clone());
            let out = layer.forward(x.clone());
            assert_eq!(predicted, out, "{}", layer.name());
            let dx = layer.backward(dout.clone());
            assert_eq!(dx.shape(), shape.as_slice(), "{}", layer.name());
            // Both derivatives are in [0, 1]: |dx| <= |dout|, with equality for Relu where x > 0.
            for ((d, g), xv) in dx.iter().zip(&dout).zip(&x) {
                assert!(d.abs() <= g.abs(), "{}", layer.name());
                if layer.name() == "Relu" {
                    assert_eq!(*d, if *xv > 0.0 { *g } else { 0.0 });
                }
            }
        }
    }
}

#[test]
fn sequential_equals_its_layers_applied_by_hand() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    for _ in 0..50 {
        let (n, d, h, m) = (
            rng.random_range(1..5),
            rng.random_range(1..6),
            rng.random_range(1..6),
            rng.random_range(1..6),
        );
        let a1 = Affine::<f64>::random(d, h, Init::He, &mut rng);
        let a2 = Affine::<f64>::random(h, m, Init::Xavier, &mut rng);
        let (mut b1, mut b2, mut relu) = (a1.clone(), a2.clone(), Relu::new());
        let mut net = Sequential::new(vec![Box::new(a1), Box::new(Relu::new()), Box::new(a2)]);
        let x: ArrayD<f64> = randn(IxDyn(&[n, d]), 1.0, &mut rng);
        let dout: ArrayD<f64> = randn(IxDyn(&[n, m]), 1.0, &mut rng);

        let by_hand = b2.forward(relu.forward(b1.forward(x.clone())));
        assert_eq!(net.predict(x.clone()), by_hand);
        assert_eq!(net.forward(x), by_hand);
        let dx_by_hand = b1.backward(relu.backward(b2.backward(dout.clone())));
        assert_eq!(net.backward(dout), dx_by_hand);

        let mut grads = Vec::new();
        net.visit_params(&mut |p| grads.push(p.grad.to_owned()));
        let expected = [
            b1.dw().clone().into_dyn(),
            b1.db().clone().into_dyn(),
            b2.dw().clone().into_dyn(),
            b2.db().clone().into_dyn(),
        ];
        assert_eq!(grads, expected);
    }
}

#[test]
fn gradients_are_overwritten_not_accumulated() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
    let mut affine = Affine::<f64>::random(3, 2, Init::Std(0.01), &mut rng);
    let x: ArrayD<f64> = randn(IxDyn(&[4, 3]), 1.0, &mut rng);
    let dout: ArrayD<f64> = randn(IxDyn(&[4, 2]), 1.0, &mut rng);
    affine.forward(x.clone());
    affine.backward(dout.clone());
    let (dw, db) = (affine.dw().clone(), affine.db().clone());
    affine.forward(x);
    affine.backward(dout);
    assert_eq!(affine.dw(), &dw);
    assert_eq!(affine.db(), &db);
}

#[test]
fn random_init_uses_the_requested_spread_and_reproduces_by_seed() {
    for (init, fan_in, std) in [
        (Init::Std(0.01), 784, 0.01),
        (Init::He, 200, 0.1),
        (Init::Xavier, 400, 0.05),
    ] {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let a = Affine::<f64>::random(fan_in, 100, init, &mut rng);
        let measured = a.w().std(0.0);
        assert!(
            (measured - std).abs() < 0.02 * std,
            "{init:?}: {measured} vs {std}"
        );
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let b = Affine::<f64>::random(fan_in, 100, init, &mut rng);
        assert_eq!(a.w(), b.w());
    }
}

#[test]
fn f32_and_f64_layers_agree() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    let w: Array2<f64> = randn((5, 3), 1.0, &mut rng);
    let b: Array1<f64> = randn(3, 1.0, &mut rng);
    let x: ArrayD<f64> = randn(IxDyn(&[4, 5]), 1.0, &mut rng);
    let mut net64 = Sequential::new(vec![
        Box::new(Affine::new(w.clone(), b.clone())) as Box<dyn Layer<f64>>,
        Box::new(Sigmoid::new()),
    ]);
    let mut net32 = Sequential::new(vec![
        Box::new(Affine::new(w.mapv(|v| v as f32), b.mapv(|v| v as f32))) as Box<dyn Layer<f32>>,
        Box::new(Sigmoid::new()),
    ]);
    let y64 = net64.forward(x.clone());
    let y32 = net32.forward(x.mapv(|v| v as f32));
    for (a, b) in y64.iter().zip(&y32) {
        assert!((a - f64::from(*b)).abs() < 1e-6);
    }
}
