// Reductions without atomics: each workgroup reduces one chunk of one row in
// workgroup memory (partial sums), then `finish` adds a row's partials.
// Input a is [rows, n] row-major; b is a length-n vector shared by all rows.

const ITEMS: u32 = 16u; // elements per invocation per chunk: chunk = WG * ITEMS

struct Params {
    n: u32,
    rows: u32,
    chunks: u32,
    scale: f32,
    outer: u32,
    inner: u32,
    // finish writes out[offset + row]: several norms into one buffer.
    offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> tree: array<f32, 256>;

// Tree-reduce `v` over the workgroup; invocation 0 gets the total.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    tree[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            tree[lid] = tree[lid] + tree[lid + s];
        }
        workgroupBarrier();
    }
    return tree[0];
}

// kind 0: sum of a, 1: sum of a^2, 2: dot of a's row with b.
fn chunk_partial(wg: vec3<u32>, lid: u32, kind: u32) {
    let row = wg.y;
    let base = wg.x * WG * ITEMS;
    var acc = 0.0;
    for (var k = 0u; k < ITEMS; k = k + 1u) {
        let j = base + k * WG + lid;
        if j < p.n {
            let v = a[row * p.n + j];
            if kind == 0u {
                acc = acc + v;
            } else if kind == 1u {
                acc = acc + v * v;
            } else {
                acc = acc + v * b[j];
            }
        }
    }
    let total = workgroup_sum(lid, acc);
    if lid == 0u {
        partial[row * p.chunks + wg.x] = total;
    }
}

@compute @workgroup_size(256)
fn sum_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    chunk_partial(wg, lid, 0u);
}

@compute @workgroup_size(256)
fn sumsq_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    chunk_partial(wg, lid, 1u);
}

@compute @workgroup_size(256)
fn dot_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    chunk_partial(wg, lid, 2u);
}

// out[offset + row] = scale * sum of the row's partials (one invocation per row).
@compute @workgroup_size(64)
fn finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if row >= p.rows { return; }
    var acc = 0.0;
    for (var k = 0u; k < p.chunks; k = k + 1u) {
        acc = acc + partial[row * p.chunks + k];
    }
    out[p.offset + row] = p.scale * acc;
}

// a viewed as [outer, rows, inner]: out[c] = scale * sum over outer and inner
// of channel c (bias gradients, batch-norm sums). One workgroup per channel.
@compute @workgroup_size(256)
fn channel_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = wg.x;
    let m = p.outer * p.inner;
    var acc = 0.0;
    for (var j = lid; j < m; j = j + WG) {
        let o = j / p.inner;
        let i = j - o * p.inner;
        acc = acc + a[(o * p.rows + ch) * p.inner + i];
    }
    let total = workgroup_sum(lid, acc);
    if lid == 0u {
        out[ch] = p.scale * total;
    }
}
