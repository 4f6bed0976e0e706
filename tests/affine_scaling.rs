//! The affine-scaling step on ragged simplices: weights stay strictly
//! positive and sum to 1 whatever the gradient (CPU proptest, GPU long run),
//! iterates converge to the interior minimiser of a strictly convex
//! quadratic and move toward the best vertex of a linear objective (CPU and
//! GPU). GPU-vs-CPU agreement per step is the `affine_scaling` family of
//! tests/ops_gpu.rs.

mod common;

use gradnas::engine::{Buf, Gpu, Kernel};
use gradnas::ops::affine_scaling::{self as affine, cpu, offsets, AffineHyper};
use gradnas::verify::{randn, rng, uniform, Rng};
use proptest::prelude::*;

/// Normal and reduction cells of three cell kinds (5 blocks with 2..6
/// candidates each), plus single-candidate and longer blocks.
fn cells() -> Vec<usize> {
    [2, 3, 4, 5, 6]
        .iter()
        .cycle()
        .take(15)
        .copied()
        .chain([1, 1, 7, 13])
        .collect()
}

fn barycentres(segments: &[usize]) -> Vec<f32> {
    segments
        .iter()
        .flat_map(|&l| std::iter::repeat_n(1.0 / l as f32, l))
        .collect()
}

/// Random interior points: uniform in [lo, 1), each segment normalised.
fn interior(r: &mut Rng, segments: &[usize], lo: f32) -> Vec<f32> {
    let mut out = Vec::new();
    for &l in segments {
        let raw = uniform(r, l, lo, 1.0);
        let s: f64 = raw.iter().map(|&v| v as f64).sum();
        out.extend(raw.iter().map(|&v| (v as f64 / s) as f32));
    }
    out
}

/// Entries sign · 10^u, u uniform in [−6, 6): wildly different magnitudes.
fn wild_gradient(r: &mut Rng, n: usize) -> Vec<f32> {
    let u = uniform(r, n, -6.0, 6.0);
    let s = uniform(r, n, -1.0, 1.0);
    u.iter()
        .zip(s)
        .map(|(&u, s)| 10f32.powf(u).copysign(s))
        .collect()
}

/// Every weight finite and > 0, every segment summing to 1 within 1e-5.
fn on_simplex(beta: &[f32], segments: &[usize]) -> Result<(), String> {
    if let Some(i) = beta.iter().position(|&b| !(b.is_finite() && b > 0.0)) {
        return Err(format!("weight {i} is {}", beta[i]));
    }
    for (s, w) in offsets(segments).windows(2).enumerate() {
        let sum: f64 = beta[w[0]..w[1]].iter().map(|&b| b as f64).sum();
        if (sum - 1.0).abs() > 1e-5 {
            return Err(format!("segment {s} sums to {sum}"));
        }
    }
    Ok(())
}

fn max_err(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cpu_stays_strictly_inside_the_simplex(
        segments in prop::collection::vec(1usize..=8, 1..=20),
        seed in any::<u64>(),
        // Up to 1e30: steps limited by the boundary alone (the long-step
        // method), where only the floor keeps weights from underflowing.
        lr_exp in -3.0f32..30.0,
        from_barycentre in any::<bool>(),
    ) {
        let mut r = rng(seed);
        let mut beta = if from_barycentre {
            barycentres(&segments)
        } else {
            interior(&mut r, &segments, 1e-3)
        };
        let h = AffineHyper::new(10f32.powf(lr_exp));
        for t in 0..50 {
            let g = wild_gradient(&mut r, beta.len());
            cpu::step(&h, &mut beta, &g, &segments);
            on_simplex(&beta, &segments).map_err(|e| {
                TestCaseError::fail(format!("step {t}, lr {}: {e}", h.lr))
            })?;
        }
    }
}

/// The strictly convex quadratic f(β) = ½ (β − β*)ᵀ Q (β − β*) per segment,
/// Q = AᵀA with eigenvalues in [l²/2, l²] for a segment of length l (the
/// step's metric X² is ~1/l², so one lr suits every segment).
struct Quadratic {
    segments: Vec<usize>,
    target: Vec<f32>,
    /// One row-major l×l matrix per segment.
    q: Vec<Vec<f64>>,
}

