//! S2's LSTM performance predictor: one training step of its graph on the
//! GPU against the CPU executor (mixed lengths, padding rows); masking (a
//! cell's prediction does not depend on what it is batched with, and
//! equals a plain-loop LSTM over its unpadded tokens); a synthetic target
//! the trained ensemble must rank with Kendall τ ≥ 0.8; and the ensemble's
//! spread and determinism per seed.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use gradnas::graph::{CpuExec, Plan, T};
use gradnas::predict::predictor::{
    cell_tokens, HostBatch, Predictor, PredictorConfig, PredictorGraph, Tokens,
};
use gradnas::predict::rank::{kendall_tau, spearman_rho};
use gradnas::space::{self, Block, Cell, OpKind, OpSet};
use gradnas::verify::{self, compare, Rng, Tol, FORWARD};
use rand::Rng as _;

/// A random cell of `blocks` blocks (any inputs, ops other than none).
fn random_cell(rng: &mut Rng, op_set: &OpSet, blocks: usize) -> Cell {
    let ops: Vec<OpKind> = op_set.choosable().collect();
    let blocks = (0..blocks)
        .map(|b| {
            let mut pick = || {
                (
                    rng.random_range(0..space::num_inputs(b)),
                    ops[rng.random_range(0..ops.len())],
                )
            };
            let ((i1, o1), (i2, o2)) = (pick(), pick());
            Block::new(i1, o1, i2, o2)
        })
        .collect();
    Cell { blocks }
}

/// `n` random cells of 1..=5 blocks.
fn random_cells(rng: &mut Rng, op_set: &OpSet, n: usize) -> Vec<Cell> {
    (0..n)
        .map(|_| {
            let b = rng.random_range(1..=space::BLOCKS);
            random_cell(rng, op_set, b)
        })
        .collect()
}

/// A fixed, known function of the encoding: each op and each input index
/// has a score; a cell's accuracy is 0.2 + 0.7·σ(2·(mean over blocks of
/// its four token scores)), in (0.2, 0.9). The mean (not the sum) keeps
/// the target independent of the cell's length, so length alone ranks
/// nothing.
fn synthetic_accuracy(cells: &[Cell], op_set: &OpSet) -> Vec<f32> {
    let (iv, ov) = space::vocab_sizes(op_set);
    let input_score: Vec<f64> = (0..iv).map(|i| 0.6 - 0.25 * i as f64).collect();
    let op_score: Vec<f64> = (0..ov)
        .map(|o| [0.9, -0.7, 0.3, -0.2, 0.6, -1.0, 0.1, 0.8][o % 8])
        .collect();
    cell_tokens(cells, op_set)
        .unwrap()
        .iter()
        .map(|toks| {
            let z = toks
                .iter()
                .map(|&(i1, i2, o1, o2)| {
                    input_score[i1] + input_score[i2] + op_score[o1] + op_score[o2]
                })
                .sum::<f64>()
                / toks.len() as f64;
            (0.2 + 0.7 / (1.0 + (-2.0 * z).exp())) as f32
        })
        .collect()
}

/// Weights a GPU training step and the CPU reference must agree on.
fn check_all(
    what: &str,
    names: &[(String, T)],
    cpu: &CpuExec,
    gpu_read: &dyn Fn(T) -> Vec<f32>,
    tol: Tol,
) -> Vec<String> {
    names
        .iter()
        .filter_map(|(name, t)| {
            let c = compare(name, "gpu vs cpu", what, cpu.read(*t), &gpu_read(*t), tol);
            (!c.pass).then(|| format!("{name}: {:?}", c.detail))
        })
        .collect()
}

