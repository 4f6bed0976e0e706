// Data movement: channel concat/split one part at a time (a dispatch binds at
// most 8 storage buffers, so a K-way concat is K dispatches), and a spatial
// slice with offset and zero padding. Slots: src read, dst written. Every
// entry writes each destination element from one invocation (a gather).

struct Params {
    // Planes the z grid strides over: the batch for concat/split, batch ×
    // channels for slice.
    n: u32,
    // concat/split: a part [batch, cp, hw] sits at channel offset `off` of
    // the whole [batch, cw, hw].
    cp: u32,
    cw: u32,
    off: u32,
    hw: u32,
    // slice: x is [planes, h, w], y is [planes, oh, ow], y[i, j] = x[i + oy, j + ox]
    // inside x, else 0.
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    oy: u32,
    ox: u32,
    // slice forward: 1 to take max(x, 0) as it reads (a fused ReLU).
    relu: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// The second addend of a part that is a sum (channel_insert_add*).
@group(0) @binding(3) var<storage, read> src_b: array<f32>;

// Every entry: x and y index an element within one plane (batch item of a
// part, or image plane of a slice), z strides over the planes. An index
// within a plane is computed once per invocation, not once per element:
// on CPU adapters an integer division is a scalar instruction per lane,
// and with one per element it cost more than the copy.

// src = part, dst = whole.
@compute @workgroup_size(256)
fn channel_insert(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let per = p.cp * p.hw;
    if i >= per { return; }
    for (var b = gid.z; b < p.n; b = b + nwg.z) {
        dst[(b * p.cw + p.off) * p.hw + i] = src[b * per + i];
    }
}

// The same slots as float4s, for planes of whole float4s (28×28, 14×14):
// p.hw then counts float4s. On CPU adapters a float4 load or store costs
// about what a scalar one does.
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> src4b: array<vec4<f32>>;

@compute @workgroup_size(256)
fn channel_insert4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let per = p.cp * p.hw;
    if i >= per { return; }
    for (var b = gid.z; b < p.n; b = b + nwg.z) {
        dst4[(b * p.cw + p.off) * p.hw + i] = src4[b * per + i];
    }
}

@compute @workgroup_size(256)
fn channel_extract4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let per = p.cp * p.hw;
    if i >= per { return; }
    for (var b = gid.z; b < p.n; b = b + nwg.z) {
        dst4[b * per + i] = src4[(b * p.cw + p.off) * p.hw + i];
    }
}

// src = whole, dst = part.
@compute @workgroup_size(256)
fn channel_extract(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let per = p.cp * p.hw;
    if i >= per { return; }
    for (var b = gid.z; b < p.n; b = b + nwg.z) {
        dst[b * per + i] = src[(b * p.cw + p.off) * p.hw + i];
    }
}

// src = x, dst = y; one invocation per element of a y plane.
@compute @workgroup_size(256)
fn slice_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_index(gid, nwg);
    let per = p.oh * p.ow;
    if r >= per { return; }
    let yi = r / p.ow;
    let si = yi + p.oy;
    let sj = r - yi * p.ow + p.ox;
    let inside = si < p.h && sj < p.w;
    let at = si * p.w + sj;
    for (var plane = gid.z; plane < p.n; plane = plane + nwg.z) {
        var v = 0.0;
        if inside {
            v = src[plane * p.h * p.w + at];
        }
        dst[plane * per + r] = select(v, max(v, 0.0), p.relu == 1u);
    }
}

// src = dy, dst = dx; one invocation per element of a dx plane: a gather
// of the one dy element (if any) that read it.
@compute @workgroup_size(256)
fn slice_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_index(gid, nwg);
    let per = p.h * p.w;
    if r >= per { return; }
    let xi = r / p.w;
    let xj = r - xi * p.w;
    let inside = xi >= p.oy && xj >= p.ox && xi - p.oy < p.oh && xj - p.ox < p.ow;
    let at = (xi - p.oy) * p.ow + xj - p.ox;
    for (var plane = gid.z; plane < p.n; plane = plane + nwg.z) {
        var v = 0.0;
        if inside {
            v = src[plane * p.oh * p.ow + at];
        }
        dst[plane * per + r] = v;
    }
}

// The slices of FactorizedReduce (column offset 1, the width kept) over
// planes of whole float4s: an output float4 is the last three columns of
// one input float4 and the first of the next, two loads and one store where
// the scalar entries take four of each. p.w counts float4s here.

// src4 = x, dst4 = y; one invocation per float4 of a y plane.
@compute @workgroup_size(256)
fn slice_forward4_x1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_index(gid, nwg);
    let per = p.oh * p.w;
    if r >= per { return; }
    let yi = r / p.w;
    let q = r - yi * p.w;
    let si = yi + p.oy;
    // Past the last row both loads read the plane's last float4 (kept in
    // bounds) and are not taken; past the last float4 of a row, the next.
    let row_in = si < p.h;
    let next_in = row_in && q + 1u < p.w;
    let at = min(si, p.h - 1u) * p.w + q;
    let at_next = min(at + 1u, p.h * p.w - 1u);
    for (var plane = gid.z; plane < p.n; plane = plane + nwg.z) {
        let base = plane * p.h * p.w;
        let a = select(vec4(0.0), src4[base + at], row_in);
        let b = select(0.0, src4[base + at_next].x, next_in);
        let v = vec4(a.y, a.z, a.w, b);
        dst4[plane * per + r] = select(v, max(v, vec4(0.0)), p.relu == 1u);
    }
}

// src4 = dy, dst4 = dx; one invocation per float4 of a dx plane: column j
// of dx holds dy's column j − 1 of row i − oy.
@compute @workgroup_size(256)
fn slice_backward4_x1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_index(gid, nwg);
    let per = p.h * p.w;
    if r >= per { return; }
    let xi = r / p.w;
    let q = r - xi * p.w;
    let row_in = xi >= p.oy && xi - p.oy < p.oh;
    let prev_in = row_in && q > 0u;
    let at = min(select(0u, xi - p.oy, xi >= p.oy), p.oh - 1u) * p.w + q;
    let at_prev = select(at, at - 1u, at > 0u);
    for (var plane = gid.z; plane < p.n; plane = plane + nwg.z) {
        let base = plane * p.oh * p.w;
        let d = select(vec4(0.0), src4[base + at], row_in);
        let c = select(0.0, src4[base + at_prev].w, prev_in);
        dst4[plane * per + r] = vec4(c, d.x, d.y, d.z);
    }
}

// A part that is the sum of two tensors (an add fused into the concat that
// alone reads it: `graph::fuse_add_concats`) written straight into its
// channel range: src + src_b, no sum written and read back.
@compute @workgroup_size(256)
fn channel_insert_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let per = p.cp * p.hw;
    if i >= per { return; }
    for (var b = gid.z; b < p.n; b = b + nwg.z) {
        dst[(b * p.cw + p.off) * p.hw + i] = src[b * per + i] + src_b[b * per + i];
    }
}

@compute @workgroup_size(256)
fn channel_insert_add4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let per = p.cp * p.hw;
    if i >= per { return; }
    for (var b = gid.z; b < p.n; b = b + nwg.z) {
        dst4[(b * p.cw + p.off) * p.hw + i] = src4[b * per + i] + src4b[b * per + i];
    }
}