impl Quadratic {
    fn new(r: &mut Rng, segments: &[usize]) -> Quadratic {
        let q = segments
            .iter()
            .map(|&l| {
                let b = randn(r, l * l);
                // M = BᵀB scaled by its Frobenius norm (≥ its top eigenvalue).
                let mut m: Vec<f64> = (0..l * l)
                    .map(|ij| {
                        let (i, j) = (ij / l, ij % l);
                        (0..l)
                            .map(|k| b[k * l + i] as f64 * b[k * l + j] as f64)
                            .sum()
                    })
                    .collect();
                let fro = m.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                let l2 = (l * l) as f64;
                for (ij, v) in m.iter_mut().enumerate() {
                    let eye = if ij / l == ij % l { 1.0 } else { 0.0 };
                    *v = l2 * 0.5 * (eye + *v / fro);
                }
                m
            })
            .collect();
        Quadratic {
            segments: segments.to_vec(),
            target: interior(r, segments, 0.5),
            q,
        }
    }

    /// Q (β − β*), segment by segment.
    fn gradient(&self, beta: &[f32]) -> Vec<f32> {
        let mut g = Vec::with_capacity(beta.len());
        for (w, q) in offsets(&self.segments).windows(2).zip(&self.q) {
            let l = w[1] - w[0];
            let diff: Vec<f64> = (w[0]..w[1])
                .map(|i| beta[i] as f64 - self.target[i] as f64)
                .collect();
            g.extend((0..l).map(|i| (0..l).map(|j| q[i * l + j] * diff[j]).sum::<f64>() as f32));
        }
        g
    }
}

const QUADRATIC_LR: f32 = 1.0;
const QUADRATIC_STEPS: usize = 200;

#[test]
fn cpu_converges_to_the_interior_minimiser_of_a_quadratic() {
    let segments = cells();
    for seed in 0..5 {
        let f = Quadratic::new(&mut rng(seed), &segments);
        let h = AffineHyper::new(QUADRATIC_LR);
        let mut beta = barycentres(&segments);
        let start = max_err(&beta, &f.target);
        for _ in 0..QUADRATIC_STEPS {
            let g = f.gradient(&beta);
            cpu::step(&h, &mut beta, &g, &segments);
            on_simplex(&beta, &segments).unwrap();
        }
        let err = max_err(&beta, &f.target);
        assert!(start > 0.05, "seed {seed}: the start is already near β*");
        assert!(
            err < 1e-4,
            "seed {seed}: max |β − β*| = {err} after {QUADRATIC_STEPS} steps"
        );
    }
}

/// With a constant gradient c, per segment: cᵀβ never increases, the
/// weight of the smallest entry of c never decreases (callers check that
/// it ends near 1: near-ties in c slow the approach, so not too near).
fn check_linear_progress(prev: &[f32], beta: &[f32], c: &[f32], segments: &[usize]) {
    for (s, w) in offsets(segments).windows(2).enumerate() {
        let r = w[0]..w[1];
        let obj = |b: &[f32]| -> f64 {
            b[r.clone()]
                .iter()
                .zip(&c[r.clone()])
                .map(|(&b, &c)| b as f64 * c as f64)
                .sum()
        };
        assert!(
            obj(beta) <= obj(prev) + 1e-6,
            "segment {s}: cᵀβ rose from {} to {}",
            obj(prev),
            obj(beta)
        );
        let best = r.clone().min_by(|&i, &j| c[i].total_cmp(&c[j])).unwrap();
        assert!(
            beta[best] >= prev[best] - 1e-6,
            "segment {s}: the best vertex lost weight"
        );
    }
}

fn best_vertex_weights(beta: &[f32], c: &[f32], segments: &[usize]) -> Vec<f32> {
    offsets(segments)
        .windows(2)
        .map(|w| {
            let best = (w[0]..w[1]).min_by(|&i, &j| c[i].total_cmp(&c[j])).unwrap();
            beta[best]
        })
        .collect()
}

