//! Training and evaluation of a network on real data with the recorded
//! step: one submit per step, the batch uploaded with one write per input,
//! loss and accuracy accumulated on the GPU and read back every
//! `log_every` steps and at the end of each epoch.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Dims, Normalization, Order, Splits};
use crate::engine::Gpu;
use crate::graph::{self, Graph, Op, Optimizer, Plan, T};
use crate::models::{self, ModelSpec};
use crate::ops::optim::SgdHyper;
use crate::ops::softmax_xent::IGNORE;
use crate::progress::Event;
use crate::verify;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    /// Initial learning rate, cosine-annealed to `lr_min` over all steps.
    pub lr: f32,
    pub lr_min: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// Clip gradients to this global norm.
    pub clip: Option<f32>,
    pub seed: u64,
    pub augment: bool,
    /// Read the GPU's loss and accuracy every this many steps.
    pub log_every: usize,
    /// λ of network slimming's sparsity term λ·Σ|γ| over every affine
    /// batch norm's scale (S4, `compress::prune::l1_gamma`), added to the
    /// objective but not to the logged loss; 0 = off.
    #[serde(default)]
    pub l1_gamma: f32,
}

impl TrainConfig {
    /// Refuse impossible values before any work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("epochs", self.epochs),
            ("batch", self.batch),
            ("log_every", self.log_every),
        ] {
            if v == 0 {
                return Err(format!("{name} 0: must be at least 1"));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("lr {}: expected a finite rate > 0", self.lr));
        }
        if !(self.l1_gamma.is_finite() && self.l1_gamma >= 0.0) {
            return Err(format!(
                "l1_gamma {}: expected a finite λ ≥ 0",
                self.l1_gamma
            ));
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 4,
            batch: 64,
            lr: 0.05,
            lr_min: 0.0,
            momentum: 0.9,
            weight_decay: 5e-4,
            clip: Some(5.0),
            seed: 1,
            augment: true,
            log_every: 50,
            l1_gamma: 0.0,
        }
    }
}

/// What the trained model directory holds besides its weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    /// A built-in (`"Cnn"`) or a genotype network (genotype and shape).
    pub model: ModelSpec,
    pub dims: Dims,
    pub classes: usize,
    pub norm: Normalization,
    pub seed: u64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub phase: &'static str,
    pub epoch: usize,
    pub step: usize,
    /// Steps of the whole training (ticks' denominator).
    #[serde(default)]
    pub total_steps: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub lr: f32,
    pub images_per_s: f64,
    pub seconds: f64,
}

