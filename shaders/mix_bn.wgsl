// The mixed op out = Σ_k w[k]·y_k through the batch norms of its
// candidates. A candidate y_k = BN(z_k) (training, no affine, read by
// nothing else) is never written: its batch norm computes only its
// statistics (batchnorm.wgsl's train_stats) and the a, b of
// y_k = z_k·a + b go into the mixed op's pack, from which every entry here
// applies them where it reads z_k, as train_forward would have (the same
// arithmetic, so the same values). The backward: y_k's batch norm needs
// per channel Σ dy_k = w[k]·Σ dy and Σ dy_k·x̂ = w[k]·Σ dy·y_k, the sums
// the mixed op's weight gradient dw[k] = Σ dy·y_k is made of anyway. So
// one pass (channel_dot) takes, per channel, Σ dy·y_k for every candidate
// and Σ dy, and a second (bn_backward) writes each fused candidate's
//   dz = w[k]·invstd·(dy − Σdy/M − y·Σ(dy·y)/M).
// Against batch norm's forward and two-pass backward, a fused candidate's
// tensors are read 4 times fewer and written twice fewer.
//
// The pack: w [K], then per candidate k (rows 2k and 2k + 1) a [c] and
// b [c] (rows of candidates without a batch norm hold anything: bit k of
// p.norm, for the dispatch's k-th tensor, says whether to apply them).
// Layout of the sums: sums[(row · c + ch) · chunks + chunk], rows 0..K−1
// the candidates' Σ dy·y_k, row K (p.kk) Σ dy; a chunk is nb batch items.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    // forward, channel_dot: tensors in this dispatch (≤ 6, ≤ 5); the pair
    // entries of bn_backward: the second candidate.
    k: u32,
    // forward, channel_dot: the first one's candidate index; bn_backward:
    // the candidate.
    k0: u32,
    // K, the row of Σ dy.
    kk: u32,
    // channel_dot: batch items per chunk; bn_backward: per invocation;
    // forward: values (float4s) of a plane per invocation.
    nb: u32,
    // Chunks of the sums per channel.
    chunks: u32,
    // Bit j: the dispatch's tensor j is a batch norm's input z (apply its
    // a, b); otherwise the candidate's output itself.
    norm: u32,
    // forward: add to y (1) or overwrite it (0).
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// forward: up to 6 candidates; channel_dot: up to 5; bn_backward: z_k in
// slot 1.
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> x1: array<f32>;
@group(0) @binding(3) var<storage, read> x2: array<f32>;
@group(0) @binding(4) var<storage, read> x3: array<f32>;
@group(0) @binding(5) var<storage, read> x4: array<f32>;
@group(0) @binding(6) var<storage, read> x5: array<f32>;
@group(0) @binding(7) var<storage, read> pack: array<f32>;
@group(0) @binding(8) var<storage, read> dy: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;
@group(0) @binding(9) var<storage, read_write> sums: array<f32>;
@group(0) @binding(9) var<storage, read> sums_in: array<f32>;
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
@group(0) @binding(8) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read_write> dz4: array<vec4<f32>>;

// The a, b of the dispatch's tensor j (candidate k0 + j, clamped to the
// last for slots past the dispatch's k, which are never used) on channel
// ch; a = 1, b = 0 where bit j of p.norm is clear (never applied).
// w is the candidate's mixing weight.
struct Coef {
    a: f32,
    b: f32,
    on: bool,
    w: f32,
}

fn coef(j: u32, ch: u32) -> Coef {
    return coef_of(min(p.k0 + j, p.kk - 1u), ch, ((p.norm >> j) & 1u) == 1u);
}

// Candidate k's.
fn coef_of(k: u32, ch: u32, on: bool) -> Coef {
    let a = pack[p.kk + 2u * k * p.c + ch];
    let b = pack[p.kk + (2u * k + 1u) * p.c + ch];
    return Coef(a, b, on, pack[k]);
}

// y_j from what slot j holds: the batch norm's x·a + b (train_forward's
// expression), or the value itself.
fn apply(q: Coef, v: f32) -> f32 {
    return select(v, v * q.a + q.b, q.on);
}

