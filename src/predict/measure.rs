//! Measuring a cell one-shot (S2, METHOD.md): the validation accuracy of
//! the sub-network that a (normal, reduction) cell pair takes from the S1
//! supernet's shared weights, with batch-norm statistics recomputed for
//! that sub-network first. The progressive search measures hundreds of
//! cells, so this is its hot path. Two ways are built, with the same
//! result (tests/measure.rs checks they agree):
//!
//! - [`OneShot`], the **mask plan**: ONE recorded plan of the supernet whose
//!   mixing weights are plan inputs. A cell is measured by writing its
//!   masks (per cell kind and block j, a [num_inputs(j), K] matrix, all in
//!   one buffer), one submit, one read of the correct count. Nothing is
//!   rebuilt per cell, but every candidate op of every edge is computed
//!   (and weighted by 0).
//! - [`OneShotDiscrete`], the **discrete plan**: per cell pair, the
//!   sub-network alone (only the chosen ops), its plan built and the
//!   inherited weights uploaded, then the same one submit and one read.
//!   Much less arithmetic per image, but a graph and a plan per cell.
//!   (A plan cache keyed by the cell would never hit: the progressive
//!   search measures every cell once.) What does repeat is the start of
//!   every cell's network: the stem and the preprocessing of the cell
//!   inputs that read it (`cellnet::Invariant`) see the same weights and
//!   images whatever the cell. They are computed once per device, for every
//!   pass, and each cell's plan reads them where they lie ([`Prefix`]):
//!   the same bits as computing them per cell, at 0.7× the time of a
//!   one-block cell on lavapipe (BENCHMARKS.md, "Twentieth pass").
//!
//! Which is faster was measured (`bench_cells_per_second` in
//! tests/measure.rs: lavapipe, width 4, depth 3, pnas, 5-block cells,
//! BN on 4 × 64 training images, 1000 validation images): the discrete
//! plan took 10.2 s per cell (0.04 s of it building the graph and plan and
//! uploading), the mask plan 205 s per cell. The mask plan computes every
//! candidate of every edge, about 16× the discrete cell's ops, and that
//! arithmetic dominates; building a plan costs far less. Do not keep a mask
//! plan alive while building others: while a submitted plan with tens of
//! thousands of dispatches exists, every wgpu call here took milliseconds
//! (a discrete plan's build went from 0.04 s to 16 s).
//!
//! **The mask reading.** A block of a discrete cell computes
//! O1(x_I1) + O2(x_I2). The supernet's block j computes
//! Σ_i Σ_o w[i, o] · o(x_i); with w[i, o] = the number of the block's two
//! slots that are (i, o) (0, 1 or 2) the two agree. A block whose two
//! slots are the same (input, op) gets weight 2: the discrete network's
//! second copy of that op (`{op}_2` in `nn::genotype_net`) inherits the
//! same supernet weights, so it adds the same output again. A cell of
//! b < 5 blocks gives blocks b..5 all-zero rows, so their outputs are zero
//! channels of the cell's concatenation; the next cell's 1×1
//! preprocessing convolutions (and the classifier after the last cell)
//! then see zeros there, and the network equals the b-block discrete
//! network whose preprocessing and classifier weights are the supernet's
//! restricted to the leading channels, those of the b blocks ([`inherit`]
//! slices them so).
//!
//! What the sub-network is, exactly: the supernet's own candidates, so
//! pools keep the BN that the supernet puts after them (DARTS's MixedOp),
//! and batch norm has no affine γ, β. The `none` candidate is never chosen
//! and has no weights, so the measurement supernet is built without it.
//! With partial-channel mixing (PC-DARTS, `partial_channels` k > 1) an
//! edge is a slice through its op and a bypass scaled by β_ij; the masked
//! supernet sets β_ij = the number of slots reading input i, so each slot
//! is one partial edge collapsed to its op. That geometry has no full-width
//! discrete counterpart, so [`OneShotDiscrete`] refuses k > 1.
//!
//! **Few-shot** (`fine_tune_steps` > 0, off by default;
//! [`OneShotDiscrete::measure_cell`], what S2 calls): before the statistics
//! and evaluation passes, a copy of the shared weights trains the cell's
//! own sub-network for a few SGD steps (`predict::paths::fine_tune`: the
//! same batches for every cell, lr annealed to 0); the shared weights stay
//! as they were, so a cell's measurement does not depend on what was
//! measured before it. Why it exists: on lavapipe's budget each (edge, op)
//! tensor of the shared weights is trained a handful of times, and the
//! one-shot reading of a cell mostly records that history: two path
//! trainings that differ only in their seed rank the 136 one-block cells
//! with Kendall τ ≈ 0. Why it is off: eight steps of the cell did not
//! change that (τ 0.09 between seeds) nor make the predictor's τ reliably
//! positive, at twice S2's time, while training the shared weights longer
//! did (600 paths: τ 0.52 between seeds; BENCHMARKS.md, "Is the
//! measurement a property of the cell?").
//!
//! **Linear probe** (`probe_images` > 0, off by default): the accuracy is
//! not the shared classifier's but that of a least-squares classifier
//! fitted per cell on the pooled features of `probe_images` training
//! images ([`super::probe`]). Path training co-adapts the one shared
//! classifier with whichever paths it trained last, and read through that
//! head a cell's accuracy is mostly how well its features line up with it:
//! at the quick preset's 40 paths, two path seeds rank the 136 one-block
//! cells with τ −0.01 through the shared head and 0.41 through the probe
//! (BENCHMARKS.md, "A classifier per cell"). The features of the probe's
//! images come from extra evaluation-mode passes of the same plan (the
//! classifier node of those passes is dead code), read back with the
//! evaluation passes' features in the one wait that reads the count.
//!
//! **Batch-norm statistics** are recomputed per cell as a cumulative
//! average: the plan first runs `bn_batches` training batches through the
//! train-mode (batch statistics) forward, and pass t's batch norms update
//! their running statistics with momentum 1/t, so after N passes they hold
//! the plain mean of the N batches' means and unbiased variances
//! (PyTorch's `momentum=None`). Pass 1 has momentum 1, so whatever the
//! previous cell left is overwritten: no reset is needed. A fixed momentum
//! (PyTorch's 0.1) would keep 0.9^N of the previous cell's statistics
//! after N batches. The N batches are the same for every cell (drawn once
//! from the training split by `seed`), so measurements differ by the cell
//! alone. The evaluation passes then run the first `n_val` validation
//! images (resident on the GPU) with the running statistics and count the
//! correct answers on the GPU, plus 0 · ‖logits‖, so the one number read
//! back is NaN when any logit is not finite: that is an error (after which
//! the mask plan resets its statistics, as momentum 1 keeps 0 · NaN).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Dims, Order, Splits};
use crate::engine::{Buf, Gpu};
use crate::graph::{CpuExec, Graph, Op, Plan, T};
use crate::nn::cellnet::{self, CellIo};
use crate::nn::{layers, ParamStore};
use crate::ops::softmax_xent::{SoftmaxShape, IGNORE};
use crate::search::s1::S1Config;
use crate::search::supernet::{self, KindMix, SupernetConfig};
use crate::space::{num_inputs, Cell, OpKind, OpSet, BLOCKS};
use crate::verify;

