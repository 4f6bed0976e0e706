//! Channel pruning by network slimming (Liu et al. 2017) for the discrete
//! network of a genotype: train with λ·Σ|γ| on the batch-norm scales
//! (`TrainConfig::l1_gamma`, built by [`l1_gamma`]), remove the channels
//! whose |γ| falls below one global threshold ([`plan`]), physically
//! ([`apply`]: smaller convolutions and batch norms, a smaller network to
//! build, not masks), then fine-tune (`train::train_from`).
//!
//! **Groups.** A channel that several layers write or read goes from all
//! of them at once. [`plan`] traces the evaluation graph channel by
//! channel: each convolution that mixes channels (all but the depthwise
//! ones) makes fresh channels; batch norm, ReLU, pools, the slice of a
//! FactorizedReduce, depthwise convolutions and global pooling carry their
//! input's channels; an add ties channel i of both addends; a
//! concatenation lines up its parts' channels; convolutions and the
//! classifier read them. One class of tied channels is one *group
//! channel*, the unit kept or removed. So the two ops of a block share
//! channels; a block whose op is identity or a pool shares them with the
//! input it passes on (and with everything else adding into either); the
//! halves of a FactorizedReduce are the first and last channels of its
//! block's; the cell's concatenation and the next cells' 1×1
//! preprocessing convolutions (and the classifier's input features, after
//! the last cell) read the block channels that remain; sep_conv's inner
//! channels (after `pw1`/`bn1`) are groups of their own.
//!
//! **Prunable.** A group channel written by at least one affine batch norm
//! and not an image channel: the stem's, pre0/pre1's (ReLU-conv-BN or
//! FactorizedReduce), each block's (the BN ending sep_conv, dil_conv,
//! conv_7x1_1x7 and a stride-2 FactorizedReduce) and sep_conv's inner ones
//! (`bn1`). Its score is the largest |γ| among the batch-norm channels
//! writing it: the max, not the sum, so a channel written by many layers
//! is not kept for their number, and it goes only when every writer scaled
//! it down. conv_7x1_1x7's inner channels (between the 1×7 and the 7×1,
//! no batch norm) have no score and are kept.
//!
//! **Choice.** The round(ratio · prunable) lowest-scored channels go (ties
//! broken by trace order), except that every channel-making convolution
//! keeps its best max(1, ⌈min_keep · width⌉) channels: no layer is left
//! with zero channels, and a layer whose scales all fell below the
//! threshold (a narrow one, whose γ the L1 term pulls down as fast as a
//! wide one's but which has fewer channels to spread the signal over) is
//! not cut to a one-channel bottleneck that kills the network (BENCHMARKS:
//! full Fashion-MNIST at ratio 0.6). The ratio reached falls short of the
//! one asked only when that many are protected.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};

use crate::data::Dims;
use crate::engine::Gpu;
use crate::graph::{Graph, Op, T};
use crate::models::{self, GenotypeModel, ModelSpec};
use crate::ops::layout::ConcatShape;
use crate::train::{Evaluator, ModelCard};

/// Weights and running statistics by graph name, as a model directory's
/// `model.safetensors` holds them.
pub type Tensors = HashMap<String, Vec<f32>>;

/// Which channels of a network go, made by [`plan`] for one model and
/// carried out by [`apply`].
#[derive(Debug, Clone)]
pub struct PrunePlan {
    /// The model the plan is for: [`apply`] refuses any other.
    pub model: GenotypeModel,
    /// The fraction of prunable channels asked to go.
    pub ratio: f32,
    /// Prunable group channels (see the module documentation).
    pub prunable: usize,
    /// Group channels removed: round(ratio · prunable), less the
    /// protected ones that would have left a layer empty.
    pub removed: usize,
    /// The largest score (|γ|) removed; None when nothing is.
    pub threshold: Option<f32>,
    /// The output channels each convolution that loses any keeps, by
    /// scope name, as indices into the model's current channels.
    pub keep: BTreeMap<String, Vec<usize>>,
    /// Every tensor that loses entries: per axis, the indices kept (None:
    /// the whole axis).
    pub slices: BTreeMap<String, Vec<Option<Vec<usize>>>>,
    /// Every weight and running statistic of the model, with its shape.
    pub shapes: BTreeMap<String, Vec<usize>>,
}

