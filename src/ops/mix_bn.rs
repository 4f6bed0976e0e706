//! The mixed op's backward through its candidates' batch norms: for
//! out = Σ_k w[k]·y_k where some y_k = BN(z_k) (training, no affine, so
//! y_k = x̂_k), one pass takes per channel Σ dy·x_k of every candidate and
//! Σ dy (`channel_dot`, whose row sums are dw), and one element-wise pass
//! per fused candidate writes its dz from dy and y_k (`bn_backward`),
//! instead of the mixed op's w[k]·dy copies and batch norm's two-pass
//! backward over them. Shader: `shaders/mix_bn.wgsl`; CPU twin: `cpu`.

use crate::engine::{Buf, Gpu, GpuError, Kernel};
use crate::ops::batchnorm;
use crate::ops::reduce;

/// K candidates of [n, c, hw] each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub k: usize,
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

/// Values of a channel per chunk of the sums, about (whole batch items).
const CHUNK: usize = 4096;

impl Shape {
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values per channel (batch norm's M).
    pub fn m(&self) -> usize {
        self.n * self.hw
    }
    /// Batch items per chunk of a channel's sums: ~4,096 values, so a GPU
    /// gets c × chunks workgroups.
    pub fn chunk_items(&self) -> usize {
        CHUNK.div_ceil(self.hw).clamp(1, self.n.max(1))
    }
    pub fn chunks(&self) -> usize {
        self.n.div_ceil(self.chunk_items())
    }
    /// Length of the sums tensor: K + 1 rows of c × chunks.
    pub fn sums_len(&self) -> usize {
        (self.k + 1) * self.c * self.chunks()
    }
    pub fn validate(&self) -> Result<(), String> {
        if self.k == 0 || self.is_empty() {
            return Err(format!("mix_bn: empty operand in {self:?}"));
        }
        if self.c > 65_535 || self.chunks() > 65_535 {
            return Err(format!("mix_bn {self:?}: more than 65,535 channels"));
        }
        Ok(())
    }
    fn checked(&self) -> &Self {
        self.validate().unwrap_or_else(|e| panic!("{e}"));
        self
    }
    /// `checked`, and `candidates` is K.
    fn checked_with(&self, candidates: usize) -> &Self {
        assert_eq!(
            candidates, self.k,
            "mix_bn: {candidates} candidates, expected {}",
            self.k
        );
        self.checked()
    }
    /// The batch norm of one candidate (its plane grid and items per
    /// invocation are `bn_backward`'s).
    fn batchnorm(&self) -> batchnorm::Shape {
        batchnorm::Shape::new(self.n, self.c, self.hw, false)
    }
}

/// The CPU reference (f64 accumulation).
pub mod cpu {
    use super::Shape;

    /// (sums, dw): per (row, channel, chunk) Σ dy·x_k (rows 0..K) and Σ dy
    /// (row K), and dw[k] = Σ_i dy·x_k.
    pub fn channel_dot(s: &Shape, xs: &[&[f32]], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        s.checked_with(xs.len());
        let (chunks, items) = (s.chunks(), s.chunk_items());
        let mut sums = vec![0f32; s.sums_len()];
        let row = s.c * chunks;
        let ones = vec![1f32; s.len()];
        for (r, x) in xs.iter().copied().chain([ones.as_slice()]).enumerate() {
            for ch in 0..s.c {
                for q in 0..chunks {
                    let mut acc = 0f64;
                    for b in q * items..((q + 1) * items).min(s.n) {
                        let base = (b * s.c + ch) * s.hw;
                        for i in base..base + s.hw {
                            acc += dy[i] as f64 * x[i] as f64;
                        }
                    }
                    sums[r * row + ch * chunks + q] = acc as f32;
                }
            }
        }
        let dw = xs
            .iter()
            .map(|x| {
                x.iter()
                    .zip(dy)
                    .map(|(&a, &g)| a as f64 * g as f64)
                    .sum::<f64>() as f32
            })
            .collect();
        (sums, dw)
    }

