//! Central finite differences against the CPU reference gradients of the
//! layout, mix, softmax_xent and loss families.

use gradnas::ops::layout::{cpu as lay, ConcatShape, SliceShape};
use gradnas::ops::loss::cpu as l1;
use gradnas::ops::mix::cpu as mix;
use gradnas::ops::softmax_xent::cpu as sx;
use gradnas::verify::gradcheck::check;
use gradnas::verify::{randn, rng, uniform};

const SEEDS: [u64; 3] = [1, 2, 3];
const SAMPLES: usize = 64;
const EPS: f32 = 1e-2;

fn ok(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn slice() {
    for seed in SEEDS {
        let mut r = rng(seed);
        let shapes = [
            SliceShape::factorized_reduce(1, 3, 7, 7),
            // Smaller than what fits, offset in x only.
            SliceShape {
                batch: 2,
                channels: 1,
                h: 5,
                w: 7,
                oy: 0,
                ox: 1,
                out_h: 3,
                out_w: 4,
            },
            // Larger than x: zero padding.
            SliceShape {
                batch: 1,
                channels: 2,
                h: 3,
                w: 5,
                oy: 1,
                ox: 0,
                out_h: 5,
                out_w: 7,
            },
        ];
        for s in shapes {
            let x = randn(&mut r, s.in_len());
            let dy = randn(&mut r, s.out_len());
            let dx = lay::slice_backward(&s, &dy);
            let f = |x: &[f32]| lay::slice_forward(&s, x);
            ok(check("slice", &f, &x, &dy, &dx, &mut r, SAMPLES, EPS));
        }
    }
}

fn concat_shape() -> ConcatShape {
    ConcatShape {
        batch: 2,
        channels: vec![1, 3, 2],
        h: 3,
        w: 5,
    }
}

#[test]
fn concat() {
    let s = concat_shape();
    for seed in SEEDS {
        let mut r = rng(seed);
        let xs: Vec<Vec<f32>> = (0..3).map(|k| randn(&mut r, s.part_len(k))).collect();
        let dy = randn(&mut r, s.whole_len());
        let dxs = lay::concat_backward(&s, &dy);
        for k in 0..3 {
            // Vary part k, hold the others.
            let f = |xk: &[f32]| {
                let parts: Vec<&[f32]> = (0..3)
                    .map(|j| if j == k { xk } else { xs[j].as_slice() })
                    .collect();
                lay::concat_forward(&s, &parts)
            };
            ok(check(
                "concat", &f, &xs[k], &dy, &dxs[k], &mut r, SAMPLES, EPS,
            ));
        }
    }
}

#[test]
fn split() {
    let s = concat_shape();
    for seed in SEEDS {
        let mut r = rng(seed);
        let x = randn(&mut r, s.whole_len());
        let dys: Vec<Vec<f32>> = (0..3).map(|k| randn(&mut r, s.part_len(k))).collect();
        let parts: Vec<&[f32]> = dys.iter().map(|d| d.as_slice()).collect();
        let dx = lay::split_backward(&s, &parts);
        // The outputs flattened part after part, dy likewise.
        let f = |x: &[f32]| lay::split_forward(&s, x).concat();
        ok(check(
            "split",
            &f,
            &x,
            &dys.concat(),
            &dx,
            &mut r,
            SAMPLES,
            EPS,
        ));
    }
}

#[test]
fn weighted_sum() {
    for seed in SEEDS {
        let mut r = rng(seed);
        for (k, n) in [(1, 3), (5, 7), (8, 13)] {
            // The K candidates laid end to end, so one vector is perturbed.
            let xs = randn(&mut r, k * n);
            let parts =
                |xs: &[f32]| -> Vec<Vec<f32>> { xs.chunks(n).map(|c| c.to_vec()).collect() };
            let mix_of = |xs: &[f32], w: &[f32]| {
                let p = parts(xs);
                mix::forward(&p.iter().map(|c| c.as_slice()).collect::<Vec<_>>(), w)
            };
            let w = uniform(&mut r, k, 0.0, 1.0);
            let dy = randn(&mut r, n);
            let dxs = mix::backward_inputs(&w, &dy).concat();
            let fx = |xs: &[f32]| mix_of(xs, &w);
            ok(check(
                "weighted_sum inputs",
                &fx,
                &xs,
                &dy,
                &dxs,
                &mut r,
                SAMPLES,
                EPS,
            ));
            let p = parts(&xs);
            let dw =
                mix::backward_weights(&p.iter().map(|c| c.as_slice()).collect::<Vec<_>>(), &dy);
            let fw = |w: &[f32]| mix_of(&xs, w);
            ok(check(
                "weighted_sum weights",
                &fw,
                &w,
                &dy,
                &dw,
                &mut r,
                SAMPLES,
                EPS,
            ));
        }
    }
}

#[test]
fn softmax() {
    for seed in SEEDS {
        let mut r = rng(seed);
        for (rows, cols) in [(1, 1), (3, 5), (7, 10)] {
            let x: Vec<f32> = randn(&mut r, rows * cols).iter().map(|v| 2.0 * v).collect();
            let dy = randn(&mut r, rows * cols);
            let y = sx::softmax_forward(&x, cols);
            let dx = sx::softmax_backward(&y, &dy, cols);
            let f = |x: &[f32]| sx::softmax_forward(x, cols);
            ok(check("softmax", &f, &x, &dy, &dx, &mut r, SAMPLES, EPS));
        }
    }
}

#[test]
fn log_softmax_xent() {
    for seed in SEEDS {
        let mut r = rng(seed);
        for (rows, cols) in [(1, 3), (5, 7), (9, 10)] {
            let x: Vec<f32> = randn(&mut r, rows * cols).iter().map(|v| 2.0 * v).collect();
            let labels: Vec<u32> = uniform(&mut r, rows, 0.0, cols as f32)
                .iter()
                .map(|&v| (v as u32).min(cols as u32 - 1))
                .collect();
            let dl = randn(&mut r, 1);
            let (_, probs) = sx::log_softmax_xent_forward(&x, &labels, cols);
            let dx = sx::log_softmax_xent_backward(&probs, &labels, cols, dl[0]);
            let f = |x: &[f32]| vec![sx::log_softmax_xent_forward(x, &labels, cols).0];
            ok(check(
                "log_softmax_xent",
                &f,
                &x,
                &dl,
                &dx,
                &mut r,
                SAMPLES,
                EPS,
            ));
        }
    }
}

#[test]
fn l1_loss() {
    for seed in SEEDS {
        let mut r = rng(seed);
        for n in [1, 5, 17] {
            let p = randn(&mut r, n);
            // Targets at least 0.5 away from p, so ±EPS never crosses a kink.
            let t: Vec<f32> = p
                .iter()
                .zip(uniform(&mut r, n, -1.0, 1.0))
                .map(|(&a, u)| a + u.signum() * 0.5 + u)
                .collect();
            let dl = randn(&mut r, 1);
            let dp = l1::l1_backward(&p, &t, dl[0]);
            let f = |p: &[f32]| vec![l1::l1_forward(p, &t)];
            ok(check("l1_loss", &f, &p, &dl, &dp, &mut r, SAMPLES, EPS));
        }
    }
}

#[test]
fn gradcheck_catches_a_wrong_gradient() {
    // The harness must be able to fail: the softmax gradient without its
    // row-sum term is wrong and must be rejected.
    let mut r = rng(7);
    let (cols, x, dy) = (5, randn(&mut r, 10), randn(&mut r, 10));
    let y = sx::softmax_forward(&x, cols);
    let wrong: Vec<f32> = y.iter().zip(&dy).map(|(a, b)| a * b).collect();
    let f = |x: &[f32]| sx::softmax_forward(x, cols);
    assert!(check("softmax (wrong)", &f, &x, &dy, &wrong, &mut r, SAMPLES, EPS).is_err());
}
