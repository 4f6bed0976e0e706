// 2-D convolution (NCHW, weight [c_out, c_in / groups, kh, kw]) and its
// input and weight gradients. No workgroup memory or barriers (lavapipe pays
// dearly for them): each invocation owns a small block of outputs and keeps
// its accumulators in registers, reusing every loaded value across the
// block. Every output element has one owner, so the gradients are gathers.
// Slots: x, wt, bias, dy read; out written; partial = per-chunk dW sums.

// Block edge: 4 channels × 4 positions (or 4 taps) per invocation.
const B: u32 = 4u;

struct Params {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_h: u32,
    pad_w: u32,
    dil: u32,
    groups: u32,
    cpg_in: u32,
    cpg_out: u32,
    has_bias: u32,
    // backward_weight: (n, oy) rows per chunk and the number of chunks.
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

// An index far below zero: a tap whose input row lies in the padding gets it
// as its column base, so x_at reads zero for every column of that row.
const OFF_ROW: i32 = -0x40000000;

// x[row + ix], zero outside [0, w): the padding.
fn x_at(row: u32, ix: i32) -> f32 {
    let inside = ix >= 0 && ix < i32(p.w);
    return select(0.0, x[row + u32(clamp(ix, 0, i32(p.w) - 1))], inside);
}

// Four columns first, first + step, ... of a row of `size`, clamped into
// it, and which of them lie inside (the rest read as zero padding):
// computed once per kernel column, then used for many rows and channels.
struct Cols {
    at: vec4<u32>,
    inside: vec4<bool>,
}

fn cols4(first: i32, step: i32, size: u32) -> Cols {
    let c = vec4(first) + vec4(0, 1, 2, 3) * step;
    let inside = (c >= vec4(0)) & (c < vec4(i32(size)));
    return Cols(vec4<u32>(clamp(c, vec4(0), vec4(i32(size) - 1))), inside);
}

fn load_x(row: u32, c: Cols) -> vec4<f32> {
    let v = vec4(x[row + c.at.x], x[row + c.at.y], x[row + c.at.z], x[row + c.at.w]);
    return select(vec4(0.0), v, c.inside);
}

fn load_dy(row: u32, c: Cols) -> vec4<f32> {
    let v = vec4(dy[row + c.at.x], dy[row + c.at.y], dy[row + c.at.z], dy[row + c.at.w]);
    return select(vec4(0.0), v, c.inside);
}

// out[base + j·step] = v[j] for the j with x0 + j < limit.
fn store4(base: u32, step: u32, v: vec4<f32>, x0: u32, limit: u32) {
    for (var j = 0u; j < B; j = j + 1u) {
        if x0 + j < limit {
            out[base + j * step] = v[j];
        }
    }
}

// Channels c0 .. c0 + 3 of a group whose last channel is `last`; those past
// it repeat `last` (computed, never stored) so inner loops need no branch.
fn block4(c0: u32, last: u32) -> vec4<u32> {
    return vec4(c0, min(c0 + 1u, last), min(c0 + 2u, last), min(c0 + 3u, last));
}

// y[b, oc0 .. oc0 + 3, oy, ox0 .. ox0 + 3] for 4 output channels of one group.
@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let xblocks = (p.ow + B - 1u) / B;
    let cblocks = (p.cpg_out + B - 1u) / B;
    let idx = linear_index(gid, nwg);
    if idx >= p.n * p.groups * cblocks * p.oh * xblocks { return; }
    let ox0 = (idx % xblocks) * B;
    var t = idx / xblocks;
    let oy = t % p.oh;
    t = t / p.oh;
    let g = (t % (p.groups * cblocks)) / cblocks;
    let oc0 = g * p.cpg_out + (t % cblocks) * B;
    let b = t / (p.groups * cblocks);
    let last = (g + 1u) * p.cpg_out - 1u;
    let oc = block4(oc0, last);
    let kk = p.kh * p.kw;
    let wo = oc * (p.cpg_in * kk);
    var a0 = vec4(0.0);
    var a1 = vec4(0.0);
    var a2 = vec4(0.0);
    var a3 = vec4(0.0);
    if p.has_bias == 1u {
        a0 = vec4(bias[oc.x]);
        a1 = vec4(bias[oc.y]);
        a2 = vec4(bias[oc.z]);
        a3 = vec4(bias[oc.w]);
    }
    let s = i32(p.stride);
    let d = i32(p.dil);
    let ix0 = i32(ox0) * s - i32(p.pad_w);
    let iy0 = i32(oy) * s - i32(p.pad_h);
    // Columns outside, so their padding test runs once per kx, not per load.
    let plane0 = (b * p.c_in + g * p.cpg_in) * p.h;
    for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
        let cols = cols4(ix0 + i32(kx) * d, s, p.w);
        for (var ci = 0u; ci < p.cpg_in; ci = ci + 1u) {
            let plane = plane0 + ci * p.h;
            for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
                let iy = iy0 + i32(ky) * d;
                if iy < 0 || iy >= i32(p.h) { continue; }
                let xv = load_x((plane + u32(iy)) * p.w, cols);
                let wk = ci * kk + ky * p.kw + kx;
                a0 = a0 + wt[wo.x + wk] * xv;
                a1 = a1 + wt[wo.y + wk] * xv;
                a2 = a2 + wt[wo.z + wk] * xv;
                a3 = a3 + wt[wo.w + wk] * xv;
            }
        }
    }
    let plane = p.oh * p.ow;
    let base = (b * p.c_out + oc0) * plane + oy * p.ow + ox0;
    store4(base, 1u, a0, ox0, p.ow);
    if oc0 + 1u <= last { store4(base + plane, 1u, a1, ox0, p.ow); }
    if oc0 + 2u <= last { store4(base + 2u * plane, 1u, a2, ox0, p.ow); }
    if oc0 + 3u <= last { store4(base + 3u * plane, 1u, a3, ox0, p.ow); }
}

