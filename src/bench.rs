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
    Ok(median(samples))
}

/// `a` and `b` timed in turn (`time_kernels`, `repeats` each) `rounds`
/// times: each round's seconds of `a` and of `b`. Alternating keeps a
/// drifting host's speed out of each round's ratio (the probes in
/// `examples/`).
pub fn time_alternating(
    gpu: &Gpu,
    a: &[Kernel],
    b: &[Kernel],
    rounds: usize,
    repeats: usize,
) -> Result<Vec<(f64, f64)>, GpuError> {
    (0..rounds)
        .map(|_| {
            Ok((
                time_kernels(gpu, a, repeats)?,
                time_kernels(gpu, b, repeats)?,
            ))
        })
        .collect()
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
    conv_cases(&mut v);
    matmul_cases(&mut v);
    pool_bn_cases(&mut v);
    mix_cases(&mut v);
    mix_bn_cases(&mut v);
    elementwise_cases(&mut v);
    optim_cases(&mut v);
    v
}

const F: f64 = 4.0; // bytes per element

/// The supernet's convolutions at the first cell of bench-small (batch 32,
/// 16 channels, 28×28): dense 3×3 as a reference, then the DARTS/PNAS ops.
fn conv_cases(v: &mut Vec<BenchCase>) {
    use crate::ops::conv2d::{self, Conv2dShape};
    let conv = |c_in, c_out, kh, kw, pad_h, pad_w, dilation, groups| Conv2dShape {
        n: 32,
        c_in,
        h: 28,
        w: 28,
        c_out,
        kh,
        kw,
        stride: 1,
        pad_h,
        pad_w,
        dilation,
        groups,
    };
    let planes = |s: Conv2dShape, hw: usize| Conv2dShape { h: hw, w: hw, ..s };
    let strided = |s: Conv2dShape| Conv2dShape { stride: 2, ..s };
    let shapes = [
        ("dense3x3", conv(16, 16, 3, 3, 1, 1, 1, 1)),
        ("pointwise", conv(16, 16, 1, 1, 0, 0, 1, 1)),
        ("dw3x3", conv(16, 16, 3, 3, 1, 1, 1, 16)),
        ("dw7x7", conv(16, 16, 7, 7, 3, 3, 1, 16)),
        ("dw3x3_dil2", conv(16, 16, 3, 3, 2, 2, 2, 16)),
        ("1x7", conv(16, 16, 1, 7, 0, 3, 1, 1)),
        ("pointwise_14", planes(conv(16, 16, 1, 1, 0, 0, 1, 1), 14)),
        ("1x7_14", planes(conv(16, 16, 1, 7, 0, 3, 1, 1), 14)),
        ("7x1", conv(16, 16, 7, 1, 3, 0, 1, 1)),
        ("7x1_14", planes(conv(16, 16, 7, 1, 3, 0, 1, 1), 14)),
        // The reduced cells' planes: rows not whole float4s (14 wide), and
        // planes shorter than a depthwise invocation's rows (7×7).
        ("dw5x5_14", planes(conv(16, 16, 5, 5, 2, 2, 1, 16), 14)),
        ("dw7x7_7", planes(conv(32, 32, 7, 7, 3, 3, 1, 32), 7)),
        ("dw3x3_7", planes(conv(32, 32, 3, 3, 1, 1, 1, 32), 7)),
        ("7x1_7", planes(conv(32, 32, 7, 1, 3, 0, 1, 1), 7)),
        ("pointwise_7", planes(conv(32, 32, 1, 1, 0, 0, 1, 1), 7)),
        ("1x7_7", planes(conv(32, 32, 1, 7, 0, 3, 1, 1), 7)),
        // A reduction cell's strided ops (their input gradients are
        // `conv2d_rows`' strided kernels).
        ("dw7x7_s2", strided(conv(16, 16, 7, 7, 3, 3, 1, 16))),
        ("dw5x5_s2", strided(conv(16, 16, 5, 5, 2, 2, 1, 16))),
        ("dw3x3_s2", strided(conv(16, 16, 3, 3, 1, 1, 1, 16))),
        ("dw3x3_dil2_s2", strided(conv(16, 16, 3, 3, 2, 2, 2, 16))),
        ("7x1_s2", strided(conv(16, 16, 7, 1, 3, 0, 1, 1))),
        ("1x1_s2", strided(conv(16, 8, 1, 1, 0, 0, 1, 1))),
    ];
    for (tag, s) in shapes {
        let flops = 2.0 * s.macs() as f64;
        let shape = format!("{tag} {s}");
        let (x, w, y) = (s.x_len(), s.w_len(), s.y_len());
        v.push(BenchCase::new(
            "conv2d_forward",
            shape.clone(),
            flops,
            F * (x + w + y) as f64,
            move |g| {
                let (xb, wb, yb) = (random_buf(g, x, 1)?, random_buf(g, w, 2)?, g.alloc("y", y)?);
                conv2d::forward(g, &s, &xb, &wb, None, &yb)
            },
        ));
        v.push(BenchCase::new(
            "conv2d_backward_input",
            shape.clone(),
            flops,
            F * (x + w + y) as f64,
            move |g| {
                let (wb, dy, dx) = (
                    random_buf(g, w, 2)?,
                    random_buf(g, y, 3)?,
                    g.alloc("dx", x)?,
                );
                conv2d::backward_input(g, &s, &wb, &dy, &dx)
            },
        ));
        v.push(BenchCase::new(
            "conv2d_backward_weight",
            shape,
            flops,
            F * (x + w + y) as f64,
            move |g| {
                let (xb, dy, dw) = (
                    random_buf(g, x, 1)?,
                    random_buf(g, y, 3)?,
                    g.alloc("dw", w)?,
                );
                conv2d::backward_weight(g, &s, &xb, &dy, &dw)
            },
        ));
    }
}