/// How a cell is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasureConfig {
    /// Training batches whose statistics become batch norm's running
    /// statistics (cumulative average).
    pub bn_batches: usize,
    /// Images per statistics batch (≥ 2).
    pub bn_batch: usize,
    /// Validation images measured: the first `n_val` of the validation
    /// split (all of it when it is smaller).
    pub n_val: usize,
    /// Images per evaluation pass (memory: the supernet's largest block
    /// stacks every candidate of every input for this many images).
    pub eval_batch: usize,
    /// Seed of the shuffled training order the statistics batches come from.
    pub seed: u64,
    /// Few-shot measurement: SGD steps on the cell's own sub-network,
    /// starting from the shared weights (which stay as they are), before
    /// it is measured; 0 (the default) measures the shared weights as they
    /// are (module comment: what it was measured to change).
    #[serde(default)]
    pub fine_tune_steps: usize,
    /// Images per fine-tuning step (the same batches for every cell).
    #[serde(default = "fine_tune_batch")]
    pub fine_tune_batch: usize,
    /// Learning rate of the fine-tuning, cosine-annealed to 0 over its steps.
    #[serde(default = "fine_tune_lr")]
    pub fine_tune_lr: f32,
    /// Linear-probe reading: this many training images (after the
    /// statistics batches in the same shuffled order) give the pooled
    /// features on which a least-squares classifier is fitted per cell,
    /// and the accuracy is that classifier's on the validation images'
    /// features ([`super::probe`]); 0 reads the shared classifier.
    #[serde(default)]
    pub probe_images: usize,
}

fn fine_tune_batch() -> usize {
    32
}

fn fine_tune_lr() -> f32 {
    0.05
}

impl Default for MeasureConfig {
    fn default() -> Self {
        MeasureConfig {
            bn_batches: 4,
            bn_batch: 64,
            n_val: 1000,
            eval_batch: 100,
            seed: 0,
            fine_tune_steps: 0,
            fine_tune_batch: fine_tune_batch(),
            fine_tune_lr: fine_tune_lr(),
            probe_images: 0,
        }
    }
}

impl MeasureConfig {
    /// Refuse impossible values, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.bn_batches == 0 {
            return Err("bn_batches 0: need at least one batch for the statistics".into());
        }
        if self.bn_batch < 2 {
            return Err(format!(
                "bn_batch {}: batch statistics need at least 2 images",
                self.bn_batch
            ));
        }
        if self.n_val == 0 {
            return Err("n_val 0: need at least one validation image".into());
        }
        if self.eval_batch == 0 {
            return Err("eval_batch 0: need at least one image per pass".into());
        }
        if self.probe_images == 1 {
            return Err("probe_images 1: a classifier needs at least 2 training images".into());
        }
        if self.fine_tune_steps > 0 {
            if self.fine_tune_batch < 2 {
                return Err(format!(
                    "fine_tune_batch {}: batch statistics need at least 2 images",
                    self.fine_tune_batch
                ));
            }
            if !(self.fine_tune_lr.is_finite() && self.fine_tune_lr > 0.0) {
                return Err(format!(
                    "fine_tune_lr {}: must be positive",
                    self.fine_tune_lr
                ));
            }
        }
        Ok(())
    }
}

/// The supernet's trained weights (not α, β) by graph name, with the
/// configuration they belong to.
#[derive(Debug, Clone)]
pub struct SupernetWeights {
    pub config: SupernetConfig,
    /// Name → (shape, values).
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Where they came from (for error messages).
    pub origin: String,
}

impl SupernetWeights {
    /// Read an S1 run directory: `s1_config.json` and `supernet.safetensors`.
    pub fn load(run_dir: &Path) -> Result<SupernetWeights> {
        SupernetWeights::load_file(run_dir, "supernet.safetensors")
    }

    /// [`SupernetWeights::load`] with another weights file of the run
    /// directory (`predict::paths::WEIGHTS_FILE`, the path-trained weights).
    pub fn load_file(run_dir: &Path, file: &str) -> Result<SupernetWeights> {
        let cpath = run_dir.join("s1_config.json");
        let text = std::fs::read(&cpath).with_context(|| format!("reading {}", cpath.display()))?;
        let s1: S1Config = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not an S1 configuration", cpath.display()))?;
        s1.supernet
            .validate()
            .map_err(|e| anyhow!("{}: supernet: {e}", cpath.display()))?;
        let wpath = run_dir.join(file);
        let bytes =
            std::fs::read(&wpath).with_context(|| format!("reading {}", wpath.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a safetensors file", wpath.display()))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                bail!(
                    "{}: tensor {name:?} is {:?}, expected F32",
                    wpath.display(),
                    view.dtype()
                );
            }
            let v = crate::train::f32s_le(view.data());
            tensors.insert(name, (view.shape().to_vec(), v));
        }
        Ok(SupernetWeights {
            config: s1.supernet,
            tensors,
            origin: wpath.display().to_string(),
        })
    }

    /// A freshly initialized supernet (seeded), for tests and benchmarks:
    /// what measuring costs does not depend on the weights' values.
    pub fn random(config: SupernetConfig, seed: u64) -> Result<SupernetWeights> {
        config.validate().map_err(|e| anyhow!("supernet: {e}"))?;
        let mut g = Graph::new();
        let mut st = ParamStore::new(seed);
        // Running statistics: no batch-size requirement for this shape-only build.
        st.eval = true;
        let d = config.dims;
        let x = g.input("images", &[1, d.channels, d.height, d.width]);
        let m = mask_input(&mut g, config.op_set.len());
        supernet::forward(&mut g, &mut st, &config, x, &m.normal, &m.reduce);
        let tensors = st
            .params
            .iter()
            .map(|&t| {
                let d = g.def(t);
                let v = d.init.clone().expect("parameters have initial values");
                (d.name.clone(), (d.shape.clone(), v))
            })
            .collect();
        Ok(SupernetWeights {
            config,
            tensors,
            origin: format!("random supernet (seed {seed})"),
        })
    }

    /// The stored tensor for a parameter of the measurement graph, shaped
    /// `want` (sliced by [`inherit`] where a sub-network is narrower).
    pub(crate) fn value(&self, name: &str, want: &[usize]) -> Result<Vec<f32>> {
        let (have, v) = self.tensors.get(name).ok_or_else(|| {
            anyhow!(
                "{}: no tensor {name:?} (weights of another supernet configuration?)",
                self.origin
            )
        })?;
        inherit(name, want, have, v).map_err(|e| anyhow!("{}: {e}", self.origin))
    }
}

/// The op set a measurement supernet is built over: `op_set` without
/// `none` (never chosen, no weights).
pub fn measure_op_set(op_set: &OpSet) -> OpSet {
    OpSet::new(op_set.name(), op_set.choosable().collect())
        .expect("an op set holds an op other than none")
}

/// The mask of `cell` (module comment): per block j of the 5, a row-major
/// [num_inputs(j), op_set.len()] matrix counting the block's slots on each
/// (input, op); zeros for blocks past the cell's. Errors name the block,
/// the slot and what is wrong.
pub fn cell_mask(cell: &Cell, op_set: &OpSet) -> Result<Vec<Vec<f32>>, String> {
    cell.validate(op_set)?;
    let k = op_set.len();
    let mut mask: Vec<Vec<f32>> = (0..BLOCKS).map(|j| vec![0.0; num_inputs(j) * k]).collect();
    for (j, block) in cell.blocks.iter().enumerate() {
        for s in 0..2 {
            let op = op_set
                .index_of(block.ops[s])
                .expect("validated: the op is in the set");
            mask[j][block.inputs[s] * k + op] += 1.0;
        }
    }
    Ok(mask)
}

/// The partial-channel β of a mask: per block, per input, the number of
/// slots reading that input (the mask's row sums).
pub fn mask_betas(mask: &[Vec<f32>], k: usize) -> Vec<Vec<f32>> {
    mask.iter()
        .map(|m| m.chunks(k).map(|row| row.iter().sum()).collect())
        .collect()
}

/// The masks of both cell kinds as ONE plan input, so measuring a cell
/// pair writes one buffer: per kind (normal, then reduction), the 5
/// blocks' [num_inputs(j), k] weights, then the 5 blocks' β rows
/// [num_inputs(j)], split into `KindMix` tensors inside the graph (the
/// layout [`mask_values`] fills).
pub struct MaskInput {
    /// The input tensor, [1, mask_len(k)].
    pub all: T,
    pub normal: KindMix,
    pub reduce: KindMix,
}

