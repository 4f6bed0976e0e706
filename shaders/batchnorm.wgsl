// Batch normalization over x [n, c, hw] (NCHW with the spatial dims
// flattened), per channel over M = n·hw values. Training: one workgroup per
// channel, workgroup tree reductions (no float atomics), the statistics in
// one pass around a pivot (see train_forward). Evaluation: element-wise with the
// running statistics. Without affine, γ = 1 and β = 0 (p.affine = 0; the
// γ/β slots are then bound to a stand-in at least c long and ignored).

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    affine: u32,
    eps: f32,
    momentum: f32,
    // 1: a ReLU fused after a training batch norm without affine (y =
    // max(x̂, 0); the backward masks dy by x̂ > 0, x̂ recomputed as the
    // forward computed it, so the mask is the forward's bit for bit).
    relu: u32,
    // Evaluation: batch items per invocation (see eval_plane).
    nb: u32,
    // train_stats: the candidate whose row of the pack this batch norm
    // writes, the mixed op's candidate count K, and whether the previous
    // pack is the mixing weights alone (the first of the chain). fold: the
    // batch norm's channel of the convolution's first (row).
    row: u32,
    kk: u32,
    first: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
// y in a forward, dx in a backward.
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// Batch statistics a training forward saves for its backward.
@group(0) @binding(6) var<storage, read_write> saved_mean: array<f32>;
@group(0) @binding(7) var<storage, read_write> saved_invstd: array<f32>;
// Updated in place by a training forward, read in evaluation.
@group(0) @binding(8) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(9) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(10) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(11) var<storage, read_write> dbeta: array<f32>;

// The same slots as float4s, for the entries that read 4 spatial values per
// load (hw divisible by 4: the planes of 28×28 and 14×14 images): a float4
// load costs CPU adapters about what a float load does.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out4: array<vec4<f32>>;

// train_stats: the mixed op's pack (mix_bn.wgsl) before and after this
// batch norm's row: w [K], then per candidate k the a [c] and b [c] of its
// batch norm's y = x·a + b (from K + 2k·c and K + (2k + 1)·c).
@group(0) @binding(2) var<storage, read> pack_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> pack: array<f32>;


// Workgroup size of the training entries (one workgroup per channel): 256
// on GPUs; CPU adapters compile this file with 32 (ops::batchnorm), as
// there a barrier switches between every SIMD group of the workgroup:
// [32,32,49] forward 0.24 → 0.17 ms, backward 0.34 → 0.26 on lavapipe.
const TRAIN_WG: u32 = 256u;
const_assert TRAIN_WG == 32u || TRAIN_WG == 256u;

fn scale_of(ch: u32) -> f32 {
    return select(1.0, gamma[ch], p.affine != 0u);
}

fn shift_of(ch: u32) -> f32 {
    return select(0.0, beta[ch], p.affine != 0u);
}

// The fused ReLU (p.relu) of a training forward's output z, and its
// backward: dy where the forward's z > 0 (as the ReLU op computes them).
fn relu_if(z: f32) -> f32 {
    return select(z, max(z, 0.0), p.relu != 0u);
}

fn relu_if4(z: vec4<f32>) -> vec4<f32> {
    return select(z, max(z, vec4(0.0)), p.relu != 0u);
}

fn masked(g: f32, z: f32) -> f32 {
    return select(g, select(0.0, g, z > 0.0), p.relu != 0u);
}

fn masked4(g: vec4<f32>, z: vec4<f32>) -> vec4<f32> {
    return select(g, select(vec4(0.0), g, z > vec4(0.0)), p.relu != 0u);
}

// A training forward's statistics of one channel, and the a, b of its
// y = x·a + b.
struct Stats {
    mean: f32,
    invstd: f32,
    // Σ (x − mean)², for the running variance.
    ss: f32,
    a: f32,
    b: f32,
}

// The statistics from the sums of d = x − pivot and d² (see train_stats_of).
fn stats_from(ch: u32, pivot: f32, sums: vec2<f32>) -> Stats {
    let m = p.n * p.hw;
    let dmean = sums.x / f32(m);
    let mean = pivot + dmean;
    let ss = max(sums.y - sums.x * dmean, 0.0);
    let invstd = 1.0 / sqrt(ss / f32(m) + p.eps);
    let a = scale_of(ch) * invstd;
    let b = shift_of(ch) - mean * a;
    return Stats(mean, invstd, ss, a, b);
}

