// Stride-1 convolution kernels written out per tap shape: src/ops/
// conv2d_rows.rs appends one generated entry point, `conv_rows`, to this
// header for each (kind, kh, kw, dilation, flip) a graph uses.
//
// Why generated: on CPU adapters such as lavapipe every invocation's load
// from a storage buffer is a scalar load, so loads, not arithmetic, bound a
// convolution, and the way to fewer loads is to keep an input row window,
// the taps' weights and a block of accumulators in registers. Loops over
// register arrays only stay in registers if they are fully unrolled, which
// the drivers do not do reliably; a generated entry is unrolled by
// construction. Measured on lavapipe, depthwise 3×3: the same kernel as
// loops over private arrays was 8.7× slower than written out.
//
// Forward and input gradient read "input planes" and write "output
// planes": the input
// gradient is the correlation of dy with the flipped kernel (and, dense,
// with input and output channels swapped), which the caller sets up through
// the padding and the weight strides below. The weight gradient writes
// per-chunk partial sums that conv2d.wgsl's backward_weight_finish adds up.
// Slots as in conv2d.wgsl.

struct Params {
    n: u32,
    // Channels and planes of the tensor read and of the tensor written.
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    oh: u32,
    ow: u32,
    pad_h: u32,
    pad_w: u32,
    // Weight of (written channel o, read channel i, tap t) at
    // o · w_o + i · w_i + t (t counted backwards when flipped). The dense
    // kernels read the tap-major copy instead (`weights4`), where w_i is
    // the float4s per read channel.
    w_o: u32,
    w_i: u32,
    has_bias: u32,
    // Weight gradient: (n, oy) rows per chunk, and the number of chunks.
    chunk_rows: u32,
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> partial: array<f32>;
// The pointwise float4 kernels' views of the same slots, and the dense
// kernels' view of their weights in the tap-major copy (`weights4` below).
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wt4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out4: array<vec4<f32>>;
// Rows of whole float2s (14 wide: a reduced 28×28 input's).
@group(0) @binding(1) var<storage, read> x2: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> dy2: array<vec2<f32>>;
// Written rows of whole float2s (`Spec::store`).
@group(0) @binding(5) var<storage, read_write> out2: array<vec2<f32>>;

// A forward that fuses the ReLU before it reads max(x, 0): RELU_IN is a
// constant each generated module declares, so the select compiles away.
fn relu_in(v: f32) -> f32 {
    return select(v, max(v, 0.0), RELU_IN);
}
fn relu_in4(v: vec4<f32>) -> vec4<f32> {
    return select(v, max(v, vec4(0.0)), RELU_IN);
}
fn relu_in2(v: vec2<f32>) -> vec2<f32> {
    return select(v, max(v, vec2(0.0)), RELU_IN);
}

// x[row + clamp(ix)] where the column and the row lie inside the plane,
// else 0 (the padding): branch-free, so the unrolled code stays straight.
fn x_in(row: u32, row_in: bool, ix: i32) -> f32 {
    let v = relu_in(x[row + u32(clamp(ix, 0, i32(p.w) - 1))]);
    return select(0.0, v, row_in && ix >= 0 && ix < i32(p.w));
}

// Pair i of x (`Spec::pairs`), clamped to the tensor.
fn x_pair(i: i32) -> vec2<f32> {
    return x2[u32(clamp(i, 0, i32(arrayLength(&x2)) - 1))];
}

// Pair i of dy, clamped to the tensor.
fn dy_pair(i: i32) -> vec2<f32> {
    return dy2[u32(clamp(i, 0, i32(arrayLength(&dy2)) - 1))];
}

// x_in's value v of column ix, loaded as part of a pair.
fn x_col(v: f32, row_in: bool, ix: i32) -> f32 {
    return select(0.0, relu_in(v), row_in && ix >= 0 && ix < i32(p.w));
}

// x_in over float4s, for planes whose rows are whole float4s: the 4
// columns from c (a multiple of 4) lie inside the row or outside together.
fn x_in4(row: u32, row_in: bool, c: i32) -> vec4<f32> {
    let v = relu_in4(x4[(row + u32(clamp(c, 0, i32(p.w) - 4))) / 4u]);
    return select(vec4(0.0), v, row_in && c >= 0 && c < i32(p.w));
}

// x_in4 over float2s, for planes whose rows are whole float2s.
fn x_in2(row: u32, row_in: bool, c: i32) -> vec2<f32> {
    let v = relu_in2(x2[(row + u32(clamp(c, 0, i32(p.w) - 2))) / 2u]);
    return select(vec2(0.0), v, row_in && c >= 0 && c < i32(p.w));
}
