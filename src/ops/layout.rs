//! Data movement: channel concat of K NCHW tensors and its inverse, channel
//! split; spatial slice with offset and zero padding (FactorizedReduce's
//! `x[:, :, 1:, 1:]`). Shader: `shaders/layout.wgsl`; CPU twin: `cpu`.
//!
//! A dispatch may bind at most 8 storage buffers, so a concat is one
//! dispatch per part: `channel_insert` writes a part into its channel range
//! of the whole, `channel_extract` reads it back out. concat forward and
//! split backward are inserts; concat backward and split forward extracts.

use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel, WG};

/// K tensors `[batch, channels[k], h, w]` and their channel concatenation
/// `[batch, Σ channels, h, w]` (the whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcatShape {
    pub batch: usize,
    pub channels: Vec<usize>,
    pub h: usize,
    pub w: usize,
}

impl ConcatShape {
    pub fn validate(&self) -> Result<(), String> {
        if self.channels.is_empty() {
            return Err("concat: no parts".into());
        }
        if self.batch == 0 || self.h == 0 || self.w == 0 || self.channels.contains(&0) {
            return Err(format!("concat: empty tensor in {self:?}"));
        }
        Ok(())
    }
    /// Channels of the whole.
    pub fn total_channels(&self) -> usize {
        self.channels.iter().sum()
    }
    /// Elements of part k.
    pub fn part_len(&self, k: usize) -> usize {
        self.batch * self.channels[k] * self.h * self.w
    }
    /// Elements of the whole.
    pub fn whole_len(&self) -> usize {
        self.batch * self.total_channels() * self.h * self.w
    }
    /// First channel of part k in the whole.
    pub fn channel_offset(&self, k: usize) -> usize {
        self.channels[..k].iter().sum()
    }
}

/// y[n, c, i, j] = x[n, c, i + oy, j + ox] where that lies inside x, else 0,
/// for x `[batch, channels, h, w]` and y `[batch, channels, out_h, out_w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceShape {
    pub batch: usize,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub oy: usize,
    pub ox: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl SliceShape {
    /// FactorizedReduce's second branch `x[:, :, 1:, 1:]`, zero-padded back to
    /// the input size so that both stride-2 branches agree for odd inputs too.
    pub fn factorized_reduce(batch: usize, channels: usize, h: usize, w: usize) -> Self {
        SliceShape {
            batch,
            channels,
            h,
            w,
            oy: 1,
            ox: 1,
            out_h: h,
            out_w: w,
        }
    }
    pub fn validate(&self) -> Result<(), String> {
        let dims = [
            self.batch,
            self.channels,
            self.h,
            self.w,
            self.out_h,
            self.out_w,
        ];
        if dims.contains(&0) {
            return Err(format!("slice: empty tensor in {self:?}"));
        }
        Ok(())
    }
    pub fn in_len(&self) -> usize {
        self.batch * self.channels * self.h * self.w
    }
    pub fn out_len(&self) -> usize {
        self.batch * self.channels * self.out_h * self.out_w
    }
}

/// The CPU reference.
pub mod cpu {
    use super::{ConcatShape, SliceShape};

    /// The concatenation of parts that are each the sum of `addends[k]`
    /// tensors (`xs` holds them in order).
    pub fn concat_sums_forward(s: &ConcatShape, addends: &[usize], xs: &[&[f32]]) -> Vec<f32> {
        assert_eq!(
            addends.iter().sum::<usize>(),
            xs.len(),
            "concat_sums: addends"
        );
        let mut rest = xs;
        let parts: Vec<Vec<f32>> = addends
            .iter()
            .map(|&a| {
                let (these, more) = rest.split_at(a);
                rest = more;
                crate::ops::elementwise::cpu::sum_forward(these)
            })
            .collect();
        let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
        concat_forward(s, &refs)
    }
    pub fn concat_forward(s: &ConcatShape, xs: &[&[f32]]) -> Vec<f32> {
        let hw = s.h * s.w;
        let mut y = Vec::with_capacity(s.whole_len());
        for n in 0..s.batch {
            for (x, &c) in xs.iter().zip(&s.channels) {
                y.extend_from_slice(&x[n * c * hw..(n + 1) * c * hw]);
            }
        }
        y
    }
    /// The parts' gradients: dy cut back along channels.
    pub fn concat_backward(s: &ConcatShape, dy: &[f32]) -> Vec<Vec<f32>> {
        let hw = s.h * s.w;
        let ct = s.total_channels();
        (0..s.channels.len())
            .map(|k| {
                let (off, c) = (s.channel_offset(k), s.channels[k]);
                (0..s.batch)
                    .flat_map(|n| {
                        let base = (n * ct + off) * hw;
                        dy[base..base + c * hw].iter().copied()
                    })
                    .collect()
            })
            .collect()
    }
    pub fn split_forward(s: &ConcatShape, x: &[f32]) -> Vec<Vec<f32>> {
        concat_backward(s, x)
    }
    pub fn split_backward(s: &ConcatShape, dys: &[&[f32]]) -> Vec<f32> {
        concat_forward(s, dys)
    }

