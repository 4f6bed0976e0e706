//! The method in order (METHOD.md): S1, the gradient search of the
//! supernet; S2, the progressive search steered by the LSTM predictor with
//! cells measured one-shot on the supernet's weights; S3, the accuracy gate
//! that widens and deepens the space and runs S1–S2 again. (S4 follows.)
//!
//! Run directory: `round{r}/` per gate round (S1's `genotype.json`,
//! `history.jsonl`, `supernet.safetensors`; the path-trained weights
//! `supernet_paths.safetensors` with `paths.json`; S2's `predictor.jsonl`), and at
//! the top `predictor.jsonl` (every round's levels), `gate.jsonl` and
//! `candidate.json` (a genotype: `gradnas train --model candidate.json`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::compress::discretize::{self, DiscretizeConfig, DiscretizeReport};
use crate::compress::prune;
use crate::data::Splits;
use crate::engine::Gpu;
use crate::models::GenotypeModel;
use crate::predict::measure::{self, MeasureConfig, OneShotDiscrete, SupernetWeights};
use crate::predict::paths::{self, PathConfig};
use crate::predict::predictor::{Predictor, PredictorConfig};
use crate::predict::progressive::{
    self, LevelReport, Measure, Predict, ProgressiveConfig, ProgressiveResult,
};
use crate::progress::Event;
use crate::search::gate::{self, GateConfig, RoundLog, RoundOutcome};
use crate::search::s1::{self, S1Config};
use crate::space::{Cell, Genotype};
use crate::train::{self, write_atomic, TrainConfig, TrainReport};

/// Everything S1–S3 need; the effective configuration of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchConfig {
    pub s1: S1Config,
    pub progressive: ProgressiveConfig,
    pub predictor: PredictorConfig,
    pub measure: MeasureConfig,
    pub gate: GateConfig,
    /// Single-path training of the shared weights before S2 measures
    /// (`predict::paths`); `paths: 0` measures S1's weights as they are.
    #[serde(default)]
    pub paths: PathConfig,
    /// How the gate judges a round's candidate: None, its one-shot
    /// validation accuracy on the round's supernet (already measured by
    /// S2); Some(epochs), the validation accuracy of its discrete network
    /// trained from scratch for that many epochs.
    pub gate_train_epochs: Option<usize>,
    /// S4, run after S1–S3 by `gradnas search` without a stage (read by
    /// `--stage s4` too); runs written before S4 existed load the defaults.
    #[serde(default)]
    pub s4: S4Config,
    /// The data the run reads (`--resume` reads it again).
    #[serde(default)]
    pub data: crate::data::DataConfig,
}

impl SearchConfig {
    /// The patent's S2/S3 values (K = 128, gate 0.80, one-shot measuring
    /// on 1,000 validation images) around a default S1 configuration. Cells
    /// are read through a classifier fitted per cell on 1,000 training
    /// images: the probe ranked cells more repeatably than the shared
    /// classifier at both path budgets measured (BENCHMARKS.md, "A
    /// classifier per cell").
    pub fn paper() -> SearchConfig {
        SearchConfig {
            s1: S1Config::default(),
            progressive: ProgressiveConfig::default(),
            predictor: PredictorConfig::default(),
            measure: MeasureConfig {
                probe_images: 1000,
                ..MeasureConfig::default()
            },
            gate: GateConfig::default(),
            paths: PathConfig::default(),
            gate_train_epochs: None,
            s4: S4Config::default(),
            data: crate::data::DataConfig::default(),
        }
    }

    /// A run directory's effective configuration (its `config.json`).
    pub fn load(run_dir: &Path) -> Result<SearchConfig> {
        let path = run_dir.join("config.json");
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a run configuration", path.display()))
    }

    /// Refuse impossible values before any work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        self.s1.supernet.validate()?;
        self.progressive.validate()?;
        self.predictor.validate().map_err(|e| e.to_string())?;
        self.measure.validate()?;
        self.gate.validate()?;
        self.paths.validate().map_err(|e| format!("paths: {e}"))?;
        if self.s1.epochs == 0 {
            return Err("epochs 0: S1 needs at least one epoch".into());
        }
        if self.gate_train_epochs == Some(0) {
            return Err("gate_train_epochs 0: train at least one epoch or use one-shot".into());
        }
        self.s4.validate().map_err(|e| format!("s4.{e}"))
    }
}

