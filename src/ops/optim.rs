//! Optimizers, updating parameters and state in place: SGD with momentum
//! (torch.optim.SGD), Adam and AdamW (torch.optim.Adam / AdamW), and global
//! gradient-norm clipping (torch.nn.utils.clip_grad_norm_). Shader:
//! `shaders/optim.wgsl`; CPU twin: `cpu`.
//!
//! Hyperparameters that change per step (a scheduled learning rate, Adam's
//! step count) live in the kernel's uniform: build once, then each step call
//! `kernel.set_params(gpu, &sgd_params(&hyper))` (or `adam_params`). The
//! words do not depend on the tensor, so one vector serves every parameter.
//!
//! The gradient is multiplied by `coef[0]` first, the clipping coefficient
//! that `clip_coef` computes (a buffer holding 1.0 when not clipping).
//! State buffers (momentum, m, v) must start at zero.

use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel, WG};
use crate::ops::{elementwise, reduce};

/// torch.optim.SGD hyperparameters (dampening 0, no Nesterov).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdHyper {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// torch.optim.Adam hyperparameters; `decoupled` gives AdamW's decay.
/// `step` is PyTorch's t, counting from 1 for the first update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
    pub step: u32,
}

impl AdamHyper {
    /// PyTorch's defaults (β = (0.9, 0.999), eps 1e-8, no decay) at step 1.
    pub fn new(lr: f32) -> AdamHyper {
        AdamHyper {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            step: 1,
        }
    }
    /// (step size lr / (1 − β1^t), √(1 − β2^t)), computed in f64 as
    /// PyTorch does with Python floats.
    fn bias_corrections(&self) -> (f32, f32) {
        assert!(self.step >= 1, "Adam's step t counts from 1");
        let t = self.step as i32;
        let bc1 = 1.0 - (self.beta1 as f64).powi(t);
        let bc2 = 1.0 - (self.beta2 as f64).powi(t);
        ((self.lr as f64 / bc1) as f32, bc2.sqrt() as f32)
    }
    /// (L2 weight decay added to the gradient, factor on the parameter).
    fn decays(&self) -> (f32, f32) {
        if self.decoupled {
            (0.0, 1.0 - self.lr * self.weight_decay)
        } else {
            (self.weight_decay, 1.0)
        }
    }
}

/// The uniform words (shader `Params`) of an SGD step.
pub fn sgd_params(h: &SgdHyper) -> Vec<u32> {
    words(h.lr, h.momentum, 0.0, 0.0, h.weight_decay, 1.0, 1.0, 0.0)
}

/// The uniform words of an Adam step at `h.step`.
pub fn adam_params(h: &AdamHyper) -> Vec<u32> {
    let (step_size, bc2_sqrt) = h.bias_corrections();
    let (l2, decay) = h.decays();
    words(step_size, h.beta1, h.beta2, h.eps, l2, decay, bc2_sqrt, 0.0)
}

/// Params in the shader's field order.
#[allow(clippy::too_many_arguments)]
fn words(
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decay: f32,
    bc2_sqrt: f32,
    max_norm: f32,
) -> Vec<u32> {
    [
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decay,
        bc2_sqrt,
        max_norm,
    ]
    .iter()
    .map(|v| v.to_bits())
    .collect()
}

/// The CPU reference, element by element in f32 like PyTorch.
pub mod cpu {
    use super::{AdamHyper, SgdHyper};

    /// One SGD step; `buf` is the momentum buffer, `None` before the first
    /// step (PyTorch then clones the gradient) and unused when μ = 0.
    pub fn sgd(
        h: &SgdHyper,
        coef: f32,
        param: &mut [f32],
        grad: &[f32],
        buf: &mut Option<Vec<f32>>,
    ) {
        let g: Vec<f32> = param
            .iter()
            .zip(grad)
            .map(|(&w, &g)| g * coef + h.weight_decay * w)
            .collect();
        let step = if h.momentum == 0.0 {
            g
        } else {
            let b = match buf.take() {
                None => g,
                Some(b) => b
                    .iter()
                    .zip(&g)
                    .map(|(&b, &g)| h.momentum * b + g)
                    .collect(),
            };
            buf.insert(b).clone()
        };
        for (w, s) in param.iter_mut().zip(&step) {
            *w -= h.lr * s;
        }
    }

    /// One Adam (or AdamW) step at `h.step`; m and v start at zero.
    pub fn adam(
        h: &AdamHyper,
        coef: f32,
        param: &mut [f32],
        grad: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let (step_size, bc2_sqrt) = h.bias_corrections();
        let (l2, decay) = h.decays();
        for i in 0..param.len() {
            let g = grad[i] * coef + l2 * param[i];
            m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g;
            v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g * g;
            let denom = v[i].sqrt() / bc2_sqrt + h.eps;
            param[i] = param[i] * decay - step_size * (m[i] / denom);
        }
    }

