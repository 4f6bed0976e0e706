//! Cases for `ops::mix_bn`: the fused backward on the GPU against the
//! composition it replaces, made of the other ops' CPU references (the
//! mixed op's w[k]·dy and dw, batch norm's training backward), and the CPU
//! twin against the same.

use super::{Case, Ctx, Level, GRADIENT};
use crate::engine::Buf;
use crate::ops::batchnorm::{self as bn};
use crate::ops::mix;
use crate::ops::mix_bn::{self, cpu, Shape};

fn shapes(level: Level) -> Vec<Shape> {
    let s = |k, n, c, hw| Shape { k, n, c, hw };
    match level {
        // A block's pnas edge on 7×7 and a plane of float4s over two chunks.
        Level::Quick => vec![s(8, 6, 5, 49), s(7, 7, 3, 784)],
        // K: one, one group of 6 short, one past a group, a pnas block's 40;
        // planes: odd (7×7, 13×13, 1000 values over two chunks) and of
        // float4s (4×4; 28×28 over 2 and 6 chunks); odd channels, batch 1.
        Level::Full => vec![
            s(1, 3, 5, 49),
            s(5, 1, 3, 169),
            s(7, 9, 2, 1000),
            s(8, 6, 5, 49),
            s(8, 2, 7, 16),
            s(3, 7, 3, 784),
            s(40, 2, 3, 36),
            s(6, 32, 2, 784),
        ],
    }
}

/// Every other candidate (k even) is a batch norm's output; the rest are
/// plain tensors (an identity candidate).
fn is_bn(k: usize) -> bool {
    k.is_multiple_of(2)
}

pub fn cases(level: Level) -> Vec<Case> {
    shapes(level)
        .into_iter()
        .map(|s| {
            let label = format!("K={} [{},{},{}]", s.k, s.n, s.c, s.hw);
            Case::new("mix_bn", "mix_bn", label, move |c| run(c, s))
        })
        .collect()
}

fn run(c: &mut Ctx, s: Shape) -> anyhow::Result<()> {
    let bs = bn::Shape::new(s.n, s.c, s.hw, false);
    // Candidates: BN(z_k) with z_k off zero mean and unit variance, or x_k.
    let mut zs = Vec::new();
    let mut ys = Vec::new();
    // (mean, invstd) of the batch norms.
    let mut stats = Vec::new();
    for k in 0..s.k {
        let z: Vec<f32> = c.randn(s.len()).iter().map(|v| 0.5 + 2.0 * v).collect();
        if is_bn(k) {
            let (mut rm, mut rv) = (vec![0.0; s.c], vec![1.0; s.c]);
            let (y, mean, invstd) = bn::cpu::train_forward(&bs, &z, None, None, &mut rm, &mut rv);
            ys.push(y);
            stats.push((mean, invstd));
        } else {
            ys.push(z.clone());
            stats.push(Default::default());
        }
        zs.push(z);
    }
    let dy = c.randn(s.len());
    let w = c.uniform(s.k, 0.0, 1.0);
    // The composition the fused op replaces.
    let yrefs: Vec<&[f32]> = ys.iter().map(|y| y.as_slice()).collect();
    let dw_ref = mix::cpu::backward_weights(&yrefs, &dy);
    let dz_ref: Vec<Vec<f32>> = (0..s.k)
        .filter(|&k| is_bn(k))
        .map(|k| {
            let (mean, invstd) = &stats[k];
            let dyk = &mix::cpu::backward_inputs(&w[k..=k], &dy)[0];
            bn::cpu::train_backward(&bs, &zs[k], mean, invstd, None, dyk).0
        })
        .collect();
    // The CPU twin.
    let (sums, dw_cpu) = cpu::channel_dot(&s, &yrefs, &dy);
    c.check_values("cpu_dw", &dw_ref, &dw_cpu, GRADIENT);
    let dz_cpu: Vec<f32> = (0..s.k)
        .filter(|&k| is_bn(k))
        .flat_map(|k| cpu::bn_backward(&s, k, &ys[k], &stats[k].1, &w, &sums, &dy))
        .collect();
    c.check_values("cpu_dz", &dz_ref.concat(), &dz_cpu, GRADIENT);
    // The GPU.
    let yb: Vec<Buf> = ys.iter().map(|y| c.input(y)).collect::<Result<_, _>>()?;
    let (dyb, wb) = (c.input(&dy)?, c.input(&w)?);
    let (sumsb, dwb) = (c.output(s.sums_len())?, c.output(s.k)?);
    let yr: Vec<&Buf> = yb.iter().collect();
    let mut ks = mix_bn::channel_dot(c.gpu, &s, &yr, &dyb, &sumsb, &dwb)?;
    let mut dzb = Vec::new();
    for k in (0..s.k).filter(|&k| is_bn(k)) {
        let (ib, out) = (c.input(&stats[k].1)?, c.output(s.len())?);
        ks.push(mix_bn::bn_backward(
            c.gpu, &s, k, &yb[k], &ib, &wb, &sumsb, &dyb, &out,
        )?);
        dzb.push(out);
    }
    c.run(&ks)?;
    c.check("dw", &dw_ref, &dwb, GRADIENT)?;
    let mut dz_gpu = Vec::new();
    for b in &dzb {
        dz_gpu.extend(c.gpu.read(b)?);
    }
    c.check_values("dz", &dz_ref.concat(), &dz_gpu, GRADIENT);
    Ok(())
}
