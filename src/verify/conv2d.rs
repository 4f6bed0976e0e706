//! Cases for `ops::conv2d`.

use super::{Case, Level, FORWARD, GRADIENT};
use crate::engine::place;
use crate::ops::conv2d::{self as conv, cpu, Conv2dShape};
use crate::ops::conv2d_rows::{self, Direction};

/// (n, c_in, c_out, h, w, kh, kw, stride, pad_h, pad_w, dilation, groups, bias)
type Row = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    bool,
);

const QUICK: &[Row] = &[
    // Dense 3×3 "same".
    (2, 16, 16, 28, 28, 3, 3, 1, 1, 1, 1, 1, true),
    // dil_conv's depthwise 5×5, dilation 2.
    (2, 16, 16, 28, 28, 5, 5, 1, 4, 4, 2, 16, false),
    // conv_7x1_1x7.
    (2, 16, 16, 28, 28, 1, 7, 1, 0, 3, 1, 1, false),
    (2, 16, 16, 28, 28, 7, 1, 1, 3, 0, 1, 1, false),
    // FactorizedReduce: strided 1×1.
    (2, 16, 8, 28, 28, 1, 1, 2, 0, 0, 1, 1, false),
    // Dense 1×1 over rows of scalars, 32 and 16 channels a block.
    (3, 48, 32, 7, 7, 1, 1, 1, 0, 0, 1, 1, true),
];

