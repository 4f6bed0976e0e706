//! Whether the activations, like the weights (`Gpu::uniform_weights`),
//! would be read faster through uniform bindings on this adapter: four of
//! the step's costliest generated convolution forwards (bench-small's
//! shapes, batch 32), as the step runs them (x from storage, one dispatch)
//! against the same module with every read of x made a read of a 64-KiB
//! uniform binding (`xu`). A uniform binding holds only a few images of
//! these tensors, so that variant takes one dispatch per chunk of images
//! that fits (BENCHMARKS.md, "Twenty-fourth pass"). Modes:
//!
//! - `chunks` (default): the batch, storage in one dispatch against
//!   uniform in one dispatch per chunk;
//! - `one-chunk`: the first chunk's images only, one dispatch each way
//!   (the reads alone);
//! - `workgroup N`: the storage module at N invocations a workgroup
//!   against the step's 64.
//!
//! Each case checks that both give the same bits, then alternates the two
//! (7 rounds, each the median of 3 timings of ≥ 20 ms).
//!
//! `cargo run --release --example uniform_activations -- [chunks|one-chunk|workgroup N]`

use anyhow::{bail, ensure};
use gradnas::bench::{median, random_buf, run_repeated, time_alternating};
use gradnas::engine::shaders::index_as_call;
use gradnas::engine::{grid_1d, Buf, Gpu, Kernel};
use gradnas::ops::conv2d_rows::{Direction, Spec, UNIFORM_FLOATS};

const BATCH: usize = 32;

/// The module reading x (as floats, float2s or float4s) from `xu`.
fn uniform_x(src: &str) -> String {
    let s = index_as_call(src, "x4", "xu4");
    let s = index_as_call(&s, "x2", "xu2");
    let s = index_as_call(&s, "x", "xu1");
    format!(
        "{s}
@group(0) @binding(1) var<uniform> xu: array<vec4<f32>, {}>;
fn xu4(i: u32) -> vec4<f32> {{ return xu[i]; }}
fn xu1(i: u32) -> f32 {{ return xu[i / 4u][i % 4u]; }}
fn xu2(i: u32) -> vec2<f32> {{
    let q = xu[i / 2u];
    return select(q.xy, q.zw, i % 2u == 1u);
}}
",
        UNIFORM_FLOATS / 4
    )
}

/// One convolution forward of the step: its kernel and its planes.
struct Case {
    spec: Spec,
    c_in: usize,
    c_out: usize,
    hw: usize,
    /// Weight floats per read channel (the dense kernels' tap-major copy
    /// is read as float4s).
    w_i: usize,
}

impl Case {
    fn invocations(&self, n: usize) -> usize {
        let s = &self.spec;
        let blocks = n * self.c_out.div_ceil(s.oc);
        if s.flat4 {
            blocks * (self.hw * self.hw / 4).div_ceil(s.quads)
        } else {
            blocks * self.hw.div_ceil(s.rows) * self.hw.div_ceil(8)
        }
    }
    fn params(&self, n: usize) -> [u32; 14] {
        let s = &self.spec;
        let (hw, pad) = (self.hw as u32, s.pad.1 as u32);
        // Weights per written channel: [c_out, c_in / groups, kh, kw].
        let read = if s.depthwise { 1 } else { self.c_in };
        let w_o = read * s.kh * s.kw;
        [
            n as u32,
            self.c_in as u32,
            hw,
            hw,
            self.c_out as u32,
            hw,
            hw,
            pad,
            pad,
            w_o as u32,
            self.w_i as u32,
            0,
            0,
            0,
        ]
    }
}

