//! Path training: the shared weights made ready for one-shot measurement.
//!
//! S2 ranks cells by the validation accuracy of the sub-network each takes
//! from the supernet's weights. S1 trains those weights inside the mixture
//! (every candidate of every edge, weighted by softmax(α) and β), where no
//! op ever had to work alone, and on lavapipe's budget for only a few
//! dozen steps; measured as single paths they sit near chance and their
//! ranking is noise (BENCHMARKS.md, first S1–S3 run). One-shot NAS fixes
//! this by training the shared weights on sampled single paths (Bender et
//! al. 2018; Guo et al. 2019, "single path one-shot"): here, before S2,
//! `paths` times a cell is drawn uniformly (block count 1..=5, then inputs
//! and ops, as `space::random_cell`), its discrete network is built with
//! the supernet's names (the same sub-network [`super::measure`]
//! measures: one cell for both kinds, as S2 searches), it inherits the
//! current shared weights and SGD momentum, trains `steps_per_path` steps
//! on the training split, and the trained values go back into the shared
//! tensors (a shorter cell trains the leading input channels of the 1×1
//! preprocessing and the classifier, the ones it reads). Uniform sampling
//! keeps the measurement fair to every cell, including the ones S1 did
//! not favour. Each path costs the discrete network (about 1/14 of the
//! supernet's arithmetic) and one plan build (≈0.05 s).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::measure::{discrete_cell, inherit, measure_op_set, MeasureConfig, SupernetWeights};
use rand::Rng;

use crate::data::{Splits, Stream};
use crate::engine::Gpu;
use crate::graph::{self, Graph, Op, Optimizer, Plan, T};
use crate::nn::{cellnet, ParamStore};
use crate::ops::optim::SgdHyper;
use crate::progress::Event;
use crate::space::genotype::random_cell;
use crate::space::{Cell, BLOCKS};
use crate::train::{cosine, write_atomic};
use crate::verify;

/// The file of a round directory holding the path-trained weights.
pub const WEIGHTS_FILE: &str = "supernet_paths.safetensors";

/// How the shared weights are trained on single paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathConfig {
    /// Sampled paths (0: measure S1's weights as they are).
    pub paths: usize,
    /// SGD steps on each path.
    pub steps_per_path: usize,
    pub batch: usize,
    /// Learning rate, cosine-annealed to `lr_min` over all steps.
    pub lr: f32,
    pub lr_min: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// Gradient clipping by global norm (DARTS: 5).
    pub clip: Option<f32>,
    /// Seed of the sampled cells and of the batches.
    pub seed: u64,
    /// Random crops and flips of the training images. A small network
    /// trained for a few hundred steps underfits, and augmentation slows
    /// it further (the quick preset turns it off, as S4 does).
    #[serde(default = "super::yes")]
    pub augment: bool,
}

impl Default for PathConfig {
    /// 500 paths × 4 steps of 64 images: about 14 epochs of the bundled
    /// training split, a few minutes on a GPU.
    fn default() -> Self {
        PathConfig {
            paths: 500,
            steps_per_path: 4,
            batch: 64,
            lr: 0.05,
            lr_min: 0.001,
            momentum: 0.9,
            weight_decay: 3e-4,
            clip: Some(5.0),
            seed: 7,
            augment: true,
        }
    }
}

impl PathConfig {
    /// Refuse impossible values, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.paths > 0 && self.steps_per_path == 0 {
            return Err("steps_per_path 0: a sampled path needs at least one step".into());
        }
        if self.batch < 2 {
            return Err(format!(
                "batch {}: batch statistics need at least 2 images",
                self.batch
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr_min >= 0.0 && self.lr_min <= self.lr) {
            return Err(format!(
                "lr {} / lr_min {}: need 0 ≤ lr_min ≤ lr, lr > 0",
                self.lr, self.lr_min
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("momentum {}: need 0 ≤ momentum < 1", self.momentum));
        }
        Ok(())
    }
}

/// What path training did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PathReport {
    pub paths: usize,
    pub steps: usize,
    /// Mean training loss and accuracy over the first and the last tenth
    /// of the paths (the batches each path trained on, in train mode).
    pub loss_first: f32,
    pub loss_last: f32,
    pub accuracy_first: f32,
    pub accuracy_last: f32,
    pub seconds: f64,
    /// Of which building graphs and plans and moving weights.
    pub build_seconds: f64,
}