fn apply4(q: Coef, v: vec4<f32>) -> vec4<f32> {
    return select(v, v * q.a + q.b, q.on);
}

// Eight sums reduced at once: the dot products (a.xyzw, b.x) and Σ dy
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
    if p.k0 == 0u {
        sums[p.kk * row + at] = t.b.z;
    }
}

// Workgroup (channel, chunk): Σ dy·y_j for the k (≤ 5) tensors of this
// dispatch, and Σ dy, over the chunk's values of the channel.
@compute @workgroup_size(DOT_WG)
fn channel_dot(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wg.x;
    let b0 = wg.y * p.nb;
    let m = (min(b0 + p.nb, p.n) - b0) * p.hw;
    let q0 = coef(0u, ch);
    let q1 = coef(1u, ch);
    let q2 = coef(2u, ch);
    let q3 = coef(3u, ch);
    let q4 = coef(4u, ch);
    var acc = Pair(vec4(0.0), vec4(0.0));
    var at = walk_by(ch, lid, p.hw, p.c, DOT_WG);
    at.i = at.i + b0 * p.c * p.hw;
    for (var j = lid; j < m; j = j + DOT_WG) {
        let i = at.i;
        let g = dy[i];
        acc.a.x = acc.a.x + g * apply(q0, x0[i]);
        if p.k > 1u { acc.a.y = acc.a.y + g * apply(q1, x1[i]); }
        if p.k > 2u { acc.a.z = acc.a.z + g * apply(q2, x2[i]); }
        if p.k > 3u { acc.a.w = acc.a.w + g * apply(q3, x3[i]); }
        if p.k > 4u { acc.b.x = acc.b.x + g * apply(q4, x4[i]); }
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
    let q0 = coef(0u, ch);
    let q1 = coef(1u, ch);
    let q2 = coef(2u, ch);
    let q3 = coef(3u, ch);
    let q4 = coef(4u, ch);
    var acc = Pair(vec4(0.0), vec4(0.0));
    var at = walk_by(ch, lid, per, p.c, DOT_WG);
    at.i = at.i + b0 * p.c * per;
    for (var j = lid; j < m; j = j + DOT_WG) {
        let i = at.i;
        let g = dy4[i];
        acc.a.x = acc.a.x + dot(g, apply4(q0, v0[i]));
        if p.k > 1u { acc.a.y = acc.a.y + dot(g, apply4(q1, v1[i])); }
        if p.k > 2u { acc.a.z = acc.a.z + dot(g, apply4(q2, v2[i])); }
        if p.k > 3u { acc.a.w = acc.a.w + dot(g, apply4(q3, v3[i])); }
        if p.k > 4u { acc.b.x = acc.b.x + dot(g, apply4(q4, v4[i])); }
        acc.b.z = acc.b.z + dot(g, vec4(1.0));
        advance(&at);
    }
    write_sums(lid, ch, wg.y, acc);
}

// Workgroup width of forward and bn_backward. bn_backward's grid is batch
// norm's evaluation one (batchnorm.wgsl's EVAL_WG): x over a plane, z over
// (channel, group of p.nb batch items), so the channel and its
// coefficients are found once per invocation; a workgroup covers part of
// one plane, and the planes are small (49 float4s at 14×14, 49 values at
// 7×7). forward's is 1-D over runs of a plane (see there).
const BACK_WG: u32 = 64u;

// The (channel, batch items b0..b1) of grid row z.
struct Span {
    ch: u32,
    b0: u32,
    b1: u32,
}

fn span(z: u32) -> Span {
    let b0 = (z / p.c) * p.nb;
    return Span(z % p.c, b0, min(b0 + p.nb, p.n));
}

// The coefficients of the dispatch's 6 slots on one channel.
struct Six {
    q0: Coef,
    q1: Coef,
    q2: Coef,
    q3: Coef,
    q4: Coef,
    q5: Coef,
}

fn six(ch: u32) -> Six {
    return Six(coef(0u, ch), coef(1u, ch), coef(2u, ch), coef(3u, ch), coef(4u, ch), coef(5u, ch));
}

// apply4 where the float4's components lie on two planes: lo's a, b where
// m, hi's elsewhere (the same candidate, so the same w and flag).
fn apply_on(lo: Coef, hi: Coef, m: vec4<bool>, v: vec4<f32>) -> vec4<f32> {
    let a = select(vec4(hi.a), vec4(lo.a), m);
    let b = select(vec4(hi.b), vec4(lo.b), m);
    return select(v, v * a + b, lo.on);
}

// forward's sum for float4 i, components where m on lo's plane.
fn mixed_on(i: u32, lo: Six, hi: Six, m: vec4<bool>) -> vec4<f32> {
    var acc = lo.q0.w * apply_on(lo.q0, hi.q0, m, v0[i]);
    if p.k > 1u { acc = acc + lo.q1.w * apply_on(lo.q1, hi.q1, m, v1[i]); }
    if p.k > 2u { acc = acc + lo.q2.w * apply_on(lo.q2, hi.q2, m, v2[i]); }
    if p.k > 3u { acc = acc + lo.q3.w * apply_on(lo.q3, hi.q3, m, v3[i]); }
    if p.k > 4u { acc = acc + lo.q4.w * apply_on(lo.q4, hi.q4, m, v4[i]); }
    if p.k > 5u { acc = acc + lo.q5.w * apply_on(lo.q5, hi.q5, m, v5[i]); }
    return acc;
}

fn store4(i: u32, v: vec4<f32>) {
    if p.accumulate == 1u {
        y4[i] = y4[i] + v;
    } else {
        y4[i] = v;
    }
}

// forward's sum for value i (scalar slots).
fn mixed(i: u32, q: Six) -> f32 {
    var acc = q.q0.w * apply(q.q0, x0[i]);
    if p.k > 1u { acc = acc + q.q1.w * apply(q.q1, x1[i]); }
    if p.k > 2u { acc = acc + q.q2.w * apply(q.q2, x2[i]); }
    if p.k > 3u { acc = acc + q.q3.w * apply(q.q3, x3[i]); }
    if p.k > 4u { acc = acc + q.q4.w * apply(q.q4, x4[i]); }
    if p.k > 5u { acc = acc + q.q5.w * apply(q.q5, x5[i]); }
    return acc;
}

fn store(i: u32, v: f32) {
    if p.accumulate == 1u {
        y[i] = y[i] + v;
    } else {
        y[i] = v;
    }
}

// out = Σ_j w[k0 + j]·y_j over the k (≤ 6) tensors of this dispatch, in
// the mixed op's order (mix.wgsl's forward: the same products and sums).
// An invocation takes a run of p.nb consecutive values of one plane (p.nb
// divides the plane), so its channel's coefficients are loaded once for
// the run.
@compute @workgroup_size(BACK_WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * BACK_WG;
    if t >= p.n * p.c * (p.hw / p.nb) { return; }
    let i0 = t * p.nb;
    let q = six((i0 / p.hw) % p.c);
    for (var i = i0; i < i0 + p.nb; i = i + 1u) {
        store(i, mixed(i, q));
    }
}

// forward over float4s (hw % 4 == 0; p.nb float4s per run).
@compute @workgroup_size(BACK_WG)
fn forward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let per = p.hw / 4u;
    let t = gid.x + gid.y * nwg.x * BACK_WG;
    if t >= p.n * p.c * (per / p.nb) { return; }
    let i0 = t * p.nb;
    let q = six((i0 / per) % p.c);
    for (var i = i0; i < i0 + p.nb; i = i + 1u) {
        store4(i, mixed_on(i, q, q, vec4(true)));
    }
}