/// S2's view of the one-shot measurement: one cell structure for both cell
/// kinds (see `progressive`). The per-cell discrete plan, measured ~20×
/// faster than the single masked-supernet plan on lavapipe (BENCHMARKS.md).
struct OneShotMeasure<'a, 'p> {
    gpu: &'a Gpu,
    /// More devices on `gpu`'s adapter that cells are measured on at the
    /// same time (`measure::measure_lanes`).
    lanes: Vec<Gpu>,
    splits: &'a Splits,
    one_shot: OneShotDiscrete,
    /// S2's progress: cells measured so far, of about `expected`.
    ticks: &'a S2Ticks<'p>,
    expected: u64,
}

/// Cells measured and the best accuracy so far, and where ticks go; shared
/// by the measurer (a tick per cell) and the level log.
struct S2Ticks<'p> {
    measured: std::cell::Cell<u64>,
    best: std::cell::Cell<f32>,
    sink: std::cell::RefCell<&'p mut dyn FnMut(&Event)>,
}

impl S2Ticks<'_> {
    fn send(&self, e: &Event) {
        (self.sink.borrow_mut())(e)
    }
}

impl Measure for OneShotMeasure<'_, '_> {
    fn measure(&mut self, cell: &Cell) -> Result<f32> {
        Ok(self.measure_many(std::slice::from_ref(cell))?[0])
    }

    fn measure_many(&mut self, cells: &[Cell]) -> Result<Vec<f32>> {
        let gpus: Vec<&Gpu> = std::iter::once(self.gpu).chain(&self.lanes).collect();
        let (t, expected) = (self.ticks, self.expected);
        measure::measure_cells(&gpus, &mut self.one_shot, self.splits, cells, |i, acc| {
            let (n, best) = (t.measured.get() + 1, t.best.get().max(acc));
            t.measured.set(n);
            t.best.set(best);
            t.send(&Event::tick(
                "s2",
                n,
                expected.max(n),
                &[
                    ("blocks", cells[i].blocks.len() as f64),
                    ("best_acc", best as f64),
                ],
            ));
            Ok(())
        })
    }
}

struct GpuPredictor<'a> {
    gpu: &'a Gpu,
    predictor: Predictor,
}

impl Predict for GpuPredictor<'_> {
    fn fit(&mut self, cells: &[Cell], accuracy: &[f32]) -> Result<Option<f64>> {
        Ok(self.predictor.fit(self.gpu, cells, accuracy)?.oof_tau)
    }
    fn predict(&mut self, cells: &[Cell]) -> Result<Vec<(f32, f32)>> {
        self.predictor.predict(self.gpu, cells)
    }
}

/// `round{r}/paths.json`: what path training was asked and what it did.
#[derive(Serialize, Deserialize)]
struct PathsRecord {
    config: PathConfig,
    report: paths::PathReport,
}

/// S1's genotype when `dir` holds a finished S1 run of exactly `cfg`.
fn finished_s1(dir: &Path, cfg: &S1Config) -> Option<Genotype> {
    // Compared as S1's own serialization (f32 fields round-trip there).
    let saved: S1Config =
        serde_json::from_slice(&std::fs::read(dir.join("s1_config.json")).ok()?).ok()?;
    let same = serde_json::to_string(&saved).ok()? == serde_json::to_string(cfg).ok()?;
    if !same || !dir.join("supernet.safetensors").is_file() {
        return None;
    }
    Genotype::load(&dir.join("genotype.json")).ok()
}

/// Whether `dir` holds finished path training of exactly `cfg`.
fn finished_paths(dir: &Path, cfg: &PathConfig) -> bool {
    let record = std::fs::read(dir.join("paths.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<PathsRecord>(&b).ok());
    record.is_some_and(|r| &r.config == cfg) && dir.join(paths::WEIGHTS_FILE).is_file()
}

/// One line of the top-level `predictor.jsonl`.
#[derive(Serialize)]
struct PredictorLine<'a> {
    round: usize,
    #[serde(flatten)]
    level: &'a LevelReport,
}

/// What S1–S3 produced (also written as `s1_s3.json`, which S4 reads).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S1S3Report {
    /// The adapter the run used (`Gpu::describe`).
    #[serde(default)]
    pub adapter: String,
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

/// Passes every event on and keeps the ticks in `metrics.jsonl` (appended:
/// a resumed run continues the file).
struct MetricsTee<'a> {
    file: File,
    path: PathBuf,
    next: &'a mut dyn FnMut(&Event),
    failed: bool,
}