/// Both matmul kernels on a square problem and the classifier's shape.
fn matmul_cases(v: &mut Vec<BenchCase>) {
    use crate::ops::matmul::{self, MatmulKernel, MatmulShape};
    for (m, k, n) in [(256, 256, 256), (512, 512, 512), (32, 256, 10)] {
        for (name, kernel) in [
            ("matmul_blocked", MatmulKernel::Blocked),
            ("matmul_tiled", MatmulKernel::Tiled),
        ] {
            let s = MatmulShape::new(m, k, n, false, false);
            let bytes = F * (s.a_len() + s.b_len() + s.c_len()) as f64;
            v.push(BenchCase::new(
                name,
                format!("[{m}x{k}]·[{k}x{n}]"),
                s.flops(),
                bytes,
                move |g| {
                    let (a, b, c) = (
                        random_buf(g, s.a_len(), 1)?,
                        random_buf(g, s.b_len(), 2)?,
                        g.alloc("c", s.c_len())?,
                    );
                    Ok(vec![matmul::forward(g, &s, kernel, &a, &b, &c)?])
                },
            ));
        }
    }
}

fn pool_bn_cases(v: &mut Vec<BenchCase>) {
    use crate::ops::{batchnorm, pool};
    let ps = pool::Shape {
        n: 32,
        c: 16,
        h: 28,
        w: 28,
        k: 3,
        stride: 1,
        pad: 1,
    };
    let (i, o) = (ps.input_len(), ps.output_len());
    let shape = format!("{ps}");
    // 9 compares or adds per output; bytes: input, output (and argmax).
    v.push(BenchCase::new(
        "max_pool_forward",
        shape.clone(),
        9.0 * o as f64,
        F * (i + 2 * o) as f64,
        move |g| {
            let (x, y, a) = (
                random_buf(g, i, 1)?,
                g.alloc("y", o)?,
                g.alloc("argmax", o)?,
            );
            Ok(vec![pool::max_pool_forward(g, &ps, &x, &y, &a)?])
        },
    ));
    v.push(BenchCase::new(
        "max_pool_backward",
        shape.clone(),
        9.0 * i as f64,
        F * (i + 2 * o) as f64,
        move |g| {
            let (x, y, a) = (
                random_buf(g, i, 1)?,
                g.alloc("y", o)?,
                g.alloc("argmax", o)?,
            );
            let (dy, dx) = (random_buf(g, o, 2)?, g.alloc("dx", i)?);
            // The argmax must be real: compute it once, time only the backward.
            g.run(&[pool::max_pool_forward(g, &ps, &x, &y, &a)?])?;
            Ok(vec![pool::max_pool_backward(g, &ps, &a, &dy, &dx)?])
        },
    ));
    v.push(BenchCase::new(
        "avg_pool_forward",
        shape.clone(),
        9.0 * o as f64,
        F * (i + o) as f64,
        move |g| {
            let (x, y) = (random_buf(g, i, 1)?, g.alloc("y", o)?);
            Ok(vec![pool::avg_pool_forward(g, &ps, &x, &y)?])
        },
    ));
    v.push(BenchCase::new(
        "avg_pool_backward",
        shape,
        9.0 * i as f64,
        F * (i + o) as f64,
        move |g| {
            let (dy, dx) = (random_buf(g, o, 2)?, g.alloc("dx", i)?);
            Ok(vec![pool::avg_pool_backward(g, &ps, &dy, &dx)?])
        },
    ));

    // The supernet's planes at bench-small: 8 channels of 28×28, 16 of
    // 14×14, 32 of 7×7 (the last takes the scalar kernels: 49 is odd).
    for (c, hw) in [(8, 28 * 28), (16, 14 * 14), (32, 7 * 7)] {
        let bs = batchnorm::Shape::new(32, c, hw, false);
        let n = bs.len();
        let shape = format!("{bs}");
        // Forward: mean, centred sum of squares, normalize ≈ 6 flops an element.
        v.push(BenchCase::new(
            "batchnorm_train_forward",
            shape.clone(),
            6.0 * n as f64,
            F * 2.0 * n as f64,
            move |g| {
                let x = random_buf(g, n, 1)?;
                let (y, mean, invstd) =
                    (g.alloc("y", n)?, g.alloc("mean", c)?, g.alloc("invstd", c)?);
                let (rm, rv) = (g.zeros("rm", c)?, g.upload("rv", &vec![1.0; c])?);
                Ok(vec![batchnorm::train_forward(
                    g, &bs, &x, None, None, &y, &mean, &invstd, &rm, &rv,
                )?])
            },
        ));
        v.push(BenchCase::new(
            "batchnorm_train_backward",
            shape,
            8.0 * n as f64,
            F * 3.0 * n as f64,
            move |g| {
                let (x, dy) = (random_buf(g, n, 1)?, random_buf(g, n, 2)?);
                let (mean, invstd) = (g.zeros("mean", c)?, g.upload("invstd", &vec![1.0; c])?);
                let dx = g.alloc("dx", n)?;
                Ok(vec![batchnorm::train_backward(
                    g, &bs, &x, &mean, &invstd, None, &dy, &dx, None, None,
                )?])
            },
        ));
    }
    // Evaluation (the one-shot measurement's): the same planes, batch 64.
    for (c, hw) in [(8, 28 * 28), (16, 14 * 14), (32, 7 * 7)] {
        let bs = batchnorm::Shape::new(64, c, hw, false);
        let n = bs.len();
        v.push(BenchCase::new(
            "batchnorm_eval_forward",
            format!("{bs}"),
            2.0 * n as f64,
            F * 2.0 * n as f64,
            move |g| {
                let (x, y) = (random_buf(g, n, 1)?, g.alloc("y", n)?);
                let (rm, rv) = (random_buf(g, c, 2)?, g.upload("rv", &vec![1.5; c])?);
                Ok(vec![batchnorm::eval_forward(
                    g, &bs, &x, &rm, &rv, None, None, &y,
                )?])
            },
        ));
    }
}

