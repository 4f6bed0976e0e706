//! The progressive search of S2 (PNAS, METHOD.md): b = 1 measures every
//! distinct 1-block cell; for b = 2..5 the kept cells are expanded by one
//! block, every expansion is scored by the predictor, the top K are
//! measured (with `explore` expansions drawn at random beside them) and the
//! predictor is retrained on all measurements so far. With `anchor`, an
//! expansion's score is its parent's *measured* accuracy plus the
//! predictor's change from parent to child (see [`ProgressiveConfig`]). At
//! the end the S1-derived cell is measured beside the top K of b = 5 and
//! the best measured cell is the candidate.
//!
//! One cell structure is searched and used for both cell kinds, normal and
//! reduction (PNAS's choice: a reduction cell is the same cell with stride
//! 2 on the inputs from previous cells), so every measurement and every
//! prediction is of one `Cell`. The measurer decides how a cell becomes a
//! network (see `measure`).

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{ensure, Result};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::rank::{kendall_tau, spearman_rho};
use crate::space::{canonical_cell, enumerate_one_block_cells, expand, Cell, OpSet, BLOCKS};

/// Turns a cell into an accuracy in [0, 1] (one-shot from the supernet, or
/// trained from scratch).
pub trait Measure {
    fn measure(&mut self, cell: &Cell) -> Result<f32>;
    /// Every cell of `cells`, in order (a measurer with several devices
    /// measures them side by side).
    fn measure_many(&mut self, cells: &[Cell]) -> Result<Vec<f32>> {
        cells.iter().map(|c| self.measure(c)).collect()
    }
}

/// A performance predictor: trained on (cell, accuracy) pairs, it scores
/// cells with a mean and a spread (the ensemble's disagreement).
pub trait Predict {
    /// Returns the out-of-fold Kendall τ on the training measurements
    /// when the predictor has one (an ensemble over folds).
    fn fit(&mut self, cells: &[Cell], accuracy: &[f32]) -> Result<Option<f64>>;
    fn predict(&mut self, cells: &[Cell]) -> Result<Vec<(f32, f32)>>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressiveConfig {
    /// Cells kept (and measured) per level: PNAS's K, ≥ 128 in the patent.
    pub top_k: usize,
    /// Blocks of the final cell (5 in the cell space).
    pub blocks: usize,
    /// Expansions measured per level beside the top K, drawn uniformly
    /// from the rest. The top K are all predicted high, so their measured
    /// accuracies span a narrow range where measurement noise decides the
    /// order; the explored cells give the predictor's τ/ρ a fair range to
    /// be judged on, and the predictor training data it would never choose.
    #[serde(default)]
    pub explore: usize,
    /// Seed of the explored draw.
    #[serde(default)]
    pub seed: u64,
    /// Score an expansion as measured(parent) + predicted(child) −
    /// predicted(parent) instead of predicted(child) alone. Every expansion
    /// at b + 1 is a cell measured at b plus one block; the measurement
    /// carries what the predictor gets wrong about the shared b blocks
    /// (including its bias on a length it has not seen), and the predictor
    /// only has to judge the added block. On the bundled data the parent's
    /// accuracy alone ranks the next level's cells better than the LSTM
    /// (BENCHMARKS.md). false: PNAS's plain predictor score.
    #[serde(default = "super::yes")]
    pub anchor: bool,
    /// With `anchor`: the weight w of the predicted change, score =
    /// measured(parent) + w · (predicted(child) − predicted(parent)). Below
    /// 1 it trusts the measurement more than the predictor's judgement of
    /// the added block: the change it predicts spans several times the
    /// spread of the parents' accuracies, and is noisier (BENCHMARKS.md).
    #[serde(default = "one")]
    pub anchor_weight: f32,
}

fn one() -> f32 {
    1.0
}

impl Default for ProgressiveConfig {
    fn default() -> Self {
        ProgressiveConfig {
            top_k: 128,
            blocks: BLOCKS,
            explore: 32,
            seed: 0,
            anchor: true,
            anchor_weight: 1.0,
        }
    }
}

impl ProgressiveConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.top_k == 0 {
            return Err("top_k 0: keep at least one cell per level".into());
        }
        if self.blocks == 0 || self.blocks > BLOCKS {
            return Err(format!("blocks {}: must be 1..={BLOCKS}", self.blocks));
        }
        if !(self.anchor_weight.is_finite() && self.anchor_weight > 0.0) {
            return Err(format!(
                "anchor_weight {}: must be positive (the predictor must rank siblings)",
                self.anchor_weight
            ));
        }
        Ok(())
    }
}

