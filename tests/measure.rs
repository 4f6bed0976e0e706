//! Measuring a cell one-shot from the S1 supernet (src/predict/measure.rs):
//! the mask reading against the discrete network of `nn::genotype_net`,
//! the mask plan on the GPU against the CPU reference, the mask plan
//! against the per-cell discrete plan, determinism and distinct cells on a
//! briefly trained supernet, and clear errors.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use gradnas::data::Dims;
use gradnas::graph::{CpuExec, Graph, T};
use gradnas::nn::{genotype_net, ParamStore};
use gradnas::predict::measure::{
    cell_mask, extra_lanes, inherit, mask_betas, mask_input, mask_len, mask_values, measure_cells,
    measure_op_set, supernet_name, MeasureConfig, OneShot, OneShotDiscrete, SupernetWeights,
};
use gradnas::search::bilevel::SearchHyper;
use gradnas::search::s1::{self, S1Config};
use gradnas::search::supernet::{self, SupernetConfig};
use gradnas::space::{Block, Cell, Genotype, OpKind, OpSet};
use gradnas::verify::{self, compare, Tol};

use OpKind::*;

const TOL: Tol = Tol {
    rel: 1e-4,
    abs: 1e-4,
};

fn cell(blocks: &[(usize, OpKind, usize, OpKind)]) -> Cell {
    Cell {
        blocks: blocks
            .iter()
            .map(|&(i1, o1, i2, o2)| Block::new(i1, o1, i2, o2))
            .collect(),
    }
}

fn config(width: usize, depth: usize, dims: Dims, op_set: OpSet) -> SupernetConfig {
    SupernetConfig {
        width,
        depth,
        batch: 4,
        op_set,
        dims,
        classes: 10,
        stem_multiplier: 2,
        partial_channels: 1,
    }
}

/// (a) The masked supernet's forward (train-mode BN, one batch, CPU) equals
/// the discrete network of `nn::genotype_net` with the supernet's weights
/// inherited by name: cells shorter than 5 blocks (the next cells'
/// preprocessing and the classifier sliced to the kept channels), a block
/// reading one input through two ops, a block with two identical slots
/// (mask weight 2, the discrete `_2` copy), identity at stride 2, and a
/// reduction right after a reduction (FactorizedReduce preprocessing on a
/// sliced input). Pools are left out: the supernet's carry a BN that
/// genotype_net's do not (the discrete mode's own builder keeps it; see
/// `mask_plan_matches_the_discrete_plan`).
#[test]
fn mask_reading_matches_the_discrete_network() {
    let t0 = Instant::now();
    let cfg = config(2, 3, Dims::new(1, 8, 8), OpSet::pnas());
    let op_set = measure_op_set(&cfg.op_set);
    let normal = cell(&[
        (0, SepConv3x3, 1, DilConv3x3),
        (1, DilConv3x3, 1, DilConv3x3),
        (0, SepConv5x5, 0, Conv7x1_1x7),
    ]);
    let reduce = cell(&[
        (0, Identity, 1, SepConv3x3),
        (2, SepConv7x7, 1, Conv7x1_1x7),
    ]);
    let batch = 4;
    let shape = [batch, 1, 8, 8];
    let images = verify::randn(&mut verify::rng(5), shape.iter().product());

    let mut ga = Graph::new();
    let xa = ga.input("images", &shape);
    let masks = mask_input(&mut ga, op_set.len());
    let mut sa = ParamStore::new(7);
    let mcfg = SupernetConfig {
        op_set: op_set.clone(),
        ..cfg.clone()
    };
    let la = supernet::forward(&mut ga, &mut sa, &mcfg, xa, &masks.normal, &masks.reduce);
    ga.pin(la);
    let run_masked = |doubled_as_one: bool| {
        let mut ea = CpuExec::new(&ga);
        ea.write(xa, &images);
        let mut m = mask_values(&normal, &reduce, &op_set).unwrap();
        if doubled_as_one {
            m.iter_mut().for_each(|v| *v = v.min(1.0));
        }
        assert_eq!(m.len(), mask_len(op_set.len()));
        ea.write(masks.all, &m);
        ea.step(&ga);
        ea.read(la).to_vec()
    };
    let masked = run_masked(false);

    let mut gb = Graph::new();
    let xb = gb.input("images", &shape);
    let mut sb = ParamStore::new(8);
    let geno = Genotype {
        op_set: "pnas".into(),
        normal: normal.clone(),
        reduce: reduce.clone(),
        alpha: None,
        beta: None,
    };
    let lb = genotype_net::forward(&mut gb, &mut sb, &cfg.skeleton(), &geno, xb);
    gb.pin(lb);
    let by_name: HashMap<String, T> = sa
        .params
        .iter()
        .map(|&t| (ga.def(t).name.clone(), t))
        .collect();
    let mut eb = CpuExec::new(&gb);
    eb.write(xb, &images);
    let mut sliced = 0;
    let mut doubled = 0;
    for &t in &sb.params {
        let d = gb.def(t);
        let src = by_name[&supernet_name(&d.name)];
        let s = ga.def(src);
        sliced += usize::from(s.shape != d.shape);
        doubled += usize::from(d.name.contains("_2."));
        let v = inherit(&d.name, &d.shape, &s.shape, s.init.as_ref().unwrap()).unwrap();
        eb.write(t, &v);
    }
    assert!(
        sliced >= 3,
        "expected sliced preprocessing/classifier weights, got {sliced}"
    );
    assert!(doubled > 0, "the doubled slot has its own `_2` weights");
    eb.step(&gb);
    let discrete = eb.read(lb).to_vec();
    assert_eq!(discrete.len(), batch * 10);
    let c = compare("logits", "mask vs discrete", "", &discrete, &masked, TOL);
    assert!(c.pass, "{c:?}");
    // The count matters: weight 1 on the doubled slot is another network.
    let wrong = run_masked(true);
    let c = compare("logits", "mask 1 vs discrete", "", &discrete, &wrong, TOL);
    assert!(!c.pass, "the doubled slot's weight made no difference");
    eprintln!("mask reading: {:.1} s", t0.elapsed().as_secs_f64());
}