/// The mixed op of one edge: 8 candidate outputs weighted into one.
fn mix_cases(v: &mut Vec<BenchCase>) {
    use crate::ops::mix::{self, MixShape};
    let s = MixShape {
        k: 8,
        n: 32 * 16 * 28 * 28,
    };
    let (kn, n) = (s.k * s.n, s.n);
    let shape = "K=8 x [32,16,28,28]".to_string();
    let inputs = move |g: &Gpu| -> Result<Vec<Buf>, GpuError> {
        (0..s.k).map(|k| random_buf(g, n, 1 + k as u64)).collect()
    };
    v.push(BenchCase::new(
        "weighted_sum_forward",
        shape.clone(),
        2.0 * kn as f64,
        F * (kn + n) as f64,
        move |g| {
            let xs = inputs(g)?;
            let (w, y) = (random_buf(g, 8, 20)?, g.alloc("y", n)?);
            mix::forward(g, &s, &xs.iter().collect::<Vec<_>>(), &w, &y)
        },
    ));
    v.push(BenchCase::new(
        "weighted_sum_backward_inputs",
        shape.clone(),
        kn as f64,
        F * (kn + n) as f64,
        move |g| {
            let dxs: Vec<Buf> = (0..s.k)
                .map(|_| g.alloc("dx", n))
                .collect::<Result<_, _>>()?;
            let (w, dy) = (random_buf(g, 8, 20)?, random_buf(g, n, 21)?);
            mix::backward_inputs(g, &s, &w, &dy, &dxs.iter().collect::<Vec<_>>())
        },
    ));
    v.push(BenchCase::new(
        "weighted_sum_backward_weights",
        shape,
        2.0 * kn as f64,
        F * (kn + n) as f64,
        move |g| {
            let xs = inputs(g)?;
            let (dy, dw) = (random_buf(g, n, 21)?, g.alloc("dw", 8)?);
            mix::backward_weights(g, &s, &xs.iter().collect::<Vec<_>>(), &dy, &dw)
        },
    ));
}

/// The mixed op through its candidates' batch norms, on an edge's 8
/// candidates over bench-small's planes (7 of them batch norms' inputs, as
/// in the pnas set), beside the dot products it replaces
/// (weighted_sum_backward_weights) at the same sizes.
fn mix_bn_cases(v: &mut Vec<BenchCase>) {
    let norm = |k: usize| -> Vec<bool> { (0..k).map(|j| j != 4).collect() };
    use crate::ops::mix::{self, MixShape};
    use crate::ops::mix_bn::{self, Shape};
    for (c, hw) in [(8, 28 * 28), (16, 14 * 14), (32, 7 * 7)] {
        let s = Shape { k: 8, n: 32, c, hw };
        let n = s.len();
        let shape = format!("K=8 x [32,{c},{hw}]");
        let inputs = move |g: &Gpu| -> Result<Vec<Buf>, GpuError> {
            (0..s.k).map(|k| random_buf(g, n, 1 + k as u64)).collect()
        };
        v.push(BenchCase::new(
            "mix_bn_channel_dot",
            shape.clone(),
            2.0 * (s.k * n) as f64,
            F * ((s.k + 1) * n) as f64,
            move |g| {
                let xs = inputs(g)?;
                let (dy, pack) = (random_buf(g, n, 21)?, random_buf(g, s.pack_len(), 22)?);
                let (sums, dw) = (g.alloc("sums", s.sums_len())?, g.alloc("dw", s.k)?);
                let xr: Vec<&Buf> = xs.iter().collect();
                mix_bn::channel_dot(g, &s, &norm(s.k), &xr, &pack, &dy, &sums, &dw)
            },
        ));
        v.push(BenchCase::new(
            "mix_bn_forward",
            shape.clone(),
            2.0 * (s.k * n) as f64,
            F * ((s.k + 1) * n) as f64,
            move |g| {
                let xs = inputs(g)?;
                let (pack, y) = (random_buf(g, s.pack_len(), 22)?, g.alloc("y", n)?);
                let xr: Vec<&Buf> = xs.iter().collect();
                mix_bn::forward(g, &s, &norm(s.k), &xr, &pack, &y)
            },
        ));
        v.push(BenchCase::new(
            "weighted_sum_forward",
            shape.clone(),
            2.0 * (s.k * n) as f64,
            F * ((s.k + 1) * n) as f64,
            move |g| {
                let xs = inputs(g)?;
                let (w, y) = (random_buf(g, s.k, 22)?, g.alloc("y", n)?);
                let ms = MixShape { k: s.k, n };
                mix::forward(g, &ms, &xs.iter().collect::<Vec<_>>(), &w, &y)
            },
        ));
        v.push(BenchCase::new(
            "weighted_sum_backward_weights",
            shape.clone(),
            2.0 * (s.k * n) as f64,
            F * ((s.k + 1) * n) as f64,
            move |g| {
                let xs = inputs(g)?;
                let (dy, dw) = (random_buf(g, n, 21)?, g.alloc("dw", 8)?);
                let ms = MixShape { k: s.k, n };
                mix::backward_weights(g, &ms, &xs.iter().collect::<Vec<_>>(), &dy, &dw)
            },
        ));
        v.push(BenchCase::new(
            "mix_bn_bn_backward",
            shape,
            3.0 * n as f64,
            F * 3.0 * n as f64,
            move |g| {
                let (z, dy) = (random_buf(g, n, 1)?, random_buf(g, n, 2)?);
                let (pack, sums) = (
                    random_buf(g, s.pack_len(), 3)?,
                    random_buf(g, s.sums_len(), 4)?,
                );
                let dz = g.alloc("dz", n)?;
                Ok(vec![mix_bn::bn_backward(
                    g,
                    &s,
                    &[0],
                    &[&z],
                    &pack,
                    &sums,
                    &dy,
                    &[&dz],
                )?])
            },
        ));
        // Two candidates' dz in one pass (dy read once).
        v.push(BenchCase::new(
            "mix_bn_bn_backward_pair",
            format!("K={} x [{},{},{}]", s.k, s.n, s.c, s.hw),
            6.0 * n as f64,
            F * 5.0 * n as f64,
            move |g| {
                let (z0, z1) = (random_buf(g, n, 1)?, random_buf(g, n, 5)?);
                let dy = random_buf(g, n, 2)?;
                let (pack, sums) = (
                    random_buf(g, s.pack_len(), 3)?,
                    random_buf(g, s.sums_len(), 4)?,
                );
                let (dz0, dz1) = (g.alloc("dz", n)?, g.alloc("dz", n)?);
                Ok(vec![mix_bn::bn_backward(
                    g,
                    &s,
                    &[0, 2],
                    &[&z0, &z1],
                    &pack,
                    &sums,
                    &dy,
                    &[&dz0, &dz1],
                )?])
            },
        ));
    }
}

