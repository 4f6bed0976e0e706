//! Stride-1 convolutions as generated straight-line kernels (why: see
//! `shaders/conv2d_rows.wgsl`): depthwise and dense (one group), forward,
//! input gradient and pass 1 of the weight gradient. `conv2d` routes the
//! shapes that fit here and keeps its general kernels for the rest; the CPU
//! twin is `conv2d::cpu`.

use std::collections::HashMap;
use std::fmt::Write;

use super::conv2d::Conv2dShape;
use crate::engine::{
    grid_1d, shaders, span_rows, workgroup_for, Buf, Gpu, GpuError, Kernel, UNIFORM_WEIGHT_BYTES,
};

const TEMPLATE: &str = include_str!("../../shaders/conv2d_rows.wgsl");

/// Output columns per invocation (both kinds), unless `Spec::cols` takes
/// whole rows.
const COLS: usize = 8;
/// The widest row a kernel on a CPU adapter takes as one block of columns
/// (`row_cols`, and the weight gradients in row groups).
const WHOLE_ROW: usize = 28;
/// Output rows per invocation of a depthwise kernel (its window rows are
/// shared between them) unless `block_rows` chooses more.
const DW_ROWS: usize = 2;
/// Output channels per invocation of the dense kernel (each input value
/// loaded feeds all of them): 8, or 4 where that computes fewer channels
/// past the last (`channel_block`); a 1×1 over rows of scalars on a CPU
/// adapter takes up to 32 (`pointwise_block`).
const DENSE_CHANNELS: usize = 8;

/// Channels per invocation of a dense forward or input gradient on a CPU
/// adapter where they divide the written channels and the dispatch keeps
/// `WIDE_MIN_WORKGROUPS` workgroups: each input row loaded feeds twice the
/// products. Measured in the step's profile: bench-medium's 1×7 and 7×1
/// (16–64 channels) 0.81–0.99 of the 8-channel kernels' time, 0.93 in
/// all; on bench-small's 7×7 planes, where 16 channels leave one
/// workgroup, 1.9× (BENCHMARKS.md, "Twenty-seventh pass").
const DENSE_WIDE: usize = 16;

/// The fewest workgroups (of `ROWS_WG`) a dispatch keeps when its blocks
/// are widened: one, which the launch splits over the cores
/// (`engine::balanced_workgroup`). Before that split a one-workgroup
/// dispatch left a core idle (1.9× slower, stop 44, which kept 4); with
/// it and each output's terms in a row, 16 channels on bench-small's 7×7
/// and 14×14 planes measured 5–7% faster (BENCHMARKS.md, "Twenty-ninth
/// pass").
const WIDE_MIN_WORKGROUPS: usize = 1;

/// Invocations per workgroup. These are small dispatches (a weight
/// gradient's pass 1 has ~100–800 invocations): CPU adapters run each
/// workgroup on one thread, so 256-wide groups left one of two cores idle
/// in most weight gradients. 64 keeps a GPU's waves full; the weight
/// gradients' pass 1 (the smallest) take 16 (measured in BENCHMARKS.md,
/// "Sixth pass"). No kernel here uses workgroup memory.
const ROWS_WG: u32 = 64;
const WEIGHT_WG: u32 = 16;
/// Output rows per group of a depthwise weight gradient on a CPU adapter
/// (`Spec::col_blocks`): measured on lavapipe over 2, 4, 7 and 8 (BENCHMARKS.md,
/// "Ninth pass"), 4 about as fast as 7 or 8 on 7×7 taps and faster on 3×3.
/// Stride 2 takes it only for 7×7 (2.87 → 1.3–1.7 ms; 3×3 and 5×5 no
/// faster).
const WEIGHT_GROUP_ROWS: usize = 4;
/// Input channels per invocation of a dense k×1 weight gradient in row
/// groups (`weight_rows_entry`) and of a dense 1×k one, on CPU adapters:
/// an invocation loads 8 output channels' dy per row, which then feed this
/// many channels. Measured on lavapipe (BENCHMARKS.md, "Twelfth pass"),
/// 7×1 on [32,16,14,14]: 2.1 ms at 1, 1.4–1.7 at 2, 1.2 at 4, 1.4 at 8.
const COLUMN_IC: usize = 4;
/// Written × read channels per invocation of a dense 1×k weight gradient
/// on a CPU adapter (`weight_entry`), where the written ones divide by 16:
/// each row's window of x and row of dy, loaded lane by lane, then feed
/// 16 · 8 · k products a column instead of 8 · 4 · k. Its accumulators
/// (896 for a 1×7) go to the stack and back once a row. Measured on
/// lavapipe, the 1×7 weight gradients' share of bench-small's step
/// profile 0.79–0.83 of the 8 × 4 blocks' (BENCHMARKS.md, "Thirtieth
/// pass").
const ROW_WEIGHT_BLOCK: (usize, usize) = (16, 8);
/// Largest tap span (k − 1) · dilation: 7 taps at dilation 2.
const MAX_SPAN: usize = 12;

/// One generated kernel: its kind and tap shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub depthwise: bool,
    pub kh: usize,
    pub kw: usize,
    pub dilation: usize,
    pub dir: Direction,
    /// A pointwise (1×1, unpadded, dense) convolution whose planes divide by
    /// 4: positions are read flat, 4 per float4 load.
    pub flat4: bool,
    /// Written (output) channels per invocation (1 for depthwise), and read
    /// (input) channels per invocation of a dense 1×1 weight gradient.
    pub oc: usize,
    pub ic: usize,
    /// 1 or 2.
    pub stride: usize,
    /// The input gradient of a strided convolution: its padding (h, w),
    /// which decides the taps each residue class of columns takes, so it is
    /// compiled in; with `vec` > 1, (0, the column padding); (0, 0)
    /// elsewhere.
    pub pad: (usize, usize),
    /// Rows of the tensor read are whole vectors of `vec` floats, 4 or 2
    /// (width divisible by it, stride 1; the weight gradient's dy too): the
    /// row windows are read `vec` columns per load, with the column padding
    /// compiled in (`pad.1`); 1 elsewhere. On lavapipe a vector load costs
    /// about what a scalar one does, and the 14-wide rows of a reduced
    /// 28×28 input are whole float2s.
    pub vec: usize,
    /// Output rows per invocation of a depthwise kernel or a dense k×1 or
    /// 1×k one (forward and stride-1 input gradient: `block_rows`, for 1×k
    /// `dense_row_rows`, on CPU adapters); 1 elsewhere.
    pub rows: usize,
    /// Float4s of positions per invocation of the float4 pointwise forward
    /// and input gradient: 4 on CPU adapters (each weight loaded feeds 16
    /// positions; measured 1.2–1.3× over 2 on lavapipe, 8 no faster), 2 on
    /// GPUs (more, shorter invocations); 1 elsewhere.
    pub quads: usize,
    /// Column blocks (`cols` wide: COLS, or one block of a row up to 28
    /// wide) written out per row in a depthwise or dense k×1 weight
    /// gradient that takes `rows` output rows at a time
    /// (`weight_rows_entry`, CPU adapters); 0 elsewhere.
    pub col_blocks: usize,
    /// A forward that reads max(x, 0): the ReLU before the convolution
    /// applied as x is loaded (`graph::fuse_relu_reads`), so the ReLU's
    /// own pass over x and its dispatch go.
    pub relu: bool,
    /// Rows of the tensor written are whole vectors of `store` floats, 4
    /// or 2: the depthwise and dense forwards and stride-1 input gradients
    /// store their `cols` columns `store` at a time; 1 elsewhere. On lavapipe
    /// every store is a per-lane loop, a float4 costing about 1.8 scalar
    /// ones (BENCHMARKS.md, "Fifteenth pass").
    pub store: usize,
    /// The planes compiled in as constants, [h, w, oh, ow, pad_h, pad_w]
    /// of the kernel's parameters, where its whole written plane is one
    /// block (the 7×7 planes of a 28×28 input's last cells, in blocks of 7
    /// rows) on a CPU adapter (`plane_of`). With the block's first row and
    /// column 0, every bound check of the window is a constant, and the
    /// compiler drops the loads of the padding (on a 7×7 plane a 7×7
    /// window's 182 loads become 49); elsewhere None.
    pub plane: Option<[usize; 6]>,
    /// A forward or input gradient that reads its weights through a
    /// uniform binding of `UNIFORM_WEIGHT_BYTES` (`wu`) instead of storage
    /// (`Gpu::uniform_weights`): a dense kernel its tap-major copy, where
    /// the copy fits; a depthwise or float4 pointwise one the weights
    /// themselves, where the binding fits their buffer (`spans_uniform`).
    /// Mesa 22.3's llvmpipe reads a uniform at a varying offset with one
    /// gather, a storage value with a loop over the lanes that branches on
    /// each lane's mask and bounds: measured 2.4–2.8× the floats a second
    /// (BENCHMARKS.md, "Twenty-third pass").
    pub uniform: bool,
    /// Output columns per invocation of a depthwise or dense forward or
    /// stride-1 input gradient (`depthwise_entry`, `dense_entry`), and per
    /// column block of a weight gradient in row groups: on a CPU adapter
    /// the written row's width where `row_cols` takes it (the weight
    /// gradient's up to 28 wide); COLS elsewhere.
    pub cols: usize,
    /// Read channels per pass of the loop over them in a dense 1×1
    /// forward or input gradient (`dense_entry`, `pointwise4_entry`): 2 on
    /// CPU adapters, where each output's two terms then come in a row and
    /// its accumulator, spilled, goes to the stack and back once for both
    /// (the same terms in the same order); 1 elsewhere.
    pub unroll: usize,
    /// Windows of rows of scalars (odd widths, or strided reads) loaded
    /// as float pairs (`window_loads_at`): on a CPU adapter, where the
    /// tensor read holds an even number of floats (so that every pair
    /// holding one of its floats lies inside it). llvmpipe moves a pair
    /// (a 64-bit word, `engine::words64`) lane by lane as it does a float,
    /// so a 7-wide row takes 4 loads, not 7. Measured on lavapipe, as
    /// shares of bench-small's step profile: the weight gradients 0.68–0.95
    /// of their time, the forwards and input gradients unchanged
    /// (BENCHMARKS.md, "Thirtieth pass").
    pub pairs: bool,
    /// Invocations per workgroup where a CPU adapter's dispatch splits
    /// more evenly over its cores in smaller ones
    /// (`engine::balanced_workgroup`, chosen at launch); 0: the kernel's
    /// default (`ROWS_WG`, `WEIGHT_WG`).
    pub wg: u32,
}

impl Spec {
    /// The kernel of `s` in direction `dir`; `wide` as `Gpu::wide`.
    fn of(s: &Conv2dShape, dir: Direction, wide: bool) -> Spec {
        // The input gradient writes the convolution's input channels.
        let written = if dir == Direction::InputGradient {
            s.c_in
        } else {
            s.c_out
        };
        // The plane read: x's, or dy's for the input gradient, which the
        // flipped kernel reads with the padding (k − 1) · d − pad.
        let (read_w, pad_w) = if dir == Direction::InputGradient {
            (s.ow(), ((s.kw - 1) * s.dilation).saturating_sub(s.pad_w))
        } else {
            (s.w, s.pad_w)
        };
        // The weight gradient also reads dy's rows.
        let whole = |v: usize| {
            s.stride == 1
                && !flat4(s)
                && read_w.is_multiple_of(v)
                && (dir != Direction::WeightGradient || s.ow().is_multiple_of(v))
        };
        let vec = [4, 2].into_iter().find(|&v| whole(v)).unwrap_or(1);
        // The floats of x and dy, and of the tensor whose row windows the
        // kernel loads.
        let (x_len, dy_len) = (s.n * s.c_in * s.h * s.w, s.n * s.c_out * s.oh() * s.ow());
        let read_len = match dir {
            Direction::InputGradient => dy_len,
            _ => x_len,
        };
        // Rows per invocation: the depthwise kernels and the dense column
        // kernels (k×1) share input rows between output rows, the dense
        // row kernels (1×k) their weights. Not dense k×k ones: their code
        // grows as rows × k² × 64 FMAs per channel, and a 3×3 gained little
        // (4.5–5.2 → 4.2–4.4 ms at 2 rows).
        let span = (s.kh - 1) * s.dilation;
        let (written_h, read_stride) = match dir {
            Direction::Forward => (s.oh(), s.stride),
            _ => (s.h, 1),
        };
        // The directions the row-block entries (`depthwise_entry`,
        // `dense_entry`) take: forwards and stride-1 input gradients.
        let row_entries = match dir {
            Direction::Forward => true,
            Direction::InputGradient => s.stride == 1,
            Direction::WeightGradient => false,
        };
        // Dense 1×k kernels share no input rows between output rows, but
        // each row of taps loaded per input channel feeds them all
        // (`dense_row_rows`).
        let dense_row = !s.is_depthwise() && s.kh == 1 && s.kw > 1;
        let blocked = row_entries && (s.is_depthwise() || (s.kh > 1 && s.kw == 1) || dense_row);
        let strided_dx = dir == Direction::InputGradient && s.stride > 1;
        let rows = match (blocked, wide) {
            // Blocks of every residue (`strided_dx_block_entry`): depthwise
            // and dense k×1 or 1×1 (a dense k×k block's code would grow as
            // channels × taps × rows × columns).
            (false, false) if strided_dx && (s.is_depthwise() || s.kw == 1) => strided_dx_rows(s),
            (false, _) => 1,
            // A GPU wants many short invocations, not few long ones.
            (true, true) if s.is_depthwise() => DW_ROWS,
            (true, true) => 1,
            (true, false) if dense_row => dense_row_rows(written_h),
            (true, false) => block_rows(span, read_stride, written_h),
        };
        // A depthwise or dense k×1 weight gradient over rows that fit 4
        // column blocks shares its input rows between `rows` output rows.
        // (A dense one only over 2: with COLUMN_IC channels of 4 column
        // blocks, 28 wide, its window outgrew the gain.)
        let blocks = if s.is_depthwise() { 4 } else { 2 };
        let column = s.is_depthwise() || (s.kw == 1 && s.kh > 1);
        // Rows up to WHOLE_ROW wide in one block of the whole row.
        let (rows, col_blocks, weight_cols) = match (dir, column, wide) {
            (Direction::WeightGradient, true, false)
                if s.ow() <= blocks * COLS && (s.stride == 1 || span >= 6) =>
            {
                match s.ow() <= WHOLE_ROW {
                    true => (WEIGHT_GROUP_ROWS, 1, s.ow()),
                    false => (WEIGHT_GROUP_ROWS, s.ow().div_ceil(COLS), COLS),
                }
            }
            // A weight gradient over rows up to COLS wide (the 7-wide
            // planes) takes the whole row, not a block of 8 with a column
            // past its end: 0.89 of the 1×1s' share on bench-small's 7×7
            // planes ("Thirtieth pass").
            (Direction::WeightGradient, _, false) if !flat4(s) && s.ow() <= COLS => {
                (rows, 0, s.ow())
            }
            _ => (rows, 0, COLS),
        };
        // The written plane's width: the output's, or x's for the input
        // gradient. Only the row-block entries (not the float4 pointwise
        // ones) store vectors.
        let written_w = if dir == Direction::InputGradient {
            s.w
        } else {
            s.ow()
        };
        let store = [4, 2]
            .into_iter()
            .find(|&v| row_entries && !flat4(s) && written_w.is_multiple_of(v))
            .unwrap_or(1);
        // A dense 1×1 over rows of scalars on a CPU adapter (the 7-wide
        // planes: the float4 pointwise kernels do not fit) writes wider
        // channel blocks (`pointwise_block`), and its weight gradient
        // takes wider blocks of both.
        let scalar_1x1 = !wide && !s.is_depthwise() && s.kh == 1 && s.kw == 1 && !flat4(s);
        let pointwise_rows = scalar_1x1 && row_entries;
        let pointwise_weight = scalar_1x1 && dir == Direction::WeightGradient;
        // The float4 pointwise forward and input gradient on a CPU adapter
        // take the same wider blocks.
        let pointwise4_rows = !wide && flat4(s) && dir != Direction::WeightGradient;
        // A dense 1×k weight gradient on a CPU adapter over channels that
        // take ROW_WEIGHT_BLOCK.
        let row_weight = !wide
            && dense_row
            && dir == Direction::WeightGradient
            && written.is_multiple_of(ROW_WEIGHT_BLOCK.0);
        let quads = match (flat4(s) && dir != Direction::WeightGradient, wide) {
            (false, _) => 1,
            (true, true) => 2,
            (true, false) => 4,
        };
        let spec = Spec {
            rows,
            quads,
            col_blocks,
            relu: false,
            store,
            plane: None,
            uniform: false,
            wg: 0,
            unroll: match !wide && !s.is_depthwise() && s.kh * s.kw == 1 && row_entries {
                true => 2,
                false => 1,
            },
            pairs: !wide
                && !strided_dx
                && vec == 1
                && !flat4(s)
                && read_len.is_multiple_of(2)
                && (dir != Direction::WeightGradient || dy_len.is_multiple_of(2)),
            cols: weight_cols,
            depthwise: s.is_depthwise(),
            kh: s.kh,
            kw: s.kw,
            dilation: s.dilation,
            dir,
            flat4: flat4(s),
            vec,
            oc: if s.is_depthwise() {
                1
            } else if pointwise_rows {
                pointwise_block(written)
            } else if pointwise_weight {
                pointwise_block(written).min(16)
            } else if pointwise4_rows {
                pointwise_block(written)
            } else if row_weight {
                ROW_WEIGHT_BLOCK.0
            } else {
                channel_block(written)
            },
            // A dense k×1 weight gradient in row groups, and a dense 1×k
            // one, read COLUMN_IC input channels per invocation on a CPU
            // adapter (each dy value loaded feeds them all); a GPU keeps
            // more, shorter invocations (one input channel each).
            ic: match (s.is_depthwise(), dir, wide) {
                _ if pointwise_weight => pointwise_block(s.c_in).min(16),
                (false, Direction::WeightGradient, _) if s.kh * s.kw == 1 => channel_block(s.c_in),
                _ if row_weight => ROW_WEIGHT_BLOCK.1.min(s.c_in),
                (false, Direction::WeightGradient, false) if col_blocks > 0 || s.kh == 1 => {
                    COLUMN_IC.min(s.c_in)
                }
                (false, Direction::WeightGradient, _) => 1,
                _ => channel_block(s.c_in),
            },
            stride: s.stride,
            pad: if dir == Direction::InputGradient && s.stride > 1 {
                (s.pad_h, s.pad_w)
            } else if vec > 1 {
                (0, pad_w)
            } else {
                (0, 0)
            },
        };
        // A depthwise or dense forward or stride-1 input gradient on a CPU
        // adapter writes whole rows where `row_cols` takes them.
        let spec = if !wide && row_entries && !spec.flat4 {
            Spec {
                cols: row_cols(written_w, spec.rows),
                ..spec
            }
        } else {
            spec
        };
        // A dense forward or input gradient on a CPU adapter (whose block
        // is `channel_block`'s 4 or 8) writes DENSE_WIDE channels per
        // invocation where they divide the written ones and the dispatch
        // keeps WIDE_MIN_WORKGROUPS workgroups.
        let dense = !wide
            && !spec.depthwise
            && !spec.flat4
            && !pointwise_rows
            && dir != Direction::WeightGradient;
        let widened = Spec {
            oc: DENSE_WIDE,
            ..spec
        };
        if dense
            && written.is_multiple_of(DENSE_WIDE)
            && widened.invocations(s) >= WIDE_MIN_WORKGROUPS * ROWS_WG as usize
        {
            return widened;
        }
        spec
    }

