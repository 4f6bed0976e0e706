//! Training end to end on a small slice of the bundled data: the loss falls,
//! accuracy beats chance, the model directory round-trips through
//! safetensors to the same test accuracy, and bad model directories and
//! mismatched data give clear errors.

mod common;

use std::sync::OnceLock;

use gradnas::data::Splits;
use gradnas::models::Builtin;
use gradnas::train::{self, TrainConfig};

fn small_splits() -> &'static Splits {
    static S: OnceLock<Splits> = OnceLock::new();
    S.get_or_init(|| common::bundled_subset(640, 100, 300))
    // 300 test images: not a multiple of the eval batch (padding).
}

/// A fresh directory for one test, removed when dropped.
fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("gradnas-train-{name}-"))
        .tempdir()
        .unwrap()
}

#[test]
fn trains_saves_and_reloads() {
    let gpu = common::gpu();
    let dir = tmp("run");
    let out = dir.path();
    let cfg = TrainConfig {
        epochs: 2,
        batch: 32,
        log_every: 5,
        ..TrainConfig::default()
    };
    let mut losses = Vec::new();
    let report = train::train(gpu, Builtin::Cnn, small_splits(), &cfg, out, |m| {
        if m.phase == "train" {
            losses.push(m.loss);
        }
    })
    .expect("train");
    assert!(losses.len() >= 4, "logged {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(
        losses.last().unwrap() < losses.first().unwrap(),
        "loss did not fall: {losses:?}"
    );
    assert!(
        report.test_accuracy > 0.35,
        "test accuracy {} (chance 0.1)",
        report.test_accuracy
    );
    assert!(report.planned_bytes < report.unshared_bytes);
    for f in ["metrics.jsonl", "model.safetensors", "model.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(lines
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    assert!(lines.contains("\"phase\":\"test\""));

    // The saved weights give the same test numbers in a fresh evaluator
    // with another batch size.
    let (eval, card) = train::load(gpu, out, 64).expect("load");
    assert_eq!(card.classes, 10);
    let (loss, acc) = eval
        .evaluate(gpu, &small_splits().test, &card.norm)
        .unwrap();
    assert!(
        (acc - report.test_accuracy).abs() < 1e-9,
        "{acc} vs {}",
        report.test_accuracy
    );
    assert!((loss - report.test_loss).abs() < 1e-3 * report.test_loss.max(1.0));
}

#[test]
fn bad_model_directories_are_refused_clearly() {
    let gpu = common::gpu();
    let dir = tmp("empty");
    let empty = dir.path();
    let e = train::load(gpu, empty, 8)
        .err()
        .expect("empty dir must fail")
        .to_string();
    assert!(e.contains("model.json"), "{e}");
    std::fs::write(empty.join("model.json"), "{not json").unwrap();
    let e = format!("{:#}", train::load(gpu, empty, 8).err().unwrap());
    assert!(e.contains("not a gradnas model card"), "{e}");
}

#[test]
fn zero_epochs_is_refused_before_any_work() {
    let gpu = common::gpu();
    let cfg = TrainConfig {
        epochs: 0,
        ..TrainConfig::default()
    };
    let e = train::train(
        gpu,
        Builtin::Cnn,
        small_splits(),
        &cfg,
        tmp("zero").path(),
        |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("epochs"), "{e}");
}
