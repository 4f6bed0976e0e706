//! Finite differences against the CPU reference gradients of the
//! element-wise ops and reductions (odd sizes, several seeds).

use gradnas::ops::elementwise::cpu as ew;
use gradnas::ops::reduce::cpu as red;
use gradnas::verify::{gradcheck::check, randn, rng, uniform};

const EPS: f32 = 1e-3;

#[test]
fn unary_activations() {
    for seed in 0..3 {
        let mut r = rng(seed);
        // Keep ReLU inputs away from its kink at 0.
        let x: Vec<f32> = randn(&mut r, 13)
            .iter()
            .map(|v| if v.abs() < 0.05 { v + 0.2 } else { *v })
            .collect();
        let dy = randn(&mut r, 13);
        let dx = ew::relu_backward(&x, &dy);
        check("relu", &ew::relu_forward, &x, &dy, &dx, &mut r, 13, EPS).unwrap();
        let dx = ew::sigmoid_backward(&ew::sigmoid_forward(&x), &dy);
        check(
            "sigmoid",
            &ew::sigmoid_forward,
            &x,
            &dy,
            &dx,
            &mut r,
            13,
            EPS,
        )
        .unwrap();
        let dx = ew::tanh_backward(&ew::tanh_forward(&x), &dy);
        check("tanh", &ew::tanh_forward, &x, &dy, &dx, &mut r, 13, EPS).unwrap();
    }
}

#[test]
fn binary_and_scaling_ops() {
    for seed in 0..3 {
        let mut r = rng(seed);
        let (a, b, dy) = (randn(&mut r, 11), randn(&mut r, 11), randn(&mut r, 11));
        let (da, db) = ew::mul_backward(&a, &b, &dy);
        check(
            "mul.a",
            &|x| ew::mul_forward(x, &b),
            &a,
            &dy,
            &da,
            &mut r,
            11,
            EPS,
        )
        .unwrap();
        check(
            "mul.b",
            &|x| ew::mul_forward(&a, x),
            &b,
            &dy,
            &db,
            &mut r,
            11,
            EPS,
        )
        .unwrap();
        let s = uniform(&mut r, 1, 0.5, 2.0)[0];
        let (dx, ds) = ew::scale_backward(s, &a, &dy);
        check(
            "scale.x",
            &|x| ew::scale_forward(s, x),
            &a,
            &dy,
            &dx,
            &mut r,
            11,
            EPS,
        )
        .unwrap();
        let f = |v: &[f32]| ew::scale_forward(v[0], &a);
        check("scale.s", &f, &[s], &dy, &[ds], &mut r, 1, EPS).unwrap();
        // Rows of 5 scaled by 3 factors (a mixed op's β times softmax(α)).
        let (x, rs, dy) = (randn(&mut r, 15), randn(&mut r, 3), randn(&mut r, 15));
        let (dx, drs) = ew::row_scale_backward(&x, &rs, &dy);
        let fx = |v: &[f32]| ew::row_scale_forward(v, &rs);
        check("row_scale.x", &fx, &x, &dy, &dx, &mut r, 15, EPS).unwrap();
        let fs = |v: &[f32]| ew::row_scale_forward(&x, v);
        check("row_scale.s", &fs, &rs, &dy, &drs, &mut r, 3, EPS).unwrap();
    }
}

#[test]
fn reductions() {
    for seed in 0..3 {
        let mut r = rng(seed);
        let x = randn(&mut r, 17);
        let dl = randn(&mut r, 1);
        let one = |f: fn(&[f32]) -> f32| move |v: &[f32]| vec![f(v)];
        let dx = red::sum_backward(17, dl[0]);
        check("sum", &one(red::sum_forward), &x, &dl, &dx, &mut r, 17, EPS).unwrap();
        let dx = red::mean_backward(17, dl[0]);
        check(
            "mean",
            &one(red::mean_forward),
            &x,
            &dl,
            &dx,
            &mut r,
            17,
            EPS,
        )
        .unwrap();
        let dx = red::sqnorm_backward(&x, dl[0]);
        check(
            "sqnorm",
            &one(red::sqnorm_forward),
            &x,
            &dl,
            &dx,
            &mut r,
            17,
            EPS,
        )
        .unwrap();
    }
}

#[test]
fn a_wrong_gradient_is_caught() {
    let mut r = rng(9);
    let (x, dy) = (randn(&mut r, 9), randn(&mut r, 9));
    let wrong: Vec<f32> = ew::tanh_backward(&ew::tanh_forward(&x), &dy)
        .iter()
        .map(|v| v * 1.1)
        .collect();
    assert!(check("tanh", &ew::tanh_forward, &x, &dy, &wrong, &mut r, 9, EPS).is_err());
}
