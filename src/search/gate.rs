//! S3, the accuracy gate (METHOD.md): the candidate of S1–S2 is trained and
//! evaluated on the validation split; below the threshold the search space
//! grows (width N and depth F by a schedule) and S1–S2 run again, for a
//! bounded number of rounds. Every round is logged.

use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::space::Cell;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateConfig {
    /// Validation accuracy the candidate must reach (the patent's 80%).
    pub threshold: f32,
    /// Rounds at most (the first included).
    pub max_rounds: usize,
    /// Each failed round multiplies the width by this (rounded up to an
    /// even number, as FactorizedReduce needs) ...
    pub width_factor: f32,
    /// ... and adds this many cells.
    pub depth_step: usize,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            threshold: 0.80,
            max_rounds: 3,
            width_factor: 1.5,
            depth_step: 2,
        }
    }
}

impl GateConfig {
    /// Refuse impossible values before any work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(format!(
                "gate threshold {}: must be in [0, 1]",
                self.threshold
            ));
        }
        if self.max_rounds == 0 {
            return Err("max_rounds 0: need at least one round".into());
        }
        if self.width_factor.is_nan() || self.width_factor < 1.0 {
            return Err(format!(
                "width_factor {}: must be ≥ 1 (the space grows)",
                self.width_factor
            ));
        }
        if self.width_factor == 1.0 && self.depth_step == 0 {
            return Err("width_factor 1 and depth_step 0: a failed round would not grow".into());
        }
        Ok(())
    }

    /// The (width, depth) of the round after one at (width, depth).
    pub fn grow(&self, width: usize, depth: usize) -> (usize, usize) {
        let w = (width as f32 * self.width_factor).ceil() as usize;
        let w = (w + w % 2).max(width);
        (w, depth + self.depth_step)
    }
}

/// What one round produced: its candidate cell and that cell's validation
/// accuracy (plus whatever the caller wants to keep, e.g. the run dir).
pub struct RoundOutcome<X> {
    pub cell: Cell,
    pub accuracy: f32,
    pub extra: X,
}

/// One line of `gate.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundLog {
    pub round: usize,
    pub width: usize,
    pub depth: usize,
    pub accuracy: f32,
    pub threshold: f32,
    pub passed: bool,
    pub cell: Cell,
    pub seconds: f64,
}

pub struct GateResult<X> {
    pub rounds: Vec<RoundLog>,
    /// The round that passed, or the best round when none did.
    pub chosen: usize,
    pub accepted: bool,
    pub outcome: RoundOutcome<X>,
}

/// Run rounds from (width, depth) until one passes or `max_rounds` end.
/// `round(index, width, depth)` runs S1–S2 (and the candidate's
/// evaluation) at that size; `log` gets every round as it ends.
pub fn run<X>(
    cfg: &GateConfig,
    width: usize,
    depth: usize,
    mut round: impl FnMut(usize, usize, usize) -> Result<RoundOutcome<X>>,
    mut log: impl FnMut(&RoundLog) -> Result<()>,
) -> Result<GateResult<X>> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let (mut w, mut d) = (width, depth);
    let mut rounds = Vec::new();
    let mut best: Option<(usize, RoundOutcome<X>)> = None;
    for r in 0..cfg.max_rounds {
        let start = Instant::now();
        let out = round(r, w, d)?;
        let passed = out.accuracy >= cfg.threshold;
        let line = RoundLog {
            round: r,
            width: w,
            depth: d,
            accuracy: out.accuracy,
            threshold: cfg.threshold,
            passed,
            cell: out.cell.clone(),
            seconds: start.elapsed().as_secs_f64(),
        };
        log(&line)?;
        rounds.push(line);
        let better = best.as_ref().is_none_or(|(_, b)| out.accuracy > b.accuracy);
        if passed {
            return Ok(GateResult {
                rounds,
                chosen: r,
                accepted: true,
                outcome: out,
            });
        }
        if better {
            best = Some((r, out));
        }
        (w, d) = cfg.grow(w, d);
    }
    let (chosen, outcome) = best.expect("at least one round ran");
    Ok(GateResult {
        rounds,
        chosen,
        accepted: false,
        outcome,
    })
}
