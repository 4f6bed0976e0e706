//! S2's performance predictor (METHOD.md S2, after PNAS): a cell's token
//! sequence — per block (I1, I2, O1, O2) — goes through an embedding (one
//! table for input tokens, one for op tokens, both to `embed` dimensions),
//! an LSTM with `hidden` units, and the final hidden state through a linear
//! layer and a sigmoid: the predicted accuracy. Trained with L1 loss and
//! Adam, as an ensemble whose members each see a different (E−1)/E of the
//! measurements; the members' mean is the prediction and their standard
//! deviation its spread.
//!
//! **The ensemble as one network.** On lavapipe a dispatch costs about
//! 0.3 ms whatever it computes, and an unrolled LSTM is hundreds of small
//! ones, so the E members are not E graphs: every member's weights are one
//! group of a grouped 1×1 convolution (groups = E), and every activation
//! holds all members side by side, member-major, with the batch along the
//! width: [1, E·channels, 1, batch]. One dispatch does one op of all
//! members, each on its own rows (during training each member gets its own
//! batch from its own fold). Members stay independent: the convolution's
//! groups never mix, Adam is per element, nothing clips by a global norm.
//!
//! **The LSTM.** Per member it is PyTorch's: gates = W_ih·x + W_hh·h + b
//! split into i, f, g, o; c' = σ(f)·c + σ(i)·tanh(g); h' = σ(o)·tanh(c'),
//! with one bias (PyTorch's b_ih + b_hh) and x the token's embedding. Since
//! x = E·onehot, W_ih·x = (W_ih·E)·onehot: each step reads a column of the
//! gate table W_ih·E [4·hidden, vocab], computed once per step of training
//! from the two embedding tables (gradients reach both), and the tokens of
//! all 20 steps go through their kind's table in one convolution (the op
//! tokens have their own table). The recurrence is then one convolution
//! with W_hh per step: 4·hidden × hidden multiply-adds per row instead of
//! 4·hidden × (embed + hidden). `Predictor::member_weights` gives a
//! member's weights under PyTorch's `nn.Embedding`/`nn.LSTM`/`nn.Linear`
//! names.
//!
//! **Variable lengths, no recompiling.** A graph is unrolled over a fixed
//! number of block positions (4 steps each); the training graph over all
//! `BLOCKS`, so one recorded step trains on cells of every length. A cell
//! of b blocks is *left*-padded: its blocks occupy the last b positions, so
//! its last token is always the last step and the final hidden state is
//! read at one place for every row. Padding tokens are all-zero one-hot
//! rows. Each block position but the last has a mask (1 where the row's
//! cell has a block there, else 0) that multiplies the LSTM's cell state
//! after the position's last step: a row that is still padding leaves it
//! with c = 0 and so h = o·tanh(0) = 0, and its first real token starts
//! from the zero state exactly as an unpadded LSTM would (bit for bit: the
//! gate terms of a zero h are exact zeros); the gradient through the padded
//! steps is exactly 0 (it passes through the ×0). A cell's prediction is
//! thus the same whatever it is batched with. (Right padding would need a
//! blend h = m·h_new + (1−m)·h_old for h and c on every step; left padding
//! needs one multiply per block position.) For scoring, `Predictor` also
//! records the graphs over 1..=4 positions, all at construction, so a
//! batch of short cells does not pay for 20 steps.
//!
//! **Padding rows.** Rows past the real cells of a training batch have all
//! masks 0 and a loss weight of 0. The loss is mean over all (member, row)
//! of |w·p − w·t| with w = E·batch/rows_k on member k's `rows_k` real rows:
//! the sum over members of each member's mean L1 over its real rows, so
//! each member's gradient is what it would be trained alone, and padding
//! rows contribute exactly 0.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::engine::Gpu;
use crate::graph::{self, Graph, Kind, Op, Optimizer, Plan, Updates, T};
use crate::nn::{Init, ParamStore};
use crate::ops::conv2d::Conv2dShape;
use crate::ops::layout::ConcatShape;
use crate::ops::optim::AdamHyper;
use crate::space::{self, Cell, OpSet, BLOCKS};
use crate::verify;

use super::rank;

/// Tokens per block: (I1, I2, O1, O2).
pub const TOKENS_PER_BLOCK: usize = 4;

/// One block's tokens (I1, I2, O1, O2), as `space::encode` gives.
pub type Block = (usize, usize, usize, usize);
/// One cell's tokens, per block.
pub type Tokens = Vec<Block>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorConfig {
    /// LSTM hidden units (PNAS: 100).
    pub hidden: usize,
    /// Embedding width of both tables. The vocabularies are tiny (6 input
    /// positions, 8 ops), so 32 dimensions hold them with room to spare,
    /// and the step's convolution reads 32 + 100 channels instead of 200.
    pub embed: usize,
    /// Members (PNAS: 5). With E > 1, member k leaves out the k-th of E
    /// folds of the measurements; with 1, the single member sees them all.
    pub ensemble: usize,
    /// Rows per training step and member.
    pub batch: usize,
    /// Passes over each member's training set per `fit`.
    pub epochs: usize,
    /// Adam's learning rate (β = (0.9, 0.999), eps 1e-8, no decay).
    pub lr: f32,
    /// Seeds the initial weights, the folds and the batch order.
    pub seed: u64,
    /// Cells per scoring step.
    pub predict_batch: usize,
}

impl Default for PredictorConfig {
    /// Sized for the progressive search on lavapipe (a few hundred
    /// measurements per fit); see BENCHMARKS.md for step times.
    fn default() -> Self {
        PredictorConfig {
            hidden: 100,
            embed: 32,
            ensemble: 5,
            batch: 16,
            epochs: 20,
            lr: 0.01,
            seed: 0,
            predict_batch: 256,
        }
    }
}

