//! Cases for `ops::batchnorm`.

use super::{Case, Ctx, Level, FORWARD, GRADIENT};
use crate::engine::Buf;
use crate::ops::batchnorm::{self as bn, cpu, Shape};

/// Shapes for training (`true`) or evaluation mode. Training skips
/// n = hw = 1, whose variance is degenerate (PyTorch refuses it too).
fn shapes(level: Level, training: bool) -> Vec<Shape> {
    match level {
        // An affine case (so the γ, β gradient rows appear), the
        // supernet's affine-free BN, and a plane of whole float4s (the
        // float4 entries); batches over 8, so that the evaluation entries'
        // invocations take several groups of 8 items, the last one short.
        Level::Quick => vec![
            Shape::new(2, 5, 169, true),
            Shape::new(6, 16, 49, false),
            Shape::new(3, 3, 36, true),
            Shape::new(37, 4, 36, false),
            Shape::new(17, 3, 49, true),
            // Planes longer than a workgroup (the training entries' walk
            // then steps less than a plane): 27×27 values, 34×34 float4s.
            Shape::new(2, 3, 729, false),
            Shape::new(2, 2, 1156, true),
        ],
        Level::Full => {
            let mut v = Vec::new();
            for (i, hw) in [1, 49, 169, 784].into_iter().enumerate() {
                for (j, c) in [1, 3, 5, 16].into_iter().enumerate() {
                    let mut n = 1 + (i + j) % 4;
                    if training && hw == 1 && n == 1 {
                        n = 3;
                    }
                    v.push(Shape::new(n, c, hw, (i + j) % 2 == 0));
                }
            }
            v.extend([
                Shape::new(6, 16, 49, false),
                Shape::new(9, 3, 36, true),
                Shape::new(37, 4, 36, false),
                Shape::new(17, 3, 49, true),
                Shape::new(2, 3, 729, false),
                Shape::new(3, 2, 1156, true),
            ]);
            v
        }
    }
}

/// γ, β [c] on the host and uploaded, when the shape is affine.
struct Affine(Option<(Vec<f32>, Vec<f32>, Buf, Buf)>);

impl Affine {
    fn draw(c: &mut Ctx, s: &Shape) -> anyhow::Result<Affine> {
        if !s.affine {
            return Ok(Affine(None));
        }
        let (gamma, beta) = (c.uniform(s.c, 0.5, 1.5), c.randn(s.c));
        let (gb, bb) = (c.input(&gamma)?, c.input(&beta)?);
        Ok(Affine(Some((gamma, beta, gb, bb))))
    }
    fn host(&self) -> (Option<&[f32]>, Option<&[f32]>) {
        match &self.0 {
            Some((g, b, _, _)) => (Some(g), Some(b)),
            None => (None, None),
        }
    }
    fn device(&self) -> (Option<&Buf>, Option<&Buf>) {
        match &self.0 {
            Some((_, _, g, b)) => (Some(g), Some(b)),
            None => (None, None),
        }
    }
}

/// Running statistics as a trained network holds them: means near 0,
/// variances in [0.5, 2).
fn draw_running(c: &mut Ctx, s: &Shape) -> (Vec<f32>, Vec<f32>) {
    let mean = c.randn(s.c).into_iter().map(|v| 0.5 * v).collect();
    (mean, c.uniform(s.c, 0.5, 2.0))
}

fn train_case(s: Shape) -> Case {
    Case::new("batchnorm", "batchnorm_train", s.to_string(), move |c| {
        // Off-centre inputs: a one-pass E[x²] − E[x]² would lose digits here.
        let x: Vec<f32> = c
            .randn(s.len())
            .into_iter()
            .map(|v| 2.0 * v + 3.0)
            .collect();
        let mut x = x;
        if s.relu {
            cpu::clear_of_relu_kink(&s, &mut x, 1e-3);
        }
        let dy = c.randn(s.len());
        let affine = Affine::draw(c, &s)?;
        let (mut rm, mut rv) = draw_running(c, &s);
        let (xb, dyb, rmb, rvb) = (c.input(&x)?, c.input(&dy)?, c.input(&rm)?, c.input(&rv)?);
        let (yb, dxb) = (c.output(s.len())?, c.output(s.len())?);
        let (meanb, invstdb) = (c.output(s.c)?, c.output(s.c)?);
        let (dgb, dbb) = (c.output(s.c)?, c.output(s.c)?);

        let (gamma, beta) = affine.host();
        let (y, mean, invstd) = cpu::train_forward(&s, &x, gamma, beta, &mut rm, &mut rv);
        let (dx, dgamma, dbeta) = cpu::train_backward(&s, &x, &mean, &invstd, gamma, &dy);

        let (gb, bb) = affine.device();
        let (dg, db) = if s.affine {
            (Some(&dgb), Some(&dbb))
        } else {
            (None, None)
        };
        let g = c.gpu;
        // The backward reads the GPU's own saved statistics.
        c.run(&[
            bn::train_forward(g, &s, &xb, gb, bb, &yb, &meanb, &invstdb, &rmb, &rvb)?,
            bn::train_backward(g, &s, &xb, &meanb, &invstdb, gb, &dyb, &dxb, dg, db)?,
        ])?;
        c.check("forward", &y, &yb, FORWARD)?;
        c.check("saved_mean", &mean, &meanb, FORWARD)?;
        c.check("saved_invstd", &invstd, &invstdb, FORWARD)?;
        c.check("running_mean", &rm, &rmb, FORWARD)?;
        c.check("running_var", &rv, &rvb, FORWARD)?;
        c.check("backward_input", &dx, &dxb, GRADIENT)?;
        if s.affine {
            c.check("backward_gamma", &dgamma, &dgb, GRADIENT)?;
            c.check("backward_beta", &dbeta, &dbb, GRADIENT)?;
        }
        Ok(())
    })
}

