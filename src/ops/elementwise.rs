//! Element-wise ops: ReLU, sigmoid, tanh, add, multiply, scale by a scalar
//! held in a buffer. Shader: `shaders/elementwise.wgsl`; CPU twin: `cpu`.
//! GPU builders are named like the shader's entry points and like their twin.

use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel, WG};

/// The CPU reference.
pub mod cpu {
    pub fn relu_forward(x: &[f32]) -> Vec<f32> {
        x.iter().map(|&v| v.max(0.0)).collect()
    }
    pub fn relu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
        x.iter()
            .zip(dy)
            .map(|(&v, &g)| if v > 0.0 { g } else { 0.0 })
            .collect()
    }
    pub fn sigmoid_forward(x: &[f32]) -> Vec<f32> {
        x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect()
    }
    /// From the forward output y.
    pub fn sigmoid_backward(y: &[f32], dy: &[f32]) -> Vec<f32> {
        y.iter().zip(dy).map(|(&s, &g)| g * s * (1.0 - s)).collect()
    }
    pub fn tanh_forward(x: &[f32]) -> Vec<f32> {
        x.iter().map(|&v| v.tanh()).collect()
    }
    /// From the forward output y.
    pub fn tanh_backward(y: &[f32], dy: &[f32]) -> Vec<f32> {
        y.iter().zip(dy).map(|(&t, &g)| g * (1.0 - t * t)).collect()
    }
    pub fn add_forward(a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }
    /// xs[0] + xs[1] + ..., left to right.
    pub fn sum_forward(xs: &[&[f32]]) -> Vec<f32> {
        xs[1..]
            .iter()
            .fold(xs[0].to_vec(), |acc, x| add_forward(&acc, x))
    }
    pub fn mul_forward(a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| x * y).collect()
    }
    /// (da, db) of y = a ⊙ b.
    pub fn mul_backward(a: &[f32], b: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        (mul_forward(dy, b), mul_forward(dy, a))
    }
    pub fn scale_forward(s: f32, x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| s * v).collect()
    }
    /// y = x + alpha · s · d.
    pub fn axpy(x: &[f32], d: &[f32], s: f32, alpha: f32) -> Vec<f32> {
        assert_eq!(x.len(), d.len(), "axpy: x and d differ in length");
        x.iter().zip(d).map(|(&x, &d)| x + alpha * s * d).collect()
    }
    /// y[r, j] = x[r, j] · s[r] for rows of `s.len()`.
    pub fn row_scale_forward(x: &[f32], s: &[f32]) -> Vec<f32> {
        let cols = x.len() / s.len();
        x.iter()
            .enumerate()
            .map(|(i, &v)| v * s[i / cols])
            .collect()
    }
    /// ds[r] = Σ_j x[r, j] · dy[r, j] over `rows` rows.
    pub fn row_scale_backward_scale(x: &[f32], dy: &[f32], rows: usize) -> Vec<f32> {
        let cols = x.len() / rows;
        (0..rows)
            .map(|r| {
                (r * cols..(r + 1) * cols)
                    .map(|i| x[i] as f64 * dy[i] as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }
    /// (dx, ds) of y = row_scale(x, s).
    pub fn row_scale_backward(x: &[f32], s: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        (
            row_scale_forward(dy, s),
            row_scale_backward_scale(x, dy, s.len()),
        )
    }
    /// (dx, ds) of y = s · x.
    pub fn scale_backward(s: f32, x: &[f32], dy: &[f32]) -> (Vec<f32>, f32) {
        let ds: f64 = x.iter().zip(dy).map(|(&a, &g)| a as f64 * g as f64).sum();
        (scale_forward(s, dy), ds as f32)
    }
}

const SHADER: &str = "elementwise";

/// A 1-D dispatch over `n` elements; slots as in the shader
/// (1 a, 2 b, 3 c read; 4 out0, 5 out1 written).
fn ew(
    gpu: &Gpu,
    entry: &'static str,
    n: usize,
    alpha: f32,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    ew_cols(gpu, entry, n, alpha, 0, slots)
}

fn ew_cols(
    gpu: &Gpu,
    entry: &'static str,
    n: usize,
    alpha: f32,
    cols: usize,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    let params = [n as u32, alpha.to_bits(), cols as u32];
    gpu.kernel(SHADER, entry, &params, slots, grid_1d(n, WG))
}

/// `entry` over float4s when `n` is divisible by 4 (`entry4`, n/4
/// invocations), else over floats.
fn ew4(
    gpu: &Gpu,
    entries: (&'static str, &'static str),
    n: usize,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    ew4_cols(gpu, entries, n, 0, slots)
}

/// `ew4` with the `cols` parameter (sum_forward's addend count).
fn ew4_cols(
    gpu: &Gpu,
    (entry, entry4): (&'static str, &'static str),
    n: usize,
    cols: usize,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    if n.is_multiple_of(4) {
        ew_cols(gpu, entry4, n / 4, 1.0, cols, slots)
    } else {
        ew_cols(gpu, entry, n, 1.0, cols, slots)
    }
}

pub fn relu_forward(gpu: &Gpu, x: &Buf, y: &Buf) -> Result<Kernel, GpuError> {
    let entries = ("relu_forward", "relu_forward4");
    ew4(gpu, entries, x.len, &[(1, x), (4, y)])
}
pub fn relu_backward(gpu: &Gpu, x: &Buf, dy: &Buf, dx: &Buf) -> Result<Kernel, GpuError> {
    let entries = ("relu_backward", "relu_backward4");
    ew4(gpu, entries, x.len, &[(1, x), (2, dy), (4, dx)])
}
pub fn sigmoid_forward(gpu: &Gpu, x: &Buf, y: &Buf) -> Result<Kernel, GpuError> {
    ew(gpu, "sigmoid_forward", x.len, 1.0, &[(1, x), (4, y)])
}
/// From the forward output y.
pub fn sigmoid_backward(gpu: &Gpu, y: &Buf, dy: &Buf, dx: &Buf) -> Result<Kernel, GpuError> {
    ew(
        gpu,
        "sigmoid_backward",
        y.len,
        1.0,
        &[(1, y), (2, dy), (4, dx)],
    )
}
pub fn tanh_forward(gpu: &Gpu, x: &Buf, y: &Buf) -> Result<Kernel, GpuError> {
    ew(gpu, "tanh_forward", x.len, 1.0, &[(1, x), (4, y)])
}
/// From the forward output y.
pub fn tanh_backward(gpu: &Gpu, y: &Buf, dy: &Buf, dx: &Buf) -> Result<Kernel, GpuError> {
    ew(
        gpu,
        "tanh_backward",
        y.len,
        1.0,
        &[(1, y), (2, dy), (4, dx)],
    )
}
pub fn add_forward(gpu: &Gpu, a: &Buf, b: &Buf, y: &Buf) -> Result<Kernel, GpuError> {
    let entries = ("add_forward", "add_forward4");
    ew4(gpu, entries, a.len, &[(1, a), (2, b), (4, y)])
}
/// Most addends of one `sum_forward`: with its output, the 8 storage
/// buffers a shader stage may bind.
pub const MAX_ADDENDS: usize = 7;

/// y = xs[0] + xs[1] + ..., left to right: 2 to `MAX_ADDENDS`
/// equal-length tensors in one pass; two take `add_forward`.
pub fn sum_forward(gpu: &Gpu, xs: &[&Buf], y: &Buf) -> Result<Kernel, GpuError> {
    assert!(
        (2..=MAX_ADDENDS).contains(&xs.len()),
        "sum of {} tensors: 2 to {MAX_ADDENDS} per dispatch",
        xs.len()
    );
    if xs.len() == 2 {
        return add_forward(gpu, xs[0], xs[1], y);
    }
    // Slots 1, 2, 3, 6, 7, 8, 9; those past the last addend bound to the
    // first (read-only, never read).
    let mut slots: Vec<(u32, &Buf)> = vec![(4, y)];
    for (k, slot) in [1, 2, 3, 6, 7, 8, 9].into_iter().enumerate() {
        slots.push((slot, xs.get(k).copied().unwrap_or(xs[0])));
    }
    let entries = ("sum_forward", "sum_forward4");
    ew4_cols(gpu, entries, xs[0].len, xs.len(), &slots)
}
/// out = alpha · x (add's backward with alpha 1: a plain copy).
pub fn copy_scaled(gpu: &Gpu, x: &Buf, out: &Buf, alpha: f32) -> Result<Kernel, GpuError> {
    ew(gpu, "copy_scaled", x.len, alpha, &[(1, x), (4, out)])
}
/// acc += alpha · x: gradient accumulation where a tensor has several users.
pub fn accumulate(gpu: &Gpu, x: &Buf, acc: &Buf, alpha: f32) -> Result<Kernel, GpuError> {
    ew(gpu, "accumulate", x.len, alpha, &[(1, x), (4, acc)])
}
pub fn mul_forward(gpu: &Gpu, a: &Buf, b: &Buf, y: &Buf) -> Result<Kernel, GpuError> {
    ew(gpu, "mul_forward", a.len, 1.0, &[(1, a), (2, b), (4, y)])
}
pub fn mul_backward(
    gpu: &Gpu,
    a: &Buf,
    b: &Buf,
    dy: &Buf,
    da: &Buf,
    db: &Buf,
) -> Result<Kernel, GpuError> {
    let slots = [(1, a), (2, b), (3, dy), (4, da), (5, db)];
    ew(gpu, "mul_backward", a.len, 1.0, &slots)
}
/// y = alpha · s[0] · x, the scalar s held in a one-element buffer. With
/// x = dy it is scale's input gradient; with alpha 2 the squared norm's.
pub fn scale_forward(gpu: &Gpu, s: &Buf, x: &Buf, y: &Buf, alpha: f32) -> Result<Kernel, GpuError> {
    ew(
        gpu,
        "scale_forward",
        x.len,
        alpha,
        &[(1, x), (3, s), (4, y)],
    )
}
/// y = x + alpha · s[0] · d, the scalar s held in a one-element buffer.
pub fn axpy(gpu: &Gpu, x: &Buf, d: &Buf, s: &Buf, y: &Buf, alpha: f32) -> Result<Kernel, GpuError> {
    assert_eq!(x.len, d.len, "axpy: x and d differ in length");
    assert_eq!(s.len, 1, "axpy: the step is a scalar");
    ew(gpu, "axpy", x.len, alpha, &[(1, x), (2, d), (3, s), (4, y)])
}
/// out = alpha · s[0] everywhere (the backward of sum and mean).
pub fn broadcast_scalar(gpu: &Gpu, s: &Buf, out: &Buf, alpha: f32) -> Result<Kernel, GpuError> {
    ew(gpu, "broadcast_scalar", out.len, alpha, &[(3, s), (4, out)])
}

/// y[r, j] = x[r, j] · s[r], rows of x.len / s.len. With x = dy it is the
/// input gradient.
pub fn row_scale_forward(gpu: &Gpu, x: &Buf, s: &Buf, y: &Buf) -> Result<Kernel, GpuError> {
    assert!(
        s.len > 0 && x.len.is_multiple_of(s.len),
        "row_scale: {} elements in {} rows",
        x.len,
        s.len
    );
    let cols = x.len / s.len;
    ew_cols(
        gpu,
        "row_scale_forward",
        x.len,
        1.0,
        cols,
        &[(1, x), (2, s), (4, y)],
    )
}
/// ds[r] = Σ_j x[r, j] · dy[r, j].
pub fn row_scale_backward_scale(
    gpu: &Gpu,
    x: &Buf,
    dy: &Buf,
    ds: &Buf,
) -> Result<Kernel, GpuError> {
    assert!(
        ds.len > 0 && x.len.is_multiple_of(ds.len),
        "row_scale: {} elements in {} rows",
        x.len,
        ds.len
    );
    let cols = x.len / ds.len;
    ew_cols(
        gpu,
        "row_scale_backward_scale",
        ds.len,
        1.0,
        cols,
        &[(1, x), (3, dy), (4, ds)],
    )
}
