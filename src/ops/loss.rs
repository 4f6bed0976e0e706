//! L1 loss (mean absolute error), the LSTM predictor's loss:
//! L = mean |p − t|, dp = sign(p − t) · dL / n with sign(0) = 0.
//! Shader: `shaders/loss.wgsl`; CPU twin: `cpu`.

use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel, WG};
use crate::ops::reduce;

pub mod cpu {
    pub fn l1_forward(p: &[f32], t: &[f32]) -> f32 {
        let s: f64 = p
            .iter()
            .zip(t)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .sum();
        (s / p.len() as f64) as f32
    }
    /// dp; the target is data, so it gets no gradient.
    pub fn l1_backward(p: &[f32], t: &[f32], dl: f32) -> Vec<f32> {
        let scale = dl as f64 / p.len() as f64;
        p.iter()
            .zip(t)
            .map(|(&a, &b)| {
                // f32::signum(0.0) is 1; the L1 subgradient at 0 is 0.
                let sign = if a > b {
                    1.0
                } else if a < b {
                    -1.0
                } else {
                    0.0
                };
                (sign * scale) as f32
            })
            .collect()
    }
}

const SHADER: &str = "loss";

/// Prediction and target: equally long, not empty.
fn check(p: &Buf, t: &Buf) {
    assert!(p.len > 0, "l1_loss: empty prediction");
    assert_eq!(
        p.len, t.len,
        "l1_loss: prediction has {} elements, target {}",
        p.len, t.len
    );
}

fn dispatch(
    gpu: &Gpu,
    entry: &'static str,
    n: usize,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    let params = [n as u32, (1.0 / n as f32).to_bits()];
    gpu.kernel(SHADER, entry, &params, slots, grid_1d(n, WG))
}

/// loss[0] = mean |p − t|: per-element |p − t|, then reduce's mean.
pub fn l1_forward(gpu: &Gpu, p: &Buf, t: &Buf, loss: &Buf) -> Result<Vec<Kernel>, GpuError> {
    check(p, t);
    assert_eq!(loss.len, 1, "l1_loss: the loss is one element");
    let diff = gpu.alloc("l1.abs_diff", p.len)?;
    let mut ks = vec![dispatch(
        gpu,
        "abs_diff",
        p.len,
        &[(1, p), (2, t), (4, &diff)],
    )?];
    ks.extend(reduce::mean_forward(gpu, &diff, loss)?);
    Ok(ks)
}
/// dp = sign(p − t) · dl[0] / n.
pub fn l1_backward(gpu: &Gpu, p: &Buf, t: &Buf, dl: &Buf, dp: &Buf) -> Result<Kernel, GpuError> {
    check(p, t);
    assert_eq!(
        dp.len, p.len,
        "l1_loss: dp has {} elements, expected {}",
        dp.len, p.len
    );
    assert_eq!(dl.len, 1, "l1_loss: dL is one element");
    dispatch(
        gpu,
        "l1_backward",
        p.len,
        &[(1, p), (2, t), (3, dl), (4, dp)],
    )
}
