// The DARTS mixed op y = Σ_k w[k] · x_k over K tensors of n elements stacked
// in one buffer [K, n] (K separate bindings would pass the 8-buffer budget).
// Slots: a read (the stack, or dy), w read (K weights), out written.

struct Params {
    n: u32,
    k: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// a = the stack [K, n], out = y [n].
@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    var acc = 0.0;
    for (var k = 0u; k < p.k; k = k + 1u) {
        acc = acc + w[k] * a[k * p.n + i];
    }
    out[i] = acc;
}

// a = dy [n], out = the stacked input gradients [K, n]: dx_k = w[k] · dy.
@compute @workgroup_size(256)
fn backward_inputs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n * p.k { return; }
    let k = i / p.n;
    out[i] = w[k] * a[i - k * p.n];
}