// Depthwise (one input and one output channel per group): y[b, c, oy,
// ox0 .. ox0 + 7], the weight of each tap reused across 8 positions.
@compute @workgroup_size(256)
fn forward_depthwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let xblocks = (p.ow + 2u * B - 1u) / (2u * B);
    let idx = linear_index(gid, nwg);
    if idx >= p.n * p.c_out * p.oh * xblocks { return; }
    let ox0 = (idx % xblocks) * 2u * B;
    let t = idx / xblocks;
    let oy = t % p.oh;
    let bc = t / p.oh; // b · c_out + c
    let c = bc % p.c_out;
    var a0 = vec4(0.0);
    if p.has_bias == 1u {
        a0 = vec4(bias[c]);
    }
    var a1 = a0;
    let s = i32(p.stride);
    let d = i32(p.dil);
    let ix0 = i32(ox0) * s - i32(p.pad_w);
    let iy0 = i32(oy) * s - i32(p.pad_h);
    let plane = bc * p.h;
    for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
        let ix = ix0 + i32(kx) * d;
        let c0 = cols4(ix, s, p.w);
        let c1 = cols4(ix + 4 * s, s, p.w);
        for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
            let iy = iy0 + i32(ky) * d;
            if iy < 0 || iy >= i32(p.h) { continue; }
            let row = (plane + u32(iy)) * p.w;
            let wv = wt[(c * p.kh + ky) * p.kw + kx];
            a0 = a0 + wv * load_x(row, c0);
            a1 = a1 + wv * load_x(row, c1);
        }
    }
    let base = (bc * p.oh + oy) * p.ow + ox0;
    store4(base, 1u, a0, ox0, p.ow);
    store4(base + B, 1u, a1, ox0 + B, p.ow);
}

// The output coordinate (n − k·dil) / stride that tap k of an input
// coordinate n (padding included) comes from, as floor quotient and
// remainder: div_first gives tap 0, div_next steps to the next tap without
// dividing (integer division is scalarised on CPU adapters like lavapipe).
// The tap contributes when the remainder is 0.
fn div_first(n: u32) -> vec2<i32> {
    return vec2(i32(n / p.stride), i32(n % p.stride));
}

fn div_next(t: vec2<i32>) -> vec2<i32> {
    var q = t.x - i32(p.dil / p.stride);
    var r = t.y - i32(p.dil % p.stride);
    if r < 0 {
        r = r + i32(p.stride);
        q = q - 1;
    }
    return vec2(q, r);
}

