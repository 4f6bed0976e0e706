// Max and average pooling written out per window shape: src/ops/
// pool_rows.rs appends one generated entry point, `pool_rows`, to this
// header for each (kind, direction, k, stride, pad) a graph uses; pool.wgsl
// keeps the general kernels for the shapes that do not fit.
//
// Why generated (as conv2d_rows.wgsl): on CPU adapters every load from a
// storage buffer is a scalar load, and pool.wgsl's kernels load each input
// cell once per window that holds it (and, backward, each covering output's
// dy and argmax once per input cell). Here an invocation takes 8 outputs
// (forward) or 8 input cells (backward) of one row and loads the rows they
// share once, unrolled so the values stay in registers.
//
// Slots and Params as in pool.wgsl; `total` is the number of invocations.
// A forward with an evaluation batch norm fused after it (`graph::fuse`)
// also reads the running statistics (slots 2 and 4) and, with affine, γ
// and β (5, 6): y = (pool − mean)·invstd·γ + β, as batchnorm.wgsl's
// eval_forward computes it, per plane of `c` channels.

struct Params {
    total: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad: u32,
    c: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> arg_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read_write> arg_out: array<u32>;
// The fused batch norm's statistics and affine parameters.
@group(0) @binding(2) var<storage, read> bn_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> bn_var: array<f32>;
@group(0) @binding(5) var<storage, read> bn_gamma: array<f32>;
@group(0) @binding(6) var<storage, read> bn_beta: array<f32>;
// The forward's views of x for rows of whole float4s or float2s.
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> src2: array<vec2<f32>>;

// Valid input cells along one axis of the window starting at `start`.
fn span(start: i32, k: i32, len: u32) -> i32 {
    return min(start + k, i32(len)) - max(start, 0);
}
