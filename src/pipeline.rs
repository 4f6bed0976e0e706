//! The method in order (METHOD.md): S1, the gradient search of the
//! supernet; S2, the progressive search steered by the LSTM predictor with
//! cells measured one-shot on the supernet's weights; S3, the accuracy gate
//! that widens and deepens the space and runs S1–S2 again. (S4 follows.)
//!
//! Run directory: `round{r}/` per gate round (S1's `genotype.json`,
//! `history.jsonl`, `supernet.safetensors`; S2's `predictor.jsonl`), and at
//! the top `predictor.jsonl` (every round's levels), `gate.jsonl` and
//! `candidate.json` (a genotype: `gradnas train --model candidate.json`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::Splits;
use crate::engine::Gpu;
use crate::models::GenotypeModel;
use crate::predict::measure::{MeasureConfig, OneShotDiscrete, SupernetWeights};
use crate::predict::predictor::{Predictor, PredictorConfig};
use crate::predict::progressive::{self, LevelReport, Measure, Predict, ProgressiveConfig};
use crate::search::gate::{self, GateConfig, RoundLog, RoundOutcome};
use crate::search::s1::{self, S1Config};
use crate::space::{Cell, Genotype};
use crate::train::{self, write_atomic, TrainConfig};

/// Everything S1–S3 need; the effective configuration of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchConfig {
    pub s1: S1Config,
    pub progressive: ProgressiveConfig,
    pub predictor: PredictorConfig,
    pub measure: MeasureConfig,
    pub gate: GateConfig,
    /// How the gate judges a round's candidate: None, its one-shot
    /// validation accuracy on the round's supernet (already measured by
    /// S2); Some(epochs), the validation accuracy of its discrete network
    /// trained from scratch for that many epochs.
    pub gate_train_epochs: Option<usize>,
}

impl SearchConfig {
    /// The patent's S2/S3 values (K = 128, gate 0.80, one-shot measuring
    /// on 1,000 validation images) around a default S1 configuration.
    pub fn paper() -> SearchConfig {
        SearchConfig {
            s1: S1Config::default(),
            progressive: ProgressiveConfig::default(),
            predictor: PredictorConfig::default(),
            measure: MeasureConfig::default(),
            gate: GateConfig::default(),
            gate_train_epochs: None,
        }
    }

    /// Refuse impossible values before any work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        self.s1.supernet.validate()?;
        self.progressive.validate()?;
        self.predictor.validate().map_err(|e| e.to_string())?;
        self.measure.validate()?;
        self.gate.validate()?;
        if self.s1.epochs == 0 {
            return Err("epochs 0: S1 needs at least one epoch".into());
        }
        if self.gate_train_epochs == Some(0) {
            return Err("gate_train_epochs 0: train at least one epoch or use one-shot".into());
        }
        Ok(())
    }
}

/// S2's view of the one-shot measurement: one cell structure for both cell
/// kinds (see `progressive`). The per-cell discrete plan, measured ~20×
/// faster than the single masked-supernet plan on lavapipe (BENCHMARKS.md).
struct OneShotMeasure<'a> {
    gpu: &'a Gpu,
    one_shot: OneShotDiscrete,
}

impl Measure for OneShotMeasure<'_> {
    fn measure(&mut self, cell: &Cell) -> Result<f32> {
        self.one_shot.measure(self.gpu, cell, cell)
    }
}

struct GpuPredictor<'a> {
    gpu: &'a Gpu,
    predictor: Predictor,
}

impl Predict for GpuPredictor<'_> {
    fn fit(&mut self, cells: &[Cell], accuracy: &[f32]) -> Result<()> {
        self.predictor.fit(self.gpu, cells, accuracy).map(|_| ())
    }
    fn predict(&mut self, cells: &[Cell]) -> Result<Vec<(f32, f32)>> {
        self.predictor.predict(self.gpu, cells)
    }
}

/// One line of the top-level `predictor.jsonl`.
#[derive(Serialize)]
struct PredictorLine<'a> {
    round: usize,
    #[serde(flatten)]
    level: &'a LevelReport,
}

/// What S1–S3 produced.
#[derive(Debug, Clone, Serialize)]
pub struct S1S3Report {
    pub candidate: Genotype,
    pub candidate_accuracy: f32,
    /// The candidate's one-shot accuracy and the S1-derived cell's, in the
    /// round that was chosen.
    pub one_shot_accuracy: f32,
    pub s1_one_shot_accuracy: Option<f32>,
    pub candidate_is_s1: bool,
    pub accepted: bool,
    pub rounds: Vec<RoundLog>,
    pub width: usize,
    pub depth: usize,
    pub round_dir: PathBuf,
}

fn jsonl(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("creating {}", path.display()))
}

