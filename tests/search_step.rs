//! S1's bilevel step on a tiny supernet: one recorded GPU step against the
//! CPU reference (both losses, α after Adam, β after affine scaling, every
//! weight after SGD), β staying on the simplex, for both op sets and for
//! the second-order step.

mod common;

use gradnas::data::Dims;
use gradnas::graph::{memory_plan, CpuExec, Plan, T};
use gradnas::search::bilevel::{build_step, SearchHyper};
use gradnas::search::supernet::SupernetConfig;
use gradnas::space::OpSet;
use gradnas::verify::{self, compare, Tol};

fn tiny(op_set: OpSet) -> SupernetConfig {
    SupernetConfig {
        width: 2,
        depth: 3,
        batch: 2,
        op_set,
        dims: Dims::new(1, 8, 8),
        classes: 3,
        stem_multiplier: 1,
        partial_channels: 1,
    }
}

fn one_step(op_set: OpSet, second_order: bool) {
    step_with(tiny(op_set), second_order);
}

fn step_with(cfg: SupernetConfig, second_order: bool) {
    let gpu = common::gpu();
    // A large β lr so the affine step visibly moves β within one step.
    let h = SearchHyper {
        beta_lr: 50.0,
        a_lr: 0.05,
        second_order,
        ..SearchHyper::default()
    };
    let step = build_step(&cfg, &h, 11);
    let plan = Plan::new(gpu, &step.g).expect("plan");
    let mut cpu = CpuExec::new(&step.g);
    let mut rng = verify::rng(4);
    let n = cfg.batch * cfg.dims.len();
    let feeds: [(T, Vec<f32>); 2] = [
        (step.val_images, verify::randn(&mut rng, n)),
        (step.train_images, verify::randn(&mut rng, n)),
    ];
    for (t, v) in &feeds {
        plan.write(gpu, *t, v);
        cpu.write(*t, v);
    }
    for (t, l) in [(step.val_labels, [0u32, 2]), (step.train_labels, [1, 0])] {
        plan.write_u32(gpu, t, &l);
        cpu.write_u32(t, &l);
    }
    let before: Vec<Vec<f32>> = step
        .arch
        .betas()
        .iter()
        .map(|b| cpu.read(*b).to_vec())
        .collect();
    plan.step(gpu).expect("gpu step");
    cpu.step(&step.g);

    let tol = Tol {
        rel: 2e-3,
        abs: 2e-4,
    };
    let mut bad = Vec::new();
    let watched = [step.val_loss, step.train_loss]
        .into_iter()
        .chain(step.arch.alphas())
        .chain(step.arch.betas())
        .chain(step.arch_grads.iter().map(|&(_, d)| d))
        .chain(step.weights.iter().copied());
    for t in watched {
        let got = plan.read(gpu, t).unwrap();
        let c = compare(
            &step.g.def(t).name,
            "after step",
            "",
            cpu.read(t),
            &got,
            tol,
        );
        if !c.pass {
            bad.push(format!("{}: {:?}", c.op, c.detail));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of the watched tensors disagree:\n{}",
        bad.len(),
        bad.join("\n")
    );

    // β is still on the simplex, strictly inside, and the step moved it.
    let mut moved = 0.0f32;
    for (b, old) in step.arch.betas().iter().zip(&before) {
        let v = plan.read(gpu, *b).unwrap();
        let sum: f32 = v.iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-5 && v.iter().all(|&x| x > 0.0),
            "β = {v:?}"
        );
        moved += v.iter().zip(old).map(|(a, b)| (a - b).abs()).sum::<f32>();
    }
    assert!(moved > 1e-6, "the affine-scaling step did not move β");
    let l = plan.read(gpu, step.val_loss).unwrap()[0];
    assert!(l.is_finite() && l > 0.0);
}

#[test]
fn bilevel_step_matches_cpu_pnas() {
    one_step(OpSet::pnas(), false);
}

#[test]
fn bilevel_step_second_order_matches_cpu() {
    one_step(OpSet::pnas(), true);
}

/// Partial channels, k = 2: width 4 gives 2-channel slices in normal cells
/// and 4 in reduction cells (FactorizedReduce on a slice).
#[test]
fn bilevel_step_partial_channels_matches_cpu() {
    let cfg = SupernetConfig {
        width: 4,
        partial_channels: 2,
        ..tiny(OpSet::pnas())
    };
    step_with(cfg, false);
}

/// Partial channels cut the supernet step's planned memory (k = 4 to less
/// than half of k = 1 on a bench-small-shaped supernet); no device needed.
#[test]
fn partial_channels_cut_planned_memory() {
    let planned = |k: usize| {
        let cfg = SupernetConfig {
            width: 8,
            depth: 5,
            batch: 4,
            dims: Dims::new(1, 28, 28),
            classes: 10,
            partial_channels: k,
            ..tiny(OpSet::pnas())
        };
        let step = build_step(&cfg, &SearchHyper::default(), 1);
        memory_plan(&step.g).planned_bytes
    };
    let (full, pc) = (planned(1), planned(4));
    eprintln!(
        "planned bytes: k=1 {full}, k=4 {pc} ({:.2}×)",
        pc as f64 / full as f64
    );
    assert!(pc * 2 < full, "k=4 plans {pc} bytes vs {full} for k=1");
}

#[test]
fn bilevel_step_matches_cpu_darts() {
    one_step(OpSet::darts(), false);
}

#[test]
fn impossible_configs_are_refused_naming_the_field() {
    let mut c = tiny(OpSet::pnas());
    c.width = 3;
    assert!(c.validate().unwrap_err().contains("width"));
    c.width = 2;
    c.depth = 0;
    assert!(c.validate().unwrap_err().contains("depth"));
    c.depth = 3;
    c.partial_channels = 4; // does not divide width 2
    assert!(c.validate().unwrap_err().contains("partial_channels"));
}

/// A step encoded in parallel chunks and submitted piece by piece (what
/// `Gpu::run` does on large plans) gives the same bits as one compute
/// pass: the queue keeps the order and wgpu the barriers between pieces.
#[test]
fn chunked_encoding_gives_the_same_bits() {
    let gpu = common::gpu();
    let cfg = tiny(OpSet::pnas());
    let run = |chunks: usize| {
        let (step, plan) = common::fed_step(gpu, &cfg, 11, 4, &[2, 1]);
        let chunk = plan.dispatches().div_ceil(chunks);
        assert!(
            plan.dispatches() > 4 * chunks,
            "{} dispatches",
            plan.dispatches()
        );
        for _ in 0..2 {
            gpu.run_chunked(plan.kernels(), chunk).expect("step");
        }
        common::stepped(&step)
            .iter()
            .map(|&t| plan.read(gpu, t).unwrap())
            .collect::<Vec<_>>()
    };
    let (one, five) = (run(1), run(5));
    assert_eq!(one.len(), five.len());
    for (i, (a, b)) in one.iter().zip(&five).enumerate() {
        let (a, b): (Vec<u32>, Vec<u32>) = (
            a.iter().map(|x| x.to_bits()).collect(),
            b.iter().map(|x| x.to_bits()).collect(),
        );
        assert_eq!(a, b, "tensor {i} differs between one pass and five chunks");
    }
}