// The statistics in one pass: sums of d = x − K and d² around a pivot K,
// the channel's first value, so Σd² − (Σd)²/M loses no precision to a
// large mean (the textbook one-pass formula's failure).
fn train_stats_of(ch: u32, lid: u32) -> Stats {
    let m = p.n * p.hw;
    let pivot = x[ch * p.hw];
    var acc = vec2(0.0);
    var w = walk_by(ch, lid, p.hw, p.c, TRAIN_WG);
    for (var j = lid; j < m; j = j + TRAIN_WG) {
        let d = x[w.i] - pivot;
        acc = acc + vec2(d, d * d);
        advance(&w);
    }
    return stats_from(ch, pivot, workgroup_sum2_by(lid, acc, TRAIN_WG));
}

// train_stats_of over float4s (p.hw % 4 == 0).
fn train_stats_of4(ch: u32, lid: u32) -> Stats {
    let m4 = p.n * p.hw / 4u;
    let pivot = x4[ch * p.hw / 4u].x;
    var acc = vec2(0.0);
    var w = walk_by(ch, lid, p.hw / 4u, p.c, TRAIN_WG);
    for (var j = lid; j < m4; j = j + TRAIN_WG) {
        let d = x4[w.i] - pivot;
        acc = acc + vec2(dot(d, vec4(1.0)), dot(d, d));
        advance(&w);
    }
    return stats_from(ch, pivot, workgroup_sum2_by(lid, acc, TRAIN_WG));
}

// What a training forward keeps past its output: the batch statistics
// for its backward and the running ones (by one invocation).
fn save_forward(ch: u32, lid: u32, s: Stats) {
    if lid == 0u {
        saved_mean[ch] = s.mean;
        saved_invstd[ch] = s.invstd;
        update_running(ch, s);
    }
}

// The running statistics (PyTorch: the variance's is the unbiased estimate).
fn update_running(ch: u32, s: Stats) {
    let unbiased = s.ss / f32(p.n * p.hw - 1u);
    running_mean[ch] = (1.0 - p.momentum) * running_mean[ch] + p.momentum * s.mean;
    running_var[ch] = (1.0 - p.momentum) * running_var[ch] + p.momentum * unbiased;
}

@compute @workgroup_size(TRAIN_WG)
fn train_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wg.x;
    let m = p.n * p.hw;
    let s = train_stats_of(ch, lid);
    var w = walk_by(ch, lid, p.hw, p.c, TRAIN_WG);
    for (var j = lid; j < m; j = j + TRAIN_WG) {
        let i = w.i;
        out[i] = relu_if(x[i] * s.a + s.b);
        advance(&w);
    }
    save_forward(ch, lid, s);
}

// A batch norm whose output only a mixed op reads (training, no affine or
// ReLU): its statistics alone, as train_forward computes them. The mixed
// op applies y = x·a + b where it reads x (mix_bn.wgsl), so y is never
// written: this pack is pack_in (or, for the first of the chain, the
// mixing weights w) with this batch norm's a, b in row p.row.
@compute @workgroup_size(TRAIN_WG)
fn train_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    write_pack(wg.x, lid, train_stats_of(wg.x, lid));
}

@compute @workgroup_size(TRAIN_WG)
fn train_stats4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    write_pack(wg.x, lid, train_stats_of4(wg.x, lid));
}

// Channel ch's workgroup copies the pack's column ch (channel 0's also w)
// and writes its own a, b there.
fn write_pack(ch: u32, lid: u32, s: Stats) {
    if ch == 0u {
        for (var k = lid; k < p.kk; k = k + TRAIN_WG) {
            pack[k] = pack_in[k];
        }
    }
    if p.first == 0u {
        for (var r = lid; r < 2u * p.kk; r = r + TRAIN_WG) {
            if r / 2u != p.row {
                pack[p.kk + r * p.c + ch] = pack_in[p.kk + r * p.c + ch];
            }
        }
    }
    if lid == 0u {
        pack[p.kk + 2u * p.row * p.c + ch] = s.a;
        pack[p.kk + (2u * p.row + 1u) * p.c + ch] = s.b;
        update_running(ch, s);
    }
}

