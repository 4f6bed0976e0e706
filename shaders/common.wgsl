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
// the totals. The closing barrier lets the tree be reused right away.
fn workgroup_sum2(lid: u32, v: vec2<f32>) -> vec2<f32> {
    tree2[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            tree2[lid] = tree2[lid] + tree2[lid + s];
        }
        workgroupBarrier();
    }
    let total = tree2[0];
    workgroupBarrier();
    return total;
}