impl<'a> MetricsTee<'a> {
    fn open(dir: &Path, next: &'a mut dyn FnMut(&Event)) -> Result<MetricsTee<'a>> {
        let path = dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(MetricsTee {
            file,
            path,
            next,
            failed: false,
        })
    }

    fn event(&mut self, e: &Event) {
        if matches!(e, Event::Tick { .. }) && !self.failed {
            let line = serde_json::to_string(e).expect("an event serializes");
            if let Err(err) = writeln!(self.file, "{line}") {
                // The run goes on; its curves are lost, and the user is told.
                self.failed = true;
                (self.next)(&Event::log(format!(
                    "warning: {} not written ({err}); the run continues",
                    self.path.display()
                )));
            }
        }
        (self.next)(e)
    }
}

/// A finished phase's record, written last: its configuration (as JSON)
/// and its result. A rerun with the same configuration reuses the result.
#[derive(Serialize, Deserialize)]
struct Done<R> {
    config: serde_json::Value,
    result: R,
}

/// The record of a finished phase inside its directory.
const DONE: &str = "done.json";

fn load_done<R: serde::de::DeserializeOwned>(path: &Path, config: &serde_json::Value) -> Option<R> {
    let done: Done<R> = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (&done.config == config).then_some(done.result)
}

fn save_done<R: Serialize>(path: &Path, config: &serde_json::Value, result: &R) -> Result<()> {
    let done = Done {
        config: config.clone(),
        result,
    };
    write_atomic(path, serde_json::to_string(&done)?.as_bytes())
}

/// A phase run once: the result recorded at `path` under `key` when there
/// is one and `reuse` allows it (true comes back with it), else `run`'s,
/// recorded there.
fn recorded<R: Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    key: &serde_json::Value,
    reuse: bool,
    run: impl FnOnce() -> Result<R>,
) -> Result<(R, bool)> {
    if let Some(r) = reuse.then(|| load_done(path, key)).flatten() {
        return Ok((r, true));
    }
    let r = run()?;
    save_done(path, key, &r)?;
    Ok((r, false))
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
    progress: &mut dyn FnMut(&Event),
) -> Result<S1S3Report> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(
        &out.join("config.json"),
        serde_json::to_string_pretty(cfg)?.as_bytes(),
    )?;
    let mut tee = MetricsTee::open(out, progress)?;
    let progress: &mut dyn FnMut(&Event) = &mut |e| tee.event(e);
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
            // A round's finished stages are kept: rerunning the same search
            // into the same directory resumes after them (S1 writes its
            // config last, path training its record last).
            // Whether an earlier phase of this round ran now: what follows
            // it cannot be reused.
            let mut fresh = false;
            let s1_genotype = match finished_s1(&dir, &s1cfg) {
                Some(g) => {
                    progress(&Event::log(format!(
                        "round {r}: S1 already done in {}, reused",
                        dir.display()
                    )));
                    g
                }
                None => {
                    progress(&Event::log(format!(
                        "round {r}: S1 at width {width}, depth {depth}"
                    )));
                    fresh = true;
                    s1::run(gpu, splits, &s1cfg, &dir, |e| progress(e))?.genotype
                }
            };
            let weights = if cfg.paths.paths == 0 {
                SupernetWeights::load(&dir)?
            } else if !fresh && finished_paths(&dir, &cfg.paths) {
                progress(&Event::log(format!(
                    "round {r}: path training already done, reused"
                )));
                SupernetWeights::load_file(&dir, paths::WEIGHTS_FILE)?
            } else {
                progress(&Event::log(format!(
                    "round {r}: training the shared weights on {} sampled paths",
                    cfg.paths.paths
                )));
                fresh = true;
                let mut weights = SupernetWeights::load(&dir)?;
                let report = paths::train(gpu, &mut weights, splits, &cfg.paths, |e| progress(e))?;
                weights.save(&dir.join(paths::WEIGHTS_FILE))?;
                let record = PathsRecord {
                    config: cfg.paths.clone(),
                    report,
                };
                write_atomic(
                    &dir.join("paths.json"),
                    serde_json::to_string_pretty(&record)?.as_bytes(),
                )?;
                weights
            };
            let s2_key = serde_json::json!({
                "progressive": cfg.progressive,
                "predictor": cfg.predictor,
                "measure": cfg.measure,
            });
            let s2_path = dir.join("s2.json");
            let (s2, reused) = recorded(&s2_path, &s2_key, !fresh, || {
                run_s2(
                    gpu,
                    splits,
                    cfg,
                    weights,
                    &s1_genotype.normal,
                    r,
                    &dir,
                    &mut predictor_log,
                    progress,
                )
            })?;
            if reused {
                progress(&Event::log(format!("round {r}: S2 already done, reused")));
                for l in &s2.levels {
                    let line = PredictorLine { round: r, level: l };
                    writeln!(predictor_log, "{}", serde_json::to_string(&line)?)?;
                }
            }
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
        progress(&Event::log(format!(
            "gate round {}: width {}, depth {}, accuracy {:.2}% {} {:.0}%",
            l.round,
            l.width,
            l.depth,
            100.0 * l.accuracy,
            if l.passed { "≥" } else { "<" },
            100.0 * l.threshold
        )));
    }
    let (dir, s2) = result.outcome.extra;
    let chosen = &result.rounds[result.chosen];
    let candidate = single_cell(&op_set, &result.outcome.cell);
    candidate
        .save(&out.join("candidate.json"))
        .map_err(anyhow::Error::msg)?;
    let report = S1S3Report {
        adapter: gpu.describe(),
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
    };
    // S1's genotype of the chosen round, at the top of the run directory.
    let genotype = report.round_dir.join("genotype.json");
    std::fs::copy(&genotype, out.join("genotype.json"))
        .with_context(|| format!("copying {}", genotype.display()))?;
    write_atomic(
        &out.join("s1_s3.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    Ok(report)
}

/// S2 of round `r` (directory `dir`): the progressive search measuring on
/// `weights`, each level logged to the round's and the run's predictor.jsonl
/// and to `progress` (a tick per measured cell).
#[allow(clippy::too_many_arguments)]
fn run_s2(
    gpu: &Gpu,
    splits: &Splits,
    cfg: &SearchConfig,
    weights: SupernetWeights,
    s1_cell: &Cell,
    r: usize,
    dir: &Path,
    predictor_log: &mut File,
    progress: &mut dyn FnMut(&Event),
) -> Result<ProgressiveResult> {
    let op_set = &cfg.s1.supernet.op_set;
    let ticks = S2Ticks {
        measured: Default::default(),
        best: Default::default(),
        sink: std::cell::RefCell::new(progress),
    };
    // b = 1 measures every one-block cell, each later level
    // K + explored, and the S1 cell at the end.
    let p = &cfg.progressive;
    let expected = crate::space::enumerate_one_block_cells(op_set).len()
        + (p.blocks - 1) * (p.top_k + p.explore)
        + 1;
    let mut measurer = OneShotMeasure {
        gpu,
        lanes: measure::extra_lanes(gpu, measure::measure_lanes(gpu)?)?,
        splits,
        one_shot: OneShotDiscrete::new(weights, splits, &cfg.measure)?,
        ticks: &ticks,
        expected: expected as u64,
    };
    let mut predictor = GpuPredictor {
        gpu,
        predictor: Predictor::new(gpu, op_set, cfg.predictor.clone())?,
    };
    let mut round_log = jsonl(&dir.join("predictor.jsonl"))?;
    let mut io: Result<()> = Ok(());
    let s2 = progressive::run(
        &cfg.progressive,
        op_set,
        &mut measurer,
        &mut predictor,
        Some(s1_cell),
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
            let f = |t: Option<f64>| t.map_or("-".into(), |t| format!("{t:.3}"));
            ticks.send(&Event::log(format!(
            "s2 b={}: {} predicted, {} measured ({} explored), best {:.2}%, τ {} (top K {}; predictor alone {}; refit out of fold {}), {:.1} s ({:.1} measuring)",
            l.blocks,
            l.predicted,
            l.measured,
            l.explored,
            100.0 * l.best_accuracy,
            f(l.kendall_tau),
            f(l.kendall_tau_top),
            f(l.kendall_tau_raw),
            f(l.fit_oof_tau),
            l.seconds,
            l.measure_seconds
        )));
            let mut figures = vec![
                ("blocks", l.blocks as f64),
                ("best_acc", l.best_accuracy as f64),
            ];
            figures.extend(l.kendall_tau.map(|t| ("tau", t)));
            let n = ticks.measured.get();
            ticks.send(&Event::tick("s2", n, (expected as u64).max(n), &figures));
        },
    )?;
    io?;
    Ok(s2)
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

/// What S4 needs beyond S1–S3's run directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct S4Config {
    pub discretize: DiscretizeConfig,
    pub prune: PruneConfig,
}

