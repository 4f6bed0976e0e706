//! Batch normalization of x [n, c, hw] (NCHW, spatial dims flattened), in
//! training mode (batch statistics, running statistics updated in place
//! with PyTorch's momentum rule and unbiased variance) and evaluation mode
//! (running statistics), with or without the affine γ, β. Shader:
//! `shaders/batchnorm.wgsl`; CPU twin: `cpu`.

use std::fmt::Write as _;

use crate::engine::{grid_1d, shaders, Buf, Gpu, GpuError, Kernel};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    /// Spatial size h·w.
    pub hw: usize,
    /// Learnable γ, β of shape [c] (the DARTS supernet runs without).
    pub affine: bool,
    pub eps: f32,
    /// Running-statistics weight of the new batch (PyTorch's momentum).
    pub momentum: f32,
    /// A ReLU fused after a training batch norm: y = max(x̂, 0), the
    /// backward masking dy by x̂ > 0 (x̂ recomputed from x and the saved
    /// statistics). It saves the ReLU's pass over the tensor each way.
    /// Only without affine: the backward would need β as a ninth storage
    /// buffer.
    pub relu: bool,
}

impl Shape {
    /// PyTorch's defaults: eps 1e-5, momentum 0.1.
    pub fn new(n: usize, c: usize, hw: usize, affine: bool) -> Shape {
        Shape {
            n,
            c,
            hw,
            affine,
            eps: 1e-5,
            momentum: 0.1,
            relu: false,
        }
    }
    /// This batch norm with a ReLU fused after it (training, no affine).
    pub fn with_relu(self) -> Shape {
        Shape { relu: true, ..self }
    }
    /// Values per channel.
    pub fn m(&self) -> usize {
        self.n * self.hw
    }
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn validate(&self) -> Result<(), String> {
        if self.c == 0 || self.m() == 0 {
            return Err(format!("batchnorm {self}: empty tensor"));
        }
        if self.relu && self.affine {
            return Err(format!(
                "batchnorm {self}: a fused ReLU needs a batch norm without affine \
                 (its backward would bind β as a ninth storage buffer)"
            ));
        }
        // One workgroup per channel in training.
        if self.c > 65_535 {
            return Err(format!("batchnorm {self}: more than 65,535 channels"));
        }
        Ok(())
    }
    /// Training also needs two values per channel: the unbiased variance
    /// divides by M − 1 (PyTorch refuses the same).
    pub fn validate_train(&self) -> Result<(), String> {
        self.validate()?;
        if self.m() < 2 {
            return Err(format!(
                "batchnorm {self}: training needs more than one value per channel"
            ));
        }
        Ok(())
    }
    fn checked(&self, training: bool) -> &Self {
        let r = if training {
            self.validate_train()
        } else {
            self.validate()
        };
        if let Err(e) = r {
            panic!("{e}");
        }
        self
    }
    /// Evaluation's backward has no fused ReLU (nothing differentiates
    /// through evaluation-mode batch norm; the op is for tests and tools).
    fn no_relu_backward(&self) {
        assert!(
            !self.relu,
            "batchnorm {self}: evaluation's backward has no fused ReLU"
        );
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let affine = if self.affine { " affine" } else { "" };
        let relu = if self.relu { " +relu" } else { "" };
        write!(f, "[{},{},{}]{affine}{relu}", self.n, self.c, self.hw)
    }
}

/// Length of a mixed op's pack over `kk` candidates of `c` channels
/// (`ops::mix_bn`; batchnorm.wgsl's `write_pack` and mix_bn.wgsl's `coef`
/// lay it out the same): w [kk], then per candidate k its a [c] from
/// [`pack_a`] and its b [c] right after.
pub fn pack_len(kk: usize, c: usize) -> usize {
    kk + 2 * kk * c
}

/// Where candidate k's a [c] starts in the pack (`pack_len`).
pub fn pack_a(kk: usize, c: usize, k: usize) -> usize {
    kk + 2 * k * c
}

/// Where `train_stats` puts a batch norm's coefficients: row `row` of a
/// mixed op's pack over `kk` candidates; `first` when the previous pack is
/// the mixing weights alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub row: usize,
    pub kk: usize,
    pub first: bool,
}

