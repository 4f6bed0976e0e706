//! S4, discretization fine-tuning (METHOD.md): from the supernet to the
//! discrete network of the candidate cell without a cold start.
//!
//! 1. **Inherit.** The candidate's network (one cell for both kinds, as S2
//!    searches, at the round's width and depth) takes the supernet's
//!    weights by name (the path-trained ones when S2 trained them); batch
//!    norm becomes affine, γ = 1, β = 0.
//! 2. **Anneal.** Each kept edge (block j reads input i) first computes
//!    the mixture Σ_o p_o · o(x_i) over every candidate o of that edge,
//!    with p = softmax(ℓ / T): ℓ is S1's α row of the edge for that cell
//!    kind, with the kept op lifted `margin` above the row's maximum so the
//!    mixture ends on the candidate's op even where S2 chose another op
//!    than α's argmax (uniform logits without S1's α). T falls
//!    geometrically from `t_start` to `t_end` over `anneal_steps` SGD steps
//!    of the weights, so the network slides from the soft mixture it was
//!    trained in toward the hard choice. Two slots of a block reading the
//!    same input share that edge's candidates (their p add up, as the
//!    supernet's mask reading: two identical slots are weight 2).
//! 3. **Hard switch.** The annealed weights go into the discrete network
//!    (the argmax op of each slot; the second copy of an identical slot
//!    `{op}_2` gets the same values), which is then fine-tuned
//!    (`train::train_from`) and written as a model directory
//!    (`model.safetensors`, `model.json`, `metrics.jsonl`).
//!
//! Accuracy before: the one-shot accuracy of the candidate on the
//! supernet's weights (BN statistics recomputed); after: the fine-tuned
//! network's validation and test accuracy.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::{Splits, Stream};
use crate::engine::Gpu;
use crate::graph::{self, Graph, Op, Optimizer, Plan, T};
use crate::models::GenotypeModel;
use crate::nn::cellnet::{self, Skeleton};
use crate::nn::ParamStore;
use crate::ops::optim::SgdHyper;
use crate::predict::measure::{supernet_name, MeasureConfig, OneShotDiscrete, SupernetWeights};
use crate::progress::Event;
use crate::space::{softmax, Cell, CellWeights, Genotype, OpSet};
use crate::train::{self, cosine, TrainConfig, TrainReport};
use crate::verify;

/// How the candidate is discretized.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscretizeConfig {
    /// Weight steps while the temperature anneals (0: switch at once).
    pub anneal_steps: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub t_start: f32,
    pub t_end: f32,
    /// How far the kept op's logit is lifted above its edge's maximum.
    pub margin: f32,
    /// The fine-tune after the hard switch.
    pub fine_tune: TrainConfig,
    pub seed: u64,
}

impl Default for DiscretizeConfig {
    fn default() -> Self {
        DiscretizeConfig {
            anneal_steps: 200,
            batch: 64,
            lr: 0.025,
            momentum: 0.9,
            weight_decay: 3e-4,
            t_start: 1.0,
            t_end: 0.02,
            margin: 1.0,
            fine_tune: TrainConfig {
                epochs: 10,
                lr: 0.025,
                ..TrainConfig::default()
            },
            seed: 5,
        }
    }
}

impl DiscretizeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.batch < 2 {
            return Err(format!("batch {}: need at least 2 images", self.batch));
        }
        if !(self.t_start > 0.0 && self.t_end > 0.0 && self.t_end <= self.t_start) {
            return Err(format!(
                "t_start {} / t_end {}: need 0 < t_end ≤ t_start",
                self.t_start, self.t_end
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("lr {}: need a positive learning rate", self.lr));
        }
        if self.margin < 0.0 {
            return Err(format!("margin {}: need ≥ 0", self.margin));
        }
        if self.fine_tune.epochs == 0 {
            return Err("fine_tune.epochs 0: fine-tune at least one epoch".into());
        }
        Ok(())
    }

    /// The temperature after `step` of the anneal (geometric).
    pub fn temperature(&self, step: usize) -> f32 {
        let n = self.anneal_steps.max(1) as f32;
        let f = (step as f32 / n).min(1.0);
        self.t_start * (self.t_end / self.t_start).powf(f)
    }
}

