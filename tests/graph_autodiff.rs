//! Autodiff end to end: graphs built from the engine's ops get their
//! backward from the op gradient rules. The CPU executor's gradients are
//! checked against finite differences of the graph's own loss, and the GPU
//! plan against the CPU executor.

mod common;

use gradnas::graph::{self, CpuExec, Graph, Plan, T};
use gradnas::ops::conv2d::Conv2dShape;
use gradnas::ops::layout::SliceShape;
use gradnas::ops::matmul::LinearShape;
use gradnas::ops::pool;
use gradnas::verify::{self, compare, GRADIENT};

struct Built {
    g: Graph,
    loss: T,
    params: Vec<T>,
    grads: Vec<T>,
    inputs: Vec<(T, Vec<f32>)>,
    labels: Option<(T, Vec<u32>)>,
}

fn finish(mut g: Graph, loss: T, params: Vec<T>) -> (Graph, Vec<T>) {
    g.pin(loss);
    let gm = graph::backward(&mut g, loss);
    let grads: Vec<T> = params.iter().map(|p| gm[p]).collect();
    for &gr in &grads {
        g.pin(gr);
    }
    (g, grads)
}

/// One LSTM step: gates = x·Wᵀ + h·Uᵀ + b, split into i, f, g, o;
/// c' = σ(f)·c + σ(i)·tanh(g); h' = σ(o)·tanh(c'); L1 against a target.
fn lstm_cell() -> Built {
    let (b, n_in, hid) = (3, 5, 4);
    let mut rng = verify::rng(1);
    let mut g = Graph::new();
    let x = g.input("x", &[b, n_in]);
    let h0 = g.input("h0", &[b, hid]);
    let c0 = g.input("c0", &[b, hid]);
    let target = g.input("target", &[b, hid]);
    let w = g.param(
        "w",
        &[4 * hid, n_in],
        verify::randn(&mut rng, 4 * hid * n_in),
    );
    let u = g.param("u", &[4 * hid, hid], verify::randn(&mut rng, 4 * hid * hid));
    let bias = g.param("b", &[4 * hid], verify::randn(&mut rng, 4 * hid));
    let lx = LinearShape {
        batch: b,
        in_features: n_in,
        out_features: 4 * hid,
    };
    let lh = LinearShape {
        batch: b,
        in_features: hid,
        out_features: 4 * hid,
    };
    let gx = g.linear(x, w, Some(bias), lx);
    let gh = g.linear(h0, u, None, lh);
    let gates = g.add(gx, gh);
    let p = g.split(gates, &[hid; 4]);
    let (i, f, gg, o) = (
        g.sigmoid(p[0]),
        g.sigmoid(p[1]),
        g.tanh(p[2]),
        g.sigmoid(p[3]),
    );
    let fc = g.mul(f, c0);
    let ig = g.mul(i, gg);
    let c1 = g.add(fc, ig);
    let tc = g.tanh(c1);
    let h1 = g.mul(o, tc);
    let loss = g.l1_loss(h1, target);
    let params = vec![w, u, bias];
    let (g, grads) = finish(g, loss, params.clone());
    let inputs = vec![
        (x, verify::randn(&mut rng, b * n_in)),
        (h0, verify::randn(&mut rng, b * hid)),
        (c0, verify::randn(&mut rng, b * hid)),
        (target, verify::randn(&mut rng, b * hid)),
    ];
    Built {
        g,
        loss,
        params,
        grads,
        inputs,
        labels: None,
    }
}

/// The supernet's node: x_j = Σ_i β_i Σ_o softmax(α_i)_o · o(x_i) over two
/// inputs (a conv output and its factorized slice) and three ops each
/// (ReLU, avg pool, max pool; with `bn`, the pools followed by a batch norm
/// without affine, as in the supernet, whose gradients then come through
/// `ops::mix_bn`), then global pool, linear, cross-entropy.
/// With `late`, the mixing weights are computed after the candidates, so
/// the batch norms cannot start the mixed op's pack (`fuse_mix_bn`) and
/// keep their own backward.
fn mixed_edge(bn: bool, hw: usize, late: bool) -> Built {
    let (n, c) = (2, 3);
    let mut rng = verify::rng(2);
    let mut g = Graph::new();
    let x = g.input("x", &[n, c, hw, hw]);
    let labels = g.input("labels", &[n]);
    let cs = Conv2dShape::pointwise(n, c, c, hw, hw);
    let w = g.param("w", &[c, c, 1, 1], verify::randn(&mut rng, c * c));
    let y = g.conv2d(x, w, None, cs);
    let sl = g.slice(y, SliceShape::factorized_reduce(n, c, hw, hw));
    let ps = pool::Shape {
        n,
        c,
        h: hw,
        w: hw,
        k: 3,
        stride: 1,
        pad: 1,
    };
    let alpha = g.param("alpha", &[2, 3], verify::randn(&mut rng, 6));
    let beta = g.param("beta", &[2], vec![0.3, 0.7]);
    let mixing = |g: &mut Graph| {
        let soft = g.softmax(alpha);
        g.row_scale(soft, beta)
    };
    let early = (!late).then(|| mixing(&mut g));
    let mut cands = Vec::new();
    for input in [y, sl] {
        let mut pools = [g.avg_pool(input, ps), g.max_pool(input, ps)];
        if bn {
            let bs = gradnas::ops::batchnorm::Shape::new(n, c, hw * hw, false);
            pools = pools.map(|p| {
                let running = (
                    g.state("rm", &[c], None),
                    g.state("rv", &[c], Some(vec![1.0; c])),
                );
                g.batchnorm_train(p, None, running, bs)
            });
        }
        cands.push(g.relu(input));
        cands.extend(pools);
    }
    let weights = early.unwrap_or_else(|| mixing(&mut g));
    let mixed = g.weighted_sum(&cands, weights);
    let pooled = g.global_avg_pool(mixed);
    let ls = LinearShape {
        batch: n,
        in_features: c,
        out_features: 4,
    };
    let wl = g.param("wl", &[4, c], verify::randn(&mut rng, 4 * c));
    let logits = g.linear(pooled, wl, None, ls);
    let loss = g.log_softmax_xent(logits, labels);
    let params = vec![w, alpha, beta, wl];
    let (g, grads) = finish(g, loss, params.clone());
    let inputs = vec![(x, verify::randn(&mut rng, n * c * hw * hw))];
    Built {
        g,
        loss,
        params,
        grads,
        inputs,
        labels: Some((labels, vec![1, 3])),
    }
}