/// Run S1 → S2 → S3 into `out`; `progress` gets readable lines.
pub fn s1_s3(
    gpu: &Gpu,
    splits: &Splits,
    cfg: &SearchConfig,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<S1S3Report> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(
        &out.join("config.json"),
        serde_json::to_string_pretty(cfg)?.as_bytes(),
    )?;
    let op_set = cfg.s1.supernet.op_set.clone();
    let mut predictor_log = jsonl(&out.join("predictor.jsonl"))?;
    let mut gate_log = jsonl(&out.join("gate.jsonl"))?;
    let result = {
        let progress = &mut *progress;
        let mut round = |r: usize, width: usize, depth: usize| -> Result<RoundOutcome<_>> {
            let dir = out.join(format!("round{r}"));
            std::fs::create_dir_all(&dir)?;
            let mut s1cfg = cfg.s1.clone();
            s1cfg.supernet.width = width;
            s1cfg.supernet.depth = depth;
            progress(&format!("round {r}: S1 at width {width}, depth {depth}"));
            let s1 = s1::run(gpu, splits, &s1cfg, &dir, |l| progress(l))?;
            let mut measurer = OneShotMeasure {
                gpu,
                one_shot: OneShotDiscrete::new(SupernetWeights::load(&dir)?, splits, &cfg.measure)?,
            };
            let mut predictor = GpuPredictor {
                gpu,
                predictor: Predictor::new(gpu, &op_set, cfg.predictor.clone())?,
            };
            let mut round_log = jsonl(&dir.join("predictor.jsonl"))?;
            let mut io: Result<()> = Ok(());
            let s2 = progressive::run(
                &cfg.progressive,
                &op_set,
                &mut measurer,
                &mut predictor,
                Some(&s1.genotype.normal),
                |l| {
                    let line = serde_json::to_string(&PredictorLine { round: r, level: l })
                        .expect("a level report serializes");
                    io = io
                        .as_ref()
                        .map_err(|e| anyhow::anyhow!("{e}"))
                        .and_then(|_| {
                            writeln!(round_log, "{line}")?;
                            writeln!(predictor_log, "{line}")?;
                            Ok(())
                        });
                    progress(&format!(
                        "s2 b={}: {} predicted, {} measured, best {:.2}%, τ {}, {:.1} s ({:.1} measuring)",
                        l.blocks,
                        l.predicted,
                        l.measured,
                        100.0 * l.best_accuracy,
                        l.kendall_tau.map_or("-".into(), |t| format!("{t:.3}")),
                        l.seconds,
                        l.measure_seconds
                    ));
                },
            )?;
            io?;
            let accuracy = match cfg.gate_train_epochs {
                None => s2.candidate_accuracy,
                Some(epochs) => {
                    let model = GenotypeModel {
                        width,
                        depth,
                        ..GenotypeModel::new(single_cell(&op_set, &s2.candidate))
                    };
                    let tcfg = TrainConfig {
                        epochs,
                        seed: cfg.s1.seed,
                        ..TrainConfig::default()
                    };
                    let report =
                        train::train(gpu, model, splits, &tcfg, &dir.join("candidate"), |_| {})?;
                    report.val_accuracy as f32
                }
            };
            Ok(RoundOutcome {
                cell: s2.candidate.clone(),
                accuracy,
                extra: (dir, s2),
            })
        };
        gate::run(
            &cfg.gate,
            cfg.s1.supernet.width,
            cfg.s1.supernet.depth,
            &mut round,
            |l| {
                writeln!(gate_log, "{}", serde_json::to_string(l)?)?;
                Ok(())
            },
        )?
    };
    for l in &result.rounds {
        progress(&format!(
            "gate round {}: width {}, depth {}, accuracy {:.2}% {} {:.0}%",
            l.round,
            l.width,
            l.depth,
            100.0 * l.accuracy,
            if l.passed { "≥" } else { "<" },
            100.0 * l.threshold
        ));
    }
    let (dir, s2) = result.outcome.extra;
    let chosen = &result.rounds[result.chosen];
    let candidate = single_cell(&op_set, &result.outcome.cell);
    candidate
        .save(&out.join("candidate.json"))
        .map_err(anyhow::Error::msg)?;
    Ok(S1S3Report {
        candidate,
        candidate_accuracy: result.outcome.accuracy,
        one_shot_accuracy: s2.candidate_accuracy,
        s1_one_shot_accuracy: s2.s1_accuracy,
        candidate_is_s1: s2.candidate_is_s1,
        accepted: result.accepted,
        width: chosen.width,
        depth: chosen.depth,
        rounds: result.rounds,
        round_dir: dir,
    })
}

/// The genotype that uses `cell` for both cell kinds.
pub fn single_cell(op_set: &crate::space::OpSet, cell: &Cell) -> Genotype {
    Genotype {
        op_set: op_set.name().to_string(),
        normal: cell.clone(),
        reduce: cell.clone(),
        alpha: None,
        beta: None,
    }
}
