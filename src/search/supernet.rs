//! S1's supernet (METHOD.md S11–S13): a stack of cells of 5 blocks over the
//! PNAS cell space. Every edge (input i → block j) carries every op of the
//! op set; block j's output is x_j = Σ_i β_ij Σ_o softmax(α_ij)_o · o(x_i).
//! α and β are shared by all cells of the same kind (normal, reduction).

use serde::{Deserialize, Serialize};

use crate::data::Dims;
use crate::graph::{Graph, T};
use crate::nn::cellnet::{self, network, CellIo, Skeleton};
use crate::nn::layers;
use crate::nn::{Init, ParamStore};
use crate::space::{num_inputs, OpKind, OpSet, BLOCKS};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupernetConfig {
    /// Channels of the first cell (the patent's N).
    pub width: usize,
    /// Number of stacked cells (the patent's F).
    pub depth: usize,
    pub batch: usize,
    pub op_set: OpSet,
    pub dims: Dims,
    pub classes: usize,
    /// Stem channels = stem_multiplier × width (DARTS: 3).
    pub stem_multiplier: usize,
    /// Partial-channel mixing (PC-DARTS) with k = this: only 1/k of an
    /// edge's channels go through its mixed op, the rest bypass it. 1: off.
    #[serde(default = "one")]
    pub partial_channels: usize,
}

fn one() -> usize {
    1
}

impl SupernetConfig {
    /// Refuse impossible values before any work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.width < 2 || !self.width.is_multiple_of(2) {
            return Err(format!(
                "width {}: must be an even number ≥ 2 (FactorizedReduce halves it)",
                self.width
            ));
        }
        if self.depth == 0 {
            return Err("depth 0: need at least one cell".into());
        }
        if self.batch < 2 {
            return Err(format!(
                "batch {}: batch norm with batch statistics needs ≥ 2",
                self.batch
            ));
        }
        let k = self.partial_channels;
        if k == 0 || !self.width.is_multiple_of(k) {
            return Err(format!(
                "partial_channels {k}: must divide the width {} (1 = off)",
                self.width
            ));
        }
        if self.stem_multiplier == 0 || self.classes < 2 || self.dims.is_empty() {
            return Err("stem_multiplier, classes and input dims must be positive".into());
        }
        Ok(())
    }

    /// See [`cellnet::is_reduction`].
    pub fn is_reduction(&self, cell: usize) -> bool {
        cellnet::is_reduction(self.depth, cell)
    }

    /// The stack of cells this supernet is (BN without affine).
    pub fn skeleton(&self) -> Skeleton {
        Skeleton {
            width: self.width,
            depth: self.depth,
            stem_multiplier: self.stem_multiplier,
            classes: self.classes,
            affine: false,
        }
    }
}

/// α and β of one cell kind: per block j, α_j is [num_inputs(j), K] and β_j
/// is [num_inputs(j)] on the simplex.
#[derive(Debug, Clone)]
pub struct KindArch {
    pub alpha: Vec<T>,
    pub beta: Vec<T>,
}

#[derive(Debug, Clone)]
pub struct Arch {
    pub normal: KindArch,
    pub reduce: KindArch,
}

impl Arch {
    /// α ~ 1e-3·N(0, 1) as DARTS; β uniform over each block's inputs.
    pub fn new(g: &mut Graph, store: &mut ParamStore, op_set: &OpSet) -> Arch {
        let mut kind = |name: &str| {
            store.scoped("arch", |st| {
                st.scoped(name, |st| {
                    let (mut alpha, mut beta) = (Vec::new(), Vec::new());
                    for j in 0..BLOCKS {
                        let n = num_inputs(j);
                        alpha.push(st.param(
                            g,
                            &format!("alpha{j}"),
                            &[n, op_set.len()],
                            Init::Normal { std: 1e-3 },
                        ));
                        beta.push(st.param(
                            g,
                            &format!("beta{j}"),
                            &[n],
                            Init::Values(vec![1.0 / n as f32; n]),
                        ));
                    }
                    KindArch { alpha, beta }
                })
            })
        };
        let normal = kind("normal");
        let reduce = kind("reduce");
        Arch { normal, reduce }
    }
    pub fn alphas(&self) -> Vec<T> {
        self.normal
            .alpha
            .iter()
            .chain(&self.reduce.alpha)
            .copied()
            .collect()
    }
    pub fn betas(&self) -> Vec<T> {
        self.normal
            .beta
            .iter()
            .chain(&self.reduce.beta)
            .copied()
            .collect()
    }
}

/// The mixing of one cell kind: per block j, the [num_inputs(j), K]
/// weights β_j ⊙ softmax(α_j) (rows), and β_j itself (partial-channel
/// mixing weights the channels that bypass the ops by it).
pub struct KindMix {
    pub weights: Vec<T>,
    pub betas: Vec<T>,
}

pub fn mixing_weights(g: &mut Graph, k: &KindArch) -> KindMix {
    let weights = k
        .alpha
        .iter()
        .zip(&k.beta)
        .map(|(&a, &b)| {
            let s = g.softmax(a);
            g.row_scale(s, b)
        })
        .collect();
    KindMix {
        weights,
        betas: k.beta.clone(),
    }
}

