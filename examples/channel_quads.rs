//! Whether the 7×7 cells' convolutions would run faster on lavapipe with
//! their activations laid out in channel quads (N, C/4, H, W, 4: a float4
//! holds four channels of one pixel) instead of NCHW: on a 7×7 plane a row
//! is 7 floats, never whole float4s, so the step's kernels there load
//! scalars, where a channel-quad kernel loads and stores float4s only and,
//! writing all 32 output channels per invocation, reads its weights at
//! constant addresses (one load and a broadcast on llvmpipe). Measured on
//! bench-small's last cells (batch 32, 32 channels, 7×7), forward only:
//!
//! - the dense 1×1 (`conv2d_rows.dense.1x1.d1.y.c32.uw` in the step);
//! - the depthwise 7×7, padding 3 (`conv2d_rows.dw.7x7.…f7x7….uw`).
//!
//! Each case checks both against the CPU reference, then alternates the
//! step's kernel with each channel-quad variant (7 rounds, each the median
//! of 3 timings of ≥ 20 ms). BENCHMARKS.md, "Twenty-fifth pass".
//!
//! `cargo run --release --example channel_quads`

use std::fmt::Write as _;

use anyhow::ensure;
use gradnas::bench::{median, run_repeated, time_alternating};
use gradnas::engine::{grid_1d, Buf, Gpu, Kernel};
use gradnas::ops::conv2d::{cpu, Conv2dShape};
use gradnas::ops::conv2d_rows::{self, Direction};
use gradnas::verify;

const N: usize = 32;
const C: usize = 32;
const HW: usize = 7;
const Q: usize = C / 4;
const PLANE: usize = HW * HW;
const GUARDS: [&str; 2] = ["return", "clamp"];

/// NCHW → channel quads.
fn to_quads(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for n in 0..N {
        for c in 0..C {
            for p in 0..PLANE {
                out[((n * Q + c / 4) * PLANE + p) * 4 + c % 4] = x[(n * C + c) * PLANE + p];
            }
        }
    }
    out
}

fn from_quads(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for n in 0..N {
        for c in 0..C {
            for p in 0..PLANE {
                out[(n * C + c) * PLANE + p] = x[((n * Q + c / 4) * PLANE + p) * 4 + c % 4];
            }
        }
    }
    out
}

const HEADER: &str = "struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
";

/// The bounds guard: a return, as the step's kernels have, or a clamp.
/// Past a divergent return llvmpipe runs the rest under a mask, where even
/// a constant-address load is a loop over the lanes; clamped, the tail's
/// invocations repeat the last one's work and write the same values.
fn guard(clamp: bool, total: &str) -> String {
    if clamp {
        format!("let idx = min(gid.x, {total} - 1u);")
    } else {
        format!("let idx = gid.x;\n    if idx >= {total} {{ return; }}")
    }
}

/// The dense 1×1 over channel quads: `ocb` output quads × `px` pixels per
/// invocation. With all 8 output quads (ocb = 8) every weight address is
/// a constant.
fn pointwise_source(ocb: usize, px: usize, clamp: bool) -> String {
    let cblocks = Q / ocb;
    let pblocks = PLANE.div_ceil(px);
    let mut s = String::from(HEADER);
    let _ = writeln!(
        s,
        "@group(0) @binding(2) var<uniform> w: array<vec4<f32>, {}>;",
        C * Q
    );
    let _ = writeln!(
        s,
        "@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    {}
    let q0 = (idx % {pblocks}u) * {px}u;
    let t = idx / {pblocks}u;
    let cb = t % {cblocks}u;
    let n = t / {cblocks}u;",
        guard(clamp, &format!("p.n * {cblocks}u * {pblocks}u"))
    );
    for k in 0..px {
        let _ = writeln!(s, "    let p{k} = min(q0 + {k}u, {}u);", PLANE - 1);
        for q in 0..ocb {
            let _ = writeln!(s, "    var a{q}_{k} = vec4(0.0);");
        }
    }
    for iq in 0..Q {
        let _ = writeln!(s, "    {{");
        let _ = writeln!(s, "        let base = (n * {Q}u + {iq}u) * {PLANE}u;");
        for k in 0..px {
            let _ = writeln!(s, "        let x{k} = x[base + p{k}];");
        }
        for (j, comp) in ["x", "y", "z", "w"].iter().enumerate() {
            let ci = iq * 4 + j;
            for q in 0..ocb {
                let at = if cblocks == 1 {
                    format!("{}u", ci * Q + q)
                } else {
                    format!("{}u + cb * {ocb}u", ci * Q + q)
                };
                let _ = writeln!(s, "        let w{j}_{q} = w[{at}];");
                for k in 0..px {
                    let _ = writeln!(
                        s,
                        "        a{q}_{k} = fma(vec4(x{k}.{comp}), w{j}_{q}, a{q}_{k});"
                    );
                }
            }
        }
        let _ = writeln!(s, "    }}");
    }
    for q in 0..ocb {
        let _ = writeln!(
            s,
            "    let o{q} = (n * {Q}u + cb * {ocb}u + {q}u) * {PLANE}u;"
        );
        for k in 0..px {
            let _ = writeln!(s, "    y[o{q} + p{k}] = a{q}_{k};");
        }
    }
    s.push_str("}\n");
    s
}

