//! Cases for `ops::softmax_xent`.

use super::{Case, Level, FORWARD, GRADIENT};
use crate::ops::softmax_xent::IGNORE;
use crate::ops::softmax_xent::{self as sx, cpu, SoftmaxShape};

fn shapes(level: Level) -> Vec<SoftmaxShape> {
    let (rows, cols): (&[usize], &[usize]) = match level {
        Level::Quick => (&[64], &[10]),
        Level::Full => (&[1, 7, 32, 256], &[1, 3, 10, 100]),
    };
    rows.iter()
        .flat_map(|&r| cols.iter().map(move |&c| SoftmaxShape { rows: r, cols: c }))
        .collect()
}

pub fn cases(level: Level) -> Vec<Case> {
    let mut v = Vec::new();
    for s in shapes(level) {
        let label = format!("[{},{}]", s.rows, s.cols);
        v.push(Case::new(
            "softmax_xent",
            "softmax",
            label.clone(),
            move |c| {
                // Scaled up so some rows are far from uniform.
                let x: Vec<f32> = c.randn(s.len()).iter().map(|v| 4.0 * v).collect();
                let dy = c.randn(s.len());
                let (xb, dyb) = (c.input(&x)?, c.input(&dy)?);
                let (yb, dxb) = (c.output(s.len())?, c.output(s.len())?);
                c.run(&[
                    sx::softmax_forward(c.gpu, &s, &xb, &yb)?,
                    // The backward reads the GPU's own forward output.
                    sx::softmax_backward(c.gpu, &s, &yb, &dyb, &dxb)?,
                ])?;
                let y = cpu::softmax_forward(&x, s.cols);
                c.check("forward", &y, &yb, FORWARD)?;
                c.check(
                    "backward",
                    &cpu::softmax_backward(&y, &dy, s.cols),
                    &dxb,
                    GRADIENT,
                )
            },
        ));
        v.push(Case::new(
            "softmax_xent",
            "log_softmax_xent",
            label,
            move |c| {
                let x: Vec<f32> = c.randn(s.len()).iter().map(|v| 3.0 * v).collect();
                let mut labels: Vec<u32> = (0..s.rows)
                    .map(|_| c.uniform(1, 0.0, s.cols as f32)[0] as u32)
                    .map(|l| l.min(s.cols as u32 - 1))
                    .collect();
                // Every other row labelled with its argmax, so the correct count
                // is neither all nor none.
                for (r, l) in labels.iter_mut().enumerate().step_by(2) {
                    let row = &x[r * s.cols..(r + 1) * s.cols];
                    *l = (0..s.cols).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as u32;
                }
                // The last row of larger batches is padding: ignored.
                if s.rows >= 7 {
                    labels[s.rows - 1] = IGNORE;
                }
                let dl = c.randn(1)[0];
                let (xb, lb, dlb) = (c.input(&x)?, c.input_u32(&labels)?, c.input(&[dl])?);
                let (pb, lossb) = (c.output(s.len())?, c.output(1)?);
                let (dxb, countb) = (c.output(s.len())?, c.output(1)?);
                let g = c.gpu;
                let mut ks = sx::log_softmax_xent_forward(g, &s, &xb, &lb, &pb, &lossb)?;
                ks.push(sx::log_softmax_xent_backward(g, &s, &pb, &lb, &dlb, &dxb)?);
                ks.extend(sx::correct_count(g, &s, &xb, &lb, &countb)?);
                c.run(&ks)?;
                let (loss, probs) = cpu::log_softmax_xent_forward(&x, &labels, s.cols);
                c.check("forward", &[loss], &lossb, FORWARD)?;
                c.check("probabilities", &probs, &pb, FORWARD)?;
                let dx = cpu::log_softmax_xent_backward(&probs, &labels, s.cols, dl);
                c.check("backward", &dx, &dxb, GRADIENT)?;
                let count = cpu::correct_count(&x, &labels, s.cols);
                c.check("correct", &[count], &countb, FORWARD)
            },
        ));
    }
    v
}