/// Updates over as many weights as the bench-small supernet (~1.5M).
fn optim_cases(v: &mut Vec<BenchCase>) {
    use crate::ops::optim::{self, AdamHyper, SgdHyper};
    let n = 1_500_000;
    let shape = format!("[{n}]");
    let sgd = SgdHyper {
        lr: 0.025,
        momentum: 0.9,
        weight_decay: 3e-4,
    };
    // Reads param, grad, momentum; writes param, momentum.
    v.push(BenchCase::new(
        "sgd",
        shape.clone(),
        5.0 * n as f64,
        F * 5.0 * n as f64,
        move |g| {
            let (p, gr, m, c) = (
                random_buf(g, n, 1)?,
                random_buf(g, n, 2)?,
                g.zeros("m", n)?,
                g.upload("coef", &[1.0])?,
            );
            Ok(vec![optim::sgd(g, &sgd, &p, &gr, &m, &c)?])
        },
    ));
    v.push(BenchCase::new(
        "adam",
        shape,
        12.0 * n as f64,
        F * 7.0 * n as f64,
        move |g| {
            let (p, gr) = (random_buf(g, n, 1)?, random_buf(g, n, 2)?);
            let (m, vv, c) = (
                g.zeros("m", n)?,
                g.zeros("v", n)?,
                g.upload("coef", &[1.0])?,
            );
            Ok(vec![optim::adam(
                g,
                &AdamHyper::new(3e-4),
                &p,
                &gr,
                &m,
                &vv,
                &c,
            )?])
        },
    ));
}

fn elementwise_cases(v: &mut Vec<BenchCase>) {
    use crate::ops::layout::{self, ConcatShape};
    use crate::ops::{elementwise as ew, reduce};
    // A 5-block cell's output: the quick preset's measurement (batch 64,
    // width 4) and bench-small's first cells (batch 32, width 8).
    for (batch, c) in [(64, 4), (32, 8)] {
        let s = ConcatShape {
            batch,
            channels: vec![c; 5],
            h: 28,
            w: 28,
        };
        let n = s.whole_len();
        v.push(BenchCase::new(
            "concat_forward",
            format!("{batch}x[{c};5]x28x28"),
            0.0,
            8.0 * n as f64,
            move |g| {
                let xs = (0..5)
                    .map(|k| random_buf(g, s.part_len(k), k as u64 + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                let y = g.alloc("y", n)?;
                let refs: Vec<&crate::engine::Buf> = xs.iter().collect();
                layout::concat_forward(g, &s, &refs, &y)
            },
        ));
    }
    // What a dispatch costs beyond its work: a chain of ReLUs over 64
    // values, each reading the last one's output (so each waits on a
    // barrier, as a step's dispatches do); the row's time is per pair.
    v.push(BenchCase::new(
        "dispatch_overhead",
        "2 x [64] chained".to_string(),
        128.0,
        1024.0,
        |g| {
            let (x, y) = (random_buf(g, 64, 1)?, g.alloc("y", 64)?);
            Ok(vec![
                ew::relu_forward(g, &x, &y)?,
                ew::relu_forward(g, &y, &x)?,
            ])
        },
    ));
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

/// A network's training step (forward, backward, clipping, SGD: the
/// built-in CNN by default, or a genotype's discrete network as S4 trains
/// it) as one recorded submit against the same kernels submitted node by
/// node, and its planned memory against giving every tensor its own buffer.
#[derive(Debug, Clone, Serialize)]
pub struct StepBench {
    pub model: String,
    pub batch: usize,
    pub nodes: usize,
    pub dispatches: usize,
    pub recorded_ms: f64,
    pub per_node_ms: f64,
    /// per_node_ms / recorded_ms: what recording saves.
    pub per_node_over_recorded: f64,
    pub images_per_s: f64,
    pub planned_bytes: u64,
    pub unshared_bytes: u64,
    /// planned / unshared intermediate bytes.
    pub planned_over_unshared: f64,
    pub persistent_bytes: u64,
    /// Kernel-private buffers (partials, weight copies, uniforms).
    pub kernel_bytes: u64,
    /// Per entry point: dispatches, workgroups and seconds over one step timed
    /// dispatch by dispatch (`--profile`), costliest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Vec<crate::graph::plan::ProfileRow>>,
}

/// The median of `v` (at least one value).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median_secs(
    repeats: usize,
    mut f: impl FnMut() -> Result<(), GpuError>,
) -> Result<f64, GpuError> {
    f()?; // warm-up
    let mut v = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64());
    }
    Ok(median(v))
}