/// One path's training step: the graph and its tensors.
struct PathGraph {
    g: Graph,
    images: T,
    labels: T,
    loss_sum: T,
    correct: T,
    updates: graph::Updates,
    /// (parameter, its momentum) by creation.
    params: Vec<(T, T)>,
}

fn path_graph(weights: &SupernetWeights, cell: &Cell, cfg: &PathConfig) -> PathGraph {
    let sc = &weights.config;
    let d = sc.dims;
    let mut g = Graph::new();
    let images = g.input("images", &[cfg.batch, d.channels, d.height, d.width]);
    let labels = g.input("labels", &[cfg.batch]);
    let mut st = ParamStore::new(cfg.seed);
    let logits = cellnet::network(&mut g, &mut st, &sc.skeleton(), images, |g, st, io| {
        discrete_cell(g, st, io, cell)
    });
    let loss = g.log_softmax_xent(logits, labels);
    let loss_sum = g.state("loss_sum", &[1], None);
    g.accumulate_into(loss, loss_sum);
    let correct = g.state("correct", &[1], None);
    g.count_correct_into(logits, labels, correct);
    let grads = graph::backward(&mut g, loss);
    let hyper = SgdHyper {
        lr: cfg.lr,
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
    };
    // A cell that never reads one of its inputs leaves that input's
    // preprocessing without a gradient: it is not part of this path.
    let params: Vec<T> = st
        .params
        .iter()
        .copied()
        .filter(|p| grads.contains_key(p))
        .collect();
    let updates = graph::append_updates(&mut g, &params, &grads, Optimizer::Sgd(hyper), cfg.clip);
    let params = params
        .iter()
        .zip(&updates.states)
        .map(|(&p, s)| (p, s[0]))
        .collect();
    PathGraph {
        g,
        images,
        labels,
        loss_sum,
        correct,
        updates,
        params,
    }
}

/// Write `sub` (shaped `want`) back over the part of `full` (shaped
/// `have`) that [`super::measure::inherit`] gives a network of shape
/// `want`: the leading `want[1]` entries of dimension 1.
fn scatter_back(full: &mut [f32], have: &[usize], want: &[usize], sub: &[f32]) {
    let n: usize = have.iter().product();
    let (row_have, row_want) = (n / have[0], want[1..].iter().product::<usize>());
    if want == have {
        full.copy_from_slice(sub);
        return;
    }
    for (row, part) in full.chunks_mut(row_have).zip(sub.chunks(row_want)) {
        row[..row_want].copy_from_slice(part);
    }
}

/// Trains one path at a time on the shared weights: the batch stream,
/// the cosine schedule over all planned steps and every tensor's SGD
/// momentum carry over from path to path, so training a cell for 2 + 2
/// steps is training it for 4.
pub struct PathTrainer<'a> {
    gpu: &'a Gpu,
    splits: &'a Splits,
    cfg: PathConfig,
    total: usize,
    /// Steps taken so far (the schedule's position).
    pub steps: usize,
    rng: verify::Rng,
    stream: Stream,
    momentum: HashMap<String, Vec<f32>>,
    pixels: Vec<f32>,
    labels: Vec<u32>,
    /// Seconds spent building graphs and plans and moving weights.
    pub build_seconds: f64,
    /// Read the SGD momentum back after each path, for the next path that
    /// shares its tensors (not needed by a one-off fine-tune).
    pub keep_momentum: bool,
}