/// What discretization did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscretizeReport {
    /// One-shot validation accuracy of the candidate on the supernet's
    /// weights (before).
    pub one_shot_val_accuracy: f32,
    /// Mean training loss over the first and last tenth of the anneal.
    pub anneal_loss_first: f32,
    pub anneal_loss_last: f32,
    pub anneal_seconds: f64,
    /// The discrete network after fine-tuning (after).
    pub fine_tune: TrainReport,
    pub model: GenotypeModel,
}

/// The mixing weights of one slot set: per distinct input of a block (in
/// slot order), the summed softmax(ℓ/T) rows of the slots reading it.
fn block_rows(
    op_set: &OpSet,
    alpha: Option<&[Vec<f32>]>,
    cell: &Cell,
    j: usize,
    t: f32,
    margin: f32,
) -> Vec<(usize, Vec<f32>)> {
    let ops: Vec<_> = op_set.choosable().collect();
    let mut rows: Vec<(usize, Vec<f32>)> = Vec::new();
    let block = &cell.blocks[j];
    for s in 0..2 {
        let (i, op) = (block.inputs[s], block.ops[s]);
        let row = alpha.map(|a| &a[crate::space::edge_index(j, i)]);
        let mut logits: Vec<f32> = ops
            .iter()
            .map(|o| {
                row.map_or(0.0, |r| {
                    r[op_set.index_of(*o).expect("choosable ops are in the set")]
                })
            })
            .collect();
        let kept = ops.iter().position(|o| *o == op).expect("validated cell");
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        logits[kept] = max + margin;
        let scaled: Vec<f32> = logits.iter().map(|l| l / t).collect();
        let p = softmax(&scaled);
        match rows.iter_mut().find(|(inp, _)| *inp == i) {
            Some((_, r)) => r.iter_mut().zip(&p).for_each(|(a, b)| *a += b),
            None => rows.push((i, p)),
        }
    }
    rows
}

/// The annealed network's graph: per cell and block, the mixture over
/// every candidate of each kept edge, weighted by a plan input per (cell
/// kind, block).
struct Annealed {
    g: Graph,
    images: T,
    labels: T,
    #[allow(dead_code)] // read by the hard-switch test
    logits: T,
    loss_sum: T,
    updates: graph::Updates,
    /// (reduction, block) → the weights input.
    mix: HashMap<(bool, usize), T>,
    /// Trained tensors and running statistics by name.
    tensors: Vec<T>,
}

fn annealed_graph(
    sk: &Skeleton,
    op_set: &OpSet,
    cell: &Cell,
    cfg: &DiscretizeConfig,
    dims: crate::data::Dims,
) -> Annealed {
    let mut g = Graph::new();
    let b = cfg.batch;
    let images = g.input("images", &[b, dims.channels, dims.height, dims.width]);
    let labels = g.input("labels", &[b]);
    let mut st = ParamStore::new(cfg.seed);
    let ops: Vec<_> = op_set.choosable().collect();
    let mut mix: HashMap<(bool, usize), T> = HashMap::new();
    let used = [0, 1].map(|i| cell.blocks.iter().any(|b| b.inputs.contains(&i)));
    let logits = cellnet::network_using(
        &mut g,
        &mut st,
        sk,
        images,
        |_| used,
        |g, st, io| {
            let c = io.channels;
            let mut states = io.inputs.to_vec();
            for (j, block) in cell.blocks.iter().enumerate() {
                let mut inputs: Vec<usize> = vec![block.inputs[0]];
                if block.inputs[1] != block.inputs[0] {
                    inputs.push(block.inputs[1]);
                }
                let mut cands = Vec::with_capacity(inputs.len() * ops.len());
                for &i in &inputs {
                    let stride = if io.reduction && i < 2 { 2 } else { 1 };
                    let x = states[i];
                    for &op in &ops {
                        cands.push(st.scoped(&format!("b{j}_in{i}"), |st| {
                            st.scoped(op.name(), |st| {
                                cellnet::candidate_op(g, st, op, x, c, stride, true)
                            })
                        }));
                    }
                }
                let w = *mix.entry((io.reduction, j)).or_insert_with(|| {
                    let kind = if io.reduction { "reduce" } else { "normal" };
                    g.input(&format!("mix.{kind}.b{j}"), &[cands.len()])
                });
                states.push(g.weighted_sum(&cands, w));
            }
            g.concat(&states[2..])
        },
    );
    g.pin(logits);
    let loss = g.log_softmax_xent(logits, labels);
    let loss_sum = g.state("loss_sum", &[1], None);
    g.accumulate_into(loss, loss_sum);
    let grads = graph::backward(&mut g, loss);
    let hyper = SgdHyper {
        lr: cfg.lr,
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
    };
    let updates =
        graph::append_updates(&mut g, &st.params, &grads, Optimizer::Sgd(hyper), Some(5.0));
    let tensors = st.params.iter().chain(&st.states).copied().collect();
    Annealed {
        g,
        images,
        labels,
        logits,
        loss_sum,
        updates,
        mix,
        tensors,
    }
}