impl PrunePlan {
    /// The fraction of prunable channels removed.
    pub fn achieved_ratio(&self) -> f64 {
        self.removed as f64 / self.prunable.max(1) as f64
    }
}

/// The channels of a network, traced through its evaluation graph: ids of
/// channels tied into groups by union-find.
struct Trace {
    parent: Vec<usize>,
    /// Image channels: never removed.
    image: Vec<bool>,
    /// (channel, γ tensor name, index): the BN scales that score a channel.
    gammas: Vec<(usize, String, usize)>,
    /// Convolutions that make channels: scope name, output channels.
    producers: Vec<(String, Vec<usize>)>,
    /// Per weight or running statistic: the channels along each axis.
    axes: BTreeMap<String, Vec<Option<Vec<usize>>>>,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl Trace {
    fn fresh(&mut self, n: usize, image: bool) -> Vec<usize> {
        let first = self.parent.len();
        self.parent.extend(first..first + n);
        self.image.extend(std::iter::repeat_n(image, n));
        (first..first + n).collect()
    }
    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        // The lower id stays the root, so group order follows the trace.
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent[hi] = lo;
        }
    }
    fn roots(&mut self) -> Vec<usize> {
        (0..self.parent.len()).map(|i| self.find(i)).collect()
    }
}

/// The genotype network of a card, or an error naming what it is instead.
fn genotype_model(card: &ModelCard) -> Result<&GenotypeModel> {
    match &card.model {
        ModelSpec::Genotype(m) => Ok(m),
        other => bail!(
            "pruning works on genotype networks; {} is a built-in",
            other.name()
        ),
    }
}

/// Traces `model`'s channels on inputs of `dims` (the graph is built, not
/// run).
fn trace(model: &GenotypeModel, dims: Dims, classes: usize) -> Result<Trace, String> {
    let mut g = Graph::new();
    let images = g.input("images", &[1, dims.channels, dims.height, dims.width]);
    let net = models::build(&model.clone().into(), &mut g, images, classes, false, 0);
    let mut tr = Trace {
        parent: Vec::new(),
        image: Vec::new(),
        gammas: Vec::new(),
        producers: Vec::new(),
        axes: BTreeMap::new(),
        shapes: net
            .params
            .iter()
            .chain(&net.running)
            .map(|t| (g.def(*t).name.clone(), g.def(*t).shape.clone()))
            .collect(),
    };
    let mut ids: Vec<Option<Vec<usize>>> = vec![None; g.tensors.len()];
    ids[images.0] = Some(tr.fresh(dims.channels, true));
    let name = |t: T| g.def(t).name.clone();
    for node in &g.nodes {
        let (ins, outs) = (&node.inputs, &node.outputs);
        let x = ids[ins[0].0].clone().ok_or_else(|| {
            format!(
                "{:?} reads {}, whose channels are unknown",
                node.op,
                name(ins[0])
            )
        })?;
        let y = match &node.op {
            Op::Conv2d { s, bias, .. } => {
                // Weights [c_out, c_in / groups, kh, kw].
                if s.groups == 1 {
                    let y = tr.fresh(s.c_out, false);
                    let w = name(ins[1]);
                    let scope = w.strip_suffix(".weight").unwrap_or(&w).to_string();
                    tr.producers.push((scope, y.clone()));
                    let a = vec![Some(y.clone()), Some(x), None, None];
                    tr.axes.insert(name(ins[1]), a);
                    if *bias {
                        tr.axes.insert(name(ins[2]), vec![Some(y.clone())]);
                    }
                    y
                } else if s.groups == s.c_in && s.c_out == s.c_in {
                    // Depthwise: output channel c is input channel c filtered.
                    let a = vec![Some(x.clone()), None, None, None];
                    tr.axes.insert(name(ins[1]), a);
                    if *bias {
                        tr.axes.insert(name(ins[2]), vec![Some(x.clone())]);
                    }
                    x
                } else {
                    return Err(format!(
                        "{}: a grouped convolution ({} groups of {} channels) cannot be pruned",
                        name(ins[1]),
                        s.groups,
                        s.c_in
                    ));
                }
            }
            Op::BatchNormEval(s) => {
                for &t in &ins[1..] {
                    tr.axes.insert(name(t), vec![Some(x.clone())]);
                }
                if s.affine {
                    let gamma = name(ins[3]);
                    for (k, &c) in x.iter().enumerate() {
                        tr.gammas.push((c, gamma.clone(), k));
                    }
                }
                x
            }
            Op::Relu
            | Op::MaxPool(_)
            | Op::AvgPool(_)
            | Op::Slice { .. }
            | Op::GlobalAvgPool { .. } => x,
            Op::Add => {
                for t in &ins[1..] {
                    let b = ids[t.0].clone().ok_or_else(|| {
                        format!("add reads {}, whose channels are unknown", name(*t))
                    })?;
                    for (&p, &q) in x.iter().zip(&b) {
                        tr.union(p, q);
                    }
                }
                x
            }
            Op::Concat(_) => {
                let mut all = Vec::new();
                for t in ins {
                    all.extend(ids[t.0].clone().ok_or_else(|| {
                        format!("concat reads {}, whose channels are unknown", name(*t))
                    })?);
                }
                all
            }
            Op::Linear { .. } => {
                tr.axes.insert(name(ins[1]), vec![None, Some(x)]);
                // The logits: classes, never pruned, read by nothing here.
                continue;
            }
            other => return Err(format!("cannot trace channels through {other:?}")),
        };
        for &o in outs {
            ids[o.0] = Some(y.clone());
        }
    }
    Ok(tr)
}

