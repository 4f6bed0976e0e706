// The mixed op's backward through the batch norms of its candidates. A
// candidate y_k = BN(z_k) (training, no affine, so y_k = x̂_k) entering
// out = Σ_k w[k]·y_k gets dy_k = w[k]·dy, and batch norm's backward needs
// per channel Σ dy_k = w[k]·Σ dy and Σ dy_k·x̂ = w[k]·Σ dy·y_k: the sums
// the mixed op's weight gradient dw[k] = Σ dy·y_k is made of anyway. So
// one pass (channel_dot) takes, per channel, Σ dy·x_k for every candidate
// and Σ dy, and a second (bn_backward) writes each fused candidate's
//   dz = w[k]·invstd·(dy − Σdy/M − y·Σ(dy·y)/M)
// from dy and y alone. Against the mixed op's w[k]·dy copies and batch
// norm's two-pass backward, a candidate's tensors are read twice fewer
// and written once fewer.
//
// Layout of the sums: sums[(row · c + ch) · chunks + chunk], rows 0..K−1
// the candidates' Σ dy·x_k, row K (p.kk) Σ dy; a chunk is nb batch items.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    // channel_dot: tensors in this dispatch (≤ 6).
    k: u32,
    // channel_dot: the first one's candidate index; bn_backward: the
    // candidate.
    k0: u32,
    // K, the row of Σ dy.
    kk: u32,
    // channel_dot: batch items per chunk; bn_backward: per invocation.
    nb: u32,
    // Chunks of the sums per channel.
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// channel_dot: up to 6 candidates; bn_backward: y_k in slot 1.
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> x1: array<f32>;
@group(0) @binding(3) var<storage, read> x2: array<f32>;
@group(0) @binding(4) var<storage, read> x3: array<f32>;
@group(0) @binding(5) var<storage, read> x4: array<f32>;
@group(0) @binding(6) var<storage, read> x5: array<f32>;
@group(0) @binding(7) var<storage, read> w: array<f32>;
@group(0) @binding(8) var<storage, read> dy: array<f32>;
@group(0) @binding(9) var<storage, read_write> sums: array<f32>;
@group(0) @binding(9) var<storage, read> sums_in: array<f32>;
@group(0) @binding(10) var<storage, read> invstd: array<f32>;
@group(0) @binding(11) var<storage, read_write> dz: array<f32>;
// The same slots as float4s (hw divisible by 4: the planes of 28×28 and
// 14×14 images): a float4 load costs CPU adapters about what a float
// load does.
@group(0) @binding(1) var<storage, read> v0: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v1: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v2: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> v3: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> v4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> v5: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read_write> dz4: array<vec4<f32>>;

// Eight sums reduced at once: the 6 dot products (a.xyzw, b.xy) and Σ dy
// (b.z).
struct Pair {
    a: vec4<f32>,
    b: vec4<f32>,
}

// Workgroup size of channel_dot: 256 on GPUs; CPU adapters compile this
// file with 32 (ops::mix_bn), as there a barrier switches between every
// SIMD group of the workgroup: [32,8,784] K = 8 1.14 → 0.72 ms, [32,32,49]
// 0.99 → 0.41–0.48 on lavapipe (64: 0.79 and 0.62; 16 no faster than 32).
const DOT_WG: u32 = 256u;
const_assert DOT_WG == 32u || DOT_WG == 256u;

var<workgroup> tree: array<Pair, DOT_WG>;

fn pair_add(u: Pair, v: Pair) -> Pair {
    return Pair(u.a + v.a, u.b + v.b);
}

// common.wgsl's staged halving tree (workgroup_sum2_by) over Pairs:
// position l after the pairs (l, l + 4d), (l, l + 2d), (l, l + d).
fn levels3(l: u32, d: u32) -> Pair {
    let a0 = pair_add(tree[l], tree[l + 4u * d]);
    let a1 = pair_add(tree[l + 2u * d], tree[l + 6u * d]);
    let a2 = pair_add(tree[l + d], tree[l + 5u * d]);
    let a3 = pair_add(tree[l + 3u * d], tree[l + 7u * d]);
    return pair_add(pair_add(a0, a1), pair_add(a2, a3));
}

fn workgroup_sum_pair(lid: u32, v: Pair) -> Pair {
    tree[lid] = v;
    workgroupBarrier();
    for (var d = DOT_WG / 8u; d >= 4u; d = d / 8u) {
        if lid < d {
            tree[lid] = levels3(lid, d);
        }
        workgroupBarrier();
    }
    return pair_add(pair_add(tree[0], tree[2]), pair_add(tree[1], tree[3]));
}

// Invocation 0 writes this chunk's sums; the first dispatch of a mix also
// writes Σ dy.
fn write_sums(lid: u32, ch: u32, chunk: u32, acc: Pair) {
    let t = workgroup_sum_pair(lid, acc);
    if lid != 0u {
        return;
    }
    let row = p.c * p.chunks;
    let at = ch * p.chunks + chunk;
    let base = p.k0 * row + at;
    sums[base] = t.a.x;
    if p.k > 1u { sums[base + row] = t.a.y; }
    if p.k > 2u { sums[base + 2u * row] = t.a.z; }
    if p.k > 3u { sums[base + 3u * row] = t.a.w; }
    if p.k > 4u { sums[base + 4u * row] = t.b.x; }
    if p.k > 5u { sums[base + 5u * row] = t.b.y; }
    if p.k0 == 0u {
        sums[p.kk * row + at] = t.b.z;
    }
}

