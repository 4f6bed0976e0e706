//! 2-D convolution with stride, separate vertical and horizontal padding,
//! dilation, groups (depthwise when groups == c_in == c_out) and an optional
//! bias; its input, weight and bias gradients. Layouts are PyTorch's: x
//! [n, c_in, h, w], weight [c_out, c_in / groups, kh, kw], y [n, c_out, oh, ow].
//! Shader: `shaders/conv2d.wgsl`; CPU twin: `cpu`.

use std::fmt;

use crate::engine::{grid_1d, span_rows, Buf, Gpu, GpuError, Kernel, WG};
use crate::ops::{conv2d_rows, reduce};
pub use conv2d_rows::{CopyBatch, CopyNeed, SharedCopies, WeightCopies};

/// The geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Conv2dShape {
    /// A 1×1 convolution of `c_in` to `c_out` channels over [n, c_in, h, w].
    pub fn pointwise(n: usize, c_in: usize, c_out: usize, h: usize, w: usize) -> Conv2dShape {
        Conv2dShape {
            n,
            c_in,
            h,
            w,
            c_out,
            kh: 1,
            kw: 1,
            stride: 1,
            pad_h: 0,
            pad_w: 0,
            dilation: 1,
            groups: 1,
        }
    }

    /// Why the shape is impossible, if it is.
    pub fn validate(&self) -> Result<(), String> {
        let dims = [
            ("n", self.n),
            ("c_in", self.c_in),
            ("h", self.h),
            ("w", self.w),
            ("c_out", self.c_out),
            ("kh", self.kh),
            ("kw", self.kw),
            ("stride", self.stride),
            ("dilation", self.dilation),
            ("groups", self.groups),
        ];
        if let Some((name, _)) = dims.iter().find(|(_, v)| *v == 0) {
            return Err(format!("conv2d {self}: {name} must be at least 1"));
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return Err(format!(
                "conv2d {self}: groups {} must divide c_in {} and c_out {}",
                self.groups, self.c_in, self.c_out
            ));
        }
        let span_h = self.dilation * (self.kh - 1) + 1;
        let span_w = self.dilation * (self.kw - 1) + 1;
        if self.h + 2 * self.pad_h < span_h || self.w + 2 * self.pad_w < span_w {
            return Err(format!(
                "conv2d {self}: the padded input is smaller than the dilated kernel"
            ));
        }
        Ok(())
    }
    /// Output height, floor((h + 2·pad_h − dilation·(kh − 1) − 1) / stride) + 1.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad_h - self.dilation * (self.kh - 1) - 1) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad_w - self.dilation * (self.kw - 1) - 1) / self.stride + 1
    }
    pub fn cpg_in(&self) -> usize {
        self.c_in / self.groups
    }
    pub fn cpg_out(&self) -> usize {
        self.c_out / self.groups
    }
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    pub fn w_len(&self) -> usize {
        self.c_out * self.cpg_in() * self.kh * self.kw
    }
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.oh() * self.ow()
    }
    /// One input and one output channel per group.
    pub fn is_depthwise(&self) -> bool {
        self.cpg_in() == 1 && self.cpg_out() == 1
    }
    /// Multiply-adds of the forward (each backward costs the same).
    pub fn macs(&self) -> usize {
        self.y_len() * self.cpg_in() * self.kh * self.kw
    }
}

impl fmt::Display for Conv2dShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "x[{},{},{},{}] w[{},{},{},{}] s{} p({},{}) d{} g{}",
            self.n,
            self.c_in,
            self.h,
            self.w,
            self.c_out,
            self.c_in / self.groups.max(1),
            self.kh,
            self.kw,
            self.stride,
            self.pad_h,
            self.pad_w,
            self.dilation,
            self.groups
        )
    }
}

/// The CPU reference: direct loops, f64 accumulation.
pub mod cpu {
    use super::Conv2dShape;

    /// The input coordinate a tap reads, or None in the padding.
    fn input_at(o: usize, k: usize, s: &Conv2dShape, pad: usize, size: usize) -> Option<usize> {
        (o * s.stride + k * s.dilation)
            .checked_sub(pad)
            .filter(|&i| i < size)
    }

