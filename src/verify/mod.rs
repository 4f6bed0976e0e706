//! The op suite: every op and direction, GPU against the CPU reference on
//! freshly drawn random inputs. `gradnas verify` runs the quick level on the
//! user's adapter; the tests in `tests/` run the full level (more shapes).
//! One file per op family, named like the op module.

pub mod gradcheck;

mod affine_scaling;
mod batchnorm;
mod conv2d;
mod elementwise;
mod layout;
mod loss;
mod matmul;
mod mix;
mod mix_bn;
mod optim;
mod pool;
mod reduce;
mod softmax_xent;

use rand::{Rng as _, SeedableRng};
use serde::Serialize;

use crate::engine::{Buf, Gpu, Kernel};

pub type Rng = rand_chacha::ChaCha8Rng;

pub fn rng(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

/// Standard normal samples (Box–Muller), deterministic per seed.
pub fn randn(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u: f64 = rng.random::<f64>().max(1e-12);
            let v: f64 = rng.random::<f64>();
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

pub fn uniform(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Element-wise tolerance: |gpu − cpu| ≤ abs + rel · |cpu|.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tol {
    pub rel: f32,
    pub abs: f32,
}
pub const FORWARD: Tol = Tol {
    rel: 1e-4,
    abs: 1e-4,
};
pub const GRADIENT: Tol = Tol {
    rel: 1e-3,
    abs: 1e-3,
};

/// One row of the report: an op, a direction, a shape, the errors.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub op: String,
    pub direction: String,
    pub shape: String,
    pub max_abs_err: f32,
    pub max_rel_err: f32,
    pub tol: Tol,
    pub pass: bool,
    /// First failing element, when the check fails.
    pub detail: Option<String>,
}

/// Compare a GPU result with the CPU reference. A NaN anywhere in the GPU
/// output (outputs are poisoned with NaN before each run) fails.
pub fn compare(
    op: &str,
    direction: &str,
    shape: &str,
    cpu: &[f32],
    gpu: &[f32],
    tol: Tol,
) -> Check {
    let mut max_abs = 0f32;
    let mut max_rel = 0f32;
    let mut detail = None;
    if cpu.len() != gpu.len() {
        detail = Some(format!("length {} vs cpu {}", gpu.len(), cpu.len()));
    }
    for (i, (&c, &g)) in cpu.iter().zip(gpu).enumerate() {
        let err = (g - c).abs();
        let bad = !g.is_finite() || err > tol.abs + tol.rel * c.abs();
        if err.is_finite() {
            max_abs = max_abs.max(err);
            if c.abs() > tol.abs {
                max_rel = max_rel.max(err / c.abs());
            }
        } else {
            max_abs = f32::NAN;
        }
        if bad && detail.is_none() {
            detail = Some(format!("element {i}: gpu {g} vs cpu {c}"));
        }
    }
    Check {
        op: op.into(),
        direction: direction.into(),
        shape: shape.into(),
        max_abs_err: max_abs,
        max_rel_err: max_rel,
        tol,
        pass: detail.is_none(),
        detail,
    }
}

/// How many shapes to cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `gradnas verify`: representative shapes, every op and direction.
    Quick,
    /// The tests: batch 1, odd channels, spatial 1/7/13/28, every
    /// stride/padding/dilation the op supports.
    Full,
}

type RunFn = Box<dyn Fn(&mut Ctx) -> anyhow::Result<()> + Send + Sync>;

/// One op at one shape; running it yields a check per direction.
pub struct Case {
    pub family: &'static str,
    pub op: &'static str,
    pub shape: String,
    run: RunFn,
}

impl Case {
    pub fn new(
        family: &'static str,
        op: &'static str,
        shape: impl Into<String>,
        run: impl Fn(&mut Ctx) -> anyhow::Result<()> + Send + Sync + 'static,
    ) -> Case {
        Case {
            family,
            op,
            shape: shape.into(),
            run: Box::new(run),
        }
    }

    /// Run with inputs drawn from `seed`.
    pub fn run(&self, gpu: &Gpu, seed: u64) -> anyhow::Result<Vec<Check>> {
        let mut ctx = Ctx {
            gpu,
            rng: rng(seed),
            op: self.op,
            shape: self.shape.clone(),
            checks: Vec::new(),
        };
        (self.run)(&mut ctx)?;
        Ok(ctx.checks)
    }
}

/// What a case body uses: random inputs, poisoned outputs, one submit per
/// `run`, and comparisons that become report rows.
pub struct Ctx<'a> {
    pub gpu: &'a Gpu,
    pub rng: Rng,
    op: &'static str,
    shape: String,
    checks: Vec<Check>,
}