impl PredictorConfig {
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("hidden", self.hidden),
            ("embed", self.embed),
            ("ensemble", self.ensemble),
            ("batch", self.batch),
            ("epochs", self.epochs),
            ("predict_batch", self.predict_batch),
        ] {
            ensure!(v >= 1, "predictor config: {name} must be at least 1");
        }
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "predictor config: lr must be positive, got {}",
            self.lr
        );
        Ok(())
    }
}

/// The inputs, loss and updates that only a training graph has.
#[derive(Debug, Clone)]
pub struct TrainIo {
    /// [1, E, 1, batch]: member k's measured accuracies at k·batch + row
    /// (padding rows are weighted out in the graph, whatever they hold).
    pub target: T,
    /// [1, E, 1, batch]: E·batch/rows_k on member k's real rows, 0 on
    /// padding.
    pub weight: T,
    /// The sum over members of each one's mean L1 over its real rows
    /// (pinned).
    pub loss: T,
    /// The loss summed over steps (a GPU accumulator).
    pub loss_sum: T,
    pub updates: Updates,
}

/// The predictor as a graph for one batch size: training (forward, L1,
/// backward, Adam; every member on its own batch) or scoring (forward).
pub struct PredictorGraph {
    pub g: Graph,
    pub ensemble: usize,
    pub batch: usize,
    pub hidden: usize,
    pub vocab: (usize, usize),
    /// Block positions unrolled (4 steps each): cells of up to this many
    /// blocks, left-padded to it.
    pub blocks: usize,
    /// The one-hot input tokens [2·blocks, E·input vocab, 1, batch]: input
    /// token j (block position j/2, I1 or I2) of member k's row n being
    /// class v is a 1 at ((j·E + k)·vocab + v)·batch + n.
    pub input_tokens: T,
    /// The one-hot op tokens [2·blocks, E·op vocab, 1, batch], laid out as
    /// `input_tokens` (op token j: block position j/2, O1 or O2).
    pub op_tokens: T,
    /// Per block position 0..blocks−1, [1, E·hidden, 1, batch]: 1 where
    /// member k's row n has a block there (for every hidden unit).
    pub masks: Vec<T>,
    /// The predicted accuracies [1, E, 1, batch] (pinned): member k's row n
    /// at k·batch + n.
    pub pred: T,
    /// The LSTM's state (h, c) after the last step, [1, E·hidden, 1,
    /// batch] each (pinned in scoring graphs): where a longer cell with
    /// this prefix continues.
    pub last: (T, T),
    /// A tail graph's starting state (h0, c0), laid out as `last`.
    pub init: Option<(T, T)>,
    pub train: Option<TrainIo>,
    /// The weights, all members in each: `embed_inputs.weight`
    /// [E·embed, input vocab, 1, 1], `embed_ops.weight` [E·embed, op vocab,
    /// 1, 1], `lstm.weight_ih` [E·4·hidden, embed, 1, 1], `lstm.weight_hh`
    /// [E·4·hidden, hidden, 1, 1] (per member the gate rows i, f, g, o),
    /// `lstm.bias` [E·4·hidden], `head.weight` [E, hidden, 1, 1],
    /// `head.bias` [E]; member k's part is the k-th of E equal row blocks.
    pub params: Vec<T>,
}

/// A grouped 1×1 convolution of x [n, c_in, 1, width] (the weight
/// [c_out, c_in / groups, 1, 1]): per group (member) a linear map of its
/// channels, for every (n, column).
fn grouped_conv(
    g: &mut Graph,
    x: T,
    (w, b): (T, Option<T>),
    (n, c_in, width): (usize, usize, usize),
    c_out: usize,
    groups: usize,
) -> T {
    let s = Conv2dShape {
        groups,
        ..Conv2dShape::pointwise(n, c_in, c_out, 1, width)
    };
    g.conv2d(x, w, b, s)
}

impl PredictorGraph {
    /// The training step for `cfg.batch` rows per member, cells of any
    /// length (BLOCKS block positions).
    pub fn training(op_set: &OpSet, cfg: &PredictorConfig) -> PredictorGraph {
        Self::build(op_set, cfg, cfg.batch, BLOCKS, true, false)
    }

    /// The scoring step for `cfg.predict_batch` cells of up to `blocks`
    /// blocks. Built with the same seed, its weights start equal to the
    /// training graph's.
    pub fn scoring(op_set: &OpSet, cfg: &PredictorConfig, blocks: usize) -> PredictorGraph {
        Self::build(op_set, cfg, cfg.predict_batch, blocks, false, false)
    }

    /// The scoring step of one more block from a given state (h0, c0): a
    /// cell's last block, continuing from its prefix's `last` state.
    pub fn tail(op_set: &OpSet, cfg: &PredictorConfig) -> PredictorGraph {
        Self::build(op_set, cfg, cfg.predict_batch, 1, false, true)
    }