/// Every kernel size, stride 1 and 2, padding 0 and "same", dilation 1 and
/// 2, dense / middle groups / depthwise (and a channel multiplier), batch 1
/// to 4, odd channel counts, spatial 1, 7, 13 and 28, with and without bias.
const FULL: &[Row] = &[
    (1, 3, 5, 7, 7, 3, 3, 1, 1, 1, 1, 1, true),
    (2, 5, 7, 13, 13, 3, 3, 2, 0, 0, 1, 1, false),
    (4, 16, 16, 28, 28, 3, 3, 1, 1, 1, 1, 1, true),
    (1, 5, 3, 28, 28, 3, 3, 2, 1, 1, 1, 1, false),
    (3, 7, 3, 13, 13, 5, 5, 1, 2, 2, 1, 1, true),
    (2, 3, 5, 13, 13, 5, 5, 2, 0, 0, 1, 1, false),
    (2, 3, 5, 13, 13, 5, 5, 1, 4, 4, 2, 1, true),
    (2, 3, 3, 7, 7, 7, 7, 1, 3, 3, 1, 1, false),
    (1, 5, 7, 13, 13, 7, 7, 2, 3, 3, 1, 1, true),
    (1, 1, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, true),
    (3, 3, 5, 1, 1, 5, 5, 2, 2, 2, 1, 1, false),
    (2, 5, 5, 28, 28, 3, 3, 2, 2, 2, 2, 1, false),
    // Middle groups.
    (2, 6, 6, 13, 13, 3, 3, 1, 1, 1, 1, 3, true),
    (2, 6, 9, 7, 7, 1, 1, 1, 0, 0, 1, 3, false),
    (1, 16, 8, 13, 13, 5, 5, 2, 2, 2, 1, 4, false),
    // Depthwise.
    (2, 5, 5, 13, 13, 3, 3, 1, 2, 2, 2, 5, true),
    (2, 16, 16, 28, 28, 5, 5, 1, 4, 4, 2, 16, false),
    (1, 7, 7, 13, 13, 3, 3, 2, 1, 1, 1, 7, false),
    // dil_conv's depthwise at stride 2 (a reduction cell's input).
    (2, 5, 5, 13, 13, 3, 3, 2, 2, 2, 2, 5, true),
    (1, 5, 5, 7, 7, 7, 7, 1, 3, 3, 1, 5, true),
    (4, 3, 3, 28, 28, 7, 7, 2, 3, 3, 1, 3, false),
    // Strided input gradients in blocks of rows (`conv2d_rows::
    // strided_dx_rows`: 8 for 7×7, 2 for 5×5) on odd planes that leave
    // a block part empty.
    (2, 4, 4, 13, 15, 7, 7, 2, 3, 3, 1, 4, true),
    (2, 6, 6, 11, 9, 5, 5, 2, 2, 2, 1, 6, false),
    (2, 3, 3, 1, 1, 5, 5, 1, 2, 2, 1, 3, false),
    (1, 16, 16, 13, 13, 3, 3, 1, 0, 0, 1, 16, false),
    // Depthwise with a channel multiplier (the dense kernels).
    (2, 3, 6, 13, 13, 3, 3, 1, 1, 1, 1, 3, true),
    // 1×7 and 7×1.
    (2, 16, 16, 28, 28, 1, 7, 1, 0, 3, 1, 1, false),
    (1, 5, 7, 13, 7, 7, 1, 1, 3, 0, 1, 1, true),
    (2, 3, 3, 13, 13, 1, 7, 2, 0, 0, 1, 1, false),
    // Dense 1×k in blocks of rows (`conv2d_rows::dense_row_rows`) whose
    // last block is partly past the plane: 13 rows as 7 + 6, 11 as 6 + 5
    // (dilation 2), and a bias.
    (1, 5, 6, 13, 9, 1, 5, 1, 0, 2, 1, 1, true),
    (2, 4, 4, 11, 10, 1, 3, 1, 0, 2, 2, 1, false),
    // Channel blocks of 4 (`conv2d_rows::channel_block`): the width-4
    // network's 1×7, and 12 → 4 channels (its input gradient writes 12).
    (2, 4, 4, 14, 14, 1, 7, 1, 0, 3, 1, 1, true),
    (2, 12, 4, 7, 13, 7, 1, 1, 3, 0, 1, 1, false),
    // 1×1: FactorizedReduce, pointwise, spatial 1.
    (4, 7, 3, 13, 13, 1, 1, 2, 0, 0, 1, 1, false),
    (2, 16, 16, 28, 28, 1, 1, 1, 0, 0, 1, 1, true),
    (4, 16, 16, 1, 1, 1, 1, 1, 0, 0, 1, 1, false),
    // Pointwise over float4s: odd channel counts, planes of 9 and 1 float4s.
    (3, 5, 7, 6, 6, 1, 1, 1, 0, 0, 1, 1, true),
    (2, 9, 3, 2, 2, 1, 1, 1, 0, 0, 1, 1, false),
    (2, 12, 4, 6, 6, 1, 1, 1, 0, 0, 1, 1, false),
    (3, 4, 9, 5, 4, 1, 1, 1, 0, 0, 1, 1, true),
    // ... in `pointwise_block`'s blocks on a CPU adapter: forward 32 and
    // input gradient 48 (16 a block), over 9 float4s a plane (a last block
    // of one).
    (2, 48, 32, 6, 6, 1, 1, 1, 0, 0, 1, 1, true),
    // Dense blocks of 16 channels (`conv2d_rows::DENSE_WIDE`) on a CPU
    // adapter, which need a workgroup a dispatch: a 1×7 both ways, a
    // strided 7×1's input gradient.
    (8, 32, 32, 28, 28, 1, 7, 1, 0, 3, 1, 1, true),
    (16, 32, 32, 28, 28, 7, 1, 2, 3, 0, 1, 1, false),
    // The tap-major weight copies (`conv2d_rows::Spec::weights4`) over
    // many read channels and a partial last block of written ones:
    // forward, input gradient, strided input gradient, float4 pointwise
    // both ways.
    (1, 37, 9, 5, 11, 1, 7, 1, 0, 3, 1, 1, true),
    (1, 9, 40, 5, 11, 7, 1, 1, 3, 0, 1, 1, false),
    (1, 5, 38, 9, 9, 7, 1, 2, 3, 0, 1, 1, false),
    (1, 3, 65, 7, 7, 1, 1, 2, 0, 0, 1, 1, false),
    (1, 70, 5, 4, 6, 1, 1, 1, 0, 0, 1, 1, true),
    (1, 5, 67, 2, 2, 1, 1, 1, 0, 0, 1, 1, false),
    // Rows of whole float4s (`conv2d_rows::Spec::row4`): unpadded (the
    // input gradient's rows are then not whole float4s), a last block of
    // 4 columns, a window wider than the row, dilation 2.
    (1, 3, 5, 6, 8, 3, 3, 1, 0, 0, 1, 1, true),
    (2, 5, 5, 5, 12, 5, 5, 1, 2, 2, 1, 5, false),
    (1, 3, 4, 3, 4, 1, 7, 1, 0, 3, 1, 1, true),
    (1, 2, 2, 9, 8, 7, 7, 1, 3, 3, 1, 2, false),
    (1, 3, 3, 6, 8, 3, 3, 1, 2, 2, 2, 3, true),
    // Rows of whole float2s (`vec` 2: even widths not divisible by 4).
    (2, 5, 5, 9, 10, 7, 7, 1, 3, 3, 1, 5, true),
    (1, 6, 10, 6, 14, 7, 1, 1, 3, 0, 1, 1, false),
    (2, 3, 4, 5, 6, 3, 3, 1, 2, 2, 2, 1, true),
    // Dense 1×1 over rows of scalars in blocks of 32 and 16 channels
    // (`conv2d_rows::pointwise_block`): forward 32 and input gradient 48
    // (16 a block), a stride-2 forward of 64, written 80 (16) read 33.
    (3, 48, 32, 7, 7, 1, 1, 1, 0, 0, 1, 1, true),
    (2, 16, 64, 9, 9, 1, 1, 2, 0, 0, 1, 1, false),
    (1, 33, 80, 5, 3, 1, 1, 1, 0, 0, 1, 1, true),
    // Planes compiled in (`conv2d_rows::Spec::plane`): whole 7×7 and 5×3
    // planes in one block, "same" windows, dilation 2, and a 7×7 window
    // wider than its 5×3 plane.
    (2, 8, 8, 7, 7, 1, 7, 1, 0, 3, 1, 1, true),
    (2, 8, 8, 7, 7, 7, 1, 1, 3, 0, 1, 1, false),
    (2, 6, 6, 7, 7, 5, 5, 1, 4, 4, 2, 6, false),
    (1, 4, 4, 5, 3, 7, 7, 1, 3, 3, 1, 4, true),
    // Weight gradients over whole rows up to 8 wide, and dense 1×k ones
    // in blocks of 16 × 8 channels (`conv2d_rows::ROW_WEIGHT_BLOCK`):
    // 7-wide rows, 11 read channels (a last block of 3), 6-wide rows of
    // float2s, 5-wide rows with a strided depthwise 3×3.
    (2, 32, 32, 7, 7, 1, 7, 1, 0, 3, 1, 1, false),
    (1, 11, 16, 5, 7, 1, 7, 1, 0, 3, 1, 1, true),
    (2, 9, 16, 3, 6, 1, 5, 1, 0, 2, 1, 1, false),
    (2, 5, 5, 9, 9, 3, 3, 2, 1, 1, 1, 5, false),
    // One channel (a pruned layer): depthwise and one group at once.
    (2, 1, 1, 4, 4, 1, 1, 1, 0, 0, 1, 1, true),
    (2, 1, 1, 5, 5, 3, 3, 1, 1, 1, 1, 1, false),
];