/// The median of `repeats` GPU times (after one warm-up); `None` where the
/// adapter has no timestamps.
fn median_gpu_secs(
    repeats: usize,
    mut f: impl FnMut() -> Result<Option<f64>, GpuError>,
) -> Result<Option<f64>, GpuError> {
    if f()?.is_none() {
        return Ok(None);
    }
    let mut v = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        v.extend(f()?);
    }
    Ok(Some(median(v)))
}

pub fn train_step(
    gpu: &Gpu,
    model: &crate::models::ModelSpec,
    batch: usize,
    repeats: usize,
    profile: bool,
) -> Result<StepBench, GpuError> {
    use crate::data::Dims;
    use crate::graph::Plan;
    use crate::train::{train_graph, TrainConfig};
    let cfg = TrainConfig {
        batch,
        ..TrainConfig::default()
    };
    let tg = train_graph(model.clone(), Dims::new(1, 28, 28), 10, &cfg);
    let plan = Plan::new(gpu, &tg.g)?;
    let mut rng = verify::rng(5);
    plan.write(gpu, tg.images, &verify::randn(&mut rng, batch * 784));
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    plan.write_u32(gpu, tg.labels, &labels);
    let recorded = median_secs(repeats, || {
        plan.step(gpu)?;
        gpu.sync()
    })?;
    let per_node = median_secs(repeats, || {
        plan.step_per_node(gpu)?;
        gpu.sync()
    })?;
    let profile = if profile {
        Some(plan.profile(gpu)?)
    } else {
        None
    };
    let m = &plan.memory;
    Ok(StepBench {
        model: model.name(),
        batch,
        nodes: tg.g.nodes.len(),
        dispatches: plan.dispatches(),
        recorded_ms: recorded * 1e3,
        per_node_ms: per_node * 1e3,
        per_node_over_recorded: per_node / recorded,
        images_per_s: batch as f64 / recorded,
        planned_bytes: m.planned_bytes,
        unshared_bytes: m.unshared_bytes,
        planned_over_unshared: m.planned_bytes as f64 / m.unshared_bytes as f64,
        persistent_bytes: plan.persistent_bytes,
        kernel_bytes: plan.kernel_bytes,
        profile,
    })
}

/// S1's bilevel step on a supernet config, and the supernet's forward pass
/// alone, with the step's planned memory.
#[derive(Debug, Clone, Serialize)]
pub struct SearchBench {
    pub config: String,
    pub bilevel_ms: f64,
    pub forward_ms: f64,
    pub dispatches: usize,
    /// The host's time to encode one bilevel step (median), the CPU cost
    /// of recording that issue 8 wants below 5% of the step's GPU time.
    pub encode_ms: f64,
    /// The same encoding as a step pays it: chunks on parallel threads
    /// (`Gpu::run`), wall time, and the threads it used.
    pub encode_wall_ms: f64,
    pub encode_threads: usize,
    /// The GPU's own time for one bilevel step and one forward pass
    /// (timestamps, median), where the adapter has timestamp queries.
    pub bilevel_gpu_ms: Option<f64>,
    pub forward_gpu_ms: Option<f64>,
    pub planned_bytes: u64,
    pub unshared_bytes: u64,
    pub persistent_bytes: u64,
    /// Kernel-private buffers (partials, weight copies, uniforms).
    pub kernel_bytes: u64,
    /// Per entry point: dispatches, workgroups and seconds over one bilevel step
    /// timed dispatch by dispatch (`--profile`), costliest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Vec<crate::graph::plan::ProfileRow>>,
}

/// bench-small (width 8, depth 5, batch 32, 1×28×28, pnas, first order).
pub fn bench_small() -> crate::search::supernet::SupernetConfig {
    crate::search::supernet::SupernetConfig {
        width: 8,
        depth: 5,
        batch: 32,
        op_set: crate::space::OpSet::pnas(),
        dims: crate::data::Dims::new(1, 28, 28),
        classes: 10,
        stem_multiplier: 3,
        partial_channels: 1,
    }
}

/// bench-medium (width 16, depth 8, batch 64, otherwise bench-small).
pub fn bench_medium() -> crate::search::supernet::SupernetConfig {
    crate::search::supernet::SupernetConfig {
        width: 16,
        depth: 8,
        batch: 64,
        ..bench_small()
    }
}

/// A bilevel search step of `cfg` (initialised from `seed`) planned on
/// `gpu`, its inputs fed: both batches' images drawn from
/// `verify::rng(rng)`, the validation batch's first, and `labels` for
/// both. What the benchmarks and the tests that step a supernet share.
pub fn fed_search_step(
    gpu: &Gpu,
    cfg: &crate::search::supernet::SupernetConfig,
    h: &crate::search::bilevel::SearchHyper,
    seed: u64,
    rng: u64,
    labels: &[u32],
) -> Result<(crate::search::bilevel::SearchStep, crate::graph::Plan), GpuError> {
    let step = crate::search::bilevel::build_step(cfg, h, seed);
    let plan = crate::graph::Plan::new(gpu, &step.g)?;
    let mut rng = verify::rng(rng);
    let n = cfg.batch * cfg.dims.len();
    for t in [step.val_images, step.train_images] {
        plan.write(gpu, t, &verify::randn(&mut rng, n));
    }
    for t in [step.val_labels, step.train_labels] {
        plan.write_u32(gpu, t, labels);
    }
    Ok((step, plan))
}

