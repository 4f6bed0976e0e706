// C[m, n] = op(A)[m, k] · op(B)[k, n] (+ bias[n]), op = identity or transpose.
// Transposes are strides set from Rust: op(A)[i, l] = a[i * a_row + l * a_col]
// and op(B)[l, j] = b[l * b_row + j * b_col]. Slots: a, b, bias read; c written.
// Without a bias the Rust side binds `a` in the bias slot (never read).

struct Params {
    m: u32,
    k: u32,
    n: u32,
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// Tiled kernel: a 64×64 tile of C per workgroup of 16×16 invocations, each
// owning a 4×4 micro-tile strided by 16 (conflict-free workgroup reads,
// coalesced stores), K consumed in steps of TK. 2 × 4 KiB workgroup memory.
const TS: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> tile_a: array<f32, 1024>; // [TK][TS]: op(A)ᵀ of the tile
var<workgroup> tile_b: array<f32, 1024>; // [TK][TS]

// Write row i of a 4×4 block (columns `cols`) with the bias, skipping
// elements past the edge of C.
fn store_row(i: u32, cols: vec4<u32>, v: vec4<f32>) {
    if i >= p.m {
        return;
    }
    for (var t = 0u; t < 4u; t = t + 1u) {
        let j = cols[t];
        if j < p.n {
            var x = v[t];
            if p.has_bias != 0u {
                x = x + bias[j];
            }
            c[i * p.n + j] = x;
        }
    }
}

// Register-blocked kernel without workgroup memory or barriers (fast on CPU
// implementations such as lavapipe, where barriers are costly): each
// invocation keeps a 4×4 block of C in registers and streams A and B from
// global memory. The block's rows and columns are strided by the workgroup
// width so neighbouring invocations read neighbouring addresses. Out-of-range rows and columns are clamped for the loads so
// the inner loop has no branches; their results are simply not stored.
@compute @workgroup_size(8, 8)
fn matmul_blocked(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let rows = wg.y * 32u + lid.y + vec4<u32>(0u, 8u, 16u, 24u);
    let cols = wg.x * 32u + lid.x + vec4<u32>(0u, 8u, 16u, 24u);
    let ar = min(rows, vec4<u32>(p.m - 1u)) * p.a_row;
    let bc = min(cols, vec4<u32>(p.n - 1u)) * p.b_col;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var l = 0u; l < p.k; l = l + 1u) {
        let ao = l * p.a_col;
        let bo = l * p.b_row;
        let av = vec4<f32>(a[ar.x + ao], a[ar.y + ao], a[ar.z + ao], a[ar.w + ao]);
        let bv = vec4<f32>(b[bc.x + bo], b[bc.y + bo], b[bc.z + bo], b[bc.w + bo]);
        acc0 = acc0 + av.x * bv;
        acc1 = acc1 + av.y * bv;
        acc2 = acc2 + av.z * bv;
        acc3 = acc3 + av.w * bv;
    }
    store_row(rows.x, cols, acc0);
    store_row(rows.y, cols, acc1);
    store_row(rows.z, cols, acc2);
    store_row(rows.w, cols, acc3);
}

@compute @workgroup_size(16, 16)
fn matmul_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * TS;
    let col0 = wg.x * TS;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var l0 = 0u; l0 < p.k; l0 = l0 + TK) {
        // 1024 elements of each tile, 4 per invocation; consecutive
        // invocations take consecutive addresses of the stored matrix.
        for (var t = 0u; t < 4u; t = t + 1u) {
            let e = li + t * 256u;
            var r = e % TS;
            var l = e / TS;
            if p.a_col == 1u {
                r = e / TK;
                l = e % TK;
            }
            var va = 0.0;
            if row0 + r < p.m && l0 + l < p.k {
                va = a[(row0 + r) * p.a_row + (l0 + l) * p.a_col];
            }
            tile_a[l * TS + r] = va;
            var cb = e % TS;
            var lb = e / TS;
            if p.b_col != 1u {
                cb = e / TK;
                lb = e % TK;
            }
            var vb = 0.0;
            if col0 + cb < p.n && l0 + lb < p.k {
                vb = b[(l0 + lb) * p.b_row + (col0 + cb) * p.b_col];
            }
            tile_b[lb * TS + cb] = vb;
        }
        workgroupBarrier();
        for (var l = 0u; l < TK; l = l + 1u) {
            let o = l * TS;
            let av = vec4<f32>(
                tile_a[o + lid.y],
                tile_a[o + lid.y + 16u],
                tile_a[o + lid.y + 32u],
                tile_a[o + lid.y + 48u],
            );
            let bv = vec4<f32>(
                tile_b[o + lid.x],
                tile_b[o + lid.x + 16u],
                tile_b[o + lid.x + 32u],
                tile_b[o + lid.x + 48u],
            );
            acc0 = acc0 + av.x * bv;
            acc1 = acc1 + av.y * bv;
            acc2 = acc2 + av.z * bv;
            acc3 = acc3 + av.w * bv;
        }
        workgroupBarrier();
    }
    let cols = col0 + lid.x + vec4<u32>(0u, 16u, 32u, 48u);
    let r = row0 + lid.y;
    store_row(r, cols, acc0);
    store_row(r + 16u, cols, acc1);
    store_row(r + 32u, cols, acc2);
    store_row(r + 48u, cols, acc3);
}