/// One line of `predictor.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LevelReport {
    /// Blocks per cell at this level.
    pub blocks: usize,
    /// Expansions scored by the predictor (0 at b = 1: all are measured).
    pub predicted: usize,
    pub measured: usize,
    /// Of which drawn at random beside the top K (`explore`).
    #[serde(default)]
    pub explored: usize,
    /// Kendall τ and Spearman ρ between the predictor's scores (before it
    /// is retrained on them) and the measured accuracies of this level's
    /// cells, the top K and the explored ones; None at b = 1, where nothing
    /// is predicted.
    pub kendall_tau: Option<f64>,
    pub spearman_rho: Option<f64>,
    /// τ over the top K alone (a narrow, noise-dominated range).
    #[serde(default)]
    pub kendall_tau_top: Option<f64>,
    /// With `anchor`: τ of the predictor's own scores (unanchored) over
    /// the same cells, to show what the anchoring adds.
    #[serde(default)]
    pub kendall_tau_raw: Option<f64>,
    /// The refit after this level: out-of-fold τ on every measurement so
    /// far (each predicted by the ensemble member that did not train on it).
    #[serde(default)]
    pub fit_oof_tau: Option<f64>,
    /// Mean ensemble spread over the measured cells' predictions.
    pub mean_spread: Option<f64>,
    /// (predicted, measured) accuracy of each newly measured cell, the
    /// top K first, then the explored ones; empty at b = 1.
    #[serde(default)]
    pub pairs: Vec<(f32, f32)>,
    pub best_accuracy: f32,
    pub mean_accuracy: f32,
    pub best_cell: Cell,
    pub seconds: f64,
    pub measure_seconds: f64,
    pub predict_seconds: f64,
    pub fit_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressiveResult {
    pub levels: Vec<LevelReport>,
    /// The best measured cell of the last level or the S1 cell.
    pub candidate: Cell,
    pub candidate_accuracy: f32,
    /// The S1-derived cell's measured accuracy, when one was given.
    pub s1_accuracy: Option<f32>,
    /// Whether the candidate is the S1 cell (it measured best).
    pub candidate_is_s1: bool,
    /// Every measurement, in order.
    pub measured: Vec<(Cell, f32)>,
}

/// Indices of the `k` largest scores, best first; ties keep the earlier.
fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// The predictor's (mean, spread) for every one of `cells`, or an error.
fn predict_all(predictor: &mut impl Predict, cells: &[Cell]) -> Result<Vec<(f32, f32)>> {
    let preds = predictor.predict(cells)?;
    ensure!(
        preds.len() == cells.len(),
        "the predictor scored {} of {} cells",
        preds.len(),
        cells.len()
    );
    Ok(preds)
}

/// The anchored scores of `expansions` (raw predictions `raw`): each one's
/// parent (its first b − 1 blocks, one of `kept`) measured `kept_acc`, plus
/// the predicted change from the parent to it.
fn anchored(
    predictor: &mut impl Predict,
    kept: &[Cell],
    kept_acc: &[f32],
    expansions: &[Cell],
    raw: &[f32],
    w: f32,
) -> Result<Vec<f32>> {
    let parent_pred = predict_all(predictor, kept)?;
    let index: std::collections::HashMap<&[crate::space::Block], usize> = kept
        .iter()
        .enumerate()
        .map(|(i, c)| (c.blocks.as_slice(), i))
        .collect();
    expansions
        .iter()
        .zip(raw)
        .map(|(c, &r)| {
            let parent = &c.blocks[..c.blocks.len() - 1];
            let &i = index
                .get(parent)
                .ok_or_else(|| anyhow::anyhow!("expansion {c:?}: its parent is not a kept cell"))?;
            // In f64, exact for f32 inputs: a child scored as its parent
            // gets exactly the parent's measurement.
            Ok((kept_acc[i] as f64 + w as f64 * (r as f64 - parent_pred[i].0 as f64)) as f32)
        })
        .collect()
}

fn measure_all(m: &mut impl Measure, cells: &[Cell]) -> Result<Vec<f32>> {
    let acc = m.measure_many(cells)?;
    ensure!(
        acc.len() == cells.len(),
        "{} accuracies measured for {} cells",
        acc.len(),
        cells.len()
    );
    for (a, c) in acc.iter().zip(cells) {
        ensure!(
            a.is_finite() && (0.0..=1.0).contains(a),
            "measured accuracy {a} of cell {c:?} is not in [0, 1]"
        );
    }
    Ok(acc)
}

