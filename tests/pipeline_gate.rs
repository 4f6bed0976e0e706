//! S3 through the real pipeline (S1 → S2 → gate) on a tiny supernet and a
//! slice of the bundled data: a gate above reach fails the first round, the
//! second round runs wider and deeper, the loop ends after `max_rounds`, and
//! the run directory holds every file S1–S3 write.

mod common;

use gradnas::pipeline::{self, SearchConfig};
use gradnas::predict::measure::MeasureConfig;
use gradnas::predict::predictor::PredictorConfig;
use gradnas::predict::progressive::ProgressiveConfig;
use gradnas::search::bilevel::SearchHyper;
use gradnas::search::gate::{GateConfig, RoundLog};
use gradnas::search::s1::S1Config;
use gradnas::search::supernet::SupernetConfig;
use gradnas::space::{Genotype, OpSet};

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
        },
        // Accuracy can never exceed 1: every round fails.
        gate: GateConfig {
            threshold: 1.0,
            max_rounds: 2,
            width_factor: 2.0,
            depth_step: 1,
        },
        gate_train_epochs: None,
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
        for f in ["genotype.json", "supernet.safetensors", "predictor.jsonl"] {
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
}