impl<'a> PathTrainer<'a> {
    /// A trainer for `weights`' supernet whose cosine schedule spans
    /// `total_steps`.
    pub fn new(
        gpu: &'a Gpu,
        weights: &SupernetWeights,
        splits: &'a Splits,
        cfg: &PathConfig,
        total_steps: usize,
    ) -> Result<PathTrainer<'a>> {
        cfg.validate().map_err(|e| anyhow!("paths: {e}"))?;
        let sc = &weights.config;
        sc.validate().map_err(|e| anyhow!("supernet: {e}"))?;
        ensure!(
            sc.partial_channels == 1,
            "{}: partial_channels {}: a partial-channel supernet has no full-width single \
             paths to train (set paths to 0)",
            weights.origin,
            sc.partial_channels
        );
        splits.train.check_dims(sc.dims)?;
        ensure!(
            !splits.train.is_empty(),
            "paths: the training split is empty"
        );
        let b = cfg.batch;
        Ok(PathTrainer {
            gpu,
            splits,
            cfg: cfg.clone(),
            total: total_steps.max(1),
            steps: 0,
            rng: verify::rng(cfg.seed ^ 0xba7c),
            stream: Stream::new(&splits.train, cfg.seed),
            momentum: HashMap::new(),
            pixels: vec![0.0; b * sc.dims.len()],
            labels: vec![0; b],
            build_seconds: 0.0,
            keep_momentum: true,
        })
    }

    /// The next batch of the shuffled training stream (a new shuffle per
    /// pass), augmented if so configured.
    fn next_batch(&mut self) {
        let train = &self.splits.train;
        let idx = self.stream.next(train, self.cfg.batch);
        let augment = self.cfg.augment.then(|| self.splits.kind.augment());
        train.fill_batch(
            &idx,
            &self.splits.norm,
            augment.as_ref(),
            &mut self.rng,
            &mut self.pixels,
            &mut self.labels,
        );
    }

    /// Train `cell` (both cell kinds) for `steps` steps on `weights`, in
    /// place; returns the mean training loss and accuracy of those steps.
    pub fn train_path(
        &mut self,
        weights: &mut SupernetWeights,
        cell: &Cell,
        steps: usize,
    ) -> Result<(f32, f32)> {
        let gpu = self.gpu;
        let t0 = Instant::now();
        let mut pg = path_graph(weights, cell, &self.cfg);
        let plan = Plan::new(gpu, &pg.g)?;
        for &(p, m) in &pg.params {
            let d = pg.g.def(p);
            plan.write(gpu, p, &weights.value(&d.name, &d.shape)?);
            if let Some(mom) = self.momentum.get(&d.name) {
                let have = &weights.tensors[&d.name].0;
                plan.write(gpu, m, &inherit(&d.name, &d.shape, have, mom)?);
            }
        }
        self.build_seconds += t0.elapsed().as_secs_f64();
        for _ in 0..steps {
            self.next_batch();
            let lr = cosine(self.cfg.lr, self.cfg.lr_min, self.steps, self.total);
            for &n in &pg.updates.nodes {
                if let Op::Sgd(h) = &mut pg.g.nodes[n].op {
                    h.lr = lr;
                }
            }
            plan.sync_hyperparameters(gpu, &pg.g);
            plan.write(gpu, pg.images, &self.pixels);
            plan.write_u32(gpu, pg.labels, &self.labels);
            plan.step(gpu)?;
            self.steps += 1;
        }
        let t1 = Instant::now();
        let steps = steps.max(1) as f32;
        let loss = plan.read(gpu, pg.loss_sum)?[0] / steps;
        ensure!(
            loss.is_finite(),
            "path training: the loss became {loss} on cell {cell:?}; lower the lr"
        );
        let acc = plan.read(gpu, pg.correct)?[0] / (steps * self.cfg.batch as f32);
        // Every parameter (and momentum) in one read: one wait, not one
        // per tensor.
        let mut wanted: Vec<T> = pg.params.iter().map(|&(p, _)| p).collect();
        if self.keep_momentum {
            wanted.extend(pg.params.iter().map(|&(_, m)| m));
        }
        let values = plan.read_many(gpu, &wanted)?;
        let (trained, moms) = values.split_at(pg.params.len());
        for (i, &(p, _)) in pg.params.iter().enumerate() {
            let d = pg.g.def(p);
            let (have, full) = weights
                .tensors
                .get_mut(&d.name)
                .expect("inherited above, so present");
            scatter_back(full, have, &d.shape, &trained[i]);
            if let Some(mom) = moms.get(i) {
                let n = have.iter().product();
                let m = self
                    .momentum
                    .entry(d.name.clone())
                    .or_insert_with(|| vec![0.0; n]);
                scatter_back(m, have, &d.shape, mom);
            }
        }
        self.build_seconds += t1.elapsed().as_secs_f64();
        Ok((loss, acc))
    }
}

/// The first half of a few-shot measurement (`MeasureConfig::
/// fine_tune_steps`): a copy of `base` in which `cell`'s sub-network
/// trained that many steps, on the same batches whatever the cell, at an lr
/// annealed to 0, without augmentation.
pub fn fine_tune(
    gpu: &Gpu,
    base: &SupernetWeights,
    splits: &Splits,
    cell: &Cell,
    mc: &MeasureConfig,
) -> Result<SupernetWeights> {
    let cfg = PathConfig {
        paths: 1,
        steps_per_path: mc.fine_tune_steps,
        batch: mc.fine_tune_batch,
        lr: mc.fine_tune_lr,
        lr_min: 0.0,
        seed: mc.seed,
        augment: false,
        ..PathConfig::default()
    };
    let mut tuned = base.clone();
    let mut trainer = PathTrainer::new(gpu, base, splits, &cfg, cfg.steps_per_path)?;
    trainer.keep_momentum = false;
    trainer.train_path(&mut tuned, cell, cfg.steps_per_path)?;
    Ok(tuned)
}

