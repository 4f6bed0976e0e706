//! Per-op throughput on the chosen adapter: GFLOP/s and GB/s from counted
//! FLOPs and bytes, the median of repeats after warm-up, the device
//! synchronized around each timing. `gradnas bench` and `benches/ops.rs`
//! run the same cases.

use std::time::Instant;

use serde::Serialize;

use crate::engine::{Buf, Gpu, GpuError, Kernel};
use crate::verify;

type BuildFn = Box<dyn Fn(&Gpu) -> Result<Vec<Kernel>, GpuError> + Send + Sync>;

/// One op at one shape, with the work it does counted by hand.
pub struct BenchCase {
    pub op: &'static str,
    pub shape: String,
    /// Floating-point operations of one run (a multiply-add counts 2).
    pub flops: f64,
    /// Bytes one run must read and write at least (each tensor once).
    pub bytes: f64,
    build: BuildFn,
}

impl BenchCase {
    pub fn new(
        op: &'static str,
        shape: impl Into<String>,
        flops: f64,
        bytes: f64,
        build: impl Fn(&Gpu) -> Result<Vec<Kernel>, GpuError> + Send + Sync + 'static,
    ) -> BenchCase {
        BenchCase {
            op,
            shape: shape.into(),
            flops,
            bytes,
            build: Box::new(build),
        }
    }
    pub fn build(&self, gpu: &Gpu) -> Result<Vec<Kernel>, GpuError> {
        (self.build)(gpu)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub op: String,
    pub shape: String,
    pub median_ms: f64,
    pub gflops: f64,
    pub gbps: f64,
    pub dispatches: usize,
    pub repeats: usize,
}

/// Random data in a fresh buffer (benchmarks do not care about values,
/// but NaN or denormals could change speed, so draw real numbers).
pub fn random_buf(gpu: &Gpu, n: usize, seed: u64) -> Result<Buf, GpuError> {
    gpu.upload("bench", &verify::randn(&mut verify::rng(seed), n))
}

/// Encode `kernels` `times` times into one compute pass, one submit, and
/// wait for it.
pub fn run_repeated(gpu: &Gpu, kernels: &[Kernel], times: usize) -> Result<(), GpuError> {
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("bench"),
        });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        for _ in 0..times {
            for k in kernels {
                k.encode(&mut pass);
            }
        }
    }
    gpu.queue.submit([enc.finish()]);
    gpu.sync()
}

/// Median seconds of one run of `kernels`. Short ops are repeated inside
/// one submit so each timing lasts at least ~20 ms.
pub fn time_kernels(gpu: &Gpu, kernels: &[Kernel], repeats: usize) -> Result<f64, GpuError> {
    run_repeated(gpu, kernels, 1)?; // warm-up: pipelines, first-touch memory
    let t = Instant::now();
    run_repeated(gpu, kernels, 1)?;
    let once = t.elapsed().as_secs_f64().max(1e-6);
    let inner = ((0.02 / once).ceil() as usize).clamp(1, 200);
    let mut samples = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        run_repeated(gpu, kernels, inner)?;
        samples.push(t.elapsed().as_secs_f64() / inner as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

pub fn run_case(gpu: &Gpu, case: &BenchCase, repeats: usize) -> Result<BenchRow, GpuError> {
    let kernels = case.build(gpu)?;
    let secs = time_kernels(gpu, &kernels, repeats)?;
    Ok(BenchRow {
        op: case.op.to_string(),
        shape: case.shape.clone(),
        median_ms: secs * 1e3,
        gflops: case.flops / secs / 1e9,
        gbps: case.bytes / secs / 1e9,
        dispatches: kernels.len(),
        repeats,
    })
}

/// The benchmark cases: the shapes a bench-small supernet step runs
/// (batch 32, 28×28, 16 channels) and a few larger ones.
pub fn cases() -> Vec<BenchCase> {
    let mut v = Vec::new();
    elementwise_cases(&mut v);
    v
}

fn elementwise_cases(v: &mut Vec<BenchCase>) {
    use crate::ops::{elementwise as ew, reduce};
    let n = 32 * 16 * 28 * 28;
    let shape = "[32,16,28,28]".to_string();
    v.push(BenchCase::new(
        "relu_forward",
        shape.clone(),
        n as f64,
        8.0 * n as f64,
        move |g| {
            let (x, y) = (random_buf(g, n, 1)?, g.alloc("y", n)?);
            Ok(vec![ew::relu_forward(g, &x, &y)?])
        },
    ));
    v.push(BenchCase::new(
        "relu_backward",
        shape.clone(),
        n as f64,
        12.0 * n as f64,
        move |g| {
            let (x, dy, dx) = (
                random_buf(g, n, 1)?,
                random_buf(g, n, 2)?,
                g.alloc("dx", n)?,
            );
            Ok(vec![ew::relu_backward(g, &x, &dy, &dx)?])
        },
    ));
    v.push(BenchCase::new(
        "add_forward",
        shape.clone(),
        n as f64,
        12.0 * n as f64,
        move |g| {
            let (a, b, y) = (random_buf(g, n, 1)?, random_buf(g, n, 2)?, g.alloc("y", n)?);
            Ok(vec![ew::add_forward(g, &a, &b, &y)?])
        },
    ));
    v.push(BenchCase::new(
        "sqnorm_forward",
        shape,
        2.0 * n as f64,
        4.0 * n as f64,
        move |g| {
            let (x, out) = (random_buf(g, n, 1)?, g.alloc("out", 1)?);
            reduce::sqnorm_forward(g, &x, &out)
        },
    ));
}