/// Elements of a [`MaskInput`] for `k` ops.
pub fn mask_len(k: usize) -> usize {
    2 * (0..BLOCKS).map(|j| num_inputs(j) * (k + 1)).sum::<usize>()
}

/// A [`MaskInput`] in `g` for an op set of `k` ops.
pub fn mask_input(g: &mut Graph, k: usize) -> MaskInput {
    let kind_parts = (0..BLOCKS)
        .map(|j| num_inputs(j) * k)
        .chain((0..BLOCKS).map(num_inputs));
    let parts: Vec<usize> = kind_parts.clone().chain(kind_parts).collect();
    let all = g.input("masks", &[1, mask_len(k)]);
    let mut pieces = g.split(all, &parts).into_iter();
    let mut kind = |g: &mut Graph| {
        let mut next = |shape: &[usize]| {
            let piece = pieces.next().expect("one piece per part");
            g.reshape(piece, shape)
        };
        let weights = (0..BLOCKS).map(|j| next(&[num_inputs(j), k])).collect();
        let betas = (0..BLOCKS).map(|j| next(&[num_inputs(j)])).collect();
        KindMix { weights, betas }
    };
    let normal = kind(g);
    let reduce = kind(g);
    MaskInput {
        all,
        normal,
        reduce,
    }
}

/// The values of a [`MaskInput`] for a cell pair: [`cell_mask`] and
/// [`mask_betas`] of each. Errors name the cell kind, the block, the slot
/// and what is wrong.
pub fn mask_values(normal: &Cell, reduce: &Cell, op_set: &OpSet) -> Result<Vec<f32>, String> {
    let mut v = Vec::with_capacity(mask_len(op_set.len()));
    for (what, cell) in [("normal cell", normal), ("reduction cell", reduce)] {
        let mask = cell_mask(cell, op_set).map_err(|e| format!("{what}: {e}"))?;
        let betas = mask_betas(&mask, op_set.len());
        v.extend(mask.into_iter().flatten());
        v.extend(betas.into_iter().flatten());
    }
    Ok(v)
}

/// A supernet tensor's values for a (sub-)network tensor of shape `want`:
/// the same values when the shapes agree; when only dimension 1 (input
/// channels of a convolution, input features of the classifier) is
/// narrower, the leading `want[1]` entries of it, i.e. the channels of the
/// blocks a shorter cell keeps.
pub fn inherit(name: &str, want: &[usize], have: &[usize], values: &[f32]) -> Result<Vec<f32>> {
    let n: usize = have.iter().product();
    ensure!(
        values.len() == n,
        "{name}: {} values for shape {have:?}",
        values.len()
    );
    if want == have {
        return Ok(values.to_vec());
    }
    let sliceable = want.len() == have.len()
        && want.len() >= 2
        && want[0] == have[0]
        && want[1] <= have[1]
        && want[2..] == have[2..];
    ensure!(
        sliceable,
        "{name}: the network wants shape {want:?}, the supernet has {have:?}"
    );
    let (row_have, row_want) = (n / have[0], want[1..].iter().product::<usize>());
    Ok(values
        .chunks(row_have)
        .flat_map(|row| row[..row_want].iter().copied())
        .collect())
}

/// The supernet name of a discrete network's tensor (`nn::genotype_net`):
/// the second copy of an op in a block, `…b{j}_in{i}.{op}_2.…`, is the
/// supernet's `…b{j}_in{i}.{op}.…`.
pub fn supernet_name(name: &str) -> String {
    name.split('.')
        .map(|part| match part.strip_suffix("_2") {
            Some(op) if op.parse::<OpKind>().is_ok() => op,
            _ => part,
        })
        .collect::<Vec<_>>()
        .join(".")
}

// ---- the passes of one measurement, shared by both modes.

/// The sizes of a measurement's passes.
#[derive(Debug, Clone, Copy)]
struct Shapes {
    dims: Dims,
    bn_batches: usize,
    bn_batch: usize,
    /// Validation images measured.
    n: usize,
    eval_batch: usize,
    /// Training images of the linear probe (0: none).
    probe: usize,
}

impl Shapes {
    fn new(mc: &MeasureConfig, dims: Dims, val_len: usize) -> Result<Shapes> {
        mc.validate().map_err(|e| anyhow!("measure: {e}"))?;
        ensure!(val_len > 0, "measure: the validation split is empty");
        let n = mc.n_val.min(val_len);
        Ok(Shapes {
            dims,
            bn_batches: mc.bn_batches,
            bn_batch: mc.bn_batch,
            n,
            eval_batch: mc.eval_batch.min(n),
            probe: mc.probe_images,
        })
    }
    fn eval_passes(&self) -> usize {
        self.n.div_ceil(self.eval_batch)
    }
    fn probe_passes(&self) -> usize {
        self.probe.div_ceil(self.eval_batch)
    }
}

/// The tensors of the statistics and evaluation passes.
struct Passes {
    /// Trained tensors of the network, by creation.
    params: Vec<T>,
    /// Each pass's images, where the pass starts from them (None where it
    /// starts from tensors computed ahead: [`Prefix`]).
    bn_images: Vec<Option<T>>,
    /// (images, labels, logits) per evaluation pass; logits pinned.
    eval: Vec<(Option<T>, T, T)>,
    /// The correct answers, summed over the evaluation passes, plus a
    /// guard that is 0 when every logit is finite and NaN otherwise (pinned).
    correct: T,
    /// Batch norm's running statistics.
    states: Vec<T>,
    /// With a probe: (images, pooled features) per probe pass, then the
    /// pooled features of each evaluation pass (all pinned).
    probe: Vec<(Option<T>, T)>,
    features: Vec<T>,
}

/// The classifier's input (the pooled features) of the network whose
/// logits are `logits`.
fn features_of(g: &Graph, logits: T) -> T {
    let node = g
        .nodes
        .iter()
        .rev()
        .find(|n| n.outputs.contains(&logits))
        .expect("logits come from a node");
    assert!(
        matches!(node.op, Op::Linear { .. }),
        "the network ends in a linear classifier"
    );
    node.inputs[0]
}

/// What a pass of a measurement does.
#[derive(Clone, Copy, PartialEq)]
enum PassKind {
    /// Statistics pass t (from 1): training mode, its batch norms at
    /// momentum 1/t.
    Statistics(usize),
    /// The probe's features, with running statistics.
    Probe,
    /// Logits and correct answers, with running statistics.
    Eval,
}

/// A measurement's passes in order, as (name, images, kind): the statistics
/// passes (`bn1`, `bn2`…), then the probe's (`probe0`…) and the evaluation
/// passes (`val0`…).
fn pass_list(s: &Shapes) -> Vec<(String, usize, PassKind)> {
    let mut v: Vec<_> = (1..=s.bn_batches)
        .map(|t| (format!("bn{t}"), s.bn_batch, PassKind::Statistics(t)))
        .collect();
    v.extend((0..s.probe_passes()).map(|p| (format!("probe{p}"), s.eval_batch, PassKind::Probe)));
    v.extend((0..s.eval_passes()).map(|p| (format!("val{p}"), s.eval_batch, PassKind::Eval)));
    v
}

/// Runs `forward` as pass `kind`: in evaluation mode after the statistics
/// passes, and a statistics pass's batch norms at momentum 1/t (so after
/// N passes the running statistics are the plain mean of the N batches').
fn in_pass<R>(
    g: &mut Graph,
    st: &mut ParamStore,
    kind: PassKind,
    forward: impl FnOnce(&mut Graph, &mut ParamStore) -> R,
) -> R {
    st.eval = !matches!(kind, PassKind::Statistics(_));
    let mark = g.nodes.len();
    let r = forward(g, st);
    if let PassKind::Statistics(t) = kind {
        for node in &mut g.nodes[mark..] {
            if let Op::BatchNormTrain(bn) = &mut node.op {
                bn.momentum = 1.0 / t as f32;
            }
        }
    }
    r
}

