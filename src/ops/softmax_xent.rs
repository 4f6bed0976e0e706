//! Row softmax over the last dim of `[rows, cols]`, and the fused
//! log-softmax + cross-entropy with integer labels, averaged over the batch,
//! plus a count of correct predictions (the training loop reads accuracy
//! from the GPU). Shader: `shaders/softmax_xent.wgsl`; CPU twin: `cpu`.
//!
//! Labels are a caller contract: the GPU kernels clamp nothing (a label
//! ≥ cols reads another row's logit or past the buffer), so the data loader
//! checks them once with [`validate_labels`]; the CPU twin asserts it.

use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel, WG};
use crate::ops::reduce;

/// `rows` independent rows of `cols` entries (batch × classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftmaxShape {
    pub rows: usize,
    pub cols: usize,
}

impl SoftmaxShape {
    pub fn validate(&self) -> Result<(), String> {
        if self.rows == 0 || self.cols == 0 {
            return Err(format!("softmax: empty operand in {self:?}"));
        }
        Ok(())
    }
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The label of a padding row (a short last batch filled up to the plan's
/// batch size): it adds no loss and no gradient and is never counted correct.
/// The batch mean still divides by all rows; callers rescale by
/// rows / real rows (PyTorch's `ignore_index`, with a fixed value).
pub const IGNORE: u32 = u32::MAX;

/// Every label names one of `classes` classes (or is IGNORE).
pub fn validate_labels(labels: &[u32], classes: usize) -> Result<(), String> {
    match labels
        .iter()
        .position(|&l| l != IGNORE && l as usize >= classes)
    {
        Some(i) => Err(format!(
            "label {} at position {i} is out of range for {classes} classes",
            labels[i]
        )),
        None => Ok(()),
    }
}

/// The CPU reference (f64 inside a row); rows are `x.len() / cols`.
pub mod cpu {
    /// (row max, Σ exp(x − max)): the max keeps every term ≤ 1.
    fn max_sum_exp(row: &[f32]) -> (f64, f64) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        (m, row.iter().map(|&v| (v as f64 - m).exp()).sum())
    }
    pub fn softmax_forward(x: &[f32], cols: usize) -> Vec<f32> {
        x.chunks(cols)
            .flat_map(|row| {
                let (m, s) = max_sum_exp(row);
                row.iter().map(move |&v| ((v as f64 - m).exp() / s) as f32)
            })
            .collect()
    }
    /// From the forward output y: dx = y ⊙ (dy − Σ_j dy_j y_j).
    pub fn softmax_backward(y: &[f32], dy: &[f32], cols: usize) -> Vec<f32> {
        y.chunks(cols)
            .zip(dy.chunks(cols))
            .flat_map(|(yr, gr)| {
                let d: f64 = yr.iter().zip(gr).map(|(&a, &b)| a as f64 * b as f64).sum();
                yr.iter()
                    .zip(gr)
                    .map(move |(&a, &b)| (a as f64 * (b as f64 - d)) as f32)
            })
            .collect()
    }
    /// (mean over rows of −log softmax(x)[label], the softmax).
    pub fn log_softmax_xent_forward(x: &[f32], labels: &[u32], cols: usize) -> (f32, Vec<f32>) {
        super::validate_labels(labels, cols).unwrap_or_else(|e| panic!("{e}"));
        let probs = softmax_forward(x, cols);
        let total: f64 = x
            .chunks(cols)
            .zip(labels)
            .filter(|(_, &l)| l != super::IGNORE)
            .map(|(row, &l)| {
                let (m, s) = max_sum_exp(row);
                s.ln() - (row[l as usize] as f64 - m)
            })
            .sum();
        ((total / labels.len() as f64) as f32, probs)
    }
    /// dlogits = (softmax − onehot(label)) · dl / rows.
    pub fn log_softmax_xent_backward(
        probs: &[f32],
        labels: &[u32],
        cols: usize,
        dl: f32,
    ) -> Vec<f32> {
        let scale = dl as f64 / labels.len() as f64;
        probs
            .chunks(cols)
            .zip(labels)
            .flat_map(|(row, &l)| {
                row.iter().enumerate().map(move |(j, &p)| {
                    if l == super::IGNORE {
                        return 0.0;
                    }
                    let onehot = if j == l as usize { 1.0 } else { 0.0 };
                    ((p as f64 - onehot) * scale) as f32
                })
            })
            .collect()
    }
    /// Rows whose argmax (the first, on ties) is the label, as f32.
    pub fn correct_count(x: &[f32], labels: &[u32], cols: usize) -> f32 {
        x.chunks(cols)
            .zip(labels)
            .filter(|(row, &l)| {
                let best = (1..cols).fold(0, |b, j| if row[j] > row[b] { j } else { b });
                best == l as usize
            })
            .count() as f32
    }
}

const SHADER: &str = "softmax_xent";

/// Validate the shape and that every buffer in `tensors` holds rows × cols
/// and every one in `per_row` holds rows elements.
fn check(s: &SoftmaxShape, tensors: &[&Buf], per_row: &[&Buf]) {
    s.validate().unwrap_or_else(|e| panic!("{e}"));
    for (bufs, want) in [(tensors, s.len()), (per_row, s.rows)] {
        for b in bufs {
            assert_eq!(
                b.len, want,
                "softmax: a buffer has {} elements, expected {want} for {s:?}",
                b.len
            );
        }
    }
}

/// A dispatch of `threads` invocations (one per row, or per element).
fn dispatch(
    gpu: &Gpu,
    entry: &'static str,
    s: &SoftmaxShape,
    threads: usize,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    let alpha = 1.0 / s.rows as f32;
    let params = [s.rows as u32, s.cols as u32, alpha.to_bits()];
    gpu.kernel(SHADER, entry, &params, slots, grid_1d(threads, WG))
}

pub fn softmax_forward(gpu: &Gpu, s: &SoftmaxShape, x: &Buf, y: &Buf) -> Result<Kernel, GpuError> {
    check(s, &[x, y], &[]);
    dispatch(gpu, "softmax_forward", s, s.rows, &[(1, x), (5, y)])
}
/// From the forward output y.
pub fn softmax_backward(
    gpu: &Gpu,
    s: &SoftmaxShape,
    y: &Buf,
    dy: &Buf,
    dx: &Buf,
) -> Result<Kernel, GpuError> {
    check(s, &[y, dy, dx], &[]);
    let slots = [(1, y), (2, dy), (5, dx)];
    dispatch(gpu, "softmax_backward", s, s.rows, &slots)
}
/// loss[0] = mean over rows of −log softmax(logits)[label]; `probs` gets the
/// softmax that the backward reads. Per-row losses, then reduce's mean.
pub fn log_softmax_xent_forward(
    gpu: &Gpu,
    s: &SoftmaxShape,
    logits: &Buf,
    labels: &Buf,
    probs: &Buf,
    loss: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    check(s, &[logits, probs], &[labels]);
    assert_eq!(loss.len, 1, "log_softmax_xent: the loss is one element");
    let rows = gpu.alloc("xent.row_losses", s.rows)?;
    let slots = [(1, logits), (3, labels), (5, probs), (6, &rows)];
    let mut ks = vec![dispatch(
        gpu,
        "log_softmax_xent_forward",
        s,
        s.rows,
        &slots,
    )?];
    ks.extend(reduce::mean_forward(gpu, &rows, loss)?);
    Ok(ks)
}
/// dlogits = (probs − onehot(label)) · dl[0] / rows.
pub fn log_softmax_xent_backward(
    gpu: &Gpu,
    s: &SoftmaxShape,
    probs: &Buf,
    labels: &Buf,
    dl: &Buf,
    dlogits: &Buf,
) -> Result<Kernel, GpuError> {
    check(s, &[probs, dlogits], &[labels]);
    assert_eq!(dl.len, 1, "log_softmax_xent: dL is one element");
    let slots = [(1, probs), (3, labels), (4, dl), (5, dlogits)];
    dispatch(gpu, "log_softmax_xent_backward", s, s.len(), &slots)
}
/// count[0] = rows whose argmax is the label (as f32): per-row flags, then
/// reduce's sum.
pub fn correct_count(
    gpu: &Gpu,
    s: &SoftmaxShape,
    logits: &Buf,
    labels: &Buf,
    count: &Buf,
) -> Result<Vec<Kernel>, GpuError> {
    check(s, &[logits], &[labels]);
    assert_eq!(count.len, 1, "correct_count: the count is one element");
    let flags = gpu.alloc("xent.correct_rows", s.rows)?;
    let slots = [(1, logits), (3, labels), (6, &flags)];
    let mut ks = vec![dispatch(gpu, "correct_rows", s, s.rows, &slots)?];
    ks.extend(reduce::sum_forward(gpu, &flags, count)?);
    Ok(ks)
}