    /// The invocations this forward or input-gradient kernel of `s` runs.
    fn invocations(&self, s: &Conv2dShape) -> usize {
        let (_, (co, oh, ow), _, _) = geometry(s, self.dir);
        let flip = self.dir == Direction::InputGradient;
        if self.flat4 {
            s.n * co.div_ceil(self.oc) * (oh * ow / 4).div_ceil(self.quads)
        } else if flip && s.stride > 1 && self.rows > 1 {
            s.n * co.div_ceil(self.oc) * oh.div_ceil(self.rows) * ow.div_ceil(s.stride * COLS)
        } else if flip && s.stride > 1 {
            s.n * co.div_ceil(self.oc) * oh * s.stride * ow.div_ceil(s.stride).div_ceil(COLS)
        } else {
            // Depthwise kernels take one channel (oc = 1).
            s.n * co.div_ceil(self.oc) * oh.div_ceil(self.rows) * ow.div_ceil(self.cols)
        }
    }

    /// Invocations per workgroup of this kernel (see `ROWS_WG`).
    fn workgroup(&self) -> u32 {
        if self.wg > 0 {
            self.wg
        } else if self.dir == Direction::WeightGradient {
            WEIGHT_WG
        } else {
            ROWS_WG
        }
    }

    /// This kernel built (and compiled on first use) over `invocations`,
    /// on a CPU adapter in the workgroups that split them most evenly over
    /// its cores.
    fn launch(
        &self,
        gpu: &Gpu,
        params: &[u32],
        slots: &[(u32, &Buf)],
        invocations: usize,
    ) -> Result<Kernel, GpuError> {
        let mut spec = *self;
        let ws = workgroup_for(gpu, invocations, spec.workgroup());
        if ws != spec.workgroup() {
            spec.wg = ws;
        }
        gpu.kernel_generated(
            &spec.name(),
            &|| Ok(spec.source()),
            "conv_rows",
            params,
            slots,
            grid_1d(invocations, spec.workgroup()),
        )
    }

    /// What the kernel binds as its weights `w` (or their copy): the
    /// uniform binding's fixed span from their start (`uniform`), else
    /// the weights themselves.
    fn weights_binding(&self, w: &Buf) -> Buf {
        if self.uniform {
            w.span(UNIFORM_FLOATS)
        } else {
            w.clone()
        }
    }

    /// The module's name, which is also its cache key.
    pub fn name(&self) -> String {
        let blocks = match (self.depthwise, self.dir) {
            (true, _) => String::new(),
            (false, Direction::WeightGradient) if self.ic > 1 => {
                format!(".c{}x{}", self.oc, self.ic)
            }
            (false, _) => format!(".c{}", self.oc),
        };
        let stride = match (self.stride, self.pad) {
            (1, (_, pw)) if self.vec > 1 => format!(".r{}p{pw}", self.vec),
            (1, _) => String::new(),
            (s, (0, 0)) if self.dir != Direction::InputGradient => format!(".s{s}"),
            (s, (ph, pw)) => format!(".s{s}p{ph}x{pw}"),
        };
        let rows = if self.col_blocks > 0 {
            format!(".h{}w{}", self.rows, self.col_blocks)
        } else if self.rows > 1 {
            format!(".h{}", self.rows)
        } else if self.quads > 1 {
            format!(".q{}", self.quads)
        } else {
            String::new()
        };
        let relu = if self.relu { ".relu" } else { "" };
        let store = if self.store > 1 {
            format!(".o{}", self.store)
        } else {
            String::new()
        };
        let plane = match self.plane {
            Some([h, w, oh, ow, ph, pw]) => format!(".f{h}x{w}o{oh}x{ow}p{ph}x{pw}"),
            None => String::new(),
        };
        let uniform = if self.uniform { ".uw" } else { "" };
        let unroll = if self.unroll > 1 {
            format!(".u{}", self.unroll)
        } else {
            String::new()
        };
        let pairs = if self.pairs { ".pr" } else { "" };
        let wg = if self.wg > 0 {
            format!(".g{}", self.wg)
        } else {
            String::new()
        };
        let cols = if self.cols != COLS {
            format!(".x{}", self.cols)
        } else {
            String::new()
        };
        format!(
            "conv2d_rows.{}.{}x{}.d{}{stride}.{}{blocks}{rows}{cols}{store}{relu}{plane}{uniform}{unroll}{pairs}{wg}",
            match (self.depthwise, self.flat4) {
                (true, _) => "dw",
                (false, false) => "dense",
                (false, true) => "pointwise4",
            },
            self.kh,
            self.kw,
            self.dilation,
            match self.dir {
                Direction::Forward => "y",
                Direction::InputGradient => "dx",
                Direction::WeightGradient => "dw",
            }
        )
    }

    /// The full WGSL of this specialisation: common header, template, and
    /// the generated `conv_rows` entry.
    pub fn source(&self) -> String {
        let body = match (self.dir, self.depthwise) {
            _ if self.flat4 => self.pointwise4_entry(),
            (Direction::WeightGradient, _) if self.col_blocks > 0 => self.weight_rows_entry(),
            (Direction::WeightGradient, _) => self.weight_entry(),
            (Direction::InputGradient, _) if self.stride > 1 && self.rows > 1 => {
                self.strided_dx_block_entry()
            }
            (Direction::InputGradient, _) if self.stride > 1 => self.strided_dx_entry(),
            (_, true) => self.depthwise_entry(),
            (_, false) => self.dense_entry(),
        };
        let body = match (self.uniform, self.weights4()) {
            (false, _) => body,
            // The generated entry reads the copy only as `wt4[…]`, the
            // weights themselves only as `wt[…]`.
            (true, true) => format!("{UNIFORM_DECL}{}", body.replace("wt4[", "wu[")),
            (true, false) => format!(
                "{UNIFORM_DECL}{UNIFORM_AT}{}",
                shaders::index_as_call(&body, "wt", "wu_at")
            ),
        };
        let source = module(&body, self.relu);
        match self.plane {
            Some(plane) => compile_plane(&source, plane),
            None => source,
        }
    }

    /// Weight offset of tap (ky, kx) within one (o, i) kernel.
    fn tap(&self, ky: usize, kx: usize) -> usize {
        let t = ky * self.kw + kx;
        if self.dir == Direction::InputGradient {
            self.kh * self.kw - 1 - t
        } else {
            t
        }
    }

    /// The input column offsets (from the block's first) that one row of
    /// output columns reads: j·stride + kx·dilation, each once, in order.
    fn window(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.cols)
            .flat_map(|j| (0..self.kw).map(move |kx| self.col(j, kx)))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The input column offset output column j reads through tap kx.
    fn col(&self, j: usize, kx: usize) -> usize {
        j * self.stride + kx * self.dilation
    }

    /// `{x}{j}` for the window's columns `win` (offsets from ix0) of
    /// the row starting at `row` (`row_in`: whether it lies inside the
    /// plane): one load per column, or one vector load per `vec` columns
    /// (columns ox0 − pad + j; the vector from ox0 + vec·a is `{x}v{a}`,
    /// a < 0 as `{x}vm{-a}`).
    fn window_loads(
        &self,
        w: &mut String,
        indent: &str,
        x: &str,
        row: &str,
        row_in: &str,
        win: &[usize],
    ) {
        self.window_loads_at(w, indent, x, (row, row_in), win, ("ix0", "ox0"));
    }

    /// `window_loads` from the columns named in the last argument: the
    /// window's first (an i32) and the block's first output column (a u32).
    fn window_loads_at(
        &self,
        w: &mut String,
        indent: &str,
        x: &str,
        (row, row_in): (&str, &str),
        win: &[usize],
        (ix0, ox0): (&str, &str),
    ) {
        if self.vec == 1 && self.pairs {
            // Columns outside the row read as 0, whatever their pair held.
            let (lo, len) = (win[0], win[win.len() - 1] - win[0] + 1);
            let at = pair_loads(
                w,
                indent,
                x,
                &format!("i32({row}) + {ix0} + {lo}"),
                len,
                "x_pair",
            );
            for &j in win {
                let _ = writeln!(
                    w,
                    "{indent}let {x}{j} = x_col({}, {row_in}, {ix0} + {j});",
                    at(j - lo)
                );
            }
            return;
        }
        if self.vec == 1 {
            for &j in win {
                let _ = writeln!(
                    w,
                    "{indent}let {x}{j} = x_in({row}, {row_in}, {ix0} + {j});"
                );
            }
            return;
        }
        let (pw, v) = (self.pad.1 as i64, self.vec as i64);
        let quad = |j: usize| (j as i64 - pw).div_euclid(v);
        let name = |a: i64| {
            if a < 0 {
                format!("{x}vm{}", -a)
            } else {
                format!("{x}v{a}")
            }
        };
        let mut quads: Vec<i64> = win.iter().map(|&j| quad(j)).collect();
        quads.dedup();
        for &a in &quads {
            let _ = writeln!(
                w,
                "{indent}let {} = x_in{v}({row}, {row_in}, i32({ox0}) + {});",
                name(a),
                v * a
            );
        }
        for &j in win {
            let c = ["x", "y", "z", "w"][(j as i64 - pw).rem_euclid(v) as usize];
            let _ = writeln!(w, "{indent}let {x}{j} = {}.{c};", name(quad(j)));
        }
    }

    fn depthwise_entry(&self) -> String {
        let (d, st, win) = (self.dilation, self.stride, self.window());
        let (rows, cols) = (self.rows, self.cols);
        let mut s = String::new();
        let w = &mut s;
        open_entry(w, self.workgroup());
        let _ = writeln!(w, "    let xblocks = (p.ow + {}u) / {cols}u;", cols - 1);
        let _ = writeln!(w, "    let yblocks = (p.oh + {}u) / {rows}u;", rows - 1);
        let _ = writeln!(
            w,
            "    if idx >= p.n * p.c_out * yblocks * xblocks {{ return; }}"
        );
        let _ = writeln!(w, "    let ox0 = (idx % xblocks) * {cols}u;");
        let _ = writeln!(w, "    let t = idx / xblocks;");
        let _ = writeln!(w, "    let oy0 = (t % yblocks) * {rows}u;");
        let _ = writeln!(w, "    let bc = t / yblocks;");
        let _ = writeln!(w, "    let c = bc % p.c_out;");
        let _ = writeln!(w, "    let wb = c * p.w_o;");
        for ky in 0..self.kh {
            for kx in 0..self.kw {
                let _ = writeln!(w, "    let w{ky}_{kx} = wt[wb + {}u];", self.tap(ky, kx));
            }
        }
        let _ = writeln!(w, "    let b0 = select(0.0, bias[c], p.has_bias == 1u);");
        for o in 0..rows {
            for j in 0..cols {
                let _ = writeln!(w, "    var a{o}_{j} = b0;");
            }
        }
        let _ = writeln!(w, "    let ix0 = i32(ox0 * {st}u) - i32(p.pad_w);");
        let _ = writeln!(w, "    let iy0 = i32(oy0 * {st}u) - i32(p.pad_h);");
        // Input row r feeds output row o through tap ky = (r − o·s) / d.
        for r in 0..(rows - 1) * st + (self.kh - 1) * d + 1 {
            let _ = writeln!(w, "    {{");
            let _ = writeln!(w, "        let iy = iy0 + {r};");
            let _ = writeln!(w, "        let row_in = iy >= 0 && iy < i32(p.h);");
            let _ = writeln!(
                w,
                "        let row = (bc * p.h + u32(clamp(iy, 0, i32(p.h) - 1))) * p.w;"
            );
            self.window_loads(w, "        ", "x", "row", "row_in", &win);
            for o in 0..rows {
                if r < o * st || (r - o * st) % d != 0 || (r - o * st) / d >= self.kh {
                    continue;
                }
                let ky = (r - o * st) / d;
                // Each output's taps of this row in a row (its terms in the
                // same order as tap column outermost): its accumulator
                // stays in a register across them rather than going to the
                // stack and back once per tap.
                for j in 0..cols {
                    for kx in 0..self.kw {
                        let _ = writeln!(
                            w,
                            "        a{o}_{j} = fma(w{ky}_{kx}, x{}, a{o}_{j});",
                            self.col(j, kx)
                        );
                    }
                }
            }
            let _ = writeln!(w, "    }}");
        }
        for o in 0..rows {
            let _ = writeln!(w, "    if oy0 + {o}u < p.oh {{");
            let _ = writeln!(
                w,
                "        let base = (bc * p.oh + oy0 + {o}u) * p.ow + ox0;"
            );
            self.store_row(w, "        ", &|j| format!("a{o}_{j}"));
            let _ = writeln!(w, "    }}");
        }
        let _ = writeln!(w, "}}");
        s
    }

