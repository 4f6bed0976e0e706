//! What the supernet (S1) and a discrete network of a genotype share: the
//! candidate ops by kind, the preprocessing of a cell's two inputs, and the
//! stack of cells (stem, reductions at 1/3 and 2/3 of the depth doubling
//! the channels, global pooling, classifier). The two differ only in what
//! a cell computes from its preprocessed inputs, which the caller supplies.

use super::layers::{self, ConvSpec};
use super::ParamStore;
use crate::graph::{Graph, T};
use crate::space::OpKind;

/// The shape of a cell network.
#[derive(Debug, Clone, Copy)]
pub struct Skeleton {
    /// Channels of the first cell (the patent's N).
    pub width: usize,
    /// Number of stacked cells (the patent's F).
    pub depth: usize,
    /// Stem channels = stem_multiplier × width (DARTS: 3).
    pub stem_multiplier: usize,
    pub classes: usize,
    /// Affine batch norm (the discrete network) or not (the supernet).
    pub affine: bool,
}

impl Skeleton {
    /// Reduction cells sit at 1/3 and 2/3 of the depth (DARTS's rule); a
    /// network of fewer than 3 cells keeps its first cell normal (depth 2:
    /// normal, reduction; depth 1: normal only).
    pub fn is_reduction(&self, cell: usize) -> bool {
        is_reduction(self.depth, cell)
    }
}

/// See [`Skeleton::is_reduction`].
pub fn is_reduction(depth: usize, cell: usize) -> bool {
    if depth < 3 {
        return depth == 2 && cell == 1;
    }
    cell == depth / 3 || cell == 2 * depth / 3
}

/// What a cell builder gets: the two preprocessed inputs (both with `c`
/// channels, at the resolution of the cell k−1's output) and whether this
/// cell reduces.
pub struct CellIo {
    pub index: usize,
    pub inputs: [T; 2],
    pub channels: usize,
    pub reduction: bool,
}

/// One candidate op of the cell space at `stride` with `c` output channels.
/// Pools come bare (the supernet adds a BN after them, as DARTS's MixedOp);
/// `none` is the supernet's alone and is refused here.
#[allow(clippy::too_many_arguments)]
pub fn candidate_op(
    g: &mut Graph,
    st: &mut ParamStore,
    op: OpKind,
    x: T,
    c: usize,
    stride: usize,
    affine: bool,
) -> T {
    match op {
        OpKind::SepConv3x3 => layers::sep_conv(g, st, x, c, 3, stride, affine),
        OpKind::SepConv5x5 => layers::sep_conv(g, st, x, c, 5, stride, affine),
        OpKind::SepConv7x7 => layers::sep_conv(g, st, x, c, 7, stride, affine),
        OpKind::Conv7x1_1x7 => layers::conv_7x1_1x7(g, st, x, c, stride, affine),
        OpKind::DilConv3x3 => layers::dil_conv(g, st, x, c, 3, stride, affine),
        OpKind::DilConv5x5 => layers::dil_conv(g, st, x, c, 5, stride, affine),
        OpKind::Identity | OpKind::SkipConnect => layers::skip_connect(g, st, x, c, stride, affine),
        OpKind::AvgPool3x3 => layers::avg_pool_3x3(g, x, stride),
        OpKind::MaxPool3x3 => layers::max_pool_3x3(g, x, stride),
        OpKind::None_ => panic!("`none` is not an op of a discrete network"),
    }
}

/// The network's logits for `images`: stem, `depth` cells built by `cell`
/// (each under scope `cell{k}`, after its inputs are preprocessed under
/// `pre0`/`pre1`), global average pooling, a linear classifier.
pub fn network(
    g: &mut Graph,
    st: &mut ParamStore,
    sk: &Skeleton,
    images: T,
    cell: impl FnMut(&mut Graph, &mut ParamStore, CellIo) -> T,
) -> T {
    network_using(g, st, sk, images, |_| [true, true], cell)
}

/// What a network computes before any cell: the stem's output and the
/// preprocessed cell inputs that read it (cell 0's two, cell 1's input 0),
/// whatever the cells compute. S2 measures hundreds of cells of one
/// supernet on the same images, so it computes these once
/// (`predict::measure`) and starts each cell's network from them.
#[derive(Debug, Clone)]
pub struct Invariant {
    pub stem: T,
    /// ((cell, input), its preprocessed input), for [`invariant_inputs`].
    pub pre: Vec<((usize, usize), T)>,
}

impl Invariant {
    fn pre(&self, cell: usize, input: usize) -> Option<T> {
        self.pre
            .iter()
            .find(|(at, _)| *at == (cell, input))
            .map(|&(_, t)| t)
    }
}

/// The (cell, input) pairs whose preprocessing reads the stem: both
/// inputs of cell 0, and input 0 of cell 1.
pub fn invariant_inputs(sk: &Skeleton) -> Vec<(usize, usize)> {
    let mut v = vec![(0, 0), (0, 1)];
    if sk.depth > 1 {
        v.push((1, 0));
    }
    v
}

/// Where a network starts: its images, or the [`Invariant`] tensors.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    Images(T),
    Invariant(&'a Invariant),
}

