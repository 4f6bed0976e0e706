//! Cases for `ops::pool`.

use super::{Case, Level, FORWARD, GRADIENT};
use crate::ops::batchnorm;
use crate::ops::pool::{self, cpu, Shape};
use crate::ops::pool_rows::{self, Kind};

/// Max and average pooling with an evaluation batch norm fused
/// (`pool::pool_bn_forward`), with and without γ, β, against the CPU's
/// pooling then batch norm.
fn bn_case(s: Shape) -> Case {
    Case::new("pool", "pool_bn", s.to_string(), move |c| {
        let x = c.randn(s.input_len());
        let (mean, var) = (c.randn(s.c), c.uniform(s.c, 0.2, 2.0));
        let (gamma, beta) = (c.uniform(s.c, 0.5, 1.5), c.randn(s.c));
        let (xb, mb, vb) = (c.input(&x)?, c.input(&mean)?, c.input(&var)?);
        let (gb, bb) = (c.input(&gamma)?, c.input(&beta)?);
        let g = c.gpu;
        let mut runs = Vec::new();
        let mut ks = Vec::new();
        for kind in [Kind::Max, Kind::Avg] {
            for affine in [false, true] {
                let bs = batchnorm::Shape::new(s.n, s.c, s.out_h() * s.out_w(), affine);
                let yb = c.output(s.output_len())?;
                let ab = affine.then_some((&gb, &bb));
                ks.push(pool::pool_bn_forward(
                    g,
                    &s,
                    kind,
                    &bs,
                    &xb,
                    (&mb, &vb),
                    ab,
                    &yb,
                )?);
                runs.push((kind, affine, bs, yb));
            }
        }
        c.run(&ks)?;
        for (kind, affine, bs, yb) in runs {
            let y = match kind {
                Kind::Max => cpu::max_pool_forward(&s, &x).0,
                Kind::Avg => cpu::avg_pool_forward(&s, &x),
            };
            let (gm, bt) = (affine.then_some(&gamma[..]), affine.then_some(&beta[..]));
            let want = batchnorm::cpu::eval_forward(&bs, &y, &mean, &var, gm, bt);
            c.check(&format!("{kind:?} affine {affine}"), &want, &yb, FORWARD)?;
        }
        Ok(())
    })
}

/// (shape, ties): with `ties` the input holds only the values 0, 1, 2, so
/// windows have equal maxima and the first-wins rule is exercised.
fn shapes(level: Level) -> Vec<(Shape, bool)> {
    let shaped = |n, c, h, w, k, stride, pad| Shape {
        n,
        c,
        h,
        w,
        k,
        stride,
        pad,
    };
    let shape = |n, c, h, w, stride, pad| shaped(n, c, h, w, 3, stride, pad);
    match level {
        Level::Quick => vec![(shape(2, 3, 13, 13, 2, 1), false)],
        Level::Full => {
            let batch_channels = [(1, 1), (2, 3), (1, 5), (3, 16)];
            let spatial = [(1, 1), (7, 7), (13, 13), (28, 28), (13, 7)];
            let mut v = Vec::new();
            for (i, &(h, w)) in spatial.iter().enumerate() {
                for (j, (stride, pad)) in [(1, 0), (1, 1), (2, 0), (2, 1)].into_iter().enumerate() {
                    let (n, c) = batch_channels[(i + j) % batch_channels.len()];
                    let s = shape(n, c, h, w, stride, pad);
                    // Spatial 1 has no 3×3 window without padding.
                    if s.validate().is_ok() {
                        v.push((s, false));
                    }
                }
            }
            v.push((shape(2, 3, 13, 13, 2, 1), true));
            v.push((shape(1, 5, 7, 7, 1, 1), true));
            // Other windows of the generated kernels (`pool_rows`: k ≤ 5,
            // stride 1 or 2), and shapes only the general kernels take.
            v.push((shaped(2, 3, 13, 11, 2, 2, 1), true));
            v.push((shaped(1, 4, 19, 17, 5, 1, 2), false));
            v.push((shaped(2, 3, 28, 28, 4, 2, 2), false));
            v.push((shaped(1, 3, 13, 13, 3, 3, 1), true));
            v.push((shaped(2, 2, 11, 9, 7, 1, 3), false));
            // The forward's rows of whole float2s and float4s
            // (`pool_rows::Spec::vec`), with ties.
            v.push((shaped(2, 3, 14, 14, 3, 1, 1), true));
            v.push((shaped(1, 2, 9, 10, 5, 2, 2), false));
            v.push((shaped(1, 2, 6, 12, 3, 1, 1), true));
            v
        }
    }
}

