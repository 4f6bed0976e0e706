//! The discrete network of a genotype: the supernet's stack of cells
//! (`cellnet::network`) where each cell is its genotype's cell (normal or
//! reduction) and each block adds the two ops it chose,
//! x_j = O1(x_I1) + O2(x_I2), each through `cellnet::candidate_op` with
//! stride 2 on the cell inputs (0, 1) of a reduction cell. The cell's
//! output concatenates every block's output, as in the supernet.
//!
//! Names follow the supernet's, so S4 can carry supernet weights over by
//! name: the op on slot (input i → block j) lives under
//! `cell{k}.b{j}_in{i}.{op name}` exactly as the supernet's candidate of
//! that edge and op (e.g. `cell2.b1_in0.sep_conv_3x3.dw1.weight`). The one
//! case the supernet has no counterpart for is a block whose two slots take
//! the same input through the same op (two separately trained copies of one
//! supernet candidate): the second slot goes under `{op name}_2`
//! (`cell0.b3_in1.sep_conv_3x3_2.pw2.weight`). Pools carry no BN here (the
//! supernet's pools add one, `….max_pool_3x3.bn`), and batch norm is affine
//! whenever the skeleton says so (discrete networks: always), so the BN
//! γ/β have no supernet counterpart either.

use super::cellnet::{self, network_using, CellIo, Skeleton};
use super::ParamStore;
use crate::data::Dims;
use crate::graph::{Graph, T};
use crate::space::{Block, Cell, Genotype};

/// The discrete network's logits for `images` ([batch, C, H, W]).
/// `genotype` must be valid (`Genotype::validate`): `none` and out-of-range
/// inputs panic here.
pub fn forward(
    g: &mut Graph,
    st: &mut ParamStore,
    sk: &Skeleton,
    genotype: &Genotype,
    images: T,
) -> T {
    let uses = |cell: &Cell| [0, 1].map(|i| cell.blocks.iter().any(|b| b.inputs.contains(&i)));
    let kinds = [uses(&genotype.normal), uses(&genotype.reduce)];
    network_using(
        g,
        st,
        sk,
        images,
        |r| kinds[usize::from(r)],
        |g, st, io| {
            let cell = if io.reduction {
                &genotype.reduce
            } else {
                &genotype.normal
            };
            cell_forward(g, st, io, cell, sk.affine)
        },
    )
}

/// The scope of slot `k` (0 or 1) of a block, below its edge scope
/// `b{j}_in{i}`: the op's name, with `_2` for the second of two slots that
/// share input and op.
pub fn slot_scope(block: &Block, k: usize) -> String {
    let name = block.ops[k].name();
    if k == 1 && block.inputs[0] == block.inputs[1] && block.ops[0] == block.ops[1] {
        format!("{name}_2")
    } else {
        name.to_string()
    }
}

/// One cell over its preprocessed inputs: every block the sum of its two
/// ops, the cell's output the concatenation of all block outputs.
fn cell_forward(g: &mut Graph, st: &mut ParamStore, io: CellIo, cell: &Cell, affine: bool) -> T {
    let c = io.channels;
    let mut states = io.inputs.to_vec();
    for (j, block) in cell.blocks.iter().enumerate() {
        let slot = |g: &mut Graph, st: &mut ParamStore, k: usize| {
            let (i, op) = (block.inputs[k], block.ops[k]);
            assert!(
                i < states.len(),
                "block {j} reads input {i}, but only {} exist before it",
                states.len()
            );
            let stride = if io.reduction && i < 2 { 2 } else { 1 };
            let x = states[i];
            st.scoped(&format!("b{j}_in{i}"), |st| {
                st.scoped(&slot_scope(block, k), |st| {
                    cellnet::candidate_op(g, st, op, x, c, stride, affine)
                })
            })
        };
        let a = slot(g, st, 0);
        let b = slot(g, st, 1);
        states.push(g.add(a, b));
    }
    match &states[2..] {
        [only] => *only,
        outs => g.concat(outs),
    }
}

/// Trained scalars of the discrete network of `genotype` on inputs of
/// `dims` (builds the graph on the CPU side only; nothing runs).
pub fn count_params(sk: &Skeleton, genotype: &Genotype, dims: Dims) -> usize {
    let mut g = Graph::new();
    let mut st = ParamStore::new(0);
    // Evaluation-mode BN: no batch-size requirement for a shape-only build.
    st.eval = true;
    let x = g.input("images", &[1, dims.channels, dims.height, dims.width]);
    forward(&mut g, &mut st, sk, genotype, x);
    st.count(&g)
}