fn small_measure() -> MeasureConfig {
    MeasureConfig {
        bn_batches: 2,
        bn_batch: 4,
        n_val: 12,
        eval_batch: 8,
        seed: 2,
        ..MeasureConfig::default()
    }
}

/// (b) The mask plan on the GPU equals the CPU reference on the same graph
/// (logits of every measured image; the padded last pass included), and
/// its correct count is the host's count from its own logits.
#[test]
fn mask_plan_matches_cpu_reference() {
    let t0 = Instant::now();
    let gpu = common::gpu();
    let splits = common::bundled_subset(32, 16, 1);
    let cfg = config(2, 2, splits.train.dims, OpSet::pnas());
    let w = SupernetWeights::random(cfg, 11).unwrap();
    let mut one = OneShot::new(gpu, &w, &splits, &small_measure()).unwrap();
    assert_eq!(one.n_val(), 12);
    let normal = cell(&[
        (0, SepConv3x3, 1, MaxPool3x3),
        (2, AvgPool3x3, 2, AvgPool3x3),
    ]);
    let reduce = cell(&[(0, Identity, 1, DilConv3x3)]);
    let (acc, logits) = one.measure_logits(gpu, &normal, &reduce).unwrap();
    let (cpu_acc, cpu_logits) = one.measure_cpu(&normal, &reduce).unwrap();
    assert_eq!(logits.len(), 12 * 10);
    let c = compare("logits", "gpu vs cpu", "", &cpu_logits, &logits, TOL);
    assert!(c.pass, "{c:?}");
    let labels = &splits.val.labels;
    let host_count = |l: &[f32]| {
        l.chunks(10)
            .zip(labels)
            .filter(|(row, &y)| {
                let best = (0..10).fold(0, |b, k| if row[k] > row[b] { k } else { b });
                best == y as usize
            })
            .count() as f32
            / 12.0
    };
    assert_eq!(acc, host_count(&logits), "GPU count vs its logits");
    assert_eq!(cpu_acc, host_count(&cpu_logits), "CPU count vs its logits");
    assert!((0.0..=1.0).contains(&acc));
    eprintln!("gpu vs cpu: {:.1} s", t0.elapsed().as_secs_f64());
}