// The input gradient as a gather: dx[b, ci0 .. ci0 + 3, iy, ix_j] for 4 input
// channels of one group and the columns ix_j = r + stride · (4q + j) of one
// residue r mod stride. Sharing the residue means a tap either reaches all
// four columns from adjacent output columns or none of them, so no work is
// spent on columns the stride skips.
@compute @workgroup_size(256)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = p.stride;
    let xblocks = ((p.w + s - 1u) / s + B - 1u) / B; // per residue
    let cblocks = (p.cpg_in + B - 1u) / B;
    let idx = linear_index(gid, nwg);
    if idx >= p.n * p.groups * cblocks * p.h * s * xblocks { return; }
    let rq = idx % (s * xblocks);
    let r = rq / xblocks;
    let q = rq % xblocks;
    var t = idx / (s * xblocks);
    let iy = t % p.h;
    t = t / p.h;
    let g = (t % (p.groups * cblocks)) / cblocks;
    let ci0 = g * p.cpg_in + (t % cblocks) * B;
    let b = t / (p.groups * cblocks);
    let ix0 = r + s * q * B;
    // A residue class past the last column (w < stride) owns nothing.
    if ix0 >= p.w { return; }
    let last = (g + 1u) * p.cpg_in - 1u;
    let kk = p.kh * p.kw;
    // Offsets of the 4 input channels within one output channel's weights.
    let wi = (block4(ci0, last) - g * p.cpg_in) * kk;
    var a0 = vec4(0.0);
    var a1 = vec4(0.0);
    var a2 = vec4(0.0);
    var a3 = vec4(0.0);
    // Loop taps outside channels so each tap's stride test runs once.
    let dy_plane = p.oh * p.ow;
    let w_oc = p.cpg_in * kk;
    let oc0 = g * p.cpg_out;
    var ty = div_first(iy + p.pad_h);
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        if ty.y == 0 && ty.x >= 0 && ty.x < i32(p.oh) {
            let row0 = ((b * p.c_out + oc0) * p.oh + u32(ty.x)) * p.ow;
            var tx = div_first(r + p.pad_w);
            for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
                if tx.y == 0 {
                    let cols = cols4(tx.x + i32(q * B), 1, p.ow);
                    let wk0 = oc0 * w_oc + ky * p.kw + kx;
                    for (var co = 0u; co < p.cpg_out; co = co + 1u) {
                        let g4 = load_dy(row0 + co * dy_plane, cols);
                        let wk = wk0 + co * w_oc;
                        a0 = a0 + wt[wk + wi.x] * g4;
                        a1 = a1 + wt[wk + wi.y] * g4;
                        a2 = a2 + wt[wk + wi.z] * g4;
                        a3 = a3 + wt[wk + wi.w] * g4;
                    }
                }
                tx = div_next(tx);
            }
        }
        ty = div_next(ty);
    }
    let hw = p.h * p.w;
    let base = (b * p.c_in + ci0) * hw + iy * p.w + ix0;
    // Column ix0 + s·j exists while j < ceil((w − ix0) / s).
    let cols = (p.w - ix0 + s - 1u) / s;
    store4(base, s, a0, 0u, cols);
    if ci0 + 1u <= last { store4(base + hw, s, a1, 0u, cols); }
    if ci0 + 2u <= last { store4(base + 2u * hw, s, a2, 0u, cols); }
    if ci0 + 3u <= last { store4(base + 3u * hw, s, a3, 0u, cols); }
}

// Depthwise input gradient: dx[b, c, iy, ix_j] for 8 columns of one residue
// mod stride (as in backward_input).
@compute @workgroup_size(256)
fn backward_input_depthwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = p.stride;
    let xblocks = ((p.w + s - 1u) / s + 2u * B - 1u) / (2u * B);
    let idx = linear_index(gid, nwg);
    if idx >= p.n * p.c_in * p.h * s * xblocks { return; }
    let rq = idx % (s * xblocks);
    let r = rq / xblocks;
    let q = rq % xblocks;
    let t = idx / (s * xblocks);
    let iy = t % p.h;
    let bc = t / p.h;
    let c = bc % p.c_in;
    let ix0 = r + s * q * 2u * B;
    if ix0 >= p.w { return; }
    var a0 = vec4(0.0);
    var a1 = vec4(0.0);
    let plane = bc * p.oh;
    var ty = div_first(iy + p.pad_h);
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        if ty.y == 0 && ty.x >= 0 && ty.x < i32(p.oh) {
            let row = (plane + u32(ty.x)) * p.ow;
            let wk0 = (c * p.kh + ky) * p.kw;
            var tx = div_first(r + p.pad_w);
            for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
                if tx.y == 0 {
                    let ox = tx.x + i32(q * 2u * B);
                    let wv = wt[wk0 + kx];
                    a0 = a0 + wv * load_dy(row, cols4(ox, 1, p.ow));
                    a1 = a1 + wv * load_dy(row, cols4(ox + 4, 1, p.ow));
                }
                tx = div_next(tx);
            }
        }
        ty = div_next(ty);
    }
    let base = (bc * p.h + iy) * p.w + ix0;
    let cols = (p.w - ix0 + s - 1u) / s;
    store4(base, s, a0, 0u, cols);
    store4(base + s * B, s, a1, B, cols);
}

