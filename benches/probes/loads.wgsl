@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(0) @binding(2) var<uniform> u: array<vec4<f32>, 4096>;
@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
// Probes of what a CPU adapter (lavapipe) charges for a load: each entry's
// invocations read 4,096 floats (or do 16,384 FMAs); see src/main.rs. The
// `if g.x == 999999u` lines only keep every binding in each entry's layout.
@compute @workgroup_size(64)
fn scalar(@builtin(global_invocation_id) g: vec3<u32>) {
    var s = 0.0;
    let base = g.x * 7u;
    for (var j = 0u; j < 4096u; j++) { s += a[(base + j * 3u) & 0x3fffffu]; }
    o[g.x] = s;
    if g.x == 999999u { o[1] = u[0].x; }
}
@compute @workgroup_size(64)
fn vec4s(@builtin(global_invocation_id) g: vec3<u32>) {
    var s = vec4(0.0);
    let base = g.x * 7u;
    for (var j = 0u; j < 1024u; j++) { s += a4[(base + j * 3u) & 0xfffffu]; }
    o[g.x] = s.x + s.y + s.z + s.w;
    if g.x == 999999u { o[1] = u[0].x; }
}
@compute @workgroup_size(64)
fn ubo(@builtin(global_invocation_id) g: vec3<u32>) {
    var s = vec4(0.0);
    let base = g.x * 7u;
    for (var j = 0u; j < 1024u; j++) { s += u[(base + j * 3u) & 0xfffu]; }
    o[g.x] = s.x + s.y + s.z + s.w;
    if g.x == 999999u { o[1] = a[0]; }
}
@compute @workgroup_size(64)
fn same(@builtin(global_invocation_id) g: vec3<u32>) {
    var s = 0.0;
    for (var j = 0u; j < 4096u; j++) { s += a[(j * 3u) & 0x3fffffu]; }
    o[g.x] = s;
    if g.x == 999999u { o[1] = u[0].x; }
}
@compute @workgroup_size(64)
fn unrolled(@builtin(global_invocation_id) g: vec3<u32>) {
    var s = 0.0;
    let base = g.x * 7u;
    for (var j = 0u; j < 1024u; j++) {
      let i = (base + j * 12u) & 0x3ffff0u;
      s += a[i] + a[i + 1u] + a[i + 2u] + a[i + 3u];
    }
    o[g.x] = s;
    if g.x == 999999u { o[1] = u[0].x; }
}
var<workgroup> sh: array<vec4<f32>, 1024>;
@compute @workgroup_size(64)
fn wgmem(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    for (var j = li; j < 1024u; j += 64u) { sh[j] = a4[j]; }
    workgroupBarrier();
    var s = vec4(0.0);
    let base = g.x * 7u;
    for (var j = 0u; j < 1024u; j++) { s += sh[(base + j * 3u) & 0x3ffu]; }
    o[g.x] = s.x + s.y + s.z + s.w;
    if g.x == 999999u { o[1] = u[0].x; }
}
@compute @workgroup_size(64)
fn fma16(@builtin(global_invocation_id) g: vec3<u32>) {
    // 4 vec4 loads per iteration, 64 FMAs (vec4 ops 16)
    var a0 = vec4(0.0); var a1 = vec4(0.0); var a2 = vec4(0.0); var a3 = vec4(0.0);
    let base = g.x * 7u;
    for (var j = 0u; j < 256u; j++) {
        let x = a4[(base + j * 3u) & 0xfffffu];
        let w = a4[(base + j * 5u) & 0xfffffu];
        let y = a4[(base + j * 9u) & 0xfffffu];
        let z = a4[(base + j * 11u) & 0xfffffu];
        a0 = fma(x, vec4(w.x), a0); a1 = fma(x, vec4(w.y), a1); a2 = fma(x, vec4(w.z), a2); a3 = fma(x, vec4(w.w), a3);
        a0 = fma(y, vec4(z.x), a0); a1 = fma(y, vec4(z.y), a1); a2 = fma(y, vec4(z.z), a2); a3 = fma(y, vec4(z.w), a3);
        a0 = fma(x, vec4(z.x), a0); a1 = fma(x, vec4(z.y), a1); a2 = fma(x, vec4(z.z), a2); a3 = fma(x, vec4(z.w), a3);
        a0 = fma(y, vec4(w.x), a0); a1 = fma(y, vec4(w.y), a1); a2 = fma(y, vec4(w.z), a2); a3 = fma(y, vec4(w.w), a3);
    }
    o[g.x] = dot(a0 + a1, a2 + a3);
    if g.x == 999999u { o[1] = u[0].x; }
}
@compute @workgroup_size(64)
fn fmaonly(@builtin(global_invocation_id) g: vec3<u32>) {
    var a0 = vec4(0.0); var a1 = vec4(0.0); var a2 = vec4(0.0); var a3 = vec4(0.0);
    var x = a4[g.x]; var w = a4[g.x + 1u];
    for (var j = 0u; j < 256u; j++) {
        a0 = fma(x, vec4(w.x), a0); a1 = fma(x, vec4(w.y), a1); a2 = fma(x, vec4(w.z), a2); a3 = fma(x, vec4(w.w), a3);
        a0 = fma(w, vec4(x.x), a0); a1 = fma(w, vec4(x.y), a1); a2 = fma(w, vec4(x.z), a2); a3 = fma(w, vec4(x.w), a3);
        a0 = fma(x, vec4(x.x), a0); a1 = fma(x, vec4(x.y), a1); a2 = fma(x, vec4(x.z), a2); a3 = fma(x, vec4(x.w), a3);
        a0 = fma(w, vec4(w.x), a0); a1 = fma(w, vec4(w.y), a1); a2 = fma(w, vec4(w.z), a2); a3 = fma(w, vec4(w.w), a3);
        x = x * 0.999; w = w * 1.001;
    }
    o[g.x] = dot(a0 + a1, a2 + a3);
    if g.x == 999999u { o[1] = u[0].x; }
}