/// The mask plan and the per-cell discrete plan measure the same network:
/// equal accuracy and logits, on cells with pools (their BN kept), shorter
/// cells, doubled slots and two reductions in a row.
#[test]
fn mask_plan_matches_the_discrete_plan() {
    let t0 = Instant::now();
    let gpu = common::gpu();
    let splits = common::bundled_subset(32, 24, 1);
    let cfg = config(2, 3, splits.train.dims, OpSet::pnas());
    let w = SupernetWeights::random(cfg, 12).unwrap();
    let mc = MeasureConfig {
        n_val: 24,
        ..small_measure()
    };
    let mut mask = OneShot::new(gpu, &w, &splits, &mc).unwrap();
    let mut discrete = OneShotDiscrete::new(w, &splits, &mc).unwrap();
    let pairs = [
        (
            cell(&[
                (0, MaxPool3x3, 1, MaxPool3x3),
                (2, SepConv5x5, 0, AvgPool3x3),
            ]),
            cell(&[(1, AvgPool3x3, 0, MaxPool3x3), (2, Identity, 2, Identity)]),
        ),
        (
            cell(&[
                (1, SepConv3x3, 1, Identity),
                (0, DilConv3x3, 2, Conv7x1_1x7),
                (3, SepConv7x7, 1, AvgPool3x3),
                (4, Identity, 2, MaxPool3x3),
                (5, SepConv3x3, 5, SepConv3x3),
            ]),
            cell(&[(0, SepConv3x3, 1, SepConv3x3)]),
        ),
    ];
    for (normal, reduce) in &pairs {
        let (a, la) = mask.measure_logits(gpu, normal, reduce).unwrap();
        let (b, lb) = discrete.measure_logits(gpu, normal, reduce).unwrap();
        assert_eq!(la.len(), 24 * 10);
        let c = compare("logits", "mask vs discrete plan", "", &lb, &la, TOL);
        assert!(c.pass, "{normal:?} / {reduce:?}: {c:?}");
        assert_eq!(a, b, "{normal:?} / {reduce:?}");
        assert_eq!(discrete.measure(gpu, normal, reduce).unwrap(), b);
    }
    // `bench --profile`'s view of a measurement: every kind of dispatch
    // timed, costliest first; and measuring is unchanged after it.
    let (normal, reduce) = &pairs[1];
    let before = discrete.measure(gpu, normal, reduce).unwrap();
    let p = discrete.profile(gpu, normal, reduce).unwrap();
    assert!(p.iter().any(|r| r.entry.starts_with("conv2d")), "{p:?}");
    assert!(p
        .iter()
        .all(|r| r.dispatches > 0 && r.workgroups >= r.dispatches as u64));
    assert!(p.iter().all(|r| r.seconds.is_finite() && r.seconds >= 0.0));
    assert!(
        p.windows(2).all(|w| w[0].seconds >= w[1].seconds),
        "not sorted: {p:?}"
    );
    assert_eq!(discrete.measure(gpu, normal, reduce).unwrap(), before);
    eprintln!("mask vs discrete plan: {:.1} s", t0.elapsed().as_secs_f64());
}

/// The linear-probe reading (`probe_images` > 0) is the same number on
/// the mask plan, its CPU reference and the discrete plan (the features
/// agree to rounding, so at most one borderline image may differ), a
/// multiple of 1/n_val, repeatable after another cell, and not the shared
/// classifier's reading.
#[test]
fn probe_reading_agrees_across_plans() {
    let t0 = Instant::now();
    let gpu = common::gpu();
    let splits = common::bundled_subset(48, 24, 1);
    let cfg = config(2, 2, splits.train.dims, OpSet::pnas());
    let w = SupernetWeights::random(cfg, 21).unwrap();
    let mc = MeasureConfig {
        n_val: 24,
        probe_images: 21,
        ..small_measure()
    };
    let mut mask = OneShot::new(gpu, &w, &splits, &mc).unwrap();
    let mut discrete = OneShotDiscrete::new(w.clone(), &splits, &mc).unwrap();
    let mut shared = OneShotDiscrete::new(
        w,
        &splits,
        &MeasureConfig {
            probe_images: 0,
            ..mc.clone()
        },
    )
    .unwrap();
    let a = cell(&[(0, SepConv3x3, 1, MaxPool3x3), (2, AvgPool3x3, 0, Identity)]);
    let b = cell(&[(1, DilConv3x3, 0, SepConv5x5)]);
    let mut differs = false;
    for c in [&a, &b] {
        let gpu_acc = mask.measure(gpu, c, c).unwrap();
        let (cpu_acc, _) = mask.measure_cpu(c, c).unwrap();
        let disc = discrete.measure(gpu, c, c).unwrap();
        for (what, v) in [("cpu", cpu_acc), ("discrete", disc)] {
            assert!(
                (v - gpu_acc).abs() <= 1.0 / 24.0 + 1e-6,
                "{c:?}: mask plan {gpu_acc} vs {what} {v}"
            );
        }
        assert!(
            (0.0..=1.0).contains(&gpu_acc)
                && (gpu_acc * 24.0 - (gpu_acc * 24.0).round()).abs() < 1e-4
        );
        differs |= shared.measure(gpu, c, c).unwrap() != disc;
    }
    assert_eq!(
        mask.measure(gpu, &a, &a).unwrap(),
        mask.measure(gpu, &a, &a).unwrap()
    );
    assert!(
        differs,
        "the probe read both cells exactly as the shared classifier does"
    );
    eprintln!("probe: {:.1} s", t0.elapsed().as_secs_f64());
}

