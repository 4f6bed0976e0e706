//! Cases for `ops::matmul`: both kernels, every transpose combination. Rows of
//! the tiled kernel carry a `_tiled` suffix on their direction.

use super::{Case, Level, FORWARD, GRADIENT};
use crate::ops::matmul::{self as mm, cpu, LinearShape, MatmulKernel, MatmulShape};

const KERNELS: [MatmulKernel; 2] = [MatmulKernel::Blocked, MatmulKernel::Tiled];

/// "forward" for the blocked kernel, "forward_tiled" for the tiled one.
fn direction(name: &str, kernel: MatmulKernel) -> String {
    match kernel {
        MatmulKernel::Blocked => name.to_string(),
        MatmulKernel::Tiled => format!("{name}_tiled"),
    }
}

/// (m, k, n): 1, odd sizes, exact tiles, and one past the tile edges.
fn shapes(level: Level) -> Vec<(usize, usize, usize)> {
    match level {
        Level::Quick => vec![(33, 65, 17)],
        Level::Full => vec![
            (1, 1, 1),
            (1, 7, 3),
            (5, 13, 7),
            (32, 100, 10),
            (64, 64, 64),
            (33, 65, 17),
            (130, 70, 129),
        ],
    }
}

fn matmul_case(s: MatmulShape, kernel: MatmulKernel) -> Case {
    let shape = format!(
        "m{} k{} n{}{}{}",
        s.m,
        s.k,
        s.n,
        if s.trans_a { " Aᵀ" } else { "" },
        if s.trans_b { " Bᵀ" } else { "" }
    );
    Case::new("matmul", "matmul", shape, move |c| {
        let (a, b, dc) = (c.randn(s.a_len()), c.randn(s.b_len()), c.randn(s.c_len()));
        let (ab, bb, dcb) = (c.input(&a)?, c.input(&b)?, c.input(&dc)?);
        let (cb, dab, dbb) = (
            c.output(s.c_len())?,
            c.output(s.a_len())?,
            c.output(s.b_len())?,
        );
        let g = c.gpu;
        c.run(&[
            mm::forward(g, &s, kernel, &ab, &bb, &cb)?,
            mm::backward_a(g, &s, kernel, &bb, &dcb, &dab)?,
            mm::backward_b(g, &s, kernel, &ab, &dcb, &dbb)?,
        ])?;
        c.check(
            &direction("forward", kernel),
            &cpu::forward(&s, &a, &b),
            &cb,
            FORWARD,
        )?;
        let da = cpu::backward_a(&s, &b, &dc);
        c.check(&direction("backward_a", kernel), &da, &dab, GRADIENT)?;
        let db = cpu::backward_b(&s, &a, &dc);
        c.check(&direction("backward_b", kernel), &db, &dbb, GRADIENT)
    })
}

fn linear_case(s: LinearShape, with_bias: bool, kernel: MatmulKernel) -> Case {
    let shape = format!(
        "batch{} in{} out{}{}",
        s.batch,
        s.in_features,
        s.out_features,
        if with_bias { " bias" } else { "" }
    );
    Case::new("matmul", "linear", shape, move |c| {
        let (x, w, dy) = (c.randn(s.x_len()), c.randn(s.w_len()), c.randn(s.y_len()));
        let bias = c.randn(s.out_features);
        let (xb, wb, dyb, biasb) = (c.input(&x)?, c.input(&w)?, c.input(&dy)?, c.input(&bias)?);
        let (yb, dxb, dwb) = (
            c.output(s.y_len())?,
            c.output(s.x_len())?,
            c.output(s.w_len())?,
        );
        let dbb = c.output(s.out_features)?;
        let bias_buf = with_bias.then_some(&biasb);
        let g = c.gpu;
        let mut ks = vec![
            mm::linear_forward(g, &s, kernel, &xb, &wb, bias_buf, &yb)?,
            mm::linear_backward_input(g, &s, kernel, &wb, &dyb, &dxb)?,
            mm::linear_backward_weight(g, &s, kernel, &xb, &dyb, &dwb)?,
        ];
        // The bias gradient does not depend on the matmul kernel: once.
        let bias_grad = with_bias && kernel == MatmulKernel::Blocked;
        if bias_grad {
            ks.push(mm::linear_backward_bias(g, &s, &dyb, &dbb)?);
        }
        c.run(&ks)?;
        let y = cpu::linear_forward(&s, &x, &w, with_bias.then_some(&bias[..]));
        c.check(&direction("forward", kernel), &y, &yb, FORWARD)?;
        let dx = cpu::linear_backward_input(&s, &w, &dy);
        c.check(&direction("backward_input", kernel), &dx, &dxb, GRADIENT)?;
        let dw = cpu::linear_backward_weight(&s, &x, &dy);
        c.check(&direction("backward_weight", kernel), &dw, &dwb, GRADIENT)?;
        if bias_grad {
            let db = cpu::linear_backward_bias(&s, &dy);
            c.check("backward_bias", &db, &dbb, GRADIENT)?;
        }
        Ok(())
    })
}

pub fn cases(level: Level) -> Vec<Case> {
    let mut v = Vec::new();
    for (m, k, n) in shapes(level) {
        for kernel in KERNELS {
            for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
                if level == Level::Quick && trans_a != trans_b {
                    continue;
                }
                v.push(matmul_case(
                    MatmulShape::new(m, k, n, trans_a, trans_b),
                    kernel,
                ));
            }
        }
    }
    // Linear: batch × in → out, with and without bias.
    let linear: &[(usize, usize, usize)] = match level {
        Level::Quick => &[(8, 100, 10)],
        Level::Full => &[(1, 7, 3), (5, 13, 7), (32, 100, 10), (130, 70, 129)],
    };
    for &(batch, in_features, out_features) in linear {
        let s = LinearShape {
            batch,
            in_features,
            out_features,
        };
        for kernel in KERNELS {
            for with_bias in [true, false] {
                if level == Level::Quick && !with_bias {
                    continue;
                }
                v.push(linear_case(s, with_bias, kernel));
            }
        }
    }
    v
}
