//! The nn layers on small odd shapes: output shapes against PyTorch's size
//! formula, parameter counts against independent counts, and a whole
//! training step (global pool, linear, cross-entropy, backward) whose loss,
//! layer output, running statistics and every gradient (the input's
//! included) agree between the GPU plan and the CPU executor; the CPU
//! gradients are checked against finite differences of the graph's loss.

mod common;

use gradnas::graph::{self, CpuExec, Graph, Plan, T};
use gradnas::nn::layers::{self, ConvSpec};
use gradnas::nn::{Init, ParamStore};
use gradnas::verify::{self, compare, FORWARD, GRADIENT};

const N: usize = 2;
const CLASSES: usize = 4;

/// PyTorch's output size of a convolution or pooling along one axis.
fn out(size: usize, k: usize, stride: usize, pad: usize, dilation: usize) -> usize {
    (size + 2 * pad - dilation * (k - 1) - 1) / stride + 1
}

/// A layer applied to x [N, c_in, hw, hw]: what its output shape and
/// parameter count must be.
struct Case {
    what: &'static str,
    c_in: usize,
    hw: usize,
    out: [usize; 4],
    params: usize,
}

fn bn(c: usize, affine: bool) -> usize {
    if affine {
        2 * c
    } else {
        0
    }
}

/// Build the layer under scope "layer", check its shape and parameter
/// count, then run one training step on both executors and compare.
fn check(case: Case, build: impl FnOnce(&mut Graph, &mut ParamStore, T) -> T) {
    let what = case.what;
    let mut g = Graph::new();
    let mut store = ParamStore::new(7);
    let mut rng = verify::rng(11);
    let xshape = [N, case.c_in, case.hw, case.hw];
    // The input is a parameter of the test (not of the store) so that its
    // gradient, which runs through every backward op of the layer, is
    // compared too.
    let x = g.param(
        "x",
        &xshape,
        verify::randn(&mut rng, N * case.c_in * case.hw * case.hw),
    );
    let y = store.scoped("layer", |s| build(&mut g, s, x));
    assert_eq!(g.def(y).shape, case.out, "{what}: output shape");
    assert_eq!(store.count(&g), case.params, "{what}: parameter count");
    let labels = g.input("labels", &[N]);
    let pooled = g.global_avg_pool(y);
    let logits = store.scoped("head", |s| layers::linear(&mut g, s, pooled, CLASSES, true));
    let loss = g.log_softmax_xent(logits, labels);
    g.pin(loss);
    g.pin(y);
    let params: Vec<T> = std::iter::once(x)
        .chain(store.params.iter().copied())
        .collect();
    let gm = graph::backward(&mut g, loss);
    let grads: Vec<T> = params.iter().map(|p| gm[p]).collect();
    for &gr in &grads {
        g.pin(gr);
    }
    let label_values: Vec<u32> = (0..N as u32)
        .map(|i| (2 * i + 1) % CLASSES as u32)
        .collect();

    let cpu_run = |vals: Option<(T, &[f32])>| {
        let mut c = CpuExec::new(&g);
        c.write_u32(labels, &label_values);
        if let Some((p, v)) = vals {
            c.vals[p.0] = v.to_vec();
        }
        c.step(&g);
        c
    };
    let cpu = cpu_run(None);

    let gpu = common::gpu();
    let plan = Plan::new(gpu, &g).expect("plan");
    plan.write_u32(gpu, labels, &label_values);
    plan.step(gpu).expect("gpu step");
    let mut bad = Vec::new();
    let mut cmp = |t: T, direction: &str, tol| {
        let got = plan.read(gpu, t).expect("read");
        let c = compare(&g.def(t).name, direction, what, cpu.read(t), &got, tol);
        if !c.pass {
            bad.push(format!("{} {direction}: {:?}", c.op, c.detail));
        }
    };
    cmp(loss, "loss", FORWARD);
    cmp(y, "layer output", FORWARD);
    for &s in &store.states {
        cmp(s, "running statistic", FORWARD);
    }
    for &gr in &grads {
        cmp(gr, "gradient", GRADIENT);
    }
    assert!(
        bad.is_empty(),
        "{what}: GPU and CPU disagree:\n{}",
        bad.join("\n")
    );

    // A few coordinates of every gradient against central differences.
    let mut rng = verify::rng(5);
    for (p, gr) in params.iter().zip(&grads) {
        let init = g.def(*p).init.clone().expect("params have values");
        let f = |v: &[f32]| cpu_run(Some((*p, v))).read(loss).to_vec();
        let name = format!("{what} {}", g.def(*p).name);
        verify::gradcheck::check(&name, &f, &init, &[1.0], cpu.read(*gr), &mut rng, 4, 1e-3)
            .unwrap();
    }
}