/// Channel pruning by network slimming: a sparsity fine-tune (L1 on the
/// BN scales γ, `sparsity.l1_gamma`), the global threshold that removes
/// `ratio` of the prunable channels, the channels physically removed, then
/// a fine-tune.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneConfig {
    pub ratio: f32,
    /// Each channel-making layer keeps at least this fraction of its
    /// channels (its best by |γ|; at least one in any case).
    #[serde(default = "default_min_keep")]
    pub min_keep: f32,
    pub sparsity: TrainConfig,
    pub fine_tune: TrainConfig,
}

fn default_min_keep() -> f32 {
    0.5
}

impl S4Config {
    /// Refuse impossible values before any work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        self.discretize
            .validate()
            .map_err(|e| format!("discretize: {e}"))?;
        prune::check_settings(self.prune.ratio, self.prune.min_keep)
            .map_err(|e| format!("prune.{e}"))?;
        self.prune
            .sparsity
            .validate()
            .map_err(|e| format!("prune.sparsity.{e}"))?;
        self.prune
            .fine_tune
            .validate()
            .map_err(|e| format!("prune.fine_tune.{e}"))
    }
}

impl Default for PruneConfig {
    /// The L1 term moves each |γ| by about λ · lr per step, so λ · lr ·
    /// steps / 2 (cosine schedule) must reach ~0.3 for γ to separate (from
    /// 1): 5 epochs of full Fashion-MNIST at batch 64 are ~4,200 steps.
    /// Ratio 0.5 with each layer keeping half its channels, fine-tune as
    /// in BENCHMARKS.md's runs that kept accuracy at −55% parameters on
    /// the bundled and the full data.
    fn default() -> Self {
        PruneConfig {
            ratio: 0.5,
            min_keep: default_min_keep(),
            sparsity: TrainConfig {
                epochs: 5,
                lr: 0.02,
                l1_gamma: 0.01,
                ..TrainConfig::default()
            },
            fine_tune: TrainConfig {
                epochs: 8,
                lr: 0.025,
                ..TrainConfig::default()
            },
        }
    }
}