/// Discretize `candidate` from `weights` (S1's α from `s1` when given) and
/// fine-tune it on `splits`, writing the model directory `out`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    gpu: &Gpu,
    weights: &SupernetWeights,
    s1: Option<&Genotype>,
    candidate: &Cell,
    splits: &Splits,
    cfg: &DiscretizeConfig,
    out: &Path,
    mut progress: impl FnMut(&Event),
) -> Result<DiscretizeReport> {
    cfg.validate().map_err(|e| anyhow!("discretize: {e}"))?;
    let sc = &weights.config;
    let op_set = &sc.op_set;
    candidate
        .validate(op_set)
        .map_err(|e| anyhow!("discretize: candidate: {e}"))?;
    let alpha: Option<&CellWeights> = s1.and_then(|g| g.alpha.as_ref());
    let genotype = crate::pipeline::single_cell(op_set, candidate);
    let model = GenotypeModel {
        width: sc.width,
        depth: sc.depth,
        stem_multiplier: sc.stem_multiplier,
        ..GenotypeModel::new(genotype)
    };

    // Before: the one-shot accuracy on the whole validation split.
    let mc = MeasureConfig {
        n_val: splits.val.len(),
        ..MeasureConfig::default()
    };
    let one_shot =
        OneShotDiscrete::new(weights.clone(), splits, &mc)?.measure(gpu, candidate, candidate)?;
    progress(&Event::log(format!(
        "s4 discretize: one-shot validation accuracy {:.2}%",
        100.0 * one_shot
    )));

    // Anneal.
    let start = Instant::now();
    let sk = Skeleton {
        affine: true,
        ..sc.skeleton()
    };
    let mut an = annealed_graph(&sk, op_set, candidate, cfg, sc.dims);
    let plan = Plan::new(gpu, &an.g).context("recording the annealed network")?;
    for &t in &an.tensors {
        let d = an.g.def(t);
        if weights.tensors.contains_key(&d.name) {
            plan.write(gpu, t, &weights.value(&d.name, &d.shape)?);
        }
    }
    let write_mix = |step: usize| {
        let t = cfg.temperature(step);
        for (&(reduction, j), &input) in &an.mix {
            let a = alpha.map(|a| {
                if reduction {
                    &a.reduce[..]
                } else {
                    &a.normal[..]
                }
            });
            let rows = block_rows(op_set, a, candidate, j, t, cfg.margin);
            let v: Vec<f32> = rows.into_iter().flat_map(|(_, r)| r).collect();
            plan.write(gpu, input, &v);
        }
    };
    let train_split = &splits.train;
    let b = cfg.batch;
    let mut rng = verify::rng(cfg.seed);
    let augment = splits.kind.augment();
    let mut pixels = vec![0f32; b * sc.dims.len()];
    let mut labels = vec![0u32; b];
    let mut stream = Stream::new(train_split, cfg.seed);
    let tenth = cfg.anneal_steps.div_ceil(10).max(1);
    let (mut first, mut last) = (f32::NAN, f32::NAN);
    let mut window_start = 0;
    for step in 0..cfg.anneal_steps {
        if crate::progress::interrupted() {
            return Err(crate::progress::stopped("the discretization anneal"));
        }
        let idx = stream.next(train_split, b);
        train_split.fill_batch(
            &idx,
            &splits.norm,
            Some(&augment),
            &mut rng,
            &mut pixels,
            &mut labels,
        );
        write_mix(step);
        let lr = cosine(cfg.lr, cfg.fine_tune.lr, step, cfg.anneal_steps);
        for &n in &an.updates.nodes {
            if let Op::Sgd(h) = &mut an.g.nodes[n].op {
                h.lr = lr;
            }
        }
        plan.sync_hyperparameters(gpu, &an.g);
        plan.write(gpu, an.images, &pixels);
        plan.write_u32(gpu, an.labels, &labels);
        plan.step(gpu)?;
        if (step + 1) % tenth == 0 || step + 1 == cfg.anneal_steps {
            let n = step + 1 - window_start;
            let l = plan.read(gpu, an.loss_sum)?[0] / n as f32;
            ensure!(
                l.is_finite(),
                "discretize: the anneal's loss became {l} at step {step}"
            );
            plan.write(gpu, an.loss_sum, &[0.0]);
            if window_start == 0 {
                first = l;
            }
            last = l;
            window_start = step + 1;
            progress(&Event::tick(
                "s4 anneal",
                step as u64 + 1,
                cfg.anneal_steps as u64,
                &[
                    ("temperature", cfg.temperature(step) as f64),
                    ("loss", l as f64),
                ],
            ));
        }
    }
    let anneal_seconds = start.elapsed().as_secs_f64();

    // Hard switch: the annealed values by name, for the discrete network.
    let mut annealed: HashMap<String, Vec<f32>> = HashMap::new();
    for &t in &an.tensors {
        annealed.insert(an.g.def(t).name.clone(), plan.read(gpu, t)?);
    }
    let tg = train::train_graph(model.clone(), sc.dims, sc.classes, &cfg.fine_tune);
    let mut init = HashMap::new();
    for name in tg.trained.keys() {
        if let Some(v) = annealed
            .get(name)
            .or_else(|| annealed.get(&supernet_name(name)))
        {
            init.insert(name.clone(), v.clone());
        }
    }
    drop(plan);
    let fine_tune = train::train_from(
        gpu,
        model.clone(),
        splits,
        &cfg.fine_tune,
        Some(&init),
        out,
        |m| progress(&m.event("s4 discretized fine-tune")),
    )?;
    Ok(DiscretizeReport {
        one_shot_val_accuracy: one_shot,
        anneal_loss_first: first,
        anneal_loss_last: last,
        anneal_seconds,
        fine_tune,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Block, OpKind};

    /// The kept op leads its edge at every temperature and takes
    /// everything at the end; two slots on one input add up.
    #[test]
    fn mixing_rows_end_on_the_kept_ops() {
        let op_set = OpSet::pnas();
        let cell = Cell {
            blocks: vec![Block::new(0, OpKind::SepConv3x3, 0, OpKind::MaxPool3x3)],
        };
        let k = op_set.len();
        let mut alpha: Vec<Vec<f32>> = (0..20).map(|_| vec![0.0; k]).collect();
        alpha[0][op_set.index_of(OpKind::Identity).unwrap()] = 3.0;
        let n = op_set.choosable().count();
        for t in [1.0, 0.3, 0.02] {
            let rows = block_rows(&op_set, Some(&alpha), &cell, 0, t, 1.0);
            assert_eq!(rows.len(), 1, "one distinct input");
            let (i, r) = &rows[0];
            assert_eq!((*i, r.len()), (0, n));
            assert!(
                (r.iter().sum::<f32>() - 2.0).abs() < 1e-5,
                "two slots: {r:?}"
            );
        }
        let rows = block_rows(&op_set, Some(&alpha), &cell, 0, 0.02, 1.0);
        let ops: Vec<_> = op_set.choosable().collect();
        for (o, p) in ops.iter().zip(&rows[0].1) {
            let want = if *o == OpKind::SepConv3x3 || *o == OpKind::MaxPool3x3 {
                1.0
            } else {
                0.0
            };
            assert!((p - want).abs() < 1e-3, "{o:?}: {p}");
        }
        let cfg = DiscretizeConfig::default();
        assert!((cfg.temperature(0) - cfg.t_start).abs() < 1e-6);
        assert!((cfg.temperature(cfg.anneal_steps) - cfg.t_end).abs() < 1e-6);
    }

    /// The hard switch changes nothing at the end of the anneal: with
    /// one-hot mixing weights the annealed network computes the discrete
    /// network's logits (same values by name, `{op}_2` from `{op}`), for a
    /// cell with an identical slot pair, pools, identity at stride 2 and
    /// a block reading one input through two ops, through reductions.
    #[test]
    fn the_annealed_network_ends_as_the_discrete_network() {
        use crate::data::Dims;
        use crate::graph::CpuExec;
        use crate::models::{self, ModelSpec};
        use crate::verify::{compare, Tol};
        use OpKind::*;
        let op_set = OpSet::pnas();
        let cell = Cell {
            blocks: vec![
                Block::new(0, Identity, 1, SepConv3x3),
                Block::new(2, SepConv3x3, 2, SepConv3x3),
                Block::new(1, MaxPool3x3, 1, DilConv3x3),
                Block::new(3, AvgPool3x3, 0, Conv7x1_1x7),
            ],
        };
        let dims = Dims::new(1, 8, 8);
        let sk = Skeleton {
            width: 2,
            depth: 3,
            stem_multiplier: 2,
            classes: 10,
            affine: true,
        };
        let cfg = DiscretizeConfig {
            batch: 3,
            ..DiscretizeConfig::default()
        };
        let an = annealed_graph(&sk, &op_set, &cell, &cfg, dims);
        let mut exec = CpuExec::new(&an.g);
        let mut rng = verify::rng(3);
        let mut values = HashMap::new();
        for &t in &an.tensors {
            let d = an.g.def(t);
            let v = if d.name.contains("running_var") {
                vec![1.0; d.shape.iter().product()]
            } else {
                verify::randn(&mut rng, d.shape.iter().product())
            };
            exec.write(t, &v);
            values.insert(d.name.clone(), v);
        }
        let images = verify::randn(&mut rng, 3 * 64);
        exec.write(an.images, &images);
        exec.write_u32(an.labels, &[1, 2, 3]);
        for (&(reduction, j), &input) in &an.mix {
            assert!(j < cell.blocks.len());
            let rows = block_rows(&op_set, None, &cell, j, 1e-4, 50.0);
            let v: Vec<f32> = rows.into_iter().flat_map(|(_, r)| r).collect();
            let _ = reduction;
            exec.write(input, &v);
        }
        exec.step(&an.g);
        let annealed = exec.read(an.logits).to_vec();

        let model = GenotypeModel {
            width: 2,
            depth: 3,
            stem_multiplier: 2,
            ..GenotypeModel::new(crate::pipeline::single_cell(&op_set, &cell))
        };
        let mut g = Graph::new();
        let x = g.input("images", &[3, 1, 8, 8]);
        let net = models::build(&ModelSpec::Genotype(model), &mut g, x, 10, true, 1);
        g.pin(net.logits);
        let mut exec = CpuExec::new(&g);
        for &t in net.params.iter().chain(&net.running) {
            let name = &g.def(t).name;
            let v = values
                .get(name)
                .or_else(|| values.get(&supernet_name(name)))
                .unwrap_or_else(|| panic!("{name}: no annealed counterpart"));
            exec.write(t, v);
        }
        exec.write(x, &images);
        exec.step(&g);
        let discrete = exec.read(net.logits).to_vec();
        let c = compare(
            "hard switch",
            "forward",
            "",
            &discrete,
            &annealed,
            Tol {
                rel: 1e-4,
                abs: 1e-4,
            },
        );
        assert!(c.pass, "{:?}", c.detail);
    }
}