/// The [`Invariant`] tensors of `images`, built as [`network`] builds
/// them (same scopes, so the same weights).
pub fn invariant(g: &mut Graph, st: &mut ParamStore, sk: &Skeleton, images: T) -> Invariant {
    let stem = stem(g, st, sk, images);
    let pre = invariant_inputs(sk)
        .into_iter()
        .map(|(k, i)| {
            let c = sk.width << (0..=k).filter(|&j| sk.is_reduction(j)).count();
            // Input 0 of cell 1 comes from before cell 0, whose reduction
            // (if any) it must catch up with.
            let reduction_prev = i == 0 && k == 1 && sk.is_reduction(0);
            let t = st.scoped(&format!("cell{k}"), |st| {
                preprocess(g, st, sk, i, stem, c, reduction_prev)
            });
            ((k, i), t)
        })
        .collect();
    Invariant { stem, pre }
}

fn stem(g: &mut Graph, st: &mut ParamStore, sk: &Skeleton, images: T) -> T {
    let stem_c = sk.stem_multiplier * sk.width;
    st.scoped("stem", |st| {
        let y = layers::conv(g, st, "conv", images, ConvSpec::new(stem_c, 3).pad(1, 1));
        layers::batchnorm(g, st, "bn", y, sk.affine)
    })
}

/// Input `input` of a cell with `c` channels, from `s` (under `pre{input}`):
/// a factorized reduce where `s` is one reduction behind, else ReLU, 1×1
/// convolution, batch norm.
fn preprocess(
    g: &mut Graph,
    st: &mut ParamStore,
    sk: &Skeleton,
    input: usize,
    s: T,
    c: usize,
    reduction_prev: bool,
) -> T {
    st.scoped(&format!("pre{input}"), |st| {
        if reduction_prev {
            layers::factorized_reduce(g, st, s, c, sk.affine)
        } else {
            layers::relu_conv_bn(g, st, s, c, 1, 1, 0, sk.affine)
        }
    })
}

/// [`network`] for cells that may not read both inputs: `uses(reduction)`
/// says which of the two a cell of that kind reads, and an unread input
/// gets no preprocessing (a discrete cell that never reads input 1 has no
/// `pre1`, so no weight without a gradient), nor does a cell nobody reads.
/// An unread input's `CellIo` entry is a placeholder the cell must not use.
pub fn network_using(
    g: &mut Graph,
    st: &mut ParamStore,
    sk: &Skeleton,
    images: T,
    uses: impl Fn(bool) -> [bool; 2],
    cell: impl FnMut(&mut Graph, &mut ParamStore, CellIo) -> T,
) -> T {
    network_from(g, st, sk, Start::Images(images), uses, cell)
}

/// [`network_using`] from where `start` says: from the [`Invariant`]
/// tensors, the stem and the preprocessing they hold are not built again.
pub fn network_from(
    g: &mut Graph,
    st: &mut ParamStore,
    sk: &Skeleton,
    start: Start,
    uses: impl Fn(bool) -> [bool; 2],
    mut cell: impl FnMut(&mut Graph, &mut ParamStore, CellIo) -> T,
) -> T {
    let (stem, done) = match start {
        Start::Images(x) => (stem(g, st, sk, x), None),
        Start::Invariant(inv) => (inv.stem, Some(inv)),
    };
    let (mut s0, mut s1) = (stem, stem);
    let mut c = sk.width;
    let mut reduction_prev = false;
    let used: Vec<[bool; 2]> = (0..sk.depth).map(|k| uses(sk.is_reduction(k))).collect();
    // A cell is live when the classifier reads it (the last cell) or a live
    // cell reads it: cell k + 1 as its input 1, cell k + 2 as its input 0.
    // Cells that never read input 1 can leave a cell dead; it is not built
    // (no weights that no gradient reaches, no uncounted parameters).
    let mut live = vec![false; sk.depth];
    for k in (0..sk.depth).rev() {
        live[k] = k + 1 == sk.depth
            || (live[k + 1] && used[k + 1][1])
            || (k + 2 < sk.depth && live[k + 2] && used[k + 2][0]);
    }
    for k in 0..sk.depth {
        let reduction = sk.is_reduction(k);
        if reduction {
            c *= 2;
        }
        if !live[k] {
            // Never read (see above): the placeholder is not used.
            (s0, s1) = (s1, s1);
            reduction_prev = reduction;
            continue;
        }
        let used = used[k];
        let out = st.scoped(&format!("cell{k}"), |st| {
            let mut input = |i: usize, s: T, r: bool| {
                if !used[i] {
                    s
                } else if let Some(t) = done.and_then(|d| d.pre(k, i)) {
                    t
                } else {
                    preprocess(g, st, sk, i, s, c, r)
                }
            };
            let p0 = input(0, s0, reduction_prev);
            let p1 = input(1, s1, false);
            let io = CellIo {
                index: k,
                inputs: [p0, p1],
                channels: c,
                reduction,
            };
            cell(g, st, io)
        });
        (s0, s1) = (s1, out);
        reduction_prev = reduction;
    }
    let pooled = g.global_avg_pool(s1);
    st.scoped("classifier", |st| {
        layers::linear(g, st, pooled, sk.classes, true)
    })
}
