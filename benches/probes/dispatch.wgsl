// The cost of a dispatch: REPS=1000 GROUPS=1 in one compute pass.
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(0) @binding(2) var<uniform> u: array<vec4<f32>, 4096>;
@compute @workgroup_size(64)
fn tiny(@builtin(global_invocation_id) g: vec3<u32>) {
    o[g.x] = a[g.x] + u[0].x;
}
