// Row softmax over the last dim of [rows, cols] and the fused log-softmax +
// cross-entropy with integer labels. The row kernels run one invocation per
// row: class counts are small here (10 for the bundled datasets) and a
// per-row loop needs no workgroup barriers, which software adapters pay
// dearly for. Labels are trusted: nothing is clamped here (the data loader
// validates them, see ops::softmax_xent::validate_labels). A label >= cols
// (ops::softmax_xent::IGNORE) marks a padding row: no loss, no gradient.
// Slots: x, dy, labels, dl read; out0, out1 written.

struct Params {
    rows: u32,
    cols: u32,
    // log_softmax_xent_backward: 1 / rows (the loss is a batch mean).
    alpha: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read> dl: array<f32>;
@group(0) @binding(5) var<storage, read_write> out0: array<f32>;
@group(0) @binding(6) var<storage, read_write> out1: array<f32>;

fn row_max(base: u32) -> f32 {
    var m = x[base];
    for (var j = 1u; j < p.cols; j = j + 1u) {
        m = max(m, x[base + j]);
    }
    return m;
}

// Σ_j exp(x_j − m): subtracting the row max keeps every term ≤ 1.
fn row_sum_exp(base: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        s = s + exp(x[base + j] - m);
    }
    return s;
}

// out0[r, j] = exp(x[r, j] − m) / s: the softmax of row r.
fn write_softmax(base: u32, m: f32, s: f32) {
    for (var j = 0u; j < p.cols; j = j + 1u) {
        out0[base + j] = exp(x[base + j] - m) / s;
    }
}

// x = logits, out0 = y.
@compute @workgroup_size(256)
fn softmax_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_index(gid, nwg);
    if r >= p.rows { return; }
    let base = r * p.cols;
    let m = row_max(base);
    write_softmax(base, m, row_sum_exp(base, m));
}

// x = y (the forward output), dy; out0 = dx = y ⊙ (dy − Σ_j dy_j y_j).
@compute @workgroup_size(256)
fn softmax_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_index(gid, nwg);
    if r >= p.rows { return; }
    let base = r * p.cols;
    var d = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        d = d + dy[base + j] * x[base + j];
    }
    for (var j = 0u; j < p.cols; j = j + 1u) {
        out0[base + j] = x[base + j] * (dy[base + j] - d);
    }
}

// x = logits; out0 = probabilities (for the backward), out1[r] = the row's
// loss log Σ exp(x) − x[label], computed relative to the row max.
@compute @workgroup_size(256)
fn log_softmax_xent_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_index(gid, nwg);
    if r >= p.rows { return; }
    let base = r * p.cols;
    let m = row_max(base);
    let s = row_sum_exp(base, m);
    write_softmax(base, m, s);
    let l = labels[r];
    out1[r] = select(0.0, log(s) - (x[base + min(l, p.cols - 1u)] - m), l < p.cols);
}

// x = probabilities; out0 = dlogits = (x − onehot(label)) · dl[0] · alpha.
// One invocation per element.
@compute @workgroup_size(256)
fn log_softmax_xent_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= p.rows * p.cols { return; }
    let r = i / p.cols;
    let l = labels[r];
    let onehot = select(0.0, 1.0, i - r * p.cols == l);
    out0[i] = select(0.0, (x[i] - onehot) * (dl[0] * p.alpha), l < p.cols);
}

// x = logits; out1[r] = 1 when the row's argmax (the first, on ties) is its
// label, else 0.
@compute @workgroup_size(256)
fn correct_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_index(gid, nwg);
    if r >= p.rows { return; }
    let base = r * p.cols;
    var best = 0u;
    for (var j = 1u; j < p.cols; j = j + 1u) {
        if x[base + j] > x[base + best] {
            best = j;
        }
    }
    out1[r] = select(0.0, 1.0, best == labels[r]);
}
