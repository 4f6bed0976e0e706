//! Finite differences against the CPU reference gradients of conv2d: input,
//! weight and bias, over dense, strided, dilated, grouped, depthwise and
//! asymmetric-padding shapes, several seeds each.

use gradnas::ops::conv2d::{cpu, Conv2dShape};
use gradnas::verify::{gradcheck::check, randn, rng};

#[allow(clippy::too_many_arguments)]
fn shape(
    n: usize,
    c_in: usize,
    c_out: usize,
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    stride: usize,
    (pad_h, pad_w): (usize, usize),
    dilation: usize,
    groups: usize,
) -> Conv2dShape {
    let s = Conv2dShape {
        n,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        stride,
        pad_h,
        pad_w,
        dilation,
        groups,
    };
    s.validate().unwrap();
    s
}

fn shapes() -> Vec<Conv2dShape> {
    vec![
        shape(2, 3, 5, (7, 5), (3, 3), 1, (1, 1), 1, 1),
        shape(1, 3, 3, (9, 7), (3, 3), 2, (0, 1), 1, 1),
        shape(2, 3, 3, (7, 7), (3, 3), 1, (2, 2), 2, 3),
        shape(1, 5, 5, (9, 9), (5, 5), 2, (4, 4), 2, 5),
        shape(1, 6, 3, (5, 7), (3, 3), 1, (1, 1), 1, 3),
        shape(2, 3, 5, (5, 7), (1, 7), 1, (0, 3), 1, 1),
        shape(1, 5, 3, (7, 5), (7, 1), 1, (3, 0), 1, 1),
        shape(2, 5, 3, (7, 7), (1, 1), 2, (0, 0), 1, 1),
        shape(1, 3, 3, (1, 1), (3, 3), 1, (1, 1), 1, 1),
    ]
}

const SEEDS: [u64; 3] = [1, 7, 1234];

#[test]
fn conv2d_input_gradient() {
    for s in shapes() {
        for seed in SEEDS {
            let mut r = rng(seed);
            let (x, w, b) = (
                randn(&mut r, s.x_len()),
                randn(&mut r, s.w_len()),
                randn(&mut r, s.c_out),
            );
            let dy = randn(&mut r, s.y_len());
            let f = |x: &[f32]| cpu::forward(&s, x, &w, Some(&b));
            let an = cpu::backward_input(&s, &w, &dy);
            check(
                &format!("conv2d dx {s}"),
                &f,
                &x,
                &dy,
                &an,
                &mut r,
                60,
                1e-2,
            )
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }
}

#[test]
fn conv2d_weight_gradient() {
    for s in shapes() {
        for seed in SEEDS {
            let mut r = rng(seed);
            let (x, w, b) = (
                randn(&mut r, s.x_len()),
                randn(&mut r, s.w_len()),
                randn(&mut r, s.c_out),
            );
            let dy = randn(&mut r, s.y_len());
            let f = |w: &[f32]| cpu::forward(&s, &x, w, Some(&b));
            let an = cpu::backward_weight(&s, &x, &dy);
            check(
                &format!("conv2d dw {s}"),
                &f,
                &w,
                &dy,
                &an,
                &mut r,
                60,
                1e-2,
            )
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }
}

#[test]
fn conv2d_bias_gradient() {
    for s in shapes() {
        for seed in SEEDS {
            let mut r = rng(seed);
            let (x, w, b) = (
                randn(&mut r, s.x_len()),
                randn(&mut r, s.w_len()),
                randn(&mut r, s.c_out),
            );
            let dy = randn(&mut r, s.y_len());
            let f = |b: &[f32]| cpu::forward(&s, &x, &w, Some(b));
            let an = cpu::backward_bias(&s, &dy);
            check(
                &format!("conv2d db {s}"),
                &f,
                &b,
                &dy,
                &an,
                &mut r,
                60,
                1e-2,
            )
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }
}

/// The checker must see a wrong gradient: flip one input-gradient entry.
#[test]
fn conv2d_gradcheck_detects_an_error() {
    let s = shapes()[0];
    let mut r = rng(3);
    let (x, w) = (randn(&mut r, s.x_len()), randn(&mut r, s.w_len()));
    let dy = randn(&mut r, s.y_len());
    let f = |x: &[f32]| cpu::forward(&s, x, &w, None);
    let mut an = cpu::backward_input(&s, &w, &dy);
    let i = s.x_len() / 2;
    an[i] += 0.5 + an[i].abs();
    let res = check(
        "conv2d dx (corrupted)",
        &f,
        &x,
        &dy,
        &an,
        &mut r,
        s.x_len(),
        1e-2,
    );
    assert!(res.is_err(), "a corrupted gradient passed the check");
}