/// The depthwise k×k (padding k / 2) over channel quads: one output row of
/// one channel quad per invocation, the row's input windows and columns
/// written out.
fn depthwise_source(k: usize, clamp: bool) -> String {
    let pad = k / 2;
    let mut s = String::from(HEADER);
    let _ = writeln!(
        s,
        "@group(0) @binding(2) var<uniform> w: array<vec4<f32>, {}>;",
        Q * k * k
    );
    let _ = writeln!(
        s,
        "@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    {}
    let oy = idx % {HW}u;
    let t = idx / {HW}u;
    let cq = t % {Q}u;
    let n = t / {Q}u;
    let wb = cq * {}u;",
        guard(clamp, &format!("p.n * {Q}u * {HW}u")),
        k * k
    );
    for ox in 0..HW {
        let _ = writeln!(s, "    var a{ox} = vec4(0.0);");
    }
    for ky in 0..k {
        let _ = writeln!(s, "    {{");
        let _ = writeln!(s, "        let iy = i32(oy) + {};", ky as i32 - pad as i32);
        let _ = writeln!(s, "        if iy >= 0 && iy < {HW} {{");
        let _ = writeln!(
            s,
            "            let rb = ((n * {Q}u + cq) * {HW}u + u32(iy)) * {HW}u;"
        );
        for ix in 0..HW {
            let _ = writeln!(s, "            let x{ix} = x[rb + {ix}u];");
        }
        for kx in 0..k {
            let _ = writeln!(s, "            let w{kx} = w[wb + {}u];", ky * k + kx);
            for ox in 0..HW {
                let ix = ox as i64 + kx as i64 - pad as i64;
                if (0..HW as i64).contains(&ix) {
                    let _ = writeln!(s, "            a{ox} = fma(x{ix}, w{kx}, a{ox});");
                }
            }
        }
        let _ = writeln!(s, "        }}");
        let _ = writeln!(s, "    }}");
    }
    let _ = writeln!(s, "    let ob = ((n * {Q}u + cq) * {HW}u + oy) * {HW}u;");
    for ox in 0..HW {
        let _ = writeln!(s, "    y[ob + {ox}u] = a{ox};");
    }
    s.push_str("}\n");
    s
}

/// The GPU's values against the CPU reference, as the tests compare them.
fn close(what: &str, got: &[f32], want: &[f32]) -> anyhow::Result<()> {
    let c = verify::compare(what, "forward", "", want, got, verify::FORWARD);
    ensure!(c.pass, "{what}: {}", c.detail.unwrap_or_default());
    Ok(())
}