// forward over float4s where a plane is not whole float4s (7×7: 49
// values): a run is 4 planes, hw float4s, and every run's float4s fall on
// its planes alike, float4 j on plane ⌊4j / hw⌋ except where a boundary
// splits it. An invocation loads each plane's coefficients once. Needs
// hw ≥ 4 and n·c divisible by 4.
@compute @workgroup_size(BACK_WG)
fn forward_quads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * BACK_WG;
    if t >= p.n * p.c / 4u { return; }
    let base = t * p.hw;
    let all = vec4(true);
    var lo = six((4u * t) % p.c);
    for (var u = 0u; u < 4u; u = u + 1u) {
        // Float4s wholly on plane u, then the one its end splits.
        let end = (u + 1u) * p.hw;
        for (var j = (u * p.hw + 3u) / 4u; j < end / 4u; j = j + 1u) {
            store4(base + j, mixed_on(base + j, lo, lo, all));
        }
        if u == 3u {
            break;
        }
        let hi = six((4u * t + u + 1u) % p.c);
        let split = end % 4u;
        if split != 0u {
            let m = vec4(0u, 1u, 2u, 3u) < vec4(split);
            let j = end / 4u;
            store4(base + j, mixed_on(base + j, lo, hi, m));
        }
        lo = hi;
    }
}

