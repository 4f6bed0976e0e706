// One affine-scaling interior-point step (Dikin's method) of weights that
// live on probability simplices, in place: `beta` holds every segment (one
// block's weights over its candidate inputs) back to back, `offsets` their
// boundaries (segment s is [offsets[s], offsets[s + 1])). One invocation per
// segment: segments are a handful of entries, so a loop beats any reduction.
// Slots: grad, offsets read; beta read and written.

struct Params {
    // Multiplies the direction d = −X²(g − λ·1), which is O(β²·g).
    lr: f32,
    // The fraction of the distance to the simplex boundary a step may take.
    theta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read_write> beta: array<f32>;

// Smallest weight relative to the segment's sum: guards against rounding
// and underflow so every weight stays strictly positive (ops::affine_scaling::FLOOR).
const FLOOR: f32 = 1e-12;

// d_i = −β_i²(g_i − λ), with g and λ both taken relative to g_lo.
fn direction(i: u32, lo: u32, lambda: f32) -> f32 {
    let b = beta[i];
    return -b * b * ((grad[i] - grad[lo]) - lambda);
}

@compute @workgroup_size(256)
fn step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = linear_index(gid, nwg);
    if s + 1u >= arrayLength(&offsets) { return; }
    let lo = offsets[s];
    let hi = offsets[s + 1u];
    // λ = (1ᵀX²g)/(1ᵀX²1) makes Σ d = 0, so the step stays on the simplex.
    // It is computed relative to the segment's first gradient entry, so a
    // gradient constant over the segment gives d = 0 exactly (and a large
    // common offset costs no precision).
    var num = 0.0;
    var den = 0.0;
    for (var i = lo; i < hi; i = i + 1u) {
        let b2 = beta[i] * beta[i];
        num = num + b2 * (grad[i] - grad[lo]);
        den = den + b2;
    }
    let lambda = num / den;
    // t = min(lr, θ · min over d_i < 0 of β_i / −d_i).
    var t = p.lr;
    for (var i = lo; i < hi; i = i + 1u) {
        let d = direction(i, lo, lambda);
        if d < 0.0 {
            t = min(t, p.theta * beta[i] / -d);
        }
    }
    // Every d is computed before its own β changes, from the old β only.
    var total = 0.0;
    for (var i = lo; i < hi; i = i + 1u) {
        let b = beta[i] + t * direction(i, lo, lambda);
        beta[i] = b;
        total = total + b;
    }
    var kept = 0.0;
    for (var i = lo; i < hi; i = i + 1u) {
        let b = max(beta[i], FLOOR * total);
        beta[i] = b;
        kept = kept + b;
    }
    for (var i = lo; i < hi; i = i + 1u) {
        beta[i] = beta[i] / kept;
    }
}