/// (c) After a few S1 steps: measuring is deterministic (also after
/// another cell ran: the statistics are recomputed, nothing leaks), and
/// two different cells measure differently. (d, through the plan) a bad
/// cell is refused with a clear error and leaves the plan usable.
#[test]
fn measuring_is_deterministic_and_tells_cells_apart() {
    let t0 = Instant::now();
    let gpu = common::gpu();
    let splits = common::bundled_subset(64, 64, 1);
    let cfg = S1Config {
        supernet: SupernetConfig {
            batch: 4,
            ..config(2, 2, splits.train.dims, OpSet::pnas())
        },
        hyper: SearchHyper {
            a_lr: 0.1,
            ..SearchHyper::default()
        },
        epochs: 1,
        steps_per_epoch: Some(3),
        seed: 3,
        log_every: 3,
    };
    let dir = tempfile::Builder::new()
        .prefix("gradnas-measure-")
        .tempdir()
        .unwrap();
    s1::run(gpu, &splits, &cfg, dir.path(), |_| {}).expect("s1");
    let t_s1 = t0.elapsed().as_secs_f64();
    let mc = MeasureConfig {
        bn_batches: 2,
        bn_batch: 8,
        n_val: 48,
        eval_batch: 24,
        seed: 1,
        ..MeasureConfig::default()
    };
    let mut one = OneShot::from_run_dir(gpu, dir.path(), &splits, &mc).unwrap();
    let a = cell(&[
        (0, SepConv3x3, 1, SepConv5x5),
        (2, DilConv3x3, 1, SepConv3x3),
    ]);
    let b = cell(&[(0, MaxPool3x3, 1, AvgPool3x3), (2, Identity, 0, MaxPool3x3)]);
    let first = one.measure(gpu, &a, &a).unwrap();
    let other = one.measure(gpu, &b, &b).unwrap();
    let again = one.measure(gpu, &a, &a).unwrap();
    assert_eq!(first, again, "the same cell measured twice");
    assert_ne!(first, other, "two different cells measured the same");
    for acc in [first, other] {
        assert!((0.0..=1.0).contains(&acc) && (acc * 48.0).fract() == 0.0);
    }

    let bad_input = cell(&[(0, SepConv3x3, 2, SepConv3x3)]);
    let e = one.measure(gpu, &a, &bad_input).unwrap_err().to_string();
    assert!(
        e.contains("reduction cell") && e.contains("block 0 input 1") && e.contains("index 2"),
        "{e}"
    );
    let bad_op = cell(&[(0, SepConv3x3, 1, DilConv5x5)]);
    let e = one.measure(gpu, &bad_op, &a).unwrap_err().to_string();
    assert!(
        e.contains("normal cell") && e.contains("dil_conv_5x5") && e.contains("not in op set"),
        "{e}"
    );
    assert_eq!(one.measure(gpu, &a, &a).unwrap(), first);
    eprintln!(
        "deterministic: {:.1} s ({t_s1:.1} s of S1, plan built in {:.1} s)",
        t0.elapsed().as_secs_f64(),
        one.build_seconds
    );
}

