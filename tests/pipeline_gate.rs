//! S3 through the real pipeline (S1 → paths → S2 → gate) on a tiny supernet
//! and a slice of the bundled data: a gate above reach fails the first
//! round, the second round runs wider and deeper, the loop ends after
//! `max_rounds`, and the run directory holds every file S1–S3 write; then
//! S4's discretization reads that directory and writes a model directory.

mod common;

use gradnas::compress::discretize::DiscretizeConfig;
use gradnas::pipeline::{self, PruneConfig, S4Config, SearchConfig};
use gradnas::predict::measure::MeasureConfig;
use gradnas::predict::paths::PathConfig;
use gradnas::predict::predictor::PredictorConfig;
use gradnas::predict::progressive::ProgressiveConfig;
use gradnas::search::bilevel::SearchHyper;
use gradnas::search::gate::{GateConfig, RoundLog};
use gradnas::search::s1::S1Config;
use gradnas::search::supernet::SupernetConfig;
use gradnas::space::{Genotype, OpSet};
use gradnas::train::{self, TrainConfig};

#[test]
fn a_gate_above_reach_grows_the_space_and_the_loop_ends() {
    let gpu = common::gpu();
    let splits = common::bundled_subset(32, 16, 1);
    let cfg = SearchConfig {
        s1: S1Config {
            supernet: SupernetConfig {
                width: 2,
                depth: 1,
                batch: 4,
                op_set: OpSet::pnas(),
                dims: splits.train.dims,
                classes: splits.train.classes,
                stem_multiplier: 1,
                partial_channels: 1,
            },
            hyper: SearchHyper::default(),
            epochs: 1,
            steps_per_epoch: Some(1),
            seed: 2,
            log_every: 1,
        },
        // One-block cells only: the 136 of b = 1, measured on 8 images.
        progressive: ProgressiveConfig {
            top_k: 2,
            blocks: 1,
            explore: 0,
            seed: 0,
            anchor: true,
            anchor_weight: 1.0,
        },
        predictor: PredictorConfig {
            epochs: 1,
            ..PredictorConfig::default()
        },
        measure: MeasureConfig {
            bn_batches: 1,
            bn_batch: 4,
            n_val: 8,
            eval_batch: 8,
            seed: 0,
            // Few-shot (an option), at the smallest size: S2 runs it.
            fine_tune_steps: 1,
            fine_tune_batch: 4,
            ..MeasureConfig::default()
        },
        // Accuracy can never exceed 1: every round fails.
        gate: GateConfig {
            threshold: 1.0,
            max_rounds: 2,
            width_factor: 2.0,
            depth_step: 1,
        },
        paths: PathConfig {
            paths: 2,
            steps_per_path: 1,
            batch: 4,
            ..PathConfig::default()
        },
        gate_train_epochs: None,
        s4: S4Config::default(),
        data: gradnas::data::DataConfig::default(),
    };
    let dir = tempfile::Builder::new()
        .prefix("gradnas-s1s3-")
        .tempdir()
        .unwrap();
    let out = dir.path();
    let report = pipeline::s1_s3(gpu, &splits, &cfg, out, &mut |_| {}).expect("s1-s3");
    assert!(!report.accepted);
    assert_eq!(report.rounds.len(), 2, "the loop ends after max_rounds");
    let (r0, r1) = (&report.rounds[0], &report.rounds[1]);
    assert!(!r0.passed && !r1.passed);
    assert_eq!((r0.width, r0.depth), (2, 1));
    assert_eq!(
        (r1.width, r1.depth),
        (4, 2),
        "the second round is wider and deeper"
    );
    let gate: Vec<RoundLog> = std::fs::read_to_string(out.join("gate.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(gate.len(), 2);
    assert_eq!(gate[1].width, 4);
    let predictor = std::fs::read_to_string(out.join("predictor.jsonl")).unwrap();
    assert_eq!(predictor.lines().count(), 2, "one level per round");
    for r in 0..2 {
        let round = out.join(format!("round{r}"));
        for f in [
            "genotype.json",
            "supernet.safetensors",
            "supernet_paths.safetensors",
            "paths.json",
            "predictor.jsonl",
        ] {
            assert!(round.join(f).is_file(), "round{r}/{f} missing");
        }
    }
    let candidate = Genotype::load(&out.join("candidate.json")).expect("candidate.json");
    candidate.validate().unwrap();
    assert_eq!(candidate.normal, report.candidate.normal);
    assert!(out.join("config.json").is_file());
    // The candidate is the better round's, and at least the S1 cell there.
    let best = r0.accuracy.max(r1.accuracy);
    assert_eq!(report.candidate_accuracy, best);
    assert!(report.one_shot_accuracy >= report.s1_one_shot_accuracy.unwrap());

    // The same search into the same directory resumes after each round's
    // finished S1 and path training, and ends the same.
    let mut lines = Vec::new();
    let again = pipeline::s1_s3(gpu, &splits, &cfg, out, &mut |l| lines.push(l.to_string()))
        .expect("s1-s3 again");
    let reused = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
    assert_eq!(reused("S1 already done"), 2, "{lines:#?}");
    assert_eq!(reused("path training already done"), 2, "{lines:#?}");
    assert_eq!(reused("S2 already done"), 2, "{lines:#?}");
    assert_eq!(again.candidate, report.candidate);
    assert_eq!(again.adapter, gpu.describe());
    let predictor = std::fs::read_to_string(out.join("predictor.jsonl")).unwrap();
    assert_eq!(
        predictor.lines().count(),
        2,
        "reused levels are logged again"
    );
    // Every tick of both runs is in metrics.jsonl (S1 steps, paths, S2 levels).
    let ticks: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for phase in ["s1", "paths", "s2"] {
        assert!(
            ticks
                .iter()
                .any(|t| t["phase"] == phase && t["event"] == "tick"),
            "no {phase} tick in metrics.jsonl"
        );
    }

    // S4 reads the run directory (`s1_s3.json`, the chosen round's
    // path-trained weights and α) and writes a model directory.
    let s4cfg = S4Config {
        discretize: DiscretizeConfig {
            anneal_steps: 2,
            batch: 4,
            fine_tune: TrainConfig {
                epochs: 1,
                batch: 8,
                ..TrainConfig::default()
            },
            ..DiscretizeConfig::default()
        },
        prune: PruneConfig {
            ratio: 0.5,
            min_keep: 0.25,
            sparsity: TrainConfig {
                epochs: 1,
                batch: 8,
                l1_gamma: 1e-3,
                ..TrainConfig::default()
            },
            fine_tune: TrainConfig {
                epochs: 1,
                batch: 8,
                ..TrainConfig::default()
            },
        },
    };
    let s4 = pipeline::s4(gpu, &splits, out, &s4cfg, &out.join("s4"), &mut |_| {}).expect("s4");
    assert_eq!(s4.adapter, gpu.describe());
    let d = &s4.discretize;
    assert_eq!(d.model.width, report.width);
    assert_eq!(d.model.genotype.normal, report.candidate.normal);
    assert!(d.anneal_loss_last.is_finite());
    let (eval, card) = train::load(gpu, &out.join("s4/discretized"), 16).expect("a model dir");
    let (_, acc) = eval.evaluate(gpu, &splits.test, &card.norm).unwrap();
    assert_eq!(
        acc, d.fine_tune.test_accuracy,
        "the saved model is the fine-tuned one"
    );
    assert!(out.join("s4/s4.json").is_file());
    // Then slimming: the stages in order, the pruned ones physically smaller.
    let names: Vec<&str> = s4.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(names, ["discretized", "sparse", "pruned", "final"]);
    let p: Vec<usize> = s4.stages.iter().map(|s| s.params).collect();
    assert_eq!(p[0], p[1], "the sparsity fine-tune keeps the shape");
    assert!(p[2] < p[1] && p[3] == p[2], "params per stage {p:?}");
    assert!(s4.stages[2].flops < s4.stages[1].flops);
    assert!(s4.removed_channels > 0 && s4.removed_channels < s4.prunable_channels);
    assert!(out.join("s4/final.onnx").is_file());
    let (eval, card) = train::load(gpu, &out.join("s4/final"), 16).expect("the final model dir");
    assert_eq!(gradnas::compress::params(&card), p[3]);
    // A trained stage's accuracy is its training's test figure: the saved
    // model must score it.
    let (_, acc) = eval.evaluate(gpu, &splits.test, &card.norm).unwrap();
    assert_eq!(acc, s4.stages[3].test_accuracy, "the saved final model");
    // The pruning curve: nine ratios, fewer parameters at each.
    let curve = &s4.pruning_curve;
    assert_eq!(curve.len(), 9);
    assert!(curve
        .windows(2)
        .all(|w| w[1].params <= w[0].params && w[1].ratio > w[0].ratio));
    assert!(curve[8].params < p[1]);

    // S4 again into the same directory reuses its finished stages and ends
    // the same; a changed fine-tune redoes only the last stage.
    let mut lines = Vec::new();
    let again = pipeline::s4(gpu, &splits, out, &s4cfg, &out.join("s4"), &mut |e| {
        lines.push(e.to_string())
    })
    .expect("s4 again");
    let reused = |lines: &[String]| lines.iter().filter(|l| l.contains("already done")).count();
    assert_eq!(reused(&lines), 3, "{lines:#?}");
    let acc =
        |r: &pipeline::S4Report| -> Vec<f64> { r.stages.iter().map(|s| s.test_accuracy).collect() };
    assert_eq!(acc(&again), acc(&s4));
    let mut changed = s4cfg.clone();
    changed.prune.fine_tune.lr *= 0.5;
    let mut lines = Vec::new();
    pipeline::s4(gpu, &splits, out, &changed, &out.join("s4"), &mut |e| {
        lines.push(e.to_string())
    })
    .expect("s4 with another fine-tune");
    assert_eq!(reused(&lines), 2, "{lines:#?}");
    let missing = pipeline::s4(
        gpu,
        &splits,
        &out.join("round0"),
        &s4cfg,
        &out.join("x"),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(format!("{missing:#}").contains("s1_s3.json"), "{missing:#}");
}