    /// Visit every (x index, weight index, y index) triple that contributes
    /// a product to the convolution; all three directions are sums over it.
    fn for_each_tap(s: &Conv2dShape, mut f: impl FnMut(usize, usize, usize)) {
        let (oh, ow, cpg_in, cpg_out) = (s.oh(), s.ow(), s.cpg_in(), s.cpg_out());
        for b in 0..s.n {
            for oc in 0..s.c_out {
                let g = oc / cpg_out;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let yi = ((b * s.c_out + oc) * oh + oy) * ow + ox;
                        for ci in 0..cpg_in {
                            let c = g * cpg_in + ci;
                            for ky in 0..s.kh {
                                let Some(iy) = input_at(oy, ky, s, s.pad_h, s.h) else {
                                    continue;
                                };
                                for kx in 0..s.kw {
                                    let Some(ix) = input_at(ox, kx, s, s.pad_w, s.w) else {
                                        continue;
                                    };
                                    let xi = ((b * s.c_in + c) * s.h + iy) * s.w + ix;
                                    let wi = ((oc * cpg_in + ci) * s.kh + ky) * s.kw + kx;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn to_f32(v: Vec<f64>) -> Vec<f32> {
        v.into_iter().map(|a| a as f32).collect()
    }

    /// y = conv(x, w) + bias.
    pub fn forward(s: &Conv2dShape, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        let plane = s.oh() * s.ow();
        let mut y: Vec<f64> = (0..s.y_len())
            .map(|i| bias.map_or(0.0, |b| b[(i / plane) % s.c_out] as f64))
            .collect();
        for_each_tap(s, |xi, wi, yi| y[yi] += x[xi] as f64 * w[wi] as f64);
        to_f32(y)
    }
    pub fn backward_input(s: &Conv2dShape, w: &[f32], dy: &[f32]) -> Vec<f32> {
        let mut dx = vec![0f64; s.x_len()];
        for_each_tap(s, |xi, wi, yi| dx[xi] += w[wi] as f64 * dy[yi] as f64);
        to_f32(dx)
    }
    pub fn backward_weight(s: &Conv2dShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let mut dw = vec![0f64; s.w_len()];
        for_each_tap(s, |xi, wi, yi| dw[wi] += x[xi] as f64 * dy[yi] as f64);
        to_f32(dw)
    }
    pub fn backward_bias(s: &Conv2dShape, dy: &[f32]) -> Vec<f32> {
        crate::ops::reduce::cpu::channel_sum(dy, s.n, s.c_out, s.oh() * s.ow())
    }
}

const SHADER: &str = "conv2d";

/// Outputs per invocation along one axis (B in the shader); the depthwise
/// forward and input gradient cover 2·B positions.
const B: usize = 4;

/// How pass 1 of a weight gradient chunks its pixels (n, oy, ox): the
/// invocations worth aiming for, and the fewest pixels a chunk should sum.
/// A CPU adapter runs a workgroup on one core, so a few long chunks suffice
/// and each extra one is a pass-2 read. A GPU needs thousands of invocations
/// in flight, and an invocation's sum is a serial loop: on an H200 the
/// coarse split left pass 1 at 70–140 µs a dispatch, ~4.5× a dispatch's
/// own cost (BENCHMARKS.md, "Weight gradients split for a GPU").
const fn weight_chunking(wide: bool) -> (usize, usize) {
    if wide {
        (1 << 17, 32)
    } else {
        (1 << 15, 256)
    }
}
/// The fewest invocations pass 1 takes on a CPU adapter, shorter chunks
/// where its blocks are few: enough lane groups to split evenly over the
/// cores (`engine::balanced_workgroup`). bench-small's 1×1s on 7×7 planes
/// (4 blocks of 16 × 16 channels) summed 1,568 pixels in 6 chunks, 24
/// invocations in workgroups of 16 and 8: 0.78 of that time in 16 chunks
/// (BENCHMARKS.md, "Twenty-eighth pass").
const CPU_PASS1_INVOCATIONS: usize = 64;
/// Largest partial-sum buffer (elements) pass 1 may use.
const MAX_PARTIAL: usize = 1 << 22;

fn check(s: &Conv2dShape, bufs: &[(&str, &Buf, usize)]) {
    if let Err(e) = s.validate() {
        panic!("{e}");
    }
    for (name, b, len) in bufs {
        assert_eq!(b.len, *len, "conv2d {s}: {name} has the wrong length");
    }
}

/// One 1-D dispatch of `entry` over `invocations`; slots as in the shader
/// (1 x, 2 wt, 3 bias, 4 dy read; 5 out, 6 partial written).
fn dispatch(
    gpu: &Gpu,
    s: &Conv2dShape,
    entry: &'static str,
    invocations: usize,
    has_bias: bool,
    (chunk_rows, chunks): (usize, usize),
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    let params = [
        s.n,
        s.c_in,
        s.h,
        s.w,
        s.c_out,
        s.oh(),
        s.ow(),
        s.kh,
        s.kw,
        s.stride,
        s.pad_h,
        s.pad_w,
        s.dilation,
        s.groups,
        s.cpg_in(),
        s.cpg_out(),
        has_bias as usize,
        chunk_rows,
        chunks,
    ]
    .map(|v| v as u32);
    gpu.kernel(SHADER, entry, &params, slots, grid_1d(invocations, WG))
}

/// y = conv(x, w) (+ bias).
pub fn forward(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: &Buf,
    w: &Buf,
    bias: Option<&Buf>,
    y: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    forward_shared(gpu, s, x, w, bias, y, None, false)
}

/// [`forward`] sharing the weight copies of a plan (see [`WeightCopies`]),
/// reading max(x, 0) where `relu_in` (a ReLU fused, only where
/// `conv2d_rows::fits_forward`).
#[allow(clippy::too_many_arguments)]
pub fn forward_shared(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: &Buf,
    w: &Buf,
    bias: Option<&Buf>,
    y: &Buf,
    shared: SharedCopies,
    relu_in: bool,
) -> Result<Vec<Kernel>, GpuError> {
    check(
        s,
        &[
            ("x", x, s.x_len()),
            ("w", w, s.w_len()),
            ("y", y, s.y_len()),
        ],
    );
    if let Some(b) = bias {
        check(s, &[("bias", b, s.c_out)]);
    }
    if conv2d_rows::fits_forward(s) {
        let dir = conv2d_rows::Direction::Forward;
        return conv2d_rows::kernels(gpu, s, dir, x, w, bias, y, shared, relu_in);
    }
    // Only the generated kernels fuse a ReLU (`graph::fuse_relu_reads`
    // fuses only where they run).
    assert!(
        !relu_in,
        "conv2d: a fused ReLU needs a generated kernel ({s:?})"
    );
    let rows = s.n * s.c_out * s.oh();
    let (entry, invocations) = if s.is_depthwise() {
        ("forward_depthwise", rows * s.ow().div_ceil(2 * B))
    } else {
        let cblocks = s.groups * s.cpg_out().div_ceil(B);
        ("forward", rows / s.c_out * cblocks * s.ow().div_ceil(B))
    };
    // Both entries name the bias slot; without a bias the weights stand in
    // (read-only, never read).
    let slots = [(1, x), (2, w), (3, bias.unwrap_or(w)), (5, y)];
    Ok(vec![dispatch(
        gpu,
        s,
        entry,
        invocations,
        bias.is_some(),
        (0, 0),
        &slots,
    )?])
}

/// dx of y = conv(x, w), gathered per input element.
pub fn backward_input(
    gpu: &Gpu,
    s: &Conv2dShape,
    w: &Buf,
    dy: &Buf,
    dx: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    backward_input_shared(gpu, s, w, dy, dx, None)
}

/// [`backward_input`] sharing the weight copies of a plan.
pub fn backward_input_shared(
    gpu: &Gpu,
    s: &Conv2dShape,
    w: &Buf,
    dy: &Buf,
    dx: &Buf,
    shared: SharedCopies,
) -> Result<Vec<Kernel>, GpuError> {
    check(
        s,
        &[
            ("w", w, s.w_len()),
            ("dy", dy, s.y_len()),
            ("dx", dx, s.x_len()),
        ],
    );
    if conv2d_rows::fits(s) {
        let dir = conv2d_rows::Direction::InputGradient;
        return conv2d_rows::kernels(gpu, s, dir, dy, w, None, dx, shared, false);
    }
    // Columns are blocked per residue mod stride (see the shader).
    let per_residue = s.w.div_ceil(s.stride);
    let rows = s.n * s.c_in * s.h * s.stride;
    let (entry, invocations) = if s.is_depthwise() {
        (
            "backward_input_depthwise",
            rows * per_residue.div_ceil(2 * B),
        )
    } else {
        let cblocks = s.groups * s.cpg_in().div_ceil(B);
        (
            "backward_input",
            rows / s.c_in * cblocks * per_residue.div_ceil(B),
        )
    };
    let slots = [(2, w), (4, dy), (5, dx)];
    Ok(vec![dispatch(
        gpu,
        s,
        entry,
        invocations,
        false,
        (0, 0),
        &slots,
    )?])
}

/// dw of y = conv(x, w): per-chunk partial sums over (n, oy) rows into a
/// scratch buffer the first kernel keeps alive, then a sum over chunks.
pub fn backward_weight(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: &Buf,
    dy: &Buf,
    dw: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    backward_weight_shared(gpu, s, x, dy, dw, None)
}

/// How pass 1 of the weight gradient splits its work: its entry (None:
/// the generated kernel), its invocations per chunk, and (rows per chunk,
/// chunks).
fn weight_split(s: &Conv2dShape, wide: bool) -> (Option<&'static str>, usize, (usize, usize)) {
    let taps = s.cpg_in() * s.kh * s.kw;
    // The rows pass 1 chunks, with the pixels in one.
    let rows_of_oy = (s.n * s.oh(), s.ow());
    let (entry, blocks, (rows, row_pixels)) = if conv2d_rows::fits_forward(s) {
        (
            None,
            conv2d_rows::weight_blocks(s, wide),
            conv2d_rows::weight_rows(s),
        )
    } else if s.is_depthwise() {
        (
            Some("backward_weight_partial_depthwise"),
            s.c_out * taps.div_ceil(B),
            rows_of_oy,
        )
    } else {
        let cblocks = s.groups * s.cpg_out().div_ceil(B);
        (
            Some("backward_weight_partial"),
            cblocks * taps.div_ceil(B),
            rows_of_oy,
        )
    };
    let (invocations, min_chunk_pixels) = weight_chunking(wide);
    let floor = if wide {
        1
    } else {
        CPU_PASS1_INVOCATIONS.div_ceil(blocks)
    };
    let chunks = invocations
        .div_ceil(blocks)
        .min(rows * row_pixels / min_chunk_pixels)
        .max(floor)
        .min(MAX_PARTIAL / s.w_len())
        .clamp(1, rows);
    let chunk_rows = rows.div_ceil(chunks);
    (entry, blocks, (chunk_rows, rows.div_ceil(chunk_rows)))
}

/// Elements of the partial sums the weight gradient of `s` writes: a
/// plan sizes one scratch buffer for all its weight gradients by the
/// largest.
pub fn weight_partial_len(gpu: &Gpu, s: &Conv2dShape) -> usize {
    let (_, _, (_, chunks)) = weight_split(s, gpu.wide);
    chunks * s.w_len()
}

/// [`backward_weight`] with its partial sums in `scratch` (at least
/// [`weight_partial_len`] long), which the weight gradients of a plan
/// share: the partials are dead once the second kernel has summed them,
/// and the dispatches run in order. None: a buffer of its own.
pub fn backward_weight_shared(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: &Buf,
    dy: &Buf,
    dw: &Buf,
    scratch: Option<&Buf>,
) -> Result<Vec<Kernel>, GpuError> {
    check(
        s,
        &[
            ("x", x, s.x_len()),
            ("dy", dy, s.y_len()),
            ("dw", dw, s.w_len()),
        ],
    );
    let c = weight_split(s, gpu.wide).2;
    let len = c.1 * s.w_len();
    let partial = match scratch {
        Some(b) => {
            assert!(b.len >= len, "conv2d {s}: scratch of {} < {len}", b.len);
            b.view(len)
        }
        None => gpu.alloc("conv2d.dw_partial", len)?,
    };
    let pass1 = backward_weight_partials(gpu, s, x, dy, &partial)?;
    // Pass 2 on a GPU: 16 lanes share each weight's chunks, so a sum over
    // hundreds of chunks is not one invocation's serial loop.
    let (finish, invocations) = if gpu.wide {
        (
            "backward_weight_finish_wide",
            s.w_len().div_ceil(16) * WG as usize,
        )
    } else {
        ("backward_weight_finish", s.w_len())
    };
    Ok(vec![
        pass1,
        dispatch(
            gpu,
            s,
            finish,
            invocations,
            false,
            c,
            &[(5, dw), (6, &partial)],
        )?,
    ])
}

/// Pass 1 of the weight gradient alone: `partial` ([`weight_partial_len`]
/// long) gets the per-chunk sums, [chunk][weight], that pass 2 adds up
/// (here a [`FinishBatch`]).
pub fn backward_weight_partials(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: &Buf,
    dy: &Buf,
    partial: &Buf,
) -> Result<Kernel, GpuError> {
    let (entry, blocks, c) = weight_split(s, gpu.wide);
    check(
        s,
        &[
            ("x", x, s.x_len()),
            ("dy", dy, s.y_len()),
            ("partial", partial, c.1 * s.w_len()),
        ],
    );
    match entry {
        None => conv2d_rows::weight_partial_kernel(gpu, s, x, dy, partial, c),
        Some(entry) => dispatch(
            gpu,
            s,
            entry,
            c.1 * blocks,
            false,
            c,
            &[(1, x), (4, dy), (6, partial)],
        ),
    }
}

/// The pass 2 of many weight gradients as one dispatch
/// (`backward_weight_finish_batched`): on CPU adapters a pass 2 alone is a
/// few workgroups, and lavapipe spends ~35 µs on every dispatch (bench
/// `dispatch_overhead`), while the search step has ~1,650 of them. The
/// gradients must lie in one buffer and their partials in another; each
/// weight's sums are taken in pass 2's order, so the values are the same.
pub struct FinishBatch {
    out: Buf,
    partials: Buf,
    /// Per workgroup: (dst, src, wlen, count | chunks << 8).
    rows: Vec<u32>,
}

impl FinishBatch {
    /// The weights a workgroup of the batched pass 2 sums.
    const ROW: usize = 64;

    /// A batch writing into `out`'s buffer from `partials`' buffer.
    pub fn new(out: &Buf, partials: &Buf) -> FinishBatch {
        FinishBatch {
            out: out.whole().0,
            partials: partials.whole().0,
            rows: Vec::new(),
        }
    }

    /// Whether `dw` lies in this batch's output buffer.
    pub fn takes(&self, dw: &Buf) -> bool {
        dw.same_buffer(&self.out)
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Sum `partial` (pass 1's output for `s`, in this batch's partial
    /// buffer) into `dw` (in its output buffer).
    pub fn push(&mut self, gpu: &Gpu, s: &Conv2dShape, partial: &Buf, dw: &Buf) {
        let chunks = weight_split(s, gpu.wide).2 .1;
        let wlen = s.w_len();
        assert!(self.takes(dw) && partial.same_buffer(&self.partials));
        assert_eq!(dw.len, wlen, "conv2d {s}: dw has the wrong length");
        assert_eq!(partial.len, chunks * wlen, "conv2d {s}: partial length");
        assert!(chunks < 1 << 24, "conv2d {s}: {chunks} chunks");
        let (dst, src) = (dw.whole().1, partial.whole().1);
        span_rows(&mut self.rows, wlen, Self::ROW, |at, count| {
            [dst + at, src + at, wlen, count | chunks << 8]
        });
    }

    /// The one dispatch (it keeps the table of rows alive).
    pub fn kernel(self, gpu: &Gpu) -> Result<Kernel, GpuError> {
        let rows = self.rows.len() / 4;
        let segs = gpu.upload_u32("conv2d.finish_rows", &self.rows)?;
        let mut params = [0u32; 19];
        params[0] = rows as u32;
        gpu.kernel(
            SHADER,
            "backward_weight_finish_batched",
            &params,
            &[(5, &self.out), (6, &self.partials), (7, &segs)],
            grid_1d(rows * Self::ROW, Self::ROW as u32),
        )
    }
}

/// dbias: the sum of dy over batch and pixels per output channel.
pub fn backward_bias(gpu: &Gpu, s: &Conv2dShape, dy: &Buf, db: &Buf) -> Result<Kernel, GpuError> {
    check(s, &[("dy", dy, s.y_len()), ("db", db, s.c_out)]);
    reduce::channel_sum(gpu, dy, s.n, s.c_out, s.oh() * s.ow(), db)
}

#[cfg(test)]
mod tests {
    use super::{weight_split, Conv2dShape, CPU_PASS1_INVOCATIONS};

    fn pointwise(n: usize, c: usize, hw: usize) -> Conv2dShape {
        Conv2dShape::pointwise(n, c, c, hw, hw)
    }

    /// On a CPU adapter pass 1 of a weight gradient takes at least
    /// CPU_PASS1_INVOCATIONS where its rows allow: bench-small's 1×1 on
    /// 7×7 planes (4 blocks) in 16 chunks, not 6. A GPU's split is its
    /// own, and a few rows cap the chunks.
    #[test]
    fn pass_one_keeps_enough_invocations_on_a_cpu_adapter() {
        let s = pointwise(32, 32, 7);
        let (_, blocks, (_, chunks)) = weight_split(&s, false);
        assert_eq!(blocks, 4);
        assert_eq!(chunks, 16);
        assert!(blocks * chunks >= CPU_PASS1_INVOCATIONS);
        let (_, blocks, (_, chunks)) = weight_split(&s, true);
        assert!(
            blocks * chunks > CPU_PASS1_INVOCATIONS,
            "the GPU split is wider"
        );
        // One image of one row: the chunks are capped by the rows.
        let (_, _, (_, chunks)) = weight_split(&pointwise(1, 32, 1), false);
        assert_eq!(chunks, 1);
    }
}
