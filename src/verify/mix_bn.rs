//! Cases for `ops::mix_bn` and `batchnorm::train_stats`: the mixed op
//! through its candidates' batch norms on the GPU against the composition
//! it replaces, made of the other ops' CPU references (batch norm's
//! training forward and backward, the mixed op's forward, w[k]·dy and dw),
//! and the CPU twins against the same.

use super::{Case, Ctx, Level, FORWARD, GRADIENT};
use crate::engine::Buf;
use crate::ops::batchnorm::{self as bn};
use crate::ops::mix;
use crate::ops::mix_bn::{self, cpu, Shape};

fn shapes(level: Level) -> Vec<Shape> {
    let s = |k, n, c, hw| Shape { k, n, c, hw };
    match level {
        // A block's pnas edge on 7×7 (odd planes; and planes in fours,
        // the forward's float4s over plane boundaries) and a plane of
        // float4s over two chunks.
        Level::Quick => vec![s(8, 6, 5, 49), s(8, 4, 5, 49), s(7, 7, 3, 784)],
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
            // Planes in fours, not whole float4s: 13 and 5 values.
            s(6, 2, 2, 13),
            s(3, 4, 3, 5),
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
    let norm: Vec<bool> = (0..s.k).map(is_bn).collect();
    // Candidates: BN(z_k) with z_k off zero mean and unit variance, or x_k.
    let zs: Vec<Vec<f32>> = (0..s.k)
        .map(|_| c.randn(s.len()).iter().map(|v| 0.5 + 2.0 * v).collect())
        .collect();
    let running = |c: &mut Ctx| (c.uniform(s.c, -1.0, 1.0), c.uniform(s.c, 0.5, 2.0));
    let (rm0, rv0) = running(c);
    let w = c.uniform(s.k, 0.0, 1.0);
    let dy = c.randn(s.len());
    // The composition the fused ops replace: batch norm's forward, the
    // mixed op over its outputs, and their backwards.
    let mut ys = Vec::new();
    let mut stats = Vec::new();
    let (mut rm_ref, mut rv_ref) = (Vec::new(), Vec::new());
    for (k, z) in zs.iter().enumerate() {
        if norm[k] {
            let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
            let (y, mean, invstd) = bn::cpu::train_forward(&bs, z, None, None, &mut rm, &mut rv);
            ys.push(y);
            stats.push((mean, invstd));
            rm_ref.extend(rm);
            rv_ref.extend(rv);
        } else {
            ys.push(z.clone());
            stats.push(Default::default());
        }
    }
    let yrefs: Vec<&[f32]> = ys.iter().map(|y| y.as_slice()).collect();
    let out_ref = mix::cpu::forward(&yrefs, &w);
    let dw_ref = mix::cpu::backward_weights(&yrefs, &dy);
    let dz_ref: Vec<Vec<f32>> = (0..s.k)
        .filter(|&k| norm[k])
        .map(|k| {
            let (mean, invstd) = &stats[k];
            let dyk = &mix::cpu::backward_inputs(&w[k..=k], &dy)[0];
            bn::cpu::train_backward(&bs, &zs[k], mean, invstd, None, dyk).0
        })
        .collect();
    // The CPU twins: the pack's chain, then the mixed op over z.
    let chain = |k: usize, first: bool| bn::Stats {
        row: k,
        kk: s.k,
        first,
    };
    let mut pack = w.clone();
    let (mut rm_cpu, mut rv_cpu) = (Vec::new(), Vec::new());
    for k in (0..s.k).filter(|&k| norm[k]) {
        let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
        let st = chain(k, pack.len() == s.k);
        pack = bn::cpu::train_stats(&bs, st, &zs[k], &pack, &mut rm, &mut rv);
        rm_cpu.extend(rm);
        rv_cpu.extend(rv);
    }
    c.check_values("cpu_running", &rm_ref, &rm_cpu, FORWARD);
    c.check_values("cpu_running", &rv_ref, &rv_cpu, FORWARD);
    let zrefs: Vec<&[f32]> = zs.iter().map(|z| z.as_slice()).collect();
    let out_cpu = cpu::forward(&s, &norm, &zrefs, &pack);
    c.check_values("cpu_forward", &out_ref, &out_cpu, FORWARD);
    let (sums, dw_cpu) = cpu::channel_dot(&s, &norm, &zrefs, &pack, &dy);
    c.check_values("cpu_dw", &dw_ref, &dw_cpu, GRADIENT);
    let dz_cpu: Vec<f32> = (0..s.k)
        .filter(|&k| norm[k])
        .flat_map(|k| cpu::bn_backward(&s, k, &zs[k], &pack, &sums, &dy))
        .collect();
    c.check_values("cpu_dz", &dz_ref.concat(), &dz_cpu, GRADIENT);
    // The GPU: the chain of statistics, the forward, the backward.
    let zb: Vec<Buf> = zs.iter().map(|z| c.input(z)).collect::<Result<_, _>>()?;
    let (dyb, wb) = (c.input(&dy)?, c.input(&w)?);
    let mut ks = Vec::new();
    let (mut packs, mut runs) = (Vec::new(), Vec::new());
    for k in (0..s.k).filter(|&k| norm[k]) {
        let next = c.output(s.pack_len())?;
        let (rm, rv) = (c.input(&rm0)?, c.input(&rv0)?);
        let st = chain(k, packs.is_empty());
        let prev = packs.last().unwrap_or(&wb);
        ks.push(bn::train_stats(
            c.gpu, &bs, st, &zb[k], prev, &next, &rm, &rv,
        )?);
        packs.push(next);
        runs.push((rm, rv));
    }
    let packb = packs.last().expect("a batch norm among the candidates");
    let zr: Vec<&Buf> = zb.iter().collect();
    let outb = c.output(s.len())?;
    ks.extend(mix_bn::forward(c.gpu, &s, &norm, &zr, packb, &outb)?);
    let (sumsb, dwb) = (c.output(s.sums_len())?, c.output(s.k)?);
    ks.extend(mix_bn::channel_dot(
        c.gpu, &s, &norm, &zr, packb, &dyb, &sumsb, &dwb,
    )?);
    // Each fused candidate's dz alone, and two per dispatch (a graph's
    // way; an odd one out alone).
    let fused: Vec<usize> = (0..s.k).filter(|&k| norm[k]).collect();
    let mut dzb = Vec::new();
    for &k in &fused {
        let out = c.output(s.len())?;
        ks.push(mix_bn::bn_backward(
            c.gpu,
            &s,
            &[k],
            &[&zb[k]],
            packb,
            &sumsb,
            &dyb,
            &[&out],
        )?);
        dzb.push(out);
    }
    let mut paired = Vec::new();
    for pair in fused.chunks(2) {
        let outs = pair
            .iter()
            .map(|_| c.output(s.len()))
            .collect::<Result<Vec<_>, _>>()?;
        let zs: Vec<&Buf> = pair.iter().map(|&k| &zb[k]).collect();
        let dzs: Vec<&Buf> = outs.iter().collect();
        ks.push(mix_bn::bn_backward(
            c.gpu, &s, pair, &zs, packb, &sumsb, &dyb, &dzs,
        )?);
        paired.extend(outs);
    }
    c.run(&ks)?;
    // Candidates without a batch norm leave their rows unwritten: compare
    // w and the written rows.
    let got = c.gpu.read(packb)?;
    let rows = |p: &[f32]| -> Vec<f32> {
        let mut v = p[..s.k].to_vec();
        for k in (0..s.k).filter(|&k| norm[k]) {
            v.extend(&p[s.pack_a(k)..s.pack_a(k) + 2 * s.c]);
        }
        v
    };
    c.check_values("pack", &rows(&pack), &rows(&got), FORWARD);
    let (mut rm_gpu, mut rv_gpu) = (Vec::new(), Vec::new());
    for (rm, rv) in &runs {
        rm_gpu.extend(c.gpu.read(rm)?);
        rv_gpu.extend(c.gpu.read(rv)?);
    }
    c.check_values("running", &rm_ref, &rm_gpu, FORWARD);
    c.check_values("running", &rv_ref, &rv_gpu, FORWARD);
    c.check("forward", &out_ref, &outb, FORWARD)?;
    c.check("dw", &dw_ref, &dwb, GRADIENT)?;
    for (what, bufs) in [("dz", &dzb), ("dz in pairs", &paired)] {
        let mut dz_gpu = Vec::new();
        for b in bufs {
            dz_gpu.extend(c.gpu.read(b)?);
        }
        c.check_values(what, &dz_ref.concat(), &dz_gpu, GRADIENT);
    }
    Ok(())
}