/// Steps on demand, for a driver that alternates them with another
/// program's (benches/peers/duel.py): builds the fed step of `cfg`, takes
/// one step to warm it, writes "ready", then for each line of `input`
/// takes one step and writes its milliseconds (wall time to the end of the
/// GPU's work). Ends at the end of `input`.
pub fn serve_steps(
    gpu: &Gpu,
    cfg: &crate::search::supernet::SupernetConfig,
    h: &crate::search::bilevel::SearchHyper,
    input: impl std::io::BufRead,
    mut output: impl std::io::Write,
) -> anyhow::Result<()> {
    let (_, plan) = fed_search_step(gpu, cfg, h, 1, 2, &cycling_labels(cfg))?;
    plan.step(gpu)?;
    gpu.sync()?;
    writeln!(output, "ready")?;
    output.flush()?;
    for line in input.lines() {
        line?;
        let t = std::time::Instant::now();
        plan.step(gpu)?;
        gpu.sync()?;
        writeln!(output, "{:.3}", t.elapsed().as_secs_f64() * 1e3)?;
        output.flush()?;
    }
    Ok(())
}

/// The labels the benchmarks feed a batch of `cfg`: the classes in turn.
pub fn cycling_labels(cfg: &crate::search::supernet::SupernetConfig) -> Vec<u32> {
    (0..cfg.batch as u32)
        .map(|i| i % cfg.classes as u32)
        .collect()
}

pub fn search_step(
    gpu: &Gpu,
    cfg: &crate::search::supernet::SupernetConfig,
    second_order: bool,
    repeats: usize,
    profile: bool,
) -> Result<SearchBench, GpuError> {
    use crate::graph::{Graph, Plan};
    use crate::nn::ParamStore;
    use crate::search::{bilevel, supernet};
    let h = bilevel::SearchHyper {
        second_order,
        ..Default::default()
    };
    let (_, plan) = fed_search_step(gpu, cfg, &h, 1, 2, &cycling_labels(cfg))?;
    let bilevel = median_secs(repeats, || {
        plan.step(gpu)?;
        gpu.sync()
    })?;
    // Encoded and dropped, never submitted: the host's share alone.
    let encode = median_secs(repeats.max(5), || {
        drop(plan.encode(gpu));
        Ok(())
    })?;
    let encode_wall = median_secs(repeats.max(5), || {
        drop(gpu.encode_parallel(plan.kernels())?);
        Ok(())
    })?;
    let bilevel_gpu = median_gpu_secs(repeats, || plan.gpu_seconds(gpu))?;
    let profile = if profile {
        Some(plan.profile(gpu)?)
    } else {
        None
    };
    // The forward pass alone: one batch through the supernet.
    let mut g = Graph::new();
    let arch = supernet::Arch::new(&mut g, &mut ParamStore::new(3), &cfg.op_set);
    let d = cfg.dims;
    let images = g.input("images", &[cfg.batch, d.channels, d.height, d.width]);
    let wn = supernet::mixing_weights(&mut g, &arch.normal);
    let wr = supernet::mixing_weights(&mut g, &arch.reduce);
    let logits = supernet::forward(&mut g, &mut ParamStore::new(1), cfg, images, &wn, &wr);
    g.pin(logits);
    let fplan = Plan::new(gpu, &g)?;
    let n = cfg.batch * d.len();
    fplan.write(gpu, images, &verify::randn(&mut verify::rng(3), n));
    let forward = median_secs(repeats, || {
        fplan.step(gpu)?;
        gpu.sync()
    })?;
    let forward_gpu = median_gpu_secs(repeats, || fplan.gpu_seconds(gpu))?;
    Ok(SearchBench {
        config: format!(
            "width {} depth {} batch {} {}×{}×{} {}, {} order{}",
            cfg.width,
            cfg.depth,
            cfg.batch,
            d.channels,
            d.height,
            d.width,
            cfg.op_set.name(),
            if second_order { "second" } else { "first" },
            match cfg.partial_channels {
                1 => String::new(),
                k => format!(", partial channels 1/{k}"),
            }
        ),
        bilevel_ms: bilevel * 1e3,
        forward_ms: forward * 1e3,
        dispatches: plan.dispatches(),
        encode_ms: encode * 1e3,
        encode_wall_ms: encode_wall * 1e3,
        encode_threads: plan
            .dispatches()
            .div_ceil(crate::engine::encode_chunk(plan.dispatches())),
        bilevel_gpu_ms: bilevel_gpu.map(|t| t * 1e3),
        forward_gpu_ms: forward_gpu.map(|t| t * 1e3),
        planned_bytes: plan.memory.planned_bytes,
        unshared_bytes: plan.memory.unshared_bytes,
        persistent_bytes: plan.persistent_bytes,
        kernel_bytes: plan.kernel_bytes,
        profile,
    })
}