fn quad_kernel(
    gpu: &Gpu,
    name: &str,
    source: String,
    invocations: usize,
    x: &Buf,
    w: &Buf,
    y: &Buf,
) -> anyhow::Result<Kernel> {
    Ok(gpu.kernel_generated(
        name,
        &|| Ok(source.clone()),
        "main",
        &[N as u32],
        &[(1, x), (2, w), (3, y)],
        grid_1d(invocations, 64),
    )?)
}

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new()?;
    let mut rng = verify::rng(7);
    let dense = Conv2dShape::pointwise(N, C, C, HW, HW);
    let depthwise = Conv2dShape {
        kh: 7,
        kw: 7,
        pad_h: 3,
        pad_w: 3,
        groups: C,
        ..dense
    };
    for shape in [dense, depthwise] {
        let dw = shape.groups > 1;
        let x = verify::randn(&mut rng, N * C * PLANE);
        let w = verify::randn(&mut rng, shape.w_len());
        let want = cpu::forward(&shape, &x, &w, None);
        // The step's kernel(s) on NCHW.
        let (xb, wb, yb) = (
            gpu.upload("x", &x)?,
            gpu.upload("w", &w)?,
            gpu.zeros("y", want.len())?,
        );
        let step = conv2d_rows::kernels(
            &gpu,
            &shape,
            Direction::Forward,
            &xb,
            &wb,
            None,
            &yb,
            None,
            false,
        )?;
        run_repeated(&gpu, &step, 1)?;
        close("step kernel", &gpu.read(&yb)?, &want)?;
        // Its weight copy, where it has one, is made once per step.
        let step_conv = &step[step.len() - 1..];
        let step_name = step_conv[0].name.clone();
        // Channel quads: weights as float4s of 4 channels.
        let wq: Vec<f32> = if dw {
            // [quad][tap] of the 4 channels' weights.
            let taps = shape.kh * shape.kw;
            (0..Q * taps * 4)
                .map(|i| {
                    let (c4, t, j) = (i / 4 / taps, i / 4 % taps, i % 4);
                    w[(c4 * 4 + j) * taps + t]
                })
                .collect()
        } else {
            // [read channel][output quad] of the 4 output channels' weights.
            (0..C * Q * 4)
                .map(|i| {
                    let (ci, oq, j) = (i / 4 / Q, i / 4 % Q, i % 4);
                    w[(oq * 4 + j) * C + ci]
                })
                .collect()
        };
        let (xq, wqb, yq) = (
            gpu.upload("xq", &to_quads(&x))?,
            gpu.upload("wq", &wq)?,
            gpu.zeros("yq", want.len())?,
        );
        let variants: Vec<(String, Kernel)> = if dw {
            [false, true]
                .into_iter()
                .map(|clamp| {
                    let k = quad_kernel(
                        &gpu,
                        &format!("quads.dw7.{}", GUARDS[clamp as usize]),
                        depthwise_source(7, clamp),
                        N * Q * HW,
                        &xq,
                        &wqb,
                        &yq,
                    )?;
                    Ok((
                        format!("quads, a row a quad, {}", GUARDS[clamp as usize]),
                        k,
                    ))
                })
                .collect::<anyhow::Result<_>>()?
        } else {
            [
                (8, 1, false),
                (8, 2, false),
                (8, 1, true),
                (8, 2, true),
                (4, 1, true),
                (4, 2, true),
                (2, 4, true),
            ]
            .into_iter()
            .map(|(ocb, px, clamp)| {
                let g = GUARDS[clamp as usize];
                let k = quad_kernel(
                    &gpu,
                    &format!("quads.pw.o{ocb}p{px}.{g}"),
                    pointwise_source(ocb, px, clamp),
                    N * (Q / ocb) * PLANE.div_ceil(px),
                    &xq,
                    &wqb,
                    &yq,
                )?;
                Ok((format!("quads, {} channels × {px} px, {g}", ocb * 4), k))
            })
            .collect::<anyhow::Result<_>>()?
        };
        println!(
            "{} on [{N}, {C}, {HW}, {HW}] (step: {step_name})",
            if dw { "depthwise 7×7" } else { "dense 1×1" }
        );
        for (what, k) in &variants {
            gpu.write(&yq, &vec![f32::NAN; want.len()]);
            run_repeated(&gpu, std::slice::from_ref(k), 1)?;
            close(what, &from_quads(&gpu.read(&yq)?), &want)?;
            let rounds = time_alternating(&gpu, step_conv, std::slice::from_ref(k), 7, 3)?;
            let ratios: Vec<f64> = rounds.iter().map(|(a, b)| b / a).collect();
            let (lo, hi) = ratios
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
            println!(
                "  {what}: {:.3} ms against the step's {:.3} ms, median ratio {:.3} (rounds {lo:.3}–{hi:.3})",
                median(rounds.iter().map(|r| r.1).collect()) * 1e3,
                median(rounds.iter().map(|r| r.0).collect()) * 1e3,
                median(ratios),
            );
        }
    }
    Ok(())
}