/// One stage of S4's table: its network's test accuracy, size and speed.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub stage: String,
    pub test_accuracy: f64,
    pub params: usize,
    /// Multiply-adds per image (convolutions and the classifier).
    pub flops: u64,
    /// Inference time per image on the adapter, batches of 256, uploads
    /// included: over the whole test split where the stage is evaluated
    /// here, over its first `LATENCY_IMAGES` where training already
    /// measured the test accuracy.
    pub latency_ms_per_image: f64,
    /// The model directory.
    pub dir: PathBuf,
}

/// What S4 produced, per stage.
#[derive(Debug, Clone, Serialize)]
pub struct S4Report {
    pub discretize: DiscretizeReport,
    pub prune_ratio: f32,
    pub prunable_channels: usize,
    pub removed_channels: usize,
    pub threshold: Option<f32>,
    /// discretized, sparse (after the L1 fine-tune), pruned (before
    /// fine-tuning), final (pruned and fine-tuned).
    pub stages: Vec<StageReport>,
    /// The sparse network pruned at ratios 0.1 … 0.9 without fine-tuning:
    /// what each ratio costs before the fine-tune repairs it.
    pub pruning_curve: Vec<CurvePoint>,
    pub onnx: PathBuf,
    pub adapter: String,
    pub seconds: f64,
}

/// One point of S4's pruning curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    pub ratio: f32,
    pub params: usize,
    pub val_accuracy: f64,
}

/// Test images a stage's latency is timed on when its training already
/// measured the test accuracy (4 batches of 256).
pub const LATENCY_IMAGES: usize = 1024;

