//! Discrete cells and genotypes (serde JSON), their validation, and the
//! derivation of a discrete cell from the supernet's architecture weights.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ops::{OpKind, OpSet};
use super::{edge_index, num_edges, num_inputs, BLOCKS};

/// One block: two (input, op) pairs whose results are added. Input 0 is the
/// output of cell k−2, 1 of cell k−1, 2 + i block i of this cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub inputs: [usize; 2],
    pub ops: [OpKind; 2],
}

impl Block {
    pub fn new(i1: usize, o1: OpKind, i2: usize, o2: OpKind) -> Block {
        Block {
            inputs: [i1, i2],
            ops: [o1, o2],
        }
    }
}

/// A cell: 1..=BLOCKS blocks (fewer than BLOCKS only during the progressive
/// search of S2). Its output concatenates the block outputs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    pub blocks: Vec<Block>,
}

impl Cell {
    /// Checks block count, input ranges and ops against `op_set`.
    pub fn validate(&self, op_set: &OpSet) -> Result<(), String> {
        if self.blocks.is_empty() {
            return Err("empty cell: needs at least 1 block".into());
        }
        if self.blocks.len() > BLOCKS {
            return Err(format!(
                "cell has {} blocks: at most {BLOCKS}",
                self.blocks.len()
            ));
        }
        for (b, block) in self.blocks.iter().enumerate() {
            for k in 0..2 {
                let input = block.inputs[k];
                if input >= num_inputs(b) {
                    return Err(format!(
                        "block {b} input {k}: index {input} out of range \
                         (block {b} has candidate inputs 0..={})",
                        num_inputs(b) - 1
                    ));
                }
                let op = block.ops[k];
                if op.is_none() {
                    return Err(format!("block {b} op {k}: `none` cannot be chosen"));
                }
                if !op_set.contains(op) {
                    return Err(format!(
                        "block {b} op {k}: {op} is not in op set {}",
                        op_set.name()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Architecture weights of one parameter kind, per cell kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellWeights {
    pub normal: Vec<Vec<f32>>,
    pub reduce: Vec<Vec<f32>>,
}

/// A searched architecture: the op set it draws from, its two cells and,
/// when it came from S1, the final α (raw logits, per edge in `edges()`
/// order, one per op) and β (per block, one per candidate input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genotype {
    pub op_set: String,
    pub normal: Cell,
    pub reduce: Cell,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<CellWeights>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<CellWeights>,
}

impl Genotype {
    /// The named op set.
    pub fn op_set(&self) -> Result<OpSet, String> {
        OpSet::by_name(&self.op_set)
    }

    /// Checks the op set name, both cells, and the shapes of α and β.
    pub fn validate(&self) -> Result<(), String> {
        let op_set = self.op_set()?;
        self.normal
            .validate(&op_set)
            .map_err(|e| format!("normal cell: {e}"))?;
        self.reduce
            .validate(&op_set)
            .map_err(|e| format!("reduce cell: {e}"))?;
        if let Some(alpha) = &self.alpha {
            check_weights("alpha", alpha, num_edges(BLOCKS), |_| op_set.len())?;
        }
        if let Some(beta) = &self.beta {
            check_weights("beta", beta, BLOCKS, num_inputs)?;
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a genotype always serializes")
    }

    /// Parses and validates.
    pub fn from_json(text: &str) -> Result<Genotype, String> {
        let g: Genotype = serde_json::from_str(text).map_err(|e| e.to_string())?;
        g.validate()?;
        Ok(g)
    }

    /// Reads, parses and validates a genotype file.
    pub fn load(path: &Path) -> Result<Genotype, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading genotype {}: {e}", path.display()))?;
        Genotype::from_json(&text).map_err(|e| format!("genotype {}: {e}", path.display()))
    }

    /// Validates, then writes pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        self.validate()
            .map_err(|e| format!("not saving genotype {}: {e}", path.display()))?;
        std::fs::write(path, self.to_json() + "\n")
            .map_err(|e| format!("writing genotype {}: {e}", path.display()))
    }
}

/// `rows` rows per cell kind, row r of length `width(r)`, all finite.
fn check_weights(
    what: &str,
    w: &CellWeights,
    rows: usize,
    width: impl Fn(usize) -> usize,
) -> Result<(), String> {
    for (kind, m) in [("normal", &w.normal), ("reduce", &w.reduce)] {
        if m.len() != rows {
            return Err(format!("{what}.{kind}: {} rows, expected {rows}", m.len()));
        }
        for (r, row) in m.iter().enumerate() {
            if row.len() != width(r) {
                return Err(format!(
                    "{what}.{kind}[{r}]: {} values, expected {}",
                    row.len(),
                    width(r)
                ));
            }
            if row.iter().any(|v| !v.is_finite()) {
                return Err(format!("{what}.{kind}[{r}]: non-finite value"));
            }
        }
    }
    Ok(())
}

/// Numerically stable softmax (f64 inside).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let exps: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / total) as f32).collect()
}

/// Mean over edges of the entropy (nats) of softmax(α_edge): ln K for
/// uniform α over K ops, falling toward 0 as α becomes one-hot.
pub fn softmax_entropy(alpha: &[Vec<f32>]) -> f32 {
    assert!(!alpha.is_empty(), "softmax_entropy: no edges");
    let total: f64 = alpha
        .iter()
        .map(|logits| {
            -softmax(logits)
                .iter()
                .filter(|&&p| p > 0.0)
                .map(|&p| p as f64 * (p as f64).ln())
                .sum::<f64>()
        })
        .sum();
    (total / alpha.len() as f64) as f32
}

/// NaN ranks below everything, so a diverged weight is never preferred.
fn rank(v: f32) -> f32 {
    if v.is_nan() {
        f32::NEG_INFINITY
    } else {
        v
    }
}

/// The method's derivation. `beta` has one row per block (1..=BLOCKS rows,
/// row b over its `num_inputs(b)` inputs); `alpha` one row of raw logits per
/// edge of those blocks, in `edges()` order, each `op_set.len()` wide. Per
/// block: score input i by β_i · max over ops other than `none` of
/// softmax(α_i); keep the two best (ties to the lower index), put on each
/// its argmax op other than `none` (ties to the earlier op), inputs
/// ascending. Panics on mismatched shapes.
pub fn derive(op_set: &OpSet, alpha: &[Vec<f32>], beta: &[Vec<f32>]) -> Cell {
    let blocks = beta.len();
    assert!(
        (1..=BLOCKS).contains(&blocks),
        "derive: {blocks} beta rows, expected 1..={BLOCKS}"
    );
    assert_eq!(
        alpha.len(),
        num_edges(blocks),
        "derive: alpha rows for {blocks} blocks"
    );
    let blocks = beta
        .iter()
        .enumerate()
        .map(|(b, beta_b)| {
            assert_eq!(beta_b.len(), num_inputs(b), "derive: beta[{b}] width");
            // (score, best op) per candidate input.
            let cands: Vec<(f32, OpKind)> = beta_b
                .iter()
                .enumerate()
                .map(|(i, &beta_bi)| {
                    let logits = &alpha[edge_index(b, i)];
                    assert_eq!(logits.len(), op_set.len(), "derive: alpha width");
                    let probs = softmax(logits);
                    let (best, p) = op_set
                        .ops()
                        .iter()
                        .zip(&probs)
                        .filter(|(op, _)| !op.is_none())
                        .fold(None, |acc: Option<(OpKind, f32)>, (&op, &p)| match acc {
                            Some((_, q)) if rank(p) <= rank(q) => acc,
                            _ => Some((op, p)),
                        })
                        .expect("an op set holds an op other than none");
                    (rank(beta_bi * p), best)
                })
                .collect();
            let mut order: Vec<usize> = (0..cands.len()).collect();
            // Stable sort: equal scores keep the lower index first. Scores
            // are NaN-free after `rank`, so partial_cmp always answers.
            order.sort_by(|&x, &y| cands[y].0.partial_cmp(&cands[x].0).unwrap());
            let (mut i1, mut i2) = (order[0], order[1]);
            if i1 > i2 {
                std::mem::swap(&mut i1, &mut i2);
            }
            Block::new(i1, cands[i1].1, i2, cands[i2].1)
        })
        .collect();
    Cell { blocks }
}

/// A cell of `blocks` blocks drawn at random: each block's two (input, op)
/// pairs independently and uniformly from its candidate inputs and the op
/// set's ops other than `none` (so both may be the same pair), the block
/// then made canonical as `expand` makes it (pairs ascending).
pub fn random_cell<R: rand::Rng + ?Sized>(op_set: &OpSet, blocks: usize, rng: &mut R) -> Cell {
    let ops: Vec<OpKind> = op_set.choosable().collect();
    assert!(
        !ops.is_empty(),
        "op set {} has no op other than none",
        op_set.name()
    );
    let blocks = (0..blocks)
        .map(|b| {
            let mut pick = || {
                let input = rng.random_range(0..num_inputs(b));
                let op = ops[rng.random_range(0..ops.len())];
                (input, op)
            };
            let (i1, o1) = pick();
            let (i2, o2) = pick();
            super::canonical(&Block::new(i1, o1, i2, o2))
        })
        .collect();
    Cell { blocks }
}

/// A random full genotype over `op_set` (normal cell first, then the
/// reduction cell, from one stream), the baseline a searched genotype is
/// compared with. The same seeded `rng` state (`verify::rng(seed)`) gives
/// the same genotype. It names `op_set` by its name, so it validates only
/// for the named sets (`OpSet::by_name`).
pub fn random_genotype<R: rand::Rng + ?Sized>(op_set: &OpSet, rng: &mut R) -> Genotype {
    let normal = random_cell(op_set, BLOCKS, rng);
    let reduce = random_cell(op_set, BLOCKS, rng);
    Genotype {
        op_set: op_set.name().to_string(),
        normal,
        reduce,
        alpha: None,
        beta: None,
    }
}