    /// Stores one row's `cols` accumulators (`acc(j)`) from `base`, the
    /// written row's column ox0, `store` at a time: with rows of whole
    /// vectors and ox0 a multiple of `cols`, a vector's columns lie inside
    /// the row or past its end together.
    fn store_row(&self, w: &mut String, indent: &str, acc: &dyn Fn(usize) -> String) {
        let v = self.store;
        for j in (0..self.cols).step_by(v) {
            let value = match v {
                1 => acc(j),
                _ => format!(
                    "vec{v}({})",
                    (j..j + v).map(acc).collect::<Vec<_>>().join(", ")
                ),
            };
            let target = match v {
                1 => "out".to_string(),
                _ => format!("out{v}"),
            };
            let index = match v {
                1 => format!("base + {j}u"),
                _ => format!("(base + {j}u) / {v}u"),
            };
            let _ = writeln!(
                w,
                "{indent}if ox0 + {j}u < p.ow {{ {target}[{index}] = {value}; }}"
            );
        }
    }

    /// The dense forward and input gradient: `oc` written channels ×
    /// `cols` columns × `rows` rows per invocation. Each input row the block
    /// reads is loaded once and added into every output row it feeds. With
    /// one row a tap's weights are loaded where they are used; with more,
    /// each input channel's taps are loaded once up front (every row uses
    /// them). Per output the terms come in the same order either way:
    /// channel, then tap row, then tap column.
    fn dense_entry(&self) -> String {
        let (d, st, win, oc, rows, cols) = (
            self.dilation,
            self.stride,
            self.window(),
            self.oc,
            self.rows,
            self.cols,
        );
        let mut s = String::new();
        let w = &mut s;
        open_entry(w, self.workgroup());
        let _ = writeln!(w, "    let xblocks = (p.ow + {}u) / {cols}u;", cols - 1);
        let _ = writeln!(w, "    let yblocks = (p.oh + {}u) / {rows}u;", rows - 1);
        let _ = writeln!(w, "    let cblocks = (p.c_out + {}u) / {oc}u;", oc - 1);
        let _ = writeln!(
            w,
            "    if idx >= p.n * cblocks * yblocks * xblocks {{ return; }}"
        );
        let _ = writeln!(w, "    let ox0 = (idx % xblocks) * {cols}u;");
        let _ = writeln!(w, "    var t = idx / xblocks;");
        let _ = writeln!(w, "    let oy0 = (t % yblocks) * {rows}u;");
        let _ = writeln!(w, "    t = t / yblocks;");
        let _ = writeln!(w, "    let o0 = (t % cblocks) * {oc}u;");
        let _ = writeln!(w, "    let b = t / cblocks;");
        let _ = writeln!(w, "    let lc = p.c_out - 1u;");
        // Channels past the last repeat it: computed, never stored.
        self.weights4_block(w);
        for o in 0..oc {
            let _ = writeln!(
                w,
                "    let b{o} = select(0.0, bias[min(o0 + {o}u, lc)], p.has_bias == 1u);"
            );
            for r in 0..rows {
                for j in 0..cols {
                    let _ = writeln!(w, "    var a{r}_{o}_{j} = b{o};");
                }
            }
        }
        let _ = writeln!(w, "    let ix0 = i32(ox0 * {st}u) - i32(p.pad_w);");
        let _ = writeln!(w, "    let y0 = i32(oy0 * {st}u) - i32(p.pad_h);");
        // Input row r feeds output row o through tap ky = (r − o·s) / d; for
        // one output, r and so ky ascend. Rows that feed none are skipped.
        let feeds = |r: usize| -> Vec<(usize, usize)> {
            (0..rows)
                .filter(|&o| {
                    r >= o * st && (r - o * st).is_multiple_of(d) && (r - o * st) / d < self.kh
                })
                .map(|o| (o, (r - o * st) / d))
                .collect()
        };
        let read: Vec<usize> = (0..(rows - 1) * st + (self.kh - 1) * d + 1)
            .filter(|&r| !feeds(r).is_empty())
            .collect();
        for &r in &read {
            let _ = writeln!(w, "    let iy{r} = y0 + {r};");
            let _ = writeln!(w, "    let in{r} = iy{r} >= 0 && iy{r} < i32(p.h);");
            let _ = writeln!(
                w,
                "    let ry{r} = u32(clamp(iy{r}, 0, i32(p.h) - 1)) * p.w;"
            );
        }
        let _ = writeln!(w, "    let hw = p.h * p.w;");
        // Read channels per loop pass (`unroll`; each output's terms of
        // them in a row, in channel order), the tail one at a time.
        let unroll = self.unroll;
        debug_assert!(unroll == 1 || self.kh == 1, "terms out of order");
        let emit = |w: &mut String, nu: usize| {
            for u in 0..nu {
                let _ = writeln!(w, "        let plane{u} = (b * p.c_in + i + {u}u) * hw;");
                let _ = writeln!(w, "        let wi{u} = (i + {u}u) * p.w_i + wb;");
                if rows > 1 {
                    self.weights4_taps(w, &format!("wi{u}"), &format!("{u}_"));
                }
            }
            // Each output's terms of one read channel come in a row, in the
            // order channel, tap row, tap column: its accumulator (there
            // are hundreds, spilled) goes to the stack and back once per
            // run of terms instead of once per term, the sums bit for bit
            // the same. Measured on lavapipe (BENCHMARKS.md, "Twenty-ninth
            // pass"): 1×7 forward and input gradient −22%, 7×1 −15%.
            let wt = |u: usize, o: usize, ky: usize, kx: usize| {
                if rows == 1 {
                    format!("w{u}_{o}_{kx}")
                } else {
                    format!("wq{u}_{}_{ky}_{kx}.{}", o / 4, ["x", "y", "z", "w"][o % 4])
                }
            };
            if rows > 1 && self.kh > 1 {
                // Tap rows span read rows: every read row's window first,
                // then each output's kh · kw terms.
                for u in 0..nu {
                    for &r in &read {
                        let _ = writeln!(w, "        let row{u}_{r} = plane{u} + ry{r};");
                        self.window_loads(
                            w,
                            "        ",
                            &format!("x{u}_{r}_"),
                            &format!("row{u}_{r}"),
                            &format!("in{r}"),
                            &win,
                        );
                    }
                }
                for o_row in 0..rows {
                    let taps: Vec<(usize, usize)> = read
                        .iter()
                        .flat_map(|&r| {
                            feeds(r)
                                .into_iter()
                                .filter(move |&(o, _)| o == o_row)
                                .map(move |(_, ky)| (r, ky))
                        })
                        .collect();
                    for o in 0..oc {
                        for j in 0..cols {
                            for u in 0..nu {
                                for &(r, ky) in &taps {
                                    for kx in 0..self.kw {
                                        let _ = writeln!(
                                            w,
                                            "        a{o_row}_{o}_{j} = fma({}, x{u}_{r}_{}, a{o_row}_{o}_{j});",
                                            wt(u, o, ky, kx),
                                            self.col(j, kx)
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
                return;
            }
            // One read row feeds each output (1×k), or each invocation has
            // one output row: a row's window, then each output's kw terms
            // from it. (Every window loaded first measured 7% slower for
            // the 1×7 input gradient.) More than one channel a pass only
            // where each output reads one row (kh = 1), so that the terms
            // keep their order.
            for &r in &read {
                let _ = writeln!(w, "        {{");
                for u in 0..nu {
                    let _ = writeln!(w, "            let row{u} = plane{u} + ry{r};");
                    self.window_loads(
                        w,
                        "            ",
                        &format!("x{u}_"),
                        &format!("row{u}"),
                        &format!("in{r}"),
                        &win,
                    );
                }
                for (o_row, ky) in feeds(r) {
                    if rows == 1 {
                        for u in 0..nu {
                            for kx in 0..self.kw {
                                self.weights4_tap_at(
                                    w,
                                    "            ",
                                    ky * self.kw + kx,
                                    kx,
                                    &format!("wi{u}"),
                                    &format!("{u}_"),
                                );
                            }
                        }
                    }
                    for o in 0..oc {
                        for j in 0..cols {
                            for u in 0..nu {
                                for kx in 0..self.kw {
                                    let _ = writeln!(
                                        w,
                                        "            a{o_row}_{o}_{j} = fma({}, x{u}_{}, a{o_row}_{o}_{j});",
                                        wt(u, o, ky, kx),
                                        self.col(j, kx)
                                    );
                                }
                            }
                        }
                    }
                }
                let _ = writeln!(w, "        }}");
            }
        };
        read_channel_loop(w, unroll, &emit);
        for r in 0..rows {
            let _ = writeln!(w, "    if oy0 + {r}u < p.oh {{");
            for o in 0..oc {
                let _ = writeln!(w, "        if o0 + {o}u < p.c_out {{");
                let _ = writeln!(
                    w,
                    "            let base = ((b * p.c_out + o0 + {o}u) * p.oh + oy0 + {r}u) * p.ow + ox0;"
                );
                self.store_row(w, "            ", &|j| format!("a{r}_{o}_{j}"));
                let _ = writeln!(w, "        }}");
            }
            let _ = writeln!(w, "    }}");
        }
        let _ = writeln!(w, "}}");
        s
    }

    /// Whether this kernel reads its weights from the tap-major copy that
    /// `weights4_source` writes: the dense forward and input gradients.
    /// There the `oc` output channels of one (read channel, tap) are
    /// adjacent, so an invocation reads them in `oc / 4` float4 loads where
    /// the weights' own layout takes `oc` scalar loads (on lavapipe a float4
    /// load costs about what a scalar one does; measured 1×7 and 3×3
    /// 1.4–1.5× faster). Not the float4 pointwise kernels: measured no
    /// faster, and the copy is one more dispatch.
    pub fn weights4(&self) -> bool {
        !self.depthwise && !self.flat4 && self.dir != Direction::WeightGradient
    }

    /// The copy's layout: [read channel][block of oc written channels]
    /// [tap][oc], channels past the last repeating it, taps in the order
    /// the kernel takes them (ky · kw + kx; backwards for the flipped
    /// kernel of a stride-1 input gradient).
    fn weights4_len(&self, read: usize, written: usize) -> usize {
        read * written.div_ceil(self.oc) * self.oc * self.kh * self.kw
    }

    /// `wb`: the first float4 of this invocation's block of written
    /// channels within a read channel's weights (add `i · p.w_i`).
    fn weights4_block(&self, w: &mut String) {
        let per_block = self.kh * self.kw * self.oc / 4;
        let _ = writeln!(w, "    let wb = (o0 / {}u) * {per_block}u;", self.oc);
    }

    /// `w{o}_{kx}` for the block's channels o at tap t, from `wi`.
    fn weights4_tap(&self, w: &mut String, indent: &str, t: usize, kx: usize) {
        self.weights4_tap_at(w, indent, t, kx, "wi", "");
    }

    /// Every tap's float4s of the read channel at `wi`:
    /// `wq{tag}{v}_{ky}_{kx}`.
    fn weights4_taps(&self, w: &mut String, wi: &str, tag: &str) {
        let ocv = self.oc / 4;
        for ky in 0..self.kh {
            for kx in 0..self.kw {
                let t = ky * self.kw + kx;
                for v in 0..ocv {
                    let _ = writeln!(
                        w,
                        "        let wq{tag}{v}_{ky}_{kx} = wt4[{wi} + {}u];",
                        t * ocv + v
                    );
                }
            }
        }
    }

    /// `weights4_tap` from the read channel at `wi`, the names tagged
    /// (`w{tag}{o}_{kx}`).
    fn weights4_tap_at(
        &self,
        w: &mut String,
        indent: &str,
        t: usize,
        kx: usize,
        wi: &str,
        tag: &str,
    ) {
        let ocv = self.oc / 4;
        for v in 0..ocv {
            let _ = writeln!(
                w,
                "{indent}let wq{tag}{v}_{kx} = wt4[{wi} + {}u];",
                t * ocv + v
            );
        }
        for o in 0..self.oc {
            let c = ["x", "y", "z", "w"][o % 4];
            let _ = writeln!(w, "{indent}let w{tag}{o}_{kx} = wq{tag}{}_{kx}.{c};", o / 4);
        }
    }

    /// Whether the copy takes the weights' taps backwards: the flipped
    /// kernel of a stride-1 input gradient.
    fn weights4_flip(&self) -> bool {
        self.dir == Direction::InputGradient && self.stride == 1
    }

    /// The copy module's name, which is its cache key: the copy depends on
    /// the tap count, the channel block and the flip only, so the kernels
    /// that share them share one module.
    pub fn weights4_name(&self) -> String {
        let flip = if self.weights4_flip() { ".flip" } else { "" };
        format!(
            "conv2d_rows.weights4.k{}.c{}{flip}",
            self.kh * self.kw,
            self.oc
        )
    }

    /// The module that writes the tap-major copy (`weights4_len`) into
    /// `partial`: one element per invocation, c_in the read channels,
    /// c_out the written ones, w_o, w_i the weights' strides.
    pub fn weights4_source(&self) -> String {
        let (kk, oc) = (self.kh * self.kw, self.oc);
        let flip = self.weights4_flip();
        let mut s = String::new();
        let w = &mut s;
        open_entry(w, self.workgroup());
        let _ = writeln!(w, "    let cblocks = (p.c_out + {}u) / {oc}u;", oc - 1);
        let _ = writeln!(
            w,
            "    if idx >= p.c_in * cblocks * {}u {{ return; }}",
            kk * oc
        );
        let _ = writeln!(w, "    let o = idx % {oc}u;");
        let _ = writeln!(w, "    let t = (idx / {oc}u) % {kk}u;");
        let _ = writeln!(w, "    let r = idx / {}u;", kk * oc);
        let _ = writeln!(w, "    let ob = r % cblocks;");
        let _ = writeln!(w, "    let i = r / cblocks;");
        let _ = writeln!(w, "    let c = min(ob * {oc}u + o, p.c_out - 1u);");
        let tap = if flip {
            format!("{}u - t", kk - 1)
        } else {
            "t".to_string()
        };
        let _ = writeln!(w, "    partial[idx] = wt[c * p.w_o + i * p.w_i + {tap}];");
        let _ = writeln!(w, "}}");
        module(&s, false)
    }

    /// `weights4_source` for many copies at once ([`CopyBatch`]): the
    /// same element order and clamping, the counts and strides per copy
    /// from the table (p.n rows).
    pub fn weights4_batched_source(&self) -> String {
        let (kk, oc) = (self.kh * self.kw, self.oc);
        let tap = if self.weights4_flip() {
            format!("{}u - t", kk - 1)
        } else {
            "t".to_string()
        };
        let body = format!(
            "@group(0) @binding(7) var<storage, read> copy_rows: array<vec4<u32>>;

@compute @workgroup_size({row})
fn conv_rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {{
    let g = wg.x + wg.y * nwg.x;
    if g >= p.n {{ return; }}
    // (weights' offset, copy's offset, first element, count), then
    // (written channels, their blocks, w_o, w_i).
    let a = copy_rows[2u * g];
    let b = copy_rows[2u * g + 1u];
    if lid >= a.w {{ return; }}
    let idx = a.z + lid;
    let o = idx % {oc}u;
    let t = (idx / {oc}u) % {kk}u;
    let r = idx / {kkoc}u;
    let ob = r % b.y;
    let i = r / b.y;
    let c = min(ob * {oc}u + o, b.x - 1u);
    partial[a.y + idx] = wt[a.x + c * b.z + i * b.w + {tap}];
}}
",
            row = CopyBatch::ROW,
            kkoc = kk * oc,
        );
        module(&body, false)
    }

    /// The input gradient of a strided convolution, gathered: an
    /// invocation writes COLS columns of one dx row that share a residue
    /// modulo the stride (ix = φ + s·(q·COLS + j)), so the column taps that
    /// reach them are fixed per residue φ (one generated branch each) and
    /// their dy columns are consecutive; a row tap reaches the row when
    /// (iy + pad_h − ky·d) divides by s, tested per row. Dense: `oc`
    /// written channels over a loop on the read (dy) channels; depthwise:
    /// one channel. Read plane (h, w) = dy's, written (oh, ow) = dx's.
    fn strided_dx_entry(&self) -> String {
        let (d, st, oc) = (self.dilation, self.stride, self.oc);
        let (pad_h, pad_w) = (self.pad.0 as i64, self.pad.1 as i64);
        let mut s = String::new();
        let w = &mut s;
        open_entry(w, self.workgroup());
        let _ = writeln!(
            w,
            "    let xblocks = ((p.ow + {}u) / {st}u + {}u) / {COLS}u;",
            st - 1,
            COLS - 1
        );
        let _ = writeln!(w, "    let cblocks = (p.c_out + {}u) / {oc}u;", oc - 1);
        let _ = writeln!(
            w,
            "    if idx >= p.n * cblocks * p.oh * {st}u * xblocks {{ return; }}"
        );
        let _ = writeln!(w, "    let q = idx % xblocks;");
        let _ = writeln!(w, "    var t = idx / xblocks;");
        let _ = writeln!(w, "    let phx = t % {st}u;");
        let _ = writeln!(w, "    t = t / {st}u;");
        let _ = writeln!(w, "    let iy = t % p.oh;");
        let _ = writeln!(w, "    t = t / p.oh;");
        let _ = writeln!(w, "    let o0 = (t % cblocks) * {oc}u;");
        let _ = writeln!(w, "    let b = t / cblocks;");
        let _ = writeln!(w, "    let ix0 = phx + {st}u * q * {COLS}u;");
        // A residue class past the last column (w < stride) owns nothing.
        let _ = writeln!(w, "    if ix0 >= p.ow {{ return; }}");
        let _ = writeln!(w, "    let ox0 = i32(q * {COLS}u);");
        let _ = writeln!(w, "    let lc = p.c_out - 1u;");
        // The bias slot is bound with every kernel of this module, so it is
        // read (an input gradient has none: has_bias is 0).
        let _ = writeln!(w, "    let b0 = select(0.0, bias[0], p.has_bias == 1u);");
        if self.depthwise {
            let _ = writeln!(w, "    let wo0 = o0 * p.w_o;");
        } else {
            self.weights4_block(w);
        }
        for o in 0..oc {
            for j in 0..COLS {
                let _ = writeln!(w, "    var a{o}_{j} = b0;");
            }
        }
        for ky in 0..self.kh {
            let _ = writeln!(w, "    let ty{ky} = i32(iy) + {};", pad_h - (ky * d) as i64);
            let _ = writeln!(
                w,
                "    let in{ky} = ty{ky} >= 0 && ty{ky} % {st}i == 0 && ty{ky} / {st}i < i32(p.h);"
            );
            let _ = writeln!(
                w,
                "    let ry{ky} = u32(clamp(ty{ky} / {st}i, 0, i32(p.h) - 1)) * p.w;"
            );
        }
        let _ = writeln!(w, "    let hw = p.h * p.w;");
        if self.depthwise {
            // One channel: the dy plane of the written channel.
            let _ = writeln!(w, "    {{");
            let _ = writeln!(w, "        let plane = (b * p.c_in + o0) * hw;");
            let _ = writeln!(w, "        let wi = 0u;");
        } else {
            let _ = writeln!(w, "    for (var i = 0u; i < p.c_in; i = i + 1u) {{");
            let _ = writeln!(w, "        let plane = (b * p.c_in + i) * hw;");
            let _ = writeln!(w, "        let wi = i * p.w_i + wb;");
        }
        for ky in 0..self.kh {
            let _ = writeln!(w, "        if in{ky} {{");
            let _ = writeln!(w, "            let row = plane + ry{ky};");
            for phase in 0..st as i64 {
                // Column taps of this residue and their dy column offsets.
                let taps: Vec<(usize, i64)> = (0..self.kw)
                    .filter_map(|kx| {
                        let e = phase + pad_w - (kx * d) as i64;
                        (e.rem_euclid(st as i64) == 0).then(|| (kx, e.div_euclid(st as i64)))
                    })
                    .collect();
                let _ = writeln!(w, "            if phx == {phase}u {{");
                let mut offs: Vec<i64> = taps
                    .iter()
                    .flat_map(|&(_, c)| (0..COLS as i64).map(move |j| c + j))
                    .collect();
                offs.sort_unstable();
                offs.dedup();
                let v = |o: i64| {
                    if o < 0 {
                        format!("gm{}", -o)
                    } else {
                        format!("g{o}")
                    }
                };
                for &o in &offs {
                    let _ = writeln!(
                        w,
                        "                let {} = x_in(row, true, ox0 + {o}i);",
                        v(o)
                    );
                }
                for &(kx, c) in &taps {
                    let t = ky * self.kw + kx;
                    if self.depthwise {
                        let _ = writeln!(w, "                let w0_{kx} = wt[wo0 + wi + {t}u];");
                    } else {
                        self.weights4_tap(w, "                ", t, kx);
                    }
                    for o in 0..oc {
                        for j in 0..COLS as i64 {
                            let _ = writeln!(
                                w,
                                "                a{o}_{j} = fma(w{o}_{kx}, {}, a{o}_{j});",
                                v(c + j)
                            );
                        }
                    }
                }
                let _ = writeln!(w, "            }}");
            }
            let _ = writeln!(w, "        }}");
        }
        let _ = writeln!(w, "    }}");
        for o in 0..oc {
            let _ = writeln!(w, "    if o0 + {o}u < p.c_out {{");
            let _ = writeln!(
                w,
                "        let base = ((b * p.c_out + o0 + {o}u) * p.oh + iy) * p.ow + ix0;"
            );
            for j in 0..COLS {
                let _ = writeln!(
                    w,
                    "        if ix0 + {}u < p.ow {{ out[base + {}u] = a{o}_{j}; }}",
                    st * j,
                    st * j
                );
            }
            let _ = writeln!(w, "    }}");
        }
        let _ = writeln!(w, "}}");
        s
    }

    /// The input gradient of a strided convolution in blocks (CPU
    /// adapters, `rows` > 1): an invocation writes `rows` dx rows (a
    /// multiple of the stride) × stride·COLS columns, every residue of
    /// both, and `oc` channels. From a block corner that is a multiple of
    /// the stride, which dy row and column a tap reaches from each output
    /// offset is fixed, so the code is straight: each dy value the block
    /// needs is loaded once per read channel and feeds every output it
    /// reaches, where `strided_dx_entry` loads it once per (row, residue)
    /// that takes it. Per output the terms come in the same order:
    /// read channel, tap row, tap column; a row outside dy adds zeros,
    /// which it skipped.
    fn strided_dx_block_entry(&self) -> String {
        let (d, st, oc, br) = (self.dilation, self.stride, self.oc, self.rows);
        let bc = st * COLS;
        debug_assert!(br % st == 0);
        // The dy offset (from the block's first) that output offset m
        // reaches through tap t, if any: (m + pad − t·d) / stride.
        let reach = |m: usize, pad: usize, t: usize| -> Option<i64> {
            let e = (m + pad) as i64 - (t * d) as i64;
            (e.rem_euclid(st as i64) == 0).then(|| e.div_euclid(st as i64))
        };
        let name = |e: i64| {
            if e < 0 {
                format!("m{}", -e)
            } else {
                e.to_string()
            }
        };
        let mut rows_read: Vec<i64> = (0..br)
            .flat_map(|m| (0..self.kh).filter_map(move |ky| reach(m, self.pad.0, ky)))
            .collect();
        rows_read.sort_unstable();
        rows_read.dedup();
        let mut cols_read: Vec<i64> = (0..bc)
            .flat_map(|k| (0..self.kw).filter_map(move |kx| reach(k, self.pad.1, kx)))
            .collect();
        cols_read.sort_unstable();
        cols_read.dedup();
        let mut s = String::new();
        let w = &mut s;
        open_entry(w, self.workgroup());
        let _ = writeln!(w, "    let xblocks = (p.ow + {}u) / {bc}u;", bc - 1);
        let _ = writeln!(w, "    let yblocks = (p.oh + {}u) / {br}u;", br - 1);
        let _ = writeln!(w, "    let cblocks = (p.c_out + {}u) / {oc}u;", oc - 1);
        let _ = writeln!(
            w,
            "    if idx >= p.n * cblocks * yblocks * xblocks {{ return; }}"
        );
        let _ = writeln!(w, "    let x0 = (idx % xblocks) * {bc}u;");
        let _ = writeln!(w, "    var t = idx / xblocks;");
        let _ = writeln!(w, "    let y0 = (t % yblocks) * {br}u;");
        let _ = writeln!(w, "    t = t / yblocks;");
        let _ = writeln!(w, "    let o0 = (t % cblocks) * {oc}u;");
        let _ = writeln!(w, "    let b = t / cblocks;");
        let _ = writeln!(w, "    let ox0 = i32(x0 / {st}u);");
        let _ = writeln!(w, "    let oy0 = i32(y0 / {st}u);");
        let _ = writeln!(w, "    let b0 = select(0.0, bias[0], p.has_bias == 1u);");
        if self.depthwise {
            let _ = writeln!(w, "    let wo0 = o0 * p.w_o;");
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let _ = writeln!(
                        w,
                        "    let w0_{ky}_{kx} = wt[wo0 + {}u];",
                        ky * self.kw + kx
                    );
                }
            }
        } else {
            self.weights4_block(w);
        }
        for o in 0..oc {
            for m in 0..br {
                for k in 0..bc {
                    let _ = writeln!(w, "    var a{o}_{m}_{k} = b0;");
                }
            }
        }
        for &e in &rows_read {
            let r = name(e);
            let _ = writeln!(w, "    let iy{r} = oy0 + {e};");
            let _ = writeln!(w, "    let in{r} = iy{r} >= 0 && iy{r} < i32(p.h);");
            let _ = writeln!(
                w,
                "    let ry{r} = u32(clamp(iy{r}, 0, i32(p.h) - 1)) * p.w;"
            );
        }
        let _ = writeln!(w, "    let hw = p.h * p.w;");
        if self.depthwise {
            let _ = writeln!(w, "    {{");
            let _ = writeln!(w, "        let plane = (b * p.c_in + o0) * hw;");
        } else {
            let _ = writeln!(w, "    for (var i = 0u; i < p.c_in; i = i + 1u) {{");
            let _ = writeln!(w, "        let plane = (b * p.c_in + i) * hw;");
            let _ = writeln!(w, "        let wi = i * p.w_i + wb;");
            self.weights4_taps(w, "wi", "");
        }
        for &e in &rows_read {
            let r = name(e);
            for &f in &cols_read {
                let _ = writeln!(
                    w,
                    "        let g{r}_{} = x_in(plane + ry{r}, in{r}, ox0 + {f});",
                    name(f)
                );
            }
        }
        for ky in 0..self.kh {
            for kx in 0..self.kw {
                for m in 0..br {
                    let Some(e) = reach(m, self.pad.0, ky) else {
                        continue;
                    };
                    for k in 0..bc {
                        let Some(f) = reach(k, self.pad.1, kx) else {
                            continue;
                        };
                        for o in 0..oc {
                            let wt = if self.depthwise {
                                format!("w0_{ky}_{kx}")
                            } else {
                                format!("wq{}_{ky}_{kx}.{}", o / 4, ["x", "y", "z", "w"][o % 4])
                            };
                            let _ = writeln!(
                                w,
                                "        a{o}_{m}_{k} = fma({wt}, g{}_{}, a{o}_{m}_{k});",
                                name(e),
                                name(f)
                            );
                        }
                    }
                }
            }
        }
        let _ = writeln!(w, "    }}");
        for o in 0..oc {
            let _ = writeln!(w, "    if o0 + {o}u < p.c_out {{");
            for m in 0..br {
                let _ = writeln!(w, "        if y0 + {m}u < p.oh {{");
                let _ = writeln!(
                    w,
                    "            let base = ((b * p.c_out + o0 + {o}u) * p.oh + y0 + {m}u) * p.ow + x0;"
                );
                for k in 0..bc {
                    let _ = writeln!(
                        w,
                        "            if x0 + {k}u < p.ow {{ out[base + {k}u] = a{o}_{m}_{k}; }}"
                    );
                }
                let _ = writeln!(w, "        }}");
            }
            let _ = writeln!(w, "    }}");
        }
        let _ = writeln!(w, "}}");
        s
    }

    /// The pointwise convolution over float4s of flat planes (`flat4`):
    /// forward and input gradient take 8 output channels × 8 positions per
    /// invocation (the input gradient through the weight strides), pass 1
    /// of the weight gradient 8 × 8 channel pairs over 4 positions at a
    /// time. A chunk of the weight gradient is `chunk_rows` float4s of
    /// (batch, plane) positions.
    fn pointwise4_entry(&self) -> String {
        let oc = self.oc;
        let mut s = String::new();
        let w = &mut s;
        open_entry(w, self.workgroup());
        let _ = writeln!(w, "    let hw4 = p.h * p.w / 4u;");
        if self.dir == Direction::WeightGradient {
            let ic = self.ic;
            weight_blocks_decode(w, oc, ic);
            for o in 0..oc {
                for i in 0..ic {
                    let _ = writeln!(w, "    var a{o}_{i} = 0.0;");
                }
            }
            let _ = writeln!(w, "    let u0 = k * p.chunk_rows;");
            let _ = writeln!(w, "    let u1 = min(u0 + p.chunk_rows, p.n * hw4);");
            let _ = writeln!(w, "    for (var u = u0; u < u1; u = u + 1u) {{");
            let _ = writeln!(w, "        let b = u / hw4;");
            let _ = writeln!(w, "        let q = u - b * hw4;");
            for i in 0..ic {
                let _ = writeln!(w, "        let xv{i} = x4[(b * p.c_in + ic{i}) * hw4 + q];");
            }
            for o in 0..oc {
                let _ = writeln!(w, "        {{");
                let _ = writeln!(
                    w,
                    "            let g = dy4[(b * p.c_out + oc{o}) * hw4 + q];"
                );
                for i in 0..ic {
                    let _ = writeln!(w, "            a{o}_{i} = a{o}_{i} + dot(g, xv{i});");
                }
                let _ = writeln!(w, "        }}");
            }
            let _ = writeln!(w, "    }}");
            let _ = writeln!(w, "    let wbase = k * p.c_out * p.w_o;");
            for o in 0..oc {
                for i in 0..ic {
                    let _ = writeln!(
                        w,
                        "    if o0 + {o}u < p.c_out && i0 + {i}u < p.c_in {{ partial[wbase + (o0 + {o}u) * p.w_o + i0 + {i}u] = a{o}_{i}; }}"
                    );
                }
            }
        } else {
            // `quads` float4s of positions per invocation; a plane's last
            // block may hold fewer (its loads clamped, its stores skipped).
            let nq = self.quads;
            let _ = writeln!(w, "    let qblocks = (hw4 + {}u) / {nq}u;", nq - 1);
            let _ = writeln!(w, "    let cblocks = (p.c_out + {}u) / {oc}u;", oc - 1);
            let _ = writeln!(w, "    if idx >= p.n * cblocks * qblocks {{ return; }}");
            let _ = writeln!(w, "    let q0 = (idx % qblocks) * {nq}u;");
            let _ = writeln!(w, "    let t = idx / qblocks;");
            let _ = writeln!(w, "    let o0 = (t % cblocks) * {oc}u;");
            let _ = writeln!(w, "    let b = t / cblocks;");
            let _ = writeln!(w, "    let lc = p.c_out - 1u;");
            for k in 1..nq {
                let _ = writeln!(w, "    let q{k} = min(q0 + {k}u, hw4 - 1u);");
            }
            for o in 0..oc {
                let _ = writeln!(w, "    let wo{o} = min(o0 + {o}u, lc) * p.w_o;");
                let _ = writeln!(
                    w,
                    "    let b{o} = vec4(select(0.0, bias[min(o0 + {o}u, lc)], p.has_bias == 1u));"
                );
                for k in 0..nq {
                    let _ = writeln!(w, "    var a{o}_{k} = b{o};");
                }
            }
            // Two read channels a pass on CPU adapters (`Spec::unroll`).
            read_channel_loop(w, self.unroll, &|w: &mut String, nu: usize| {
                for u in 0..nu {
                    let _ = writeln!(w, "        let plane{u} = (b * p.c_in + i + {u}u) * hw4;");
                    for k in 0..nq {
                        let _ =
                            writeln!(w, "        let xv{u}_{k} = relu_in4(x4[plane{u} + q{k}]);");
                    }
                    let _ = writeln!(w, "        let wi{u} = (i + {u}u) * p.w_i;");
                }
                for o in 0..oc {
                    for u in 0..nu {
                        let _ = writeln!(w, "        let w{o}_{u} = vec4(wt[wo{o} + wi{u}]);");
                    }
                }
                for o in 0..oc {
                    for k in 0..nq {
                        for u in 0..nu {
                            let _ = writeln!(
                                w,
                                "        a{o}_{k} = fma(w{o}_{u}, xv{u}_{k}, a{o}_{k});"
                            );
                        }
                    }
                }
            });
            for o in 0..oc {
                let _ = writeln!(w, "    if o0 + {o}u < p.c_out {{");
                let _ = writeln!(
                    w,
                    "        let base = (b * p.c_out + o0 + {o}u) * hw4 + q0;"
                );
                let _ = writeln!(w, "        out4[base] = a{o}_0;");
                for k in 1..nq {
                    let _ = writeln!(
                        w,
                        "        if q0 + {k}u < hw4 {{ out4[base + {k}u] = a{o}_{k}; }}"
                    );
                }
                let _ = writeln!(w, "    }}");
            }
        }
        let _ = writeln!(w, "}}");
        s
    }

    /// Pass 1 of a depthwise or dense k×1 weight gradient, `rows` output
    /// rows of one plane at a time, each row's `col_blocks` column blocks
    /// written out: every input row the group reads is loaded once for all
    /// the output rows its taps reach (`weight_entry` loads it once per
    /// tap row). Per weight the terms come in `weight_entry`'s order: row,
    /// column block, column, so both kernels give the same sums.
    fn weight_rows_entry(&self) -> String {
        let (d, st, win, kk) = (self.dilation, self.stride, self.window(), self.kh * self.kw);
        let (rows, cb) = (self.rows, self.col_blocks);
        let mut s = String::new();
        let w = &mut s;
        let (oc, ic) = self.weight_open(w);
        let _ = writeln!(w, "    let r1 = min((k + 1u) * p.chunk_rows, p.n * p.oh);");
        let _ = writeln!(w, "    let lx = p.ow - 1u;");
        let _ = writeln!(w, "    var r = k * p.chunk_rows;");
        let _ = writeln!(w, "    loop {{");
        let _ = writeln!(w, "        if r >= r1 {{ break; }}");
        let _ = writeln!(w, "        let b = r / p.oh;");
        let _ = writeln!(w, "        let oy = r % p.oh;");
        // Output rows oy..oy + nv of this plane and chunk.
        let _ = writeln!(w, "        let nv = min(min({rows}u, r1 - r), p.oh - oy);");
        for i in 0..ic {
            let _ = writeln!(
                w,
                "        let plane{i} = (b * p.c_in + ic{i}) * p.h * p.w;"
            );
        }
        // Input row u (from oy·s − pad) feeds output row m through tap
        // ky = (u − m·s) / d.
        let mut used: Vec<usize> = (0..rows)
            .flat_map(|m| (0..self.kh).map(move |ky| m * st + ky * d))
            .collect();
        used.sort_unstable();
        used.dedup();
        for &u in &used {
            let _ = writeln!(
                w,
                "        let iy{u} = i32(oy * {st}u) - i32(p.pad_h) + {u};"
            );
            let _ = writeln!(w, "        let in{u} = iy{u} >= 0 && iy{u} < i32(p.h);");
            let _ = writeln!(
                w,
                "        let ry{u} = u32(clamp(iy{u}, 0, i32(p.h) - 1)) * p.w;"
            );
        }
        for q in 0..cb {
            let _ = writeln!(w, "        let ox{q} = {}u;", q * self.cols);
            let _ = writeln!(
                w,
                "        let ix{q} = i32({}u * {st}u) - i32(p.pad_w);",
                q * self.cols
            );
            for i in 0..ic {
                for &u in &used {
                    self.window_loads_at(
                        w,
                        "        ",
                        &format!("x{i}_{u}_{q}_"),
                        (&format!("plane{i} + ry{u}"), &format!("in{u}")),
                        &win,
                        (&format!("ix{q}"), &format!("ox{q}")),
                    );
                }
            }
        }
        for m in 0..rows {
            let _ = writeln!(w, "        if nv > {m}u {{");
            for o in 0..oc {
                let _ = writeln!(
                    w,
                    "            let drow{o} = ((b * p.c_out + oc{o}) * p.oh + oy + {m}u) * p.ow;"
                );
                let _ = writeln!(w, "            {{");
                let _ = writeln!(w, "                let drow = drow{o};");
                for q in 0..cb {
                    self.dy_loads(
                        w,
                        "                ",
                        &format!("g{q}_"),
                        &format!("{}u", q * self.cols),
                    );
                    for i in 0..ic {
                        self.weight_fmas(
                            w,
                            "                ",
                            &format!("a{o}_{i}_"),
                            &format!("g{q}_"),
                            &|ky| format!("x{i}_{}_{q}_", m * st + ky * d),
                        );
                    }
                }
                let _ = writeln!(w, "            }}");
            }
            let _ = writeln!(w, "        }}");
        }
        let _ = writeln!(w, "        r = r + nv;");
        let _ = writeln!(w, "    }}");
        weight_store(w, oc, ic, kk);
        s
    }

    /// Pass 1's terms for one row of `cols` dy values `{g}{j}`: every tap
    /// (ky, kx) adds g·x into `{acc}{t}`, x the window value `{x(ky)}{c}`
    /// of tap row ky at column c = col(j, kx). Both weight kernels take
    /// them in this order (tap row, tap column, column), so a weight's sum
    /// is the same whichever kernel runs.
    fn weight_fmas(
        &self,
        w: &mut String,
        indent: &str,
        acc: &str,
        g: &str,
        x: &dyn Fn(usize) -> String,
    ) {
        for ky in 0..self.kh {
            let xr = x(ky);
            for kx in 0..self.kw {
                let t = ky * self.kw + kx;
                for j in 0..self.cols {
                    let _ = writeln!(
                        w,
                        "{indent}{acc}{t} = fma({g}{j}, {xr}{}, {acc}{t});",
                        self.col(j, kx)
                    );
                }
            }
        }
    }

    /// `{g}{j}` for j < `cols`: dy at columns `col0` + j of the row from
    /// `drow`, columns past the row's end read as zero (so their products
    /// vanish); with `vec` > 1 a vector a load, dy's rows being whole
    /// vectors too (the same width).
    fn dy_loads(&self, w: &mut String, indent: &str, g: &str, col0: &str) {
        let v = self.vec;
        if v == 1 && self.pairs {
            let at = pair_loads(
                w,
                indent,
                g,
                &format!("i32(drow + {col0})"),
                self.cols,
                "dy_pair",
            );
            for j in 0..self.cols {
                let _ = writeln!(
                    w,
                    "{indent}let {g}{j} = select(0.0, {}, {col0} + {j}u <= lx);",
                    at(j)
                );
            }
            return;
        }
        if v == 1 {
            for j in 0..self.cols {
                let _ = writeln!(
                    w,
                    "{indent}let {g}{j} = select(0.0, dy[drow + min({col0} + {j}u, lx)], {col0} + {j}u <= lx);"
                );
            }
            return;
        }
        for q in 0..self.cols / v {
            let _ = writeln!(
                w,
                "{indent}let {g}q{q} = select(vec{v}(0.0), dy{v}[(drow + min({col0} + {}u, p.ow - {v}u)) / {v}u], {col0} + {}u < p.ow);",
                v * q,
                v * q
            );
        }
        for j in 0..self.cols {
            let c = ["x", "y", "z", "w"][j % v];
            let _ = writeln!(w, "{indent}let {g}{j} = {g}q{}.{c};", j / v);
        }
    }

    /// The start of a weight gradient's pass 1: its chunk `k`, channel
    /// blocks (`o0`, `i0`; `oc{o}`, `ic{i}` clamped) and accumulators
    /// `a{o}_{i}_{t}` at 0. Returns the channels per invocation (written,
    /// read): a depthwise kernel takes one (its input channel), a dense
    /// one `oc` of `ic`.
    fn weight_open(&self, w: &mut String) -> (usize, usize) {
        let (oc, ic) = if self.depthwise {
            (1, 1)
        } else {
            (self.oc, self.ic)
        };
        open_entry(w, self.workgroup());
        if self.depthwise {
            let _ = writeln!(w, "    if idx >= p.chunks * p.c_out {{ return; }}");
            let _ = writeln!(w, "    let oc0 = idx % p.c_out;");
            let _ = writeln!(w, "    let ic0 = oc0;");
            let _ = writeln!(w, "    let o0 = oc0;");
            let _ = writeln!(w, "    let i0 = 0u;");
            let _ = writeln!(w, "    let k = idx / p.c_out;");
        } else {
            weight_blocks_decode(w, oc, ic);
        }
        for o in 0..oc {
            for i in 0..ic {
                for t in 0..self.kh * self.kw {
                    let _ = writeln!(w, "    var a{o}_{i}_{t} = 0.0;");
                }
            }
        }
        (oc, ic)
    }

    fn weight_entry(&self) -> String {
        let (d, st, win, kk) = (self.dilation, self.stride, self.window(), self.kh * self.kw);
        let mut s = String::new();
        let w = &mut s;
        let (oc, ic) = self.weight_open(w);
        let _ = writeln!(w, "    let r0 = k * p.chunk_rows;");
        let _ = writeln!(w, "    let r1 = min(r0 + p.chunk_rows, p.n * p.oh);");
        let _ = writeln!(w, "    let lx = p.ow - 1u;");
        let _ = writeln!(w, "    for (var r = r0; r < r1; r = r + 1u) {{");
        let _ = writeln!(w, "        let b = r / p.oh;");
        let _ = writeln!(w, "        let oy = r % p.oh;");
        for ky in 0..self.kh {
            let _ = writeln!(
                w,
                "        let iy{ky} = i32(oy * {st}u) - i32(p.pad_h) + {};",
                ky * d
            );
            let _ = writeln!(w, "        let in{ky} = iy{ky} >= 0 && iy{ky} < i32(p.h);");
            let _ = writeln!(
                w,
                "        let ry{ky} = u32(clamp(iy{ky}, 0, i32(p.h) - 1)) * p.w;"
            );
        }
        for i in 0..ic {
            let _ = writeln!(w, "        let xp{i} = (b * p.c_in + ic{i}) * p.h * p.w;");
        }
        let _ = writeln!(
            w,
            "        for (var ox0 = 0u; ox0 < p.ow; ox0 = ox0 + {}u) {{",
            self.cols
        );
        let _ = writeln!(w, "            let ix0 = i32(ox0 * {st}u) - i32(p.pad_w);");
        for i in 0..ic {
            for ky in 0..self.kh {
                self.window_loads(
                    w,
                    "            ",
                    &format!("x{i}_{ky}_"),
                    &format!("xp{i} + ry{ky}"),
                    &format!("in{ky}"),
                    &win,
                );
            }
        }
        for o in 0..oc {
            let _ = writeln!(w, "            {{");
            let _ = writeln!(
                w,
                "                let drow = ((b * p.c_out + oc{o}) * p.oh + oy) * p.ow;"
            );
            self.dy_loads(w, "                ", "g", "ox0");
            for i in 0..ic {
                self.weight_fmas(w, "                ", &format!("a{o}_{i}_"), "g", &|ky| {
                    format!("x{i}_{ky}_")
                });
            }
            let _ = writeln!(w, "            }}");
        }
        let _ = writeln!(w, "        }}");
        let _ = writeln!(w, "    }}");
        weight_store(w, oc, ic, kk);
        s
    }
}

/// The end of a weight gradient's pass 1 (see `Spec::weight_open`): the
/// accumulators into partial[k, o, i, t], laid out like the weights (w_o,
/// w_i strides), blocks past the last channel skipped.
fn weight_store(w: &mut String, oc: usize, ic: usize, kk: usize) {
    let _ = writeln!(w, "    let wbase = k * p.c_out * p.w_o;");
    for o in 0..oc {
        for i in 0..ic {
            let _ = writeln!(w, "    if o0 + {o}u < p.c_out && i0 + {i}u < p.c_in {{");
            let _ = writeln!(
                w,
                "        let at = wbase + (o0 + {o}u) * p.w_o + (i0 + {i}u) * p.w_i;"
            );
            for t in 0..kk {
                let _ = writeln!(w, "        partial[at + {t}u] = a{o}_{i}_{t};");
            }
            let _ = writeln!(w, "    }}");
        }
    }
    let _ = writeln!(w, "}}");
}

/// `len` consecutive floats from the float index `first` (an i32
/// expression) as float pairs (`Spec::pairs`): the pairs `{name}p{k}` from
/// the even float at or before the first (`load`: `x_pair` or `dy_pair`,
/// which clamp the index to the tensor), `{name}o` whether the first is
/// odd. Returns the expression of float t of the run.
fn pair_loads(
    w: &mut String,
    indent: &str,
    name: &str,
    first: &str,
    len: usize,
    load: &str,
) -> impl Fn(usize) -> String {
    let _ = writeln!(w, "{indent}let {name}f = {first};");
    let _ = writeln!(w, "{indent}let {name}o = ({name}f & 1) == 1;");
    let _ = writeln!(
        w,
        "{indent}let {name}b = ({name}f - select(0, 1, {name}o)) / 2;"
    );
    for k in 0..len / 2 + 1 {
        let _ = writeln!(w, "{indent}let {name}p{k} = {load}({name}b + {k});");
    }
    let name = name.to_string();
    move |t| {
        let lane = |t: usize| format!("{name}p{}.{}", t / 2, ["x", "y"][t % 2]);
        format!("select({}, {}, {name}o)", lane(t), lane(t + 1))
    }
}

/// The loop over read channels `i` of a dense forward or input gradient:
/// `unroll` channels a pass (`body(w, unroll)`, channels i..i + unroll),
/// then the rest one at a time (`body(w, 1)`); one plain loop where
/// `unroll` is 1.
fn read_channel_loop(w: &mut String, unroll: usize, body: &dyn Fn(&mut String, usize)) {
    if unroll > 1 {
        let _ = writeln!(w, "    var i = 0u;");
        let _ = writeln!(
            w,
            "    for (; i + {}u < p.c_in; i = i + {unroll}u) {{",
            unroll - 1
        );
        body(w, unroll);
        let _ = writeln!(w, "    }}");
        let _ = writeln!(w, "    for (; i < p.c_in; i = i + 1u) {{");
    } else {
        let _ = writeln!(w, "    for (var i = 0u; i < p.c_in; i = i + 1u) {{");
    }
    body(w, 1);
    let _ = writeln!(w, "    }}");
}

/// A module: the common header, the template, and `body`; the template's
/// loads of x apply a ReLU where `relu` (its RELU_IN).
fn module(body: &str, relu: bool) -> String {
    format!(
        "{}\n{TEMPLATE}\nconst RELU_IN = {relu};\n{body}",
        shaders::COMMON
    )
}

/// The start of a generated entry: its signature and linear index.
fn open_entry(w: &mut String, wg: u32) {
    shaders::open_entry(w, "conv_rows", wg);
}

/// A dense weight-gradient invocation's work: chunk `k` and the block of
/// `oc` output × `ic` input channels from `o0`, `i0`, with `oc{o}`, `ic{i}`
/// the channels clamped to the last (those past it are computed, never
/// stored).
fn weight_blocks_decode(w: &mut String, oc: usize, ic: usize) {
    let _ = writeln!(w, "    let ib = (p.c_in + {}u) / {ic}u;", ic - 1);
    let _ = writeln!(w, "    let ob = (p.c_out + {}u) / {oc}u;", oc - 1);
    let _ = writeln!(w, "    if idx >= p.chunks * ob * ib {{ return; }}");
    let _ = writeln!(w, "    let i0 = (idx % ib) * {ic}u;");
    let _ = writeln!(w, "    let t = idx / ib;");
    let _ = writeln!(w, "    let o0 = (t % ob) * {oc}u;");
    let _ = writeln!(w, "    let k = t / ob;");
    for o in 0..oc {
        let _ = writeln!(w, "    let oc{o} = min(o0 + {o}u, p.c_out - 1u);");
    }
    for i in 0..ic {
        let _ = writeln!(w, "    let ic{i} = min(i0 + {i}u, p.c_in - 1u);");
    }
}

/// The specialisations the portability test translates: every kernel
/// shape the op sets use (1×1, 3×3, 5×5, 7×7, 1×7, 7×1) at dilation 1
/// and 2, both kinds, all three directions, and the float4 pointwise ones.
pub fn representative_specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for depthwise in [true, false] {
        for (kh, kw) in [(1, 1), (3, 3), (5, 5), (7, 7), (1, 7), (7, 1)] {
            for dilation in [1, 2] {
                for dir in [
                    Direction::Forward,
                    Direction::InputGradient,
                    Direction::WeightGradient,
                ] {
                    let blocks: &[usize] = if depthwise {
                        &[1]
                    } else {
                        &[4, DENSE_CHANNELS]
                    };
                    for (&oc, stride) in blocks.iter().flat_map(|oc| [1, 2].map(move |s| (oc, s))) {
                        // A strided input gradient compiles its padding
                        // in: the "same" padding of the op sets.
                        let pad = if dir == Direction::InputGradient && stride > 1 {
                            ((kh - 1) * dilation / 2, (kw - 1) * dilation / 2)
                        } else {
                            (0, 0)
                        };
                        // Row blocks (`block_rows`): none, the fewest and the most.
                        let blocked = match dir {
                            Direction::Forward => true,
                            Direction::InputGradient => stride == 1,
                            Direction::WeightGradient => false,
                        };
                        // Strided input gradients: the residue kernel
                        // (1) and blocks of 2, 4 and 8 rows, depthwise and
                        // dense k×1 (`strided_dx_rows`).
                        let strided_dx = dir == Direction::InputGradient && stride > 1;
                        let rows: &[usize] = match (blocked, depthwise) {
                            (true, true) => &[DW_ROWS, 8],
                            (true, false) if kh > 1 && kw == 1 => &[1, DW_ROWS, 8],
                            // Dense 1×k (`dense_row_rows`): 4..=8.
                            (true, false) if kh == 1 && kw > 1 => &[1, 4, 8],
                            (false, _) if strided_dx && (depthwise || kw == 1) => &[1, 2, 4, 8],
                            _ => &[1],
                        };
                        let rows_first = rows[0];
                        for &rows in rows {
                            let spec = Spec {
                                wg: 0,
                                unroll: 1,
                                pairs: false,
                                cols: COLS,
                                depthwise,
                                kh,
                                kw,
                                dilation,
                                dir,
                                flat4: false,
                                oc,
                                // A dense k×k weight gradient reads one input channel, a 1×k one
                                // COLUMN_IC (CPU adapters), the others `oc`.
                                ic: match (dir, depthwise, kh, kw) {
                                    (Direction::WeightGradient, false, 1, 1) => oc,
                                    (Direction::WeightGradient, false, 1, _) => COLUMN_IC,
                                    (Direction::WeightGradient, false, _, _) => 1,
                                    _ => oc,
                                },
                                stride,
                                pad,
                                vec: 1,
                                rows,
                                quads: 1,
                                col_blocks: 0,
                                relu: false,
                                store: 1,
                                plane: None,
                                uniform: false,
                            };
                            v.push(spec);
                            // Windows (and a weight gradient's dy rows) as
                            // float pairs (`Spec::pairs`).
                            if dilation == 1 && rows == rows_first {
                                v.push(Spec {
                                    pairs: true,
                                    ..spec
                                });
                            }
                            // Rows of whole float4s or float2s, "same"
                            // column padding.
                            if stride == 1 {
                                for vec in [4, 2] {
                                    v.push(Spec {
                                        vec,
                                        pad: (0, (kw - 1) * dilation / 2),
                                        ..spec
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // Depthwise weight gradients in row groups: 1, 2 and 4 column blocks,
    // rows of scalars, float2s and float4s, stride 1 and 2.
    for (kh, kw) in [(3, 3), (5, 5), (7, 7)] {
        for (stride, vec) in [(1, 1), (1, 2), (1, 4), (2, 1)] {
            for col_blocks in [1, 2, 4] {
                v.push(Spec {
                    wg: 0,
                    unroll: 1,
                    pairs: false,
                    cols: COLS,
                    depthwise: true,
                    kh,
                    kw,
                    dilation: 1,
                    dir: Direction::WeightGradient,
                    flat4: false,
                    oc: 1,
                    ic: 1,
                    stride,
                    pad: (0, if vec > 1 { (kw - 1) / 2 } else { 0 }),
                    vec,
                    rows: WEIGHT_GROUP_ROWS,
                    quads: 1,
                    col_blocks,
                    relu: false,
                    store: 1,
                    plane: None,
                    uniform: false,
                });
                if vec == 1 {
                    let last = v[v.len() - 1];
                    v.push(Spec {
                        pairs: true,
                        ..last
                    });
                }
            }
        }
    }
    // Dense 7×1 weight gradients in row groups: 1 and 2 column blocks,
    // COLUMN_IC input channels, both channel blocks.
    for (stride, vec) in [(1, 1), (1, 2), (1, 4), (2, 1)] {
        for col_blocks in [1, 2] {
            for oc in [4, DENSE_CHANNELS] {
                v.push(Spec {
                    wg: 0,
                    unroll: 1,
                    pairs: false,
                    cols: COLS,
                    depthwise: false,
                    kh: 7,
                    kw: 1,
                    dilation: 1,
                    dir: Direction::WeightGradient,
                    flat4: false,
                    oc,
                    ic: COLUMN_IC,
                    stride,
                    pad: (0, 0),
                    vec,
                    rows: WEIGHT_GROUP_ROWS,
                    quads: 1,
                    col_blocks,
                    relu: false,
                    store: 1,
                    plane: None,
                    uniform: false,
                });
            }
        }
    }
    // Weight gradients over whole rows up to COLS wide (`weight_entry`
    // with `cols` < COLS): dense 1×1 in 16 × 16 channels, dense 1×7 in
    // ROW_WEIGHT_BLOCK's and in COLUMN_IC's, rows of scalars, float2s
    // (6 wide) and float4s (4 wide), and a strided depthwise 3×3; and
    // 1×7s in ROW_WEIGHT_BLOCK's over 8-column blocks.
    let (wo, wi) = ROW_WEIGHT_BLOCK;
    for (kh, kw, depthwise, oc, ic, cols, vec, stride) in [
        (1, 7, false, wo, wi, COLS, 1, 1),
        (1, 7, false, wo, wi, COLS, 2, 1),
        (1, 7, false, wo, wi, COLS, 4, 1),
        (1, 1, false, 16, 16, 7, 1, 1),
        (1, 7, false, wo, wi, 7, 1, 1),
        (1, 7, false, wo, wi, 6, 2, 1),
        (1, 7, false, DENSE_CHANNELS, COLUMN_IC, 4, 4, 1),
        (3, 3, true, 1, 1, 7, 1, 2),
    ] {
        for pairs in [false, true] {
            v.push(Spec {
                pairs: pairs && vec == 1,
                wg: 0,
                unroll: 1,
                cols,
                depthwise,
                kh,
                kw,
                dilation: 1,
                dir: Direction::WeightGradient,
                flat4: false,
                oc,
                ic,
                stride,
                pad: (0, if vec > 1 { (kw - 1) / 2 } else { 0 }),
                vec,
                rows: 1,
                quads: 1,
                col_blocks: 0,
                relu: false,
                store: 1,
                plane: None,
                uniform: false,
            });
        }
    }
    // Dense 1×1 forwards (stride 1 and 2), input gradients and weight
    // gradients over rows of scalars in the wider channel blocks
    // (`pointwise_block`; a weight gradient's at most 16 by 16).
    for oc in [16, 32] {
        for (dir, stride) in [
            (Direction::Forward, 1),
            (Direction::Forward, 2),
            (Direction::InputGradient, 1),
            (Direction::WeightGradient, 1),
            (Direction::WeightGradient, 2),
        ] {
            if dir == Direction::WeightGradient && oc > 16 {
                continue;
            }
            v.push(Spec {
                wg: 0,
                unroll: 1,
                pairs: false,
                cols: COLS,
                depthwise: false,
                kh: 1,
                kw: 1,
                dilation: 1,
                dir,
                flat4: false,
                oc,
                ic: oc,
                stride,
                pad: (0, 0),
                vec: 1,
                rows: 1,
                quads: 1,
                col_blocks: 0,
                relu: false,
                store: 1,
                plane: None,
                uniform: false,
            });
        }
    }
    for dir in [
        Direction::Forward,
        Direction::InputGradient,
        Direction::WeightGradient,
    ] {
        // One channel (depthwise and one group) takes oc = 1; the forward
        // and input gradient 2 or 4 float4s of positions.
        let quads: &[usize] = if dir == Direction::WeightGradient {
            &[1]
        } else {
            &[2, 4]
        };
        // The forward and input gradient also in `pointwise_block`'s 16 and
        // 32 channels.
        let blocks: &[(bool, usize)] = if dir == Direction::WeightGradient {
            &[(false, 4), (false, DENSE_CHANNELS), (true, 1)]
        } else {
            &[
                (false, 4),
                (false, DENSE_CHANNELS),
                (false, 16),
                (false, 32),
                (true, 1),
            ]
        };
        for &(depthwise, oc) in blocks {
            for &quads in quads {
                v.push(Spec {
                    wg: 0,
                    unroll: 1,
                    pairs: false,
                    cols: COLS,
                    depthwise,
                    kh: 1,
                    kw: 1,
                    dilation: 1,
                    dir,
                    flat4: true,
                    oc,
                    ic: oc,
                    stride: 1,
                    pad: (0, 0),
                    vec: 1,
                    rows: 1,
                    quads,
                    col_blocks: 0,
                    relu: false,
                    store: 1,
                    plane: None,
                    uniform: false,
                });
            }
        }
    }
    // Every forward again reading max(x, 0) (its loads: scalars, float2s,
    // float4s, the pointwise float4s).
    let relu: Vec<Spec> = v
        .iter()
        .filter(|s| s.dir == Direction::Forward)
        .map(|s| Spec { relu: true, ..*s })
        .collect();
    v.extend(relu);
    // Planes compiled in (`Spec::plane`): the stride-1 forwards and input
    // gradients over scalar rows in blocks of 8 rows, on a 7×7 plane with
    // "same" padding.
    let planes: Vec<Spec> = v
        .iter()
        .filter(|s| {
            s.dir != Direction::WeightGradient
                && s.stride == 1
                && s.vec == 1
                && s.rows == 8
                && !s.flat4
                && !s.relu
                && s.dilation == 1
        })
        .flat_map(|s| {
            let (ph, pw) = ((s.kh - 1) / 2, (s.kw - 1) / 2);
            // Also with its windows as float pairs.
            [false, true].map(|pairs| Spec {
                plane: Some([7, 7, 7, 7, ph, pw]),
                pairs,
                ..*s
            })
        })
        .collect();
    v.extend(planes);
    // Forwards and input gradients again reading their weights through a
    // uniform binding (`Spec::uniform`): the tap-major copies of the dense
    // kernels, the weights themselves of the depthwise and float4 ones.
    // Only the load changes, so one of each way of loading them: by kind,
    // direction, stride, rows and plane, for 1×1, 3×3 and 7×1 taps.
    let mut seen = std::collections::HashSet::new();
    let uniform: Vec<Spec> = v
        .iter()
        .filter(|s| {
            s.dir != Direction::WeightGradient
                && !s.relu
                && s.dilation == 1
                && [(1, 1), (3, 3), (7, 1)].contains(&(s.kh, s.kw))
                && seen.insert((
                    s.depthwise,
                    s.flat4,
                    s.dir,
                    s.stride,
                    s.rows > 1,
                    s.plane.is_some(),
                    (s.kh, s.kw),
                ))
        })
        .map(|s| Spec {
            uniform: true,
            ..*s
        })
        .collect();
    v.extend(uniform);
    // Whole rows (`Spec::cols`): one forward and one input gradient of
    // each kind and load width, 7, 14 and 28 columns where its vectors
    // divide them.
    let mut seen = std::collections::HashSet::new();
    let whole: Vec<Spec> = v
        .iter()
        .filter(|s| {
            s.dir != Direction::WeightGradient
                && !s.flat4
                && !s.relu
                && !s.uniform
                && s.plane.is_none()
                && (s.dir == Direction::Forward || s.stride == 1)
                && seen.insert((s.depthwise, s.dir, s.vec, s.store))
        })
        .flat_map(|s| {
            [7, 14, 28]
                .into_iter()
                .filter(|c| c % s.vec == 0 && c % s.store == 0)
                .map(|cols| Spec { cols, ..*s })
        })
        .collect();
    v.extend(whole);
    // Weight gradients in row groups over whole rows: one block of 7, 14
    // or 28 columns where their vectors divide them.
    let mut seen = std::collections::HashSet::new();
    let whole_weights: Vec<Spec> = v
        .iter()
        .filter(|s| s.col_blocks > 0 && seen.insert((s.depthwise, s.vec, s.stride, s.kh)))
        .flat_map(|s| {
            [7, 14, 28]
                .into_iter()
                .filter(|c| c % s.vec == 0)
                .map(|cols| Spec {
                    cols,
                    col_blocks: 1,
                    ..*s
                })
        })
        .collect();
    v.extend(whole_weights);
    // Workgroups of another size (`Spec::wg`): the size is all that
    // changes, so one kernel of each kind and direction.
    let mut seen = std::collections::HashSet::new();
    let sized: Vec<Spec> = v
        .iter()
        .filter(|s| seen.insert((s.depthwise, s.flat4, s.dir)))
        .map(|s| Spec { wg: 40, ..*s })
        .collect();
    v.extend(sized);
    // Two read channels a pass (`Spec::unroll`): the dense 1×1 and float4
    // pointwise forwards and stride-1 input gradients, rows and plain.
    let paired: Vec<Spec> = v
        .iter()
        .filter(|s| {
            !s.depthwise
                && s.kh * s.kw == 1
                && s.stride == 1
                && s.dir != Direction::WeightGradient
                && s.wg == 0
                && !s.uniform
        })
        .map(|s| Spec { unroll: 2, ..*s })
        .collect();
    v.extend(paired);
    v
}

/// The planes a kernel compiles in (`Spec::plane`): `plane`, the
/// kernel's [h, w, oh, ow, pad_h, pad_w] (`geometry`), where `spec` is a
/// forward or stride-1 input gradient on a CPU adapter (`wide` false) that
/// `depthwise_entry` or `dense_entry` runs, its whole written plane one
/// block (at most `cols` columns and `rows` rows), its window padded (so
/// there are loads to drop). Measured on lavapipe as shares of the step's
/// profile: the 7×7 planes' depthwise 5×5, 7×7 and dilated 3×3 and dense
/// 1×7 and 7×1 kernels 0.61–0.77 of their share before (BENCHMARKS.md,
/// "Twenty-second pass"); unpadded 1×1s and the 3×3s in blocks of 2 rows
/// (their columns alone constant) 0.79–1.0, not worth a module per plane.
fn plane_of(spec: &Spec, plane: [usize; 6], wide: bool) -> Option<[usize; 6]> {
    let row_entry = match spec.dir {
        Direction::Forward => true,
        Direction::InputGradient => spec.stride == 1,
        Direction::WeightGradient => false,
    };
    let [_, _, oh, ow, ph, pw] = plane;
    let one_block = ow <= spec.cols && oh <= spec.rows;
    (!wide && row_entry && !spec.flat4 && one_block && ph + pw > 0).then_some(plane)
}

/// `source` with the plane's parameters as constants: `p.h`, `p.w`,
/// `p.oh`, `p.ow`, `p.pad_h` and `p.pad_w` (not `p.w_o`, `p.has_bias`:
/// a name ends where an identifier does).
fn compile_plane(source: &str, [h, w, oh, ow, ph, pw]: [usize; 6]) -> String {
    let names = [
        ("p.pad_h", ph),
        ("p.pad_w", pw),
        ("p.oh", oh),
        ("p.ow", ow),
        ("p.h", h),
        ("p.w", w),
    ];
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    'scan: while let Some(at) = rest.find("p.") {
        let whole_word = !rest[..at].ends_with(ident);
        for (name, value) in names {
            let tail = &rest[at..];
            let ends = tail
                .strip_prefix(name)
                .is_some_and(|after| !after.starts_with(ident));
            if whole_word && ends {
                out.push_str(&rest[..at]);
                out.push_str(&format!("{value}u"));
                rest = &rest[at + name.len()..];
                continue 'scan;
            }
        }
        out.push_str(&rest[..at + 2]);
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
}

/// Whether `s` is a pointwise convolution the float4 kernels take.
fn flat4(s: &Conv2dShape) -> bool {
    s.kh == 1
        && s.kw == 1
        && s.stride == 1
        && s.pad_h == 0
        && s.pad_w == 0
        && s.groups == 1
        && (s.h * s.w).is_multiple_of(4)
}

/// Whether the input gradient is generated for this convolution: the
/// forward's conditions, and at stride 1 padding the flipped kernel can
/// mirror.
pub fn fits(s: &Conv2dShape) -> bool {
    fits_forward(s)
        && (s.stride > 1
            || (s.pad_h <= (s.kh - 1) * s.dilation && s.pad_w <= (s.kw - 1) * s.dilation))
}

/// Whether the forward and pass 1 of the weight gradient are generated for
/// this shape: stride 1 or 2, depthwise or one group, taps spanning at
/// most 12 (7 at dilation 2).
pub fn fits_forward(s: &Conv2dShape) -> bool {
    s.stride <= 2
        && (s.is_depthwise() || s.groups == 1)
        && (s.kh - 1) * s.dilation <= MAX_SPAN
        && (s.kw - 1) * s.dilation <= MAX_SPAN
}

/// What pass 1 of the weight gradient chunks, and the pixels in one: (n,
/// oy) rows, or float4s of positions for the float4 pointwise kernel.
pub fn weight_rows(s: &Conv2dShape) -> (usize, usize) {
    if flat4(s) {
        (s.n * s.h * s.w / 4, 4)
    } else {
        (s.n * s.oh(), s.ow())
    }
}

/// Invocations of pass 1 per chunk of rows (blocks of channel pairs).
pub fn weight_blocks(s: &Conv2dShape, wide: bool) -> usize {
    let spec = Spec::of(s, Direction::WeightGradient, wide);
    if s.is_depthwise() {
        s.c_out
    } else {
        s.c_out.div_ceil(spec.oc) * s.c_in.div_ceil(spec.ic)
    }
}

/// Channels per invocation of a dense kernel writing (or, for a 1×1
/// weight gradient, reading) `c` channels: 8 (each value loaded feeds more
/// of them), unless 4 computes fewer channels past the last: 4 or 12
/// channels would spend a third or half of an 8-block on copies of the
/// last (the width-4 network's first cells: measured on lavapipe in
/// BENCHMARKS.md, "Channel blocks").
pub fn channel_block(c: usize) -> usize {
    if c.div_ceil(4) * 4 < c.div_ceil(DENSE_CHANNELS) * DENSE_CHANNELS {
        4
    } else {
        DENSE_CHANNELS
    }
}

/// Channels per invocation of a dense 1×1 forward or stride-1 input
/// gradient over rows of scalars on a CPU adapter, writing `c` channels:
/// 32 or 16 where they divide `c`, else `channel_block`. Each input value
/// loaded feeds every channel of the block, and on llvmpipe the loads, not
/// the FMAs or the accumulators that spill, set the time: measured on
/// [32, 32, 7, 7] → 32 channels, in alternating rounds, 0.64–0.72 of the
/// 8-channel kernel's time at 32 channels a block and 0.74–0.83 at 16
/// (BENCHMARKS.md, "Twenty-second pass"). The float4 pointwise forward
/// and input gradient take the same blocks: on bench-small's planes they
/// gained little (0.80–1.0 at 16; the step 0.993 in alternating rounds),
/// on bench-medium's (16–64 channels) 0.80–0.84 of the 8-channel kernels'
/// time in the step's profile ("Twenty-seventh pass"). A weight
/// gradient's pass 1 takes blocks of up to 16 written by 16 read channels
/// (each x and dy value loaded feeds 16 products, not 8: 0.70–0.83 of the
/// 8-by-8 kernel's share of the step's profile; its 256 accumulators are
/// as many as the forward's at 32).
pub fn pointwise_block(c: usize) -> usize {
    [32, 16]
        .into_iter()
        .find(|&b| c.is_multiple_of(b))
        .unwrap_or_else(|| channel_block(c))
}

/// Output columns per invocation of a depthwise or dense forward or
/// stride-1 input gradient on a CPU adapter, writing rows `ow` wide in
/// blocks of `rows` rows: the whole row where it is at most 28 wide and the
/// block holds at most 98 outputs (7 rows of 14), else COLS. A block of
/// 8 columns leaves the last of a 7-, 14- or 28-wide row an eighth or half
/// empty, and each row of the block loads its window's k − 1 overlapping
/// columns again; a whole row loads them once. Measured on lavapipe, as
/// shares of bench-small's step profile against blocks of 8: 7- and
/// 14-wide rows 0.79–0.94 (dense 1×1, 1×7, 7×1; depthwise 3×3, 5×5, 7×7),
/// 28-wide rows in blocks of 2 (depthwise 3×3) 0.76–0.78; 28-wide rows in
/// blocks of 7 (196 outputs) 1.00–1.13 (BENCHMARKS.md, "Twenty-eighth
/// pass").
pub fn row_cols(ow: usize, rows: usize) -> usize {
    if ow <= WHOLE_ROW && rows * ow <= 98 {
        ow
    } else {
        COLS
    }
}

/// Output rows per invocation of a depthwise or dense forward or stride-1
/// input gradient on a CPU adapter, writing planes `oh` high, for a tap
/// span (kh − 1)·dilation read with `stride`: an invocation loads
/// (rows − 1)·stride + span + 1 input rows, so taller kernels share more of
/// them between more rows. Spans under 4 (3×3) take 2 (3 or 4 rows
/// measured no faster on lavapipe); the others the height in 4..=8 that
/// loads the fewest rows over the plane: 7 on the 28-, 14- and 7-high
/// planes of a 28×28 input. On lavapipe the accumulators that spill cost
/// less than the loads saved (a dense 7×1 kernel of 7 rows keeps 448):
/// dw 7×7 on 28×28 planes 3.6 → 1.8 ms, dense 7×1 4.3–4.7 → 3.0–3.2 ms
/// (BENCHMARKS.md, "Taller blocks"). GPUs keep short invocations (see
/// `Spec::of`).
pub fn block_rows(span: usize, stride: usize, oh: usize) -> usize {
    if span < 4 {
        return DW_ROWS;
    }
    (4..=8)
        .min_by_key(|&r| (oh.div_ceil(r) * ((r - 1) * stride + span + 1), r))
        .unwrap_or(DW_ROWS)
}

/// Output rows per invocation of a dense 1×k forward or stride-1 input
/// gradient on a CPU adapter, writing planes `oh` high: the height in
/// 4..=8 that computes the fewest rows past the plane's last, the taller
/// on a tie (7 on the 28-, 14- and 7-high planes of a 28×28 input). With
/// one row an invocation loads its 8 channels' weights for each tap (14
/// float4s a 1×7 input channel) beside 4 float4s of the row; with 7 the
/// weights once for 7 rows. Measured on lavapipe, 1×7 on the step's
/// shapes, in alternating rounds: 1.3–1.8× faster at 7 rows than at 1;
/// 4 as fast on 28-high planes and slower on 14- and 7-high ones (where
/// it computes rows past the plane); 2 between (BENCHMARKS.md,
/// "Nineteenth pass"). Dense 1×1 kernels on the 7-wide planes (the float4
/// pointwise ones do not fit) were no faster in rows, and stay at 1.
pub fn dense_row_rows(oh: usize) -> usize {
    (4..=8)
        .min_by_key(|&r| (oh.div_ceil(r) * r, std::cmp::Reverse(r)))
        .unwrap_or(DW_ROWS)
}

/// Rows per invocation of a strided input gradient in blocks
/// (`strided_dx_block_entry`, stride 2: a multiple of it), measured on
/// lavapipe over 2, 4, 6 and 8 (`bench --filter conv2d_backward_input`,
/// the `_s2` cases; BENCHMARKS.md, "Ninth pass"): 8 for a depthwise 7×7
/// (0.98 against 1.17 ms at 4), 2 for a 5×5 (0.68 against 0.85), 4 for
/// the rest (3×3 at dilation 1 and 2, the dense 7×1 and 1×1).
fn strided_dx_rows(s: &Conv2dShape) -> usize {
    let rows: usize = match (s.is_depthwise(), (s.kh - 1) * s.dilation) {
        (true, span) if span >= 6 => 8,
        (true, 4) if s.dilation == 1 => 2,
        _ => 4,
    };
    rows.div_ceil(s.stride) * s.stride
}

/// Pass 1 of dw for `s` (which must `fits_forward`): per-chunk partial sums
/// into `partial` ([chunks, weights]) over `chunk_rows` rows each (the
/// units of `weight_rows`).
pub fn weight_partial_kernel(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: &Buf,
    dy: &Buf,
    partial: &Buf,
    (chunk_rows, chunks): (usize, usize),
) -> Result<Kernel, GpuError> {
    debug_assert!(fits_forward(s));
    let kk = s.kh * s.kw;
    let params = [
        s.n,
        s.c_in,
        s.h,
        s.w,
        s.c_out,
        s.oh(),
        s.ow(),
        s.pad_h,
        s.pad_w,
        s.cpg_in() * kk,
        kk,
        0,
        chunk_rows,
        chunks,
    ]
    .map(|v| v as u32);
    Spec::of(s, Direction::WeightGradient, gpu.wide).launch(
        gpu,
        &params,
        &[(1, x), (4, dy), (6, partial)],
        chunks * weight_blocks(s, gpu.wide),
    )
}

/// Which direction a kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// y from x (slots: x, w, bias, y).
    Forward,
    /// dx from dy (slots: dy, w, dx): the correlation with the flipped kernel.
    InputGradient,
    /// Per-chunk partial sums of dw from x and dy (slots: x, dy, partial).
    WeightGradient,
}

/// The kernels for `s` (which must `fit`) in direction `dir`; `input` is
/// x or dy, `output` y or dx. A dense convolution's first kernel writes
/// the tap-major copy of its weights (`Spec::weights4`), into a buffer
/// allocated here (the weights' size) — unless `shared` already holds one
/// in this layout, which the convolution then reads. A forward reads
/// max(x, 0) where `relu` (`Spec::relu`).
#[allow(clippy::too_many_arguments)]
pub fn kernels(
    gpu: &Gpu,
    s: &Conv2dShape,
    dir: Direction,
    input: &Buf,
    w: &Buf,
    bias: Option<&Buf>,
    output: &Buf,
    shared: SharedCopies,
    relu: bool,
) -> Result<Vec<Kernel>, GpuError> {
    debug_assert!(dir != Direction::WeightGradient && generated(s, dir));
    debug_assert!(!relu || dir == Direction::Forward);
    let spec = Spec {
        relu,
        ..Spec::of(s, dir, gpu.wide)
    };
    let ((ci, h, wd), (co, oh, ow), pad, (w_o, w_i)) = geometry(s, dir);
    let params = [
        s.n,
        ci,
        h,
        wd,
        co,
        oh,
        ow,
        pad.0,
        pad.1,
        w_o,
        w_i,
        bias.is_some() as usize,
        0,
        0,
    ]
    .map(|v| v as u32);
    let spec = Spec {
        plane: plane_of(&spec, [h, wd, oh, ow, pad.0, pad.1], gpu.wide),
        ..spec
    };
    let invocations = spec.invocations(s);
    // Without a bias the weights stand in for its slot (never read as one).
    if !spec.weights4() {
        // The weights themselves through a uniform binding where one fits
        // from their start within their buffer.
        let spec = Spec {
            uniform: spans_uniform(gpu, w),
            ..spec
        };
        let read = spec.weights_binding(w);
        let slots = [(1, input), (2, &read), (3, bias.unwrap_or(w)), (5, output)];
        return Ok(vec![spec.launch(gpu, &params, &slots, invocations)?]);
    }
    let CopyNeed { layout, len, .. } = copy_need(spec, s, dir);
    let spec = Spec {
        uniform: reads_uniform(gpu, len),
        ..spec
    };
    let mut kernels = Vec::with_capacity(2);
    let known = shared.as_ref().and_then(|(c, t)| c.get(*t, &layout));
    let w4 = match known {
        Some(b) => b,
        None => {
            // Room for the uniform binding past a shorter copy.
            let room = if spec.uniform { UNIFORM_FLOATS } else { len };
            let w4 = gpu.alloc("conv2d.weights4", room)?.view(len);
            kernels.push(gpu.kernel_generated(
                &spec.weights4_name(),
                &|| Ok(spec.weights4_source()),
                "conv_rows",
                &params,
                &[(2, w), (6, &w4)],
                grid_1d(len, spec.workgroup()),
            )?);
            if let Some((c, t)) = shared {
                c.insert(t, layout, w4.clone());
            }
            w4
        }
    };
    let mut params = params;
    // The kernel reads the copy: a read channel's weights are w_i float4s.
    params[10] = (len / ci / 4) as u32;
    let read = spec.weights_binding(&w4);
    let slots = [
        (1, input),
        (2, &read),
        (3, bias.unwrap_or(&w4)),
        (5, output),
    ];
    kernels.push(spec.launch(gpu, &params, &slots, invocations)?);
    Ok(kernels)
}

/// The weights as a uniform binding (`Spec::uniform`), and one float of
/// them for the kernels that read the weights themselves.
const UNIFORM_DECL: &str = "@group(0) @binding(2) var<uniform> wu: array<vec4<f32>, 4096>;\n";
const UNIFORM_AT: &str = "fn wu_at(i: u32) -> f32 { return wu[i / 4u][i % 4u]; }\n";
const _: () = assert!(UNIFORM_WEIGHT_BYTES == 4096 * 16);

/// Floats of the uniform binding a kernel reads its weights through.
pub const UNIFORM_FLOATS: usize = UNIFORM_WEIGHT_BYTES as usize / 4;

/// Whether a dense kernel whose tap-major copy holds `len` floats reads
/// it through a uniform binding (`Spec::uniform`).
fn reads_uniform(gpu: &Gpu, len: usize) -> bool {
    gpu.uniform_weights && len <= UNIFORM_FLOATS
}

/// Places for tap-major copies of `lens` floats side by side in one
/// buffer from `start` (as `engine::place`), and the buffer's length. A
/// copy read through a uniform binding starts where a uniform binding may,
/// and the binding's fixed size may reach past the last copy.
pub fn place_copies(
    gpu: &Gpu,
    lens: impl IntoIterator<Item = usize>,
    start: usize,
) -> (Vec<usize>, usize) {
    if !gpu.uniform_weights {
        return crate::engine::place(lens, gpu.offset_align(), start);
    }
    let align = gpu.offset_align().max(gpu.uniform_offset_align());
    let (at, end) = crate::engine::place(lens, align, start.next_multiple_of(align));
    (at, end + UNIFORM_FLOATS)
}

/// Whether a kernel reading the weights `w` themselves (depthwise, float4
/// pointwise) reads them through a uniform binding (`Spec::uniform`): the
/// binding starts where theirs does and must lie within their buffer.
fn spans_uniform(gpu: &Gpu, w: &Buf) -> bool {
    gpu.uniform_weights
        && w.len <= UNIFORM_FLOATS
        && (w.offset / 4).is_multiple_of(gpu.uniform_offset_align() as u64)
        && w.offset + UNIFORM_WEIGHT_BYTES <= w.raw().size()
}

/// (read channels, planes), (written channels, planes), padding and the
/// weights' strides (w_o, w_i) of a kernel for `s` in `dir`.
type Geometry = (
    (usize, usize, usize),
    (usize, usize, usize),
    (usize, usize),
    (usize, usize),
);

fn geometry(s: &Conv2dShape, dir: Direction) -> Geometry {
    let kk = s.kh * s.kw;
    if dir == Direction::InputGradient {
        // The flipped kernel reads dy with the padding that brings every
        // tap that reached it back: (k − 1) · dilation − pad. (A strided
        // input gradient has the convolution's own padding compiled in.)
        let pad = if s.stride > 1 {
            (s.pad_h, s.pad_w)
        } else {
            (
                (s.kh - 1) * s.dilation - s.pad_h,
                (s.kw - 1) * s.dilation - s.pad_w,
            )
        };
        (
            (s.c_out, s.oh(), s.ow()),
            (s.c_in, s.h, s.w),
            pad,
            (kk, s.cpg_in() * kk),
        )
    } else {
        (
            (s.c_in, s.h, s.w),
            (s.c_out, s.oh(), s.ow()),
            (s.pad_h, s.pad_w),
            (s.cpg_in() * kk, kk),
        )
    }
}

/// The tap-major copy of its weights a kernel reads (`Spec::weights4`).
#[derive(Clone, Debug)]
pub struct CopyNeed {
    spec: Spec,
    /// What the copy depends on: the module and what its parameters say of
    /// the weights (the channels read and written and the weights'
    /// strides). Kernels whose copies share a layout share the copy.
    pub layout: String,
    /// Elements.
    pub len: usize,
    /// Written channels, the weights' strides.
    co: usize,
    w_o: usize,
    w_i: usize,
}

fn copy_need(spec: Spec, s: &Conv2dShape, dir: Direction) -> CopyNeed {
    let ((ci, ..), (co, ..), _, (w_o, w_i)) = geometry(s, dir);
    CopyNeed {
        spec,
        layout: format!("{}/{ci}x{co}/{w_o},{w_i}", spec.weights4_name()),
        len: spec.weights4_len(ci, co),
        co,
        w_o,
        w_i,
    }
}

/// Whether `conv2d` runs this file's generated kernel for `s` in `dir`
/// (forward: `fits_forward`; input gradient: `fits`; weight gradient's pass
/// 1: `fits_forward`).
pub fn generated(s: &Conv2dShape, dir: Direction) -> bool {
    match dir {
        Direction::InputGradient => fits(s),
        Direction::Forward | Direction::WeightGradient => fits_forward(s),
    }
}

/// The tap-major weight copy the convolution `s` reads in `dir`, where its
/// kernel reads one (`Spec::weights4`): what a plan writes ahead in a
/// [`CopyBatch`]. None where it reads the weights themselves.
pub fn weight_copy(gpu: &Gpu, s: &Conv2dShape, dir: Direction) -> Option<CopyNeed> {
    if !generated(s, dir) {
        return None;
    }
    let spec = Spec::of(s, dir, gpu.wide);
    spec.weights4().then(|| copy_need(spec, s, dir))
}

/// Tap-major weight copies of one module written by one dispatch: a plan
/// writes all the copies it can before the first convolution reads one
/// (the search step's 1,050 copies in 5 dispatches, one per tap count,
/// channel block and flip). The weights must lie in one buffer and the
/// copies in another. Workgroup g takes row g of a table: the weights'
/// and the copy's offsets, the first element and the count (≤ 64), then
/// the written channels, their blocks and the weights' strides.
pub struct CopyBatch {
    spec: Spec,
    weights: Buf,
    copies: Buf,
    rows: Vec<u32>,
}

impl CopyBatch {
    const ROW: usize = 64;

    /// A batch of `need`'s module reading `w`'s buffer, writing `copy`'s.
    pub fn new(need: &CopyNeed, w: &Buf, copy: &Buf) -> CopyBatch {
        CopyBatch {
            spec: need.spec,
            weights: w.whole().0,
            copies: copy.whole().0,
            rows: Vec::new(),
        }
    }

    /// Whether the copy `need` of `w` into `copy` can join this batch.
    pub fn takes(&self, need: &CopyNeed, w: &Buf, copy: &Buf) -> bool {
        need.spec.weights4_name() == self.spec.weights4_name()
            && w.same_buffer(&self.weights)
            && copy.same_buffer(&self.copies)
    }

    /// Add the copy `need` of `w` into `copy` to the first of `batches`
    /// that takes it, or to a new one.
    pub fn join(batches: &mut Vec<CopyBatch>, need: &CopyNeed, w: &Buf, copy: &Buf) {
        match batches.iter_mut().find(|b| b.takes(need, w, copy)) {
            Some(b) => b.push(need, w, copy),
            None => {
                let mut b = CopyBatch::new(need, w, copy);
                b.push(need, w, copy);
                batches.push(b);
            }
        }
    }

    /// Copy `w` into `copy` (`need.len` long) as `need` lays it out.
    pub fn push(&mut self, need: &CopyNeed, w: &Buf, copy: &Buf) {
        assert!(
            self.takes(need, w, copy),
            "conv2d_rows: copy outside its batch"
        );
        assert_eq!(copy.len, need.len, "conv2d_rows: copy of the wrong length");
        let (src, dst) = (w.whole().1, copy.whole().1);
        let cblocks = need.co.div_ceil(self.spec.oc);
        span_rows(&mut self.rows, need.len, Self::ROW, |at, count| {
            [src, dst, at, count, need.co, cblocks, need.w_o, need.w_i]
        });
    }

    /// The one dispatch (it keeps the table alive).
    pub fn kernel(self, gpu: &Gpu) -> Result<Kernel, GpuError> {
        let rows = self.rows.len() / 8;
        let table = gpu.upload_u32("conv2d.copy_rows", &self.rows)?;
        let mut params = [0u32; 14];
        params[0] = rows as u32;
        let name = format!("{}.batched", self.spec.weights4_name());
        let spec = self.spec;
        gpu.kernel_generated(
            &name,
            &|| Ok(spec.weights4_batched_source()),
            "conv_rows",
            &params,
            &[(2, &self.weights), (6, &self.copies), (7, &table)],
            grid_1d(rows * Self::ROW, Self::ROW as u32),
        )
    }
}

/// Tap-major weight copies (`Spec::weights4`) a plan has recorded, by the
/// weight tensor (a key the caller chooses) and the copy's layout: the
/// convolutions that read one tensor in one layout share its copy, and
/// the kernel writing it runs once — the search step's architecture pass
/// and weight pass read the same weights, forward and flipped. The caller
/// must [`WeightCopies::forget`] a tensor whenever a kernel writes it.
#[derive(Default)]
pub struct WeightCopies {
    by_weight: HashMap<usize, Vec<(String, Buf)>>,
}

/// A plan's copies and the key of this convolution's weights, or None to
/// write a private copy (tests, benchmarks).
pub type SharedCopies<'a> = Option<(&'a mut WeightCopies, usize)>;

impl WeightCopies {
    fn get(&self, weight: usize, layout: &str) -> Option<Buf> {
        let copies = self.by_weight.get(&weight)?;
        copies
            .iter()
            .find(|(l, _)| l == layout)
            .map(|(_, b)| b.clone())
    }

    /// `copy` holds `weight` in `layout` (written by a plan's
    /// [`CopyBatch`] before anything reads it).
    pub fn insert(&mut self, weight: usize, layout: String, copy: Buf) {
        self.by_weight
            .entry(weight)
            .or_default()
            .push((layout, copy));
    }

    /// `weight` was written: its copies are stale.
    pub fn forget(&mut self, weight: usize) {
        self.by_weight.remove(&weight);
    }
}

#[cfg(test)]
mod tests {
    use super::{
        block_rows, compile_plane, dense_row_rows, Direction, Spec, COLUMN_IC, ROW_WEIGHT_BLOCK,
    };
    use crate::ops::conv2d::Conv2dShape;

    fn row_conv(n: usize, c: usize, hw: usize, kh: usize, kw: usize, stride: usize) -> Conv2dShape {
        Conv2dShape {
            n,
            c_in: c,
            h: hw,
            w: hw,
            c_out: c,
            kh,
            kw,
            stride,
            pad_h: kh / 2,
            pad_w: kw / 2,
            dilation: 1,
            groups: 1,
        }
    }

    /// A dense forward or input gradient on a CPU adapter writes 16
    /// channels an invocation where 16 divide them and the dispatch keeps
    /// a workgroup of 64: bench-small's and bench-medium's 1×7 on 7×7
    /// planes and the verify cases that exercise it, not 8 images of them
    /// (16 invocations), not 24 channels, not on a GPU; the weight
    /// gradient of a 1×k in its own blocks.
    #[test]
    fn dense_blocks_widen_only_where_workgroups_stay() {
        let oc = |s: &Conv2dShape, dir, wide| Spec::of(s, dir, wide).oc;
        let (fwd, dx, dw) = (
            Direction::Forward,
            Direction::InputGradient,
            Direction::WeightGradient,
        );
        assert_eq!(
            oc(&row_conv(32, 32, 7, 1, 7, 1), fwd, false),
            16,
            "bench-small"
        );
        assert_eq!(oc(&row_conv(8, 32, 7, 1, 7, 1), fwd, false), 8, "8 images");
        assert_eq!(
            oc(&row_conv(64, 64, 7, 1, 7, 1), fwd, false),
            16,
            "bench-medium"
        );
        assert_eq!(oc(&row_conv(64, 64, 7, 1, 7, 1), dx, false), 16);
        assert_eq!(oc(&row_conv(64, 64, 7, 1, 7, 1), fwd, true), 8, "a GPU");
        // The weight gradient of a 1×k takes ROW_WEIGHT_BLOCK's 16 × 8
        // on a CPU adapter (a k×1's stays narrow, a GPU's one channel).
        let wb = |s: &Conv2dShape, wide| {
            let spec = Spec::of(s, dw, wide);
            (spec.oc, spec.ic)
        };
        assert_eq!(wb(&row_conv(64, 64, 7, 1, 7, 1), false), ROW_WEIGHT_BLOCK);
        assert_eq!(wb(&row_conv(64, 24, 7, 1, 7, 1), false), (8, COLUMN_IC));
        assert_eq!(wb(&row_conv(64, 64, 7, 7, 1, 1), false), (8, COLUMN_IC));
        assert_eq!(wb(&row_conv(64, 64, 7, 1, 7, 1), true), (8, 1));
        assert_eq!(oc(&row_conv(64, 24, 7, 1, 7, 1), fwd, false), 8);
        // `verify`'s full set: a 1×7 both ways, a strided 7×1's input
        // gradient.
        assert_eq!(oc(&row_conv(8, 32, 28, 1, 7, 1), fwd, false), 16);
        assert_eq!(oc(&row_conv(8, 32, 28, 1, 7, 1), dx, false), 16);
        assert_eq!(oc(&row_conv(16, 32, 28, 7, 1, 2), dx, false), 16);
    }

    /// The planes of a 28×28 input take 7 rows (no row computed past the
    /// last); 3×3 keeps 2; a 9-high plane takes 5 + 4, not 8 + 1.
    #[test]
    fn depthwise_rows_fit_the_plane() {
        for oh in [28, 14, 7] {
            assert_eq!(block_rows(6, 1, oh), 7, "7×7 on {oh} rows");
            assert_eq!(block_rows(4, 1, oh), 7, "5×5 on {oh} rows");
        }
        assert_eq!(block_rows(6, 2, 14), 7, "7×7 stride 2");
        assert_eq!(block_rows(2, 1, 28), 2, "3×3");
        assert_eq!(block_rows(6, 1, 9), 5);
        assert_eq!(block_rows(6, 1, 8), 8);
        assert!((1..64).all(|oh| (2..=8).contains(&block_rows(8, 1, oh))));
    }

    /// The plane's parameters become constants; other names that start
    /// alike stay.
    #[test]
    fn compile_plane_replaces_whole_names_only() {
        let src =
            "let a = p.h + p.has_bias + p.w_o + p.w + p.oh * p.ow + p.pad_h - p.pad_w + xp.h;";
        assert_eq!(
            compile_plane(src, [1, 2, 3, 4, 5, 6]),
            "let a = 1u + p.has_bias + p.w_o + 2u + 3u * 4u + 5u - 6u + xp.h;"
        );
    }

    /// A dense 1×k takes 7 rows on a 28×28 input's planes, 8 on a 32×32
    /// input's, and the fewest rows computed past the plane elsewhere.
    #[test]
    fn dense_row_rows_fit_the_plane() {
        for (oh, rows) in [
            (28, 7),
            (14, 7),
            (7, 7),
            (32, 8),
            (16, 8),
            (5, 5),
            (3, 4),
            (11, 6),
        ] {
            assert_eq!(dense_row_rows(oh), rows, "{oh} rows");
        }
        for oh in 1..64 {
            let r = dense_row_rows(oh);
            let past = oh.div_ceil(r) * r - oh;
            assert!((4..=8).contains(&r));
            assert!((4..=8).all(|q| past <= oh.div_ceil(q) * q - oh), "{oh}");
        }
    }
}