/// The passes' images (one input per pass, `{name}.images`).
fn images_input(g: &mut Graph, s: &Shapes, name: &str, batch: usize) -> T {
    let d = s.dims;
    g.input(
        &format!("{name}.images"),
        &[batch, d.channels, d.height, d.width],
    )
}

/// [`build_passes`]'s start where each pass reads its images.
fn images(s: &Shapes) -> impl FnMut(&mut Graph, &str, usize) -> (Option<T>, T) + '_ {
    move |g, name, batch| {
        let x = images_input(g, s, name, batch);
        (Some(x), x)
    }
}

/// The statistics passes, then the probe's and the evaluation passes, all
/// sharing one set of weights and statistics. Each pass starts from what
/// `begin(graph, name, batch)` returns (the pass's images input, if it
/// reads images, and the start) and runs `forward(g, store, start)` to the
/// logits.
fn build_passes<S>(
    g: &mut Graph,
    s: &Shapes,
    mut begin: impl FnMut(&mut Graph, &str, usize) -> (Option<T>, S),
    mut forward: impl FnMut(&mut Graph, &mut ParamStore, S) -> T,
) -> Passes {
    let mut st = ParamStore::new(0);
    st.reuse = true;
    let mut bn_images = Vec::with_capacity(s.bn_batches);
    let mut probe = Vec::with_capacity(s.probe_passes());
    let mut features = Vec::new();
    let mut correct: Option<T> = None;
    let mut eval = Vec::with_capacity(s.eval_passes());
    for (name, batch, kind) in pass_list(s) {
        let (x, start) = begin(g, &name, batch);
        let labels = (kind == PassKind::Eval).then(|| g.input(&format!("{name}.labels"), &[batch]));
        let logits = in_pass(g, &mut st, kind, |g, st| forward(g, st, start));
        match kind {
            PassKind::Statistics(_) => bn_images.push(x),
            PassKind::Probe => {
                // Only the features are read: the classifier node is dead code.
                let f = features_of(g, logits);
                g.pin(f);
                probe.push((x, f));
            }
            PassKind::Eval => {
                let labels = labels.expect("an evaluation pass has labels");
                g.pin(logits);
                if s.probe > 0 {
                    let f = features_of(g, logits);
                    g.pin(f);
                    features.push(f);
                }
                // Summed by adds into a pinned temp rather than accumulated
                // into a state: nothing to reset, so a cell costs one write.
                let rows_cols = SoftmaxShape {
                    rows: batch,
                    cols: g.def(logits).shape[1],
                };
                let count = g.temp("correct", &[1]);
                g.push(
                    Op::CorrectCount(rows_cols),
                    vec![logits, labels],
                    vec![count],
                );
                correct = Some(match correct {
                    None => count,
                    Some(sum) => g.add(sum, count),
                });
                eval.push((x, labels, logits));
            }
        }
    }
    let correct = correct.expect("at least one evaluation pass");
    // 0 · ‖logits‖: 0 while every logit is finite, NaN otherwise, so the
    // one number read back also says whether the statistics broke.
    let logits: Vec<T> = eval.iter().map(|e| e.2).collect();
    let guard = g.scaled_norm(&logits, 0.0, false);
    let correct = g.add(correct, guard);
    g.pin(correct);
    fuse_measurement(g);
    Passes {
        params: st.params,
        bn_images,
        eval,
        correct,
        states: st.states,
        probe,
        features,
    }
}

/// The measurement graph's rewrites, after all passes are built.
fn fuse_measurement(g: &mut Graph) {
    // The evaluation passes' batch norms into their convolutions' weights,
    // once for all passes (after the statistics passes).
    crate::graph::fold_eval_batchnorms(g);
    // No gradients here: every ReLU only convolutions and slices read is
    // read by them, the pools' batch norms applied as the pools write, and
    // the block outputs only the cell's concatenation reads added as it
    // inserts them.
    crate::graph::fuse_relu_reads(g);
    crate::graph::fuse_pool_batchnorms(g);
    crate::graph::fuse_add_concats(g);
}

/// Every tensor a measurement reads back: the correct count (with its
/// finiteness guard), then with a probe the probe's and the evaluation
/// passes' features.
fn readback(p: &Passes) -> Vec<T> {
    let mut ts = vec![p.correct];
    ts.extend(p.probe.iter().map(|&(_, f)| f));
    ts.extend(&p.features);
    ts
}

/// The accuracy from what [`readback`] named, read back: the shared
/// classifier's, or with a probe the probe's.
fn reading(
    values: &[Vec<f32>],
    s: &Shapes,
    feed: &Feed,
    classes: usize,
    normal: &Cell,
    reduce: &Cell,
) -> Result<f32> {
    let acc = accuracy(values[0][0], s.n, normal, reduce)?;
    if s.probe == 0 {
        return Ok(acc);
    }
    let passes = s.probe_passes();
    let dim = values[1].len() / s.eval_batch;
    let rows = |v: &[Vec<f32>], n: usize| {
        let mut all: Vec<f32> = v.concat();
        all.truncate(n * dim);
        all
    };
    let train = rows(&values[1..1 + passes], s.probe);
    let val = rows(&values[1 + passes..], s.n);
    super::probe::accuracy(
        super::probe::Samples {
            x: &train,
            y: &feed.probe_labels,
        },
        super::probe::Samples {
            x: &val,
            y: &feed.val_labels,
        },
        dim,
        classes,
    )
    .with_context(|| format!("measuring normal cell {normal:?} / reduction cell {reduce:?}"))
}

/// The host data of the passes: the statistics batches and the validation
/// images with their labels (padding rows labelled IGNORE).
#[derive(Clone)]
struct Feed {
    bn: Vec<Vec<f32>>,
    eval: Vec<(Vec<f32>, Vec<u32>)>,
    /// The real labels of the evaluation passes (for the probe).
    val_labels: Vec<u32>,
    /// The probe's images per pass and its (real) labels.
    probe: Vec<Vec<f32>>,
    probe_labels: Vec<u32>,
}

impl Feed {
    fn new(splits: &Splits, s: &Shapes, seed: u64) -> Result<Feed> {
        splits.train.check_dims(s.dims)?;
        splits.val.check_dims(s.dims)?;
        ensure!(
            !splits.train.is_empty(),
            "measure: the training split is empty"
        );
        let mut rng = verify::rng(seed);
        let order = splits.train.order(Order::Shuffled { seed, epoch: 0 });
        let mut labels = vec![0u32; s.bn_batch];
        let bn = (0..s.bn_batches)
            .map(|t| {
                let idx: Vec<usize> = (0..s.bn_batch)
                    .map(|i| order[(t * s.bn_batch + i) % order.len()])
                    .collect();
                let mut px = vec![0f32; s.bn_batch * s.dims.len()];
                splits
                    .train
                    .fill_batch(&idx, &splits.norm, None, &mut rng, &mut px, &mut labels);
                px
            })
            .collect();
        let e = s.eval_batch;
        // One pass of `e` images of `split` (rows past the real ones
        // padded): pixels, labels, real rows.
        let mut pass = |split: &Dataset, idx: &[usize]| {
            let mut px = vec![0f32; e * s.dims.len()];
            let mut lb = vec![0u32; e];
            let real = split.fill_batch(idx, &splits.norm, None, &mut rng, &mut px, &mut lb);
            (px, lb, real)
        };
        let mut val_labels = Vec::with_capacity(s.n);
        let eval = (0..s.eval_passes())
            .map(|p| {
                let idx: Vec<usize> = (p * e..((p + 1) * e).min(s.n)).collect();
                let (px, mut lb, real) = pass(&splits.val, &idx);
                val_labels.extend(&lb[..real]);
                lb[real..].fill(IGNORE);
                (px, lb)
            })
            .collect();
        // The probe's images follow the statistics batches in the same
        // order (the split's first images again if it runs out).
        let first = s.bn_batches * s.bn_batch;
        let mut probe_labels = Vec::with_capacity(s.probe);
        let probe = (0..s.probe_passes())
            .map(|p| {
                let idx: Vec<usize> = (p * e..((p + 1) * e).min(s.probe))
                    .map(|i| order[(first + i) % order.len()])
                    .collect();
                let (px, lb, real) = pass(&splits.train, &idx);
                probe_labels.extend(&lb[..real]);
                px
            })
            .collect();
        Ok(Feed {
            bn,
            eval,
            val_labels,
            probe,
            probe_labels,
        })
    }
}