    fn build(
        op_set: &OpSet,
        cfg: &PredictorConfig,
        batch: usize,
        blocks: usize,
        train: bool,
        from_state: bool,
    ) -> PredictorGraph {
        assert!(
            (1..=BLOCKS).contains(&blocks),
            "a predictor graph for {blocks} blocks"
        );
        let per_kind = 2 * blocks;
        let (iv, ov) = space::vocab_sizes(op_set);
        let (e, d, hid) = (cfg.ensemble, cfg.embed, cfg.hidden);
        let mut g = Graph::new();
        let mut store = ParamStore::new(cfg.seed);
        let bound = Init::Uniform {
            bound: 1.0 / (hid as f32).sqrt(),
        };
        // Input embeddings start at zero: a token no measured cell has yet
        // (a longer reach back than any so far) then adds nothing to the
        // LSTM's input instead of a random vector as large as a trained one.
        let emb_in = store.param(
            &mut g,
            "embed_inputs.weight",
            &[e * d, iv, 1, 1],
            Init::Zeros,
        );
        let emb_op = store.param(
            &mut g,
            "embed_ops.weight",
            &[e * d, ov, 1, 1],
            Init::Normal { std: 1.0 },
        );
        let w_ih = store.param(
            &mut g,
            "lstm.weight_ih",
            &[e * 4 * hid, d, 1, 1],
            bound.clone(),
        );
        let w_hh = store.param(
            &mut g,
            "lstm.weight_hh",
            &[e * 4 * hid, hid, 1, 1],
            bound.clone(),
        );
        let b = store.param(&mut g, "lstm.bias", &[e * 4 * hid], bound);
        let head_w = store.param(&mut g, "head.weight", &[e, hid, 1, 1], Init::kaiming(hid));
        let head_b = store.param(&mut g, "head.bias", &[e], Init::Zeros);
        let params = store.params.clone();

        // Per token kind: the gate table W_ih·E [E·4H, vocab] (an embedding
        // weight [E·embed, vocab] read as [1, E·embed, 1, vocab]), then
        // every token of the kind through it at once, cut into steps.
        let gx = |g: &mut Graph, name: &str, table: T, v: usize| -> (T, Vec<T>) {
            let one_hot = g.input(name, &[per_kind, e * v, 1, batch]);
            let gate_table = grouped_conv(g, table, (w_ih, None), (1, e * d, v), e * 4 * hid, e);
            let all = grouped_conv(
                g,
                one_hot,
                (gate_table, Some(b)),
                (per_kind, e * v, batch),
                e * 4 * hid,
                e,
            );
            let steps: Vec<T> = (0..per_kind)
                .map(|_| g.temp("gx", &[1, e * 4 * hid, 1, batch]))
                .collect();
            let per_step = ConcatShape {
                batch: 1,
                channels: vec![e * 4 * hid * batch; per_kind],
                h: 1,
                w: 1,
            };
            g.push(Op::Split(per_step), vec![all], steps.clone());
            (one_hot, steps)
        };
        let (input_tokens, gx_in) = gx(&mut g, "input_tokens", emb_in, iv);
        let (op_tokens, gx_op) = gx(&mut g, "op_tokens", emb_op, ov);
        let masks: Vec<T> = (0..blocks - 1)
            .map(|p| g.input(&format!("mask{p}"), &[1, e * hid, 1, batch]))
            .collect();
        // The gates, laid out [member, i f g o, row], cut into i, f, g, o.
        let gate_shape = ConcatShape {
            batch: e,
            channels: vec![hid; 4],
            h: 1,
            w: batch,
        };
        let init = from_state.then(|| {
            let h0 = g.input("h0", &[1, e * hid, 1, batch]);
            let c0 = g.input("c0", &[1, e * hid, 1, batch]);
            (h0, c0)
        });
        let mut state: Option<(T, T)> = init;
        for t in 0..TOKENS_PER_BLOCK * blocks {
            let (blk, j) = (t / TOKENS_PER_BLOCK, t % TOKENS_PER_BLOCK);
            let x = match j {
                0 | 1 => gx_in[2 * blk + j],
                _ => gx_op[2 * blk + j - 2],
            };
            // From the zero state the first step's gates are x's alone.
            let gates = match state {
                Some((h, _)) => {
                    let gh =
                        grouped_conv(&mut g, h, (w_hh, None), (1, e * hid, batch), e * 4 * hid, e);
                    g.add(gh, x)
                }
                None => x,
            };
            let parts: Vec<T> = (0..4)
                .map(|_| g.temp("gate", &[1, e * hid, 1, batch]))
                .collect();
            g.push(Op::Split(gate_shape.clone()), vec![gates], parts.clone());
            let (i, f, gg, o) = (
                g.sigmoid(parts[0]),
                g.sigmoid(parts[1]),
                g.tanh(parts[2]),
                g.sigmoid(parts[3]),
            );
            let ig = g.mul(i, gg);
            let mut c = match state {
                Some((_, c)) => {
                    let fc = g.mul(f, c);
                    g.add(fc, ig)
                }
                None => ig,
            };
            if j == TOKENS_PER_BLOCK - 1 && blk + 1 < blocks {
                // Rows still padding after this block position restart
                // from c = 0 (and so h = o·tanh(0) = 0).
                c = g.mul(c, masks[blk]);
            }
            let tc = g.tanh(c);
            state = Some((g.mul(o, tc), c));
        }
        let last = state.expect("at least one step");
        let h = last.0;
        if !train {
            g.pin(last.0);
            g.pin(last.1);
        }
        let logit = grouped_conv(&mut g, h, (head_w, Some(head_b)), (1, e * hid, batch), e, e);
        let pred = g.sigmoid(logit);
        g.pin(pred);

        let train = train.then(|| {
            let target = g.input("target", &[1, e, 1, batch]);
            let weight = g.input("row_weight", &[1, e, 1, batch]);
            let pw = g.mul(pred, weight);
            let tw = g.mul(target, weight);
            let loss = g.l1_loss(pw, tw);
            g.pin(loss);
            let loss_sum = g.state("loss_sum", &[1], None);
            g.accumulate_into(loss, loss_sum);
            let grads = graph::backward(&mut g, loss);
            let updates = graph::append_updates(
                &mut g,
                &params,
                &grads,
                Optimizer::Adam(AdamHyper::new(cfg.lr)),
                None,
            );
            TrainIo {
                target,
                weight,
                loss,
                loss_sum,
                updates,
            }
        });
        PredictorGraph {
            g,
            ensemble: e,
            batch,
            hidden: hid,
            vocab: (iv, ov),
            blocks,
            input_tokens,
            op_tokens,
            masks,
            pred,
            last,
            init,
            train,
            params,
        }
    }

