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

/// Per block, the [num_inputs(j), K] weights β_j ⊙ softmax(α_j) (rows).
pub fn mixing_weights(g: &mut Graph, k: &KindArch) -> Vec<T> {
    k.alpha
        .iter()
        .zip(&k.beta)
        .map(|(&a, &b)| {
            let s = g.softmax(a);
            g.row_scale(s, b)
        })
        .collect()
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

/// A cell's 5 mixed blocks over its preprocessed inputs, concatenated.
fn cell(g: &mut Graph, st: &mut ParamStore, io: CellIo, weights: &[T], op_set: &OpSet) -> T {
    let c = io.channels;
    let mut states = io.inputs.to_vec();
    for (j, &w) in weights.iter().enumerate().take(BLOCKS) {
        let mut cands = Vec::with_capacity(num_inputs(j) * op_set.len());
        for (i, &x) in states.iter().enumerate() {
            let stride = if io.reduction && i < 2 { 2 } else { 1 };
            for &op in op_set.ops() {
                let edge = format!("b{j}_in{i}");
                cands.push(st.scoped(&edge, |st| {
                    st.scoped(op.name(), |st| candidate(g, st, op, x, c, stride))
                }));
            }
        }
        let stacked = g.stack(&cands);
        states.push(g.weighted_sum(stacked, w));
    }
    g.concat(&states[2..])
}

/// The supernet's logits for `images` with mixing weights per cell kind.
pub fn forward(
    g: &mut Graph,
    st: &mut ParamStore,
    cfg: &SupernetConfig,
    images: T,
    normal: &[T],
    reduce: &[T],
) -> T {
    network(g, st, &cfg.skeleton(), images, |g, st, io| {
        let w = if io.reduction { reduce } else { normal };
        cell(g, st, io, w, &cfg.op_set)
    })
}
