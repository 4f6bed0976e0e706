// Optimizer steps, in place: SGD with momentum and Adam/AdamW (PyTorch
// semantics), and the coefficient of global gradient-norm clipping.
// Slots: grad, coef (coef[0] scales the gradient), norms read; param,
// state0 (momentum buffer or Adam's m), state1 (Adam's v), coef_out written.
// The element count is the parameter's length, so one set of hyperparameter
// words serves every tensor and can be rewritten each step.

struct Params {
    // SGD: the learning rate. Adam: lr / (1 − β1^t), PyTorch's step size.
    lr: f32,
    // SGD: the momentum μ. Adam: β1.
    beta1: f32,
    beta2: f32,
    eps: f32,
    // Coupled (L2) weight decay, added to the gradient.
    weight_decay: f32,
    // The parameter is scaled by this before the update: 1 − lr·wd for
    // AdamW's decoupled decay, else 1.
    decay: f32,
    // √(1 − β2^t).
    bc2_sqrt: f32,
    max_norm: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read> coef: array<f32>;
@group(0) @binding(3) var<storage, read> norms: array<f32>;
@group(0) @binding(4) var<storage, read_write> param: array<f32>;
@group(0) @binding(5) var<storage, read_write> state0: array<f32>;
@group(0) @binding(6) var<storage, read_write> state1: array<f32>;
@group(0) @binding(7) var<storage, read_write> coef_out: array<f32>;

// torch.optim.SGD, dampening 0, no Nesterov. The momentum buffer starts at
// zero, which equals PyTorch's first step (buf = g) since μ·0 + g = g.
@compute @workgroup_size(256)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= arrayLength(&param) { return; }
    let w = param[i];
    let g = grad[i] * coef[0] + p.weight_decay * w;
    let buf = p.beta1 * state0[i] + g;
    state0[i] = buf;
    param[i] = w - p.lr * buf;
}

// torch.optim.Adam (weight_decay as L2) or AdamW (decay < 1); m and v
// start at zero, t counts from 1.
@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= arrayLength(&param) { return; }
    let w = param[i];
    let g = grad[i] * coef[0] + p.weight_decay * w;
    let m = p.beta1 * state0[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * state1[i] + (1.0 - p.beta2) * g * g;
    state0[i] = m;
    state1[i] = v;
    let denom = sqrt(v) / p.bc2_sqrt + p.eps;
    param[i] = w * p.decay - p.lr * (m / denom);
}

// coef_out[0] = min(1, max_norm / (‖g‖ + 1e-6)) with ‖g‖² = Σ norms (the
// squared norms of every gradient tensor): clip_grad_norm_'s factor. The
// handful of per-tensor terms is summed by one invocation.
@compute @workgroup_size(1)
fn clip_coef() {
    var total = 0.0;
    for (var i = 0u; i < arrayLength(&norms); i = i + 1u) {
        total = total + norms[i];
    }
    coef_out[0] = min(1.0, p.max_norm / (sqrt(total) + 1e-6));
}

// coef_out[0] = max_norm · ‖g‖ and = max_norm / ‖g‖ (‖g‖ from the squared
// norms as above): the finite-difference step ε = 0.01 / ‖v‖ of the
// second-order search step and its inverse.
@compute @workgroup_size(1)
fn scaled_norm() {
    var total = 0.0;
    for (var i = 0u; i < arrayLength(&norms); i = i + 1u) {
        total = total + norms[i];
    }
    coef_out[0] = p.max_norm * sqrt(total);
}

@compute @workgroup_size(1)
fn scaled_inv_norm() {
    var total = 0.0;
    for (var i = 0u; i < arrayLength(&norms); i = i + 1u) {
        total = total + norms[i];
    }
    coef_out[0] = p.max_norm / max(sqrt(total), 1e-12);
}