    /// (x index, y index) of every output element that lies inside x.
    fn slice_pairs(s: &SliceShape) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..s.batch * s.channels).flat_map(move |plane| {
            (0..s.out_h).flat_map(move |i| {
                (0..s.out_w).filter_map(move |j| {
                    let (si, sj) = (i + s.oy, j + s.ox);
                    (si < s.h && sj < s.w).then(|| {
                        let xi = (plane * s.h + si) * s.w + sj;
                        (xi, (plane * s.out_h + i) * s.out_w + j)
                    })
                })
            })
        })
    }
    pub fn slice_forward(s: &SliceShape, x: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0; s.out_len()];
        for (xi, yi) in slice_pairs(s) {
            y[yi] = x[xi];
        }
        y
    }
    pub fn slice_backward(s: &SliceShape, dy: &[f32]) -> Vec<f32> {
        let mut dx = vec![0.0; s.in_len()];
        for (xi, yi) in slice_pairs(s) {
            dx[xi] = dy[yi];
        }
        dx
    }
}

const SHADER: &str = "layout";

fn check_len(what: &str, b: &Buf, want: usize) {
    assert_eq!(
        b.len, want,
        "layout: {what} has {} elements, expected {want}",
        b.len
    );
}

/// Planes per invocation of the z grid (at most; more where the planes
/// pass 65,535 × this): fewer, longer invocations, each computing its
/// index within a plane once.
const PLANES_PER_Z: usize = 4;

/// A dispatch writing `per` elements of each of `params[0]` planes of
/// `dst` (params in the shader's field order: planes, cp, cw, off, hw, h,
/// w, oh, ow, oy, ox, relu).
fn dispatch(
    gpu: &Gpu,
    entry: &'static str,
    params: [usize; 12],
    per: usize,
    src: &Buf,
    dst: &Buf,
) -> Result<Kernel, GpuError> {
    dispatch_slots(gpu, entry, params, per, &[(1, src), (2, dst)])
}

/// `dispatch` binding `slots`.
fn dispatch_slots(
    gpu: &Gpu,
    entry: &'static str,
    params: [usize; 12],
    per: usize,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    let words = params.map(|v| v as u32);
    let [x, y, _] = grid_1d(per, WG);
    let z = params[0].div_ceil(PLANES_PER_Z).clamp(1, 65_535) as u32;
    gpu.kernel(SHADER, entry, &words, slots, [x, y, z])
}

/// A dispatch over the elements of part k: `insert` copies the part into
/// its channel range of the whole, otherwise that range into the part.
fn part_kernel(
    gpu: &Gpu,
    s: &ConcatShape,
    k: usize,
    part: &Buf,
    whole: &Buf,
    insert: bool,
) -> Result<Kernel, GpuError> {
    part_kernel_sum(gpu, s, k, part, None, whole, insert)
}

/// `part_kernel`, inserting the sum `part` + `b` where `b` is given.
fn part_kernel_sum(
    gpu: &Gpu,
    s: &ConcatShape,
    k: usize,
    part: &Buf,
    b: Option<&Buf>,
    whole: &Buf,
    insert: bool,
) -> Result<Kernel, GpuError> {
    debug_assert!(insert || b.is_none());
    s.validate().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        k < s.channels.len(),
        "concat: part {k} of {}",
        s.channels.len()
    );
    check_len("part", part, s.part_len(k));
    check_len("whole", whole, s.whole_len());
    let (c, ct, off) = (s.channels[k], s.total_channels(), s.channel_offset(k));
    // Planes of whole float4s move 4 values per load and store: a 5-block
    // cell's concatenation 1.42–1.66 → 0.84–1.19 ms on lavapipe.
    let (hw, vec4) = match s.h * s.w {
        hw if hw % 4 == 0 => (hw / 4, true),
        hw => (hw, false),
    };
    let params = [s.batch, c, ct, off, hw, 0, 0, 0, 0, 0, 0, 0];
    let (entry, src, dst) = match (insert, vec4, b.is_some()) {
        (true, false, false) => ("channel_insert", part, whole),
        (true, true, false) => ("channel_insert4", part, whole),
        (true, false, true) => ("channel_insert_add", part, whole),
        (true, true, true) => ("channel_insert_add4", part, whole),
        (false, false, _) => ("channel_extract", whole, part),
        (false, true, _) => ("channel_extract4", whole, part),
    };
    match b {
        Some(b) => {
            check_len("part's second addend", b, s.part_len(k));
            dispatch_slots(gpu, entry, params, c * hw, &[(1, src), (3, b), (2, dst)])
        }
        None => dispatch(gpu, entry, params, c * hw, src, dst),
    }
}

/// Write part k into its channel range of `whole`.
pub fn channel_insert(
    gpu: &Gpu,
    s: &ConcatShape,
    k: usize,
    part: &Buf,
    whole: &Buf,
) -> Result<Kernel, GpuError> {
    part_kernel(gpu, s, k, part, whole, true)
}

