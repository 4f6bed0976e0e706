//! The linear-probe reading of a measured cell (`MeasureConfig::
//! probe_images` > 0): a least-squares classifier fitted, per cell, on the
//! pooled features of training images, scored on the validation images'
//! features.
//!
//! Why: one classifier is shared by every path of path training, and after
//! a few hundred paths it fits whichever cells were trained last; measured
//! through it, a cell's accuracy is mostly how well its features happen to
//! line up with that head. Freezing the head at S1's values made every cell
//! chance (9%). Fitting a head per cell reads what the cell's features
//! separate (BENCHMARKS.md, "Is the measurement a property of the cell?").
//!
//! The fit: features standardized on the training images, one-hot targets
//! centred, ridge regression (X'X/n + λI) W = X'Y/n solved by Cholesky in
//! f64 (the feature count is the last cell's channels: tens to a few
//! hundred).

use anyhow::{ensure, Result};

/// Ridge strength on standardized features (a correlation matrix's
/// diagonal is 1): enough to keep a few hundred samples of ~100 features
/// well posed.
pub const RIDGE: f64 = 0.1;

/// Features of `rows` samples of `dim` values, row-major, with labels.
pub struct Samples<'a> {
    pub x: &'a [f32],
    pub y: &'a [u32],
}

/// The fraction of `val` that the ridge classifier fitted on `train`
/// labels right.
pub fn accuracy(train: Samples, val: Samples, dim: usize, classes: usize) -> Result<f32> {
    let n = train.y.len();
    ensure!(
        n >= 2 && train.x.len() == n * dim && val.x.len() == val.y.len() * dim,
        "probe: {} training rows of {} values for {dim} features",
        n,
        train.x.len()
    );
    ensure!(
        train.x.iter().chain(val.x).all(|v| v.is_finite()),
        "probe: the sub-network's features are not finite"
    );
    let (mean, scale) = standardization(train.x, dim);
    let z = |x: &[f32], j: usize| (x[j] as f64 - mean[j]) * scale[j];
    // Normal equations on standardized, centred data.
    let mut a = vec![0f64; dim * dim];
    let mut b = vec![0f64; dim * classes];
    let mut prior = vec![0f64; classes];
    for &y in train.y {
        prior[y as usize] += 1.0 / n as f64;
    }
    for (row, &y) in train.x.chunks(dim).zip(train.y) {
        let zr: Vec<f64> = (0..dim).map(|j| z(row, j)).collect();
        for i in 0..dim {
            for k in 0..=i {
                a[i * dim + k] += zr[i] * zr[k] / n as f64;
            }
            for (c, p) in prior.iter().enumerate() {
                let t = if c == y as usize { 1.0 } else { 0.0 } - p;
                b[i * classes + c] += zr[i] * t / n as f64;
            }
        }
    }
    for i in 0..dim {
        a[i * dim + i] += RIDGE;
    }
    let l = cholesky(&mut a, dim);
    let w = solve(l, dim, &b, classes);
    let mut right = 0;
    for (row, &y) in val.x.chunks(dim).zip(val.y) {
        let zr: Vec<f64> = (0..dim).map(|j| z(row, j)).collect();
        let score = |c: usize| prior[c] + (0..dim).map(|j| zr[j] * w[j * classes + c]).sum::<f64>();
        let best = (0..classes)
            .max_by(|&p, &q| score(p).total_cmp(&score(q)))
            .expect("classes > 0");
        right += usize::from(best == y as usize);
    }
    Ok(right as f32 / val.y.len().max(1) as f32)
}

/// Per-feature mean and 1/std over the rows (1 for a constant feature).
fn standardization(x: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (x.len() / dim) as f64;
    let mut mean = vec![0f64; dim];
    for row in x.chunks(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / n;
        }
    }
    let mut var = vec![0f64; dim];
    for row in x.chunks(dim) {
        for j in 0..dim {
            var[j] += (row[j] as f64 - mean[j]).powi(2) / n;
        }
    }
    let scale = var
        .iter()
        .map(|&v| if v > 1e-12 { 1.0 / v.sqrt() } else { 1.0 })
        .collect();
    (mean, scale)
}