/// The rows of a [rows, cols] tensor as [1, cols] tensors.
fn rows(g: &mut Graph, x: T) -> Vec<T> {
    let sh = g.def(x).shape.clone();
    let (r, c) = match sh[..] {
        [r, c] => (r, c),
        [r] => (r, 1),
        _ => panic!("rows of a tensor of shape {sh:?}"),
    };
    let flat = g.reshape(x, &[1, r * c]);
    g.split(flat, &vec![c; r])
}

/// One candidate op on one edge (BN without affine, as in the DARTS
/// supernet; pools get a BN after them as DARTS's MixedOp does; `none` is
/// zeros).
fn candidate(g: &mut Graph, st: &mut ParamStore, op: OpKind, x: T, c: usize, stride: usize) -> T {
    match op {
        OpKind::AvgPool3x3 | OpKind::MaxPool3x3 => {
            let y = cellnet::candidate_op(g, st, op, x, c, stride, false);
            layers::batchnorm(g, st, "bn", y, false)
        }
        OpKind::None_ => {
            let sh = g.def(x).shape.clone();
            let shape = [
                sh[0],
                c,
                sh[2] / stride + sh[2] % stride,
                sh[3] / stride + sh[3] % stride,
            ];
            g.state("zeros", &shape, None)
        }
        _ => cellnet::candidate_op(g, st, op, x, c, stride, false),
    }
}

/// The K candidates of edge (i → j) on `x`.
#[allow(clippy::too_many_arguments)]
fn edge_candidates(
    g: &mut Graph,
    st: &mut ParamStore,
    op_set: &OpSet,
    x: T,
    c: usize,
    stride: usize,
    i: usize,
    j: usize,
) -> Vec<T> {
    let edge = format!("b{j}_in{i}");
    op_set
        .ops()
        .iter()
        .map(|&op| {
            st.scoped(&edge, |st| {
                st.scoped(op.name(), |st| candidate(g, st, op, x, c, stride))
            })
        })
        .collect()
}

/// A cell's 5 mixed blocks over its preprocessed inputs, concatenated.
fn cell(g: &mut Graph, st: &mut ParamStore, io: CellIo, mix: &KindMix, cfg: &SupernetConfig) -> T {
    let (c, k, op_set) = (io.channels, cfg.partial_channels, &cfg.op_set);
    let mut states = io.inputs.to_vec();
    for j in 0..BLOCKS {
        let stride = |i: usize| if io.reduction && i < 2 { 2 } else { 1 };
        let out = if k == 1 {
            // All edges of the block in one weighted sum.
            let mut cands = Vec::with_capacity(num_inputs(j) * op_set.len());
            for (i, &x) in states.iter().enumerate() {
                cands.extend(edge_candidates(g, st, op_set, x, c, stride(i), i, j));
            }
            g.weighted_sum(&cands, mix.weights[j])
        } else {
            let w = rows(g, mix.weights[j]);
            let b = rows(g, mix.betas[j]);
            let edges: Vec<T> = (0..num_inputs(j))
                .map(|i| {
                    let x = states[i];
                    partial_edge(g, st, cfg, x, c, stride(i), (i, j), (w[i], b[i]))
                })
                .collect();
            edges[1..].iter().fold(edges[0], |acc, &e| g.add(acc, e))
        };
        states.push(out);
    }
    g.concat(&states[2..])
}

/// Partial-channel mixing on edge (i → j) (PC-DARTS): 1/k of the channels,
/// a slice that rotates with the edge so that every channel is searched
/// on some edges, go through the mixed op; the others bypass it (max-pooled
/// at stride 2) scaled by β_ij, and the op's output goes back in place of
/// its slice. PC-DARTS shuffles channels instead; rotating the slice keeps
/// the layout and serves the same purpose.
#[allow(clippy::too_many_arguments)]
fn partial_edge(
    g: &mut Graph,
    st: &mut ParamStore,
    cfg: &SupernetConfig,
    x: T,
    c: usize,
    stride: usize,
    (i, j): (usize, usize),
    (w, beta): (T, T),
) -> T {
    let part = c / cfg.partial_channels;
    let off = ((i + j) % cfg.partial_channels) * part;
    let sizes = [off, part, c - off - part];
    let kept: Vec<usize> = sizes.iter().copied().filter(|&n| n > 0).collect();
    let pieces = g.split(x, &kept);
    let mut pieces = pieces.into_iter();
    let mut out = Vec::new();
    for (slot, &n) in sizes.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let piece = pieces.next().expect("one piece per non-empty slice");
        out.push(if slot == 1 {
            let cands = edge_candidates(g, st, &cfg.op_set, piece, part, stride, i, j);
            g.weighted_sum(&cands, w)
        } else {
            let y = if stride == 2 {
                layers::max_pool_3x3(g, piece, 2)
            } else {
                piece
            };
            g.row_scale(y, beta)
        });
    }
    if out.len() == 1 {
        return out[0];
    }
    g.concat(&out)
}

/// The supernet's logits for `images` with mixing weights per cell kind.
pub fn forward(
    g: &mut Graph,
    st: &mut ParamStore,
    cfg: &SupernetConfig,
    images: T,
    normal: &KindMix,
    reduce: &KindMix,
) -> T {
    network(g, st, &cfg.skeleton(), images, |g, st, io| {
        let mix = if io.reduction { reduce } else { normal };
        cell(g, st, io, mix, cfg)
    })
}