/// Where a measurement's data goes: a GPU plan or the CPU reference.
trait Sink {
    fn f32(&mut self, t: T, v: &[f32]);
    fn u32(&mut self, t: T, v: &[u32]);
}

struct GpuSink<'a>(&'a Plan, &'a Gpu);

impl Sink for GpuSink<'_> {
    fn f32(&mut self, t: T, v: &[f32]) {
        self.0.write(self.1, t, v);
    }
    fn u32(&mut self, t: T, v: &[u32]) {
        self.0.write_u32(self.1, t, v);
    }
}

impl Sink for CpuExec {
    fn f32(&mut self, t: T, v: &[f32]) {
        self.write(t, v);
    }
    fn u32(&mut self, t: T, v: &[u32]) {
        self.write_u32(t, v);
    }
}

fn write_feed(sink: &mut impl Sink, p: &Passes, feed: &Feed) {
    for (&x, v) in p.bn_images.iter().zip(&feed.bn) {
        if let Some(x) = x {
            sink.f32(x, v);
        }
    }
    for (&(x, labels, _), (px, lb)) in p.eval.iter().zip(&feed.eval) {
        if let Some(x) = x {
            sink.f32(x, px);
        }
        sink.u32(labels, lb);
    }
    for (&(x, _), px) in p.probe.iter().zip(&feed.probe) {
        if let Some(x) = x {
            sink.f32(x, px);
        }
    }
}

/// The accuracy from the correct count read back, refusing a non-finite
/// one (some logit was not finite).
fn accuracy(correct: f32, n: usize, normal: &Cell, reduce: &Cell) -> Result<f32> {
    ensure!(
        correct.is_finite(),
        "measuring normal cell {normal:?} / reduction cell {reduce:?}: \
         the sub-network's logits are not finite"
    );
    Ok(correct / n as f32)
}

/// The logits of the measured images (padding rows dropped), row-major.
fn logits_of(rows: Vec<Vec<f32>>, n: usize, classes: usize) -> Vec<f32> {
    let mut all: Vec<f32> = rows.into_iter().flatten().collect();
    all.truncate(n * classes);
    all
}

/// The measurement configuration of the supernet: without `none`, BN
/// batches of `bn_batch`.
fn measure_config(cfg: &SupernetConfig, s: &Shapes, splits: &Splits) -> Result<SupernetConfig> {
    cfg.validate().map_err(|e| anyhow!("supernet: {e}"))?;
    ensure!(
        splits.train.classes <= cfg.classes && splits.val.classes <= cfg.classes,
        "measure: the data has {} classes, the supernet classifies {}",
        splits.train.classes.max(splits.val.classes),
        cfg.classes
    );
    Ok(SupernetConfig {
        op_set: measure_op_set(&cfg.op_set),
        batch: s.bn_batch,
        ..cfg.clone()
    })
}

// ---- the mask plan.

/// One recorded plan of the masked supernet (module comment): measuring a
/// cell pair writes its masks, submits once and reads one number.
pub struct OneShot {
    op_set: OpSet,
    classes: usize,
    g: Graph,
    plan: Plan,
    passes: Passes,
    masks: MaskInput,
    /// Host copies of what was uploaded, for the CPU reference.
    weights: Vec<(T, Vec<f32>)>,
    feed: Feed,
    shapes: Shapes,
    /// Seconds spent building the graph and the plan and uploading.
    pub build_seconds: f64,
}