/// Refuses a `ratio` outside [0, 1) or a `min_keep` outside [0, 1], the
/// error naming the setting (the config check and [`plan`] both use it).
pub fn check_settings(ratio: f32, min_keep: f32) -> Result<(), String> {
    if !(0.0..1.0).contains(&ratio) {
        return Err(format!(
            "ratio {ratio}: expected a fraction in [0, 1) of the prunable channels"
        ));
    }
    if !(0.0..=1.0).contains(&min_keep) {
        return Err(format!(
            "min_keep {min_keep}: expected a fraction in [0, 1] of each layer's channels"
        ));
    }
    Ok(())
}

/// Chooses the channels to remove from the network of `card` with weights
/// `tensors` (at least its batch-norm scales): `ratio` (in [0, 1)) of the
/// prunable group channels, the lowest |γ| first, each channel-making
/// layer keeping at least its best max(1, ⌈`min_keep` · width⌉). A card
/// already pruned is pruned further.
pub fn plan(card: &ModelCard, tensors: &Tensors, ratio: f32, min_keep: f32) -> Result<PrunePlan> {
    check_settings(ratio, min_keep).map_err(|e| anyhow::anyhow!("prune {e}"))?;
    let m = genotype_model(card)?;
    let mut tr = trace(m, card.dims, card.classes).map_err(anyhow::Error::msg)?;
    let roots = tr.roots();
    let n = roots.len();
    let mut score: Vec<Option<f32>> = vec![None; n];
    for (c, gamma, k) in &tr.gammas {
        let v = tensors
            .get(gamma)
            .with_context(|| format!("no values for batch-norm scale {gamma:?}"))?;
        let want = tr.shapes[gamma][0];
        if v.len() != want {
            bail!("{gamma}: {} values, the model has {want}", v.len());
        }
        let a = v[*k].abs();
        if !a.is_finite() {
            bail!("{gamma}[{k}] is {}: cannot rank channels by it", v[*k]);
        }
        let r = roots[*c];
        score[r] = Some(score[r].map_or(a, |s| s.max(a)));
    }
    let mut fixed = vec![false; n];
    for (c, &img) in tr.image.iter().enumerate() {
        fixed[roots[c]] |= img;
    }
    let prunable: Vec<bool> = (0..n)
        .map(|r| roots[r] == r && score[r].is_some() && !fixed[r])
        .collect();
    let count = prunable.iter().filter(|&&p| p).count();
    if count == 0 {
        bail!(
            "{}: no prunable channels (no affine batch norm writes a channel that can go)",
            card.model.name()
        );
    }
    // Each convolution keeps its best ⌈min_keep · width⌉ channels (at least
    // one), counting those that cannot go.
    let mut protected = vec![false; n];
    for (_, outs) in &tr.producers {
        let mut rs: Vec<usize> = outs.iter().map(|&c| roots[c]).collect();
        rs.sort_unstable();
        rs.dedup();
        let floor = ((min_keep as f64 * rs.len() as f64).ceil() as usize).clamp(1, rs.len());
        let fixed_here = rs.iter().filter(|&&r| !prunable[r]).count();
        let mut scored: Vec<usize> = rs.into_iter().filter(|&r| prunable[r]).collect();
        scored.sort_by(|&a, &b| {
            score[b]
                .unwrap()
                .total_cmp(&score[a].unwrap())
                .then(a.cmp(&b))
        });
        for &r in scored.iter().take(floor.saturating_sub(fixed_here)) {
            protected[r] = true;
        }
    }
    let mut candidates: Vec<usize> = (0..n).filter(|&r| prunable[r] && !protected[r]).collect();
    candidates.sort_by(|&a, &b| {
        score[a]
            .unwrap()
            .total_cmp(&score[b].unwrap())
            .then(a.cmp(&b))
    });
    let target = (ratio as f64 * count as f64).round() as usize;
    let chosen = &candidates[..target.min(candidates.len())];
    let mut removed = vec![false; n];
    for &r in chosen {
        removed[r] = true;
    }
    let kept = |c: &usize| !removed[roots[*c]];
    let keep = tr
        .producers
        .iter()
        .filter(|(_, outs)| !outs.iter().all(kept))
        .map(|(scope, outs)| {
            let k: Vec<usize> = (0..outs.len()).filter(|&i| kept(&outs[i])).collect();
            (scope.clone(), k)
        })
        .collect();
    let slices = tr
        .axes
        .iter()
        .filter(|(_, axes)| axes.iter().flatten().any(|a| !a.iter().all(kept)))
        .map(|(name, axes)| {
            let per_axis = axes
                .iter()
                .map(|a| {
                    a.as_ref()
                        .map(|a| (0..a.len()).filter(|&i| kept(&a[i])).collect())
                })
                .collect();
            (name.clone(), per_axis)
        })
        .collect();
    Ok(PrunePlan {
        model: m.clone(),
        ratio,
        prunable: count,
        removed: chosen.len(),
        threshold: chosen.last().map(|&r| score[r].unwrap()),
        keep,
        slices,
        shapes: std::mem::take(&mut tr.shapes),
    })
}