#[test]
fn relu_conv_bn() {
    check(
        Case {
            what: "relu_conv_bn 3x3 s1 affine",
            c_in: 3,
            hw: 7,
            out: [N, 5, 7, 7],
            params: 5 * 3 * 9 + bn(5, true),
        },
        |g, s, x| layers::relu_conv_bn(g, s, x, 5, 3, 1, 1, true),
    );
    check(
        Case {
            what: "relu_conv_bn 1x1 s2",
            c_in: 5,
            hw: 13,
            out: [N, 6, out(13, 1, 2, 0, 1), out(13, 1, 2, 0, 1)],
            params: 6 * 5,
        },
        |g, s, x| layers::relu_conv_bn(g, s, x, 6, 1, 2, 0, false),
    );
}

/// SepConv(c_in → c_out, k): two depthwise k×k, pointwise c_in → c_in and
/// c_in → c_out, BN over c_in and c_out.
fn sep_params(c_in: usize, c_out: usize, k: usize, affine: bool) -> usize {
    2 * k * k * c_in + c_in * c_in + c_in * c_out + bn(c_in, affine) + bn(c_out, affine)
}

#[test]
fn sep_conv() {
    check(
        Case {
            what: "sep_conv 3x3 s1",
            c_in: 3,
            hw: 7,
            out: [N, 3, 7, 7],
            params: 2 * (9 * 3 + 3 * 3),
        },
        |g, s, x| layers::sep_conv(g, s, x, 3, 3, 1, false),
    );
    let o = out(13, 5, 2, 2, 1);
    check(
        Case {
            what: "sep_conv 5x5 s2 affine",
            c_in: 5,
            hw: 13,
            out: [N, 6, o, o],
            params: sep_params(5, 6, 5, true),
        },
        |g, s, x| layers::sep_conv(g, s, x, 6, 5, 2, true),
    );
}

/// A non-affine batch norm and ReLU as one op (`fused`) or as two.
fn bn_relu(g: &mut Graph, store: &mut ParamStore, x: T, fused: bool) -> T {
    if fused {
        layers::batchnorm_relu(g, store, "bn", x, false)
    } else {
        let b = layers::batchnorm(g, store, "bn", x, false);
        g.relu(b)
    }
}

