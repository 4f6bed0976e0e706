// Data movement: channel concat/split one part at a time (a dispatch binds at
// most 8 storage buffers, so a K-way concat is K dispatches), and a spatial
// slice with offset and zero padding. Slots: src read, dst written. Every
// entry writes each destination element from one invocation (a gather).

struct Params {
    // Invocations: elements of the tensor written.
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

// Index in the whole tensor of element i of the part.
fn whole_index(i: u32) -> u32 {
    let per = p.cp * p.hw;
    let b = i / per;
    return (b * p.cw + p.off) * p.hw + (i - b * per);
}

// src = part, dst = whole.
@compute @workgroup_size(256)
fn channel_insert(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    dst[whole_index(i)] = src[i];
}

// src = whole, dst = part.
@compute @workgroup_size(256)
fn channel_extract(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    dst[i] = src[whole_index(i)];
}

// src = x, dst = y; one invocation per element of y.
@compute @workgroup_size(256)
fn slice_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    let plane = i / (p.oh * p.ow);
    let r = i - plane * p.oh * p.ow;
    let yi = r / p.ow;
    let si = yi + p.oy;
    let sj = r - yi * p.ow + p.ox;
    var v = 0.0;
    if si < p.h && sj < p.w {
        v = src[(plane * p.h + si) * p.w + sj];
    }
    dst[i] = v;
}

// src = dy, dst = dx; one invocation per element of dx: a gather of the one
// dy element (if any) that read it.
@compute @workgroup_size(256)
fn slice_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    let plane = i / (p.h * p.w);
    let r = i - plane * p.h * p.w;
    let xi = r / p.w;
    let xj = r - xi * p.w;
    var v = 0.0;
    if xi >= p.oy && xj >= p.ox && xi - p.oy < p.oh && xj - p.ox < p.ow {
        v = src[(plane * p.oh + xi - p.oy) * p.ow + xj - p.ox];
    }
    dst[i] = v;
}
