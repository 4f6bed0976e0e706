//! Cases for `ops::layout`.

use super::{Case, Ctx, Level, Tol, FORWARD, GRADIENT};
use crate::engine::Buf;
use crate::ops::layout::{self as lay, cpu, ConcatShape, SliceShape};

/// (batch, channels of the parts, h, w).
fn concat_shapes(level: Level) -> Vec<ConcatShape> {
    let rows: &[(usize, &[usize], usize, usize)] = match level {
        Level::Quick => &[(2, &[16, 16, 16, 16], 13, 13), (2, &[8, 8], 14, 14)],
        Level::Full => &[
            (1, &[1, 3], 1, 1),
            (2, &[3, 5, 16], 7, 7),
            (1, &[5, 1, 3, 16], 13, 13),
            (2, &[1, 3, 5, 16, 3], 28, 28),
            (1, &[16, 5], 7, 13),
            // Six and eight parts, over a batch the z grid strides (9 > 4
            // per z).
            (9, &[2, 3, 1, 4, 2, 5], 5, 5),
            (3, &[1, 2, 3, 4, 5, 6, 7, 8], 7, 7),
            // Planes of whole float4s (`channel_insert4`): one float4, and
            // three over a strided batch.
            (2, &[3, 1], 2, 2),
            (9, &[2, 3, 1, 4, 2, 5], 2, 6),
        ],
    };
    rows.iter()
        .map(|&(batch, ch, h, w)| ConcatShape {
            batch,
            channels: ch.to_vec(),
            h,
            w,
        })
        .collect()
}

/// Random parts, uploaded.
fn parts(c: &mut Ctx, s: &ConcatShape) -> anyhow::Result<(Vec<Vec<f32>>, Vec<Buf>)> {
    let data: Vec<Vec<f32>> = (0..s.channels.len())
        .map(|k| c.randn(s.part_len(k)))
        .collect();
    let bufs = data.iter().map(|d| c.input(d)).collect::<Result<_, _>>()?;
    Ok((data, bufs))
}

fn outputs(c: &Ctx, s: &ConcatShape) -> anyhow::Result<Vec<Buf>> {
    (0..s.channels.len())
        .map(|k| c.output(s.part_len(k)))
        .collect()
}

/// Compare each part with its reference (rows `direction`).
fn check_parts(
    c: &mut Ctx,
    direction: &str,
    cpu: &[Vec<f32>],
    bufs: &[Buf],
    tol: Tol,
) -> anyhow::Result<()> {
    for (want, b) in cpu.iter().zip(bufs) {
        c.check(direction, want, b, tol)?;
    }
    Ok(())
}

fn refs(v: &[Vec<f32>]) -> Vec<&[f32]> {
    v.iter().map(|x| x.as_slice()).collect()
}

fn slice_shapes(level: Level) -> Vec<SliceShape> {
    if level == Level::Quick {
        // The scalar entries and the float4 ones (rows of whole float4s).
        return vec![
            SliceShape::factorized_reduce(2, 16, 13, 13),
            SliceShape::factorized_reduce(2, 5, 9, 12),
        ];
    }
    let mut v = Vec::new();
    for (i, &(h, w)) in [(1, 1), (7, 7), (13, 13), (28, 28), (7, 13), (5, 8), (9, 4)]
        .iter()
        .enumerate()
    {
        for (oy, ox) in [(0, 0), (1, 1), (0, 1)] {
            // Out sizes: what fits exactly, smaller, and larger than fits
            // (zero padding at the bottom and right).
            let sizes = [
                (h, w),
                (h - oy, w - ox),
                ((h / 2).max(1), (w / 2).max(1)),
                (h + 2, w + 1),
                // The width kept, fewer and more rows (the float4 entries
                // where w is a multiple of 4 and ox is 1).
                ((h - oy).max(1), w),
                (h + 2, w),
            ];
            for (out_h, out_w) in sizes {
                v.push(SliceShape {
                    batch: 1 + i % 2,
                    channels: [3, 5][i % 2],
                    h,
                    w,
                    oy,
                    ox,
                    out_h: out_h.max(1),
                    out_w: out_w.max(1),
                });
            }
        }
    }
    // With offset 0 (and for small inputs) some sizes coincide.
    let mut seen = Vec::new();
    v.retain(|s| {
        let new = !seen.contains(s);
        seen.push(*s);
        new
    });
    v
}

