// The DARTS mixed op y = Σ_k w[k] · x_k over K candidate tensors of n
// elements each, read where the candidates wrote them: no stacked copy.
// A dispatch takes up to 6 of them (6 tensors + 2 other buffers = the
// 8-storage-buffer budget); the host chains ⌈K / 6⌉ dispatches, the later
// ones accumulating. Slots 1–6: the 6 tensors (x_k, or dx_k written);
// 7: w (read); 8: y written / dy read; 9: partial dot products.

const GROUP: u32 = 6u;
const ITEMS: u32 = 16u; // elements per invocation per dot-product chunk

struct Params {
    n: u32,
    // Tensors in this dispatch, and the first one's index k0 into w.
    k: u32,
    k0: u32,
    // forward: add to y (1) or overwrite it (0).
    accumulate: u32,
    // Dot-product chunks per tensor (backward_weights).
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> x1: array<f32>;
@group(0) @binding(3) var<storage, read> x2: array<f32>;
@group(0) @binding(4) var<storage, read> x3: array<f32>;
@group(0) @binding(5) var<storage, read> x4: array<f32>;
@group(0) @binding(6) var<storage, read> x5: array<f32>;
@group(0) @binding(7) var<storage, read> w: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;
@group(0) @binding(9) var<storage, read_write> partial: array<f32>;
// backward_inputs writes the tensors' gradients through these (the same
// slots as x0..x5, declared writable for that entry only).
@group(0) @binding(1) var<storage, read_write> d0: array<f32>;
@group(0) @binding(2) var<storage, read_write> d1: array<f32>;
@group(0) @binding(3) var<storage, read_write> d2: array<f32>;
@group(0) @binding(4) var<storage, read_write> d3: array<f32>;
@group(0) @binding(5) var<storage, read_write> d4: array<f32>;
@group(0) @binding(6) var<storage, read_write> d5: array<f32>;
@group(0) @binding(8) var<storage, read> dy: array<f32>;
// The same slots as float4s, for tensors of a length divisible by 4 (every
// batch of 4k images): a float4 load costs a CPU adapter about what a
// scalar one does, and w[k] is loaded once per 4 elements.
@group(0) @binding(1) var<storage, read> v0: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v1: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v2: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> v3: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> v4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> v5: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> e0: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> e1: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> e2: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> e3: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> e4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> e5: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> dy4: array<vec4<f32>>;

// Σ_{j < k} w[k0 + j] · x_j[i]; the slots past k are bound to x0 and never
// read.
fn weighted(i: u32) -> f32 {
    var acc = w[p.k0] * x0[i];
    if p.k > 1u { acc = acc + w[p.k0 + 1u] * x1[i]; }
    if p.k > 2u { acc = acc + w[p.k0 + 2u] * x2[i]; }
    if p.k > 3u { acc = acc + w[p.k0 + 3u] * x3[i]; }
    if p.k > 4u { acc = acc + w[p.k0 + 4u] * x4[i]; }
    if p.k > 5u { acc = acc + w[p.k0 + 5u] * x5[i]; }
    return acc;
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    let v = weighted(i);
    if p.accumulate == 1u {
        y[i] = y[i] + v;
    } else {
        y[i] = v;
    }
}

// dx_j = w[k0 + j] · dy for the k tensors of this dispatch.
@compute @workgroup_size(256)
fn backward_inputs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    let g = dy[i];
    d0[i] = w[p.k0] * g;
    if p.k > 1u { d1[i] = w[p.k0 + 1u] * g; }
    if p.k > 2u { d2[i] = w[p.k0 + 2u] * g; }
    if p.k > 3u { d3[i] = w[p.k0 + 3u] * g; }
    if p.k > 4u { d4[i] = w[p.k0 + 4u] * g; }
    if p.k > 5u { d5[i] = w[p.k0 + 5u] * g; }
}

// forward and backward_inputs over float4s (p.n % 4 == 0): the same
// products and sums per element.
fn weighted4(i: u32) -> vec4<f32> {
    var acc = w[p.k0] * v0[i];
    if p.k > 1u { acc = acc + w[p.k0 + 1u] * v1[i]; }
    if p.k > 2u { acc = acc + w[p.k0 + 2u] * v2[i]; }
    if p.k > 3u { acc = acc + w[p.k0 + 3u] * v3[i]; }
    if p.k > 4u { acc = acc + w[p.k0 + 4u] * v4[i]; }
    if p.k > 5u { acc = acc + w[p.k0 + 5u] * v5[i]; }
    return acc;
}

@compute @workgroup_size(256)
fn forward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n / 4u { return; }
    let v = weighted4(i);
    if p.accumulate == 1u {
        y4[i] = y4[i] + v;
    } else {
        y4[i] = v;
    }
}

@compute @workgroup_size(256)
fn backward_inputs4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n / 4u { return; }
    let g = dy4[i];
    e0[i] = w[p.k0] * g;
    if p.k > 1u { e1[i] = w[p.k0 + 1u] * g; }
    if p.k > 2u { e2[i] = w[p.k0 + 2u] * g; }
    if p.k > 3u { e3[i] = w[p.k0 + 3u] * g; }
    if p.k > 4u { e4[i] = w[p.k0 + 4u] * g; }
    if p.k > 5u { e5[i] = w[p.k0 + 5u] * g; }
}

// Pass 1 of dw[k0 + j] = Σ_i x_j[i] · dy[i]: workgroup c of this dispatch
// writes chunk c's partial dot products to partial[(k0 + j) · chunks + c];
// reduce.wgsl's `finish` adds them up.
// The tensors are taken in pairs so one tree serves two.
@compute @workgroup_size(256)
fn dot_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wg.x * WG * ITEMS;
    var a = vec2(0.0);
    var b = vec2(0.0);
    var c = vec2(0.0);
    for (var t = 0u; t < ITEMS; t = t + 1u) {
        let i = base + t * WG + lid;
        if i < p.n {
            let g = dy[i];
            a = a + g * vec2(x0[i], select(0.0, x1[i], p.k > 1u));
            if p.k > 2u { b = b + g * vec2(x2[i], select(0.0, x3[i], p.k > 3u)); }
            if p.k > 4u { c = c + g * vec2(x4[i], select(0.0, x5[i], p.k > 5u)); }
        }
    }
    let at = p.k0 * p.chunks + wg.x;
    let ta = workgroup_sum2(lid, a);
    if lid == 0u {
        partial[at] = ta.x;
        if p.k > 1u { partial[at + p.chunks] = ta.y; }
    }
    if p.k > 2u {
        let tb = workgroup_sum2(lid, b);
        if lid == 0u {
            partial[at + 2u * p.chunks] = tb.x;
            if p.k > 3u { partial[at + 3u * p.chunks] = tb.y; }
        }
    }
    if p.k > 4u {
        let tc = workgroup_sum2(lid, c);
        if lid == 0u {
            partial[at + 4u * p.chunks] = tc.x;
            if p.k > 5u { partial[at + 5u * p.chunks] = tc.y; }
        }
    }
}