/// S2's hot paths: the predictor's training step and scoring rate, the
/// one-shot measurement rate of the quick preset's supernet (1- and
/// 5-block cells), and path training per path.
#[derive(Debug, Clone, Serialize)]
pub struct S2Bench {
    pub predictor_train_ms_per_step: f64,
    pub predictor_train_dispatches: usize,
    /// Five-block cells with unrelated prefixes, and expansions of 8
    /// parents as S2 scores them (each prefix's state computed once).
    pub predictor_scored_cells_per_s: f64,
    pub predictor_scored_expansions_per_s: f64,
    pub measure_config: String,
    /// Cells measured one after another on one device.
    pub measured_cells_per_s_1_block: f64,
    pub measured_cells_per_s_5_blocks: f64,
    /// The devices S2 measures on side by side (`measure::measure_lanes`),
    /// and the cells per second of all of them together, as S2 runs.
    pub measure_lanes: usize,
    pub measured_cells_per_s_1_block_lanes: f64,
    pub measured_cells_per_s_5_blocks_lanes: f64,
    /// Share of a measurement spent building the graph and plan and
    /// uploading the inherited weights (5-block cells).
    pub measure_build_share: f64,
    /// Per entry point (entry, dispatches, seconds) over one measurement
    /// of a 5-block cell (`--profile`), costliest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measure_profile: Option<Vec<crate::graph::plan::ProfileRow>>,
    /// The same measurement after fine-tuning steps (`MeasureConfig::
    /// fine_tune_steps`), 5-block cells.
    pub few_shot_cells_per_s_5_blocks: f64,
    pub few_shot_steps: usize,
    pub few_shot_batch: usize,
    /// The quick preset's reading: the same passes plus `probe_images`
    /// training images and a classifier fitted per cell, 5-block cells.
    pub probe_cells_per_s_5_blocks: f64,
    pub probe_images: usize,
    pub path_seconds: f64,
    pub path_steps: usize,
    pub path_batch: usize,
}

/// The supernet the quick preset searches (width 4, depth 3, stem 3×,
/// pnas, Fashion-MNIST-shaped).
pub fn quick_supernet() -> crate::search::supernet::SupernetConfig {
    crate::search::supernet::SupernetConfig {
        width: 4,
        depth: 3,
        batch: 8,
        ..bench_small()
    }
}

/// The quick preset's measurement passes (BN on 2 × 32 training images,
/// 256 validation images in passes of 64), read through the shared
/// classifier as the PyTorch peer reads them (the preset adds a probe).
pub fn quick_measure() -> crate::predict::measure::MeasureConfig {
    crate::predict::measure::MeasureConfig {
        bn_batches: 2,
        bn_batch: 32,
        n_val: 256,
        eval_batch: 64,
        seed: 0,
        ..crate::predict::measure::MeasureConfig::default()
    }
}

/// Cells of `blocks` blocks over `op_set` in which every op reads a cell
/// input and (with 2 blocks or more) a block's output, each slot taking
/// the next (op, input) pair still missing: the cells the one-shot rates
/// and the PyTorch peer time.
pub fn covering_cells(op_set: &crate::space::OpSet, blocks: usize) -> Vec<crate::space::Cell> {
    use crate::space::{canonical, Block, Cell};
    let ops: Vec<_> = op_set.choosable().collect();
    let mut want: Vec<(bool, _)> = ops.iter().map(|&o| (false, o)).collect();
    if blocks > 1 {
        want.extend(ops.iter().map(|&o| (true, o)));
    }
    let mut cells = Vec::new();
    while !want.is_empty() {
        let blocks = (0..blocks)
            .map(|j| {
                let mut slot = |s: usize| {
                    let at = want.iter().position(|&(later, _)| !later || j > 0);
                    let (later, op) = at.map_or((false, ops[0]), |k| want.remove(k));
                    (if later { j + 1 } else { s }, op)
                };
                let ((i1, o1), (i2, o2)) = (slot(0), slot(1));
                canonical(&Block::new(i1, o1, i2, o2))
            })
            .collect();
        cells.push(Cell { blocks });
    }
    cells
}