/// Run the progressive search; `log` receives each level as it ends.
pub fn run(
    cfg: &ProgressiveConfig,
    op_set: &OpSet,
    measurer: &mut impl Measure,
    predictor: &mut impl Predict,
    s1_cell: Option<&Cell>,
    mut log: impl FnMut(&LevelReport),
) -> Result<ProgressiveResult> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let mut measured: Vec<(Cell, f32)> = Vec::new();
    let mut levels = Vec::new();
    let mut kept: Vec<Cell> = Vec::new();
    let mut kept_acc: Vec<f32> = Vec::new();
    for b in 1..=cfg.blocks {
        let start = Instant::now();
        let (mut predict_s, mut fit_s) = (0.0, 0.0);
        let mut oof_tau = None;
        // The cells of this level and, from b = 2, their predicted scores.
        let (cells, scores, predicted) = if b == 1 {
            (enumerate_one_block_cells(op_set), None, 0)
        } else {
            let expansions: Vec<Cell> = kept
                .iter()
                .flat_map(|c| expand(c, op_set))
                .map(|c| canonical_cell(&c))
                .collect::<BTreeSet<Cell>>()
                .into_iter()
                .collect();
            let t = Instant::now();
            let preds = predict_all(predictor, &expansions)?;
            let raw: Vec<f32> = preds.iter().map(|p| p.0).collect();
            let means = if cfg.anchor {
                anchored(
                    predictor,
                    &kept,
                    &kept_acc,
                    &expansions,
                    &raw,
                    cfg.anchor_weight,
                )?
            } else {
                raw.clone()
            };
            predict_s = t.elapsed().as_secs_f64();
            let mut top = top_k(&means, cfg.top_k);
            let n_top = top.len();
            let mut rest: Vec<usize> = (0..expansions.len()).filter(|i| !top.contains(i)).collect();
            let mut rng = crate::verify::rng(cfg.seed ^ (b as u64).wrapping_mul(0x9e37_79b9));
            rest.shuffle(&mut rng);
            top.extend(rest.into_iter().take(cfg.explore));
            let cells: Vec<Cell> = top.iter().map(|&i| expansions[i].clone()).collect();
            let scores: Vec<(f32, f32, f32)> = top
                .iter()
                .map(|&i| (means[i], preds[i].1, raw[i]))
                .collect();
            (cells, Some((scores, n_top)), expansions.len())
        };
        let t = Instant::now();
        let acc = measure_all(measurer, &cells)?;
        let measure_s = t.elapsed().as_secs_f64();
        let n_top = scores.as_ref().map_or(cells.len(), |s| s.1);
        let (tau, rho, spread, tau_top, tau_raw) = match &scores {
            Some((s, n_top)) if cells.len() >= 2 => {
                let p: Vec<f64> = s.iter().map(|x| x.0 as f64).collect();
                let a: Vec<f64> = acc.iter().map(|&x| x as f64).collect();
                let spread = s.iter().map(|x| x.1 as f64).sum::<f64>() / s.len() as f64;
                let tau_top = (*n_top >= 2).then(|| kendall_tau(&p[..*n_top], &a[..*n_top]));
                let raw: Vec<f64> = s.iter().map(|x| x.2 as f64).collect();
                (
                    Some(kendall_tau(&p, &a)),
                    Some(spearman_rho(&p, &a)),
                    Some(spread),
                    tau_top,
                    cfg.anchor.then(|| kendall_tau(&raw, &a)),
                )
            }
            _ => (None, None, None, None, None),
        };
        measured.extend(cells.iter().cloned().zip(acc.iter().copied()));
        if b < cfg.blocks {
            let (all_cells, all_acc): (Vec<Cell>, Vec<f32>) = measured.iter().cloned().unzip();
            let t = Instant::now();
            oof_tau = predictor.fit(&all_cells, &all_acc)?;
            fit_s = t.elapsed().as_secs_f64();
        }
        // Keep the K best measured cells of this level for expansion.
        let order = top_k(&acc, cfg.top_k);
        kept = order.iter().map(|&i| cells[i].clone()).collect();
        kept_acc = order.iter().map(|&i| acc[i]).collect();
        let report = LevelReport {
            blocks: b,
            predicted,
            measured: cells.len(),
            explored: cells.len() - n_top,
            kendall_tau: tau,
            spearman_rho: rho,
            kendall_tau_top: tau_top,
            kendall_tau_raw: tau_raw,
            fit_oof_tau: oof_tau,
            mean_spread: spread,
            pairs: scores
                .as_ref()
                .map(|(s, _)| s.iter().map(|x| x.0).zip(acc.iter().copied()).collect())
                .unwrap_or_default(),
            best_accuracy: kept_acc[0],
            mean_accuracy: acc.iter().sum::<f32>() / acc.len() as f32,
            best_cell: kept[0].clone(),
            seconds: start.elapsed().as_secs_f64(),
            measure_seconds: measure_s,
            predict_seconds: predict_s,
            fit_seconds: fit_s,
        };
        log(&report);
        levels.push(report);
    }
    let (mut candidate, mut candidate_accuracy) = (kept[0].clone(), kept_acc[0]);
    let mut s1_accuracy = None;
    let mut candidate_is_s1 = false;
    if let Some(s1) = s1_cell {
        let s1 = canonical_cell(s1);
        let a = measure_all(measurer, std::slice::from_ref(&s1))?[0];
        measured.push((s1.clone(), a));
        s1_accuracy = Some(a);
        if a > candidate_accuracy {
            (candidate, candidate_accuracy, candidate_is_s1) = (s1, a, true);
        }
    }
    Ok(ProgressiveResult {
        levels,
        candidate,
        candidate_accuracy,
        s1_accuracy,
        candidate_is_s1,
        measured,
    })
}
