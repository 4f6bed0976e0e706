// max_pool, avg_pool (k×k window, stride, zero-free padding: padded cells
// never win a max and are left out of an average's count, PyTorch's
// count_include_pad=False) and global_avg_pool, forward and backward.
// Tensors are [planes, h, w] with planes = n·c; pooled outputs [planes, oh, ow].
// Backwards are gathers over the windows covering each input cell, so every
// invocation writes only its own element (no atomics).

struct Params {
    // Invocations of this dispatch (one per written element).
    total: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// x in a forward, dy in a backward.
@group(0) @binding(1) var<storage, read> src: array<f32>;
// The argmax max_pool_forward saved (flat index iy·w + ix within the plane).
@group(0) @binding(2) var<storage, read> arg_in: array<u32>;
// y in a forward, dx in a backward.
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read_write> arg_out: array<u32>;

// First input row/column of window o along an axis (may be negative: padding).
fn window_start(o: u32) -> i32 {
    return i32(o * p.stride) - i32(p.pad);
}

// Windows [lo, hi) along an axis of pooled length `len` that cover input
// coordinate i: o·s − pad ≤ i ≤ o·s − pad + k − 1.
fn covering(i: u32, len: u32) -> vec2<u32> {
    let top = i32(i) + i32(p.pad);
    let s = i32(p.stride);
    // ceil((top − k + 1) / s), clamped at 0 before dividing so the division
    // never sees a negative numerator.
    let lo = (max(top - i32(p.k) + 1, 0) + s - 1) / s;
    let hi = min(top / s + 1, i32(len));
    return vec2<u32>(u32(lo), u32(max(hi, lo)));
}

// The outputs whose windows read input element i (the gather of both
// backwards): the first output of i's plane, i's index within its input
// plane, and the covering output rows and columns as [lo, hi).
struct Cover {
    base: u32,
    idx: u32,
    ry: vec2<u32>,
    rx: vec2<u32>,
}

fn cover(i: u32) -> Cover {
    let plane_in = p.h * p.w;
    let plane = i / plane_in;
    let idx = i - plane * plane_in;
    let iy = idx / p.w;
    let ix = idx - iy * p.w;
    return Cover(plane * p.oh * p.ow, idx, covering(iy, p.oh), covering(ix, p.ow));
}

// Valid input cells of window (oy, ox): the count an average divides by.
fn window_count(oy: u32, ox: u32) -> f32 {
    let y0 = window_start(oy);
    let x0 = window_start(ox);
    let k = i32(p.k);
    let rows = min(y0 + k, i32(p.h)) - max(y0, 0);
    let cols = min(x0 + k, i32(p.w)) - max(x0, 0);
    return f32(rows * cols);
}

@compute @workgroup_size(256)
fn max_pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_index(gid, nwg);
    if o >= p.total { return; }
    let plane_out = p.oh * p.ow;
    let plane = o / plane_out;
    let r = o - plane * plane_out;
    let oy = r / p.ow;
    let ox = r - oy * p.ow;
    let y0 = window_start(oy);
    let x0 = window_start(ox);
    let base = plane * p.h * p.w;
    var best = 0.0;
    var arg = 0u;
    var found = false;
    // Row-major window order with a strict >: the first maximum wins ties.
    for (var ky = 0; ky < i32(p.k); ky = ky + 1) {
        let iy = y0 + ky;
        if iy < 0 || iy >= i32(p.h) { continue; }
        for (var kx = 0; kx < i32(p.k); kx = kx + 1) {
            let ix = x0 + kx;
            if ix < 0 || ix >= i32(p.w) { continue; }
            let idx = u32(iy) * p.w + u32(ix);
            let v = src[base + idx];
            if !found || v > best {
                best = v;
                arg = idx;
                found = true;
            }
        }
    }
    dst[o] = best;
    arg_out[o] = arg;
}

@compute @workgroup_size(256)
fn max_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.total { return; }
    let c = cover(i);
    var acc = 0.0;
    for (var oy = c.ry.x; oy < c.ry.y; oy = oy + 1u) {
        for (var ox = c.rx.x; ox < c.rx.y; ox = ox + 1u) {
            let o = c.base + oy * p.ow + ox;
            if arg_in[o] == c.idx {
                acc = acc + src[o];
            }
        }
    }
    dst[i] = acc;
}

@compute @workgroup_size(256)
fn avg_pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_index(gid, nwg);
    if o >= p.total { return; }
    let plane_out = p.oh * p.ow;
    let plane = o / plane_out;
    let r = o - plane * plane_out;
    let oy = r / p.ow;
    let ox = r - oy * p.ow;
    let y0 = window_start(oy);
    let x0 = window_start(ox);
    let base = plane * p.h * p.w;
    var acc = 0.0;
    for (var iy = max(y0, 0); iy < min(y0 + i32(p.k), i32(p.h)); iy = iy + 1) {
        for (var ix = max(x0, 0); ix < min(x0 + i32(p.k), i32(p.w)); ix = ix + 1) {
            acc = acc + src[base + u32(iy) * p.w + u32(ix)];
        }
    }
    dst[o] = acc / window_count(oy, ox);
}

@compute @workgroup_size(256)
fn avg_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.total { return; }
    let c = cover(i);
    var acc = 0.0;
    for (var oy = c.ry.x; oy < c.ry.y; oy = oy + 1u) {
        for (var ox = c.rx.x; ox < c.rx.y; ox = ox + 1u) {
            acc = acc + src[c.base + oy * p.ow + ox] / window_count(oy, ox);
        }
    }
    dst[i] = acc;
}

// One invocation per plane (h·w = the plane's size): planes are many and
// small where this op runs (the classifier head), so a serial sum is enough.
@compute @workgroup_size(256)
fn global_avg_pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let plane = linear_index(gid, nwg);
    if plane >= p.total { return; }
    let hw = p.h * p.w;
    var acc = 0.0;
    for (var j = 0u; j < hw; j = j + 1u) {
        acc = acc + src[plane * hw + j];
    }
    dst[plane] = acc / f32(hw);
}

@compute @workgroup_size(256)
fn global_avg_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.total { return; }
    let hw = p.h * p.w;
    dst[i] = src[i / hw] / f32(hw);
}