// Pass 1 of the weight gradient: partial[k, oc, tap] = Σ over the (n, oy) rows
// of chunk k and all ox of dy[b, oc, oy, ox] · x at the tap. A tap is one
// (ci, ky, kx) of a flattened weight row. An invocation owns 4 output
// channels of one group × 4 consecutive taps: per pixel 4 dy and 4 x loads
// feed 16 products.
@compute @workgroup_size(256)
fn backward_weight_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let kk = p.kh * p.kw;
    let taps = p.cpg_in * kk;
    let tblocks = (taps + B - 1u) / B;
    let cblocks = (p.cpg_out + B - 1u) / B;
    let idx = linear_index(gid, nwg);
    if idx >= p.chunks * p.groups * cblocks * tblocks { return; }
    let t0 = (idx % tblocks) * B;
    let t = idx / tblocks;
    let g = (t % (p.groups * cblocks)) / cblocks;
    let oc0 = g * p.cpg_out + (t % cblocks) * B;
    let k = t / (p.groups * cblocks);
    let last = (g + 1u) * p.cpg_out - 1u;
    let oc = block4(oc0, last);
    let tap = block4(t0, taps - 1u);
    let ci = g * p.cpg_in + tap / kk;
    let ky = (tap % kk) / p.kw;
    let kx = tap % p.kw;
    var a0 = vec4(0.0); // one output channel each; components = taps
    var a1 = vec4(0.0);
    var a2 = vec4(0.0);
    var a3 = vec4(0.0);
    let s = i32(p.stride);
    let d = i32(p.dil);
    let r0 = k * p.chunk_rows;
    let r1 = min(r0 + p.chunk_rows, p.n * p.oh);
    for (var r = r0; r < r1; r = r + 1u) {
        let b = r / p.oh;
        let oy = r % p.oh;
        let drow = ((b * p.c_out + oc) * p.oh + oy) * p.ow;
        let iy = vec4<i32>(i32(oy) * s - i32(p.pad_h)) + vec4<i32>(ky) * d;
        let ok = (iy >= vec4(0)) & (iy < vec4(i32(p.h)));
        let xrow = ((b * p.c_in + ci) * p.h + vec4<u32>(clamp(iy, vec4(0), vec4(i32(p.h) - 1)))) * p.w;
        let ix0 = select(vec4(OFF_ROW), vec4<i32>(kx) * d - i32(p.pad_w), ok);
        for (var ox = 0u; ox < p.ow; ox = ox + 1u) {
            let ix = ix0 + i32(ox) * s;
            let xv = vec4(x_at(xrow.x, ix.x), x_at(xrow.y, ix.y), x_at(xrow.z, ix.z), x_at(xrow.w, ix.w));
            a0 = a0 + dy[drow.x + ox] * xv;
            a1 = a1 + dy[drow.y + ox] * xv;
            a2 = a2 + dy[drow.z + ox] * xv;
            a3 = a3 + dy[drow.w + ox] * xv;
        }
    }
    let wlen = p.c_out * taps;
    let base = k * wlen + oc0 * taps + t0;
    store_partial(base, a0, t0, taps);
    if oc0 + 1u <= last { store_partial(base + taps, a1, t0, taps); }
    if oc0 + 2u <= last { store_partial(base + 2u * taps, a2, t0, taps); }
    if oc0 + 3u <= last { store_partial(base + 3u * taps, a3, t0, taps); }
}

// partial[base + j] = v[j] for the taps t0 + j that exist.
fn store_partial(base: u32, v: vec4<f32>, t0: u32, taps: u32) {
    for (var j = 0u; j < B; j = j + 1u) {
        if t0 + j < taps {
            partial[base + j] = v[j];
        }
    }
}

