// L1 loss (mean absolute error) between a prediction and a target vector:
// |p − t| per element here, the mean in reduce.wgsl.
// Slots: pred, targ, dl read; out written.

struct Params {
    n: u32,
    // l1_backward: 1 / n.
    alpha: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> targ: array<f32>;
@group(0) @binding(3) var<storage, read> dl: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn abs_diff(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out[i] = abs(pred[i] - targ[i]);
}

// out = dpred = sign(p − t) · dl[0] · alpha, with sign(0) = 0 (as the CPU twin).
@compute @workgroup_size(256)
fn l1_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out[i] = sign(pred[i] - targ[i]) * (dl[0] * p.alpha);
}
