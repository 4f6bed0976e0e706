//! The DARTS mixed op: y = Σ_k w[k] · x_k over K candidate tensors of n
//! elements each, read in place (no stacked copy), and `w` a K-vector
//! (softmax(α)·β, computed elsewhere). Shader: `shaders/mix.wgsl`; CPU
//! twin: `cpu`.

use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel, WG};
use crate::ops::reduce;

/// K tensors of n elements each.
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
}

/// The CPU reference; `xs` are the K tensors.
pub mod cpu {
    pub fn forward(xs: &[&[f32]], w: &[f32]) -> Vec<f32> {
        let n = xs[0].len();
        (0..n)
            .map(|i| {
                w.iter()
                    .zip(xs)
                    .map(|(&wk, x)| wk as f64 * x[i] as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }
    /// dx_k = w[k] · dy.
    pub fn backward_inputs(w: &[f32], dy: &[f32]) -> Vec<Vec<f32>> {
        w.iter()
            .map(|&wk| dy.iter().map(|&g| wk * g).collect())
            .collect()
    }
    /// dw[k] = Σ_i x_k[i] · dy[i].
    pub fn backward_weights(xs: &[&[f32]], dy: &[f32]) -> Vec<f32> {
        xs.iter()
            .map(|x| {
                x.iter()
                    .zip(dy)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }
}

const SHADER: &str = "mix";
/// Tensors per dispatch (the shader's GROUP; also `mix_bn::forward`'s, so
/// that its sums come in this order).
pub(crate) const GROUP: usize = 6;
/// Elements per dot-product chunk (the shader's WG · ITEMS).
const CHUNK: usize = 256 * 16;

/// Validate `s` and the lengths of the K tensors, w and the n-sized one.
fn check(s: &MixShape, xs: &[&Buf], w: &Buf, single: &Buf) {
    s.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        xs.len(),
        s.k,
        "weighted_sum: {} tensors, expected {}",
        xs.len(),
        s.k
    );
    for (k, x) in xs.iter().enumerate() {
        assert_eq!(
            x.len, s.n,
            "weighted_sum: tensor {k} has {} elements, expected {}",
            x.len, s.n
        );
    }
    assert_eq!(
        w.len, s.k,
        "weighted_sum: weights have {} elements, expected {}",
        w.len, s.k
    );
    assert_eq!(
        single.len, s.n,
        "weighted_sum: y/dy has {} elements, expected {}",
        single.len, s.n
    );
}

/// One dispatch of `entry` per group of up to 6 tensors (slots 1..=6), with
/// the `other` bindings; the tensors are candidates `first`, `first` + 1,
/// …. Slots a short group leaves unused repeat its first tensor when the
/// entry only reads them; a writable buffer may be bound
/// once per dispatch, so for `writes` each gets a scratch buffer of its own
/// (never touched either way).
#[allow(clippy::too_many_arguments)]
fn per_group(
    gpu: &Gpu,
    s: &MixShape,
    entry: &'static str,
    tensors: &[&Buf],
    writes: bool,
    grid: [u32; 3],
    chunks: usize,
    other: &[(u32, &Buf)],
    first: usize,
) -> Result<Vec<Kernel>, GpuError> {
    let mut out = Vec::new();
    for (gi, group) in tensors.chunks(GROUP).enumerate() {
        let k0 = first + gi * GROUP;
        let params = [s.n, group.len(), k0, (k0 > 0) as usize, chunks].map(|v| v as u32);
        let spare: Vec<Buf> = if writes {
            (group.len()..GROUP)
                .map(|_| gpu.alloc("mix.unused", 4))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let mut slots: Vec<(u32, &Buf)> = other.to_vec();
        for j in 0..GROUP {
            let b = match group.get(j) {
                Some(&t) => t,
                None if writes => &spare[j - group.len()],
                None => group[0],
            };
            slots.push((1 + j as u32, b));
        }
        out.push(gpu.kernel(SHADER, entry, &params, &slots, grid)?);
    }
    Ok(out)
}

/// The float4 entry and its grid where the length divides by 4, else the
/// scalar one.
fn by_float4(s: &MixShape, scalar: &'static str, f4: &'static str) -> (&'static str, [u32; 3]) {
    if s.n.is_multiple_of(4) {
        (f4, grid_1d(s.n / 4, WG))
    } else {
        (scalar, grid_1d(s.n, WG))
    }
}

/// y = Σ_k w[k] · xs[k]: ⌈K / 6⌉ dispatches, the later ones adding to y.
pub fn forward(
    gpu: &Gpu,
    s: &MixShape,
    xs: &[&Buf],
    w: &Buf,
    y: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    check(s, xs, w, y);
    let (entry, grid) = by_float4(s, "forward", "forward4");
    per_group(gpu, s, entry, xs, false, grid, 0, &[(7, w), (8, y)], 0)
}

/// dxs[k] = w[k] · dy, each into its own tensor.
pub fn backward_inputs(
    gpu: &Gpu,
    s: &MixShape,
    w: &Buf,
    dy: &Buf,
    dxs: &[&Buf],
) -> Result<Vec<Kernel>, GpuError> {
    check(s, dxs, w, dy);
    let (entry, grid) = by_float4(s, "backward_inputs", "backward_inputs4");
    let other = [(7, w), (8, dy)];
    per_group(gpu, s, entry, dxs, true, grid, 0, &other, 0)
}

/// dx = w[k] · dy: one candidate's share of `backward_inputs` (the others'
/// gradients come another way, e.g. through `mix_bn`).
pub fn backward_input(
    gpu: &Gpu,
    s: &MixShape,
    k: usize,
    w: &Buf,
    dy: &Buf,
    dx: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    let dxs = vec![dx; s.k];
    check(s, &dxs, w, dy);
    assert!(k < s.k, "weighted_sum: candidate {k} of {}", s.k);
    let (entry, grid) = by_float4(s, "backward_inputs", "backward_inputs4");
    let other = [(7, w), (8, dy)];
    per_group(gpu, s, entry, &[dx], true, grid, 0, &other, k)
}

/// dw[k] = Σ_i xs[k][i] · dy[i]: partial dot products per chunk of 4,096
/// elements, 6 tensors per dispatch, then reduce's pass 2 summing them.
pub fn backward_weights(
    gpu: &Gpu,
    s: &MixShape,
    xs: &[&Buf],
    dy: &Buf,
    dw: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    check(s, xs, dw, dy);
    let chunks = s.n.div_ceil(CHUNK);
    let partial = gpu.alloc("mix.dw_partial", s.k * chunks)?;
    let grid = [chunks as u32, 1, 1];
    let mut out = per_group(
        gpu,
        s,
        "dot_partial",
        xs,
        false,
        grid,
        chunks,
        &[(8, dy), (9, &partial)],
        0,
    )?;
    out.push(reduce::finish_rows(gpu, &partial, s.k, chunks, 1.0, dw, 0)?);
    Ok(out)
}
