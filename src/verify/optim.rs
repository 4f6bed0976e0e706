//! Cases for `ops::optim`: three consecutive optimizer steps on the GPU (a
//! fresh gradient and a cosine-scheduled learning rate written with
//! `set_params` before each) against three CPU steps; gradient clipping
//! active and inactive.

use super::{Case, Ctx, Level, FORWARD};
use crate::engine::{Buf, Kernel};
use crate::ops::optim::{self, cpu, AdamHyper, SgdHyper};

const STEPS: u32 = 3;

fn sizes(level: Level) -> Vec<usize> {
    match level {
        Level::Quick => vec![4097],
        // 1, 7, one past a reduction chunk, large and odd.
        Level::Full => vec![1, 7, 4097, 100_003],
    }
}

/// lr of step `t` (from 0) of a cosine schedule starting at `lr0`.
fn cosine(lr0: f32, t: u32) -> f32 {
    lr0 * 0.5 * (1.0 + (std::f32::consts::PI * t as f32 / STEPS as f32).cos())
}

/// The gradient's clipping: half the expected norm of a standard normal
/// gradient (so clipping is active), or none (`coef` keeps 1.0).
struct Clip {
    max_norm: Option<f32>,
}

impl Clip {
    fn new(clip: bool, n: usize) -> Clip {
        Clip {
            max_norm: clip.then(|| 0.5 * (n as f32).sqrt()),
        }
    }
    fn label(&self) -> &'static str {
        if self.max_norm.is_some() {
            " clipped"
        } else {
            ""
        }
    }
    /// The kernels that write the coefficient into `coef` before a step.
    fn kernels(&self, c: &Ctx, grad: &Buf, coef: &Buf) -> anyhow::Result<Vec<Kernel>> {
        Ok(match self.max_norm {
            Some(max_norm) => optim::clip_coef(c.gpu, &[grad], max_norm, coef)?,
            None => Vec::new(),
        })
    }
    /// The CPU coefficient for `grad`.
    fn coef(&self, grad: &[f32]) -> f32 {
        self.max_norm.map_or(1.0, |m| cpu::clip_coef(&[grad], m))
    }
}

/// Run STEPS steps: each draws a gradient, uploads it to `grad`, rewrites
/// the last kernel's params with `params(t)`, runs `ks` and then `cpu(t, g)`.
fn steps(
    c: &mut Ctx,
    n: usize,
    grad: &Buf,
    ks: &[Kernel],
    params: impl Fn(u32) -> Vec<u32>,
    mut cpu_step: impl FnMut(u32, &[f32]),
) -> anyhow::Result<()> {
    let step = ks.last().expect("an optimizer kernel");
    for t in 0..STEPS {
        let g = c.randn(n);
        c.gpu.write(grad, &g);
        step.set_params(c.gpu, &params(t));
        c.run(ks)?;
        cpu_step(t, &g);
    }
    Ok(())
}

fn sgd_case(n: usize, momentum: f32, weight_decay: f32, clip: Clip) -> Case {
    let shape = format!(
        "[{n}] momentum {momentum} wd {weight_decay}{}",
        clip.label()
    );
    Case::new("optim", "sgd", shape, move |c| {
        let hyper = |t| SgdHyper {
            lr: cosine(0.1, t),
            momentum,
            weight_decay,
        };
        let mut param = c.randn(n);
        let (pb, gb, coef) = (c.input(&param)?, c.output(n)?, c.input(&[1.0])?);
        let mb = c.gpu.zeros("momentum", n)?;
        let mut ks = clip.kernels(c, &gb, &coef)?;
        ks.push(optim::sgd(c.gpu, &hyper(0), &pb, &gb, &mb, &coef)?);
        let mut buf = None;
        let params = |t| optim::sgd_params(&hyper(t));
        steps(c, n, &gb, &ks, params, |t, g| {
            cpu::sgd(&hyper(t), clip.coef(g), &mut param, g, &mut buf)
        })?;
        c.check("param", &param, &pb, FORWARD)?;
        // PyTorch keeps no momentum buffer when μ = 0.
        if let Some(buf) = buf {
            c.check("momentum", &buf, &mb, FORWARD)?;
        }
        Ok(())
    })
}

fn adam_case(n: usize, weight_decay: f32, decoupled: bool, clip: Clip) -> Case {
    let kind = if decoupled { "adamw" } else { "adam" };
    let shape = format!("[{n}] {kind} wd {weight_decay}{}", clip.label());
    Case::new("optim", "adam", shape, move |c| {
        let hyper = |t: u32| AdamHyper {
            weight_decay,
            decoupled,
            step: t + 1,
            ..AdamHyper::new(cosine(0.01, t))
        };
        let mut param = c.randn(n);
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        let (pb, gb, coef) = (c.input(&param)?, c.output(n)?, c.input(&[1.0])?);
        let (mb, vb) = (c.input(&m)?, c.input(&v)?);
        let mut ks = clip.kernels(c, &gb, &coef)?;
        ks.push(optim::adam(c.gpu, &hyper(0), &pb, &gb, &mb, &vb, &coef)?);
        let params = |t| optim::adam_params(&hyper(t));
        steps(c, n, &gb, &ks, params, |t, g| {
            cpu::adam(&hyper(t), clip.coef(g), &mut param, g, &mut m, &mut v)
        })?;
        c.check("param", &param, &pb, FORWARD)?;
        c.check("m", &m, &mb, FORWARD)?;
        c.check("v", &v, &vb, FORWARD)
    })
}