/// (a) One training step (forward, L1 on real rows, backward, Adam) of a
/// 2-member predictor graph: member 0 gets cells of 1..=5 blocks and one
/// padding row, member 1 three cells and five padding rows. GPU against
/// CPU for the loss, predictions, updated weights and Adam moments; the
/// loss against the predictions; and padding rows that cannot matter.
#[test]
fn training_step_matches_cpu() {
    let t0 = Instant::now();
    let op_set = OpSet::pnas();
    let cfg = PredictorConfig {
        ensemble: 2,
        batch: 8,
        lr: 1e-3,
        seed: 11,
        ..PredictorConfig::default()
    };
    let b = cfg.batch;
    let pg = PredictorGraph::training(&op_set, &cfg);
    let io = pg.train.clone().unwrap();
    let mut rng = verify::rng(5);
    let lens = [[1, 5, 2, 4, 3, 5, 1].as_slice(), &[3, 1, 5]];
    let mut batches = Vec::new();
    let mut accs = Vec::new();
    for lens in lens {
        let cells: Vec<Cell> = lens
            .iter()
            .map(|&n| random_cell(&mut rng, &op_set, n))
            .collect();
        let toks = cell_tokens(&cells, &op_set).unwrap();
        let refs: Vec<&Tokens> = toks.iter().collect();
        batches.push(HostBatch::new(&refs, b, space::BLOCKS));
        // Targets far from the initial predictions (about 0.5), so no
        // |p − t| sits at L1's kink.
        let acc: Vec<f32> = (0..cells.len())
            .map(|i| if i % 2 == 0 { 0.1 } else { 0.9 })
            .collect();
        accs.push(acc);
    }
    let batch_refs: Vec<&HostBatch> = batches.iter().collect();
    let acc_refs: Vec<&[f32]> = accs.iter().map(Vec::as_slice).collect();
    let feeds = pg.feed(&batch_refs, Some(&acc_refs));

    let mut cpu = CpuExec::new(&pg.g);
    for (t, v) in &feeds {
        cpu.write(*t, v);
    }
    cpu.step(&pg.g);
    let gpu = common::gpu();
    let plan = Plan::new(gpu, &pg.g).expect("plan");
    for (t, v) in &feeds {
        plan.write(gpu, *t, v);
    }
    plan.step(gpu).expect("gpu step");
    let read = |t: T| plan.read(gpu, t).unwrap();

    let outputs = vec![
        ("loss".to_string(), io.loss),
        ("predictions".to_string(), pg.pred),
    ];
    let params: Vec<(String, T)> = pg
        .params
        .iter()
        .map(|&p| (pg.g.def(p).name.clone(), p))
        .collect();
    assert_eq!(
        params.len(),
        7,
        "two embeddings, the LSTM's two weights and bias, the head's two"
    );
    let moments: Vec<(String, T)> =
        pg.g.tensors
            .iter()
            .enumerate()
            .filter(|(_, d)| d.name.ends_with(".adam_m") || d.name.ends_with(".adam_v"))
            .map(|(i, d)| (d.name.clone(), T(i)))
            .collect();
    assert_eq!(moments.len(), 2 * params.len());
    let tol = Tol {
        rel: 1e-3,
        abs: 1e-3,
    };
    let mut bad = check_all("forward", &outputs, &cpu, &read, FORWARD);
    bad.extend(check_all("updated weights", &params, &cpu, &read, tol));
    // m = 0.1·g and v = 0.001·g² after one step: the gradients, scaled.
    let grads = Tol {
        rel: 1e-3,
        abs: 1e-7,
    };
    bad.extend(check_all("adam moments", &moments, &cpu, &read, grads));
    assert!(bad.is_empty(), "GPU and CPU disagree:\n{}", bad.join("\n"));

    // The step moved every weight of both members, except the embedding
    // columns of tokens that no cell of the batch uses.
    for (name, p) in &params {
        let init = pg.g.def(*p).init.clone().unwrap();
        let half = init.len() / 2;
        for k in 0..2 {
            let moved = init[k * half..(k + 1) * half]
                .iter()
                .zip(&cpu.read(*p)[k * half..(k + 1) * half])
                .any(|(a, b)| a != b);
            assert!(moved, "member {k}'s part of {name} did not move");
        }
    }
    // The loss is the sum over members of the mean |p − t| over each
    // one's real rows.
    let p = cpu.read(pg.pred);
    let want: f32 = accs
        .iter()
        .enumerate()
        .map(|(k, acc)| {
            acc.iter()
                .enumerate()
                .map(|(r, &a)| (p[k * b + r] - a).abs())
                .sum::<f32>()
                / acc.len() as f32
        })
        .sum();
    let got = cpu.read(io.loss)[0];
    assert!(
        (got - want).abs() < 1e-5,
        "loss {got}, sum of the members' means over real rows {want}"
    );

    // Junk in the padding rows (tokens, masks, targets) changes nothing:
    // the same loss and weights after the step, bit for bit.
    let mut junk = batches.clone();
    for hb in junk.iter_mut() {
        for (t, step) in hb.tokens.iter_mut().enumerate() {
            for (n, tok) in step.iter_mut().enumerate().skip(hb.rows) {
                *tok = Some((t + n) % 6);
            }
        }
        for m in hb.masks.iter_mut() {
            m[hb.rows..].fill(1.0);
        }
    }
    let junk_refs: Vec<&HostBatch> = junk.iter().collect();
    let mut junk_cpu = CpuExec::new(&pg.g);
    for (t, mut v) in pg.feed(&junk_refs, Some(&acc_refs)) {
        if t == io.target {
            for (k, acc) in accs.iter().enumerate() {
                v[k * b + acc.len()..(k + 1) * b].fill(0.77);
            }
        }
        junk_cpu.write(t, &v);
    }
    junk_cpu.step(&pg.g);
    assert_eq!(junk_cpu.read(io.loss), cpu.read(io.loss), "loss");
    for (name, p) in &params {
        assert_eq!(
            junk_cpu.read(*p),
            cpu.read(*p),
            "{name}: padding rows changed the update"
        );
    }
    eprintln!(
        "training step vs cpu: {:.1} s, {} dispatches",
        t0.elapsed().as_secs_f64(),
        plan.dispatches()
    );
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One member's prediction of one cell by plain loops over its unpadded
/// tokens (PyTorch's LSTM recurrence from the zero state), from weights
/// read back by name.
fn reference_prediction(
    w: &HashMap<String, Vec<f32>>,
    toks: &Tokens,
    vocab: (usize, usize),
) -> f32 {
    let get = |n: &str| -> Vec<f64> { w[n].iter().map(|&v| v as f64).collect() };
    let (e_in, e_op) = (get("embed_inputs.weight"), get("embed_ops.weight"));
    let (w_ih, w_hh) = (get("lstm.weight_ih_l0"), get("lstm.weight_hh_l0"));
    let (b_ih, b_hh) = (get("lstm.bias_ih_l0"), get("lstm.bias_hh_l0"));
    let (head_w, head_b) = (get("head.weight"), get("head.bias"));
    let hid = head_w.len();
    let dim = e_in.len() / vocab.0;
    let (mut h, mut c) = (vec![0f64; hid], vec![0f64; hid]);
    for &(i1, i2, o1, o2) in toks {
        for (table, vsize, tok) in [
            (&e_in, vocab.0, i1),
            (&e_in, vocab.0, i2),
            (&e_op, vocab.1, o1),
            (&e_op, vocab.1, o2),
        ] {
            // Embedding weight is [dim, vocab]: token k is column k.
            let x: Vec<f64> = (0..dim).map(|d| table[d * vsize + tok]).collect();
            let gate = |row: usize| {
                let mut z = b_ih[row] + b_hh[row];
                z += (0..dim).map(|d| w_ih[row * dim + d] * x[d]).sum::<f64>();
                z += (0..hid).map(|j| w_hh[row * hid + j] * h[j]).sum::<f64>();
                z
            };
            let mut h_next = vec![0f64; hid];
            for j in 0..hid {
                let (i, f) = (sigmoid(gate(j)), sigmoid(gate(hid + j)));
                let (g, o) = (gate(2 * hid + j).tanh(), sigmoid(gate(3 * hid + j)));
                c[j] = f * c[j] + i * g;
                h_next[j] = o * c[j].tanh();
            }
            h = h_next;
        }
    }
    let z = head_b[0] + (0..hid).map(|j| head_w[j] * h[j]).sum::<f64>();
    sigmoid(z) as f32
}

/// (b) Masking and lengths: cells of 1..=5 blocks, some expansions of
/// others, scored by the predictor (each distinct prefix once, then every
/// last block from its prefix's state), each alone and all together, and by the
/// 5-block masked graph in mixed-length batches with padding rows, each
/// alone and all together: every way gives the same prediction, and it is
/// a plain-loop LSTM's over the cell's unpadded tokens.
#[test]
fn predictions_do_not_depend_on_batching() {
    let t0 = Instant::now();
    let gpu = common::gpu();
    let op_set = OpSet::pnas();
    let cfg = PredictorConfig {
        ensemble: 2,
        predict_batch: 8,
        seed: 3,
        ..PredictorConfig::default()
    };
    let p = Predictor::new(gpu, &op_set, cfg.clone()).unwrap();
    let mut rng = verify::rng(9);
    let mut cells: Vec<Cell> = [5, 1, 3, 2, 4, 1, 5, 2, 3, 4, 5]
        .iter()
        .map(|&b| random_cell(&mut rng, &op_set, b))
        .collect();
    // Expansions, as the progressive search scores them: two children
    // each of the 3-block and the 2-block cell (scored from their shared
    // prefix's state).
    for parent in [2, 2, 3, 3] {
        let mut child = random_cell(&mut rng, &op_set, cells[parent].blocks.len() + 1);
        let n = cells[parent].blocks.len();
        child.blocks[..n].clone_from_slice(&cells[parent].blocks);
        cells.push(child);
    }
    let lens: Vec<usize> = cells.iter().map(|c| c.blocks.len()).collect();
    let toks = cell_tokens(&cells, &op_set).unwrap();
    let together = p.member_predictions_of(gpu, &cells).unwrap();
    assert_eq!(together.len(), 2);

    // The masked graph over 5 block positions, built from the same seed
    // (the same initial weights as the untrained predictor's).
    let masked = PredictorGraph::scoring(&op_set, &cfg, space::BLOCKS);
    let plan = Plan::new(gpu, &masked.g).unwrap();
    let run = |idx: &[usize]| -> Vec<Vec<f32>> {
        let refs: Vec<&Tokens> = idx.iter().map(|&i| &toks[i]).collect();
        let hb = HostBatch::new(&refs, cfg.predict_batch, space::BLOCKS);
        for (t, v) in masked.feed(&[&hb], None) {
            plan.write(gpu, t, &v);
        }
        plan.step(gpu).unwrap();
        let all = plan.read(gpu, masked.pred).unwrap();
        let b = cfg.predict_batch;
        (0..2)
            .map(|m| all[m * b..m * b + idx.len()].to_vec())
            .collect()
    };
    // Two mixed batches: 8 cells, then 3 and 5 padding rows.
    let first: Vec<usize> = (0..8).collect();
    let second: Vec<usize> = (8..cells.len()).collect();
    let (m1, m2) = (run(&first), run(&second));

    let vocab = space::vocab_sizes(&op_set);
    let close = |a: f32, b: f32, tol: f32| (a - b).abs() <= tol;
    // Each cell alone: through its length's plan, and through the masked
    // graph with 7 padding rows.
    let alone: Vec<Vec<Vec<f32>>> = cells
        .iter()
        .map(|c| {
            p.member_predictions_of(gpu, std::slice::from_ref(c))
                .unwrap()
        })
        .collect();
    let masked_alone: Vec<Vec<Vec<f32>>> = (0..cells.len()).map(|i| run(&[i])).collect();
    for m in 0..2 {
        let w = p.member_weights(gpu, m).unwrap();
        for i in 0..cells.len() {
            let got = together[m][i];
            let what = format!("member {m} cell {i} ({} blocks)", lens[i]);
            let alone = &alone[i];
            assert!(
                close(alone[m][0], got, 1e-6),
                "{what}: alone {} vs batched {got}",
                alone[m][0]
            );
            let mixed = if i < 8 { m1[m][i] } else { m2[m][i - 8] };
            assert!(
                close(mixed, got, 1e-6),
                "{what}: masked mixed-length batch {mixed} vs its length's plan {got}"
            );
            let masked_alone = masked_alone[i][m][0];
            assert!(
                close(masked_alone, got, 1e-6),
                "{what}: masked alone {masked_alone} vs {got}"
            );
            let want = reference_prediction(&w, &toks[i], vocab);
            assert!(
                close(want, got, 1e-4),
                "{what}: gpu {got} vs plain-loop LSTM {want}"
            );
        }
    }
    // The members differ (their own initial weights), and predict() is
    // their mean and spread.
    let ms = p.predict(gpu, &cells).unwrap();
    for (i, &(mean, spread)) in ms.iter().enumerate() {
        let (a, b) = (together[0][i], together[1][i]);
        assert!(close(mean, (a + b) / 2.0, 1e-6));
        assert!(close(spread, (a - b).abs() / 2.0, 1e-6));
        assert!(spread > 0.0, "cell {i}: members agree exactly");
    }
    eprintln!("masking: {:.1} s", t0.elapsed().as_secs_f64());
}

/// (c) A synthetic target the ensemble must learn: trained on 300 random
/// cells of 1..=5 blocks, the default predictor (hidden 100, 5 members; 5
/// epochs at lr 0.02 to fit lavapipe's time) ranks 200 held-out cells with
/// Kendall τ ≥ 0.8. Neither the untrained predictor nor the cells' length
/// alone comes close.
#[test]
fn learns_a_synthetic_target() {
    let t0 = Instant::now();
    let gpu = common::gpu();
    let op_set = OpSet::pnas();
    let mut rng = verify::rng(2024);
    let cells = random_cells(&mut rng, &op_set, 500);
    let acc = synthetic_accuracy(&cells, &op_set);
    let (train, test) = cells.split_at(300);
    let (train_acc, test_acc) = acc.split_at(300);
    let cfg = PredictorConfig {
        epochs: 5,
        lr: 0.02,
        seed: 7,
        ..PredictorConfig::default()
    };
    let mut p = Predictor::new(gpu, &op_set, cfg).unwrap();
    let means =
        |p: &Predictor| -> Vec<f32> { p.predict(gpu, test).unwrap().iter().map(|m| m.0).collect() };
    let untrained = kendall_tau(&means(&p), test_acc);
    let lengths: Vec<f32> = test.iter().map(|c| c.blocks.len() as f32).collect();
    let by_length = kendall_tau(&lengths, test_acc);
    let report = p.fit(gpu, train, train_acc).unwrap();
    let t = Instant::now();
    let pred = p.predict(gpu, test).unwrap();
    let predict_s = t.elapsed().as_secs_f64();
    let mean: Vec<f32> = pred.iter().map(|m| m.0).collect();
    let tau = kendall_tau(&mean, test_acc);
    let rho = spearman_rho(&mean, test_acc);
    let spread = pred.iter().map(|m| m.1 as f64).sum::<f64>() / pred.len() as f64;
    eprintln!(
        "synthetic: held-out τ {tau:.3}, ρ {rho:.3}, mean spread {spread:.4} (untrained τ \
         {untrained:.3}, length alone τ {by_length:.3}); out-of-fold τ {:.3}, L1 {:.4}; \
         epoch losses {:?}; {} steps at {:.0} ms/step; {:.0} cells/s predicted; total {:.1} s",
        report.oof_tau.unwrap(),
        report.oof_l1.unwrap(),
        report.epoch_loss,
        report.steps,
        report.ms_per_step,
        test.len() as f64 / predict_s,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        untrained < 0.5 && by_length.abs() < 0.5,
        "the target is too easy to rank (untrained τ {untrained}, by length {by_length}): \
         the test could not fail"
    );
    assert!(
        tau >= 0.8,
        "held-out Kendall τ {tau} < 0.8 (untrained {untrained})"
    );
    let losses = &report.epoch_loss;
    assert!(losses[losses.len() - 1] < 0.5 * losses[0], "{losses:?}");
}

/// (d) The ensemble: members differ (spread > 0 for every cell), a fit is
/// a function of the data and the seed (refitting, or another predictor
/// with the same seed, gives the same predictions bit for bit; another
/// seed does not).
#[test]
fn ensemble_spread_and_determinism() {
    let t0 = Instant::now();
    let gpu = common::gpu();
    let op_set = OpSet::pnas();
    let mut rng = verify::rng(77);
    let cells = random_cells(&mut rng, &op_set, 40);
    let acc = synthetic_accuracy(&cells, &op_set);
    let probe = random_cells(&mut rng, &op_set, 40);
    let cfg = PredictorConfig {
        epochs: 2,
        batch: 16,
        predict_batch: 64,
        seed: 5,
        ..PredictorConfig::default()
    };
    let run = |p: &mut Predictor| {
        let r = p.fit(gpu, &cells, &acc).unwrap();
        assert_eq!(
            r.steps,
            2 * 2,
            "32 training cells per member in batches of 16"
        );
        p.predict(gpu, &probe).unwrap()
    };
    let mut a = Predictor::new(gpu, &op_set, cfg.clone()).unwrap();
    let first = run(&mut a);
    assert_eq!(first.len(), probe.len());
    for (i, &(mean, spread)) in first.iter().enumerate() {
        assert!(mean > 0.0 && mean < 1.0, "cell {i}: mean {mean}");
        assert!(spread > 0.0, "cell {i}: the 5 members agree exactly");
    }
    assert_eq!(
        run(&mut a),
        first,
        "refitting from scratch changed the predictions"
    );
    let mut b = Predictor::new(gpu, &op_set, cfg.clone()).unwrap();
    assert_eq!(run(&mut b), first, "same seed, different predictions");
    let mut c = Predictor::new(
        gpu,
        &op_set,
        PredictorConfig {
            seed: 6,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_ne!(run(&mut c), first, "another seed gave the same predictions");
    eprintln!("ensemble: {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn fit_rejects_bad_measurements() {
    let gpu = common::gpu();
    let op_set = OpSet::pnas();
    let cfg = PredictorConfig {
        ensemble: 2,
        batch: 4,
        predict_batch: 4,
        epochs: 1,
        ..PredictorConfig::default()
    };
    let mut p = Predictor::new(gpu, &op_set, cfg).unwrap();
    let cells = random_cells(&mut verify::rng(1), &op_set, 3);
    let err = p.fit(gpu, &cells, &[0.5, 0.5]).unwrap_err().to_string();
    assert!(err.contains("3 cells but 2 accuracies"), "{err}");
    let err = p
        .fit(gpu, &cells, &[0.5, 1.5, 0.5])
        .unwrap_err()
        .to_string();
    assert!(err.contains("accuracy 1 is 1.5"), "{err}");
    let empty = Cell { blocks: Vec::new() };
    let err = p.predict(gpu, &[empty]).unwrap_err().to_string();
    assert!(
        err.contains("cell 0") && err.contains("empty cell"),
        "{err}"
    );
    let err = p.fit(gpu, &cells[..1], &[0.5]).unwrap_err().to_string();
    assert!(err.contains("too few"), "{err}");
}
