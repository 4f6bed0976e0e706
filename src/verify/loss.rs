//! Cases for `ops::loss`.

use super::{Case, Level, FORWARD, GRADIENT};
use crate::ops::loss::{self, cpu};

fn sizes(level: Level) -> Vec<usize> {
    match level {
        Level::Quick => vec![128],
        // 1, a few, a predictor batch, one past reduce's chunk.
        Level::Full => vec![1, 5, 128, 4097],
    }
}

pub fn cases(level: Level) -> Vec<Case> {
    sizes(level)
        .into_iter()
        .map(|n| {
            Case::new("loss", "l1_loss", format!("[{n}]"), move |c| {
                let p = c.randn(n);
                let mut t = c.randn(n);
                // Some exact ties: sign(0) = 0 must agree on both sides.
                for i in (3..n).step_by(7) {
                    t[i] = p[i];
                }
                let dl = c.randn(1)[0];
                let (pb, tb, dlb) = (c.input(&p)?, c.input(&t)?, c.input(&[dl])?);
                let (lossb, dpb) = (c.output(1)?, c.output(n)?);
                let mut ks = loss::l1_forward(c.gpu, &pb, &tb, &lossb)?;
                ks.push(loss::l1_backward(c.gpu, &pb, &tb, &dlb, &dpb)?);
                c.run(&ks)?;
                c.check("forward", &[cpu::l1_forward(&p, &t)], &lossb, FORWARD)?;
                c.check("backward", &cpu::l1_backward(&p, &t, dl), &dpb, GRADIENT)
            })
        })
        .collect()
}