// The second candidate's dz of the pair entries.
@group(0) @binding(12) var<storage, read_write> dz_b: array<f32>;
@group(0) @binding(12) var<storage, read_write> dz4_b: array<vec4<f32>>;

// dz = a·dy + cy·y + c0 on one channel, y = z·a_bn + b_bn (candidate k0's
// batch norm), for batch items b0..b1.
struct Coefs {
    sp: Span,
    q: Coef,
    a: f32,
    cy: f32,
    c0: f32,
}

// The dz coefficients of channel ch: its sums added up over their chunks;
// the batch norm's a is its invstd (no affine: γ = 1).
struct Back {
    q: Coef,
    a: f32,
    cy: f32,
    c0: f32,
}

fn back(ch: u32) -> Back {
    return back_of(p.k0, ch);
}

// Candidate k's (a batch norm's input).
fn back_of(k: u32, ch: u32) -> Back {
    let q = coef_of(k, ch, true);
    let row = p.c * p.chunks;
    var sy = 0.0;
    var sg = 0.0;
    for (var c = 0u; c < p.chunks; c = c + 1u) {
        sy = sy + sums_in[k * row + ch * p.chunks + c];
        sg = sg + sums_in[p.kk * row + ch * p.chunks + c];
    }
    let m = f32(p.n * p.hw);
    let a = q.w * q.a;
    return Back(q, a, -a * sy / m, -a * sg / m);
}

// Once per invocation.
fn coefs(z: u32) -> Coefs {
    let sp = span(z);
    let k = back(sp.ch);
    return Coefs(sp, k.q, k.a, k.cy, k.c0);
}

@compute @workgroup_size(BACK_WG)
fn bn_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * BACK_WG;
    if r >= p.hw { return; }
    let q = coefs(gid.z);
    for (var b = q.sp.b0; b < q.sp.b1; b = b + 1u) {
        let i = (b * p.c + q.sp.ch) * p.hw + r;
        dz[i] = dy[i] * q.a + apply(q.q, x0[i]) * q.cy + q.c0;
    }
}

// bn_backward over float4s (hw % 4 == 0).
@compute @workgroup_size(BACK_WG)
fn bn_backward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let per = p.hw / 4u;
    let r = gid.x + gid.y * nwg.x * BACK_WG;
    if r >= per { return; }
    let q = coefs(gid.z);
    for (var b = q.sp.b0; b < q.sp.b1; b = b + 1u) {
        let i = (b * p.c + q.sp.ch) * per + r;
        dz4[i] = dy4[i] * q.a + apply4(q.q, v0[i]) * q.cy + q.c0;
    }
}

// bn_backward over float4s where a plane is not whole float4s (7×7: 49
// values), as forward_quads: an invocation takes 4 planes, hw float4s,
// each plane's coefficients found once, the float4 a plane boundary
// splits taking lo's where m, hi's elsewhere. The same arithmetic per
// value as bn_backward. Needs hw ≥ 4 and n·c divisible by 4.
// dz of float4 g (dy) and v (z), its components where m on lo's plane.
fn back_dz(g: vec4<f32>, v: vec4<f32>, lo: Back, hi: Back, m: vec4<bool>) -> vec4<f32> {
    let a = select(vec4(hi.a), vec4(lo.a), m);
    let cy = select(vec4(hi.cy), vec4(lo.cy), m);
    let c0 = select(vec4(hi.c0), vec4(lo.c0), m);
    return g * a + apply_on(lo.q, hi.q, m, v) * cy + c0;
}

