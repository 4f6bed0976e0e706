//! Finite differences against the CPU reference gradients of max pool,
//! average pool, global average pool and batch normalization (training:
//! input, γ, β; evaluation: input).

use gradnas::ops::batchnorm::{self as bn, Shape as BnShape};
use gradnas::ops::pool::{cpu, Shape};
use gradnas::verify::gradcheck::check;
use gradnas::verify::{randn, rng, uniform, Rng};
use rand::seq::SliceRandom;

const SEEDS: [u64; 3] = [1, 2, 3];
const EPS: f32 = 1e-3;
const SAMPLES: usize = 400;

fn pool_shape(n: usize, c: usize, h: usize, w: usize, stride: usize, pad: usize) -> Shape {
    Shape {
        n,
        c,
        h,
        w,
        k: 3,
        stride,
        pad,
    }
}

/// Every stride/padding pair on odd and non-square planes.
fn pool_shapes() -> Vec<Shape> {
    vec![
        pool_shape(1, 2, 7, 7, 1, 0),
        pool_shape(2, 1, 7, 5, 1, 1),
        pool_shape(1, 3, 5, 7, 2, 0),
        pool_shape(2, 2, 7, 7, 2, 1),
        pool_shape(1, 1, 1, 1, 1, 1),
    ]
}

/// Distinct values 0.05 apart in random order: a ±EPS nudge never changes
/// which cell wins a window, so max pool is differentiable there.
fn separated(r: &mut Rng, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - n as f32 * 0.025).collect();
    v.shuffle(r);
    v
}

#[test]
fn max_pool() {
    for seed in SEEDS {
        for s in pool_shapes() {
            let mut r = rng(seed);
            let x = separated(&mut r, s.input_len());
            let dy = randn(&mut r, s.output_len());
            let (_, arg) = cpu::max_pool_forward(&s, &x);
            let dx = cpu::max_pool_backward(&s, &arg, &dy);
            let f = |x: &[f32]| cpu::max_pool_forward(&s, x).0;
            check(
                &format!("max_pool {s}"),
                &f,
                &x,
                &dy,
                &dx,
                &mut r,
                SAMPLES,
                EPS,
            )
            .unwrap();
        }
    }
}

#[test]
fn avg_pool() {
    for seed in SEEDS {
        for s in pool_shapes() {
            let mut r = rng(seed);
            let x = randn(&mut r, s.input_len());
            let dy = randn(&mut r, s.output_len());
            let dx = cpu::avg_pool_backward(&s, &dy);
            let f = |x: &[f32]| cpu::avg_pool_forward(&s, x);
            check(
                &format!("avg_pool {s}"),
                &f,
                &x,
                &dy,
                &dx,
                &mut r,
                SAMPLES,
                EPS,
            )
            .unwrap();
        }
    }
}

#[test]
fn global_avg_pool() {
    for seed in SEEDS {
        for (planes, hw) in [(1, 1), (3, 7), (5, 13)] {
            let mut r = rng(seed);
            let x = randn(&mut r, planes * hw);
            let dy = randn(&mut r, planes);
            let dx = cpu::global_avg_pool_backward(&dy, hw);
            let f = |x: &[f32]| cpu::global_avg_pool_forward(x, hw);
            let name = format!("global_avg_pool [{planes},{hw}]");
            check(&name, &f, &x, &dy, &dx, &mut r, SAMPLES, EPS).unwrap();
        }
    }
}

fn bn_shapes() -> Vec<BnShape> {
    vec![
        BnShape::new(2, 3, 5, true),
        BnShape::new(1, 3, 7, false),
        BnShape::new(3, 2, 1, true),
        BnShape::new(2, 1, 9, false),
        // A ReLU fused after it.
        BnShape::new(1, 3, 7, false).with_relu(),
        BnShape::new(3, 2, 6, false).with_relu(),
    ]
}

/// γ, β [c] when affine.
fn affine(r: &mut Rng, s: &BnShape) -> Option<(Vec<f32>, Vec<f32>)> {
    s.affine.then(|| (uniform(r, s.c, 0.5, 1.5), randn(r, s.c)))
}

/// y of a training forward (the running statistics it updates are dropped).
fn train_y(s: &BnShape, x: &[f32], gamma: Option<&[f32]>, beta: Option<&[f32]>) -> Vec<f32> {
    let (mut rm, mut rv) = (vec![0.0; s.c], vec![1.0; s.c]);
    bn::cpu::train_forward(s, x, gamma, beta, &mut rm, &mut rv).0
}

#[test]
fn batchnorm_train() {
    for seed in SEEDS {
        for s in bn_shapes() {
            let mut r = rng(seed);
            let mut x: Vec<f32> = randn(&mut r, s.len())
                .iter()
                .map(|v| 2.0 * v + 1.0)
                .collect();
            if s.relu {
                // Finite differences step over no kink.
                bn::cpu::clear_of_relu_kink(&s, &mut x, 0.05);
            }
            let dy = randn(&mut r, s.len());
            let ab = affine(&mut r, &s);
            let (gamma, beta) = (
                ab.as_ref().map(|a| a.0.as_slice()),
                ab.as_ref().map(|a| a.1.as_slice()),
            );
            let (mut rm, mut rv) = (vec![0.0; s.c], vec![1.0; s.c]);
            let (_, mean, invstd) = bn::cpu::train_forward(&s, &x, gamma, beta, &mut rm, &mut rv);
            let (dx, dgamma, dbeta) = bn::cpu::train_backward(&s, &x, &mean, &invstd, gamma, &dy);

            let f = |x: &[f32]| train_y(&s, x, gamma, beta);
            let name = format!("batchnorm_train dx {s}");
            check(&name, &f, &x, &dy, &dx, &mut r, SAMPLES, EPS).unwrap();
            let Some((g, b)) = &ab else { continue };
            let f = |g: &[f32]| train_y(&s, &x, Some(g), beta);
            let name = format!("batchnorm_train dgamma {s}");
            check(&name, &f, g, &dy, &dgamma, &mut r, SAMPLES, EPS).unwrap();
            let f = |b: &[f32]| train_y(&s, &x, gamma, Some(b));
            let name = format!("batchnorm_train dbeta {s}");
            check(&name, &f, b, &dy, &dbeta, &mut r, SAMPLES, EPS).unwrap();
        }
    }
}

#[test]
fn batchnorm_eval() {
    for seed in SEEDS {
        // Evaluation mode allows a single value per channel.
        let eval = bn_shapes().into_iter().filter(|s| !s.relu);
        for s in eval.chain([BnShape::new(1, 3, 1, true)]) {
            let mut r = rng(seed);
            let x = randn(&mut r, s.len());
            let dy = randn(&mut r, s.len());
            let ab = affine(&mut r, &s);
            let (gamma, beta) = (
                ab.as_ref().map(|a| a.0.as_slice()),
                ab.as_ref().map(|a| a.1.as_slice()),
            );
            let rm = randn(&mut r, s.c);
            let rv = uniform(&mut r, s.c, 0.5, 2.0);
            let dx = bn::cpu::eval_backward(&s, &rv, gamma, &dy);
            let f = |x: &[f32]| bn::cpu::eval_forward(&s, x, &rm, &rv, gamma, beta);
            let name = format!("batchnorm_eval dx {s}");
            check(&name, &f, &x, &dy, &dx, &mut r, SAMPLES, EPS).unwrap();
        }
    }
}
