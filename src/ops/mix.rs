//! The DARTS mixed op: y = Σ_k w[k] · x_k over K candidate tensors of n
//! elements each, read in place (no stacked copy), and `w` a K-vector
//! (softmax(α)·β, computed elsewhere). Shader: `shaders/mix.wgsl`; CPU
//! twin: `cpu`.

use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel, WG};

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
/// Tensors per dispatch (the shader's GROUP).
const GROUP: usize = 6;
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

/// One dispatch of a read-only `entry` per group of up to 6 tensors (slots
/// 1..=6), with the `other` bindings.
fn per_group(
    gpu: &Gpu,
    s: &MixShape,
    entry: &'static str,
    tensors: &[&Buf],
    grid: [u32; 3],
    chunks: usize,
    other: &[(u32, &Buf)],
) -> Result<Vec<Kernel>, GpuError> {
    let mut out = Vec::new();
    for (gi, group) in tensors.chunks(GROUP).enumerate() {
        let k0 = gi * GROUP;
        let params = [s.n, group.len(), k0, (k0 > 0) as usize, chunks].map(|v| v as u32);
        let mut slots: Vec<(u32, &Buf)> = other.to_vec();
        for j in 0..GROUP {
            // Unused slots repeat the first tensor (read-only entries) and
            // are never touched.
            slots.push((1 + j as u32, group.get(j).unwrap_or(&group[0])));
        }
        out.push(gpu.kernel(SHADER, entry, &params, &slots, grid)?);
    }
    Ok(out)
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
    let grid = grid_1d(s.n, WG);
    per_group(gpu, s, "forward", xs, grid, 0, &[(7, w), (8, y)])
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
    let grid = grid_1d(s.n, WG);
    let mut out = Vec::new();
    for (gi, group) in dxs.chunks(GROUP).enumerate() {
        let k0 = gi * GROUP;
        let params = [s.n, group.len(), k0, 0, 0].map(|v| v as u32);
        // A writable buffer may be bound once per dispatch: the unused
        // slots get scratch buffers of their own (never written).
        let spare: Vec<Buf> = (group.len()..GROUP)
            .map(|_| gpu.alloc("mix.unused", 1))
            .collect::<Result<_, _>>()?;
        let mut slots: Vec<(u32, &Buf)> = vec![(7, w), (8, dy)];
        for j in 0..GROUP {
            let b = group
                .get(j)
                .copied()
                .unwrap_or_else(|| &spare[j - group.len()]);
            slots.push((1 + j as u32, b));
        }
        out.push(gpu.kernel(SHADER, "backward_inputs", &params, &slots, grid)?);
    }
    Ok(out)
}

/// dw[k] = Σ_i xs[k][i] · dy[i]: partial dot products per chunk of 4,096
/// elements, 6 tensors per dispatch, then one dispatch summing them.
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
        grid,
        chunks,
        &[(8, dy), (9, &partial)],
    )?;
    let params = [s.n, s.k, 0, 0, chunks].map(|v| v as u32);
    out.push(gpu.kernel(
        SHADER,
        "dot_finish",
        &params,
        &[(8, dw), (9, &partial)],
        [s.k.div_ceil(64) as u32, 1, 1],
    )?);
    Ok(out)
}