// Depthwise pass 1: one channel × 4 consecutive taps (ky, kx) per invocation.
@compute @workgroup_size(256)
fn backward_weight_partial_depthwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let kk = p.kh * p.kw;
    let tblocks = (kk + B - 1u) / B;
    let idx = linear_index(gid, nwg);
    if idx >= p.chunks * p.c_out * tblocks { return; }
    let t0 = (idx % tblocks) * B;
    let t = idx / tblocks;
    let c = t % p.c_out;
    let k = t / p.c_out;
    let tap = block4(t0, kk - 1u);
    let ky = tap / p.kw;
    let kx = tap % p.kw;
    var a = vec4(0.0);
    let s = i32(p.stride);
    let d = i32(p.dil);
    let r0 = k * p.chunk_rows;
    let r1 = min(r0 + p.chunk_rows, p.n * p.oh);
    for (var r = r0; r < r1; r = r + 1u) {
        let b = r / p.oh;
        let oy = r % p.oh;
        let drow = ((b * p.c_out + c) * p.oh + oy) * p.ow;
        let iy = vec4<i32>(i32(oy) * s - i32(p.pad_h)) + vec4<i32>(ky) * d;
        let ok = (iy >= vec4(0)) & (iy < vec4(i32(p.h)));
        let xrow = ((b * p.c_in + c) * p.h + vec4<u32>(clamp(iy, vec4(0), vec4(i32(p.h) - 1)))) * p.w;
        let ix0 = select(vec4(OFF_ROW), vec4<i32>(kx) * d - i32(p.pad_w), ok);
        for (var ox = 0u; ox < p.ow; ox = ox + 1u) {
            let ix = ix0 + i32(ox) * s;
            let xv = vec4(x_at(xrow.x, ix.x), x_at(xrow.y, ix.y), x_at(xrow.z, ix.z), x_at(xrow.w, ix.w));
            a = a + dy[drow + ox] * xv;
        }
    }
    store_partial(k * p.c_out * kk + c * kk + t0, a, t0, kk);
}

// Pass 2: dW[i] = Σ_k partial[k, i]; chunk-major, so neighbours read neighbours.
@compute @workgroup_size(256)
fn backward_weight_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let wlen = p.c_out * p.cpg_in * p.kh * p.kw;
    if i >= wlen { return; }
    var acc = 0.0;
    for (var k = 0u; k < p.chunks; k = k + 1u) {
        acc = acc + partial[k * wlen + i];
    }
    out[i] = acc;
}

// Pass 2 of many weight gradients in one dispatch (CPU adapters, where a
// dispatch costs ~35 µs of lavapipe's time and a pass 2 alone was a few
// workgroups): workgroup g takes row g of `segs`, (dst, src, wlen, count
// | chunks << 8), and writes out[dst + l] = Σ_k partial[src + k·wlen + l]
// for l < count: the sums backward_weight_finish takes, in its order.
// p.n is the number of rows.
@group(0) @binding(7) var<storage, read> segs: array<vec4<u32>>;

const FINISH_ROW: u32 = 64u;

@compute @workgroup_size(FINISH_ROW)
fn backward_weight_finish_batched(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wg.x + wg.y * nwg.x;
    if g >= p.n { return; }
    let s = segs[g];
    if lid >= (s.w & 0xffu) { return; }
    let chunks = s.w >> 8u;
    var acc = 0.0;
    for (var k = 0u; k < chunks; k = k + 1u) {
        acc = acc + partial[s.y + k * s.z + lid];
    }
    out[s.x + lid] = acc;
}

// Pass 2 where chunks are many (a GPU's split, `Gpu::wide`): a workgroup
// sums 16 weights, 16 lanes each taking every 16th chunk, then a tree over
// the lanes; each chunk's 16 weights are neighbours, so reads stay coalesced.
var<workgroup> lanes: array<f32, 256>;

@compute @workgroup_size(256)
fn backward_weight_finish_wide(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wlen = p.c_out * p.cpg_in * p.kh * p.kw;
    let q = lid / 16u;
    let i = (wg.x + wg.y * nwg.x) * 16u + lid % 16u;
    var acc = 0.0;
    if i < wlen {
        for (var k = q; k < p.chunks; k = k + 16u) {
            acc = acc + partial[k * wlen + i];
        }
    }
    lanes[lid] = acc;
    workgroupBarrier();
    for (var s = 8u; s > 0u; s = s / 2u) {
        if q < s {
            lanes[lid] = lanes[lid] + lanes[lid + s * 16u];
        }
        workgroupBarrier();
    }
    if q == 0u && i < wlen {
        out[i] = lanes[lid];
    }
}