/// S2 on `splits` (Fashion-MNIST-shaped); the one-shot rates the median of
/// `rounds` rounds over `covering_cells`.
pub fn s2(
    gpu: &Gpu,
    splits: &crate::data::Splits,
    rounds: usize,
    profile: bool,
) -> anyhow::Result<S2Bench> {
    use crate::predict::measure::{
        extra_lanes, measure_cells, measure_lanes, measure_op_set, OneShotDiscrete, SupernetWeights,
    };
    use crate::predict::paths::{self, PathConfig};
    use crate::predict::predictor::{Predictor, PredictorConfig};
    use crate::space::genotype::random_cell;
    let cfg = quick_supernet();
    let op_set = measure_op_set(&cfg.op_set);
    let mut rng = verify::rng(17);
    // The predictor: a fit of 2 epochs on 256 measurements, then scoring
    // 2,000 five-block cells.
    let pcfg = PredictorConfig {
        epochs: 2,
        ..PredictorConfig::default()
    };
    let mut predictor = Predictor::new(gpu, &cfg.op_set, pcfg)?;
    let train_cells: Vec<_> = (0..256)
        .map(|i| random_cell(&op_set, 1 + i % 5, &mut rng))
        .collect();
    let acc: Vec<f32> = (0..256).map(|i| (i % 100) as f32 / 100.0).collect();
    let fit = predictor.fit(gpu, &train_cells, &acc)?;
    let score: Vec<_> = (0..2000)
        .map(|_| random_cell(&op_set, 5, &mut rng))
        .collect();
    predictor.predict(gpu, &score[..10])?; // warm-up
    let t = Instant::now();
    predictor.predict(gpu, &score)?;
    let scored = score.len() as f64 / t.elapsed().as_secs_f64();
    // The same number of five-block cells as S2 at b = 5 scores them:
    // expansions of 8 kept four-block parents (shared prefixes).
    let parents: Vec<_> = (0..8).map(|_| random_cell(&op_set, 4, &mut rng)).collect();
    let expansions: Vec<_> = (0..2000)
        .map(|i| {
            let mut c = random_cell(&op_set, 5, &mut rng);
            c.blocks[..4].clone_from_slice(&parents[i % 8].blocks);
            c
        })
        .collect();
    let t = Instant::now();
    predictor.predict(gpu, &expansions)?;
    let scored_expansions = expansions.len() as f64 / t.elapsed().as_secs_f64();
    // One-shot measurement on freshly initialized weights (the cost does
    // not depend on their values).
    let weights = SupernetWeights::random(cfg.clone(), 1)?;
    let mc = quick_measure();
    // Eight steps of 32 images first (measured as an option: BENCHMARKS.md).
    let few = crate::predict::measure::MeasureConfig {
        fine_tune_steps: 8,
        ..mc.clone()
    };
    // `measure_cell` as S2 calls it: one-shot when `fine_tune_steps` is 0.
    let rate = |mc: &crate::predict::measure::MeasureConfig,
                blocks: usize|
     -> anyhow::Result<(f64, f64)> {
        let mut m = OneShotDiscrete::new(weights.clone(), splits, mc)?;
        // The cells timed: every op on a cell input and on a block output
        // (random cells differ several-fold in cost, and the PyTorch peer
        // times these same cells). A first round compiles the kernels, as a
        // search does once.
        let cs = covering_cells(&op_set, blocks);
        for c in &cs {
            m.measure_cell(gpu, splits, c)?;
        }
        let (mut per_cell, mut build, mut total) = (Vec::new(), 0.0, 0.0);
        for _ in 0..rounds.max(1) {
            let t = Instant::now();
            for c in &cs {
                m.measure_cell(gpu, splits, c)?;
                build += m.last_build_seconds;
            }
            let secs = t.elapsed().as_secs_f64();
            total += secs;
            per_cell.push(secs / cs.len() as f64);
        }
        Ok((1.0 / median(per_cell), build / total))
    };
    let (one, _) = rate(&mc, 1)?;
    let (five, build_share) = rate(&mc, 5)?;
    // The same cells as S2 measures them: on every lane at once.
    let lanes = measure_lanes(gpu)?;
    let extra = extra_lanes(gpu, lanes)?;
    let gpus: Vec<&Gpu> = std::iter::once(gpu).chain(&extra).collect();
    let lanes_rate = |blocks: usize| -> anyhow::Result<f64> {
        let mut m = OneShotDiscrete::new(weights.clone(), splits, &mc)?;
        let cs = covering_cells(&op_set, blocks);
        // Each device compiles its own kernels first.
        for g in &gpus {
            for c in &cs {
                m.measure_cell(g, splits, c)?;
            }
        }
        // Rounds of at least 4 cells a device, as S2's levels are (K ≥ 128
        // cells): with one cell each, a round would wait on its slowest.
        let reps = (4 * gpus.len()).div_ceil(cs.len());
        let cs: Vec<_> = (0..reps).flat_map(|_| cs.iter().cloned()).collect();
        let mut per_cell = Vec::new();
        for _ in 0..rounds.max(1) {
            let t = Instant::now();
            measure_cells(&gpus, &mut m, splits, &cs, |_, _| Ok(()))?;
            per_cell.push(t.elapsed().as_secs_f64() / cs.len() as f64);
        }
        Ok(1.0 / median(per_cell))
    };
    let one_lanes = lanes_rate(1)?;
    let five_lanes = lanes_rate(5)?;
    drop(extra);
    // The profile of the cells the 5-block rate times, summed per entry
    // point (a random cell's differs several-fold from theirs).
    let measure_profile = if profile {
        let m = OneShotDiscrete::new(weights.clone(), splits, &mc)?;
        let mut rows = Vec::new();
        for c in covering_cells(&op_set, 5) {
            rows.extend(m.profile(gpu, &c, &c)?);
        }
        Some(crate::graph::plan::ProfileRow::merge(rows))
    } else {
        None
    };
    let (few_rate, _) = rate(&few, 5)?;
    let probe = crate::config::preset("quick")?.measure;
    let (probe_rate, _) = rate(&probe, 5)?;
    // Path training: 4 paths of 4 steps of 32 images.
    let pc = PathConfig {
        paths: 4,
        steps_per_path: 4,
        batch: 32,
        ..PathConfig::default()
    };
    let mut w = weights;
    let report = paths::train(gpu, &mut w, splits, &pc, |_| {})?;
    Ok(S2Bench {
        predictor_train_ms_per_step: fit.ms_per_step,
        predictor_train_dispatches: predictor.dispatches().0,
        predictor_scored_cells_per_s: scored,
        predictor_scored_expansions_per_s: scored_expansions,
        measure_config: format!(
            "width {} depth {} pnas; BN {}×{}, {} val images in passes of {}",
            cfg.width, cfg.depth, mc.bn_batches, mc.bn_batch, mc.n_val, mc.eval_batch
        ),
        measured_cells_per_s_1_block: one,
        measured_cells_per_s_5_blocks: five,
        measure_lanes: lanes,
        measured_cells_per_s_1_block_lanes: one_lanes,
        measured_cells_per_s_5_blocks_lanes: five_lanes,
        measure_build_share: build_share,
        measure_profile,
        few_shot_cells_per_s_5_blocks: few_rate,
        few_shot_steps: few.fine_tune_steps,
        few_shot_batch: few.fine_tune_batch,
        probe_cells_per_s_5_blocks: probe_rate,
        probe_images: probe.probe_images,
        path_seconds: report.seconds / pc.paths as f64,
        path_steps: pc.steps_per_path,
        path_batch: pc.batch,
    })
}
