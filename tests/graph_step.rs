//! A whole training step of a small CNN with batch norm, recorded on the GPU
//! and run on the CPU reference: loss, every gradient, every updated
//! parameter and optimizer state agree after each of three SGD steps and
//! three Adam steps.

mod common;

use gradnas::graph::{self, CpuExec, Graph, Optimizer, Plan, PlanOptions, T};
use gradnas::ops::batchnorm;
use gradnas::ops::conv2d::Conv2dShape;
use gradnas::ops::matmul::LinearShape;
use gradnas::ops::optim::{AdamHyper, SgdHyper};
use gradnas::ops::pool;
use gradnas::verify::{self, compare, Tol};

struct Net {
    g: Graph,
    images: T,
    labels: T,
    loss: T,
    correct: T,
    params: Vec<T>,
    grads: Vec<T>,
    states: Vec<T>,
    updates: graph::Updates,
}

const N: usize = 3;

fn kaiming(rng: &mut verify::Rng, n: usize, fan_in: usize) -> Vec<f32> {
    let s = (2.0 / fan_in as f32).sqrt();
    verify::randn(rng, n).iter().map(|v| v * s).collect()
}

/// conv3×3(1→6, bias) → BN(affine) → ReLU → maxpool 3×3/2 → conv3×3(6→5) →
/// BN(no affine) → ReLU → global avg pool → linear(5→10, bias) → xent.
fn net(opt: Optimizer, clip: Option<f32>) -> Net {
    let mut rng = verify::rng(42);
    let mut g = Graph::new();
    let images = g.input("images", &[N, 1, 11, 11]);
    let labels = g.input("labels", &[N]);
    let c1 = Conv2dShape {
        n: N,
        c_in: 1,
        h: 11,
        w: 11,
        c_out: 6,
        kh: 3,
        kw: 3,
        stride: 1,
        pad_h: 1,
        pad_w: 1,
        dilation: 1,
        groups: 1,
    };
    let w1 = g.param("w1", &[6, 1, 3, 3], kaiming(&mut rng, 54, 9));
    let b1 = g.param("b1", &[6], verify::randn(&mut rng, 6));
    let x = g.conv2d(images, w1, Some(b1), c1);
    let bs1 = batchnorm::Shape::new(N, 6, 121, true);
    let gamma = g.param("gamma", &[6], verify::uniform(&mut rng, 6, 0.5, 1.5));
    let beta = g.param("beta", &[6], verify::randn(&mut rng, 6));
    let rm1 = g.state("rm1", &[6], None);
    let rv1 = g.state("rv1", &[6], Some(vec![1.0; 6]));
    let x = g.batchnorm_train(x, Some((gamma, beta)), (rm1, rv1), bs1);
    let x = g.relu(x);
    let ps = pool::Shape {
        n: N,
        c: 6,
        h: 11,
        w: 11,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let x = g.max_pool(x, ps);
    let c2 = Conv2dShape {
        n: N,
        c_in: 6,
        h: 6,
        w: 6,
        c_out: 5,
        kh: 3,
        kw: 3,
        stride: 1,
        pad_h: 1,
        pad_w: 1,
        dilation: 1,
        groups: 1,
    };
    let w2 = g.param("w2", &[5, 6, 3, 3], kaiming(&mut rng, 270, 54));
    let x = g.conv2d(x, w2, None, c2);
    let rm2 = g.state("rm2", &[5], None);
    let rv2 = g.state("rv2", &[5], Some(vec![1.0; 5]));
    let x = g.batchnorm_train(x, None, (rm2, rv2), batchnorm::Shape::new(N, 5, 36, false));
    let x = g.relu(x);
    let x = g.global_avg_pool(x);
    let ls = LinearShape {
        batch: N,
        in_features: 5,
        out_features: 10,
    };
    let wl = g.param("wl", &[10, 5], kaiming(&mut rng, 50, 5));
    let bl = g.param("bl", &[10], vec![0.0; 10]);
    let logits = g.linear(x, wl, Some(bl), ls);
    let loss = g.log_softmax_xent(logits, labels);
    let correct = g.state("correct", &[1], None);
    g.count_correct_into(logits, labels, correct);
    g.pin(loss);
    let params = vec![w1, b1, gamma, beta, w2, wl, bl];
    let grads_map = graph::backward(&mut g, loss);
    let grads: Vec<T> = params.iter().map(|p| grads_map[p]).collect();
    for &gr in &grads {
        g.pin(gr);
    }
    let before = g.tensors.len();
    let updates = graph::append_updates(&mut g, &params, &grads_map, opt, clip);
    let mut states: Vec<T> = vec![rm1, rv1, rm2, rv2, correct];
    states.extend(
        (before..g.tensors.len())
            .map(T)
            .filter(|t| g.def(*t).kind == graph::Kind::State),
    );
    Net {
        g,
        images,
        labels,
        loss,
        correct,
        params,
        grads,
        states,
        updates,
    }
}

/// Tensor `t` of the GPU step against the CPU's, named by the tensor.
fn agree(g: &Graph, plan: &Plan, cpu: &CpuExec, t: T, what: &str, when: &str) -> verify::Check {
    let gpu = plan.read(common::gpu(), t).expect("read");
    compare(&g.def(t).name, what, when, cpu.read(t), &gpu, tol())
}

fn tol() -> Tol {
    // Three optimizer steps compound the f32 differences of two summation
    // orders; still three orders of magnitude below the values.
    verify::GRADIENT
}

fn run_three_steps(opt: Optimizer, clip: Option<f32>, set_step: impl Fn(&mut graph::Op, usize)) {
    let gpu = common::gpu();
    let mut net = net(opt, clip);
    let plan = Plan::new(gpu, &net.g).expect("plan");
    let mut cpu = CpuExec::new(&net.g);
    let mut rng = verify::rng(9);
    let mut bad = Vec::new();
    for step in 0..3 {
        for &n in &net.updates.nodes {
            set_step(&mut net.g.nodes[n].op, step);
        }
        plan.sync_hyperparameters(gpu, &net.g);
        let images = verify::randn(&mut rng, N * 121);
        let labels: Vec<u32> = (0..N as u32).map(|i| (i * 7 + step as u32) % 10).collect();
        plan.write(gpu, net.images, &images);
        plan.write_u32(gpu, net.labels, &labels);
        cpu.write(net.images, &images);
        cpu.write_u32(net.labels, &labels);
        plan.step(gpu).expect("gpu step");
        cpu.step(&net.g);
        let mut check = |t: T, what: &str| {
            let c = agree(&net.g, &plan, &cpu, t, what, &format!("step {step}"));
            if !c.pass {
                bad.push(format!("{} {what} step {step}: {:?}", c.op, c.detail));
            }
        };
        check(net.loss, "loss");
        for &t in &net.grads {
            check(t, "gradient");
        }
        for &t in &net.params {
            check(t, "updated");
        }
        for &t in &net.states {
            check(t, "state");
        }
    }
    assert!(
        bad.is_empty(),
        "GPU and CPU steps disagree:\n{}",
        bad.join("\n")
    );
    // The parameters, gradients and states lie in arenas: the whole
    // update is one dispatch, the clipping norm a reduction and a combine.
    let lists = if matches!(opt, Optimizer::Sgd(_)) {
        3
    } else {
        4
    };
    assert_eq!(graph::arenas(&net.g, u64::MAX, 64).len(), lists);
    // None fits a 64-byte binding: every list falls back to its tensors.
    assert!(graph::arenas(&net.g, 64, 64).is_empty());
    for &n in &net.updates.nodes {
        assert_eq!(
            plan.node_dispatches(n),
            1,
            "update of {} tensors",
            net.params.len()
        );
    }
    if clip.is_some() {
        let clip_node = net
            .g
            .nodes
            .iter()
            .position(|n| matches!(n.op, graph::Op::ClipCoef { .. }));
        assert!(plan.node_dispatches(clip_node.expect("clip node")) <= 3);
    }
    let correct = plan.read(gpu, net.correct).unwrap()[0];
    assert!((0.0..=(3 * N) as f32).contains(&correct));
    assert!(plan.memory.planned_bytes <= plan.memory.unshared_bytes);
}

#[test]
fn three_sgd_steps_agree() {
    let h = SgdHyper {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 3e-4,
    };
    run_three_steps(Optimizer::Sgd(h), Some(0.5), |op, step| {
        if let graph::Op::Sgd(h) = op {
            h.lr = 0.1 / (1 + step) as f32; // a schedule, changed between steps
        }
    });
}

#[test]
fn three_adam_steps_agree() {
    let mut h = AdamHyper::new(3e-3);
    h.beta1 = 0.5;
    h.weight_decay = 1e-3;
    run_three_steps(Optimizer::Adam(h), None, |op, step| {
        if let graph::Op::Adam(h) = op {
            h.step = step as u32 + 1;
        }
    });
}

#[test]
fn memory_planner_shares_buffers_in_a_real_step() {
    let net = net(
        Optimizer::Sgd(SgdHyper {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
        }),
        None,
    );
    let plan = Plan::new(common::gpu(), &net.g).expect("plan");
    assert!(
        plan.memory.planned_bytes < plan.memory.unshared_bytes,
        "no reuse: {} of {} bytes",
        plan.memory.planned_bytes,
        plan.memory.unshared_bytes
    );
}

/// Two parameters that get the same gradient tensor (y = x + p1 + p2: an
/// Add passes dy on to both) cannot share an arena slot: the update falls
/// back to a dispatch per tensor and still matches the CPU reference.
#[test]
fn an_update_that_cannot_use_arenas_runs_per_tensor() {
    let gpu = common::gpu();
    let mut rng = verify::rng(5);
    let mut g = Graph::new();
    let x = g.input("x", &[3, 7]);
    let target = g.input("target", &[3, 7]);
    let p1 = g.param("p1", &[3, 7], verify::randn(&mut rng, 21));
    let p2 = g.param("p2", &[3, 7], verify::randn(&mut rng, 21));
    let a = g.add(x, p1);
    let y = g.add(a, p2);
    let loss = g.l1_loss(y, target);
    let grads = graph::backward(&mut g, loss);
    assert_eq!(grads[&p1], grads[&p2], "the test needs one shared gradient");
    let h = SgdHyper {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-3,
    };
    let updates = graph::append_updates(&mut g, &[p1, p2], &grads, Optimizer::Sgd(h), Some(0.5));
    let arenas = graph::arenas(&g, u64::MAX, 64);
    assert!(arenas.iter().flatten().all(|t| *t != grads[&p1]));
    assert_eq!(arenas.len(), 2, "parameters and momenta still side by side");
    let plan = Plan::new(gpu, &g).expect("plan");
    assert_eq!(plan.node_dispatches(updates.nodes[0]), 2);
    let mut cpu = CpuExec::new(&g);
    for _ in 0..3 {
        let (xv, tv) = (verify::randn(&mut rng, 21), verify::randn(&mut rng, 21));
        for (t, v) in [(x, &xv), (target, &tv)] {
            plan.write(gpu, t, v);
            cpu.write(t, v);
        }
        plan.step(gpu).expect("gpu step");
        cpu.step(&g);
    }
    for t in [p1, p2, updates.states[0][0], updates.states[1][0]] {
        let c = agree(&g, &plan, &cpu, t, "updated", "3 steps");
        assert!(c.pass, "{}: {:?}", c.op, c.detail);
    }
}

/// Convolutions that read one weight tensor share its tap-major copy until
/// a node writes the tensor: the plan writes the copies ahead, forward and
/// flipped, before the first convolution (`conv2d::CopyBatch`), and a
/// convolution after the update gets a copy again, right after the update,
/// and sees the new values. Checked against the CPU over three steps.
#[test]
fn convolutions_share_a_weight_copy_until_the_weight_is_written() {
    let gpu = common::gpu();
    let mut rng = verify::rng(8);
    let mut g = Graph::new();
    // A parameter, so that both convolutions pass gradients to their input.
    let x = g.param("x", &[2, 5, 9, 12], verify::randn(&mut rng, 2 * 5 * 108));
    let target = g.input("target", &[2, 6, 9, 12]);
    // A dense 1×7: one that reads its weights through a copy.
    let s = Conv2dShape {
        n: 2,
        c_in: 5,
        h: 9,
        w: 12,
        c_out: 6,
        kh: 1,
        kw: 7,
        stride: 1,
        pad_h: 0,
        pad_w: 3,
        dilation: 1,
        groups: 1,
    };
    let w = g.param("w", &[6, 5, 1, 7], kaiming(&mut rng, 210, 35));
    let conv_node = |g: &Graph| g.nodes.len();
    let first = conv_node(&g);
    let y1 = g.conv2d(x, w, None, s);
    let r = g.relu(x);
    let second = conv_node(&g);
    let y2 = g.conv2d(r, w, None, s);
    let y = g.add(y1, y2);
    let loss = g.l1_loss(y, target);
    let grads = graph::backward(&mut g, loss);
    let h = SgdHyper {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let updates = graph::append_updates(&mut g, &[w, x], &grads, Optimizer::Sgd(h), None);
    let third = conv_node(&g);
    let y3 = g.conv2d(x, w, None, s);
    g.pin(y1);
    g.pin(y3);
    let plan = Plan::new(gpu, &g).expect("plan");
    assert_eq!(first, 0);
    assert_eq!(
        plan.node_dispatches(first),
        3,
        "the copies written ahead, forward and flipped, and the convolution"
    );
    assert_eq!(plan.node_dispatches(second), 1, "the first one's copy");
    assert_eq!(plan.node_dispatches(third), 2, "the weight was updated");
    let flipped: Vec<usize> = (0..g.nodes.len())
        .filter(|&n| matches!(g.nodes[n].op, graph::Op::Conv2dBackwardInput(_)))
        .map(|n| plan.node_dispatches(n))
        .collect();
    assert_eq!(
        flipped,
        [1, 1],
        "two input gradients, one flipped copy ahead"
    );
    let ahead = |flip: bool| {
        let names = plan.kernels().iter().map(|k| k.name.as_str());
        names
            .filter(|n| n.contains(".weights4.") && n.ends_with(".batched"))
            .filter(|n| n.contains(".flip") == flip)
            .count()
    };
    assert_eq!((ahead(false), ahead(true)), (2, 1), "copy dispatches");
    let mut cpu = CpuExec::new(&g);
    for step in 0..3 {
        let tv = verify::randn(&mut rng, 2 * 6 * 108);
        plan.write(gpu, target, &tv);
        cpu.write(target, &tv);
        plan.step(gpu).expect("gpu step");
        cpu.step(&g);
        for (t, what) in [
            (y1, "before the update"),
            (y3, "after the update"),
            (w, "updated"),
            (x, "updated"),
            (updates.states[0][0], "momentum"),
        ] {
            let c = agree(&g, &plan, &cpu, t, what, &format!("step {step}"));
            assert!(c.pass, "{what} {}: {:?}", c.op, c.detail);
        }
    }
}

/// Weight gradients' partial sums and pass 2. On a GPU (`Gpu::wide`) they
/// share one scratch buffer, each pass 2 right after its pass 1: three
/// convolutions hold barely more kernel-private memory than one. On CPU
/// adapters they wait side by side in a buffer of bounded size and their
/// pass 2s run as one dispatch per fill (`conv2d::FinishBatch`): four
/// convolutions with room for two partials take two such dispatches, with
/// the default room one. Either way the gradients agree with the CPU
/// reference.
#[test]
fn weight_gradient_partials_share_memory_and_dispatches() {
    let gpu = common::gpu();
    let s = Conv2dShape {
        n: 4,
        c_in: 8,
        h: 32,
        w: 32,
        c_out: 8,
        kh: 1,
        kw: 7,
        stride: 1,
        pad_h: 0,
        pad_w: 3,
        dilation: 1,
        groups: 1,
    };
    let partial = gradnas::ops::conv2d::weight_partial_len(gpu, &s);
    let align = gpu.offset_align();
    let build = |convs: usize| {
        let mut rng = verify::rng(3);
        let mut g = Graph::new();
        let x = g.input("x", &[4, 8, 32, 32]);
        let mut y = x;
        let mut ws = Vec::new();
        for k in 0..convs {
            let w = g.param(&format!("w{k}"), &[8, 8, 1, 7], kaiming(&mut rng, 448, 56));
            y = g.conv2d(y, w, None, s);
            ws.push(w);
        }
        let target = g.input("target", &[4, 8, 32, 32]);
        let loss = g.l1_loss(y, target);
        let grads = graph::backward(&mut g, loss);
        let dws: Vec<T> = ws.iter().map(|w| grads[w]).collect();
        for &d in &dws {
            g.pin(d);
        }
        // An SGD update puts the gradients side by side in one buffer.
        let hyper = SgdHyper {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
        };
        graph::append_updates(&mut g, &ws, &grads, Optimizer::Sgd(hyper), None);
        (g, x, target, dws)
    };
    let named = |plan: &Plan, name: &str| plan.kernels().iter().filter(|k| k.name == name).count();
    let batched = "conv2d::backward_weight_finish_batched";
    let mut rng = verify::rng(4);
    let (xv, tv) = (
        verify::randn(&mut rng, 4 * 8 * 1024),
        verify::randn(&mut rng, 4 * 8 * 1024),
    );
    let mut kernel_bytes = Vec::new();
    for (convs, room) in [(1, None), (3, None), (4, None), (4, Some(2))] {
        let (g, x, target, dws) = build(convs);
        let options = PlanOptions {
            batched_partials: room.map_or(PlanOptions::default().batched_partials, |r| {
                r * partial.next_multiple_of(align)
            }),
        };
        let plan = Plan::with_options(gpu, &g, options).expect("plan");
        let want = if gpu.wide {
            0
        } else {
            room.map_or(1, |r| convs.div_ceil(r))
        };
        assert_eq!(
            named(&plan, batched),
            want,
            "{convs} convolutions, room {room:?}"
        );
        let mut cpu = CpuExec::new(&g);
        for (t, v) in [(x, &xv), (target, &tv)] {
            plan.write(gpu, t, v);
            cpu.write(t, v);
        }
        plan.step(gpu).expect("gpu step");
        cpu.step(&g);
        for &d in &dws {
            let c = agree(
                &g,
                &plan,
                &cpu,
                d,
                "gradient",
                &format!("{convs} convolutions"),
            );
            assert!(c.pass, "{}: {:?}", c.op, c.detail);
        }
        kernel_bytes.push(plan.kernel_bytes);
    }
    let (one, three) = (kernel_bytes[0], kernel_bytes[1]);
    let partial_bytes = partial as u64 * 4;
    assert!(
        one >= partial_bytes,
        "{one} B hold no {partial_bytes} B partial"
    );
    if gpu.wide {
        assert!(
            three - one < partial_bytes,
            "two more weight gradients took {} B (a partial is {partial_bytes} B)",
            three - one
        );
    } else {
        // Room for two partials instead of four (the tables of rows round
        // up to the buffer pool's size classes).
        let saved = kernel_bytes[2] - kernel_bytes[3];
        assert!(
            saved + 1024 >= 2 * partial_bytes,
            "room for two partials saved {saved} B (a partial is {partial_bytes} B)"
        );
    }
}

/// A plan whose input reads another plan's result where it lies
/// (`Plan::with_bound_inputs`): relu(x) + relu(x) computed in two plans is
/// what one plan computes, and binding anything but an input, or a buffer
/// of another length, is refused by name.
#[test]
fn a_bound_input_reads_another_plans_result() {
    let gpu = common::gpu();
    let mut rng = verify::rng(9);
    let x: Vec<f32> = verify::randn(&mut rng, 37);
    let mut first = Graph::new();
    let xa = first.input("x", &[37]);
    let r = first.relu(xa);
    first.pin(r);
    let a = Plan::new(gpu, &first).unwrap();
    a.write(gpu, xa, &x);
    a.step(gpu).unwrap();
    let mut second = Graph::new();
    let z = second.input("relu(x)", &[37]);
    let y = second.add(z, z);
    second.pin(y);
    let b = Plan::with_bound_inputs(gpu, &second, &[(z, a.buf(r).clone())]).unwrap();
    b.step(gpu).unwrap();
    let want: Vec<f32> = x.iter().map(|v| 2.0 * v.max(0.0)).collect();
    assert_eq!(b.read(gpu, y).unwrap(), want);
    let e = Plan::with_bound_inputs(gpu, &second, &[(y, a.buf(r).clone())])
        .err()
        .expect("a result is not an input")
        .to_string();
    assert!(e.contains("not an input"), "{e}");
    let mut short = Graph::new();
    let s = short.input("short", &[36]);
    let t = short.relu(s);
    short.pin(t);
    let e = Plan::with_bound_inputs(gpu, &short, &[(s, a.buf(r).clone())])
        .err()
        .expect("36 elements are not 37")
        .to_string();
    assert!(e.contains("short has 36 elements, its buffer 37"), "{e}");
}
