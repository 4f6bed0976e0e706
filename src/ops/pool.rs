//! Max pool, average pool (k×k window, stride, padding; PyTorch's
//! `ceil_mode=False`, and `count_include_pad=False` for the average) and
//! global average pool, forward and backward. Shader: `shaders/pool.wgsl`;
//! CPU twin: `cpu`. Max pool's forward saves the argmax (flat index
//! iy·w + ix within each (n, c) plane, u32) that its backward gathers with.
//! Windows up to 5 at stride 1 or 2 run as `pool_rows`' generated kernels.

use super::pool_rows::{self, Kind};
use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel, WG};

/// A pooling of x [n, c, h, w] by a k×k window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Shape {
    /// PyTorch's rules: a window, a stride, padding at most half the window
    /// (so every window holds an input cell), and at least one output.
    pub fn validate(&self) -> Result<(), String> {
        if self.k == 0 || self.stride == 0 {
            return Err(format!("pool {self}: kernel and stride must be ≥ 1"));
        }
        if self.pad > self.k / 2 {
            return Err(format!("pool {self}: padding must be at most kernel/2"));
        }
        if self.h + 2 * self.pad < self.k || self.w + 2 * self.pad < self.k {
            return Err(format!("pool {self}: window larger than the padded input"));
        }
        Ok(())
    }
    /// floor((h + 2·pad − k) / stride) + 1.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn planes(&self) -> usize {
        self.n * self.c
    }
    pub fn input_len(&self) -> usize {
        self.planes() * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.planes() * self.out_h() * self.out_w()
    }
    fn checked(&self) -> &Self {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        self
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{},{},{},{}] k{} s{} p{}",
            self.n, self.c, self.h, self.w, self.k, self.stride, self.pad
        )
    }
}

/// The CPU reference.
pub mod cpu {
    use super::Shape;

    /// Input cells of window (oy, ox) that lie inside the image, row-major.
    fn window(s: &Shape, oy: usize, ox: usize) -> impl Iterator<Item = usize> + '_ {
        let start = |o: usize| (o * s.stride) as isize - s.pad as isize;
        let (y0, x0) = (start(oy), start(ox));
        let k = s.k as isize;
        (y0..y0 + k)
            .filter(|&iy| iy >= 0 && iy < s.h as isize)
            .flat_map(move |iy| {
                (x0..x0 + k)
                    .filter(|&ix| ix >= 0 && ix < s.w as isize)
                    .map(move |ix| iy as usize * s.w + ix as usize)
            })
    }

    /// (y, argmax): the first maximum in row-major window order wins ties.
    pub fn max_pool_forward(s: &Shape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
        s.checked();
        let (hw, ohw) = (s.h * s.w, s.out_h() * s.out_w());
        let mut y = Vec::with_capacity(s.output_len());
        let mut arg = Vec::with_capacity(s.output_len());
        for plane in 0..s.planes() {
            let xp = &x[plane * hw..(plane + 1) * hw];
            for o in 0..ohw {
                let mut best: Option<usize> = None;
                for i in window(s, o / s.out_w(), o % s.out_w()) {
                    if best.is_none_or(|b| xp[i] > xp[b]) {
                        best = Some(i);
                    }
                }
                let b = best.expect("validate: every window holds an input cell");
                y.push(xp[b]);
                arg.push(b as u32);
            }
        }
        (y, arg)
    }

    /// dx: each output's dy goes to the input cell its argmax names.
    pub fn max_pool_backward(s: &Shape, argmax: &[u32], dy: &[f32]) -> Vec<f32> {
        s.checked();
        let (hw, ohw) = (s.h * s.w, s.out_h() * s.out_w());
        let mut dx = vec![0f32; s.input_len()];
        for (o, (&a, &g)) in argmax.iter().zip(dy).enumerate() {
            dx[(o / ohw) * hw + a as usize] += g;
        }
        dx
    }

    /// Averages over the cells inside the image (padding not counted).
    pub fn avg_pool_forward(s: &Shape, x: &[f32]) -> Vec<f32> {
        s.checked();
        let (hw, ohw) = (s.h * s.w, s.out_h() * s.out_w());
        let mut y = Vec::with_capacity(s.output_len());
        for plane in 0..s.planes() {
            let xp = &x[plane * hw..(plane + 1) * hw];
            for o in 0..ohw {
                let (mut acc, mut count) = (0f64, 0usize);
                for i in window(s, o / s.out_w(), o % s.out_w()) {
                    acc += xp[i] as f64;
                    count += 1;
                }
                y.push((acc / count as f64) as f32);
            }
        }
        y
    }

    /// dx: each output's dy / count spread over its window's cells.
    pub fn avg_pool_backward(s: &Shape, dy: &[f32]) -> Vec<f32> {
        s.checked();
        let (hw, ohw) = (s.h * s.w, s.out_h() * s.out_w());
        let mut dx = vec![0f64; s.input_len()];
        for plane in 0..s.planes() {
            for o in 0..ohw {
                let cells: Vec<usize> = window(s, o / s.out_w(), o % s.out_w()).collect();
                let g = dy[plane * ohw + o] as f64 / cells.len() as f64;
                for i in cells {
                    dx[plane * hw + i] += g;
                }
            }
        }
        dx.into_iter().map(|v| v as f32).collect()
    }

    /// [planes, hw] → [planes]: the mean of each plane.
    pub fn global_avg_pool_forward(x: &[f32], hw: usize) -> Vec<f32> {
        x.chunks(hw)
            .map(|p| (p.iter().map(|&v| v as f64).sum::<f64>() / hw as f64) as f32)
            .collect()
    }

    /// dx = dy / hw broadcast over each plane.
    pub fn global_avg_pool_backward(dy: &[f32], hw: usize) -> Vec<f32> {
        dy.iter()
            .flat_map(|&g| std::iter::repeat_n(g / hw as f32, hw))
            .collect()
    }
}