    /// Candidate k's dz = w[k]·invstd·(dy − Σdy/M − y·Σ(dy·y)/M) per
    /// channel, the sums read from `channel_dot`'s.
    pub fn bn_backward(
        s: &Shape,
        k: usize,
        y: &[f32],
        invstd: &[f32],
        w: &[f32],
        sums: &[f32],
        dy: &[f32],
    ) -> Vec<f32> {
        s.checked();
        let chunks = s.chunks();
        let row = s.c * chunks;
        let m = s.m() as f64;
        let mut dz = vec![0f32; s.len()];
        for ch in 0..s.c {
            let at = |r: usize| -> f64 {
                (0..chunks)
                    .map(|q| sums[r * row + ch * chunks + q] as f64)
                    .sum()
            };
            let (sy, sg) = (at(k), at(s.k));
            let a = w[k] as f64 * invstd[ch] as f64;
            for b in 0..s.n {
                let base = (b * s.c + ch) * s.hw;
                for i in base..base + s.hw {
                    dz[i] = (a * (dy[i] as f64 - sg / m - y[i] as f64 * sy / m)) as f32;
                }
            }
        }
        dz
    }
}

const SHADER: &str = "mix_bn";
/// Candidates per channel_dot dispatch (6 tensors + dy + the sums = the
/// 8-storage-buffer budget).
const GROUP: usize = 6;
/// Workgroup width of channel_dot on CPU adapters (the shader's DOT_WG,
/// 256 on GPUs; see there).
pub const NARROW_DOT_WG: u32 = 32;

fn params(s: &Shape, k: usize, k0: usize, nb: usize) -> [u32; 8] {
    [s.n, s.c, s.hw, k, k0, s.k, nb, s.chunks()].map(|v| v as u32)
}

fn assert_len(what: &str, b: &Buf, len: usize) {
    assert_eq!(
        b.len, len,
        "mix_bn: {what} has {} elements, expected {len}",
        b.len
    );
}

/// The sums (⌈K / 6⌉ dispatches of c × chunks workgroups) and dw (their
/// row sums).
pub fn channel_dot(
    gpu: &Gpu,
    s: &Shape,
    xs: &[&Buf],
    dy: &Buf,
    sums: &Buf,
    dw: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    s.checked_with(xs.len());
    for x in xs.iter().copied().chain([dy]) {
        assert_len("a candidate or dy", x, s.len());
    }
    assert_len("sums", sums, s.sums_len());
    assert_len("dw", dw, s.k);
    let entry = if s.hw.is_multiple_of(4) {
        "channel_dot4"
    } else {
        "channel_dot"
    };
    let grid = [s.c as u32, s.chunks() as u32, 1];
    let mut out = Vec::new();
    for (gi, group) in xs.chunks(GROUP).enumerate() {
        let mut slots = vec![(8, dy), (9, sums)];
        // Slots a short group leaves unused repeat its first tensor (never
        // read).
        for j in 0..GROUP {
            slots.push((1 + j as u32, *group.get(j).unwrap_or(&group[0])));
        }
        let p = params(s, group.len(), gi * GROUP, s.chunk_items());
        let wg = NARROW_DOT_WG;
        out.push(gpu.kernel_narrow(SHADER, "DOT_WG", wg, entry, &p, &slots, grid)?);
    }
    let row = s.c * s.chunks();
    out.push(reduce::finish_rows(gpu, sums, s.k, row, 1.0, dw, 0)?);
    Ok(out)
}

/// Candidate k's dz from y = BN(z) (its output), the batch norm's saved
/// invstd, the mixing weights, the sums and dy.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward(
    gpu: &Gpu,
    s: &Shape,
    k: usize,
    y: &Buf,
    invstd: &Buf,
    w: &Buf,
    sums: &Buf,
    dy: &Buf,
    dz: &Buf,
) -> Result<Kernel, GpuError> {
    s.checked();
    assert!(k < s.k, "mix_bn: candidate {k} of {}", s.k);
    for (what, b, len) in [
        ("y", y, s.len()),
        ("dy", dy, s.len()),
        ("dz", dz, s.len()),
        ("invstd", invstd, s.c),
        ("w", w, s.k),
        ("sums", sums, s.sums_len()),
    ] {
        assert_len(what, b, len);
    }
    // Element-wise over planes with per-channel coefficients, as the
    // evaluation batch norm: its grid and batch items per invocation.
    let bs = s.batchnorm();
    let (entry, grid) = batchnorm::elementwise_entry(&bs, "bn_backward", "bn_backward4");
    let items = batchnorm::eval_batch_items(&bs);
    let slots = [(1, y), (7, w), (8, dy), (9, sums), (10, invstd), (11, dz)];
    gpu.kernel(SHADER, entry, &params(s, 1, k, items), &slots, grid)
}