impl Metric {
    /// As a progress event of phase `phase`: training metrics tick, the
    /// validation and test figures are log lines.
    pub fn event(&self, phase: &str) -> Event {
        if self.phase == "train" {
            Event::tick(
                phase,
                self.step as u64,
                self.total_steps as u64,
                &[
                    ("epoch", self.epoch as f64),
                    ("loss", self.loss),
                    ("train_acc", self.accuracy),
                    ("lr", self.lr as f64),
                ],
            )
        } else {
            Event::log(format!(
                "{phase} {} after epoch {}: loss {:.4}, accuracy {:.2}%",
                self.phase,
                self.epoch,
                self.loss,
                100.0 * self.accuracy
            ))
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
    pub images_per_s: f64,
    pub dispatches_per_step: usize,
    pub planned_bytes: u64,
    pub unshared_bytes: u64,
}

/// A network's evaluation plan: BN with running statistics, inputs of
/// `batch` images, loss and correct counts accumulated on the GPU.
pub struct Evaluator {
    g: Graph,
    plan: Plan,
    images: T,
    labels: T,
    loss_sum: T,
    correct: T,
    batch: usize,
    /// Weights and running statistics by name.
    pub tensors: HashMap<String, T>,
}

impl Evaluator {
    pub fn new(gpu: &Gpu, card: &ModelCard, batch: usize) -> Result<Evaluator> {
        let mut g = Graph::new();
        let d = card.dims;
        let images = g.input("images", &[batch, d.channels, d.height, d.width]);
        let labels = g.input("labels", &[batch]);
        let net = models::build(&card.model, &mut g, images, card.classes, false, card.seed);
        let loss = g.log_softmax_xent(net.logits, labels);
        let loss_sum = g.state("loss_sum", &[1], None);
        g.accumulate_into(loss, loss_sum);
        let correct = g.state("correct", &[1], None);
        g.count_correct_into(net.logits, labels, correct);
        let tensors = named(&g, net.params.iter().chain(&net.running));
        let plan = Plan::new(gpu, &g)?;
        Ok(Evaluator {
            g,
            plan,
            images,
            labels,
            loss_sum,
            correct,
            batch,
            tensors,
        })
    }

    /// (mean loss, accuracy) over all of `data`: the last batch is padded
    /// and its padding rows carry the IGNORE label, so nothing is dropped or
    /// counted twice.
    pub fn evaluate(&self, gpu: &Gpu, data: &Dataset, norm: &Normalization) -> Result<(f64, f64)> {
        let b = self.batch;
        let mut pixels = vec![0f32; b * data.dims.len()];
        let mut labels = vec![0u32; b];
        let mut rng = verify::rng(0);
        self.plan.write(gpu, self.loss_sum, &[0.0]);
        self.plan.write(gpu, self.correct, &[0.0]);
        let mut batches = 0usize;
        for idx in data.batches(b, Order::Sequential) {
            let real = data.fill_batch(&idx, norm, None, &mut rng, &mut pixels, &mut labels);
            labels[real..].fill(IGNORE);
            self.plan.write(gpu, self.images, &pixels);
            self.plan.write_u32(gpu, self.labels, &labels);
            self.plan.step(gpu)?;
            batches += 1;
        }
        let n = data.len() as f64;
        // Each batch's loss is a mean over all b rows (padding adds 0).
        let loss = self.plan.read(gpu, self.loss_sum)?[0] as f64 * b as f64 / n;
        let correct = self.plan.read(gpu, self.correct)?[0] as f64;
        debug_assert!(batches * b >= data.len());
        Ok((loss, correct / n))
    }

    pub fn graph(&self) -> &Graph {
        &self.g
    }
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

/// One training step as a graph: forward, cross-entropy, backward,
/// clipping, SGD updates, loss and correct counts accumulated on the GPU.
pub struct TrainGraph {
    pub g: Graph,
    pub images: T,
    pub labels: T,
    pub loss_sum: T,
    pub correct: T,
    pub updates: graph::Updates,
    /// Weights and running statistics by name.
    pub trained: HashMap<String, T>,
}

pub fn train_graph(
    model: impl Into<ModelSpec>,
    dims: Dims,
    classes: usize,
    cfg: &TrainConfig,
) -> TrainGraph {
    let model = model.into();
    let b = cfg.batch;
    let mut g = Graph::new();
    let images = g.input("images", &[b, dims.channels, dims.height, dims.width]);
    let labels = g.input("labels", &[b]);
    let net = models::build(&model, &mut g, images, classes, true, cfg.seed);
    let loss = g.log_softmax_xent(net.logits, labels);
    let loss_sum = g.state("loss_sum", &[1], None);
    g.accumulate_into(loss, loss_sum);
    let correct = g.state("correct", &[1], None);
    g.count_correct_into(net.logits, labels, correct);
    let objective = if cfg.l1_gamma > 0.0 {
        let sparsity = crate::compress::prune::l1_gamma(&mut g, cfg.l1_gamma);
        g.add(loss, sparsity)
    } else {
        loss
    };
    let grads = graph::backward(&mut g, objective);
    let hyper = SgdHyper {
        lr: cfg.lr,
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
    };
    let updates =
        graph::append_updates(&mut g, &net.params, &grads, Optimizer::Sgd(hyper), cfg.clip);
    let trained = named(&g, net.params.iter().chain(&net.running));
    TrainGraph {
        g,
        images,
        labels,
        loss_sum,
        correct,
        updates,
        trained,
    }
}

fn named<'a>(g: &Graph, ts: impl Iterator<Item = &'a T>) -> HashMap<String, T> {
    ts.map(|t| (g.def(*t).name.clone(), *t)).collect()
}

/// Train `model` on `splits`, writing `metrics.jsonl`, `model.safetensors`
/// and `model.json` into `out`. `progress` receives each metric as it is
/// logged.
pub fn train(
    gpu: &Gpu,
    model: impl Into<ModelSpec>,
    splits: &Splits,
    cfg: &TrainConfig,
    out: &Path,
    progress: impl FnMut(&Metric),
) -> Result<TrainReport> {
    train_from(gpu, model, splits, cfg, None, out, progress)
}

/// [`train`] starting from given weights and running statistics (by graph
/// name; those not named keep their seeded initial values): fine-tuning.
pub fn train_from(
    gpu: &Gpu,
    model: impl Into<ModelSpec>,
    splits: &Splits,
    cfg: &TrainConfig,
    init: Option<&HashMap<String, Vec<f32>>>,
    out: &Path,
    mut progress: impl FnMut(&Metric),
) -> Result<TrainReport> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let model = model.into();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let dims = splits.train.dims;
    let classes = splits.train.classes;
    let card = ModelCard {
        model: model.clone(),
        dims,
        classes,
        norm: splits.norm.clone(),
        seed: cfg.seed,
    };
    let b = cfg.batch;

    let TrainGraph {
        mut g,
        images,
        labels,
        loss_sum,
        correct,
        updates,
        trained,
    } = train_graph(model, dims, classes, cfg);
    let plan = Plan::new(gpu, &g)?;
    for (name, v) in init.into_iter().flatten() {
        let t = *trained
            .get(name)
            .with_context(|| format!("initial weights: the model has no tensor {name:?}"))?;
        let want = g.def(t).shape.iter().product::<usize>();
        if v.len() != want {
            bail!(
                "initial weights: {name} has {} values, the model wants {want}",
                v.len()
            );
        }
        plan.write(gpu, t, v);
    }

    let eval = Evaluator::new(gpu, &card, 256)?;
    let pairs: Vec<(T, T)> = eval
        .tensors
        .iter()
        .map(|(name, &t)| (t, trained[name]))
        .collect();

    let mut metrics = std::fs::File::create(out.join("metrics.jsonl"))?;
    let mut log = |m: Metric| -> Result<()> {
        writeln!(metrics, "{}", serde_json::to_string(&m)?)?;
        progress(&m);
        Ok(())
    };

    let n = splits.train.len();
    let steps_per_epoch = n.div_ceil(b);
    let total_steps = steps_per_epoch * cfg.epochs;
    let augment = cfg.augment.then(|| splits.kind.augment());
    let mut rng = verify::rng(cfg.seed ^ 0xa5a5);
    let mut pixels = vec![0f32; b * dims.len()];
    let mut lbl = vec![0u32; b];
    let start = Instant::now();
    let mut step = 0usize;
    let (mut window_start, mut window_steps) = (Instant::now(), 0usize);
    let mut val_accuracy = 0.0;
    for epoch in 0..cfg.epochs {
        let order = splits.train.order(Order::Shuffled {
            seed: cfg.seed,
            epoch: epoch as u64,
        });
        for k in 0..steps_per_epoch {
            if crate::progress::interrupted() {
                return Err(crate::progress::stopped("training"));
            }
            // A short last batch is completed with the epoch's first
            // samples: every sample is seen, none twice in a row.
            let idx: Vec<usize> = (0..b).map(|i| order[(k * b + i) % n]).collect();
            splits.train.fill_batch(
                &idx,
                &splits.norm,
                augment.as_ref(),
                &mut rng,
                &mut pixels,
                &mut lbl,
            );
            let lr = cosine(cfg.lr, cfg.lr_min, step, total_steps);
            for &node in &updates.nodes {
                if let Op::Sgd(h) = &mut g.nodes[node].op {
                    h.lr = lr;
                }
            }
            plan.sync_hyperparameters(gpu, &g);
            plan.write(gpu, images, &pixels);
            plan.write_u32(gpu, labels, &lbl);
            plan.step(gpu)?;
            step += 1;
            window_steps += 1;
            if step.is_multiple_of(cfg.log_every) || k + 1 == steps_per_epoch {
                let l = plan.read(gpu, loss_sum)?[0] as f64 / window_steps as f64;
                if !l.is_finite() {
                    bail!("training loss became {l} at epoch {epoch}, step {step}: stopping (lower --lr?)");
                }
                let acc = plan.read(gpu, correct)?[0] as f64 / (window_steps * b) as f64;
                plan.write(gpu, loss_sum, &[0.0]);
                plan.write(gpu, correct, &[0.0]);
                let secs = window_start.elapsed().as_secs_f64();
                log(Metric {
                    phase: "train",
                    epoch,
                    step,
                    total_steps,
                    loss: l,
                    accuracy: acc,
                    lr,
                    images_per_s: (window_steps * b) as f64 / secs,
                    seconds: start.elapsed().as_secs_f64(),
                })?;
                (window_start, window_steps) = (Instant::now(), 0);
            }
        }
        eval.plan().copy_from(gpu, &plan, &pairs);
        let t = Instant::now();
        let (vl, va) = eval.evaluate(gpu, &splits.val, &splits.norm)?;
        val_accuracy = va;
        log(Metric {
            phase: "val",
            epoch,
            step,
            total_steps,
            loss: vl,
            accuracy: va,
            lr: cosine(cfg.lr, cfg.lr_min, step, total_steps),
            images_per_s: splits.val.len() as f64 / t.elapsed().as_secs_f64(),
            seconds: start.elapsed().as_secs_f64(),
        })?;
        window_start = Instant::now();
    }
    let seconds = start.elapsed().as_secs_f64();
    let (test_loss, test_accuracy) = eval.evaluate(gpu, &splits.test, &splits.norm)?;
    log(Metric {
        phase: "test",
        epoch: cfg.epochs,
        step,
        total_steps,
        loss: test_loss,
        accuracy: test_accuracy,
        lr: 0.0,
        images_per_s: 0.0,
        seconds: start.elapsed().as_secs_f64(),
    })?;
    save(gpu, &eval, &card, out)?;
    Ok(TrainReport {
        test_accuracy,
        test_loss,
        val_accuracy,
        seconds,
        images_per_s: (step * b) as f64 / seconds,
        dispatches_per_step: plan.dispatches(),
        planned_bytes: plan.memory.planned_bytes,
        unshared_bytes: plan.memory.unshared_bytes,
    })
}

/// Cosine annealing from `hi` to `lo` over `total` steps.
pub fn cosine(hi: f32, lo: f32, step: usize, total: usize) -> f32 {
    let t = step as f64 / total.max(1) as f64;
    (lo as f64 + 0.5 * (hi - lo) as f64 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
}

/// Write `model.safetensors` (weights and running statistics by name) and
/// `model.json` (the card), each through a temp file and a rename.
pub fn save(gpu: &Gpu, eval: &Evaluator, card: &ModelCard, out: &Path) -> Result<()> {
    let tensors: Vec<T> = eval.tensors.values().copied().collect();
    let meta = HashMap::from([("model".to_string(), card.model.name())]);
    save_tensors(
        gpu,
        eval.plan(),
        eval.graph(),
        &tensors,
        meta,
        &out.join("model.safetensors"),
    )?;
    write_atomic(
        &out.join("model.json"),
        serde_json::to_string_pretty(card)?.as_bytes(),
    )?;
    Ok(())
}

/// Read `tensors` of a plan back and write them, by graph name, as one
/// safetensors file (atomically).
pub fn save_tensors(
    gpu: &Gpu,
    plan: &Plan,
    g: &Graph,
    tensors: &[T],
    meta: HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(tensors.len());
    for &t in tensors {
        let v = plan.read(gpu, t)?;
        let d = g.def(t);
        data.push((
            d.name.clone(),
            bytemuck::cast_slice(&v).to_vec(),
            d.shape.clone(),
        ));
    }
    data.sort_by(|a, b| a.0.cmp(&b.0));
    write_f32_tensors(&data, meta, path)
}

/// (name, little-endian f32 bytes, shape) as a safetensors file, atomically.
fn write_f32_tensors(
    data: &[(String, Vec<u8>, Vec<usize>)],
    meta: HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let views = data
        .iter()
        .map(|(n, bytes, shape)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()?;
    write_atomic(path, &safetensors::serialize(views, Some(meta))?)
}

/// Little-endian f32 bytes (a safetensors F32 tensor's data) as values.
pub fn f32s_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A plan's whole state for a checkpoint: every Param and State tensor of
/// `g` (weights, optimizer moments, BN statistics), keyed by index (state
/// tensors' names need not be unique), with `meta`; written atomically.
pub fn save_state(
    gpu: &Gpu,
    plan: &Plan,
    g: &Graph,
    meta: HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let mut data = Vec::new();
    for (i, d) in g.tensors.iter().enumerate() {
        if matches!(d.kind, graph::Kind::Param | graph::Kind::State) {
            let v = plan.read(gpu, T(i))?;
            data.push((
                format!("t{i}"),
                bytemuck::cast_slice(&v).to_vec(),
                d.shape.clone(),
            ));
        }
    }
    write_f32_tensors(&data, meta, path)
}

/// The metadata of a state file, without reading its tensors.
pub fn state_meta(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    Ok(header.metadata().clone().unwrap_or_default())
}

/// Restore a state written by `save_state` for the same graph into `plan`;
/// returns its metadata. A file for another graph is an error.
pub fn load_state(
    gpu: &Gpu,
    plan: &Plan,
    g: &Graph,
    path: &Path,
) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let mut writes = Vec::new();
    for (i, d) in g.tensors.iter().enumerate() {
        if !matches!(d.kind, graph::Kind::Param | graph::Kind::State) {
            continue;
        }
        let view = st
            .tensor(&format!("t{i}"))
            .with_context(|| format!("{}: no tensor t{i} ({})", path.display(), d.name))?;
        if view.shape() != d.shape.as_slice() {
            bail!(
                "{}: t{i} ({}) is {:?}, the graph wants {:?}",
                path.display(),
                d.name,
                view.shape(),
                d.shape
            );
        }
        let v = f32s_le(view.data());
        writes.push((T(i), v));
    }
    if st.len() != writes.len() {
        bail!(
            "{}: {} tensors, the graph has {}",
            path.display(),
            st.len(),
            writes.len()
        );
    }
    for (t, v) in writes {
        plan.write(gpu, t, &v);
    }
    Ok(header.metadata().clone().unwrap_or_default())
}

/// Load a model directory written by `save` into a fresh evaluator.
pub fn load(gpu: &Gpu, dir: &Path, batch: usize) -> Result<(Evaluator, ModelCard)> {
    let card_path = dir.join("model.json");
    let card: ModelCard = serde_json::from_slice(
        &std::fs::read(&card_path).with_context(|| format!("reading {}", card_path.display()))?,
    )
    .with_context(|| format!("{}: not a gradnas model card", card_path.display()))?;
    let wpath = dir.join("model.safetensors");
    let bytes = std::fs::read(&wpath).with_context(|| format!("reading {}", wpath.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", wpath.display()))?;
    let eval = Evaluator::new(gpu, &card, batch)?;
    for (name, &t) in &eval.tensors {
        let view = st
            .tensor(name)
            .with_context(|| format!("{}: no tensor {name:?}", wpath.display()))?;
        let want = &eval.graph().def(t).shape;
        if view.dtype() != safetensors::Dtype::F32 || view.shape() != want.as_slice() {
            bail!(
                "{}: tensor {name:?} is {:?} {:?}, expected F32 {want:?}",
                wpath.display(),
                view.dtype(),
                view.shape()
            );
        }
        let v = f32s_le(view.data());
        eval.plan().write(gpu, t, &v);
    }
    Ok((eval, card))
}

/// Write through a temp file and a rename, so a crash never leaves a
/// half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
