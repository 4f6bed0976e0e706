//! The DARTS mixed op: y = Σ_k w[k] · x_k, the K candidate outputs stacked in
//! one buffer `[K, n]` and `w` a K-vector (softmax(α)·β, computed elsewhere).
//! Shader: `shaders/mix.wgsl`; CPU twin: `cpu`.

use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel, WG};
use crate::ops::reduce;

/// K stacked tensors of n elements each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixShape {
    pub k: usize,
    pub n: usize,
}

impl MixShape {
    pub fn validate(&self) -> Result<(), String> {
        if self.k == 0 || self.n == 0 {
            return Err(format!("weighted_sum: empty operand in {self:?}"));
        }
        Ok(())
    }
    /// Elements of the stack [K, n].
    pub fn stacked_len(&self) -> usize {
        self.k * self.n
    }
}

/// The CPU reference; `xs` is the stack [K, n].
pub mod cpu {
    pub fn forward(xs: &[f32], w: &[f32]) -> Vec<f32> {
        let n = xs.len() / w.len();
        (0..n)
            .map(|i| {
                w.iter()
                    .enumerate()
                    .map(|(k, &wk)| wk as f64 * xs[k * n + i] as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }
    /// dx_k = w[k] · dy, stacked [K, n].
    pub fn backward_inputs(w: &[f32], dy: &[f32]) -> Vec<f32> {
        w.iter()
            .flat_map(|&wk| dy.iter().map(move |&g| wk * g))
            .collect()
    }
    /// dw[k] = Σ_i x_k[i] · dy[i].
    pub fn backward_weights(xs: &[f32], dy: &[f32]) -> Vec<f32> {
        crate::ops::reduce::cpu::dot_rows(xs, dy, xs.len() / dy.len())
    }
}

const SHADER: &str = "mix";

/// Validate `s` and the lengths of the stack-sized and n-sized buffers.
fn check(s: &MixShape, stacked: &Buf, w: &Buf, single: &Buf) {
    s.validate().unwrap_or_else(|e| panic!("{e}"));
    let lens = [
        (stacked.len, s.stacked_len()),
        (w.len, s.k),
        (single.len, s.n),
    ];
    for (what, (got, want)) in ["stack", "weights", "single tensor"].iter().zip(lens) {
        assert_eq!(
            got, want,
            "weighted_sum: {what} has {got} elements, expected {want}"
        );
    }
}

fn dispatch(
    gpu: &Gpu,
    entry: &'static str,
    s: &MixShape,
    threads: usize,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    let params = [s.n as u32, s.k as u32];
    gpu.kernel(SHADER, entry, &params, slots, grid_1d(threads, WG))
}

/// y = Σ_k w[k] · xs[k].
pub fn forward(gpu: &Gpu, s: &MixShape, xs: &Buf, w: &Buf, y: &Buf) -> Result<Kernel, GpuError> {
    check(s, xs, w, y);
    dispatch(gpu, "forward", s, s.n, &[(1, xs), (2, w), (3, y)])
}
/// dxs[k] = w[k] · dy, written as one stacked [K, n] buffer.
pub fn backward_inputs(
    gpu: &Gpu,
    s: &MixShape,
    w: &Buf,
    dy: &Buf,
    dxs: &Buf,
) -> Result<Kernel, GpuError> {
    check(s, dxs, w, dy);
    let slots = [(1, dy), (2, w), (3, dxs)];
    dispatch(gpu, "backward_inputs", s, s.stacked_len(), &slots)
}
/// dw[k] = Σ_i xs[k, i] · dy[i] (row dot products, two passes).
pub fn backward_weights(
    gpu: &Gpu,
    s: &MixShape,
    xs: &Buf,
    dy: &Buf,
    dw: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    check(s, xs, dw, dy);
    reduce::dot_rows(gpu, xs, dy, s.k, 1.0, dw)
}
