//! Matmul with optional transposes, and `linear` (y = x·Wᵀ + b) built on it.
//! Shader: `shaders/matmul.wgsl`, two kernels: register-blocked without
//! barriers (`MatmulKernel::Blocked`) and workgroup-tiled (`Tiled`). The
//! backward passes are matmuls with the transpose flags rearranged, so no
//! transpose kernel exists. CPU twin: `cpu`.

use crate::engine::{Buf, Gpu, GpuError, Kernel};
use crate::ops::reduce;

/// C[m, n] = op(A)[m, k] · op(B)[k, n]. A is stored [m, k], or [k, m] when
/// `trans_a`; B is stored [k, n], or [n, k] when `trans_b` (row-major).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl MatmulShape {
    pub fn new(m: usize, k: usize, n: usize, trans_a: bool, trans_b: bool) -> Self {
        MatmulShape {
            m,
            k,
            n,
            trans_a,
            trans_b,
        }
    }
    pub fn validate(&self) -> Result<(), String> {
        if self.m == 0 || self.k == 0 || self.n == 0 {
            return Err(format!("matmul {self:?}: every dimension must be ≥ 1"));
        }
        // The blocked kernel covers 32 rows/columns per workgroup, and a grid
        // dimension holds at most 65,535 workgroups.
        if self.m.div_ceil(32) > 65_535 || self.n.div_ceil(32) > 65_535 {
            return Err(format!("matmul {self:?}: m or n too large for one grid"));
        }
        Ok(())
    }
    pub fn a_len(&self) -> usize {
        self.m * self.k
    }
    pub fn b_len(&self) -> usize {
        self.k * self.n
    }
    pub fn c_len(&self) -> usize {
        self.m * self.n
    }
    /// Multiply-adds × 2, for GFLOP/s figures.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.k as f64 * self.n as f64
    }
    /// The matmul whose output is dA (stored like A): dA = dC·op(B)ᵀ, or
    /// its transpose op(B)·dCᵀ when A is stored transposed. Returns whether B
    /// is the first operand.
    fn grad_a(&self) -> (MatmulShape, bool) {
        let &MatmulShape { m, k, n, .. } = self;
        if self.trans_a {
            (MatmulShape::new(k, n, m, self.trans_b, true), true)
        } else {
            (MatmulShape::new(m, n, k, false, !self.trans_b), false)
        }
    }
    /// The matmul whose output is dB (stored like B): dB = op(A)ᵀ·dC, or
    /// dCᵀ·op(A) when B is stored transposed. Returns whether A is the first
    /// operand.
    fn grad_b(&self) -> (MatmulShape, bool) {
        let &MatmulShape { m, k, n, .. } = self;
        if self.trans_b {
            (MatmulShape::new(n, m, k, true, self.trans_a), false)
        } else {
            (MatmulShape::new(k, m, n, !self.trans_a, false), true)
        }
    }
}

/// y[batch, out] = x[batch, in] · W[out, in]ᵀ (+ b[out]), PyTorch's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearShape {
    pub batch: usize,
    pub in_features: usize,
    pub out_features: usize,
}

impl LinearShape {
    /// The forward as a matmul: m = batch, k = in, n = out, W transposed.
    pub fn matmul(&self) -> MatmulShape {
        MatmulShape::new(self.batch, self.in_features, self.out_features, false, true)
    }
    pub fn validate(&self) -> Result<(), String> {
        self.matmul().validate()
    }
    pub fn x_len(&self) -> usize {
        self.batch * self.in_features
    }
    pub fn w_len(&self) -> usize {
        self.out_features * self.in_features
    }
    pub fn y_len(&self) -> usize {
        self.batch * self.out_features
    }
}

/// The CPU reference: plain loops, f64 accumulation.
pub mod cpu {
    use super::{LinearShape, MatmulShape};

    /// Index of element (r, c) of a logical [rows, cols] matrix stored
    /// row-major, or stored as its transpose [cols, rows] when `trans`.
    fn at(trans: bool, rows: usize, cols: usize, r: usize, c: usize) -> usize {
        if trans {
            c * rows + r
        } else {
            r * cols + c
        }
    }