const SHADER: &str = "pool";

/// A 1-D dispatch of `total` invocations; slots as in the shader (1 src,
/// 2 arg_in read; 3 dst, 4 arg_out written).
fn dispatch(
    gpu: &Gpu,
    entry: &'static str,
    s: &Shape,
    total: usize,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    let params = [s.h, s.w, s.out_h(), s.out_w(), s.k, s.stride, s.pad];
    let mut words = vec![total as u32];
    words.extend(params.iter().map(|&v| v as u32));
    gpu.kernel(SHADER, entry, &words, slots, grid_1d(total, WG))
}

/// y [n, c, oh, ow] and argmax (u32, same shape) from x [n, c, h, w].
pub fn max_pool_forward(
    gpu: &Gpu,
    s: &Shape,
    x: &Buf,
    y: &Buf,
    argmax: &Buf,
) -> Result<Kernel, GpuError> {
    let total = s.checked().output_len();
    if pool_rows::fits(s) {
        return pool_rows::kernel(gpu, s, Kind::Max, false, &[(1, x), (3, y), (4, argmax)]);
    }
    dispatch(
        gpu,
        "max_pool_forward",
        s,
        total,
        &[(1, x), (3, y), (4, argmax)],
    )
}

/// dx [n, c, h, w] from dy and the forward's argmax.
pub fn max_pool_backward(
    gpu: &Gpu,
    s: &Shape,
    argmax: &Buf,
    dy: &Buf,
    dx: &Buf,
) -> Result<Kernel, GpuError> {
    let total = s.checked().input_len();
    if pool_rows::fits(s) {
        return pool_rows::kernel(gpu, s, Kind::Max, true, &[(1, dy), (2, argmax), (3, dx)]);
    }
    dispatch(
        gpu,
        "max_pool_backward",
        s,
        total,
        &[(1, dy), (2, argmax), (3, dx)],
    )
}

/// y = BN(pool(x)) with the evaluation batch norm `bn` (running statistics
/// `mean`, `var`, and γ, β where `bn.affine`) applied as the pooling
/// writes (`graph::fuse_pool_batchnorms`): one pass, no argmax. Only for
/// shapes `pool_rows::fits`.
#[allow(clippy::too_many_arguments)]
pub fn pool_bn_forward(
    gpu: &Gpu,
    s: &Shape,
    kind: Kind,
    bn: &super::batchnorm::Shape,
    x: &Buf,
    (mean, var): (&Buf, &Buf),
    affine: Option<(&Buf, &Buf)>,
    y: &Buf,
) -> Result<Kernel, GpuError> {
    s.checked();
    assert!(
        pool_rows::fits(s) && !bn.relu && bn.c == s.c && bn.affine == affine.is_some(),
        "pool {s:?} with batch norm {bn}: not a fusable pair"
    );
    let mut slots = vec![(1, x), (2, mean), (3, y), (4, var)];
    if let Some((g, b)) = affine {
        slots.extend([(5, g), (6, b)]);
    }
    pool_rows::kernel_bn(gpu, s, kind, false, Some((bn.eps, bn.affine)), &slots)
}

pub fn avg_pool_forward(gpu: &Gpu, s: &Shape, x: &Buf, y: &Buf) -> Result<Kernel, GpuError> {
    let total = s.checked().output_len();
    if pool_rows::fits(s) {
        return pool_rows::kernel(gpu, s, Kind::Avg, false, &[(1, x), (3, y)]);
    }
    dispatch(gpu, "avg_pool_forward", s, total, &[(1, x), (3, y)])
}

pub fn avg_pool_backward(gpu: &Gpu, s: &Shape, dy: &Buf, dx: &Buf) -> Result<Kernel, GpuError> {
    let total = s.checked().input_len();
    if pool_rows::fits(s) {
        return pool_rows::kernel(gpu, s, Kind::Avg, true, &[(1, dy), (3, dx)]);
    }
    dispatch(gpu, "avg_pool_backward", s, total, &[(1, dy), (3, dx)])
}

/// Global average pool's parameters in the shader's terms: the plane size
/// travels as h·w with h = hw, w = 1 (the window fields go unused).
fn global(planes: usize, hw: usize) -> Shape {
    assert!(hw > 0, "global_avg_pool: empty planes");
    Shape {
        n: planes,
        c: 1,
        h: hw,
        w: 1,
        k: 1,
        stride: 1,
        pad: 0,
    }
}

/// y [n·c] = the mean of each plane of x [n·c, hw].
pub fn global_avg_pool_forward(gpu: &Gpu, x: &Buf, hw: usize, y: &Buf) -> Result<Kernel, GpuError> {
    let planes = x.len / hw.max(1);
    let s = global(planes, hw);
    dispatch(
        gpu,
        "global_avg_pool_forward",
        &s,
        planes,
        &[(1, x), (3, y)],
    )
}

/// dx [n·c, hw] = dy / hw broadcast over each plane.
pub fn global_avg_pool_backward(
    gpu: &Gpu,
    dy: &Buf,
    hw: usize,
    dx: &Buf,
) -> Result<Kernel, GpuError> {
    let s = global(dy.len, hw);
    dispatch(
        gpu,
        "global_avg_pool_backward",
        &s,
        dx.len,
        &[(1, dy), (3, dx)],
    )
}
