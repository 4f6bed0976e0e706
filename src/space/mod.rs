//! The search space as data: op sets, the cell DAG (BLOCKS blocks, block b
//! choosing 2 of its 2 + b candidate inputs), genotypes and their
//! derivation from α/β (S1), and the cell encoding, enumeration and
//! expansion of the progressive predictor search (S2).

pub mod genotype;
pub mod ops;

pub use genotype::{derive, softmax, softmax_entropy, Block, Cell, CellWeights, Genotype};
pub use ops::{OpKind, OpSet, OP_SET_NAMES};

/// Blocks per cell.
pub const BLOCKS: usize = 5;

/// Input-token vocabulary of the encoding: the largest block has
/// 2 + BLOCKS − 1 candidate inputs. (The op vocabulary is `op_set.len()`.)
pub const INPUT_VOCAB: usize = 2 + BLOCKS - 1;

/// Candidate inputs of block `block` (0-based): cells k−2 and k−1, then
/// each earlier block of the cell.
pub fn num_inputs(block: usize) -> usize {
    2 + block
}

/// Edges of the first `blocks` blocks (20 for a full cell).
pub fn num_edges(blocks: usize) -> usize {
    (0..blocks).map(num_inputs).sum()
}

/// Every (block, input) edge of a full cell in the fixed order α rows use:
/// block-major, inputs ascending. The edges of the first b blocks are a
/// prefix of this list.
pub fn edges() -> Vec<(usize, usize)> {
    (0..BLOCKS)
        .flat_map(|b| (0..num_inputs(b)).map(move |i| (b, i)))
        .collect()
}

/// Position of edge (block, input) in `edges()`.
pub fn edge_index(block: usize, input: usize) -> usize {
    assert!(
        block < BLOCKS && input < num_inputs(block),
        "edge ({block}, {input}) is not in the cell"
    );
    num_edges(block) + input
}

/// (input vocabulary, op vocabulary) of `encode` tokens.
pub fn vocab_sizes(op_set: &OpSet) -> (usize, usize) {
    (INPUT_VOCAB, op_set.len())
}

/// The block with its two (input, op) pairs in ascending order, so the two
/// orders of the same block compare equal.
pub fn canonical(block: &Block) -> Block {
    let a = (block.inputs[0], block.ops[0]);
    let b = (block.inputs[1], block.ops[1]);
    let ((i1, o1), (i2, o2)) = if a <= b { (a, b) } else { (b, a) };
    Block::new(i1, o1, i2, o2)
}

/// The cell with every block canonical.
pub fn canonical_cell(cell: &Cell) -> Cell {
    Cell {
        blocks: cell.blocks.iter().map(canonical).collect(),
    }
}

/// Token sequence of the canonical cell: per block (I1, I2, O1, O2), inputs
/// as indices (< INPUT_VOCAB), ops as their index in `op_set`.
pub fn encode(cell: &Cell, op_set: &OpSet) -> Result<Vec<(usize, usize, usize, usize)>, String> {
    canonical_cell(cell)
        .blocks
        .iter()
        .enumerate()
        .map(|(b, block)| {
            let op = |k: usize| {
                op_set.index_of(block.ops[k]).ok_or_else(|| {
                    format!(
                        "block {b} op {k}: {} is not in op set {}",
                        block.ops[k],
                        op_set.name()
                    )
                })
            };
            Ok((block.inputs[0], block.inputs[1], op(0)?, op(1)?))
        })
        .collect()
}

/// Every distinct canonical 1-block cell (b = 1 of the progressive search).
pub fn enumerate_one_block_cells(op_set: &OpSet) -> Vec<Cell> {
    expand(&Cell { blocks: Vec::new() }, op_set)
}

/// Every distinct way to append one block to `cell` (its blocks made
/// canonical): the new block takes an unordered pair, repeats allowed, of
/// (candidate input, op other than `none`). Empty for a full cell.
pub fn expand(cell: &Cell, op_set: &OpSet) -> Vec<Cell> {
    let b = cell.blocks.len();
    if b >= BLOCKS {
        return Vec::new();
    }
    let base = canonical_cell(cell);
    let mut choices: Vec<(usize, OpKind)> = (0..num_inputs(b))
        .flat_map(|i| op_set.choosable().map(move |op| (i, op)))
        .collect();
    // Sorted in canonical order, so pairs (x ≤ y) are canonical and distinct.
    choices.sort();
    let mut out = Vec::with_capacity(choices.len() * (choices.len() + 1) / 2);
    for (x, &(i1, o1)) in choices.iter().enumerate() {
        for &(i2, o2) in &choices[x..] {
            let mut next = base.clone();
            next.blocks.push(Block::new(i1, o1, i2, o2));
            out.push(next);
        }
    }
    out
}
