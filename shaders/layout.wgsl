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
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

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
        dst[plane * per + r] = v;
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
