//! Cases for `ops::mix`.

use super::{Case, Level, FORWARD, GRADIENT};
use crate::ops::mix::{self, cpu, MixShape};

fn shapes(level: Level) -> Vec<MixShape> {
    let (ks, ns): (&[usize], &[usize]) = match level {
        Level::Quick => (&[8], &[2 * 16 * 13 * 13]),
        // n: 1, 7×7, one past reduce's chunk (4096), an odd activation.
        Level::Full => (&[1, 5, 8], &[1, 49, 4097, 3 * 13 * 13 * 5]),
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
                let (xs, dy) = (c.randn(s.stacked_len()), c.randn(s.n));
                let w = c.uniform(s.k, 0.0, 1.0);
                let (xb, wb, dyb) = (c.input(&xs)?, c.input(&w)?, c.input(&dy)?);
                let yb = c.output(s.n)?;
                let (dxb, dwb) = (c.output(s.stacked_len())?, c.output(s.k)?);
                let g = c.gpu;
                let mut ks = vec![
                    mix::forward(g, &s, &xb, &wb, &yb)?,
                    mix::backward_inputs(g, &s, &wb, &dyb, &dxb)?,
                ];
                ks.extend(mix::backward_weights(g, &s, &xb, &dyb, &dwb)?);
                c.run(&ks)?;
                c.check("forward", &cpu::forward(&xs, &w), &yb, FORWARD)?;
                let dx = cpu::backward_inputs(&w, &dy);
                c.check("backward_inputs", &dx, &dxb, GRADIENT)?;
                let dw = cpu::backward_weights(&xs, &dy);
                c.check("backward_weights", &dw, &dwb, GRADIENT)
            })
        })
        .collect()
}
