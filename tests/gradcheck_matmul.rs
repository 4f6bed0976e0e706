//! Finite differences of the matmul and linear CPU gradients (every
//! transpose combination, odd shapes, several seeds), and the optimizer CPU
//! twins against steps worked out by hand.

use gradnas::ops::matmul::{cpu, LinearShape, MatmulShape};
use gradnas::ops::optim::{self, AdamHyper, SgdHyper};
use gradnas::verify::{gradcheck, randn, rng};

const EPS: f32 = 1e-2;
const SAMPLES: usize = 40;

#[test]
fn matmul_gradients() {
    for (seed, &(m, k, n)) in [(1, 1, 1), (3, 5, 4), (2, 7, 3), (5, 1, 6)]
        .iter()
        .enumerate()
    {
        for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
            let s = MatmulShape::new(m, k, n, trans_a, trans_b);
            let r = &mut rng(100 + seed as u64);
            let (a, b, dc) = (
                randn(r, s.a_len()),
                randn(r, s.b_len()),
                randn(r, s.c_len()),
            );
            let name = format!("matmul {s:?}");
            gradcheck::check(
                &format!("{name} dA"),
                &|a| cpu::forward(&s, a, &b),
                &a,
                &dc,
                &cpu::backward_a(&s, &b, &dc),
                r,
                SAMPLES,
                EPS,
            )
            .unwrap();
            gradcheck::check(
                &format!("{name} dB"),
                &|b| cpu::forward(&s, &a, b),
                &b,
                &dc,
                &cpu::backward_b(&s, &a, &dc),
                r,
                SAMPLES,
                EPS,
            )
            .unwrap();
        }
    }
}

#[test]
fn linear_gradients() {
    for (seed, &(batch, in_features, out_features)) in
        [(1, 3, 5), (3, 7, 2), (5, 4, 9)].iter().enumerate()
    {
        let s = LinearShape {
            batch,
            in_features,
            out_features,
        };
        let r = &mut rng(200 + seed as u64);
        let (x, w, bias, dy) = (
            randn(r, s.x_len()),
            randn(r, s.w_len()),
            randn(r, out_features),
            randn(r, s.y_len()),
        );
        let name = format!("linear {s:?}");
        gradcheck::check(
            &format!("{name} dx"),
            &|x| cpu::linear_forward(&s, x, &w, Some(&bias)),
            &x,
            &dy,
            &cpu::linear_backward_input(&s, &w, &dy),
            r,
            SAMPLES,
            EPS,
        )
        .unwrap();
        gradcheck::check(
            &format!("{name} dW"),
            &|w| cpu::linear_forward(&s, &x, w, Some(&bias)),
            &w,
            &dy,
            &cpu::linear_backward_weight(&s, &x, &dy),
            r,
            SAMPLES,
            EPS,
        )
        .unwrap();
        gradcheck::check(
            &format!("{name} db"),
            &|b| cpu::linear_forward(&s, &x, &w, Some(b)),
            &bias,
            &dy,
            &cpu::linear_backward_bias(&s, &dy),
            r,
            SAMPLES,
            EPS,
        )
        .unwrap();
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 + 1e-5 * w.abs(),
            "{what}[{i}]: {g} vs hand-computed {w}"
        );
    }
}

#[test]
fn sgd_momentum_by_hand() {
    let h = SgdHyper {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.5,
    };
    let mut p = vec![1.0, -2.0, 0.5];
    let mut buf = None;
    // Step 1: g = grad + 0.5·p = (1.5, -1, 0.25); buf = g; p -= 0.1·buf.
    optim::cpu::sgd(&h, 1.0, &mut p, &[1.0, 0.0, 0.0], &mut buf);
    assert_close("buf 1", buf.as_deref().unwrap(), &[1.5, -1.0, 0.25]);
    assert_close("p 1", &p, &[0.85, -1.9, 0.475]);
    // Step 2 with the gradient halved by a clipping coefficient of 0.5:
    // g = 0.5·(2, 2, 2) + 0.5·p = (1.425, 0.05, 1.2375);
    // buf = 0.9·buf + g = (2.775, -0.85, 1.4625); p -= 0.1·buf.
    optim::cpu::sgd(&h, 0.5, &mut p, &[2.0, 2.0, 2.0], &mut buf);
    assert_close("buf 2", buf.as_deref().unwrap(), &[2.775, -0.85, 1.4625]);
    assert_close("p 2", &p, &[0.5725, -1.815, 0.32875]);
}

