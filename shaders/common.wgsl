// Prepended by the engine to every shader file (src/engine/shaders.rs), so a
// file holds only its op. Workgroup size of 1-D kernels; keep in sync with
// engine::WG.
const WG: u32 = 256u;

// Linear invocation index of a 1-D grid folded into (x, y) by grid_1d.
fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}