fn feed_cpu(b: &Built, cpu: &mut CpuExec) {
    for (t, v) in &b.inputs {
        cpu.write(*t, v);
    }
    if let Some((t, l)) = &b.labels {
        cpu.write_u32(*t, l);
    }
}

fn check(b: Built) {
    // CPU gradients against central differences of the CPU loss.
    let mut cpu = CpuExec::new(&b.g);
    feed_cpu(&b, &mut cpu);
    cpu.step(&b.g);
    let mut rng = verify::rng(3);
    for (p, gr) in b.params.iter().zip(&b.grads) {
        let analytic = cpu.read(*gr).to_vec();
        let init = b.g.def(*p).init.clone().unwrap();
        let f = |v: &[f32]| {
            let mut c = CpuExec::new(&b.g);
            feed_cpu(&b, &mut c);
            c.vals[p.0] = v.to_vec();
            c.step(&b.g);
            c.read(b.loss).to_vec()
        };
        verify::gradcheck::check(
            &b.g.def(*p).name,
            &f,
            &init,
            &[1.0],
            &analytic,
            &mut rng,
            12,
            1e-3,
        )
        .unwrap();
    }
    // GPU plan against the CPU executor.
    let gpu = common::gpu();
    let plan = Plan::new(gpu, &b.g).expect("plan");
    for (t, v) in &b.inputs {
        plan.write(gpu, *t, v);
    }
    if let Some((t, l)) = &b.labels {
        plan.write_u32(gpu, *t, l);
    }
    plan.step(gpu).unwrap();
    for t in std::iter::once(&b.loss).chain(&b.grads) {
        let got = plan.read(gpu, *t).unwrap();
        let c = compare(
            &b.g.def(*t).name,
            "gpu vs cpu",
            "",
            cpu.read(*t),
            &got,
            GRADIENT,
        );
        assert!(c.pass, "{}: {:?}", c.op, c.detail);
    }
}

#[test]
fn lstm_cell_gradients() {
    check(lstm_cell());
}

#[test]
fn mixed_edge_gradients() {
    check(mixed_edge(false, 7, false));
}

/// The same with batch norms after the pools: they become statistics
/// alone, applied by the mixed op, and their 4 gradients come through the
/// mixed op's per-channel sums (`ops::mix_bn`), two per backward node, on
/// odd planes (7×7) and on planes of float4s (8×8); with the mixing
/// weights computed after them, plain batch norms and the plain mixed op.
#[test]
fn mixed_edge_batchnorm_gradients() {
    for (hw, late) in [(7, false), (8, false), (8, true)] {
        let b = mixed_edge(true, hw, late);
        let count = |f: fn(&graph::Op) -> bool| b.g.nodes.iter().filter(|n| f(&n.op)).count();
        let fused = if late { 0 } else { 4 };
        assert_eq!(
            count(|op| matches!(op, graph::Op::BatchNormStats { .. })),
            fused
        );
        let pairs =
            |op: &graph::Op| matches!(op, graph::Op::MixBnBackward { ks, .. } if ks.len() == 2);
        assert_eq!(
            count(|op| matches!(op, graph::Op::MixBnBackward { .. })),
            fused / 2
        );
        assert_eq!(count(pairs), fused / 2);
        let mixes = usize::from(!late);
        assert_eq!(
            count(|op| matches!(op, graph::Op::MixBnForward { .. })),
            mixes
        );
        assert_eq!(
            count(|op| matches!(op, graph::Op::BatchNormTrainBackward(_))),
            4 - fused
        );
        check(b);
    }
}
