//! Cases for `ops::mix`.

use super::{Case, Level, FORWARD, GRADIENT};
use crate::ops::mix::{self, cpu, MixShape};

fn shapes(level: Level) -> Vec<MixShape> {
    let (ks, ns): (&[usize], &[usize]) = match level {
        Level::Quick => (&[8], &[2 * 16 * 13 * 13]),
        // K: one, one group of 6 short, one past a group, a whole edge of
        // the pnas set, a block's 5 inputs; n: 1, 7×7, one past a chunk
        // (4096), an odd activation; and lengths of float4s (the float4
        // entries): one, a batch's 14×14 activation, one past a chunk.
        Level::Full => (
            &[1, 5, 7, 8, 40],
            &[1, 49, 4097, 3 * 13 * 13 * 5, 4, 2 * 8 * 14 * 14, 4100],
        ),
    };
    ks.iter()
        .flat_map(|&k| ns.iter().map(move |&n| MixShape { k, n }))
        .collect()
}

pub fn cases(level: Level) -> Vec<Case> {
    shapes(level)
        .into_iter()
        .map(|s| {
            let label = format!("K={} n={}", s.k, s.n);
            Case::new("mix", "weighted_sum", label, move |c| {
                let xs: Vec<Vec<f32>> = (0..s.k).map(|_| c.randn(s.n)).collect();
                let dy = c.randn(s.n);
                let w = c.uniform(s.k, 0.0, 1.0);
                let xb: Vec<_> = xs.iter().map(|x| c.input(x)).collect::<Result<_, _>>()?;
                let (wb, dyb) = (c.input(&w)?, c.input(&dy)?);
                let yb = c.output(s.n)?;
                let dxb: Vec<_> = (0..s.k).map(|_| c.output(s.n)).collect::<Result<_, _>>()?;
                let dwb = c.output(s.k)?;
                let (g, xr, dxr) = (c.gpu, refs(&xb), refs(&dxb));
                let mut ks = mix::forward(g, &s, &xr, &wb, &yb)?;
                ks.extend(mix::backward_inputs(g, &s, &wb, &dyb, &dxr)?);
                ks.extend(mix::backward_weights(g, &s, &xr, &dyb, &dwb)?);
                c.run(&ks)?;
                let xs: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
                c.check("forward", &cpu::forward(&xs, &w), &yb, FORWARD)?;
                // The K input gradients compared as one vector: one row.
                let dx = cpu::backward_inputs(&w, &dy).concat();
                let mut gpu_dx = Vec::with_capacity(dx.len());
                for b in &dxb {
                    gpu_dx.extend(c.gpu.read(b)?);
                }
                c.check_values("backward_inputs", &dx, &gpu_dx, GRADIENT);
                let dw = cpu::backward_weights(&xs, &dy);
                c.check("backward_weights", &dw, &dwb, GRADIENT)
            })
        })
        .collect()
}

fn refs<B>(v: &[B]) -> Vec<&B> {
    v.iter().collect()
}
