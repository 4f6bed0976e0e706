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
    mut cell: impl FnMut(&mut Graph, &mut ParamStore, CellIo) -> T,
) -> T {
    let stem_c = sk.stem_multiplier * sk.width;
    let stem = st.scoped("stem", |st| {
        let y = layers::conv(g, st, "conv", images, ConvSpec::new(stem_c, 3).pad(1, 1));
        layers::batchnorm(g, st, "bn", y, sk.affine)
    });
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
            let p0 = if !used[0] {
                s0
            } else if reduction_prev {
                st.scoped("pre0", |st| {
                    layers::factorized_reduce(g, st, s0, c, sk.affine)
                })
            } else {
                st.scoped("pre0", |st| {
                    layers::relu_conv_bn(g, st, s0, c, 1, 1, 0, sk.affine)
                })
            };
            let p1 = if used[1] {
                st.scoped("pre1", |st| {
                    layers::relu_conv_bn(g, st, s1, c, 1, 1, 0, sk.affine)
                })
            } else {
                s1
            };
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