    /// What to write for one step: member k gets `members[k]` (or
    /// `members[0]` for every member when given one batch, as scoring
    /// does) and, with `acc`, member k's accuracies `acc[k]` (one per real
    /// row). Write the pairs into a `Plan` or a `CpuExec`.
    pub fn feed(&self, members: &[&HostBatch], acc: Option<&[&[f32]]>) -> Vec<(T, Vec<f32>)> {
        let (e, b, hid) = (self.ensemble, self.batch, self.hidden);
        assert!(
            members.len() == e || members.len() == 1,
            "{} host batches for {e} members",
            members.len()
        );
        let of = |k: usize| members[if members.len() == 1 { 0 } else { k }];
        for k in 0..e {
            assert_eq!(of(k).batch, b, "host batch of the wrong size");
            assert_eq!(of(k).blocks, self.blocks, "host batch of the wrong length");
        }
        let per_kind = 2 * self.blocks;
        let mut out = Vec::with_capacity(self.blocks + 3);
        for (kind, tensor, v) in [
            (0, self.input_tokens, self.vocab.0),
            (2, self.op_tokens, self.vocab.1),
        ] {
            let mut hot = vec![0.0; per_kind * e * v * b];
            for j in 0..per_kind {
                // Token j of the kind is step 4·(j/2) + kind + j%2.
                let t = TOKENS_PER_BLOCK * (j / 2) + kind + j % 2;
                for k in 0..e {
                    for (n, class) in of(k).tokens[t].iter().enumerate() {
                        if let Some(c) = *class {
                            assert!(c < v, "step {t}: token {c} outside a vocabulary of {v}");
                            hot[((j * e + k) * v + c) * b + n] = 1.0;
                        }
                    }
                }
            }
            out.push((tensor, hot));
        }
        for (p, &mask) in self.masks.iter().enumerate() {
            let mut m = Vec::with_capacity(e * hid * b);
            for k in 0..e {
                for _ in 0..hid {
                    m.extend_from_slice(&of(k).masks[p]);
                }
            }
            out.push((mask, m));
        }
        if let Some(acc) = acc {
            let io = self
                .train
                .as_ref()
                .expect("targets only in a training graph");
            assert_eq!(acc.len(), e, "one accuracy list per member");
            let (mut target, mut weight) = (vec![0.0; e * b], vec![0.0; e * b]);
            for (k, a) in acc.iter().enumerate() {
                let rows = of(k).rows;
                assert_eq!(a.len(), rows, "member {k}: one accuracy per real row");
                target[k * b..k * b + rows].copy_from_slice(a);
                let w = (e * b) as f32 / rows.max(1) as f32;
                weight[k * b..k * b + rows].fill(w);
            }
            out.push((io.target, target));
            out.push((io.weight, weight));
        }
        out
    }

    /// Every weight by name.
    pub fn named_params(&self) -> HashMap<String, T> {
        self.params
            .iter()
            .map(|&p| (self.g.def(p).name.clone(), p))
            .collect()
    }
}

/// The host side of one member's batch: up to `batch` cells, left-padded to
/// `blocks` block positions; rows past `rows` are padding.
#[derive(Debug, Clone)]
pub struct HostBatch {
    pub batch: usize,
    pub blocks: usize,
    pub rows: usize,
    /// Per step (4 per block position), per row: the token class, None
    /// for padding.
    pub tokens: Vec<Vec<Option<usize>>>,
    /// Per block position 0..blocks−1, per row: 1 where the row's cell has
    /// a block there.
    pub masks: Vec<Vec<f32>>,
}

impl HostBatch {
    /// Panics on more cells than rows or a cell of 0 or more than `blocks`
    /// blocks (`cell_tokens` checks cells first).
    pub fn new<C: AsRef<[Block]>>(cells: &[C], batch: usize, blocks: usize) -> HostBatch {
        assert!(
            cells.len() <= batch,
            "{} cells in a batch of {batch}",
            cells.len()
        );
        let mut tokens = vec![vec![None; batch]; TOKENS_PER_BLOCK * blocks];
        let mut masks = vec![vec![0.0; batch]; blocks - 1];
        for (n, toks) in cells.iter().enumerate() {
            let toks = toks.as_ref();
            let b = toks.len();
            assert!(
                (1..=blocks).contains(&b),
                "a cell of {b} blocks in a batch of up to {blocks}"
            );
            for (k, &(i1, i2, o1, o2)) in toks.iter().enumerate() {
                let pos = blocks - b + k;
                if pos + 1 < blocks {
                    masks[pos][n] = 1.0;
                }
                for (j, tok) in [i1, i2, o1, o2].into_iter().enumerate() {
                    tokens[pos * TOKENS_PER_BLOCK + j][n] = Some(tok);
                }
            }
        }
        HostBatch {
            batch,
            blocks,
            rows: cells.len(),
            tokens,
            masks,
        }
    }
}