/// S2 measures on two devices of the adapter at once (`measure_cells`):
/// a second device computes the same logits bit for bit, the cells come
/// back in their order with the accuracies one device gives measuring
/// them in turn, `done` hears of each once, and a bad cell's error stops
/// the rest and names it.
#[test]
fn cells_measured_on_two_devices_match_one() {
    let gpu = common::gpu();
    let splits = common::bundled_subset(32, 24, 1);
    let cfg = config(2, 2, splits.train.dims, OpSet::pnas());
    let w = SupernetWeights::random(cfg, 5).unwrap();
    let mc = MeasureConfig {
        n_val: 24,
        probe_images: 16,
        ..small_measure()
    };
    let mut m = OneShotDiscrete::new(w, &splits, &mc).unwrap();
    let lanes = extra_lanes(gpu, 2).unwrap();
    assert_eq!(lanes.len(), 1);
    let second = &lanes[0];
    assert_eq!(second.info.name, gpu.info.name);
    assert_eq!(second.wide, gpu.wide);
    // A device whose split was changed after it was made passes it on.
    let flipped = common::other_split_gpu();
    assert_eq!(flipped.another().unwrap().wide, flipped.wide);
    assert!(!std::ptr::eq(second, gpu));
    let cells = [
        cell(&[(0, SepConv3x3, 1, MaxPool3x3)]),
        cell(&[(1, AvgPool3x3, 0, Identity), (2, DilConv3x3, 0, SepConv5x5)]),
        cell(&[(0, Conv7x1_1x7, 1, SepConv7x7)]),
        cell(&[(1, Identity, 1, MaxPool3x3), (0, SepConv3x3, 2, AvgPool3x3)]),
        cell(&[(0, DilConv3x3, 0, SepConv3x3)]),
    ];
    let (a, la) = m.measure_logits(gpu, &cells[1], &cells[1]).unwrap();
    let (b, lb) = m.measure_logits(second, &cells[1], &cells[1]).unwrap();
    assert_eq!(a, b);
    assert!(!la.is_empty() && la.iter().all(|v| v.is_finite()));
    assert!(
        la.iter().zip(&lb).all(|(x, y)| x.to_bits() == y.to_bits()),
        "the second device's logits differ"
    );
    let one: Vec<f32> = cells
        .iter()
        .map(|c| m.measure_cell(gpu, &splits, c).unwrap())
        .collect();
    let mut heard = Vec::new();
    let both = measure_cells(&[gpu, second], &mut m, &splits, &cells, |i, acc| {
        heard.push((i, acc));
        Ok(())
    })
    .unwrap();
    assert_eq!(both, one);
    heard.sort_by_key(|&(i, _)| i);
    assert_eq!(heard, one.iter().copied().enumerate().collect::<Vec<_>>());
    let mut bad = cells.to_vec();
    bad[3] = cell(&[(0, SepConv3x3, 3, SepConv3x3)]);
    let e = measure_cells(&[gpu, second], &mut m, &splits, &bad, |_, _| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("index 3"), "{e}");
    let e = measure_cells(&[], &mut m, &splits, &cells, |_, _| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no device"), "{e}");
}

/// Every cell's network starting from the stem and first preprocessing
/// computed once per device (`reuse_prefix`, the default) changes no bit:
/// the same accuracy and logits as the network computed whole per cell,
/// at depth 1 (cell 0's inputs alone), 2 (cell 1, a reduction, reading the
/// stem through its input 0) and 3, with a linear probe's passes, a padded
/// last pass, cells that skip an input, and on a second device (its own
/// prefix). Measuring again after other cells reads the same prefix.
#[test]
fn the_shared_prefix_changes_no_bit() {
    let gpu = common::gpu();
    let lanes = extra_lanes(gpu, 2).unwrap();
    let splits = common::bundled_subset(40, 24, 1);
    let cells = [
        cell(&[(0, SepConv3x3, 1, MaxPool3x3), (2, Identity, 0, AvgPool3x3)]),
        cell(&[(1, DilConv3x3, 1, Conv7x1_1x7)]),
        cell(&[(0, Identity, 0, SepConv5x5)]),
    ];
    let same = |x: &[f32], y: &[f32]| {
        x.len() == y.len() && x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits())
    };
    for (depth, probe) in [(1, 0), (2, 13), (3, 0)] {
        let cfg = config(2, depth, splits.train.dims, OpSet::pnas());
        let w = SupernetWeights::random(cfg, 30 + depth as u64).unwrap();
        let mc = MeasureConfig {
            n_val: 20,
            probe_images: probe,
            ..small_measure()
        };
        let mut shared = OneShotDiscrete::new(w.clone(), &splits, &mc).unwrap();
        let mut whole = OneShotDiscrete::new(w, &splits, &mc).unwrap();
        whole.reuse_prefix = false;
        for (i, n) in cells.iter().enumerate() {
            let r = &cells[(i + 1) % cells.len()];
            let (b, lb) = whole.measure_logits(gpu, n, r).unwrap();
            assert!(!lb.is_empty() && lb.iter().all(|v| v.is_finite()));
            for device in [gpu, &lanes[0]] {
                let (a, la) = shared.measure_logits(device, n, r).unwrap();
                assert_eq!(a.to_bits(), b.to_bits(), "depth {depth}, {n:?} / {r:?}");
                assert!(
                    same(&la, &lb),
                    "depth {depth}, {n:?} / {r:?}: logits differ"
                );
            }
        }
        let (a, la) = shared.measure_logits(gpu, &cells[0], &cells[1]).unwrap();
        let (b, lb) = whole.measure_logits(gpu, &cells[0], &cells[1]).unwrap();
        assert!(a == b && same(&la, &lb), "depth {depth}: measured again");
    }
}