/// Read part k's channel range of `whole` into `part`.
pub fn channel_extract(
    gpu: &Gpu,
    s: &ConcatShape,
    k: usize,
    whole: &Buf,
    part: &Buf,
) -> Result<Kernel, GpuError> {
    part_kernel(gpu, s, k, part, whole, false)
}

fn check_parts(s: &ConcatShape, parts: &[&Buf]) {
    assert_eq!(
        parts.len(),
        s.channels.len(),
        "layout: {} buffers for {} parts",
        parts.len(),
        s.channels.len()
    );
}

/// y = concat(xs) along channels: one insert per part.
pub fn concat_forward(
    gpu: &Gpu,
    s: &ConcatShape,
    xs: &[&Buf],
    y: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    check_parts(s, xs);
    xs.iter()
        .enumerate()
        .map(|(k, x)| channel_insert(gpu, s, k, x, y))
        .collect()
}
/// y = the concatenation of parts that are each the sum of `addends[k]`
/// (1 or 2) of `xs` (in order): one insert per part, of the sum where two.
pub fn concat_sums_forward(
    gpu: &Gpu,
    s: &ConcatShape,
    addends: &[usize],
    xs: &[&Buf],
    y: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    assert_eq!(
        addends.len(),
        s.channels.len(),
        "concat_sums: one count per part"
    );
    assert_eq!(
        addends.iter().sum::<usize>(),
        xs.len(),
        "concat_sums: addends"
    );
    let mut at = 0;
    let mut ks = Vec::with_capacity(addends.len());
    for (k, &a) in addends.iter().enumerate() {
        let b = match a {
            1 => None,
            2 => Some(xs[at + 1]),
            _ => panic!("concat_sums: a part of {a} addends (1 or 2)"),
        };
        ks.push(part_kernel_sum(gpu, s, k, xs[at], b, y, true)?);
        at += a;
    }
    Ok(ks)
}
/// dxs[k] = dy's channel range of part k: one extract per part.
pub fn concat_backward(
    gpu: &Gpu,
    s: &ConcatShape,
    dy: &Buf,
    dxs: &[&Buf],
) -> Result<Vec<Kernel>, GpuError> {
    check_parts(s, dxs);
    dxs.iter()
        .enumerate()
        .map(|(k, dx)| channel_extract(gpu, s, k, dy, dx))
        .collect()
}
/// ys = split(x) along channels (the parts' sizes in `s.channels`).
pub fn split_forward(
    gpu: &Gpu,
    s: &ConcatShape,
    x: &Buf,
    ys: &[&Buf],
) -> Result<Vec<Kernel>, GpuError> {
    concat_backward(gpu, s, x, ys)
}
pub fn split_backward(
    gpu: &Gpu,
    s: &ConcatShape,
    dys: &[&Buf],
    dx: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    concat_forward(gpu, s, dys, dx)
}

fn slice_params(s: &SliceShape) -> [usize; 12] {
    s.validate().unwrap_or_else(|e| panic!("{e}"));
    let planes = s.batch * s.channels;
    [
        planes, 0, 0, 0, 0, s.h, s.w, s.out_h, s.out_w, s.oy, s.ox, 0,
    ]
}

/// FactorizedReduce's slices (column offset 1, the width kept) over rows
/// of whole float4s take the float4 entries: two float4 loads and one
/// store per four outputs instead of four scalar loads and stores.
fn slice_quads(s: &SliceShape) -> Option<[usize; 12]> {
    let fits = s.ox == 1 && s.out_w == s.w && s.w.is_multiple_of(4);
    fits.then(|| {
        let mut p = slice_params(s);
        // p.w and p.ow count float4s.
        (p[6], p[8]) = (s.w / 4, s.w / 4);
        p
    })
}

/// y = the slice of x, or with `relu` of max(x, 0) (a ReLU fused into the
/// reads).
pub fn slice_forward(
    gpu: &Gpu,
    s: &SliceShape,
    relu: bool,
    x: &Buf,
    y: &Buf,
) -> Result<Kernel, GpuError> {
    check_len("slice input", x, s.in_len());
    check_len("slice output", y, s.out_len());
    let (entry, mut p, per) = match slice_quads(s) {
        Some(p) => ("slice_forward4_x1", p, s.out_h * s.w / 4),
        None => ("slice_forward", slice_params(s), s.out_h * s.out_w),
    };
    p[11] = usize::from(relu);
    dispatch(gpu, entry, p, per, x, y)
}
/// dx = dy scattered back to where the forward read, as a gather: every dx
/// element is written (zero where no output read it).
pub fn slice_backward(gpu: &Gpu, s: &SliceShape, dy: &Buf, dx: &Buf) -> Result<Kernel, GpuError> {
    check_len("slice output gradient", dy, s.out_len());
    check_len("slice input gradient", dx, s.in_len());
    if let Some(p) = slice_quads(s) {
        return dispatch(gpu, "slice_backward4_x1", p, s.h * s.w / 4, dy, dx);
    }
    dispatch(gpu, "slice_backward", slice_params(s), s.h * s.w, dy, dx)
}