/// The tokens of every cell, checked against `op_set`; the error names
/// the cell. Input tokens are *relative*: the two cell inputs keep tokens
/// 0 and 1, and block j reading block k's output gets token 1 + (j − k),
/// its distance back. Absolute indices would give every level of the
/// progressive search a token no cell measured so far contains (b = 3
/// introduces "block 1's output"); relative ones reuse "the previous
/// block" from b = 3 on, so the predictor carries what it learned one block
/// further. Same vocabulary size; one-to-one with the absolute encoding.
pub fn cell_tokens(cells: &[Cell], op_set: &OpSet) -> Result<Vec<Tokens>> {
    let relative = |j: usize, i: usize| if i < 2 { i } else { 1 + j - (i - 2) };
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            cell.validate(op_set)
                .and_then(|()| space::encode(cell, op_set))
                .map(|t| {
                    t.into_iter()
                        .enumerate()
                        .map(|(j, (i1, i2, o1, o2))| (relative(j, i1), relative(j, i2), o1, o2))
                        .collect()
                })
                .map_err(|e| anyhow::anyhow!("predictor: cell {i}: {e}"))
        })
        .collect()
}

/// What one `fit` did.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub samples: usize,
    pub epochs: usize,
    /// Recorded steps (each trains every member on one batch).
    pub steps: usize,
    pub seconds: f64,
    /// Wall time per step, host batching and uploads included.
    pub ms_per_step: f64,
    /// Per epoch: the members' mean training L1 (mean over steps of the
    /// batch means).
    pub epoch_loss: Vec<f32>,
    /// Out of fold (ensemble > 1): every measurement predicted by the
    /// member that did not train on it; mean |error| and Kendall τ.
    pub oof_l1: Option<f64>,
    pub oof_tau: Option<f64>,
}

/// A scoring graph, its recorded plan, and its (scoring, training) weight
/// pairs.
struct Scorer {
    graph: PredictorGraph,
    plan: Plan,
    pairs: Vec<(T, T)>,
}

/// The ensemble predictor: the recorded training step (cells of any
/// length, masked), one recorded prefix step per longest prefix length
/// b = 1..BLOCKS (4·b steps; a prefix is at most BLOCKS − 1 blocks), and
/// the tail step (one block from a given state). Scoring runs every distinct prefix (a cell less its last block)
/// once and each cell's last block from its prefix's state: the
/// progressive search scores thousands of expansions of a few parents, so
/// a b-block expansion costs 4 steps instead of 4·b. All are recorded
/// once, in `new`.
pub struct Predictor {
    op_set: OpSet,
    cfg: PredictorConfig,
    train: PredictorGraph,
    train_plan: Plan,
    /// Index b − 1: the scorer of b-block prefixes, b < BLOCKS.
    scorers: Vec<Scorer>,
    tail: Scorer,
}