/// Train `weights` on `paths` sampled single paths (module comment),
/// in place; `progress` gets a tick every tenth of the paths.
pub fn train(
    gpu: &Gpu,
    weights: &mut SupernetWeights,
    splits: &Splits,
    cfg: &PathConfig,
    mut progress: impl FnMut(&Event),
) -> Result<PathReport> {
    let start = Instant::now();
    let mut trainer = PathTrainer::new(gpu, weights, splits, cfg, cfg.paths * cfg.steps_per_path)?;
    let mut report = PathReport::default();
    if cfg.paths == 0 {
        return Ok(report);
    }
    let op_set = measure_op_set(&weights.config.op_set);
    let mut rng = verify::rng(cfg.seed);
    let tenth = cfg.paths.div_ceil(10);
    let mut window = (0.0f32, 0.0f32, 0usize);
    progress(&Event::begin("paths", cfg.paths as u64, "paths"));
    for path in 0..cfg.paths {
        if crate::progress::interrupted() {
            return Err(crate::progress::stopped("path training"));
        }
        let blocks = 1 + rng.random_range(0..BLOCKS);
        let cell = random_cell(&op_set, blocks, &mut rng);
        let (loss, acc) = trainer.train_path(weights, &cell, cfg.steps_per_path)?;
        window = (window.0 + loss, window.1 + acc, window.2 + 1);
        if (path + 1) % tenth == 0 || path + 1 == cfg.paths {
            let (l, a) = (window.0 / window.2 as f32, window.1 / window.2 as f32);
            if path < tenth {
                (report.loss_first, report.accuracy_first) = (l, a);
            }
            (report.loss_last, report.accuracy_last) = (l, a);
            progress(&Event::tick(
                "paths",
                path as u64 + 1,
                cfg.paths as u64,
                &[("train_loss", l as f64), ("train_acc", a as f64)],
            ));
            window = (0.0, 0.0, 0);
        }
    }
    progress(&Event::end("paths"));
    report.paths = cfg.paths;
    report.steps = trainer.steps;
    report.seconds = start.elapsed().as_secs_f64();
    report.build_seconds = trainer.build_seconds;
    Ok(report)
}

impl SupernetWeights {
    /// Write the weights as safetensors (names and shapes as loaded), for
    /// the stages that inherit them.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let views: Vec<(String, safetensors::tensor::TensorView)> = names
            .iter()
            .map(|&n| {
                let (shape, v) = &self.tensors[n];
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    bytemuck::cast_slice(v),
                )
                .map_err(|e| anyhow!("{n}: {e}"))?;
                Ok((n.clone(), view))
            })
            .collect::<Result<_>>()?;
        let meta = HashMap::from([("stage".to_string(), "s2-paths".to_string())]);
        let bytes = safetensors::serialize(views, Some(meta))
            .with_context(|| format!("serializing {}", path.display()))?;
        write_atomic(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writing a sub-network's tensor back touches exactly the part that
    /// `inherit` gave it: the leading channels of dimension 1.
    #[test]
    fn scatter_back_inverts_inherit() {
        let have = [3, 5, 2, 2];
        let full: Vec<f32> = (0..60).map(|i| i as f32).collect();
        for want in [[3, 5, 2, 2], [3, 2, 2, 2], [3, 1, 2, 2]] {
            let sub = inherit("w", &want, &have, &full).unwrap();
            let new: Vec<f32> = sub.iter().map(|v| -v - 1.0).collect();
            let mut back = full.clone();
            scatter_back(&mut back, &have, &want, &new);
            assert_eq!(inherit("w", &want, &have, &back).unwrap(), new);
            let changed = back.iter().zip(&full).filter(|(a, b)| a != b).count();
            assert_eq!(changed, want.iter().product::<usize>(), "{want:?}");
        }
        let mut lin: Vec<f32> = vec![0.0; 4 * 6];
        scatter_back(&mut lin, &[4, 6], &[4, 2], &[1.0; 8]);
        for row in lin.chunks(6) {
            assert_eq!(row, [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        }
    }
}