// Workgroup (channel, chunk): Σ dy·x_j for the k tensors of this dispatch,
// and Σ dy, over the chunk's values of the channel.
@compute @workgroup_size(DOT_WG)
fn channel_dot(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wg.x;
    let b0 = wg.y * p.nb;
    let m = (min(b0 + p.nb, p.n) - b0) * p.hw;
    var acc = Pair(vec4(0.0), vec4(0.0));
    var at = walk_by(ch, lid, p.hw, p.c, DOT_WG);
    at.i = at.i + b0 * p.c * p.hw;
    for (var j = lid; j < m; j = j + DOT_WG) {
        let i = at.i;
        let g = dy[i];
        acc.a.x = acc.a.x + g * x0[i];
        if p.k > 1u { acc.a.y = acc.a.y + g * x1[i]; }
        if p.k > 2u { acc.a.z = acc.a.z + g * x2[i]; }
        if p.k > 3u { acc.a.w = acc.a.w + g * x3[i]; }
        if p.k > 4u { acc.b.x = acc.b.x + g * x4[i]; }
        if p.k > 5u { acc.b.y = acc.b.y + g * x5[i]; }
        acc.b.z = acc.b.z + g;
        advance(&at);
    }
    write_sums(lid, ch, wg.y, acc);
}

// channel_dot over float4s (hw % 4 == 0).
@compute @workgroup_size(DOT_WG)
fn channel_dot4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wg.x;
    let per = p.hw / 4u;
    let b0 = wg.y * p.nb;
    let m = (min(b0 + p.nb, p.n) - b0) * per;
    var acc = Pair(vec4(0.0), vec4(0.0));
    var at = walk_by(ch, lid, per, p.c, DOT_WG);
    at.i = at.i + b0 * p.c * per;
    for (var j = lid; j < m; j = j + DOT_WG) {
        let i = at.i;
        let g = dy4[i];
        acc.a.x = acc.a.x + dot(g, v0[i]);
        if p.k > 1u { acc.a.y = acc.a.y + dot(g, v1[i]); }
        if p.k > 2u { acc.a.z = acc.a.z + dot(g, v2[i]); }
        if p.k > 3u { acc.a.w = acc.a.w + dot(g, v3[i]); }
        if p.k > 4u { acc.b.x = acc.b.x + dot(g, v4[i]); }
        if p.k > 5u { acc.b.y = acc.b.y + dot(g, v5[i]); }
        acc.b.z = acc.b.z + dot(g, vec4(1.0));
        advance(&at);
    }
    write_sums(lid, ch, wg.y, acc);
}

// Workgroup width of bn_backward: a workgroup covers part of one plane,
// and the planes are small (49 float4s at 14×14, 49 values at 7×7). The
// grid is batch norm's evaluation one (batchnorm.wgsl's EVAL_WG).
const BACK_WG: u32 = 64u;

// dz = a·dy + cy·y + c0 on one channel, for batch items b0..b1.
struct Coefs {
    ch: u32,
    b0: u32,
    b1: u32,
    a: f32,
    cy: f32,
    c0: f32,
}

// z: a (channel, group of p.nb batch items) pair; the channel's sums are
// added up over their chunks once per invocation.
fn coefs(z: u32) -> Coefs {
    let ch = z % p.c;
    let b0 = (z / p.c) * p.nb;
    let row = p.c * p.chunks;
    var sy = 0.0;
    var sg = 0.0;
    for (var q = 0u; q < p.chunks; q = q + 1u) {
        sy = sy + sums_in[p.k0 * row + ch * p.chunks + q];
        sg = sg + sums_in[p.kk * row + ch * p.chunks + q];
    }
    let m = f32(p.n * p.hw);
    let a = w[p.k0] * invstd[ch];
    return Coefs(ch, b0, min(b0 + p.nb, p.n), a, -a * sy / m, -a * sg / m);
}

@compute @workgroup_size(BACK_WG)
fn bn_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * BACK_WG;
    if r >= p.hw { return; }
    let q = coefs(gid.z);
    for (var b = q.b0; b < q.b1; b = b + 1u) {
        let i = (b * p.c + q.ch) * p.hw + r;
        dz[i] = dy[i] * q.a + x0[i] * q.cy + q.c0;
    }
}

// bn_backward over float4s (hw % 4 == 0).
@compute @workgroup_size(BACK_WG)
fn bn_backward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let per = p.hw / 4u;
    let r = gid.x + gid.y * nwg.x * BACK_WG;
    if r >= per { return; }
    let q = coefs(gid.z);
    for (var b = q.b0; b < q.b1; b = b + 1u) {
        let i = (b * p.c + q.ch) * per + r;
        dz4[i] = dy4[i] * q.a + v0[i] * q.cy + q.c0;
    }
}