impl Stats {
    /// The pack's length ([`pack_len`]).
    pub fn pack_len(&self, s: &Shape) -> usize {
        pack_len(self.kk, s.c)
    }
    fn checked(&self, s: &Shape) {
        s.checked(true);
        assert!(
            !s.affine && !s.relu,
            "batchnorm {s}: statistics alone only without affine or ReLU"
        );
        assert!(
            self.row < self.kk,
            "batchnorm {s}: row {} of {}",
            self.row,
            self.kk
        );
    }
}

/// The CPU reference (f64 accumulation). `gamma`/`beta` are `Some` exactly
/// when the shape is affine.
pub mod cpu {
    use super::Shape;

    /// The flat indices of channel `ch`'s M values, batch-major.
    fn channel(s: &Shape, ch: usize) -> impl Iterator<Item = usize> + '_ {
        (0..s.n).flat_map(move |b| {
            let base = (b * s.c + ch) * s.hw;
            base..base + s.hw
        })
    }

    /// γ[ch], or 1 without affine.
    fn gamma_at(s: &Shape, gamma: Option<&[f32]>, ch: usize) -> f64 {
        assert_eq!(
            gamma.is_some(),
            s.affine,
            "batchnorm {s}: γ given iff affine"
        );
        gamma.map_or(1.0, |g| g[ch] as f64)
    }

    /// (y, saved mean, saved invstd); running_mean/var updated in place.
    pub fn train_forward(
        s: &Shape,
        x: &[f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        running_mean: &mut [f32],
        running_var: &mut [f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        s.checked(true);
        let m = s.m() as f64;
        let mom = s.momentum as f64;
        let mut y = vec![0f32; s.len()];
        let (mut means, mut invstds) = (Vec::new(), Vec::new());
        for ch in 0..s.c {
            let mean = channel(s, ch).map(|i| x[i] as f64).sum::<f64>() / m;
            let ss: f64 = channel(s, ch).map(|i| (x[i] as f64 - mean).powi(2)).sum();
            let invstd = 1.0 / (ss / m + s.eps as f64).sqrt();
            let (g, b) = (gamma_at(s, gamma, ch), beta.map_or(0.0, |b| b[ch] as f64));
            for i in channel(s, ch) {
                let z = ((x[i] as f64 - mean) * invstd * g + b) as f32;
                y[i] = if s.relu { z.max(0.0) } else { z };
            }
            running_mean[ch] = ((1.0 - mom) * running_mean[ch] as f64 + mom * mean) as f32;
            running_var[ch] = ((1.0 - mom) * running_var[ch] as f64 + mom * ss / (m - 1.0)) as f32;
            means.push(mean as f32);
            invstds.push(invstd as f32);
        }
        (y, means, invstds)
    }

    /// `train_stats`: `prev` with row `st.row` of the pack set to this
    /// batch norm's a = invstd, b = −mean·invstd (no affine); the running
    /// statistics updated in place.
    pub fn train_stats(
        s: &Shape,
        st: super::Stats,
        x: &[f32],
        prev: &[f32],
        running_mean: &mut [f32],
        running_var: &mut [f32],
    ) -> Vec<f32> {
        st.checked(s);
        let (_, mean, invstd) = train_forward(s, x, None, None, running_mean, running_var);
        let mut pack = vec![0f32; st.pack_len(s)];
        let keep = if st.first { st.kk } else { pack.len() };
        pack[..keep].copy_from_slice(&prev[..keep]);
        let a = super::pack_a(st.kk, s.c, st.row);
        let b = a + s.c;
        for ch in 0..s.c {
            pack[a + ch] = invstd[ch];
            pack[b + ch] = (-(mean[ch] as f64) * invstd[ch] as f64) as f32;
        }
        pack
    }

    /// (dx, dγ, dβ) from the saved statistics; dγ = Σ dy·x̂, dβ = Σ dy (the
    /// gradients of an implicit γ = 1, β = 0 when not affine).
    pub fn train_backward(
        s: &Shape,
        x: &[f32],
        mean: &[f32],
        invstd: &[f32],
        gamma: Option<&[f32]>,
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        s.checked(true);
        let m = s.m() as f64;
        let mut dx = vec![0f32; s.len()];
        let (mut dgamma, mut dbeta) = (Vec::new(), Vec::new());
        for ch in 0..s.c {
            let (mu, is) = (mean[ch] as f64, invstd[ch] as f64);
            let xhat = |i: usize| (x[i] as f64 - mu) * is;
            let g = gamma_at(s, gamma, ch);
            // The gradient reaching the batch norm's output: through the
            // fused ReLU, where its input (no affine: g·x̂) is positive.
            let dz = |i: usize| {
                if s.relu && g * xhat(i) <= 0.0 {
                    0.0
                } else {
                    dy[i] as f64
                }
            };
            let sum_dy: f64 = channel(s, ch).map(dz).sum();
            let sum_dy_xhat: f64 = channel(s, ch).map(|i| dz(i) * xhat(i)).sum();
            for i in channel(s, ch) {
                let v = g * is / m * (m * dz(i) - sum_dy - xhat(i) * sum_dy_xhat);
                dx[i] = v as f32;
            }
            dgamma.push(sum_dy_xhat as f32);
            dbeta.push(sum_dy as f32);
        }
        (dx, dgamma, dbeta)
    }

    /// Test data for a fused ReLU: moves values of `x` whose normalized
    /// value x̂ lies within `margin` of the ReLU's kink at 0 to a quarter
    /// standard deviation past it, until none does (moving one shifts the
    /// channel's statistics a little). At the kink the GPU's and this
    /// reference's masks, or a finite difference, may disagree on values
    /// that differ in the last bit.
    pub fn clear_of_relu_kink(s: &Shape, x: &mut [f32], margin: f64) {
        for _ in 0..100 {
            let mut moved = false;
            for ch in 0..s.c {
                let m = s.m() as f64;
                let mean = channel(s, ch).map(|i| x[i] as f64).sum::<f64>() / m;
                let var = channel(s, ch)
                    .map(|i| (x[i] as f64 - mean).powi(2))
                    .sum::<f64>()
                    / m;
                let sd = (var + s.eps as f64).sqrt();
                for i in channel(s, ch).collect::<Vec<_>>() {
                    let z = (x[i] as f64 - mean) / sd;
                    if z.abs() < margin {
                        x[i] = (x[i] as f64 + z.signum() * 0.25 * sd) as f32;
                        moved = true;
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("clear_of_relu_kink {s}: values still within {margin} of the kink");
    }

    pub fn eval_forward(
        s: &Shape,
        x: &[f32],
        running_mean: &[f32],
        running_var: &[f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
    ) -> Vec<f32> {
        s.checked(false);
        let mut y = vec![0f32; s.len()];
        for ch in 0..s.c {
            let invstd = 1.0 / (running_var[ch] as f64 + s.eps as f64).sqrt();
            let (g, b) = (gamma_at(s, gamma, ch), beta.map_or(0.0, |b| b[ch] as f64));
            for i in channel(s, ch) {
                let v = ((x[i] as f64 - running_mean[ch] as f64) * invstd * g + b) as f32;
                y[i] = if s.relu { v.max(0.0) } else { v };
            }
        }
        y
    }

    /// The evaluation batch norm `s` folded into the convolution before it,
    /// whose output channels are the batch norm's channels from `c_off` on
    /// (0 and all of them, or a part of a concatenation the batch norm
    /// reads): (w', b') with w'[o, j] = w[o, j]·γ[ch]·invstd[ch] over the
    /// `per` weights of each output channel o, ch = c_off + o, and
    /// b'[o] = β[ch] + (b[o] − running_mean[ch])·γ[ch]·invstd[ch].
    #[allow(clippy::too_many_arguments)]
    pub fn fold(
        s: &Shape,
        per: usize,
        c_off: usize,
        w: &[f32],
        bias: Option<&[f32]>,
        running_mean: &[f32],
        running_var: &[f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        s.checked(false).no_relu_backward();
        let c = w.len() / per;
        assert!(
            c_off + c <= s.c,
            "fold: channels {c_off}.. of {c} past the batch norm's {}",
            s.c
        );
        let scale: Vec<f64> = (c_off..c_off + c)
            .map(|ch| gamma_at(s, gamma, ch) / (running_var[ch] as f64 + s.eps as f64).sqrt())
            .collect();
        let wf = w
            .iter()
            .enumerate()
            .map(|(i, &v)| (v as f64 * scale[i / per]) as f32)
            .collect();
        let bf = (0..c)
            .map(|o| {
                let ch = c_off + o;
                let b = bias.map_or(0.0, |b| b[o] as f64);
                let shift = beta.map_or(0.0, |b| b[ch] as f64);
                (shift + (b - running_mean[ch] as f64) * scale[o]) as f32
            })
            .collect();
        (wf, bf)
    }

    /// dx = dy·γ / sqrt(running_var + eps).
    pub fn eval_backward(
        s: &Shape,
        running_var: &[f32],
        gamma: Option<&[f32]>,
        dy: &[f32],
    ) -> Vec<f32> {
        s.checked(false).no_relu_backward();
        let mut dx = vec![0f32; s.len()];
        for (ch, &rv) in running_var[..s.c].iter().enumerate() {
            let a = gamma_at(s, gamma, ch) / (rv as f64 + s.eps as f64).sqrt();
            for i in channel(s, ch) {
                dx[i] = (a * dy[i] as f64) as f32;
            }
        }
        dx
    }
}

const SHADER: &str = "batchnorm";

/// One dispatch; slots as in the shader (1 x, 2 dy, 3 γ, 4 β read;
/// 5 out, 6 saved mean, 7 saved invstd, 8 running mean, 9 running var,
/// 10 dγ, 11 dβ read-write).
fn dispatch(
    gpu: &Gpu,
    entry: &'static str,
    s: &Shape,
    groups: [u32; 3],
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    gpu.kernel(SHADER, entry, &params(s), slots, groups)
}

fn params(s: &Shape) -> [u32; 11] {
    [
        s.n as u32,
        s.c as u32,
        s.hw as u32,
        s.affine as u32,
        s.eps.to_bits(),
        s.momentum.to_bits(),
        s.relu as u32,
        eval_batch_items(s) as u32,
        0,
        0,
        0,
    ]
}

/// Workgroup width of the training entries on CPU adapters (the shader's
/// TRAIN_WG, 256 on GPUs; see there).
pub const NARROW_TRAIN_WG: u32 = 32;

/// A training entry, one workgroup per channel: from the file as written
/// on GPUs, from its narrow-workgroup variant on CPU adapters.
fn train_dispatch(
    gpu: &Gpu,
    entry: &'static str,
    s: &Shape,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    train_dispatch_with(gpu, entry, &params(s), s, slots)
}

/// Most values (or float4s) per invocation that [`Held`] keeps. The
/// compile time grows faster than the steps (llvmpipe, shader cache off:
/// ~0.75 s for a module of 49 steps, ~4 s for 196), and every held value
/// lives across the reduction's barriers. 100 takes bench-small's 7×7 and
/// 14×14 planes (49 values or float4s an invocation) and bench-medium's
/// (98); [32, 8, 28, 28] (196 float4s) keeps the loops.
pub const MAX_HELD: usize = 100;

/// A CPU adapter's training forward or backward that keeps each
/// invocation's values of its channel between its two passes (the
/// statistics then the output; the sums then the input gradient) instead
/// of loading them again: the entries of batchnorm.wgsl written out step
/// by step, `steps` values an invocation (float4s where `four`), the last
/// step guarded, around the loop entries' shared functions (`back_of`,
/// `back_out`, `save_forward`, `save_backward`). Each invocation takes
/// the same values in the same order through the same arithmetic, so the
/// same bits (`Gpu::held_passes`). llvmpipe loads a storage value lane by
/// lane; a value kept is a stack slot, so a pass's loads go (the
/// forward's second read of x, the backward's of dy and x). Measured
/// on lavapipe in bench-small's step profile, two each way: the training
/// forwards and backwards at 0.77 of their time with every plane held,
/// 7.4–7.7% → 6.1–6.3% of the step's profile up to MAX_HELD
/// (BENCHMARKS.md, "Thirty-first pass").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Held {
    /// Values per invocation: ⌈M / NARROW_TRAIN_WG⌉, M counted in float4s
    /// with `four`.
    pub steps: usize,
    /// Over float4s (the plane divides by 4), as `train_forward4`.
    pub four: bool,
    /// The backward (`train_backward`'s), else the forward.
    pub backward: bool,
}

impl Held {
    /// The held entry `s` takes on `gpu`, if any: on CPU adapters (the
    /// narrow training entries) with `Gpu::held_passes`, up to MAX_HELD
    /// steps.
    pub fn of(gpu: &Gpu, s: &Shape, backward: bool) -> Option<Held> {
        if gpu.wide || !gpu.held_passes {
            return None;
        }
        Held::for_shape(s, backward)
    }

    /// The held entry for `s`, if it takes one (at most MAX_HELD steps).
    pub fn for_shape(s: &Shape, backward: bool) -> Option<Held> {
        let four = s.hw.is_multiple_of(4);
        let per = if four { s.m() / 4 } else { s.m() };
        let steps = per.div_ceil(NARROW_TRAIN_WG as usize);
        (steps <= MAX_HELD).then_some(Held {
            steps,
            four,
            backward,
        })
    }

    /// The generated module's name (its cache key).
    pub fn name(&self) -> String {
        let dir = if self.backward { "backward" } else { "forward" };
        let four = if self.four { "x4" } else { "" };
        format!("batchnorm.held.{dir}.{}{four}", self.steps)
    }

    pub const ENTRY: &'static str = "train_held";

    /// batchnorm.wgsl with its narrow training workgroups and this entry.
    pub fn source(&self) -> Result<String, String> {
        let mut src = shaders::specialized(SHADER, "TRAIN_WG", NARROW_TRAIN_WG)?;
        src.push_str(&self.entry());
        Ok(src)
    }

    /// The entry: train_forward's or train_backward's (batchnorm.wgsl)
    /// with each step's values named, loaded once.
    fn entry(&self) -> String {
        assert!(self.steps >= 1, "batchnorm::Held: no steps");
        let (x, dy, out, zero) = match self.four {
            true => ("x4", "dy4", "out4", "vec4(0.0)"),
            false => ("x", "dy", "out", "0.0"),
        };
        let per = if self.four { "p.hw / 4u" } else { "p.hw" };
        let mut w = format!(
            "\n@compute @workgroup_size(TRAIN_WG)\n\
             fn {}(@builtin(workgroup_id) wg: vec3<u32>, \
             @builtin(local_invocation_index) lid: u32) {{\n\
             \x20   let ch = wg.x;\n\
             \x20   let mv = p.n * ({per});\n",
            Held::ENTRY
        );
        if self.backward {
            w.push_str("    let q = back_of(ch);\n    var acc = vec2<f32>(0.0, 0.0);\n");
        } else {
            let pivot = match self.four {
                true => "x4[ch * p.hw / 4u].x",
                false => "x[ch * p.hw]",
            };
            let _ = writeln!(w, "    let pivot = {pivot};\n    var acc = vec2(0.0);");
        }
        let _ = writeln!(w, "    var w = walk_by(ch, lid, {per}, p.c, TRAIN_WG);");
        // Pass 1, as the loop's: every step but the last takes a value on
        // every invocation (M > 32·(steps − 1)); the last is guarded.
        let last = self.steps - 1;
        let sum = match (self.backward, self.four) {
            (true, true) => "vec2<f32>(dot(g{t}, vec4(1.0)), dot(g{t}, v{t} - q.mean))",
            (true, false) => "vec2<f32>(g{t}, g{t} * (v{t} - q.mean))",
            (false, true) => "vec2(dot(d{t}, vec4(1.0)), dot(d{t}, d{t}))",
            (false, false) => "vec2(d{t}, d{t} * d{t})",
        };
        let mask = if self.four { "masked4" } else { "masked" };
        for t in 0..self.steps {
            let guarded = t == last;
            let _ = writeln!(w, "    let i{t} = w.i;");
            if guarded {
                let from = t * NARROW_TRAIN_WG as usize;
                let _ = writeln!(
                    w,
                    "    let in{t} = lid + {from}u < mv;\n    var v{t} = {zero};"
                );
                if self.backward {
                    let _ = writeln!(w, "    var g{t} = {zero};");
                }
                w.push_str(&format!("    if in{t} {{\n"));
            }
            let (ind, bind) = if guarded {
                ("        ", "")
            } else {
                ("    ", "let ")
            };
            let _ = writeln!(w, "{ind}{bind}v{t} = {x}[i{t}];");
            if self.backward {
                let _ = writeln!(w, "{ind}{bind}g{t} = {mask}({dy}[i{t}], v{t} * q.a + q.b);");
            } else {
                let _ = writeln!(w, "{ind}let d{t} = v{t} - pivot;");
            }
            let term = sum.replace("{t}", &t.to_string());
            let _ = writeln!(w, "{ind}acc = acc + {term};");
            w.push_str(if guarded {
                "    }\n"
            } else {
                "    advance(&w);\n"
            });
        }
        // Pass 2 from the values kept, then what the loop entries keep
        // past their output (batchnorm.wgsl's shared functions).
        let (head, value, tail) = match (self.backward, self.four) {
            (true, _) => (
                "    let o = back_out(lid, acc, q);\n",
                "g{t} * q.a + v{t} * o.k + o.c0",
                "    save_backward(ch, lid, o.sums);\n}\n",
            ),
            (false, four) => (
                "    let s = stats_from(ch, pivot, workgroup_sum2_by(lid, acc, TRAIN_WG));\n",
                if four {
                    "relu_if4(v{t} * s.a + s.b)"
                } else {
                    "relu_if(v{t} * s.a + s.b)"
                },
                "    save_forward(ch, lid, s);\n}\n",
            ),
        };
        w.push_str(head);
        for t in 0..self.steps {
            let value = value.replace("{t}", &t.to_string());
            let _ = match t == last {
                true => writeln!(w, "    if in{t} {{ {out}[i{t}] = {value}; }}"),
                false => writeln!(w, "    {out}[i{t}] = {value};"),
            };
        }
        w.push_str(tail);
        w
    }

    /// Its kernel over `slots`, one workgroup per channel.
    fn kernel(&self, gpu: &Gpu, s: &Shape, slots: &[(u32, &Buf)]) -> Result<Kernel, GpuError> {
        let groups = [s.c as u32, 1, 1];
        let source = || self.source();
        gpu.kernel_generated(
            &self.name(),
            &source,
            Held::ENTRY,
            &params(s),
            slots,
            groups,
        )
    }
}

fn train_dispatch_with(
    gpu: &Gpu,
    entry: &'static str,
    params: &[u32],
    s: &Shape,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    let groups = [s.c as u32, 1, 1];
    let wg = NARROW_TRAIN_WG;
    gpu.kernel_narrow(SHADER, "TRAIN_WG", wg, entry, params, slots, groups)
}

/// Workgroup width of the evaluation entries (batchnorm.wgsl's EVAL_WG;
/// also mix_bn.wgsl's BACK_WG, whose grid is `elementwise_entry`'s).
const EVAL_WG: u32 = 64;

/// Batch items per invocation of an evaluation entry (and of
/// `mix_bn::bn_backward`): at least 8, the channel's statistics found once
/// for them. On lavapipe [64,8,784] took 0.36–0.38 ms with 8 against
/// 0.44–0.65 with 4 (fewer invocations, each a share of llvmpipe's
/// per-group setup); in the step's profile `bn_backward` (750 float4 and
/// 580 scalar dispatches) took 188–206 and 136–163 ms with 4 items,
/// 167–196 and 125–143 with 8, 310–323 and 120–126 with 16. More where the
/// z grid of channels × groups would pass 65,535.
pub(crate) fn eval_batch_items(s: &Shape) -> usize {
    // At most 65,535 / c groups, so that c × groups fits the z grid.
    s.n.div_ceil((65_535 / s.c.max(1)).max(1)).max(8)
}

/// The evaluation entry and its grid: x and y over a plane (float4s when
/// the plane divides by 4: a float4 load costs a CPU adapter about what a
/// float load does), z over channels × groups of `eval_batch_items`
/// batch items (also `mix_bn::bn_backward`'s).
pub(crate) fn elementwise_entry(
    s: &Shape,
    one: &'static str,
    four: &'static str,
) -> (&'static str, [u32; 3]) {
    assert!(
        s.c <= 65_535,
        "batchnorm {s}: evaluation supports at most 65,535 channels"
    );
    let (entry, per) = if s.hw.is_multiple_of(4) {
        (four, s.hw / 4)
    } else {
        (one, s.hw)
    };
    let [x, y, _] = grid_1d(per, EVAL_WG);
    let z = s.c * s.n.div_ceil(eval_batch_items(s));
    (entry, [x, y, z as u32])
}

/// γ (and β) when affine; otherwise `stand_in`, which the shader ignores
/// (p.affine = 0) but the auto layout still wants bound.
fn affine_or<'a>(s: &Shape, param: Option<&'a Buf>, stand_in: &'a Buf) -> &'a Buf {
    assert_eq!(
        param.is_some(),
        s.affine,
        "batchnorm {s}: γ, β given iff affine"
    );
    param.unwrap_or(stand_in)
}

/// y, the saved batch mean and invstd [c], and the running statistics
/// [c] updated in place. One workgroup per channel.
#[allow(clippy::too_many_arguments)]
pub fn train_forward(
    gpu: &Gpu,
    s: &Shape,
    x: &Buf,
    gamma: Option<&Buf>,
    beta: Option<&Buf>,
    y: &Buf,
    mean: &Buf,
    invstd: &Buf,
    running_mean: &Buf,
    running_var: &Buf,
) -> Result<Kernel, GpuError> {
    s.checked(true);
    let slots = [
        (1, x),
        (3, affine_or(s, gamma, x)),
        (4, affine_or(s, beta, x)),
        (5, y),
        (6, mean),
        (7, invstd),
        (8, running_mean),
        (9, running_var),
    ];
    if let Some(held) = Held::of(gpu, s, false) {
        return held.kernel(gpu, s, &slots);
    }
    let entry = if s.hw.is_multiple_of(4) {
        "train_forward4"
    } else {
        "train_forward"
    };
    train_dispatch(gpu, entry, s, &slots)
}

/// A batch norm whose output only a mixed op reads (`ops::mix_bn`): its
/// training statistics alone, as `train_forward` computes them, the
/// running statistics updated in place, and the mixed op's pack
/// ([`Stats::pack_len`]) written as `prev` with this batch norm's a, b
/// (y = x·a + b) in row `row`. `prev` is the previous batch norm's pack,
/// or for the first of a mixed op's chain (`first`) the mixing weights
/// [K] alone.
#[allow(clippy::too_many_arguments)]
pub fn train_stats(
    gpu: &Gpu,
    s: &Shape,
    st: Stats,
    x: &Buf,
    prev: &Buf,
    pack: &Buf,
    running_mean: &Buf,
    running_var: &Buf,
) -> Result<Kernel, GpuError> {
    st.checked(s);
    let want = if st.first { st.kk } else { st.pack_len(s) };
    for (what, b, len) in [("prev", prev, want), ("pack", pack, st.pack_len(s))] {
        assert_eq!(
            b.len, len,
            "batchnorm {s}: {what} has {} elements, expected {len}",
            b.len
        );
    }
    let slots = [
        (1, x),
        (2, prev),
        (3, x),
        (4, x),
        (6, pack),
        (8, running_mean),
        (9, running_var),
    ];
    let mut p = params(s);
    p[8..].copy_from_slice(&[st.row as u32, st.kk as u32, st.first as u32]);
    let entry = if s.hw.is_multiple_of(4) {
        "train_stats4"
    } else {
        "train_stats"
    };
    train_dispatch_with(gpu, entry, &p, s, &slots)
}

/// dx from the forward's x and saved statistics; dγ, dβ [c] where given
/// (a scratch buffer takes them otherwise, e.g. without affine).
#[allow(clippy::too_many_arguments)]
pub fn train_backward(
    gpu: &Gpu,
    s: &Shape,
    x: &Buf,
    mean: &Buf,
    invstd: &Buf,
    gamma: Option<&Buf>,
    dy: &Buf,
    dx: &Buf,
    dgamma: Option<&Buf>,
    dbeta: Option<&Buf>,
) -> Result<Kernel, GpuError> {
    s.checked(true);
    // Two scratch buffers: one buffer may not back two writable slots.
    let scratch = |d: Option<&Buf>| {
        d.cloned()
            .map_or_else(|| gpu.alloc("batchnorm.dparam", s.c), Ok)
    };
    let (dgamma, dbeta) = (scratch(dgamma)?, scratch(dbeta)?);
    let slots = [
        (1, x),
        (2, dy),
        (3, affine_or(s, gamma, x)),
        (5, dx),
        (6, mean),
        (7, invstd),
        (10, &dgamma),
        (11, &dbeta),
    ];
    if let Some(held) = Held::of(gpu, s, true) {
        return held.kernel(gpu, s, &slots);
    }
    let entry = if s.hw.is_multiple_of(4) {
        "train_backward4"
    } else {
        "train_backward"
    };
    train_dispatch(gpu, entry, s, &slots)
}

/// y from the running statistics (element-wise).
#[allow(clippy::too_many_arguments)]
pub fn eval_forward(
    gpu: &Gpu,
    s: &Shape,
    x: &Buf,
    running_mean: &Buf,
    running_var: &Buf,
    gamma: Option<&Buf>,
    beta: Option<&Buf>,
    y: &Buf,
) -> Result<Kernel, GpuError> {
    s.checked(false);
    let slots = [
        (1, x),
        (3, affine_or(s, gamma, x)),
        (4, affine_or(s, beta, x)),
        (5, y),
        (8, running_mean),
        (9, running_var),
    ];
    let (entry, grid) = elementwise_entry(s, "eval_forward", "eval_forward4");
    dispatch(gpu, entry, s, grid, &slots)
}

/// The evaluation batch norm `s` folded into the convolution before it
/// (`cpu::fold`): w' [c × per] and b' [c] from the convolution's weights
/// (`per` per output channel, c of them: the batch norm's channels from
/// `c_off` on) and bias, and the batch norm's running statistics and γ, β.
/// One invocation per weight.
#[allow(clippy::too_many_arguments)]
pub fn fold(
    gpu: &Gpu,
    s: &Shape,
    per: usize,
    c_off: usize,
    w: &Buf,
    bias: Option<&Buf>,
    running_mean: &Buf,
    running_var: &Buf,
    gamma: Option<&Buf>,
    beta: Option<&Buf>,
    w_out: &Buf,
    b_out: &Buf,
) -> Result<Kernel, GpuError> {
    s.checked(false).no_relu_backward();
    let c = w.len / per;
    assert!(
        c_off + c <= s.c,
        "batchnorm fold {s}: channels {c_off}.. of {c} past the batch norm's"
    );
    for (what, b, len) in [
        ("w", w, c * per),
        ("w'", w_out, c * per),
        ("b'", b_out, c),
        ("running_mean", running_mean, s.c),
        ("running_var", running_var, s.c),
    ] {
        assert_eq!(
            b.len, len,
            "batchnorm fold {s}: {what} has {} elements, expected {len}",
            b.len
        );
    }
    // Stand-ins are w (read-only here; the statistics' slots are writable).
    let slots = [
        (1, w),
        (2, bias.unwrap_or(w)),
        (3, affine_or(s, gamma, w)),
        (4, affine_or(s, beta, w)),
        (5, w_out),
        (6, b_out),
        (8, running_mean),
        (9, running_var),
    ];
    let mut p = params(&Shape { hw: per, c, ..*s });
    p[7] = bias.is_some() as u32;
    p[8] = c_off as u32;
    gpu.kernel(SHADER, "fold", &p, &slots, grid_1d(c * per, EVAL_WG))
}

/// dx = dy·γ / sqrt(running_var + eps) (element-wise).
pub fn eval_backward(
    gpu: &Gpu,
    s: &Shape,
    running_var: &Buf,
    gamma: Option<&Buf>,
    dy: &Buf,
    dx: &Buf,
) -> Result<Kernel, GpuError> {
    s.checked(false).no_relu_backward();
    let slots = [
        (2, dy),
        (3, affine_or(s, gamma, dy)),
        (5, dx),
        (9, running_var),
    ];
    let (entry, grid) = elementwise_entry(s, "eval_backward", "eval_backward4");
    dispatch(gpu, entry, s, grid, &slots)
}