impl OneShot {
    /// The mask plan for `weights`, measuring on `splits` as `mc` says.
    pub fn new(
        gpu: &Gpu,
        weights: &SupernetWeights,
        splits: &Splits,
        mc: &MeasureConfig,
    ) -> Result<OneShot> {
        let start = Instant::now();
        let s = Shapes::new(mc, weights.config.dims, splits.val.len())?;
        let cfg = measure_config(&weights.config, &s, splits)?;
        let feed = Feed::new(splits, &s, mc.seed)?;
        let mut g = Graph::new();
        let masks = mask_input(&mut g, cfg.op_set.len());
        let passes = build_passes(&mut g, &s, images(&s), |g, st, x| {
            supernet::forward(g, st, &cfg, x, &masks.normal, &masks.reduce)
        });
        let weights = passes
            .params
            .iter()
            .map(|&t| {
                let d = g.def(t);
                Ok((t, weights.value(&d.name, &d.shape)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let plan = Plan::new(gpu, &g)?;
        let mut sink = GpuSink(&plan, gpu);
        for (t, v) in &weights {
            sink.f32(*t, v);
        }
        write_feed(&mut sink, &passes, &feed);
        gpu.sync()?;
        Ok(OneShot {
            op_set: cfg.op_set,
            classes: cfg.classes,
            g,
            plan,
            passes,
            masks,
            weights,
            feed,
            shapes: s,
            build_seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// [`OneShot::new`] on the run directory of S1 (`supernet.safetensors`,
    /// `s1_config.json`).
    pub fn from_run_dir(
        gpu: &Gpu,
        run_dir: &Path,
        splits: &Splits,
        mc: &MeasureConfig,
    ) -> Result<OneShot> {
        OneShot::new(gpu, &SupernetWeights::load(run_dir)?, splits, mc)
    }

    /// The validation accuracy in [0, 1] of the sub-network of this cell
    /// pair (one submit, one read).
    /// A non-finite result is an error, after which the running
    /// statistics are reset (pass 1 would otherwise keep 0 · NaN).
    pub fn measure(&mut self, gpu: &Gpu, normal: &Cell, reduce: &Cell) -> Result<f32> {
        self.run(gpu, normal, reduce)?;
        let values = self.plan.read_many(gpu, &readback(&self.passes))?;
        reading(
            &values,
            &self.shapes,
            &self.feed,
            self.classes,
            normal,
            reduce,
        )
        .inspect_err(|_| {
            for &t in &self.passes.states {
                let init = self.g.def(t).init.as_ref().expect("statistics start set");
                self.plan.write(gpu, t, init);
            }
        })
    }

    /// [`OneShot::measure`] and the logits of the measured images
    /// ([n_val, classes] row-major; extra reads, for tests).
    pub fn measure_logits(
        &mut self,
        gpu: &Gpu,
        normal: &Cell,
        reduce: &Cell,
    ) -> Result<(f32, Vec<f32>)> {
        let acc = self.measure(gpu, normal, reduce)?;
        let rows = self
            .passes
            .eval
            .iter()
            .map(|&(_, _, l)| self.plan.read(gpu, l))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((acc, logits_of(rows, self.shapes.n, self.classes)))
    }

    /// The same measurement on the CPU reference executor (same graph,
    /// same data): accuracy and logits.
    pub fn measure_cpu(&self, normal: &Cell, reduce: &Cell) -> Result<(f32, Vec<f32>)> {
        let mut exec = CpuExec::new(&self.g);
        for (t, v) in &self.weights {
            exec.write(*t, v);
        }
        write_feed(&mut exec, &self.passes, &self.feed);
        self.write_masks(&mut exec, normal, reduce)?;
        exec.step(&self.g);
        let values: Vec<Vec<f32>> = readback(&self.passes)
            .iter()
            .map(|&t| exec.read(t).to_vec())
            .collect();
        let acc = reading(
            &values,
            &self.shapes,
            &self.feed,
            self.classes,
            normal,
            reduce,
        )?;
        let rows = self
            .passes
            .eval
            .iter()
            .map(|&(_, _, l)| exec.read(l).to_vec())
            .collect();
        Ok((acc, logits_of(rows, self.shapes.n, self.classes)))
    }

    /// Validation images each measurement counts.
    pub fn n_val(&self) -> usize {
        self.shapes.n
    }
    /// The ops a cell may use (the supernet's, without `none`).
    pub fn op_set(&self) -> &OpSet {
        &self.op_set
    }
    /// Kernels dispatched per measurement.
    pub fn dispatches(&self) -> usize {
        self.plan.dispatches()
    }

    fn write_masks(&self, sink: &mut impl Sink, normal: &Cell, reduce: &Cell) -> Result<()> {
        let v = mask_values(normal, reduce, &self.op_set).map_err(anyhow::Error::msg)?;
        sink.f32(self.masks.all, &v);
        Ok(())
    }

    fn run(&mut self, gpu: &Gpu, normal: &Cell, reduce: &Cell) -> Result<()> {
        self.write_masks(&mut GpuSink(&self.plan, gpu), normal, reduce)?;
        self.plan.step(gpu)?;
        Ok(())
    }
}

// ---- the discrete plan.

/// One candidate of the supernet (`none` excluded) as the sub-network
/// computes it: pools followed by a BN, batch norm without affine.
fn candidate(g: &mut Graph, st: &mut ParamStore, op: OpKind, x: T, c: usize, stride: usize) -> T {
    let y = cellnet::candidate_op(g, st, op, x, c, stride, false);
    match op {
        OpKind::AvgPool3x3 | OpKind::MaxPool3x3 => layers::batchnorm(g, st, "bn", y, false),
        _ => y,
    }
}

/// A discrete cell with the supernet's names (`b{j}_in{i}.{op}`): each
/// block O1(x_I1) + O2(x_I2), two identical slots computed once and
/// doubled (one supernet candidate, so one set of statistics); the output
/// concatenates the cell's blocks.
pub(crate) fn discrete_cell(g: &mut Graph, st: &mut ParamStore, io: CellIo, cell: &Cell) -> T {
    let c = io.channels;
    let mut states = io.inputs.to_vec();
    for (j, block) in cell.blocks.iter().enumerate() {
        let slot = |g: &mut Graph, st: &mut ParamStore, s: usize| {
            let (i, op) = (block.inputs[s], block.ops[s]);
            let stride = if io.reduction && i < 2 { 2 } else { 1 };
            let x = states[i];
            st.scoped(&format!("b{j}_in{i}"), |st| {
                st.scoped(op.name(), |st| candidate(g, st, op, x, c, stride))
            })
        };
        let a = slot(g, st, 0);
        let out = if block.inputs[0] == block.inputs[1] && block.ops[0] == block.ops[1] {
            g.add(a, a)
        } else {
            let b = slot(g, st, 1);
            g.add(a, b)
        };
        states.push(out);
    }
    match &states[2..] {
        [only] => *only,
        outs => g.concat(outs),
    }
}

/// What every cell's network computes alike before its first cell
/// ([`cellnet::Invariant`]: the stem and the preprocessing that reads it),
/// for every pass of a measurement, computed once on one device from the
/// shared weights. Each cell's plan then reads these buffers where they lie
/// (`Plan::with_bound_inputs`): the same kernels on the same values as
/// computing them per cell, so the same bits, without the cost — on
/// lavapipe about a third of a one-block cell's measurement (BENCHMARKS.md,
/// "Twentieth pass").
struct Prefix {
    /// `Gpu::id` of the device holding it.
    device: u64,
    /// Per pass, in `pass_list` order: the stem's output, then each
    /// preprocessed input, each with its shape and buffer.
    passes: Vec<PrefixPass>,
}

/// A tensor a [`Prefix`] keeps: its shape and buffer.
type Held = (Vec<usize>, Buf);

struct PrefixPass {
    stem: Held,
    pre: Vec<((usize, usize), Held)>,
}

/// At most this many devices' prefixes are kept (S2 measures on up to 8).
const PREFIXES: usize = 8;

/// The most a device's [`Prefix`] may hold; a measurement whose prefix
/// would be larger computes it per cell (same bits, its plan's memory
/// shared by lifetime). The quick preset's takes 28 MB, `paper`'s ~380 MB.
const PREFIX_BYTES: u64 = 512 << 20;

/// The prefix's graph: every pass's images through the stem and the
/// preprocessing that reads it, all pinned. With its parameters and, per
/// pass, the images input and the tensors computed.
struct PrefixGraph {
    g: Graph,
    params: Vec<T>,
    runs: Vec<(T, cellnet::Invariant)>,
}

impl PrefixGraph {
    fn new(cfg: &SupernetConfig, s: &Shapes) -> PrefixGraph {
        let sk = cfg.skeleton();
        let mut g = Graph::new();
        let mut st = ParamStore::new(0);
        st.reuse = true;
        let mut runs = Vec::new();
        for (name, batch, kind) in pass_list(s) {
            let x = images_input(&mut g, s, &name, batch);
            let inv = in_pass(&mut g, &mut st, kind, |g, st| {
                cellnet::invariant(g, st, &sk, x)
            });
            g.pin(inv.stem);
            for &(_, t) in &inv.pre {
                g.pin(t);
            }
            runs.push((x, inv));
        }
        fuse_measurement(&mut g);
        PrefixGraph {
            g,
            params: st.params,
            runs,
        }
    }

    /// Bytes of the tensors a [`Prefix`] keeps.
    fn kept_bytes(&self) -> u64 {
        let pre = |inv: &cellnet::Invariant| {
            std::iter::once(inv.stem)
                .chain(inv.pre.iter().map(|&(_, t)| t))
                .map(|t| self.g.len(t) as u64 * 4)
                .sum::<u64>()
        };
        self.runs.iter().map(|(_, inv)| pre(inv)).sum()
    }
}

impl Prefix {
    fn compute(
        gpu: &Gpu,
        cfg: &SupernetConfig,
        weights: &SupernetWeights,
        s: &Shapes,
        feed: &Feed,
    ) -> Result<Prefix> {
        let PrefixGraph { g, params, runs } = PrefixGraph::new(cfg, s);
        let plan = Plan::new(gpu, &g)?;
        for &t in &params {
            let d = g.def(t);
            plan.write(gpu, t, &weights.value(&d.name, &d.shape)?);
        }
        let images = feed
            .bn
            .iter()
            .chain(&feed.probe)
            .chain(feed.eval.iter().map(|(px, _)| px));
        for ((x, _), px) in runs.iter().zip(images) {
            plan.write(gpu, *x, px);
        }
        plan.step(gpu)?;
        // The plan may go: its pinned results own their buffers.
        let held = |t: T| -> Held { (g.def(t).shape.clone(), plan.buf(t).clone()) };
        let passes = runs
            .iter()
            .map(|(_, inv)| PrefixPass {
                stem: held(inv.stem),
                pre: inv.pre.iter().map(|&(at, t)| (at, held(t))).collect(),
            })
            .collect();
        Ok(Prefix {
            device: gpu.id,
            passes,
        })
    }
}

/// The sub-network alone, built, planned and uploaded per cell pair
/// (module comment); the same measurement as [`OneShot`].
#[derive(Clone)]
pub struct OneShotDiscrete {
    cfg: SupernetConfig,
    weights: SupernetWeights,
    mc: MeasureConfig,
    shapes: Shapes,
    feed: Feed,
    /// Whether each cell's network starts from the [`Prefix`] of its device:
    /// true unless the prefix would exceed `PREFIX_BYTES`; false computes it
    /// per cell (tests compare the two).
    pub reuse_prefix: bool,
    /// The prefixes computed so far, one per device, shared by clones.
    prefixes: std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<Prefix>>>>,
    /// Seconds of the last measurement spent building the graph and the
    /// plan and uploading, and running.
    pub last_build_seconds: f64,
    pub last_run_seconds: f64,
}

impl OneShotDiscrete {
    pub fn new(
        weights: SupernetWeights,
        splits: &Splits,
        mc: &MeasureConfig,
    ) -> Result<OneShotDiscrete> {
        let s = Shapes::new(mc, weights.config.dims, splits.val.len())?;
        let cfg = measure_config(&weights.config, &s, splits)?;
        ensure!(
            cfg.partial_channels == 1,
            "{}: partial_channels {}: a partial-channel supernet has no full-width \
             discrete sub-network; measure it with the mask plan (OneShot)",
            weights.origin,
            cfg.partial_channels
        );
        let feed = Feed::new(splits, &s, mc.seed)?;
        let reuse_prefix = PrefixGraph::new(&cfg, &s).kept_bytes() <= PREFIX_BYTES;
        Ok(OneShotDiscrete {
            cfg,
            weights,
            mc: mc.clone(),
            shapes: s,
            reuse_prefix,
            feed,
            prefixes: Default::default(),
            last_build_seconds: 0.0,
            last_run_seconds: 0.0,
        })
    }

    /// This device's [`Prefix`], computed on first use.
    fn prefix(&self, gpu: &Gpu) -> Result<std::sync::Arc<Prefix>> {
        let find = || {
            let held = self.prefixes.lock().expect("prefix cache");
            held.iter().find(|p| p.device == gpu.id).cloned()
        };
        if let Some(p) = find() {
            return Ok(p);
        }
        // Computed unlocked: other devices' lanes go on meanwhile.
        let p = std::sync::Arc::new(Prefix::compute(
            gpu,
            &self.cfg,
            &self.weights,
            &self.shapes,
            &self.feed,
        )?);
        let mut held = self.prefixes.lock().expect("prefix cache");
        if held.len() == PREFIXES {
            held.remove(0);
        }
        held.push(p.clone());
        Ok(p)
    }

    /// The validation accuracy in [0, 1] of the sub-network of this cell pair.
    pub fn measure(&mut self, gpu: &Gpu, normal: &Cell, reduce: &Cell) -> Result<f32> {
        Ok(self.run(gpu, None, normal, reduce, false)?.0)
    }

    /// The measurement of one cell used for both kinds, as S2 measures:
    /// with `fine_tune_steps`, first that many SGD steps of the cell's
    /// sub-network on `splits`' training images (the same batches for
    /// every cell), on a copy of the shared weights.
    pub fn measure_cell(&mut self, gpu: &Gpu, splits: &Splits, cell: &Cell) -> Result<f32> {
        if self.mc.fine_tune_steps == 0 {
            return self.measure(gpu, cell, cell);
        }
        let start = Instant::now();
        let tuned = super::paths::fine_tune(gpu, &self.weights, splits, cell, &self.mc)?;
        let tune_s = start.elapsed().as_secs_f64();
        let acc = self.run(gpu, Some(&tuned), cell, cell, false)?.0;
        self.last_run_seconds += tune_s;
        Ok(acc)
    }

    /// [`OneShotDiscrete::measure`] and the logits of the measured images.
    pub fn measure_logits(
        &mut self,
        gpu: &Gpu,
        normal: &Cell,
        reduce: &Cell,
    ) -> Result<(f32, Vec<f32>)> {
        self.run(gpu, None, normal, reduce, true)
    }

    /// Where one measurement's time goes (`Plan::profile`): the cell
    /// pair's plan, built and fed as [`OneShotDiscrete::measure`] builds it.
    pub fn profile(
        &self,
        gpu: &Gpu,
        normal: &Cell,
        reduce: &Cell,
    ) -> Result<Vec<crate::graph::plan::ProfileRow>> {
        let (plan, _) = self.build(gpu, None, normal, reduce)?;
        plan.step(gpu)?; // warm-up
        Ok(plan.profile(gpu)?)
    }

    /// The sub-network's plan for this cell pair, its weights uploaded
    /// and the images written.
    fn build(
        &self,
        gpu: &Gpu,
        weights: Option<&SupernetWeights>,
        normal: &Cell,
        reduce: &Cell,
    ) -> Result<(Plan, Passes)> {
        // The masks are not used here; making them validates both cells
        // with the same errors as the mask plan.
        mask_values(normal, reduce, &self.cfg.op_set).map_err(anyhow::Error::msg)?;
        // Fine-tuned weights are the cell's own: no prefix to share.
        let prefix = match weights {
            None if self.reuse_prefix => Some(self.prefix(gpu)?),
            _ => None,
        };
        let weights = weights.unwrap_or(&self.weights);
        let sk = self.cfg.skeleton();
        let mut g = Graph::new();
        let cell_of = |g: &mut Graph, st: &mut ParamStore, io: CellIo| {
            let cell = if io.reduction { reduce } else { normal };
            discrete_cell(g, st, io, cell)
        };
        let (passes, plan) = match prefix {
            None => {
                let passes =
                    build_passes(&mut g, &self.shapes, images(&self.shapes), |g, st, x| {
                        cellnet::network(g, st, &sk, x, cell_of)
                    });
                (passes, Plan::new(gpu, &g)?)
            }
            Some(prefix) => {
                let mut bound = Vec::new();
                let mut at = prefix.passes.iter();
                let begin = |g: &mut Graph, name: &str, _batch: usize| {
                    let p = at.next().expect("a prefix per pass");
                    let mut input = |what: &str, (shape, buf): &Held| {
                        let t = g.input(&format!("{name}.{what}"), shape);
                        bound.push((t, buf.clone()));
                        t
                    };
                    let stem = input("stem", &p.stem);
                    let pre = p
                        .pre
                        .iter()
                        .map(|&((k, i), ref held)| {
                            ((k, i), input(&format!("cell{k}.pre{i}"), held))
                        })
                        .collect();
                    (None, cellnet::Invariant { stem, pre })
                };
                let passes = build_passes(&mut g, &self.shapes, begin, |g, st, inv| {
                    let start = cellnet::Start::Invariant(&inv);
                    cellnet::network_from(g, st, &sk, start, |_| [true, true], cell_of)
                });
                (passes, Plan::with_bound_inputs(gpu, &g, &bound)?)
            }
        };
        let mut sink = GpuSink(&plan, gpu);
        for &t in &passes.params {
            let d = g.def(t);
            sink.f32(t, &weights.value(&d.name, &d.shape)?);
        }
        write_feed(&mut sink, &passes, &self.feed);
        Ok((plan, passes))
    }

    fn run(
        &mut self,
        gpu: &Gpu,
        weights: Option<&SupernetWeights>,
        normal: &Cell,
        reduce: &Cell,
        logits: bool,
    ) -> Result<(f32, Vec<f32>)> {
        let start = Instant::now();
        let (plan, passes) = self.build(gpu, weights, normal, reduce)?;
        let built = Instant::now();
        self.last_build_seconds = (built - start).as_secs_f64();
        plan.step(gpu)?;
        let values = plan.read_many(gpu, &readback(&passes))?;
        let acc = reading(
            &values,
            &self.shapes,
            &self.feed,
            self.cfg.classes,
            normal,
            reduce,
        )?;
        self.last_run_seconds = built.elapsed().as_secs_f64();
        let rows = if logits {
            passes
                .eval
                .iter()
                .map(|&(_, _, l)| plan.read(gpu, l))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        Ok((acc, logits_of(rows, self.shapes.n, self.cfg.classes)))
    }
}

/// How many devices S2 measures cells on at once: `GRADNAS_MEASURE_LANES`
/// (1 to 8) where set, else 2 on a CPU adapter and 1 on a GPU. A CPU
/// adapter's device leaves its cores idle between dispatches (lavapipe
/// hands every dispatch to its worker threads and waits, ~30 µs, and
/// splits small dispatches unevenly), and a second device's cells fill
/// that time: 1.1–1.3× the cells per second on 2 cores (BENCHMARKS.md,
/// "Sixteenth pass"). A GPU's one queue is kept busy by
/// one device.
pub fn measure_lanes(gpu: &Gpu) -> Result<usize> {
    match std::env::var("GRADNAS_MEASURE_LANES") {
        Ok(v) if !v.is_empty() => match v.parse::<usize>() {
            Ok(n) if (1..=8).contains(&n) => Ok(n),
            _ => bail!("GRADNAS_MEASURE_LANES={v}: expected a whole number from 1 to 8"),
        },
        _ => Ok(if gpu.is_cpu() { 2 } else { 1 }),
    }
}

/// The devices beside `gpu` that [`measure_cells`] measures on: `lanes − 1`
/// more on its adapter.
pub fn extra_lanes(gpu: &Gpu, lanes: usize) -> Result<Vec<Gpu>> {
    (1..lanes)
        .map(|_| {
            gpu.another().with_context(|| {
                format!(
                    "a second device on {} for S2's measurements \
                     (GRADNAS_MEASURE_LANES=1 measures on one)",
                    gpu.describe()
                )
            })
        })
        .collect()
}

/// `cells` measured as [`OneShotDiscrete::measure_cell`] measures each,
/// spread over the devices `gpus` (each cell on whichever device is free
/// next, each device with its own copy of `m`); `done(i, accuracy)` on the
/// calling thread as each ends, the results in `cells`' order. Devices of
/// one adapter run the same kernels on the same values, so the results
/// are those of one device measuring the cells in turn (tests/measure.rs).
/// The first error by cell stops the rest.
pub fn measure_cells(
    gpus: &[&Gpu],
    m: &mut OneShotDiscrete,
    splits: &Splits,
    cells: &[Cell],
    mut done: impl FnMut(usize, f32) -> Result<()>,
) -> Result<Vec<f32>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let Some(&first) = gpus.first() else {
        bail!("measure_cells: no device to measure on");
    };
    let measure_one = |m: &mut OneShotDiscrete, gpu: &Gpu, cell: &Cell| {
        if crate::progress::interrupted() {
            return Err(crate::progress::stopped("S2"));
        }
        m.measure_cell(gpu, splits, cell)
    };
    if gpus.len() == 1 || cells.len() <= 1 {
        let mut out = Vec::with_capacity(cells.len());
        for (i, c) in cells.iter().enumerate() {
            let a = measure_one(m, first, c)?;
            done(i, a)?;
            out.push(a);
        }
        return Ok(out);
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<f32>)>();
    let mut out: Vec<Option<f32>> = vec![None; cells.len()];
    let mut failed: Option<(usize, anyhow::Error)> = None;
    std::thread::scope(|scope| {
        for &gpu in gpus {
            let (tx, next, stop) = (tx.clone(), &next, &stop);
            let mut mine = m.clone();
            let measure_one = &measure_one;
            scope.spawn(move || {
                while !stop.load(Relaxed) {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= cells.len() {
                        break;
                    }
                    let r = measure_one(&mut mine, gpu, &cells[i]);
                    if tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            match r.and_then(|a| done(i, a).map(|()| a)) {
                Ok(a) => out[i] = Some(a),
                Err(e) => {
                    stop.store(true, Relaxed);
                    if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                        failed = Some((i, e));
                    }
                }
            }
        }
    });
    if let Some((_, e)) = failed {
        return Err(e);
    }
    out.into_iter()
        .enumerate()
        .map(|(i, a)| a.ok_or_else(|| anyhow::anyhow!("measure_cells: cell {i} was not measured")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Few-shot settings are checked only when fine-tuning is on, and
    /// then name the field.
    #[test]
    fn fine_tune_settings_are_checked() {
        let off = MeasureConfig {
            fine_tune_steps: 0,
            fine_tune_batch: 1,
            ..MeasureConfig::default()
        };
        assert_eq!(off.validate(), Ok(()));
        for (mc, what) in [
            (
                MeasureConfig {
                    fine_tune_steps: 4,
                    fine_tune_batch: 1,
                    ..MeasureConfig::default()
                },
                "fine_tune_batch 1",
            ),
            (
                MeasureConfig {
                    fine_tune_steps: 4,
                    fine_tune_lr: 0.0,
                    ..MeasureConfig::default()
                },
                "fine_tune_lr 0",
            ),
        ] {
            let e = mc.validate().unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    /// A prefix keeps its passes' stem and preprocessed inputs: 28 channels
    /// of 28×28 for the quick preset's 2 × 32 + 256 images, 96 for `paper`'s
    /// 4 × 64 + 1,000 (width 16); past `PREFIX_BYTES` it is not kept.
    #[test]
    fn the_prefix_is_kept_within_its_budget() {
        let quick = crate::bench::quick_supernet();
        let shapes = |bn_batches, bn_batch, n, eval_batch| Shapes {
            dims: quick.dims,
            bn_batches,
            bn_batch,
            n,
            eval_batch,
            probe: 0,
        };
        let plane = 28 * 28 * 4;
        let bytes = PrefixGraph::new(&quick, &shapes(2, 32, 256, 64)).kept_bytes();
        assert_eq!(bytes, 28 * plane * (2 * 32 + 256));
        let paper = SupernetConfig {
            width: 16,
            depth: 8,
            ..quick.clone()
        };
        let bytes = PrefixGraph::new(&paper, &shapes(4, 64, 1000, 100)).kept_bytes();
        assert_eq!(bytes, 96 * plane * (4 * 64 + 1000));
        assert!(bytes <= PREFIX_BYTES);
        let big = PrefixGraph::new(&paper, &shapes(4, 64, 5000, 100)).kept_bytes();
        assert!(big > PREFIX_BYTES, "{big}");
    }

    /// After the statistics passes, batch norm's running statistics are the
    /// plain mean of the batches' means and unbiased variances (momentum
    /// 1/t), whatever they held before.
    #[test]
    fn statistics_are_a_cumulative_average() {
        let s = Shapes {
            dims: Dims::new(2, 1, 3),
            bn_batches: 3,
            bn_batch: 4,
            n: 5,
            eval_batch: 5,
            probe: 0,
        };
        let mut g = Graph::new();
        let p = build_passes(&mut g, &s, images(&s), |g, st, x| {
            let y = layers::batchnorm(g, st, "bn", x, false);
            g.reshape(y, &[g.def(x).shape[0], 6])
        });
        assert_eq!(p.states.len(), 2, "running mean and variance");
        let mut exec = CpuExec::new(&g);
        exec.write(p.states[0], &[7.0, -7.0]);
        exec.write(p.states[1], &[9.0, 0.5]);
        let mut rng = verify::rng(4);
        let batches: Vec<Vec<f32>> = (0..3).map(|_| verify::randn(&mut rng, 4 * 6)).collect();
        for (&t, v) in p.bn_images.iter().zip(&batches) {
            exec.write(t.expect("passes of images"), v);
        }
        exec.step(&g);
        for ch in 0..2 {
            let (mut mean, mut var) = (0.0, 0.0);
            for b in &batches {
                let x: Vec<f64> = (0..4)
                    .flat_map(|n| (0..3).map(move |i| (n * 2 + ch) * 3 + i))
                    .map(|i| b[i] as f64)
                    .collect();
                let m = x.iter().sum::<f64>() / 12.0;
                mean += m / 3.0;
                var += x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 11.0 / 3.0;
            }
            let (rm, rv) = (exec.read(p.states[0])[ch], exec.read(p.states[1])[ch]);
            assert!((rm as f64 - mean).abs() < 1e-5, "mean {rm} vs {mean}");
            assert!((rv as f64 - var).abs() < 1e-5, "var {rv} vs {var}");
        }
    }
}
