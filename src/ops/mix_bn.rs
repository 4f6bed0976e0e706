//! The mixed op out = Σ_k w[k]·y_k through the batch norms of its
//! candidates: where y_k = BN(z_k) (training, no affine, read by nothing
//! else), the batch norm only computes its statistics
//! (`batchnorm::train_stats`, into the mixed op's pack) and the mixed op
//! applies y_k = z_k·a + b where it reads z_k (`forward`), so y_k is never
//! written. The backward: one pass takes per channel Σ dy·y_k of every
//! candidate and Σ dy (`channel_dot`, whose row sums are dw), and one
//! element-wise pass per fused candidate writes its dz from dy and z_k
//! (`bn_backward`), instead of the mixed op's w[k]·dy copies and batch
//! norm's two-pass backward over them. Shader: `shaders/mix_bn.wgsl`; CPU
//! twin: `cpu`.

use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel};
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
    /// Planes that are not whole float4s but come in fours (7×7 over
    /// channels in fours): the element-wise entries take runs of 4 planes
    /// over float4s that may straddle two of them (`forward_quads`,
    /// `bn_backward_quads`).
    fn quads(&self) -> bool {
        !self.hw.is_multiple_of(4) && self.hw >= 4 && (self.n * self.c).is_multiple_of(4)
    }
    /// Length of the pack (`batchnorm::pack_len`).
    pub fn pack_len(&self) -> usize {
        batchnorm::pack_len(self.k, self.c)
    }
    /// Where candidate k's a [c] starts in the pack; its b follows.
    pub fn pack_a(&self, k: usize) -> usize {
        batchnorm::pack_a(self.k, self.c, k)
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

    /// Candidate k's output: its batch norm's z·a + b from the pack where
    /// `norm`, the tensor itself otherwise.
    pub fn apply(s: &Shape, k: usize, norm: bool, x: &[f32], pack: &[f32]) -> Vec<f32> {
        if !norm {
            return x.to_vec();
        }
        let at = s.pack_a(k);
        let (a, b) = (&pack[at..], &pack[at + s.c..]);
        let mut y = vec![0f32; s.len()];
        for (i, (v, &z)) in y.iter_mut().zip(x).enumerate() {
            let ch = (i / s.hw) % s.c;
            *v = (z as f64 * a[ch] as f64 + b[ch] as f64) as f32;
        }
        y
    }

    fn outputs(s: &Shape, norm: &[bool], xs: &[&[f32]], pack: &[f32]) -> Vec<Vec<f32>> {
        s.checked_with(xs.len());
        assert_eq!(norm.len(), s.k, "mix_bn: one norm flag per candidate");
        (0..s.k)
            .map(|k| apply(s, k, norm[k], xs[k], pack))
            .collect()
    }

    /// out = Σ_k w[k]·y_k, w the pack's first K values.
    pub fn forward(s: &Shape, norm: &[bool], xs: &[&[f32]], pack: &[f32]) -> Vec<f32> {
        let ys = outputs(s, norm, xs, pack);
        (0..s.len())
            .map(|i| {
                ys.iter()
                    .enumerate()
                    .map(|(k, y)| pack[k] as f64 * y[i] as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// (sums, dw): per (row, channel, chunk) Σ dy·y_k (rows 0..K) and Σ dy
    /// (row K), and dw[k] = Σ_i dy·y_k.
    pub fn channel_dot(
        s: &Shape,
        norm: &[bool],
        xs: &[&[f32]],
        pack: &[f32],
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let ys = outputs(s, norm, xs, pack);
        let (chunks, items) = (s.chunks(), s.chunk_items());
        let mut sums = vec![0f32; s.sums_len()];
        let row = s.c * chunks;
        let ones = vec![1f32; s.len()];
        for (r, y) in ys.iter().chain([&ones]).enumerate() {
            for ch in 0..s.c {
                for q in 0..chunks {
                    let mut acc = 0f64;
                    for b in q * items..((q + 1) * items).min(s.n) {
                        let base = (b * s.c + ch) * s.hw;
                        for i in base..base + s.hw {
                            acc += dy[i] as f64 * y[i] as f64;
                        }
                    }
                    sums[r * row + ch * chunks + q] = acc as f32;
                }
            }
        }
        let dw = ys
            .iter()
            .map(|y| {
                y.iter()
                    .zip(dy)
                    .map(|(&a, &g)| a as f64 * g as f64)
                    .sum::<f64>() as f32
            })
            .collect();
        (sums, dw)
    }

    /// Candidate k's dz = w[k]·invstd·(dy − Σdy/M − y·Σ(dy·y)/M) per
    /// channel (invstd = the pack's a, y = z·a + b), the sums read from
    /// `channel_dot`'s.
    pub fn bn_backward(
        s: &Shape,
        k: usize,
        z: &[f32],
        pack: &[f32],
        sums: &[f32],
        dy: &[f32],
    ) -> Vec<f32> {
        s.checked();
        let y = apply(s, k, true, z, pack);
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
            let a = pack[k] as f64 * pack[s.pack_a(k) + ch] as f64;
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
/// Candidates per forward dispatch (6 tensors + the pack + out = the
/// 8-storage-buffer budget; the mixed op's own grouping, `mix::GROUP`, so
/// the sums are added in its order) and per channel_dot dispatch (5 + the
/// pack + dy + the sums).
const FORWARD_GROUP: usize = crate::ops::mix::GROUP;
const DOT_GROUP: usize = 5;
/// Workgroup width of channel_dot on CPU adapters (the shader's DOT_WG,
/// 256 on GPUs; see there).
pub const NARROW_DOT_WG: u32 = 32;

/// The Params of mix_bn.wgsl.
struct Params<'a> {
    s: &'a Shape,
    /// Tensors in the dispatch and the first one's candidate.
    k: usize,
    k0: usize,
    nb: usize,
    /// Which of them are batch norms' inputs.
    norm: &'a [bool],
    accumulate: bool,
}

impl Params<'_> {
    fn words(&self) -> [u32; 10] {
        let s = self.s;
        let norm = self.norm[self.k0..self.k0 + self.k]
            .iter()
            .enumerate()
            .fold(0, |m, (j, &on)| m | (u32::from(on) << j));
        [
            s.n as u32,
            s.c as u32,
            s.hw as u32,
            self.k as u32,
            self.k0 as u32,
            s.k as u32,
            self.nb as u32,
            s.chunks() as u32,
            norm,
            self.accumulate as u32,
        ]
    }
}

fn assert_len(what: &str, b: &Buf, len: usize) {
    assert_eq!(
        b.len, len,
        "mix_bn: {what} has {} elements, expected {len}",
        b.len
    );
}

/// Each candidate and the pack the right length, one norm flag each.
fn check_operands(s: &Shape, norm: &[bool], xs: &[&Buf], pack: &Buf) {
    s.checked_with(xs.len());
    assert_eq!(norm.len(), s.k, "mix_bn: one norm flag per candidate");
    for x in xs {
        assert_len("a candidate", x, s.len());
    }
    assert_len("the pack", pack, s.pack_len());
}

/// Slots 1.. for a group's tensors; those a short group leaves unused
/// repeat its first (never read).
fn group_slots<'a>(group: &[&'a Buf], width: usize) -> Vec<(u32, &'a Buf)> {
    (0..width)
        .map(|j| (1 + j as u32, *group.get(j).unwrap_or(&group[0])))
        .collect()
}

/// out = Σ_k w[k]·y_k (⌈K / 6⌉ dispatches over runs of a plane, or of 4
/// planes where a plane is not whole float4s; the later dispatches
/// accumulating), y_k = z_k·a + b where `norm[k]`.
pub fn forward(
    gpu: &Gpu,
    s: &Shape,
    norm: &[bool],
    xs: &[&Buf],
    pack: &Buf,
    y: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    check_operands(s, norm, xs, pack);
    assert_len("out", y, s.len());
    let planes = s.n * s.c;
    let (entry, nb, runs) = if s.hw.is_multiple_of(4) {
        let nb = forward_run(s.hw / 4);
        ("forward4", nb, planes * s.hw / 4 / nb)
    } else if s.quads() {
        ("forward_quads", 0, planes / 4)
    } else {
        let nb = forward_run(s.hw);
        ("forward", nb, planes * s.hw / nb)
    };
    let grid = grid_1d(runs, BACK_WG);
    let mut out = Vec::new();
    for (gi, group) in xs.chunks(FORWARD_GROUP).enumerate() {
        let mut slots = group_slots(group, FORWARD_GROUP);
        slots.extend([(7, pack), (8, y)]);
        let p = Params {
            s,
            k: group.len(),
            k0: gi * FORWARD_GROUP,
            nb,
            norm,
            accumulate: gi > 0,
        };
        out.push(gpu.kernel(SHADER, entry, &p.words(), &slots, grid)?);
    }
    Ok(out)
}

/// Workgroup width of forward and bn_backward (the shader's BACK_WG).
const BACK_WG: u32 = 64;

/// Values (float4s) of a plane per invocation of `forward`: the largest
/// divisor of the plane up to 64, so that an invocation loads its
/// channel's coefficients (3 per candidate) once for many values and no
/// lane idles. On lavapipe (K = 8, best of 15) batch norm's evaluation grid
/// (a plane position × 8 batch items per invocation) took 1.00–1.26 ms on
/// [32,8,784], 0.56–0.70 on [32,16,196] and 0.68–0.72 on [32,32,49]; runs
/// of 49 0.72–0.75, 0.41–0.43 and 0.44–0.67 (the mixed op over the
/// batch norms' outputs, `mix::forward`: 0.85–0.89, 0.48–0.61, 0.26–0.35).
fn forward_run(per: usize) -> usize {
    (1..=per.min(64))
        .rev()
        .find(|r| per.is_multiple_of(*r))
        .unwrap_or(1)
}

/// The sums (⌈K / 5⌉ dispatches of c × chunks workgroups) and dw (their
/// row sums).
#[allow(clippy::too_many_arguments)]
pub fn channel_dot(
    gpu: &Gpu,
    s: &Shape,
    norm: &[bool],
    xs: &[&Buf],
    pack: &Buf,
    dy: &Buf,
    sums: &Buf,
    dw: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    check_operands(s, norm, xs, pack);
    assert_len("dy", dy, s.len());
    assert_len("sums", sums, s.sums_len());
    assert_len("dw", dw, s.k);
    let entry = if s.hw.is_multiple_of(4) {
        "channel_dot4"
    } else {
        "channel_dot"
    };
    let grid = [s.c as u32, s.chunks() as u32, 1];
    let mut out = Vec::new();
    for (gi, group) in xs.chunks(DOT_GROUP).enumerate() {
        let mut slots = group_slots(group, DOT_GROUP);
        slots.extend([(7, pack), (8, dy), (9, sums)]);
        let p = Params {
            s,
            k: group.len(),
            k0: gi * DOT_GROUP,
            nb: s.chunk_items(),
            norm,
            accumulate: false,
        };
        let wg = NARROW_DOT_WG;
        out.push(gpu.kernel_narrow(SHADER, "DOT_WG", wg, entry, &p.words(), &slots, grid)?);
    }
    let row = s.c * s.chunks();
    out.push(reduce::finish_rows(gpu, sums, s.k, row, 1.0, dw, 0)?);
    Ok(out)
}

/// The dz of candidates `ks` (one, or two in one pass that reads dy once)
/// from their z (their batch norms' inputs), the pack, the sums and dy.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward(
    gpu: &Gpu,
    s: &Shape,
    ks: &[usize],
    zs: &[&Buf],
    pack: &Buf,
    sums: &Buf,
    dy: &Buf,
    dzs: &[&Buf],
) -> Result<Kernel, GpuError> {
    s.checked();
    assert!(
        matches!(ks.len(), 1 | 2) && zs.len() == ks.len() && dzs.len() == ks.len(),
        "mix_bn: one or two candidates' z and dz"
    );
    for &k in ks {
        assert!(k < s.k, "mix_bn: candidate {k} of {}", s.k);
    }
    for (what, b, len) in [
        ("dy", dy, s.len()),
        ("the pack", pack, s.pack_len()),
        ("sums", sums, s.sums_len()),
    ]
    .into_iter()
    .chain(zs.iter().map(|z| ("z", *z, s.len())))
    .chain(dzs.iter().map(|d| ("dz", *d, s.len())))
    {
        assert_len(what, b, len);
    }
    let pair = ks.len() == 2;
    let [one, four, quads] = if pair {
        [
            "bn_backward_pair",
            "bn_backward4_pair",
            "bn_backward_quads_pair",
        ]
    } else {
        ["bn_backward", "bn_backward4", "bn_backward_quads"]
    };
    // Element-wise over planes with per-channel coefficients, as the
    // evaluation batch norm: its grid and batch items per invocation.
    let bs = s.batchnorm();
    let (entry, grid) = if s.quads() {
        // Runs of 4 planes over float4s (7×7), as `forward`: K=8 x
        // [32,32,49] 0.20–0.21 → 0.09–0.14 ms on lavapipe.
        (quads, grid_1d(s.n * s.c / 4, BACK_WG))
    } else {
        batchnorm::elementwise_entry(&bs, one, four)
    };
    let mut norm = vec![false; s.k];
    norm[ks[0]] = true;
    let p = Params {
        s,
        k: 1,
        k0: ks[0],
        nb: batchnorm::eval_batch_items(&bs),
        norm: &norm,
        accumulate: false,
    };
    let mut words = p.words();
    let mut slots = vec![(1, zs[0]), (7, pack), (8, dy), (9, sums), (11, dzs[0])];
    if pair {
        // The second candidate rides in Params::k (see the shader).
        words[3] = ks[1] as u32;
        slots.extend([(2, zs[1]), (12, dzs[1])]);
    }
    gpu.kernel(SHADER, entry, &words, &slots, grid)
}