/// In place: the lower triangle of `a` (symmetric positive definite,
/// lower triangle filled) becomes L with L L' = A.
fn cholesky(a: &mut [f64], n: usize) -> &[f64] {
    for j in 0..n {
        let d = a[j * n + j] - (0..j).map(|k| a[j * n + k].powi(2)).sum::<f64>();
        // The ridge keeps d ≥ λ in exact arithmetic.
        let d = d.max(1e-12).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let s = a[i * n + j] - (0..j).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>();
            a[i * n + j] = s / d;
        }
    }
    a
}

/// X with L L' X = B (B: n × m, row-major).
fn solve(l: &[f64], n: usize, b: &[f64], m: usize) -> Vec<f64> {
    let mut x = b.to_vec();
    for c in 0..m {
        for i in 0..n {
            let s = x[i * m + c] - (0..i).map(|k| l[i * n + k] * x[k * m + c]).sum::<f64>();
            x[i * m + c] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let s = x[i * m + c] - (i + 1..n).map(|k| l[k * n + i] * x[k * m + c]).sum::<f64>();
            x[i * m + c] = s / l[i * n + i];
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify;

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = M M' + I for a random M; B = A X for a known X.
        let n = 7;
        let mut rng = verify::rng(3);
        let m = verify::randn(&mut rng, n * n);
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n)
                    .map(|k| (m[i * n + k] * m[j * n + k]) as f64)
                    .sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let x: Vec<f64> = verify::randn(&mut rng, n * 2)
            .iter()
            .map(|&v| v as f64)
            .collect();
        let b: Vec<f64> = (0..n * 2)
            .map(|ic| {
                (0..n)
                    .map(|k| a[(ic / 2) * n + k] * x[k * 2 + ic % 2])
                    .sum()
            })
            .collect();
        let l = cholesky(&mut a, n).to_vec();
        let got = solve(&l, n, &b, 2);
        for (g, w) in got.iter().zip(&x) {
            assert!((g - w).abs() < 1e-9, "{g} vs {w}");
        }
    }

    /// Classes that a feature separates are read right; shuffled labels
    /// leave chance; a constant feature does not break the fit.
    #[test]
    fn the_probe_reads_what_the_features_separate() {
        let (dim, classes, n) = (5, 3, 300);
        let mut rng = verify::rng(11);
        let noise = verify::randn(&mut rng, 2 * n * dim);
        let make = |off: usize| {
            let y: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
            let x: Vec<f32> = (0..n * dim)
                .map(|k| {
                    let (i, j) = (k / dim, k % dim);
                    // Feature c marks class c (a direction per class, as
                    // a linear classifier needs); feature 4 is constant.
                    match j {
                        4 => 2.5,
                        _ if j == y[i] as usize => 3.0 + noise[off + k],
                        _ => noise[off + k],
                    }
                })
                .collect();
            (x, y)
        };
        let (xt, yt) = make(0);
        let (xv, yv) = make(n * dim);
        let acc = accuracy(
            Samples { x: &xt, y: &yt },
            Samples { x: &xv, y: &yv },
            dim,
            classes,
        )
        .unwrap();
        assert!(acc > 0.9, "separable: {acc}");
        let mut shuffled = yv.clone();
        shuffled.rotate_left(1);
        let acc = accuracy(
            Samples { x: &xt, y: &yt },
            Samples {
                x: &xv,
                y: &shuffled,
            },
            dim,
            classes,
        )
        .unwrap();
        assert!(acc < 0.5, "labels unrelated to the features: {acc}");
        let bad = vec![f32::NAN; n * dim];
        assert!(accuracy(
            Samples { x: &bad, y: &yt },
            Samples { x: &xv, y: &yv },
            dim,
            classes
        )
        .is_err());
    }
}