    /// clip_grad_norm_'s factor min(1, max_norm / (‖g‖ + 1e-6)), ‖g‖ the
    /// L2 norm over all tensors together.
    pub fn clip_coef(grads: &[&[f32]], max_norm: f32) -> f32 {
        let sq: f64 = grads
            .iter()
            .flat_map(|g| g.iter())
            .map(|&v| v as f64 * v as f64)
            .sum();
        (max_norm / (sq.sqrt() as f32 + 1e-6)).min(1.0)
    }

    /// The L2 norm over all tensors together, times `scale` or, with
    /// `inverse`, `scale` over it (kept finite for a zero norm).
    pub fn scaled_norm(tensors: &[&[f32]], scale: f32, inverse: bool) -> f32 {
        let sq: f64 = tensors
            .iter()
            .flat_map(|g| g.iter())
            .map(|&v| v as f64 * v as f64)
            .sum();
        let norm = sq.sqrt() as f32;
        if inverse {
            scale / norm.max(1e-12)
        } else {
            scale * norm
        }
    }
}

const SHADER: &str = "optim";

/// An in-place update of `param` (slot 4) with the gradient scaled by
/// `coef` (slot 2); `tensors` (gradient and state) match `param` in length.
fn update(
    gpu: &Gpu,
    entry: &'static str,
    params: &[u32],
    param: &Buf,
    coef: &Buf,
    tensors: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    assert_eq!(coef.len, 1, "{entry}: the clipping coefficient is a scalar");
    for (_, b) in tensors {
        assert_eq!(b.len, param.len, "{entry}: tensor length vs parameter");
    }
    let mut slots = vec![(4, param), (2, coef)];
    slots.extend_from_slice(tensors);
    gpu.kernel(SHADER, entry, params, &slots, grid_1d(param.len, WG))
}

/// param ← param − lr · buf with buf ← μ·buf + (grad·coef[0] + wd·param).
/// `momentum` must start at zero (it equals PyTorch's first-step clone).
pub fn sgd(
    gpu: &Gpu,
    h: &SgdHyper,
    param: &Buf,
    grad: &Buf,
    momentum: &Buf,
    coef: &Buf,
) -> Result<Kernel, GpuError> {
    let tensors = [(1, grad), (5, momentum)];
    update(gpu, "sgd", &sgd_params(h), param, coef, &tensors)
}

/// One Adam/AdamW step of param, m and v (zero before the first step).
pub fn adam(
    gpu: &Gpu,
    h: &AdamHyper,
    param: &Buf,
    grad: &Buf,
    m: &Buf,
    v: &Buf,
    coef: &Buf,
) -> Result<Kernel, GpuError> {
    let tensors = [(1, grad), (5, m), (6, v)];
    update(gpu, "adam", &adam_params(h), param, coef, &tensors)
}

/// Each tensor's squared norm into a scratch buffer, then `entry` (one
/// invocation) combines them with `scale` into out[0].
fn norm_kernels(
    gpu: &Gpu,
    tensors: &[&Buf],
    entry: &'static str,
    scale: f32,
    out: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    assert!(!tensors.is_empty(), "{entry}: no tensors");
    let norms = gpu.alloc("optim.norms", tensors.len())?;
    let mut ks = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        ks.extend(reduce::sqnorm_into(gpu, t, &norms, i)?);
    }
    let params = words(0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, scale);
    ks.push(gpu.kernel(SHADER, entry, &params, &[(3, &norms), (7, out)], [1, 1, 1])?);
    Ok(ks)
}

/// coef[0] = min(1, max_norm / (‖(g_1, …, g_n)‖ + 1e-6)).
pub fn clip_coef(
    gpu: &Gpu,
    grads: &[&Buf],
    max_norm: f32,
    coef: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    norm_kernels(gpu, grads, "clip_coef", max_norm, coef)
}

/// out[0] = scale · ‖(t_1, …, t_n)‖ or, with `inverse`, scale / ‖…‖
/// (the step and inverse step of a finite difference along t).
pub fn scaled_norm(
    gpu: &Gpu,
    tensors: &[&Buf],
    scale: f32,
    inverse: bool,
    out: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    let entry = if inverse {
        "scaled_inv_norm"
    } else {
        "scaled_norm"
    };
    norm_kernels(gpu, tensors, entry, scale, out)
}

/// clipped_i = coef[0] · grads_i, for callers that want the clipped
/// gradients materialized (the optimizer kernels apply coef themselves).
pub fn scale_grads(
    gpu: &Gpu,
    coef: &Buf,
    grads: &[&Buf],
    clipped: &[&Buf],
) -> Result<Vec<Kernel>, GpuError> {
    assert_eq!(
        grads.len(),
        clipped.len(),
        "scale_grads: one output per gradient"
    );
    grads
        .iter()
        .zip(clipped)
        .map(|(g, out)| elementwise::scale_forward(gpu, coef, g, out, 1.0))
        .collect()
}