/// A cell's measurement does not depend on how its images are cut into
/// passes (the presets choose the pass size for speed alone): one pass of
/// all 24 validation images, three of 8, and passes of 7 with a short last
/// one give the same logits bit for bit and the same accuracy, read through
/// the shared classifier and through the linear probe (whose 16 training
/// images are cut into passes the same way).
#[test]
fn a_measurement_does_not_depend_on_the_pass_size() {
    let gpu = common::gpu();
    let splits = common::bundled_subset(32, 24, 1);
    let cfg = config(2, 2, splits.train.dims, OpSet::pnas());
    let w = SupernetWeights::random(cfg, 6).unwrap();
    let cells = [
        cell(&[(0, SepConv3x3, 1, MaxPool3x3)]),
        cell(&[(1, AvgPool3x3, 0, Identity), (2, DilConv3x3, 0, SepConv5x5)]),
        cell(&[
            (0, Conv7x1_1x7, 1, SepConv7x7),
            (2, SepConv3x3, 1, SepConv5x5),
        ]),
    ];
    for probe_images in [0, 16] {
        let measured = |eval_batch: usize| {
            let mc = MeasureConfig {
                n_val: 24,
                eval_batch,
                probe_images,
                ..small_measure()
            };
            let mut m = OneShotDiscrete::new(w.clone(), &splits, &mc).unwrap();
            cells
                .iter()
                .map(|c| m.measure_logits(gpu, c, c).unwrap())
                .collect::<Vec<_>>()
        };
        let one_pass = measured(24);
        for (acc, logits) in &one_pass {
            assert_eq!(logits.len(), 24 * 10);
            assert!(logits.iter().all(|v| v.is_finite()) && (0.0..=1.0).contains(acc));
        }
        for eval_batch in [8, 7] {
            for (c, (a, b)) in one_pass.iter().zip(measured(eval_batch)).enumerate() {
                assert_eq!(
                    a.0, b.0,
                    "cell {c}, probe {probe_images}, passes of {eval_batch}"
                );
                assert!(
                    a.1.iter()
                        .zip(&b.1)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "cell {c}, probe {probe_images}: logits in passes of {eval_batch} differ"
                );
            }
        }
    }
}