    pub fn forward(s: &MatmulShape, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0f32; s.c_len()];
        for i in 0..s.m {
            for j in 0..s.n {
                let mut acc = 0f64;
                for l in 0..s.k {
                    let x = a[at(s.trans_a, s.m, s.k, i, l)];
                    let y = b[at(s.trans_b, s.k, s.n, l, j)];
                    acc += x as f64 * y as f64;
                }
                c[i * s.n + j] = acc as f32;
            }
        }
        c
    }

    /// dA, laid out like A: dop(A)[i, l] = Σ_j dC[i, j] · op(B)[l, j].
    pub fn backward_a(s: &MatmulShape, b: &[f32], dc: &[f32]) -> Vec<f32> {
        let mut da = vec![0f32; s.a_len()];
        for i in 0..s.m {
            for l in 0..s.k {
                let mut acc = 0f64;
                for j in 0..s.n {
                    acc += dc[i * s.n + j] as f64 * b[at(s.trans_b, s.k, s.n, l, j)] as f64;
                }
                da[at(s.trans_a, s.m, s.k, i, l)] = acc as f32;
            }
        }
        da
    }

    /// dB, laid out like B: dop(B)[l, j] = Σ_i op(A)[i, l] · dC[i, j].
    pub fn backward_b(s: &MatmulShape, a: &[f32], dc: &[f32]) -> Vec<f32> {
        let mut db = vec![0f32; s.b_len()];
        for l in 0..s.k {
            for j in 0..s.n {
                let mut acc = 0f64;
                for i in 0..s.m {
                    acc += a[at(s.trans_a, s.m, s.k, i, l)] as f64 * dc[i * s.n + j] as f64;
                }
                db[at(s.trans_b, s.k, s.n, l, j)] = acc as f32;
            }
        }
        db
    }

    pub fn linear_forward(s: &LinearShape, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        let mut y = forward(&s.matmul(), x, w);
        if let Some(bias) = bias {
            for row in y.chunks_mut(s.out_features) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        }
        y
    }
    /// dx = dy · W.
    pub fn linear_backward_input(s: &LinearShape, w: &[f32], dy: &[f32]) -> Vec<f32> {
        backward_a(&s.matmul(), w, dy)
    }
    /// dW = dyᵀ · x.
    pub fn linear_backward_weight(s: &LinearShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
        backward_b(&s.matmul(), x, dy)
    }
    /// db = column sums of dy.
    pub fn linear_backward_bias(s: &LinearShape, dy: &[f32]) -> Vec<f32> {
        crate::ops::reduce::cpu::channel_sum(dy, s.batch, s.out_features, 1)
    }
}

const SHADER: &str = "matmul";

/// Which matmul kernel to dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKernel {
    /// Each invocation keeps a 4×4 block of C in registers and reads A and B
    /// from global memory; no workgroup memory, no barriers.
    Blocked,
    /// 64×64 tiles staged through workgroup memory with barriers.
    Tiled,
}

impl MatmulKernel {
    /// Blocked on CPU implementations (lavapipe runs barriers as costly
    /// context switches: Tiled measured ~1.5× slower there at 256³), Tiled
    /// on real GPUs, where workgroup memory saves global-memory traffic.
    pub fn default_for(gpu: &Gpu) -> MatmulKernel {
        if gpu.info.device_type == wgpu::DeviceType::Cpu {
            MatmulKernel::Blocked
        } else {
            MatmulKernel::Tiled
        }
    }
}