/// Carries out `plan` on the network of `card` with weights `tensors` (all
/// its weights and running statistics): the pruned network's card (the
/// kept channels recorded against the unpruned network's) and its
/// weights, each cut to the channels kept.
pub fn apply(
    card: &ModelCard,
    tensors: &Tensors,
    plan: &PrunePlan,
) -> Result<(ModelCard, Tensors)> {
    let m = genotype_model(card)?;
    if *m != plan.model {
        bail!(
            "the prune plan was made for another network than {}",
            card.model.name()
        );
    }
    if let Some(extra) = tensors.keys().find(|n| !plan.shapes.contains_key(*n)) {
        bail!("tensor {extra:?} is not one of {}'s", card.model.name());
    }
    let mut out = Tensors::new();
    for (name, shape) in &plan.shapes {
        let v = tensors
            .get(name)
            .with_context(|| format!("no values for {name:?} of {}", card.model.name()))?;
        let want: usize = shape.iter().product();
        if v.len() != want {
            bail!(
                "{name}: {} values, the model has {want} ({shape:?})",
                v.len()
            );
        }
        let v = match plan.slices.get(name) {
            Some(axes) => gather(v, shape, axes),
            None => v.clone(),
        };
        out.insert(name.clone(), v);
    }
    let mut model = m.clone();
    for (conv, kept) in &plan.keep {
        let now = m.keep.get(conv);
        let original = kept.iter().map(|&i| now.map_or(i, |o| o[i])).collect();
        model.keep.insert(conv.clone(), original);
    }
    model
        .validate()
        .map_err(|e| anyhow::anyhow!("the pruned network is inconsistent: {e}"))?;
    let card = ModelCard {
        model: model.into(),
        ..card.clone()
    };
    Ok((card, out))
}

