//! Cases for `ops::elementwise`.

use super::{Case, Level, FORWARD, GRADIENT};
use crate::ops::elementwise::{self as ew, cpu};

/// Element counts: a 4-D activation flattened, plus edge sizes.
fn sizes(level: Level) -> Vec<usize> {
    match level {
        Level::Quick => vec![2 * 5 * 13 * 13],
        // 1, 7×7, an odd 3-channel 13×13 batch, 28×28 images, and one past
        // 65,535 workgroups of 256 so the folded 2-D grid is exercised.
        Level::Full => vec![1, 49, 3 * 5 * 13 * 13, 2 * 3 * 28 * 28, 65_535 * 256 + 77],
    }
}

type Unary = (
    &'static str,
    fn(&[f32]) -> Vec<f32>,
    fn(&[f32], &[f32]) -> Vec<f32>,
    bool, // backward takes the forward output (true) or input (false)
);

const UNARY: &[Unary] = &[
    ("relu", cpu::relu_forward, cpu::relu_backward, false),
    ("sigmoid", cpu::sigmoid_forward, cpu::sigmoid_backward, true),
    ("tanh", cpu::tanh_forward, cpu::tanh_backward, true),
];

pub fn cases(level: Level) -> Vec<Case> {
    let mut v = Vec::new();
    for n in sizes(level) {
        // The huge size only for one op: it checks the grid, not the math.
        let big = n > 1 << 20;
        for &(op, fwd, bwd, from_output) in UNARY {
            if big && op != "relu" {
                continue;
            }
            v.push(Case::new("elementwise", op, format!("[{n}]"), move |c| {
                let x = c.randn(n);
                let dy = c.randn(n);
                let y_cpu = fwd(&x);
                let dx_cpu = bwd(if from_output { &y_cpu } else { &x }, &dy);
                let (xb, dyb) = (c.input(&x)?, c.input(&dy)?);
                let (yb, dxb) = (c.output(n)?, c.output(n)?);
                let g = c.gpu;
                let kf = match op {
                    "relu" => ew::relu_forward(g, &xb, &yb)?,
                    "sigmoid" => ew::sigmoid_forward(g, &xb, &yb)?,
                    _ => ew::tanh_forward(g, &xb, &yb)?,
                };
                // The backward reads the GPU's own forward output.
                let saved = if from_output { &yb } else { &xb };
                let kb = match op {
                    "relu" => ew::relu_backward(g, saved, &dyb, &dxb)?,
                    "sigmoid" => ew::sigmoid_backward(g, saved, &dyb, &dxb)?,
                    _ => ew::tanh_backward(g, saved, &dyb, &dxb)?,
                };
                c.run(&[kf, kb])?;
                c.check("forward", &y_cpu, &yb, FORWARD)?;
                c.check("backward", &dx_cpu, &dxb, GRADIENT)
            }));
        }
        if big {
            continue;
        }
        v.push(Case::new(
            "elementwise",
            "add",
            format!("[{n}]"),
            move |c| {
                let (a, b, dy) = (c.randn(n), c.randn(n), c.randn(n));
                let (ab, bb, dyb) = (c.input(&a)?, c.input(&b)?, c.input(&dy)?);
                let (yb, dab, dbb) = (c.output(n)?, c.output(n)?, c.output(n)?);
                let g = c.gpu;
                c.run(&[
                    ew::add_forward(g, &ab, &bb, &yb)?,
                    ew::copy_scaled(g, &dyb, &dab, 1.0)?,
                    ew::copy_scaled(g, &dyb, &dbb, 1.0)?,
                    // Accumulating dy once more into db gives 2·dy.
                    ew::accumulate(g, &dyb, &dbb, 1.0)?,
                ])?;
                c.check("forward", &cpu::add_forward(&a, &b), &yb, FORWARD)?;
                c.check("backward", &dy, &dab, GRADIENT)?;
                let two_dy = cpu::scale_forward(2.0, &dy);
                c.check("backward_accumulate", &two_dy, &dbb, GRADIENT)
            },
        ));
        // Gradient accumulation: 3 to 7 addends in one dispatch.
        for k in [3, 5, 7] {
            v.push(Case::new(
                "elementwise",
                "sum",
                format!("{k} x [{n}]"),
                move |c| {
                    let xs: Vec<Vec<f32>> = (0..k).map(|_| c.randn(n)).collect();
                    let bufs = xs
                        .iter()
                        .map(|x| c.input(x))
                        .collect::<Result<Vec<_>, _>>()?;
                    let yb = c.output(n)?;
                    let refs: Vec<&crate::engine::Buf> = bufs.iter().collect();
                    c.run(&[ew::sum_forward(c.gpu, &refs, &yb)?])?;
                    let slices: Vec<&[f32]> = xs.iter().map(|x| &x[..]).collect();
                    c.check("forward", &cpu::sum_forward(&slices), &yb, FORWARD)
                },
            ));
        }
        v.push(Case::new(
            "elementwise",
            "mul",
            format!("[{n}]"),
            move |c| {
                let (a, b, dy) = (c.randn(n), c.randn(n), c.randn(n));
                let (ab, bb, dyb) = (c.input(&a)?, c.input(&b)?, c.input(&dy)?);
                let (yb, dab, dbb) = (c.output(n)?, c.output(n)?, c.output(n)?);
                let g = c.gpu;
                c.run(&[
                    ew::mul_forward(g, &ab, &bb, &yb)?,
                    ew::mul_backward(g, &ab, &bb, &dyb, &dab, &dbb)?,
                ])?;
                let (da, db) = cpu::mul_backward(&a, &b, &dy);
                c.check("forward", &cpu::mul_forward(&a, &b), &yb, FORWARD)?;
                c.check("backward_a", &da, &dab, GRADIENT)?;
                c.check("backward_b", &db, &dbb, GRADIENT)
            },
        ));
        // Rows as long as a mixed op's candidate list where n allows.
        let cols = [8, 5, 3, 1].into_iter().find(|c| n % c == 0).unwrap_or(1);
        v.push(Case::new(
            "elementwise",
            "row_scale",
            format!("[{},{cols}]", n / cols),
            move |c| {
                let rows = n / cols;
                let (x, s, dy) = (c.randn(n), c.randn(rows), c.randn(n));
                let (xb, sb, dyb) = (c.input(&x)?, c.input(&s)?, c.input(&dy)?);
                let (yb, dxb, dsb) = (c.output(n)?, c.output(n)?, c.output(rows)?);
                let g = c.gpu;
                c.run(&[
                    ew::row_scale_forward(g, &xb, &sb, &yb)?,
                    ew::row_scale_forward(g, &dyb, &sb, &dxb)?,
                    ew::row_scale_backward_scale(g, &xb, &dyb, &dsb)?,
                ])?;
                let (dx, ds) = cpu::row_scale_backward(&x, &s, &dy);
                c.check("forward", &cpu::row_scale_forward(&x, &s), &yb, FORWARD)?;
                c.check("backward_input", &dx, &dxb, GRADIENT)?;
                c.check("backward_scale", &ds, &dsb, GRADIENT)
            },
        ));
        v.push(Case::new(
            "elementwise",
            "scale",
            format!("[{n}]"),
            move |c| {
                let (x, dy) = (c.randn(n), c.randn(n));
                let s = c.randn(1)[0];
                let (sb, xb, dyb) = (c.input(&[s])?, c.input(&x)?, c.input(&dy)?);
                let (yb, dxb, dsb) = (c.output(n)?, c.output(n)?, c.output(1)?);
                let g = c.gpu;
                let mut ks = vec![
                    ew::scale_forward(g, &sb, &xb, &yb, 1.0)?,
                    ew::scale_forward(g, &sb, &dyb, &dxb, 1.0)?,
                ];
                ks.extend(crate::ops::reduce::dot_rows(g, &xb, &dyb, 1, 1.0, &dsb)?);
                c.run(&ks)?;
                let (dx, ds) = cpu::scale_backward(s, &x, &dy);
                c.check("forward", &cpu::scale_forward(s, &x), &yb, FORWARD)?;
                c.check("backward_input", &dx, &dxb, GRADIENT)?;
                c.check("backward_scalar", &[ds], &dsb, GRADIENT)
            },
        ));
        v.push(Case::new(
            "elementwise",
            "axpy",
            format!("[{n}]"),
            move |c| {
                let (x, d) = (c.randn(n), c.randn(n));
                let s = c.randn(1)[0];
                let (xb, db, sb) = (c.input(&x)?, c.input(&d)?, c.input(&[s])?);
                let yb = c.output(n)?;
                c.run(&[ew::axpy(c.gpu, &xb, &db, &sb, &yb, -0.5)?])?;
                c.check("forward", &cpu::axpy(&x, &d, s, -0.5), &yb, FORWARD)
            },
        ));
    }
    v
}
