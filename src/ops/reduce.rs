//! Reductions: sum, mean, squared L2 norm, dot products of rows with a
//! vector, and per-channel sums — two passes (workgroup partials, then a
//! finish), never float atomics. Shader: `shaders/reduce.wgsl`.

use crate::engine::{Buf, Gpu, GpuError, Kernel, WG};

/// Elements one workgroup reduces per chunk (WG × ITEMS in the shader).
pub const CHUNK: usize = WG as usize * 16;

pub mod cpu {
    /// Sum in f64, as the reference for f32 GPU partial sums.
    pub fn sum_forward(x: &[f32]) -> f32 {
        x.iter().map(|&v| v as f64).sum::<f64>() as f32
    }
    pub fn mean_forward(x: &[f32]) -> f32 {
        (x.iter().map(|&v| v as f64).sum::<f64>() / x.len().max(1) as f64) as f32
    }
    pub fn sqnorm_forward(x: &[f32]) -> f32 {
        x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() as f32
    }
    /// dx of sum: dL everywhere.
    pub fn sum_backward(n: usize, dl: f32) -> Vec<f32> {
        vec![dl; n]
    }
    pub fn mean_backward(n: usize, dl: f32) -> Vec<f32> {
        vec![dl / n as f32; n]
    }
    pub fn sqnorm_backward(x: &[f32], dl: f32) -> Vec<f32> {
        x.iter().map(|&v| 2.0 * dl * v).collect()
    }
    /// out[r] = Σ_j a[r, j] · b[j] for a of shape [rows, n].
    pub fn dot_rows(a: &[f32], b: &[f32], rows: usize) -> Vec<f32> {
        let n = b.len();
        (0..rows)
            .map(|r| {
                a[r * n..(r + 1) * n]
                    .iter()
                    .zip(b)
                    .map(|(&x, &y)| x as f64 * y as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }
    /// out[c] = Σ over outer and inner of x viewed as [outer, channels, inner].
    pub fn channel_sum(x: &[f32], outer: usize, channels: usize, inner: usize) -> Vec<f32> {
        let mut acc = vec![0f64; channels];
        for o in 0..outer {
            for (c, a) in acc.iter_mut().enumerate() {
                let base = (o * channels + c) * inner;
                *a += x[base..base + inner].iter().map(|&v| v as f64).sum::<f64>();
            }
        }
        acc.into_iter().map(|v| v as f32).collect()
    }
}

const SHADER: &str = "reduce";

/// Which per-chunk reduction to run.
#[derive(Clone, Copy)]
enum Kind {
    Sum,
    SumSq,
    Dot,
}

/// Pass 2 of a chunked reduction: out[offset + r] = scale · Σ_c
/// partial[r · chunks + c] for each of `rows` rows (also the mixed op's
/// weight gradient).
pub fn finish_rows(
    gpu: &Gpu,
    partial: &Buf,
    rows: usize,
    chunks: usize,
    scale: f32,
    out: &Buf,
    offset: usize,
) -> Result<Kernel, GpuError> {
    let params = [
        0,
        rows as u32,
        chunks as u32,
        scale.to_bits(),
        0,
        0,
        offset as u32,
    ];
    gpu.kernel(
        SHADER,
        "finish",
        &params,
        &[(3, partial), (4, out)],
        [(rows as u32).div_ceil(64), 1, 1],
    )
}

/// Two dispatches reducing `a` ([rows, n]) to `out` ([rows]) times `scale`;
/// `b` is the length-n vector of a dot product.
#[allow(clippy::too_many_arguments)]
fn rows_reduce(
    gpu: &Gpu,
    kind: Kind,
    a: &Buf,
    b: Option<&Buf>,
    rows: usize,
    scale: f32,
    out: &Buf,
    offset: usize,
) -> Result<Vec<Kernel>, GpuError> {
    let n = a.len / rows.max(1);
    let chunks = n.div_ceil(CHUNK).max(1);
    let partial = gpu.alloc("reduce.partial", rows * chunks)?;
    let params = [
        n as u32,
        rows as u32,
        chunks as u32,
        scale.to_bits(),
        0,
        0,
        offset as u32,
    ];
    let entry = match kind {
        Kind::Sum => "sum_partial",
        Kind::SumSq => "sumsq_partial",
        Kind::Dot => "dot_partial",
    };
    // The shared partial-sum helper names `b` in every entry point, so the
    // auto layout wants it bound: without a vector, `a` stands in (read-only).
    let slots = [(1, a), (2, b.unwrap_or(a)), (3, &partial)];
    let first = gpu.kernel(
        SHADER,
        entry,
        &params,
        &slots,
        [chunks as u32, rows as u32, 1],
    )?;
    let second = finish_rows(gpu, &partial, rows, chunks, scale, out, offset)?;
    Ok(vec![first, second])
}

/// out[0] = Σ x.
pub fn sum_forward(gpu: &Gpu, x: &Buf, out: &Buf) -> Result<Vec<Kernel>, GpuError> {
    rows_reduce(gpu, Kind::Sum, x, None, 1, 1.0, out, 0)
}
/// out[0] = mean of x.
pub fn mean_forward(gpu: &Gpu, x: &Buf, out: &Buf) -> Result<Vec<Kernel>, GpuError> {
    rows_reduce(
        gpu,
        Kind::Sum,
        x,
        None,
        1,
        1.0 / x.len.max(1) as f32,
        out,
        0,
    )
}
/// out[0] = Σ x².
pub fn sqnorm_forward(gpu: &Gpu, x: &Buf, out: &Buf) -> Result<Vec<Kernel>, GpuError> {
    rows_reduce(gpu, Kind::SumSq, x, None, 1, 1.0, out, 0)
}
/// out[slot] = Σ x²: one parameter's share of a global gradient norm.
pub fn sqnorm_into(gpu: &Gpu, x: &Buf, out: &Buf, slot: usize) -> Result<Vec<Kernel>, GpuError> {
    rows_reduce(gpu, Kind::SumSq, x, None, 1, 1.0, out, slot)
}
/// out[r] = scale · Σ_j a[r, j] · b[j], for a of shape [rows, b.len].
pub fn dot_rows(
    gpu: &Gpu,
    a: &Buf,
    b: &Buf,
    rows: usize,
    scale: f32,
    out: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    rows_reduce(gpu, Kind::Dot, a, Some(b), rows, scale, out, 0)
}
/// out[c] = Σ of x viewed as [outer, channels, inner] over outer and inner.
pub fn channel_sum(
    gpu: &Gpu,
    x: &Buf,
    outer: usize,
    channels: usize,
    inner: usize,
    out: &Buf,
) -> Result<Kernel, GpuError> {
    let params = [
        0,
        channels as u32,
        0,
        1f32.to_bits(),
        outer as u32,
        inner as u32,
        0,
    ];
    gpu.kernel(
        SHADER,
        "channel_sum",
        &params,
        &[(1, x), (4, out)],
        [channels as u32, 1, 1],
    )
}
