// Element-wise ops and their gradients. Slots: a, b, c read; out0, out1 written.
// `alpha` is a constant factor; `c[0]` a scalar held in a buffer.

struct Params {
    n: u32,
    alpha: f32,
    // row_scale: the row length.
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> out0: array<f32>;
@group(0) @binding(5) var<storage, read_write> out1: array<f32>;

// The same slots as float4s: relu and add over 4 elements per invocation
// when n is divisible by 4 (p.n then counts float4s). A float4 load costs
// CPU adapters about what a float load does.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out04: array<vec4<f32>>;

// sum_forward's further addends (a, b, c, then these).
@group(0) @binding(6) var<storage, read> d: array<f32>;
@group(0) @binding(7) var<storage, read> e: array<f32>;
@group(0) @binding(8) var<storage, read> f: array<f32>;
@group(0) @binding(9) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> c4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> d4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> e4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> f4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> g4: array<vec4<f32>>;

// out0 = a + b + ... over p.cols addends (2 to 7: slots 1, 2, 3, 6, 7, 8,
// 9; the slots past them are bound to a and not read), left to right: a
// tensor's gradient contributions in one pass.
@compute @workgroup_size(256)
fn sum_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    var s = a[i] + b[i];
    if p.cols > 2u { s = s + c[i]; }
    if p.cols > 3u { s = s + d[i]; }
    if p.cols > 4u { s = s + e[i]; }
    if p.cols > 5u { s = s + f[i]; }
    if p.cols > 6u { s = s + g[i]; }
    out0[i] = s;
}

@compute @workgroup_size(256)
fn sum_forward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    var s = a4[i] + b4[i];
    if p.cols > 2u { s = s + c4[i]; }
    if p.cols > 3u { s = s + d4[i]; }
    if p.cols > 4u { s = s + e4[i]; }
    if p.cols > 5u { s = s + f4[i]; }
    if p.cols > 6u { s = s + g4[i]; }
    out04[i] = s;
}

@compute @workgroup_size(256)
fn relu_forward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out04[i] = max(a4[i], vec4(0.0));
}

@compute @workgroup_size(256)
fn relu_backward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out04[i] = select(vec4(0.0), b4[i], a4[i] > vec4(0.0));
}

@compute @workgroup_size(256)
fn add_forward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out04[i] = a4[i] + b4[i];
}

@compute @workgroup_size(256)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = max(a[i], 0.0);
}

// a = x (the forward input), b = dy.
@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = select(0.0, b[i], a[i] > 0.0);
}

@compute @workgroup_size(256)
fn sigmoid_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = 1.0 / (1.0 + exp(-a[i]));
}

// a = y (the forward output), b = dy.
@compute @workgroup_size(256)
fn sigmoid_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = b[i] * a[i] * (1.0 - a[i]);
}

@compute @workgroup_size(256)
fn tanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = tanh(a[i]);
}

// a = y (the forward output), b = dy.
@compute @workgroup_size(256)
fn tanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = b[i] * (1.0 - a[i] * a[i]);
}

@compute @workgroup_size(256)
fn add_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = a[i] + b[i];
}

// out0 += alpha * a: gradient accumulation where a tensor has several consumers.
@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = out0[i] + p.alpha * a[i];
}

// out0 = alpha * a (add's backward is this copy with alpha = 1).
@compute @workgroup_size(256)
fn copy_scaled(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = p.alpha * a[i];
}

@compute @workgroup_size(256)
fn mul_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = a[i] * b[i];
}

// a, b = the forward inputs, c = dy; out0 = da, out1 = db.
@compute @workgroup_size(256)
fn mul_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    let g = c[i];
    out0[i] = g * b[i];
    out1[i] = g * a[i];
}

// out0 = alpha * c[0] * a: scale by a scalar held in a buffer. Also the
// backward of scale (a = dy) and of the squared norm (alpha = 2, a = x).
@compute @workgroup_size(256)
fn scale_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = p.alpha * c[0] * a[i];
}

// out0 = a + alpha * c[0] * b: a tensor moved along a direction by a step
// held in a buffer (the virtual weights of the second-order search step).
@compute @workgroup_size(256)
fn axpy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = a[i] + p.alpha * c[0] * b[i];
}

// out0 = alpha * c[0] everywhere: the backward of a sum (alpha 1) or mean (1/n).
@compute @workgroup_size(256)
fn broadcast_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = p.alpha * c[0];
}

// out0[r, j] = a[r, j] * b[r]: scale each row of `cols` by its own factor
// (β_i times softmax(α_i) in the supernet's mixing weights). With a = dy it
// is also the input gradient.
@compute @workgroup_size(256)
fn row_scale_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.n { return; }
    out0[i] = a[i] * b[i / p.cols];
}

// out0[r] = Σ_j a[r, j] * c[r, j] (a = x, c = dy): the gradient of each
// row's factor. One invocation per row (n = rows); rows are short.
@compute @workgroup_size(256)
fn row_scale_backward_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_index(gid, nwg);
    if r >= p.n { return; }
    var acc = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        acc = acc + a[r * p.cols + j] * c[r * p.cols + j];
    }
    out0[r] = acc;
}
