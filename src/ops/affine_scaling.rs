//! The affine-scaling interior-point step (Dikin's method, METHOD.md S14)
//! for weights on probability simplices: β_j, block j's weights over its
//! candidate inputs. Shader: `shaders/affine_scaling.wgsl`; CPU twin: `cpu`.
//!
//! β is ragged (a PNAS cell's blocks have 2, 3, 4, 5, 6 candidates), so all
//! blocks of all cells live back to back in one flat buffer, described by
//! `segments`: the length of each block's weight vector, in order. For each
//! segment with weights β (all > 0, Σ = 1) and gradient g:
//!
//! ```text
//! X = diag(β),  λ = (1ᵀX²g)/(1ᵀX²1),  d = −X²(g − λ·1)      (Σ d = 0)
//! t = min(lr, θ · min_{i: d_i < 0} β_i / −d_i)              (t = lr when no d_i < 0)
//! β ← β + t·d, then β_i ← max(β_i, FLOOR·Σβ) and β ← β / Σβ
//! ```
//!
//! **lr semantics.** lr multiplies d itself, the natural scaling of the
//! method: d = −X²(g − λ), so a step moves β_i by lr·β_i²·(g_i − λ), i.e.
//! by lr·β_i·(g_i − λ) *relative* to β_i. Small weights move slowly in
//! absolute terms and never cross the boundary; lr is gradient descent's
//! rate in the metric X⁻² (lr ≈ 1/(β²·curvature) is stable). A very large
//! lr gives the classic long-step method: every step goes θ of the way to
//! the boundary along d. lr must be finite.
//!
//! The final clamp only guards rounding and underflow (θ < 1 already keeps
//! every weight ≥ (1 − θ)·its old value); the renormalisation removes the
//! rounding drift of Σ β.
//!
//! lr (and θ) live in the kernel's uniform: build once, then each step call
//! `kernel.set_params(gpu, &params(&hyper))`, as with `ops::optim`.

use crate::engine::{grid_1d, Buf, Gpu, GpuError, Kernel, WG};

/// Smallest weight relative to its segment's sum after a step (the shader
/// has the same constant).
pub const FLOOR: f64 = 1e-12;

/// Step hyperparameters: `lr` multiplies the direction d (see the module
/// docs), `theta` ∈ (0, 1) is the largest fraction of the distance to the
/// simplex boundary one step may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineHyper {
    pub lr: f32,
    pub theta: f32,
}

impl AffineHyper {
    /// θ = 0.9, the usual fraction of the distance to the boundary.
    pub fn new(lr: f32) -> AffineHyper {
        AffineHyper { lr, theta: 0.9 }
    }
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(format!(
                "affine_scaling: lr must be finite and ≥ 0 in {self:?}"
            ));
        }
        if !(self.theta > 0.0 && self.theta < 1.0) {
            return Err(format!("affine_scaling: θ must lie in (0, 1) in {self:?}"));
        }
        Ok(())
    }
}

/// The uniform words (shader `Params`) of a step.
pub fn params(h: &AffineHyper) -> Vec<u32> {
    h.validate().unwrap_or_else(|e| panic!("{e}"));
    vec![h.lr.to_bits(), h.theta.to_bits()]
}

/// Check a segment layout against `n` weights: at least one segment, none
/// empty, lengths summing to n.
pub fn validate(segments: &[usize], n: usize) -> Result<(), String> {
    if segments.is_empty() {
        return Err("affine_scaling: no segments".into());
    }
    if let Some(s) = segments.iter().position(|&l| l == 0) {
        return Err(format!("affine_scaling: segment {s} is empty"));
    }
    let total: usize = segments.iter().sum();
    if total != n {
        return Err(format!(
            "affine_scaling: segments {segments:?} cover {total} weights, the buffers hold {n}"
        ));
    }
    Ok(())
}

/// Segment boundaries: segment s is [offsets[s], offsets[s + 1]).
pub fn offsets(segments: &[usize]) -> Vec<usize> {
    std::iter::once(0)
        .chain(segments.iter().scan(0, |end, &l| {
            *end += l;
            Some(*end)
        }))
        .collect()
}

/// The CPU reference, in f64 inside.
pub mod cpu {
    use super::{offsets, validate, AffineHyper, FLOOR};

    /// One step of every segment of `beta` in place (see the module docs).
    pub fn step(h: &AffineHyper, beta: &mut [f32], grad: &[f32], segments: &[usize]) {
        h.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(beta.len(), grad.len(), "affine_scaling: beta vs grad");
        validate(segments, beta.len()).unwrap_or_else(|e| panic!("{e}"));
        for w in offsets(segments).windows(2) {
            segment(h, &mut beta[w[0]..w[1]], &grad[w[0]..w[1]]);
        }
    }

    fn segment(h: &AffineHyper, beta: &mut [f32], grad: &[f32]) {
        let b: Vec<f64> = beta.iter().map(|&v| v as f64).collect();
        // Relative to the first entry, as the shader (which needs it for a
        // gradient constant over the segment to give d = 0 exactly in f32).
        let g: Vec<f64> = grad.iter().map(|&v| v as f64 - grad[0] as f64).collect();
        let num: f64 = b.iter().zip(&g).map(|(b, g)| b * b * g).sum();
        let den: f64 = b.iter().map(|b| b * b).sum();
        let lambda = num / den;
        let d: Vec<f64> = b
            .iter()
            .zip(&g)
            .map(|(b, g)| -b * b * (g - lambda))
            .collect();
        let t = b
            .iter()
            .zip(&d)
            .filter(|(_, &d)| d < 0.0)
            .map(|(b, d)| h.theta as f64 * b / -d)
            .fold(h.lr as f64, f64::min);
        let stepped: Vec<f64> = b.iter().zip(&d).map(|(b, d)| b + t * d).collect();
        let floor = FLOOR * stepped.iter().sum::<f64>();
        let clamped: Vec<f64> = stepped.iter().map(|&v| v.max(floor)).collect();
        let kept: f64 = clamped.iter().sum();
        for (out, v) in beta.iter_mut().zip(clamped) {
            *out = (v / kept) as f32;
        }
    }
}

const SHADER: &str = "affine_scaling";

/// One step of every segment of `beta` (read and written in place) with
/// gradient `grad`; `segments` are the lengths of the blocks' weight
/// vectors in order. The segment table is uploaded once here and kept
/// alive by the kernel; change lr per step with `set_params(params(..))`.
pub fn step(
    gpu: &Gpu,
    h: &AffineHyper,
    segments: &[usize],
    beta: &Buf,
    grad: &Buf,
) -> Result<Kernel, GpuError> {
    assert_eq!(beta.len, grad.len, "affine_scaling: beta vs grad");
    assert!(
        !beta.same_buffer(grad),
        "affine_scaling: beta is written, grad read: they need separate buffers"
    );
    validate(segments, beta.len).unwrap_or_else(|e| panic!("{e}"));
    let table: Vec<u32> = offsets(segments).iter().map(|&o| o as u32).collect();
    let table = gpu.upload_u32("affine_scaling.offsets", &table)?;
    gpu.kernel(
        SHADER,
        "step",
        &params(h),
        &[(1, grad), (2, &table), (3, beta)],
        grid_1d(segments.len(), WG),
    )
}