/// (d) Bad cells and bad configurations fail with errors that say what is
/// wrong, before any GPU work.
#[test]
fn bad_inputs_error_clearly() {
    let op_set = measure_op_set(&OpSet::darts());
    assert!(!op_set.contains(None_), "none is never measured");
    let cases = [
        (
            cell(&[
                (0, SepConv3x3, 1, SepConv3x3),
                (4, SepConv3x3, 0, SepConv3x3),
            ]),
            "block 1 input 0: index 4 out of range",
        ),
        (
            cell(&[(0, SepConv3x3, 1, Conv7x1_1x7)]),
            "conv_7x1_1x7 is not in op set darts",
        ),
        (
            cell(&[(0, None_, 1, SepConv3x3)]),
            "`none` cannot be chosen",
        ),
        (cell(&[]), "empty cell"),
    ];
    for (c, want) in &cases {
        let e = cell_mask(c, &op_set).unwrap_err();
        assert!(e.contains(want), "{e:?} should say {want:?}");
    }
    // A good mask: counts per (input, op), zero rows past the cell.
    let m = cell_mask(&cell(&[(1, MaxPool3x3, 1, MaxPool3x3)]), &op_set).unwrap();
    let k = op_set.len();
    let max = op_set.index_of(MaxPool3x3).unwrap();
    assert_eq!(m[0][k + max], 2.0);
    assert_eq!(m[0].iter().sum::<f32>(), 2.0);
    assert!(m[1..].iter().all(|r| r.iter().all(|&v| v == 0.0)));
    assert_eq!(mask_betas(&m, k)[0], vec![0.0, 2.0]);

    let splits = common::bundled_subset(16, 8, 1);
    let cfg = config(2, 2, splits.train.dims, OpSet::pnas());
    let w = SupernetWeights::random(cfg.clone(), 1).unwrap();
    let mut d = OneShotDiscrete::new(w.clone(), &splits, &small_measure()).unwrap();
    let e = d
        .measure(
            common::gpu(),
            &cell(&[(0, Identity, 3, Identity)]),
            &cases[0].0,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("normal cell: block 0 input 1"), "{e}");
    for (mc, want) in [
        (
            MeasureConfig {
                bn_batch: 1,
                ..small_measure()
            },
            "bn_batch 1",
        ),
        (
            MeasureConfig {
                n_val: 0,
                ..small_measure()
            },
            "n_val 0",
        ),
        (
            MeasureConfig {
                probe_images: 1,
                ..small_measure()
            },
            "probe_images 1",
        ),
        (
            MeasureConfig {
                bn_batches: 0,
                ..small_measure()
            },
            "bn_batches 0",
        ),
    ] {
        let e = OneShotDiscrete::new(w.clone(), &splits, &mc)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    let pc = SupernetWeights::random(
        SupernetConfig {
            partial_channels: 2,
            ..cfg.clone()
        },
        1,
    )
    .unwrap();
    let e = OneShotDiscrete::new(pc, &splits, &small_measure())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("partial_channels 2"), "{e}");
    let mut missing = w.clone();
    missing.tensors.remove("cell1.pre1.conv.weight");
    let e = OneShot::new(common::gpu(), &missing, &splits, &small_measure())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("no tensor \"cell1.pre1.conv.weight\""), "{e}");
    let other = SupernetWeights {
        config: config(4, 2, splits.train.dims, OpSet::pnas()),
        ..w.clone()
    };
    let e = OneShot::new(common::gpu(), &other, &splits, &small_measure())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("the supernet has"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = SupernetWeights::load(empty.path()).unwrap_err().to_string();
    assert!(e.contains("s1_config.json"), "{e}");
    let e = inherit("x", &[2, 3], &[2, 2], &[0.0; 4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("wants shape [2, 3]"), "{e}");
}

/// A sub-network whose logits are not finite is an error in both modes
/// (the mask plan's one read carries the check), not an accuracy.
#[test]
fn non_finite_logits_are_an_error() {
    let gpu = common::gpu();
    let splits = common::bundled_subset(16, 8, 1);
    let cfg = config(2, 2, splits.train.dims, OpSet::pnas());
    let mut w = SupernetWeights::random(cfg, 3).unwrap();
    w.tensors.get_mut("classifier.weight").unwrap().1[0] = f32::NAN;
    let c = cell(&[(0, SepConv3x3, 1, MaxPool3x3)]);
    let mut mask = OneShot::new(gpu, &w, &splits, &small_measure()).unwrap();
    let e = mask.measure(gpu, &c, &c).unwrap_err().to_string();
    assert!(e.contains("logits are not finite"), "{e}");
    let e = mask.measure_cpu(&c, &c).unwrap_err().to_string();
    assert!(e.contains("logits are not finite"), "{e}");
    let mut discrete = OneShotDiscrete::new(w, &splits, &small_measure()).unwrap();
    let e = discrete.measure(gpu, &c, &c).unwrap_err().to_string();
    assert!(e.contains("logits are not finite"), "{e}");
}