#[test]
fn cpu_moves_toward_the_best_vertex_of_a_linear_objective() {
    let segments = cells();
    // Long steps (θ of the way to the boundary) and lr-limited short ones.
    for (seed, lr, want) in [(1, 1e4, 0.99), (2, 1e4, 0.99), (3, 2.0, 0.4)] {
        let mut r = rng(seed);
        let c = randn(&mut r, segments.iter().sum());
        let h = AffineHyper::new(lr);
        let mut beta = barycentres(&segments);
        for _ in 0..100 {
            let prev = beta.clone();
            cpu::step(&h, &mut beta, &c, &segments);
            on_simplex(&beta, &segments).unwrap();
            check_linear_progress(&prev, &beta, &c, &segments);
        }
        for (s, w) in best_vertex_weights(&beta, &c, &segments).iter().enumerate() {
            assert!(
                *w > want,
                "seed {seed} lr {lr}: segment {s} best weight {w}"
            );
        }
    }
}

#[test]
fn constant_gradients_and_single_weights_do_not_move() {
    let segments = [1, 3, 1, 4];
    let mut r = rng(7);
    let start = interior(&mut r, &segments, 0.1);
    let mut beta = start.clone();
    // Constant within each segment: λ equals it, so d = 0.
    let g = [5.0, -2.0, -2.0, -2.0, 1e6, 3.0, 3.0, 3.0, 3.0];
    cpu::step(&AffineHyper::new(1e3), &mut beta, &g, &segments);
    assert!(max_err(&beta, &start) < 1e-6, "{beta:?} vs {start:?}");
    assert_eq!((beta[0], beta[4]), (1.0, 1.0));
}

#[test]
fn one_step_follows_the_formula() {
    let (beta, g) = ([0.5f32, 0.3, 0.2], [1.0f32, 0.0, -1.0]);
    // By hand: λ = (0.25 − 0.04)/(0.25 + 0.09 + 0.04) = 0.21/0.38.
    let lambda = 0.21 / 0.38;
    let d: Vec<f64> = beta
        .iter()
        .zip(g)
        .map(|(&b, g)| -(b as f64).powi(2) * (g as f64 - lambda))
        .collect();
    assert!(d.iter().sum::<f64>().abs() < 1e-7);
    // Short step: t = lr.
    let mut short = beta;
    cpu::step(&AffineHyper::new(0.1), &mut short, &g, &[3]);
    for i in 0..3 {
        let want = beta[i] as f64 + 0.1 * d[i];
        assert!((short[i] as f64 - want).abs() < 1e-6, "{short:?}");
    }
    // Long step: only d_0 < 0, so β_0 goes θ = 0.9 of the way to 0.
    assert!(d[0] < 0.0 && d[1] > 0.0 && d[2] > 0.0);
    let mut long = beta;
    cpu::step(&AffineHyper::new(1e6), &mut long, &g, &[3]);
    let t = 0.9 * 0.5 / -d[0];
    for i in 0..3 {
        let want = beta[i] as f64 + t * d[i];
        assert!((long[i] as f64 - want).abs() < 1e-6, "{long:?}");
    }
    assert!((long[0] - 0.05).abs() < 1e-6);
}

/// 60 long steps on linear objectives: the losing weights shrink tenfold
/// per step (θ = 0.9) until the floor (1e-12 of the segment's sum) holds
/// them; without it they would reach ~1e-30, where lr = 1e30 takes over.
fn floor_case() -> (AffineHyper, [usize; 2], [f32; 5], [f32; 5]) {
    let beta = [0.5, 0.5, 0.2, 0.3, 0.5];
    let c = [0.0, 1.0, 0.0, 1.0, 2.0];
    (AffineHyper::new(1e30), [2, 3], beta, c)
}

fn check_floor(beta: &[f32], segments: &[usize]) {
    on_simplex(beta, segments).unwrap();
    for &i in &[1, 3, 4] {
        let floor = affine::FLOOR as f32;
        assert!(
            (0.99 * floor..1.01 * floor).contains(&beta[i]),
            "weight {i} = {}, not at the floor",
            beta[i]
        );
    }
}

#[test]
fn long_steps_stop_at_the_floor() {
    let (h, segments, mut beta, c) = floor_case();
    for _ in 0..60 {
        cpu::step(&h, &mut beta, &c, &segments);
    }
    check_floor(&beta, &segments);
}