/// A model directory's stage figures: its test accuracy (`trained`, the
/// figure its training measured on the same weights, or evaluated here on
/// the whole test split) and its latency. The loaded evaluator and card
/// come back for the next stage to start from. (Evaluating a trained
/// stage's 10,000 test images a second time cost the quick preset ~45 s.)
fn stage(
    gpu: &Gpu,
    splits: &Splits,
    name: &str,
    dir: &Path,
    trained: Option<f64>,
) -> Result<(StageReport, train::Evaluator, train::ModelCard)> {
    let (eval, card) = train::load(gpu, dir, 256)?;
    let first;
    let timed = match trained {
        Some(_) => {
            let n = splits.test.len().min(LATENCY_IMAGES);
            first = splits.test.subset(&(0..n).collect::<Vec<_>>());
            &first
        }
        None => &splits.test,
    };
    let start = std::time::Instant::now();
    let (_, acc) = eval.evaluate(gpu, timed, &splits.norm)?;
    let secs = start.elapsed().as_secs_f64();
    let report = StageReport {
        stage: name.to_string(),
        test_accuracy: trained.unwrap_or(acc),
        params: prune::params(&card),
        flops: prune::flops(&card),
        latency_ms_per_image: 1e3 * secs / timed.len().max(1) as f64,
        dir: dir.to_path_buf(),
    };
    Ok((report, eval, card))
}