/// One matmul dispatch `c = op(a)·op(b) (+ bias)`.
fn dispatch(
    gpu: &Gpu,
    s: &MatmulShape,
    kernel: MatmulKernel,
    a: &Buf,
    b: &Buf,
    bias: Option<&Buf>,
    c: &Buf,
) -> Result<Kernel, GpuError> {
    // Impossible shapes are programming errors of the caller: panic clearly.
    s.validate().unwrap_or_else(|e| panic!("{e}"));
    let mut want = vec![
        ("A", a, s.a_len()),
        ("B", b, s.b_len()),
        ("C", c, s.c_len()),
    ];
    want.extend(bias.map(|v| ("bias", v, s.n)));
    for (what, buf, len) in want {
        assert_eq!(
            buf.len, len,
            "matmul {s:?}: {what} has {} elements",
            buf.len
        );
    }
    let (a_row, a_col) = if s.trans_a { (1, s.m) } else { (s.k, 1) };
    let (b_row, b_col) = if s.trans_b { (1, s.k) } else { (s.n, 1) };
    let params = [
        s.m as u32,
        s.k as u32,
        s.n as u32,
        a_row as u32,
        a_col as u32,
        b_row as u32,
        b_col as u32,
        bias.is_some() as u32,
    ];
    let (entry, per_group) = match kernel {
        MatmulKernel::Blocked => ("matmul_blocked", 32),
        MatmulKernel::Tiled => ("matmul_tiled", 64),
    };
    let groups = [
        s.n.div_ceil(per_group) as u32,
        s.m.div_ceil(per_group) as u32,
        1,
    ];
    // The shaders name the bias slot in every entry point; without a bias
    // `a` stands in (read-only, never read).
    let slots = [(1, a), (2, b), (3, bias.unwrap_or(a)), (4, c)];
    gpu.kernel(SHADER, entry, &params, &slots, groups)
}

/// c = op(a) · op(b).
pub fn forward(
    gpu: &Gpu,
    s: &MatmulShape,
    kernel: MatmulKernel,
    a: &Buf,
    b: &Buf,
    c: &Buf,
) -> Result<Kernel, GpuError> {
    dispatch(gpu, s, kernel, a, b, None, c)
}

/// da (laid out like a) from b and dc.
pub fn backward_a(
    gpu: &Gpu,
    s: &MatmulShape,
    kernel: MatmulKernel,
    b: &Buf,
    dc: &Buf,
    da: &Buf,
) -> Result<Kernel, GpuError> {
    let (g, b_first) = s.grad_a();
    let (x, y) = if b_first { (b, dc) } else { (dc, b) };
    dispatch(gpu, &g, kernel, x, y, None, da)
}

/// db (laid out like b) from a and dc.
pub fn backward_b(
    gpu: &Gpu,
    s: &MatmulShape,
    kernel: MatmulKernel,
    a: &Buf,
    dc: &Buf,
    db: &Buf,
) -> Result<Kernel, GpuError> {
    let (g, a_first) = s.grad_b();
    let (x, y) = if a_first { (a, dc) } else { (dc, a) };
    dispatch(gpu, &g, kernel, x, y, None, db)
}

/// y = x · Wᵀ (+ bias), the bias fused into the matmul's store.
pub fn linear_forward(
    gpu: &Gpu,
    s: &LinearShape,
    kernel: MatmulKernel,
    x: &Buf,
    w: &Buf,
    bias: Option<&Buf>,
    y: &Buf,
) -> Result<Kernel, GpuError> {
    dispatch(gpu, &s.matmul(), kernel, x, w, bias, y)
}

/// dx = dy · W.
pub fn linear_backward_input(
    gpu: &Gpu,
    s: &LinearShape,
    kernel: MatmulKernel,
    w: &Buf,
    dy: &Buf,
    dx: &Buf,
) -> Result<Kernel, GpuError> {
    backward_a(gpu, &s.matmul(), kernel, w, dy, dx)
}

/// dW = dyᵀ · x.
pub fn linear_backward_weight(
    gpu: &Gpu,
    s: &LinearShape,
    kernel: MatmulKernel,
    x: &Buf,
    dy: &Buf,
    dw: &Buf,
) -> Result<Kernel, GpuError> {
    backward_b(gpu, &s.matmul(), kernel, x, dy, dw)
}

/// db = column sums of dy.
pub fn linear_backward_bias(
    gpu: &Gpu,
    s: &LinearShape,
    dy: &Buf,
    db: &Buf,
) -> Result<Kernel, GpuError> {
    reduce::channel_sum(gpu, dy, s.batch, s.out_features, 1, db)
}