// A training backward's coefficients of channel ch from the forward's
// saved statistics: x̂·γ = x·a + b (the forward's; no affine with a fused
// ReLU). Shared with batchnorm::Held's generated entries.
struct Back {
    mean: f32,
    invstd: f32,
    a: f32,
    b: f32,
}

fn back_of(ch: u32) -> Back {
    let mean = saved_mean[ch];
    let invstd = saved_invstd[ch];
    let a = scale_of(ch) * invstd;
    return Back(mean, invstd, a, 0.0 - mean * a);
}

// The backward's sums (Σ dy, Σ dy·x̂) and dx = dy·a + x·k + c0, from each
// invocation's (Σ dy, Σ dy·(x − mean)): invstd is taken out of the sum, so
// that every term is the same two operations in each entry (Held writes
// the terms out step by step, where the compiler may otherwise treat a
// common factor of consecutive terms differently from the loop's).
struct BackOut {
    sums: vec2<f32>,
    k: f32,
    c0: f32,
}

fn back_out(lid: u32, acc: vec2<f32>, q: Back) -> BackOut {
    let raw = workgroup_sum2_by(lid, acc, TRAIN_WG);
    let sums = vec2(raw.x, raw.y * q.invstd);
    let means = sums / f32(p.n * p.hw);
    // dx = a·dy − a·(Σdy/M) − a·invstd·(Σdy·x̂/M)·(x − mean).
    let k = -q.a * q.invstd * means.y;
    return BackOut(sums, k, -q.a * means.x - k * q.mean);
}

// dγ = Σ dy·x̂, dβ = Σ dy (by one invocation).
fn save_backward(ch: u32, lid: u32, sums: vec2<f32>) {
    if lid == 0u {
        dgamma[ch] = sums.y;
        dbeta[ch] = sums.x;
    }
}

// dx = γ·invstd·(dy − Σdy/M − x̂·Σ(dy·x̂)/M), dγ = Σ dy·x̂, dβ = Σ dy.
@compute @workgroup_size(TRAIN_WG)
fn train_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wg.x;
    let m = p.n * p.hw;
    let q = back_of(ch);
    var acc = vec2<f32>(0.0, 0.0);
    var w = walk_by(ch, lid, p.hw, p.c, TRAIN_WG);
    for (var j = lid; j < m; j = j + TRAIN_WG) {
        let i = w.i;
        let g = masked(dy[i], x[i] * q.a + q.b);
        acc = acc + vec2<f32>(g, g * (x[i] - q.mean));
        advance(&w);
    }
    let o = back_out(lid, acc, q);
    w = walk_by(ch, lid, p.hw, p.c, TRAIN_WG);
    for (var j = lid; j < m; j = j + TRAIN_WG) {
        let i = w.i;
        out[i] = masked(dy[i], x[i] * q.a + q.b) * q.a + x[i] * o.k + o.c0;
        advance(&w);
    }
    save_backward(ch, lid, o.sums);
}

// train_forward and train_backward over float4s (p.hw % 4 == 0).
@compute @workgroup_size(TRAIN_WG)
fn train_forward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wg.x;
    let m4 = p.n * p.hw / 4u;
    let s = train_stats_of4(ch, lid);
    var w = walk_by(ch, lid, p.hw / 4u, p.c, TRAIN_WG);
    for (var j = lid; j < m4; j = j + TRAIN_WG) {
        let i = w.i;
        out4[i] = relu_if4(x4[i] * s.a + s.b);
        advance(&w);
    }
    save_forward(ch, lid, s);
}

@compute @workgroup_size(TRAIN_WG)
fn train_backward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wg.x;
    let m4 = p.n * p.hw / 4u;
    let q = back_of(ch);
    var acc = vec2<f32>(0.0, 0.0);
    var w = walk_by(ch, lid, p.hw / 4u, p.c, TRAIN_WG);
    for (var j = lid; j < m4; j = j + TRAIN_WG) {
        let i = w.i;
        let g = masked4(dy4[i], x4[i] * q.a + q.b);
        acc = acc + vec2<f32>(dot(g, vec4(1.0)), dot(g, x4[i] - q.mean));
        advance(&w);
    }
    let o = back_out(lid, acc, q);
    w = walk_by(ch, lid, p.hw / 4u, p.c, TRAIN_WG);
    for (var j = lid; j < m4; j = j + TRAIN_WG) {
        let i = w.i;
        out4[i] = masked4(dy4[i], x4[i] * q.a + q.b) * q.a + x4[i] * o.k + o.c0;
        advance(&w);
    }
    save_backward(ch, lid, o.sums);
}