#[test]
fn adam_by_hand() {
    // Step 1 of Adam: m = 0.1·g, v = 0.001·g², bias-corrected m̂ = g and
    // √v̂ = |g|, so p -= lr · g / (|g| + eps).
    let h = AdamHyper::new(0.1);
    let mut p = vec![1.0, -1.0, 3.0];
    let g = [2.0, -0.5, 0.0];
    let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
    optim::cpu::adam(&h, 1.0, &mut p, &g, &mut m, &mut v);
    assert_close("m", &m, &[0.2, -0.05, 0.0]);
    assert_close("v", &v, &[0.004, 0.00025, 0.0]);
    assert_close("p", &p, &[0.9, -0.9, 3.0]);
    // Step 2, g = (1, 1, 1): m = (0.28, 0.055, 0.1), v = 0.999·v + 0.001,
    // m̂ = m / 0.19, v̂ = v / (1 − 0.999²) = v / 0.001999.
    let h2 = AdamHyper { step: 2, ..h };
    optim::cpu::adam(&h2, 1.0, &mut p, &[1.0; 3], &mut m, &mut v);
    let want_v = [0.004996, 0.00124975, 0.001];
    assert_close("m 2", &m, &[0.28, 0.055, 0.1]);
    assert_close("v 2", &v, &want_v);
    let step = |mi: f32, vi: f32| 0.1 * (mi / 0.19) / (vi / 0.001999f32).sqrt();
    let want_p = [
        0.9 - step(0.28, want_v[0]),
        -0.9 - step(0.055, want_v[1]),
        3.0 - step(0.1, want_v[2]),
    ];
    assert_close("p 2", &p, &want_p);
}

#[test]
fn adamw_decoupled_decay_by_hand() {
    // AdamW: p ← p·(1 − lr·wd) − lr · g/(|g| + eps) at step 1; the decay
    // never enters the gradient, so m and v match plain Adam's.
    let h = AdamHyper {
        weight_decay: 0.5,
        decoupled: true,
        ..AdamHyper::new(0.1)
    };
    let mut p = vec![2.0, -4.0];
    let (mut m, mut v) = (vec![0.0; 2], vec![0.0; 2]);
    optim::cpu::adam(&h, 1.0, &mut p, &[3.0, -1.0], &mut m, &mut v);
    assert_close("m", &m, &[0.3, -0.1]);
    assert_close("p", &p, &[2.0 * 0.95 - 0.1, -4.0 * 0.95 + 0.1]);
    // Coupled Adam adds wd·p to the gradient instead: g = (4, -3).
    let h = AdamHyper {
        decoupled: false,
        ..h
    };
    let mut p = vec![2.0, -4.0];
    let (mut m, mut v) = (vec![0.0; 2], vec![0.0; 2]);
    optim::cpu::adam(&h, 1.0, &mut p, &[3.0, -1.0], &mut m, &mut v);
    assert_close("m coupled", &m, &[0.4, -0.3]);
    assert_close("p coupled", &p, &[1.9, -3.9]);
}

#[test]
fn clip_coef_by_hand() {
    // ‖(3, 4, 12)‖ = 13 over two tensors.
    let g: [&[f32]; 2] = [&[3.0, 4.0], &[12.0]];
    let k = optim::cpu::clip_coef(&g, 1.0);
    assert_close("active", &[k], &[1.0 / (13.0 + 1e-6)]);
    assert_eq!(
        optim::cpu::clip_coef(&g, 13.5),
        1.0,
        "inactive clipping scales by 1"
    );
}