impl Predictor {
    /// Build and record every graph; the weights start at their seeded
    /// initial values (so `predict` works before `fit`).
    pub fn new(gpu: &Gpu, op_set: &OpSet, cfg: PredictorConfig) -> Result<Predictor> {
        cfg.validate()?;
        let train = PredictorGraph::training(op_set, &cfg);
        let train_plan =
            Plan::new(gpu, &train.g).context("recording the predictor's training step")?;
        let by_name = train.named_params();
        let record = |graph: PredictorGraph, what: &str| -> Result<Scorer> {
            let pairs = graph
                .params
                .iter()
                .map(|&p| {
                    let name = &graph.g.def(p).name;
                    let t = by_name.get(name).with_context(|| {
                        format!("scoring weight {name} not in the training graph")
                    })?;
                    Ok((p, *t))
                })
                .collect::<Result<Vec<_>>>()?;
            let plan = Plan::new(gpu, &graph.g)
                .with_context(|| format!("recording the predictor's {what}"))?;
            plan.copy_from(gpu, &train_plan, &pairs);
            Ok(Scorer { graph, plan, pairs })
        };
        let scorers = (1..BLOCKS)
            .map(|blocks| {
                record(
                    PredictorGraph::scoring(op_set, &cfg, blocks),
                    &format!("scoring step for {blocks} blocks"),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let tail = record(PredictorGraph::tail(op_set, &cfg), "tail scoring step")?;
        Ok(Predictor {
            op_set: op_set.clone(),
            cfg,
            train,
            train_plan,
            scorers,
            tail,
        })
    }

    pub fn config(&self) -> &PredictorConfig {
        &self.cfg
    }

    /// The training graph (its plan is what `fit` steps).
    pub fn training_graph(&self) -> &PredictorGraph {
        &self.train
    }

    /// Dispatches of one training step and of one tail scoring step.
    pub fn dispatches(&self) -> (usize, usize) {
        (self.train_plan.dispatches(), self.tail.plan.dispatches())
    }

    /// Train from scratch on `cells` and their measured accuracies: every
    /// weight and Adam moment goes back to its seeded initial value first,
    /// so a fit depends only on the measurements and the seed (the
    /// progressive search refits on all measurements at every level).
    /// Member k trains on every measurement outside fold k (folds by a
    /// seeded shuffle, sizes within one of each other). Each epoch cuts
    /// every member's shuffled training set into the same number of
    /// batches (ceil(largest set / batch)), as even as possible; short
    /// batches are completed by padding rows that do not count.
    pub fn fit(&mut self, gpu: &Gpu, cells: &[Cell], acc: &[f32]) -> Result<FitReport> {
        ensure!(
            cells.len() == acc.len(),
            "predictor fit: {} cells but {} accuracies",
            cells.len(),
            acc.len()
        );
        if let Some((i, a)) = acc
            .iter()
            .enumerate()
            .find(|(_, a)| !(0.0..=1.0).contains(*a))
        {
            bail!("predictor fit: accuracy {i} is {a}, expected a value in [0, 1]");
        }
        let e = self.cfg.ensemble;
        let n = cells.len();
        ensure!(
            n >= if e > 1 { 2 } else { 1 },
            "predictor fit: {n} measurements are too few for an ensemble of {e}"
        );
        let tokens = cell_tokens(cells, &self.op_set)?;
        let start = Instant::now();
        let mut rng = verify::rng(self.cfg.seed ^ 0x0f01_d5ee_d000);
        let fold = folds(n, e, &mut rng);
        let mut sets: Vec<Vec<usize>> = (0..e)
            .map(|k| (0..n).filter(|&i| e == 1 || fold[i] != k).collect())
            .collect();
        let largest = sets.iter().map(Vec::len).max().unwrap_or(0);
        let steps_per_epoch = largest.div_ceil(self.cfg.batch);

        self.reset(gpu);
        let io = self.train.train.clone().expect("a training graph");
        let b = self.cfg.batch;
        let mut step = 0usize;
        let mut epoch_loss = Vec::with_capacity(self.cfg.epochs);
        for epoch in 0..self.cfg.epochs {
            for s in sets.iter_mut() {
                s.shuffle(&mut rng);
            }
            for k in 0..steps_per_epoch {
                let idx: Vec<&[usize]> = sets
                    .iter()
                    .map(|set| even_chunk(set, steps_per_epoch, k))
                    .collect();
                let batches: Vec<HostBatch> = idx
                    .iter()
                    .map(|ix| {
                        let toks: Vec<&Tokens> = ix.iter().map(|&i| &tokens[i]).collect();
                        HostBatch::new(&toks, b, BLOCKS)
                    })
                    .collect();
                let accs: Vec<Vec<f32>> = idx
                    .iter()
                    .map(|ix| ix.iter().map(|&i| acc[i]).collect())
                    .collect();
                let refs: Vec<&HostBatch> = batches.iter().collect();
                let acc_refs: Vec<&[f32]> = accs.iter().map(Vec::as_slice).collect();
                for (t, v) in self.train.feed(&refs, Some(&acc_refs)) {
                    self.train_plan.write(gpu, t, &v);
                }
                for &node in &io.updates.nodes {
                    if let Op::Adam(h) = &mut self.train.g.nodes[node].op {
                        h.step = step as u32 + 1;
                    }
                }
                self.train_plan.sync_hyperparameters(gpu, &self.train.g);
                self.train_plan.step(gpu)?;
                step += 1;
            }
            let sum = self.train_plan.read(gpu, io.loss_sum)?[0];
            self.train_plan.write(gpu, io.loss_sum, &[0.0]);
            let mean = sum / (steps_per_epoch * e) as f32;
            if !mean.is_finite() {
                bail!("predictor training loss became {mean} in epoch {epoch}: lower the lr?");
            }
            epoch_loss.push(mean);
        }
        let seconds = start.elapsed().as_secs_f64();
        for sc in self.scorers.iter().chain([&self.tail]) {
            sc.plan.copy_from(gpu, &self.train_plan, &sc.pairs);
        }

        let (oof_l1, oof_tau) = if e > 1 {
            let per = self.member_predictions(gpu, &tokens)?;
            let oof: Vec<f32> = (0..n).map(|i| per[fold[i]][i]).collect();
            let l1 = oof
                .iter()
                .zip(acc)
                .map(|(&p, &a)| (p as f64 - a as f64).abs())
                .sum::<f64>()
                / n as f64;
            (Some(l1), Some(rank::kendall_tau(&oof, acc)))
        } else {
            (None, None)
        };
        Ok(FitReport {
            samples: n,
            epochs: self.cfg.epochs,
            steps: step,
            seconds,
            ms_per_step: seconds * 1e3 / step.max(1) as f64,
            epoch_loss,
            oof_l1,
            oof_tau,
        })
    }

    /// Per cell, the members' mean predicted accuracy and their standard
    /// deviation (over the E members, dividing by E).
    pub fn predict(&self, gpu: &Gpu, cells: &[Cell]) -> Result<Vec<(f32, f32)>> {
        let tokens = cell_tokens(cells, &self.op_set)?;
        let per = self.member_predictions(gpu, &tokens)?;
        let e = per.len() as f64;
        Ok((0..cells.len())
            .map(|i| {
                let mean = per.iter().map(|p| p[i] as f64).sum::<f64>() / e;
                let var = per
                    .iter()
                    .map(|p| (p[i] as f64 - mean).powi(2))
                    .sum::<f64>()
                    / e;
                (mean as f32, var.sqrt() as f32)
            })
            .collect())
    }

    /// Every member's prediction of every cell: [member][cell].
    pub fn member_predictions_of(&self, gpu: &Gpu, cells: &[Cell]) -> Result<Vec<Vec<f32>>> {
        self.member_predictions(gpu, &cell_tokens(cells, &self.op_set)?)
    }

    /// Every distinct prefix (a cell less its last block) through the
    /// scorer of its length, longest first in batches of `predict_batch`
    /// (shorter ones masked), keeping its final state; then every cell's
    /// last block through the tail step from its prefix's state (zero for
    /// a 1-block cell).
    fn member_predictions(&self, gpu: &Gpu, tokens: &[Tokens]) -> Result<Vec<Vec<f32>>> {
        let (e, pb, hid) = (self.cfg.ensemble, self.cfg.predict_batch, self.cfg.hidden);
        let width = e * hid;
        // Prefix index per cell (None: no prefix).
        let mut prefixes: Vec<&[Block]> = Vec::new();
        let mut seen: HashMap<&[Block], usize> = HashMap::new();
        let of_cell: Vec<Option<usize>> = tokens
            .iter()
            .map(|t| {
                let p = &t[..t.len() - 1];
                (!p.is_empty()).then(|| {
                    *seen.entry(p).or_insert_with(|| {
                        prefixes.push(p);
                        prefixes.len() - 1
                    })
                })
            })
            .collect();
        // The prefixes' final states, [prefix][member·hidden] for h and c.
        let mut state = vec![(vec![0.0; width], vec![0.0; width]); prefixes.len()];
        let mut order: Vec<usize> = (0..prefixes.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(prefixes[i].len()));
        for chunk in order.chunks(pb) {
            let blocks = prefixes[chunk[0]].len();
            let sc = &self.scorers[blocks - 1];
            let toks: Vec<&[Block]> = chunk.iter().map(|&i| prefixes[i]).collect();
            let hb = HostBatch::new(&toks, pb, blocks);
            for (t, v) in sc.graph.feed(&[&hb], None) {
                sc.plan.write(gpu, t, &v);
            }
            sc.plan.step(gpu)?;
            let (h, c) = (
                sc.plan.read(gpu, sc.graph.last.0)?,
                sc.plan.read(gpu, sc.graph.last.1)?,
            );
            for (r, &i) in chunk.iter().enumerate() {
                for u in 0..width {
                    state[i].0[u] = h[u * pb + r];
                    state[i].1[u] = c[u * pb + r];
                }
            }
        }
        let tail = &self.tail;
        let (h0, c0) = tail.graph.init.expect("the tail graph starts from a state");
        let mut per = vec![vec![0.0; tokens.len()]; e];
        let cells: Vec<usize> = (0..tokens.len()).collect();
        for chunk in cells.chunks(pb) {
            let toks: Vec<&[Block]> = chunk
                .iter()
                .map(|&i| &tokens[i][tokens[i].len() - 1..])
                .collect();
            let hb = HostBatch::new(&toks, pb, 1);
            for (t, v) in tail.graph.feed(&[&hb], None) {
                tail.plan.write(gpu, t, &v);
            }
            let (mut h, mut c) = (vec![0.0; width * pb], vec![0.0; width * pb]);
            for (r, &i) in chunk.iter().enumerate() {
                if let Some(p) = of_cell[i] {
                    for u in 0..width {
                        h[u * pb + r] = state[p].0[u];
                        c[u * pb + r] = state[p].1[u];
                    }
                }
            }
            tail.plan.write(gpu, h0, &h);
            tail.plan.write(gpu, c0, &c);
            tail.plan.step(gpu)?;
            let all = tail.plan.read(gpu, tail.graph.pred)?;
            for (m, p) in per.iter_mut().enumerate() {
                for (r, &i) in chunk.iter().enumerate() {
                    p[i] = all[m * pb + r];
                }
            }
        }
        Ok(per)
    }

    /// Member `k`'s current weights as one PyTorch-style predictor:
    /// `embed_inputs.weight` [embed, input vocab] and `embed_ops.weight`
    /// [embed, op vocab] (token t is column t), `lstm.weight_ih_l0`
    /// [4·hidden, embed], `lstm.weight_hh_l0` [4·hidden, hidden],
    /// `lstm.bias_ih_l0` [4·hidden] (the one bias), `lstm.bias_hh_l0`
    /// (zeros), `head.weight` [1, hidden], `head.bias` [1]; read from the
    /// tail scoring plan (every scorer holds the same weights), row-major.
    pub fn member_weights(&self, gpu: &Gpu, k: usize) -> Result<HashMap<String, Vec<f32>>> {
        let e = self.cfg.ensemble;
        ensure!(k < e, "the predictor has no member {k} (ensemble of {e})");
        let sc = &self.tail;
        let named = sc.graph.named_params();
        let read = |name: &str| -> Result<Vec<f32>> {
            let v = sc.plan.read(gpu, named[name])?;
            // Member k's rows: the k-th of E equal row blocks.
            let per = v.len() / e;
            Ok(v[k * per..(k + 1) * per].to_vec())
        };
        let hid = self.cfg.hidden;
        Ok(HashMap::from([
            ("embed_inputs.weight".into(), read("embed_inputs.weight")?),
            ("embed_ops.weight".into(), read("embed_ops.weight")?),
            ("lstm.weight_ih_l0".into(), read("lstm.weight_ih")?),
            ("lstm.weight_hh_l0".into(), read("lstm.weight_hh")?),
            ("lstm.bias_ih_l0".into(), read("lstm.bias")?),
            ("lstm.bias_hh_l0".into(), vec![0.0; 4 * hid]),
            ("head.weight".into(), read("head.weight")?),
            ("head.bias".into(), read("head.bias")?),
        ]))
    }

    /// Every weight, Adam moment and accumulator of the training plan back
    /// to its initial value.
    fn reset(&mut self, gpu: &Gpu) {
        for (i, d) in self.train.g.tensors.iter().enumerate() {
            if matches!(d.kind, Kind::Param | Kind::State) {
                match &d.init {
                    Some(v) => self.train_plan.write(gpu, T(i), v),
                    None => self.train_plan.write(gpu, T(i), &vec![0.0; d.len()]),
                }
            }
        }
    }
}

/// Fold of each of `n` measurements: a seeded shuffle dealt round-robin
/// into `e` folds (sizes within one).
fn folds(n: usize, e: usize, rng: &mut verify::Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut fold = vec![0; n];
    for (pos, &i) in order.iter().enumerate() {
        fold[i] = pos % e;
    }
    fold
}

/// Chunk `k` of `parts` as-even-as-possible chunks of `set`.
fn even_chunk(set: &[usize], parts: usize, k: usize) -> &[usize] {
    let (q, r) = (set.len() / parts, set.len() % parts);
    let start = k * q + k.min(r);
    let len = q + usize::from(k < r);
    &set[start..start + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_set_evenly() {
        let set: Vec<usize> = (0..23).collect();
        let parts: Vec<&[usize]> = (0..4).map(|k| even_chunk(&set, 4, k)).collect();
        let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(sizes, [6, 6, 6, 5]);
        assert_eq!(parts.concat(), set);
    }

    #[test]
    fn folds_are_balanced_and_seeded() {
        let f = folds(23, 5, &mut verify::rng(3));
        let mut sizes = [0; 5];
        for &k in &f {
            sizes[k] += 1;
        }
        assert_eq!(sizes, [5, 5, 5, 4, 4]);
        assert_eq!(f, folds(23, 5, &mut verify::rng(3)));
        assert_ne!(f, folds(23, 5, &mut verify::rng(4)));
    }

    #[test]
    fn input_tokens_are_distances_back() {
        use crate::space::{Block, Cell, OpKind::*};
        // Block 0 reads the cell inputs; block 2 reads block 1 (one back)
        // and block 0 (two back); block 1 reads block 0 and input 1.
        let cell = Cell {
            blocks: vec![
                Block::new(0, SepConv3x3, 1, Identity),
                Block::new(2, MaxPool3x3, 1, SepConv5x5),
                Block::new(3, Identity, 2, AvgPool3x3),
            ],
        };
        let t = cell_tokens(&[cell], &OpSet::pnas()).unwrap();
        let inputs: Vec<(usize, usize)> = t[0].iter().map(|b| (b.0, b.1)).collect();
        // Canonical blocks sort their (input, op) pairs by absolute input.
        assert_eq!(inputs, [(0, 1), (1, 2), (3, 2)]);
        let (iv, _) = space::vocab_sizes(&OpSet::pnas());
        let ops = [SepConv3x3, SepConv5x5, SepConv7x7, MaxPool3x3, AvgPool3x3];
        let far = Cell {
            blocks: (0..BLOCKS)
                .map(|j| Block::new(if j == 0 { 0 } else { 2 }, ops[j], 1, Identity))
                .collect(),
        };
        let t = cell_tokens(&[far], &OpSet::pnas()).unwrap();
        assert_eq!(t[0].last().unwrap().1, iv - 1, "block 4 reading block 0");
    }

    #[test]
    fn host_batch_left_pads() {
        // A 2-block cell in a batch of 2: blocks at positions 3 and 4.
        let toks: Tokens = vec![(0, 1, 2, 3), (2, 0, 1, 1)];
        let hb = HostBatch::new(&[&toks], 2, BLOCKS);
        assert_eq!(hb.rows, 1);
        let masks: Vec<f32> = hb.masks.iter().map(|m| m[0]).collect();
        assert_eq!(masks, [0.0, 0.0, 0.0, 1.0]);
        assert!(hb.masks.iter().all(|m| m[1] == 0.0), "padding row masked");
        let row0: Vec<Option<usize>> = hb.tokens.iter().map(|t| t[0]).collect();
        let mut want = vec![None; 12];
        want.extend([0, 1, 2, 3, 2, 0, 1, 1].map(Some));
        assert_eq!(row0, want);
        assert!(hb.tokens.iter().all(|t| t[1].is_none()), "padding row");
    }

    #[test]
    fn feed_lays_out_members_side_by_side() {
        let cfg = PredictorConfig {
            hidden: 3,
            embed: 2,
            ensemble: 2,
            batch: 2,
            ..PredictorConfig::default()
        };
        let pg = PredictorGraph::training(&OpSet::pnas(), &cfg);
        let (iv, _) = pg.vocab;
        let one: Tokens = vec![(1, 0, 0, 0)];
        let five: Tokens = vec![(0, 1, 0, 0); 5];
        let a = HostBatch::new(&[&one], 2, BLOCKS);
        let b = HostBatch::new(&[&five, &one], 2, BLOCKS);
        let feed: HashMap<T, Vec<f32>> = pg
            .feed(&[&a, &b], Some(&[&[0.25], &[0.5, 0.75]]))
            .into_iter()
            .collect();
        // Input token 8 (the last block's I1): member 0 row 0 has class 1,
        // member 1 rows 0 and 1 have classes 0 and 1.
        let hot = &feed[&pg.input_tokens][8 * 2 * iv * 2..9 * 2 * iv * 2];
        let at = |k: usize, v: usize, n: usize| hot[(k * iv + v) * 2 + n];
        assert_eq!((at(0, 1, 0), at(0, 1, 1)), (1.0, 0.0));
        assert_eq!((at(1, 0, 0), at(1, 1, 1)), (1.0, 1.0));
        assert_eq!(hot.iter().sum::<f32>(), 3.0);
        // Block position 0: only member 1's first row has a block there,
        // for every hidden unit.
        assert_eq!(
            feed[&pg.masks[0]],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
        );
        let io = pg.train.as_ref().unwrap();
        assert_eq!(feed[&io.target], [0.25, 0.0, 0.5, 0.75]);
        // E·batch/rows: 4 on member 0's one row, 2 on member 1's two.
        assert_eq!(feed[&io.weight], [4.0, 0.0, 2.0, 2.0]);
    }
}