/// Global-norm clipping over several tensors at once.
fn clip_case(lens: Vec<usize>, active: bool) -> Case {
    let shape = format!("{lens:?} {}", if active { "active" } else { "inactive" });
    Case::new("optim", "clip_grad_norm", shape, move |c| {
        let grads: Vec<Vec<f32>> = lens.iter().map(|&n| c.randn(n)).collect();
        let slices: Vec<&[f32]> = grads.iter().map(|g| &g[..]).collect();
        let total: f32 = lens.iter().sum::<usize>() as f32;
        // The expected norm is √total: a third of it clips, 10× does not.
        let max_norm = if active {
            total.sqrt() / 3.0
        } else {
            10.0 * total.sqrt()
        };
        let gbs = grads
            .iter()
            .map(|g| c.input(g))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let outs = lens
            .iter()
            .map(|&n| c.output(n))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let coef = c.output(1)?;
        let (grefs, orefs): (Vec<&Buf>, Vec<&Buf>) = (gbs.iter().collect(), outs.iter().collect());
        let mut ks = optim::clip_coef(c.gpu, &grefs, max_norm, &coef)?;
        ks.extend(optim::scale_grads(c.gpu, &coef, &grefs, &orefs)?);
        c.run(&ks)?;
        let k = cpu::clip_coef(&slices, max_norm);
        c.check("coefficient", &[k], &coef, FORWARD)?;
        let want: Vec<f32> = grads.iter().flatten().map(|v| v * k).collect();
        let mut got = Vec::new();
        for o in &outs {
            got.extend(c.gpu.read(o)?);
        }
        c.check_values("clipped_grad", &want, &got, FORWARD);
        Ok(())
    })
}

/// scale·‖t‖ and scale/‖t‖ over several tensors.
fn scaled_norm_case(lens: Vec<usize>) -> Case {
    Case::new("optim", "scaled_norm", format!("{lens:?}"), move |c| {
        let ts: Vec<Vec<f32>> = lens.iter().map(|&n| c.randn(n)).collect();
        let slices: Vec<&[f32]> = ts.iter().map(|t| &t[..]).collect();
        let bufs = ts
            .iter()
            .map(|t| c.input(t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let refs: Vec<&Buf> = bufs.iter().collect();
        let (norm, inv) = (c.output(1)?, c.output(1)?);
        let mut ks = optim::scaled_norm(c.gpu, &refs, 0.01, false, &norm)?;
        ks.extend(optim::scaled_norm(c.gpu, &refs, 0.01, true, &inv)?);
        c.run(&ks)?;
        let want = cpu::scaled_norm(&slices, 0.01, false);
        c.check("norm", &[want], &norm, FORWARD)?;
        c.check(
            "inverse",
            &[cpu::scaled_norm(&slices, 0.01, true)],
            &inv,
            FORWARD,
        )
    })
}

pub fn cases(level: Level) -> Vec<Case> {
    let mut v = Vec::new();
    for n in sizes(level) {
        // (momentum, weight decay, clipped): momentum 0 and 0.9, decay 0
        // and non-zero, clipping active once.
        let sgd: &[(f32, f32, bool)] = match level {
            Level::Quick => &[(0.9, 5e-2, true)],
            Level::Full => &[
                (0.0, 0.0, false),
                (0.9, 0.0, false),
                (0.0, 5e-2, false),
                (0.9, 5e-2, true),
            ],
        };
        for &(momentum, wd, clip) in sgd {
            v.push(sgd_case(n, momentum, wd, Clip::new(clip, n)));
        }
        // (weight decay, decoupled, clipped).
        let adam: &[(f32, bool, bool)] = match level {
            Level::Quick => &[(5e-2, false, true)],
            Level::Full => &[
                (0.0, false, false),
                (5e-2, false, false),
                (5e-2, true, true),
            ],
        };
        for &(wd, decoupled, clip) in adam {
            v.push(adam_case(n, wd, decoupled, Clip::new(clip, n)));
        }
    }
    let lens: Vec<Vec<usize>> = match level {
        Level::Quick => vec![vec![7, 4097, 1]],
        Level::Full => vec![vec![1], vec![7, 4097, 1], vec![100_003, 13, 5]],
    };
    for l in lens {
        for active in [true, false] {
            v.push(clip_case(l.clone(), active));
        }
        v.push(scaled_norm_case(l));
    }
    v
}