pub fn cases(level: Level) -> Vec<Case> {
    let mut v = Vec::new();
    for s in concat_shapes(level) {
        let label = format!("{}x{:?}x{}x{}", s.batch, s.channels, s.h, s.w);
        let sc = s.clone();
        v.push(Case::new("layout", "concat", label.clone(), move |c| {
            let s = &sc;
            let (xs, xbs) = parts(c, s)?;
            let dy = c.randn(s.whole_len());
            let dyb = c.input(&dy)?;
            let yb = c.output(s.whole_len())?;
            let dxbs = outputs(c, s)?;
            let xr: Vec<&Buf> = xbs.iter().collect();
            let dxr: Vec<&Buf> = dxbs.iter().collect();
            let mut ks = lay::concat_forward(c.gpu, s, &xr, &yb)?;
            ks.extend(lay::concat_backward(c.gpu, s, &dyb, &dxr)?);
            c.run(&ks)?;
            c.check("forward", &cpu::concat_forward(s, &refs(&xs)), &yb, FORWARD)?;
            check_parts(
                c,
                "backward",
                &cpu::concat_backward(s, &dy),
                &dxbs,
                GRADIENT,
            )
        }));
        let sc = s.clone();
        v.push(Case::new(
            "layout",
            "concat_sums",
            label.clone(),
            move |c| {
                // Parts alternately sums of two and single tensors.
                let s = &sc;
                let addends: Vec<usize> = (0..s.channels.len()).map(|k| 2 - k % 2).collect();
                let (mut xs, mut xbs) = (Vec::new(), Vec::new());
                for (k, &a) in addends.iter().enumerate() {
                    for _ in 0..a {
                        let x = c.randn(s.part_len(k));
                        xbs.push(c.input(&x)?);
                        xs.push(x);
                    }
                }
                let yb = c.output(s.whole_len())?;
                let xr: Vec<&Buf> = xbs.iter().collect();
                c.run(&lay::concat_sums_forward(c.gpu, s, &addends, &xr, &yb)?)?;
                let want = cpu::concat_sums_forward(s, &addends, &refs(&xs));
                c.check("forward", &want, &yb, FORWARD)
            },
        ));
        v.push(Case::new("layout", "split", label, move |c| {
            let s = &s;
            let x = c.randn(s.whole_len());
            let xb = c.input(&x)?;
            let (dys, dybs) = parts(c, s)?;
            let ybs = outputs(c, s)?;
            let dxb = c.output(s.whole_len())?;
            let yr: Vec<&Buf> = ybs.iter().collect();
            let dyr: Vec<&Buf> = dybs.iter().collect();
            let mut ks = lay::split_forward(c.gpu, s, &xb, &yr)?;
            ks.extend(lay::split_backward(c.gpu, s, &dyr, &dxb)?);
            c.run(&ks)?;
            let dx = cpu::split_backward(s, &refs(&dys));
            check_parts(c, "forward", &cpu::split_forward(s, &x), &ybs, FORWARD)?;
            c.check("backward", &dx, &dxb, GRADIENT)
        }));
    }
    for s in slice_shapes(level) {
        let label = format!(
            "{}x{}x{}x{} at ({},{}) to {}x{}",
            s.batch, s.channels, s.h, s.w, s.oy, s.ox, s.out_h, s.out_w
        );
        v.push(Case::new("layout", "slice", label, move |c| {
            let (x, dy) = (c.randn(s.in_len()), c.randn(s.out_len()));
            let (xb, dyb) = (c.input(&x)?, c.input(&dy)?);
            let (yb, dxb) = (c.output(s.out_len())?, c.output(s.in_len())?);
            let rb = c.output(s.out_len())?;
            c.run(&[
                lay::slice_forward(c.gpu, &s, false, &xb, &yb)?,
                lay::slice_forward(c.gpu, &s, true, &xb, &rb)?,
                lay::slice_backward(c.gpu, &s, &dyb, &dxb)?,
            ])?;
            let y = cpu::slice_forward(&s, &x);
            c.check("forward", &y, &yb, FORWARD)?;
            // A fused ReLU: the slice of max(x, 0).
            let r = cpu::slice_forward(&s, &crate::ops::elementwise::cpu::relu_forward(&x));
            c.check("forward", &r, &rb, FORWARD)?;
            c.check("backward", &cpu::slice_backward(&s, &dy), &dxb, GRADIENT)
        }));
    }
    v
}