pub fn cases(level: Level) -> Vec<Case> {
    let rows = match level {
        Level::Quick => QUICK,
        Level::Full => FULL,
    };
    let mut v: Vec<Case> = rows.iter().map(|&row| case(row)).collect();
    v.push(finish_batch_case(match level {
        Level::Quick => &QUICK[..3],
        Level::Full => &FULL[..12],
    }));
    v.push(copy_batch_case(rows));
    v
}

/// The dense forwards and input gradients of `rows` reading tap-major
/// weight copies that `conv2d::CopyBatch`es wrote ahead (a plan's way):
/// the weights side by side in one buffer, the copies in another, one
/// batch per module (tap count, channel block, flip), and each convolution
/// finding its copy instead of writing one.
fn copy_batch_case(rows: &'static [Row]) -> Case {
    let name = "tap-major copies written ahead in batches".to_string();
    Case::new("conv2d", "conv2d", name, move |c| {
        let g = c.gpu;
        // Parts at aligned offsets past the start (none at 0).
        let align = g.offset_align();
        let shapes: Vec<Conv2dShape> = rows
            .iter()
            .map(|&r| shape(r))
            .filter(|s| conv2d_rows::weight_copy(g, s, Direction::Forward).is_some())
            .collect();
        let (w_at, w_len) = place(shapes.iter().map(|s| s.w_len()), align, align);
        let mut flat = vec![0.0; w_len];
        let mut wts = Vec::new();
        for (k, s) in shapes.iter().enumerate() {
            let w = c.randn(s.w_len());
            flat[w_at[k]..w_at[k] + w.len()].copy_from_slice(&w);
            wts.push(w);
        }
        let wbuf = c.input(&flat)?;
        let wview = |k: usize| wbuf.view_at(w_at[k], shapes[k].w_len());
        let needs: Vec<(usize, conv::CopyNeed)> = (0..shapes.len())
            .flat_map(|k| {
                [Direction::Forward, Direction::InputGradient]
                    .map(|dir| (k, conv2d_rows::weight_copy(g, &shapes[k], dir)))
            })
            .filter_map(|(k, n)| n.map(|n| (k, n)))
            .collect();
        let (c_at, c_len) = conv2d_rows::place_copies(g, needs.iter().map(|(_, n)| n.len), align);
        let cbuf = c.output(c_len)?;
        let mut batches: Vec<conv::CopyBatch> = Vec::new();
        let mut copies = conv::WeightCopies::default();
        for (j, (k, need)) in needs.iter().enumerate() {
            let (w, copy) = (wview(*k), cbuf.view_at(c_at[j], need.len));
            conv::CopyBatch::join(&mut batches, need, &w, &copy);
            copies.insert(*k, need.layout.clone(), copy);
        }
        let mut ks = batches
            .into_iter()
            .map(|b| b.kernel(g))
            .collect::<Result<Vec<_>, _>>()?;
        let mut io = Vec::new();
        for (k, s) in shapes.iter().enumerate() {
            let (x, dy) = (c.randn(s.x_len()), c.randn(s.y_len()));
            let (xb, dyb) = (c.input(&x)?, c.input(&dy)?);
            let (yb, dxb) = (c.output(s.y_len())?, c.output(s.x_len())?);
            let shared = Some((&mut copies, k));
            let fwd = conv::forward_shared(g, s, &xb, &wview(k), None, &yb, shared, false)?;
            let shared = Some((&mut copies, k));
            let back = conv::backward_input_shared(g, s, &wview(k), &dyb, &dxb, shared)?;
            // Each reads its copy: no kernel of its own writes one.
            assert_eq!(
                (fwd.len(), back.len()),
                (1, 1),
                "conv2d {s}: a copy of its own"
            );
            ks.extend(fwd.into_iter().chain(back));
            io.push((x, dy, yb, dxb, xb, dyb));
        }
        c.run(&ks)?;
        for (k, s) in shapes.iter().enumerate() {
            let (x, dy, yb, dxb, ..) = &io[k];
            let y = cpu::forward(s, x, &wts[k], None);
            c.check(&format!("forward {s}"), &y, yb, FORWARD)?;
            let dx = cpu::backward_input(s, &wts[k], dy);
            c.check(&format!("backward_input {s}"), &dx, dxb, GRADIENT)?;
        }
        Ok(())
    })
}