/// A SepConv's middle ReLU rides in its first batch norm without affine
/// (one op, `Shape::relu`), in training and in evaluation, and stays its
/// own op with affine; the fused op's values are the two ops'.
#[test]
fn sep_conv_fuses_its_middle_relu() {
    use gradnas::graph::Op;
    let ops = |eval: bool, affine: bool| {
        let mut g = Graph::new();
        let mut store = ParamStore::new(3);
        store.eval = eval;
        let x = g.input("x", &[N, 4, 7, 7]);
        layers::sep_conv(&mut g, &mut store, x, 4, 3, 1, affine);
        let relus = g.nodes.iter().filter(|n| matches!(n.op, Op::Relu)).count();
        let fused = g
            .nodes
            .iter()
            .filter(|n| matches!(&n.op, Op::BatchNormTrain(s) | Op::BatchNormEval(s) if s.relu))
            .count();
        (relus, fused)
    };
    assert_eq!(ops(false, false), (1, 1), "training, no affine");
    assert_eq!(ops(false, true), (2, 0), "training, affine");
    assert_eq!(ops(true, false), (1, 1), "evaluation, no affine");
    assert_eq!(ops(true, true), (2, 0), "evaluation, affine");

    // In evaluation, fused and unfused give the same bits (CPU graph).
    let eval = |fused: bool| {
        let mut g = Graph::new();
        let mut store = ParamStore::new(3);
        store.eval = true;
        let mut rng = verify::rng(5);
        let x = g.param("x", &[3, 5, 6, 6], verify::randn(&mut rng, 3 * 5 * 36));
        let y = bn_relu(&mut g, &mut store, x, fused);
        g.pin(y);
        let mut c = CpuExec::new(&g);
        c.step(&g);
        c.read(y).to_vec()
    };
    let (fused, apart) = (eval(true), eval(false));
    assert!(fused.contains(&0.0) && fused.iter().any(|&v| v > 0.0));
    assert_eq!(fused, apart, "evaluation forward");

    // batchnorm_relu against batchnorm then relu, forward and backward.
    let run = |fused: bool| {
        let mut g = Graph::new();
        let mut store = ParamStore::new(3);
        let mut rng = verify::rng(4);
        let x = g.param("x", &[3, 5, 6, 6], verify::randn(&mut rng, 3 * 5 * 36));
        let y = bn_relu(&mut g, &mut store, x, fused);
        let labels = g.input("labels", &[3]);
        let pooled = g.global_avg_pool(y);
        let logits = layers::linear(&mut g, &mut store, pooled, CLASSES, true);
        let loss = g.log_softmax_xent(logits, labels);
        g.pin(y);
        let dx = graph::backward(&mut g, loss)[&x];
        g.pin(dx);
        let mut c = CpuExec::new(&g);
        c.write_u32(labels, &[0, 3, 1]);
        c.step(&g);
        (c.read(y).to_vec(), c.read(dx).to_vec())
    };
    let ((y1, dx1), (y2, dx2)) = (run(true), run(false));
    assert_eq!(y1, y2, "forward");
    let c = compare("batchnorm_relu", "backward", "fused", &dx2, &dx1, GRADIENT);
    assert!(c.pass, "fused backward: {:?}", c.detail);
}

#[test]
fn dil_conv() {
    check(
        Case {
            what: "dil_conv 3x3 s1",
            c_in: 5,
            hw: 13,
            out: [N, 5, 13, 13],
            params: 9 * 5 + 5 * 5,
        },
        |g, s, x| layers::dil_conv(g, s, x, 5, 3, 1, false),
    );
    let o = out(7, 3, 2, 2, 2);
    check(
        Case {
            what: "dil_conv 3x3 s2 affine",
            c_in: 3,
            hw: 7,
            out: [N, 6, o, o],
            params: 9 * 3 + 3 * 6 + bn(6, true),
        },
        |g, s, x| layers::dil_conv(g, s, x, 6, 3, 2, true),
    );
    let o = out(13, 5, 2, 4, 2);
    check(
        Case {
            what: "dil_conv 5x5 s2",
            c_in: 3,
            hw: 13,
            out: [N, 3, o, o],
            params: 25 * 3 + 3 * 3,
        },
        |g, s, x| layers::dil_conv(g, s, x, 3, 5, 2, false),
    );
}

#[test]
fn conv_7x1_1x7() {
    let o = out(13, 7, 2, 3, 1);
    check(
        Case {
            what: "conv_7x1_1x7 s2",
            c_in: 6,
            hw: 13,
            out: [N, 6, o, o],
            params: 7 * 6 * 6 * 2,
        },
        |g, s, x| layers::conv_7x1_1x7(g, s, x, 6, 2, false),
    );
    check(
        Case {
            what: "conv_7x1_1x7 s1 affine",
            c_in: 3,
            hw: 7,
            out: [N, 5, 7, 7],
            params: 7 * 3 * 3 + 7 * 3 * 5 + bn(5, true),
        },
        |g, s, x| layers::conv_7x1_1x7(g, s, x, 5, 1, true),
    );
}