impl Ctx<'_> {
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        randn(&mut self.rng, n)
    }
    pub fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        uniform(&mut self.rng, n, lo, hi)
    }
    pub fn input(&self, data: &[f32]) -> anyhow::Result<Buf> {
        Ok(self.gpu.upload("input", data)?)
    }
    pub fn input_u32(&self, data: &[u32]) -> anyhow::Result<Buf> {
        Ok(self.gpu.upload_u32("input", data)?)
    }
    /// An output buffer filled with NaN.
    pub fn output(&self, len: usize) -> anyhow::Result<Buf> {
        Ok(self.gpu.poisoned("output", len)?)
    }
    pub fn run(&self, kernels: &[Kernel]) -> anyhow::Result<()> {
        Ok(self.gpu.run(kernels)?)
    }
    /// Read `buf` back and compare it with `cpu` (adds a row).
    pub fn check(
        &mut self,
        direction: &str,
        cpu: &[f32],
        buf: &Buf,
        tol: Tol,
    ) -> anyhow::Result<()> {
        let gpu = self.gpu.read(buf)?;
        let c = compare(self.op, direction, &self.shape, cpu, &gpu, tol);
        self.checks.push(c);
        Ok(())
    }
    /// Add a row from an already computed comparison of two vectors.
    pub fn check_values(&mut self, direction: &str, cpu: &[f32], gpu: &[f32], tol: Tol) {
        let c = compare(self.op, direction, &self.shape, cpu, gpu, tol);
        self.checks.push(c);
    }
}

/// Every case of the suite at `level`.
pub fn cases(level: Level) -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(elementwise::cases(level));
    v.extend(reduce::cases(level));
    v.extend(conv2d::cases(level));
    v.extend(pool::cases(level));
    v.extend(batchnorm::cases(level));
    v.extend(layout::cases(level));
    v.extend(mix::cases(level));
    v.extend(mix_bn::cases(level));
    v.extend(matmul::cases(level));
    v.extend(softmax_xent::cases(level));
    v.extend(loss::cases(level));
    v.extend(optim::cases(level));
    v.extend(affine_scaling::cases(level));
    v
}

/// Every (op, direction) the suite must report; `gradnas verify --json`
/// names each of them (a test holds the suite to this list).
pub const REQUIRED: &[(&str, &str)] = &[
    ("relu", "forward"),
    ("relu", "backward"),
    ("sigmoid", "forward"),
    ("sigmoid", "backward"),
    ("tanh", "forward"),
    ("tanh", "backward"),
    ("add", "forward"),
    ("add", "backward"),
    ("mul", "forward"),
    ("mul", "backward_a"),
    ("mul", "backward_b"),
    ("scale", "forward"),
    ("scale", "backward_input"),
    ("scale", "backward_scalar"),
    ("axpy", "forward"),
    ("row_scale", "forward"),
    ("row_scale", "backward_input"),
    ("row_scale", "backward_scale"),
    ("sum", "forward"),
    ("sum", "backward"),
    ("mean", "forward"),
    ("mean", "backward"),
    ("sqnorm", "forward"),
    ("sqnorm", "backward"),
    ("conv2d", "forward"),
    ("conv2d", "backward_input"),
    ("conv2d", "backward_weight"),
    ("conv2d", "backward_bias"),
    ("max_pool", "forward"),
    ("max_pool", "backward"),
    ("avg_pool", "forward"),
    ("avg_pool", "backward"),
    ("global_avg_pool", "forward"),
    ("global_avg_pool", "backward"),
    ("batchnorm_train", "forward"),
    ("batchnorm_train", "running_mean"),
    ("batchnorm_train", "running_var"),
    ("batchnorm_train", "backward_input"),
    ("batchnorm_train", "backward_gamma"),
    ("batchnorm_train", "backward_beta"),
    ("batchnorm_eval", "forward"),
    ("batchnorm_eval", "backward_input"),
    ("batchnorm_fold", "weights"),
    ("batchnorm_fold", "bias"),
    ("concat", "forward"),
    ("concat", "backward"),
    ("concat_sums", "forward"),
    ("split", "forward"),
    ("split", "backward"),
    ("slice", "forward"),
    ("slice", "backward"),
    ("weighted_sum", "forward"),
    ("weighted_sum", "backward_inputs"),
    ("weighted_sum", "backward_weights"),
    ("mix_bn", "pack"),
    ("mix_bn", "running"),
    ("mix_bn", "forward"),
    ("mix_bn", "dw"),
    ("mix_bn", "dz"),
    ("matmul", "forward"),
    ("matmul", "backward_a"),
    ("matmul", "backward_b"),
    ("linear", "forward"),
    ("linear", "backward_input"),
    ("linear", "backward_weight"),
    ("linear", "backward_bias"),
    ("softmax", "forward"),
    ("softmax", "backward"),
    ("log_softmax_xent", "forward"),
    ("log_softmax_xent", "backward"),
    ("l1_loss", "forward"),
    ("l1_loss", "backward"),
    ("sgd", "param"),
    ("sgd", "momentum"),
    ("adam", "param"),
    ("adam", "m"),
    ("adam", "v"),
    ("clip_grad_norm", "coefficient"),
    ("clip_grad_norm", "clipped_grad"),
    ("scaled_norm", "norm"),
    ("scaled_norm", "inverse"),
    ("affine_scaling", "beta"),
];

/// The required (op, direction) pairs that `checks` does not report.
pub fn missing_required(checks: &[Check]) -> Vec<(&'static str, &'static str)> {
    REQUIRED
        .iter()
        .filter(|(op, dir)| !checks.iter().any(|c| c.op == *op && c.direction == *dir))
        .copied()
        .collect()
}

/// Run every case at `level`; each case gets its own seed from `seed`.
pub fn run_all(gpu: &Gpu, level: Level, seed: u64) -> anyhow::Result<Vec<Check>> {
    let mut out = Vec::new();
    for (i, case) in cases(level).iter().enumerate() {
        out.extend(case.run(gpu, seed.wrapping_add(i as u64 * 7919))?);
    }
    Ok(out)
}