/// The step's storage kernel (`source` may change its workgroup) over `n`
/// images of x and y.
#[allow(clippy::too_many_arguments)]
fn launch(
    gpu: &Gpu,
    case: &Case,
    module: &str,
    source: String,
    n: usize,
    x: &Buf,
    w: &Buf,
    y: &Buf,
    workgroup: u32,
) -> anyhow::Result<Kernel> {
    Ok(gpu.kernel_generated(
        module,
        &|| Ok(source.clone()),
        "conv_rows",
        &case.params(n),
        &[(1, x), (2, &w.span(UNIFORM_FLOATS)), (3, w), (5, y)],
        grid_1d(case.invocations(n), workgroup),
    )?)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, workgroup) = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["chunks"] => ("chunks", 64),
        ["one-chunk"] => ("one-chunk", 64),
        ["workgroup", n] => ("workgroup", n.parse()?),
        _ => bail!("usage: uniform_activations [chunks|one-chunk|workgroup N]"),
    };
    let gpu = Gpu::new()?;
    let base = Spec {
        depthwise: false,
        kh: 1,
        kw: 1,
        dilation: 1,
        dir: Direction::Forward,
        flat4: false,
        oc: 32,
        ic: 1,
        stride: 1,
        pad: (0, 0),
        vec: 1,
        rows: 1,
        quads: 1,
        col_blocks: 0,
        relu: false,
        store: 1,
        plane: None,
        uniform: true,
        wg: 0,
        unroll: 1,
        pairs: false,
        cols: 8,
    };
    let pointwise4 = Spec {
        flat4: true,
        oc: 8,
        quads: 4,
        ..base
    };
    let cases = [
        (32, 32, 7, 8, base),
        (16, 16, 14, 1, pointwise4),
        (8, 8, 28, 1, pointwise4),
        (
            16,
            16,
            14,
            9,
            Spec {
                depthwise: true,
                kh: 3,
                kw: 3,
                oc: 1,
                pad: (0, 1),
                vec: 2,
                rows: 2,
                store: 2,
                ..base
            },
        ),
    ]
    .map(|(c_in, c_out, hw, w_i, spec)| Case {
        spec,
        c_in,
        c_out,
        hw,
        w_i,
    });
    for case in &cases {
        let s = &case.spec;
        let (img_in, img_out) = (
            case.c_in * case.hw * case.hw,
            case.c_out * case.hw * case.hw,
        );
        // Images a uniform binding holds; for these shapes each chunk's x
        // and y start where a uniform and a storage binding may.
        let per = UNIFORM_FLOATS / img_in;
        ensure!(
            (per * img_in).is_multiple_of(gpu.uniform_offset_align())
                && (per * img_out).is_multiple_of(gpu.offset_align()),
            "chunk offsets unaligned"
        );
        let x = random_buf(&gpu, BATCH * img_in + UNIFORM_FLOATS, 1)?;
        let y = gpu.zeros("y", BATCH * img_out)?;
        let w = random_buf(&gpu, UNIFORM_FLOATS, 2)?;
        let n = if mode == "one-chunk" { per } else { BATCH };
        let (xn, yn) = (x.view(n * img_in), y.view(n * img_out));
        let storage = [launch(
            &gpu,
            case,
            &s.name(),
            s.source(),
            n,
            &xn,
            &w,
            &yn,
            64,
        )?];
        let other: Vec<Kernel> = if mode == "workgroup" {
            let source = s
                .source()
                .replace(
                    "@workgroup_size(64)",
                    &format!("@workgroup_size({workgroup})"),
                )
                .replace("nwg.x * 64u", &format!("nwg.x * {workgroup}u"));
            let module = format!("{}.wg{workgroup}", s.name());
            vec![launch(
                &gpu, case, &module, source, n, &xn, &w, &yn, workgroup,
            )?]
        } else {
            (0..n)
                .step_by(per)
                .map(|b| {
                    let m = per.min(n - b);
                    let xv = x.view_at(b * img_in, UNIFORM_FLOATS);
                    let yv = y.view_at(b * img_out, m * img_out);
                    let module = format!("{}.xu", s.name());
                    launch(
                        &gpu,
                        case,
                        &module,
                        uniform_x(&s.source()),
                        m,
                        &xv,
                        &w,
                        &yv,
                        64,
                    )
                })
                .collect::<anyhow::Result<_>>()?
        };
        run_repeated(&gpu, &storage, 1)?;
        let before = gpu.read(&y)?;
        run_repeated(&gpu, &other, 1)?;
        ensure!(
            gpu.read(&y)? == before,
            "{}: the variant's y differs",
            s.name()
        );
        let what = match mode {
            "workgroup" => format!("workgroups of {workgroup}"),
            _ => format!("uniform x in {} dispatches", other.len()),
        };
        println!(
            "{} on [{n}, {}, {}, {}]:",
            s.name(),
            case.c_in,
            case.hw,
            case.hw
        );
        let rounds = time_alternating(&gpu, &storage, &other, 7, 3)?;
        for &(a, b) in &rounds {
            println!(
                "  as the step runs it {:.3} ms, {what} {:.3} ms, ratio {:.3}",
                a * 1e3,
                b * 1e3,
                b / a
            );
        }
        let ratio = median(rounds.iter().map(|(a, b)| b / a).collect());
        println!("  median ratio {ratio:.3}");
    }
    Ok(())
}