/// DARTS's conv_7x1_1x7 strides the 1×7 by (1, s) and the 7×1 by (s, 1);
/// the layer puts the whole stride on the 7×1. A plain-loop forward in
/// DARTS's order (then the batch norm) must give the layer's output.
#[test]
fn conv_7x1_1x7_matches_darts_strides() {
    let (c, hw, s) = (3, 13, 2);
    let mut g = Graph::new();
    let mut store = ParamStore::new(3);
    let xv = verify::randn(&mut verify::rng(4), N * c * hw * hw);
    let x = g.input("x", &[N, c, hw, hw]);
    let y = layers::conv_7x1_1x7(&mut g, &mut store, x, c, s, false);
    g.pin(y);
    let mut cpu = CpuExec::new(&g);
    cpu.write(x, &xv);
    cpu.step(&g);
    let (w1, w2) = (
        g.def(store.params[0]).init.clone().unwrap(),
        g.def(store.params[1]).init.clone().unwrap(),
    );
    // 1×7 at stride (1, s), padding (0, 3): a[n][o][i][j].
    let ow = (hw - 1) / s + 1;
    let at = |v: &[f32], h: usize, w: usize, n: usize, ch: usize, i: isize, j: isize| {
        if i < 0 || j < 0 || i >= h as isize || j >= w as isize {
            0.0
        } else {
            v[((n * c + ch) * h + i as usize) * w + j as usize] as f64
        }
    };
    let mut a = vec![0f32; N * c * hw * ow];
    for n in 0..N {
        for o in 0..c {
            for i in 0..hw {
                for j in 0..ow {
                    let mut acc = 0f64;
                    for ci in 0..c {
                        for t in 0..7 {
                            let v = at(&xv, hw, hw, n, ci, i as isize, (j * s + t) as isize - 3);
                            acc += w1[(o * c + ci) * 7 + t] as f64 * v.max(0.0);
                        }
                    }
                    a[((n * c + o) * hw + i) * ow + j] = acc as f32;
                }
            }
        }
    }
    // 7×1 at stride (s, 1), padding (3, 0).
    let oh = ow;
    let mut b = vec![0f64; N * c * oh * ow];
    for n in 0..N {
        for o in 0..c {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0f64;
                    for ci in 0..c {
                        for t in 0..7 {
                            let av = at(&a, hw, ow, n, ci, (i * s + t) as isize - 3, j as isize);
                            acc += w2[(o * c + ci) * 7 + t] as f64 * av;
                        }
                    }
                    b[((n * c + o) * oh + i) * ow + j] = acc;
                }
            }
        }
    }
    // Batch norm with batch statistics (biased variance, eps 1e-5).
    let plane = oh * ow;
    let mut want = vec![0f32; b.len()];
    for o in 0..c {
        let idx: Vec<usize> = (0..N)
            .flat_map(|n| ((n * c + o) * plane..(n * c + o + 1) * plane).collect::<Vec<_>>())
            .collect();
        let m = idx.len() as f64;
        let mean = idx.iter().map(|&i| b[i]).sum::<f64>() / m;
        let var = idx.iter().map(|&i| (b[i] - mean).powi(2)).sum::<f64>() / m;
        for &i in &idx {
            want[i] = ((b[i] - mean) / (var + 1e-5).sqrt()) as f32;
        }
    }
    let chk = compare(
        "conv_7x1_1x7",
        "darts order",
        "",
        &want,
        cpu.read(y),
        FORWARD,
    );
    assert!(chk.pass, "{:?}", chk.detail);
}

#[test]
fn factorized_reduce_and_skip() {
    check(
        Case {
            what: "factorized_reduce 13",
            c_in: 5,
            hw: 13,
            out: [N, 6, 7, 7],
            params: 2 * 5 * 3,
        },
        |g, s, x| layers::factorized_reduce(g, s, x, 6, false),
    );
    check(
        Case {
            what: "factorized_reduce 7 affine",
            c_in: 3,
            hw: 7,
            out: [N, 6, 4, 4],
            params: 2 * 3 * 3 + bn(6, true),
        },
        |g, s, x| layers::factorized_reduce(g, s, x, 6, true),
    );
    check(
        Case {
            what: "skip_connect s1",
            c_in: 5,
            hw: 7,
            out: [N, 5, 7, 7],
            params: 0,
        },
        |g, s, x| layers::skip_connect(g, s, x, 5, 1, false),
    );
    check(
        Case {
            what: "skip_connect s2",
            c_in: 3,
            hw: 13,
            out: [N, 6, 7, 7],
            params: 2 * 3 * 3,
        },
        |g, s, x| layers::skip_connect(g, s, x, 6, 2, false),
    );
}