/// S4 on the S1–S3 run directory `from` (its `s1_s3.json`, the chosen
/// round's weights and S1 genotype), writing model directories
/// `out/discretized`, `out/sparse`, `out/pruned`, `out/final` (each one
/// `gradnas eval --model` and `gradnas export` read), `out/final.onnx`
/// and `out/s4.json`.
pub fn s4(
    gpu: &Gpu,
    splits: &Splits,
    from: &Path,
    cfg: &S4Config,
    out: &Path,
    progress: &mut dyn FnMut(&Event),
) -> Result<S4Report> {
    let start = std::time::Instant::now();
    cfg.validate().map_err(anyhow::Error::msg)?;
    let rpath = from.join("s1_s3.json");
    let text = std::fs::read(&rpath).with_context(|| {
        format!(
            "reading {} (is {} an S1–S3 run directory? run `gradnas search --stage s1-s3` first)",
            rpath.display(),
            from.display()
        )
    })?;
    let s13: S1S3Report = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not an S1–S3 report", rpath.display()))?;
    // The round directory sits inside the run directory, wherever that moved.
    let round = &match s13.round_dir.file_name() {
        Some(name) => from.join(name),
        None => anyhow::bail!("{}: no round directory named", rpath.display()),
    };
    let weights = if round.join(paths::WEIGHTS_FILE).exists() {
        SupernetWeights::load_file(round, paths::WEIGHTS_FILE)?
    } else {
        SupernetWeights::load(round)?
    };
    let s1 = Genotype::load(&round.join("genotype.json")).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut tee = MetricsTee::open(out, progress)?;
    let progress: &mut dyn FnMut(&Event) = &mut |e| tee.event(e);
    // Each stage's directory gets `done.json` last; a rerun with the same
    // S1–S3 result and settings reuses it (the keys chain: a stage redone
    // invalidates the ones after it).
    let reused = |stage: &str| Event::log(format!("s4 {stage}: already done, reused"));
    let discretized = out.join("discretized");
    // S1–S3's outcome without its timings.
    let key = serde_json::json!({
        "candidate": s13.candidate,
        "accuracy": s13.candidate_accuracy,
        "round": round,
        "width": s13.width,
        "depth": s13.depth,
        "discretize": cfg.discretize,
    });
    let (discretize, was) = recorded(&discretized.join(DONE), &key, true, || {
        discretize::run(
            gpu,
            &weights,
            Some(&s1),
            &s13.candidate.normal,
            splits,
            &cfg.discretize,
            &discretized,
            |e| progress(e),
        )
    })?;
    if was {
        progress(&reused("discretize"));
    }
    let trained = Some(discretize.fine_tune.test_accuracy);
    let (report, eval, card) = stage(gpu, splits, "discretized", &discretized, trained)?;
    let mut stages = vec![report];

    // Sparsity fine-tune: L1 on γ drives unneeded channels' scales down.
    let sparse = out.join("sparse");
    let key = serde_json::json!({"after": key, "sparsity": cfg.prune.sparsity});
    // The closure owns the evaluator: it is freed before training, or
    // unused when the stage is reused.
    let (trained, was): (TrainReport, _) = recorded(&sparse.join(DONE), &key, true, || {
        let tensors = prune::read_tensors(gpu, &eval)?;
        drop(eval);
        progress(&Event::log(format!(
            "s4 sparsity fine-tune: λ {} on the BN scales, {} epochs",
            cfg.prune.sparsity.l1_gamma, cfg.prune.sparsity.epochs
        )));
        train::train_from(
            gpu,
            card.model.clone(),
            splits,
            &cfg.prune.sparsity,
            Some(&tensors),
            &sparse,
            |m| progress(&m.event("s4 sparsity")),
        )
    })?;
    if was {
        progress(&reused("sparsity fine-tune"));
    }
    let trained = Some(trained.test_accuracy);
    let (report, eval, card) = stage(gpu, splits, "sparse", &sparse, trained)?;
    stages.push(report);

    // Prune: one global threshold, channels physically removed.
    let tensors = prune::read_tensors(gpu, &eval)?;
    drop(eval);
    let mut pruning_curve: Vec<CurvePoint> = Vec::new();
    let mut previous: Option<(usize, Option<f32>)> = None;
    for ratio in (1..10).map(|k| k as f32 / 10.0) {
        let plan = prune::plan(&card, &tensors, ratio, cfg.prune.min_keep)?;
        let (pcard, ptensors) = prune::apply(&card, &tensors, &plan)?;
        // Ratios past what min_keep allows remove the same channels as the
        // last: the same network, not evaluated again.
        let same = previous == Some((plan.removed, plan.threshold));
        previous = Some((plan.removed, plan.threshold));
        let acc = match pruning_curve.last() {
            Some(p) if same => p.val_accuracy,
            _ => {
                let peval = prune::evaluator(gpu, &pcard, &ptensors, 256)?;
                peval.evaluate(gpu, &splits.val, &splits.norm)?.1
            }
        };
        progress(&Event::tick(
            "s4 pruning curve",
            (10.0 * ratio).round() as u64,
            9,
            &[("ratio", ratio as f64), ("val_acc", acc)],
        ));
        pruning_curve.push(CurvePoint {
            ratio,
            params: prune::params(&pcard),
            val_accuracy: acc,
        });
    }
    let plan = prune::plan(&card, &tensors, cfg.prune.ratio, cfg.prune.min_keep)?;
    let (pcard, ptensors) = prune::apply(&card, &tensors, &plan)?;
    let pruned = out.join("pruned");
    std::fs::create_dir_all(&pruned).with_context(|| format!("creating {}", pruned.display()))?;
    let peval = prune::evaluator(gpu, &pcard, &ptensors, 256)?;
    train::save(gpu, &peval, &pcard, &pruned)?;
    drop(peval);
    stages.push(stage(gpu, splits, "pruned", &pruned, None)?.0);
    progress(&Event::log(format!(
        "s4 pruned {} of {} channels (threshold |γ| {:?}): {} → {} parameters",
        plan.removed, plan.prunable, plan.threshold, stages[1].params, stages[2].params
    )));

    // Fine-tune the pruned network.
    let last = out.join("final");
    let key = serde_json::json!({
        "after": key,
        "ratio": cfg.prune.ratio,
        "min_keep": cfg.prune.min_keep,
        "fine_tune": cfg.prune.fine_tune,
    });
    let (trained, was): (TrainReport, _) = recorded(&last.join(DONE), &key, true, || {
        train::train_from(
            gpu,
            pcard.model.clone(),
            splits,
            &cfg.prune.fine_tune,
            Some(&ptensors),
            &last,
            |m| progress(&m.event("s4 pruned fine-tune")),
        )
    })?;
    if was {
        progress(&reused("pruned fine-tune"));
    }
    stages.push(stage(gpu, splits, "final", &last, Some(trained.test_accuracy))?.0);
    let onnx = out.join("final.onnx");
    crate::export::onnx::write(&last, &onnx)?;

    let report = S4Report {
        discretize,
        prune_ratio: cfg.prune.ratio,
        prunable_channels: plan.prunable,
        removed_channels: plan.removed,
        threshold: plan.threshold,
        stages,
        pruning_curve,
        onnx,
        adapter: gpu.describe(),
        seconds: start.elapsed().as_secs_f64(),
    };
    write_atomic(
        &out.join("s4.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resume decides by equality of a stored config with the current one:
    /// f32 settings must read back bit for bit.
    #[test]
    fn a_record_reads_back_equal_to_its_config() {
        let dir = std::env::temp_dir().join(format!("gradnas-done-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(DONE);
        for k in 1..200u32 {
            let x = k as f32 * 0.0125;
            let key = serde_json::json!({"l1_gamma": x, "lr": 1.0f32 / k as f32, "s": S4Config::default()});
            save_done(&path, &key, &k).unwrap();
            assert_eq!(load_done::<u32>(&path, &key), Some(k), "{x}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