/// `v` (of `shape`, row-major) cut to the kept indices of each axis.
fn gather(v: &[f32], shape: &[usize], axes: &[Option<Vec<usize>>]) -> Vec<f32> {
    let mut v = v.to_vec();
    let mut shape = shape.to_vec();
    for (a, kept) in axes.iter().enumerate() {
        let Some(kept) = kept else { continue };
        let outer: usize = shape[..a].iter().product();
        let inner: usize = shape[a + 1..].iter().product();
        let dim = shape[a];
        let mut cut = Vec::with_capacity(outer * kept.len() * inner);
        for o in 0..outer {
            for &k in kept {
                let at = (o * dim + k) * inner;
                cut.extend_from_slice(&v[at..at + inner]);
            }
        }
        v = cut;
        shape[a] = kept.len();
    }
    v
}

/// The output channels of every channel-making convolution of a pruned
/// genotype model, for its builders (`ParamStore::widths`): the kept count
/// of those in `keep`, the unpruned count of the others. All of them, since
/// a builder derives some widths from its input (sep_conv's inner
/// channels, conv_7x1_1x7's), which pruning may have narrowed while these
/// channels stay whole.
pub fn widths(m: &GenotypeModel) -> HashMap<String, usize> {
    if m.keep.is_empty() {
        return HashMap::new();
    }
    let mut base = m.clone();
    base.keep.clear();
    let tr = trace(&base, SHAPE_DIMS, 10).unwrap_or_else(|e| panic!("{e}"));
    tr.producers
        .into_iter()
        .map(|(name, outs)| {
            let c = m.keep.get(&name).map_or(outs.len(), Vec::len);
            (name, c)
        })
        .collect()
}

/// Inputs for a trace of channels alone: they do not depend on the image
/// size, and two reductions can halve this one.
const SHAPE_DIMS: Dims = Dims::new(1, 16, 16);

/// Checks the `keep` of a pruned genotype model against its unpruned
/// network: every entry names a channel-making convolution and lists
/// ascending distinct channels below its count, at least one; and tied
/// channels (added together) are kept or removed together, so the pruned
/// network builds. (`GenotypeModel::validate` calls this.)
pub fn check_keep(m: &GenotypeModel) -> Result<(), String> {
    let mut base = m.clone();
    base.keep.clear();
    let mut tr = trace(&base, SHAPE_DIMS, 10)?;
    let widths: HashMap<&str, usize> = tr
        .producers
        .iter()
        .map(|(s, outs)| (s.as_str(), outs.len()))
        .collect();
    for (name, kept) in &m.keep {
        let Some(&c) = widths.get(name.as_str()) else {
            return Err(format!(
                "{name} is not a channel-making convolution of this network \
                 (names look like cell0.pre1.conv or cell1.b0_in1.sep_conv_3x3.pw2)"
            ));
        };
        if kept.is_empty() {
            return Err(format!("{name} keeps no channel: keep at least one"));
        }
        if kept.windows(2).any(|w| w[0] >= w[1]) || kept[kept.len() - 1] >= c {
            return Err(format!(
                "{name}: {kept:?}: expected ascending distinct channel indices below {c}"
            ));
        }
    }
    let roots = tr.roots();
    let mut seen: HashMap<usize, (bool, &str, usize)> = HashMap::new();
    for (name, outs) in &tr.producers {
        let kept = m.keep.get(name);
        for (o, &c) in outs.iter().enumerate() {
            let k = kept.is_none_or(|v| v.binary_search(&o).is_ok());
            let (k0, n0, o0) = *seen.entry(roots[c]).or_insert((k, name, o));
            if k0 != k {
                let verb = |k: bool| if k { "keeps" } else { "drops" };
                return Err(format!(
                    "{n0} {} its channel {o0} but {name} {} its channel {o}, \
                     and the two are added together: keep or drop both",
                    verb(k0),
                    verb(k)
                ));
            }
        }
    }
    Ok(())
}