fn shape(row: Row) -> Conv2dShape {
    let (n, c_in, c_out, h, w, kh, kw, stride, pad_h, pad_w, dilation, groups, _) = row;
    Conv2dShape {
        n,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        stride,
        pad_h,
        pad_w,
        dilation,
        groups,
    }
}

/// The weight gradients of several convolutions with their pass 2s as one
/// dispatch (`conv2d::FinishBatch`, the plans' way on CPU adapters): the
/// gradients side by side in one buffer, the partials in another, each
/// part at an aligned offset past the start, weights counts that leave a
/// workgroup's row part empty.
fn finish_batch_case(rows: &'static [Row]) -> Case {
    let name = format!("{} weight gradients, one pass 2", rows.len());
    Case::new("conv2d", "conv2d", name, move |c| {
        let g = c.gpu;
        let align = g.offset_align();
        let shapes: Vec<Conv2dShape> = rows.iter().map(|&r| shape(r)).collect();
        let (dw_at, dw_len) = place(shapes.iter().map(|s| s.w_len()), align, align);
        let plens: Vec<usize> = shapes
            .iter()
            .map(|s| conv::weight_partial_len(g, s))
            .collect();
        let (p_at, p_len) = place(plens.iter().copied(), align, align);
        let (dws, partials) = (c.output(dw_len)?, c.output(p_len)?);
        let mut batch = conv::FinishBatch::new(&dws, &partials);
        let (mut ks, mut want) = (Vec::new(), Vec::new());
        let mut keep = Vec::new();
        for (k, s) in shapes.iter().enumerate() {
            let (x, dy) = (c.randn(s.x_len()), c.randn(s.y_len()));
            let (xb, dyb) = (c.input(&x)?, c.input(&dy)?);
            let (dw, partial) = (
                dws.view_at(dw_at[k], s.w_len()),
                partials.view_at(p_at[k], plens[k]),
            );
            ks.push(conv::backward_weight_partials(g, s, &xb, &dyb, &partial)?);
            batch.push(g, s, &partial, &dw);
            want.push((cpu::backward_weight(s, &x, &dy), dw));
            keep.push((xb, dyb));
        }
        ks.push(batch.kernel(g)?);
        c.run(&ks)?;
        for (k, (w, dw)) in want.iter().enumerate() {
            c.check(&format!("backward_weight {}", shapes[k]), w, dw, GRADIENT)?;
        }
        Ok(())
    })
}