#[test]
fn pools() {
    for (c, hw, stride) in [(5, 7, 1), (3, 13, 2), (6, 7, 2)] {
        let o = out(hw, 3, stride, 1, 1);
        check(
            Case {
                what: "max_pool_3x3",
                c_in: c,
                hw,
                out: [N, c, o, o],
                params: 0,
            },
            |g, _, x| layers::max_pool_3x3(g, x, stride),
        );
        check(
            Case {
                what: "avg_pool_3x3",
                c_in: c,
                hw,
                out: [N, c, o, o],
                params: 0,
            },
            |g, _, x| layers::avg_pool_3x3(g, x, stride),
        );
    }
}

/// A conv with bias-free generic spec followed by affine batch norm and a
/// second linear layer inside the head: the building blocks alone.
#[test]
fn conv_batchnorm_linear() {
    let spec = ConvSpec::rect(6, 3, 5).stride(2).pad(1, 2).groups(3);
    check(
        Case {
            what: "grouped conv + bn",
            c_in: 3,
            hw: 13,
            out: [N, 6, out(13, 3, 2, 1, 1), out(13, 5, 2, 2, 1)],
            params: 6 * 15 + bn(6, true),
        },
        |g, s, x| {
            let y = layers::conv(g, s, "conv", x, spec);
            layers::batchnorm(g, s, "bn", y, true)
        },
    );
}

#[test]
fn names_are_hierarchical_and_unique() {
    let mut g = Graph::new();
    let mut store = ParamStore::new(1);
    let x = g.input("x", &[N, 4, 7, 7]);
    store.push("cell0");
    store.scoped("edge3", |s| {
        s.scoped("sep3x3", |s| layers::sep_conv(&mut g, s, x, 4, 3, 1, true))
    });
    store.pop();
    let names: Vec<&str> = store
        .params
        .iter()
        .map(|p| g.def(*p).name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "cell0.edge3.sep3x3.dw1.weight",
            "cell0.edge3.sep3x3.pw1.weight",
            "cell0.edge3.sep3x3.bn1.weight",
            "cell0.edge3.sep3x3.bn1.bias",
            "cell0.edge3.sep3x3.dw2.weight",
            "cell0.edge3.sep3x3.pw2.weight",
            "cell0.edge3.sep3x3.bn2.weight",
            "cell0.edge3.sep3x3.bn2.bias",
        ]
    );
    let states: Vec<&str> = store
        .states
        .iter()
        .map(|p| g.def(*p).name.as_str())
        .collect();
    assert_eq!(states[0], "cell0.edge3.sep3x3.bn1.running_mean");
    assert_eq!(states[3], "cell0.edge3.sep3x3.bn2.running_var");
    assert_eq!(
        g.def(store.states[3]).init.as_deref(),
        Some(&[1.0f32; 4][..])
    );
    assert_eq!(
        g.def(store.params[2]).init.as_deref(),
        Some(&[1.0f32; 4][..])
    );
    assert_eq!(
        g.def(store.params[3]).init.as_deref(),
        Some(&[0.0f32; 4][..])
    );
}

#[test]
#[should_panic(expected = "duplicate parameter name")]
fn duplicate_names_panic() {
    let mut g = Graph::new();
    let mut store = ParamStore::new(1);
    let x = g.input("x", &[N, 4, 7, 7]);
    layers::dil_conv(&mut g, &mut store, x, 4, 3, 1, false);
    layers::dil_conv(&mut g, &mut store, x, 4, 3, 1, false);
}

/// Same seed, same values; Kaiming-normal's spread is √(2 / fan_in).
#[test]
fn init_is_seeded_kaiming() {
    let build = |seed| {
        let mut g = Graph::new();
        let mut store = ParamStore::new(seed);
        let w = store.param(&mut g, "w", &[64, 32, 3, 3], Init::kaiming(32 * 9));
        g.def(w).init.clone().unwrap()
    };
    let (a, b, c) = (build(5), build(5), build(6));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let var = a.iter().map(|v| (v * v) as f64).sum::<f64>() / a.len() as f64;
    let want = 2.0 / (32.0 * 9.0);
    assert!((var / want - 1.0).abs() < 0.05, "variance {var} vs {want}");
}