fn global_shapes(level: Level) -> Vec<(usize, usize, usize)> {
    match level {
        Level::Quick => vec![(2, 16, 49)],
        Level::Full => vec![(1, 1, 1), (2, 7, 1), (2, 3, 49), (1, 5, 169), (3, 16, 784)],
    }
}

pub fn cases(level: Level) -> Vec<Case> {
    let mut v = Vec::new();
    for (s, ties) in shapes(level) {
        let label = if ties {
            format!("{s} ties")
        } else {
            s.to_string()
        };
        v.push(Case::new("pool", "max_pool", label, move |c| {
            let x = if ties {
                c.uniform(s.input_len(), 0.0, 3.0)
                    .into_iter()
                    .map(f32::floor)
                    .collect()
            } else {
                c.randn(s.input_len())
            };
            let dy = c.randn(s.output_len());
            let (y, arg) = cpu::max_pool_forward(&s, &x);
            let dx = cpu::max_pool_backward(&s, &arg, &dy);
            let (xb, dyb) = (c.input(&x)?, c.input(&dy)?);
            let (yb, argb, dxb) = (
                c.output(s.output_len())?,
                c.output(s.output_len())?,
                c.output(s.input_len())?,
            );
            let g = c.gpu;
            // The backward gathers with the GPU's own argmax.
            c.run(&[
                pool::max_pool_forward(g, &s, &xb, &yb, &argb)?,
                pool::max_pool_backward(g, &s, &argb, &dyb, &dxb)?,
            ])?;
            c.check("forward", &y, &yb, FORWARD)?;
            // Indices are small integers, exact in f32: any mismatch fails.
            let as_f32 = |v: Vec<u32>| v.into_iter().map(|i| i as f32).collect::<Vec<_>>();
            let arg_gpu = as_f32(g.read_u32(&argb)?);
            c.check_values("argmax", &as_f32(arg), &arg_gpu, FORWARD);
            c.check("backward", &dx, &dxb, GRADIENT)
        }));
        if ties {
            continue;
        }
        if pool_rows::fits(&s) {
            v.push(bn_case(s));
        }
        v.push(Case::new("pool", "avg_pool", s.to_string(), move |c| {
            let (x, dy) = (c.randn(s.input_len()), c.randn(s.output_len()));
            let (xb, dyb) = (c.input(&x)?, c.input(&dy)?);
            let (yb, dxb) = (c.output(s.output_len())?, c.output(s.input_len())?);
            let g = c.gpu;
            c.run(&[
                pool::avg_pool_forward(g, &s, &xb, &yb)?,
                pool::avg_pool_backward(g, &s, &dyb, &dxb)?,
            ])?;
            c.check("forward", &cpu::avg_pool_forward(&s, &x), &yb, FORWARD)?;
            c.check("backward", &cpu::avg_pool_backward(&s, &dy), &dxb, GRADIENT)
        }));
    }
    for (n, ch, hw) in global_shapes(level) {
        let shape = format!("[{n},{ch},{hw}]");
        v.push(Case::new("pool", "global_avg_pool", shape, move |c| {
            let planes = n * ch;
            let (x, dy) = (c.randn(planes * hw), c.randn(planes));
            let (xb, dyb) = (c.input(&x)?, c.input(&dy)?);
            let (yb, dxb) = (c.output(planes)?, c.output(planes * hw)?);
            let g = c.gpu;
            c.run(&[
                pool::global_avg_pool_forward(g, &xb, hw, &yb)?,
                pool::global_avg_pool_backward(g, &dyb, hw, &dxb)?,
            ])?;
            let y = cpu::global_avg_pool_forward(&x, hw);
            c.check("forward", &y, &yb, FORWARD)?;
            let dx = cpu::global_avg_pool_backward(&dy, hw);
            c.check("backward", &dx, &dxb, GRADIENT)
        }));
    }
    v
}