fn case(row: Row) -> Case {
    let has_bias = row.12;
    let s = shape(row);
    let name = format!("{s}{}", if has_bias { " bias" } else { "" });
    Case::new("conv2d", "conv2d", name, move |c| {
        let x = c.randn(s.x_len());
        let wt = c.randn(s.w_len());
        let bias = c.randn(s.c_out);
        let dy = c.randn(s.y_len());
        let bias = has_bias.then_some(&bias[..]);
        // NaN past the weights, as far as a uniform binding reaches
        // (`Gpu::uniform_weights`; a plan's parameters have such room): a
        // kernel that reads past them writes NaN.
        let mut room = wt.clone();
        room.resize(wt.len().max(conv2d_rows::UNIFORM_FLOATS), f32::NAN);
        let wb = c.input(&room)?.view(wt.len());
        let (xb, dyb) = (c.input(&x)?, c.input(&dy)?);
        let bb = bias.map(|b| c.input(b)).transpose()?;
        let (yb, dxb) = (c.output(s.y_len())?, c.output(s.x_len())?);
        let (dwb, dbb) = (c.output(s.w_len())?, c.output(s.c_out)?);
        let g = c.gpu;
        let mut ks = conv::forward(g, &s, &xb, &wb, bb.as_ref(), &yb)?;
        ks.extend(conv::backward_input(g, &s, &wb, &dyb, &dxb)?);
        ks.push(conv::backward_bias(g, &s, &dyb, &dbb)?);
        ks.extend(conv::backward_weight(g, &s, &xb, &dyb, &dwb)?);
        // The forward with a ReLU fused into its reads, where the
        // generated kernels take the shape (`graph::fuse_relu_reads`).
        let fused = conv2d_rows::fits_forward(&s);
        let yrb = c.output(s.y_len())?;
        if fused {
            ks.extend(conv::forward_shared(
                g,
                &s,
                &xb,
                &wb,
                bb.as_ref(),
                &yrb,
                None,
                true,
            )?);
        }
        c.run(&ks)?;
        c.check("forward", &cpu::forward(&s, &x, &wt, bias), &yb, FORWARD)?;
        if fused {
            let xr = crate::ops::elementwise::cpu::relu_forward(&x);
            c.check(
                "forward_relu",
                &cpu::forward(&s, &xr, &wt, bias),
                &yrb,
                FORWARD,
            )?;
        }
        let dx = cpu::backward_input(&s, &wt, &dy);
        c.check("backward_input", &dx, &dxb, GRADIENT)?;
        let dw = cpu::backward_weight(&s, &x, &dy);
        c.check("backward_weight", &dw, &dwb, GRADIENT)?;
        c.check(
            "backward_bias",
            &cpu::backward_bias(&s, &dy),
            &dbb,
            GRADIENT,
        )
    })
}