fn back_on(i: u32, lo: Back, hi: Back, m: vec4<bool>) {
    dz4[i] = back_dz(dy4[i], v0[i], lo, hi, m);
}

@compute @workgroup_size(BACK_WG)
fn bn_backward_quads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * BACK_WG;
    if t >= p.n * p.c / 4u { return; }
    let base = t * p.hw;
    let all = vec4(true);
    var lo = back((4u * t) % p.c);
    for (var u = 0u; u < 4u; u = u + 1u) {
        // Float4s wholly on plane u, then the one its end splits.
        let end = (u + 1u) * p.hw;
        for (var j = (u * p.hw + 3u) / 4u; j < end / 4u; j = j + 1u) {
            back_on(base + j, lo, lo, all);
        }
        if u == 3u {
            break;
        }
        let hi = back((4u * t + u + 1u) % p.c);
        let split = end % 4u;
        if split != 0u {
            back_on(base + end / 4u, lo, hi, vec4(0u, 1u, 2u, 3u) < vec4(split));
        }
        lo = hi;
    }
}

// The bn_backward entries for two fused candidates of a mix at once, p.k0
// and p.k (z in slots 1 and 2, dz in 11 and 12): dy read once for both,
// one dispatch instead of two; each value's arithmetic as bn_backward's.
@compute @workgroup_size(BACK_WG)
fn bn_backward_pair(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * BACK_WG;
    if r >= p.hw { return; }
    let sp = span(gid.z);
    let q0 = back_of(p.k0, sp.ch);
    let q1 = back_of(p.k, sp.ch);
    for (var b = sp.b0; b < sp.b1; b = b + 1u) {
        let i = (b * p.c + sp.ch) * p.hw + r;
        let g = dy[i];
        dz[i] = g * q0.a + apply(q0.q, x0[i]) * q0.cy + q0.c0;
        dz_b[i] = g * q1.a + apply(q1.q, x1[i]) * q1.cy + q1.c0;
    }
}

@compute @workgroup_size(BACK_WG)
fn bn_backward4_pair(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let per = p.hw / 4u;
    let r = gid.x + gid.y * nwg.x * BACK_WG;
    if r >= per { return; }
    let sp = span(gid.z);
    let q0 = back_of(p.k0, sp.ch);
    let q1 = back_of(p.k, sp.ch);
    for (var b = sp.b0; b < sp.b1; b = b + 1u) {
        let i = (b * p.c + sp.ch) * per + r;
        let g = dy4[i];
        dz4[i] = g * q0.a + apply4(q0.q, v0[i]) * q0.cy + q0.c0;
        dz4_b[i] = g * q1.a + apply4(q1.q, v1[i]) * q1.cy + q1.c0;
    }
}

// bn_backward_quads for the pair.
struct Back2 {
    u: Back,
    v: Back,
}

fn back2(ch: u32) -> Back2 {
    return Back2(back_of(p.k0, ch), back_of(p.k, ch));
}

fn back2_on(i: u32, lo: Back2, hi: Back2, m: vec4<bool>) {
    let g = dy4[i];
    dz4[i] = back_dz(g, v0[i], lo.u, hi.u, m);
    dz4_b[i] = back_dz(g, v1[i], lo.v, hi.v, m);
}

@compute @workgroup_size(BACK_WG)
fn bn_backward_quads_pair(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * BACK_WG;
    if t >= p.n * p.c / 4u { return; }
    let base = t * p.hw;
    let all = vec4(true);
    var lo = back2((4u * t) % p.c);
    for (var u = 0u; u < 4u; u = u + 1u) {
        let end = (u + 1u) * p.hw;
        for (var j = (u * p.hw + 3u) / 4u; j < end / 4u; j = j + 1u) {
            back2_on(base + j, lo, lo, all);
        }
        if u == 3u {
            break;
        }
        let hi = back2((4u * t + u + 1u) % p.c);
        let split = end % 4u;
        if split != 0u {
            back2_on(base + end / 4u, lo, hi, vec4(0u, 1u, 2u, 3u) < vec4(split));
        }
        lo = hi;
    }
}