fn eval_case(s: Shape) -> Case {
    Case::new("batchnorm", "batchnorm_eval", s.to_string(), move |c| {
        let (x, dy) = (c.randn(s.len()), c.randn(s.len()));
        let affine = Affine::draw(c, &s)?;
        let (rm, rv) = draw_running(c, &s);
        let (xb, dyb, rmb, rvb) = (c.input(&x)?, c.input(&dy)?, c.input(&rm)?, c.input(&rv)?);
        let (yb, dxb) = (c.output(s.len())?, c.output(s.len())?);
        let ((gamma, beta), (gb, bb)) = (affine.host(), affine.device());
        let g = c.gpu;
        let mut ks = vec![bn::eval_forward(g, &s, &xb, &rmb, &rvb, gb, bb, &yb)?];
        // Evaluation's fused ReLU is forward only (nothing differentiates
        // through evaluation-mode batch norm).
        if !s.relu {
            ks.push(bn::eval_backward(g, &s, &rvb, gb, &dyb, &dxb)?);
        }
        c.run(&ks)?;
        let y = cpu::eval_forward(&s, &x, &rm, &rv, gamma, beta);
        c.check("forward", &y, &yb, FORWARD)?;
        if s.relu {
            return Ok(());
        }
        let dx = cpu::eval_backward(&s, &rv, gamma, &dy);
        c.check("backward_input", &dx, &dxb, GRADIENT)
    })
}

/// The evaluation batch norm folded into a convolution before it (a 3×1
/// one over the plane as a column, with and without its own bias): the GPU
/// against the CPU twin, and the folded convolution against the batch norm
/// of the convolution's output (CPU references).
fn fold_case(s: Shape, bias: bool) -> Case {
    let label = format!("{s} fold{}", if bias { " bias" } else { "" });
    Case::new("batchnorm", "batchnorm_fold", label, move |c| {
        use crate::ops::conv2d::{cpu as conv, Conv2dShape};
        let cs = Conv2dShape {
            n: s.n,
            c_in: 3,
            h: s.hw,
            w: 1,
            c_out: s.c,
            kh: 3,
            kw: 1,
            stride: 1,
            pad_h: 1,
            pad_w: 0,
            dilation: 1,
            groups: 1,
        };
        let (x, w) = (c.randn(cs.x_len()), c.randn(cs.w_len()));
        let b = bias.then(|| c.randn(s.c));
        let affine = Affine::draw(c, &s)?;
        let (rm, rv) = draw_running(c, &s);
        let ((gamma, beta), (gb, bb)) = (affine.host(), affine.device());
        let per = cs.w_len() / s.c;
        let (wf, bf) = cpu::fold(&s, per, 0, &w, b.as_deref(), &rm, &rv, gamma, beta);
        let y = cpu::eval_forward(
            &s,
            &conv::forward(&cs, &x, &w, b.as_deref()),
            &rm,
            &rv,
            gamma,
            beta,
        );
        c.check_values(
            "cpu_fold",
            &y,
            &conv::forward(&cs, &x, &wf, Some(&bf)),
            FORWARD,
        );
        let (rmb, rvb) = (c.input(&rm)?, c.input(&rv)?);
        // The GPU fold of a convolution holding the batch norm's channels
        // from c_off on, against the CPU's (wf, bf).
        let gpu_fold = |c: &mut Ctx,
                        c_off: usize,
                        (w, b): (&[f32], Option<&[f32]>),
                        (wf, bf): (&[f32], &[f32])|
         -> anyhow::Result<()> {
            let wb = c.input(w)?;
            let bb_conv = b.map(|b| c.input(b)).transpose()?;
            let (wfb, bfb) = (c.output(w.len())?, c.output(bf.len())?);
            let k = bn::fold(
                c.gpu,
                &s,
                per,
                c_off,
                &wb,
                bb_conv.as_ref(),
                &rmb,
                &rvb,
                gb,
                bb,
                &wfb,
                &bfb,
            )?;
            c.run(&[k])?;
            c.check("weights", wf, &wfb, FORWARD)?;
            c.check("bias", bf, &bfb, FORWARD)
        };
        gpu_fold(c, 0, (&w, b.as_deref()), (&wf, &bf))?;
        if s.c < 2 {
            return Ok(());
        }
        // A convolution holding channels 1.. of the batch norm (a part of a
        // concatenation): the CPU fold is the whole one's rows from 1 on,
        // and the GPU's agrees with it.
        let (w1, b1) = (&w[per..], b.as_deref().map(|b| &b[1..]));
        let (wf1, bf1) = cpu::fold(&s, per, 1, w1, b1, &rm, &rv, gamma, beta);
        c.check_values("cpu_fold", &wf[per..], &wf1, FORWARD);
        c.check_values("cpu_fold", &bf[1..], &bf1, FORWARD);
        gpu_fold(c, 1, (w1, b1), (&wf1, &bf1))
    })
}

pub fn cases(level: Level) -> Vec<Case> {
    let mut v: Vec<Case> = with_relu(shapes(level, true))
        .into_iter()
        .map(train_case)
        .collect();
    v.extend(with_relu(shapes(level, false)).into_iter().map(eval_case));
    for (i, s) in shapes(level, false).into_iter().enumerate() {
        v.push(fold_case(s, i % 2 == 0));
    }
    v
}

/// `shapes`, then the non-affine ones again with the fused ReLU.
fn with_relu(shapes: Vec<Shape>) -> Vec<Shape> {
    let relu: Vec<Shape> = shapes
        .iter()
        .filter(|s| !s.affine)
        .map(|s| s.with_relu())
        .collect();
    shapes.into_iter().chain(relu).collect()
}
