//! Cases for `ops::affine_scaling`: three consecutive steps on the GPU (a
//! fresh gradient and a larger lr, written with `set_params`, before each)
//! against three CPU steps, over ragged segment layouts. lr grows tenfold per
//! step so both regimes run: steps limited by lr and steps limited by the
//! distance to the simplex boundary.

use super::{Case, Ctx, Level, GRADIENT};
use crate::ops::affine_scaling::{self as affine, cpu, AffineHyper};

const STEPS: i32 = 3;

/// lr of step `t`: 0.5, 5, 50.
fn hyper(t: i32) -> AffineHyper {
    AffineHyper::new(0.5 * 10f32.powi(t))
}

/// Random interior weights: uniform in [0.05, 1), each segment normalised.
fn interior(c: &mut Ctx, segments: &[usize]) -> Vec<f32> {
    let mut beta = Vec::new();
    for &len in segments {
        let raw = c.uniform(len, 0.05, 1.0);
        let sum: f64 = raw.iter().map(|&v| v as f64).sum();
        beta.extend(raw.iter().map(|&v| (v as f64 / sum) as f32));
    }
    beta
}

/// A standard normal gradient, or with `wide` each entry also scaled by
/// 10^u, u uniform in [−3, 3).
fn gradient(c: &mut Ctx, n: usize, wide: bool) -> Vec<f32> {
    let g = c.randn(n);
    if !wide {
        return g;
    }
    let e = c.uniform(n, -3.0, 3.0);
    g.iter().zip(e).map(|(g, e)| g * 10f32.powf(e)).collect()
}

fn step_case(label: &str, segments: Vec<usize>, wide: bool) -> Case {
    let shape = format!(
        "{label}: {} segments, {} weights{}",
        segments.len(),
        segments.iter().sum::<usize>(),
        if wide { ", gradients 1e-3..1e3" } else { "" }
    );
    Case::new("affine_scaling", "affine_scaling", shape, move |c| {
        let n = segments.iter().sum();
        let mut beta = interior(c, &segments);
        let (bb, gb) = (c.input(&beta)?, c.output(n)?);
        let k = affine::step(c.gpu, &hyper(0), &segments, &bb, &gb)?;
        for t in 0..STEPS {
            let g = gradient(c, n, wide);
            c.gpu.write(&gb, &g);
            k.set_params(c.gpu, &affine::params(&hyper(t)));
            c.run(std::slice::from_ref(&k))?;
            cpu::step(&hyper(t), &mut beta, &g, &segments);
        }
        c.check("beta", &beta, &bb, GRADIENT)
    })
}

/// One 5-block PNAS cell: blocks choose among 2, 3, 4, 5, 6 inputs.
const CELL: [usize; 5] = [2, 3, 4, 5, 6];

pub fn cases(level: Level) -> Vec<Case> {
    let mut v = vec![step_case("one cell", CELL.to_vec(), false)];
    if level == Level::Full {
        // Three cell kinds, plus single-candidate blocks and long segments.
        let cells: Vec<usize> = CELL
            .iter()
            .cycle()
            .take(15)
            .copied()
            .chain([1, 1, 7, 13])
            .collect();
        // More segments than one workgroup has invocations.
        let many: Vec<usize> = (0..300).map(|i| i % 6 + 1).collect();
        v.push(step_case("single weight", vec![1], false));
        v.push(step_case("three cells", cells.clone(), false));
        v.push(step_case("three cells", cells, true));
        v.push(step_case("many blocks", many, false));
        v.push(step_case("one long block", vec![100], true));
    }
    v
}