#[test]
#[should_panic(expected = "cover 4 weights")]
fn a_layout_that_does_not_cover_the_weights_panics() {
    cpu::step(&AffineHyper::new(1.0), &mut [0.5; 3], &[0.0; 3], &[2, 2]);
}

#[test]
#[should_panic(expected = "segment 1 is empty")]
fn an_empty_segment_panics() {
    cpu::step(&AffineHyper::new(1.0), &mut [0.5; 2], &[0.0; 2], &[2, 0]);
}

/// A kernel stepping `beta` (uploaded) with the gradient in `grad`.
fn gpu_step(gpu: &Gpu, h: &AffineHyper, segments: &[usize], beta: &[f32]) -> (Kernel, Buf, Buf) {
    let bb = gpu.upload("beta", beta).unwrap();
    let gb = gpu.zeros("grad", beta.len()).unwrap();
    let k = affine::step(gpu, h, segments, &bb, &gb).unwrap();
    (k, bb, gb)
}

#[test]
fn gpu_stays_strictly_inside_the_simplex() {
    let gpu = common::gpu();
    let segments = cells();
    let mut r = rng(11);
    let (k, bb, gb) = gpu_step(
        gpu,
        &AffineHyper::new(1.0),
        &segments,
        &barycentres(&segments),
    );
    for t in 0..300 {
        let h = AffineHyper::new(10f32.powf(uniform(&mut r, 1, -3.0, 30.0)[0]));
        k.set_params(gpu, &affine::params(&h));
        gpu.write(&gb, &wild_gradient(&mut r, bb.len));
        gpu.run(std::slice::from_ref(&k)).unwrap();
        let beta = gpu.read(&bb).unwrap();
        on_simplex(&beta, &segments).unwrap_or_else(|e| panic!("step {t}, lr {}: {e}", h.lr));
    }
}

#[test]
fn gpu_converges_to_the_interior_minimiser_of_a_quadratic() {
    let gpu = common::gpu();
    let segments = cells();
    let f = Quadratic::new(&mut rng(3), &segments);
    let start = barycentres(&segments);
    let (k, bb, gb) = gpu_step(gpu, &AffineHyper::new(QUADRATIC_LR), &segments, &start);
    let mut beta = start;
    for _ in 0..QUADRATIC_STEPS {
        gpu.write(&gb, &f.gradient(&beta));
        gpu.run(std::slice::from_ref(&k)).unwrap();
        beta = gpu.read(&bb).unwrap();
        on_simplex(&beta, &segments).unwrap();
    }
    let err = max_err(&beta, &f.target);
    assert!(
        err < 1e-4,
        "max |β − β*| = {err} after {QUADRATIC_STEPS} steps"
    );
}

#[test]
fn gpu_moves_toward_the_best_vertex_of_a_linear_objective() {
    let gpu = common::gpu();
    let segments = cells();
    let c = randn(&mut rng(5), segments.iter().sum());
    let start = barycentres(&segments);
    let (k, bb, gb) = gpu_step(gpu, &AffineHyper::new(1e4), &segments, &start);
    gpu.write(&gb, &c);
    let mut prev = start;
    for _ in 0..100 {
        gpu.run(std::slice::from_ref(&k)).unwrap();
        let beta = gpu.read(&bb).unwrap();
        on_simplex(&beta, &segments).unwrap();
        check_linear_progress(&prev, &beta, &c, &segments);
        prev = beta;
    }
    for (s, w) in best_vertex_weights(&prev, &c, &segments).iter().enumerate() {
        assert!(*w > 0.99, "segment {s} best weight {w}");
    }
}

#[test]
fn gpu_long_steps_stop_at_the_floor() {
    let gpu = common::gpu();
    let (h, segments, beta, c) = floor_case();
    let (k, bb, gb) = gpu_step(gpu, &h, &segments, &beta);
    gpu.write(&gb, &c);
    for _ in 0..60 {
        gpu.run(std::slice::from_ref(&k)).unwrap();
    }
    check_floor(&gpu.read(&bb).unwrap(), &segments);
}
