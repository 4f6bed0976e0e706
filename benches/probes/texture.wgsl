// Is a texel load cheaper than a storage-buffer load on a CPU adapter?
// `TEX=1 cargo run --release -- texture.wgsl tex` (the texture is bound
// at binding 3, a 1024×1024 rgba32f copy of the buffer's first 16 MiB)
// against `loads.wgsl vec4s`: the same addresses, one float4 per load.
@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(0) @binding(3) var t: texture_2d<f32>;
@compute @workgroup_size(64)
fn tex(@builtin(global_invocation_id) g: vec3<u32>) {
    var s = vec4(0.0);
    let base = g.x * 7u;
    for (var j = 0u; j < 1024u; j++) {
        let i = (base + j * 3u) & 0xfffffu;
        s += textureLoad(t, vec2<u32>(i & 1023u, i >> 10u), 0);
    }
    o[g.x] = s.x + s.y + s.z + s.w;
    if g.x == 999999u { o[1] = a4[0].x; }
}