// Evaluation entries: x and y index a value (or a float4) within a plane,
// z a (channel, group of p.nb batch items) pair, so the channel and its
// statistics are found once per invocation, not per value (an integer
// division is a scalar instruction per lane on CPU adapters).
// Workgroup size of the evaluation entries: a workgroup covers part of one
// plane, and the planes are small (49 float4s at 14×14, 49 values at 7×7),
// so a workgroup of 256 would leave most of its lanes idle.
const EVAL_WG: u32 = 64u;

struct Plane {
    ch: u32,
    b0: u32,
    b1: u32,
}

fn eval_plane(z: u32) -> Plane {
    let b0 = (z / p.c) * p.nb;
    return Plane(z % p.c, b0, min(b0 + p.nb, p.n));
}

@compute @workgroup_size(64)
fn eval_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * EVAL_WG;
    if r >= p.hw { return; }
    let q = eval_plane(gid.z);
    let ch = q.ch;
    let invstd = 1.0 / sqrt(running_var[ch] + p.eps);
    for (var b = q.b0; b < q.b1; b = b + 1u) {
        let i = (b * p.c + ch) * p.hw + r;
        out[i] = relu_if((x[i] - running_mean[ch]) * invstd * scale_of(ch) + shift_of(ch));
    }
}

// eval_forward over float4s (hw divisible by 4), the same arithmetic per
// value.
@compute @workgroup_size(64)
fn eval_forward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * EVAL_WG;
    let hw4 = p.hw / 4u;
    if r >= hw4 { return; }
    let q = eval_plane(gid.z);
    let ch = q.ch;
    let invstd = 1.0 / sqrt(running_var[ch] + p.eps);
    for (var b = q.b0; b < q.b1; b = b + 1u) {
        let i = (b * p.c + ch) * hw4 + r;
        out4[i] = relu_if4((x4[i] - running_mean[ch]) * invstd * scale_of(ch) + shift_of(ch));
    }
}

// dx = dy·γ·invstd of the running variance (the statistics are constants).
@compute @workgroup_size(64)
fn eval_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * EVAL_WG;
    if r >= p.hw { return; }
    let q = eval_plane(gid.z);
    let ch = q.ch;
    for (var b = q.b0; b < q.b1; b = b + 1u) {
        let i = (b * p.c + ch) * p.hw + r;
        out[i] = dy[i] * scale_of(ch) / sqrt(running_var[ch] + p.eps);
    }
}

// eval_backward over float4s (hw divisible by 4).
@compute @workgroup_size(64)
fn eval_backward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * EVAL_WG;
    let hw4 = p.hw / 4u;
    if r >= hw4 { return; }
    let q = eval_plane(gid.z);
    let ch = q.ch;
    for (var b = q.b0; b < q.b1; b = b + 1u) {
        let i = (b * p.c + ch) * hw4 + r;
        out4[i] = dy4[i] * scale_of(ch) / sqrt(running_var[ch] + p.eps);
    }
}

// Evaluation batch norm folded into the convolution before it (an
// evaluation graph's conv → BN, `graph::fold`): per output channel o,
// s = γ[o] / sqrt(running_var[o] + eps), w'[o, j] = w[o, j]·s over the
// p.hw weights of o (w in slot 1, w' in 5) and b'[o] = β[o] + (b[o] −
// running_mean[o])·s (the convolution's bias b in slot 2 where p.nb is 1,
// none otherwise; b' in 6). One invocation per weight. The convolution's
// output channel o is the batch norm's channel o + p.row (p.c of them: a
// part of a concatenation the batch norm reads, or all).
@compute @workgroup_size(64)
fn fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.c * p.hw { return; }
    let o = i / p.hw;
    let ch = o + p.row;
    let s = scale_of(ch) / sqrt(running_var[ch] + p.eps);
    out[i] = x[i] * s;
    if i - o * p.hw == 0u {
        let b = select(0.0, dy[o], p.nb == 1u);
        saved_mean[o] = shift_of(ch) + (b - running_mean[ch]) * s;
    }
}
