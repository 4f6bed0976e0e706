//! Cases for `ops::reduce`.

use super::{Case, Level, FORWARD, GRADIENT};
use crate::ops::elementwise as ew;
use crate::ops::reduce::{self as red, cpu};

fn sizes(level: Level) -> Vec<usize> {
    match level {
        Level::Quick => vec![3 * 7 * 28 * 28],
        // 1, below one chunk, one past a chunk (4096), odd and large.
        Level::Full => vec![1, 7, 4097, 5 * 13 * 13, 100_003],
    }
}

pub fn cases(level: Level) -> Vec<Case> {
    let mut v = Vec::new();
    for n in sizes(level) {
        for op in ["sum", "mean", "sqnorm"] {
            v.push(Case::new("reduce", op, format!("[{n}]"), move |c| {
                let x = c.randn(n);
                let dl = c.randn(1)[0];
                let (xb, dlb) = (c.input(&x)?, c.input(&[dl])?);
                let (yb, dxb) = (c.output(1)?, c.output(n)?);
                let g = c.gpu;
                let (y, dx, mut ks) = match op {
                    "sum" => (
                        cpu::sum_forward(&x),
                        cpu::sum_backward(n, dl),
                        red::sum_forward(g, &xb, &yb)?,
                    ),
                    "mean" => (
                        cpu::mean_forward(&x),
                        cpu::mean_backward(n, dl),
                        red::mean_forward(g, &xb, &yb)?,
                    ),
                    _ => (
                        cpu::sqnorm_forward(&x),
                        cpu::sqnorm_backward(&x, dl),
                        red::sqnorm_forward(g, &xb, &yb)?,
                    ),
                };
                ks.push(match op {
                    "sum" => ew::broadcast_scalar(g, &dlb, &dxb, 1.0)?,
                    "mean" => ew::broadcast_scalar(g, &dlb, &dxb, 1.0 / n as f32)?,
                    _ => ew::scale_forward(g, &dlb, &xb, &dxb, 2.0)?,
                });
                c.run(&ks)?;
                c.check("forward", &[y], &yb, FORWARD)?;
                c.check("backward", &dx, &dxb, GRADIENT)
            }));
        }
    }
    // Row dot products and channel sums, the building blocks of other
    // gradients, checked on their own.
    let shapes: &[(usize, usize, usize)] = match level {
        Level::Quick => &[(2, 5, 169)],
        Level::Full => &[(1, 1, 1), (1, 3, 49), (3, 7, 169), (2, 16, 784)],
    };
    for &(outer, ch, inner) in shapes {
        v.push(Case::new(
            "reduce",
            "channel_sum",
            format!("[{outer},{ch},{inner}]"),
            move |c| {
                let x = c.randn(outer * ch * inner);
                let xb = c.input(&x)?;
                let ob = c.output(ch)?;
                c.run(&[red::channel_sum(c.gpu, &xb, outer, ch, inner, &ob)?])?;
                c.check(
                    "forward",
                    &cpu::channel_sum(&x, outer, ch, inner),
                    &ob,
                    FORWARD,
                )
            },
        ));
        v.push(Case::new(
            "reduce",
            "dot_rows",
            format!("[{ch},{}]", outer * inner),
            move |c| {
                let n = outer * inner;
                let (a, b) = (c.randn(ch * n), c.randn(n));
                let (ab, bb) = (c.input(&a)?, c.input(&b)?);
                let ob = c.output(ch)?;
                c.run(&red::dot_rows(c.gpu, &ab, &bb, ch, 1.0, &ob)?)?;
                c.check("forward", &cpu::dot_rows(&a, &b, ch), &ob, FORWARD)
            },
        ));
    }
    v
}
