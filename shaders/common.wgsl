// Prepended by the engine to every shader file (src/engine/shaders.rs), so a
// file holds only its op. Workgroup size of 1-D kernels; keep in sync with
// engine::WG.
const WG: u32 = 256u;

// Linear invocation index of a 1-D grid folded into (x, y) by grid_1d.
fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Two sums reduced at once (batch norm, the mixed op). Counted against an
// entry's workgroup memory only where it is used.
var<workgroup> tree2: array<vec2<f32>, 256>;

// Tree-reduce two sums at once over the workgroup; every invocation gets
// the totals. The tree is the halving one (pairs WG/2 apart, then WG/4, …,
// then 1), but three levels are summed per step by the invocations that
// own them, so it takes 4 barriers instead of 10: on CPU adapters every
// barrier switches between all of the workgroup's SIMD groups, which was
// most of a batch norm on small planes. The same pairs are added, so the
// sums are those of one level per barrier, bit for bit.
fn workgroup_sum2(lid: u32, v: vec2<f32>) -> vec2<f32> {
    return workgroup_sum2_by(lid, v, WG);
}

// workgroup_sum2 over the first `wg` invocations, wg = 4·8^k (32 or 256):
// three levels per barrier down to 4 positions, then levels 2 and 1.
fn workgroup_sum2_by(lid: u32, v: vec2<f32>, wg: u32) -> vec2<f32> {
    tree2[lid] = v;
    workgroupBarrier();
    // Levels wg/2, wg/4, wg/8 for the first wg/8 positions, then the next
    // three (16, 8 and 4 at wg = 256).
    for (var d = wg / 8u; d >= 4u; d = d / 8u) {
        if lid < d {
            tree2[lid] = tree_levels3(lid, d);
        }
        workgroupBarrier();
    }
    // Levels 2 and 1 by every invocation.
    let total = (tree2[0] + tree2[2]) + (tree2[1] + tree2[3]);
    // The tree can be reused right after.
    workgroupBarrier();
    return total;
}

// Position l after three halving levels whose smallest distance is d:
// the pairs (l, l + 4d), then (l, l + 2d), then (l, l + d).
fn tree_levels3(l: u32, d: u32) -> vec2<f32> {
    let a0 = tree2[l] + tree2[l + 4u * d];
    let a1 = tree2[l + 2u * d] + tree2[l + 6u * d];
    let a2 = tree2[l + d] + tree2[l + 5u * d];
    let a3 = tree2[l + 3u * d] + tree2[l + 7u * d];
    return (a0 + a1) + (a2 + a3);
}

// The staging above takes 4·8^k invocations (256: 3 + 3 + 2 levels).
const_assert WG == 256u;

// Channel ch's values (of c channels) j = lid, lid + WG, ... as flat
// indices (j = batch · per + spatial, per values per plane: hw, or hw / 4
// float4s), walked without a division per value (an integer division is a
// scalar instruction per lane on CPU adapters): WG = q·per + rem, so each
// step adds q planes of the whole tensor and rem, plus one more wrap of the
// plane when the spatial index passes per. Batch norm and the mixed op's
// per-channel sums (mix_bn) walk their channels with it.
struct Walk {
    i: u32,
    r: u32,
    per: u32,
    rem: u32,
    step: u32,
    wrap: u32,
}

fn walk(ch: u32, j: u32, per: u32, c: u32) -> Walk {
    return walk_by(ch, j, per, c, WG);
}

// walk for a workgroup of `wg` invocations.
fn walk_by(ch: u32, j: u32, per: u32, c: u32, wg: u32) -> Walk {
    let b = j / per;
    let r = j - b * per;
    let q = wg / per;
    let rem = wg - q * per;
    return Walk((b * c + ch) * per + r, r, per, rem, q * c * per + rem, (c - 1u) * per);
}

fn advance(w: ptr<function, Walk>) {
    (*w).r = (*w).r + (*w).rem;
    (*w).i = (*w).i + (*w).step;
    if (*w).r >= (*w).per {
        (*w).r = (*w).r - (*w).per;
        (*w).i = (*w).i + (*w).wrap;
    }
}