/// Network slimming's sparsity term for a training graph: λ·Σ|γ| over the
/// scale γ of every affine training-mode batch norm in `g` so far, a
/// scalar to add to the loss. Composed from existing ops: the γs
/// concatenated into one vector, its L1 loss against zeros (mean |γ|),
/// times the constant λ·n; the gradient reaching each γ is λ·sign(γ) (0
/// at γ = 0, the L1 subgradient the L1 loss uses).
pub fn l1_gamma(g: &mut Graph, lambda: f32) -> T {
    assert!(
        lambda.is_finite() && lambda >= 0.0,
        "l1_gamma {lambda}: expected a finite λ ≥ 0"
    );
    let gammas: Vec<T> = g
        .nodes
        .iter()
        .filter(|n| matches!(&n.op, Op::BatchNormTrain(s) if s.affine))
        .map(|n| n.inputs[1])
        .collect();
    assert!(
        !gammas.is_empty(),
        "l1_gamma: the network has no affine batch norm to make sparse"
    );
    let lens: Vec<usize> = gammas.iter().map(|t| g.len(*t)).collect();
    let total: usize = lens.iter().sum();
    // A flat concatenation: batch 1, one "channel" per element.
    let s = ConcatShape {
        batch: 1,
        channels: lens,
        h: 1,
        w: 1,
    };
    let all = g.temp("l1_gamma.gammas", &[total]);
    g.push(Op::Concat(s), gammas, vec![all]);
    let zeros = g.state("l1_gamma.zeros", &[total], None);
    let mean = g.l1_loss(all, zeros);
    let scale = g.state("l1_gamma.scale", &[1], Some(vec![lambda * total as f32]));
    g.mul(scale, mean)
}

/// `card`'s evaluation graph for one image, and its network.
fn eval_graph(card: &ModelCard) -> (Graph, models::Net) {
    let mut g = Graph::new();
    let d = card.dims;
    let x = g.input("images", &[1, d.channels, d.height, d.width]);
    let net = models::build(&card.model, &mut g, x, card.classes, false, card.seed);
    (g, net)
}

/// Trained scalars of `card`'s network (weights, BN γ and β; not the
/// running statistics).
pub fn params(card: &ModelCard) -> usize {
    let (g, net) = eval_graph(card);
    net.params.iter().map(|p| g.len(*p)).sum()
}

/// Multiply-adds of one image through `card`'s network: convolutions and
/// the classifier, the layers that hold weights (batch norm, pools, adds
/// and ReLUs are left out, as in the counts DARTS and network slimming
/// report).
pub fn flops(card: &ModelCard) -> u64 {
    let (g, _) = eval_graph(card);
    g.nodes
        .iter()
        .map(|node| match &node.op {
            Op::Conv2d { s, .. } => (s.c_out * s.oh() * s.ow() * s.cpg_in() * s.kh * s.kw) as u64,
            Op::Linear { s, .. } => (s.in_features * s.out_features) as u64,
            _ => 0,
        })
        .sum()
}

/// The weights and running statistics of an evaluator (e.g. a model
/// directory from `train::load`), read back from the GPU.
pub fn read_tensors(gpu: &Gpu, eval: &Evaluator) -> Result<Tensors> {
    eval.tensors
        .iter()
        .map(|(name, &t)| Ok((name.clone(), eval.plan().read(gpu, t)?)))
        .collect()
}

/// An evaluator of `card`'s network holding `tensors` (exactly its weights
/// and running statistics, by name): a pruned network to evaluate, or to
/// write as a model directory with `train::save`.
pub fn evaluator(
    gpu: &Gpu,
    card: &ModelCard,
    tensors: &Tensors,
    batch: usize,
) -> Result<Evaluator> {
    let eval = Evaluator::new(gpu, card, batch)?;
    if let Some(extra) = tensors.keys().find(|n| !eval.tensors.contains_key(*n)) {
        bail!("tensor {extra:?} is not one of {}'s", card.model.name());
    }
    for (name, &t) in &eval.tensors {
        let v = tensors
            .get(name)
            .with_context(|| format!("no values for {name:?} of {}", card.model.name()))?;
        let want = eval.graph().len(t);
        if v.len() != want {
            bail!("{name}: {} values, the model has {want}", v.len());
        }
        eval.plan().write(gpu, t, v);
    }
    Ok(eval)
}
